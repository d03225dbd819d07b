"""The option table's machinery: ``option()`` declares an option on a dataclass field, ``Section`` reads it.

A configuration dataclass says everything about an option once, on its field::

    connect_timeout: int = option("ConnectTimeout", 30, minimum=1, aliases=("ConnectionTimeout",))

``Section.read(cls)`` then reads every declared field of ``cls`` from one JSON object and returns the
values by field name, recording each problem (one line naming the section, the option, the value and
what is allowed) instead of stopping at the first. An invalid value gives the default, so that every
problem is found in one pass; the caller raises when any was recorded. Nothing here knows Orthanc's
sections: ``config`` holds the table and the rules between fields.
"""

import dataclasses
import difflib
from collections.abc import Iterable
from typing import Any

MAX_UINT32 = 2 ** 32 - 1
ABSENT: Any = object()
"""What a ``raw`` option reads as when the JSON object does not have it (JSON null is ``None``)."""

_KEY = "orthanc_objstore.option"


@dataclasses.dataclass(frozen=True)
class Option:
    """One option: its JSON name, how it is read, and its default.

    ``kind`` is ``string``, ``boolean``, ``unsigned`` (an integer from ``minimum`` to ``maximum``),
    ``choice`` (one of ``choices``), ``string_map`` (a JSON object of strings, read as a tuple of pairs)
    or ``raw`` (the JSON value as it is, for the rules to check). ``aliases`` are other names of the same
    option; an alias that is present wins. ``scope`` is ``"section"`` (the plugin's section) or
    ``"orthanc"`` (a global Orthanc option).
    """

    name: str
    default: Any = None
    kind: str = "string"
    required: bool = False
    minimum: int = 0
    maximum: int = MAX_UINT32
    choices: tuple[str, ...] = ()
    aliases: tuple[str, ...] = ()
    secret: bool = False
    strip: bool = False
    scope: str = "section"
    note: str = ""  # for check-config --list-options, when the default alone says too little

    @property
    def names(self) -> tuple[str, ...]:
        return (self.name, *self.aliases)


def option(name: str, default: Any = dataclasses.MISSING, *, kind: str | None = None, required: bool = False,
           minimum: int = 0, maximum: int = MAX_UINT32, choices: Iterable[str] = (), aliases: Iterable[str] = (),
           secret: bool = False, strip: bool = False, scope: str = "section", note: str = "") -> Any:
    """A dataclass field that is the configuration option ``name``. Without a default the field is
    positional (required options, and raw values the rules turn into something else). ``kind`` is
    guessed from the default (bool, int, str/None) or ``choices`` when not given. Secret options stay
    out of ``repr`` and their values out of every message."""
    choices = tuple(choices)
    if kind is None:
        kind = ("choice" if choices else "boolean" if isinstance(default, bool)
                else "unsigned" if isinstance(default, int) else "string")
    spec = Option(name, None if default is dataclasses.MISSING else default, kind, required, minimum, maximum,
                  choices, tuple(aliases), secret, strip, scope, note)
    if default is dataclasses.MISSING:
        return dataclasses.field(metadata={_KEY: spec}, repr=not secret)
    return dataclasses.field(default=default, metadata={_KEY: spec}, repr=not secret)


def declared(cls, scope: str | None = None) -> list[tuple[str, Option]]:
    """``(field name, Option)`` for every field of ``cls`` that is an option (of ``scope``, if given)."""
    fields = [(f.name, f.metadata[_KEY]) for f in dataclasses.fields(cls) if _KEY in f.metadata]
    return [(name, spec) for name, spec in fields if scope is None or spec.scope == scope]


def default_of(cls, field: str) -> Any:
    """The default that ``field`` of ``cls`` declares in its ``option()`` (also for raw options, which
    ``Section.read`` gives as ``ABSENT`` when missing so that rules can tell)."""
    return dict(declared(cls))[field].default


def json_type(value) -> str:
    if value is None:
        return "null"
    return {bool: "boolean", int: "number", float: "number", str: "string", list: "array",
            dict: "object"}.get(type(value), type(value).__name__)


class Section:
    """One JSON object of the configuration, read against the options it knows.

    ``known`` is every option name (aliases included) of this section, for the unknown-option
    warnings; ``children`` are nested sections whose unknown options are reported too.
    """

    def __init__(self, name: str, values, problems: list[str], known: Iterable[Option] = ()):
        self.name = name
        self.values = values if isinstance(values, dict) else {}
        self.problems = problems
        self.known = {alias for spec in known for alias in spec.names}
        self.children: list[Section] = []
        if not isinstance(values, dict):
            problems.append(f"{name}: must be a JSON object, got {json_type(values)}")

    def problem(self, option: str, text: str) -> None:
        self.problems.append(f"{self.name}.{option}: {text}")

    def bad(self, option: str, value, allowed: str, secret: bool = False) -> None:
        shown = "(value hidden)" if secret else f"{value!r} ({json_type(value)})"
        self.problem(option, f"{shown} is invalid; allowed: {allowed}")

    def read(self, cls, scope: str = "section") -> dict[str, Any]:
        """Every option field of ``cls`` in ``scope``, by field name."""
        return {name: self.value(spec) for name, spec in declared(cls, scope)}

    def value(self, spec: Option):
        result = self._one(spec, spec.name, spec.default, spec.required)
        for alias in spec.aliases:
            if alias in self.values:
                result = self._one(spec, alias, result, False)
        return result

    def _one(self, spec: Option, name: str, default, required: bool):
        if name not in self.values:
            if required:
                self.problem(name, "missing, and it is required")
            return ABSENT if spec.kind == "raw" else default
        value = self.values[name]
        if spec.kind == "raw":
            return value
        if spec.kind == "boolean":
            if isinstance(value, bool):
                return value
            self.bad(name, value, "true or false (a JSON boolean, not a string)")
        elif spec.kind == "unsigned":
            if not isinstance(value, bool) and isinstance(value, int) and spec.minimum <= value <= spec.maximum:
                return value
            self.bad(name, value, f"an integer from {spec.minimum} to {spec.maximum}")
        elif spec.kind == "string_map":
            if isinstance(value, dict) and all(isinstance(item, str) for item in value.values()):
                return tuple(value.items())
            self.bad(name, value, 'a JSON object of strings, e.g. {"project": "pacs"}')
        elif not isinstance(value, str):
            self.bad(name, value, "a JSON string", spec.secret)
        else:
            value = value.strip(" \t\r\n") if spec.strip else value
            if required and not value:
                self.problem(name, "empty, and it is required")
            if spec.kind != "choice" or value in spec.choices:
                return value
            self.bad(name, value, ", ".join(spec.choices))
        return default

    def unknown_option_warnings(self) -> list[str]:
        warnings = []
        for name in self.values:
            if name in self.known:
                continue
            close = difflib.get_close_matches(name, sorted(self.known), n=1, cutoff=0.6)
            hint = f'; did you mean "{close[0]}"?' if close else f"; known options: {', '.join(sorted(self.known))}"
            warnings.append(f"{self.name}: unknown option \"{name}\" is ignored{hint}")
        for child in self.children:
            warnings += child.unknown_option_warnings()
        return warnings
