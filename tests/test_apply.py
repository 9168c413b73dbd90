"""The per-key tick path (streamgmm.ticks.rules), shared by the service and replay."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamgmm.regime import RegimeDetector
from streamgmm.regime.output import make_output
from streamgmm.ticks import rules as apply_mod
from streamgmm.ticks.keystate import KeyState
from streamgmm.ticks.rules import KeyRun, TickRules, is_out_of_order, should_emit
from streamgmm.ticks.tick import Tick, TickBlock


def test_should_emit_and_ordering_rules() -> None:
    out = {"regime": 1, "n_samples_seen": 6}
    assert should_emit("every_tick", 5, out, 1)
    assert should_emit("on_change", 5, out, None)
    assert should_emit("on_change", 5, out, 0)
    assert not should_emit("on_change", 5, out, 1)
    assert should_emit("every_n", 3, out, 1)
    assert not should_emit("every_n", 4, out, 1)
    with pytest.raises(ValueError, match="emit policy"):
        should_emit("sometimes", 1, out, None)
    assert not is_out_of_order(None, 5.0)
    assert not is_out_of_order(5.0, 5.0)  # equal timestamps are in order
    assert is_out_of_order(5.0, 4.999)


class Recording:
    """Stand-in detector: regime 1 above price 100, refuses price 13; records its calls."""

    stream_problem: str | None = None

    def __init__(self) -> None:
        self.calls: list[list[float]] = []
        self.n = 0

    def learn_predict_one(self, tick: dict[str, float]) -> dict[str, Any]:
        raise AssertionError("the tick path batches through learn_predict_many")

    def learn_predict_many(self, ticks: Sequence[Mapping[str, Any]]) -> list[Any]:
        self.calls.append([t["ts"] for t in ticks])
        outs: list[Any] = []
        for t in ticks:
            if t["price"] == 13.0:
                outs.append(ValueError("price 13 is unlucky"))
                continue
            self.n += 1
            regime = int(t["price"] > 100)
            outs.append(
                make_output(
                    regime,
                    {0: 1.0 - regime, 1: float(regime)},
                    {0: 0.5, 1: 0.5},
                    -1.0,
                    0.0,
                    False,
                    self.n,
                    True,
                    0.01,
                    -0.03,
                )
            )
        return outs

    def to_state(self) -> dict[str, Any]:
        return {"n": self.n}


def ticks(*rows: tuple[float, float], partition: int = 0, first: int = 0) -> list[Any]:
    return [
        (
            Tick("K", float(ts), {"price": float(price)}, "in", partition, first + i),
            f"{ts},{price}".encode(),
        )
        for i, (ts, price) in enumerate(rows)
    ]


def test_one_call_per_in_order_run_and_the_rules_on_the_way() -> None:
    state = KeyState(Recording(), partition=0)
    run = TickRules("reject", "every_tick", 1).apply(
        state, ticks((1, 50), (2, 13), (3, 150), (2.5, 60), (4, 160), (4, 90))
    )
    # 2.5 is earlier than 3, so the run is cut there; the refused price 13 is a dead letter.
    assert state.pipeline.calls == [[1, 2, 3], [4, 4]]  # type: ignore[attr-defined]
    assert [t.offset for t in run.ticks] == [0, 2, 4, 5]
    assert [offset for offset, _ in run.records] == [0, 2, 4, 5]
    assert [(d.reason, d.offset) for d in run.dead_letters] == [
        ("rejected_by_model", 1),
        ("out_of_order", 3),
    ]
    assert run.dead_letters[1].detail == "ts 2.5 is before the key's last ts 3.0"
    assert run.dead_letters[1].value == b"2.5,60"
    assert (state.next_offset, state.last_ts, state.last_regime, state.dirty) == (6, 4.0, 0, True)


def test_a_refused_tick_does_not_move_the_last_ts() -> None:
    state = KeyState(Recording(), partition=0)
    # ts 5 is refused, so 4 is in order after 3.
    run = TickRules("reject", "every_tick", 1).apply(state, ticks((3, 50), (5, 13), (4, 60)))
    assert [t.ts for t in run.ticks] == [3, 4]
    assert [d.reason for d in run.dead_letters] == ["rejected_by_model"]


def test_skip_redelivered_wrong_partition_and_emit_policy() -> None:
    state = KeyState(Recording(), partition=0, next_offset=2, last_ts=1.0, last_regime=1)
    rules = TickRules("skip", "on_change", 1)
    run = rules.apply(state, ticks((0.5, 50), (1.5, 150), (2, 150), (0.5, 10), (3, 50)))
    # Offsets 0 and 1 are inside the restored snapshot; 0.5 < 2 is skipped, not dead-lettered.
    assert [t.offset for t in run.ticks] == [2, 4]
    assert (run.skipped, run.dead_letters) == (1, [])
    assert [offset for offset, _ in run.records] == [4]  # regime 1 -> 1 -> 0: one change
    moved = rules.apply(state, ticks((9, 50), partition=2, first=7))
    assert [d.reason for d in moved.dead_letters] == ["wrong_partition"]
    assert moved.ticks == moved.outputs == [] and state.next_offset == 5
    with pytest.raises(ValueError, match="emit policy"):
        TickRules("reject", "sometimes", 1)


def test_one_outrageous_ts_is_dead_lettered_and_does_not_lock_the_key() -> None:
    state = KeyState(Recording(), partition=0)
    rules = TickRules("reject", "every_tick", 1, max_ts_jump=10.0, clock=lambda: 0.0)
    run = rules.apply(state, ticks((1, 50), (1e18, 60), (5, 70), (15, 80), (16, 90), (26, 95)))
    # Only 1e18 is refused: 26 is exactly 10 s after 16, the limit itself.
    assert [t.ts for t in run.ticks] == [1, 5, 15, 16, 26]
    assert [(d.reason, d.offset) for d in run.dead_letters] == [("ts_jump", 1)]
    assert "1e+18" in run.dead_letters[0].detail
    assert run.dead_letters[0].value == b"1e+18,60"
    more = rules.apply(state, ticks((36.5, 50), (30, 60), first=6))
    assert [(d.reason, d.offset) for d in more.dead_letters] == [("ts_jump", 6)]
    assert [t.ts for t in more.ticks] == [30]


def test_first_tick_is_measured_against_the_clock_and_past_gaps_are_fine() -> None:
    future = TickRules("reject", "every_tick", 1, max_ts_jump=100.0, clock=lambda: 1000.0)
    state = KeyState(Recording(), partition=0)
    run = future.apply(state, ticks((1101, 50), (1100, 60), (1150, 70)))
    assert [d.reason for d in run.dead_letters] == ["ts_jump"]
    assert "first tick" in run.dead_letters[0].detail
    assert [t.ts for t in run.ticks] == [1100, 1150]
    # A gap of any length is fine up to the clock: a trading halt of years loses nothing.
    state = KeyState(Recording(), partition=0, last_ts=1.0)
    run = future.apply(state, ticks((900, 50), (1000, 60), (1099, 70)))
    assert run.dead_letters == [] and [t.ts for t in run.ticks] == [900, 1000, 1099]


def test_a_jump_is_judged_against_the_ticks_the_model_applied() -> None:
    rules = TickRules("reject", "every_tick", 1, max_ts_jump=10.0, clock=lambda: 0.0)
    state = KeyState(Recording(), partition=0)
    # The model refuses ts 9 (price 13), so 15 is 14 s after the last applied tick: a jump.
    run = rules.apply(state, ticks((1, 50), (9, 13), (15, 60)))
    assert [(d.reason, d.offset) for d in run.dead_letters] == [
        ("rejected_by_model", 1),
        ("ts_jump", 2),
    ]
    state = KeyState(Recording(), partition=0)
    run = rules.apply(state, ticks((1, 50), (9, 14), (15, 60)))
    assert run.dead_letters == [] and state.last_ts == 15


@settings(max_examples=300, deadline=None)
@given(
    steps=st.lists(
        st.tuples(st.integers(-3, 12), st.sampled_from([13.0, 50.0, 150.0])),
        max_size=40,
    ),
    cut=st.integers(1, 7),
)
def test_batching_does_not_change_what_the_rules_decide(
    steps: list[tuple[int, float]], cut: int
) -> None:
    """One call over all ticks decides exactly as calls over chunks of ``cut`` ticks.

    Timestamps move by -3 to 12 s from 15 s on; the clock says 20 s and jumps beyond 7 s
    are refused, and the model refuses price 13, so ordering, jumps and refusals mix.
    """
    rules = TickRules("reject", "every_tick", 1, max_ts_jump=7.0, clock=lambda: 20.0)
    rows, ts = [], 15
    for step, price in steps:
        ts += step
        rows.append((ts, price))
    sent = ticks(*rows)
    whole = KeyState(Recording(), partition=0)
    one = rules.apply(whole, sent)
    parts = KeyState(Recording(), partition=0)
    chunked = [rules.apply(parts, sent[i : i + cut]) for i in range(0, len(sent), cut)]
    assert [t.offset for t in one.ticks] == [t.offset for r in chunked for t in r.ticks]
    assert [(d.reason, d.offset) for d in one.dead_letters] == [
        (d.reason, d.offset) for r in chunked for d in r.dead_letters
    ]
    assert (whole.last_ts, whole.next_offset) == (parts.last_ts, parts.next_offset)


def test_key_state_round_trip_and_refusals() -> None:
    from streamgmm.settings.layers import load_settings
    from streamgmm.ticks.keystate import make_pipeline

    settings_ = load_settings(None, {}, {})
    state = KeyState(make_pipeline(settings_), partition=1, last_ts=5.0, last_regime=1)
    saved = state.to_state()
    again = KeyState.from_state(settings_, saved, 1, 7)
    assert (again.last_ts, again.last_regime, again.next_offset) == (5.0, 1, 7)
    for change, message in [
        ({"version": 2}, "version must be 1"),
        ({"version": True}, "version must be 1"),
        ({"last_ts": "nan"}, "last_ts must be a number"),
        ({"last_ts": 1e400}, "last_ts"),
        ({"last_regime": -1}, "last_regime must be in"),
        ({"last_regime": 1.0}, "last_regime must be an integer"),
        ({"pipeline": []}, "pipeline must be an object"),
        ({"extra": 1}, "unknown field"),
        ({"pipeline": {**saved["pipeline"], "version": 1}}, "version"),
    ]:
        with pytest.raises(ValueError, match=message):
            KeyState.from_state(settings_, {**saved, **change}, 1, 7)
    with pytest.raises(ValueError, match="lacks 'last_ts'"):
        KeyState.from_state(settings_, {k: v for k, v in saved.items() if k != "last_ts"}, 1, 7)


def test_a_stream_problem_is_reported_once_per_key_until_it_clears() -> None:
    rules = TickRules("reject", "every_tick", 1)
    state = KeyState(RegimeDetector(), partition=0)
    flat = ticks(*((60.0 * i, 100.0) for i in range(150)))
    assert rules.apply(state, flat).problem is None  # under four warm-ups: not yet a problem
    more = ticks(*((60.0 * i, 100.0) for i in range(150, 300)), first=150)
    problem = rules.apply(state, more).problem
    assert problem is not None and problem.startswith("no scale: ")
    assert (problem.kind, state.problem) == ("no_scale", "no_scale")
    still = ticks(*((60.0 * i, 100.0) for i in range(300, 400)), first=300)
    assert rules.apply(state, still).problem is None  # reported once, not per run
    # The price starts to move: the detector warms up and the problem clears.
    moving = ticks(*((60.0 * i, 100.0 + (i % 7) * 0.1) for i in range(400, 500)), first=400)
    run = rules.apply(state, moving)
    assert run.outputs[-1]["warm"] and run.problem is None and state.problem is None


# --------------------------------------------------------------------------- blocks

DAY = 86400.0
CLOCK = 1000 * DAY


def _pipeline(kind: str) -> Any:
    # Recording has no learn_predict_block (its outputs come through learn_predict_many) nor
    # from_state; the real detector has both, and refuses a price <= 0 as the fake refuses 13.
    return Recording() if kind == "recording" else RegimeDetector(warmup=20)


def _labels_view(run: KeyRun) -> Any:
    """The run's labels, joined into one batch (the two paths batch them differently)."""
    if not run.labels:
        return None
    return (
        *(np.concatenate([getattr(batch, name) for batch in run.labels]).tolist()
          for name in ("ts", "regime", "drift_detected", "warm")),
        {batch.n_regimes for batch in run.labels},
    )  # fmt: skip


