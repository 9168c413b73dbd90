"""CI: a core install (``pip install .``, no extras) is small, and runs the model and the service.

Usage, after ``CORE_VENV/bin/python -m pip install .`` has installed the core only::

    python3 .ci/check_core_install.py prepare CORE_VENV CACHE_DIR   # any python3: checks 1-3
    python .ci/check_core_install.py service CORE_VENV CACHE_DIR    # the dev venv: check 4

``prepare`` needs nothing but the standard library, so CI runs it while the dev venv installs;
``service`` needs the dev venv's embedded broker and kafka-python.

Checks, each a failure when it does not hold:

1. the core venv is at most 520 MB on disk;
2. ``streamgmm --version`` answers, and ``streamgmm demo`` says in one line which extra to
   install (exit 2, no traceback);
3. ``python -m streamgmm._precompile`` (the Docker image's build step) fills a numba cache,
   with ``NUMBA_CPU_NAME=generic`` as in the image;
4. ``streamgmm run`` from the core venv, on that cache, against the embedded broker: every
   tick gives an output record, and the service compiles nothing (no new cache entries), so
   the image's build-time cache is what a container uses. The time from process start to the
   first output record is printed (a figure, not a gate).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MAX_MB = 520
KEYS = ("AAA", "BBB", "CCC")
N_PER_KEY = 400


def _fail(message: str) -> None:
    print(f"core install check FAILED: {message}", file=sys.stderr)
    raise SystemExit(1)


def _size_mb(path: Path) -> float:
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            p = os.path.join(root, name)
            if not os.path.islink(p):
                total += os.path.getsize(p)
    return total / 1e6


def _cache_entries(cache: Path) -> set[str]:
    return {str(p.relative_to(cache)) for p in cache.rglob("*.nbc")}


def _ticks() -> list[dict[str, float | str]]:
    import math
    import random

    rng = random.Random(1)
    out = []
    for k, key in enumerate(KEYS):
        price = 100.0 + k
        for i in range(N_PER_KEY):
            price *= math.exp(rng.gauss(0.0, 0.03 if (i // 150) % 2 else 0.008))
            out.append({"symbol": key, "ts": 1.0e9 + 86400.0 * i, "price": price})
    out.sort(key=lambda t: (t["ts"], t["symbol"]))
    return out


def prepare(core: Path, cache: Path) -> None:
    """Checks 1-3; fills ``cache`` as the Docker build's precompile step does."""
    size = _size_mb(core)
    print(f"core venv: {size:.0f} MB on disk (limit {MAX_MB} MB)")
    if size > MAX_MB:
        _fail(f"the core install takes {size:.0f} MB, over {MAX_MB} MB")
    exe = core / "bin" / "streamgmm"
    version = subprocess.run([exe, "--version"], capture_output=True, text=True, check=True)
    print(f"core venv: {version.stdout.strip()}")
    demo = subprocess.run([exe, "demo"], capture_output=True, text=True, timeout=60)
    lines = demo.stderr.strip().splitlines()
    if demo.returncode != 2 or len(lines) != 1 or "[demo]" not in lines[0]:
        _fail(f"streamgmm demo without [demo]: exit {demo.returncode}, stderr {demo.stderr!r}")
    print(f"core venv: streamgmm demo -> exit 2: {lines[0]}")
    cache.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    # cwd elsewhere: `python -m` from the checkout would import the checkout, not the install.
    subprocess.run(
        [core / "bin" / "python", "-m", "streamgmm._precompile"],
        env=_numba_env(cache),
        cwd=cache,
        check=True,
    )
    print(f"core venv: precompile took {time.monotonic() - started:.1f} s wall")
    if not _cache_entries(cache):
        _fail("precompile cached no kernels")


def service(core: Path, cache: Path) -> None:
    """Check 4: ``streamgmm run`` on the prepared cache adds nothing to it."""
    before = _cache_entries(cache)
    if not before:
        _fail(f"no cached kernels in {cache}: run the prepare step first")
    _run_service(core / "bin" / "streamgmm", _numba_env(cache))
    new = _cache_entries(cache) - before
    if new:
        _fail(f"the service compiled kernels the precompile step missed: {sorted(new)}")
    print(f"core venv: the service compiled nothing ({len(before)} cached kernels used)")


def _numba_env(cache: Path) -> dict[str, str]:
    return {**os.environ, "NUMBA_CACHE_DIR": str(cache), "NUMBA_CPU_NAME": "generic"}


def _run_service(exe: Path, env: dict[str, str]) -> None:
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition

    from streamgmm.broker import EmbeddedBroker

    ticks = _ticks()
    with EmbeddedBroker() as broker:
        topic = "core-check"
        broker.create_topics({topic: 2})
        producer = KafkaProducer(**broker.client_kwargs(), linger_ms=5)
        for tick in ticks:
            producer.send(topic, key=str(tick["symbol"]).encode(), value=json.dumps(tick).encode())
        producer.flush()
        producer.close()
        service_env = {
            **env,
            "STREAMGMM_KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap_servers,
            "STREAMGMM_KAFKA_SESSION_TIMEOUT_MS": "6000",
            "STREAMGMM_KAFKA_HEARTBEAT_INTERVAL_MS": "500",
            "STREAMGMM_TOPICS_INPUT": topic,
            "STREAMGMM_METRICS_PORT": "0",
            "STREAMGMM_LOGGING_LEVEL": "WARNING",
        }
        consumer = KafkaConsumer(**broker.client_kwargs(), group_id=None)
        started = time.monotonic()
        proc = subprocess.Popen([exe, "run"], env=service_env, cwd=tempfile.gettempdir())
        try:
            first, n = None, 0
            deadline = started + 180
            while n < len(ticks) and time.monotonic() < deadline:
                if not consumer.assignment():
                    parts = consumer.partitions_for_topic(f"{topic}.regimes")
                    if parts:
                        tps = [TopicPartition(f"{topic}.regimes", p) for p in parts]
                        consumer.assign(tps)
                        consumer.seek_to_beginning(*tps)
                    else:
                        time.sleep(0.1)
                        consumer.topics()
                        continue
                for records in consumer.poll(timeout_ms=100).values():
                    if records and first is None:
                        first = time.monotonic() - started
                    n += len(records)
        finally:
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(60)
            consumer.close()
        if n != len(ticks) or code != 0:
            _fail(f"streamgmm run from the core venv: {n} of {len(ticks)} outputs, exit {code}")
        print(
            f"core venv: streamgmm run gave all {n} outputs; first output {first:.1f} s after "
            "the process started (includes the consumer-group join, ~3 s with these settings)"
        )


if __name__ == "__main__":
    if len(sys.argv) != 4 or sys.argv[1] not in ("prepare", "service"):
        raise SystemExit(__doc__)
    {"prepare": prepare, "service": service}[sys.argv[1]](Path(sys.argv[2]), Path(sys.argv[3]))
