"""The replay itself: a file's rows, a chunk at a time, through the tick path, and its output
records and dead letters written in row order.

Each chunk's rows are decoded (a CSV chunk a column at a time where it can be:
:class:`~streamgmm.replay.columns.CsvColumns`; any other row as the message ``streamgmm
produce`` would send for it, :mod:`streamgmm.replay.message`), grouped by key, and each key's
run goes through its detector under the per-key rules (:class:`~streamgmm.ticks.rules.TickRules`)
in one call. Records and dead letters are sorted back into row order within each chunk, so the
output's order is the input's, across keys too.
"""

from __future__ import annotations

import csv
import itertools
import json
import operator
import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import numpy as np

from streamgmm.replay.columns import CsvColumns
from streamgmm.replay.files import (
    CHUNK_ROWS,
    ReplayError,
    TickFile,
    count_rows,
    csv_readers,
    key_column,
    row_dict,
)
from streamgmm.replay.message import as_parsed_json, row_message
from streamgmm.replay.progress import Progress
from streamgmm.replay.summary import KeyFigures
from streamgmm.settings.service import Settings
from streamgmm.ticks.decode import TickDecoder, group_by_key, non_finite_literal
from streamgmm.ticks.keystate import KeyState, Pipeline
from streamgmm.ticks.rules import KeyRun, TickRules
from streamgmm.ticks.tick import DeadLetter, Tick, TickBlock, encode_key

__all__ = ["PARTITION", "ReplaySummary", "replay"]

#: Partition written into replayed records: replay has no partitions.
PARTITION = -1


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
    #: Each key's figures, from the records written for it (:mod:`~streamgmm.replay.summary`).
    per_key: dict[str, KeyFigures] = field(default_factory=dict)


def replay(
    path: str | Path | TickFile,
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
        CSV or Parquet file of ticks, or a :class:`~streamgmm.replay.files.TickFile` (a file
        with its delimiter and its names for the tick's fields).
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
    source = path if isinstance(path, TickFile) else TickFile(Path(path))
    path = source.path
    source.check(settings)
    if pipeline_factory is None:
        from streamgmm.ticks.keystate import make_pipeline

        pipeline_factory = make_pipeline
    summary = ReplaySummary()
    run = _Replay(
        settings, path.name, key_column(settings), pipeline_factory, output, dead_letters, summary
    )
    bar = Progress(count_rows(path) if progress else None, progress, progress_stream or sys.stderr)
    try:
        if source.is_parquet:
            rows = source.parquet_rows()
            while chunk := list(itertools.islice(rows, CHUNK_ROWS)):
                run.chunk(chunk)
                bar.update(len(chunk))
        else:
            with source.open_csv() as (names, reader):
                run.start_csv(names)
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
        self.rules = TickRules.from_settings(settings, keep_outputs=False, keep_labels=True)
        self.states: dict[str, KeyState] = {}
        self.readers: list[tuple[str, bool]] = []
        self.columns: CsvColumns | None = None

    def chunk(self, rows: list[dict[str, object]]) -> None:
        """Decode, apply and write one chunk of rows (the first numbered ``summary.rows``)."""
        first = self.summary.rows
        self.summary.rows += len(rows)
        by_key, rejected = group_by_key(
            (self._decode(row, row_number), None) for row_number, row in enumerate(rows, first)
        )
        runs = [(key, self.rules.apply(self._state(key), group)) for key, group in by_key.items()]
        self._write(runs, rejected, lambda row_number: rows[row_number - first])

    def start_csv(self, names: list[str]) -> None:
        """Take a CSV file's header: how its cells are read, and whether chunks of its rows can
        be decoded a column at a time (:meth:`chunk_cells`)."""
        self.readers = csv_readers(names, frozenset((self.key_column,)))
        self.columns = CsvColumns.of(names, self.key_column, self.settings)

    def chunk_cells(self, cells: list[list[str]]) -> None:
        """:meth:`chunk` for a chunk of CSV rows as read (lists of cells, no blank rows).

        Rows that are plain ticks (every cell there, numbers where numbers go, nothing any
        decoder check or size limit could refuse: :meth:`CsvColumns.plain`) are decoded a
        column at a time, straight into one :class:`TickBlock` per key; the others, one by
        one, as :meth:`chunk` does. A key with ticks of both kinds in the chunk has them
        merged back into row order and applied tick by tick.
        """
        readers = self.readers
        if self.columns is None:  # a header the column way cannot take: row by row
            self.chunk([row_dict(readers, row) for row in cells])
            return
        first = self.summary.rows
        self.summary.rows += len(cells)

        def row(row_number: int) -> dict[str, object]:
            return row_dict(readers, cells[row_number - first])

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
                runs.append((key, self.rules.apply_block(self._state(key), block)))
            else:
                merged = sorted([*((t, None) for t in block.ticks()), *single], key=_offset_of)
                runs.append((key, self.rules.apply(self._state(key), merged)))
        runs += [(key, self.rules.apply(self._state(key), group)) for key, group in by_key.items()]
        self._write(runs, rejected, row)

    def _state(self, key: str) -> KeyState:
        state = self.states.get(key)
        if state is None:
            state = self.states[key] = KeyState(self.pipeline_factory(self.settings), PARTITION)
        return state

    def _write(
        self,
        runs: list[tuple[str, KeyRun]],
        rejected: list[DeadLetter],
        row: Callable[[int], dict[str, object]],
    ) -> None:
        """Write the chunk's records and dead letters, each in row order; each key's records
        go into its figures."""
        summary = self.summary
        records: list[tuple[int, bytes]] = []
        for key, run in runs:
            records += run.records
            rejected += run.dead_letters
            summary.ticks += run.applied
            summary.skipped_out_of_order += run.skipped
            figures = summary.per_key.get(key)
            if figures is None:
                figures = summary.per_key[key] = KeyFigures()
            figures.ticks += run.applied
            for labels in run.labels:
                figures.observe(labels)
        # Back to row order: keys were applied one after the other.
        records.sort(key=_first)
        if records:
            self.output.write(b"\n".join(map(_second, records)) + b"\n")
        summary.records += len(records)
        if rejected:
            rejected.sort(key=_row_of)
            self._reject(rejected, row)

    def _decode(self, row: dict[str, object], row_number: int) -> Tick | DeadLetter:
        """The row as the service decodes the message ``produce`` sends for it.

        A row of plain values too short to be oversized is validated as the object that
        message parses to, without the JSON round trip
        (:func:`~streamgmm.replay.message.as_parsed_json`); its dead letters get their value
        bytes when written (:meth:`_reject`).
        """
        key = row.get(self.key_column)
        key_bytes = encode_key(key) if isinstance(key, str) else None
        literal = as_parsed_json(row, self.decoder)
        if literal is None:
            value = row_message(row, self.key_column)[1]
            return self.decoder.decode(key_bytes, value, self.topic, PARTITION, row_number)
        if literal:
            return non_finite_literal(key_bytes, literal, self.topic, PARTITION, row_number)
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


def _row_of(dl: DeadLetter) -> int:
    return dl.offset


#: A record's row number and its bytes (C-level getters: one call per record).
_first = operator.itemgetter(0)
_second = operator.itemgetter(1)


def _offset_of(item: tuple[Tick, bytes | None]) -> int:
    return item[0].offset
