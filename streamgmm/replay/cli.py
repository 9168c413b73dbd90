"""``streamgmm replay FILE --output OUT``: the command's arguments, its settings and its summary.

The records are written as JSON lines, or with ``--format csv`` as one flat table
(:mod:`~streamgmm.replay.table`).

The summary, on stderr: the rows, ticks, records and rejections by reason, then a table of
each key's figures (:mod:`~streamgmm.replay.summary`).

Exit codes: 0; :data:`~streamgmm.exits.EXIT_USAGE` for a bad setting or an input file that
cannot be replayed (with one line on stderr saying why); :data:`~streamgmm.exits.EXIT_FAILURE`
when no row could be applied (every row rejected, or none at all).
"""

from __future__ import annotations

import argparse
import gc
import sys
from typing import IO

from streamgmm._precompile import compile_if_cold
from streamgmm.exits import EXIT_FAILURE, EXIT_USAGE
from streamgmm.replay.files import ReplayError, add_file_arguments, tick_file
from streamgmm.replay.run import ReplaySummary, replay
from streamgmm.replay.summary import summary_table
from streamgmm.replay.table import CsvRecords
from streamgmm.settings.flags import add_cli_overrides, command_settings

__all__ = ["main"]

#: Keys whose figures, and whose stream problem, the summary shows, one line each; the rest
#: are counted.
_KEYS_SHOWN = 20


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="streamgmm replay",
        description="Run the service's per-key regime pipeline over a CSV or Parquet file of "
        "ticks (columns symbol, ts, price, volume) and write its output records, as JSON "
        "lines or as a CSV table.",
    )
    parser.add_argument("file", metavar="FILE", help="CSV or Parquet (.parquet) file of ticks")
    parser.add_argument(
        "--output", "-o", metavar="OUT", required=True, help="output file ('-': stdout)"
    )
    parser.add_argument(
        "--format",
        choices=("jsonl", "csv"),
        default="jsonl",
        help="jsonl (default): one JSON record per line; csv: a table with a header, one "
        "column per field and one per regime probability (p_calm, p_turbulent, ...)",
    )
    add_file_arguments(parser)
    add_cli_overrides(parser, kafka_flags=False)
    parser.add_argument(
        "--dead-letters", metavar="FILE", default=None, help="write rejected rows here (JSON lines)"
    )
    parser.add_argument("--no-progress", action="store_true", help="do not show progress")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``streamgmm replay``; ``argv`` excludes the subcommand name.

    Returns 0 on success, :data:`~streamgmm.exits.EXIT_USAGE` for a bad configuration or an
    unusable input file, and :data:`~streamgmm.exits.EXIT_FAILURE` when no row could be applied.
    """
    args = _parser().parse_args(argv)
    settings = command_settings(args, "streamgmm replay")
    if settings is None:
        return EXIT_USAGE
    out_handle: IO[bytes] | None = None
    dl_handle: IO[bytes] | None = None
    # The objects imports made (numba, river, ...) live as long as the process: moved out of
    # the collector's sight, its full collections stop walking them every few thousand rows
    # (about a fifth of a replay's time otherwise).
    gc.freeze()
    try:
        source = tick_file(args)
        source.check(settings)  # before compiling: a file that cannot be replayed says so now
        compile_if_cold()
        out_handle = sys.stdout.buffer if args.output == "-" else open(args.output, "wb")  # noqa: SIM115
        records: IO[bytes] = out_handle
        if args.format == "csv":
            records = CsvRecords(out_handle, settings.regime_names)  # type: ignore[assignment]
        if args.dead_letters:
            dl_handle = open(args.dead_letters, "wb")  # noqa: SIM115
        summary = replay(
            source,
            records,
            settings,
            dead_letters=dl_handle,
            progress=not args.no_progress,
        )
    except ReplayError as exc:
        print(f"streamgmm replay: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:
        print(f"streamgmm replay: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
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
    if summary.per_key:
        print("\n".join(summary_table(summary.per_key, _KEYS_SHOWN)), file=sys.stderr)
    problems = list(summary.stream_problems.items())
    for key, problem in problems[:_KEYS_SHOWN]:
        print(f"streamgmm replay: key {key!r} gives no regimes: {problem}", file=sys.stderr)
    if len(problems) > _KEYS_SHOWN:
        print(
            f"streamgmm replay: {len(problems) - _KEYS_SHOWN} more keys give no regimes",
            file=sys.stderr,
        )
    if summary.ticks == 0:
        print(f"streamgmm replay: error: {_nothing_applied(summary)}", file=sys.stderr)
        return EXIT_FAILURE
    return 0


def _nothing_applied(summary: ReplaySummary) -> str:
    """Why no row could be applied, in one line."""
    if not summary.rows:
        return "no row could be applied: the file has no rows"
    if not summary.dead_letters:
        return "no row could be applied: every row was out of order and skipped"
    reason, count = summary.dead_letters.most_common(1)[0]
    hint = {
        "ts_jump": "the timestamps are far ahead of the clock: is [input] ts_unit right?",
        "empty_key": "is the key column right? (--columns symbol=COLUMN, [input] key_field)",
    }.get(reason, "--dead-letters FILE shows each row's reason")
    return f"no row could be applied ({count} of {summary.rows} rows rejected as {reason}); {hint}"


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
