"""``streamgmm replay FILE --output OUT``: the service's per-key tick path over a file, no Kafka.

Each row of a CSV or Parquet file of ticks (columns ``symbol, ts, price, volume`` for market
ticks; ``symbol, ts, <event fields>`` for event ticks) is turned into the JSON message that
``streamgmm produce`` would send, then goes through the service's own steps: the same
:class:`~streamgmm.ticks.decode.TickDecoder` validation, then the same per-key tick path
(:class:`streamgmm.ticks.rules.TickRules`: ordering, model rejections, emit policy, batching
through ``learn_predict_many``) and the same output encoder. So for the same ticks a key's
records are the Kafka path's, apart from ``topic``, ``partition`` and ``offset``: replay writes
the file name, partition -1 and the 0-based row number.

Rows are read in chunks of :data:`CHUNK_ROWS`; each chunk's ticks are grouped by key and each
key's run goes through its detector in one call. A CSV chunk is decoded a column at a time
(:class:`_CsvColumns`): rows that are plain ticks go straight into one
:class:`~streamgmm.ticks.tick.TickBlock` per key (:meth:`TickRules.apply_block
<streamgmm.ticks.rules.TickRules.apply_block>`); any other row is decoded on its own, as
above, so its dead letter is the decoder's. Records are written in row order (sorted back
within each chunk), so the output's order is the input's, across keys too; dead letters too.

CSV cells are text: an empty cell is an absent field, the ``symbol`` column (and
``[input] key_field``, if set) stays text, and any other cell that reads as a number is a
number; other text is kept as text (``ts`` as ISO-8601, anything else is a wrong type).
Output is JSON lines, one output record per line. Rejected rows are counted by reason and,
with ``--dead-letters FILE``, written there as JSON lines.
"""

from __future__ import annotations

import argparse
import csv
import gc
import itertools
import json
import math
import os
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import IO, Any

import numpy as np

from streamgmm.settings.flags import add_cli_overrides, overrides_from_args
from streamgmm.settings.layers import load_settings
from streamgmm.settings.service import Settings
from streamgmm.settings.spec import ConfigError
from streamgmm.ticks.decode import TickDecoder, group_by_key, non_finite_literal_detail
from streamgmm.ticks.keystate import KeyState, Pipeline
from streamgmm.ticks.rules import KeyRun, TickRules
from streamgmm.ticks.tick import DeadLetter, Tick, TickBlock, encode_key

__all__ = [
    "CHUNK_ROWS",
    "PARTITION",
    "ReplayError",
    "ReplaySummary",
    "count_rows",
    "iter_rows",
    "main",
    "replay",
    "row_message",
]

#: Partition written into replayed records: replay has no partitions.
PARTITION = -1
_PARQUET_SUFFIXES = (".parquet", ".pq")
#: Rows read, decoded and applied together: each key's ticks of a chunk go through its
#: detector in one call.
CHUNK_ROWS = 8192


#: Keys whose stream problem the summary names, one line each; the rest are counted.
_PROBLEMS_SHOWN = 20


class ReplayError(Exception):
    """The input file cannot be replayed (unreadable, wrong format, missing columns)."""


@dataclass
class ReplaySummary:
    """What a replay did."""

    rows: int = 0
    ticks: int = 0
    records: int = 0
    skipped_out_of_order: int = 0
    dead_letters: Counter[str] = field(default_factory=Counter)
    keys: int = 0
    #: Keys whose stream gave no regimes at the end of the file, with the detector's reason
    #: (``stream_problem``; the service logs it per key when it begins).
    stream_problems: dict[str, str] = field(default_factory=dict)


# --------------------------------------------------------------------------- reading


def _is_parquet(path: Path) -> bool:
    return path.suffix.lower() in _PARQUET_SUFFIXES


def _cell(text: str) -> object:
    # float() also reads "nan" and "inf"; those reach the decoder, which rejects them as
    # non_finite, exactly as it would a NaN sent to Kafka.
    try:
        return float(text)
    except ValueError:
        return text


