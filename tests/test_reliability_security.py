"""Security: no pickle is ever loaded, hostile snapshots cannot stop a partition, metrics stay
on loopback, record size is capped.

- A pickle whose unpickling would create a marker file is placed in the changelog (the payload
  is first proven live: ``pickle.loads`` in a separate process does create its marker). With
  ``[checkpoint] on_bad_snapshot = "fail"``, a service that must restore from that changelog
  stops with exit code 1 and one log line that names the record and its key and says it is a
  pickle, with no traceback; it produces nothing, and the marker file does not exist. The
  snapshot codec refuses the payload under every pickle protocol.
- With the default ``on_bad_snapshot = "reset_key"``, a changelog of crafted snapshots (a
  pickle, a 5,000-digit integer, a snapshot filed under another key, a detector state of the
  old version, a string for a float, a mass of 5e-324 with zero scatter) does not stop the
  service: each refused snapshot is dead-lettered (reason ``bad_snapshot``) and counted, its
  key starts afresh and every tick gets its output, the accepted crafted state gives finite
  outputs, and SIGTERM stops it within 10 s.
- With no metrics host configured, the metrics server listens on 127.0.0.1 only (checked in
  /proc/net/tcp and /proc/net/tcp6, not just in the log).
- ``max_record_bytes`` is configurable (here through the environment variable
  ``STREAMGMM_INPUT_MAX_RECORD_BYTES``); records up to the limit are processed, larger ones go
  to the dead-letter topic with reason ``oversized`` and their original bytes.
"""

from __future__ import annotations

import json
import math
import os
import pickle
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from reliability_support import (
    OutputProgress,
    ServiceProcess,
    TopicReader,
    produce,
    read_topic,
    scrape,
    wait_until,
    write_config,
)

from streamgmm.broker import EmbeddedBroker
from streamgmm.service import dead_letters as decode
from streamgmm.service import snapshot
from streamgmm.settings.layers import load_settings

pytestmark = pytest.mark.integration