def _run_view(run: KeyRun) -> Any:
    return (
        run.records,
        [(d.reason, d.detail, d.offset, d.key) for d in run.dead_letters],
        run.skipped,
        run.applied,
        [t.offset for t in run.ticks],
        [repr(out) for out in run.outputs],
        run.problem,
        _labels_view(run),
    )


def _state_view(state: KeyState) -> Any:
    return (state.next_offset, state.last_ts, state.last_regime, state.dirty, state.problem,
            state.pipeline.to_state())  # fmt: skip


@settings(max_examples=150, deadline=None)
@given(
    kind=st.sampled_from(["recording", "regime"]),
    policy=st.sampled_from(["every_tick", "on_change", "every_n"]),
    # Steps between ticks: back (out of order), none (equal ts), on, and far ahead.
    steps=st.lists(
        st.tuples(
            st.sampled_from([-2 * DAY, 0.0, 1.0, DAY, 3 * DAY, 8 * DAY, 100 * DAY]),
            st.sampled_from([50.0, 60.0, 150.0, 13.0, -1.0]),
        ),
        min_size=1,
        max_size=60,
    ),
    start=st.sampled_from([CLOCK - 500 * DAY, CLOCK - 3 * DAY, CLOCK + 5 * DAY]),
    history=st.booleans(),
    next_offset=st.sampled_from([0, 3]),
)
def test_a_block_gives_what_its_ticks_give_one_by_one(
    kind: str,
    policy: str,
    steps: list[tuple[float, float]],
    start: float,
    history: bool,
    next_offset: int,
) -> None:
    rules = TickRules(
        "reject", policy, 3, max_ts_jump=7 * DAY, clock=lambda: CLOCK, keep_labels=True
    )
    states = [KeyState(_pipeline(kind), partition=0) for _ in range(2)]
    if history:  # a key that has seen ticks before
        earlier = ticks(*((start - (30 - i) * DAY, 100.0 + i) for i in range(30)))
        for state in states:
            rules.apply(state, earlier)
    ts, rows = start, []
    for step, price in steps:
        ts += step
        rows.append((ts, price))
    decoded = [tick for tick, _value in ticks(*rows, first=30)]
    for state in states:
        state.next_offset = max(state.next_offset, 30 + next_offset)
    one_by_one = rules.apply(states[0], [(tick, None) for tick in decoded])
    as_block = rules.apply_block(states[1], TickBlock.of_ticks(decoded))
    assert _run_view(as_block) == _run_view(one_by_one)
    assert _state_view(states[1]) == _state_view(states[0])


