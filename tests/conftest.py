"""Shared fixtures: the embedded Kafka-protocol broker and small Kafka helpers for tests.

The broker is the same launcher the demo uses (:class:`streamgmm.broker.EmbeddedBroker`), one
per test session. Tests isolate themselves with unique topic and group names (``unique``).
"""

from __future__ import annotations

import itertools
import json
import math
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from streamgmm.broker import EmbeddedBroker

REPO = Path(__file__).resolve().parents[1]

# Short group timeouts: a group's first join waits about session_timeout_ms / 2.
TEST_SESSION_TIMEOUT_MS = 6000
TEST_HEARTBEAT_MS = 500


#: ``[kafka] client`` values: service tests whose outcome depends on the client run on each.
CLIENTS = ("kafka-python", "confluent")


@pytest.fixture(params=CLIENTS)
def client(request: pytest.FixtureRequest) -> str:
    """The ``[kafka] client`` the service under test uses; each test runs once per client."""
    return str(request.param)


@pytest.fixture(scope="module", params=CLIENTS)
def module_client(request: pytest.FixtureRequest) -> str:
    """As ``client``, for module-scoped services (one service per client per module)."""
    return str(request.param)


@pytest.fixture(scope="session")
def broker() -> Iterator[EmbeddedBroker]:
    """A tansu broker with memory storage on 127.0.0.1, shared by the whole session."""
    with EmbeddedBroker() as b:
        yield b


_counter = itertools.count()


@pytest.fixture
def unique() -> str:
    """A short name unique to this test, for topics and groups on the shared broker."""
    return f"t{os.getpid()}-{next(_counter)}-{uuid.uuid4().hex[:6]}"


@dataclass
class ConsumedRecord:
    """What the tests look at in a record read back from a topic."""

    key: bytes | None
    value: bytes | None
    headers: dict[str, bytes]
    partition: int
    offset: int

    def json(self) -> Any:
        assert self.value is not None
        return json.loads(self.value)


class KafkaTools:
    """Produce and read back records on the test broker, without a consumer group."""

    def __init__(self, broker: EmbeddedBroker) -> None:
        self.broker = broker

    def producer(self) -> KafkaProducer:
        return KafkaProducer(**self.broker.client_kwargs(), linger_ms=5)

    def send_all(self, topic: str, records: list[tuple[bytes | None, bytes | None, int]]) -> None:
        """Send ``(key, value, partition)`` triples in order and wait for all acks."""
        producer = self.producer()
        try:
            futures = [producer.send(topic, key=k, value=v, partition=p) for k, v, p in records]
            producer.flush()
            for f in futures:
                f.get(timeout=10)
        finally:
            producer.close()

    def read_all(
        self, topic: str, expect: int | None = None, timeout: float = 60.0, idle: float = 1.5
    ) -> list[ConsumedRecord]:
        """Read ``topic`` from the beginning of every partition.

        Stops once ``expect`` records were read (and nothing more arrived for ``idle``
        seconds), or when ``timeout`` passes.
        """
        consumer = KafkaConsumer(
            **self.broker.client_kwargs(), group_id=None, enable_auto_commit=False
        )
        try:
            deadline = time.monotonic() + timeout
            parts = consumer.partitions_for_topic(topic) or set()
            while not parts and time.monotonic() < deadline:
                # The service creates its output topics at start: wait for them.
                time.sleep(0.3)
                consumer.topics()
                parts = consumer.partitions_for_topic(topic) or set()
            tps = [TopicPartition(topic, p) for p in sorted(parts)]
            if not tps:
                return []
            consumer.assign(tps)
            consumer.seek_to_beginning(*tps)
            out: list[ConsumedRecord] = []
            last_new = time.monotonic()
            while time.monotonic() < deadline:
                batch = consumer.poll(timeout_ms=200)
                for tp, recs in batch.items():
                    for r in recs:
                        out.append(
                            ConsumedRecord(
                                r.key, r.value, dict(r.headers or []), tp.partition, r.offset
                            )
                        )
                    last_new = time.monotonic()
                if (
                    expect is not None
                    and len(out) >= expect
                    and time.monotonic() - last_new >= idle
                ):
                    break
                if expect is None and time.monotonic() - last_new >= idle:
                    break
            return out
        finally:
            consumer.close()

    def committed(self, group: str, topic: str) -> dict[int, int | None]:
        """The group's committed offsets per partition of ``topic``."""
        consumer = KafkaConsumer(
            **self.broker.client_kwargs(), group_id=group, enable_auto_commit=False
        )
        try:
            parts = consumer.partitions_for_topic(topic) or set()
            return {p: consumer.committed(TopicPartition(topic, p)) for p in sorted(parts)}
        finally:
            consumer.close()


@pytest.fixture
def kafka_tools(broker: EmbeddedBroker) -> KafkaTools:
    return KafkaTools(broker)


def start_service(config: Path, log_path: Path) -> subprocess.Popen[bytes]:
    """Start ``streamgmm run --config CONFIG`` as users run it, its output going to ``log_path``."""
    with open(log_path, "wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "streamgmm.cli", "run", "--config", str(config)],
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ},
        )


