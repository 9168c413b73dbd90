"""The per-key tick path's two ways for a run of ticks, by run length, in one run.

:meth:`streamgmm.ticks.rules.TickRules.apply` sends a run of in-order ticks of one key to the
detector in one call: as dicts (``learn_predict_many``, then one record encoded at a time) or as
columns (``learn_predict_block``, records encoded a column at a time). The columns cost more to
set up and less per tick; ``BLOCK_RUN`` in ``streamgmm/ticks/rules.py`` is the run length from
which the columns are taken. This prints, per run length, the time per tick of each way (the
detector, the rules and the encoder; warm models, default settings) and their ratio.

Usage::

    python3 benchmarks/bench_apply.py [--ticks 20000] [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from streamgmm.regime import RegimeDetector
from streamgmm.ticks import rules as rules_mod
from streamgmm.ticks.keystate import KeyState
from streamgmm.ticks.rules import TickRules
from streamgmm.ticks.tick import Tick


def ticks_of(n: int, seed: int = 0) -> list[tuple[Tick, bytes | None]]:
    rng = np.random.default_rng(seed)
    vol = np.where((np.arange(n) // 500) % 2 == 0, 0.01, 0.03)
    prices = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 1.0, n) * vol))
    return [
        (Tick("K", 1.6e9 + 60.0 * i, {"price": float(p), "volume": 100.0}, "in", 0, i), None)
        for i, p in enumerate(prices)
    ]


def per_tick_us(run_length: int, block_run: int, ticks: list[tuple[Tick, bytes | None]]) -> float:
    rules_mod.BLOCK_RUN = block_run
    rules = TickRules("reject", "every_tick", 1)
    state = KeyState(RegimeDetector(), partition=0)
    rules.apply(state, ticks[:500])  # warm
    rest = ticks[500:]
    started = time.perf_counter()
    for start in range(0, len(rest), run_length):
        rules.apply(state, rest[start : start + run_length])
    return (time.perf_counter() - started) / len(rest) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ticks", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    ticks = ticks_of(args.ticks + 500)
    default = rules_mod.BLOCK_RUN
    print(f"BLOCK_RUN = {default}; us per tick, medians of {args.repeats} alternating runs")
    print(f"{'run length':>10} {'dicts':>8} {'columns':>8} {'columns/dicts':>14}")
    for length in (1, 2, 4, 8, 16, 32, 64, 256, 2048):
        dicts, columns = [], []
        for _ in range(args.repeats):
            dicts.append(per_tick_us(length, 10**9, ticks))
            columns.append(per_tick_us(length, 1, ticks))
        d, c = statistics.median(dicts), statistics.median(columns)
        print(f"{length:>10} {d:8.2f} {c:8.2f} {c / d:14.2f}")
    rules_mod.BLOCK_RUN = default


if __name__ == "__main__":
    main()
