"""The ``orthanc-objstore`` command: tools for administrators, usable without Orthanc."""

import argparse
import base64
import json
import os
import sys

from . import __version__, config, tools
from .errors import ConfigError


def plugin_path() -> str:
    """The file to set as Orthanc's "PythonScript"."""
    return os.path.join(os.path.dirname(os.path.abspath(__file__)), "plugin.py")


def _check_config(path: str) -> int:
    try:
        with open(path, encoding="utf-8") as file:
            configuration = json.load(file)
    except (OSError, ValueError) as exc:
        print(f"{path}: cannot read the configuration: {exc}", file=sys.stderr)
        return 2
    try:
        parsed, warnings = config.parse(configuration)
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"error: {problem}", file=sys.stderr)
        return 1
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if parsed is not None:
        print(f"ok: {parsed.section}, {parsed.common.storage_structure} layout, hybrid mode "
              f"{parsed.common.hybrid_mode}, encryption {'on' if parsed.common.encryption else 'off'}")
    return 0


def _keygen(path: str) -> int:
    """Writes a new random master key (base64 of 32 bytes) readable by its owner only; never overwrites."""
    key = base64.b64encode(os.urandom(config.MASTER_KEY_SIZE)) + b"\n"
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
    parser = argparse.ArgumentParser(prog="orthanc-objstore", description=__doc__)
    parser.add_argument("--version", action="version", version=__version__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("plugin-path", help='print the file to set as Orthanc\'s "PythonScript"')
    check = commands.add_parser("check-config", help="validate an Orthanc configuration file (JSON) offline")
    check.add_argument("file")
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
    return _check_config(arguments.file)


if __name__ == "__main__":
    sys.exit(main())
