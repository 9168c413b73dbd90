"""``streamgmm replay`` writes what the service writes, for the same mixed file of ticks.

One CSV of three instruments, with rows the decoder rejects, out-of-order rows and repeated
timestamps among the valid ones, goes to Kafka through ``streamgmm produce`` and is processed by
``streamgmm run`` (small polls, so its runs of ticks through the detector are cut elsewhere than
replay's chunks), and the same file goes through ``streamgmm replay``. Per key, the output
records must be identical apart from where the tick came from (topic, partition, offset), and
the dead letters identical in key, value, reason and detail.
"""

from __future__ import annotations

import io
import json
import random
import signal
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from conftest import KafkaTools, make_ticks, service_config, start_service

from streamgmm import produce
from streamgmm.broker import EmbeddedBroker
from streamgmm.replay import replay
from streamgmm.settings.layers import load_settings

pytestmark = pytest.mark.integration

SYMBOLS = ["AAA", "BBB", "CCC"]
SOURCE = ("topic", "partition", "offset")


def _mixed_csv(path: Path) -> tuple[int, int]:
    """Write the file; return (rows the detector applies, rows rejected with a dead letter)."""
    rng = random.Random(11)
    ticks = make_ticks(SYMBOLS, 700, seed=3)
    rows = [f"{t['symbol']},{t['ts']!r},{t['price']!r},{t['volume']!r}" for t in ticks]
    # A few valid ticks with an ISO-8601 ts (a text cell, sent as a JSON string).
    for i in rng.sample(range(len(rows)), 5):
        t = ticks[i]
        iso = datetime.fromtimestamp(t["ts"], UTC).isoformat()
        rows[i] = f"{t['symbol']},{iso},{t['price']!r},{t['volume']!r}"
    applied = len(rows)
    bad = [
        "AAA,1000086400.0,abc,1",  # wrong_type
        "BBB,1000086400.0,,1",  # missing_field (an empty cell is an absent field)
        "CCC,1000086400.0,-5,1",  # non_positive_price
        "AAA,1000086400.0,nan,1",  # non_finite
        ",1000086400.0,10,1",  # empty_key
        "BBB,1000086400.0,10,-3",  # negative_volume
        "CCC,999913600.0,50,1",  # out_of_order: before every tick of the key
        "AAA,999913600.0,50,1",  # out_of_order
    ] * 4
    mixed = list(rows)
    for row in bad:
        mixed.insert(rng.randrange(30, len(mixed)), row)
    # Repeated timestamps are in order: the detector gets them (and repeats its output).
    for _ in range(6):
        i = rng.randrange(30, len(mixed))
        if mixed[i] not in bad:
            mixed.insert(i + 1, mixed[i])
            applied += 1
    path.write_text("symbol,ts,price,volume\n" + "\n".join(mixed) + "\n")
    return applied, len(bad)


def _per_key(records: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    by_key: dict[str, list[dict[str, Any]]] = {}
    for rec in records:
        by_key.setdefault(rec["key"], []).append({k: v for k, v in rec.items() if k not in SOURCE})
    return by_key


def test_replay_writes_what_the_service_writes(
    broker: EmbeddedBroker, kafka_tools: KafkaTools, unique: str, tmp_path: Path
) -> None:
    csv_path = tmp_path / "mixed.csv"
    n_applied, n_bad = _mixed_csv(csv_path)
    topic = f"{unique}-in"
    broker.create_topics({topic: 3})
    assert (
        produce.main(
            [str(csv_path), "--topic", topic, "--bootstrap-servers", broker.bootstrap_servers]
        )
        == 0
    )
    config = service_config(broker, unique, tmp_path / "svc.toml", **{"kafka.max_poll_records": 37})
    log_path = tmp_path / "service.log"
    proc = start_service(config, log_path)
    try:
        outputs = kafka_tools.read_all(f"{topic}.regimes", expect=n_applied, timeout=120)
        dlq = kafka_tools.read_all(f"{topic}.dlq", expect=n_bad, timeout=30)
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(60)
    assert code == 0, log_path.read_text()[-3000:]

    out, dead = io.BytesIO(), io.BytesIO()
    summary = replay(csv_path, out, load_settings(config, {}, {}), dead_letters=dead)
    replayed = [json.loads(line) for line in out.getvalue().splitlines()]
    assert (summary.ticks, sum(summary.dead_letters.values())) == (n_applied, n_bad)

    # Outputs: per key, in order, identical but for the source fields.
    served = sorted((r.json() for r in outputs), key=lambda rec: (rec["partition"], rec["offset"]))
    assert len(served) == len(replayed) == n_applied
    assert _per_key(served) == _per_key(replayed)
    assert set(_per_key(replayed)) == set(SYMBOLS)
    assert any(rec["warm"] for rec in replayed) and not all(rec["warm"] for rec in replayed)

    # Dead letters: the same records, reasons and details.
    def key_text(key: bytes | None) -> str | None:
        return None if key is None else key.decode()

    from_service = Counter(
        (
            key_text(r.key),
            (r.value or b"").decode(),
            r.headers["streamgmm.reason"].decode(),
            r.headers["streamgmm.detail"].decode(),
        )
        for r in dlq
    )
    from_replay = Counter(
        (d["key"], d["value"], d["reason"], d["detail"])
        for d in map(json.loads, dead.getvalue().splitlines())
    )
    assert from_service == from_replay
    reasons = Counter(reason for _k, _v, reason, _d in from_replay.elements())
    assert set(reasons) == {
        "wrong_type",
        "missing_field",
        "non_positive_price",
        "non_finite",
        "empty_key",
        "negative_volume",
        "out_of_order",
    }
