"""RegimeDetector per tick: ``learn_predict_one`` against ``learn_predict_many``, in one run.

The service hands each key's ticks of one poll to ``learn_predict_many`` together; with 500
records per poll over 30 keys that is about 17 ticks per call, the default ``--run`` here.
Figures are medians of ``--repeats`` passes over warm detectors (compile and warm-up excluded).
The last line is the floor of ``learn_predict_many``'s contract (tick dicts in, a dict with two
probability dicts out per tick): its three unavoidable parts, each timed alone on the same ticks.

Usage::

    python3 benchmarks/bench_regime.py [--ticks 40000] [--run 17] [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import numpy as np

from streamgmm import RegimeDetector
from streamgmm.regime import layout as L

DAY = 86400.0


def _ticks(n: int, seed: int = 0) -> list[dict[str, Any]]:
    rng = np.random.default_rng(seed)
    vol = np.where((np.arange(n) // 500) % 2 == 0, 0.01, 0.03)
    prices = 100.0 * np.exp(np.cumsum(rng.normal(0.0, vol)))
    return [
        {"ts": 1.0e9 + DAY * i, "price": float(p), "volume": 1000.0} for i, p in enumerate(prices)
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ticks", type=int, default=40000)
    parser.add_argument("--run", type=int, default=17, help="ticks per learn_predict_many call")
    parser.add_argument(
        "--block-run", type=int, default=1024, help="ticks per learn_predict_block call"
    )
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    warm = _ticks(2000, seed=1)
    one_rates, many_rates, block_rates = [], [], []
    floors: list[tuple[float, float, float]] = []
    for repeat in range(args.repeats):
        ticks = [{**t, "ts": t["ts"] + 1.0e8} for t in _ticks(args.ticks, seed=2 + repeat)]
        one, many, block = RegimeDetector(), RegimeDetector(), RegimeDetector()
        for tick in warm:
            one.learn_predict_one(tick)
        many.learn_predict_many(warm)
        block.learn_predict_many(warm)
        ts = np.array([t["ts"] for t in ticks])
        prices = np.array([t["price"] for t in ticks])
        started = time.perf_counter()
        for tick in ticks:
            one.learn_predict_one(tick)
        one_rates.append(len(ticks) / (time.perf_counter() - started))
        started = time.perf_counter()
        for i in range(0, len(ticks), args.run):
            many.learn_predict_many(ticks[i : i + args.run])
        many_rates.append(len(ticks) / (time.perf_counter() - started))
        started = time.perf_counter()
        for i in range(0, len(ticks), args.block_run):
            block.learn_predict_block(
                ts[i : i + args.block_run], {"price": prices[i : i + args.block_run]}
            )
        block_rates.append(len(ticks) / (time.perf_counter() - started))
        assert one.to_state() == many.to_state() == block.to_state()  # the same model
        floors.append(_floor(ticks, warm))

    one_rate, many_rate = statistics.median(one_rates), statistics.median(many_rates)
    block_rate = statistics.median(block_rates)
    print(
        f"RegimeDetector.learn_predict_one               : {one_rate:10.0f} ticks/s "
        f"({1e6 / one_rate:.1f} us/tick)"
    )
    print(
        f"RegimeDetector.learn_predict_many (runs of {args.run:>3}) : {many_rate:10.0f} ticks/s "
        f"({1e6 / many_rate:.1f} us/tick)"
    )
    print(f"ratio                                          : {many_rate / one_rate:10.1f}")
    print(
        f"RegimeDetector.learn_predict_block (runs of {args.block_run}, columns in and out): "
        f"{block_rate:10.0f} ticks/s ({1e6 / block_rate:.2f} us/tick)"
    )
    read, step, build = (statistics.median(f[i] for f in floors) for i in range(3))
    print(
        f"learn_predict_many's floor, us/tick: reading the tick dicts {read:.2f} + the compiled "
        f"step {step:.2f} + building the output dicts {build:.2f} = {read + step + build:.2f}"
    )


def _floor(ticks: list[dict[str, Any]], warm: list[dict[str, Any]]) -> tuple[float, float, float]:
    """Seconds per tick of the three things learn_predict_many cannot skip, each alone: reading
    each tick dict's fields, the compiled step over all ticks in one call, and the output dict
    (one ``make_output`` with its two probability dicts) of each of the step's rows."""
    det = RegimeDetector()
    det.learn_predict_many(warm)
    n = len(ticks)
    started = time.perf_counter()
    fields = [(t["ts"], t["price"], t.get("volume")) for t in ticks]
    read = (time.perf_counter() - started) / n
    data = np.array([f[:2] for f in fields])
    rows = np.empty((n, L.market_row_width()))
    started = time.perf_counter()
    det._step(det._buf, data, rows)
    step = (time.perf_counter() - started) / n
    listed = rows.tolist()
    output = det._output  # one make_output with its two probability dicts
    started = time.perf_counter()
    for row in listed:
        output(row)
    build = (time.perf_counter() - started) / n
    return read * 1e6, step * 1e6, build * 1e6


if __name__ == "__main__":
    main()
