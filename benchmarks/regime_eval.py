"""Regime-detector evaluation: real series against Hamilton, a baseline, synthetic streams, drift.

Prints, for a detector factory (default ``streamgmm.regime:RegimeDetector`` with its defaults),
TUNING, HELD-OUT and FRESH sections (the split is in ``tests/regime_support.py``; FRESH has
real series only):

* real series: argmax agreement with the Hamilton filter (statsmodels ``MarkovRegression``,
  fitted on the same span, filtered probabilities) over the detector's warm ticks, against the
  EWMA-volatility threshold rules tuned once on ``sp500_1999`` (the best rule of the whole grid,
  ``ewma``, and the best scale-free one, ``ewma_sf``) on the same ticks;
* synthetic switching streams (natural seeds, then the same seeds with a forced calm-only
  warm-up of 400 ticks): accuracy, seeds whose warm-up saw only the calm regime flagged ``*``;
* intraday bars (5-minute Gaussian; 30-minute Student-t(5)): accuracy, flip rate on the first
  bar after a gap against ordinary bars, high / calm mean |return|, switches per session;
* spacing invariance: one price path stamped 1 ms, 1 s, 1 min, 30 min and 1 day apart;
* drift: false alarms per tick on stationary streams (Gaussian, Student-t(4), GARCH-t(4)),
  delays of a x3 variance jump at tick 1500 (of 3000) and at tick 250 (of 750), and (TUNING)
  the alarm dates on the S&P 500 1999-2018;
* warm-by-tick: the first tick with ``warm=True``.

Usage::

    python3 benchmarks/regime_eval.py [--factory module:callable] [--params JSON]
        [--processes 2] [--baseline-warmup N] [--only tuning|held-out|fresh] [--json PATH]

``--params '{"warmup": 100}'`` passes keyword arguments to the factory. Hamilton fits are cached
(``$STREAMGMM_TEST_CACHE``, default ``~/.cache/streamgmm-tests``); uncached they take about a
minute and a half on two cores.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import json
import math
import sys
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import regime_support as rs

from streamgmm import synthetic as syn

SPACINGS = (("1ms", 1e-3), ("1s", 1.0), ("1min", 60.0), ("30min", 1800.0), ("1day", 86400.0))
SPACING_SEEDS = {"TUNING": (100, 101, 102), "HELD-OUT": (0, 1, 2), "FRESH": ()}
CALM_WARMUP = 400
HEAVY_N = 20000
HEAVY_KINDS = ("normal", "t4", "garch")
JUMPS = ((3000, 1500), (750, 250))  # (n, at)
JUMP_DEADLINE = 30
INTRADAY_VARIANTS: dict[str, dict[str, Any]] = {
    "5min": {},
    "30min-t5": {"days": 500, "bar_seconds": 1800.0, "df": 5.0},
}
T0 = 1.6e9  # synthetic streams start in 2020, like real ticks

_MAKE: Callable[[], Any] | None = None


def resolve_factory(spec: str, params: dict[str, Any]) -> Callable[[], Any]:
    """``module:callable`` plus keyword arguments -> a zero-argument detector factory."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise SystemExit(f"--factory must look like module:callable, got {spec!r}")
    target: Any = importlib.import_module(module_name)
    for part in attr.split("."):
        target = getattr(target, part)
    return functools.partial(target, **params)


def _init(spec: str, params: dict[str, Any]) -> None:
    global _MAKE
    _MAKE = resolve_factory(spec, params)


def _make() -> Any:
    assert _MAKE is not None
    return _MAKE()


def _run(ts: np.ndarray, price: np.ndarray) -> rs.DetectorRun:
    return rs.run_detector(ts, price, _make, keep_outputs=False)


# -- tasks (run in the pool; small picklable results) ----------------------------------------


def task_real(name: str, ts: np.ndarray, price: np.ndarray) -> dict[str, Any]:
    run = _run(ts, price)
    return {
        "name": name,
        "regime": run.regime,
        "warm": run.warm,
        "drift": run.drift_detected,
        "first_warm_tick": run.first_warm_tick,
    }


def task_switching(seed: int, calm_warmup: int | None) -> dict[str, Any]:
    s = syn.switching_stream(seed, calm_warmup=calm_warmup, t0=T0)
    run = _run(s.ts, s.price)
    truth = s.regime[1:]
    first = run.first_warm_tick if run.first_warm_tick is not None else len(s.price)
    return {
        "seed": seed,
        "accuracy": rs.agreement(run.regime, truth, run.warm),
        "calm_warmup": bool(s.regime[: first + 1].max() == 0),
        "first_warm_tick": run.first_warm_tick,
    }


