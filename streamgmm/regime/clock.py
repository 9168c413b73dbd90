"""How time scales a price tick's variance: spacings, closures and the time of day.

The first stage of the market detector's step (:mod:`streamgmm.regime.forecast`). The time
unit is ``dt_unit`` seconds, or the median spacing of the warm-up's ticks; a tick's spacing in
units ``dt`` gives its return a **variance multiplier** ``tau`` relative to one ordinary step:

* ``dt < 1``: ``tau = max(dt, min_dt_units)`` (closely spaced ticks carry less variance);
* ``1 <= dt < gap_units``: an ordinary step, ``tau = 1``;
* ``dt >= gap_units``: a **gap** (a weekend, a holiday, a night, a halt) in bucket
  ``b = floor(log2 dt)``. Its return is evidence like any other, scaled by ``tau = g_b``, a
  multiplier learnt from the gaps of that length: ``g_b = (A_b / A_0)^2``, where ``A_0`` is the
  mean absolute standardised return of ordinary steps and ``A_b`` that of the gaps in bucket
  ``b``, shrunk towards the nearest shorter bucket seen by 20 pseudo-ticks. Mean absolute values
  rather than squares, so one fat-tailed gap return cannot dominate; the sums are capped at 500
  gaps (5,000 ordinary steps) per bucket, so the multipliers keep adapting. On daily data
  weekends learn ``g`` near 1, and a closure of a week uses what long weekends taught.

**Intraday profile** (time units below six hours, ``intraday_profile``): per half-hour ``k``
of the UTC day, the multiplier ``m_k = ((S_k + 20 Abar) / (N_k + 20) / Abar)^2`` from the sum
``S_k`` and count ``N_k`` of mean absolute standardised returns of ordinary steps in that
half-hour (``Abar`` the overall mean), in sums decayed by whole days (half-life
``profile_halflife`` days). Mean absolute values have a finite variance under fat tails, so
the profile needs no gate: with no time-of-day pattern the buckets stay near 1 by the
shrinkage alone.

Each volatility model (:mod:`streamgmm.regime.volatility`) standardises by its own variance,
so each keeps its own sums, in its block of the buffer (:mod:`streamgmm.regime.layout`).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from streamgmm import _validate as V
from streamgmm._numeric import hot
from streamgmm.regime.layout import (
    A0_N,
    A0_S,
    GAP_BUCKETS,
    M_GAP_UNITS,
    M_MIN_DT,
    M_PROFILE,
    M_PROFILE_HALFLIFE,
    M_UNIT,
    PROF_DAY,
    PROF_N,
    PROF_S,
    PROFILE_BUCKETS,
    VGAP_N,
    VGAP_S,
    VPRO_N,
    VPRO_S,
)

__all__ = ["from_state", "to_state"]

DAY = 86400.0
#: Pseudo-ticks of the gap multipliers' and the profile's priors.
GAP_PRIOR = 20.0
PROFILE_PRIOR = 20.0
#: Gaps kept per bucket (ordinary steps: ten times as many).
GAP_CAP = 500.0
#: Mean absolute value of a unit-variance return before any is seen (normal: 0.8).
A_START = 0.8
#: Smallest gap multiplier; bounds of any multiplier.
MIN_GAP_MULTIPLIER = 0.05
MIN_MULTIPLIER = 1e-3
MAX_MULTIPLIER = 1e6
#: Largest standardised absolute return one tick adds to the sums.
MAX_ABS_Z = 1e3
#: Time units below this many seconds use the intraday profile.
PROFILE_UNIT_LIMIT = DAY / 4.0


@hot
def bucket(buf, dt_units):
    """0 for an ordinary step or a short spacing, else the gap's bucket ``floor(log2 dt)``."""
    if dt_units < buf[M_GAP_UNITS] or dt_units < 2.0:
        return 0
    return min(max(int(math.log2(dt_units)), 1), GAP_BUCKETS - 1)


@hot
def gap_multiplier(m, b):
    """The learnt variance multiplier of a gap in bucket ``b`` for the model block ``m``."""
    a0 = m[A0_S] / m[A0_N] if m[A0_N] > 0.0 else A_START
    if not a0 > 0.0:
        a0 = A_START
    prior = a0
    mult = 1.0
    for k in range(1, b + 1):
        n = m[VGAP_N + k]
        a = (m[VGAP_S + k] + GAP_PRIOR * prior) / (n + GAP_PRIOR)
        mult = (a / a0) ** 2
        if n >= 1.0:
            prior = a
    if math.isnan(mult):
        return 1.0
    return min(max(mult, MIN_GAP_MULTIPLIER), MAX_MULTIPLIER)


@hot
def time_factor(buf, m, dt):
    """(variance multiplier of a spacing of ``dt`` seconds, gap bucket)."""
    dtu = dt / buf[M_UNIT]
    if dtu < 1.0:
        return max(dtu, buf[M_MIN_DT]), 0
    b = bucket(buf, dtu)
    if b == 0:
        return 1.0, 0
    return gap_multiplier(m, b), b


@hot
def gap_learn(m, b, absz):
    """Add one mean-absolute observation to bucket ``b`` (0: ordinary steps), capped."""
    if b == 0:
        m[A0_S] += absz
        m[A0_N] += 1.0
        if m[A0_N] > GAP_CAP * 10.0:
            f = GAP_CAP * 10.0 / m[A0_N]
            m[A0_S] *= f
            m[A0_N] *= f
    else:
        m[VGAP_S + b] += absz
        m[VGAP_N + b] += 1.0
        if m[VGAP_N + b] > GAP_CAP:
            f = GAP_CAP / m[VGAP_N + b]
            m[VGAP_S + b] *= f
            m[VGAP_N + b] *= f


