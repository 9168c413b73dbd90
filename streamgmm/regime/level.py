"""The regime filter: a two-state hidden Markov model on the forecast's volatility level.

The third stage of the market detector's step (:mod:`streamgmm.regime.forecast`). The level is
``y = 0.5 log(sum_k w_k h_k / V_k)``, the pooled forecast's variance relative to each model's
long-run variance (:mod:`streamgmm.regime.volatility`), smoothed over time with a half-life of
four hours or 16 time units, whichever is shorter (``W <- W 2^(-dt / T) + 1``; on daily or
slower data every tick stands alone; on 15-minute bars it spans 16 bars). A two-state
Gaussian hidden Markov model runs on ``y``: a shared variance (floor
``0.1^2``), means shrunk towards ``pooled mean -+ 0.35`` by 100 pseudo-ticks, transitions
shrunk towards 0.99 on the diagonal by 50 pseudo-ticks, learnt by online EM over decayed
statistics (filtered weights) with the step ``max(1 / (t + 200), 1 / 2000)``.

**Labels.** Regime 1 (turbulent) is the state with the higher mean level, regime 0 the calmer,
re-ranked (and ``n_label_changes`` counted) when the other state's mean exceeds it by 0.05; the
output's ``probabilities`` are always in this order, as are ``means_`` and ``covariances_``.
"Turbulent" means the volatility forecast is in the upper state of its own history.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from streamgmm import _validate as V
from streamgmm._numeric import hot
from streamgmm.regime.layout import (
    M_HIGH,
    M_HMM_N,
    M_LEVEL,
    M_LEVEL_W,
    M_MU0,
    M_MU1,
    M_N_LABEL_CHANGES,
    M_PF0,
    M_PF1,
    M_RAW0,
    M_RAW1,
    M_S0,
    M_S1,
    M_SY0,
    M_SY1,
    M_SYY0,
    M_SYY1,
    M_T00,
    M_T01,
    M_T10,
    M_T11,
    M_UNIT,
    M_VAR,
    M_X00,
    M_X01,
    M_X10,
    M_X11,
)

__all__ = ["from_state", "to_state"]

#: Half-life of the level's smoothing: four hours, and at most 16 time units (so ticks a
#: second apart are smoothed over 16 ticks, not 14,400).
LEVEL_SECONDS = 14400.0
LEVEL_UNITS = 16.0
#: Prior separation of the states' means from the pooled mean, its weight (ticks), the
#: starting and smallest standard deviation of the level.
SEPARATION = 0.35
MEAN_PRIOR = 100.0
START_SD = 0.3
SD_FLOOR = 0.1
#: Prior probability of staying and its weight (ticks).
STAY = 0.99
TRANSITION_PRIOR = 50.0
#: Online-EM step: 1 / (t + STEP_OFFSET), at least MIN_STEP.
STEP_OFFSET = 200.0
MIN_STEP = 1.0 / 2000.0
#: Margin (in level) by which the other state's mean must exceed before the labels swap.
RELABEL_MARGIN = 0.05

_STATS = (M_S0, M_SY0, M_SYY0, M_S1, M_SY1, M_SYY1)


@hot
def start(buf):
    """Uniform probabilities, sticky transitions, means at ``-+ SEPARATION``."""
    buf[M_PF0] = 0.5
    buf[M_PF1] = 0.5
    buf[M_T00] = STAY
    buf[M_T01] = 1.0 - STAY
    buf[M_T10] = 1.0 - STAY
    buf[M_T11] = STAY
    for k in range(2):
        m = -SEPARATION if k == 0 else SEPARATION
        base = M_S0 if k == 0 else M_S1
        buf[base] = 0.5
        buf[base + 1] = 0.5 * m
        buf[base + 2] = 0.5 * (m * m + START_SD * START_SD)
    buf[M_MU0] = -SEPARATION
    buf[M_MU1] = SEPARATION
    buf[M_VAR] = START_SD * START_SD
    buf[M_X00] = 0.5 * STAY
    buf[M_X01] = 0.5 * (1.0 - STAY)
    buf[M_X10] = 0.5 * (1.0 - STAY)
    buf[M_X11] = 0.5 * STAY
    buf[M_HMM_N] = 0.0
    buf[M_HIGH] = 1.0
    buf[M_LEVEL] = 0.0
    buf[M_LEVEL_W] = 0.0
    buf[M_RAW0] = 0.5
    buf[M_RAW1] = 0.5


@hot
def smooth(buf, y, dt):
    """The level after ``y`` observed ``dt`` seconds after the previous tick."""
    halflife = min(LEVEL_SECONDS, LEVEL_UNITS * buf[M_UNIT])
    w = buf[M_LEVEL_W] * 2.0 ** (-max(dt, 0.0) / halflife) + 1.0
    buf[M_LEVEL_W] = w
    buf[M_LEVEL] += (y - buf[M_LEVEL]) / w
    return buf[M_LEVEL]


@hot
def update(buf, y):
    """One filter step and online-EM update on the level ``y``."""
    var = buf[M_VAR]
    pf0, pf1 = buf[M_PF0], buf[M_PF1]
    p0 = pf0 * buf[M_T00] + pf1 * buf[M_T10]
    p1 = pf0 * buf[M_T01] + pf1 * buf[M_T11]
    l0 = -0.5 * (y - buf[M_MU0]) ** 2 / var
    l1 = -0.5 * (y - buf[M_MU1]) ** 2 / var
    top = max(l0, l1)
    f0 = math.exp(l0 - top)
    f1 = math.exp(l1 - top)
    buf[M_RAW0] = f0 / (f0 + f1)
    buf[M_RAW1] = f1 / (f0 + f1)
    tot = p0 * f0 + p1 * f1
    if not tot > 0.0:
        return
    f0n = p0 * f0 / tot
    f1n = p1 * f1 / tot
    n = buf[M_HMM_N]
    rho = max(1.0 / (n + STEP_OFFSET), MIN_STEP)
    buf[M_HMM_N] = n + 1.0
    for k in range(2):
        w = f0n if k == 0 else f1n
        base = M_S0 if k == 0 else M_S1
        buf[base] = (1.0 - rho) * buf[base] + rho * w
        buf[base + 1] = (1.0 - rho) * buf[base + 1] + rho * w * y
        buf[base + 2] = (1.0 - rho) * buf[base + 2] + rho * w * y * y
    buf[M_X00] = (1.0 - rho) * buf[M_X00] + rho * pf0 * buf[M_T00] * f0 / tot
    buf[M_X01] = (1.0 - rho) * buf[M_X01] + rho * pf0 * buf[M_T01] * f1 / tot
    buf[M_X10] = (1.0 - rho) * buf[M_X10] + rho * pf1 * buf[M_T10] * f0 / tot
    buf[M_X11] = (1.0 - rho) * buf[M_X11] + rho * pf1 * buf[M_T11] * f1 / tot
    buf[M_PF0] = f0n
    buf[M_PF1] = f1n
    _m_step(buf, rho)


@hot
def _m_step(buf, rho):
    """Means (shrunk to the pooled mean -+ the separation), the shared variance (floored),
    the transitions (shrunk to the sticky prior); then the ranking."""
    occ_all = buf[M_S0] + buf[M_S1]
    pooled = (buf[M_SY0] + buf[M_SY1]) / max(occ_all, 1e-12)
    mw = MEAN_PRIOR * rho
    high = int(buf[M_HIGH])
    within = 0.0
    for k in range(2):
        base = M_S0 if k == 0 else M_S1
        occ = max(buf[base], 1e-12)
        m_own = buf[base + 1] / occ
        within += buf[base + 2] - occ * m_own * m_own
        centre = pooled + (SEPARATION if k == high else -SEPARATION)
        buf[M_MU0 + k] = (buf[base + 1] + mw * centre) / (occ + mw)
    buf[M_VAR] = max(within / max(occ_all, 1e-12), SD_FLOOR * SD_FLOOR)
    tw = TRANSITION_PRIOR * rho
    a = buf[M_X00] + tw * STAY
    b = buf[M_X01] + tw * (1.0 - STAY)
    buf[M_T00] = a / (a + b)
    buf[M_T01] = b / (a + b)
    a = buf[M_X10] + tw * (1.0 - STAY)
    b = buf[M_X11] + tw * STAY
    buf[M_T10] = a / (a + b)
    buf[M_T11] = b / (a + b)
    if buf[M_MU0 + 1 - high] > buf[M_MU0 + high] + RELABEL_MARGIN:
        buf[M_HIGH] = 1.0 - high
        buf[M_N_LABEL_CHANGES] += 1.0


@hot
def turbulent(buf):
    """The filtered probability of the turbulent (higher-level) state."""
    return buf[M_PF1] if buf[M_HIGH] == 1.0 else buf[M_PF0]


@hot
def turbulent_raw(buf):
    """The turbulent state's share of the tick's emission likelihoods."""
    return buf[M_RAW1] if buf[M_HIGH] == 1.0 else buf[M_RAW0]


# -- views and state (Python) -----------------------------------------------------------------

FIELDS = ("level", "level_weight", "filtered", "transitions", "statistics", "pair_statistics",
          "means", "variance", "steps", "high", "raw")  # fmt: skip


def order(buf: np.ndarray) -> list[int]:
    """``order[r]``: the model state shown as regime ``r`` (calm first)."""
    high = int(buf[M_HIGH])
    return [1 - high, high]


def to_state(buf: np.ndarray) -> dict[str, Any]:
    """The filter's part of the state."""
    return {
        "level": float(buf[M_LEVEL]),
        "level_weight": float(buf[M_LEVEL_W]),
        "filtered": [float(buf[M_PF0]), float(buf[M_PF1])],
        "transitions": [
            [float(buf[M_T00]), float(buf[M_T01])],
            [float(buf[M_T10]), float(buf[M_T11])],
        ],
        "statistics": [float(buf[s]) for s in _STATS],
        "pair_statistics": [
            [float(buf[M_X00]), float(buf[M_X01])],
            [float(buf[M_X10]), float(buf[M_X11])],
        ],
        "steps": int(buf[M_HMM_N]),
        "high": int(buf[M_HIGH]),
        "raw": [float(buf[M_RAW0]), float(buf[M_RAW1])],
        "means": [float(buf[M_MU0]), float(buf[M_MU1])],
        "variance": float(buf[M_VAR]),
    }


