"""The ``orthanc-objstore`` command: tools for administrators, usable without Orthanc."""

import argparse
import base64
import dataclasses
import json
import os
import sys

from .. import __version__, build
from ..config import files as configfile
from ..config import sections as config
from ..crypto.keys import KEY_SIZE
from ..errors import ConfigError
from . import tools

DESCRIPTION = ("Tools for administrators of orthanc-objstore, Orthanc's storage area in object storage; "
               "none needs a running Orthanc.")


def plugin_path() -> str:
    """The file to set as Orthanc's "PythonScript": ``plugin.py`` at the top of the package."""
    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # this file is offline/cli.py
    return os.path.join(package, "plugin.py")


def _check_config(path: str) -> int:
    """Reads ``path`` (a file or a folder) as Orthanc does, then reports what the plugin would report at
    start-up: 0 when the plugin would start (or is disabled), 1 when it would stop Orthanc, 2 when Orthanc
    itself would refuse the configuration."""
    try:
        configuration = configfile.read(path)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        parsed, warnings = config.parse(configuration)
        if parsed is not None:
            build.provider_class(parsed.section)  # the provider's SDK is installed
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"error: {problem}", file=sys.stderr)
        return 1
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if parsed is not None and parsed.common.encryption is not None:
        encryption = parsed.common.encryption
        keys = [("MasterKey", encryption.master_key)]
        keys += [(f"PreviousMasterKeys[{i}]", key) for i, key in enumerate(encryption.previous_master_keys)]
        for option, key in keys:
            if key.unwrapped_by:
                print(f"ok: {option} (id {key.id}) {key.path!r}: unwrapped through {key.unwrapped_by}")
    if parsed is not None:
        print(f"ok: {parsed.section}, {parsed.common.storage_structure} layout, hybrid mode "
              f"{parsed.common.hybrid_mode}, encryption {'on' if parsed.common.encryption else 'off'}, "
              f"read cache {_cache_summary(parsed.common.read_cache)}, prefetch "
              f"{'on' if parsed.common.prefetch else 'off'}")
    return 0


def _cache_summary(cache) -> str:
    if cache is None:
        return "off"
    disk = f" + {cache.folder_size_mb} MB on disk in {cache.folder}" if cache.folder else ""
    return f"{cache.memory_size_mb} MB in memory{disk}"


def _default(spec) -> str:
    if spec.required:
        return "required"
    if spec.default is None:
        return "absent"
    if dataclasses.is_dataclass(spec.default):
        return "true"  # a section, on with its defaults
    if spec.kind == "string_map":
        return json.dumps(dict(spec.default))
    return json.dumps(list(spec.default) if isinstance(spec.default, tuple) else spec.default)


def _list_options() -> int:
    """Every option the plugin reads, by section, with its default (from config's option table)."""
    titles = {section: section for section in config.PROVIDERS}
    titles[config.ENCRYPTION_SECTION] = f"{config.ENCRYPTION_SECTION} (inside any of the sections above)"
    titles[config.TIERING_SECTION] = f"{config.TIERING_SECTION} (inside any of the sections above, hybrid mode only)"
    titles[config.INDEXER_SECTION] = f"{config.INDEXER_SECTION} (inside any of the sections above; absent: off)"
    titles[config.READ_CACHE_SECTION] = f"{config.READ_CACHE_SECTION} (inside any of the sections above; false: off)"
    titles[config.PREFETCH_SECTION] = f"{config.PREFETCH_SECTION} (inside any of the sections above; false: off)"
    titles[config.GLOBAL_SECTION] = "Orthanc's own options the plugin reads (top level)"
    for section, title in titles.items():
        print(f"{title}:")
        for spec in config.options(section):
            notes = [f"one of {', '.join(spec.choices)}"] if spec.choices else []
            notes += [f"also spelt {alias}" for alias in spec.aliases] + ([spec.note] if spec.note else [])
            print(f"  {spec.name:<32} {_default(spec):<16} {'; '.join(notes)}".rstrip())
    return 0


def _keygen(path: str) -> int:
    """Writes a new random master key (base64 of 32 bytes) readable by its owner only; never overwrites."""
    key = base64.b64encode(os.urandom(KEY_SIZE)) + b"\n"
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        print(f"{path}: already exists; refusing to overwrite a key file (objects encrypted with it would "
              "become unreadable). Choose another file name.", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"{path}: cannot create the key file: {exc.strerror}", file=sys.stderr)
        return 1
    try:
        os.fchmod(descriptor, 0o600)
        os.write(descriptor, key)
        os.fsync(descriptor)
    except OSError as exc:
        os.close(descriptor)
        os.unlink(path)
        print(f"{path}: cannot write the key file: {exc.strerror}", file=sys.stderr)
        return 1
    os.close(descriptor)
    print(f"wrote a new master key to {path} (mode 0600). Use it as \"MasterKey\": [ID, \"{path}\"] with an id "
          "never used before, keep a copy in a safe place: without it the objects cannot be decrypted.")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="orthanc-objstore", description=DESCRIPTION)
    parser.add_argument("--version", action="version", version=__version__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("plugin-path", help='print the file to set as Orthanc\'s "PythonScript"')
    check = commands.add_parser("check-config", help="validate an Orthanc configuration offline, read as Orthanc "
                                "reads it (a file or a folder of *.json, comments, ${VARIABLES})")
    check.add_argument("file", nargs="?", metavar="FILE_OR_FOLDER")
    check.add_argument("--list-options", action="store_true", help="print every option the plugin reads, with "
                       "its default")
    keygen = commands.add_parser("keygen", help="write a new random master key file for StorageEncryption")
    keygen.add_argument("file")
    tools.register(commands)
    arguments = parser.parse_args(argv)
    if hasattr(arguments, "run"):
        return arguments.run(arguments)
    if arguments.command == "plugin-path":
        print(plugin_path())
        return 0
    if arguments.command == "keygen":
        return _keygen(arguments.file)
    if arguments.list_options:
        return _list_options()
    if arguments.file is None:
        check.error("give FILE_OR_FOLDER (the argument Orthanc is started with), or --list-options")
    return _check_config(arguments.file)


if __name__ == "__main__":
    sys.exit(main())
