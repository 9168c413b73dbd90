"""Value parsers: a raw setting value becomes a typed one, or :class:`Invalid` says what was
expected.

A raw value is TOML-typed when it comes from a config file or a command-line override, and a
string when it comes from the environment; every parser takes both. The parser of a setting
with fixed choices is a :class:`Choice`, whose ``choices`` are also what the docs list.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

__all__ = [
    "Choice",
    "Invalid",
    "boolean",
    "boolean_or_auto",
    "field_list",
    "integer",
    "kafka_version",
    "name_list",
    "nonempty_string",
    "number",
    "optional_field_name",
    "positive_float",
    "secret",
    "servers",
    "string",
    "string_list",
    "topic",
]

# Kafka's own rule for legal topic names.
_TOPIC_RE = re.compile(r"^[A-Za-z0-9._-]{1,249}$")
_FIELD_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class Invalid(Exception):
    """Raised by a parser with the reason only; the loader adds the setting, source and value."""


def integer(lo: int | None = None, hi: int | None = None) -> Callable[[object], int]:
    """An integer in ``[lo, hi]`` (either bound may be left open)."""

    def parse(raw: object) -> int:
        if isinstance(raw, bool):
            raise Invalid("expected an integer, not a boolean")
        if isinstance(raw, str):
            try:
                value = int(raw.strip())
            except ValueError:
                raise Invalid("expected an integer") from None
        elif isinstance(raw, int):
            value = raw
        elif isinstance(raw, float) and raw.is_integer():
            value = int(raw)
        else:
            raise Invalid("expected an integer")
        if lo is not None and value < lo:
            raise Invalid(f"expected an integer >= {lo}")
        if hi is not None and value > hi:
            raise Invalid(f"expected an integer <= {hi}")
        return value

    return parse


def number(raw: object) -> float:
    """Any number (a float)."""
    if isinstance(raw, bool):
        raise Invalid("expected a number, not a boolean")
    try:
        return float(raw.strip()) if isinstance(raw, str) else float(raw)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise Invalid("expected a number") from None


def positive_float(raw: object) -> float:
    """A finite number > 0."""
    value = number(raw)
    if not (value > 0.0 and value < float("inf")):
        raise Invalid("expected a finite number > 0")
    return value


def boolean(raw: object) -> bool:
    """true or false (also 1/0, yes/no, on/off in the environment)."""
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, str):
        text = raw.strip().lower()
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("0", "false", "no", "off"):
            return False
    raise Invalid("expected true or false")


def boolean_or_auto(raw: object) -> bool | None:
    """true, false or "auto" (None: the service decides)."""
    if isinstance(raw, str) and raw.strip().lower() == "auto":
        return None
    try:
        return boolean(raw)
    except Invalid:
        raise Invalid('expected true, false or "auto"') from None


@dataclass(frozen=True)
class Choice:
    """One of ``choices``, the setting's whole list of valid values.

    Parameters
    ----------
    choices
        The valid values, in the order the docs and the errors list them.
    case
        Applied to the text before it is looked up (``str.upper``: any case is accepted).
    blank
        A blank value is valid and means "not set" (it reads as ``""``).
    none
        The choice, if any, that reads as None.
    """

    choices: tuple[str, ...]
    case: Callable[[str], str] | None = None
    blank: bool = False
    none: str | None = None

    def __call__(self, raw: object) -> str | None:
        if not isinstance(raw, str):
            raise Invalid("expected a string" if self.blank else self._expected())
        text = raw.strip()
        if self.blank and not text:
            return ""
        if self.case is not None:
            text = self.case(text)
        if text not in self.choices:
            raise Invalid(self._expected())
        return None if text == self.none else text

    def _expected(self) -> str:
        return f"expected one of {', '.join(self.choices)}"


def string(raw: object) -> str:
    """Any string (surrounding spaces dropped)."""
    if not isinstance(raw, str):
        raise Invalid("expected a string")
    return raw.strip()


def secret(raw: object) -> str:
    """A password: used verbatim, as surrounding spaces may be part of it."""
    if not isinstance(raw, str):
        raise Invalid("expected a string")
    return raw


def nonempty_string(raw: object) -> str:
    """A string that is not blank."""
    text = string(raw)
    if not text:
        raise Invalid("expected a non-empty string")
    return text


def optional_field_name(raw: object) -> str | None:
    """A JSON field name, or blank for None."""
    text = string(raw)
    if not text:
        return None
    if not _FIELD_RE.match(text):
        raise Invalid("expected a JSON field name of letters, digits and underscores")
    return text


def string_list(raw: object) -> tuple[str, ...]:
    """A comma-separated string or a list of strings."""
    if isinstance(raw, str):
        items = [part.strip() for part in raw.split(",")]
        items = [part for part in items if part]
    elif isinstance(raw, list | tuple) and all(isinstance(part, str) for part in raw):
        items = [part.strip() for part in raw]
    else:
        raise Invalid("expected a comma-separated string or a list of strings")
    return tuple(items)


def name_list(raw: object) -> tuple[str, ...]:
    """Distinct, non-blank names: a comma-separated string or a list of strings (empty: none)."""
    if isinstance(raw, str):
        items = [part.strip() for part in raw.split(",")] if raw.strip() else []
    elif isinstance(raw, list | tuple) and all(isinstance(part, str) for part in raw):
        items = [part.strip() for part in raw]
    else:
        raise Invalid("expected a comma-separated string or a list of strings")
    if any(not item for item in items):
        raise Invalid("a name is blank")
    for i, item in enumerate(items):
        if item in items[:i]:
            raise Invalid(f"the name {item!r} is given twice; names must differ")
    return tuple(items)


def servers(raw: object) -> tuple[str, ...]:
    """A non-empty list of host:port."""
    found = string_list(raw)
    if not found:
        raise Invalid("expected at least one host:port")
    for server in found:
        host, sep, port = server.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise Invalid(f"expected host:port, got {server!r}")
    return found


def kafka_version(raw: object) -> tuple[int, ...] | None:
    """``"auto"`` (None) or a Kafka protocol version of two or three parts, at least 0.10."""
    if isinstance(raw, str):
        text = raw.strip()
        if text.lower() == "auto":
            return None
        parts: list[object] = list(text.split("."))
    elif isinstance(raw, list | tuple):
        parts = list(raw)
    else:
        raise Invalid('expected "auto" or a version such as "2.5.0"')
    version_parts: list[int] = []
    for part in parts:
        if isinstance(part, bool) or not isinstance(part, int | str):
            raise Invalid('expected "auto" or a version such as "2.5.0"')
        try:
            version_parts.append(int(part))
        except ValueError:
            raise Invalid('expected "auto" or a version such as "2.5.0"') from None
    version = tuple(version_parts)
    if not 2 <= len(version) <= 3 or any(part < 0 for part in version) or version < (0, 10):
        raise Invalid('expected "auto" or a version such as "2.5.0" (at least 0.10)')
    return version


def topic(optional: bool) -> Callable[[object], str]:
    """A legal Kafka topic name (or consumer group id); blank too when ``optional``."""

    def parse(raw: object) -> str:
        text = string(raw)
        if not text and optional:
            return ""
        if not _TOPIC_RE.match(text) or text in (".", ".."):
            raise Invalid("expected a Kafka topic name: 1-249 of [A-Za-z0-9._-]")
        return text

    return parse


def field_list(raw: object) -> tuple[str, ...]:
    """Distinct JSON field names, as for :func:`string_list`."""
    names = string_list(raw)
    for name in names:
        if not _FIELD_RE.match(name):
            raise Invalid(f"expected JSON field names, got {name!r}")
    if len(set(names)) != len(names):
        raise Invalid("expected distinct field names")
    return names
