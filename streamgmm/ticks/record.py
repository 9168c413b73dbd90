"""The output record, defined once: its fields, their JSON types and how values are written.

Owns the schema of the record the service and ``streamgmm replay`` write for each tick
(:data:`RECORD_FIELDS`: where the tick came from, then the detector's output fields,
:data:`~streamgmm.regime.output.OUTPUT_FIELDS`, which the detectors define in
:mod:`streamgmm.regime.output`). The encoders (:mod:`streamgmm.ticks.encode`) and the field
table in docs/service.md derive from the tables here, so a record field is added, renamed or
retyped in this module only, and a detector's field in :mod:`streamgmm.regime.output`.

Pure: no I/O, no model maths.

Types and rounding
------------------
Each field has one JSON type (:data:`KINDS`). Numbers are never rounded: a float is written as
the shortest decimal that reads back as the same double (Python's ``repr``), so a consumer gets
the model's floats bit for bit. A number that is not finite (JSON has no NaN or infinity) is
written as ``null``. Regime probabilities are JSON objects whose keys are the regime ids as
decimal strings (``"0"``, ``"1"``, ...), since JSON object keys are strings.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

from streamgmm.regime.output import KINDS, OUTPUT_FIELDS, Field

__all__ = [
    "RECORD_FIELDS",
    "RECORD_KEYS",
    "SOURCE_FIELDS",
    "fields_table",
    "finite_or_none",
    "json_value",
    "regime_probabilities",
]

#: Where the tick came from: attributes of :class:`streamgmm.ticks.tick.Tick`.
SOURCE_FIELDS: tuple[Field, ...] = (
    Field("key", "string", "instrument (the record key, or `[input] key_field`)"),
    Field("ts", "number", "tick timestamp, epoch seconds"),
    Field("topic", "string", "topic the tick came from (`replay`: the file name)"),
    Field("partition", "integer", "its partition (`replay`: -1)"),
    Field("offset", "integer", "its offset (`replay`: the 0-based row)"),
)


#: Every field of a written record: the source, then the detector's output.
RECORD_FIELDS: tuple[Field, ...] = SOURCE_FIELDS + OUTPUT_FIELDS
#: The keys of a written record, in order.
RECORD_KEYS: tuple[str, ...] = tuple(field.name for field in RECORD_FIELDS)


def finite_or_none(value: object) -> float | None:
    """A number as the record writes it: a float, or None when it is not finite (or None:
    no value, such as no forecast)."""
    if value is None:
        return None
    number = float(value)  # type: ignore[arg-type]
    return number if math.isfinite(number) else None


# Regime ids as JSON object keys, built once: a per-tick str(int(...)) per regime is measurable.
_REGIME_KEYS = tuple(str(r) for r in range(16))


def regime_probabilities(probabilities: Mapping[Any, Any]) -> dict[str, float | None]:
    """A probabilities mapping as the record holds it: decimal-string ids, finite or None."""
    out: dict[str, float | None] = {}
    for regime, p in probabilities.items():
        key = (
            _REGIME_KEYS[regime]
            if type(regime) is int and 0 <= regime < len(_REGIME_KEYS)
            else str(int(regime))
        )
        # A finite float is already what finite_or_none returns (x - x is NaN for inf, NaN).
        out[key] = p if type(p) is float and p - p == 0.0 else finite_or_none(p)
    return out


def _boolean(value: object) -> bool:
    return bool(value)


def _integer(value: object) -> int:
    return int(value)  # type: ignore[call-overload, no-any-return]


def _string(value: object) -> str:
    return str(value)


_CONVERT: dict[str, Callable[[Any], object]] = {
    "string": _string,
    "number": finite_or_none,
    "integer": _integer,
    "boolean": _boolean,
    "probabilities": regime_probabilities,
}


def json_value(field: Field, value: object) -> object:
    """``value`` converted to the plain JSON-safe Python value ``field`` holds in a record."""
    return _CONVERT[field.kind](value)


def fields_table() -> str:
    """The record's fields as a Markdown table (docs/service.md holds exactly this)."""
    lines = ["| field | JSON type | meaning |", "|-------|-----------|---------|"]
    for field in RECORD_FIELDS:
        kind = KINDS[field.kind] + (" or `null`" if field.nullable else "")
        lines.append(f"| `{field.name}` | {kind} | {field.doc} |")
    return "\n".join(lines) + "\n"
