"""Drift monitors for the market detector: its own and the designs measured against it.

``RegimeDetector``'s drift stage is a CUSUM on the normal score ``z`` of the forecast's
probability integral transform (``streamgmm/regime/drift.py``). This script runs the default
detector once over each stream, tick by tick, keeping per tick ``z``, the scored predictive's
variance, the pooled long-run variance the models target (before the tick) and the return, and
then runs every candidate monitor on those values:

``pit h=H [clip C] [slack K]``
    the detector's CUSUM ``S <- max(0, S + min(z^2, C) - K)``, alarm at ``S > H`` (default
    C = 6, K = 1.25; ``h=30 clip=8`` is the detector's);
``level k=K h=H``
    a CUSUM on the forecast's level ``L = log(predictive variance / long-run variance)``:
    ``S <- max(0, S + L - K)``, alarm at ``S > H``, then no level alarm until ``L < K`` again
    (one alarm per excursion); it sees a persistent break after the forecast absorbed it;
``pit h=30 + level k=K h=H``
    either alarm;
``slow H=T k=K clip=C h=H``
    the PIT CUSUM against a slower predictive: ``z^2 = r^2 / v`` with ``v`` an EWMA of squared
    returns (half-life T ticks, each capped at 50 long-run variances, started at the long-run
    variance);
``log-z2 k=K h=H``
    a CUSUM on ``log(z^2) + 1.27`` (mean 0 under a calibrated forecast; finite variance).

Streams: stationary normal, Student-t(4) and GARCH(1,1)-t(4) streams of 20,000 ticks (false
alarms per tick, goal <= 1e-4); the same kinds with a x3 variance jump at tick 1,500 of 3,000,
and a x3 jump beyond a switching stream's turbulent regime (flagged within 100 ticks); the
S&P 500 (alarm dates; goal: one in 2008-09-01..2008-11-30, at most 3 others). TUNING uses seeds
100-114 (stationary) and 100-124 (jumps) and the S&P 500 1999-2018; HELD-OUT seeds 0-4
(stationary, jumps), 0-19 (beyond the turbulent regime), the S&P 500 from 2004 and the NASDAQ;
``fresh`` synthetic seeds 500-514 and 500-524 that no default was chosen or checked on.

Usage::

    python benchmarks/drift_alternatives.py --split tuning [--processes 2]
    python benchmarks/drift_alternatives.py --split held-out
    python benchmarks/drift_alternatives.py --split fresh
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from numba import njit
from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import regime_support as rs

from streamgmm import synthetic as syn

T0 = 946684800.0  # 2000-01-01, as bench_forecast.py's synthetic streams
DEADLINE = 100
BREAK = ("2008-09-01", "2008-11-30")


def harvest(ts: np.ndarray, price: np.ndarray) -> dict[str, np.ndarray]:
    """The default detector over one stream, one tick per call (to read the long-run variance
    before each tick): per tick ``z`` (NaN where nothing was scored), the scored predictive's
    variance, the long-run variance and the return, in natural log-return units."""
    from streamgmm.regime import RegimeDetector, volatility
    from streamgmm.regime import layout as L

    det = RegimeDetector()
    buf = det._buf
    lay = L.read_market_layout(buf)
    ga, eg = lay[L.GJR], lay[L.EGARCH]
    data = np.column_stack([np.asarray(ts, float), np.asarray(price, float)])
    n = data.shape[0]
    rows = np.empty((n, L.market_row_width(extra=True)))
    vv = np.full(n, np.nan)
    for i in range(n):
        if buf[L.M_PHASE] == L.RUNNING:
            wa, _ = volatility.pool_weight(buf[L.M_LOG_W_GJR], buf[L.M_LOG_W_EG])
            k = (buf[L.M_SCALE] / 100.0) ** 2
            vv[i] = (wa * buf[ga + L.VV] + (1.0 - wa) * buf[eg + L.VV]) * k
        det._step(buf, data[i : i + 1], rows[i : i + 1])
    e = L.R_PROBS + 4
    wa = rows[:, e + L.X_W]
    var = wa * rows[:, e + L.X_SD_A] ** 2 + (1.0 - wa) * rows[:, e + L.X_SD_B] ** 2
    pit = rows[:, e + L.X_PIT]
    z = stats.norm.ppf(np.clip(pit, 1e-300, 1.0 - 1e-16))
    r = np.concatenate([[np.nan], np.diff(np.log(data[:, 1]))])
    drift = rows[:, L.R_DRIFT]
    return {"z": z, "var": var, "vv": vv, "r": r, "drift": drift}


# -- the candidates (compiled; every loop bounded by the stream's length) ------------------------


@njit(cache=True)
def pit_cusum(z, slack, clip, h):
    out = np.zeros(z.size, np.bool_)
    s = 0.0
    for i in range(z.size):
        if not np.isfinite(z[i]):
            continue
        s = max(0.0, s + min(z[i] * z[i], clip) - slack)
        if s > h:
            out[i] = True
            s = 0.0
    return out


@njit(cache=True)
def level_cusum(z, level, k, h):
    out = np.zeros(z.size, np.bool_)
    s = 0.0
    for i in range(z.size):
        if not (np.isfinite(z[i]) and np.isfinite(level[i])):
            continue
        if s < 0.0:  # after an alarm: none until the level is back below k
            if level[i] < k:
                s = 0.0
            continue
        s = max(0.0, s + level[i] - k)
        if s > h:
            out[i] = True
            s = -1.0
    return out


@njit(cache=True)
def slow_cusum(z, r, vv, halflife, k, clip, h):
    out = np.zeros(z.size, np.bool_)
    s = 0.0
    v = np.nan
    lam = 2.0 ** (-1.0 / halflife)
    for i in range(z.size):
        if not (np.isfinite(z[i]) and np.isfinite(vv[i])):
            continue
        if not np.isfinite(v):
            v = vv[i]
        s = max(0.0, s + min(r[i] * r[i] / v, clip) - k)
        if s > h:
            out[i] = True
            s = 0.0
        v = lam * v + (1.0 - lam) * min(r[i] * r[i], 50.0 * vv[i])
    return out


@njit(cache=True)
def log_z2_cusum(z, k, h):
    out = np.zeros(z.size, np.bool_)
    s = 0.0
    for i in range(z.size):
        if not np.isfinite(z[i]):
            continue
        s = max(0.0, s + math.log(max(z[i] * z[i], 1e-8)) + 1.2704 - k)
        if s > h:
            out[i] = True
            s = 0.0
    return out


Monitor = Callable[[dict[str, np.ndarray]], np.ndarray]


def _level(v: dict[str, np.ndarray]) -> np.ndarray:
    return np.log(v["var"] / v["vv"])


def _pit(h: float, clip: float = 6.0, slack: float = 1.25) -> Monitor:
    return lambda v: pit_cusum(v["z"], slack, clip, h)


def _lev(k: float, h: float) -> Monitor:
    return lambda v: level_cusum(v["z"], _level(v), k, h)


def _either(a: Monitor, b: Monitor) -> Monitor:
    return lambda v: a(v) | b(v)


CANDIDATES: dict[str, Monitor] = {
    "pit h=30 clip=8 (the detector's)": _pit(30.0, 8.0),
    "pit h=24": _pit(24.0),
    "pit h=26": _pit(26.0),
    "pit h=28": _pit(28.0),
    "pit h=30": _pit(30.0),
    "pit h=36": _pit(36.0),
    "pit h=20 clip=9": _pit(20.0, 9.0),
    "pit h=32 clip=8": _pit(32.0, 8.0),
    "pit h=32 clip=9": _pit(32.0, 9.0),
    "pit h=36 clip=9": _pit(36.0, 9.0),
    "level k=2 h=10": _lev(2.0, 10.0),
    "level k=1.75 h=30": _lev(1.75, 30.0),
    "level k=1.5 h=40": _lev(1.5, 40.0),
    "pit h=30 + level k=2 h=10": _either(_pit(30.0), _lev(2.0, 10.0)),
    "pit h=36 + level k=1.5 h=40": _either(_pit(36.0), _lev(1.5, 40.0)),
    "slow T=60 k=3 clip=16 h=40": lambda v: slow_cusum(
        v["z"], v["r"], v["vv"], 60.0, 3.0, 16.0, 40.0
    ),
    "slow T=250 k=3 clip=9 h=40": lambda v: slow_cusum(
        v["z"], v["r"], v["vv"], 250.0, 3.0, 9.0, 40.0
    ),
    "log-z2 k=0.5 h=30": lambda v: log_z2_cusum(v["z"], 0.5, 30.0),
}


# -- streams and jobs -----------------------------------------------------------------------------


def _stream(job: tuple[str, str, Any]) -> tuple[np.ndarray, np.ndarray, int]:
    """(ts, price, change tick or -1) of one job."""
    family, kind, key = job
    if family == "stationary":
        s = syn.heavy_tailed_stream(key, 20_000, kind, t0=T0)
        return s.ts, s.price, -1
    if family == "jump" and kind == "beyond":
        return rs.beyond_turbulent_jump(key)
    if family == "jump":
        s = syn.variance_jump(syn.heavy_tailed_stream(key, 3000, kind, t0=T0), 1500, 3.0)
        return s.ts, s.price, 1500
    prices = rs.real_series()[key]
    return rs.posix_seconds(prices.index), prices.to_numpy(float), -1


def run_job(job: tuple[str, str, Any]) -> tuple[tuple[str, str, Any], int, dict[str, list[int]]]:
    """Every candidate's alarm ticks on one stream (and the count of scored ticks)."""
    ts, price, _ = _stream(job)
    values = harvest(ts, price)
    scored = int(np.isfinite(values["z"]).sum())
    alarms = {name: np.flatnonzero(fn(values)).tolist() for name, fn in CANDIDATES.items()}
    # The detector's own flags, as a check that the harvest reproduces it.
    alarms["(detector)"] = np.flatnonzero(values["drift"] == 1.0).tolist()
    return job, scored, alarms


