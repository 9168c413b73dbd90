"""The detectors' settings, each declared once: name, type, default, bounds, meaning, and which
detectors take it.

Each setting is one field of a frozen dataclass here, made with :func:`setting`: the field gives
its name and type, :func:`setting` its default, its bounds (or the words it takes besides
numbers) and what it means. The class it is declared in says which detectors take it:

- :class:`Shape`: the number of regimes and the warm-up, which both detectors take;
- :class:`ForecastSettings`: the market detector's forecast (the value at risk's level);
- :class:`ModelSettings`: the event detector's hidden Markov model, labels and drift;
- :class:`TimeRules`: the time rules and the intraday profile of price ticks;
- :class:`EventFields`: the fields an event detector reads;
- :class:`MarketSettings` (:class:`~streamgmm.regime.RegimeDetector`) and :class:`EventSettings`
  (:class:`~streamgmm.regime.EventDetector`): what each detector takes. Each detector class
  extends its settings class, so these fields are its constructor's parameters, the ones type
  checkers, ``inspect.signature`` and river's ``clone`` see, and its parameters are read-only.

The rest is made from the fields: constructing a settings object checks every value against its
declaration (:class:`SettingError` names the setting), the detectors' ``Parameters``
documentation (:func:`documented`), the ``params`` of their stored state (:func:`values_of`),
:class:`~streamgmm.regime.LikelihoodDriftMonitor`'s settings (:func:`same_as`), and the service's
``[detector]`` section with configs/default.toml and the docs' table
(:mod:`streamgmm.settings.detector`). The stages only write the checked values into the
detector's buffer. This module does not import numba: the service reads its settings without
loading the model.

Adding a setting: one :func:`setting` line in the class of the detectors that take it, and the
line of the stage that writes it (its ``settings`` function, and its slot in
:mod:`streamgmm.regime.layout`).
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import textwrap
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import KW_ONLY, dataclass
from typing import Any, ClassVar, Literal, TypeVar

from streamgmm import _validate as V

__all__ = [
    "MAX_FEATURES",
    "MAX_REGIMES",
    "MAX_SETTING",
    "MAX_WARMUP",
    "DriftMonitorSettings",
    "EventFields",
    "EventSettings",
    "ForecastSettings",
    "MarketSettings",
    "ModelSettings",
    "Param",
    "SettingError",
    "Shape",
    "TimeRules",
    "documented",
    "params_of",
    "same_as",
    "setting",
    "values_of",
]

#: Caps on a detector's shape; they bound what a stored state can make ``from_state`` allocate.
MAX_REGIMES = 8
MAX_FEATURES = 16
MAX_WARMUP = 10_000
#: Bound on a model setting's magnitude (a half-life, a threshold): products of settings and
#: statistics stay finite below it.
MAX_SETTING = 1e12
#: Bounds on the prior weights (in ticks) and on the prior variance multipliers: beyond them
#: products of settings and statistics could overflow.
PRIOR_WEIGHT = 1e9
PRIOR_RATIO = 1e6

_KEY = "streamgmm.regime.params"  # the dataclass field metadata key of a declaration
_SAME_AS = "streamgmm.regime.params.same_as"  # ... and of the setting a field is declared as


class SettingError(ValueError):
    """A detector setting has a bad value; :attr:`setting` is its name."""

    def __init__(self, setting: str, message: str) -> None:
        super().__init__(message)
        self.setting = setting


@dataclass(frozen=True)
class _Declared:
    """What :func:`setting` declares besides the field's name, type and default."""

    text: str
    lo: float
    hi: float
    lo_open: bool
    also_none: float | None
    service: bool


