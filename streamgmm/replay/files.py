"""Files of ticks: the rows of a CSV or Parquet file as plain values, a chunk at a time.

A :class:`TickFile` is a file as it is read: its path, its CSV delimiter (given, or sniffed from
the header line among :data:`DELIMITERS`) and the columns it names otherwise than the tick does
(``--columns symbol=ticker,ts=timestamp,price=close``: the tick's ``symbol`` is the file's
``ticker`` column, ...). :meth:`TickFile.check` is the one check that a file has the columns a
tick needs, before anything is read or sent.

CSV cells are text: an empty cell is an absent field, the key column (``symbol``, or
``[input] key_field``) stays text, and any other cell that reads as a number is a number;
other text is kept as text. In Parquet, null is an absent field and dates are ISO-8601 text.
Both ``streamgmm replay`` and ``streamgmm produce`` read files this way.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import itertools
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

from streamgmm.settings.layers import did_you_mean
from streamgmm.settings.service import Settings
from streamgmm.ticks.decode import TickDecoder

__all__ = [
    "CHUNK_ROWS",
    "DELIMITERS",
    "KEY_COLUMN",
    "ReplayError",
    "TickFile",
    "add_file_arguments",
    "cell",
    "count_rows",
    "csv_readers",
    "is_parquet",
    "iter_rows",
    "key_column",
    "parse_columns",
    "parse_delimiter",
    "required_columns",
    "row_dict",
    "sniff_delimiter",
    "tick_file",
]

#: The column of a file's rows that holds the instrument key, unless ``[input] key_field``
#: names another (a Kafka record's key has no column).
KEY_COLUMN = "symbol"
_PARQUET_SUFFIXES = (".parquet", ".pq")
#: Rows read, decoded and applied together: each key's ticks of a chunk go through its
#: detector in one call.
CHUNK_ROWS = 8192
#: The delimiters a CSV file's header line is sniffed for: the one it holds most of, the first
#: of them on a tie (so a one-column header is read with commas).
DELIMITERS = (",", "\t", ";", "|")
_DELIMITER_NAMES = {"tab": "\t", "\\t": "\t", "comma": ",", "semicolon": ";", "pipe": "|"}


class ReplayError(Exception):
    """The input file cannot be replayed (unreadable, wrong format, missing columns)."""


def key_column(settings: Settings) -> str:
    """The column of a file's rows that holds the instrument key."""
    return settings.key_field or KEY_COLUMN


def required_columns(settings: Settings) -> list[str]:
    """The columns a file of ticks must have: those every tick needs, and the key column."""
    return [*TickDecoder(settings).required_fields, key_column(settings)]


def is_parquet(path: Path) -> bool:
    """Whether ``path`` is read as Parquet (by its suffix), else as CSV."""
    return path.suffix.lower() in _PARQUET_SUFFIXES


def sniff_delimiter(line: str) -> str:
    """The delimiter of a CSV file whose header line is ``line`` (see :data:`DELIMITERS`)."""
    return max(DELIMITERS, key=lambda d: (line.count(d), -DELIMITERS.index(d)))


def parse_delimiter(text: str) -> str:
    """``--delimiter``: one character, or ``tab`` (also ``\\t``), ``comma``, ``semicolon``,
    ``pipe``."""
    delimiter = _DELIMITER_NAMES.get(text.lower(), text)
    if len(delimiter) != 1 or delimiter in '\r\n"':
        raise ReplayError(
            f"--delimiter must be one character (or tab, comma, semicolon, pipe), got {text!r}"
        )
    return delimiter


def parse_columns(specs: Iterable[str]) -> dict[str, str]:
    """``--columns FIELD=COLUMN[,FIELD=COLUMN...]`` (repeatable) as {field: the file's column}."""
    columns: dict[str, str] = {}
    for spec in specs:
        for item in spec.split(","):
            name, sep, column = (part.strip() for part in item.partition("="))
            if not sep or not name or not column:
                raise ReplayError(f"--columns {item.strip()!r}: expected FIELD=COLUMN")
            if name in columns:
                raise ReplayError(f"--columns names the field {name!r} twice")
            columns[name] = column
    return columns


