"""The two detectors: :class:`RegimeDetector` on price ticks, :class:`EventDetector` on events.

Both run the same step (:mod:`streamgmm.regime.base`); each says how a tick becomes numbers
and which settings of the time rules it takes.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any

from streamgmm.regime import features, profile
from streamgmm.regime import layout as L
from streamgmm.regime.base import _Detector, takes_old_names
from streamgmm.regime.params import EventSettings, MarketSettings, documented

__all__ = ["EventDetector", "RegimeDetector"]


@documented
class RegimeDetector(_Detector, MarketSettings):
    """Market regimes from price ticks: regime 0 is the calmest, ``n_regimes - 1`` the wildest.

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

    def __post_init__(self) -> None:
        super().__post_init__()
        features.settings(self._buf, self)
        profile.settings(self._buf, self)

    def _n_features(self) -> int:
        return 1

    @property
    def time_unit_(self) -> float:
        """The time unit in seconds (``dt_unit``, or the warm-up's median spacing)."""
        if not self.warm:
            raise AttributeError("the time unit is set at the end of the warm-up")
        return float(self._buf[L.UNIT])

    def _value_names(self) -> Sequence[str]:
        return ("price",)

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
@documented
class EventDetector(_Detector, EventSettings):
    """Regimes of numeric event streams; regime 0 has the smallest (standardised) variance.

    The same model as :class:`RegimeDetector`, on the chosen fields as they are: its settings
    from ``n_regimes`` to ``drift_halflife`` are :class:`RegimeDetector`'s model settings, the
    same declaration (:class:`~streamgmm.regime.params.ModelSettings`); an event's feature
    vector stands where a return does. ``n_components`` is the old name of ``n_regimes``:
    still taken, with a DeprecationWarning.

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

    def _n_features(self) -> int:
        return len(self.fields)

    @property
    def n_components(self) -> int:
        """The old name of :attr:`n_regimes` (deprecated)."""
        warnings.warn(
            "EventDetector.n_components is deprecated: use n_regimes",
            DeprecationWarning,
            stacklevel=2,
        )
        return self.n_regimes

    def _value_names(self) -> Sequence[str]:
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