@dataclass(frozen=True)
class Param:
    """One declared setting, as its field, its type and :func:`setting` give it."""

    name: str
    default: Any  # dataclasses.MISSING for a parameter without a default
    text: str
    kind: type | None  # int, float or bool; None: checked by its class's own rule (fields)
    optional: bool  # None is a value
    words: tuple[str, ...]  # the texts it takes besides numbers (``"auto"``)
    lo: float
    hi: float
    lo_open: bool
    #: A number a config file may write for None (an older spelling).
    also_none: float | None
    #: A ``[detector]`` setting of the service (``fields`` is ``[input] event_fields``).
    service: bool

    def check(self, value: Any, name: str | None = None) -> None:
        """Raise :class:`SettingError` unless ``value`` is of this setting's type and within
        its bounds; the message names the setting (as ``name``, if given) and the value."""
        where = name or self.name
        if self.kind is None or (value is None and self.optional):
            return
        if self.words and isinstance(value, str):
            if value in self.words:
                return
            expected = " or ".join(repr(word) for word in self.words)
            raise SettingError(self.name, f"{where} must be {expected} or a number, got {value!r}")
        try:
            if self.kind is bool:
                V.flag(where, value)
            elif self.kind is int:
                V.integer(where, value, lo=int(self.lo), hi=int(self.hi))
            else:
                V.number(where, value, lo=self.lo, hi=self.hi, lo_open=self.lo_open)
        except ValueError as exc:
            raise SettingError(self.name, str(exc)) from None


def setting(
    default: Any,
    text: str,
    *,
    lo: float = -math.inf,
    hi: float = math.inf,
    lo_open: bool = False,
    also_none: float | None = None,
) -> Any:
    """A field of a settings class, declared as a setting: its default, what it means (a
    sentence or two, with Markdown code), its bounds (``lo_open``: ``lo`` excluded) and, for
    a setting that may be None, the number a config file may also write for None."""
    return dataclasses.field(default=default, metadata=_declare(text, lo, hi, lo_open, also_none))


def _declare(
    text: str,
    lo: float = -math.inf,
    hi: float = math.inf,
    lo_open: bool = False,
    also_none: float | None = None,
    service: bool = True,
) -> dict[str, _Declared]:
    return {_KEY: _Declared(text, lo, hi, lo_open, also_none, service)}


@dataclass(frozen=True, eq=False)
class _Settings:
    """Settings declared with :func:`setting`, each checked when the object is made."""

    #: Old names of settings, still taken with a DeprecationWarning (old name -> new name).
    _RENAMED: ClassVar[Mapping[str, str]] = {}

    def __post_init__(self) -> None:
        for param in params_of(type(self)):
            param.check(getattr(self, param.name))
        self._check_together()

    def _check_together(self) -> None:
        """The rules beyond each setting's bounds (each class calls its bases' first)."""


@dataclass(frozen=True, eq=False, kw_only=True)
class TimeRules(_Settings):
    """The time rules and the intraday profile of price ticks (:class:`MarketSettings`)."""

    # fmt: off
    dt_unit: float | Literal["auto"] = setting(
        "auto", 'Seconds per time unit, or `"auto"`: the median spacing of the warm-up\'s ticks.',
        lo=1e-9, hi=MAX_SETTING,
    )
    gap_units: float = setting(
        2.0,
        "Spacings of at least this many units (and at least 2) are gaps (closures): their return "
        "is evidence, its variance scaled by a multiplier learnt per doubling of the gap's "
        "length.",
        lo=1.0, hi=MAX_SETTING,
    )
    min_dt_units: float = setting(
        0.1, "Spacings below this many units count as this many for the variance they carry.",
        lo=1e-9, hi=1.0,
    )
    intraday_profile: bool = setting(
        True,
        "Scale each return's variance by the learnt volatility of its half-hour of the UTC day "
        "(time units below six hours only); see `streamgmm.regime.clock`.",
    )
    profile_halflife: float = setting(
        60.0, "Half-life, in days, of the intraday profile's sums.", lo=1e-3, hi=1e6,
    )
    # fmt: on