def test_a_refused_tick_ahead_of_the_clock_sends_a_block_back_to_the_rules() -> None:
    """Past the wall clock, a tick is no jump only within max_ts_jump of the last applied
    tick; the block path assumed its predecessor was applied and must take it back when the
    detector refused that one."""
    rules = TickRules("reject", "every_tick", 1, max_ts_jump=7 * DAY, clock=lambda: CLOCK)
    rows = [(CLOCK + i * DAY, 100.0 + i) for i in range(40)]
    rows += [(CLOCK + 45 * DAY, -1.0), (CLOCK + 50 * DAY, 150.0), (CLOCK + 51 * DAY, 151.0)]
    decoded = [tick for tick, _ in ticks(*rows)]
    a, b = (KeyState(RegimeDetector(warmup=20), partition=0) for _ in range(2))
    one_by_one = rules.apply(a, [(tick, None) for tick in decoded])
    as_block = rules.apply_block(b, TickBlock.of_ticks(decoded))
    # 45 days is 6 after day 39 (no jump) but refused; 50 and 51 are then 11 and 12 days
    # after day 39, the last applied tick.
    assert [(d.reason, d.offset) for d in one_by_one.dead_letters] == [
        ("rejected_by_model", 40),
        ("ts_jump", 41),
        ("ts_jump", 42),
    ]
    assert _run_view(as_block) == _run_view(one_by_one)
    assert _state_view(b) == _state_view(a)