#: The level is half a log variance ratio: the floors bound it to about [-2.4, 6.1].
_MAX_LEVEL = 1e3


def from_state(path: str, state: Any, buf: np.ndarray) -> None:
    """Validate the filter's part and write it into ``buf``."""
    V.fields(path, state, FIELDS)
    level = V.number(f"{path}.level", state["level"], lo=-_MAX_LEVEL, hi=_MAX_LEVEL)
    weight = V.number(f"{path}.level_weight", state["level_weight"], lo=0.0, hi=2.0**53)
    pf = V.matrix(f"{path}.filtered", state["filtered"], (2,), lo=0.0, hi=1.0)
    trans = V.matrix(f"{path}.transitions", state["transitions"], (2, 2), lo=0.0, hi=1.0)
    stats = V.matrix(f"{path}.statistics", state["statistics"], (6,), lo=-1e7, hi=1e7)
    pairs = V.matrix(f"{path}.pair_statistics", state["pair_statistics"], (2, 2), lo=0.0, hi=1.0)
    steps = V.integer(f"{path}.steps", state["steps"])
    high = V.integer(f"{path}.high", state["high"], lo=0, hi=1)
    raw = V.matrix(f"{path}.raw", state["raw"], (2,), lo=0.0, hi=1.0)
    if abs(pf.sum() - 1.0) > 1e-6 or abs(raw.sum() - 1.0) > 1e-6:
        raise ValueError(f"{path}: probabilities must sum to 1")
    if np.any(np.abs(trans.sum(axis=1) - 1.0) > 1e-6) or not (trans > 0.0).all():
        raise ValueError(f"{path}.transitions must be positive rows summing to 1")
    if not (stats[0] > 0.0 and stats[3] > 0.0 and stats[2] >= 0.0 and stats[5] >= 0.0):
        raise ValueError(f"{path}.statistics: occupancies must be positive, squares non-negative")
    buf[M_LEVEL] = level
    buf[M_LEVEL_W] = weight
    buf[M_PF0], buf[M_PF1] = pf
    buf[M_T00], buf[M_T01], buf[M_T10], buf[M_T11] = trans.ravel()
    for slot, value in zip(_STATS, stats, strict=True):
        buf[slot] = value
    buf[M_X00], buf[M_X01], buf[M_X10], buf[M_X11] = pairs.ravel()
    buf[M_HMM_N] = steps
    buf[M_HIGH] = high
    buf[M_RAW0], buf[M_RAW1] = raw
    mu = V.matrix(f"{path}.means", state["means"], (2,), lo=-_MAX_LEVEL, hi=_MAX_LEVEL)
    buf[M_MU0], buf[M_MU1] = mu
    buf[M_VAR] = V.number(f"{path}.variance", state["variance"], lo=SD_FLOOR**2 * 0.999, hi=1e7)
