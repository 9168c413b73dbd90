"""``streamgmm broker`` and ``streamgmm consume``, run as users run them."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO, KafkaTools

from streamgmm.broker import EmbeddedBroker, free_port
from streamgmm.consume import format_record


def _command(args: list[str]) -> list[str]:
    return [sys.executable, "-m", "streamgmm", *args]


def _env(**extra: str) -> dict[str, str]:
    return {**os.environ, **extra}


def test_format_record() -> None:
    value = b'{"key":"SPX","regime":1}'
    assert format_record(b"SPX", value, [], 2, 7) == 'SPX\t{"key":"SPX","regime":1}'
    headers = [("streamgmm.reason", b"ts_jump"), ("streamgmm.detail", None)]
    assert format_record(None, b"x", headers, 0, 0) == (
        'null\tx\t{"streamgmm.reason": "ts_jump", "streamgmm.detail": "null"}'
    )
    assert format_record(b"SPX", value, headers[:1], 2, 7, pretty=True) == (
        "key SPX  partition 2  offset 7\n"
        "  streamgmm.reason: ts_jump\n"
        '{\n  "key": "SPX",\n  "regime": 1\n}\n'
    )
    # A value that is not JSON is printed as it is.
    assert format_record(b"K", b"\xffnot json", [], 0, 1, pretty=True).endswith("\ufffdnot json\n")


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@pytest.mark.integration
def test_broker_runs_in_the_foreground_on_the_configured_port(
    tmp_path: Path,
) -> None:
    port = free_port()
    log = tmp_path / "broker.log"
    with open(log, "wb") as handle:
        proc = subprocess.Popen(
            _command(["broker", "--topic", "in:3", "--topic", "other"]),
            cwd=REPO,
            stdout=handle,
            stderr=subprocess.STDOUT,
            env=_env(STREAMGMM_KAFKA_BOOTSTRAP_SERVERS=f"localhost:{port}"),
            # As a job in the background of a script starts: with SIGINT ignored. Ctrl-C must
            # stop it all the same.
            preexec_fn=_ignore_sigint,
        )
    try:
        deadline = time.monotonic() + 30
        while "listening on" not in log.read_text():
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        lines = log.read_text().splitlines()
        assert lines[0].startswith(f"streamgmm broker: listening on 127.0.0.1:{port} ")
        assert lines[1:3] == [
            "streamgmm broker: topic in, 3 partitions (created)",
            "streamgmm broker: topic other, 1 partition (created)",
        ]
        # The port is taken: a second broker there says so, with exit code 2.
        second = subprocess.run(
            _command(["broker", "--port", str(port)]),
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert second.returncode == 2
        assert f"cannot listen on 127.0.0.1:{port}" in second.stderr
        assert "--port" in second.stderr
        tools = KafkaTools(EmbeddedBroker(port=port))
        tools.send_all("in", [(b"k", b"v", 2)])
        assert [r.value for r in tools.read_all("in", expect=1, idle=0.2)] == [b"v"]
    finally:
        proc.send_signal(signal.SIGINT)
        code = proc.wait(30)
    assert code == 0, log.read_text()
    assert log.read_text().splitlines()[-1] == "streamgmm broker: stopping"
    with socket.socket() as probe:  # the broker process is gone and its port free
        probe.bind(("127.0.0.1", port))


@pytest.mark.integration
def test_consume_prints_records_from_the_beginning_or_the_end(
    broker: EmbeddedBroker, kafka_tools: KafkaTools, unique: str, tmp_path: Path
) -> None:
    topic = f"{unique}-out"
    broker.create_topics({topic: 2})
    kafka_tools.send_all(
        topic,
        [(b"A", b'{"n":1}', 0), (b"B", b'{"n":2}', 1), (b"A", b'{"n":3}', 0)],
    )
    env = _env(STREAMGMM_KAFKA_BOOTSTRAP_SERVERS=broker.bootstrap_servers)
    args = ["consume", topic, "--from-beginning", "--limit", "3"]
    result = subprocess.run(
        _command(args), cwd=REPO, capture_output=True, text=True, timeout=60, env=env
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert sorted(lines) == ['A\t{"n":1}', 'A\t{"n":3}', 'B\t{"n":2}']
    assert lines.index('A\t{"n":1}') < lines.index('A\t{"n":3}')  # a partition's order

    pretty = subprocess.run(
        _command([*args, "--limit", "1", "--pretty"]),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert pretty.returncode == 0, pretty.stderr
    heading, *body = pretty.stdout.strip().splitlines()
    assert heading.startswith("key ") and " partition " in heading
    assert json.loads("\n".join(body))["n"] in (1, 2)

    # From the end: only what arrives after it started.
    log = tmp_path / "consume.log"
    with open(log, "wb") as handle:
        proc = subprocess.Popen(
            _command(["consume", topic, "--limit", "1"]),
            cwd=REPO,
            stdout=handle,
            stderr=subprocess.STDOUT,
            env=env,
        )
    try:
        # New records until it prints one (it starts reading once it found the ends).
        deadline = time.monotonic() + 60
        while proc.poll() is None and time.monotonic() < deadline:
            kafka_tools.send_all(topic, [(b"C", b'{"n":4}', 0), (b"D", b'{"n":5}', 1)])
            time.sleep(0.5)
        code = proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert code == 0
    assert log.read_text().splitlines() in (['C\t{"n":4}'], ['D\t{"n":5}'])


@pytest.mark.integration
def test_consume_waits_for_a_topic_and_stops_on_sigterm(
    broker: EmbeddedBroker, unique: str
) -> None:
    env = _env(STREAMGMM_KAFKA_BOOTSTRAP_SERVERS=broker.bootstrap_servers)
    broker.create_topics({f"{unique}.regimes": 1})
    missing = subprocess.run(
        _command(["consume", f"{unique}.regime", "--timeout", "1"]),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert missing.returncode == 1
    assert f"waiting for topic {unique}.regime to exist, did you mean {unique}.regimes?" in (
        missing.stderr
    )
    assert f"error: no topic {unique}.regime after 1 s; did you mean {unique}.regimes?" in (
        missing.stderr
    )
    proc = subprocess.Popen(
        _command(["consume", f"{unique}.regimes"]),
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    time.sleep(3)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert out == b"" and b"Traceback" not in err


def test_consume_without_a_broker_is_exit_1_at_once() -> None:
    result = subprocess.run(
        _command(["consume", "ticks", "--bootstrap-servers", f"127.0.0.1:{free_port()}"]),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert result.stderr.startswith("streamgmm consume: cannot read ticks from 127.0.0.1:")
    assert len(result.stderr.splitlines()) == 1
