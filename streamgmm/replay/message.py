"""A row of a file as the Kafka message ``streamgmm produce`` sends for it, and what the
decoder would make of that message without writing it.

:func:`row_message` is the message: key from the key column, value the row as compact JSON.
A replay validates a row as the object that message parses to (:func:`as_parsed_json` says
when it may), and bounds the message's size without writing it (:data:`MAX_BYTES_PER_CHAR`,
:data:`MAX_FLOAT_BYTES`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from streamgmm.replay.files import KEY_COLUMN
from streamgmm.ticks.decode import TickDecoder
from streamgmm.ticks.tick import encode_key

__all__ = ["MAX_BYTES_PER_CHAR", "MAX_FLOAT_BYTES", "as_parsed_json", "row_message"]

#: Most UTF-8 bytes json.dumps(ensure_ascii=False) writes for one character of a string
#: (a control character becomes \uXXXX), and for one float (its shortest repr).
MAX_BYTES_PER_CHAR = 6
MAX_FLOAT_BYTES = 24
# json.dumps(row, separators=(",", ":"), ensure_ascii=False, default=str), built once.
_ROW_JSON = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, default=str)


def row_message(
    row: Mapping[str, object], key_column: str = KEY_COLUMN
) -> tuple[bytes | None, bytes]:
    """The Kafka ``(key, value)`` for a row: key from ``key_column``, value the row as JSON.

    Non-finite numbers are written as JSON's NaN/Infinity extensions on purpose, so the
    service's decoder rejects them (reason ``non_finite``) instead of the row vanishing.
    """
    key = row.get(key_column)
    key_bytes = encode_key(key) if isinstance(key, str) else None
    plain = row if type(row) is dict else dict(row)
    return key_bytes, _ROW_JSON.encode(plain).encode("utf-8")


def as_parsed_json(row: dict[str, object], decoder: TickDecoder) -> str | None:
    """Whether the row can be validated as the object its JSON message parses to.

    The message (:func:`row_message`) parses back to the row itself when the row holds only
    str, float, int and bool values, and ``decoder`` would then refuse it for two reasons of
    its own: a message over its size limit (:meth:`TickDecoder.record_fits`), and a ``NaN``,
    ``Infinity`` or ``-Infinity`` literal (the first one in the row's order). Returns None when
    the row needs the message itself (other values, or possibly over the limit), else the
    literal JSON's parser would meet first, or ``""`` for a row that is fine as it is.
    """
    size = 2
    literal = ""
    for name, v in row.items():
        size += MAX_BYTES_PER_CHAR * len(name) + 4  # quotes, colon, comma
        kind = type(v)
        if kind is float:
            size += MAX_FLOAT_BYTES
            if not literal and v - v != 0.0:  # type: ignore[operator]
                literal = "NaN" if v != v else ("Infinity" if v > 0 else "-Infinity")  # type: ignore[operator]
        elif kind is str:
            size += MAX_BYTES_PER_CHAR * len(v) + 2  # type: ignore[arg-type]
        elif kind is int or kind is bool:
            size += len(repr(v))
        else:
            return None  # dates, lists, ...: as JSON they may parse to something else
    return literal if decoder.record_fits(size) else None
