"""Checkpoint: per-key state goes to the changelog, then offsets are committed.

Owns the checkpoint protocol, carried out by :meth:`Checkpointer.commit`:

1. flush the sink, so every output and dead-letter record of the processed ticks is
   acknowledged;
2. write one snapshot per dirty key to the changelog, keyed by instrument, value
   ``{state, partition, next_offset}`` (versioned JSON, :mod:`.snapshot`; never pickle), and
   flush;
3. commit, per input partition, the next offset to process. Every key of the partition was
   snapshotted in step 2 at or after its last applied record, so this is also the minimum over
   the partition's keys of their snapshot ``next_offset`` bound.

Evicting a key (:mod:`.keystore`) runs steps 1-2 for it (:meth:`Checkpointer.save`).
See docs/operations.md for the guarantees the protocol gives.

Restore (:class:`Changelog`): read the changelog to its end, keep the last snapshot per key
whose source partition is assigned here, seek each partition to its committed offset, and skip
every record whose offset is below its key's snapshot ``next_offset`` (that tick is already
inside the snapshot). A changelog record that is not a snapshot this version can read is
reported as a :class:`BadSnapshot`, never executed or guessed at; what then happens to its key
is the key store's decision (``[checkpoint] on_bad_snapshot``, :mod:`.keystore`).

The changelog is co-partitioned with the input when the partition counts match (snapshot of a
key from input partition p goes to changelog partition p), so an instance restoring partition p
reads only changelog partition p. Otherwise every changelog partition is read and filtered.

This module moves snapshots; it does not know what is inside a state dict.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from streamgmm.service.kafka import (
    BrokerError,
    GroupConsumer,
    Producer,
    Reader,
    RecordRefused,
    TopicPartition,
)
from streamgmm.service.snapshot import Snapshot, SnapshotError, decode_snapshot, encode_snapshot
from streamgmm.ticks.tick import decode_key, encode_key

log = logging.getLogger(__name__)

#: Seconds a restore may go without reading anything before it counts as broker trouble.
RESTORE_STALL_SECONDS = 60.0


@dataclass(frozen=True)
class SnapshotRef:
    """Where the latest snapshot of a key lives, and which input offsets it already covers."""

    key: str
    partition: int  # input partition the key's ticks come from
    next_offset: int  # first input offset NOT yet applied to the snapshotted state
    changelog_partition: int
    changelog_offset: int


@dataclass(frozen=True)
class PendingSnapshot:
    """A snapshot to write: the changelog value and the input position it reflects."""

    key: str
    value: bytes  # encode_snapshot(key, state, partition, next_offset)
    partition: int
    next_offset: int


class ChangelogError(RuntimeError):
    """The changelog holds a record that is not a streamgmm snapshot (not retryable)."""


@dataclass(frozen=True)
class BadSnapshot:
    """A changelog record that cannot be restored: where it is, its bytes and why.

    ``key`` and ``value`` are the record's own bytes (the key names the instrument whose
    snapshot it claims to be); ``partition`` and ``offset`` are its changelog coordinates.
    """

    key: bytes | None
    value: bytes | None
    topic: str
    partition: int
    offset: int
    reason: str

    @property
    def instrument(self) -> str | None:
        """The instrument key the record is keyed by, or None if its key is not UTF-8."""
        return _text_key(self.key)

    def describe(self) -> str:
        """One line naming the record, its key and the reason."""
        key = "none" if self.key is None else repr(bytes(self.key[:80]).decode("utf-8", "replace"))
        return (
            f"changelog record {self.topic}[{self.partition}]@{self.offset} (key {key}) "
            f"rejected: {self.reason}"
        )


class BadSnapshotError(ChangelogError):
    """A snapshot that was indexed could not be loaded; :attr:`bad` says which and why."""

    def __init__(self, bad: BadSnapshot) -> None:
        super().__init__(bad.describe())
        self.bad = bad


class ChangelogUnavailable(BrokerError):
    """The changelog could not be read in time (retryable, like any broker trouble)."""


class Changelog:
    """Read and write the compacted changelog topic.

    Parameters
    ----------
    topic : str
        Changelog topic name.
    producer : Producer
        The service process's producer. It also writes outputs only with
        ``producer_process = false``; the runner flushes outputs before writing snapshots.
    reader : Reader
        A group-less consumer used only for restores.
    input_partitions : int
        Partition count of the input topic; enables co-partitioning when it matches.
    """

    def __init__(
        self,
        topic: str,
        producer: Producer,
        reader: Reader,
        input_partitions: int,
        timeout_ms: int = 30000,
    ) -> None:
        self.topic = topic
        self._producer = producer
        self._reader = reader
        self._timeout_ms = timeout_ms
        self._partitions = sorted(reader.partitions_for(topic))
        if not self._partitions:
            # Retryable (the broker may be recovering), unlike a corrupt record.
            raise ChangelogUnavailable(
                f"changelog topic {topic!r} does not exist or has no partitions"
            )
        self.copartitioned = len(self._partitions) == input_partitions

    def _target_partition(self, source_partition: int) -> int | None:
        return source_partition if self.copartitioned else None

    # ------------------------------------------------------------------ write
    def write(self, snapshots: Iterable[PendingSnapshot]) -> dict[str, SnapshotRef]:
        """Send snapshots, flush, and return where each one landed.

        Raises
        ------
        streamgmm.service.kafka.DeliveryError
            When the broker did not acknowledge them; the caller must not commit then.
        """
        futures = []
        for snap in snapshots:
            future = self._producer.send(
                self.topic,
                value=snap.value,
                key=encode_key(snap.key),
                partition=self._target_partition(snap.partition),
                divert=False,
            )
            futures.append((snap, future))
        if not futures:
            return {}
        try:
            self._producer.flush(timeout=self._timeout_ms / 1000)
        except RecordRefused as exc:
            # A key's state is only as large as the detector settings make it: a refusal
            # here is a configuration to fix, and retrying would stall for ever.
            raise ChangelogError(
                f"the broker refused a snapshot for good: {exc}; a snapshot must fit the "
                "producer's max_request_size and the changelog topic's max.message.bytes"
            ) from exc
        refs: dict[str, SnapshotRef] = {}
        for snap, future in futures:
            partition, offset = self._producer.where(future)
            refs[snap.key] = SnapshotRef(
                snap.key, snap.partition, snap.next_offset, partition, offset
            )
        return refs

    # ------------------------------------------------------------------ restore
    def read_index(
        self, input_partitions: Iterable[int]
    ) -> tuple[dict[str, SnapshotRef], list[BadSnapshot]]:
        """Read the changelog to its end; last snapshot per key of the given partitions wins.

        Only references are kept; :meth:`load` fetches a state when its key is first needed,
        which keeps restore memory independent of the number of keys.

        Returns
        -------
        index : dict
            Key -> where its latest snapshot is.
        bad : list of BadSnapshot
            Records that are not snapshots this version reads (anything
            :func:`~streamgmm.service.snapshot.decode_snapshot` refuses, or a snapshot whose
            key is not its record's key), each the latest record of its key: a later good
            snapshot or tombstone of the key supersedes it. Their keys are not in ``index``.
        """
        wanted = set(input_partitions)
        if not wanted:
            return {}, []
        cl_parts = sorted(wanted) if self.copartitioned else self._partitions
        tps = [TopicPartition(self.topic, p) for p in cl_parts]
        self._reader.assign(tps)
        self._reader.seek_to_beginning(tps)
        end = self._reader.end_offsets(tps, timeout_ms=self._timeout_ms)
        index: dict[str, SnapshotRef] = {}
        bad: dict[bytes | None, BadSnapshot] = {}  # by record key: the latest record wins
        remaining = {tp for tp in tps if end[tp] > 0}
        started = time.monotonic()
        last_progress = started
        n_read = 0
        while remaining:
            if time.monotonic() - last_progress > RESTORE_STALL_SECONDS:
                raise ChangelogUnavailable(
                    f"changelog {self.topic} restore made no progress for "
                    f"{RESTORE_STALL_SECONDS:.0f}s ({n_read} snapshot(s) read)"
                )
            batch = self._reader.poll(1000, 5000)
            if batch:
                last_progress = time.monotonic()
            for tp, records in batch.items():
                for rec_key, rec_value, rec_offset in records:
                    n_read += 1
                    key = _text_key(rec_key)
                    bad.pop(rec_key, None)
                    if rec_value is None:  # tombstone: the key was deleted
                        if key is not None:
                            index.pop(key, None)
                        continue
                    try:
                        snap = self._decode(rec_key, rec_value, tp, rec_offset)
                    except BadSnapshotError as exc:
                        if key is not None:
                            index.pop(key, None)
                        bad[rec_key] = exc.bad
                        continue
                    if snap.partition in wanted:
                        index[snap.key] = SnapshotRef(
                            snap.key, snap.partition, snap.next_offset, tp.partition, rec_offset
                        )
            for tp in list(remaining):
                # tansu reports a partition's end offset as the last batch's base offset + 1,
                # short of its real end; the fetch high-watermark is right, so take the larger.
                high = self._reader.highwater(tp)
                target = end[tp] if high is None else max(end[tp], high)
                if self._reader.position(tp, timeout_ms=self._timeout_ms) >= target:
                    remaining.discard(tp)
        log.info(
            "changelog %s: read %d snapshot(s) in %.2fs; %d key(s) for partitions %s",
            self.topic,
            n_read,
            time.monotonic() - started,
            len(index),
            sorted(wanted),
        )
        return index, list(bad.values())

    def load(self, ref: SnapshotRef) -> tuple[Snapshot, bytes]:
        """Fetch the snapshot ``ref`` points at; return it with the record's value bytes.

        Raises
        ------
        BadSnapshotError
            If the record is not a snapshot this version reads.
        ChangelogUnavailable
            If it could not be read in time (retryable).
        """
        tp = TopicPartition(self.topic, ref.changelog_partition)
        self._reader.assign([tp])
        self._reader.seek(tp, ref.changelog_offset)
        deadline = time.monotonic() + RESTORE_STALL_SECONDS
        while time.monotonic() < deadline:
            batch = self._reader.poll(1000, 1)
            for rec_key, rec_value, rec_offset in batch.get(tp, ()):
                if rec_offset == ref.changelog_offset:
                    snap = self._decode(rec_key, rec_value, tp, rec_offset)
                    assert rec_value is not None  # decode_snapshot refuses None
                    return snap, rec_value
                break
        raise ChangelogUnavailable(
            f"snapshot of key {ref.key!r} at {self.topic}[{ref.changelog_partition}]"
            f"@{ref.changelog_offset} could not be read within {RESTORE_STALL_SECONDS:.0f}s"
        )

    def _decode(
        self, key: bytes | None, value: bytes | None, tp: TopicPartition, offset: int
    ) -> Snapshot:
        # Refuse to guess: a changelog record that is not ours (a pickle, say) is reported
        # with where it is, and nothing in it is executed.
        try:
            snap = decode_snapshot(value)
        except SnapshotError as exc:
            raise BadSnapshotError(
                BadSnapshot(key, value, tp.topic, tp.partition, offset, str(exc))
            ) from None
        if key is None or _text_key(key) != snap.key:
            # A record keyed A claiming to be B's state must not replace B's.
            reason = f"the snapshot is of key {snap.key!r}, not of its record's key"
            raise BadSnapshotError(BadSnapshot(key, value, tp.topic, tp.partition, offset, reason))
        return snap


def _text_key(key: bytes | None) -> str | None:
    """The instrument key of a changelog record, or None if its key is not UTF-8."""
    if key is None:
        return None
    try:
        return decode_key(key)
    except UnicodeDecodeError:
        return None


class Snapshottable(Protocol):
    """What a checkpoint needs of one key's state (:class:`streamgmm.ticks.keystate.KeyState`)."""

    partition: int
    next_offset: int
    dirty: bool

    def to_state(self) -> dict[str, Any]: ...


class KeyStates(Protocol):
    """What a checkpoint needs of the key store (:class:`streamgmm.service.keystore.KeyStore`)."""

    def dirty(
        self, partitions: Collection[int] | None = None
    ) -> Sequence[tuple[str, Snapshottable]]: ...

    def remember(self, refs: Mapping[str, SnapshotRef]) -> None: ...

    def reset(self, key: str, reason: str) -> Snapshottable: ...


#: ``reset(key, reason)``: the key's state cannot be written (``reason``); returns the state to
#: write instead (a fresh model), or raises :class:`ChangelogError`.
Reset = Callable[[str, str], Snapshottable]


class Flushable(Protocol):
    """The sink of output and dead-letter records (a Producer or a ProducerProcess)."""

    def flush(self, timeout: float | None = None) -> None: ...


class Checkpointer:
    """Carries out the checkpoint protocol of the module docstring.

    Parameters
    ----------
    changelog : Changelog
        Where snapshots go.
    sink : Producer or ProducerProcess
        Where output and dead-letter records go; flushed before any snapshot is written.
    timeout_ms : int
        Bound of each flush and of a synchronous commit.
    """

    def __init__(self, changelog: Changelog, sink: Flushable, timeout_ms: int = 30000) -> None:
        self.changelog = changelog
        self._sink = sink
        self._timeout_ms = timeout_ms

    def save(
        self, items: Sequence[tuple[str, Snapshottable]], reset: Reset | None = None
    ) -> dict[str, SnapshotRef]:
        """Steps 1-2: flush the sink, then write and flush one snapshot per ``(key, state)``.

        Each saved state is marked clean. Returns where each snapshot landed.

        A state that cannot be written (not JSON-safe: a model that holds an infinity) would
        fail every checkpoint from then on; ``reset(key, reason)`` decides instead
        (``[checkpoint] on_bad_snapshot``, :meth:`KeyStore.reset
        <streamgmm.service.keystore.KeyStore.reset>`) and returns the state to write.

        Raises
        ------
        streamgmm.service.kafka.DeliveryError
            When a flush fails; nothing may be committed then.
        ChangelogError
            When a state cannot be written and ``reset`` is None or refuses.
        """
        self._sink.flush(timeout=self._timeout_ms / 1000)
        if not items:
            return {}
        pending: list[tuple[Snapshottable, PendingSnapshot]] = []
        for key, st in items:
            try:
                value = encode_snapshot(key, st.to_state(), st.partition, st.next_offset)
            except SnapshotError as exc:
                if reset is None:
                    raise ChangelogError(str(exc)) from exc
                st = reset(key, str(exc))
                value = encode_snapshot(key, st.to_state(), st.partition, st.next_offset)
            pending.append((st, PendingSnapshot(key, value, st.partition, st.next_offset)))
        refs = self.changelog.write([snap for _st, snap in pending])
        for st, _snap in pending:
            st.dirty = False
        return refs

    def commit(
        self,
        store: KeyStates,
        consumer: GroupConsumer,
        positions: Mapping[TopicPartition, int],
        *,
        partitions: Collection[int] | None = None,
        sync: bool = True,
    ) -> None:
        """Steps 1-3: save the store's dirty keys, then commit ``positions``.

        Parameters
        ----------
        store
            The key store; its dirty keys (of ``partitions`` only, when given) are saved and
            it learns where their snapshots are.
        consumer
            The group consumer that commits.
        positions
            Next offset to process per input partition.
        partitions
            Input partitions whose keys to save (a revoke saves only the revoked ones).
        sync
            Commit synchronously (waits up to ``timeout_ms``); False fires ``commit_async``,
            the only commit a rebalance listener may make (see :mod:`.kafka`).
        """
        store.remember(self.save(store.dirty(partitions), store.reset))
        if sync:
            consumer.commit(positions, self._timeout_ms)
        else:
            consumer.commit_async(positions)