@pytest.mark.parametrize("policy", ["every_tick", "on_change", "every_n"])
def test_long_runs_as_columns_and_short_runs_as_dicts_give_the_same(
    policy: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run goes through learn_predict_block or learn_predict_many by its length alone
    (BLOCK_RUN): both ways, the same records, dead letters, outputs and state."""
    rng = np.random.default_rng(8)
    prices = 100.0 * np.exp(np.cumsum(rng.normal(0, 0.01, 600) * np.repeat([1, 3, 1], 200)))
    rows = [(float(i) * DAY, float(p)) for i, p in enumerate(prices)]
    for i in (90, 250, 251, 400):
        rows[i] = (rows[i][0], -1.0)  # refused by the model
    views = []
    for block_run in (1, 10**9):
        monkeypatch.setattr(apply_mod, "BLOCK_RUN", block_run)
        rules = TickRules(
            "reject", policy, 4, max_ts_jump=7 * DAY, clock=lambda: CLOCK, keep_labels=True
        )
        state = KeyState(RegimeDetector(warmup=20), partition=0)
        runs = [
            rules.apply(state, ticks(*rows[start : start + 97], first=start))
            for start in range(0, len(rows), 97)
        ]
        views.append(([_run_view(run) for run in runs], _state_view(state)))
        # The labels are the records' own columns.
        for run in runs:
            records = [json.loads(value) for _offset, value in run.records]
            want = (
                (
                    [r["ts"] for r in records],
                    [r["regime"] for r in records],
                    [r["drift_detected"] for r in records],
                    [r["warm"] for r in records],
                    {len(r["probabilities"]) for r in records},
                )
                if records
                else None
            )
            assert _labels_view(run) == want
    assert views[0] == views[1]
    assert sum(len(view[1]) for view in views[0][0]) == 4  # the refusals are dead letters


@settings(max_examples=120, deadline=None)
@given(
    kind=st.sampled_from(["regime", "event", "mixed"]),
    policy=st.sampled_from(["every_tick", "on_change", "every_n"]),
    keys=st.lists(
        st.tuples(
            # Steps between one key's ticks: back (out of order), none, on, far ahead.
            st.lists(
                st.tuples(
                    st.sampled_from([-2 * DAY, 0.0, 1.0, DAY, 3 * DAY, 8 * DAY]),
                    st.sampled_from([50.0, 60.0, 150.0, -1.0]),
                ),
                min_size=1,
                max_size=8,
            ),
            st.sampled_from([0, 0, 0, 2]),  # ticks already inside the key's snapshot
            st.sampled_from([0, 0, 0, 1]),  # the key's partition (the ticks are on 0)
            st.booleans(),  # a key that has seen ticks before
        ),
        min_size=1,
        max_size=6,
    ),
)
def test_keys_together_give_what_each_key_gives_alone(
    kind: str, policy: str, keys: list[Any]
) -> None:
    """apply_keys (plain keys' detectors in one batch, records encoded together) gives each
    key the run, dead letters and state apply gives it, whatever mix of keys the poll holds."""
    from streamgmm.regime import EventDetector

    def detector(i: int) -> Any:
        if kind == "event" or (kind == "mixed" and i % 2):
            return EventDetector(fields=("price",), warmup=20)
        return RegimeDetector(warmup=20)

    rules = TickRules("reject", policy, 3, max_ts_jump=7 * DAY, clock=lambda: CLOCK)
    alone: list[KeyRun] = []
    alone_states: list[KeyState] = []
    groups: list[Any] = []
    for i, (steps, redelivered, partition, history) in enumerate(keys):
        pair = [KeyState(detector(i), partition=partition) for _ in range(2)]
        first = 0
        if history:
            earlier = ticks(*((CLOCK - (30 - j) * DAY, 100.0 + j) for j in range(30)))
            earlier = [(t._replace(key=f"K{i}"), v) for t, v in earlier]
            for state in pair:
                rules.apply(state, earlier)
            first = 30
        ts, rows = CLOCK - 5 * DAY, []
        for step, price in steps:
            ts += step
            rows.append((ts, price))
        sent = [(t._replace(key=f"K{i}"), v) for t, v in ticks(*rows, first=first)]
        for state in pair:
            state.next_offset = max(state.next_offset, first + redelivered)
        alone.append(rules.apply(pair[0], sent))
        alone_states.append(pair[0])
        groups.append((pair[1], sent))
    runs = rules.apply_keys(groups)
    assert [_run_view(run) for run in runs] == [_run_view(run) for run in alone]
    assert [_state_view(s) for s, _ in groups] == [_state_view(s) for s in alone_states]
    assert any(run.records for run in runs) or not any(run.records for run in alone)
