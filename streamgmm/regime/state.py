"""A detector's state as versioned JSON, by named parts, each written and checked by its stage.

``to_state()`` writes the settings (the constructor's arguments), the counters, the phase, and
one part per stage: ``features`` (:mod:`~streamgmm.regime.features`, with the intraday
profile), ``hmm`` (:mod:`~streamgmm.regime.hmm`, with the labels' ``order``,
:mod:`~streamgmm.regime.labels`), ``drift`` (:mod:`~streamgmm.regime.drift`) and
``last_output`` (:mod:`~streamgmm.regime.step`). The buffer's layout is never stored: a
stored state is read into a fresh detector built from its settings, every part validated
before it is written, and the model's derived parameters are recomputed from its statistics.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from streamgmm import _validate as V
from streamgmm._numeric import MAX_ABS_VALUE
from streamgmm.regime import drift, features, forecast, hmm, labels, level, step, volatility
from streamgmm.regime.layout import (
    EGARCH,
    GJR,
    M_LAST_PRICE,
    M_LAST_TS,
    M_LOG_W_EG,
    M_LOG_W_GJR,
    M_N_BUFFERED,
    M_N_DRIFTS,
    M_N_DUPLICATES,
    M_N_GAPS,
    M_N_LABEL_CHANGES,
    M_N_OUT_OF_ORDER,
    M_N_SEEN,
    M_PHASE,
    M_SCALE,
    M_UNIT,
    M_WARMUP,
    MARKET,
    N_DRIFTS,
    N_DUPLICATES,
    N_GAPS,
    N_LABEL_CHANGES,
    N_OUT_OF_ORDER,
    N_SEEN,
    N_STEPS,
    PHASE,
    RUNNING,
    TABLE,
    TRANSITIONS,
    WARM_TICKS,
    WARMING,
    mixture,
)

__all__ = [
    "STATE_VERSION",
    "load",
    "market_load",
    "market_to_state",
    "params_from_state",
    "to_state",
]

#: Version 3: the market detector's forecaster (:func:`market_to_state`); the event detector's
#: state is unchanged from version 2, which it still reads.
STATE_VERSION = 3
#: Versions an event detector reads (its parts did not change).
_EVENT_VERSIONS = (2, 3)

_COUNTERS = {
    "n_samples_seen": N_SEEN,
    "n_steps": N_STEPS,
    "n_duplicates": N_DUPLICATES,
    "n_out_of_order": N_OUT_OF_ORDER,
    "n_gaps": N_GAPS,
    "n_label_changes": N_LABEL_CHANGES,
    "n_drifts": N_DRIFTS,
}
_STATE_FIELDS = (
    "version",
    "kind",
    "params",
    "counters",
    "running",
    "features",
    "hmm",
    "drift",
    "last_output",
)


def to_state(buf: np.ndarray, kind: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """The state of the detector of class ``kind`` built with ``params``, holding ``buf``."""
    running = int(buf[PHASE]) == RUNNING
    model = None
    if running:
        # The labels' order is stored with the model's statistics it ranks.
        model = {**hmm.to_state(buf), "order": labels.to_state(buf)}
    return {
        "version": STATE_VERSION,
        "kind": kind,
        "params": dict(params),
        "counters": {name: int(buf[slot]) for name, slot in _COUNTERS.items()},
        "running": running,
        "features": features.to_state(buf),
        "hmm": model,
        "drift": drift.to_state(buf),
        "last_output": step.last_output_to_state(buf),
    }


def params_from_state(
    state: Any, kind: str, names: Sequence[str], renamed: Mapping[str, str]
) -> dict[str, Any]:
    """The constructor arguments stored in ``state``, after its fields, kind and version.

    A state written before a setting was renamed stores it under its old name (``renamed``:
    old name -> new name); it is read under the new one.
    """
    market = kind == "RegimeDetector"
    V.fields("state", state, ("version", "kind", "params"), _MARKET_FIELDS + _STATE_FIELDS)
    if state["kind"] != kind:
        raise ValueError(f"state: not a {kind} snapshot (kind {state['kind']!r})")
    version = state["version"]
    readable = _EVENT_VERSIONS if kind == "EventDetector" else (STATE_VERSION,)
    if isinstance(version, bool) or version not in readable:
        hint = ""
        if kind == "RegimeDetector" and version in (1, 2):
            hint = (
                ": it holds the earlier regime model, which nothing of the forecasting detector "
                "can be made from; the key starts afresh (re-warms in `warmup` ticks)"
            )
        raise ValueError(
            f"{kind} state version {version!r} is not supported (expected {STATE_VERSION}){hint}"
        )
    V.fields("state", state, _MARKET_FIELDS if market else _STATE_FIELDS)
    params = state["params"]
    if isinstance(params, Mapping) and any(old in params for old in renamed):
        read = {renamed.get(name, name): value for name, value in params.items()}
        if len(read) != len(params):
            raise ValueError("state.params has a setting under both its old and its new name")
        params = read
    V.fields("state.params", params, names)
    return dict(params)


def load(buf: np.ndarray, state: Mapping[str, Any]) -> None:
    """Validate the parts of ``state`` and write them into a fresh detector's ``buf``."""
    counters = state["counters"]
    V.fields("state.counters", counters, tuple(_COUNTERS))
    for name, slot in _COUNTERS.items():
        buf[slot] = V.integer(f"state.counters.{name}", counters[name])
    running = V.flag("state.running", state["running"])
    buf[PHASE] = RUNNING if running else WARMING
    features.from_state("state.features", state["features"], buf)
    model = state["hmm"]
    if not running:
        if model is not None:
            raise ValueError("state.hmm must be null during the warm-up")
    else:
        V.fields("state.hmm", model, (*hmm.FIELDS, "order"))
        hmm.from_state("state.hmm", model, buf)
        labels.from_state("state.hmm.order", model["order"], buf)
    drift.from_state("state.drift", state["drift"], buf)
    step.last_output_from_state("state.last_output", state["last_output"], buf)
    hmm.refresh(buf)
    # Statistics in range can still give an overflowing model (a second moment near the
    # float limit divided by a small occupancy): refuse it rather than run it.
    if not (np.isfinite(mixture(buf)).all() and np.isfinite(TABLE.view(buf, TRANSITIONS)).all()):
        raise ValueError(
            "state.hmm: the statistics give a non-finite model (a moment beyond range?)"
        )


