"""``streamgmm produce FILE --topic T``: send a CSV (or Parquet) of ticks to a Kafka topic.

Each row becomes one JSON record, keyed by its ``symbol`` (or ``[input] key_field``), in
file order; the rows are read and converted exactly as ``streamgmm replay`` reads and converts
them (the same ``--columns`` and ``--delimiter``, the same check that the file has the columns
a tick needs, made before anything is sent), so a replay of the same file predicts the
service's output. Connection settings (bootstrap servers, api_version, SASL/SSL) come from the
same configuration layers as ``streamgmm run``.
"""

from __future__ import annotations

import argparse
import sys
import time

from streamgmm.exits import EXIT_FAILURE, EXIT_USAGE
from streamgmm.replay.files import ReplayError, add_file_arguments, key_column, tick_file
from streamgmm.replay.message import row_message
from streamgmm.settings.flags import add_cli_overrides, command_settings

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="streamgmm produce",
        description="Send a CSV or Parquet file of ticks (columns symbol, ts, price, volume) "
        "to a Kafka topic, one JSON record per row, keyed by symbol.",
    )
    parser.add_argument("file", metavar="FILE", help="CSV or Parquet (.parquet) file of ticks")
    parser.add_argument(
        "--topic", default=None, help="destination topic (default: [topics] input of the config)"
    )
    parser.add_argument(
        "--bootstrap-servers", default=None, help="Kafka bootstrap servers, host:port[,...]"
    )
    add_file_arguments(parser)
    add_cli_overrides(parser, kafka_flags=False)
    parser.add_argument(
        "--rate",
        type=float,
        default=None,
        help="records per second to send at (default: as fast as possible)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``streamgmm produce``; ``argv`` excludes the subcommand name.

    Returns 0 when every record was acknowledged, :data:`~streamgmm.exits.EXIT_FAILURE` on a
    Kafka failure, and :data:`~streamgmm.exits.EXIT_USAGE` for a bad configuration or an
    unreadable file.
    """
    args = _parser().parse_args(argv)
    # --bootstrap-servers is among the flags command_settings reads.
    settings = command_settings(args, "streamgmm produce", {"input_topic": args.topic})
    if settings is None:
        return EXIT_USAGE
    if args.rate is not None and not args.rate > 0:
        print(f"streamgmm produce: error: --rate must be > 0, got {args.rate}", file=sys.stderr)
        return EXIT_USAGE
    column = key_column(settings)
    try:
        source = tick_file(args)
        source.check(settings)
    except ReplayError as exc:
        print(f"streamgmm produce: error: {exc}", file=sys.stderr)
        return EXIT_USAGE

    from kafka import KafkaProducer
    from kafka.errors import KafkaError

    from streamgmm.service.kafka.kafka_python import kafka_client_kwargs

    failures: list[BaseException] = []
    try:
        # max_block_ms bounds the wait for topic metadata, so an unreachable broker is
        # reported in seconds rather than after kafka-python's default minute.
        producer = KafkaProducer(
            **kafka_client_kwargs(settings), acks="all", linger_ms=5, max_block_ms=15000
        )
    except KafkaError as exc:
        print(
            f"streamgmm produce: cannot connect to {','.join(settings.bootstrap_servers)}: {exc}",
            file=sys.stderr,
        )
        return EXIT_FAILURE
    sent = 0
    start = time.monotonic()
    try:
        for row in source.rows((column,)):
            key, value = row_message(row, column)
            producer.send(settings.input_topic, key=key, value=value).add_errback(failures.append)
            sent += 1
            if args.rate is not None:
                # Pace against the start time, so sleeping never accumulates drift.
                delay = start + sent / args.rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
        producer.flush()
    except (ReplayError, UnicodeDecodeError) as exc:
        print(f"streamgmm produce: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KafkaError as exc:
        servers = ",".join(settings.bootstrap_servers)
        print(
            f"streamgmm produce: Kafka error after {sent} records (is a broker reachable at "
            f"{servers}?): {exc}",
            file=sys.stderr,
        )
        return EXIT_FAILURE
    finally:
        producer.close(timeout=10)
    if failures:
        print(
            f"streamgmm produce: {len(failures)} of {sent} records failed, first: {failures[0]}",
            file=sys.stderr,
        )
        return EXIT_FAILURE
    print(f"streamgmm produce: sent {sent} records to {settings.input_topic}", file=sys.stderr)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