def task_intraday(seed: int, variant: str) -> dict[str, Any]:
    s = syn.intraday_stream(seed, **INTRADAY_VARIANTS[variant])
    run = _run(s.ts, s.price)
    truth, gap = s.regime[1:], s.after_gap[1:]
    returns = rs.log_returns(s.price)
    gap_rate, ord_rate, ratio = rs.gap_flip_rates(run.regime, gap, run.warm)
    means, abs_ratio = rs.regime_abs_returns(run.regime, returns, run.warm)
    warm = run.warm
    sessions = len(np.unique(s.session[1:][warm])) if warm.any() else 0
    switches = int(np.sum((run.regime[1:] != run.regime[:-1]) & warm[1:] & warm[:-1]))
    true_switches = int(np.sum((truth[1:] != truth[:-1]) & warm[1:] & warm[:-1]))
    _, _, alarm_rate = rs.false_alarm_rate(run.drift_detected, warm)
    return {
        "seed": seed,
        "variant": variant,
        "accuracy": rs.agreement(run.regime, truth, warm),
        "gap_rate": gap_rate,
        "ordinary_rate": ord_rate,
        "gap_ratio": ratio,
        "abs_means": means.tolist(),
        "abs_ratio": abs_ratio,
        "switches_per_session": switches / sessions if sessions else math.nan,
        "true_switches_per_session": true_switches / sessions if sessions else math.nan,
        "alarms_per_tick": alarm_rate,
        "first_warm_tick": run.first_warm_tick,
        "zero_fraction": float(np.mean(returns == 0.0)),
    }


def task_spacing(seed: int) -> dict[str, Any]:
    runs = {}
    for label, spacing in SPACINGS:
        s = syn.switching_stream(seed, spacing=spacing, t0=T0)
        runs[label] = _run(s.ts, s.price)
    truth = s.regime[1:]
    labels = [label for label, _ in SPACINGS]
    pairwise = []
    for i, a in enumerate(labels):
        for b in labels[i + 1 :]:
            both = runs[a].warm & runs[b].warm
            pairwise.append(rs.agreement(runs[a].regime, runs[b].regime, both))
    day = runs["1day"]
    return {
        "seed": seed,
        "vs_day": {
            label: rs.agreement(runs[label].regime, day.regime, runs[label].warm & day.warm)
            for label in labels
        },
        "min_pairwise": float(np.nanmin(pairwise)) if pairwise else math.nan,
        "accuracy": {
            label: rs.agreement(runs[label].regime, truth, runs[label].warm) for label in labels
        },
        "turbulent_fraction": {
            label: float(np.mean(runs[label].regime[runs[label].warm] == 1))
            if runs[label].warm.any()
            else math.nan
            for label in labels
        },
        "first_warm_tick": {label: runs[label].first_warm_tick for label in labels},
    }


def task_heavy(seed: int, kind: str) -> dict[str, Any]:
    s = syn.heavy_tailed_stream(seed, HEAVY_N, kind, t0=T0)
    run = _run(s.ts, s.price)
    alarms, n_warm, rate = rs.false_alarm_rate(run.drift_detected, run.warm)
    return {"seed": seed, "kind": kind, "alarms": alarms, "warm_ticks": n_warm, "rate": rate}


def task_jump(seed: int, kind: str, n: int, at: int) -> dict[str, Any]:
    s = syn.variance_jump(syn.heavy_tailed_stream(seed, n, kind, t0=T0), at, 3.0)
    run = _run(s.ts, s.price)
    before = run.drift_detected[: at - 1] & run.warm[: at - 1]
    return {
        "seed": seed,
        "kind": kind,
        "n": n,
        "at": at,
        "delay": rs.detection_delay(run.drift_detected, at),
        "alarms_before": int(before.sum()),
        "first_warm_tick": run.first_warm_tick,
    }


Job = tuple[str, str, Callable[..., dict[str, Any]], tuple[Any, ...]]  # family, split, fn, args


def _call(job: Job) -> dict[str, Any]:
    _, _, fn, args = job
    return fn(*args)


