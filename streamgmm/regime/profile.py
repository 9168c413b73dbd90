"""The intraday volatility profile of price ticks: its arithmetic and its part of the state.

Intraday volatility follows the clock, and left in, that pattern alone flips regimes twice a
session; :mod:`streamgmm.regime.features` describes the remedy. Here: per half-hour of the UTC
day, the decayed sum and count of ``z = r^2 / E[r^2 | past]`` (a tick's squared return over
the model's own predictive mean square, so regimes cancel; Andersen and Bollerslev 1997), the
variance multiplier a tick's return is divided by (:func:`tick_multiplier`), the once-a-day
decay and gate (:func:`_new_day`) and the update after the model has scored the tick
(:func:`update`).

Owns the slots ``PROFILE``, ``PROFILE_HALFLIFE`` (settings), ``PROFILE_ON``, ``PROFILE_DAY``,
``PROFILE_S``, ``PROFILE_S2``, ``PROFILE_N``, the region ``profile_buckets``, and ``PROFILE_M``
(the current tick's multiplier, working space) of :mod:`streamgmm.regime.layout`.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from streamgmm import _validate as V
from streamgmm._numeric import hot, jit
from streamgmm.regime.layout import (
    BUCKETS,
    PROFILE,
    PROFILE_BUCKETS,
    PROFILE_DAY,
    PROFILE_HALFLIFE,
    PROFILE_M,
    PROFILE_N,
    PROFILE_ON,
    PROFILE_S,
    PROFILE_S2,
    TABLE,
    UNIT,
    read_layout,
)
from streamgmm.regime.params import TimeRules

__all__ = ["from_state", "learns", "settings", "tick_multiplier", "to_state", "update"]

DAY_SECONDS = 86400.0
#: The profile is learnt only for time units below a quarter day: with fewer than four ticks a
#: day there is no time-of-day pattern to see (on daily data every tick is in one bucket).
PROFILE_MAX_UNIT = DAY_SECONDS / 4.0
#: Pseudo-ticks at multiplier 1 per profile bucket (shrinks sparsely seen buckets to no change).
PROFILE_PRIOR = 20.0
#: The profile is applied only while its buckets differ beyond noise: the heterogeneity
#: statistic must exceed its null mean by this many null standard deviations.
PROFILE_GATE = 4.0
_DAY = DAY_SECONDS


@hot
def _bucket(ts):
    """Half-hour of the UTC day that ``ts`` falls in."""
    seconds = ts - math.floor(ts / _DAY) * _DAY
    return min(int(seconds / (_DAY / PROFILE_BUCKETS)), PROFILE_BUCKETS - 1)


@hot
def _multiplier(buf, lay, ts):
    """Variance multiplier of ``ts``'s half-hour: its mean of ``z`` over the overall mean, with
    PROFILE_PRIOR pseudo-ticks at 1, while the gate is open; else 1.

    ``z`` is a tick's squared return over the model's predictive mean square, so regimes cancel
    and what remains is the time-of-day pattern (Andersen and Bollerslev 1997).
    """
    if buf[PROFILE] == 0.0 or buf[PROFILE_ON] == 0.0 or buf[PROFILE_N] <= 0.0:
        return 1.0
    entry = lay[BUCKETS] + 2 * _bucket(ts)
    mean = buf[PROFILE_S] / buf[PROFILE_N]
    if not mean > 0.0:
        return 1.0
    own = (buf[entry] + PROFILE_PRIOR * mean) / (buf[entry + 1] + PROFILE_PRIOR)
    return own / mean


@hot
def tick_multiplier(buf, lay, ts, evidence):
    """The multiplier of this tick (1 for a session gap), kept in PROFILE_M until its update."""
    m = _multiplier(buf, lay, ts) if evidence else 1.0
    buf[PROFILE_M] = m
    return m


@hot
def learns(buf):
    """Whether the profile learns: switched on, and a time unit below a quarter day."""
    return buf[PROFILE] != 0.0 and buf[UNIT] < PROFILE_MAX_UNIT


@jit
def _new_day(buf, day):
    """Once per UTC day: decay every sum by the days elapsed (half-life ``profile_halflife``),
    then re-test whether the buckets differ beyond noise.

    The gate: Q = sum_b n_b (mean_b - mean)^2 / var(z) is chi-square with (buckets seen - 1)
    degrees of freedom when the profile is flat; the profile is used while Q exceeds that
    null's mean by PROFILE_GATE null standard deviations.
    """
    lay = read_layout(buf)
    elapsed = max(day - buf[PROFILE_DAY], 0.0) if buf[PROFILE_N] > 0.0 else 0.0
    buf[PROFILE_DAY] = day
    f = 2.0 ** (-elapsed * _DAY / buf[PROFILE_HALFLIFE])
    buf[PROFILE_S] *= f
    buf[PROFILE_S2] *= f
    buf[PROFILE_N] *= f
    for b in range(PROFILE_BUCKETS):
        e = lay[BUCKETS] + 2 * b
        buf[e] *= f
        buf[e + 1] *= f
    n = buf[PROFILE_N]
    if not n > 0.0:
        buf[PROFILE_ON] = 0.0
        return
    mean = buf[PROFILE_S] / n
    var = buf[PROFILE_S2] / n - mean * mean
    if not (var > 0.0 and mean > 0.0):
        buf[PROFILE_ON] = 0.0
        return
    q = 0.0
    seen = 0
    for b in range(PROFILE_BUCKETS):
        e = lay[BUCKETS] + 2 * b
        nb = buf[e + 1]
        if nb >= 1.0:
            seen += 1
            q += nb * (buf[e] / nb - mean) ** 2
    dof = seen - 1
    open_gate = dof > 0 and q / var > dof + PROFILE_GATE * math.sqrt(2.0 * dof)
    buf[PROFILE_ON] = 1.0 if open_gate else 0.0


@hot
def update(buf, lay, ts, z):
    """Add a tick's ``z`` to its bucket and to the totals; a new UTC day decays and re-tests
    first (sums decay by whole days, so ticks of one day weigh the same)."""
    day = math.floor(ts / _DAY)
    if day != buf[PROFILE_DAY]:
        _new_day(buf, day)
    entry = lay[BUCKETS] + 2 * _bucket(ts)
    buf[entry] += z
    buf[entry + 1] += 1.0
    buf[PROFILE_S] += z
    buf[PROFILE_S2] += z * z
    buf[PROFILE_N] += 1.0


# -- settings and state (Python) ------------------------------------------------------------------


def settings(buf: np.ndarray, s: TimeRules) -> None:
    """Write the profile's settings (checked by their declaration,
    :class:`~streamgmm.regime.params.TimeRules`); the half-life in seconds."""
    buf[PROFILE] = s.intraday_profile
    buf[PROFILE_HALFLIFE] = DAY_SECONDS * s.profile_halflife


_FIELDS = ("on", "day", "s", "s2", "n", "buckets")


def to_state(buf: np.ndarray) -> dict[str, Any]:
    """The profile's part of the state: the gate, the day, the totals and the buckets."""
    return {
        "on": bool(buf[PROFILE_ON]),
        "day": float(buf[PROFILE_DAY]),
        "s": float(buf[PROFILE_S]),
        "s2": float(buf[PROFILE_S2]),
        "n": float(buf[PROFILE_N]),
        "buckets": TABLE.view(buf, BUCKETS).reshape(PROFILE_BUCKETS, 2).tolist(),
    }


def from_state(where: str, profile: Any, buf: np.ndarray, last_ts: float | None) -> None:
    """Validate ``profile`` (:func:`to_state` output) and write it into ``buf``.

    Its day lies between day 0 and the day of the last accepted tick ``last_ts``.
    """
    V.fields(where, profile, _FIELDS)
    on = V.flag(f"{where}.on", profile["on"])
    last_day = math.floor((last_ts or 0.0) / DAY_SECONDS)
    day = V.number(f"{where}.day", profile["day"], lo=min(0.0, last_day), hi=max(0.0, last_day))
    sums = {k: V.number(f"{where}.{k}", profile[k], lo=0.0) for k in ("s", "s2", "n")}
    buckets = V.matrix(f"{where}.buckets", profile["buckets"], (PROFILE_BUCKETS, 2), lo=0.0)
    buf[PROFILE_ON] = on
    buf[PROFILE_DAY] = day
    buf[PROFILE_S], buf[PROFILE_S2], buf[PROFILE_N] = sums["s"], sums["s2"], sums["n"]
    TABLE.view(buf, BUCKETS)[:] = buckets.ravel()
