"""Mixed valid/invalid input through ``streamgmm run`` on the embedded broker.

5,000 valid ticks over 3 instruments on 3 partitions, interleaved with 200 invalid records of
9 kinds: the output topic must hold exactly one record per valid tick, the dead-letter topic
all 200 with their reasons and sources, and the metrics endpoint the same counts.
"""

from __future__ import annotations

import json
import random
import signal
import time
import urllib.request
from collections import Counter
from pathlib import Path

import pytest
from conftest import KafkaTools, make_ticks, service_config, start_service

from streamgmm.broker import EmbeddedBroker, free_port

pytestmark = pytest.mark.integration

SYMBOLS = ["AAA", "BBB", "CCC"]
MAX_RECORD_BYTES = 2048


def _invalid_records(rng: random.Random) -> list[tuple[str, bytes | None, bytes | None]]:
    """200 invalid records as (expected reason, key, value); keys route them to partitions."""
    kinds: list[tuple[str, object]] = [
        ("invalid_json", lambda s: b'{"ts": 1, "price": '),
        ("invalid_json", lambda s: b"\xff\xfe not utf-8"),
        ("not_an_object", lambda s: b"[1, 2, 3]"),
        ("missing_field", lambda s: json.dumps({"ts": 1.0e9}).encode()),
        ("missing_field", lambda s: json.dumps({"price": 10.0}).encode()),
        ("wrong_type", lambda s: json.dumps({"ts": 1.0e9, "price": "ten"}).encode()),
        ("wrong_type", lambda s: json.dumps({"ts": 1.0e9, "price": True}).encode()),
        ("non_finite", lambda s: b'{"ts": 1000000000.0, "price": NaN}'),
        ("non_finite", lambda s: b'{"ts": 1000000000.0, "price": 1e999}'),
        ("non_positive_price", lambda s: json.dumps({"ts": 1.0e9, "price": -5.0}).encode()),
        ("non_positive_price", lambda s: json.dumps({"ts": 1.0e9, "price": 0}).encode()),
        (
            "oversized",
            lambda s: json.dumps(
                {"ts": 1.0e9, "price": 1.0, "pad": "x" * (2 * MAX_RECORD_BYTES)}
            ).encode(),
        ),
        ("empty_key", None),  # key-less record, built below
        # Before every valid tick of its key in time, so rejected whatever came first.
        ("out_of_order", lambda s: json.dumps({"ts": 1.0e9 - 86400.0, "price": 50.0}).encode()),
    ]
    out = []
    for i in range(200):
        reason, make = kinds[i % len(kinds)]
        symbol = SYMBOLS[i % len(SYMBOLS)]
        if reason == "empty_key":
            out.append((reason, None, json.dumps({"ts": 1.0e9, "price": 1.0}).encode()))
        else:
            out.append((reason, symbol.encode(), make(symbol)))  # type: ignore[operator]
    rng.shuffle(out)
    return out


