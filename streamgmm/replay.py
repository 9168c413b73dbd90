"""``streamgmm replay FILE --output OUT``: the service's per-key pipeline over a file, no Kafka.

Each row of a CSV or Parquet file of ticks (columns ``symbol, ts, price, volume`` for market
ticks; ``symbol, ts, <event fields>`` for event ticks) is turned into the JSON message that
``streamgmm produce`` would send, then goes through the service's own steps: the same
:class:`~streamgmm.service.codec.TickDecoder` validation, the same out-of-order rule, the same
per-key pipeline factory (:func:`streamgmm.service.pipelines.make_pipeline`), the same output
record builder and emit policy. So for the same ticks the last record per key equals the
Kafka path's (apart from ``topic``, ``partition`` and ``offset``: replay writes the file name,
partition -1 and the 0-based row number).

CSV cells are text: an empty cell is an absent field, the ``symbol`` column (and
``[input] key_field``, if set) stays text, and any other cell that reads as a number is a
number; other text is kept as text (``ts`` as ISO-8601, anything else is a wrong type).
Output is JSON lines, one output record per line. Rejected rows are counted by reason and,
with ``--dead-letters FILE``, written there as JSON lines.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import IO, Any

from streamgmm.service.codec import DeadLetter, TickDecoder, encode_key
from streamgmm.service.config import ConfigError, Settings, load_settings
from streamgmm.service.records import encode_output_record, is_out_of_order, should_emit

__all__ = [
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
_BATCH_ROWS = 8192


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


def _csv_rows(path: Path, string_columns: frozenset[str]) -> Iterator[dict[str, object]]:
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        for raw in reader:
            row: dict[str, object] = {}
            for name, text in raw.items():
                if name is None or text is None or text == "":
                    continue  # extra cells without a header, short rows, empty cells
                row[name] = text if name in string_columns else _cell(text)
            yield row


def _plain(value: object) -> object:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if hasattr(value, "item"):  # NumPy scalars
        return value.item()  # type: ignore[no-any-return, union-attr]
    return value


def _open_parquet(path: Path) -> Any:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise ReplayError(
            "reading Parquet needs pyarrow, which is not installed (pip install pyarrow)"
        ) from None
    try:
        return pq.ParquetFile(path)
    except Exception as exc:
        raise ReplayError(f"cannot read {path} as Parquet: {exc}") from None


def _parquet_rows(path: Path) -> Iterator[dict[str, object]]:
    for batch in _open_parquet(path).iter_batches(batch_size=_BATCH_ROWS):
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
            import pyarrow.parquet as pq

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
    value = json.dumps(dict(row), separators=(",", ":"), ensure_ascii=False, default=str)
    return key_bytes, value.encode("utf-8")


def _required_columns(settings: Settings) -> list[str]:
    needed = ["ts"]
    needed += list(settings.event_fields) if settings.tick_kind == "event" else ["price"]
    needed.append(settings.key_field or "symbol")
    return needed


# --------------------------------------------------------------------------- progress


class _Progress:
    """tqdm when installed, else a plain progress line on stderr."""

    def __init__(self, total: int | None, enabled: bool, stream: IO[str]) -> None:
        self.total = total
        self.done = 0
        self.enabled = enabled
        self.stream = stream
        self._bar: Any = None
        self._last = 0.0
        self._shown = -1
        self._tty = bool(getattr(stream, "isatty", lambda: False)())
        if enabled:
            try:
                from tqdm import tqdm
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
    pipeline_factory: Callable[[Settings], Any] | None = None,
    dead_letters: IO[bytes] | None = None,
    progress: bool = False,
    progress_stream: IO[str] | None = None,
) -> ReplaySummary:
    """Run the per-key pipeline over a file of ticks and write output records as JSON lines.

    Parameters
    ----------
    path
        CSV or Parquet file of ticks.
    output
        Binary stream receiving one JSON output record per line.
    settings
        Service settings: decoding (``[input]``), emit policy and detector parameters.
    pipeline_factory
        Builds a key's pipeline; :func:`streamgmm.service.pipelines.make_pipeline` by default.
    dead_letters
        Optional binary stream receiving one JSON line per rejected row
        (``row``, ``reason``, ``detail``, ``key``, ``value``).
    progress
        Show progress on ``progress_stream`` (stderr by default).

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
        from streamgmm.service.pipelines import make_pipeline

        pipeline_factory = make_pipeline
    key_column = settings.key_field or "symbol"
    decoder = TickDecoder(settings)
    topic = path.name
    pipelines: dict[str, Any] = {}
    last_ts: dict[str, float] = {}
    last_regime: dict[str, int] = {}
    summary = ReplaySummary()
    bar = _Progress(count_rows(path) if progress else None, progress, progress_stream or sys.stderr)

    def reject(row_number: int, dl: DeadLetter) -> None:
        summary.dead_letters[dl.reason] += 1
        if dead_letters is not None:
            line = {
                "row": row_number,
                "reason": dl.reason,
                "detail": dl.detail,
                "key": dl.key.decode("utf-8", "replace") if dl.key is not None else None,
                "value": dl.value.decode("utf-8", "replace") if dl.value is not None else None,
            }
            dead_letters.write(json.dumps(line, ensure_ascii=False).encode("utf-8") + b"\n")

    pending = 0
    try:
        for row_number, row in enumerate(iter_rows(path, (key_column,))):
            summary.rows += 1
            pending += 1
            if pending >= 256:
                bar.update(pending)
                pending = 0
            key_bytes, value = row_message(row, key_column)
            tick = decoder.decode(key_bytes, value, topic, PARTITION, row_number)
            if isinstance(tick, DeadLetter):
                reject(row_number, tick)
                continue
            if is_out_of_order(last_ts.get(tick.key), tick.ts):
                if settings.out_of_order == "skip":
                    summary.skipped_out_of_order += 1
                else:
                    detail = f"ts {tick.ts!r} is before the key's last ts {last_ts[tick.key]!r}"
                    reject(row_number, DeadLetter(
                        key_bytes, value, "out_of_order", detail, topic, PARTITION, row_number
                    ))  # fmt: skip
                continue
            pipeline = pipelines.get(tick.key)
            if pipeline is None:
                pipeline = pipelines[tick.key] = pipeline_factory(settings)
            try:
                out = pipeline.learn_predict_one({"ts": tick.ts, **tick.fields})
            except ValueError as exc:
                # As in the runner: the model refused the tick and kept its state unchanged.
                reject(row_number, DeadLetter(
                    key_bytes, value, "rejected_by_model", f"model: {exc}", topic, PARTITION,
                    row_number,
                ))  # fmt: skip
                continue
            last_ts[tick.key] = tick.ts
            summary.ticks += 1
            if should_emit(
                settings.emit_policy, settings.emit_every_n, out, last_regime.get(tick.key)
            ):
                output.write(encode_output_record(tick, out) + b"\n")
                summary.records += 1
            last_regime[tick.key] = int(out["regime"])
    except UnicodeDecodeError as exc:
        raise ReplayError(
            f"{path} is not UTF-8 text ({exc.reason}); is it a Parquet file?"
        ) from None
    except csv.Error as exc:
        raise ReplayError(f"cannot parse {path} as CSV: {exc}") from None
    finally:
        bar.update(pending)
        bar.close()
    summary.keys = len(pipelines)
    return summary


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
    parser.add_argument("--config", metavar="FILE", default=None, help="TOML configuration file")
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
        settings = load_settings(args.config, os.environ, {})
    except ConfigError as exc:
        print(f"streamgmm replay: error: {exc}", file=sys.stderr)
        return 2
    out_handle: IO[bytes] | None = None
    dl_handle: IO[bytes] | None = None
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
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
