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
from streamgmm.regime import drift, features, hmm, labels, step
from streamgmm.regime.layout import (
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
    WARMING,
    mixture,
)

__all__ = ["STATE_VERSION", "load", "params_from_state", "to_state"]

STATE_VERSION = 2

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
    V.fields("state", state, _STATE_FIELDS)
    if state["kind"] != kind:
        raise ValueError(f"state: not a {kind} snapshot (kind {state['kind']!r})")
    if state["version"] != STATE_VERSION:
        raise ValueError(
            f"{kind} state version {state['version']!r} is not supported (expected {STATE_VERSION})"
        )
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
