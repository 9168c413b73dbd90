"""Hostile stored state: every ``from_state`` rejects cleanly or yields a model that works.

Valid states of every component (the mixture, the regime and event detectors in and after
their warm-up, the drift monitor, and the service's changelog snapshot of a key: envelope,
bookkeeping and detector, read as the service reads it) are mutated by hypothesis: numbers
(NaN, infinities, huge, tiny, negative, 5e-324), types (text, booleans, null, lists,
objects), deleted and unknown fields, and lists made longer or shorter. Each case must either
raise ``ValueError`` or give a model whose state is strict JSON and whose next 100 outputs are
finite; nothing else (another exception, a hang, a crash of the process) is allowed.

CI runs 5,000 cases per component (25,000 in all). ``STREAMGMM_FUZZ_CASES=250000 pytest -m
long tests/test_state_fuzz.py`` runs the long campaign (1,250,000 cases).
"""

from __future__ import annotations

import copy
import json
import math
import os
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streamgmm import OnlineGaussianMixture
from streamgmm.regime import EventDetector, RegimeDetector
from streamgmm.regime.drift import LikelihoodDriftMonitor
from streamgmm.service.snapshot import decode_snapshot, encode_snapshot
from streamgmm.settings.layers import load_settings
from streamgmm.synthetic import intraday_stream, switching_stream
from streamgmm.ticks.keystate import KeyState
from streamgmm.ticks.rules import TickRules
from streamgmm.ticks.tick import Tick

CI_CASES = int(os.environ.get("STREAMGMM_FUZZ_CI_CASES", "5000"))
LONG_CASES = int(os.environ.get("STREAMGMM_FUZZ_CASES", "250000"))


def _regime_states() -> list[dict[str, Any]]:
    """The market detector in its warm-up, running on daily ticks, and running on intraday
    bars (its profile and gap buckets filled)."""
    ticks = switching_stream(0, n=400).ticks()
    states = []
    for n, warmup in ((15, 20), (400, 50)):
        det = RegimeDetector(warmup=warmup)
        det.learn_predict_many(ticks[:n])
        states.append(det.to_state())
    det = RegimeDetector()
    det.learn_predict_many(intraday_stream(0, days=12).ticks())
    states.append(det.to_state())
    return states


def _event_states() -> list[dict[str, Any]]:
    rng = np.random.default_rng(0)
    det = EventDetector(["a", "b"], warmup=20)
    det.learn_predict_many(
        [
            {"ts": float(t), "a": float(rng.normal()), "b": float(rng.normal(5, 2))}
            for t in range(200)
        ]
    )
    return [det.to_state()]


def _mixture_states() -> list[dict[str, Any]]:
    rng = np.random.default_rng(1)
    out = []
    for cov in ("full", "diag"):
        model = OnlineGaussianMixture(2, covariance_type=cov, warmup=20, seed=0)
        for _ in range(60):
            model.learn_one({"x": float(rng.normal()), "y": float(rng.normal(3))})
        out.append(model.to_state())
    warming = OnlineGaussianMixture(2, warmup=20)
    warming.learn_one({"x": 1.0})
    out.append(warming.to_state())
    return out


def _drift_states() -> list[dict[str, Any]]:
    monitor = LikelihoodDriftMonitor()
    rng = np.random.default_rng(2)
    for x in rng.normal(size=300):
        monitor.update(-0.5 * x * x, -0.5)
    return [monitor.to_state()]


SETTINGS = load_settings(None, {}, {})


def _snapshot_states() -> list[dict[str, Any]]:
    """Changelog values (decoded JSON) of a key in and after its warm-up, as the service
    writes them."""
    ticks = switching_stream(1, n=300).ticks()
    out = []
    for n in (20, 300):
        state = KeyState(RegimeDetector(), partition=2)
        rows = [
            (Tick("K", float(t["ts"]), {"price": float(t["price"])}, "in", 2, i), None)
            for i, t in enumerate(ticks[:n])
        ]
        TickRules("reject", "every_tick", 1).apply(state, rows)
        value = encode_snapshot("K", state.to_state(), 2, state.next_offset)
        out.append(json.loads(value))
    return out


STATES: dict[str, list[dict[str, Any]]] = {
    "regime": _regime_states(),
    "event": _event_states(),
    "mixture": _mixture_states(),
    "drift": _drift_states(),
    "snapshot": _snapshot_states(),
}


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node[:6]):  # the first entries of a list stand for the rest
            out += _paths(v, (*prefix, i))
    return out


ODD_NUMBERS = [
    math.nan, math.inf, -math.inf, 0.0, -0.0, -1.0, 5e-324, 1e-300, 1e300, -1e300, 10**400,
    2**53, 2**63, 10**9, -(10**9), 0.5, 1.0, 7, 2.0e7,
]  # fmt: skip

values = st.one_of(
    st.sampled_from(ODD_NUMBERS),
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(10**20), max_value=10**20),
    st.sampled_from(["", "nan", "1.0", "inf", "x" * 1000, None, True, False]),
    # Fresh containers per draw: a shared one would carry mutations between cases.
    st.builds(list),
    st.builds(dict),
    st.builds(lambda: [1.0]),
    st.builds(lambda: {"a": 1}),
)


