"""``streamgmm demo`` runs to completion non-interactively and cleans up after itself."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO

pytestmark = pytest.mark.integration


def test_demo_runs_to_completion(tmp_path: Path) -> None:
    png = tmp_path / "regimes.png"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "streamgmm.cli",
            "demo",
            "--no-live",
            "--duration",
            "3",
            "--output",
            str(png),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    out = result.stdout
    # Every tick streamed was processed: 5031 S&P 500 days plus three synthetic instruments.
    assert "final: 20124 of 20124 ticks processed" in out
    for name in ("SP500", "SYN-CALM", "SYN-SWITCH", "SYN-SHOCK"):
        line = next(line for line in out.splitlines() if line.startswith(name))
        assert line.split()[1] == "5031"
    assert "metrics on http://127.0.0.1:" in out
    assert "broker stopped" in out
    assert png.exists() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
