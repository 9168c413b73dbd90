"""Drift: is the model still explaining the stream?

Two monitors live here: the market detector's CUSUM on its forecast's probability integral
transform (:func:`pit_update`, below) and the event detector's likelihood monitor.

The market detector's drift
---------------------------
:class:`~streamgmm.regime.RegimeDetector` scores each return under the predictive made before
it; ``z`` is the normal score of where the return fell in that predictive (its probability
integral transform), standard normal while the forecast is calibrated. The CUSUM
``S <- max(0, S + min(z^2, 8) - 1.25)`` raises ``drift_detected`` at ``S > 30`` and starts
again; ``drift_score`` is ``S / 30``. An alarm means: for longer than the forecaster's own
volatility dynamics explain, returns were larger than its predictive allowed, so its
``value_at_risk`` is too shallow for now. A rise in volatility that the forecast follows within
a few weeks is not an alarm (it shows as the turbulent regime): a slower reference (the
long-run variance, or a slower predictive) would flag such breaks, but it also flags the
bursts of stationary GARCH-type streams, more than 1e-4 a tick (docs/regime.md, "Drift and
volatility breaks"; ``benchmarks/drift_alternatives.py``).

The likelihood monitor
----------------------
:class:`LikelihoodDriftMonitor` receives per tick the model's log-likelihood of that tick
(computed *before* the model learns it) and the log-likelihood the model itself expects, and
raises ``drift_detected`` when the first falls persistently short of the second. It is the
last stage of the detectors' step (:mod:`streamgmm.regime.step`), which feeds it every tick's
excess from the model; this class runs the same compiled monitor alone.

How the signal is built
-----------------------
In a turbulent regime every tick is less likely than in a calm one, so the raw log-likelihood
would "drift" at every regime switch. The detectors therefore pass the *regime-conditional*
log-likelihood ``sum_k P(k) log g_k(x)`` and its model expectation ``-sum_k P(k) H_k`` (minus
each Gaussian regime's entropy): their difference, the excess, has mean zero in every regime
when the model is right, and falls when ticks arrive that no regime explains.

1. A slow **reference**, an exponentially weighted mean and variance of the excess
   (half-life ``reference_halflife`` ticks), starts at the model's own expectation (mean 0,
   variance 1/2 per dimension, worth 50 ticks), so the monitor works from the first tick.
2. Each tick's surprise ``z = (reference mean - excess) / reference sd`` uses the reference
   *before* it absorbs the tick, clipped to ``[-clip, clip]`` so that one extreme tick (a crash
   day) cannot raise an alarm alone.
3. Page-Hinkley on ``z``, exactly as ``river.drift.PageHinkley(mode="up")`` computes it: the
   faded sum of ``z - mean(z) - delta`` minus its running minimum (only a falling likelihood is
   drift). ``drift_score`` is that divided by ``threshold``, so the alarm fires above 1 (once
   ``min_instances`` ticks were seen since the last alarm); the test then starts over.
4. ``mean_log_likelihood`` is a bias-corrected EWMA of the log-likelihood (half-life
   ``halflife`` ticks), for dashboards.

Page-Hinkley is written here (compiled) rather than taken from ``river.drift``: the detectors
run it inside their compiled step, and their stored state must not depend on a library's
private attributes. ``tests/test_drift.py`` holds it equal to river's PageHinkley on the same
inputs.

Owns the settings ``DRIFT_THRESHOLD``, ``DRIFT_DELTA``, ``DRIFT_CLIP``, ``DRIFT_MIN``,
``PH_RUNNING``, ``DRIFT_DECAY``, ``MEAN_DECAY`` and the state slots from ``REF_MEAN`` to
``N_DRIFTS`` of :mod:`streamgmm.regime.layout`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
from river import base

from streamgmm import _validate as V
from streamgmm._numeric import TINY, hot, jit
from streamgmm.regime.layout import (
    DRIFT_CLIP,
    DRIFT_DECAY,
    DRIFT_DELTA,
    DRIFT_MIN,
    DRIFT_SCORE,
    DRIFT_SEEN,
    DRIFT_THRESHOLD,
    M_CUSUM,
    M_N_DRIFTS,
    MEAN_DECAY,
    MEAN_LL,
    MEAN_LL_WEIGHT,
    N_DRIFTS,
    PH_MEAN,
    PH_MIN,
    PH_N,
    PH_RESET,
    PH_RUNNING,
    PH_SUM,
    REF_MEAN,
    REF_VAR,
    REF_WEIGHT,
    TICKS,
    new_buffer,
)
from streamgmm.regime.params import DriftMonitorSettings, documented, params_of, values_of

__all__ = [
    "LikelihoodDriftMonitor",
    "drift_run",
    "from_state",
    "page_hinkley_run",
    "settings",
    "to_state",
    "track_log_likelihood",
    "update",
]

#: Page-Hinkley's forgetting factor (river's default).
PH_ALPHA = 1.0 - 1e-4
#: Drift inputs are clamped to this magnitude (far beyond any surprise that is not absurd).
EXCESS_BOUND = 1e12
#: Prior weight (in ticks) of the drift reference's starting point, the model's own
#: expectation: mean 0 and variance D/2 of the excess.
DRIFT_PRIOR_WEIGHT = 50.0


# -- the monitor (compiled) -----------------------------------------------------------------------


@hot
def _page_hinkley(buf, x):
    """Page-Hinkley (mode "up") on ``x``; returns True on an alarm.

    ``sum = alpha * sum + (x - centre) - delta``; an alarm needs ``min_instances`` updates since
    the last one and ``sum - min(sum) > threshold``, and the next update starts over. With
    PH_RUNNING the centre is the running mean since that start: exactly
    ``river.drift.PageHinkley.update`` (tests/test_drift.py holds them equal). The detectors
    centre on 0 instead, because their input is already standardised against a slow
    reference: a running mean over the few ticks since a start would absorb a change that
    comes soon after it. The minimum starts at the first sum rather than at infinity, so the
    state stays finite JSON.
    """
    if buf[PH_RESET] != 0.0:
        buf[PH_RESET] = 0.0
        buf[PH_N] = 0.0
        buf[PH_MEAN] = 0.0
        buf[PH_SUM] = 0.0
        buf[PH_MIN] = 0.0
    buf[PH_N] += 1.0
    if buf[PH_RUNNING] != 0.0:
        buf[PH_MEAN] += (1.0 / buf[PH_N]) * (x - buf[PH_MEAN])
    buf[PH_SUM] = PH_ALPHA * buf[PH_SUM] + (x - buf[PH_MEAN]) - buf[DRIFT_DELTA]
    if buf[PH_N] == 1.0 or buf[PH_SUM] < buf[PH_MIN]:
        buf[PH_MIN] = buf[PH_SUM]
    rise = buf[PH_SUM] - buf[PH_MIN]
    buf[DRIFT_SCORE] = rise / buf[DRIFT_THRESHOLD]
    if buf[PH_N] >= buf[DRIFT_MIN] and rise > buf[DRIFT_THRESHOLD]:
        buf[PH_RESET] = 1.0
        buf[N_DRIFTS] += 1.0
        return True
    return False


@hot
def update(buf, excess, dims):
    """The drift monitor: the standardised shortfall of the regime-conditional log-likelihood,
    fed to Page-Hinkley. Returns True on an alarm.

    ``excess`` is ``sum_k P(k) (log g_k(x) + H_k)``, zero in expectation when the model is
    right whatever the regime. ``z = (reference mean - excess) / reference sd`` against a slow
    EWMA reference (half-life ``drift_reference_halflife`` ticks, starting from the model's own
    expectation: mean 0, variance dims/2, worth DRIFT_PRIOR_WEIGHT ticks), clipped to
    ``±drift_clip`` so one extreme tick cannot raise an alarm alone.
    """
    if buf[REF_WEIGHT] == 0.0:
        buf[REF_MEAN] = 0.0
        buf[REF_VAR] = 0.5 * dims
        buf[REF_WEIGHT] = DRIFT_PRIOR_WEIGHT
    # An absurd tick (a return 1e50 sd out) would overflow the reference's variance.
    excess = min(max(excess, -EXCESS_BOUND), EXCESS_BOUND)
    sd = math.sqrt(max(buf[REF_VAR], TINY))
    z = (buf[REF_MEAN] - excess) / sd
    clip = buf[DRIFT_CLIP]
    z = min(max(z, -clip), clip)
    weight = buf[DRIFT_DECAY] * buf[REF_WEIGHT] + 1.0
    a = 1.0 / weight
    delta = excess - buf[REF_MEAN]
    buf[REF_MEAN] += a * delta
    buf[REF_VAR] = (1.0 - a) * (buf[REF_VAR] + a * delta * delta)
    buf[REF_WEIGHT] = weight
    buf[DRIFT_SEEN] += 1.0
    return _page_hinkley(buf, z)


@hot
def track_log_likelihood(buf, value):
    """Bias-corrected EWMA of the log-likelihood (half-life ``drift_halflife`` ticks)."""
    weight = buf[MEAN_DECAY] * buf[MEAN_LL_WEIGHT] + 1.0
    buf[MEAN_LL] += (value - buf[MEAN_LL]) / weight
    buf[MEAN_LL_WEIGHT] = weight


@jit
def page_hinkley_run(buf, xs, alarms):
    """Page-Hinkley alone over ``xs`` (the tests hold it equal to river's)."""
    for i in range(xs.shape[0]):
        alarms[i] = _page_hinkley(buf, xs[i])


@jit
def drift_run(buf, log_likelihood, expected, alarms, scores):
    """The drift monitor alone (:class:`LikelihoodDriftMonitor`): one update
    per value, with excess ``log_likelihood - expected``."""
    for i in range(log_likelihood.shape[0]):
        track_log_likelihood(buf, log_likelihood[i])
        alarms[i] = update(buf, log_likelihood[i] - expected[i], 1.0)
        scores[i] = buf[DRIFT_SCORE]


# -- the market detector's drift: CUSUM of the forecast's probability integral transform --------

#: CUSUM ``S <- max(0, S + min(z^2, PIT_CLIP) - PIT_SLACK)`` on the normal score ``z`` of the
#: forecast's probability integral transform; an alarm at ``S > PIT_THRESHOLD`` (then ``S = 0``).
PIT_SLACK = 1.25
PIT_CLIP = 8.0
PIT_THRESHOLD = 30.0


@hot
def pit_update(buf, z):
    """One tick of the market detector's drift monitor; True on an alarm.

    Under a calibrated forecast ``z`` is standard normal and ``E[z^2] = 1``, so the CUSUM
    drifts down; it climbs while returns keep exceeding what the forecast allowed. An alarm
    means: for longer than the forecaster's own dynamics explain, the returns were larger than
    its predictive said.
    """
    s = buf[M_CUSUM] + min(z * z, PIT_CLIP) - PIT_SLACK
    s = max(s, 0.0)
    if s > PIT_THRESHOLD:
        buf[M_CUSUM] = 0.0
        buf[M_N_DRIFTS] += 1.0
        return True
    buf[M_CUSUM] = s
    return False


@hot
def pit_score(buf):
    """The CUSUM over its threshold: an alarm fires above 1."""
    return buf[M_CUSUM] / PIT_THRESHOLD


def pit_to_state(buf: np.ndarray) -> dict[str, Any]:
    """The market detector's drift part: the CUSUM."""
    return {"cusum": float(buf[M_CUSUM])}


def pit_from_state(path: str, state: Any, buf: np.ndarray) -> None:
    """Validate the market detector's drift part and write it into ``buf``."""
    V.fields(path, state, ("cusum",))
    buf[M_CUSUM] = V.number(f"{path}.cusum", state["cusum"], lo=0.0, hi=PIT_THRESHOLD)


# -- settings and state (Python) ------------------------------------------------------------------

STATE_VERSION = 2
# Magnitudes a running monitor cannot exceed (its inputs are clamped to 1e12): larger stored
# values could overflow the next update.
_STATE_BOUNDS = {
    "reference_mean": 1e12,
    "reference_var": 1e25,
    "reference_weight": 1e13,
    "ph_n": 2.0**53,
    "ph_mean": 1e12,
    "ph_sum": 1e18,
    "ph_min": 1e18,
    "ph_reset": 1.0,
    "seen": 2.0**53,
    "score": 1e18,
    "mean_log_likelihood": 1.7e308,
    "mean_weight": 1e13,
}

_STATE_SLOTS = {
    "reference_mean": REF_MEAN,
    "reference_var": REF_VAR,
    "reference_weight": REF_WEIGHT,
    "ph_n": PH_N,
    "ph_mean": PH_MEAN,
    "ph_sum": PH_SUM,
    "ph_min": PH_MIN,
    "ph_reset": PH_RESET,
    "seen": DRIFT_SEEN,
    "score": DRIFT_SCORE,
    "mean_log_likelihood": MEAN_LL,
    "mean_weight": MEAN_LL_WEIGHT,
}


def settings(buf: np.ndarray, s: DriftMonitorSettings) -> None:
    """Write the monitor's settings (checked by their declaration,
    :class:`~streamgmm.regime.params.DriftMonitorSettings`) into a buffer's header, the
    half-lives as decay factors."""
    buf[DRIFT_THRESHOLD] = s.threshold
    buf[DRIFT_DELTA] = s.delta
    buf[DRIFT_CLIP] = s.clip
    buf[DRIFT_MIN] = s.min_instances
    buf[DRIFT_DECAY] = 2.0 ** (-1.0 / s.reference_halflife)
    buf[MEAN_DECAY] = 2.0 ** (-1.0 / s.halflife)


def to_state(buf: np.ndarray) -> dict[str, Any]:
    """The monitor's part of the state."""
    return {name: float(buf[slot]) for name, slot in _STATE_SLOTS.items()}


def from_state(path: str, state: Any, buf: np.ndarray) -> None:
    """Validate ``state`` (:func:`to_state` output) and write it into ``buf``."""
    V.fields(path, state, tuple(_STATE_SLOTS))
    values = {
        name: V.number(f"{path}.{name}", state[name], lo=-bound, hi=bound)
        for name, bound in _STATE_BOUNDS.items()
    }
    for name in ("reference_var", "reference_weight", "seen", "score", "mean_weight", "ph_n"):
        if values[name] < 0.0:
            raise ValueError(f"{path}.{name} must be non-negative, got {state[name]!r}")
    if values["ph_n"] != int(values["ph_n"]) or values["ph_reset"] not in (0.0, 1.0):
        raise ValueError(f"{path}.ph_n must be a count and ph_reset 0 or 1")
    if values["ph_min"] > values["ph_sum"]:
        raise ValueError(f"{path}.ph_min must not exceed ph_sum, got {state['ph_min']!r}")
    for name, slot in _STATE_SLOTS.items():
        buf[slot] = values[name]


@documented
class LikelihoodDriftMonitor(base.Base, DriftMonitorSettings):
    """Page-Hinkley on the standardised shortfall of the log-likelihood.

    Its settings are the detectors' drift settings without their ``drift_`` prefix, with the
    same defaults and bounds (:class:`~streamgmm.regime.params.DriftMonitorSettings`);
    ``min_instances`` counts updates and ``halflife`` is that of :attr:`mean_log_likelihood`.

    Examples
    --------
    >>> import random
    >>> rng = random.Random(0)
    >>> monitor = LikelihoodDriftMonitor()
    >>> for _ in range(500):                         # a well-specified model: no alarm
    ...     x = rng.gauss(0.0, 1.0)
    ...     _ = monitor.update(-0.5 * x * x, expected_log_likelihood=-0.5)
    >>> monitor.n_drifts
    0
    >>> alarms = [monitor.update(-0.5 * (3 * rng.gauss(0.0, 1.0)) ** 2, -0.5)
    ...           for _ in range(100)]              # variance x9: the model no longer fits
    >>> monitor.n_drifts, alarms.index(True)         # flagged at the 49th tick
    (1, 48)
    """

    def __post_init__(self) -> None:
        super().__post_init__()  # every setting checked against its declaration
        self._buf = new_buffer(TICKS, 1, 1, 0)
        settings(self._buf, self)
        self.drift_detected = False
        self._ll = np.empty(1)
        self._expected = np.empty(1)
        self._alarm = np.empty(1, dtype=np.bool_)
        self._score = np.empty(1)

    @property
    def drift_score(self) -> float:
        """Page-Hinkley statistic over the threshold; an alarm fires at 1."""
        return float(self._buf[DRIFT_SCORE])

    @property
    def n_drifts(self) -> int:
        """Alarms so far."""
        return int(self._buf[N_DRIFTS])

    @property
    def n_seen(self) -> int:
        """Updates so far."""
        return int(self._buf[DRIFT_SEEN])

    @property
    def mean_log_likelihood(self) -> float:
        """EWMA of the log-likelihood (half-life ``halflife`` updates)."""
        return float(self._buf[MEAN_LL])

    def update(self, log_likelihood: float, expected_log_likelihood: float = 0.0) -> bool:
        """Feed one tick's log-likelihood; returns (and stores) ``drift_detected``.

        Raises
        ------
        ValueError
            If either value is not a finite number; the state is unchanged.
        """
        self._ll[0] = V.number("log_likelihood", log_likelihood)
        self._expected[0] = V.number("expected_log_likelihood", expected_log_likelihood)
        drift_run(self._buf, self._ll, self._expected, self._alarm, self._score)
        self.drift_detected = bool(self._alarm[0])
        return self.drift_detected

    def to_state(self) -> dict[str, Any]:
        """Versioned, JSON-safe state."""
        return {
            "version": STATE_VERSION,
            "kind": "LikelihoodDriftMonitor",
            "params": values_of(self),
            "state": to_state(self._buf),
            "n_drifts": self.n_drifts,
            "drift_detected": self.drift_detected,
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> LikelihoodDriftMonitor:
        """Rebuild from :meth:`to_state`, validating every field first."""
        V.fields(
            "state", state, ("version", "kind", "params", "state", "n_drifts", "drift_detected")
        )
        if state["kind"] != "LikelihoodDriftMonitor" or state["version"] != STATE_VERSION:
            raise ValueError(
                f"unsupported drift monitor state: kind={state['kind']!r}, "
                f"version={state['version']!r} (expected version {STATE_VERSION})"
            )
        params = state["params"]
        V.fields("state.params", params, [param.name for param in params_of(cls)])
        monitor = cls(**params)
        from_state("state.state", state["state"], monitor._buf)
        monitor._buf[N_DRIFTS] = V.integer("state.n_drifts", state["n_drifts"])
        monitor.drift_detected = V.flag("state.drift_detected", state["drift_detected"])
        return monitor
