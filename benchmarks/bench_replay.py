"""``streamgmm replay`` against a bare ``csv.DictReader`` -> ``json.dumps`` loop, in one run.

Both read the same CSV file of ``--rows`` ticks over ``--keys`` instruments (columns
``symbol, ts, price, volume``; a two-regime random walk per key, one tick per key and day) and
write one JSON line per row to a file:

- ``bare``: ``for row in csv.DictReader(f): out.write(json.dumps(row) + "\\n")``;
- ``replay``: :func:`streamgmm.replay.replay` with the default settings (decoding and
  validation, the per-key tick path with its detectors, the output encoder), in this process.
  A short replay first loads the compiled kernels, so no figure counts imports or
  compilation; then, as the ``streamgmm replay`` command does, ``gc.freeze()``;
- ``no model``: the same replay with a stand-in detector that returns one fixed output, so
  the difference to ``replay`` is what the detectors cost.

They alternate, ``--repeats`` times each; the figures are medians, and the ratios are rows/s
over the bare loop's. The machine's noise moves them alike.

Usage::

    python3 benchmarks/bench_replay.py [--rows 300000] [--keys 30] [--repeats 3]
"""

from __future__ import annotations

import argparse
import csv
import gc
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from streamgmm.regime.output import OUTPUT_KEYS, OutputBlock, make_output, make_output_columns
from streamgmm.replay import replay
from streamgmm.settings.layers import load_settings
from streamgmm.settings.service import Settings


def write_ticks(path: Path, n_rows: int, n_keys: int, seed: int = 0) -> None:
    """A CSV of ``n_rows`` ticks, ``n_keys`` instruments interleaved, one day apart per key."""
    rng = np.random.default_rng(seed)
    per_key = -(-n_rows // n_keys)
    vol = np.where((np.arange(per_key) // 500) % 2 == 0, 0.01, 0.03)
    prices = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 1.0, (n_keys, per_key)) * vol, axis=1))
    volumes = rng.integers(1_000, 100_000, (n_keys, per_key))
    with path.open("w", newline="") as handle:
        handle.write("symbol,ts,price,volume\n")
        for i in range(n_rows):
            day, k = divmod(i, n_keys)
            ts = 1.0e9 + 86400.0 * day
            handle.write(f"K{k:03d},{ts!r},{prices[k, day]:.6f},{volumes[k, day]}\n")


def bare_loop(path: Path, out_path: Path) -> int:
    rows = 0
    with path.open(newline="") as handle, out_path.open("w") as out:
        for row in csv.DictReader(handle):
            out.write(json.dumps(row) + "\n")
            rows += 1
    return rows


def replay_file(path: Path, out_path: Path) -> int:
    with out_path.open("wb") as out:
        summary = replay(path, out, load_settings())
    assert summary.dead_letters.total() == 0 and summary.records == summary.rows
    return summary.rows


class FixedOutput:
    """Stand-in detector: one warm output, whatever the ticks (no model at all)."""

    stream_problem = None

    OUT = make_output(
        1, {0: 0.2512345678901234, 1: 0.7487654321098766},
        {0: 0.4012345678901234, 1: 0.5987654321098766}, -1.2345678901234567,
        0.12345678901234567, False, 1234, True, 0.012345678901234567, -0.031234567890123456,
    )  # fmt: skip

    def __init__(self, settings: Settings) -> None:
        pass

    def learn_predict_one(self, tick: dict[str, float]) -> dict[str, Any]:
        return self.OUT

    def learn_predict_many(self, ticks: list[dict[str, float]]) -> list[dict[str, Any]]:
        return [self.OUT] * len(ticks)

    def learn_predict_block(self, ts: np.ndarray, fields: dict[str, np.ndarray]) -> OutputBlock:
        n = len(ts)
        out = self.OUT
        columns = make_output_columns(
            *(
                [[p] * n for p in out[name].values()] if isinstance(out[name], dict)
                else [out[name]] * n
                for name in OUTPUT_KEYS
            )
        )  # fmt: skip
        return OutputBlock(list(range(n)), columns, [])

    def to_state(self) -> dict[str, Any]:
        return {}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> FixedOutput:
        # Restorable like a detector, so ticks past the wall clock take the same path.
        return cls(load_settings())


def replay_without_model(path: Path, out_path: Path) -> int:
    with out_path.open("wb") as out:
        summary = replay(path, out, load_settings(), pipeline_factory=FixedOutput)
    return summary.rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=300_000)
    parser.add_argument("--keys", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-replay-") as tmp:
        data, small, out = Path(tmp) / "ticks.csv", Path(tmp) / "small.csv", Path(tmp) / "out"
        write_ticks(data, args.rows, args.keys)
        write_ticks(small, 20 * 300, 20, seed=1)
        replay_file(small, out)  # load the compiled kernels
        gc.freeze()  # as streamgmm replay does before it starts
        bare_rates: list[float] = []
        replay_rates: list[float] = []
        no_model_rates: list[float] = []
        for repeat in range(args.repeats):
            for name, run, rates in (
                ("bare", bare_loop, bare_rates),
                ("replay", replay_file, replay_rates),
                ("no model", replay_without_model, no_model_rates),
            ):
                started = time.perf_counter()
                rows = run(data, out)
                seconds = time.perf_counter() - started
                rates.append(rows / seconds)
                print(f"run {repeat + 1} {name:<8}: {rows} rows in {seconds:6.2f} s", flush=True)

    bare = statistics.median(bare_rates)
    replayed = statistics.median(replay_rates)
    no_model = statistics.median(no_model_rates)
    pairs = [r / b for r, b in zip(replay_rates, bare_rates, strict=True)]
    print(f"bare csv.DictReader -> json.dumps   : {bare:10.0f} rows/s (median)")
    print(f"streamgmm replay                    : {replayed:10.0f} rows/s (median)")
    print(f"streamgmm replay, no model          : {no_model:10.0f} rows/s (median)")
    print(f"ratio replay / bare (of medians)    : {replayed / bare:10.2f}")
    print(f"ratio per pair of runs              : {', '.join(f'{p:.2f}' for p in pairs)}")
    print(f"ratio replay without model / bare   : {no_model / bare:10.2f}")
    detector_us = 1e6 / replayed - 1e6 / no_model
    print(f"the detectors' share of replay      : {detector_us:10.1f} us/row")


if __name__ == "__main__":
    main()
