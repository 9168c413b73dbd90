"""streamgmm: online Gaussian mixture models for streams.

The data path is visible in the layout: bytes -> ``service.codec`` -> tick -> ``features`` ->
``mixture`` -> ``regime`` (labels, ``persistence`` filter) -> ``drift`` -> output record
(``service.records``) -> sink, with per-key state going to the changelog through
``service.checkpoint``.
"""

from streamgmm.drift import LikelihoodDriftMonitor
from streamgmm.mixture import OnlineGaussianMixture
from streamgmm.regime import EventDetector, RegimeDetector

__all__ = ["EventDetector", "LikelihoodDriftMonitor", "OnlineGaussianMixture", "RegimeDetector"]
__version__ = "0.1.0"
