"""Broker restart under a running service: it reconnects and carries on, twice.

The test owns its broker (a restart of the in-memory tansu broker wipes every topic, offset and
snapshot). With ``streamgmm run`` processing, the broker is

1. stopped for longer than the group's session timeout (the service must stay up, keep its
   metrics endpoint answering, and not hang), then started again on the same port;
2. bounced at once (stop, start) a second time; with ``client = "confluent"``, stopped for
   longer than the session timeout again: librdkafka 2.12 can miss an instant bounce of a
   broker that lost the group (docs/reliability.md, point 4).

After each restart the input topic is recreated, as an operator of a memory-backed broker
must, and a fresh batch of ticks is produced. Claims:

- the service never exits and processes every new tick (one output per new source record);
- since the broker lost the changelog and the committed offsets, each key's model starts again
  from scratch on the new data: the last output per key equals an uninterrupted run over the
  new batch alone (to 1e-9), with ``n_samples_seen`` equal to the new batch's ticks per key.
  (On a persistent Kafka nothing is lost; that case is the crash test's.)
- a SIGTERM after all this still stops it cleanly with exit code 0.
"""

from __future__ import annotations

import time
import urllib.request
from pathlib import Path

import pytest
from reliability_support import (
    OutputProgress,
    ServiceProcess,
    TopicReader,
    assert_states_close,
    encode_ticks,
    market_ticks,
    produce,
    reference_run,
    wait_until,
    write_config,
)

from streamgmm.broker import EmbeddedBroker
from streamgmm.settings.layers import load_settings

pytestmark = [pytest.mark.integration, pytest.mark.slow]

KEYS = ["AAA", "BBB", "CCC"]
PER_BATCH = 300  # ticks per key per batch
PARTITIONS = 3


def _check_batch(settings: object, sent: list, outputs: TopicReader) -> None:
    got: dict[tuple[int, int], dict] = {}
    for rec in outputs.records:
        out = rec.json()
        got[(out["partition"], out["offset"])] = out
    assert set(got) == {(s.partition, s.offset) for s in sent}
    ref = reference_run(settings, sent)
    last: dict[str, dict] = {}
    for out in got.values():
        if out["key"] not in last or out["offset"] > last[out["key"]]["offset"]:
            last[out["key"]] = out
    for key, want in ref.last_outputs.items():
        assert last[key]["n_samples_seen"] == PER_BATCH, key
        assert_states_close(last[key], want, f"output {key}")


def test_service_survives_two_broker_restarts(tmp_path: Path, client: str) -> None:
    ticks = market_ticks(KEYS, 3 * PER_BATCH, seed=4)
    partition_of = {k: i for i, k in enumerate(KEYS)}
    batches = [
        encode_ticks(
            [t for t in ticks if b * PER_BATCH <= _index(t) < (b + 1) * PER_BATCH], partition_of
        )
        for b in range(3)
    ]
    with EmbeddedBroker() as broker:
        bootstrap = broker.bootstrap_servers
        name = "rb"
        topic = f"{name}-in"
        broker.create_topics({topic: PARTITIONS})
        config = write_config(
            tmp_path / "svc.toml",
            bootstrap,
            name,
            client=client,
            **{"checkpoint.every_seconds": 1.0},
        )
        settings = load_settings(config, {}, {})
        svc = ServiceProcess(config, tmp_path / "service.log")
        try:
            sent = produce(bootstrap, topic, batches[0])
            svc.start()
            port = svc.metrics_port()
            outputs = TopicReader(bootstrap, settings.output_topic)
            progress = OutputProgress(outputs)
            wait_until(
                lambda: svc.running() and progress(0.2) >= len(sent), 120, "batch 0 processed"
            )
            outputs.close()
            _check_batch(settings, sent, outputs)

            for cycle, downtime in ((1, 10.0), (2, 0.0 if client == "kafka-python" else 10.0)):
                broker.stop(timeout=2.0)
                deadline = time.monotonic() + downtime
                while time.monotonic() < deadline:
                    assert svc.alive, f"the service died with the broker:\n{svc.tail()}"
                    # The process is not wedged: its metrics endpoint still answers.
                    body = urllib.request.urlopen(
                        f"http://127.0.0.1:{port}/metrics", timeout=10
                    ).read()
                    assert b"streamgmm_records_consumed_total" in body
                    time.sleep(1.0)
                broker.start()
                broker.create_topics({topic: PARTITIONS})
                sent = produce(bootstrap, topic, batches[cycle])
                outputs = TopicReader(bootstrap, settings.output_topic)
                progress = OutputProgress(outputs)
                wait_until(
                    lambda s=sent, p=progress: svc.running() and p(0.2) >= len(s),
                    180,
                    lambda c=cycle: f"batch {c} processed after restart {c}:\n{svc.tail()}",
                )
                outputs.read_to_end()
                outputs.close()
                assert svc.alive
                _check_batch(settings, sent, outputs)
            code = svc.terminate()
        finally:
            svc.cleanup()
    log = svc.log()
    assert code == 0, log[-3000:]
    assert "stopped cleanly" in log
    assert svc.starts == 1


def _index(tick: dict) -> int:
    """Position of a tick in its key's sequence (ticks are one day apart per key)."""
    return int((tick["ts"] - 1.0e9) // 86400.0)