def cell(text: str) -> object:
    """A CSV cell as a number when it reads as one, else as text."""
    # float() also reads "nan" and "inf"; those reach the decoder, which rejects them as
    # non_finite, exactly as it would a NaN sent to Kafka.
    try:
        return float(text)
    except ValueError:
        return text


def csv_readers(names: list[str], string_columns: frozenset[str]) -> list[tuple[str, bool]]:
    """Per column, its name and whether its cells stay text (else: a number when one)."""
    return [(name, name in string_columns) for name in names]


def row_dict(readers: list[tuple[str, bool]], cells: list[str]) -> dict[str, object]:
    """A CSV row's cells as a dict, read as ``readers`` say."""
    # zip() drops extra cells without a header and the missing cells of short rows; empty
    # cells are absent fields.
    return {
        name: text if as_text else cell(text)
        for (name, as_text), text in zip(readers, cells)  # noqa: B905
        if text
    }


def _plain(value: object) -> object:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if hasattr(value, "item"):  # NumPy scalars
        return value.item()  # type: ignore[no-any-return, union-attr]
    return value


def _open_parquet(path: Path) -> Any:
    try:
        import pyarrow.parquet as pq  # type: ignore[import-not-found, unused-ignore]
    except ImportError:
        raise ReplayError(
            "reading Parquet needs pyarrow, which is not installed (pip install pyarrow)"
        ) from None
    try:
        return pq.ParquetFile(path)
    except Exception as exc:
        raise ReplayError(f"cannot read {path} as Parquet: {exc}") from None


@dataclass(frozen=True)
class TickFile:
    """A CSV or Parquet file of ticks, as it is read.

    Parameters
    ----------
    path
        ``.parquet`` / ``.pq`` files are read as Parquet (needs pyarrow), others as CSV.
    delimiter
        The CSV delimiter; None: sniffed from the header line (:func:`sniff_delimiter`).
    columns
        The tick's field names the file spells otherwise: {field: the file's column}. The
        file's other columns keep their names.
    """

    path: Path
    delimiter: str | None = None
    columns: Mapping[str, str] = field(default_factory=dict)

    @property
    def is_parquet(self) -> bool:
        return is_parquet(self.path)

    def _renamed(self, names: list[str]) -> list[str]:
        """The file's column names as the tick path sees them (``columns`` applied)."""
        if not self.columns:
            return names
        missing = [column for column in self.columns.values() if column not in names]
        if missing:
            hint = did_you_mean(missing[0], names, "{!r}")
            raise ReplayError(
                f"--columns: {self.path} has no column {', '.join(map(repr, missing))} "
                f"(columns: {', '.join(names)}){hint}"
            )
        to_field = {column: name for name, column in self.columns.items()}
        renamed = [to_field.get(name, name) for name in names]
        for name, column in self.columns.items():
            if renamed.count(name) > 1:
                raise ReplayError(
                    f"--columns {name}={column}: {self.path} has a column {name!r} already"
                )
        return renamed

    @contextlib.contextmanager
    def open_csv(self) -> Iterator[tuple[list[str], Iterator[list[str]]]]:
        """Open the CSV file: its column names (renamed) and a reader of its other rows."""
        with self.path.open(newline="", encoding="utf-8-sig") as handle:
            first = handle.readline()
            delimiter = self.delimiter or sniff_delimiter(first)
            reader = csv.reader(itertools.chain([first], handle), delimiter=delimiter)
            yield self._renamed(next(reader, [])), reader

    def header(self) -> list[str]:
        """The file's column names, as the tick path sees them."""
        if self.is_parquet:
            return self._renamed(list(_open_parquet(self.path).schema_arrow.names))
        try:
            with self.open_csv() as (names, _rows):
                return names
        except UnicodeDecodeError:
            raise ReplayError(
                f"{self.path} is not UTF-8 CSV; name Parquet files *.parquet"
            ) from None
        except csv.Error as exc:
            raise ReplayError(f"cannot parse {self.path} as CSV: {exc}") from None

    def check(self, settings: Settings) -> None:
        """Raise :class:`ReplayError` unless the file is there and has every column a tick
        needs (:func:`required_columns`), its ``columns`` applied."""
        if not self.path.is_file():
            raise ReplayError(f"no such file: {self.path}")
        names = self.header()
        missing = [name for name in required_columns(settings) if name not in names]
        if missing:
            hint = did_you_mean(missing[0], names, "{!r}")
            raise ReplayError(
                f"{self.path} has no column {', '.join(map(repr, missing))} (columns: "
                f"{', '.join(names)}){hint}; name the file's columns with --columns, "
                "e.g. --columns symbol=ticker,ts=date,price=close"
            )

    def parquet_rows(self) -> Iterator[dict[str, object]]:
        """The rows of a Parquet file as dicts, read a chunk at a time."""
        parquet = _open_parquet(self.path)
        to_field = {column: name for name, column in self.columns.items()}
        self._renamed(list(parquet.schema_arrow.names))
        for batch in parquet.iter_batches(batch_size=CHUNK_ROWS):
            for raw in batch.to_pylist():
                # null is an absent field; NaN is a value, left for the decoder to reject.
                yield {
                    to_field.get(name, name): _plain(value)
                    for name, value in raw.items()
                    if value is not None
                }

    def rows(self, string_columns: Iterable[str] = (KEY_COLUMN,)) -> Iterator[dict[str, object]]:
        """The file's rows as plain dicts (absent cells omitted), in the tick's names.

        ``string_columns``: CSV columns kept as text even when they look like numbers
        (instrument keys).
        """
        if self.is_parquet:
            yield from self.parquet_rows()
            return
        with self.open_csv() as (names, reader):
            readers = csv_readers(names, frozenset(string_columns))
            for cells in reader:
                if not cells:
                    continue  # a blank line, as csv.DictReader skips it
                yield row_dict(readers, cells)


