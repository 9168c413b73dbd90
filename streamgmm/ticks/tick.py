"""The tick path's records: a decoded :class:`Tick` (or a :class:`TickBlock` of them), and a
:class:`DeadLetter` for a record that cannot be used, with its stable :data:`REASONS`.

Instrument keys travel as UTF-8 (:func:`encode_key`, :func:`decode_key`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple, Protocol

import numpy as np

__all__ = [
    "REASONS",
    "DeadLetter",
    "Tick",
    "TickBlock",
    "dead_letter_for",
    "decode_key",
    "encode_key",
    "short_repr",
]

#: Every reason a record can be dead-lettered for. ``out_of_order``, ``ts_jump``,
#: ``wrong_partition`` and ``rejected_by_model`` are decided by the per-key step
#: (:mod:`streamgmm.ticks.rules`), which knows each key's last timestamp, partition and model;
#: ``bad_snapshot`` is a changelog snapshot that could not be restored
#: (``[checkpoint] on_bad_snapshot = "reset_key"``); ``unproducible`` is an output record the
#: broker refused for good (:func:`streamgmm.service.dead_letters.refused_copy`); the decoder
#: (:mod:`streamgmm.ticks.decode`) produces the others.
REASONS: tuple[str, ...] = (
    "oversized",
    "oversized_key",
    "invalid_json",
    "not_an_object",
    "missing_field",
    "wrong_type",
    "non_finite",
    "non_positive_price",
    "negative_volume",
    "wrong_partition",
    "rejected_by_model",
    "empty_key",
    "out_of_order",
    "ts_jump",
    "bad_snapshot",
    "unproducible",
)


class Tick(NamedTuple):
    """A decoded, validated tick and where it came from.

    ``fields`` holds ``price`` and, when present, ``volume`` for market ticks, or the
    configured event fields; ``ts`` is epoch seconds. A named tuple rather than a frozen
    dataclass: one is built per record, and a frozen dataclass's ``__init__`` costs four
    times as much.
    """

    key: str
    ts: float
    fields: dict[str, float]
    topic: str
    partition: int
    offset: int


@dataclass(frozen=True)
class TickBlock:
    """One key's run of decoded ticks from one topic and partition, as columns.

    The column form of a list of :class:`Tick` (same attribute names): ``key``, ``topic`` and
    ``partition`` are one value for the run; ``ts`` and ``offset`` are arrays, one entry per
    tick in offset order; ``fields`` maps each field every tick of the run has to its array.
    ``streamgmm replay`` decodes a file's rows straight into blocks, and the per-key tick
    rules (:mod:`.rules`) hand blocks to the detector and the encoder.
    """

    key: str
    ts: np.ndarray
    fields: dict[str, np.ndarray]
    topic: str
    partition: int
    offset: np.ndarray

    def __len__(self) -> int:
        return len(self.ts)

    def tick(self, i: int) -> Tick:
        """The ``i``-th tick, as the decoder would have made it."""
        return Tick(
            self.key,
            float(self.ts[i]),
            {name: float(column[i]) for name, column in self.fields.items()},
            self.topic,
            self.partition,
            int(self.offset[i]),
        )

    def ticks(self) -> list[Tick]:
        """Every tick of the run, in order."""
        return [self.tick(i) for i in range(len(self))]

    def take(self, rows: Sequence[int]) -> TickBlock:
        """The ticks at positions ``rows``, as a block."""
        index = np.asarray(rows, dtype=np.intp)
        return TickBlock(
            self.key,
            self.ts[index],
            {name: column[index] for name, column in self.fields.items()},
            self.topic,
            self.partition,
            self.offset[index],
        )

    @classmethod
    def of_ticks(cls, ticks: Sequence[Tick]) -> TickBlock:
        """The block of a non-empty run of one key's ticks (the fields all of them have)."""
        first = ticks[0]
        names = [name for name in first.fields if all(name in t.fields for t in ticks)]
        return cls(
            first.key,
            np.array([t.ts for t in ticks], dtype=np.float64),
            {name: np.array([t.fields[name] for t in ticks], dtype=np.float64) for name in names},
            first.topic,
            first.partition,
            np.array([t.offset for t in ticks], dtype=np.int64),
        )


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A record that cannot be processed: its original bytes, the reason and its source."""

    key: bytes | None
    value: bytes | None
    reason: str
    detail: str
    topic: str
    partition: int
    offset: int


def short_repr(value: object) -> str:
    """``repr(value)``, cut to 60 characters for messages."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


class _RawRecord(Protocol):
    key: bytes | None
    value: bytes | None
    topic: str
    partition: int
    offset: int


def dead_letter_for(
    source: Tick | _RawRecord, reason: str, detail: str, *, value: bytes | None = None
) -> DeadLetter:
    """Make a dead letter for a record the runner rejects after decoding (e.g. out_of_order).

    Parameters
    ----------
    source
        The :class:`Tick`, or the raw record (anything with ``key``, ``value``, ``topic``,
        ``partition`` and ``offset``, such as kafka-python's ``ConsumerRecord``).
    reason
        One of :data:`REASONS`.
    detail
        Human-readable explanation, for the ``streamgmm.detail`` header.
    value
        The original value bytes, when ``source`` is a Tick (a tick no longer has them).
    """
    if reason not in REASONS:
        raise ValueError(f"reason must be one of {', '.join(REASONS)}, got {reason!r}")
    if isinstance(source, Tick):
        key: bytes | None = encode_key(source.key)
    else:
        key = source.key
        value = source.value if value is None else value
    return DeadLetter(key, value, reason, detail, source.topic, source.partition, source.offset)


def encode_key(key: str) -> bytes:
    """Kafka key bytes for an instrument key."""
    return key.encode("utf-8")


def decode_key(b: bytes) -> str:
    """Instrument key from Kafka key bytes (UTF-8)."""
    return bytes(b).decode("utf-8")