@dataclass(frozen=True, eq=False)
class Shape(_Settings):
    """The number of regimes and the warm-up, which both detectors take."""

    # fmt: off
    n_regimes: int = setting(
        2,
        f"Number of regimes (hidden states), at most {MAX_REGIMES}; the market detector has "
        "two (calm and turbulent volatility).",
        lo=1, hi=MAX_REGIMES,
    )
    _: KW_ONLY
    warmup: int = setting(
        50,
        "Returns (events: feature vectors) buffered before the model starts; they set the time "
        "unit and the scale. Outputs have `warm=False` until then.",
        lo=2, hi=MAX_WARMUP,
    )
    # fmt: on


@dataclass(frozen=True, eq=False, kw_only=True)
class ForecastSettings(Shape):
    """The market detector's forecast settings (:class:`MarketSettings`)."""

    # fmt: off
    var_level: float = setting(
        0.99,
        "Confidence level of `value_at_risk`: the output is the predictive `1 - var_level` "
        "quantile of the next tick's log return.",
        lo=0.5, hi=1.0 - 1e-9, lo_open=True,
    )
    # fmt: on

    def _check_together(self) -> None:
        super()._check_together()
        if self.n_regimes != 2:
            raise SettingError(
                "n_regimes",
                "n_regimes must be 2 for market ticks (calm and turbulent), "
                f"got {self.n_regimes!r}",
            )


@dataclass(frozen=True, eq=False, kw_only=True)
class ModelSettings(Shape):
    """The event detector's model: an online Gaussian hidden Markov model, its labels and its
    drift monitor."""

    # fmt: off
    alpha: float = setting(
        0.85,
        "Exponent of the online-EM step `(t + step_offset) ** -alpha` after `t` ticks with "
        "evidence, in (0.5, 1]; smaller adapts faster.",
        lo=0.5, hi=1.0, lo_open=True,
    )
    step_offset: float = setting(
        100.0,
        "Offset `t0` of the online-EM step: early steps are `(t0 + 1) ** -alpha` rather than 1, "
        "so the first ticks cannot overwrite the start (`t + t0` is taken as at least 1, so no "
        "step exceeds 1).",
        lo=0.0, hi=MAX_SETTING,
    )
    halflife: float | None = setting(
        5000.0,
        "Smallest online-EM step, as a half-life in ticks: the memory of a long-running model "
        "(`None`: no floor, the model converges).",
        lo=1.0, hi=MAX_SETTING, also_none=0.0,
    )
    self_transition: float = setting(
        0.98,
        "Prior probability of staying in a regime from one tick to the next (the transition "
        "matrix's diagonal); below 1 with more than one regime.",
        lo=0.0, hi=1.0, lo_open=True,
    )
    transition_prior: float = setting(
        20.0, "Weight of that prior, in ticks.", lo=0.0, hi=PRIOR_WEIGHT,
    )
    variance_prior: float = setting(
        100.0, "Weight, in ticks, of the prior on the regime variances.",
        lo=0.0, hi=PRIOR_WEIGHT,
    )
    prior_low: float = setting(
        0.35,
        "Prior variance of the calmest regime, as a multiple of the pooled variance (regimes in "
        "between interpolate geometrically); also where the model starts.",
        lo=1.0 / PRIOR_RATIO, hi=PRIOR_RATIO,
    )
    prior_high: float = setting(
        3.5,
        "Prior variance of the wildest regime, as a multiple of the pooled variance; at least "
        "`prior_low`.",
        lo=1.0 / PRIOR_RATIO, hi=PRIOR_RATIO,
    )
    variance_floor: float = setting(
        0.01, "Covariance floor, relative to the pooled variance.", lo=0.0, hi=1.0, lo_open=True,
    )
    label_hysteresis: float = setting(
        0.1,
        "Relative margin by which the variance ranking of regimes must be inverted before the "
        "labels change.",
        lo=0.0, hi=MAX_SETTING,
    )
    drift_threshold: float = setting(
        20.0,
        "Page-Hinkley threshold of the drift monitor, in reference standard deviations of "
        "accumulated shortfall; an alarm fires above it.",
        lo=1e-9, hi=MAX_SETTING,
    )
    drift_delta: float = setting(
        0.5,
        "Slack per tick of the drift monitor: a sustained shortfall smaller than this many "
        "reference standard deviations is tolerated.",
        lo=0.0, hi=MAX_SETTING,
    )
    drift_clip: float = setting(
        4.0,
        "Largest surprise one tick contributes to drift, in reference standard deviations.",
        lo=1e-9, hi=MAX_SETTING,
    )
    drift_reference_halflife: float = setting(
        500.0, "Half-life, in ticks, of the drift monitor's reference mean and variance.",
        lo=1.0, hi=MAX_SETTING,
    )
    drift_min_instances: int = setting(
        30, "Ticks after the warm-up (and after each alarm) before a drift alarm is possible.",
        lo=0, hi=2**31,
    )
    drift_halflife: float = setting(
        20.0, "Half-life, in ticks, of `mean_log_likelihood` (dashboards).",
        lo=1.0, hi=MAX_SETTING,
    )
    # fmt: on

    def _check_together(self) -> None:
        super()._check_together()
        if self.n_regimes > 1 and self.self_transition >= 1.0:
            raise SettingError(
                "self_transition",
                f"self_transition must be below 1 with more than one regime, "
                f"got {self.self_transition!r}",
            )
        if self.prior_high < self.prior_low:
            raise SettingError(
                "prior_high",
                f"prior_high must be at least prior_low ({self.prior_low!r}), "
                f"got {self.prior_high!r}",
            )


