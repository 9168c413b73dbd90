"""``streamgmm replay --format csv``: the output records as one flat table.

:class:`CsvRecords` takes the output records as the replay writes them (JSON lines) and writes
them to a binary stream as CSV rows instead, under a header line: one column per field of the
record (:data:`~streamgmm.ticks.record.RECORD_FIELDS`, in order), except that each regime
probability field becomes one column per regime, named after the regime
(:func:`csv_columns`): ``probabilities`` becomes ``p_calm``, ``p_turbulent`` and
``raw_probabilities`` becomes ``raw_p_calm``, ``raw_p_turbulent`` with the default names of
two regimes (``[output] regime_names`` gives others).

Cells: numbers as the JSON record writes them (the shortest text that reads back as the same
double), ``true``/``false``, and an empty cell for ``null``. No maths here.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from typing import IO, Any

from streamgmm.ticks.record import RECORD_FIELDS

__all__ = ["CsvRecords", "csv_columns"]


def _prefix(name: str) -> str:
    """The column prefix of a probabilities field: ``probabilities`` -> ``p``."""
    return name.replace("probabilities", "p")


def csv_columns(regime_names: Sequence[str]) -> list[str]:
    """The CSV header: each record field, a probabilities field as one column per regime.

    Examples
    --------
    >>> [c for c in csv_columns(["calm", "turbulent"]) if c.startswith(("p_", "raw_p_"))]
    ['p_calm', 'p_turbulent', 'raw_p_calm', 'raw_p_turbulent']
    """
    columns: list[str] = []
    for field in RECORD_FIELDS:
        if field.kind == "probabilities":
            columns += [f"{_prefix(field.name)}_{name}" for name in regime_names]
        else:
            columns.append(field.name)
    return columns


def _cell(value: Any) -> object:
    if value is None:
        return ""
    if value is True:
        return "true"
    if value is False:
        return "false"
    return value


class CsvRecords:
    """A binary stream that takes output records as JSON lines and writes CSV rows.

    Parameters
    ----------
    output
        Binary stream receiving the table, header first (written when this is made).
    regime_names
        The regimes' names, in regime order (``Settings.regime_names``): they name the
        probability columns.
    """

    def __init__(self, output: IO[bytes], regime_names: Sequence[str]) -> None:
        self.output = output
        self.regime_names = tuple(regime_names)
        self.columns = csv_columns(self.regime_names)
        self._ids = [str(r) for r in range(len(self.regime_names))]
        self._write_rows([self.columns])

    def _row(self, record: dict[str, Any]) -> list[object]:
        row: list[object] = []
        for field in RECORD_FIELDS:
            value = record[field.name]
            if field.kind == "probabilities":
                row += [_cell(value.get(r)) for r in self._ids]
            else:
                row.append(_cell(value))
        return row

    def _write_rows(self, rows: Sequence[Sequence[object]]) -> None:
        text = io.StringIO()
        csv.writer(text, lineterminator="\n").writerows(rows)
        self.output.write(text.getvalue().encode("utf-8"))

    def write(self, data: bytes) -> int:
        """Write the records of ``data`` (JSON lines) as CSV rows; returns ``len(data)``."""
        self._write_rows([self._row(json.loads(line)) for line in data.splitlines() if line])
        return len(data)

    def flush(self) -> None:
        self.output.flush()