def _csv_readers(header: list[str], string_columns: frozenset[str]) -> list[tuple[str, bool]]:
    """Per column, its name and whether its cells stay text (else: a number when one)."""
    return [(name, name in string_columns) for name in header]


def _row_dict(readers: list[tuple[str, bool]], cells: list[str]) -> dict[str, object]:
    # zip() drops extra cells without a header and the missing cells of short rows; empty
    # cells are absent fields.
    return {
        name: text if as_text else _cell(text)
        for (name, as_text), text in zip(readers, cells)  # noqa: B905
        if text
    }


def _csv_rows(path: Path, string_columns: frozenset[str]) -> Iterator[dict[str, object]]:
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle)
        readers = _csv_readers(next(reader, []), string_columns)
        for cells in reader:
            if not cells:
                continue  # a blank line, as csv.DictReader skips it
            yield _row_dict(readers, cells)


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


def _parquet_rows(path: Path) -> Iterator[dict[str, object]]:
    for batch in _open_parquet(path).iter_batches(batch_size=CHUNK_ROWS):
        for raw in batch.to_pylist():
            # null is an absent field; NaN is a value, left for the decoder to reject.
            yield {name: _plain(value) for name, value in raw.items() if value is not None}


def _columns(path: Path) -> list[str]:
    if _is_parquet(path):
        return list(_open_parquet(path).schema_arrow.names)
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            return next(csv.reader(handle), [])
    except UnicodeDecodeError:
        raise ReplayError(f"{path} is not UTF-8 CSV; name Parquet files *.parquet") from None
    except csv.Error as exc:
        raise ReplayError(f"cannot parse {path} as CSV: {exc}") from None


def iter_rows(path: str | Path, string_columns: tuple[str, ...] = ("symbol",)) -> Iterator[dict]:
    """Yield the rows of a CSV or Parquet file of ticks as plain dicts (absent cells omitted).

    Parameters
    ----------
    path
        ``.parquet`` / ``.pq`` files are read as Parquet (needs pyarrow), others as CSV.
    string_columns
        CSV columns kept as text even when they look like numbers (instrument keys).
    """
    path = Path(path)
    if _is_parquet(path):
        return _parquet_rows(path)
    return _csv_rows(path, frozenset(string_columns))


def count_rows(path: str | Path) -> int | None:
    """Number of data rows (for the progress bar); None if it cannot be told cheaply."""
    path = Path(path)
    try:
        if _is_parquet(path):
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


def row_message(
    row: Mapping[str, object], key_column: str = "symbol"
) -> tuple[bytes | None, bytes]:
    """The Kafka ``(key, value)`` for a row: key from ``key_column``, value the row as JSON.

    Non-finite numbers are written as JSON's NaN/Infinity extensions on purpose, so the
    service's decoder rejects them (reason ``non_finite``) instead of the row vanishing.
    """
    key = row.get(key_column)
    key_bytes = encode_key(key) if isinstance(key, str) else None
    plain = row if type(row) is dict else dict(row)
    return key_bytes, _ROW_JSON.encode(plain).encode("utf-8")


# json.dumps(row, separators=(",", ":"), ensure_ascii=False, default=str), built once.
_ROW_JSON = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, default=str)


def _required_columns(settings: Settings) -> list[str]:
    needed = ["ts"]
    needed += list(settings.event_fields) if settings.tick_kind == "event" else ["price"]
    needed.append(settings.key_field or "symbol")
    return needed


# --------------------------------------------------------------------------- progress


