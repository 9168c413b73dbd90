"""``streamgmm demo`` runs to completion non-interactively and cleans up after itself."""

from __future__ import annotations

import inspect
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO

from streamgmm.demo import INSTRUMENTS, LiveTable, run_demo
from streamgmm.plot import DEFAULT_OUTPUT

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
    lines = out.splitlines()
    header = next(line for line in lines if line.startswith("instrument"))
    for name in ("SP500", "SYN-CALM", "SYN-SWITCH", "SYN-SHOCK"):
        row, legend = (line for line in lines if line.startswith(f"{name} "))
        assert row.split()[1] == "5031"
        # Each heading is one word over its own column.
        assert len(row.split()) == len(header.split()) == 9, (header, row)
        assert legend.split()[1:] == INSTRUMENTS[name].split()
        # The regime by name, and the next day's forecast in per cent (warm by now).
        assert row.split()[3] in ("calm", "turbulent")
        volatility, value_at_risk = (float(v.rstrip("%")) for v in row.split()[5:7])
        assert 0 < volatility < 20 and -60 < value_at_risk < 0, row
    assert header.split()[3:] == ["regime", "P(turbulent)", "volatility", "VaR", "drift", "alarms"]
    assert "metrics on http://127.0.0.1:" in out
    assert "broker stopped" in out
    assert png.exists() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_live_table_keeps_the_metrics_address_and_explains_its_keys() -> None:
    """The live table is redrawn on a cleared screen: its header carries the address."""
    table = LiveTable()
    record = {"n_samples_seen": 9, "regime": 1, "regime_name": "turbulent",
              "probabilities": {"0": 0.25, "1": 0.75}, "volatility": 0.0123,
              "value_at_risk": -0.031, "drift_score": 0.5, "drift_detected": False,
              "ts": 86400.0}  # fmt: skip
    table.observe("SYN-CALM", record)
    lines = table.render("streamgmm demo\nmetrics on http://127.0.0.1:1/metrics", True).splitlines()
    assert lines[:2] == ["streamgmm demo", "metrics on http://127.0.0.1:1/metrics"]
    assert lines[3].split() == [
        "SYN-CALM", "9", "1970-01-02", "turbulent", "0.750", "1.23%", "-3.10%", "0.50", "0"
    ]  # fmt: skip
    # No forecast yet (the warm-up): a dash, not "nan%".
    table.observe("SYN-SHOCK", {**record, "volatility": None, "value_at_risk": None})
    row = table.render().splitlines()[2].split()
    assert row[0] == "SYN-SHOCK" and row[5:7] == ["-", "-"]
    assert len(lines[2].split()) == len(lines[3].split())
    assert [line.split()[0] for line in lines[5:9]] == list(INSTRUMENTS)


def test_plot_and_demo_write_the_same_file_by_default() -> None:
    assert inspect.signature(run_demo).parameters["output_png"].default == DEFAULT_OUTPUT
