"""``streamgmm consume TOPIC``: print a topic's records, to watch the service by hand.

One line per record: its key, a tab, its value (UTF-8 text), and, when the record has headers
(a dead letter's ``streamgmm.reason`` and ``streamgmm.detail``), a tab and the headers as a
JSON object. ``--pretty`` prints each record as a heading (key, partition, offset, headers)
over its value indented as JSON. It reads every partition, without a consumer group (nothing
is committed): from the end of each partition (records that arrive from now on), or with
``--from-beginning`` from its start. It waits for a topic that does not exist yet (the service
creates its output topics when it starts), and stops after ``--limit`` records, after
``--timeout`` seconds without a record, or on Ctrl-C or SIGTERM, with exit code 0 (1 when the
topic still does not exist after ``--timeout`` seconds, or no broker answers).
Connection settings come from the same configuration layers as ``streamgmm run``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from typing import Any, TextIO

from streamgmm.exits import EXIT_FAILURE, EXIT_USAGE, interrupt_on_stop_signals
from streamgmm.settings.flags import add_cli_overrides, command_settings
from streamgmm.settings.layers import did_you_mean

__all__ = ["format_record", "main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="streamgmm consume",
        description="Print the records of a Kafka topic: key, value and headers, one record "
        "a line (or --pretty).",
    )
    parser.add_argument("topic", metavar="TOPIC", help="the topic to read")
    parser.add_argument(
        "--from-beginning",
        action="store_true",
        help="start at the beginning of each partition (default: at its end, new records only)",
    )
    parser.add_argument("--limit", type=int, default=None, metavar="N", help="stop after N records")
    parser.add_argument(
        "--timeout",
        type=float,
        default=None,
        metavar="SECONDS",
        help="stop when no record arrived for this long (default: wait for ever)",
    )
    parser.add_argument(
        "--pretty", action="store_true", help="a heading per record and its value as indented JSON"
    )
    parser.add_argument(
        "--bootstrap-servers", default=None, help="Kafka bootstrap servers, host:port[,...]"
    )
    add_cli_overrides(parser, kafka_flags=False)
    return parser


def _text(raw: bytes | None) -> str:
    return "null" if raw is None else bytes(raw).decode("utf-8", "replace")


def format_record(
    key: bytes | None,
    value: bytes | None,
    headers: Sequence[tuple[str, bytes | None]],
    partition: int,
    offset: int,
    pretty: bool = False,
) -> str:
    """A record as ``streamgmm consume`` prints it (see the module's text)."""
    named = {name: _text(raw) for name, raw in headers}
    if not pretty:
        line = f"{_text(key)}\t{_text(value)}"
        return line + (f"\t{json.dumps(named, ensure_ascii=False)}" if named else "")
    lines = [f"key {_text(key)}  partition {partition}  offset {offset}"]
    lines += [f"  {name}: {text}" for name, text in named.items()]
    try:
        body: Any = json.loads(value) if value is not None else None
        lines.append(json.dumps(body, indent=2, ensure_ascii=False))
    except ValueError:
        lines.append(_text(value))
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None, out: TextIO | None = None) -> int:
    """Entry point of ``streamgmm consume``; ``argv`` excludes the subcommand name.

    Returns 0 when it stops as asked (``--limit``, ``--timeout``, Ctrl-C, SIGTERM),
    :data:`~streamgmm.exits.EXIT_USAGE` for a bad setting or argument, and
    :data:`~streamgmm.exits.EXIT_FAILURE` when the broker cannot be reached.
    """
    out = out or sys.stdout
    args = _parser().parse_args(argv)
    for name, value in (("--limit", args.limit), ("--timeout", args.timeout)):
        if value is not None and not value > 0:
            print(f"streamgmm consume: error: {name} must be > 0, got {value}", file=sys.stderr)
            return EXIT_USAGE
    settings = command_settings(args, "streamgmm consume")
    if settings is None:
        return EXIT_USAGE

    from kafka import KafkaConsumer, TopicPartition
    from kafka.errors import KafkaError

    from streamgmm.service.kafka import BrokerError, ensure_reachable
    from streamgmm.service.kafka.kafka_python import kafka_client_kwargs

    servers = ",".join(settings.bootstrap_servers)
    interrupt_on_stop_signals()
    consumer: KafkaConsumer | None = None
    try:
        # kafka-python waits for ever for a broker that is not there: ask the sockets first.
        ensure_reachable(settings.bootstrap_servers)
        consumer = KafkaConsumer(
            **kafka_client_kwargs(settings), group_id=None, enable_auto_commit=False
        )
        partitions = _wait_for_topic(consumer, args.topic, args.timeout)
        if not partitions:
            hint = did_you_mean(args.topic, consumer.topics())
            print(
                f"streamgmm consume: error: no topic {args.topic} after {args.timeout:g} s{hint}",
                file=sys.stderr,
            )
            return EXIT_FAILURE
        tps = [TopicPartition(args.topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        if args.from_beginning:
            consumer.seek_to_beginning(*tps)
        else:
            _seek_to_end(consumer, tps)
        shown = 0
        last = time.monotonic()
        while args.limit is None or shown < args.limit:
            batch = consumer.poll(timeout_ms=200)
            for tp, records in batch.items():
                for record in records:
                    text = format_record(
                        record.key,
                        record.value,
                        record.headers or [],
                        tp.partition,
                        record.offset,
                        args.pretty,
                    )
                    print(text, file=out, flush=True)
                    shown += 1
                    if args.limit is not None and shown >= args.limit:
                        break
                if args.limit is not None and shown >= args.limit:
                    break
            if batch:
                last = time.monotonic()
            elif args.timeout is not None and time.monotonic() - last >= args.timeout:
                break
    except (KafkaError, BrokerError) as exc:
        print(f"streamgmm consume: cannot read {args.topic} from {servers}: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        pass
    finally:
        if consumer is not None:
            consumer.close()
    return 0


def _seek_to_end(consumer: Any, tps: list[Any], timeout: float = 10.0) -> None:
    """Put each partition's position at its end: the high watermark of a first fetch.

    The end offset a broker lists can fall short of the end (the embedded broker lists the
    last record batch's base offset plus one), so the position is moved on to the high
    watermark a fetch reports, and what that fetch returned is dropped: it was there before.
    """
    consumer.seek_to_end(*tps)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        consumer.poll(timeout_ms=200)
        ends = {tp: consumer.highwater(tp) for tp in tps}
        if all(end is not None for end in ends.values()):
            for tp, end in ends.items():
                consumer.seek(tp, end)
            return


def _wait_for_topic(consumer: Any, topic: str, timeout: float | None) -> set[int]:
    """The topic's partitions, once it exists (none after ``timeout`` seconds); says once on
    stderr that it waits, and which topic it may have meant."""
    said = False
    deadline = None if timeout is None else time.monotonic() + timeout
    while deadline is None or time.monotonic() < deadline:
        topics = consumer.topics()  # a metadata request: raises if no broker answers
        partitions = consumer.partitions_for_topic(topic) if topic in topics else None
        if partitions:
            return set(partitions)
        if not said:
            hint = did_you_mean(topic, topics)
            print(
                f"streamgmm consume: waiting for topic {topic} to exist{hint.replace(';', ',')}",
                file=sys.stderr,
            )
            said = True
        time.sleep(0.5)
    return set()