class _Progress:
    """A tqdm bar on a terminal when tqdm is installed, else a plain progress line."""

    def __init__(self, total: int | None, enabled: bool, stream: IO[str]) -> None:
        self.total = total
        self.done = 0
        self.enabled = enabled
        self.stream = stream
        self._bar: Any = None
        self._last = 0.0
        self._shown = -1
        self._tty = bool(getattr(stream, "isatty", lambda: False)())
        if enabled and self._tty:
            try:  # optional: pip install 'streamgmm[progress]'
                from tqdm import tqdm  # type: ignore[import-untyped, import-not-found, unused-ignore]
            except ImportError:
                tqdm = None
            if tqdm is not None:
                self._bar = tqdm(total=total, unit="rows", file=stream, desc="replay")

    def update(self, n: int) -> None:
        self.done += n
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.update(n)
            return
        now = time.monotonic()
        # A terminal gets a line redrawn in place; a log file a line every few seconds.
        if now - self._last >= (0.2 if self._tty else 5.0):
            self._last = now
            self._write()

    def _write(self, final: bool = False) -> None:
        if final and self._shown == self.done and not self._tty:
            return  # that very line is already in the log
        self._shown = self.done
        if self.total:
            text = f"replay: {self.done}/{self.total} rows ({100.0 * self.done / self.total:.0f}%)"
        else:
            text = f"replay: {self.done} rows"
        if self._tty:
            self.stream.write("\r" + text + ("\n" if final else ""))
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def close(self) -> None:
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.close()
        else:
            self._write(final=True)


# --------------------------------------------------------------------------- the replay


def replay(
    path: str | Path,
    output: IO[bytes],
    settings: Settings,
    *,
    pipeline_factory: Callable[[Settings], Pipeline] | None = None,
    dead_letters: IO[bytes] | None = None,
    progress: bool = False,
    progress_stream: IO[str] | None = None,
) -> ReplaySummary:
    """Run the per-key tick path over a file of ticks and write output records as JSON lines.

    Parameters
    ----------
    path
        CSV or Parquet file of ticks.
    output
        Binary stream receiving one JSON output record per line, in row order.
    settings
        Service settings: decoding (``[input]``), emit policy and detector parameters.
    pipeline_factory
        Builds a key's detector; :func:`streamgmm.ticks.keystate.make_pipeline` by default.
    dead_letters
        Optional binary stream receiving one JSON line per rejected row, in row order
        (``row``, ``reason``, ``detail``, ``key``, ``value``).
    progress
        Show progress on ``progress_stream`` (stderr by default): a tqdm bar on a terminal
        when tqdm is installed, else a line every few seconds.

    Returns
    -------
    ReplaySummary
    """
    path = Path(path)
    if not path.is_file():
        raise ReplayError(f"no such file: {path}")
    columns = _columns(path)
    missing = [name for name in _required_columns(settings) if name not in columns]
    if missing:
        raise ReplayError(
            f"{path} has no column {', '.join(map(repr, missing))} (columns: {', '.join(columns)})"
        )
    if pipeline_factory is None:
        from streamgmm.ticks.keystate import make_pipeline

        pipeline_factory = make_pipeline
    key_column = settings.key_field or "symbol"
    summary = ReplaySummary()
    run = _Replay(settings, path.name, key_column, pipeline_factory, output, dead_letters, summary)
    bar = _Progress(count_rows(path) if progress else None, progress, progress_stream or sys.stderr)
    try:
        if _is_parquet(path):
            rows = _parquet_rows(path)
            while chunk := list(itertools.islice(rows, CHUNK_ROWS)):
                run.chunk(chunk)
                bar.update(len(chunk))
        else:
            with path.open(newline="", encoding="utf-8-sig") as handle:
                reader = csv.reader(handle)
                run.start_csv(next(reader, []))
                while lines := list(itertools.islice(reader, CHUNK_ROWS)):
                    # Blank lines are skipped, as csv.DictReader skips them.
                    cells = [row for row in lines if row]
                    run.chunk_cells(cells)
                    bar.update(len(cells))
    except UnicodeDecodeError as exc:
        raise ReplayError(
            f"{path} is not UTF-8 text ({exc.reason}); is it a Parquet file?"
        ) from None
    except csv.Error as exc:
        raise ReplayError(f"cannot parse {path} as CSV: {exc}") from None
    finally:
        bar.close()
    summary.keys = len(run.states)
    for key, state in run.states.items():
        if (problem := state.pipeline.stream_problem) is not None:
            summary.stream_problems[key] = problem
    return summary


