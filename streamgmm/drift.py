"""Likelihood drift: is the model still explaining the stream?

:class:`LikelihoodDriftMonitor` receives per tick the model's log-likelihood of that tick
(computed *before* the model learns it) and the log-likelihood the model itself expects, and
raises ``drift_detected`` when the first falls persistently short of the second. The
detectors feed the same compiled monitor (:mod:`streamgmm._regime_kernel`, section 5) from
inside their step; this class runs it alone, and this module owns its part of the state.

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

Page-Hinkley is written here (in the compiled step) rather than taken from ``river.drift``: the
detectors run it inside their compiled step, and their stored state must not depend on a
library's private attributes. ``tests/test_drift.py`` holds it equal to river's PageHinkley on
the same inputs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from streamgmm import _regime_kernel as _K
from streamgmm import _regime_layout as L
from streamgmm import _validate as V

__all__ = ["LikelihoodDriftMonitor", "drift_from_state", "drift_settings", "drift_to_state"]

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
_PARAMS = ("threshold", "delta", "clip", "reference_halflife", "min_instances", "halflife")

_STATE_SLOTS = {
    "reference_mean": L.REF_MEAN,
    "reference_var": L.REF_VAR,
    "reference_weight": L.REF_WEIGHT,
    "ph_n": L.PH_N,
    "ph_mean": L.PH_MEAN,
    "ph_sum": L.PH_SUM,
    "ph_min": L.PH_MIN,
    "ph_reset": L.PH_RESET,
    "seen": L.DRIFT_SEEN,
    "score": L.DRIFT_SCORE,
    "mean_log_likelihood": L.MEAN_LL,
    "mean_weight": L.MEAN_LL_WEIGHT,
}


def drift_settings(
    buf: np.ndarray,
    *,
    threshold: float,
    delta: float,
    clip: float,
    reference_halflife: float,
    min_instances: int,
    halflife: float,
) -> None:
    """Validate the monitor's settings and write them into a buffer's header."""
    for name, value, lo in (
        ("threshold", threshold, 1e-9),
        ("clip", clip, 1e-9),
        ("reference_halflife", reference_halflife, 1.0),
        ("halflife", halflife, 1.0),
    ):
        V.number(f"drift {name}", value, lo=lo, hi=1e12)
    V.number("drift delta", delta, lo=0.0, hi=1e12)
    V.integer("drift min_instances", min_instances, hi=2**31)
    buf[L.DRIFT_THRESHOLD] = threshold
    buf[L.DRIFT_DELTA] = delta
    buf[L.DRIFT_CLIP] = clip
    buf[L.DRIFT_MIN] = min_instances
    buf[L.DRIFT_DECAY] = 2.0 ** (-1.0 / reference_halflife)
    buf[L.MEAN_DECAY] = 2.0 ** (-1.0 / halflife)


def drift_to_state(buf: np.ndarray) -> dict[str, Any]:
    """The monitor's part of the state."""
    return {name: float(buf[slot]) for name, slot in _STATE_SLOTS.items()}


def drift_from_state(path: str, state: Any, buf: np.ndarray) -> None:
    """Validate ``state`` (:func:`drift_to_state` output) and write it into ``buf``."""
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


class LikelihoodDriftMonitor:
    """Page-Hinkley on the standardised shortfall of the log-likelihood.

    Parameters
    ----------
    threshold
        Page-Hinkley threshold, in reference standard deviations of accumulated shortfall.
    delta
        Slack per tick, in reference standard deviations: a sustained drop of the likelihood
        smaller than this is tolerated.
    clip
        Largest surprise one tick can contribute, in reference standard deviations.
    reference_halflife
        Half-life in ticks of the reference mean and variance.
    min_instances
        Ticks before an alarm is possible.
    halflife
        Half-life in ticks of :attr:`mean_log_likelihood`.

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

    def __init__(
        self,
        threshold: float = 20.0,
        delta: float = 0.5,
        clip: float = 4.0,
        reference_halflife: float = 500.0,
        min_instances: int = 30,
        halflife: float = 20.0,
    ) -> None:
        self.threshold = threshold
        self.delta = delta
        self.clip = clip
        self.reference_halflife = reference_halflife
        self.min_instances = min_instances
        self.halflife = halflife
        self._buf = L.new_buffer(L.TICKS, 1, 1, 0)
        drift_settings(
            self._buf,
            threshold=threshold,
            delta=delta,
            clip=clip,
            reference_halflife=reference_halflife,
            min_instances=min_instances,
            halflife=halflife,
        )
        self.drift_detected = False
        self._ll = np.empty(1)
        self._expected = np.empty(1)
        self._alarm = np.empty(1, dtype=np.bool_)
        self._score = np.empty(1)

    @property
    def drift_score(self) -> float:
        """Page-Hinkley statistic over the threshold; an alarm fires at 1."""
        return float(self._buf[L.DRIFT_SCORE])

    @property
    def n_drifts(self) -> int:
        """Alarms so far."""
        return int(self._buf[L.N_DRIFTS])

    @property
    def n_seen(self) -> int:
        """Updates so far."""
        return int(self._buf[L.DRIFT_SEEN])

    @property
    def mean_log_likelihood(self) -> float:
        """EWMA of the log-likelihood (half-life ``halflife`` updates)."""
        return float(self._buf[L.MEAN_LL])

    def update(self, log_likelihood: float, expected_log_likelihood: float = 0.0) -> bool:
        """Feed one tick's log-likelihood; returns (and stores) ``drift_detected``.

        Raises
        ------
        ValueError
            If either value is not a finite number; the state is unchanged.
        """
        self._ll[0] = V.number("log_likelihood", log_likelihood)
        self._expected[0] = V.number("expected_log_likelihood", expected_log_likelihood)
        _K.drift_run(self._buf, self._ll, self._expected, self._alarm, self._score)
        self.drift_detected = bool(self._alarm[0])
        return self.drift_detected

    def _params(self) -> dict[str, Any]:
        return {
            "threshold": self.threshold,
            "delta": self.delta,
            "clip": self.clip,
            "reference_halflife": self.reference_halflife,
            "min_instances": self.min_instances,
            "halflife": self.halflife,
        }

    def to_state(self) -> dict[str, Any]:
        """Versioned, JSON-safe state."""
        return {
            "version": STATE_VERSION,
            "kind": "LikelihoodDriftMonitor",
            "params": self._params(),
            "state": drift_to_state(self._buf),
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
        V.fields("state.params", params, _PARAMS)
        monitor = cls(**params)
        drift_from_state("state.state", state["state"], monitor._buf)
        monitor._buf[L.N_DRIFTS] = V.integer("state.n_drifts", state["n_drifts"])
        monitor.drift_detected = V.flag("state.drift_detected", state["drift_detected"])
        return monitor
