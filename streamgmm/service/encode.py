"""Encode: a processed tick and its detector output become the output record's JSON bytes.

Owns the writing of output records, for the service and ``streamgmm replay`` alike. What a
record holds (field names, JSON types, the null and no-rounding rules) is not decided here but
in :mod:`streamgmm.output`; both encoders below are derived from its :data:`RECORD_FIELDS`:

- :func:`build_output_record` builds the record as a plain dict, field by field, and
  :func:`encode_output` writes any such dict as compact JSON (the general path);
- :func:`encode_output_record` writes the same bytes in one f-string, about a third faster,
  which matters at one call per tick. Its source is generated from the schema when this
  module is imported (kept in :data:`ENCODER_SOURCE`); a test holds it byte-equal to the
  general path.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from streamgmm.output import (
    RECORD_FIELDS,
    SOURCE_FIELDS,
    finite_or_none,
    json_value,
    regime_probabilities,
)
from streamgmm.service.decode import Tick

__all__ = ["ENCODER_SOURCE", "build_output_record", "encode_output", "encode_output_record"]

_SOURCE_NAMES = frozenset(field.name for field in SOURCE_FIELDS)


def build_output_record(tick: Tick, out: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON-safe output record of one processed tick, as a dict.

    Parameters
    ----------
    tick
        The decoded tick (gives the source fields: key, ts, topic, partition, offset).
    out
        The detector's output for it (``learn_predict_one``'s result).

    Returns
    -------
    dict
        The keys of :data:`streamgmm.output.RECORD_KEYS`, with plain JSON-safe values.
    """
    return {
        field.name: json_value(
            field, getattr(tick, field.name) if field.name in _SOURCE_NAMES else out[field.name]
        )
        for field in RECORD_FIELDS
    }


_OUTPUT_JSON = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)
# The C encoder json.dumps builds internally, with the same arguments. json.dumps constructs a
# JSONEncoder and re-derives these on every call, a sizeable share of the cost of one output
# record; building only the C encoder per call keeps a fresh circular-reference table.
_c_make_encoder: Any = json.encoder.c_make_encoder  # type: ignore[attr-defined]
# JSON string literal of a str, as json.dumps(..., ensure_ascii=False) writes it (C version).
_json_string = json.encoder.encode_basestring


def encode_output(record: dict[str, Any]) -> bytes:
    """Compact UTF-8 JSON for an output record; non-finite floats are refused, not emitted."""
    if _c_make_encoder is None or type(record) is not dict:
        return _OUTPUT_JSON.encode(record).encode("utf-8")
    # Arguments: markers, default, string encoder, indent, key and item separators,
    # sort_keys, skipkeys, allow_nan.
    encoder = _c_make_encoder(
        {}, _OUTPUT_JSON.default, _json_string, None, ":", ",", False, False, False
    )
    return "".join(encoder(record, 0)).encode("utf-8")


# --------------------------------------------------------------------------- the fast path
# One writer per JSON kind of streamgmm.output.KINDS, each giving the exact text json.dumps
# gives for the value json_value() makes of it.


def _json_number(value: object) -> str:
    # json writes a finite float as float.__repr__; x - x is 0.0 only for finite floats.
    if type(value) is float and value - value == 0.0:
        return repr(value)
    number = finite_or_none(value)
    return "null" if number is None else repr(number)


def _json_probabilities(probabilities: Mapping[Any, Any]) -> str:
    if len(probabilities) == 2:
        # The usual record: regimes 0 and 1 with finite float probabilities.
        (r0, p0), (r1, p1) = probabilities.items()
        if (
            r0 == 0 and r1 == 1
            and type(p0) is float and p0 - p0 == 0.0
            and type(p1) is float and p1 - p1 == 0.0
        ):  # fmt: skip
            return f'{{"0":{p0!r},"1":{p1!r}}}'
    # Otherwise the record's own mapping; the keys are decimal digits, which need no escaping.
    items = regime_probabilities(probabilities).items()
    return "{" + ",".join(f'"{k}":{"null" if p is None else repr(p)}' for k, p in items) + "}"


# Each kind's text as an f-string replacement field around the value's expression.
_WRITERS = {
    "string": "{_json_string(%s)}",
    "number": "{_json_number(%s)}",
    "integer": "{int(%s)}",
    "boolean": '{"true" if %s else "false"}',
    "probabilities": "{_json_probabilities(%s)}",
}


def _encoder_source() -> str:
    parts = []
    for field in RECORD_FIELDS:
        value = f"tick.{field.name}" if field.name in _SOURCE_NAMES else f'out["{field.name}"]'
        parts.append(f'"{field.name}":' + _WRITERS[field.kind] % value)
    # {{ and }} are the record's own braces inside the f-string.
    template = "{{" + ",".join(parts) + "}}"
    return f"def encode_output_record(tick, out):\n    return f'{template}'.encode()\n"


#: Source of :func:`encode_output_record`, generated from :data:`RECORD_FIELDS`.
ENCODER_SOURCE = _encoder_source()


def _compile_encoder() -> Callable[[Tick, Mapping[str, Any]], bytes]:
    namespace: dict[str, Any] = {
        "_json_string": _json_string,
        "_json_number": _json_number,
        "_json_probabilities": _json_probabilities,
    }
    exec(compile(ENCODER_SOURCE, f"<{__name__} encoder>", "exec"), namespace)
    encoder: Callable[[Tick, Mapping[str, Any]], bytes] = namespace["encode_output_record"]
    encoder.__doc__ = (
        "The output record as UTF-8 JSON, without building it as a dict first.\n\n"
        "Byte for byte ``encode_output(build_output_record(tick, out))``."
    )
    encoder.__module__ = __name__
    return encoder


encode_output_record = _compile_encoder()
