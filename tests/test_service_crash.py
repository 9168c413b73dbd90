"""SIGKILL mid-stream, twice, then restart: models exact, outputs at-least-once.

A killed service loses what happened since its last checkpoint; on restart it replays from the
committed offsets and skips, per key, every record already inside that key's snapshot. The
final record per key must equal an uninterrupted run, with every tick applied exactly once.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections import defaultdict
from pathlib import Path

import pytest
from conftest import (
    REPO,
    KafkaTools,
    assert_records_close,
    last_per_key,
    make_ticks,
    service_config,
    uninterrupted_last,
)

from streamgmm.broker import EmbeddedBroker
from streamgmm.service.config import load_settings

pytestmark = pytest.mark.integration

SYMBOLS = ["AAA", "BBB", "CCC", "DDD", "EEE"]
N_PER_SYMBOL = 1200


def _start(config: Path, log_path: Path) -> subprocess.Popen[bytes]:
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "streamgmm.cli", "run", "--config", str(config)],
            cwd=REPO, stdout=log, stderr=subprocess.STDOUT, env={**os.environ},
        )


def test_sigkill_restart_is_exact(broker: EmbeddedBroker, tmp_path: Path) -> None:
    tools = KafkaTools(broker)
    name = f"ck-{uuid.uuid4().hex[:8]}"
    broker.create_topics({f"{name}-in": 3})
    # Small checkpoint interval and small polls: kills land between checkpoints.
    config = service_config(
        broker, name, tmp_path / "svc.toml",
        **{"checkpoint.every_records": 400, "checkpoint.every_seconds": 0.5,
           "kafka.max_poll_records": 100},
    )
    settings = load_settings(config, {}, {})
    ticks = make_ticks(SYMBOLS, N_PER_SYMBOL, seed=5)
    # Five keys on three partitions: partitions carry several keys each.
    sent = [(t["symbol"].encode(), json.dumps(t).encode(), SYMBOLS.index(t["symbol"]) % 3)
            for t in ticks]
    total = len(sent)

    kills_done = threading.Event()

    def produce() -> None:
        # Slow (~130 ticks/s) until both kills have landed, so they hit a live stream; then
        # the rest at full speed.
        for i in range(0, total, 100):
            tools.send_all(f"{name}-in", sent[i:i + 100])
            if not kills_done.is_set():
                time.sleep(0.75)

    log_path = tmp_path / "service.log"
    producer = threading.Thread(target=produce, daemon=True)
    proc = _start(config, log_path)
    producer.start()
    try:
        for threshold in (1000, 2000):
            tools.read_all(settings.output_topic, expect=threshold, timeout=90, idle=0.0)
            assert producer.is_alive(), "the stream ended before the kill"
            proc.kill()
            proc.wait(30)
            proc = _start(config, log_path)
        kills_done.set()
        producer.join()
        # Everything is processed once the last offset of every partition has an output.
        deadline = time.monotonic() + 120
        while True:
            outputs = [r.json() for r in tools.read_all(settings.output_topic, idle=1.0)]
            done = {(r["partition"], r["offset"]) for r in outputs}
            if len(done) >= total or time.monotonic() > deadline:
                break
        proc.terminate()
        assert proc.wait(60) == 0
    finally:
        kills_done.set()
        if proc.poll() is None:
            proc.kill()

    # At-least-once output: every tick has an output; repeats are identical records.
    by_source: dict[tuple[int, int], list[dict]] = defaultdict(list)
    for rec in outputs:
        by_source[(rec["partition"], rec["offset"])].append(rec)
    assert len(by_source) == total
    for recs in by_source.values():
        for rec in recs[1:]:
            assert_records_close(rec, recs[0])
    # Exactly-once effect on each model.
    got = last_per_key(outputs)
    want = uninterrupted_last(settings, sent)
    for key in SYMBOLS:
        assert got[key]["n_samples_seen"] == N_PER_SYMBOL
        assert_records_close(got[key], want[key])
    assert log_path.read_text().count("restored 3 partition(s)") >= 3
