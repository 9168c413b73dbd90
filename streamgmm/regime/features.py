"""Features from raw ticks: the time rules, the scaled return, the warm-up's unit and scale.

The stage of the event detector's step (:mod:`streamgmm.regime.step`). The market detector,
:class:`~streamgmm.regime.RegimeDetector`, runs the forecaster's step instead, whose time rules
are :mod:`streamgmm.regime.clock` (closures there are evidence); the price-tick rules below
are this step's own.

The first stage of the step (:mod:`streamgmm.regime.step`): a tick's numbers are read and
checked (:func:`check_number`, :func:`read_volume` on the Python side; :func:`standardise` in
the compiled step), the time rules sort it, and its standardised feature vector is written
where the model reads it (the emission mixture's ``x`` slots). During the warm-up the raw
features are buffered (:func:`buffer_tick`); at its end :func:`fix_scale` sets the time unit
and the scale, and :func:`replay_tick` hands the buffered ticks to the model.

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
hours, so daily data, or a path with no time-of-day pattern, is left exactly as it is. The
profile's arithmetic and state are in :mod:`streamgmm.regime.profile`.

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

Owns the slots ``DT_UNIT``, ``GAP_UNITS``, ``MIN_DT_UNITS`` (settings), ``UNIT``, ``LAST_TS``,
``LAST_PRICE``, the counters ``N_SEEN``, ``N_DUPLICATES``, ``N_OUT_OF_ORDER``, ``N_GAPS``, the
warm-up's fill ``N_BUFFERED`` and the regions ``loc``, ``scale`` and ``warmup_buffer`` of
:mod:`streamgmm.regime.layout`.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from typing import Any

import numpy as np

from streamgmm import _validate as V
from streamgmm._numeric import MAX_ABS_VALUE, hot, jit
from streamgmm.mixture import layout as mx
from streamgmm.regime import profile
from streamgmm.regime.layout import (
    DT_UNIT,
    EVENTS,
    GAP_UNITS,
    KIND,
    LAST_PRICE,
    LAST_TS,
    LOC,
    MIN_DT_UNITS,
    N_BUFFERED,
    N_DUPLICATES,
    N_FEATURES,
    N_GAPS,
    N_OUT_OF_ORDER,
    N_SEEN,
    PHASE,
    RUNNING,
    S_BAD_PRICE,
    S_BAD_RETURN,
    S_BAD_TS,
    S_BAD_VALUE,
    S_DUPLICATE,
    S_FIRST,
    S_OUT_OF_ORDER,
    S_WARM,
    SCALE,
    TABLE,
    UNIT,
    WARMUP,
    WARMUP_BUFFER,
    read_layout,
)
from streamgmm.regime.params import TimeRules

__all__ = ["check_number", "from_state", "read_volume", "refusal", "settings", "to_state"]

#: Returns in percent.
RETURN_SCALE = 100.0
#: Warm-up values whose standard deviation is below this fraction of their mean are constant.
CONSTANT_RELATIVE = 1e-9


# -- reading ticks (Python) -----------------------------------------------------------------------


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


def refusal(status: int, name: str, tick: Mapping[str, Any]) -> ValueError:
    """The error of a tick the compiled step refused (``status`` ``S_BAD_*``; ``name`` is the
    field an ``S_BAD_VALUE`` names), naming the field and its value."""
    if status == S_BAD_TS:
        return ValueError(f"tick field 'ts' must be finite, got {tick.get('ts')!r}")
    if status == S_BAD_VALUE:
        value = tick.get(name)
        if isinstance(value, int | float) and abs(value) <= MAX_ABS_VALUE:
            return ValueError(
                f"tick field {name!r} is {value!r}, too far from the warm-up's values to "
                f"use (standardised beyond ±{MAX_ABS_VALUE:g})"
            )
        return ValueError(
            f"tick field {name!r} must be finite and within ±{MAX_ABS_VALUE:g}, got {value!r}"
        )
    if status == S_BAD_PRICE:
        return ValueError(f"tick field 'price' must be positive, got {tick.get('price')!r}")
    return ValueError(
        f"tick gives an unusable return (price {tick.get('price')!r}, ts {tick.get('ts')!r})"
    )


# -- the time rules and the features (compiled) ---------------------------------------------------


@hot
def _classify(buf, ts):
    """S_FIRST, S_DUPLICATE, S_OUT_OF_ORDER or S_WARM (in order) for a finite ``ts``."""
    if buf[N_SEEN] == 0.0:
        return S_FIRST
    last = buf[LAST_TS]
    if ts == last:
        return S_DUPLICATE
    if ts < last:
        return S_OUT_OF_ORDER
    return S_WARM


@hot
def _scaled_return(buf, dt_seconds, log_return):
    """(x, gap) for a return over ``dt_seconds`` once the time unit is known.

    Spacings shorter than the unit scale the return up by 1/sqrt(dt) (at most by
    1/sqrt(min_dt_units)); spacings from one to ``gap_units`` units count as one step (a
    market accrues little variance while it is closed); longer spacings are session gaps,
    whose return is not evidence about the regime.
    """
    dt = dt_seconds / buf[UNIT]
    if dt > buf[GAP_UNITS]:
        return log_return, True
    if dt < 1.0:
        dt = max(dt, buf[MIN_DT_UNITS])
        return log_return / math.sqrt(dt), False
    return log_return, False


@hot
def standardise(buf, lay, mix, mlay, ts, vals):
    """Check the tick and write its standardised features into the mixture's x slots.

    Returns (status, field, evidence, dt_seconds, log_return): the status is S_WARM for a
    tick to apply; ``field`` names the bad value of an S_BAD_VALUE. Nothing of the state
    changes here (PROFILE_M is working space of one tick).
    """
    d = lay[N_FEATURES]
    events = int(buf[KIND]) == EVENTS
    if not math.isfinite(ts):
        return S_BAD_TS, 0, False, 0.0, 0.0
    for j in range(vals.shape[0]):
        v = vals[j]
        if not (math.isfinite(v) and abs(v) <= MAX_ABS_VALUE):
            return S_BAD_VALUE, j, False, 0.0, 0.0
    if not events and not vals[0] > 0.0:
        return S_BAD_PRICE, 0, False, 0.0, 0.0
    status = _classify(buf, ts)
    if status != S_WARM:
        return status, 0, False, 0.0, 0.0
    if events:
        dt = ts - buf[LAST_TS] if buf[N_SEEN] > 0.0 else 0.0
        if int(buf[PHASE]) == RUNNING:  # in the warm-up there is no scale yet
            for j in range(d):
                z = (vals[j] - buf[lay[LOC] + j]) / buf[lay[SCALE] + j]
                if not (math.isfinite(z) and abs(z) <= MAX_ABS_VALUE):
                    # Standardised beyond the mixture's range (a value very far from the
                    # warm-up's, or a tiny scale): refused like a bad value.
                    return S_BAD_VALUE, j, False, 0.0, 0.0
                mix[mlay[mx.X] + j] = z
        return S_WARM, 0, True, dt, 0.0
    dt = ts - buf[LAST_TS]
    log_return = RETURN_SCALE * math.log(vals[0] / buf[LAST_PRICE])
    if not (math.isfinite(log_return) and abs(log_return) <= MAX_ABS_VALUE):
        return S_BAD_RETURN, 0, False, 0.0, 0.0
    evidence = True
    if int(buf[PHASE]) == RUNNING:
        x, gap = _scaled_return(buf, dt, log_return)
        evidence = not gap
        m = profile.tick_multiplier(buf, lay, ts, evidence)
        z = (x / math.sqrt(m) - buf[lay[LOC]]) / buf[lay[SCALE]]
        if not (math.isfinite(z) and abs(z) <= MAX_ABS_VALUE):
            return S_BAD_RETURN, 0, False, 0.0, 0.0
        mix[mlay[mx.X]] = z
    return S_WARM, 0, evidence, dt, log_return


@hot
def skip(buf, status):
    """Count a duplicate or out-of-order tick."""
    buf[N_DUPLICATES if status == S_DUPLICATE else N_OUT_OF_ORDER] += 1.0


@hot
def accept(buf, ts, vals):
    """Count an accepted tick and keep it as the reference for the next (time, price)."""
    buf[N_SEEN] += 1.0
    buf[LAST_TS] = ts
    if int(buf[KIND]) != EVENTS:
        buf[LAST_PRICE] = vals[0]


@hot
def count_gap(buf):
    """Count a tick after a session gap (no evidence)."""
    buf[N_GAPS] += 1.0


@hot
def log_scale(buf, lay):
    """Sum of log scales: turns a standardised log-density into one in the input's units."""
    acc = 0.0
    for j in range(lay[N_FEATURES]):
        acc += math.log(buf[lay[SCALE] + j])
    return acc


