"""streamgmm: online Gaussian mixture models for streams.

The data path is visible in the layout: bytes -> ``service.codec`` -> tick -> ``features`` ->
``mixture`` -> ``regime`` -> ``drift`` -> output record -> sink, with per-key state going to the
changelog through ``service.checkpoint``.
"""

from streamgmm.mixture import OnlineGaussianMixture

__all__ = ["OnlineGaussianMixture"]
__version__ = "0.1.0"
