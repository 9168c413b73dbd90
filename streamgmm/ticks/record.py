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

Fields made for people
----------------------
Two fields are derived when the record is written, for a person reading it: ``time``, the
tick's ``ts`` as ISO-8601 UTC (``"2024-01-02T14:30:00Z"``, with a fraction of a second only
when ``ts`` has one; ``null`` outside the years 1 to 9999), right after ``ts``; and
``regime_name``, the name of ``regime`` (``[output] regime_names``; by default
:func:`~streamgmm.regime.output.default_regime_names`: ``calm``/``turbulent`` for two regimes,
``calm``/``normal``/``turbulent`` for three), right after ``regime``.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping, Sequence
from datetime import date, timedelta
from typing import Any

from streamgmm.regime.output import KINDS, OUTPUT_FIELDS, Field, default_regime_names

__all__ = [
    "DERIVED_FIELDS",
    "RECORD_FIELDS",
    "RECORD_KEYS",
    "RECORD_KINDS",
    "SOURCE_FIELDS",
    "fields_table",
    "finite_or_none",
    "iso_time",
    "json_value",
    "regime_name",
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


#: JSON type of each kind of record field, as the docs state it: the detector's kinds and
#: the derived fields' own.
RECORD_KINDS: dict[str, str] = {
    **KINDS,
    "time": "string (ISO-8601 UTC)",
    "regime_name": "string",
}

#: Fields derived when the record is written, each placed right after the field it is made of.
DERIVED_FIELDS: dict[str, Field] = {
    "ts": Field(
        "time",
        "time",
        "`ts` as ISO-8601 UTC, for example `2024-01-02T14:30:00Z` (a fraction of a second "
        "only when `ts` has one)",
        nullable=True,
    ),
    "regime": Field(
        "regime_name",
        "regime_name",
        "the name of `regime` (`[output] regime_names`; by default calm, turbulent for two "
        "regimes and calm, normal, turbulent for three)",
    ),
}


def _with_derived(fields: tuple[Field, ...]) -> tuple[Field, ...]:
    out: list[Field] = []
    for field in fields:
        out.append(field)
        if field.name in DERIVED_FIELDS:
            out.append(DERIVED_FIELDS[field.name])
    return tuple(out)


#: Every field of a written record: the source, then the detector's output, each derived
#: field right after the one it is made of.
RECORD_FIELDS: tuple[Field, ...] = _with_derived(SOURCE_FIELDS + OUTPUT_FIELDS)
#: The keys of a written record, in order.
RECORD_KEYS: tuple[str, ...] = tuple(field.name for field in RECORD_FIELDS)


def finite_or_none(value: object) -> float | None:
    """A number as the record writes it: a float, or None when it is not finite."""
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


_EPOCH_DAY = date(1970, 1, 1)
#: ``THH:MM:`` of each minute of a day, and ``SS`` of each second of a minute: a time of day is
#: two lookups (formatting it field by field took about three times as long).
_MINUTES = tuple(f"T{h:02d}:{m:02d}:" for h in range(24) for m in range(60))
_SECONDS = tuple(f"{s:02d}" for s in range(60))


@functools.lru_cache(maxsize=4096)
def _day_text(day: int) -> str | None:
    """Day ``day`` since 1970-01-01 as ``YYYY-MM-DD``, or None outside the years 1 to 9999."""
    try:
        return (_EPOCH_DAY + timedelta(days=day)).isoformat()
    except OverflowError:
        return None


def iso_time(ts: float) -> str | None:
    """``ts`` (epoch seconds) as ISO-8601 UTC text, or None when it is not a date in 1..9999.

    Whole seconds are written without a fraction; otherwise the microseconds (rounded), with
    trailing zeros dropped.

    Examples
    --------
    >>> iso_time(1704205800.0), iso_time(1704205800.25)
    ('2024-01-02T14:30:00Z', '2024-01-02T14:30:00.25Z')
    """
    if ts - ts != 0.0:  # NaN or infinite
        return None
    whole = math.floor(ts)
    micro = round((ts - whole) * 1e6)
    if micro == 1_000_000:
        whole, micro = whole + 1, 0
    day, second = divmod(whole, 86400)
    text = _day_text(day)
    if text is None:
        return None
    minute, second = divmod(second, 60)
    if micro:
        return f"{text}{_MINUTES[minute]}{_SECONDS[second]}.{micro:06d}".rstrip("0") + "Z"
    return f"{text}{_MINUTES[minute]}{_SECONDS[second]}Z"


@functools.cache
def _names_for(n_regimes: int) -> tuple[str, ...]:
    return default_regime_names(n_regimes)


def regime_name(regime: object, names: Sequence[str] | None, n_regimes: int) -> str:
    """The name of regime id ``regime``: ``names[regime]``, by default the default names of
    ``n_regimes`` regimes; the id in decimal if there is no name for it."""
    if names is None:
        names = _names_for(n_regimes)
    r = int(regime)  # type: ignore[call-overload]
    return names[r] if 0 <= r < len(names) else str(r)


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
    "time": iso_time,
    "regime_name": _string,
}


def json_value(field: Field, value: object) -> object:
    """``value`` converted to the plain JSON-safe Python value ``field`` holds in a record
    (for a derived field, ``value`` is what it is made of: ``ts``, or the regime's name)."""
    return _CONVERT[field.kind](value)


def fields_table() -> str:
    """The record's fields as a Markdown table (docs/service.md holds exactly this)."""
    lines = ["| field | JSON type | meaning |", "|-------|-----------|---------|"]
    for field in RECORD_FIELDS:
        kind = RECORD_KINDS[field.kind] + (" or `null`" if field.nullable else "")
        lines.append(f"| `{field.name}` | {kind} | {field.doc} |")
    return "\n".join(lines) + "\n"