# -- the warm-up: buffered ticks, then the unit and the scale (compiled) --------------------------


@hot
def buffer_tick(buf, lay, dt, vals, log_return):
    """Buffer a warm-up tick (its spacing, then its return or its values); True when full."""
    d = lay[N_FEATURES]
    n = int(buf[N_BUFFERED])
    entry = lay[WARMUP_BUFFER] + n * (1 + d)
    buf[entry] = dt
    if int(buf[KIND]) == EVENTS:
        for j in range(d):
            buf[entry + 1 + j] = vals[j]
    else:
        buf[entry + 1] = log_return
    buf[N_BUFFERED] = n + 1
    return n + 1 >= lay[WARMUP]


@hot
def _warm_values(buf, lay, i, out):
    """Feature vector of warm-up entry ``i`` (raw, before standardisation) into ``out``;
    returns False for a session gap."""
    d = lay[N_FEATURES]
    entry = lay[WARMUP_BUFFER] + i * (1 + d)
    if int(buf[KIND]) == EVENTS:
        for j in range(d):
            out[j] = buf[entry + 1 + j]
        return True
    x, gap = _scaled_return(buf, buf[entry], buf[entry + 1])
    out[0] = x
    return not gap


@jit
def fix_scale(buf):
    """End of the warm-up: fix the time unit, the location and the scale from the buffer.

    Returns False when the buffered values do not vary: a scale cannot be set from a constant
    stream, and the warm-up starts over. Either way the buffer is emptied; its entries stay
    readable for the replay through the model (:func:`replay_tick`).
    """
    lay = read_layout(buf)
    d, u = lay[N_FEATURES], lay[WARMUP]
    loc, scale = lay[LOC], lay[SCALE]
    events = int(buf[KIND]) == EVENTS
    if not events:
        if buf[DT_UNIT] > 0.0:
            buf[UNIT] = buf[DT_UNIT]
        else:
            spacings = np.empty(u)
            for i in range(u):
                spacings[i] = buf[lay[WARMUP_BUFFER] + i * (1 + d)]
            buf[UNIT] = np.median(spacings)
    values = np.empty(d)
    n = 0
    for j in range(d):
        buf[loc + j] = 0.0
        buf[scale + j] = 0.0
    # Location (events only) and scale from the entries that are evidence.
    for i in range(u):
        if _warm_values(buf, lay, i, values):
            n += 1
            for j in range(d):
                buf[loc + j] += values[j]
    if n < 2:
        buf[N_BUFFERED] = 0.0
        return False
    for j in range(d):
        buf[loc + j] = buf[loc + j] / n if events else 0.0
    for i in range(u):
        if _warm_values(buf, lay, i, values):
            for j in range(d):
                buf[scale + j] += (values[j] - buf[loc + j]) ** 2
    constant = True
    for j in range(d):
        v = buf[scale + j] / (n - 1 if events else n)
        # A spread within rounding of the mean (a constant field) is no scale.
        noise = CONSTANT_RELATIVE * abs(buf[loc + j])
        if v > noise * noise and v < np.inf:
            constant = False
            buf[scale + j] = math.sqrt(v)
        else:
            buf[scale + j] = 1.0
    buf[N_BUFFERED] = 0.0
    return not constant


