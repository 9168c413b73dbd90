"""The dead-letter topic's records: a :class:`~streamgmm.ticks.tick.DeadLetter` as Kafka
headers, and the copy that fits, for a record the broker refused for good.

A dead letter keeps its original key and value bytes; the headers say why
(``streamgmm.reason``, one of :data:`~streamgmm.ticks.tick.REASONS`; ``streamgmm.detail``) and
where from (``streamgmm.source.topic|partition|offset``).
"""

from __future__ import annotations

import json

from streamgmm.ticks.tick import DeadLetter

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
    "TRUNCATED_KEY_BYTES",
    "TRUNCATED_VALUE_BYTES",
    "dead_letter_headers",
    "refused_copy",
]

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

    The sinks (:mod:`streamgmm.service.kafka`, :mod:`streamgmm.service.sink`) send this
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
    """The source topic, partition and offset an output record names (ticks.record)."""
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
