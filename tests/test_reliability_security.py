"""Security: no pickle is ever loaded, metrics stay on loopback, record size is capped.

- A pickle whose unpickling would create a marker file is placed in the changelog (the payload
  is first proven live: ``pickle.loads`` in a separate process does create its marker). A
  service that must restore from that changelog stops with exit code 1 and a log line that
  names the record and says it is a pickle, produces nothing, and the marker file does not
  exist. The snapshot codec refuses the payload under every pickle protocol.
- With no metrics host configured, the metrics server listens on 127.0.0.1 only (checked in
  /proc/net/tcp and /proc/net/tcp6, not just in the log).
- ``max_record_bytes`` is configurable (here through the environment variable
  ``STREAMGMM_INPUT_MAX_RECORD_BYTES``); records up to the limit are processed, larger ones go
  to the dead-letter topic with reason ``oversized`` and their original bytes.
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
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
    wait_until,
    write_config,
)

from streamgmm.broker import EmbeddedBroker
from streamgmm.service import decode, snapshot
from streamgmm.service.config import load_settings

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
    broker: EmbeddedBroker, tmp_path: Path
) -> None:
    bootstrap = broker.bootstrap_servers
    name = f"rp-{uuid.uuid4().hex[:8]}"
    topic = f"{name}-in"
    config = write_config(tmp_path / "svc.toml", bootstrap, name, metrics=False)
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
    assert lines, log[-3000:]
    assert settings.changelog_topic in lines[0] and "pickle" in lines[0], lines[0]
    assert read_topic(bootstrap, settings.output_topic) == []


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
