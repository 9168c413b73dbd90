"""streamgmm: online Gaussian mixture models for streams.

The data path is visible in the layout: bytes -> ``service.decode`` -> tick ->
``service.apply`` (per-key tick rules) -> ``features`` -> ``mixture`` -> ``regime`` (labels,
``persistence`` filter) -> ``drift`` -> output record (``output``, written by
``service.encode``) -> ``service.sink``, with per-key state (``service.keystore``) going to the
changelog through ``service.checkpoint``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

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


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'streamgmm' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
