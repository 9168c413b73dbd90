"""Regime detection per tick: features -> online hidden Markov model -> labels -> drift.

:class:`RegimeDetector` (price ticks) and :class:`EventDetector` (numeric event ticks) run one
compiled step per tick, for one tick (:meth:`~RegimeDetector.learn_predict_one`), many
(:meth:`~RegimeDetector.learn_predict_many`) or columns of them
(:meth:`~RegimeDetector.learn_predict_block`), with identical results. The step's stages, in
the order a tick meets them, one module each:

1. **Features** (:mod:`~streamgmm.regime.features`): the time rules (duplicates, out of order,
   session gaps), the return scaled to the time unit (automatic by default) or the event's
   fields, standardised by the warm-up's scale, and divided by the intraday volatility
   profile (:mod:`~streamgmm.regime.profile`).
2. **Model** (:mod:`~streamgmm.regime.hmm`): a Gaussian hidden Markov model in the feature,
   Hamilton's Markov-switching model, learnt online by Cappé's online EM with conjugate priors;
   its emission model is a :class:`streamgmm.OnlineGaussianMixture` buffer
   (:mod:`streamgmm.mixture`).
3. **Labels** (:mod:`~streamgmm.regime.labels`): regimes ranked by variance, so regime 0 is
   always the calmest, with hysteresis.
4. **Drift** (:mod:`~streamgmm.regime.drift`): Page-Hinkley on the shortfall of the
   regime-conditional log-likelihood (also alone: :class:`LikelihoodDriftMonitor`).
5. **Output** (:mod:`~streamgmm.regime.output`): the step's output row becomes the detector's
   output, the fields of the output record that :mod:`streamgmm.ticks.record` writes.

:mod:`~streamgmm.regime.params` declares every setting of the detectors once (both detectors,
the drift monitor and the service's ``[detector]`` section are made from it);
:mod:`~streamgmm.regime.step` runs the stages per tick; :mod:`~streamgmm.regime.layout` says
where each stage keeps its settings and state in the detector's one ``float64`` buffer;
:mod:`~streamgmm.regime.state` writes that state out as versioned JSON by named parts, one per
stage, and validates every part before writing it back. :mod:`~streamgmm.regime.base` and
:mod:`~streamgmm.regime.detectors` are the Python face: reading ticks, the one path into the
step, unpacking its rows.
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
