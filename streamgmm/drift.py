"""Likelihood-drift monitor: is the model still explaining the stream?

:class:`LikelihoodDriftMonitor` receives, per tick, the model's log-likelihood of that tick
(computed *before* the model learns from it) and raises ``drift_detected`` when the
likelihood falls persistently below its usual level. Detection is delegated to
:class:`river.drift.PageHinkley`; this module only standardises its input and serialises its
state.

How the signal is built
-----------------------
The raw log-likelihood is a poor drift signal on its own: in a turbulent regime every tick is
less likely than in a calm one, so a well-specified model would "drift" at every regime switch.
The monitor therefore accepts the log-likelihood the model itself *expects* for the tick
(``expected_log_likelihood``; for a Gaussian component this is minus its entropy) and works on
the excess ``x = log_likelihood - expected_log_likelihood``, whose mean does not depend on the
regime when the model is right. Without an expectation, ``x`` is the log-likelihood itself.

1. A slow *reference* (exponentially weighted mean and variance of ``x``, half-life
   ``reference_halflife`` ticks) gives the usual level and spread.
2. Each tick's surprise is ``z = (reference_mean - x) / reference_std``, clipped to
   ``[-clip, clip]`` so that a single extreme tick (a crash day) cannot raise an alarm alone;
   only a run of poorly explained ticks can. ``z`` uses the reference *before* it absorbs the
   tick.
3. ``z`` feeds :class:`river.drift.PageHinkley` (mode ``"up"``: only a falling likelihood is
   drift). ``drift_score = PH statistic / threshold``, so ``drift_score >= 1`` is exactly the
   alarm condition; after an alarm river's detector restarts from zero.
4. ``mean_log_likelihood`` is a fast EWMA (half-life ``halflife`` ticks) of the raw
   log-likelihood, for dashboards.

The first ``min_instances`` ticks only build the reference; no alarm is possible then.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from river.drift import PageHinkley

__all__ = ["LikelihoodDriftMonitor"]

_MODES = ("up", "both")


def _enc(value: float) -> float | str:
    """JSON-safe float: river keeps ``inf`` sentinels, which strict JSON cannot carry."""
    if math.isfinite(value):
        return float(value)
    return "inf" if value > 0 else "-inf"


def _dec(value: float | str) -> float:
    return float(value)


def _finite(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name} must be a number, got {value!r}")
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return number


class LikelihoodDriftMonitor:
    """Page-Hinkley on the standardised shortfall of the log-likelihood.

    Parameters
    ----------
    threshold
        Page-Hinkley threshold (lambda), in reference standard deviations of accumulated excess
        surprise.
    delta
        Page-Hinkley slack per tick, in reference standard deviations: a sustained drop of the
        likelihood smaller than this is tolerated.
    min_instances
        Ticks used to build the reference before the detector can fire.
    reference_halflife
        Half-life in ticks of the reference mean and variance.
    halflife
        Half-life in ticks of the reported ``mean_log_likelihood``.
    clip
        Per-tick surprise is clipped to ``[-clip, clip]`` reference standard deviations.
    ph_alpha
        Forgetting factor of Page-Hinkley's cumulative sums (river's ``alpha``).
    mode
        ``"up"`` (likelihood falls) or ``"both"`` (rises too).

    Examples
    --------
    >>> import random
    >>> rng = random.Random(1)
    >>> mon = LikelihoodDriftMonitor()
    >>> for _ in range(2000):
    ...     mon.update(-0.5 * rng.gauss(0, 1) ** 2)
    >>> mon.n_drifts
    0
    >>> for i in range(200):
    ...     mon.update(-0.5 * rng.gauss(0, 3) ** 2)
    ...     if mon.drift_detected:
    ...         break
    >>> mon.drift_detected, i < 50
    (True, True)
    """

    def __init__(
        self,
        threshold: float = 25.0,
        delta: float = 0.5,
        min_instances: int = 100,
        reference_halflife: float = 500.0,
        halflife: float = 20.0,
        clip: float = 4.0,
        ph_alpha: float = 1.0 - 1e-4,
        mode: str = "up",
    ) -> None:
        for name, value in (
            ("threshold", threshold),
            ("reference_halflife", reference_halflife),
            ("halflife", halflife),
            ("clip", clip),
        ):
            if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive finite number, got {value!r}")
        if not (isinstance(delta, int | float) and math.isfinite(delta) and delta >= 0):
            raise ValueError(f"delta must be a non-negative finite number, got {delta!r}")
        if not (isinstance(min_instances, int) and min_instances >= 2):
            raise ValueError(f"min_instances must be an integer >= 2, got {min_instances!r}")
        if not (isinstance(ph_alpha, int | float) and 0.0 < ph_alpha <= 1.0):
            raise ValueError(f"ph_alpha must lie in (0, 1], got {ph_alpha!r}")
        if mode not in _MODES:
            raise ValueError(f"mode must be one of {_MODES}, got {mode!r}")
        self.threshold = float(threshold)
        self.delta = float(delta)
        self.min_instances = int(min_instances)
        self.reference_halflife = float(reference_halflife)
        self.halflife = float(halflife)
        self.clip = float(clip)
        self.ph_alpha = float(ph_alpha)
        self.mode = mode
        self._ref_decay = 2.0 ** (-1.0 / self.reference_halflife)
        self._fast_decay = 2.0 ** (-1.0 / self.halflife)
        self._ph = self._new_detector()
        # Reference: exponentially weighted Welford sums (weight total, mean, centred M2).
        self._ref_w = 0.0
        self._ref_mean = 0.0
        self._ref_m2 = 0.0
        # Bias-corrected fast EWMA of the raw log-likelihood.
        self._fast_sum = 0.0
        self._fast_w = 0.0
        self.n_seen = 0
        self.n_drifts = 0
        self.drift_score = 0.0
        self.drift_detected = False
        self.last_surprise = 0.0

    def _new_detector(self) -> PageHinkley:
        # river's PH counts min_instances itself; ours gate the reference, so PH may fire at once.
        return PageHinkley(
            min_instances=1,
            delta=self.delta,
            threshold=self.threshold,
            alpha=self.ph_alpha,
            mode=self.mode,
        )

    @property
    def mean_log_likelihood(self) -> float:
        """Fast EWMA of the log-likelihood (0.0 before the first update)."""
        return self._fast_sum / self._fast_w if self._fast_w > 0 else 0.0

    @property
    def reference_mean(self) -> float:
        """Slow reference level of the excess log-likelihood."""
        return self._ref_mean

    @property
    def reference_std(self) -> float:
        """Slow reference spread of the excess log-likelihood."""
        return math.sqrt(self._ref_m2 / self._ref_w) if self._ref_w > 0 else 0.0

    def _ph_statistic(self) -> float:
        ph = self._ph
        up = ph._sum_increase - ph._min_increase
        if self.mode == "up":
            return max(up, 0.0)
        return max(up, ph._max_decrease - ph._sum_decrease, 0.0)

    def update(self, log_likelihood: float, expected_log_likelihood: float | None = None) -> None:
        """Fold in one tick's log-likelihood (and optionally the value the model expected).

        Raises
        ------
        ValueError
            If an argument is not a finite number; the state is left unchanged.
        """
        # Plain finite floats (every call from the detectors) skip the validating helper,
        # which is a measurable share of the per-tick cost; it gives the same numbers.
        if type(log_likelihood) is float and math.isfinite(log_likelihood):
            ll = log_likelihood
        else:
            ll = _finite("log_likelihood", log_likelihood)
        x = ll
        if expected_log_likelihood is not None:
            if type(expected_log_likelihood) is float and math.isfinite(expected_log_likelihood):
                x = ll - expected_log_likelihood
            else:
                x = ll - _finite("expected_log_likelihood", expected_log_likelihood)

        self.drift_detected = False
        if self.n_seen >= self.min_instances:
            ref_w = self._ref_w
            sd = math.sqrt(self._ref_m2 / ref_w) if ref_w > 0 else 0.0
            z = (self._ref_mean - x) / sd if sd > 0 else 0.0
            clip = self.clip
            # Same as min(max(z, -clip), clip), NaN included, without two builtin calls.
            if z > clip:
                z = clip
            elif z < -clip:
                z = -clip
            self.last_surprise = z
            ph = self._ph
            ph.update(z)
            self.drift_detected = detected = bool(ph.drift_detected)
            self.drift_score = self._ph_statistic() / self.threshold
            if detected:
                self.n_drifts += 1

        # Reference update after scoring, so the tick is judged against the past only.
        lam = self._ref_decay
        w = lam * self._ref_w + 1.0
        d = x - self._ref_mean
        mean = self._ref_mean + d / w
        self._ref_m2 = lam * self._ref_m2 + d * (x - mean)
        self._ref_mean = mean
        self._ref_w = w
        self._fast_sum = self._fast_decay * self._fast_sum + ll
        self._fast_w = self._fast_decay * self._fast_w + 1.0
        self.n_seen += 1

    # -- state -----------------------------------------------------------------------------
    def to_state(self) -> dict[str, Any]:
        """JSON-safe, versioned state, including river's Page-Hinkley internals."""
        ph = self._ph
        return {
            "version": 1,
            "kind": "LikelihoodDriftMonitor",
            "params": {
                "threshold": self.threshold,
                "delta": self.delta,
                "min_instances": self.min_instances,
                "reference_halflife": self.reference_halflife,
                "halflife": self.halflife,
                "clip": self.clip,
                "ph_alpha": self.ph_alpha,
                "mode": self.mode,
            },
            "page_hinkley": {
                "mean_n": _enc(ph._x_mean.n),
                "mean": _enc(ph._x_mean._mean),
                "sum_increase": _enc(ph._sum_increase),
                "sum_decrease": _enc(ph._sum_decrease),
                "min_increase": _enc(ph._min_increase),
                "max_decrease": _enc(ph._max_decrease),
                "drift_detected": bool(ph._drift_detected),
            },
            "ref_w": self._ref_w,
            "ref_mean": self._ref_mean,
            "ref_m2": self._ref_m2,
            "fast_sum": self._fast_sum,
            "fast_w": self._fast_w,
            "n_seen": self.n_seen,
            "n_drifts": self.n_drifts,
            "drift_score": self.drift_score,
            "drift_detected": self.drift_detected,
            "last_surprise": self.last_surprise,
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> LikelihoodDriftMonitor:
        """Rebuild from :meth:`to_state` output; continued updates are bit-identical."""
        if not isinstance(state, Mapping) or state.get("kind") != "LikelihoodDriftMonitor":
            raise ValueError("state: not a LikelihoodDriftMonitor snapshot")
        if state.get("version") != 1:
            raise ValueError(
                f"LikelihoodDriftMonitor state version {state.get('version')!r} "
                "is not supported (expected 1)"
            )
        mon = cls(**state["params"])
        ph_state = state["page_hinkley"]
        ph = mon._ph
        ph._x_mean.n = _dec(ph_state["mean_n"])
        ph._x_mean._mean = _dec(ph_state["mean"])
        ph._sum_increase = _dec(ph_state["sum_increase"])
        ph._sum_decrease = _dec(ph_state["sum_decrease"])
        ph._min_increase = _dec(ph_state["min_increase"])
        ph._max_decrease = _dec(ph_state["max_decrease"])
        ph._drift_detected = bool(ph_state["drift_detected"])
        mon._ref_w = float(state["ref_w"])
        mon._ref_mean = float(state["ref_mean"])
        mon._ref_m2 = float(state["ref_m2"])
        mon._fast_sum = float(state["fast_sum"])
        mon._fast_w = float(state["fast_w"])
        mon.n_seen = int(state["n_seen"])
        mon.n_drifts = int(state["n_drifts"])
        mon.drift_score = float(state["drift_score"])
        mon.drift_detected = bool(state["drift_detected"])
        mon.last_surprise = float(state["last_surprise"])
        return mon
