"""``streamgmm run`` refuses bad configuration with one line on stderr and exit code 2."""

from __future__ import annotations

import csv
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO, KafkaTools, make_ticks

from streamgmm.broker import EmbeddedBroker


def _run(args: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "streamgmm.cli", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )


@pytest.mark.parametrize(
    ("args", "env", "names"),
    [
        (["run", "--metrics-port", "99999"], {}, "metrics.port"),
        (
            ["run", "--bootstrap-servers", "127.0.0.1:1"],
            {"STREAMGMM_KAFKA_SESSION_TIMEOUT_MS": "soon"},
            "kafka.session_timeout_ms",
        ),
        (["run", "--input-topic", "bad topic!"], {}, "topics.input"),
    ],
)
def test_bad_setting_is_one_line_and_exit_2(
    args: list[str], env: dict[str, str], names: str
) -> None:
    result = _run(args, env)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert names in lines[0]
    assert result.stdout == ""


def test_a_misspelt_setting_gets_a_suggestion_and_a_stray_variable_a_warning() -> None:
    result = _run(
        ["run", "--set", "kafka.bootstrap_server=127.0.0.1:1"],
        {"STREAMGMM_DETECTR_N_REGIMES": "3"},
    )
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "streamgmm: warning: environment variable STREAMGMM_DETECTR_N_REGIMES names no setting "
        "and is ignored; did you mean STREAMGMM_DETECTOR_N_REGIMES?",
        "streamgmm: configuration error: unknown setting 'kafka.bootstrap_server' in "
        "command-line overrides; did you mean kafka.bootstrap_servers?",
    ]


@pytest.mark.parametrize("trouble", ["host", "port in use"])
def test_unusable_metrics_address_is_one_line_and_exit_2(trouble: str) -> None:
    """Found only when the service binds it, but a bad setting all the same: no traceback."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        args = (
            ["--metrics-host", "no-such-host.invalid", "--metrics-port", "0"]
            if trouble == "host"
            else ["--metrics-host", "127.0.0.1", "--metrics-port", str(port)]
        )
        # No broker is needed: the metrics server starts first.
        result = _run(["run", "--bootstrap-servers", "127.0.0.1:1", *args])
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "configuration error" in lines[0] and "[metrics] host and port" in lines[0]
    assert ("no-such-host.invalid" if trouble == "host" else f":{port}") in lines[0]


def test_bad_config_file_value(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text('[output]\nemit_policy = "sometimes"\n')
    result = _run(["run", "--config", str(config)])
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "output.emit_policy" in lines[0] and "sometimes" in lines[0]


def test_missing_config_file(tmp_path: Path) -> None:
    result = _run(["run", "--config", str(tmp_path / "nope.toml")])
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1
    assert "nope.toml" in result.stderr


@pytest.mark.integration
def test_plain_flags_run_against_embedded_broker(
    broker: EmbeddedBroker, kafka_tools: KafkaTools, unique: str, tmp_path: Path
) -> None:
    """No config file: the shipped defaults plus a few flags are enough (api_version 2.5)."""
    topic = f"{unique}-ticks"
    broker.create_topics({topic: 3})
    ticks = make_ticks(["AAA", "BBB"], 150, seed=4)
    csv_path = tmp_path / "ticks.csv"
    with open(csv_path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["symbol", "ts", "price", "volume"])
        writer.writeheader()
        writer.writerows(ticks)
    log_path = tmp_path / "run.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "streamgmm.cli",
                "run",
                "--bootstrap-servers",
                broker.bootstrap_servers,
                "--input-topic",
                topic,
                "--group-id",
                unique,
                "--metrics-port",
                "0",
            ],
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        sent = _run(
            [
                "produce",
                str(csv_path),
                "--topic",
                topic,
                "--bootstrap-servers",
                broker.bootstrap_servers,
            ]
        )
        assert sent.returncode == 0, sent.stderr
        outputs = kafka_tools.read_all(f"{topic}.regimes", expect=len(ticks), timeout=90)
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(60)
    assert code == 0, log_path.read_text()[-2000:]
    assert len(outputs) == len(ticks)
    last = {r.json()["key"]: r.json()["n_samples_seen"] for r in outputs}
    assert last == {"AAA": 150, "BBB": 150}
    # The derived changelog name is used (and was created by the service).
    assert broker.topic_partitions(f"{unique}.changelog") == {0, 1, 2}


def test_unreachable_broker_retries_and_stops_on_sigterm(tmp_path: Path) -> None:
    """No broker: clear retry lines with backoff, and SIGTERM still stops it with exit 0."""
    from streamgmm.broker import free_port

    dead = f"127.0.0.1:{free_port()}"
    log_path = tmp_path / "run.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "streamgmm.cli",
                "run",
                "--bootstrap-servers",
                dead,
                "--metrics-port",
                "0",
            ],
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 30
        while log_path.read_text().count("cannot set up Kafka clients") < 2:
            assert time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(15)
    finally:
        if proc.poll() is None:
            proc.kill()
    text = log_path.read_text()
    assert code == 0, text
    assert dead in text and "retrying in" in text


def test_python_dash_m_streamgmm_is_the_cli() -> None:
    """The README's demo command uses ``python3 -m streamgmm``; it must reach the same CLI."""
    proc = subprocess.run(
        [sys.executable, "-m", "streamgmm", "--help"], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    for command in ("run", "replay", "produce", "consume", "broker", "demo", "plot"):
        assert command in proc.stdout


def test_a_missing_input_topic_lists_the_closest_topics_and_ctrl_c_stops_cleanly(
    broker: EmbeddedBroker, unique: str, tmp_path: Path, client: str
) -> None:
    """A misspelt input topic: the wait names the broker's topics, closest first (again once
    a minute), and Ctrl-C (SIGINT) during the wait is a clean stop, on either client."""
    broker.create_topics({f"{unique}-ticks": 1, f"{unique}-orders": 1})
    log_path = tmp_path / "run.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [
                sys.executable, "-m", "streamgmm.cli", "run",
                "--bootstrap-servers", broker.bootstrap_servers,
                "--input-topic", f"{unique}-tiks",
                "--group-id", unique,
                "--metrics-port", "0",
                "--set", f"kafka.client={client}",
            ],
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while "closest names first" not in log_path.read_text():
            assert proc.poll() is None and time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.2)
        time.sleep(3.0)  # a few more checks for the topic, but no second listing yet
        proc.send_signal(signal.SIGINT)
        code = proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    text = log_path.read_text()
    assert code == 0, text
    (listing,) = [line for line in text.splitlines() if "closest names first" in line]
    assert f"input topic {unique}-tiks does not exist yet" in listing
    assert "again in 60s" in listing
    names = listing.split("closest names first: ", 1)[1].split(", ")
    # The misspelt name's neighbour comes first, ahead of the other topic of this test.
    assert names[0] == f"{unique}-ticks", names[:5]
    assert names.index(f"{unique}-ticks") < names.index(f"{unique}-orders")
    assert "ERROR" not in text and "Traceback" not in text, text
    assert "received SIGINT" in text
