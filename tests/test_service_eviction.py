"""The LRU cap on keys in memory: evicted keys are checkpointed, then restored when they return.

With a cap of 2 keys, 6 interleaved keys and polls of 6 records (the service applies each key's
ticks of a poll together), nearly every poll evicts a key and reloads another from the
changelog; the models must still end exactly where an uncapped run ends.
"""

from __future__ import annotations

import json
import signal
import urllib.request
import uuid
from pathlib import Path

import pytest
from conftest import (
    KafkaTools,
    assert_records_close,
    last_per_key,
    make_ticks,
    service_config,
    start_service,
    uninterrupted_last,
)

from streamgmm.broker import EmbeddedBroker, free_port
from streamgmm.settings.layers import load_settings

pytestmark = pytest.mark.integration

SYMBOLS = [f"K{i}" for i in range(6)]
N_PER_SYMBOL = 150


def test_lru_eviction_keeps_models_exact(broker: EmbeddedBroker, tmp_path: Path) -> None:
    tools = KafkaTools(broker)
    name = f"ev-{uuid.uuid4().hex[:8]}"
    broker.create_topics({f"{name}-in": 2})
    port = free_port()
    config = service_config(
        broker,
        name,
        tmp_path / "svc.toml",
        **{"state.max_keys_in_memory": 2, "metrics.port": port, "kafka.max_poll_records": 6},
    )
    settings = load_settings(config, {}, {})
    ticks = make_ticks(SYMBOLS, N_PER_SYMBOL, seed=11)
    sent = [
        (t["symbol"].encode(), json.dumps(t).encode(), SYMBOLS.index(t["symbol"]) % 2)
        for t in ticks
    ]
    tools.send_all(f"{name}-in", sent)
    log_path = tmp_path / "service.log"
    proc = start_service(config, log_path)
    try:
        outputs = [
            r.json() for r in tools.read_all(settings.output_topic, expect=len(sent), timeout=120)
        ]
        metrics = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read()
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(60)
    assert code == 0, log_path.read_text()[-3000:]
    assert len(outputs) == len(sent)
    active = [
        line for line in metrics.decode().splitlines() if line.startswith("streamgmm_active_keys ")
    ]
    assert active and float(active[0].split()[1]) <= 2
    got = last_per_key(outputs)
    want = uninterrupted_last(settings, sent)
    for key in SYMBOLS:
        assert got[key]["n_samples_seen"] == N_PER_SYMBOL
        assert_records_close(got[key], want[key])
    # Many snapshots were written: one per eviction of a dirty key, at least one per poll.
    changelog = tools.read_all(settings.changelog_topic, idle=0.5)
    assert len(changelog) > len(sent) // 6
