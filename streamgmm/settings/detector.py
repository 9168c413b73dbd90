"""The ``[detector]`` settings, derived from the detector classes' constructors.

Not listed by hand: :func:`detector_specs` reads the constructors of
:class:`~streamgmm.regime.RegimeDetector` and :class:`~streamgmm.regime.EventDetector` (names,
type hints, defaults, and the numpydoc ``Parameters`` section for their meaning), so a parameter
added to a detector is a setting. Their values are checked by the detector's own constructor
(:func:`check_detector`); :attr:`Settings.detector <streamgmm.settings.service.Settings>` holds
only the parameters that were set, and the detector's defaults apply to the others
(:func:`detector_kwargs`).
"""

from __future__ import annotations

import functools
import inspect
import re
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

from streamgmm.settings.parsers import (
    Choice,
    Invalid,
    boolean,
    integer,
    number,
    string,
    string_list,
)
from streamgmm.settings.service import Settings
from streamgmm.settings.spec import ConfigError, Spec, toml_value

__all__ = ["check_detector", "detector_class", "detector_kwargs", "detector_specs"]

# Derived from the detector classes: the first class that has a parameter gives its type,
# default and meaning. Detector parameters that other settings supply:
_DETECTOR_CLASSES = ("RegimeDetector", "EventDetector")
_SET_ELSEWHERE = frozenset({"fields"})  # [input] event_fields
#: Values that meant None before the [detector] section was derived; still read that way.
_LEGACY_NONE: dict[str, object] = {"halflife": 0.0, "seed": -1}


def _detector_classes() -> dict[str, type]:
    from streamgmm import regime

    return {name: getattr(regime, name) for name in _DETECTOR_CLASSES}


def detector_class(tick_kind: str) -> type:
    """The detector class ``[input] tick_kind`` selects."""
    return _detector_classes()["EventDetector" if tick_kind == "event" else "RegimeDetector"]


_RST_ROLE = re.compile(r":[a-z]+:`~?([^`]+)`")


def _numpydoc_parameters(doc: str | None) -> dict[str, str]:
    """Parameter name -> description, from a numpydoc ``Parameters`` section.

    Handles ``name`` / ``name : type`` headings, several comma-separated names sharing one
    description, and reStructuredText roles and literals (written as Markdown code).
    """
    lines = inspect.cleandoc(doc or "").splitlines()
    try:
        start = next(
            i + 2
            for i, line in enumerate(lines[:-1])
            if line.strip() == "Parameters" and set(lines[i + 1].strip()) == {"-"}
        )
    except StopIteration:
        return {}
    found: dict[str, str] = {}
    names: list[str] = []
    for i, line in enumerate(lines[start:], start):
        if i + 1 < len(lines) and line.strip() and set(lines[i + 1].strip()) == {"-"}:
            break  # the next section's heading
        if line and not line[0].isspace():
            names = [n.strip() for n in line.split(":", 1)[0].split(",") if n.strip()]
            for name in names:
                found[name] = ""
        elif line.strip():
            for name in names:
                found[name] = f"{found[name]} {line.strip()}".strip()
    return {
        name: _RST_ROLE.sub(lambda m: "`" + m.group(1).rsplit(".", 1)[-1] + "`", text).replace(
            "``", "`"
        )
        for name, text in found.items()
    }