@dataclass(frozen=True, eq=False)
class EventFields(_Settings):
    """The fields an event detector reads (:class:`EventSettings`)."""

    fields: Sequence[str] = dataclasses.field(
        metadata=_declare(
            f"Numeric tick fields the model sees, as they are (at most {MAX_FEATURES}).",
            service=False,  # the service's [input] event_fields
        )
    )

    def _check_together(self) -> None:
        super()._check_together()
        names = list(self.fields) if isinstance(self.fields, list | tuple) else None
        if (
            not names
            or len(names) > MAX_FEATURES
            or not all(isinstance(f, str) and f for f in names)
            or len(set(names)) != len(names)
            or "ts" in names
        ):
            raise SettingError(
                "fields",
                f"fields must be 1 to {MAX_FEATURES} distinct non-empty names other than 'ts', "
                f"got {self.fields!r}",
            )
        object.__setattr__(self, "fields", names)  # kept as a list


# Field order is the reverse of the classes' order (dataclasses collect fields base first), and
# a constructor takes the positional fields first: (n_regimes, *, time rules, model settings)
# and (fields, n_regimes, *, model settings).
@dataclass(frozen=True, eq=False)
class MarketSettings(ForecastSettings, TimeRules):
    """What :class:`~streamgmm.regime.RegimeDetector` takes: the forecast's settings and the
    time rules of price ticks."""


@dataclass(frozen=True, eq=False)
class EventSettings(ModelSettings, EventFields):
    """What :class:`~streamgmm.regime.EventDetector` takes: its fields and the model's
    settings."""

    _RENAMED: ClassVar[Mapping[str, str]] = {"n_components": "n_regimes"}


def same_as(name: str) -> Any:
    """A field declared as :class:`ModelSettings`' setting ``name`` (its default, bounds and
    meaning) under another name: the standalone drift monitor's settings."""
    field = ModelSettings.__dataclass_fields__[name]
    return dataclasses.field(default=field.default, metadata={**field.metadata, _SAME_AS: name})


