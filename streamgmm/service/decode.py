"""Decode: a Kafka record's bytes become a validated :class:`Tick` or a :class:`DeadLetter`.

Owns the input format, the dead-letter reasons and headers, and the key encoding (instrument
keys are UTF-8). The first step of the data path: decode -> apply (:mod:`.apply`) -> encode
(:mod:`.encode`) -> sink (:mod:`.sink`).

Input values are JSON objects. Market ticks look like
``{"symbol": "SPX", "ts": 1700000000.0, "price": 4500.25, "volume": 1200}`` and event ticks
like ``{"ts": "2024-03-01T12:00:00Z", "<field>": 1.5, ...}`` with the configured fields.
``ts`` is epoch seconds (a JSON number) or an ISO-8601 string; an ISO string without an
offset is taken as UTC.

A record that cannot be used becomes a :class:`DeadLetter` with one of the stable reasons in
:data:`REASONS`; those strings are metric labels and dead-letter headers, so they never
change meaning. Nothing here raises on bad input, whatever its bytes.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple, Protocol

import numpy as np

from streamgmm.settings.service import Settings

__all__ = [
    "HEADER_DETAIL",
    "HEADER_KEY_BYTES",
    "HEADER_OFFSET",
    "HEADER_PARTITION",
    "HEADER_REASON",
    "HEADER_REFUSED",
    "HEADER_TOPIC",
    "HEADER_TRUNCATED",
    "HEADER_VALUE_BYTES",
    "REASONS",
    "TRUNCATED_KEY_BYTES",
    "TRUNCATED_VALUE_BYTES",
    "DeadLetter",
    "Tick",
    "TickBlock",
    "TickDecoder",
    "dead_letter_for",
    "dead_letter_headers",
    "decode_key",
    "encode_key",
    "group_by_key",
    "non_finite_literal_detail",
    "refused_copy",
    "short_repr",
]

#: Every reason a record can be dead-lettered for. ``out_of_order``, ``ts_jump``,
#: ``wrong_partition`` and ``rejected_by_model`` are decided by the per-key step
#: (:mod:`streamgmm.service.apply`), which knows each key's last timestamp, partition and model;
#: ``bad_snapshot`` is a changelog snapshot that could not be restored
#: (``[checkpoint] on_bad_snapshot = "reset_key"``); ``unproducible`` is an output record the
#: broker refused for good (:func:`refused_copy`); the decoder produces the others.
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

HEADER_REASON = "streamgmm.reason"
HEADER_DETAIL = "streamgmm.detail"
HEADER_TOPIC = "streamgmm.source.topic"
HEADER_PARTITION = "streamgmm.source.partition"
HEADER_OFFSET = "streamgmm.source.offset"
#: Headers of a copy made because the broker refused a record (:func:`refused_copy`).
HEADER_TRUNCATED = "streamgmm.truncated"
HEADER_KEY_BYTES = "streamgmm.original.key_bytes"
HEADER_VALUE_BYTES = "streamgmm.original.value_bytes"
HEADER_REFUSED = "streamgmm.refused"
#: Most key and value bytes a refused record's copy keeps: far below any broker's size limit.
TRUNCATED_KEY_BYTES = 1024
TRUNCATED_VALUE_BYTES = 65536
_MAX_DETAIL_CHARS = 300
_COPY_HEADERS = frozenset({HEADER_TRUNCATED, HEADER_KEY_BYTES, HEADER_VALUE_BYTES, HEADER_REFUSED})


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
    path (:mod:`.apply`) hands blocks to the detector and the encoder.
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


class _Reject(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def non_finite_literal_detail(name: str) -> str:
    """The dead letter's detail for the first ``NaN``, ``Infinity`` or ``-Infinity`` in a value."""
    return f"non-finite literal {name} in JSON"


def _reject_constant(name: str) -> float:
    # Python's json accepts the non-standard NaN / Infinity / -Infinity literals by default.
    raise _Reject("non_finite", non_finite_literal_detail(name))