class _Replay:
    """One replay's keys and writers; :meth:`chunk` takes the file's rows a chunk at a time."""

    def __init__(
        self,
        settings: Settings,
        topic: str,
        key_column: str,
        pipeline_factory: Callable[[Settings], Pipeline],
        output: IO[bytes],
        dead_letters: IO[bytes] | None,
        summary: ReplaySummary,
    ) -> None:
        self.settings = settings
        self.topic = topic
        self.key_column = key_column
        self.pipeline_factory = pipeline_factory
        self.output = output
        self.dead_letters = dead_letters
        self.summary = summary
        self.decoder = TickDecoder(settings)
        self.rules = TickRules.from_settings(settings, keep_outputs=False)
        self.states: dict[str, KeyState] = {}
        self.readers: list[tuple[str, bool]] = []
        self.columns: _CsvColumns | None = None

    def chunk(self, rows: list[dict[str, object]]) -> None:
        """Decode, apply and write one chunk of rows (the first numbered ``summary.rows``)."""
        first = self.summary.rows
        self.summary.rows += len(rows)
        by_key, rejected = group_by_key(
            (self._decode(row, row_number), None) for row_number, row in enumerate(rows, first)
        )
        runs = [self.rules.apply(self._state(key), group) for key, group in by_key.items()]
        self._write(runs, rejected, lambda row_number: rows[row_number - first])

    def start_csv(self, header: list[str]) -> None:
        """Take a CSV file's header: how its cells are read, and whether chunks of its rows can
        be decoded a column at a time (:meth:`chunk_cells`)."""
        self.readers = _csv_readers(header, frozenset((self.key_column,)))
        self.columns = _CsvColumns.of(header, self.key_column, self.settings)

    def chunk_cells(self, cells: list[list[str]]) -> None:
        """:meth:`chunk` for a chunk of CSV rows as read (lists of cells, no blank rows).

        Rows that are plain ticks (every cell there, numbers where numbers go, nothing any
        decoder check or size limit could refuse: :meth:`_CsvColumns.plain`) are decoded a
        column at a time, straight into one :class:`TickBlock` per key; the others, one by
        one, as :meth:`chunk` does. A key with ticks of both kinds in the chunk has them
        merged back into row order and applied tick by tick.
        """
        readers = self.readers
        if self.columns is None:  # a header the column way cannot take: row by row
            self.chunk([_row_dict(readers, row) for row in cells])
            return
        first = self.summary.rows
        self.summary.rows += len(cells)

        def row(row_number: int) -> dict[str, object]:
            return _row_dict(readers, cells[row_number - first])

        keys, ts, fields, others = self.columns.plain(cells, self.decoder)
        groups: dict[str, list[int]] = {}
        taken = np.ones(len(cells), dtype=bool)
        taken[others] = False
        positions = np.flatnonzero(taken).tolist() if others else range(len(cells))
        for i in positions:
            group = groups.get(keys[i])
            if group is None:
                groups[keys[i]] = [i]
            else:
                group.append(i)
        by_key, rejected = group_by_key(
            (self._decode(row(first + i), first + i), None) for i in others
        )
        runs = []
        topic = self.topic
        for key, rows_of_key in groups.items():
            index = np.array(rows_of_key, dtype=np.intp)
            block = TickBlock(
                key,
                ts[index],
                {name: column[index] for name, column in fields.items()},
                topic,
                PARTITION,
                index.astype(np.int64) + first,
            )
            single = by_key.pop(key, None)
            if single is None:
                runs.append(self.rules.apply_block(self._state(key), block))
            else:
                merged = sorted([*((t, None) for t in block.ticks()), *single], key=_offset_of)
                runs.append(self.rules.apply(self._state(key), merged))
        runs += [self.rules.apply(self._state(key), group) for key, group in by_key.items()]
        self._write(runs, rejected, row)

    def _state(self, key: str) -> KeyState:
        state = self.states.get(key)
        if state is None:
            state = self.states[key] = KeyState(self.pipeline_factory(self.settings), PARTITION)
        return state

    def _write(
        self,
        runs: list[KeyRun],
        rejected: list[DeadLetter],
        row: Callable[[int], dict[str, object]],
    ) -> None:
        """Write the chunk's records and dead letters, each in row order."""
        summary = self.summary
        records: list[tuple[int, bytes]] = []
        for run in runs:
            records += run.records
            rejected += run.dead_letters
            summary.ticks += run.applied
            summary.skipped_out_of_order += run.skipped
        # Back to row order: keys were applied one after the other.
        records.sort(key=_first)
        self.output.write(b"".join([value + b"\n" for _row, value in records]))
        summary.records += len(records)
        if rejected:
            rejected.sort(key=_row_of)
            self._reject(rejected, row)

    def _decode(self, row: dict[str, object], row_number: int) -> Tick | DeadLetter:
        """The row as the service decodes the message ``produce`` sends for it.

        A row of plain values too short to be oversized is validated as the object that
        message parses to, without the JSON round trip (:func:`_as_parsed_json`); its dead
        letters get their value bytes when written (:meth:`_reject`).
        """
        key = row.get(self.key_column)
        key_bytes = encode_key(key) if isinstance(key, str) else None
        literal = _as_parsed_json(row, self.decoder.max_record_bytes)
        if literal is None:
            value = row_message(row, self.key_column)[1]
            return self.decoder.decode(key_bytes, value, self.topic, PARTITION, row_number)
        if literal:
            detail = non_finite_literal_detail(literal)
            return DeadLetter(
                key_bytes, None, "non_finite", detail, self.topic, PARTITION, row_number
            )
        return self.decoder.decode_parsed(key_bytes, row, self.topic, PARTITION, row_number)

    def _reject(self, rejected: list[DeadLetter], row: Callable[[int], dict[str, object]]) -> None:
        for dl in rejected:
            self.summary.dead_letters[dl.reason] += 1
        if self.dead_letters is None:
            return
        lines = []
        for dl in rejected:
            value = dl.value
            if value is None:
                value = row_message(row(dl.offset), self.key_column)[1]
            line = {
                "row": dl.offset,
                "reason": dl.reason,
                "detail": dl.detail,
                "key": dl.key.decode("utf-8", "replace") if dl.key is not None else None,
                "value": value.decode("utf-8", "replace"),
            }
            lines.append(json.dumps(line, ensure_ascii=False).encode("utf-8") + b"\n")
        self.dead_letters.write(b"".join(lines))


