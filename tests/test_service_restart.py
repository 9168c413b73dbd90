"""Clean stop (SIGTERM mid-stream) and restart of ``streamgmm run``, and replay parity.

One Kafka run is shared by both tests: 6,000 ticks on 3 instruments / 3 partitions, the
service is stopped with SIGTERM while ticks are still being produced, then restarted.
"""

from __future__ import annotations

import csv
import json
import signal
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import (
    REPO,
    KafkaTools,
    assert_records_close,
    last_per_key,
    make_ticks,
    service_config,
    start_service,
    uninterrupted_last,
)

from streamgmm.broker import EmbeddedBroker
from streamgmm.settings.layers import load_settings
from streamgmm.settings.service import Settings

pytestmark = pytest.mark.integration

SYMBOLS = ["AAA", "BBB", "CCC"]
N_PER_SYMBOL = 2000
TOTAL = N_PER_SYMBOL * len(SYMBOLS)
FIRST_BATCH = 1500


@dataclass
class KafkaRun:
    name: str
    settings: Settings
    config: Path
    ticks: list[dict[str, Any]]
    exit_codes: list[int]
    outputs_at_stop: list[dict[str, Any]]
    outputs: list[dict[str, Any]]
    logs: list[Path]


def _as_sent(ticks: list[dict[str, Any]]) -> list[tuple[bytes, bytes, int]]:
    return [
        (t["symbol"].encode(), json.dumps(t).encode(), SYMBOLS.index(t["symbol"])) for t in ticks
    ]


@pytest.fixture(scope="module")
def kafka_run(
    broker: EmbeddedBroker, tmp_path_factory: pytest.TempPathFactory, module_client: str
) -> KafkaRun:
    tools = KafkaTools(broker)
    tmp = tmp_path_factory.mktemp("restart")
    name = f"rs-{uuid.uuid4().hex[:8]}"
    broker.create_topics({f"{name}-in": 3})
    config = service_config(
        broker,
        name,
        tmp / "svc.toml",
        module_client,
        **{"checkpoint.every_records": 500, "checkpoint.every_seconds": 1.0},
    )
    settings = load_settings(config, {}, {})
    ticks = make_ticks(SYMBOLS, N_PER_SYMBOL, seed=2)
    sent = _as_sent(ticks)
    tools.send_all(f"{name}-in", sent[:FIRST_BATCH])

    logs = [tmp / "first.log", tmp / "second.log"]
    proc = start_service(config, logs[0])
    try:
        tools.read_all(settings.output_topic, expect=1000, timeout=90, idle=0.0)

        # Keep producing while the stop happens: the stream is live when SIGTERM lands.
        def produce_rest() -> None:
            rest = sent[FIRST_BATCH:]
            for i in range(0, len(rest), 150):
                tools.send_all(f"{name}-in", rest[i : i + 150])
                time.sleep(0.05)

        producer = threading.Thread(target=produce_rest)
        producer.start()
        time.sleep(0.3)
        proc.send_signal(signal.SIGTERM)
        first_code = proc.wait(60)
    finally:
        if proc.poll() is None:
            proc.kill()
    outputs_at_stop = [r.json() for r in tools.read_all(settings.output_topic, idle=1.0)]
    producer.join()

    proc = start_service(config, logs[1])
    try:
        outputs = [
            r.json()
            for r in tools.read_all(settings.output_topic, expect=TOTAL, timeout=120, idle=2.0)
        ]
        proc.send_signal(signal.SIGTERM)
        second_code = proc.wait(60)
    finally:
        if proc.poll() is None:
            proc.kill()
    return KafkaRun(
        name, settings, config, ticks, [first_code, second_code], outputs_at_stop, outputs, logs
    )


def test_sigterm_mid_stream_then_restart(kafka_run: KafkaRun) -> None:
    run = kafka_run
    assert run.exit_codes == [0, 0], run.logs[0].read_text()[-2000:]
    # Stopped mid-stream: part of the stream was processed before the stop, not all of it.
    assert 1000 <= len(run.outputs_at_stop) < TOTAL
    # The restart carried on, and a clean stop re-emits nothing: one record per tick.
    where = [(r["partition"], r["offset"]) for r in run.outputs]
    assert len(where) == TOTAL
    assert len(set(where)) == TOTAL
    # Final record per instrument equals an uninterrupted run, every tick applied once.
    got = last_per_key(run.outputs)
    want = uninterrupted_last(run.settings, _as_sent(run.ticks))
    assert set(got) == set(SYMBOLS)
    for key in SYMBOLS:
        assert got[key]["n_samples_seen"] == N_PER_SYMBOL
        assert_records_close(got[key], want[key])


def test_replay_matches_kafka_path(kafka_run: KafkaRun, tmp_path: Path) -> None:
    run = kafka_run
    csv_path = tmp_path / "ticks.csv"
    with open(csv_path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["symbol", "ts", "price", "volume"])
        writer.writeheader()
        writer.writerows(run.ticks)
    out_path = tmp_path / "replay.jsonl"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "streamgmm.cli",
            "replay",
            str(csv_path),
            "--output",
            str(out_path),
            "--config",
            str(run.config),
            "--no-progress",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    replayed = [json.loads(line) for line in out_path.read_text().splitlines() if line.strip()]
    last_replay: dict[str, dict[str, Any]] = {}
    for rec in replayed:
        last_replay[rec["key"]] = rec
    got = last_per_key(run.outputs)
    assert set(last_replay) == set(got) == set(SYMBOLS)
    for key in SYMBOLS:
        # Replay names the file, partition -1 and the row number instead of Kafka coordinates.
        assert_records_close(last_replay[key], got[key], skip=("topic", "partition", "offset"))
        assert last_replay[key]["n_samples_seen"] == N_PER_SYMBOL
