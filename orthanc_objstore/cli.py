"""The ``orthanc-objstore`` command: tools for administrators, usable without Orthanc."""

import argparse
import json
import os
import sys

from . import __version__, config
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


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="orthanc-objstore", description=__doc__)
    parser.add_argument("--version", action="version", version=__version__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("plugin-path", help='print the file to set as Orthanc\'s "PythonScript"')
    check = commands.add_parser("check-config", help="validate an Orthanc configuration file (JSON) offline")
    check.add_argument("file")
    arguments = parser.parse_args(argv)
    if arguments.command == "plugin-path":
        print(plugin_path())
        return 0
    return _check_config(arguments.file)


if __name__ == "__main__":
    sys.exit(main())