@dataclass(frozen=True)
class _CsvColumns:
    """How chunks of a CSV file's rows are decoded a column at a time (:meth:`plain`).

    Made for a header whose column names are distinct and include the key column, ``ts`` and
    the tick's value fields (else None: every row goes the row-by-row way).
    """

    width: int
    key: int
    ts: int
    #: The tick's fields: column, name, and the check beyond finiteness (``"positive"``,
    #: ``"non_negative"`` or ``""``), as the decoder makes them.
    values: tuple[tuple[int, str, str], ...]
    #: Columns the tick does not read: only a non-finite number there matters.
    others: tuple[int, ...]
    #: Upper bound on the JSON message's bytes for the column names (see _as_parsed_json).
    names_size: int

    @classmethod
    def of(cls, header: list[str], key_column: str, settings: Settings) -> _CsvColumns | None:
        if len(set(header)) != len(header) or key_column not in header or "ts" not in header:
            return None
        if settings.tick_kind == "event":
            wanted = [(name, "") for name in settings.event_fields]
        else:
            wanted = [("price", "positive")] + (
                [("volume", "non_negative")] if "volume" in header else []
            )
        names = {name for name, _check in wanted}
        if not names <= set(header) or key_column in names | {"ts"}:
            return None
        values = tuple((header.index(name), name, check) for name, check in wanted)
        used = {header.index(key_column), header.index("ts"), *(i for i, _n, _c in values)}
        return cls(
            width=len(header),
            key=header.index(key_column),
            ts=header.index("ts"),
            values=values,
            others=tuple(i for i in range(len(header)) if i not in used),
            names_size=2 + sum(_MAX_BYTES_PER_CHAR * len(name) + 4 for name in header),
        )

    def plain(
        self, cells: list[list[str]], decoder: TickDecoder
    ) -> tuple[list[str], np.ndarray, dict[str, np.ndarray], list[int]]:
        """The chunk's keys, ts and tick fields as columns, and the rows not decoded so.

        A row is decoded here only when the decoder would accept it as it stands and make
        the same tick of it: every cell there; a key that is not blank and not over
        ``max_key_bytes``; ``ts`` and the value fields numbers, finite, with price > 0 and
        volume >= 0; no non-finite number in any other column; and a JSON message that cannot
        be over ``max_record_bytes``. Those positions come back last (sorted), to be decoded
        row by row, so their dead letters are the decoder's own.
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
        unusable = {
            key
            for key in set(keys)
            if not key.strip() or len(key.encode("utf-8")) > decoder.max_key_bytes
        }
        if unusable:
            bad |= np.fromiter((key in unusable for key in keys), dtype=bool, count=n)
        ts = _numbers(columns[self.ts], bad)
        bad |= ~np.isfinite(ts)
        fields: dict[str, np.ndarray] = {}
        for column, name, check in self.values:
            values = _numbers(columns[column], bad)
            bad |= ~np.isfinite(values)
            if check == "positive":
                bad |= ~(values > 0.0)
            elif check == "non_negative":
                bad |= ~(values >= 0.0)
            fields[name] = values
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
            _MAX_BYTES_PER_CHAR * max(map(len, column), default=0) + _MAX_FLOAT_BYTES
            for column in columns
        )
        if bound > decoder.max_record_bytes:
            per_row = self.names_size + width * _MAX_FLOAT_BYTES
            for i, row in enumerate(cells):
                if per_row + _MAX_BYTES_PER_CHAR * sum(map(len, row)) > decoder.max_record_bytes:
                    bad[i] = True
        return keys, ts, fields, np.flatnonzero(bad).tolist()


def _numbers(texts: tuple[str, ...], bad: np.ndarray) -> np.ndarray:
    """The cells as floats (``float()``, as :func:`_cell` reads them); NaN, and ``bad``
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
    """Whether the cell reads (:func:`_cell`) as a number that is not finite."""
    value = _cell(text)
    return type(value) is float and not math.isfinite(value)


