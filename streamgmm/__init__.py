"""streamgmm: online Gaussian mixture models for streams.

The data path is visible in the layout: bytes -> ``ticks.decode`` -> tick -> ``ticks.rules``
(per-key tick rules) -> a detector's compiled step (``regime.step``): ``regime.features`` ->
``regime.hmm`` (the model; its emission model a ``mixture`` buffer) -> ``regime.labels`` ->
``regime.drift`` -> the detector's output (``regime.output``) -> output record
(``ticks.record``, written by ``ticks.encode``) -> ``service.sink``, with per-key state
(``ticks.keystate``, held by ``service.keystore``; a detector's parts assembled by
``regime.state``) going to the changelog through ``service.checkpoint``. ``ticks`` and
``settings`` know no Kafka; ``service`` is what talks to it, and ``replay`` runs the same
``ticks`` path over a file.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from streamgmm._lazy import exports

if TYPE_CHECKING:
    from streamgmm.frame import regimes_frame
    from streamgmm.mixture.estimator import OnlineGaussianMixture
    from streamgmm.regime.detectors import EventDetector, RegimeDetector
    from streamgmm.regime.drift import LikelihoodDriftMonitor

__all__ = [
    "EventDetector",
    "LikelihoodDriftMonitor",
    "OnlineGaussianMixture",
    "RegimeDetector",
    "regimes_frame",
]
#: The one place the version is kept: pyproject.toml reads it (``[tool.setuptools.dynamic]``).
__version__ = "0.1.0"

# Loaded on first use: the service's producer process and the configuration check import
# submodules of this package, and should not pay for numba and river (about a second).
_EXPORTS = {
    "EventDetector": "streamgmm.regime.detectors",
    "LikelihoodDriftMonitor": "streamgmm.regime.drift",
    "OnlineGaussianMixture": "streamgmm.mixture.estimator",
    "RegimeDetector": "streamgmm.regime.detectors",
    "regimes_frame": "streamgmm.frame",
}
__getattr__, __dir__ = exports(__name__, _EXPORTS)
