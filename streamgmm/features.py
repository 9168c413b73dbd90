"""Features from raw ticks: the time rules, the scaled return, and their part of a detector's state.

The arithmetic runs in the detectors' compiled step (:mod:`streamgmm._regime_kernel`, section 1);
this module reads ticks into numbers on the Python side and owns the features' part of
``to_state()`` / ``from_state()``.

Market ticks ``{"ts", "price", "volume"?}``
-------------------------------------------
``ts`` is in seconds. The feature is the log return in percent, ``r = 100 log(p_t / p_{t-1})``,
scaled to the **time unit**: ``dt = Δts / unit``,

* ``dt < 1``: ``r / sqrt(max(dt, min_dt_units))``, so closely spaced ticks are not mistaken for
  a calm market;
* ``1 <= dt <= gap_units``: ``r`` as it is, one step (a market accrues little variance while
  closed: on daily data weekends and holidays are one step, like in Hamilton's model);
* ``dt > gap_units``: a **session gap** (overnight, weekend, halt). Its return mixes news with
  the regime, so it is not evidence: the filter only moves one step. ``n_gaps`` counts them.

The unit is ``dt_unit`` seconds, or with ``dt_unit="auto"`` (the default) the median spacing of
the warm-up's ticks, so 1 ms, 1 s, 1 min or one-day spacings of the same path give the same
features. The median ignores the few long gaps a warm-up may hold.

Returns are standardised by the warm-up's root mean square (events: by each field's warm-up mean
and standard deviation), so the model's settings do not depend on the instrument's scale.

**Intraday profile.** Intraday volatility follows the clock: high at the open and the close,
low at midday. Left in, that pattern alone flips regimes twice a session. With
``intraday_profile`` (the default) each return is divided by the square root of its half-hour's
learnt variance multiplier: that bucket's mean of ``r^2 / E[r^2 | past]`` (the model's own
predictive mean square, so regimes cancel) over the overall mean, in sums decayed by whole UTC
days (half-life ``profile_halflife`` days) with 20 pseudo-ticks at 1 per bucket. The profile is used
only while its buckets differ beyond noise (a chi-square heterogeneity test, re-run once per UTC
day, must exceed its null mean by 4 standard deviations), and only for time units below six
hours, so daily data, or a path with no time-of-day pattern, is left exactly as it is.

Event ticks ``{"ts", <fields>...}``
-----------------------------------
The chosen numeric fields, as they are; the first event is already a feature vector.

Time rules (both)
-----------------
A tick whose ``ts`` equals the last accepted one is a *duplicate*; an older one is *out of
order*. Both are skipped and counted (``n_duplicates``, ``n_out_of_order``); the detector repeats
its previous output. A missing, non-numeric or non-finite field, a non-positive price, or a
negative ``volume`` raises :class:`ValueError` naming the field and the value, and changes
nothing.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from typing import Any

import numpy as np

from streamgmm import _regime_layout as L
from streamgmm import _validate as V

__all__ = ["check_number", "features_from_state", "features_to_state", "read_volume"]


def check_number(tick: Mapping[str, Any], field: str) -> float:
    """``tick[field]`` as a float: a real number (not a bool, not text).

    Raises
    ------
    ValueError
        If the field is missing or not a real number; the message names the field and value.
        (Finiteness and range are the compiled step's checks.)

    Examples
    --------
    >>> check_number({"price": 101}, "price")
    101.0
    >>> check_number({"price": "101"}, "price")
    Traceback (most recent call last):
    ...
    ValueError: tick field 'price' must be a number, got '101'
    """
    value = tick.get(field)
    if type(value) is float:
        return value
    if value is None:
        raise ValueError(f"tick field {field!r} is missing")
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"tick field {field!r} must be a number, got {value!r}")
    try:
        return float(value)
    except OverflowError:
        raise ValueError(f"tick field {field!r} is out of range, got {value!r}") from None


def read_volume(tick: Mapping[str, Any]) -> None:
    """Check an optional ``volume``: absent, None, or a finite non-negative number."""
    volume = tick.get("volume")
    if volume is None or (type(volume) is float and volume - volume == 0.0 and volume >= 0.0):
        return
    v = check_number(tick, "volume")
    if not (math.isfinite(v) and v >= 0.0):
        raise ValueError(f"tick field 'volume' must be finite and non-negative, got {volume!r}")


# -- state ------------------------------------------------------------------------------------

_FIELDS = ("last_ts", "last_price", "unit", "loc", "scale", "warmup", "profile")
_PROFILE_FIELDS = ("on", "day", "s", "s2", "n", "buckets")


def features_to_state(buf: np.ndarray) -> dict[str, Any]:
    """The features' part of a detector's state: reference tick, unit, scales, warm-up buffer."""
    lay = L.layout(buf)
    regions = L.regions(buf)
    d = lay[L.N_FEATURES]
    seen = buf[L.N_SEEN] > 0.0
    events = int(buf[L.KIND]) == L.EVENTS
    warm = regions["warmup_buffer"].reshape(lay[L.WARMUP], 1 + d)[: int(buf[L.N_BUFFERED])]
    return {
        "last_ts": float(buf[L.LAST_TS]) if seen else None,
        "last_price": float(buf[L.LAST_PRICE]) if seen and not events else None,
        "unit": float(buf[L.UNIT]),
        "loc": regions["loc"].tolist(),
        "scale": regions["scale"].tolist(),
        "warmup": warm.tolist(),
        "profile": {
            "on": bool(buf[L.PROFILE_ON]),
            "day": float(buf[L.PROFILE_DAY]),
            "s": float(buf[L.PROFILE_S]),
            "s2": float(buf[L.PROFILE_S2]),
            "n": float(buf[L.PROFILE_N]),
            "buckets": regions["profile_buckets"].reshape(L.PROFILE_BUCKETS, 2).tolist(),
        },
    }


def features_from_state(path: str, state: Any, buf: np.ndarray) -> None:
    """Validate ``state`` (:func:`features_to_state` output) and write it into ``buf``.

    ``buf`` already holds the settings and the counters; the phase decides what must be set.
    """
    V.fields(path, state, _FIELDS)
    lay = L.layout(buf)
    regions = L.regions(buf)
    d, u = lay[L.N_FEATURES], lay[L.WARMUP]
    events = int(buf[L.KIND]) == L.EVENTS
    seen = buf[L.N_SEEN] > 0.0
    running = int(buf[L.PHASE]) == L.RUNNING
    last_ts = V.optional_number(f"{path}.last_ts", state["last_ts"])
    if (last_ts is None) == seen:
        raise ValueError(f"{path}.last_ts must be set exactly when ticks were seen")
    last_price = V.optional_number(f"{path}.last_price", state["last_price"], lo=0.0, lo_open=True)
    if (last_price is None) != (events or not seen):
        raise ValueError(f"{path}.last_price must be set exactly for a price stream with ticks")
    unit = V.number(f"{path}.unit", state["unit"], lo=0.0)
    if running and not events and unit <= 0.0:
        raise ValueError(f"{path}.unit must be positive once the model runs, got {unit!r}")
    loc = V.matrix(f"{path}.loc", state["loc"], (d,))
    scale = V.matrix(f"{path}.scale", state["scale"], (d,), lo=0.0)
    if running and not (scale > 0.0).all():
        raise ValueError(f"{path}.scale must be positive once the model runs, got {scale!r}")
    warm = state["warmup"]
    if not isinstance(warm, list) or len(warm) > (0 if running else u - 1):
        raise ValueError(
            f"{path}.warmup must be a list of at most {0 if running else u - 1} entries"
        )
    entries = V.matrix(f"{path}.warmup", warm, (len(warm), 1 + d))
    if len(warm) and not (entries[:, 0] >= 0.0).all():
        raise ValueError(f"{path}.warmup spacings must be non-negative")
    profile = state["profile"]
    where = f"{path}.profile"
    V.fields(where, profile, _PROFILE_FIELDS)
    on = V.flag(f"{where}.on", profile["on"])
    last_day = math.floor((last_ts or 0.0) / 86400.0)
    day = V.number(f"{where}.day", profile["day"], lo=min(0.0, last_day), hi=max(0.0, last_day))
    sums = {k: V.number(f"{where}.{k}", profile[k], lo=0.0) for k in ("s", "s2", "n")}
    buckets = V.matrix(f"{where}.buckets", profile["buckets"], (L.PROFILE_BUCKETS, 2), lo=0.0)
    buf[L.PROFILE_ON] = on
    buf[L.PROFILE_DAY] = day
    buf[L.PROFILE_S], buf[L.PROFILE_S2], buf[L.PROFILE_N] = sums["s"], sums["s2"], sums["n"]
    regions["profile_buckets"][:] = buckets.ravel()
    buf[L.LAST_TS] = 0.0 if last_ts is None else last_ts
    buf[L.LAST_PRICE] = 0.0 if last_price is None else last_price
    buf[L.UNIT] = unit
    regions["loc"][:] = loc
    regions["scale"][:] = scale
    regions["warmup_buffer"][: entries.size] = entries.ravel()
    buf[L.N_BUFFERED] = len(warm)
