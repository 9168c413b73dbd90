"""Two instances in one group: a join moves partitions with their state, a kill fails over.

Instance A starts alone; instance B joins mid-stream (A checkpoints the revoked partitions in
its rebalance listener, B restores them from the changelog); then B is killed with SIGKILL and
A takes its partitions back after the session timeout. Every model must end exactly where an
uninterrupted run ends.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid
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

SYMBOLS = ["AAA", "BBB", "CCC", "DDD", "EEE", "FFF"]
N_PER_SYMBOL = 1000
PARTITIONS = 4


def _start(config: Path, log_path: Path) -> subprocess.Popen[bytes]:
    with open(log_path, "wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "streamgmm.cli", "run", "--config", str(config)],
            cwd=REPO, stdout=log, stderr=subprocess.STDOUT, env={**os.environ},
        )


def _wait_for(path: Path, text: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while text not in path.read_text():
        assert time.monotonic() < deadline, f"{text!r} not in {path}"
        time.sleep(0.1)


def test_join_and_failover_keep_models_exact(broker: EmbeddedBroker, tmp_path: Path) -> None:
    tools = KafkaTools(broker)
    name = f"fo-{uuid.uuid4().hex[:8]}"
    broker.create_topics({f"{name}-in": PARTITIONS})
    config = service_config(broker, name, tmp_path / "svc.toml",
                            **{"checkpoint.every_seconds": 0.5, "kafka.max_poll_records": 100})
    settings = load_settings(config, {}, {})
    ticks = make_ticks(SYMBOLS, N_PER_SYMBOL, seed=9)
    sent = [(t["symbol"].encode(), json.dumps(t).encode(), SYMBOLS.index(t["symbol"]) % PARTITIONS)
            for t in ticks]
    total = len(sent)
    stop_producing = threading.Event()

    def produce() -> None:
        # Paced so the stream spans the join and the failover (about 25 s).
        for i in range(0, total, 60):
            tools.send_all(f"{name}-in", sent[i:i + 60])
            time.sleep(0.25)
            if stop_producing.is_set():
                return

    logs = [tmp_path / "a.log", tmp_path / "b.log"]
    a = _start(config, logs[0])
    b = None
    producer = threading.Thread(target=produce)
    try:
        _wait_for(logs[0], "restored 4 partition(s)")
        producer.start()
        time.sleep(2.0)
        b = _start(config, logs[1])
        _wait_for(logs[1], "restored ", timeout=60)
        time.sleep(2.0)  # B processes its share for a while
        b.kill()
        b.wait(30)
        producer.join()
        deadline = time.monotonic() + 90
        while True:
            outputs = [r.json() for r in tools.read_all(settings.output_topic, idle=1.0)]
            if len({(r["partition"], r["offset"]) for r in outputs}) >= total or \
                    time.monotonic() > deadline:
                break
        a.terminate()
        assert a.wait(60) == 0
    finally:
        stop_producing.set()
        for proc in (a, b):
            if proc is not None and proc.poll() is None:
                proc.kill()

    log_a = logs[0].read_text()
    # A gave partitions to B (revoke with checkpoint), then took them back after the kill.
    assert log_a.count("partitions revoked") >= 1
    assert log_a.count("partitions assigned") >= 3
    assert len({(r["partition"], r["offset"]) for r in outputs}) == total
    got = last_per_key(outputs)
    want = uninterrupted_last(settings, sent)
    for key in SYMBOLS:
        assert got[key]["n_samples_seen"] == N_PER_SYMBOL, key
        assert_records_close(got[key], want[key])