def build_jobs(splits: list[rs.Split], series: dict[str, Any]) -> list[Job]:
    """Every detector run of the evaluation, tagged with its family and split."""
    jobs: list[Job] = []
    for name, prices in series.items():
        ts, price = rs.posix_seconds(prices.index), prices.to_numpy(np.float64)
        jobs.append(("real", "", task_real, (name, ts, price)))
    for split in splits:
        tag = split.name
        for seed in split.switching_seeds:
            jobs.append(("switching", tag, task_switching, (seed, None)))
            jobs.append(("switching_calm", tag, task_switching, (seed, CALM_WARMUP)))
        for seed in split.intraday_seeds:
            for variant in INTRADAY_VARIANTS:
                jobs.append(("intraday", tag, task_intraday, (seed, variant)))
        for seed in SPACING_SEEDS[tag]:
            jobs.append(("spacing", tag, task_spacing, (seed,)))
        for seed in split.heavy_seeds:
            for kind in HEAVY_KINDS:
                jobs.append(("heavy", tag, task_heavy, (seed, kind)))
                for n, at in JUMPS:
                    jobs.append(("jump", tag, task_jump, (seed, kind, n, at)))
    return jobs


# -- formatting -----------------------------------------------------------------------------


def _f(value: float | None, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and math.isnan(value):
        return "nan"
    return f"{value:.{digits}f}"


def _table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]

    def line(cells: list[str]) -> str:
        return "  ".join(
            c.rjust(w) if i else c.ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        )

    return "\n".join([line(header), *(line(r) for r in rows)])


def _summary(values: list[float]) -> str:
    arr = np.array(values, dtype=float)
    return (
        f">=0.9: {int(np.sum(arr >= 0.9))}/{arr.size}  median {_f(float(np.median(arr)))}  "
        f"min {_f(float(np.min(arr)))}"
    )


def _median(values: list[float]) -> float:
    return float(np.median(values)) if values else math.nan


# -- report sections ------------------------------------------------------------------------


def report_real(
    split: rs.Split,
    real: dict[str, dict[str, Any]],
    refs: dict[str, rs.HamiltonReference],
    series: dict[str, Any],
    rules: tuple[rs.EwmaRule, rs.EwmaRule],
) -> dict[str, dict[str, float]]:
    rows, table = [], {}
    for name in split.real:
        r, ref, warm = real[name], refs[name], real[name]["warm"]
        det = rs.agreement(r["regime"], ref.labels, warm)
        base, base_sf = (
            rs.agreement(rs.apply_rule(rule, series[name]), ref.labels, warm) for rule in rules
        )
        margin = det - max(base, base_sf)
        table[name] = {"det": det, "ewma": base, "ewma_sf": base_sf, "margin": margin}
        turbulent = (
            (float(np.mean(r["regime"][warm] == 1)), float(np.mean(ref.labels[warm] == 1)))
            if warm.any()
            else (math.nan, math.nan)
        )
        rows.append(
            [
                name,
                str(len(series[name])),
                str(r["first_warm_tick"]),
                _f(det),
                _f(base),
                _f(base_sf),
                f"{margin:+.3f}",
                _f(turbulent[0], 2),
                _f(turbulent[1], 2),
                f"{ref.sigmas[0]:.2f}/{ref.sigmas[1]:.2f}",
            ]
        )
    print("\nReal series: argmax agreement with the Hamilton filter, detector's warm ticks only")
    header = ["series", "ticks", "warm@", "det", "ewma", "ewma_sf", "margin"]
    print(_table([*header, "det_turb", "ham_turb", "ham_sigma"], rows))
    idx = [v["det"] for k, v in table.items() if not k.startswith("stock_")]
    stocks = [v["det"] for k, v in table.items() if k.startswith("stock_")]
    if idx:
        print(f"indices/commodity: min {_f(min(idx))} (goal >= 0.90 each)")
    if stocks:
        print(
            f"stocks: median {_f(_median(stocks))} (goal >= 0.90), "
            f"min {_f(min(stocks))} (goal >= 0.85)"
        )
    beaten = sum(v["margin"] > 0 for v in table.values())
    print(f"detector beats both baselines on {beaten}/{len(table)} series")
    return table


def report_switching(results: dict[str, list[dict[str, Any]]]) -> None:
    titles = {
        "switching": "natural seeds",
        "switching_calm": f"calm-only first {CALM_WARMUP} ticks",
    }
    for family, title in titles.items():
        res = results.get(family, [])
        if not res:
            continue
        per_seed = " ".join(
            f"{r['seed']}:{r['accuracy']:.3f}{'*' if r['calm_warmup'] else ''}" for r in res
        )
        print(f"\nSwitching streams, {title} (n=4000): {_summary([r['accuracy'] for r in res])}")
        print(f"  per seed (* = the warm-up saw only the calm regime): {per_seed}")


