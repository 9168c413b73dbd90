"""Key store: the per-key state of the partitions this instance owns.

Owns the least-recently-used map of :class:`~streamgmm.service.apply.KeyState` capped at
``[state] max_keys_in_memory``, the changelog index (where the latest snapshot of each owned key
lives) and eviction. A key beyond the cap is snapshotted to the changelog
(:meth:`Checkpointer.save <streamgmm.service.checkpoint.Checkpointer.save>`, which flushes the
sink first, as at every checkpoint) and dropped; it is restored from the changelog when its
next tick arrives. Keys of newly assigned partitions are loaded the same lazy way: a restore
costs one scan of the changelog (:meth:`KeyStore.index`) plus one fetch per key that actually
shows up again.

Single writer: the runner's processing thread, or a rebalance hook while that thread is parked
in ``poll()`` (see :mod:`.kafka_io`).
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable, Collection, Mapping, Sequence

from streamgmm.service.apply import KeyState, make_pipeline
from streamgmm.service.checkpoint import Changelog, SnapshotRef
from streamgmm.service.config import Settings

log = logging.getLogger(__name__)

__all__ = ["KeyStore"]

#: Writes snapshots of ``(key, state)`` items and returns where they landed.
SaveSnapshots = Callable[[Sequence[tuple[str, KeyState]]], Mapping[str, SnapshotRef]]


class KeyStore:
    """Per-key states in memory, in least-recently-used order, plus the changelog index.

    Parameters
    ----------
    settings : Settings
        Uses ``max_keys_in_memory`` and what :func:`~streamgmm.service.apply.make_pipeline`
        needs.
    changelog : Changelog
        Where evicted and revoked keys' snapshots are read back from.
    save : callable
        Writes snapshots of evicted keys (``Checkpointer.save``).
    on_evict : callable or None
        Told the keys of each eviction, after they are gone (the runner forgets their
        metrics).
    """

    def __init__(
        self,
        settings: Settings,
        changelog: Changelog,
        save: SaveSnapshots,
        on_evict: Callable[[list[str]], None] | None = None,
    ) -> None:
        self._settings = settings
        self._changelog = changelog
        self._save = save
        self._on_evict = on_evict
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
        if ref is not None:
            snap = self._changelog.load(ref)
            state = KeyState.from_state(
                self._settings, snap.state, partition=snap.partition, next_offset=snap.next_offset
            )
        else:
            state = KeyState(make_pipeline(self._settings), partition=partition)
        self._keys[key] = state
        if len(self._keys) > self._settings.max_keys_in_memory:
            self._evict()
        return state

    def _evict(self) -> None:
        """Snapshot and drop least-recently-used keys down to 90% of the cap."""
        target = max(1, int(self._settings.max_keys_in_memory * 0.9))
        victims: list[str] = []
        for key in self._keys:
            if len(self._keys) - len(victims) <= target:
                break
            victims.append(key)
        # The key just added is the most recent, so it is never a victim.
        self.remember(self._save([(k, self._keys[k]) for k in victims if self._keys[k].dirty]))
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
        """Read the changelog's latest snapshot of every key of newly assigned ``partitions``."""
        self._index.update(self._changelog.read_index(partitions))

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