@st.composite
def mutations(draw: Any, kind: str) -> tuple[dict[str, Any], list[str]]:
    state = copy.deepcopy(draw(st.sampled_from(STATES[kind])))
    done = []
    for _ in range(draw(st.integers(1, 3))):
        paths = _paths(state)[1:]
        path = draw(st.sampled_from(paths))
        parent: Any = state
        for key in path[:-1]:
            parent = parent[key]
        key = path[-1]
        action = draw(st.sampled_from(["replace", "replace", "replace", "delete", "add", "resize"]))
        if action == "replace":
            parent[key] = draw(values)
        elif action == "delete":
            if isinstance(parent, dict):
                del parent[key]
            else:
                parent.pop(key)
        elif action == "add":
            target = parent[key]
            if isinstance(target, dict):
                target["unknown_field"] = draw(values)
            elif isinstance(target, list):
                target.append(draw(values))
            else:
                parent[key] = [target, target]
        else:
            target = parent[key]
            if isinstance(target, list) and target:
                parent[key] = (
                    target * draw(st.sampled_from([2, 1000])) if draw(st.booleans()) else []
                )
            else:
                parent[key] = draw(values)
        done.append(f"{action} {path}")
    return state, done


#: Output fields that are NaN (null in the record) where no forecast was made.
NULLABLE = ("log_likelihood", "volatility", "value_at_risk")


def _finite(value: Any) -> bool:
    """Finite numbers throughout; the forecast's fields may be NaN or null (no forecast),
    and a warm output carries a finite next-tick forecast."""
    if isinstance(value, dict):
        if value.get("warm") is True and not all(
            isinstance(value.get(k), float | int | type(None)) for k in NULLABLE[1:]
        ):
            return False
        return all(
            _finite(v) or (k in NULLABLE and (v is None or (isinstance(v, float) and v != v)))
            for k, v in value.items()
        )
    if isinstance(value, bool | int):
        return True
    return isinstance(value, float) and math.isfinite(value)


def _exercise_snapshot(document: dict[str, Any]) -> None:
    """The service's restore path: the changelog value's bytes, its envelope, the key's state;
    then 100 ticks through the tick path."""
    value = json.dumps(document).encode()  # NaN and Infinity literals included, as sent
    try:
        snap = decode_snapshot(value)
        state = KeyState.from_state(SETTINGS, snap.state, snap.partition, snap.next_offset)
    except ValueError:
        return
    rng = np.random.default_rng(3)
    ts0 = max(state.last_ts or 0.0, 0.0) + 1.0
    offset = state.next_offset  # every tick is new: none is inside the snapshot
    rows = [
        (
            Tick("K", ts0 + i, {"price": float(100 * math.exp(rng.normal(0, 0.01)))}, "in",
                 state.partition, offset + i),
            None,
        )
        for i in range(100)
    ]  # fmt: skip
    run = TickRules("reject", "every_tick", 1).apply(state, rows)
    assert len(run.outputs) + len(run.dead_letters) == 100
    for out in run.outputs:
        assert _finite(out), out
    encode_snapshot("K", state.to_state(), state.partition, state.next_offset)


def _exercise(kind: str, state: dict[str, Any]) -> None:
    """from_state, then 100 steps; any ValueError from from_state is a clean rejection."""
    if kind == "snapshot":
        _exercise_snapshot(state)
        return
    cls: Any = {
        "regime": RegimeDetector,
        "event": EventDetector,
        "mixture": OnlineGaussianMixture,
        "drift": LikelihoodDriftMonitor,
    }[kind]
    try:
        obj = cls.from_state(state)
    except ValueError:
        return
    json.dumps(obj.to_state(), allow_nan=False)
    rng = np.random.default_rng(3)
    if kind == "regime":
        ts0 = (obj.to_state()["clock"]["last_ts"] or 0.0) + 1.0
        ticks = [
            {"ts": ts0 + i, "price": float(100 * math.exp(rng.normal(0, 0.01)))} for i in range(100)
        ]
        results = obj.learn_predict_many(ticks)
    elif kind == "event":
        ts0 = (obj.to_state()["features"]["last_ts"] or 0.0) + 1.0
        ticks = [
            {"ts": ts0 + i, "a": float(rng.normal()), "b": float(rng.normal(5, 2))}
            for i in range(100)
        ]
        results = obj.learn_predict_many(ticks)
    elif kind == "mixture":
        results = []
        for _ in range(100):
            x = {"x": float(rng.normal()), "y": float(rng.normal(3))}
            obj.learn_one(x)
            results.append(obj.predict_proba_one(x))
            assert math.isfinite(obj.score_one(x)) or not obj.is_initialised
    else:
        results = [{"s": obj.drift_score} for _ in range(1) if not obj.update(-1.0)]
        for x in rng.normal(size=100):
            obj.update(-0.5 * x * x, -0.5)
            results.append({"s": obj.drift_score, "m": obj.mean_log_likelihood})
    for out in results:
        assert not isinstance(out, Exception) or isinstance(out, ValueError)
        if isinstance(out, dict):
            assert _finite(out), out
    json.dumps(obj.to_state(), allow_nan=False)


def _fuzz(kind: str, cases: int) -> Callable[[], None]:
    @settings(
        max_examples=cases,
        deadline=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
        database=None,
    )
    @given(mutations(kind))
    def run(case: tuple[dict[str, Any], list[str]]) -> None:
        state, _ = case
        _exercise(kind, state)

    return run


@pytest.mark.parametrize("kind", list(STATES))
def test_state_readers_reject_or_work(kind: str) -> None:
    _fuzz(kind, CI_CASES)()


@pytest.mark.long
@pytest.mark.parametrize("kind", list(STATES))
def test_state_readers_long_campaign(kind: str) -> None:
    _fuzz(kind, LONG_CASES)()


@pytest.mark.parametrize("kind", list(STATES))
def test_the_unmutated_states_load(kind: str) -> None:
    for state in STATES[kind]:
        _exercise(kind, copy.deepcopy(state))