def jobs(split: str) -> list[tuple[str, str, Any]]:
    if split == "tuning":
        stationary, jumps, beyond = range(100, 115), range(100, 125), range(100, 125)
        real = ["sp500_1999"]
    elif split == "fresh":
        stationary, jumps, beyond = range(500, 515), range(500, 525), range(500, 525)
        real = []
    else:
        stationary, jumps, beyond = range(5), range(5), range(20)
        real = ["sp500_2004", "nasdaq"]
    out: list[tuple[str, str, Any]] = [
        ("stationary", kind, seed) for seed in stationary for kind in ("t4", "garch", "normal")
    ]
    out += [("jump", kind, seed) for seed in jumps for kind in ("normal", "t4", "garch")]
    out += [("jump", "beyond", seed) for seed in beyond]
    out += [("real", "", name) for name in real]
    return out


def report(results: list[tuple[tuple[str, str, Any], int, dict[str, list[int]]]]) -> None:
    dates = {
        name: rs.real_series()[name].index.strftime("%Y-%m-%d")
        for (family, _, name), _, _ in results
        if family == "real"
    }
    for cand in [*CANDIDATES, "(detector)"]:
        fa = {}
        for kind in ("t4", "garch", "normal"):
            rows = [
                (len(a[cand]), n) for (f, k, _), n, a in results if f == "stationary" and k == kind
            ]
            fa[kind] = sum(x for x, _ in rows) / max(sum(n for _, n in rows), 1)
        hits = {}
        for kind in ("normal", "t4", "garch", "beyond"):
            delays = []
            for (f, k, key), _, a in results:
                if f == "jump" and k == kind:
                    at = _stream((f, k, key))[2] if k == "beyond" else 1500
                    after = [i - at for i in a[cand] if i >= at]
                    delays.append(after[0] if after else None)
            ok = [d for d in delays if d is not None and d <= DEADLINE]
            late = max(ok) if ok else "-"
            hits[kind] = f"{len(ok)}/{len(delays)} (max {late})"
        print(
            f"{cand:30s} FA t4 {fa['t4']:.1e} garch {fa['garch']:.1e} normal {fa['normal']:.1e}"
            f" | x3 within {DEADLINE}: normal {hits['normal']} t4 {hits['t4']} "
            f"garch {hits['garch']} beyond {hits['beyond']}"
        )
        for (f, _, name), _, a in results:
            if f == "real":
                when = [str(dates[name][i]) for i in a[cand]]
                in_break = [d for d in when if BREAK[0] <= d <= BREAK[1]]
                print(
                    f"{'':30s} {name}: {len(when)} alarms, {len(in_break)} in the 2008 break: "
                    + " ".join(when)
                )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split", choices=("tuning", "held-out", "fresh"), default="tuning")
    parser.add_argument("--processes", type=int, default=2)
    args = parser.parse_args()
    started = time.perf_counter()
    todo = jobs(args.split)
    with ProcessPoolExecutor(args.processes) as pool:
        results = list(pool.map(run_job, todo, chunksize=1))
    print(f"Drift candidates on {args.split.upper()} ({len(todo)} streams)")
    report(results)
    print(f"runtime {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
