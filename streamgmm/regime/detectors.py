"""The two detectors: :class:`RegimeDetector` on price ticks, :class:`EventDetector` on events.

Both go through the same Python face (:mod:`streamgmm.regime.base`); each says how a tick
becomes numbers, builds its buffer and names its compiled step: the forecaster's
(:mod:`streamgmm.regime.forecast`) for price ticks, the online hidden Markov model's
(:mod:`streamgmm.regime.step`) for events.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from streamgmm.mixture import layout as mx
from streamgmm.regime import drift, features, level, volatility
from streamgmm.regime import layout as L
from streamgmm.regime import state as snapshot
from streamgmm.regime.base import _Detector, takes_old_names
from streamgmm.regime.forecast import market_run
from streamgmm.regime.params import EventSettings, MarketSettings, documented, values_of

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
'raw_probabilities', 'regime', 'value_at_risk', 'volatility', 'warm']
    >>> labels = [o["regime"] for o in outputs[50:]]
    >>> accuracy = sum(a == b for a, b in zip(labels, stream.regime[50:])) / len(labels)
    >>> bool(accuracy > 0.9)
    True
    >>> det.covariances_[:, 0, 0] ** 0.5 / det.covariances_[0, 0, 0] ** 0.5 > [0.9, 2]
    array([ True,  True])
    """

    _KIND = "RegimeDetector"
    _FEATURE_KIND = L.TICKS

    def _build(self) -> None:
        buf = L.new_market_buffer(self.warmup)
        buf[L.M_DT_UNIT] = 0.0 if self.dt_unit == "auto" else self.dt_unit
        buf[L.M_GAP_UNITS] = self.gap_units
        buf[L.M_MIN_DT] = self.min_dt_units
        buf[L.M_PROFILE] = 1.0 if self.intraday_profile else 0.0
        buf[L.M_PROFILE_HALFLIFE] = self.profile_halflife
        buf[L.M_VAR_Z] = _normal_quantile(1.0 - self.var_level)
        buf[L.M_NEXT_SD] = np.nan
        buf[L.M_NEXT_VAR] = np.nan
        self._buf = buf
        self._k = 2
        self._d = 1
        self._width = L.market_row_width()
        self._step = market_run
        self._slots = _MARKET_SLOTS

    @property
    def time_unit_(self) -> float:
        """The time unit in seconds (``dt_unit``, or the warm-up's median spacing): the
        horizon of ``volatility`` and ``value_at_risk``."""
        if not self.warm:
            raise AttributeError("the time unit is set at the end of the warm-up")
        return float(self._buf[L.M_UNIT])

    @property
    def drift_score(self) -> float:
        """The drift monitor's score (its CUSUM over the threshold); an alarm fires above 1."""
        return float(self._buf[L.M_CUSUM]) / drift.PIT_THRESHOLD

    @property
    def regime_order(self) -> list[int] | None:
        """``regime_order[r]`` is the filter's state shown as regime ``r``; None before
        warm-up."""
        return level.order(self._buf) if self.warm else None

    @property
    def transition_matrix_(self) -> np.ndarray:
        """Transition probabilities of the level filter, shape (2, 2), in regime order."""
        self._fitted()
        b = self._buf
        a = np.array([[b[L.M_T00], b[L.M_T01]], [b[L.M_T10], b[L.M_T11]]])
        order = level.order(b)
        return a[np.ix_(order, order)]

    @property
    def level_means_(self) -> np.ndarray:
        """Each regime's mean volatility level (half the log of the forecast variance over
        its long-run value), shape (2,), in regime order: calm first."""
        self._fitted()
        b = self._buf
        return np.array([b[L.M_MU0], b[L.M_MU1]])[level.order(b)]

    @property
    def means_(self) -> np.ndarray:
        """The predictive mean of a tick's log return (one time unit), shape (2, 1): the same
        for both regimes (the regimes differ in volatility)."""
        self._fitted()
        b = self._buf
        gjr, eg = L.MARKET.view(b, L.GJR), L.MARKET.view(b, L.EGARCH)
        w, _ = volatility.pool_weight(b[L.M_LOG_W_GJR], b[L.M_LOG_W_EG])
        mean = (w * gjr[L.VTHETA + 4] + (1 - w) * eg[L.VTHETA + 4]) * b[L.M_SCALE] / 100.0
        return np.full((2, 1), mean)

    @property
    def covariances_(self) -> np.ndarray:
        """Each regime's typical variance of a tick's log return (one time unit), shape
        (2, 1, 1), in regime order: the long-run variance scaled by the regime's mean level."""
        self._fitted()
        b = self._buf
        gjr, eg = L.MARKET.view(b, L.GJR), L.MARKET.view(b, L.EGARCH)
        w, _ = volatility.pool_weight(b[L.M_LOG_W_GJR], b[L.M_LOG_W_EG])
        long_run = (w * gjr[L.VV] + (1 - w) * eg[L.VV]) * (b[L.M_SCALE] / 100.0) ** 2
        return (long_run * np.exp(2.0 * self.level_means_)).reshape(2, 1, 1)

    def to_state(self) -> dict[str, Any]:
        """Versioned, JSON-safe state: settings, counters, each stage's part."""
        return snapshot.market_to_state(self._buf, self._KIND, values_of(self))

    def _load(self, state: Mapping[str, Any]) -> None:
        snapshot.market_load(self._buf, state)

    def _value_names(self) -> Sequence[str]:
        return ("price",)

    def _read_fields(self, ts: Any, fields: Mapping[str, Any]) -> tuple[float, ...]:
        p = fields.get("price")
        v = fields.get("volume")
        if (
            type(ts) is float
            and type(p) is float
            and (v is None or (type(v) is float and v >= 0.0 and v - v == 0.0))
        ):
            return ts, p  # the usual tick, read as _read reads it
        return self._read({"ts": ts, **fields})

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

    def _build(self) -> None:
        self._build_hmm(len(self.fields), self)

    @property
    def drift_score(self) -> float:
        """The drift monitor's score; an alarm fires at 1."""
        return float(self._buf[L.DRIFT_SCORE])

    @property
    def regime_order(self) -> list[int] | None:
        """``regime_order[r]`` is the model state shown as regime ``r``; None before warm-up."""
        if not self.warm:
            return None
        return [int(v) for v in L.regions(self._buf)["order"]]

    def _regime_order(self) -> np.ndarray:
        self._fitted()
        return L.regions(self._buf)["order"].astype(int)

    @property
    def transition_matrix_(self) -> np.ndarray:
        """Estimated transition probabilities between regimes, shape (K, K), in regime order."""
        order = self._regime_order()
        a = L.regions(self._buf)["transitions"].reshape(self._k, self._k)
        return a[np.ix_(order, order)].copy()

    @property
    def means_(self) -> np.ndarray:
        """Regime means of the features in their own units, shape (K, D), in regime order."""
        order = self._regime_order()
        r = L.regions(self._buf)
        means = mx.regions(L.mixture(self._buf))["means"].reshape(self._k, self._d)
        return (means * r["scale"] + r["loc"])[order]

    @property
    def covariances_(self) -> np.ndarray:
        """Regime covariances in the features' units (floor included), shape (K, D, D)."""
        order = self._regime_order()
        r = L.regions(self._buf)
        regions = mx.regions(L.mixture(self._buf))
        factor = regions["factor"].reshape(self._k, self._d, self._d)
        cov = factor @ np.swapaxes(factor, 1, 2)
        scale = r["scale"]
        return (cov * np.outer(scale, scale))[order]

    def to_state(self) -> dict[str, Any]:
        """Versioned, JSON-safe state: settings, features, model statistics, drift, last output."""
        return snapshot.to_state(self._buf, self._KIND, values_of(self))

    def _load(self, state: Mapping[str, Any]) -> None:
        snapshot.load(self._buf, state)

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


def _normal_quantile(p: float) -> float:
    """The standard normal quantile at ``p`` (for the value at risk's level)."""
    from statistics import NormalDist

    return NormalDist().inv_cdf(p)


#: Where the market step keeps the counters the views read.
_MARKET_SLOTS = {
    "phase": L.M_PHASE,
    "n_seen": L.M_N_SEEN,
    "n_duplicates": L.M_N_DUPLICATES,
    "n_out_of_order": L.M_N_OUT_OF_ORDER,
    "n_gaps": L.M_N_GAPS,
    "n_label_changes": L.M_N_LABEL_CHANGES,
    "n_drifts": L.M_N_DRIFTS,
    "mean_ll": L.M_MEAN_LL,
}
