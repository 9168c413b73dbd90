"""A chunk of a CSV file decoded a column at a time, where the decoder would take each row as
it stands.

Rows that are plain ticks (every cell there, numbers where numbers go, nothing the decoder's
rules or size limit could refuse) become columns of keys, timestamps and value fields at once;
the others are left to be decoded row by row, so their dead letters are the decoder's own.
What a tick needs, and what the decoder refuses, is asked of the
:class:`~streamgmm.ticks.decode.TickDecoder` (:meth:`~.TickDecoder.fields_read`,
:meth:`~.TickDecoder.seconds`, :meth:`~.TickDecoder.key_is_usable`,
:meth:`~.TickDecoder.refused_rows`, :meth:`~.TickDecoder.record_fits`); nothing here re-states a
rule.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from streamgmm.replay.files import cell
from streamgmm.replay.message import MAX_BYTES_PER_CHAR, MAX_FLOAT_BYTES
from streamgmm.settings.service import Settings
from streamgmm.ticks.decode import TickDecoder

__all__ = ["CsvColumns"]


@dataclass(frozen=True)
class CsvColumns:
    """How chunks of a CSV file's rows are decoded a column at a time (:meth:`plain`).

    Made for a header whose column names are distinct and include the key column, ``ts`` and
    the tick's value fields (else None: every row goes the row-by-row way).
    """

    width: int
    key: int
    ts: int
    #: The tick's value fields (:meth:`TickDecoder.fields_read`): column and name.
    values: tuple[tuple[int, str], ...]
    #: Columns the tick does not read: only a non-finite number there matters.
    others: tuple[int, ...]
    #: Upper bound on the JSON message's bytes for the column names (see
    #: :func:`~streamgmm.replay.message.as_parsed_json`).
    names_size: int

    @classmethod
    def of(cls, header: list[str], key_column: str, settings: Settings) -> CsvColumns | None:
        if len(set(header)) != len(header) or key_column not in header or "ts" not in header:
            return None
        names = list(TickDecoder(settings).fields_read(header))
        if not set(names) <= set(header) or key_column in {*names, "ts"}:
            return None
        values = tuple((header.index(name), name) for name in names)
        used = {header.index(key_column), header.index("ts"), *(i for i, _name in values)}
        return cls(
            width=len(header),
            key=header.index(key_column),
            ts=header.index("ts"),
            values=values,
            others=tuple(i for i in range(len(header)) if i not in used),
            names_size=2 + sum(MAX_BYTES_PER_CHAR * len(name) + 4 for name in header),
        )

    def plain(
        self, cells: list[list[str]], decoder: TickDecoder
    ) -> tuple[list[str], np.ndarray, dict[str, np.ndarray], list[int]]:
        """The chunk's keys, ts and tick fields as columns, and the rows not decoded so.

        A row is decoded here only when the decoder would accept it as it stands and make
        the same tick of it: every cell there; a key the decoder finds usable; ``ts`` and the
        value fields numbers that the decoder's field rules accept; no non-finite number in
        any other column; and a JSON message that cannot be over the decoder's size limit.
        Those positions come back last (sorted), to be decoded row by row, so their dead
        letters are the decoder's own.
        """
        n = len(cells)
        width = self.width
        bad = np.zeros(n, dtype=bool)
        if not all(len(row) == width for row in cells):
            short = [i for i, row in enumerate(cells) if len(row) != width]
            bad[short] = True
            blank = [""] * width
            cells = [blank if len(row) != width else row for row in cells]
        columns = list(zip(*cells, strict=True)) if cells else [() for _ in range(width)]
        keys: list[str] = list(columns[self.key])
        unusable = {key for key in set(keys) if not decoder.key_is_usable(key)}
        if unusable:
            bad |= np.fromiter((key in unusable for key in keys), dtype=bool, count=n)
        ts = decoder.seconds(_numbers(columns[self.ts], bad))
        fields = {name: _numbers(columns[column], bad) for column, name in self.values}
        bad |= decoder.refused_rows(ts, fields)
        for column in self.others:
            # Only a number that is not finite matters here (nan, inf, 1e400, ...): the
            # row-by-row decoder refuses it wherever it is.
            texts = columns[column]
            try:
                bad |= ~np.isfinite(np.fromiter(map(float, texts), dtype=np.float64, count=n))
            except ValueError:  # text among them, kept as text
                for i, text in enumerate(texts):
                    # A float() that is not finite needs nan or inf spelt out (an n), an
                    # exponent or more than 308 digits; other text need not be tried.
                    if (
                        len(text) > 308 or "n" in text or "N" in text or "e" in text or "E" in text
                    ) and _non_finite(text):
                        bad[i] = True
        bound = self.names_size + sum(
            MAX_BYTES_PER_CHAR * max(map(len, column), default=0) + MAX_FLOAT_BYTES
            for column in columns
        )
        if not decoder.record_fits(bound):
            per_row = self.names_size + width * MAX_FLOAT_BYTES
            for i, row in enumerate(cells):
                if not decoder.record_fits(per_row + MAX_BYTES_PER_CHAR * sum(map(len, row))):
                    bad[i] = True
        return keys, ts, fields, np.flatnonzero(bad).tolist()


def _numbers(texts: tuple[str, ...], bad: np.ndarray) -> np.ndarray:
    """The cells as floats (``float()``, as :func:`~streamgmm.replay.files.cell` reads them);
    NaN, and ``bad``
    marked, where a cell is not a number."""
    try:
        return np.fromiter(map(float, texts), dtype=np.float64, count=len(texts))
    except ValueError:
        pass
    out = np.empty(len(texts))
    for i, text in enumerate(texts):
        try:
            out[i] = float(text)
        except ValueError:
            out[i] = math.nan
            bad[i] = True
    return out


def _non_finite(text: str) -> bool:
    """Whether the cell reads (:func:`~streamgmm.replay.files.cell`) as a number that is not
    finite."""
    value = cell(text)
    return type(value) is float and not math.isfinite(value)