#: Most UTF-8 bytes json.dumps(ensure_ascii=False) writes for one character of a string
#: (a control character becomes \uXXXX), and for one float (its shortest repr).
_MAX_BYTES_PER_CHAR = 6
_MAX_FLOAT_BYTES = 24


def _as_parsed_json(row: dict[str, object], limit: int) -> str | None:
    """Whether the row can be validated as the object its JSON message parses to.

    The message (:func:`row_message`) parses back to the row itself when the row holds only
    str, float, int and bool values, and the decoder would then refuse it for two reasons of
    its own: a message over ``limit`` bytes, and a ``NaN``, ``Infinity`` or ``-Infinity``
    literal (the first one in the row's order). Returns None when the row needs the message
    itself (other values, or possibly over the limit), else the literal JSON's parser would
    meet first, or ``""`` for a row that is fine as it is.
    """
    size = 2
    literal = ""
    for name, v in row.items():
        size += _MAX_BYTES_PER_CHAR * len(name) + 4  # quotes, colon, comma
        kind = type(v)
        if kind is float:
            size += _MAX_FLOAT_BYTES
            if not literal and v - v != 0.0:  # type: ignore[operator]
                literal = "NaN" if v != v else ("Infinity" if v > 0 else "-Infinity")  # type: ignore[operator]
        elif kind is str:
            size += _MAX_BYTES_PER_CHAR * len(v) + 2  # type: ignore[arg-type]
        elif kind is int or kind is bool:
            size += len(repr(v))
        else:
            return None  # dates, lists, ...: as JSON they may parse to something else
    return literal if size <= limit else None


