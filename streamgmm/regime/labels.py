"""Labels: the model's regimes ranked by variance, with hysteresis, so regime 0 is the calmest.

The third stage of the step (:mod:`streamgmm.regime.step`). The hidden Markov model's states
have no order of their own; the detector shows them ranked by emission variance (the trace of
each regime's covariance), and replaces the ranking only when an adjacent pair is inverted by
more than ``label_hysteresis``, so labels do not flicker when two regimes are close. A tick's
output is in the labels it was scored under; a new ranking applies from the next tick on.

Owns the setting ``HYSTERESIS``, the counter ``N_LABEL_CHANGES``, the region ``order`` and its
working space ``measure`` of :mod:`streamgmm.regime.layout`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from streamgmm import _validate as V
from streamgmm._numeric import hot
from streamgmm.mixture import layout as mx
from streamgmm.regime.layout import (
    HYSTERESIS,
    MEASURE,
    N_FEATURES,
    N_LABEL_CHANGES,
    N_REGIMES,
    ORDER,
    TABLE,
)
from streamgmm.regime.params import ModelSettings

__all__ = ["from_state", "relabel", "reset", "settings", "to_state"]


@hot
def reset(buf, lay):
    """Regime ``r`` is model state ``r`` (the variance-ordered start)."""
    for a in range(lay[N_REGIMES]):
        buf[lay[ORDER] + a] = a


@hot
def relabel(buf, lay, mix, mlay):
    """Rank regimes by emission variance (the covariance trace), with hysteresis.

    ``order[r]`` is the HMM state shown as regime ``r``. The ranking is replaced only when an
    adjacent pair is inverted by more than ``label_hysteresis`` (relative); ties keep the state
    index order. Returns True if the order changed.
    """
    k_total, d = lay[N_REGIMES], lay[N_FEATURES]
    order = lay[ORDER]
    measure = lay[MEASURE]
    for a in range(k_total):
        tr = 0.0
        for i in range(d):
            tr += mix[mlay[mx.SCATTER] + a * d * d + i * d + i]
        buf[measure + a] = tr / mix[mlay[mx.MASS] + a]
    margin = 1.0 + buf[HYSTERESIS]
    violated = False
    for r in range(k_total - 1):
        lo = int(buf[order + r])
        hi = int(buf[order + r + 1])
        if buf[measure + lo] > margin * buf[measure + hi]:
            violated = True
    if not violated:
        return False
    # Insertion sort by measure (K is small); stable, so ties keep the state order.
    for r in range(k_total):
        buf[order + r] = r
    for r in range(1, k_total):
        v = buf[order + r]
        j = r
        for _ in range(r):
            if buf[measure + int(buf[order + j - 1])] <= buf[measure + int(v)]:
                break
            buf[order + j] = buf[order + j - 1]
            j -= 1
        buf[order + j] = v
    buf[N_LABEL_CHANGES] += 1.0
    return True


# -- settings and state (Python) ------------------------------------------------------------------


def settings(buf: np.ndarray, s: ModelSettings) -> None:
    """Write the hysteresis (``label_hysteresis``, checked by its declaration)."""
    buf[HYSTERESIS] = s.label_hysteresis


def to_state(buf: np.ndarray) -> list[int]:
    """The labels' part of the state: ``order[r]``, the model state shown as regime ``r``."""
    return [int(v) for v in TABLE.view(buf, ORDER)]


def from_state(path: str, order: Any, buf: np.ndarray) -> None:
    """Validate ``order`` (:func:`to_state` output: a permutation of the regimes) and write it."""
    k = int(buf[N_REGIMES])
    if not isinstance(order, list) or sorted(
        V.integer(f"{path}[{i}]", v, hi=k - 1) for i, v in enumerate(order)
    ) != list(range(k)):
        raise ValueError(f"{path} must be a permutation of 0..{k - 1}, got {order!r}")
    TABLE.view(buf, ORDER)[:] = order