# -- the market detector (RegimeDetector) ---------------------------------------------------------

_MARKET_COUNTERS = {
    "n_samples_seen": M_N_SEEN,
    "n_duplicates": M_N_DUPLICATES,
    "n_out_of_order": M_N_OUT_OF_ORDER,
    "n_gaps": M_N_GAPS,
    "n_label_changes": M_N_LABEL_CHANGES,
    "n_drifts": M_N_DRIFTS,
}
_MARKET_FIELDS = (
    "version",
    "kind",
    "params",
    "counters",
    "running",
    "clock",
    "gjr",
    "egarch",
    "pool",
    "level",
    "drift",
    "forecast",
)


def market_to_state(buf: np.ndarray, kind: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """The state of a market detector: settings, counters, then one part per stage."""
    running = int(buf[M_PHASE]) == RUNNING
    u = int(buf[M_WARMUP])
    seen = buf[M_N_SEEN] > 0.0
    warm = MARKET.view(buf, WARM_TICKS).reshape(u, 2)[: int(buf[M_N_BUFFERED])]
    return {
        "version": STATE_VERSION,
        "kind": kind,
        "params": dict(params),
        "counters": {name: int(buf[slot]) for name, slot in _MARKET_COUNTERS.items()},
        "running": running,
        "clock": {
            "last_ts": float(buf[M_LAST_TS]) if seen else None,
            "last_price": float(buf[M_LAST_PRICE]) if seen else None,
            "unit": float(buf[M_UNIT]) if running else None,
            "scale": float(buf[M_SCALE]) if running else None,
            "warmup": warm.tolist(),
        },
        "gjr": volatility.to_state(MARKET.view(buf, GJR)) if running else None,
        "egarch": volatility.to_state(MARKET.view(buf, EGARCH)) if running else None,
        "pool": [float(buf[M_LOG_W_GJR]), float(buf[M_LOG_W_EG])] if running else None,
        "level": level.to_state(buf) if running else None,
        "drift": drift.pit_to_state(buf),
        "forecast": forecast.next_to_state(buf),
    }


def market_load(buf: np.ndarray, state: Mapping[str, Any]) -> None:
    """Validate the parts of a market detector's ``state`` and write them into ``buf``
    (a fresh detector's, built from the state's settings)."""
    V.fields("state", state, _MARKET_FIELDS)
    counters = state["counters"]
    V.fields("state.counters", counters, tuple(_MARKET_COUNTERS))
    for name, slot in _MARKET_COUNTERS.items():
        buf[slot] = V.integer(f"state.counters.{name}", counters[name])
    running = V.flag("state.running", state["running"])
    buf[M_PHASE] = RUNNING if running else WARMING
    seen = buf[M_N_SEEN] > 0.0
    c = state["clock"]
    V.fields("state.clock", c, ("last_ts", "last_price", "unit", "scale", "warmup"))
    last_ts = V.optional_number("state.clock.last_ts", c["last_ts"])
    last_price = V.optional_number(
        "state.clock.last_price", c["last_price"], lo=0.0, hi=MAX_ABS_VALUE, lo_open=True
    )
    if (last_ts is None) == seen or (last_price is None) == seen:
        raise ValueError("state.clock: last_ts and last_price are set exactly when ticks were seen")
    unit = V.optional_number("state.clock.unit", c["unit"], lo=1e-9, hi=1e300)
    # The warm-up's root mean square of percent returns (each at most 1e100, over a spacing of
    # at least 1e-9 units): at most about 3e104.
    scale = V.optional_number("state.clock.scale", c["scale"], lo=0.0, hi=1e105, lo_open=True)
    if (unit is None or scale is None) == running:
        raise ValueError("state.clock: unit and scale are set exactly once the model runs")
    u = int(buf[M_WARMUP])
    warm = c["warmup"]
    limit = 0 if running else u - 1
    if not isinstance(warm, list) or len(warm) > limit:
        raise ValueError(f"state.clock.warmup must be a list of at most {limit} entries")
    entries = V.matrix("state.clock.warmup", warm, (len(warm), 2), lo=-MAX_ABS_VALUE,
                       hi=MAX_ABS_VALUE)  # fmt: skip
    if len(warm) and not (entries[:, 0] >= 0.0).all():
        raise ValueError("state.clock.warmup spacings must be non-negative")
    buf[M_LAST_TS] = 0.0 if last_ts is None else last_ts
    buf[M_LAST_PRICE] = 0.0 if last_price is None else last_price
    buf[M_UNIT] = 0.0 if unit is None else unit
    buf[M_SCALE] = 0.0 if scale is None else scale
    MARKET.view(buf, WARM_TICKS)[: entries.size] = entries.ravel()
    buf[M_N_BUFFERED] = len(warm)
    parts = ("gjr", "egarch", "pool", "level")
    if not running:
        if any(state[name] is not None for name in parts):
            raise ValueError(f"state: {', '.join(parts)} must be null during the warm-up")
    else:
        volatility.from_state("state.gjr", state["gjr"], MARKET.view(buf, GJR), False)
        volatility.from_state("state.egarch", state["egarch"], MARKET.view(buf, EGARCH), True)
        # log weights: forgotten at 0.999 a tick, each tick adding a log density above -1e5
        pool = V.matrix("state.pool", state["pool"], (2,), lo=-1e12, hi=1e12)
        buf[M_LOG_W_GJR], buf[M_LOG_W_EG] = pool
        level.from_state("state.level", state["level"], buf)
    drift.pit_from_state("state.drift", state["drift"], buf)
    forecast.next_from_state("state.forecast", state["forecast"], buf)
