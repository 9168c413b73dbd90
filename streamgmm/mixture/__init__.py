"""The online Gaussian mixture: a river clusterer learnt one point at a time by stepwise EM.

:class:`OnlineGaussianMixture` (:mod:`~streamgmm.mixture.estimator`) is the estimator. Its
state is one flat buffer (:mod:`~streamgmm.mixture.layout`) that compiled kernels update per
point (:mod:`~streamgmm.mixture.kernels`; points with missing features:
:mod:`~streamgmm.mixture.missing`), after a warm-up fitted by batch EM
(:mod:`~streamgmm.mixture.warmup`); :mod:`~streamgmm.mixture.state` writes and checks its
snapshot. The regime detectors nest the same buffer as their emission model and use the same
kernels to score and factorise it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from streamgmm._lazy import exports

if TYPE_CHECKING:
    from streamgmm.mixture.estimator import MAX_COMPONENTS, MAX_FEATURES, OnlineGaussianMixture

__all__ = ["MAX_COMPONENTS", "MAX_FEATURES", "OnlineGaussianMixture"]

# The estimator (and river with it) is loaded on first use: the regime detectors import the
# kernels and the layout only.
__getattr__, __dir__ = exports(__name__, dict.fromkeys(__all__, "streamgmm.mixture.estimator"))