def report_intraday(res: list[dict[str, Any]]) -> None:
    print("\nIntraday bars (goals: accuracy >= 0.85, gap flip ratio <= 1.5, |ret| ratio >= 1.5)")
    fields = (
        ("accuracy", 3),
        ("gap_rate", 3),
        ("ordinary_rate", 4),
        ("gap_ratio", 2),
        ("abs_ratio", 2),
        ("switches_per_session", 2),
        ("true_switches_per_session", 2),
    )
    rows = []
    for variant in INTRADAY_VARIANTS:
        chosen = [r for r in res if r["variant"] == variant]
        if not chosen:
            continue
        for r in chosen:
            rows.append(
                [f"{variant} seed {r['seed']}"]
                + [_f(r[key], digits) for key, digits in fields]
                + [f"{r['alarms_per_tick']:.1e}", _f(r["zero_fraction"])]
            )
        rows.append(
            [f"{variant} median"]
            + [_f(_median([r[key] for r in chosen]), digits) for key, digits in fields]
            + [f"{_median([r['alarms_per_tick'] for r in chosen]):.1e}", ""]
        )
    header = ["stream", "acc", "gap_flip", "ord_flip", "ratio", "|r|hi/lo", "sw/sess"]
    print(_table([*header, "true_sw", "alarm/tick", "zeros"], rows))


def report_spacing(res: list[dict[str, Any]]) -> None:
    print(
        "\nSpacing invariance (goal >= 0.99): one price path stamped 1 ms ... 1 day apart; "
        "agreement with the 1-day stamping (turbulent fraction)"
    )
    rows = [
        [f"seed {r['seed']}"]
        + [
            f"{_f(r['vs_day'][label])} ({_f(r['turbulent_fraction'][label], 2)})"
            for label, _ in SPACINGS
        ]
        + [_f(r["min_pairwise"])]
        for r in res
    ]
    print(_table(["stream", *[label for label, _ in SPACINGS], "min pair"], rows))


def report_drift(heavy: list[dict[str, Any]], jumps: list[dict[str, Any]]) -> None:
    print("\nDrift on stationary streams (goal <= 1e-4 false alarms per tick)")
    rows = []
    for kind in HEAVY_KINDS:
        res = [r for r in heavy if r["kind"] == kind]
        alarms, ticks = sum(r["alarms"] for r in res), sum(r["warm_ticks"] for r in res)
        rows.append([kind, str(alarms), str(ticks), f"{alarms / ticks:.1e}" if ticks else "nan"])
    print(_table(["stream", "alarms", "warm ticks", "per tick"], rows))
    print(f"x3 variance jump (goal: flagged within {JUMP_DEADLINE} ticks)")
    rows = []
    for kind in HEAVY_KINDS:
        for n, at in JUMPS:
            res = [r for r in jumps if r["kind"] == kind and r["at"] == at]
            delays = [r["delay"] for r in res]
            hit = sum(d is not None and d <= JUMP_DEADLINE for d in delays)
            rows.append(
                [
                    f"{kind} at {at}/{n}",
                    f"{hit}/{len(res)}",
                    " ".join("miss" if d is None else str(d) for d in delays),
                    str(sum(r["alarms_before"] for r in res)),
                ]
            )
    print(_table(["stream", f"<={JUMP_DEADLINE}", "delays", "alarms before"], rows))


def report_sp500_alarms(prices: Any, drift: np.ndarray) -> list[str]:
    dates = prices.index[1:][drift]
    lo, hi = rs.BREAK_2008
    in_break = [d for d in dates if lo <= d <= hi]
    listed = ", ".join(d.strftime("%Y-%m-%d") for d in dates) or "none"
    print(f"\nS&P 500 1999-2018 drift alarms ({len(dates)}): {listed}")
    print(
        f"  2008 break ({lo:%Y-%m-%d}..{hi:%Y-%m-%d}) flagged: {bool(in_break)}; "
        f"other alarms: {len(dates) - len(in_break)} (goal: flagged, <= 3 others)"
    )
    return [d.strftime("%Y-%m-%d") for d in dates]


def report_warm(first_warm: list[int | None]) -> None:
    known = [w for w in first_warm if w is not None]
    print(
        f"\nWarm by tick (first tick with warm=True, goal <= 100) over {len(first_warm)} streams: "
        f"max {max(known) if known else '-'}, min {min(known) if known else '-'}, "
        f"never warm: {len(first_warm) - len(known)}"
    )


# -- main -------------------------------------------------------------------------------------


