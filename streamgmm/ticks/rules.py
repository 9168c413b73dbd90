"""Rules: one key's run of decoded ticks goes through its detector, under the per-key rules.

Owns the per-key tick rules, the ones the service (:mod:`streamgmm.service.runner`) and
``streamgmm replay`` both apply, so for the same ticks they hold the same models and write the
same records:

- the rules, in :meth:`TickRules.apply`: a key stays on one input partition
  (``wrong_partition``); ticks already inside a restored snapshot are skipped (redelivered
  duplicates); a tick earlier than the key's last applied one is out of order (dead-lettered
  or skipped, ``[input] out_of_order``); a tick more than ``[input] max_ts_jump_seconds``
  ahead of both the key's last applied tick and the wall clock is dead-lettered
  (``ts_jump``), so one outrageous timestamp cannot put every later tick out of order; a
  tick the model refuses is dead-lettered (``rejected_by_model``) and leaves the model
  unchanged; the emit policy (``[output] emit_policy``) picks which output records are
  written; a stream that gives no regimes (the detector's ``stream_problem``) is reported
  once per key (:attr:`KeyRun.problem`) for the caller to log and count;
- batching: each run of in-order ticks goes through the detector in one call, which is
  several times cheaper per tick than one call per tick and gives the same outputs (how,
  below).

The key's detector and bookkeeping are its :class:`~.keystate.KeyState`. Ticks arrive one by
one (:meth:`TickRules.apply`, the service) or as a :class:`~.tick.TickBlock`
(:meth:`TickRules.apply_block`, ``streamgmm replay``). A block that none of the rules above
would touch (one partition, no redelivered, out-of-order or jumping tick: checked on the whole
block at once) goes straight to the detector; any other block takes :meth:`TickRules.apply`'s
tick-by-tick loop. Either way a run of in-order ticks goes to the detector in one call
(``_learn``): a long run as columns (``learn_predict_block``, records encoded a column at a
time), a short one as dicts (``learn_predict_many``, a record at a time), whichever costs less
(:data:`BLOCK_RUN`); the emit rule (:func:`should_emit`) and the key's bookkeeping are the same
functions on both.

Tick path: decode (:mod:`.decode`) -> rules -> encode (:mod:`.encode`). No I/O here: the
caller sends what :meth:`TickRules.apply` returns.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from streamgmm.regime import StreamProblem
from streamgmm.regime.batch import OutputRows, batch_kind, learn_predict_runs
from streamgmm.regime.output import OutputBlock, output_rows, take_columns
from streamgmm.settings.service import EMIT_POLICIES, OUT_OF_ORDER, Settings
from streamgmm.ticks.encode import encode_output_columns, encode_output_run
from streamgmm.ticks.keystate import KeyState, Pipeline
from streamgmm.ticks.record import SOURCE_FIELDS
from streamgmm.ticks.tick import DeadLetter, Tick, TickBlock, dead_letter_for

__all__ = [
    "BLOCK_RUN",
    "KeyRun",
    "Labels",
    "TickRules",
    "is_out_of_order",
    "should_emit",
]

#: Runs of at least this many ticks go through the detector's ``learn_predict_block`` and the
#: column encoder; shorter ones (a poll's few ticks of one key among many) through
#: ``learn_predict_many`` and the per-record encoder, cheaper for a few ticks. Measured with
#: ``benchmarks/bench_apply.py``: columns ÷ dicts per tick 1.9 at 4 ticks, 1.06 at 32, 0.73 at 64.
BLOCK_RUN = 48


class Labels(NamedTuple):
    """What a batch of the output records written says of the regimes, as columns: each
    record's ``ts``, ``regime``, ``drift_detected`` and ``warm``, and the number of regimes."""

    ts: np.ndarray
    regime: np.ndarray
    drift_detected: np.ndarray
    warm: np.ndarray
    n_regimes: int


