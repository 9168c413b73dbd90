"""streamgmm: online Gaussian mixture models for streams.

The data path is visible in the layout: bytes -> ``ticks.decode`` -> tick -> ``ticks.rules``
(per-key tick rules) -> ``features`` -> ``mixture`` -> ``regime`` (labels, ``persistence``
filter) -> ``drift`` -> output record (``output``, written by ``ticks.encode``) ->
``service.sink``, with per-key state (``ticks.keystate``, held by ``service.keystore``) going
to the changelog through ``service.checkpoint``. ``ticks`` and ``settings`` know no Kafka;
``service`` is what talks to it, and ``replay`` runs the same ``ticks`` path over a file.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from streamgmm.drift import LikelihoodDriftMonitor
    from streamgmm.frame import regimes_frame
    from streamgmm.mixture import OnlineGaussianMixture
    from streamgmm.regime import EventDetector, RegimeDetector

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
    "EventDetector": "streamgmm.regime",
    "LikelihoodDriftMonitor": "streamgmm.drift",
    "OnlineGaussianMixture": "streamgmm.mixture",
    "RegimeDetector": "streamgmm.regime",
    "regimes_frame": "streamgmm.frame",
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'streamgmm' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
