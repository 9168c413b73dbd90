"""The ``[detector]`` settings: the detectors' own declaration, read as service settings.

Each detector setting is declared once, with the detectors (:mod:`streamgmm.regime.params`):
its name, type, default, bounds, meaning and which detectors take it. Here each becomes a
:class:`~streamgmm.settings.spec.Spec` of section ``[detector]`` (:func:`detector_specs`),
whose parser reads a file's, an environment variable's or a flag's value and checks it against
the declaration; :func:`check_detector` then checks the rules that involve more than one
setting. Neither imports numba. :attr:`Settings.detector <streamgmm.settings.service.Settings>`
holds only the settings that were given, and the detector's defaults apply to the others
(:func:`detector_kwargs`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from streamgmm.regime.output import default_regime_names
from streamgmm.regime.params import (
    EventSettings,
    MarketSettings,
    Param,
    SettingError,
    params_of,
)
from streamgmm.settings.parsers import Invalid, boolean, integer, number
from streamgmm.settings.service import Settings
from streamgmm.settings.spec import ConfigError, Spec, toml_value

__all__ = [
    "check_detector",
    "check_regime_names",
    "detector_class",
    "detector_kwargs",
    "detector_specs",
]

#: The settings of the detector each ``[input] tick_kind`` runs, and that detector's class.
_SETTINGS: dict[str, type] = {"market": MarketSettings, "event": EventSettings}
_DETECTORS = {"market": "RegimeDetector", "event": "EventDetector"}
#: Detector parameters that other settings supply.
_SET_ELSEWHERE = {"fields": "input.event_fields"}


def detector_class(tick_kind: str) -> type:
    """The detector class ``[input] tick_kind`` selects (imports the model: numba, river)."""
    from streamgmm import regime

    detector: type = getattr(regime, _DETECTORS["event" if tick_kind == "event" else "market"])
    return detector


def _parser(param: Param) -> Callable[[object], object]:
    """A value of ``param`` as a file, the environment or a flag writes it, checked."""
    read: Callable[[object], Any] = number
    if param.kind is bool:
        read = boolean
    elif param.kind is int:
        read = integer()

    def parse(raw: object) -> object:
        text = raw.strip() if isinstance(raw, str) else raw
        if param.optional and (
            text is None or (isinstance(text, str) and text.lower() in ("", "none"))
        ):
            return None
        if isinstance(text, str) and text in param.words:
            return text
        try:
            value = read(raw)
        except Invalid:
            if param.words:
                words = " or ".join(repr(word) for word in param.words)
                raise Invalid(f"expected {words} or a number") from None
            raise
        if param.also_none is not None and value == param.also_none:
            return None
        try:
            param.check(value)
        except SettingError as exc:
            raise Invalid(str(exc)) from None
        return value

    return parse


def _doc(param: Param) -> str:
    """The setting's meaning, with which tick kinds it applies to and its spelling of None."""
    notes = []
    if param.also_none is not None:
        notes.append(f"{toml_value(param.also_none)} also means None.")
    kinds = [kind for kind, cls in _SETTINGS.items() if param.name in _names(cls)]
    if len(kinds) < len(_SETTINGS):
        notes.append(f"{' and '.join(kinds).capitalize()} ticks only.")
    return " ".join([param.text, *notes])


def _names(cls: type) -> set[str]:
    return {param.name for param in params_of(cls)}


@functools.cache
def detector_specs() -> tuple[Spec, ...]:
    """The ``[detector]`` settings: every setting a detector takes, in the order of the market
    detector's parameters, then those of the event detector only."""
    params = {p.name: p for cls in _SETTINGS.values() for p in params_of(cls) if p.service}
    return tuple(
        Spec(
            "detector",
            name,
            f"detector.{name}",
            _parser(param),
            "" if param.default is None else param.default,
            _doc(param),
        )
        for name, param in params.items()
    )


def detector_kwargs(settings: Settings) -> dict[str, Any]:
    """Keyword arguments of the detector ``settings.tick_kind`` selects: the ``[detector]``
    settings that were given and that it takes, plus ``fields`` (``[input] event_fields``) for
    event ticks. Settings left unset take the detector's defaults."""
    kind = "event" if settings.tick_kind == "event" else "market"
    takes = _names(_SETTINGS[kind])
    kwargs = {name: value for name, value in settings.detector.items() if name in takes}
    if "fields" in takes:
        kwargs["fields"] = list(settings.event_fields)
    return kwargs


def check_detector(
    settings: Settings, sources: Mapping[str, str], values: Mapping[str, tuple[object, str]]
) -> None:
    """Check the rules that involve more than one of the detector's settings (each value was
    checked alone when it was read), without building the detector.

    Raises
    ------
    ConfigError
        Naming the setting at fault, where its value came from (``defaults`` when it was left
        unset) and the value.
    """
    kind = "event" if settings.tick_kind == "event" else "market"
    try:
        _SETTINGS[kind](**detector_kwargs(settings))
    except SettingError as exc:
        name = _SET_ELSEWHERE.get(exc.setting, f"detector.{exc.setting}")
        if name in values:
            raw, source = values[name][0], sources[name]
        else:
            raw = next(p.default for p in params_of(_SETTINGS[kind]) if p.name == exc.setting)
            source = "defaults"
        raise ConfigError(f"invalid setting {name} = {raw!r} (from {source}): {exc}") from None


def check_regime_names(
    settings: Settings, sources: Mapping[str, str], values: Mapping[str, tuple[object, str]]
) -> Settings:
    """``settings`` with ``regime_names`` filled in: the given names, one per regime, or the
    default names (:func:`~streamgmm.regime.output.default_regime_names`) when none are given.

    Raises
    ------
    ConfigError
        When the number of names is not ``detector.n_regimes``.
    """
    kind = "event" if settings.tick_kind == "event" else "market"
    n_regimes = int(_SETTINGS[kind](**detector_kwargs(settings)).n_regimes)
    names = settings.regime_names
    if not names:
        return replace(settings, regime_names=default_regime_names(n_regimes))
    if len(names) != n_regimes:
        name = "output.regime_names"
        raw, source = values[name][0], sources[name]
        raise ConfigError(
            f"invalid setting {name} = {raw!r} (from {source}): {len(names)} names for "
            f"{n_regimes} regimes (detector.n_regimes); give one name per regime"
        )
    return settings
