"""Key store: the per-key state of the partitions this instance owns.

Owns the least-recently-used map of :class:`~streamgmm.ticks.keystate.KeyState` capped at
``[state] max_keys_in_memory``, the changelog index (where the latest snapshot of each owned key
lives) and eviction. A key beyond the cap is snapshotted to the changelog
(:meth:`Checkpointer.save <streamgmm.service.checkpoint.Checkpointer.save>`, which flushes the
sink first, as at every checkpoint) and dropped; it is restored from the changelog when its
next tick arrives. Keys of newly assigned partitions are loaded the same lazy way: a restore
costs one scan of the changelog (:meth:`KeyStore.index`) plus one fetch per key that actually
shows up again.

A snapshot that cannot be restored (a changelog record that is not a snapshot this version
reads, or a state its detector's ``from_state`` refuses), and a state that cannot be written
(not JSON-safe), take the one path ``[checkpoint] on_bad_snapshot`` sets: ``"reset_key"``
starts the key afresh and tells ``on_reset`` (the runner counts it and dead-letters the refused
record, reason ``bad_snapshot``); ``"fail"`` raises
:class:`~streamgmm.service.checkpoint.ChangelogError`, which stops the service with one line
naming the record (or the key) and the reason.

Single writer: the runner's processing thread, or a rebalance hook while that thread is parked
in ``poll()`` (see :mod:`.kafka`).
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable, Collection, Mapping, Sequence

from streamgmm.service.checkpoint import (
    BadSnapshot,
    BadSnapshotError,
    Changelog,
    ChangelogError,
    SnapshotRef,
)
from streamgmm.settings.service import Settings
from streamgmm.ticks.keystate import KeyState, make_pipeline

log = logging.getLogger(__name__)

__all__ = ["KeyStore"]

_FAIL_NOTE = '([checkpoint] on_bad_snapshot = "fail"; "reset_key" would start the key afresh)'

#: Writes snapshots of ``(key, state)`` items and returns where they landed; the second
#: argument is :meth:`KeyStore.reset`, for a state that cannot be written.
SaveSnapshots = Callable[
    [Sequence[tuple[str, KeyState]], Callable[[str, str], KeyState]], Mapping[str, SnapshotRef]
]
#: ``on_reset(key, bad)``: the key started afresh; ``bad`` is the changelog record that could
#: not be restored, or None when the key's state could not be written.
ResetCallback = Callable[[str, BadSnapshot | None], None]


class KeyStore:
    """Per-key states in memory, in least-recently-used order, plus the changelog index.

    Parameters
    ----------
    settings : Settings
        Uses ``max_keys_in_memory`` and what :func:`~streamgmm.ticks.keystate.make_pipeline`
        needs.
    changelog : Changelog
        Where evicted and revoked keys' snapshots are read back from.
    save : callable
        Writes snapshots of evicted keys (``Checkpointer.save``).
    on_evict : callable or None
        Told the keys of each eviction, after they are gone (the runner forgets their
        metrics).
    on_reset : callable or None
        Told each key that started afresh, with ``on_bad_snapshot = "reset_key"``, and the
        changelog record that could not be restored if there is one (the runner counts it and
        dead-letters the record).
    """

    def __init__(
        self,
        settings: Settings,
        changelog: Changelog,
        save: SaveSnapshots,
        on_evict: Callable[[list[str]], None] | None = None,
        on_reset: ResetCallback | None = None,
    ) -> None:
        self._settings = settings
        self._changelog = changelog
        self._save = save
        self._on_evict = on_evict
        self._on_reset = on_reset
        self._keys: OrderedDict[str, KeyState] = OrderedDict()
        self._index: dict[str, SnapshotRef] = {}  # latest changelog snapshot per owned key

    def __len__(self) -> int:
        return len(self._keys)

    def get(self, key: str, partition: int) -> KeyState:
        """The key's state: in memory, else restored from its snapshot, else new.

        A new or restored key may evict the least recently used others, never this one.
        """
        state = self._keys.get(key)
        if state is not None:
            self._keys.move_to_end(key)
            return state
        ref = self._index.get(key)
        state = None if ref is None else self._restore(ref)
        if state is None:
            # No snapshot, or one that cannot be restored (forgotten, so that an eviction
            # before the key's next snapshot does not meet it again).
            self._index.pop(key, None)
            state = KeyState(make_pipeline(self._settings), partition=partition)
        self._keys[key] = state
        if len(self._keys) > self._settings.max_keys_in_memory:
            self._evict()
        return state

    def _restore(self, ref: SnapshotRef) -> KeyState | None:
        """The key's state from its snapshot, or None when the key is to start afresh."""
        try:
            snap, value = self._changelog.load(ref)
        except BadSnapshotError as exc:
            self._bad(exc.bad)
            return None
        try:
            return KeyState.from_state(
                self._settings, snap.state, partition=snap.partition, next_offset=snap.next_offset
            )
        except (ValueError, TypeError, KeyError, IndexError, OverflowError, RecursionError) as exc:
            # from_state refuses bad states with ValueError; the others would be its bugs,
            # which must not stop the partition either.
            reason = " ".join(str(exc).split()) or type(exc).__name__
            if not isinstance(exc, ValueError):
                reason = f"{type(exc).__name__}: {reason}"
            self._bad(
                BadSnapshot(
                    ref.key.encode("utf-8"),
                    value,
                    self._changelog.topic,
                    ref.changelog_partition,
                    ref.changelog_offset,
                    f"state refused: {reason}",
                )
            )
            return None

    def _bad(self, bad: BadSnapshot) -> None:
        """Follow ``[checkpoint] on_bad_snapshot`` for one snapshot that cannot be restored."""
        if self._settings.on_bad_snapshot == "fail":
            raise ChangelogError(f"{bad.describe()} {_FAIL_NOTE}")
        log.warning("%s; the key starts afresh", bad.describe())
        if self._on_reset is not None:
            self._on_reset(bad.instrument or "", bad)

    def reset(self, key: str, reason: str) -> KeyState:
        """Follow ``[checkpoint] on_bad_snapshot`` for a key whose state cannot be written.

        With ``"reset_key"`` the key's model starts afresh (its offset bookkeeping and last
        ts stay, so no tick is applied twice or out of order) and the fresh state, which
        :meth:`Checkpointer.save <streamgmm.service.checkpoint.Checkpointer.save>` writes
        instead, is returned. With ``"fail"``, :class:`ChangelogError`.
        """
        if self._settings.on_bad_snapshot == "fail":
            raise ChangelogError(
                f"the state of key {key!r} cannot be written to the changelog: {reason} "
                f"{_FAIL_NOTE}"
            )
        log.error(
            "the state of key %r cannot be written to the changelog: %s; the key starts afresh",
            key,
            reason,
        )
        old = self._keys.get(key)
        fresh = KeyState(
            make_pipeline(self._settings),
            partition=old.partition if old is not None else 0,
            next_offset=old.next_offset if old is not None else 0,
            last_ts=old.last_ts if old is not None else None,
            dirty=True,
        )
        if old is not None:
            self._keys[key] = fresh
        if self._on_reset is not None:
            self._on_reset(key, None)
        return fresh

    def _evict(self) -> None:
        """Snapshot and drop least-recently-used keys down to 90% of the cap."""
        target = max(1, int(self._settings.max_keys_in_memory * 0.9))
        victims: list[str] = []
        for key in self._keys:
            if len(self._keys) - len(victims) <= target:
                break
            victims.append(key)
        # The key just added is the most recent, so it is never a victim.
        self.remember(
            self._save([(k, self._keys[k]) for k in victims if self._keys[k].dirty], self.reset)
        )
        for key in victims:
            del self._keys[key]
        log.debug("evicted %d key(s) to the changelog", len(victims))
        if self._on_evict is not None:
            self._on_evict(victims)

    def dirty(self, partitions: Collection[int] | None = None) -> list[tuple[str, KeyState]]:
        """``(key, state)`` of every key changed since its last snapshot (of ``partitions``)."""
        return [
            (key, st)
            for key, st in self._keys.items()
            if st.dirty and (partitions is None or st.partition in partitions)
        ]

    def remember(self, refs: Mapping[str, SnapshotRef]) -> None:
        """Note where the latest snapshots of these keys are."""
        self._index.update(refs)

    def index(self, partitions: Collection[int]) -> None:
        """Read the changelog's latest snapshot of every key of newly assigned ``partitions``.

        A record that is not a snapshot follows ``[checkpoint] on_bad_snapshot``; with
        ``"reset_key"`` its key starts afresh.
        """
        index, bad = self._changelog.read_index(partitions)
        for record in bad:
            self._bad(record)
            if record.instrument is not None:
                self._index.pop(record.instrument, None)
        self._index.update(index)

    def drop(self, partitions: Collection[int]) -> list[str]:
        """Forget the keys (in memory and indexed) of ``partitions``; return those in memory."""
        gone = [k for k, st in self._keys.items() if st.partition in partitions]
        for key in gone:
            del self._keys[key]
        for key in [k for k, ref in self._index.items() if ref.partition in partitions]:
            del self._index[key]
        return gone

    def clear(self) -> None:
        """Forget every key (a rewind restores them from the changelog)."""
        self._keys.clear()
        self._index.clear()
