"""What a detector returns per tick: the output schema, defined once.

:data:`OUTPUT_FIELDS` names each field of a detector's output, its JSON type and its meaning;
:func:`make_output` builds the output of one tick and :func:`make_output_columns` the outputs of
a run of ticks in column form (:class:`OutputBlock`, what ``learn_predict_block`` returns). The
detectors build their outputs only through these (:mod:`streamgmm.regime.base`), and the output
record the service and ``streamgmm replay`` write is the tick's source followed by these fields
(:mod:`streamgmm.output`), so a field is added, renamed or retyped here only.

Pure: no I/O, no model maths, no imports from the rest of the package.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

__all__ = [
    "KINDS",
    "NAN_IS_NONE",
    "OUTPUT_FIELDS",
    "OUTPUT_KEYS",
    "Column",
    "Field",
    "OutputBlock",
    "default_regime_names",
    "make_output",
    "make_output_columns",
    "output_rows",
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
        "market ticks: the regime probabilities from this tick's volatility level alone, "
        "before the filter's memory; events: the mixture's unfiltered responsibilities",
        nullable=True,
    ),
    Field(
        "log_likelihood",
        "number",
        "market ticks: natural log of the predictive density of this tick's log return "
        "`log(p_t / p_{t-1})` given all earlier ticks (per unit of log return); events: log "
        "density of the event's fields under the model; null where no forecast was made "
        "(warm-up, skipped ticks)",
        nullable=True,
    ),
    Field(
        "drift_score",
        "number",
        "the drift monitor's score, scaled so that its alarm fires above 1 (market ticks: the "
        "CUSUM of the forecast's probability integral transform over its threshold; events: "
        "the Page-Hinkley statistic over `detector.drift_threshold`); it starts over after an "
        "alarm",
        nullable=True,
    ),
    Field(
        "drift_detected",
        "boolean",
        "the drift monitor's alarm, raised when `drift_score` goes above 1",
    ),
    Field(
        "n_samples_seen", "integer", "ticks applied to this key's model, ever (survives restarts)"
    ),
    Field(
        "warm",
        "boolean",
        "false until the key's model has finished its warm-up: before then `regime` and the "
        "probabilities are placeholders",
    ),
    Field(
        "volatility",
        "number",
        "market ticks: predictive standard deviation of the next tick's log return, one time "
        "unit ahead (natural log-return units, e.g. 0.012 = 1.2 %); null during the warm-up "
        "and for events",
        nullable=True,
    ),
    Field(
        "value_at_risk",
        "number",
        "market ticks: predictive `1 - var_level` quantile (default 1 %) of the next tick's "
        "log return, one time unit ahead, a negative number in natural log-return units; null "
        "during the warm-up and for events",
        nullable=True,
    ),
)
#: The keys of a detector's output dict, in order.
OUTPUT_KEYS: tuple[str, ...] = tuple(field.name for field in OUTPUT_FIELDS)


#: One field's values over a run of ticks: a sequence of plain values, or a NumPy array (in
#: which NaN is "no value", None in an output dict).
Column = Sequence[Any] | np.ndarray


def default_regime_names(n_regimes: int) -> tuple[str, ...]:
    """The names of ``n_regimes`` regimes, calmest first, when none are given.

    Two regimes are ``calm`` and ``turbulent``, three ``calm``, ``normal`` and ``turbulent``;
    one is ``calm``; more are ``calm``, ``normal_1`` ... ``normal_{n-2}``, ``turbulent``.

    Examples
    --------
    >>> default_regime_names(2), default_regime_names(3)
    (('calm', 'turbulent'), ('calm', 'normal', 'turbulent'))
    """
    if n_regimes <= 1:
        return ("calm",)[:n_regimes]
    if n_regimes == 3:
        return ("calm", "normal", "turbulent")
    middle = tuple(f"normal_{i}" for i in range(1, n_regimes - 1))
    return ("calm", *middle, "turbulent")


def make_output(
    regime: int,
    probabilities: dict[int, float],
    raw_probabilities: dict[int, float],
    log_likelihood: float | None,
    drift_score: float | None,
    drift_detected: bool,
    n_samples_seen: int,
    warm: bool,
    volatility: float | None,
    value_at_risk: float | None,
) -> dict[str, Any]:
    """A detector's output for one tick: a dict with exactly :data:`OUTPUT_KEYS`, in order.

    The one place a detector builds its output. Values are taken as they are (the detector
    passes plain ints, floats and bools; the encoder applies the JSON rules), but for the
    fields of :data:`NAN_IS_NONE`, where NaN, the compiled step's "no value", becomes None.

    Examples
    --------
    >>> out = make_output(
    ...     1, {0: 0.25, 1: 0.75}, {0: 0.5, 1: 0.5}, 2.5, 0.0, False, 300, True, 0.01, -0.026
    ... )
    >>> tuple(out) == OUTPUT_KEYS
    True
    >>> nan = float("nan")
    >>> make_output(0, {}, {}, nan, 0.0, False, 1, False, nan, nan)["volatility"] is None
    True
    """
    # NaN != NaN. These are the fields of NAN_IS_NONE (test_encode checks it).
    return {
        "regime": regime,
        "probabilities": probabilities,
        "raw_probabilities": raw_probabilities,
        "log_likelihood": log_likelihood if log_likelihood == log_likelihood else None,
        "drift_score": drift_score if drift_score == drift_score else None,
        "drift_detected": drift_detected,
        "n_samples_seen": n_samples_seen,
        "warm": warm,
        "volatility": volatility if volatility == volatility else None,
        "value_at_risk": value_at_risk if value_at_risk == value_at_risk else None,
    }


def make_output_columns(
    regime: Column,
    probabilities: Sequence[Column],
    raw_probabilities: Sequence[Column],
    log_likelihood: Column,
    drift_score: Column,
    drift_detected: Column,
    n_samples_seen: Column,
    warm: Column,
    volatility: Column,
    value_at_risk: Column,
) -> dict[str, Any]:
    """Outputs of a run of ticks in column form: :data:`OUTPUT_KEYS`, a column per field.

    Each column has one entry per tick, in tick order. A ``probabilities`` field is the
    sequence of per-regime columns (regime ``r``'s column at index ``r``), so the record's
    ``{"0": p0, "1": p1}`` of tick ``j`` is ``{r: column[j] for r, column in
    enumerate(probabilities)}``. Values are taken as they are, as in :func:`make_output`, of
    which this is the column form (:func:`output_rows` turns one into the other); a column
    can be a NumPy array, in which NaN means no value (None in :func:`make_output`).

    Examples
    --------
    >>> cols = make_output_columns(
    ...     [0, 1], ([0.75, 0.25], [0.25, 0.75]), ([0.5, 0.5], [0.5, 0.5]),
    ...     [-1.0, -2.0], [0.0, 0.1], [False, False], [300, 301], [True, True],
    ...     [0.01, 0.01], [-0.026, -0.025],
    ... )  # fmt: skip
    >>> tuple(cols) == OUTPUT_KEYS
    True
    >>> {r: column[1] for r, column in enumerate(cols["probabilities"])}  # the second tick's
    {0: 0.25, 1: 0.75}
    """
    columns = (regime, probabilities, raw_probabilities, log_likelihood, drift_score,
               drift_detected, n_samples_seen, warm, volatility, value_at_risk)  # fmt: skip
    return dict(zip(OUTPUT_KEYS, columns, strict=True))


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


#: The number fields that can have no value: NaN in a column, None in an output dict.
NAN_IS_NONE: frozenset[str] = frozenset(
    f.name for f in OUTPUT_FIELDS if f.kind == "number" and f.nullable
)


def _listed(column: Any) -> list[Any]:
    """A column as a list of plain values (a NumPy array's ``tolist()``)."""
    return column.tolist() if isinstance(column, np.ndarray) else list(column)


def output_rows(columns: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The per-tick outputs (:func:`make_output` dicts, plain Python values) of outputs in
    column form (lists, or NumPy arrays with NaN for no value)."""
    n = len(columns["regime"])
    per_field = []
    for f in OUTPUT_FIELDS:
        column = columns[f.name]
        if f.kind == "probabilities":
            per_field.append(
                [dict(enumerate(values)) for values in zip(*map(_listed, column), strict=True)]
                if len(column)
                else [{} for _ in range(n)]
            )
        else:
            per_field.append(_listed(column))  # make_output turns NaN into None
    return [make_output(*row) for row in zip(*per_field, strict=True)]


def take_columns(columns: Mapping[str, Any], positions: Sequence[int]) -> dict[str, Any]:
    """Outputs in column form, of the ticks at ``positions`` only (a NumPy column stays one)."""
    index = np.asarray(positions, dtype=np.intp)

    def take(column: Any) -> Any:
        if isinstance(column, np.ndarray):
            return column[index]
        return [column[j] for j in positions]

    return {
        f.name: [take(c) for c in columns[f.name]] if f.kind == "probabilities"
        else take(columns[f.name])
        for f in OUTPUT_FIELDS
    }  # fmt: skip
