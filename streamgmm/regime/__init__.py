"""Regime detection per tick: a next-tick forecast, regimes of its level, drift.

:class:`RegimeDetector` (price ticks) and :class:`EventDetector` (numeric event ticks) run one
compiled step per tick, for one tick (:meth:`~RegimeDetector.learn_predict_one`), many
(:meth:`~RegimeDetector.learn_predict_many`) or columns of them
(:meth:`~RegimeDetector.learn_predict_block`), with identical results.

The market detector's step (:mod:`~streamgmm.regime.forecast`), stage by stage, one module each:

1. **Time rules** (:mod:`~streamgmm.regime.clock`): duplicates and out-of-order ticks, the time
   unit and scale, a variance multiplier per closure length (closures are evidence), the
   intraday profile.
2. **Volatility** (:mod:`~streamgmm.regime.volatility`): GJR-GARCH and Beta-t-EGARCH with
   Student-t innovations, learnt by recursive maximum likelihood, pooled: the predictive of the
   next log return (``log_likelihood``, ``volatility``, ``value_at_risk``).
3. **Regimes** (:mod:`~streamgmm.regime.level`): a two-state hidden Markov model on the
   forecast's volatility level; regime 0 the calmer.
4. **Drift** (:mod:`~streamgmm.regime.drift`): a CUSUM of the forecast's probability integral
   transform.
5. **Output** (:mod:`~streamgmm.regime.output`): the fields of the output record.

The event detector's step (:mod:`~streamgmm.regime.step`): features
(:mod:`~streamgmm.regime.features`), an online Gaussian hidden Markov model
(:mod:`~streamgmm.regime.hmm`, its emission model a :mod:`streamgmm.mixture` buffer), labels
ranked by variance (:mod:`~streamgmm.regime.labels`), Page-Hinkley drift
(:mod:`~streamgmm.regime.drift`, also alone: :class:`LikelihoodDriftMonitor`).

:mod:`~streamgmm.regime.params` declares every setting of the detectors once;
:mod:`~streamgmm.regime.layout` says where each stage keeps its settings and state in the
detector's one ``float64`` buffer (a table per step); :mod:`~streamgmm.regime.state` writes
that state out as versioned JSON by named parts, one per stage, and validates every part
before writing it back. :mod:`~streamgmm.regime.base` and :mod:`~streamgmm.regime.detectors`
are the Python face: reading ticks, the one path into the step, unpacking its rows.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from streamgmm._lazy import exports

if TYPE_CHECKING:
    from streamgmm.regime.base import StreamProblem
    from streamgmm.regime.detectors import EventDetector, RegimeDetector
    from streamgmm.regime.drift import LikelihoodDriftMonitor
    from streamgmm.regime.output import OUTPUT_KEYS
    from streamgmm.regime.params import MAX_FEATURES, MAX_REGIMES, MAX_WARMUP

__all__ = [
    "MAX_FEATURES",
    "MAX_REGIMES",
    "MAX_WARMUP",
    "OUTPUT_KEYS",
    "EventDetector",
    "LikelihoodDriftMonitor",
    "RegimeDetector",
    "StreamProblem",
]

# Loaded on first use: importing one stage (or the output schema) does not compile the step.
_EXPORTS = {
    "MAX_FEATURES": "streamgmm.regime.params",
    "MAX_REGIMES": "streamgmm.regime.params",
    "MAX_WARMUP": "streamgmm.regime.params",
    "OUTPUT_KEYS": "streamgmm.regime.output",
    "EventDetector": "streamgmm.regime.detectors",
    "LikelihoodDriftMonitor": "streamgmm.regime.drift",
    "RegimeDetector": "streamgmm.regime.detectors",
    "StreamProblem": "streamgmm.regime.base",
}
__getattr__, __dir__ = exports(__name__, _EXPORTS)
