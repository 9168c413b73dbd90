"""A broker restart does not kill ``streamgmm run``: it reconnects and carries on.

Uses its own broker, since the restart wipes memory storage. The topics are recreated after
the restart, as an operator of a memory-backed broker would have to.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO, KafkaTools, make_ticks, service_config

from streamgmm.broker import EmbeddedBroker

pytestmark = pytest.mark.integration

SYMBOLS = ["AAA", "BBB", "CCC"]


def test_service_survives_broker_restart(tmp_path: Path) -> None:
    with EmbeddedBroker() as broker:
        tools = KafkaTools(broker)
        broker.create_topics({"br-in": 3})
        config = service_config(broker, "br", tmp_path / "svc.toml",
                                **{"checkpoint.every_seconds": 1.0})
        ticks = make_ticks(SYMBOLS, 400, seed=3)
        sent = [(t["symbol"].encode(), json.dumps(t).encode(), SYMBOLS.index(t["symbol"]))
                for t in ticks]
        tools.send_all("br-in", sent[:600])
        log_path = tmp_path / "service.log"
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "streamgmm.cli", "run", "--config", str(config)],
                cwd=REPO, stdout=log, stderr=subprocess.STDOUT, env={**os.environ},
            )
        try:
            before = tools.read_all("br-in.regimes", expect=600, timeout=90, idle=0.5)
            assert len(before) == 600

            broker.stop(timeout=1.0)
            time.sleep(2.0)
            assert proc.poll() is None, "the service died with the broker"
            broker.start()
            broker.create_topics({"br-in": 3})

            tools.send_all("br-in", sent[600:])
            after = tools.read_all("br-in.regimes", expect=600, timeout=90, idle=1.0)
            assert proc.poll() is None
        finally:
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(60)
        text = log_path.read_text()
        assert code == 0, text[-3000:]
    # Memory storage started empty, so the new output topic holds the new ticks, each at least
    # once (a produce that failed while the broker came back is redone after a rewind).
    assert {(r.json()["partition"], r.json()["offset"]) for r in after} == {
        (p, o) for p in range(3) for o in range(200)
    }
    # Fresh models (their old state went with the broker's memory) saw each new tick once.
    last = {}
    for r in after:
        rec = r.json()
        if rec["key"] not in last or rec["offset"] >= last[rec["key"]]["offset"]:
            last[rec["key"]] = rec
    assert {k: v["n_samples_seen"] for k, v in last.items()} == dict.fromkeys(SYMBOLS, 200)
    # The operator sees what happened in plain words.
    assert "broker trouble" in text or "partitions lost" in text
    assert "stopped cleanly" in text
