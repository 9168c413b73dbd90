"""The two detectors: :class:`RegimeDetector` on price ticks, :class:`EventDetector` on events.

Both run the same step (:mod:`streamgmm.regime.base`); each says how a tick becomes numbers
and which settings of the time rules it takes.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from streamgmm.regime import features, profile
from streamgmm.regime import layout as L
from streamgmm.regime.base import MAX_FEATURES, _Detector, takes_old_names

__all__ = ["EventDetector", "RegimeDetector"]


class RegimeDetector(_Detector):
    """Market regimes from price ticks: regime 0 is the calmest, ``n_regimes - 1`` the wildest.

    Parameters
    ----------
    n_regimes
        Number of regimes (hidden states), at most 8.
    dt_unit
        Seconds per time unit, or ``"auto"``: the median spacing of the warm-up's ticks.
    gap_units
        Spacings above this many units are session gaps: their return is not evidence.
    min_dt_units
        Spacings below this many units count as this many when returns are scaled up.
    intraday_profile
        Divide returns by the learnt volatility of their half-hour of the UTC day, once that
        profile differs from flat beyond noise (time units below six hours only); see
        :mod:`streamgmm.regime.features`.
    profile_halflife
        Half-life, in days, of the intraday profile's sums.
    warmup
        Returns (events: feature vectors) buffered before the model starts; they set the time
        unit and the scale. Outputs have ``warm=False`` until then.
    alpha
        Exponent of the online-EM step ``(t + step_offset) ** -alpha`` after ``t`` ticks with
        evidence, in (0.5, 1]; smaller adapts faster.
    step_offset
        Offset ``t0`` of the online-EM step: early steps are ``(t0 + 1) ** -alpha`` rather
        than 1, so the first ticks cannot overwrite the start (``t + t0`` is taken as at least
        1, so no step exceeds 1).
    halflife
        Smallest online-EM step, as a half-life in ticks: the memory of a long-running model
        (``None``: no floor, the model converges).
    self_transition
        Prior probability of staying in a regime from one tick to the next (the transition
        matrix's diagonal).
    transition_prior
        Weight of that prior, in ticks.
    variance_prior
        Weight, in ticks, of the prior on the regime variances.
    prior_low
        Prior variance of the calmest regime, as a multiple of the pooled variance (regimes in
        between interpolate geometrically); also where the model starts.
    prior_high
        Prior variance of the wildest regime, as a multiple of the pooled variance.
    variance_floor
        Covariance floor, relative to the pooled variance.
    label_hysteresis
        Relative margin by which the variance ranking of regimes must be inverted before the
        labels change.
    drift_threshold
        Page-Hinkley threshold of the drift monitor, in reference standard deviations of
        accumulated shortfall; an alarm fires above it.
    drift_delta
        Slack per tick of the drift monitor: a sustained shortfall smaller than this many
        reference standard deviations is tolerated.
    drift_clip
        Largest surprise one tick contributes to drift, in reference standard deviations.
    drift_reference_halflife
        Half-life, in ticks, of the drift monitor's reference mean and variance.
    drift_min_instances
        Ticks after the warm-up (and after each alarm) before a drift alarm is possible.
    drift_halflife
        Half-life, in ticks, of ``mean_log_likelihood`` (dashboards).

    Examples
    --------
    >>> from streamgmm.synthetic import switching_stream
    >>> stream = switching_stream(seed=3, n=1500)
    >>> det = RegimeDetector()
    >>> outputs = det.learn_predict_many(stream.ticks())
    >>> outputs[0]["warm"], outputs[50]["warm"]          # warm from the 51st tick
    (False, True)
    >>> sorted(outputs[-1])
    ['drift_detected', 'drift_score', 'log_likelihood', 'n_samples_seen', 'probabilities', \
'raw_probabilities', 'regime', 'warm']
    >>> labels = [o["regime"] for o in outputs[50:]]
    >>> accuracy = sum(a == b for a, b in zip(labels, stream.regime[50:])) / len(labels)
    >>> bool(accuracy > 0.9)
    True
    >>> det.covariances_[:, 0, 0] ** 0.5 / det.covariances_[0, 0, 0] ** 0.5 > [0.9, 2]
    array([ True,  True])
    """

    _KIND = "RegimeDetector"
    _FEATURE_KIND = L.TICKS

    def __init__(
        self,
        n_regimes: int = 2,
        *,
        dt_unit: float | str = "auto",
        gap_units: float = 4.0,
        min_dt_units: float = 0.1,
        intraday_profile: bool = True,
        profile_halflife: float = 20.0,
        warmup: int = 50,
        alpha: float = 0.85,
        step_offset: float = 100.0,
        halflife: float | None = 5000.0,
        self_transition: float = 0.98,
        transition_prior: float = 20.0,
        variance_prior: float = 100.0,
        prior_low: float = 0.35,
        prior_high: float = 3.5,
        variance_floor: float = 0.01,
        label_hysteresis: float = 0.1,
        drift_threshold: float = 20.0,
        drift_delta: float = 0.5,
        drift_clip: float = 4.0,
        drift_reference_halflife: float = 500.0,
        drift_min_instances: int = 30,
        drift_halflife: float = 20.0,
    ) -> None:
        self._store_params(locals())
        self._build(n_regimes, 1, locals())
        features.settings(
            self._buf, dt_unit=dt_unit, gap_units=gap_units, min_dt_units=min_dt_units
        )
        profile.settings(
            self._buf, intraday_profile=intraday_profile, profile_halflife=profile_halflife
        )

    @property
    def time_unit_(self) -> float:
        """The time unit in seconds (``dt_unit``, or the warm-up's median spacing)."""
        if not self.warm:
            raise AttributeError("the time unit is set at the end of the warm-up")
        return float(self._buf[L.UNIT])

    def _value_names(self) -> list[str]:
        return ["price"]

    def _read(self, tick: Mapping[str, Any]) -> tuple[float, ...]:
        t = tick.get("ts")
        p = tick.get("price")
        if type(t) is not float:
            t = features.check_number(tick, "ts")
        if type(p) is not float:
            p = features.check_number(tick, "price")
        v = tick.get("volume")
        if v is not None and not (type(v) is float and v >= 0.0 and v - v == 0.0):
            features.read_volume(tick)
        return t, p


@takes_old_names
class EventDetector(_Detector):
    """Regimes of numeric event streams; regime 0 has the smallest (standardised) variance.

    The same model as :class:`RegimeDetector`, on the chosen fields as they are: its keyword
    arguments from ``warmup`` to ``drift_halflife`` are :class:`RegimeDetector`'s model
    settings, with the same defaults and meaning (documented there once; an event's feature
    vector stands where a return does). A test holds the two signatures equal.
    ``n_components`` is the old name of ``n_regimes``: still taken, with a DeprecationWarning.

    Parameters
    ----------
    fields
        Numeric tick fields the model sees, as they are (at most 16).
    n_regimes
        Number of regimes (hidden states), at most 8.

    Examples
    --------
    >>> import random
    >>> rng = random.Random(0)
    >>> det = EventDetector(["latency"])
    >>> for t in range(400):                 # quiet 10 ms, busy 50 ms from tick 200
    ...     busy = t >= 200
    ...     latency = rng.gauss(50, 10) if busy else rng.gauss(10, 1)
    ...     out = det.learn_predict_one({"ts": float(t), "latency": latency})
    >>> out["regime"], out["n_samples_seen"], det.warm
    (1, 400, True)
    """

    _KIND = "EventDetector"
    _FEATURE_KIND = L.EVENTS
    _RENAMED: ClassVar[Mapping[str, str]] = {"n_components": "n_regimes"}
    fields: list[str]
    n_regimes: int

    def __init__(
        self,
        fields: Sequence[str],
        n_regimes: int = 2,
        *,
        warmup: int = 50,
        alpha: float = 0.85,
        step_offset: float = 100.0,
        halflife: float | None = 5000.0,
        self_transition: float = 0.98,
        transition_prior: float = 20.0,
        variance_prior: float = 100.0,
        prior_low: float = 0.35,
        prior_high: float = 3.5,
        variance_floor: float = 0.01,
        label_hysteresis: float = 0.1,
        drift_threshold: float = 20.0,
        drift_delta: float = 0.5,
        drift_clip: float = 4.0,
        drift_reference_halflife: float = 500.0,
        drift_min_instances: int = 30,
        drift_halflife: float = 20.0,
    ) -> None:
        names = list(fields) if isinstance(fields, list | tuple) else None
        if (
            not names
            or len(names) > MAX_FEATURES
            or not all(isinstance(f, str) and f for f in names)
            or len(set(names)) != len(names)
            or "ts" in names
        ):
            raise ValueError(
                f"fields must be 1 to {MAX_FEATURES} distinct non-empty names other than 'ts', "
                f"got {fields!r}"
            )
        self._store_params({**locals(), "fields": names})
        self._build(n_regimes, len(names), locals())

    @property
    def n_components(self) -> int:
        """The old name of :attr:`n_regimes` (deprecated)."""
        warnings.warn(
            "EventDetector.n_components is deprecated: use n_regimes",
            DeprecationWarning,
            stacklevel=2,
        )
        return self.n_regimes

    def _value_names(self) -> list[str]:
        return self.fields

    def _read(self, tick: Mapping[str, Any]) -> tuple[float, ...]:
        t = tick.get("ts")
        if type(t) is not float:
            t = features.check_number(tick, "ts")
        values = [t]
        for name in self.fields:
            v = tick.get(name)
            values.append(v if type(v) is float else features.check_number(tick, name))
        return tuple(values)