def _hint_parser(hint: object, where: str) -> Callable[[object], object]:
    """The parser of a setting whose detector parameter has type hint ``hint``."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (types.UnionType, typing.Union):
        optional = type(None) in args
        parsers = [_hint_parser(arg, where) for arg in args if arg is not type(None)]

        def parse_union(raw: object) -> object:
            if optional and (
                raw is None or (isinstance(raw, str) and raw.strip().lower() in ("", "none"))
            ):
                return None
            reasons = []
            for parse in parsers:
                try:
                    return parse(raw)
                except Invalid as exc:
                    reasons.append(str(exc).removeprefix("expected "))
            raise Invalid(
                "expected " + " or ".join(reasons + (['"" for None'] if optional else []))
            )

        return parse_union
    if origin is Literal:
        return Choice(tuple(str(arg) for arg in args))
    if hint is bool:
        return boolean
    if hint is int:
        return integer()
    if hint is float:
        return number
    if hint is str:
        return string
    if origin in (Sequence, list, tuple, typing.Sequence) and args[:1] == (str,):
        return string_list
    raise TypeError(
        f"{where} has type {hint!r}, which settings cannot hold yet: teach "
        "streamgmm.settings.detector._hint_parser to read it"
    )


def _toml_default(value: object) -> object:
    if value is None:
        return ""
    if isinstance(value, tuple | list):
        return list(value)
    return value


@functools.cache
def detector_specs() -> tuple[Spec, ...]:
    """The ``[detector]`` settings, derived from the detector classes' constructors.

    Imports :mod:`streamgmm.regime` (numba, river): called only when a ``[detector]`` setting
    is given, and to write the defaults and the docs.
    """
    classes = _detector_classes()
    specs: dict[str, Spec] = {}
    owners: dict[str, list[str]] = {}
    for cls_name, cls in classes.items():
        hints = typing.get_type_hints(cls.__init__)  # type: ignore[misc]
        docs = _numpydoc_parameters(cls.__doc__)
        for name, param in inspect.signature(cls).parameters.items():
            if name in _SET_ELSEWHERE:
                continue
            if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
                continue
            owners.setdefault(name, []).append(cls_name)
            if name in specs:
                continue
            where = f"{cls_name}.__init__ parameter {name!r}"
            if param.default is param.empty:
                raise TypeError(f"{where} has no default, so the service cannot leave it unset")
            parse = _hint_parser(hints[name], where)
            if name in _LEGACY_NONE:
                parse = _with_legacy_none(parse, _LEGACY_NONE[name])
            specs[name] = Spec(
                "detector", name, f"detector.{name}", parse, _toml_default(param.default),
                docs.get(name) or f"See {cls_name}.",
            )  # fmt: skip
    for key, spec in specs.items():
        notes = []
        if key in _LEGACY_NONE:
            notes.append(f"{toml_value(_LEGACY_NONE[key])} also means None.")
        if len(owners[key]) < len(classes):
            kind = "Market" if owners[key] == ["RegimeDetector"] else "Event"
            notes.append(f"{kind} ticks only.")
        if notes:
            doc = spec.doc if spec.doc.endswith(".") else spec.doc + "."
            specs[key] = Spec(
                spec.section, key, spec.attr, spec.parse, spec.default, " ".join([doc, *notes])
            )
    return tuple(specs.values())


def _with_legacy_none(
    parse: Callable[[object], object], legacy: object
) -> Callable[[object], object]:
    def parse_legacy(raw: object) -> object:
        value = parse(raw)
        return None if value == legacy and not isinstance(value, bool) else value

    return parse_legacy


@functools.cache
def _parameters(tick_kind: str) -> Mapping[str, inspect.Parameter]:
    return inspect.signature(detector_class(tick_kind)).parameters


def detector_kwargs(settings: Settings) -> dict[str, Any]:
    """Keyword arguments of the detector class ``settings.tick_kind`` selects.

    The ``[detector]`` parameters that were set and that this class takes, plus ``fields``
    (``[input] event_fields``) for event ticks. Parameters left unset take the class's defaults.
    """
    accepted = _parameters(settings.tick_kind)
    kwargs = {key: value for key, value in settings.detector.items() if key in accepted}
    if "fields" in accepted:
        kwargs["fields"] = list(settings.event_fields)
    return kwargs


def check_detector(
    settings: Settings, sources: Mapping[str, str], values: Mapping[str, tuple[object, str]]
) -> None:
    """Build the detector once with the [detector] settings given: its constructor checks them.

    Its ``ValueError`` names a parameter; the ConfigError names that setting, its source and
    value (or, if the message names no setting that was given, every one that was).
    """
    cls = detector_class(settings.tick_kind)
    try:
        cls(**detector_kwargs(settings))
    except (ValueError, TypeError) as exc:
        message = " ".join(str(exc).split())
        given = sorted(settings.detector, key=len, reverse=True)
        named = [k for k in given if re.search(rf"\b{re.escape(k)}\b", message)]
        if not named and len(given) == 1:
            named = given  # the one setting given is the one at fault
        if named:
            name = f"detector.{named[0]}"
            raw = values[name][0]
            raise ConfigError(
                f"invalid setting {name} = {raw!r} (from {sources[name]}): {message}"
            ) from None
        shown = ", ".join(
            f"{name} = {values[name][0]!r} (from {sources[name]})"
            for name in sorted(f"detector.{k}" for k in settings.detector)
        )
        raise ConfigError(f"invalid [detector] settings {shown}: {message}") from None
