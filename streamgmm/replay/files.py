"""Files of ticks: the rows of a CSV or Parquet file as plain values, a chunk at a time.

CSV cells are text: an empty cell is an absent field, the key column (``symbol``, or
``[input] key_field``) stays text, and any other cell that reads as a number is a number;
other text is kept as text. In Parquet, null is an absent field and dates are ISO-8601 text.
Both ``streamgmm replay`` and ``streamgmm produce`` read files this way.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from datetime import date, datetime
from pathlib import Path
from typing import Any

from streamgmm.settings.service import Settings
from streamgmm.ticks.decode import TickDecoder

__all__ = [
    "CHUNK_ROWS",
    "KEY_COLUMN",
    "ReplayError",
    "cell",
    "count_rows",
    "csv_readers",
    "header",
    "is_parquet",
    "iter_rows",
    "key_column",
    "parquet_rows",
    "required_columns",
    "row_dict",
]

#: The column of a file's rows that holds the instrument key, unless ``[input] key_field``
#: names another (a Kafka record's key has no column).
KEY_COLUMN = "symbol"
_PARQUET_SUFFIXES = (".parquet", ".pq")
#: Rows read, decoded and applied together: each key's ticks of a chunk go through its
#: detector in one call.
CHUNK_ROWS = 8192


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


def _csv_rows(path: Path, string_columns: frozenset[str]) -> Iterator[dict[str, object]]:
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle)
        readers = csv_readers(next(reader, []), string_columns)
        for cells in reader:
            if not cells:
                continue  # a blank line, as csv.DictReader skips it
            yield row_dict(readers, cells)


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


def parquet_rows(path: Path) -> Iterator[dict[str, object]]:
    """The rows of a Parquet file as dicts, read a chunk at a time."""
    for batch in _open_parquet(path).iter_batches(batch_size=CHUNK_ROWS):
        for raw in batch.to_pylist():
            # null is an absent field; NaN is a value, left for the decoder to reject.
            yield {name: _plain(value) for name, value in raw.items() if value is not None}


def header(path: Path) -> list[str]:
    """The file's column names."""
    if is_parquet(path):
        return list(_open_parquet(path).schema_arrow.names)
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            return next(csv.reader(handle), [])
    except UnicodeDecodeError:
        raise ReplayError(f"{path} is not UTF-8 CSV; name Parquet files *.parquet") from None
    except csv.Error as exc:
        raise ReplayError(f"cannot parse {path} as CSV: {exc}") from None


def iter_rows(
    path: str | Path, string_columns: tuple[str, ...] = (KEY_COLUMN,)
) -> Iterator[dict[str, object]]:
    """Yield the rows of a CSV or Parquet file of ticks as plain dicts (absent cells omitted).

    Parameters
    ----------
    path
        ``.parquet`` / ``.pq`` files are read as Parquet (needs pyarrow), others as CSV.
    string_columns
        CSV columns kept as text even when they look like numbers (instrument keys).
    """
    path = Path(path)
    if is_parquet(path):
        return parquet_rows(path)
    return _csv_rows(path, frozenset(string_columns))


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
