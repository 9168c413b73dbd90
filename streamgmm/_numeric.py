"""What every compiled kernel shares: the numba decorators and the numeric constants.

The models (:mod:`streamgmm.mixture`, :mod:`streamgmm.regime`) compile their per-tick arithmetic
with numba through the two decorators here, and floor, cap and range-check their numbers with
the constants here, so a bound means the same in every kernel and in the checks that guard
them.

numba freezes a module-level number into the machine code that uses it, and caches that code
on disk keyed by the source file of the function compiled, not by the files it reads
constants from. After changing a constant here (or a layout table), delete the cached kernels
(``__pycache__/*.nbi`` and ``*.nbc`` under ``streamgmm/``) so that they are compiled afresh.
"""

from __future__ import annotations

import math

import numba as nb

__all__ = ["LOG_2PI", "MAX_ABS_VALUE", "TINY", "hot", "jit"]

#: A compiled function, cached on disk. ``error_model="numpy"``: divisions are guarded
#: explicitly, so numba's per-division zero checks (which would raise ZeroDivisionError) only
#: cost time.
jit = nb.njit(cache=True, error_model="numpy")
#: A compiled helper inlined at numba-IR level into its callers, so a per-tick step compiles to
#: one loop nest with its offsets in registers.
hot = nb.njit(cache=True, error_model="numpy", inline="always")

#: The smallest positive value a quantity is floored at (a mass, a variance, a shift): far above
#: the subnormal range, so its reciprocal and its square root stay finite and normal.
TINY = 1e-300
#: Inputs (features, standardised values) beyond this magnitude are refused: their squares, and
#: sums of a few hundred of those, stay finite.
MAX_ABS_VALUE = 1e100
LOG_2PI = math.log(2.0 * math.pi)