# One decoder for every record: json.loads(..., parse_constant=...) builds a new one per call.
_JSON_DECODER = json.JSONDecoder(parse_constant=_reject_constant)


def short_repr(value: object) -> str:
    """``repr(value)``, cut to 60 characters for messages."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _number(obj: dict[str, Any], name: str) -> float:
    raw = obj[name]
    # The usual case first: a finite float (x - x is 0.0 for those only).
    if type(raw) is float and raw - raw == 0.0:
        return raw
    # bool is an int subclass in Python, but true is not a price; strings are not numbers.
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        raise _Reject("wrong_type", f"field {name!r} must be a number, got {short_repr(raw)}")
    try:
        value = float(raw)
    except OverflowError:
        raise _Reject(
            "non_finite", f"field {name!r} overflows a float: {short_repr(raw)}"
        ) from None
    if not math.isfinite(value):
        raise _Reject("non_finite", f"field {name!r} is not finite: {short_repr(raw)}")
    return value


def _timestamp(obj: dict[str, Any]) -> float:
    if "ts" not in obj:
        raise _Reject("missing_field", "missing field 'ts'")
    raw = obj["ts"]
    if isinstance(raw, str):
        try:
            moment = datetime.fromisoformat(raw.strip())
        except ValueError:
            raise _Reject(
                "wrong_type", f"field 'ts' must be epoch seconds or ISO-8601, got {short_repr(raw)}"
            ) from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return moment.timestamp()
    return _number(obj, "ts")


class TickDecoder:
    """Decode and validate raw Kafka records into :class:`Tick` or :class:`DeadLetter`.

    Parameters
    ----------
    settings
        Uses ``tick_kind``, ``event_fields``, ``key_field``, ``max_record_bytes`` and
        ``max_key_bytes``.
    """

    def __init__(self, settings: Settings) -> None:
        self.tick_kind = settings.tick_kind
        self.event_fields = tuple(settings.event_fields)
        self.key_field = settings.key_field
        self.max_record_bytes = settings.max_record_bytes
        self.max_key_bytes = settings.max_key_bytes

    def decode(
        self, key: bytes | None, value: bytes | None, topic: str, partition: int, offset: int
    ) -> Tick | DeadLetter:
        """Return the tick, or a dead letter naming why the record cannot be used."""
        try:
            # The record key first, whether or not it is the instrument key: it travels in
            # the dead letter, and a record must stay small enough to be dead-lettered.
            if key is not None and len(key) > self.max_key_bytes:
                raise _Reject("oversized_key", self._key_size_detail(len(key)))
            obj = self._parse(value)
        except _Reject as exc:
            return DeadLetter(key, value, exc.reason, exc.detail, topic, partition, offset)
        return self.decode_parsed(key, obj, topic, partition, offset, value)

    def decode_parsed(
        self,
        key: bytes | None,
        obj: dict[str, Any],
        topic: str,
        partition: int,
        offset: int,
        value: bytes | None = None,
    ) -> Tick | DeadLetter:
        """:meth:`decode` for a value already parsed from JSON into ``obj``.

        ``value`` is the record's bytes when known; a dead letter carries it (else None).
        """
        try:
            tick_key = self._key(key, obj)
            ts = _timestamp(obj)
            fields = self._fields(obj)
        except _Reject as exc:
            return DeadLetter(key, value, exc.reason, exc.detail, topic, partition, offset)
        return Tick(tick_key, ts, fields, topic, partition, offset)

    def _parse(self, value: bytes | None) -> dict[str, Any]:
        if value is None:
            raise _Reject("invalid_json", "record has no value")
        # Size first: an oversized record is never parsed, whatever it contains.
        if len(value) > self.max_record_bytes:
            raise _Reject(
                "oversized", f"value is {len(value)} bytes, limit is {self.max_record_bytes}"
            )
        try:
            obj = _JSON_DECODER.decode(bytes(value).decode("utf-8"))
        except UnicodeDecodeError as exc:
            raise _Reject("invalid_json", f"value is not UTF-8: {exc.reason}") from None
        except json.JSONDecodeError as exc:
            raise _Reject("invalid_json", f"invalid JSON: {exc}") from None
        except ValueError as exc:
            # Valid JSON Python will not read, e.g. an integer literal of more than 4,300
            # digits (sys.get_int_max_str_digits()).
            raise _Reject("invalid_json", f"JSON this decoder cannot read: {exc}") from None
        except RecursionError:
            raise _Reject("invalid_json", "JSON nested too deeply") from None
        if not isinstance(obj, dict):
            raise _Reject("not_an_object", f"JSON value is a {type(obj).__name__}, not an object")
        return obj

    def _key(self, key: bytes | None, obj: dict[str, Any]) -> str:
        if self.key_field is not None:
            if self.key_field not in obj:
                raise _Reject("missing_field", f"missing key field {self.key_field!r}")
            text = obj[self.key_field]
            if not isinstance(text, str):
                detail = f"key field {self.key_field!r} must be a string, got {short_repr(text)}"
                raise _Reject("wrong_type", detail)
            try:
                size = len(text.encode("utf-8"))
            except UnicodeEncodeError:
                # JSON's \ud800 escapes give lone surrogates, which no output can carry.
                detail = f"key field {self.key_field!r} is not valid Unicode: {short_repr(text)}"
                raise _Reject("wrong_type", detail) from None
            if size > self.max_key_bytes:
                raise _Reject("oversized_key", self._key_size_detail(size))
        else:
            if not key:
                raise _Reject("empty_key", "record has no key")
            if len(key) > self.max_key_bytes:
                raise _Reject("oversized_key", self._key_size_detail(len(key)))
            try:
                text = bytes(key).decode("utf-8")
            except UnicodeDecodeError:
                raise _Reject("wrong_type", "record key is not UTF-8") from None
        if not text.strip():
            raise _Reject("empty_key", f"key is empty or blank: {short_repr(text)}")
        return text

    def _key_size_detail(self, size: int) -> str:
        return f"key is {size} bytes, limit is {self.max_key_bytes} ([input] max_key_bytes)"

    def _fields(self, obj: dict[str, Any]) -> dict[str, float]:
        if self.tick_kind == "event":
            fields = {}
            for name in self.event_fields:
                if name not in obj:
                    raise _Reject("missing_field", f"missing field {name!r}")
                fields[name] = _number(obj, name)
            return fields
        if "price" not in obj:
            raise _Reject("missing_field", "missing field 'price'")
        price = _number(obj, "price")
        if price <= 0.0:
            raise _Reject("non_positive_price", f"price must be > 0, got {short_repr(price)}")
        # volume is optional; JSON null counts as absent.
        if obj.get("volume") is None:
            return {"price": price}
        volume = _number(obj, "volume")
        if volume < 0.0:
            raise _Reject("negative_volume", f"volume must be >= 0, got {short_repr(volume)}")
        return {"price": price, "volume": volume}


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


def dead_letter_headers(dl: DeadLetter) -> list[tuple[str, bytes]]:
    """Kafka headers naming why and where from: reason, detail, source topic/partition/offset."""
    detail = dl.detail if len(dl.detail) <= _MAX_DETAIL_CHARS else dl.detail[:_MAX_DETAIL_CHARS]
    return [
        (HEADER_REASON, dl.reason.encode("utf-8")),
        (HEADER_DETAIL, detail.encode("utf-8", "replace")),
        (HEADER_TOPIC, dl.topic.encode("utf-8")),
        (HEADER_PARTITION, str(dl.partition).encode("ascii")),
        (HEADER_OFFSET, str(dl.offset).encode("ascii")),
    ]


def refused_copy(
    key: bytes | None,
    value: bytes | None,
    headers: list[tuple[str, bytes]] | None,
    error: str,
) -> tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]:
    """A dead letter that fits, for a record the broker refused for good.

    The sinks (:mod:`streamgmm.service.kafka_io`, :mod:`streamgmm.service.sink`) send this
    copy to the dead-letter topic when a record is too large to produce or the broker calls it
    invalid, instead of retrying a record no retry can deliver.

    Parameters
    ----------
    key, value, headers
        The refused record. A dead letter keeps its reason and source headers; any other
        record (an output record) becomes a dead letter with reason ``unproducible`` and the
        source topic, partition and offset its JSON value names.
    error
        What the producer or the broker said.

    Returns
    -------
    tuple
        ``(key, value, headers)`` of the copy: at most :data:`TRUNCATED_KEY_BYTES` of the key
        and :data:`TRUNCATED_VALUE_BYTES` of the value, with headers saying whether it was
        truncated (``streamgmm.truncated``: ``true`` or ``false``), the original sizes
        (``streamgmm.original.key_bytes`` / ``value_bytes``, -1 for none) and the error
        (``streamgmm.refused``).
    """
    kept = [(name, v) for name, v in headers or () if name not in _COPY_HEADERS]
    if not any(name == HEADER_REASON for name, _v in kept):
        topic, partition, offset = _source_of(value)
        kept = dead_letter_headers(
            DeadLetter(None, None, "unproducible", f"refused: {error}", topic, partition, offset)
        )
    key_size = -1 if key is None else len(key)
    value_size = -1 if value is None else len(value)
    truncated = key_size > TRUNCATED_KEY_BYTES or value_size > TRUNCATED_VALUE_BYTES
    return (
        None if key is None else bytes(key[:TRUNCATED_KEY_BYTES]),
        None if value is None else bytes(value[:TRUNCATED_VALUE_BYTES]),
        [
            *kept,
            (HEADER_TRUNCATED, b"true" if truncated else b"false"),
            (HEADER_KEY_BYTES, str(key_size).encode("ascii")),
            (HEADER_VALUE_BYTES, str(value_size).encode("ascii")),
            (HEADER_REFUSED, error[:_MAX_DETAIL_CHARS].encode("utf-8", "replace")),
        ],
    )


def _source_of(value: bytes | None) -> tuple[str, int, int]:
    """The source topic, partition and offset an output record names (see streamgmm.output)."""
    try:
        obj = json.loads(value) if value is not None else None
    except (ValueError, RecursionError):
        obj = None
    if not isinstance(obj, dict):
        return "", -1, -1
    topic, partition, offset = obj.get("topic"), obj.get("partition"), obj.get("offset")
    return (
        topic if isinstance(topic, str) else "",
        partition if type(partition) is int else -1,
        offset if type(offset) is int else -1,
    )


def group_by_key(
    decoded: Iterable[tuple[Tick | DeadLetter, bytes | None]],
) -> tuple[dict[str, list[tuple[Tick, bytes | None]]], list[DeadLetter]]:
    """Group decoded records of one partition, in offset order, by key.

    ``decoded`` holds each record's :meth:`TickDecoder.decode` result with its value bytes.
    Returns the ticks per key with their bytes (for a later dead letter), in offset order,
    and the dead letters.
    """
    by_key: dict[str, list[tuple[Tick, bytes | None]]] = {}
    dead: list[DeadLetter] = []
    for result, value in decoded:
        if type(result) is DeadLetter:
            dead.append(result)
            continue
        tick: Tick = result  # type: ignore[assignment]
        group = by_key.get(tick.key)
        if group is None:
            by_key[tick.key] = [(tick, value)]
        else:
            group.append((tick, value))
    return by_key, dead


def encode_key(key: str) -> bytes:
    """Kafka key bytes for an instrument key."""
    return key.encode("utf-8")


def decode_key(b: bytes) -> str:
    """Instrument key from Kafka key bytes (UTF-8)."""
    return bytes(b).decode("utf-8")
