"""Reads an Orthanc configuration the way Orthanc does: one file or a folder of ``*.json``, comments, ``${VAR}``.

What Orthanc does (``OrthancConfiguration.cpp``: ``ReadConfiguration``, ``ScanFolderForConfiguration``,
``AddFileToConfiguration``; 1.10.1 and later), and so what ``read`` does:

- A folder: every entry of it that is not a folder and whose name ends in ``.json`` (any case), not
  recursively. The files are merged at the top level, and a top-level key in two files stops Orthanc:
  ``The configuration section "X" is defined in 2 different configuration files``.
- Each file: ``${NAME}``, ``${NAME:-default}``, ``${NAME:-"default"}`` and ``${NAME:-'default'}`` are
  replaced from the environment first, everywhere in the text (an unset NAME without default gives "").
- Then JsonCpp with its default settings: ``//`` and ``/* */`` comments outside strings, a trailing
  comma before ``}`` or ``]``, raw control characters in strings, a UTF-8 byte-order mark, and numbers
  such as ``+1``, ``01`` or ``1.`` are accepted; whatever follows the top-level object is ignored. JsonCpp's
  quirks are kept too (checked against Orthanc 1.10.1): a comment between a member name and its ``:``, or
  a comment just before ``]`` with no value after the last ``[`` or ``,``, is refused. The top level must
  be a JSON object.

Every refusal is a ``ConfigError`` whose message starts with Orthanc's own.
"""

import json
import os
import re
from collections.abc import Mapping

from ..errors import ConfigError

_VARIABLE = re.compile(r"""\$\{([^:]*?)\}|\$\{([^:]*?):-([^'"]*?)\}|\$\{([^:]*?):-"([^"]*?)"\}"""
                       r"""|\$\{([^:]*?):-'([^']*?)'\}""")
_NUMBER = re.compile(r"[-+]?\d*\.?\d*(?:[eE][-+]?\d*)?")
_INTEGER = re.compile(r"-?\d+")


def read(path: str, environ: Mapping[str, str] = os.environ) -> dict:
    """The whole configuration Orthanc would run with, given ``path`` (a file or a folder) as argument."""
    if not os.path.exists(path):
        raise ConfigError(f"Inexistent path to configuration: {path}")
    if not os.path.isdir(path):
        return read_file(path, environ)
    merged: dict = {}
    origin: dict[str, str] = {}
    for name in configuration_files(path):
        for key, value in read_file(os.path.join(path, name), environ).items():
            if key in merged:
                raise ConfigError(f'The configuration section "{key}" is defined in 2 different configuration '
                                  f"files ({origin[key]} and {name} in {path}); Orthanc refuses to start")
            merged[key], origin[key] = value, name
    return merged


def configuration_files(folder: str) -> list[str]:
    """The names of the files Orthanc reads in ``folder`` (sorted here; Orthanc's order does not matter,
    since a key defined twice is refused)."""
    return sorted(name for name in os.listdir(folder)
                  if name.lower().endswith(".json") and not os.path.isdir(os.path.join(folder, name)))


def read_file(path: str, environ: Mapping[str, str] = os.environ) -> dict:
    refused = f"The configuration file does not follow the JSON syntax: {path}"
    try:
        with open(path, "rb") as file:
            content = file.read()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the configuration: {exc.strerror}") from None
    text = substitute_variables(content.decode("utf-8", errors="replace").removeprefix("\ufeff"), path, environ)
    try:
        value = json.loads(_strict_json(text), strict=False, parse_constant=_no_constant)
    except _Refused as exc:
        raise ConfigError(f"{refused} (line {exc.line}: {exc.reason})") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{refused} (line {exc.lineno}: {exc.msg})") from None
    except ValueError as exc:  # NaN, Infinity
        raise ConfigError(f"{refused} ({exc})") from None
    if not isinstance(value, dict):
        raise ConfigError(f"{refused} (the top level is not a JSON object)")
    return value


def substitute_variables(text: str, path: str, environ: Mapping[str, str]) -> str:
    def value(match):
        name = next((group for group in match.group(1, 2, 4, 6) if group), None)
        if name is None:  # ${} or ${:-...}: Orthanc stops with "Internal error"
            raise ConfigError(f"{path}: {match.group()!r} names no environment variable; Orthanc stops with "
                              "\"Internal error\"")
        default = next((group for group in match.group(3, 5, 7) if group is not None), "")
        return environ.get(name, default)
    return _VARIABLE.sub(value, text)


class _Refused(ValueError):
    def __init__(self, text: str, position: int, reason: str):
        super().__init__(reason)
        self.line = text.count("\n", 0, position) + 1
        self.reason = reason


def _no_constant(name):
    raise ValueError(f"{name} is not a JSON value")


def _strict_json(text: str) -> str:
    """``text`` as strict JSON for ``json.loads``, with JsonCpp's leniencies and quirks applied (see the
    module docstring). Comments become blanks with the same line breaks, so line numbers stay right."""
    out: list[str] = []
    depth = 0
    last = before_last = ""   # the last two significant tokens: one of { [ , : } ] or "v" (a value)
    last_comma = -1           # where in ``out`` the last comma is, while it is the last token
    commented = False         # a comment since the last significant token
    i = 0
    while i < len(text):
        c = text[i]
        if c in " \t\r\n":
            out.append(c)
            i += 1
            continue
        if text.startswith("//", i):
            end = min((j for j in (text.find("\n", i), text.find("\r", i)) if j >= 0), default=len(text))
            out.append(" ")
            commented, i = True, end
            continue
        if text.startswith("/*", i):
            end = text.find("*/", i + 2)
            if end < 0:
                raise _Refused(text, i, "a /* comment is not closed")
            out.append("\n" * text.count("\n", i, end) + " ")
            commented, i = True, end + 2
            continue
        if c == '"':
            end = _string_end(text, i)
            token, i = text[i:end], end
        elif c in "-+0123456789":
            match = _NUMBER.match(text, i)
            number = match.group() if match else ""
            token, i = _number(text, i, number), i + len(number)
        else:
            token, i = c, i + 1
            if c == ":" and commented:
                raise _Refused(text, i, "a comment between a member name and its ':'")
            if c in "}]" and last == ",":
                if before_last in "{[":
                    raise _Refused(text, i, f"a ',' with no value before '{c}'")
                if c == "]" and commented:
                    raise _Refused(text, i, "a comment just before ']' after a ','")
                out[last_comma] = " "  # a trailing comma
            if c == "]" and last == "[" and commented:
                raise _Refused(text, i, "a comment inside an empty array")
            depth += (c in "{[") - (c in "}]")
        kind = token if token in ("{", "[", ",", ":", "}", "]") else "v"
        if kind == ",":
            last_comma = len(out)
        if kind != "v" or last != "v":
            before_last, last = last, kind
        commented = False
        out.append(token)
        if depth == 0 and kind in "}]":
            break  # the top-level value is complete: Orthanc ignores what follows
    return "".join(out)


def _string_end(text: str, start: int) -> int:
    i = start + 1
    while i < len(text):
        if text[i] == "\\":
            i += 2
        elif text[i] == '"':
            return i + 1
        else:
            i += 1
    raise _Refused(text, start, "a string is not closed")


def _number(text: str, position: int, number: str) -> str:
    """A JsonCpp number (``+1``, ``01``, ``1.``) written as JSON: integers stay integers, the rest are reals."""
    try:
        return str(int(number)) if _INTEGER.fullmatch(number) else repr(float(number))
    except ValueError:
        raise _Refused(text, position, f"{number!r} is not a number") from None