@dataclass
class KeyRun:
    """What one key's run of ticks produced, in tick order.

    Attributes
    ----------
    records
        The output records to write, as ``(source offset, JSON bytes)``.
    dead_letters
        Ticks refused by the per-key rules (``wrong_partition``, ``out_of_order``,
        ``ts_jump``, ``rejected_by_model``).
    skipped
        Out-of-order ticks dropped without a dead letter (``out_of_order = "skip"``).
    problem
        The detector's ``stream_problem`` (why the stream gives no regimes: a price that never
        moves, mostly session gaps) when it began with this run, else None; so it is reported
        once per key and again only after it cleared or changed kind.
    applied
        How many ticks the detector learnt from.
    ticks, outputs
        Every tick the detector learnt from, and its output (a :func:`~streamgmm.regime.output.
        make_output` dict; an :class:`OutputRows` of them, for keys that went in a batch);
        empty when the rules were made with ``keep_outputs=False``.
    labels
        The records' regime columns (:class:`Labels`), a batch per call to the detector;
        empty unless the rules were made with ``keep_labels=True``.
    """

    records: list[tuple[int, bytes]] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    skipped: int = 0
    problem: StreamProblem | None = None
    applied: int = 0
    ticks: list[Tick] = field(default_factory=list)
    outputs: Sequence[dict[str, Any]] = field(default_factory=list)
    labels: list[Labels] = field(default_factory=list)


def should_emit(
    policy: str, every_n: int, out: Mapping[str, Any], previous_regime: int | None
) -> bool:
    """Whether to emit the record for this tick under ``[output] emit_policy``.

    Parameters
    ----------
    policy
        ``"every_tick"``, ``"on_change"`` or ``"every_n"``.
    every_n
        N for ``"every_n"``: emit when the key's ``n_samples_seen`` is a multiple of N, which
        survives restarts because ``n_samples_seen`` is part of the model state.
    out
        The pipeline's output for this tick.
    previous_regime
        Regime of the key's previous tick, or None for its first tick; ``"on_change"`` emits
        when the regime differs from it (so the first tick of a key is always emitted).
    """
    if policy == "every_tick":
        return True
    if policy == "every_n":
        return int(out["n_samples_seen"]) % every_n == 0
    if policy == "on_change":
        return previous_regime is None or int(out["regime"]) != previous_regime
    raise ValueError(f"emit policy must be one of {EMIT_POLICIES}, got {policy!r}")


def is_out_of_order(last_ts: float | None, ts: float) -> bool:
    """True when a tick is earlier than the last one applied to its key.

    Equal timestamps are in order: several trades can share a second.
    """
    return last_ts is not None and ts < last_ts


