"""What a setting is: its declaration (:class:`Spec`), and the error a bad value raises.

A setting is declared once, as a field of :class:`~streamgmm.settings.service.Settings` made
with :func:`setting`: its TOML section and key, its parser (which holds its type, bounds and
choices), its default as a config file writes it, and what it means. Everything else is derived
from that: the environment variable, the docs' text of its choices, the validation, the
defaults file and the docs table.

The meaning is a template: ``$choices`` is the list of the parser's choices (``A, B, C``),
``$alternatives`` the same with "or" (``A, B or C``), and ``$NAME`` one choice, quoted
(``"NAME"``). A setting with choices must name them all in its text, so that a choice added to
the parser cannot be left out of the docs.
"""

from __future__ import annotations

import dataclasses
import string
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = [
    "ENV_PREFIX",
    "ConfigError",
    "Spec",
    "setting",
    "setting_group",
    "specs_of",
    "toml_value",
]

ENV_PREFIX = "STREAMGMM_"
_SPECS = "streamgmm.settings"  # the dataclass field metadata key of a field's declarations


class ConfigError(ValueError):
    """A setting has a bad value; the message is one line naming the setting and the value."""


@dataclass(frozen=True)
class Spec:
    """One setting: where it is written, how it is read, its default and its meaning."""

    section: str
    key: str
    attr: str  # the Settings attribute (``section.key`` for a member of a group)
    parse: Callable[[object], object]
    default: object  # as a config file writes it (TOML types)
    doc: str  # what the setting means
    secret: bool = False  # never shown in an error

    @property
    def name(self) -> str:
        return f"{self.section}.{self.key}"

    @property
    def env(self) -> str:
        return f"{ENV_PREFIX}{self.section.upper()}_{self.key.upper()}"

    @property
    def choices(self) -> tuple[str, ...]:
        """The valid values, when the parser has a fixed list of them."""
        return tuple(getattr(self.parse, "choices", ()))

    def shown(self, raw: object) -> str:
        """The raw value as an error message shows it (a secret as ``'***'``)."""
        if self.secret and raw not in ("", None):
            return "'***'"
        return repr(raw)


def toml_value(value: object) -> str:
    """``value`` as TOML writes it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return repr(value)


def _describe(name: str, template: str, choices: tuple[str, ...]) -> str:
    """The meaning of setting ``name``, its choices filled into ``template``."""
    words = {choice: f'"{choice}"' for choice in choices if choice.isidentifier()}
    if choices:
        words["choices"] = ", ".join(choices)
        words["alternatives"] = (
            f"{', '.join(choices[:-1])} or {choices[-1]}" if len(choices) > 1 else choices[0]
        )
    named = {
        match.group("named") or match.group("braced")
        for match in string.Template.pattern.finditer(template)
    } - {None}
    if choices and not ({"choices", "alternatives"} & named or set(choices) <= named):
        raise TypeError(f"the text of setting {name} must name each of its choices")
    return string.Template(template).substitute(words)


def _spec(
    section: str,
    key: str,
    parse: Callable[[object], object],
    default: object,
    doc: str,
    attr: str,
    secret: bool,
) -> Spec:
    name = f"{section}.{key}"
    choices = tuple(getattr(parse, "choices", ()))
    return Spec(section, key, attr, parse, default, _describe(name, doc, choices), secret)


def setting(
    section: str,
    key: str,
    parse: Callable[[object], object],
    default: object,
    doc: str,
    *,
    secret: bool = False,
) -> Any:
    """A field of the settings dataclass, declared as setting ``[section] key``."""
    spec = _spec(section, key, parse, default, doc, "", secret)
    return dataclasses.field(metadata={_SPECS: (spec,)})


def setting_group(*members: tuple[str, str, Callable[[object], object], object, str, bool]) -> Any:
    """A mapping field of the settings dataclass made of several settings.

    Each member is ``(section, key, parse, default, doc, secret)``; the mapping holds the members
    whose value is set (not ``""``), by key.
    """
    specs = tuple(
        _spec(section, key, parse, default, doc, f"{section}.{key}", secret)
        for section, key, parse, default, doc, secret in members
    )
    return dataclasses.field(hash=False, metadata={_SPECS: specs})


def specs_of(cls: type) -> tuple[Spec, ...]:
    """The settings a dataclass declares, in the order of its fields."""
    found: list[Spec] = []
    for field in dataclasses.fields(cls):
        for spec in field.metadata.get(_SPECS, ()):
            found.append(spec if spec.attr else dataclasses.replace(spec, attr=field.name))
    return tuple(found)
