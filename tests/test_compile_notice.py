"""A first run says it is compiling: one line when numba's cache is cold, one when it is done.

The commands run as users run them, with ``NUMBA_CACHE_DIR`` pointing at a directory of the
test's own: empty, the cache is cold (a fresh install); once one command has compiled, it is
warm for the others, which then print neither line.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from conftest import REPO

from streamgmm.broker import free_port

COMPILING = "streamgmm: compiling the numba kernels"
# A whole line, so a path that happens to hold these words cannot match.
COMPILED = re.compile(r"^streamgmm: kernels compiled in \d+\.\d s$", re.M)


def _streamgmm(args: list[str], cache: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "streamgmm", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "NUMBA_CACHE_DIR": str(cache)},
    )


def test_a_cold_cache_says_compiling_then_done_and_a_warm_one_says_nothing(
    tmp_path: Path,
) -> None:
    cache = tmp_path / "numba-cache"
    cache.mkdir()
    ticks = tmp_path / "ticks.csv"
    ticks.write_text("symbol,ts,price\n" + "".join(f"A,{i},{100 + i % 3}\n" for i in range(60)))
    out = tmp_path / "out.jsonl"

    cold = _streamgmm(["replay", str(ticks), "-o", str(out), "--no-progress"], cache)
    assert cold.returncode == 0, cold.stderr
    lines = cold.stderr.splitlines()
    assert lines[0].startswith(COMPILING), cold.stderr
    assert COMPILED.match(lines[1]), cold.stderr
    assert cold.stderr.count(COMPILING) == 1 and len(COMPILED.findall(cold.stderr)) == 1
    assert len(out.read_text().splitlines()) == 60
    assert any(cache.rglob("*.nbi"))  # numba wrote its cache where it was told

    warm = _streamgmm(["replay", str(ticks), "-o", str(out), "--no-progress"], cache)
    assert warm.returncode == 0, warm.stderr
    assert COMPILING not in warm.stderr and not COMPILED.search(warm.stderr)
    assert warm.stderr.startswith("streamgmm replay: 60 rows")

    png = tmp_path / "regimes.png"
    plot = _streamgmm(["plot", "--output", str(png)], cache)
    assert plot.returncode == 0, plot.stderr
    assert COMPILING not in plot.stdout + plot.stderr
    assert not COMPILED.search(plot.stdout + plot.stderr)
    assert png.exists()

    # The service, warm: straight to its Kafka clients (no broker here), nothing compiled.
    log = tmp_path / "run.log"
    with open(log, "wb") as handle:
        proc = subprocess.Popen(
            [sys.executable, "-m", "streamgmm", "run", "--metrics-port", "0",
             "--bootstrap-servers", f"127.0.0.1:{free_port()}"],
            cwd=REPO,
            stdout=handle,
            stderr=subprocess.STDOUT,
            env={**os.environ, "NUMBA_CACHE_DIR": str(cache)},
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while "cannot set up Kafka clients" not in log.read_text():
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    assert COMPILING not in log.read_text() and not COMPILED.search(log.read_text())