class TickRules:
    """The per-key tick path: ordering, duplicates, model rejections, emit policy, batching.

    Parameters
    ----------
    out_of_order
        ``"reject"`` (dead letter) or ``"skip"`` (dropped, counted in :attr:`KeyRun.skipped`).
    emit_policy, emit_every_n
        As for :func:`should_emit`.
    max_ts_jump
        Seconds a tick's ts may be ahead of the later of its key's last applied ts and the
        wall clock (a key's first tick: of the wall clock); a tick further ahead is
        dead-lettered as ``ts_jump``. ``math.inf`` turns the check off.
    clock
        The wall clock, epoch seconds; read once per :meth:`apply`.
    keep_outputs
        Fill :attr:`KeyRun.ticks` and :attr:`KeyRun.outputs` (the service's metrics read
        them); ``streamgmm replay`` needs only the records.
    keep_labels
        Fill :attr:`KeyRun.labels` (``streamgmm replay``'s per-key summary reads them).
    regime_names
        The regimes' names the records carry (``[output] regime_names``); None: the default
        names for the detector's number of regimes.
    """

    def __init__(
        self,
        out_of_order: str,
        emit_policy: str,
        emit_every_n: int,
        *,
        max_ts_jump: float = math.inf,
        clock: Callable[[], float] = time.time,
        keep_outputs: bool = True,
        keep_labels: bool = False,
        regime_names: Sequence[str] | None = None,
    ) -> None:
        if out_of_order not in OUT_OF_ORDER:
            raise ValueError(f"out_of_order must be one of {OUT_OF_ORDER}, got {out_of_order!r}")
        if emit_policy not in EMIT_POLICIES:
            raise ValueError(f"emit policy must be one of {EMIT_POLICIES}, got {emit_policy!r}")
        if not max_ts_jump > 0.0:
            raise ValueError(f"max_ts_jump must be > 0, got {max_ts_jump!r}")
        self.out_of_order = out_of_order
        self.emit_policy = emit_policy
        self.emit_every_n = emit_every_n
        self.max_ts_jump = float(max_ts_jump)
        self.clock = clock
        self.keep_outputs = keep_outputs
        self.keep_labels = keep_labels
        self.regime_names = tuple(regime_names) if regime_names else None

    @classmethod
    def from_settings(
        cls, settings: Settings, *, keep_outputs: bool = True, keep_labels: bool = False
    ) -> TickRules:
        """The rules ``[input] out_of_order``, ``max_ts_jump_seconds`` and
        ``[output] emit_policy/emit_every_n/regime_names`` set."""
        return cls(
            settings.out_of_order,
            settings.emit_policy,
            settings.emit_every_n,
            max_ts_jump=settings.max_ts_jump_seconds,
            keep_outputs=keep_outputs,
            keep_labels=keep_labels,
            regime_names=settings.regime_names,
        )

    def _jump_limit(self, last_ts: float | None, now: float) -> float:
        """Latest ts a tick may have after a key's applied ``last_ts``, at wall time ``now``."""
        return now + self.max_ts_jump if last_ts is None else max(now, last_ts) + self.max_ts_jump

    def apply(self, state: KeyState, ticks: Sequence[tuple[Tick, bytes | None]]) -> KeyRun:
        """Run one key's ticks through its detector; return records and dead letters.

        Parameters
        ----------
        state
            The key's state; its detector learns and its bookkeeping moves on.
        ticks
            ``(tick, original value bytes)`` of one key from one input partition, in offset
            order (the bytes go into dead letters).
        """
        run = KeyRun()
        if not ticks:
            return run
        partition = ticks[0][0].partition
        if state.partition != partition:
            # One model's offset bookkeeping is per input partition: a key that arrives on two
            # partitions (records keyed by something other than the instrument) would have
            # records skipped silently, so they are dead-lettered instead.
            detail = f"key {ticks[0][0].key!r} is on partition {state.partition}, not {partition}"
            run.dead_letters.extend(
                dead_letter_for(tick, "wrong_partition", detail, value=value)
                for tick, value in ticks
            )
            return run
        pending: list[tuple[Tick, bytes | None]] = []
        last_ts = state.last_ts  # ts of the last tick applied or about to be applied
        now = self.clock()
        # Ticks up to here are no jump. Taken from the key's applied last ts, it is a lower
        # bound while ticks are pending (the model may refuse some), exact once none is.
        jump_limit = self._jump_limit(state.last_ts, now)
        for tick, value in ticks:
            if tick.offset < state.next_offset:
                # Already inside the restored snapshot: applying it again would double-count.
                continue
            ts = tick.ts
            if (last_ts is not None and ts < last_ts) or ts > jump_limit:
                # Out of order or a jump, perhaps: decide against the ticks really applied,
                # as a pending tick the model rejects does not move the key's last ts.
                if pending:
                    self._learn(state, pending, run)
                    pending = []
                    last_ts = state.last_ts
                    jump_limit = self._jump_limit(last_ts, now)
                if is_out_of_order(last_ts, ts):
                    self._out_of_order(state, tick, value, run)
                    continue
                if ts > jump_limit:
                    self._ts_jump(state, tick, value, now, run)
                    continue
            pending.append((tick, value))
            last_ts = ts
        self._learn(state, pending, run)
        return run

    def apply_keys(
        self, groups: Sequence[tuple[KeyState, Sequence[tuple[Tick, bytes | None]]]]
    ) -> list[KeyRun]:
        """:meth:`apply` for each key's ticks, in one go: the same runs, in the same order.

        Every key whose ticks none of the ordering rules would touch (all on the key's
        partition, none redelivered, out of order or jumping) goes through its detector in
        one batch for all such keys (:func:`~streamgmm.regime.batch.learn_predict_runs`) and
        their records are encoded a column at a time together; any other key takes
        :meth:`apply`. ``groups`` are ``(state, ticks)`` of distinct keys, as for :meth:`apply`.
        """
        runs: list[KeyRun] = []
        batches: dict[Any, list[tuple[KeyRun, KeyState, Sequence[tuple[Tick, bytes | None]]]]]
        batches = {}
        now = self.clock()
        for state, ticks in groups:
            kind = self._plain(state, ticks, now)
            if kind is None:
                runs.append(self.apply(state, ticks))
                continue
            run = KeyRun()
            batch = batches.get(kind)
            if batch is None:
                batches[kind] = [(run, state, ticks)]
            else:
                batch.append((run, state, ticks))
            runs.append(run)
        for batch in batches.values():  # one batch, unless the keys' detectors differ
            self._learn_keys(batch)
        return runs

    def _plain(
        self, state: KeyState, ticks: Sequence[tuple[Tick, bytes | None]], now: float
    ) -> Any:
        """The key's :func:`~streamgmm.regime.batch.batch_kind` when none of :meth:`apply`'s
        rules would set any of ``ticks`` aside (so it would learn them all in one call) and
        its detector can go in a batch; else None."""
        if not ticks or self.keep_labels or ticks[0][0].partition != state.partition:
            return None
        kind = batch_kind(state.pipeline)
        if kind is None:
            return None
        last_ts, next_offset = state.last_ts, state.next_offset
        limit = self._jump_limit(last_ts, now)
        for tick, _value in ticks:
            ts = tick.ts
            if tick.offset < next_offset or (last_ts is not None and ts < last_ts) or ts > limit:
                return None
            last_ts = ts
        return kind

    def _learn_keys(
        self, batch: Sequence[tuple[KeyRun, KeyState, Sequence[tuple[Tick, bytes | None]]]]
    ) -> None:
        """Plain keys' ticks (:meth:`_plain`) through their detectors in one batch; each
        key's run gets what :meth:`_learn_ticks` would have given it."""
        every_tick = [tick for _run, _state, ticks in batch for tick, _value in ticks]
        # The ticks' fields as columns (Tick order: key, ts, fields, topic, partition, offset).
        by_name = dict(zip(Tick._fields, zip(*every_tick, strict=True), strict=True))
        ts, fields = by_name["ts"], by_name["fields"]
        runs, at = [], 0
        for _run, state, ticks in batch:
            runs.append((state.pipeline, ts[at : at + len(ticks)], fields[at : at + len(ticks)]))
            at += len(ticks)
        result, starts = learn_predict_runs(runs)
        applied, columns = result.applied, result.columns
        n_applied = len(applied)
        # Every tick applied (the usual case): the i-th output is the i-th tick's.
        every_applied = n_applied == len(every_tick)
        refused = iter(result.refused)
        next_refused = next(refused, None)
        regimes, seen = columns["regime"], columns["n_samples_seen"]
        every = self.emit_policy == "every_tick"
        lists: dict[str, Any] = {}  # the columns as lists, shared by the keys' OutputRows
        # Per key: its ticks applied (positions in ``applied``) and the outputs it writes.
        written: list[int] = []
        counts: list[int] = []
        j = 0
        for (run, state, ticks), start, end in zip(batch, starts, starts[1:], strict=False):
            while next_refused is not None and next_refused[0] < end:
                i, error = next_refused
                tick, value = ticks[i - start]
                run.dead_letters.append(_rejected(tick, error, value))
                next_refused = next(refused, None)
            lo = j
            if every_applied:
                j = end
                kept = every_tick[start:end]
            else:
                while j < n_applied and applied[j] < end:
                    j += 1
                kept = [every_tick[applied[a]] for a in range(lo, j)]
            if j == lo:
                counts.append(0)
                continue
            if every:
                written.extend(range(lo, j))
                counts.append(j - lo)
            else:
                emitted = self._emitted(state.last_regime, regimes[lo:j], seen[lo:j])
                written.extend(lo + e for e in emitted)
                counts.append(len(emitted))
            run.applied += j - lo
            if self.keep_outputs:
                run.ticks = kept
                run.outputs = OutputRows(columns, lo, j, lists)
            last = kept[-1]
            self._settle(state, run, int(regimes[j - 1]), last.offset, last.ts)
        if not written:
            return
        if len(written) != len(every_tick):
            sources = [every_tick[applied[a]] for a in written]
            by_name = dict(zip(Tick._fields, zip(*sources, strict=True), strict=True))
        encoded = encode_output_columns(
            {f.name: by_name[f.name] for f in SOURCE_FIELDS},
            columns if len(written) == n_applied else take_columns(columns, written),
            self.regime_names,
        )
        offsets = by_name["offset"]
        at = 0
        for (run, _state, _ticks), count in zip(batch, counts, strict=True):
            if count:
                run.records += zip(offsets[at : at + count], encoded[at : at + count], strict=True)
                at += count

    def _ts_jump(
        self, state: KeyState, tick: Tick, value: bytes | None, now: float, run: KeyRun
    ) -> None:
        limit = f"more than max_ts_jump_seconds={self.max_ts_jump:g} ahead of"
        if state.last_ts is None:
            detail = f"ts {tick.ts!r} of the key's first tick is {limit} the clock ({now:.0f})"
        else:
            detail = (
                f"ts {tick.ts!r} is {limit} the key's last ts {state.last_ts!r} and the clock "
                f"({now:.0f})"
            )
        run.dead_letters.append(dead_letter_for(tick, "ts_jump", detail, value=value))

    def _out_of_order(self, state: KeyState, tick: Tick, value: bytes | None, run: KeyRun) -> None:
        if self.out_of_order == "skip":
            run.skipped += 1
            return
        detail = f"ts {tick.ts!r} is before the key's last ts {state.last_ts!r}"
        run.dead_letters.append(dead_letter_for(tick, "out_of_order", detail, value=value))

    def _learn(self, state: KeyState, ticks: list[tuple[Tick, bytes | None]], run: KeyRun) -> None:
        """In-order ticks through the detector in one call; record what they produced.

        A long run goes through ``learn_predict_block`` and is encoded a column at a time; a
        short one (or any, for a detector without that method) through
        ``learn_predict_many``, a dict per tick, which costs less for a few ticks than the
        columns' set-up (:data:`BLOCK_RUN`). The outputs are the same either way (tested).
        """
        learn_block = _block_learner(state.pipeline, len(ticks))
        if learn_block is None:
            if ticks:
                self._learn_ticks(state, run, ticks)
            return
        decoded = [tick for tick, _value in ticks]
        block = TickBlock.of_ticks(decoded)
        result = learn_block(block.ts, block.fields)
        self._learn_block(state, run, block, result, decoded, [v for _t, v in ticks])

    def apply_block(self, state: KeyState, block: TickBlock) -> KeyRun:
        """:meth:`apply` for one key's ticks given as a block (no value bytes: dead letters
        carry none).

        A block none of the ordering rules would touch goes to the detector whole; any other
        takes :meth:`apply`'s loop, tick by tick. The records and dead letters are the same
        either way.
        """
        n = len(block)
        if n == 0:
            return KeyRun()
        ts, offsets = block.ts, block.offset
        in_order = (
            state.partition == block.partition
            and int(offsets[0]) >= state.next_offset
            and (state.last_ts is None or ts[0] >= state.last_ts)
            and (
                n == 1 or (bool((np.diff(ts) >= 0.0).all()) and bool((np.diff(offsets) > 0).all()))
            )
        )
        if not in_order:
            return self.apply(state, [(tick, None) for tick in block.ticks()])
        now = self.clock()
        limit = self._jump_limit(state.last_ts, now)
        run = KeyRun()
        if ts[-1] <= limit:
            # No tick can be a jump, whatever the detector refuses.
            self._learn_whole_block(state, run, block)
            return run
        # Later ticks (ahead of the clock: a file of future timestamps) are no jump if each
        # is within the limit of the tick before it, which is the last applied tick unless
        # the detector refused that one. So: learn, and if it refused any tick, go back to the
        # saved state and take the ticks one by one.
        chained = ts[0] <= limit and bool(
            (ts[1:] <= np.maximum(now, ts[:-1]) + self.max_ts_jump).all()
        )
        restore = getattr(type(state.pipeline), "from_state", None)
        if chained and restore is not None:
            saved = state.pipeline.to_state()
            books = (
                state.last_regime,
                state.next_offset,
                state.last_ts,
                state.dirty,
                state.problem,
            )
            self._learn_whole_block(state, run, block)
            if not run.dead_letters:
                return run
            state.pipeline = restore(saved)
            state.last_regime, state.next_offset, state.last_ts, state.dirty, state.problem = books
        return self.apply(state, [(tick, None) for tick in block.ticks()])

    def _learn_whole_block(self, state: KeyState, run: KeyRun, block: TickBlock) -> None:
        """A block of in-order ticks through the detector in one call (as :meth:`_learn`)."""
        learn_block = _block_learner(state.pipeline, len(block))
        if learn_block is None:
            self._learn_ticks(state, run, [(tick, None) for tick in block.ticks()])
        else:
            self._learn_block(state, run, block, learn_block(block.ts, block.fields), None, None)

    def _learn_ticks(
        self, state: KeyState, run: KeyRun, ticks: Sequence[tuple[Tick, bytes | None]]
    ) -> None:
        outs = state.pipeline.learn_predict_many([{"ts": t.ts, **t.fields} for t, _ in ticks])
        applied: list[Tick] = []
        applied_outs: list[dict[str, Any]] = []
        for (tick, value), out in zip(ticks, outs, strict=True):
            if isinstance(out, ValueError):
                run.dead_letters.append(_rejected(tick, out, value))
            else:
                applied.append(tick)
                applied_outs.append(out)
        if not applied:
            return
        emitted = self._emitted(
            state.last_regime,
            [out["regime"] for out in applied_outs],
            [out["n_samples_seen"] for out in applied_outs],
        )
        names = self.regime_names
        if len(emitted) == len(applied):
            written_ticks, written_outs = applied, applied_outs
        else:
            written_ticks = [applied[j] for j in emitted]
            written_outs = [applied_outs[j] for j in emitted]
        run.records += zip(
            [tick.offset for tick in written_ticks],
            encode_output_run(written_ticks, written_outs, names),
            strict=True,
        )
        if self.keep_labels and emitted:
            written = [applied_outs[j] for j in emitted]
            run.labels.append(
                Labels(
                    np.array([applied[j].ts for j in emitted]),
                    np.array([out["regime"] for out in written], dtype=np.int64),
                    np.array([out["drift_detected"] for out in written], dtype=bool),
                    np.array([out["warm"] for out in written], dtype=bool),
                    len(written[0]["probabilities"]),
                )
            )
        run.applied += len(applied)
        if self.keep_outputs:
            run.ticks += applied
            run.outputs = [*run.outputs, *applied_outs] if run.outputs else applied_outs
        last = applied[-1]
        self._settle(state, run, int(applied_outs[-1]["regime"]), last.offset, last.ts)

    def _learn_block(
        self,
        state: KeyState,
        run: KeyRun,
        block: TickBlock,
        result: OutputBlock,
        ticks: Sequence[Tick] | None,
        values: Sequence[bytes | None] | None,
    ) -> None:
        index, columns = result.applied, result.columns
        for i, error in result.refused:
            tick = ticks[i] if ticks is not None else block.tick(i)
            run.dead_letters.append(_rejected(tick, error, None if values is None else values[i]))
        if not index:
            return
        regimes = columns["regime"]
        emitted = self._emitted(state.last_regime, regimes, columns["n_samples_seen"])
        if emitted:
            rows = [index[j] for j in emitted]
            source = block if len(rows) == len(block) else block.take(rows)
            written = columns if len(rows) == len(index) else take_columns(columns, emitted)
            encoded = encode_output_columns(
                {f.name: getattr(source, f.name) for f in SOURCE_FIELDS}, written, self.regime_names
            )
            run.records += zip(source.offset.tolist(), encoded, strict=True)
            if self.keep_labels:
                run.labels.append(
                    Labels(
                        source.ts,
                        np.asarray(written["regime"], dtype=np.int64),
                        np.asarray(written["drift_detected"], dtype=bool),
                        np.asarray(written["warm"], dtype=bool),
                        len(written["probabilities"]),
                    )
                )
        run.applied += len(index)
        if self.keep_outputs:
            run.ticks += (
                [ticks[i] for i in index] if ticks is not None else [block.tick(i) for i in index]
            )
            outs = output_rows(columns)
            run.outputs = [*run.outputs, *outs] if run.outputs else outs
        last = index[-1]
        self._settle(state, run, int(regimes[-1]), int(block.offset[last]), float(block.ts[last]))

    def _emitted(
        self, previous_regime: int | None, regimes: Sequence[Any], seen: Sequence[Any]
    ) -> Sequence[int]:
        """The emit policy, applied to a run: the positions of the outputs it writes.

        ``regimes`` and ``seen`` are the run's outputs' ``regime`` and ``n_samples_seen`` in
        order, ``previous_regime`` the key's regime before the run (:func:`should_emit`).
        """
        policy, every_n = self.emit_policy, self.emit_every_n
        if policy == "every_tick":  # the default: no output needs looking at
            return range(len(regimes))
        emitted = []
        for j, (regime, n_seen) in enumerate(zip(regimes, seen, strict=True)):
            if should_emit(
                policy, every_n, {"regime": regime, "n_samples_seen": n_seen}, previous_regime
            ):
                emitted.append(j)
            previous_regime = int(regime)
        return emitted

    def _settle(
        self, state: KeyState, run: KeyRun, last_regime: int, last_offset: int, last_ts: float
    ) -> None:
        """The key's bookkeeping after ticks were applied, the last of them as given."""
        state.last_regime = last_regime
        state.next_offset = last_offset + 1
        state.last_ts = last_ts
        state.dirty = True
        problem = state.pipeline.stream_problem
        kind = None if problem is None else problem.kind
        if kind != state.problem:
            state.problem = kind
            run.problem = problem


def _block_learner(pipeline: Pipeline, n: int) -> Callable[..., OutputBlock] | None:
    """The pipeline's ``learn_predict_block`` when a run of ``n`` ticks should go as columns
    (:data:`BLOCK_RUN` or more, and the pipeline has it), else None: as dicts."""
    if n < BLOCK_RUN:
        return None
    return getattr(pipeline, "learn_predict_block", None)


def _rejected(tick: Tick, error: ValueError, value: bytes | None) -> DeadLetter:
    # The detector refused a value the decoder accepted (e.g. beyond the mixture's ±1e100
    # range) and left its state unchanged; later ticks were still applied.
    return dead_letter_for(tick, "rejected_by_model", f"model: {error}", value=value)