@hot
def replay_tick(buf, lay, mix, mlay, i, values):
    """Warm-up entry ``i``, standardised, into the mixture's x slots (``values`` is working
    space of D floats); returns False for a session gap."""
    evidence = _warm_values(buf, lay, i, values)
    for j in range(lay[N_FEATURES]):
        mix[mlay[mx.X] + j] = (values[j] - buf[lay[LOC] + j]) / buf[lay[SCALE] + j]
    return evidence


# -- settings and state (Python) ------------------------------------------------------------------


def settings(buf: np.ndarray, s: TimeRules) -> None:
    """Write the time rules' settings of price ticks (checked by their declaration,
    :class:`~streamgmm.regime.params.TimeRules`); ``dt_unit="auto"`` is stored as 0 (the
    warm-up's median spacing)."""
    buf[DT_UNIT] = 0.0 if s.dt_unit == "auto" else s.dt_unit
    buf[GAP_UNITS] = s.gap_units
    buf[MIN_DT_UNITS] = s.min_dt_units


_FIELDS = ("last_ts", "last_price", "unit", "loc", "scale", "warmup", "profile")


def to_state(buf: np.ndarray) -> dict[str, Any]:
    """The features' part of a detector's state: reference tick, unit, scales, warm-up buffer,
    and the intraday profile's part."""
    d, u = int(buf[N_FEATURES]), int(buf[WARMUP])
    seen = buf[N_SEEN] > 0.0
    events = int(buf[KIND]) == EVENTS
    warm = TABLE.view(buf, WARMUP_BUFFER).reshape(u, 1 + d)[: int(buf[N_BUFFERED])]
    return {
        "last_ts": float(buf[LAST_TS]) if seen else None,
        "last_price": float(buf[LAST_PRICE]) if seen and not events else None,
        "unit": float(buf[UNIT]),
        "loc": TABLE.view(buf, LOC).tolist(),
        "scale": TABLE.view(buf, SCALE).tolist(),
        "warmup": warm.tolist(),
        "profile": profile.to_state(buf),
    }


def from_state(path: str, state: Any, buf: np.ndarray) -> None:
    """Validate ``state`` (:func:`to_state` output) and write it into ``buf``.

    ``buf`` already holds the settings and the counters; the phase decides what must be set.
    """
    V.fields(path, state, _FIELDS)
    d, u = int(buf[N_FEATURES]), int(buf[WARMUP])
    events = int(buf[KIND]) == EVENTS
    seen = buf[N_SEEN] > 0.0
    running = int(buf[PHASE]) == RUNNING
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
    profile.from_state(f"{path}.profile", state["profile"], buf, last_ts)
    buf[LAST_TS] = 0.0 if last_ts is None else last_ts
    buf[LAST_PRICE] = 0.0 if last_price is None else last_price
    buf[UNIT] = unit
    TABLE.view(buf, LOC)[:] = loc
    TABLE.view(buf, SCALE)[:] = scale
    TABLE.view(buf, WARMUP_BUFFER)[: entries.size] = entries.ravel()
    buf[N_BUFFERED] = len(warm)
