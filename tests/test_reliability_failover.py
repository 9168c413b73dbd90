"""Two-instance failover: SIGKILL one member of the group, the survivor restores its keys.

Two ``streamgmm run`` processes share one consumer group over a 4-partition input carrying 8
keys. Once both own partitions, have processed ticks and have committed checkpoints, one is
killed with SIGKILL. After the session timeout the group hands its partitions to the survivor,
which restores their keys from the changelog, skips what the snapshots already cover, and
carries on. The killed instance had committed offsets beyond 0 on its partitions, so the
survivor could only end exactly right by restoring from the changelog (it replays from the
committed offsets, not from the beginning).

Claims: every tick has an output; per key the final ``to_state()`` (last changelog snapshot,
written by the survivor's clean stop), the last output record and ``n_samples_seen`` equal an
uninterrupted run (in-process, same pipeline factory, same per-key ticks) to 1e-9.
"""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path

import pytest
from reliability_support import (
    OutputProgress,
    RecordProperty,
    ServiceProcess,
    TopicReader,
    check_final_against_reference,
    committed,
    encode_ticks,
    market_ticks,
    produce,
    producer,
    reference_run,
    wait_until,
    write_config,
)

from streamgmm.broker import EmbeddedBroker
from streamgmm.settings.layers import load_settings

pytestmark = [pytest.mark.integration, pytest.mark.slow]

KEYS = [f"SYM{i}" for i in range(8)]
N_PER_KEY = 1500  # 12,000 ticks
PARTITIONS = 4


def test_survivor_takes_over_killed_instance_exactly(
    broker: EmbeddedBroker, tmp_path: Path, record_property: RecordProperty, client: str
) -> None:
    bootstrap = broker.bootstrap_servers
    name = f"rf-{uuid.uuid4().hex[:8]}"
    topic = f"{name}-in"
    broker.create_topics({topic: PARTITIONS})
    config = write_config(
        tmp_path / "svc.toml",
        bootstrap,
        name,
        metrics=False,
        client=client,
        **{
            "checkpoint.every_records": 400,
            "checkpoint.every_seconds": 1.0,
            "kafka.max_poll_records": 100,
        },
    )
    settings = load_settings(config, {}, {})
    partition_of = {k: i % PARTITIONS for i, k in enumerate(KEYS)}
    records = encode_ticks(market_ticks(KEYS, N_PER_KEY, seed=77), partition_of)
    total = len(records)

    sent = []
    produce_error: list[BaseException] = []
    release = threading.Event()

    def feed() -> None:
        try:
            prod = producer(bootstrap)
            # The first third goes in at once; the rest waits until both instances run, then
            # flows steadily (~800 ticks/s) through the kill and the takeover.
            sent.extend(produce(bootstrap, topic, records[: total // 3], prod))
            release.wait(180)
            for i in range(total // 3, total, 200):
                sent.extend(produce(bootstrap, topic, records[i : i + 200], prod))
                time.sleep(0.25)
            prod.close()
        except BaseException as exc:
            produce_error.append(exc)

    a = ServiceProcess(config, tmp_path / "a.log")
    b = ServiceProcess(config, tmp_path / "b.log")
    outputs = TopicReader(bootstrap, settings.output_topic)
    feeder = threading.Thread(target=feed, daemon=True)
    try:
        a.start()
        a.wait_for_log("restored 4 partition(s)", timeout=120)
        feeder.start()
        b.start()
        # B's join makes A give up partitions (checkpointed in its revoke listener); B restores.
        b.wait_for_log("restored ", timeout=120)
        b_parts = b.restored_partitions()
        assert 0 < len(b_parts) < PARTITIONS, b_parts
        release.set()
        # B has processed and committed on every partition it owns before it dies.
        wait_until(
            lambda: (
                all(
                    (committed(bootstrap, settings.group_id, topic).get(p) or 0) > 0
                    for p in b_parts
                )
                and b.log().count("partitions revoked") == 0
            ),
            120,
            f"B committing on {b_parts}",
        )
        time.sleep(1.5)  # let B get some uncommitted work in flight as well
        b.kill()
        at_kill = committed(bootstrap, settings.group_id, topic)
        # A takes B's partitions after the session timeout and restores them from the changelog:
        # kafka-python rebalances eagerly (A gets all four again), librdkafka incrementally
        # (A keeps its own and gets B's).
        a.wait_for_log(
            "partitions assigned", count=3 if client == "kafka-python" else 2, timeout=120
        )
        if client == "kafka-python":
            a.wait_for_log("restored 4 partition(s)", count=2, timeout=120)
        else:
            a.wait_for_log(f"restored {len(b_parts)} partition(s)", timeout=120)
            assert sorted(a.restored_partitions()) == sorted(b_parts), a.tail()
        feeder.join(180)
        assert not produce_error, produce_error
        assert len(sent) == total

        progress = OutputProgress(outputs)
        wait_until(
            lambda: progress(0.2) >= total, 240, f"all {total} ticks processed (A log:\n{a.tail()})"
        )
        assert a.alive
        code = a.terminate()
        assert code == 0, a.tail()
        outputs.read_to_end()
    finally:
        for svc in (a, b):
            svc.cleanup()
        outputs.close()

    # B's partitions had committed progress when it died: the survivor did not start over.
    assert all((at_kill[p] or 0) > 0 for p in b_parts), at_kill
    figures = check_final_against_reference(
        bootstrap, settings, reference_run(settings, sent), outputs.records
    )
    assert figures["distinct"] == total
    record_property("figures", figures)
    print(f"B owned {b_parts}; committed at kill {at_kill}; {figures}")


def test_restore_reads_the_whole_changelog(broker: EmbeddedBroker, client: str) -> None:
    """Minimal reproducer: 6,000 snapshots in one producer batch; the index must hold all."""
    from streamgmm.service import snapshot
    from streamgmm.service.checkpoint import Changelog
    from streamgmm.service.kafka import get_client

    bootstrap = broker.bootstrap_servers
    topic = f"rcl-{uuid.uuid4().hex[:8]}"
    broker.create_topics({topic: 1})
    n = 6000
    prod = producer(bootstrap, linger_ms=500, batch_size=8 * 1024 * 1024)
    produce(
        bootstrap,
        topic,
        [(f"k{i}".encode(), snapshot.encode_snapshot(f"k{i}", {}, 0, i + 1), 0) for i in range(n)],
        prod,
    )
    prod.close()
    env = {"STREAMGMM_KAFKA_BOOTSTRAP_SERVERS": bootstrap, "STREAMGMM_KAFKA_CLIENT": client}
    reader = get_client(client).make_reader(load_settings(None, env, {}))
    try:
        index, bad = Changelog(topic, None, reader, 1).read_index([0])  # type: ignore[arg-type]
    finally:
        reader.close()
    assert len(index) == n and bad == []
