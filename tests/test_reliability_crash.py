"""Crash equivalence: SIGKILL ``streamgmm run`` at five seeded random points, restart each time.

20,000 ticks on 5 keys over 3 partitions are streamed in at a steady pace. The service is
killed with SIGKILL (no checkpoint, no goodbye) whenever the number of distinct processed
ticks crosses one of five seeded random thresholds, and started again at once. After the last
restart it is stopped cleanly with SIGTERM, which writes a final snapshot of every key.

Claims checked against an uninterrupted run of the same pipeline factory over the same per-key
tick sequence (in-process, no Kafka):

- at-least-once output: every tick has an output record, and re-emitted records are identical;
- exactly-once effect: per key, the final ``to_state()`` (last changelog snapshot) equals the
  reference to 1e-9, so does the last output record, and ``n_samples_seen`` equals the number
  of ticks produced for the key.
"""

from __future__ import annotations

import json
import random
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

KEYS = ["AAPL", "MSFT", "NVDA", "JPM", "XOM"]
N_PER_KEY = 4000  # 20,000 ticks in all
PARTITIONS = 3
N_KILLS = 5
SEED = 20261126


def test_sigkill_at_random_points_is_exact(
    broker: EmbeddedBroker, tmp_path: Path, record_property: RecordProperty, client: str
) -> None:
    bootstrap = broker.bootstrap_servers
    name = f"rc-{uuid.uuid4().hex[:8]}"
    broker.create_topics({f"{name}-in": PARTITIONS})
    # Count-based checkpoints only (every 1500 records, never by time), so a kill lands
    # between checkpoints and the restart must replay and skip.
    config = write_config(
        tmp_path / "svc.toml",
        bootstrap,
        name,
        metrics=False,
        client=client,
        **{
            "checkpoint.every_records": 1500,
            "checkpoint.every_seconds": 3600.0,
            "kafka.max_poll_records": 200,
        },
    )
    settings = load_settings(config, {}, {})
    partition_of = {k: i % PARTITIONS for i, k in enumerate(KEYS)}
    records = encode_ticks(market_ticks(KEYS, N_PER_KEY, seed=SEED), partition_of)
    total = len(records)
    rng = random.Random(SEED)
    thresholds = sorted(rng.sample(range(total // 20, total * 19 // 20), N_KILLS))

    sent = []
    produce_error: list[BaseException] = []

    held_back = total - total * 19 // 20  # above every threshold
    kills_done = threading.Event()

    def feed() -> None:
        # A steady stream (~1,000 ticks/s) that keeps flowing while the service is down. The
        # last 5% waits until every kill has happened, so no kill can find the work finished.
        try:
            prod = producer(bootstrap)
            for i in range(0, total - held_back, 250):
                sent.extend(
                    produce(
                        bootstrap, f"{name}-in", records[i : min(i + 250, total - held_back)], prod
                    )
                )
                time.sleep(0.25)
            kills_done.wait(600)
            sent.extend(produce(bootstrap, f"{name}-in", records[total - held_back :], prod))
            prod.close()
        except BaseException as exc:
            produce_error.append(exc)

    outputs = TopicReader(bootstrap, settings.output_topic)
    progress = OutputProgress(outputs)
    svc = ServiceProcess(config, tmp_path / "service.log")
    feeder = threading.Thread(target=feed, daemon=True)
    kill_points: list[int] = []
    try:
        svc.start()
        feeder.start()
        for threshold in thresholds:
            # Kill only a running instance: it has restored its partitions and produced output
            # of its own, and the seeded threshold is crossed.
            svc.wait_for_log("restored 3 partition(s)", count=svc.starts, timeout=120)
            at_restore = progress()

            def due(t: int = threshold, r: int = at_restore) -> bool:
                # Past the threshold, and the new instance has done work of its own (unless it
                # has caught up with everything produced so far: an idle kill is fair too).
                n = progress()
                return n >= t and (n > r or n >= len(sent))

            wait_until(due, 180, f"{threshold} processed ticks (log:\n{svc.tail()})", 0.0)
            svc.kill()
            kill_points.append(progress())
            svc.start()
        kills_done.set()
        feeder.join(120)
        assert not produce_error, produce_error
        assert len(sent) == total
        wait_until(
            lambda: progress() >= total,
            240,
            f"all {total} ticks processed (service log:\n{svc.tail()})",
            0.0,
        )
        code = svc.terminate()
        assert code == 0, svc.tail()
        outputs.read_to_end()
    finally:
        kills_done.set()
        svc.cleanup()
        outputs.close()

    # Every kill landed mid-stream.
    assert all(p < total for p in kill_points), kill_points
    figures = check_final_against_reference(
        bootstrap, settings, reference_run(settings, sent), outputs.records
    )
    assert figures["distinct"] == total
    # The kills cost replays: outputs since the last checkpoint were emitted again (identical,
    # as checked above). Five kills all landing exactly on a checkpoint would be a broken test.
    assert figures["re_emitted"] > 0
    assert svc.log().count("restored 3 partition(s)") >= N_KILLS + 1
    record_property("kill_points", kill_points)
    record_property("figures", figures)
    print(f"kill points {kill_points}; {figures}")


def test_instrument_on_two_partitions_is_never_dropped_silently(
    broker: EmbeddedBroker, tmp_path: Path
) -> None:
    """Minimal reproducer: 5 ticks of one symbol on partition 0, the next 5 on partition 1."""
    bootstrap = broker.bootstrap_servers
    name = f"r2p-{uuid.uuid4().hex[:8]}"
    broker.create_topics({f"{name}-in": 2})
    config = write_config(
        tmp_path / "svc.toml", bootstrap, name, metrics=False, **{"input.key_field": "symbol"}
    )
    settings = load_settings(config, {}, {})
    ticks = [{"symbol": "X", "ts": 1.7e9 + i, "price": 100.0 + i} for i in range(10)]
    sent = produce(
        bootstrap,
        f"{name}-in",
        [(None, json.dumps(t).encode(), 0 if i < 5 else 1) for i, t in enumerate(ticks)],
    )
    svc = ServiceProcess(config, tmp_path / "service.log").start()
    outputs = TopicReader(bootstrap, settings.output_topic)
    dead = TopicReader(bootstrap, settings.dlq_topic)
    expected = {(s.partition, s.offset) for s in sent}

    def accounted() -> set[tuple[int, int]]:
        outputs.poll(0.2)
        dead.poll(0.2)
        done = {(r.json()["partition"], r.json()["offset"]) for r in outputs.records}
        return done | {
            (
                int(r.headers["streamgmm.source.partition"]),
                int(r.headers["streamgmm.source.offset"]),
            )
            for r in dead.records
        }

    try:
        svc.wait_for_log("restored 2 partition(s)", timeout=120)
        # Everything is in the topic before the service starts: 10 s is ample for 10 ticks.
        deadline = time.monotonic() + 10.0
        done = accounted()
        while done != expected and time.monotonic() < deadline:
            done = accounted()
        assert svc.terminate() == 0, svc.tail()
    finally:
        svc.cleanup()
        outputs.close()
        dead.close()
    assert done == expected, f"silently dropped: {sorted(expected - done)}"