@hot
def half_hour(ts):
    """The half-hour of the UTC day of ``ts`` (0 .. 47)."""
    sec = ts - math.floor(ts / DAY) * DAY
    return min(max(int(sec / (DAY / PROFILE_BUCKETS)), 0), PROFILE_BUCKETS - 1)


@hot
def profile_on(buf):
    """The profile applies: it is enabled and the time unit is below six hours."""
    return buf[M_PROFILE] != 0.0 and buf[M_UNIT] < PROFILE_UNIT_LIMIT


@hot
def profile_multiplier(buf, m, ts):
    """The intraday variance multiplier at ``ts`` for the model block ``m`` (1: none)."""
    if not profile_on(buf) or m[PROF_N] <= 0.0:
        return 1.0
    mean = m[PROF_S] / m[PROF_N]
    if not mean > 0.0:
        return 1.0
    b = half_hour(ts)
    own = (m[VPRO_S + b] + PROFILE_PRIOR * mean) / (m[VPRO_N + b] + PROFILE_PRIOR)
    mult = (own / mean) ** 2
    if math.isnan(mult):  # no multiplier rather than a poisoned state
        return 1.0
    return min(max(mult, MIN_MULTIPLIER), MAX_MULTIPLIER)


@hot
def profile_learn(buf, m, ts, absz):
    """Add one mean-absolute observation at ``ts``, decaying the sums by whole days."""
    day = math.floor(ts / DAY)
    if day != m[PROF_DAY]:
        elapsed = max(day - m[PROF_DAY], 0.0) if m[PROF_N] > 0.0 else 0.0
        m[PROF_DAY] = day
        f = 2.0 ** (-elapsed / buf[M_PROFILE_HALFLIFE])
        m[PROF_S] *= f
        m[PROF_N] *= f
        for k in range(PROFILE_BUCKETS):
            m[VPRO_S + k] *= f
            m[VPRO_N + k] *= f
    k = half_hour(ts)
    m[VPRO_S + k] += absz
    m[VPRO_N + k] += 1.0
    m[PROF_S] += absz
    m[PROF_N] += 1.0


# -- state (Python) -------------------------------------------------------------------------------

FIELDS = ("ordinary", "gaps", "profile_day", "profile_total", "profile")


def to_state(m: np.ndarray) -> dict[str, Any]:
    """A model block's time-rule and profile sums."""
    return {
        "ordinary": [float(m[A0_S]), float(m[A0_N])],
        "gaps": [
            m[VGAP_S : VGAP_S + GAP_BUCKETS].tolist(),
            m[VGAP_N : VGAP_N + GAP_BUCKETS].tolist(),
        ],
        "profile_day": float(m[PROF_DAY]),
        "profile_total": [float(m[PROF_S]), float(m[PROF_N])],
        "profile": [
            m[VPRO_S : VPRO_S + PROFILE_BUCKETS].tolist(),
            m[VPRO_N : VPRO_N + PROFILE_BUCKETS].tolist(),
        ],
    }


#: Bounds on the sums: each observation is at most MAX_ABS_Z, counts at most 2**53.
_MAX_SUM = 1e20


def from_state(path: str, state: Any, m: np.ndarray) -> None:
    """Validate ``state`` (:func:`to_state` output) and write it into the model block ``m``."""
    V.fields(path, state, FIELDS)
    a0 = V.matrix(f"{path}.ordinary", state["ordinary"], (2,), lo=0.0, hi=_MAX_SUM)
    gaps = V.matrix(f"{path}.gaps", state["gaps"], (2, GAP_BUCKETS), lo=0.0, hi=_MAX_SUM)
    day = V.number(f"{path}.profile_day", state["profile_day"], lo=-1e12, hi=1e12)
    total = V.matrix(f"{path}.profile_total", state["profile_total"], (2,), lo=0.0, hi=_MAX_SUM)
    prof = V.matrix(f"{path}.profile", state["profile"], (2, PROFILE_BUCKETS), lo=0.0, hi=_MAX_SUM)
    # Each sum is of observations of at most MAX_ABS_Z: a sum beyond MAX_ABS_Z times its count
    # was not written by the step (and would give a non-finite multiplier).
    for name, sums, counts in (
        ("ordinary", a0[:1], a0[1:]),
        ("gaps", gaps[0], gaps[1]),
        ("profile_total", total[:1], total[1:]),
        ("profile", prof[0], prof[1]),
    ):
        if np.any(sums > MAX_ABS_Z * counts * (1.0 + 1e-9)):
            raise ValueError(f"{path}.{name}: a sum exceeds {MAX_ABS_Z:g} times its count")
    m[A0_S], m[A0_N] = a0
    m[VGAP_S : VGAP_S + GAP_BUCKETS] = gaps[0]
    m[VGAP_N : VGAP_N + GAP_BUCKETS] = gaps[1]
    m[PROF_DAY] = day
    m[PROF_S], m[PROF_N] = total
    m[VPRO_S : VPRO_S + PROFILE_BUCKETS] = prof[0]
    m[VPRO_N : VPRO_N + PROFILE_BUCKETS] = prof[1]