class _Trap:
    """Unpickling this calls ``open(marker, "w")``: the marker file appears if it executes."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, tuple[str, str]]:
        return (open, (self.marker, "w"))


def _payload(marker: Path, protocol: int) -> bytes:
    return pickle.dumps(_Trap(str(marker)), protocol=protocol)


def test_payload_is_live(tmp_path: Path) -> None:
    """The trap works: unpickled in a throw-away process, it creates its marker."""
    marker = tmp_path / "proof"
    code = "import pickle,sys; pickle.loads(sys.stdin.buffer.read())"
    subprocess.run([sys.executable, "-c", code], input=_payload(marker, 2), check=True)
    assert marker.exists()


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_snapshot_codec_refuses_every_pickle_protocol(tmp_path: Path, protocol: int) -> None:
    marker = tmp_path / "executed"
    with pytest.raises(snapshot.SnapshotError, match="not a streamgmm snapshot"):
        snapshot.decode_snapshot(_payload(marker, protocol))
    assert not marker.exists()


def test_pickle_in_changelog_is_rejected_and_nothing_executes(
    broker: EmbeddedBroker, tmp_path: Path, client: str
) -> None:
    bootstrap = broker.bootstrap_servers
    name = f"rp-{uuid.uuid4().hex[:8]}"
    topic = f"{name}-in"
    config = write_config(
        tmp_path / "svc.toml",
        bootstrap,
        name,
        metrics=False,
        client=client,
        **{"checkpoint.on_bad_snapshot": "fail"},
    )
    settings = load_settings(config, {}, {})
    broker.create_topics(
        {topic: 3, settings.changelog_topic: 3},
        {settings.changelog_topic: {"cleanup.policy": "compact"}},
    )
    marker = tmp_path / "executed"
    # One trap per changelog partition (so whichever the restore reads first is a trap), with
    # the key of an instrument that also has input waiting.
    produce(
        bootstrap,
        settings.changelog_topic,
        [(b"AAA", _payload(marker, proto), p) for p, proto in ((0, 2), (1, 0), (2, 5))],
    )
    tick = {"symbol": "AAA", "ts": 1.7e9, "price": 10.0}
    produce(bootstrap, topic, [(b"AAA", json.dumps(tick).encode(), p) for p in range(3)])

    svc = ServiceProcess(config, tmp_path / "service.log").start()
    try:
        code = svc.wait(180)
    finally:
        svc.cleanup()
    log = svc.log()
    assert code == 1, log[-3000:]
    assert not marker.exists(), "the pickle in the changelog was executed"
    lines = [line for line in log.splitlines() if "rejected" in line]
    assert len(lines) == 1, log[-3000:]
    assert settings.changelog_topic in lines[0], lines[0]
    # Whichever partition the restore read first: protocol 2+ pickles start with 0x80 and are
    # named as pickles; a protocol 0 or 1 pickle is text that is no JSON.
    named = "pickle" if "changelog[0]" in lines[0] or "changelog[2]" in lines[0] else "JSON"
    assert named in lines[0], lines[0]
    assert "(key 'AAA')" in lines[0] and 'on_bad_snapshot = "fail"' in lines[0], lines[0]
    assert "Traceback" not in log, log[-3000:]
    assert read_topic(bootstrap, settings.output_topic) == []


def _crafted_changelog(settings: Any) -> dict[str, bytes]:
    """Changelog values per key: snapshots an attacker (or an older streamgmm) could leave."""
    from streamgmm.ticks.keystate import KeyState, make_pipeline

    state = KeyState(make_pipeline(settings), partition=0)
    state.pipeline.learn_predict_many(
        [{"ts": 1.7e9 + 60 * i, "price": 100 + math.sin(i)} for i in range(300)]
    )
    good = state.to_state()

    def value(key: str, change: Any = None) -> bytes:
        crafted = json.loads(json.dumps(good))
        if change is not None:
            change(crafted)
        return snapshot.encode_snapshot(key, crafted, 0, 0)

    def tiny_mass(s: dict[str, Any]) -> None:  # valid, but every learning step divides by it
        for model in ("gjr", "egarch"):
            n = len(s["pipeline"][model]["curvature"])
            eye = [[float(i == j) for j in range(n)] for i in range(n)]
            s["pipeline"][model]["curvature"] = [[1e-300 * x for x in row] for row in eye]
            s["pipeline"][model]["factor"] = [[1e-150 * x for x in row] for row in eye]

    def old_version(s: dict[str, Any]) -> None:  # a detector state from before the rewrite
        s["pipeline"]["version"] = 1

    def nan_string(s: dict[str, Any]) -> None:
        s["pipeline"]["level"]["filtered"][0] = "nan"

    def nan_last_ts(s: dict[str, Any]) -> None:
        s["last_ts"] = "nan"

    huge = value("HUGEINT").replace(b'"next_offset":0', b'"next_offset":' + b"9" * 5000)
    return {
        "TINY": value("TINY", tiny_mass),
        "OLD": value("OLD", old_version),
        "NAN": value("NAN", nan_string),
        "LASTTS": value("LASTTS", nan_last_ts),
        "PICKLE": pickle.dumps({"key": "PICKLE", "state": good}),
        "HUGEINT": huge,
        "MIS": value("OTHER"),  # filed under MIS, the state of OTHER
    }


def test_bad_snapshots_reset_their_keys_and_sigterm_is_prompt(
    broker: EmbeddedBroker, tmp_path: Path, client: str
) -> None:
    bootstrap = broker.bootstrap_servers
    name = f"rb-{uuid.uuid4().hex[:8]}"
    topic = f"{name}-in"
    config = write_config(tmp_path / "svc.toml", bootstrap, name, client=client)
    settings = load_settings(config, {}, {})
    assert settings.on_bad_snapshot == "reset_key"  # the default
    broker.create_topics(
        {topic: 1, settings.changelog_topic: 1},
        {settings.changelog_topic: {"cleanup.policy": "compact"}},
    )
    crafted = _crafted_changelog(settings)
    placed = produce(
        bootstrap, settings.changelog_topic, [(k.encode(), v, 0) for k, v in crafted.items()]
    )
    where = {s.key.decode(): s.offset for s in placed if s.key is not None}
    n = 30
    ticks = [
        (key.encode(), json.dumps({"ts": 1.71e9 + 60 * i, "price": 50 + i % 7}).encode(), 0)
        for i in range(n)
        for key in crafted
    ]
    produce(bootstrap, topic, ticks)
    svc = ServiceProcess(config, tmp_path / "service.log").start()
    outputs = TopicReader(bootstrap, settings.output_topic)
    dlq = TopicReader(bootstrap, settings.dlq_topic)

    def unsaveable() -> int:
        return int("key 'TINY' cannot be written to the changelog" in svc.log())

    try:
        progress = OutputProgress(outputs)
        wait_until(lambda: progress(0.2) >= len(ticks), 180, "an output for every tick")
        port = svc.metrics_port()
        # Six refused snapshots; and the crafted state TINY learns into one whose profile
        # holds an infinity (a detector bug, reported), which cannot be written: reset too.
        wait_until(
            lambda: scrape(port).get("streamgmm_keys_reset_total") == 6 + unsaveable(),
            30,
            "the refused keys reset",
        )
        metrics = scrape(port)
        started = time.monotonic()
        code = svc.terminate(timeout=60)
        stopped = time.monotonic() - started
        dlq.read_to_end()
        outputs.read_to_end()
    finally:
        svc.cleanup()
        outputs.close()
        dlq.close()
    log = svc.log()
    assert code == 0, log[-3000:]
    assert stopped < 10.0, f"SIGTERM took {stopped:.1f}s"
    assert "Traceback" not in log, log[-3000:]
    assert metrics['streamgmm_records_dead_lettered_total{reason="bad_snapshot"}'] == 6
    last: dict[str, dict[str, Any]] = {}
    for rec in outputs.records:
        record = rec.json()
        last[record["key"]] = record
        assert all(p is not None for p in record["probabilities"].values()), record
        # null while a reset key warms up again (no forecast made), finite otherwise
        ll = record["log_likelihood"]
        assert (ll is None and record["key"] != "TINY") or math.isfinite(ll), record
    # Refused snapshots: the key started afresh and learnt exactly its 30 ticks; the accepted
    # crafted state went on from its 300.
    assert {k: r["n_samples_seen"] for k, r in last.items()} == {
        **{key: n for key in crafted},
        "TINY": 300 + n,
    }
    dead = {r.key.decode(): r for r in dlq.records}
    assert set(dead) == set(crafted) - {"TINY"}
    expected_detail = {
        "OLD": "version",
        "NAN": "must be a number",
        "LASTTS": "last_ts",
        "PICKLE": "pickle",
        "HUGEINT": "invalid JSON",
        "MIS": "of key 'OTHER'",
    }
    for key, rec in dead.items():
        assert rec.headers[decode.HEADER_REASON] == b"bad_snapshot"
        assert expected_detail[key].encode() in rec.headers[decode.HEADER_DETAIL], rec.headers
        assert rec.value == crafted[key]  # the refused bytes, whole
        assert rec.headers[decode.HEADER_TOPIC] == settings.changelog_topic.encode()
        assert rec.headers[decode.HEADER_OFFSET] == str(where[key]).encode()
    print(f"hostile changelog: SIGTERM to exit {stopped:.2f}s; dead letters {sorted(dead)}")


# --------------------------------------------------------------------------- limits

LIMIT = 1000


@dataclass
class LimitedService:
    bootstrap: str
    topic: str
    settings: Any
    svc: ServiceProcess


@pytest.fixture(scope="module")
def limited(
    broker: EmbeddedBroker, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LimitedService]:
    tmp = tmp_path_factory.mktemp("limits")
    name = f"rl-{uuid.uuid4().hex[:8]}"
    broker.create_topics({f"{name}-in": 1})
    # No [metrics] host in the file: the shipped default applies.
    config = write_config(tmp / "svc.toml", broker.bootstrap_servers, name)
    assert "host" not in config.read_text().split("[metrics]")[1].split("[")[0]
    env = {"STREAMGMM_INPUT_MAX_RECORD_BYTES": str(LIMIT)}
    settings = load_settings(config, env, {})
    assert settings.max_record_bytes == LIMIT
    svc = ServiceProcess(config, tmp / "service.log", env=env).start()
    try:
        svc.wait_for_log("restored 1 partition(s)", timeout=120)
        yield LimitedService(broker.bootstrap_servers, f"{name}-in", settings, svc)
        assert svc.terminate() == 0, svc.tail()
    finally:
        svc.cleanup()


def _listeners(port: int) -> list[str]:
    """Local addresses (hex, as in /proc/net/tcp*) of sockets listening on ``port``."""
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        if not os.path.exists(table):
            continue
        with open(table) as f:
            next(f)
            for line in f:
                fields = line.split()
                address, hex_port = fields[1].rsplit(":", 1)
                if int(hex_port, 16) == port and fields[3] == "0A":  # 0A = LISTEN
                    found.append(address)
    return found


def test_metrics_bind_loopback_by_default(limited: LimitedService) -> None:
    assert load_settings(None, {}, {}).metrics_host == "127.0.0.1"
    port = limited.svc.metrics_port()
    assert "metrics on http://127.0.0.1:" in limited.svc.log()
    assert _listeners(port) == ["0100007F"]  # 127.0.0.1 only: not 0.0.0.0, not [::]


def _sized_tick(ts: float, size: int) -> bytes:
    base = {"symbol": "BIG", "ts": ts, "price": 100.0 + ts % 7, "pad": ""}
    empty = len(json.dumps(base).encode())
    base["pad"] = "x" * (size - empty)
    value = json.dumps(base).encode()
    assert len(value) == size
    return value


def test_records_over_the_limit_go_to_dlq(limited: LimitedService) -> None:
    sizes = [200, LIMIT - 1, LIMIT, LIMIT + 1, 5 * LIMIT, 200 * LIMIT]
    records = [(b"BIG", _sized_tick(1.7e9 + i, n), 0) for i, n in enumerate(sizes)]
    sent = produce(limited.bootstrap, limited.topic, records)
    outputs = TopicReader(limited.bootstrap, limited.settings.output_topic)
    dlq = TopicReader(limited.bootstrap, limited.settings.dlq_topic)
    progress = OutputProgress(outputs)
    try:
        wait_until(
            lambda: progress(0.2) >= 3 and dlq.poll(0.2) >= 0 and len(dlq.records) >= 3,
            120,
            "3 outputs and 3 dead letters",
        )
        outputs.read_to_end()
        dlq.read_to_end()
    finally:
        outputs.close()
        dlq.close()
    by_offset = {s.offset: n for s, n in zip(sent, sizes, strict=True)}
    assert sorted(by_offset[o] for _p, o in progress.done) == [200, LIMIT - 1, LIMIT]
    dead = {int(r.headers[decode.HEADER_OFFSET]): r for r in dlq.records}
    assert sorted(by_offset[o] for o in dead) == [LIMIT + 1, 5 * LIMIT, 200 * LIMIT]
    for offset, rec in dead.items():
        assert rec.headers[decode.HEADER_REASON] == b"oversized"
        assert rec.value == records[offset][1]