def _row_of(dl: DeadLetter) -> int:
    return dl.offset


def _first(record: tuple[int, bytes]) -> int:
    return record[0]


def _offset_of(item: tuple[Tick, bytes | None]) -> int:
    return item[0].offset


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="streamgmm replay",
        description="Run the service's per-key regime pipeline over a CSV or Parquet file of "
        "ticks (columns symbol, ts, price, volume) and write JSON-lines output records.",
    )
    parser.add_argument("file", metavar="FILE", help="CSV or Parquet (.parquet) file of ticks")
    parser.add_argument(
        "--output", "-o", metavar="OUT", required=True, help="JSON-lines output file ('-': stdout)"
    )
    add_cli_overrides(parser, kafka_flags=False)
    parser.add_argument(
        "--dead-letters", metavar="FILE", default=None, help="write rejected rows here (JSON lines)"
    )
    parser.add_argument("--no-progress", action="store_true", help="do not show progress")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``streamgmm replay``; ``argv`` excludes the subcommand name.

    Returns 0 on success and 2 for a bad configuration or an unusable input file.
    """
    args = _parser().parse_args(argv)
    try:
        settings = load_settings(args.config, os.environ, overrides_from_args(args))
    except ConfigError as exc:
        print(f"streamgmm replay: error: {exc}", file=sys.stderr)
        return 2
    out_handle: IO[bytes] | None = None
    dl_handle: IO[bytes] | None = None
    # The objects imports made (numba, river, ...) live as long as the process: moved out of
    # the collector's sight, its full collections stop walking them every few thousand rows
    # (about a fifth of a replay's time otherwise).
    gc.freeze()
    try:
        out_handle = sys.stdout.buffer if args.output == "-" else open(args.output, "wb")  # noqa: SIM115
        if args.dead_letters:
            dl_handle = open(args.dead_letters, "wb")  # noqa: SIM115
        summary = replay(
            args.file,
            out_handle,
            settings,
            dead_letters=dl_handle,
            progress=not args.no_progress,
        )
    except ReplayError as exc:
        print(f"streamgmm replay: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"streamgmm replay: error: {exc}", file=sys.stderr)
        return 2
    finally:
        if out_handle is not None and args.output != "-":
            out_handle.close()
        if dl_handle is not None:
            dl_handle.close()
    rejected = sum(summary.dead_letters.values())
    reasons = ", ".join(f"{reason}={n}" for reason, n in sorted(summary.dead_letters.items()))
    print(
        f"streamgmm replay: {summary.rows} rows, {summary.ticks} ticks applied over "
        f"{summary.keys} keys, {summary.records} records written, {rejected} rejected"
        + (f" ({reasons})" if reasons else "")
        + (
            f", {summary.skipped_out_of_order} out-of-order skipped"
            if summary.skipped_out_of_order
            else ""
        ),
        file=sys.stderr,
    )
    problems = list(summary.stream_problems.items())
    for key, problem in problems[:_PROBLEMS_SHOWN]:
        print(f"streamgmm replay: key {key!r} gives no regimes: {problem}", file=sys.stderr)
    if len(problems) > _PROBLEMS_SHOWN:
        print(
            f"streamgmm replay: {len(problems) - _PROBLEMS_SHOWN} more keys give no regimes",
            file=sys.stderr,
        )
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