def main() -> None:
    started = time.perf_counter()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--factory", default="streamgmm.regime:RegimeDetector")
    parser.add_argument("--params", default="{}", help="JSON object of factory keyword args")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument(
        "--baseline-warmup",
        type=int,
        default=None,
        help="returns excluded when tuning the EWMA rule (default: the detector's warm-up on "
        "sp500_1999)",
    )
    parser.add_argument("--only", choices=("tuning", "held-out", "fresh"), default=None)
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args()
    params = json.loads(args.params)
    if not isinstance(params, dict):
        raise SystemExit(f"--params must be a JSON object, got {args.params!r}")
    _init(args.factory, params)
    splits = [s for s in (rs.TUNING, rs.HELD_OUT, rs.FRESH) if args.only in (None, s.name.lower())]

    needed = {"sp500_1999"} | {name for s in splits for name in s.real}
    series = {name: p for name, p in rs.real_series().items() if name in needed}
    t = time.perf_counter()
    refs = rs.hamilton_references(series, processes=args.processes)
    hamilton_seconds = time.perf_counter() - t

    jobs = build_jobs(splits, series)
    t = time.perf_counter()
    if args.processes > 1:
        with ProcessPoolExecutor(
            args.processes, initializer=_init, initargs=(args.factory, params)
        ) as pool:
            results = list(pool.map(_call, jobs, chunksize=1))
    else:
        results = [_call(job) for job in jobs]
    detector_seconds = time.perf_counter() - t
    grouped: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for (family, tag, _, _), result in zip(jobs, results, strict=True):
        grouped.setdefault((family, tag), []).append(result)
    real = {r["name"]: r for r in grouped[("real", "")]}

    sp = real["sp500_1999"]
    first_warm_return = int(np.argmax(sp["warm"])) if sp["warm"].any() else 0
    warmup = args.baseline_warmup if args.baseline_warmup is not None else first_warm_return
    sp_prices, sp_labels = series["sp500_1999"], refs["sp500_1999"].labels
    rule, rule_agree = rs.best_ewma_rule(sp_prices, sp_labels, warmup=warmup)
    scale_free = [r for r in rs.REFERENCES if r != "absolute"]
    rule_sf, sf_agree = rs.best_ewma_rule(
        sp_prices, sp_labels, warmup=warmup, references=scale_free
    )
    print(f"detector: {args.factory} {json.dumps(params)}")
    print(f"EWMA baselines tuned on sp500_1999 (returns {warmup}+ scored against Hamilton):")
    print(f"  ewma    = {rule.describe()} (agreement {rule_agree:.3f}; best of the whole grid)")
    print(f"  ewma_sf = {rule_sf.describe()} (agreement {sf_agree:.3f}; best scale-free rule)")
    out: dict[str, Any] = {
        "factory": args.factory,
        "params": params,
        "rules": {"ewma": [rule.describe(), rule_agree], "ewma_sf": [rule_sf.describe(), sf_agree]},
        "sections": {},
    }

    for split in splits:
        tag = split.name
        print(f"\n{'=' * 30} {tag} {'=' * 30}")
        section: dict[str, Any] = {
            "real": report_real(split, real, refs, series, (rule, rule_sf)),
        }
        families = {f: grouped.get((f, tag), []) for f in ("switching", "switching_calm")}
        if split.switching_seeds:
            report_switching(families)
            report_intraday(grouped.get(("intraday", tag), []))
            report_spacing(grouped.get(("spacing", tag), []))
            report_drift(grouped.get(("heavy", tag), []), grouped.get(("jump", tag), []))
        if split is rs.TUNING:
            section["sp500_alarms"] = report_sp500_alarms(sp_prices, sp["drift"])
        first_warm = [real[name]["first_warm_tick"] for name in split.real]
        for family in ("switching", "switching_calm", "intraday", "jump"):
            first_warm += [r["first_warm_tick"] for r in grouped.get((family, tag), [])]
        report_warm(first_warm)
        for family in (*families, "intraday", "spacing", "heavy", "jump"):
            section[family] = grouped.get((family, tag), [])
        out["sections"][tag] = section

    print(
        f"\nruntime {time.perf_counter() - started:.1f} s (Hamilton references "
        f"{hamilton_seconds:.1f} s; {len(jobs)} detector runs {detector_seconds:.1f} s on "
        f"{args.processes} processes)"
    )
    if args.json is not None:
        args.json.write_text(json.dumps(out, default=_jsonable, indent=1))


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON-serialisable: {type(value).__name__}")


if __name__ == "__main__":
    main()