def _scrape(port: int) -> dict[str, float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    values: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        name, _, value = line.rpartition(" ")
        values[name] = float(value)
    return values


@pytest.mark.parametrize("producer_process", [True, False], ids=["producer-process", "one-process"])
def test_mixed_input(
    broker: EmbeddedBroker,
    kafka_tools: KafkaTools,
    unique: str,
    tmp_path: Path,
    producer_process: bool,
    client: str,
) -> None:
    broker.create_topics({f"{unique}-in": 3})
    ticks = make_ticks(SYMBOLS, 1667, seed=1)[:5000]
    per_symbol = Counter(t["symbol"] for t in ticks)
    rng = random.Random(7)
    invalid = _invalid_records(rng)

    # Merge: each invalid record goes to a random position after the first tick of its key
    # (so an out_of_order one always follows a valid tick of that key).
    part_of = {s: i for i, s in enumerate(SYMBOLS)}
    stream: list[tuple[str | None, bytes | None, bytes | None, int]] = [
        (None, t["symbol"].encode(), json.dumps(t).encode(), part_of[t["symbol"]]) for t in ticks
    ]
    for reason, key, value in invalid:
        partition = part_of[key.decode()] if key else rng.randrange(3)
        pos = rng.randrange(10, len(stream))
        stream.insert(pos, (reason, key, value, partition))
    kafka_tools.send_all(f"{unique}-in", [(k, v, p) for _r, k, v, p in stream])

    # Offsets as the broker assigned them: per partition, in send order.
    next_off = [0, 0, 0]
    valid_at: set[tuple[int, int]] = set()
    invalid_at: dict[tuple[int, int], tuple[str, bytes | None, bytes | None]] = {}
    for reason, key, value, p in stream:
        where = (p, next_off[p])
        next_off[p] += 1
        if reason is None:
            valid_at.add(where)
        else:
            invalid_at[where] = (reason, key, value)

    metrics_port = free_port()
    config = service_config(
        broker,
        unique,
        tmp_path / "svc.toml",
        client,
        **{
            "input.max_record_bytes": MAX_RECORD_BYTES,
            "metrics.port": metrics_port,
            "output.producer_process": producer_process,
        },
    )
    log_path = tmp_path / "service.log"
    proc = start_service(config, log_path)
    try:
        outputs = kafka_tools.read_all(f"{unique}-in.regimes", expect=5000, timeout=120)
        dlq = kafka_tools.read_all(f"{unique}-in.dlq", expect=200, timeout=30)
        # Produced records are counted when the broker acknowledges them (reported by the
        # producer process every 50 ms), so the counters may trail the topics briefly.
        deadline = time.monotonic() + 10
        while True:
            metrics = _scrape(metrics_port)
            if (
                metrics.get("streamgmm_records_consumed_total", 0) >= 5200
                and metrics.get("streamgmm_records_produced_total", 0) >= 5000
            ) or time.monotonic() > deadline:
                break
            time.sleep(0.2)
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(60)
    assert code == 0, log_path.read_text()[-3000:]

    # Exactly one output per valid tick, each pointing back at that tick.
    seen = [(r.json()["partition"], r.json()["offset"]) for r in outputs]
    assert len(seen) == 5000
    assert set(seen) == valid_at
    last: dict[str, dict] = {}
    for r in outputs:
        rec = r.json()
        assert r.key == rec["key"].encode()
        last[rec["key"]] = (
            rec
            if rec["key"] not in last or rec["offset"] > last[rec["key"]]["offset"]
            else last[rec["key"]]
        )
    assert {k: v["n_samples_seen"] for k, v in last.items()} == dict(per_symbol)

    # All 200 dead letters, original bytes, reason and source headers.
    assert len(dlq) == 200
    got_reasons: Counter[str] = Counter()
    for r in dlq:
        src = (
            int(r.headers["streamgmm.source.partition"]),
            int(r.headers["streamgmm.source.offset"]),
        )
        assert src in invalid_at, src
        reason, key, value = invalid_at[src]
        assert r.headers["streamgmm.reason"].decode() == reason
        assert r.headers["streamgmm.source.topic"].decode() == f"{unique}-in"
        assert r.value == value
        assert r.key == key
        got_reasons[reason] += 1
    expected_reasons = Counter(reason for reason, _k, _v in invalid_at.values())
    assert got_reasons == expected_reasons
    assert len(expected_reasons) >= 6

    # The metrics endpoint agrees.
    assert metrics["streamgmm_records_consumed_total"] == 5200
    assert metrics["streamgmm_records_produced_total"] == 5000
    for reason, n in expected_reasons.items():
        assert metrics[f'streamgmm_records_dead_lettered_total{{reason="{reason}"}}'] == n


def test_a_stream_that_gives_no_regimes_is_logged_once_and_counted(
    broker: EmbeddedBroker, kafka_tools: KafkaTools, unique: str, tmp_path: Path
) -> None:
    """A price that never moves: one log line naming the key, one count, outputs warm=False."""
    broker.create_topics({f"{unique}-in": 1})
    good = make_ticks(["GOOD"], 400, seed=3)
    flat = [{"symbol": "FLAT", "ts": t["ts"], "price": 100.0} for t in good]
    records = [
        (t["symbol"].encode(), json.dumps(t).encode(), 0)
        for pair in zip(good, flat, strict=True)
        for t in pair
    ]
    kafka_tools.send_all(f"{unique}-in", records)
    metrics_port = free_port()
    config = service_config(
        broker,
        unique,
        tmp_path / "svc.toml",
        **{"metrics.port": metrics_port},
    )
    log_path = tmp_path / "service.log"
    proc = start_service(config, log_path)
    try:
        outputs = kafka_tools.read_all(f"{unique}-in.regimes", expect=800, timeout=120)
        metrics = _scrape(metrics_port)
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(60)
    log = log_path.read_text()
    assert code == 0, log[-3000:]
    assert len(outputs) == 800
    warm = {r.json()["key"]: r.json()["warm"] for r in outputs}
    assert warm == {"GOOD": True, "FLAT": False}
    lines = [line for line in log.splitlines() if "gives no regimes" in line]
    assert len(lines) == 1, lines
    assert "'FLAT'" in lines[0] and "no scale: " in lines[0]
    assert metrics['streamgmm_stream_problems_total{kind="no_scale"}'] == 1
