"""The README's three-terminal quick start runs as written: broker, service, then produce and
consume.

The commands are read from the README's ``bash`` blocks whose first line is
``# terminal N``: terminals 1 and 2 run in the background (the broker, then the service), and
terminal 3's commands run one after the other and must succeed. They run as written, through
bash, with the ``streamgmm`` script of this environment first on PATH. Only the environment
differs from a user's: ``STREAMGMM_KAFKA_BOOTSTRAP_SERVERS`` points every command (the broker
included) at a free port instead of 9092, the metrics port is any free one, and the service's
group timeouts are short, so that the test can run beside others.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO, TEST_HEARTBEAT_MS, TEST_SESSION_TIMEOUT_MS

from streamgmm.broker import free_port

pytestmark = pytest.mark.integration

README = REPO / "README.md"


def terminals(text: str) -> dict[int, list[str]]:
    """Terminal number -> its commands, from the ``# terminal N`` bash blocks of ``text``."""
    found: dict[int, list[str]] = {}
    for block in re.finditer(r"^```bash\n(?P<body>.*?)^```$", text, re.M | re.S):
        lines = block["body"].splitlines()
        head = re.match(r"# terminal (\d+)", lines[0]) if lines else None
        if head:
            found[int(head[1])] = [line for line in lines if line and not line.startswith("#")]
    return found


def test_the_quick_start_has_three_terminals() -> None:
    steps = terminals(README.read_text("utf-8"))
    assert sorted(steps) == [1, 2, 3]
    assert steps[1][0].startswith("streamgmm broker")
    assert steps[2] == ["streamgmm run"]
    assert [command.split()[:2] for command in steps[3]] == [
        ["streamgmm", "produce"],
        ["streamgmm", "consume"],
    ]


def test_the_quick_start_runs_as_written(tmp_path: Path) -> None:
    steps = terminals(README.read_text("utf-8"))
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "STREAMGMM_KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}",
        "STREAMGMM_METRICS_PORT": "0",
        "STREAMGMM_KAFKA_SESSION_TIMEOUT_MS": str(TEST_SESSION_TIMEOUT_MS),
        "STREAMGMM_KAFKA_HEARTBEAT_INTERVAL_MS": str(TEST_HEARTBEAT_MS),
    }

    def start(terminal: int) -> tuple[subprocess.Popen[bytes], Path]:
        (command,) = steps[terminal]
        log = tmp_path / f"terminal{terminal}.log"
        with open(log, "wb") as handle:
            proc = subprocess.Popen(
                ["bash", "-c", f"exec {command}"],
                cwd=REPO,
                env=env,
                stdout=handle,
                stderr=subprocess.STDOUT,
            )
        return proc, log

    background: list[tuple[subprocess.Popen[bytes], Path]] = []
    try:
        background.append(start(1))
        broker, broker_log = background[0]
        deadline = time.monotonic() + 30
        while "streamgmm broker: listening on" not in broker_log.read_text():
            assert broker.poll() is None and time.monotonic() < deadline, broker_log.read_text()
            time.sleep(0.1)
        background.append(start(2))
        results = [
            subprocess.run(
                ["bash", "-o", "pipefail", "-c", command],
                cwd=REPO,
                env=env,
                capture_output=True,
                text=True,
                timeout=240,
            )
            for command in steps[3]
        ]
    finally:
        codes = []
        for proc, _log in reversed(background):  # the service first, then the broker
            proc.send_signal(signal.SIGINT)  # Ctrl-C
            try:
                codes.append(proc.wait(60))
            except subprocess.TimeoutExpired:
                proc.kill()
                codes.append(None)
    logs = "\n".join(log.read_text()[-3000:] for _proc, log in background)
    for result in results:
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:] + logs
    produced, consumed = results
    assert "sent 1500 records to ticks" in produced.stderr
    records = [json.loads(line.split("\t")[1]) for line in consumed.stdout.splitlines()]
    assert len(records) == 3
    assert {r["key"] for r in records} <= {"SYN00", "SYN01", "SYN02"}
    assert all(r["warm"] and r["n_samples_seen"] > 400 for r in records)
    # Ctrl-C is a clean stop for both.
    assert codes == [0, 0], logs