def iter_rows(
    path: str | Path, string_columns: tuple[str, ...] = (KEY_COLUMN,)
) -> Iterator[dict[str, object]]:
    """Yield the rows of a CSV or Parquet file of ticks as plain dicts (absent cells omitted).

    Parameters
    ----------
    path
        ``.parquet`` / ``.pq`` files are read as Parquet (needs pyarrow), others as CSV (its
        delimiter sniffed).
    string_columns
        CSV columns kept as text even when they look like numbers (instrument keys).
    """
    return TickFile(Path(path)).rows(string_columns)


def count_rows(path: str | Path) -> int | None:
    """Number of data rows (for the progress bar); None if it cannot be told cheaply."""
    path = Path(path)
    try:
        if is_parquet(path):
            import pyarrow.parquet as pq  # type: ignore[import-not-found, unused-ignore]

            return int(pq.ParquetFile(path).metadata.num_rows)
        lines = 0
        last = b"\n"
        with path.open("rb") as handle:
            while chunk := handle.read(1 << 20):
                lines += chunk.count(b"\n")
                last = chunk[-1:]
        if last != b"\n":
            lines += 1
        return max(lines - 1, 0)
    except Exception:
        return None


def add_file_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--columns`` and ``--delimiter`` (how a file of ticks is read) to ``parser``."""
    parser.add_argument(
        "--columns",
        metavar="FIELD=COLUMN,...",
        action="append",
        default=None,
        help="the file's names for the tick's fields, e.g. "
        "--columns symbol=ticker,ts=timestamp,price=close",
    )
    parser.add_argument(
        "--delimiter",
        metavar="CHAR",
        default=None,
        help="CSV delimiter: one character, or tab, comma, semicolon, pipe "
        "(default: sniffed from the header line among , tab ; |)",
    )


def tick_file(args: argparse.Namespace) -> TickFile:
    """The :class:`TickFile` a command's ``FILE``, ``--columns`` and ``--delimiter`` name."""
    return TickFile(
        Path(args.file),
        delimiter=None if args.delimiter is None else parse_delimiter(args.delimiter),
        columns=parse_columns(args.columns or ()),
    )
