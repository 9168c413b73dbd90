"""The output record, defined once: its fields, their JSON types and how values are written.

Owns the schema of what a detector returns per tick (:data:`OUTPUT_FIELDS`, built by
:func:`make_output`) and of the record the service and ``streamgmm replay`` write for it
(:data:`RECORD_FIELDS`: where the tick came from, then the detector's fields). The detectors,
the encoder (:mod:`streamgmm.service.encode`) and the field table in docs/service.md all derive
from the tables here, so a field is added, renamed or retyped in this module only.

Pure: no I/O, no model maths, no imports from the rest of the package.

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
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

__all__ = [
    "KINDS",
    "OUTPUT_FIELDS",
    "OUTPUT_KEYS",
    "RECORD_FIELDS",
    "RECORD_KEYS",
    "SOURCE_FIELDS",
    "Field",
    "OutputBlock",
    "fields_table",
    "finite_or_none",
    "json_value",
    "make_output",
    "make_output_columns",
    "output_rows",
    "regime_probabilities",
    "take_columns",
]

#: JSON type of each kind of field, as the docs state it.
KINDS: dict[str, str] = {
    "string": "string",
    "number": "number",
    "integer": "integer",
    "boolean": "boolean",
    "probabilities": 'object: regime id ("0", "1", ...) → number',
}


@dataclass(frozen=True)
class Field:
    """One field of the output record.

    Parameters
    ----------
    name
        The JSON key (and, for a detector field, the key of the detector's output dict).
    kind
        One of :data:`KINDS`.
    doc
        What the field means (the docs' field table).
    nullable
        Whether the value can be ``null`` (a number that can be non-finite).
    """

    name: str
    kind: str
    doc: str
    nullable: bool = False


#: Where the tick came from: attributes of :class:`streamgmm.service.decode.Tick`.
SOURCE_FIELDS: tuple[Field, ...] = (
    Field("key", "string", "instrument (the record key, or `[input] key_field`)"),
    Field("ts", "number", "tick timestamp, epoch seconds"),
    Field("topic", "string", "topic the tick came from (`replay`: the file name)"),
    Field("partition", "integer", "its partition (`replay`: -1)"),
    Field("offset", "integer", "its offset (`replay`: the 0-based row)"),
)

#: What a detector returns per tick (``learn_predict_one``), in this order.
OUTPUT_FIELDS: tuple[Field, ...] = (
    Field(
        "regime",
        "integer",
        "most probable regime after filtering; regimes are ordered by volatility (0 = calmest)",
    ),
    Field("probabilities", "probabilities", "filtered regime probabilities", nullable=True),
    Field(
        "raw_probabilities",
        "probabilities",
        "the mixture's unfiltered responsibilities for this tick",
        nullable=True,
    ),
    Field(
        "log_likelihood",
        "number",
        "log density of the tick under the key's model",
        nullable=True,
    ),
    Field("drift_score", "number", "the likelihood-drift monitor's score", nullable=True),
    Field("drift_detected", "boolean", "the likelihood-drift monitor's alarm"),
    Field(
        "n_samples_seen", "integer", "ticks applied to this key's model, ever (survives restarts)"
    ),
    Field(
        "warm",
        "boolean",
        "false until the key's model has finished its warm-up: before then `regime` and the "
        "probabilities are placeholders",
    ),
)

#: Every field of a written record: the source, then the detector's output.
RECORD_FIELDS: tuple[Field, ...] = SOURCE_FIELDS + OUTPUT_FIELDS
#: The keys of a detector's output dict, in order.
OUTPUT_KEYS: tuple[str, ...] = tuple(field.name for field in OUTPUT_FIELDS)
#: The keys of a written record, in order.
RECORD_KEYS: tuple[str, ...] = tuple(field.name for field in RECORD_FIELDS)


def make_output(
    regime: int,
    probabilities: dict[int, float],
    raw_probabilities: dict[int, float],
    log_likelihood: float,
    drift_score: float,
    drift_detected: bool,
    n_samples_seen: int,
    warm: bool,
) -> dict[str, Any]:
    """A detector's output for one tick: a dict with exactly :data:`OUTPUT_KEYS`, in order.

    The one place a detector builds its output. Values are taken as they are (the detector
    passes plain ints, floats and bools; the encoder applies the JSON rules).

    Examples
    --------
    >>> out = make_output(1, {0: 0.25, 1: 0.75}, {0: 0.5, 1: 0.5}, -1.5, 0.0, False, 300, True)
    >>> tuple(out) == OUTPUT_KEYS
    True
    """
    return {
        "regime": regime,
        "probabilities": probabilities,
        "raw_probabilities": raw_probabilities,
        "log_likelihood": log_likelihood,
        "drift_score": drift_score,
        "drift_detected": drift_detected,
        "n_samples_seen": n_samples_seen,
        "warm": warm,
    }


def make_output_columns(
    regime: Sequence[int],
    probabilities: Sequence[Sequence[float]],
    raw_probabilities: Sequence[Sequence[float]],
    log_likelihood: Sequence[float],
    drift_score: Sequence[float],
    drift_detected: Sequence[bool],
    n_samples_seen: Sequence[int],
    warm: Sequence[bool],
) -> dict[str, Any]:
    """Outputs of a run of ticks in column form: :data:`OUTPUT_KEYS`, a column per field.

    Each column has one entry per tick, in tick order. A ``probabilities`` field is the
    sequence of per-regime columns (regime ``r``'s column at index ``r``), so the record's
    ``{"0": p0, "1": p1}`` of tick ``j`` is ``{r: column[j] for r, column in
    enumerate(probabilities)}``. Values are taken as they are, as in :func:`make_output`, of
    which this is the column form: :func:`output_rows` turns one into the other.

    Examples
    --------
    >>> cols = make_output_columns(
    ...     [0, 1], ([0.75, 0.25], [0.25, 0.75]), ([0.5, 0.5], [0.5, 0.5]),
    ...     [-1.0, -2.0], [0.0, 0.1], [False, False], [300, 301], [True, True],
    ... )  # fmt: skip
    >>> output_rows(cols)[1] == make_output(
    ...     1, {0: 0.25, 1: 0.75}, {0: 0.5, 1: 0.5}, -2.0, 0.1, False, 301, True
    ... )
    True
    """
    columns = (regime, probabilities, raw_probabilities, log_likelihood, drift_score,
               drift_detected, n_samples_seen, warm)  # fmt: skip
    return dict(zip(OUTPUT_KEYS, columns, strict=True))


def output_rows(columns: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The per-tick outputs (:func:`make_output` dicts) of outputs in column form."""
    n = len(columns["regime"])
    per_field = []
    for f in OUTPUT_FIELDS:
        column = columns[f.name]
        if f.kind == "probabilities":
            column = (
                [dict(enumerate(values)) for values in zip(*column, strict=True)]
                if len(column)
                else [{} for _ in range(n)]
            )
        per_field.append(column)
    return [make_output(*row) for row in zip(*per_field, strict=True)]


def take_columns(columns: Mapping[str, Any], positions: Sequence[int]) -> dict[str, Any]:
    """Outputs in column form, of the ticks at ``positions`` only."""
    taken: dict[str, Any] = {}
    for f in OUTPUT_FIELDS:
        column = columns[f.name]
        if f.kind == "probabilities":
            taken[f.name] = [[c[j] for j in positions] for c in column]
        else:
            taken[f.name] = [column[j] for j in positions]
    return taken


class OutputBlock(NamedTuple):
    """What a detector's ``learn_predict_block`` returns for a run of ticks.

    Attributes
    ----------
    applied
        Positions (in the run) of the ticks the detector applied, in order.
    columns
        Their outputs in column form (:func:`make_output_columns`), one entry per applied tick.
    refused
        ``(position, ValueError)`` of each tick refused (it left the state unchanged).
    """

    applied: list[int]
    columns: dict[str, Any]
    refused: list[tuple[int, ValueError]]


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
