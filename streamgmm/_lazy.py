"""Names a package hands on from its submodules, loaded on first use (PEP 562).

The top-level package, :mod:`streamgmm.regime` and :mod:`streamgmm.mixture` export classes whose
modules import numba or river. Importing the package (or one of its light submodules: the
service's settings, the output schema, the layouts) should not pay for those, so each package
maps its exported names to their modules and loads a module when one of its names is first
used.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["exports"]


def exports(
    package: str, names: Mapping[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``__getattr__`` and ``__dir__`` for ``package``, loading each of ``names`` from the module
    it maps to on first use."""

    def __getattr__(name: str) -> Any:
        module = names.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(module), name)

    def __dir__() -> list[str]:
        return sorted([*vars(sys.modules[package]), *names])

    return __getattr__, __dir__