@dataclass(frozen=True, eq=False)
class DriftMonitorSettings(_Settings):
    """What :class:`~streamgmm.regime.LikelihoodDriftMonitor` takes: the detectors' drift
    settings, named without their ``drift_`` prefix."""

    threshold: float = same_as("drift_threshold")
    delta: float = same_as("drift_delta")
    clip: float = same_as("drift_clip")
    reference_halflife: float = same_as("drift_reference_halflife")
    min_instances: int = same_as("drift_min_instances")
    halflife: float = same_as("drift_halflife")

    @classmethod
    def of(cls, model: ModelSettings) -> DriftMonitorSettings:
        """The drift settings among a detector's ``model`` settings."""
        return cls(
            **{f.name: getattr(model, f.metadata[_SAME_AS]) for f in dataclasses.fields(cls)}
        )


# -- reading the declarations ---------------------------------------------------------------------


def _kind(hint: Any, where: str) -> tuple[type | None, bool, tuple[str, ...]]:
    """(value type, None allowed, words) of a setting with type hint ``hint``."""
    if hint in (int, float, bool):
        return hint, False, ()
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (types.UnionType, typing.Union):
        numbers = [a for a in args if a in (int, float)]
        words = [w for a in args if typing.get_origin(a) is Literal for w in typing.get_args(a)]
        rest = [a for a in args if a not in numbers and typing.get_origin(a) is not Literal]
        if (
            len(numbers) == 1
            and set(rest) <= {type(None)}
            and all(isinstance(w, str) for w in words)
        ):
            return numbers[0], type(None) in rest, tuple(words)
    if typing.get_origin(hint) is Sequence and args == (str,):
        return None, False, ()  # names, checked by their class's own rule
    raise TypeError(f"setting {where} has type {hint!r}: a setting is an int, a float or a bool")


_PARAMS: dict[type, tuple[Param, ...]] = {}
_NAMES: dict[type, tuple[str, ...]] = {}


def params_of(cls: type) -> tuple[Param, ...]:
    """The settings ``cls`` (a settings class, or a detector extending one) takes, in the order
    of its constructor's parameters: the positional ones, then the keyword-only ones."""
    params = _PARAMS.get(cls)
    if params is None:
        params = _PARAMS[cls] = _read_params(cls)
    return params


def _read_params(cls: type) -> tuple[Param, ...]:
    fields = [f for f in dataclasses.fields(cls) if _KEY in f.metadata]
    hints: dict[str, Any] = {}
    for owner in reversed(cls.__mro__):
        if "__dataclass_params__" in owner.__dict__:  # a settings class, not a detector
            hints.update(typing.get_type_hints(owner))
    params = []
    for field in sorted(fields, key=lambda f: bool(f.kw_only)):
        declared: _Declared = field.metadata[_KEY]
        kind, optional, words = _kind(hints[field.name], f"{cls.__name__}.{field.name}")
        params.append(
            Param(
                field.name,
                field.default,
                declared.text,
                kind,
                optional,
                words,
                declared.lo,
                declared.hi,
                declared.lo_open,
                declared.also_none,
                declared.service,
            )
        )
    return tuple(params)


def values_of(settings: _Settings) -> dict[str, Any]:
    """The settings' values by name, in the constructor's order (a detector's ``params``)."""
    cls = type(settings)
    names = _NAMES.get(cls)
    if names is None:
        names = _NAMES[cls] = tuple(param.name for param in params_of(cls))
    return {name: getattr(settings, name) for name in names}


_S = TypeVar("_S", bound=type)


def documented(cls: _S) -> _S:
    """Add a numpydoc ``Parameters`` section, made from the declarations, to ``cls``'s docstring
    (before its ``Examples``)."""
    lines = ["Parameters", "----------"]
    for param in params_of(cls):
        lines.append(param.name)
        lines += textwrap.wrap(param.text, 92, initial_indent="    ", subsequent_indent="    ")
    doc = inspect.cleandoc(cls.__doc__ or "")
    head, sep, tail = doc.partition("\nExamples\n--------\n")
    section = "\n".join(lines)
    cls.__doc__ = f"{head.rstrip()}\n\n{section}\n{sep}{tail}" if sep else f"{doc}\n\n{section}\n"
    return cls