def service_config(
    broker: EmbeddedBroker, name: str, path: Path, client: str = "kafka-python", **extra: Any
) -> Path:
    """Write a TOML config for a test service instance and return its path.

    ``client`` is ``[kafka] client``; ``extra`` maps ``"section.key"`` to a value, e.g.
    ``{"checkpoint.every_records": 500}``.
    """
    sections: dict[str, dict[str, Any]] = {
        "kafka": {
            "client": client,
            "bootstrap_servers": broker.bootstrap_servers,
            "group_id": f"{name}-group",
            "session_timeout_ms": TEST_SESSION_TIMEOUT_MS,
            "heartbeat_interval_ms": TEST_HEARTBEAT_MS,
            "request_timeout_ms": 15000,
        },
        "topics": {"input": f"{name}-in"},
        "metrics": {"host": "127.0.0.1", "port": 0},
        "checkpoint": {"every_records": 1000, "every_seconds": 2.0},
    }
    return write_toml(path, sections, extra)


def write_toml(path: Path, sections: dict[str, dict[str, Any]], extra: dict[str, Any]) -> Path:
    """Write ``sections`` as a TOML config, ``extra`` (``"section.key"``: value) applied last."""
    for dotted, value in extra.items():
        section, key = dotted.split(".", 1)
        sections.setdefault(section, {})[key] = value
    lines: list[str] = []
    for section, values in sections.items():
        lines.append(f"[{section}]")
        lines.extend(f"{key} = {json.dumps(value)}" for key, value in values.items())
    path.write_text("\n".join(lines) + "\n")
    return path


def make_ticks(symbols: list[str], n_per_symbol: int, seed: int = 0) -> list[dict[str, Any]]:
    """Valid market ticks with two volatility regimes, interleaved across symbols.

    Timestamps rise strictly per symbol (one trading day apart), so no tick is a duplicate or
    out of order and every tick counts towards ``n_samples_seen``.
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    ticks: list[dict[str, Any]] = []
    for s_idx, symbol in enumerate(symbols):
        price = 100.0 + 10.0 * s_idx
        for i in range(n_per_symbol):
            vol = 0.03 if (i // 300) % 2 else 0.008
            price *= float(np.exp(rng.normal(0.0, vol)))
            ticks.append(
                {
                    "symbol": symbol,
                    "ts": 1.0e9 + 86400.0 * i,
                    "price": round(price, 6),
                    "volume": float(rng.integers(1_000, 100_000)),
                }
            )
    # Interleave by time so partitions fill together, as a live feed would.
    ticks.sort(key=lambda t: (t["ts"], t["symbol"]))
    return ticks


def last_per_key(outputs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The output record with the highest source offset, per key."""
    last: dict[str, dict[str, Any]] = {}
    for rec in outputs:
        if rec["key"] not in last or rec["offset"] > last[rec["key"]]["offset"]:
            last[rec["key"]] = rec
    return last


def assert_records_close(
    got: dict[str, Any], want: dict[str, Any], skip: tuple[str, ...] = ()
) -> None:
    """Output records agree: same fields, floats (and probabilities) within 1e-9."""
    assert set(got) == set(want)
    for field, value in want.items():
        if field in skip:
            continue
        if isinstance(value, dict):
            assert set(got[field]) == set(value), field
            for k, v in value.items():
                assert math.isclose(got[field][k], v, rel_tol=0, abs_tol=1e-9), (field, k)
        elif isinstance(value, float):
            assert math.isclose(got[field], value, rel_tol=1e-12, abs_tol=1e-9), field
        else:
            assert got[field] == value, field


def uninterrupted_last(
    settings: Any, sent: list[tuple[bytes, bytes, int]]
) -> dict[str, dict[str, Any]]:
    """Last output record per key of one detector per key fed every sent tick once, in order.

    ``sent`` holds ``(key, value, partition)`` as produced; offsets are counted per partition.
    """
    from streamgmm.ticks.decode import TickDecoder
    from streamgmm.ticks.encode import build_output_record, encode_output
    from streamgmm.ticks.keystate import make_pipeline
    from streamgmm.ticks.tick import Tick

    decoder = TickDecoder(settings)
    pipelines: dict[str, Any] = {}
    offsets: dict[int, int] = {}
    last: dict[str, dict[str, Any]] = {}
    for key, value, partition in sent:
        offset = offsets.get(partition, 0)
        offsets[partition] = offset + 1
        tick = decoder.decode(key, value, settings.input_topic, partition, offset)
        assert isinstance(tick, Tick)
        pipe = pipelines.setdefault(tick.key, make_pipeline(settings))
        out = pipe.learn_predict_one({"ts": tick.ts, **tick.fields})
        last[tick.key] = json.loads(encode_output(build_output_record(tick, out)))
    return last


@contextmanager
def open_changelog(
    broker: EmbeddedBroker, unique: str, client_name: str = "kafka-python"
) -> Iterator[tuple[Any, Any]]:
    """A :class:`~streamgmm.service.checkpoint.Changelog` on a fresh one-partition topic
    ``<unique>.changelog`` of ``broker``, with the snapshot producer it writes through, over
    ``[kafka] client = client_name``; both closed afterwards."""
    from streamgmm.service.checkpoint import Changelog
    from streamgmm.service.kafka import get_client
    from streamgmm.settings.layers import load_settings

    topic = f"{unique}.changelog"
    broker.create_topics({topic: 1})
    env = {
        "STREAMGMM_KAFKA_CLIENT": client_name,
        "STREAMGMM_KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap_servers,
        "STREAMGMM_KAFKA_GROUP_ID": unique,
    }
    settings = load_settings(None, env, {})
    client = get_client(client_name)
    producer = client.make_producer(client.client_config(settings), output=False)
    reader = client.make_reader(settings)
    try:
        yield Changelog(topic, producer, reader, 1, timeout_ms=10000), producer
    finally:
        reader.close()
        producer.close(timeout=5)
