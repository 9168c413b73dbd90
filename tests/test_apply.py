"""The per-key tick path (streamgmm.service.apply), shared by the service and replay."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from streamgmm.output import make_output
from streamgmm.service.apply import KeyState, TickRules, is_out_of_order, should_emit
from streamgmm.service.decode import Tick


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
