"""What a causal method can reach: agreement with the full-span Hamilton fit, without hindsight.

Issue 9 scores the detector by its argmax agreement with statsmodels' ``MarkovRegression``
(``k_regimes=2, switching_variance=True``) fitted on the *whole* span. That fit knows the
span's calmest and wildest stretches when it labels the first years; no causal method does.
This script measures how far that goes, per real series, with two causal competitors:

* ``refit``: the reference's own model, fitted again at the start of each calendar year on
  every return so far (at least 250), filters that year's returns (with the new parameters,
  over all data so far, so the filter carries its state). This is the exact maximum-likelihood
  estimate of the reference's model made causally, with unlimited memory.
* ``best rule``: one causal EWMA-volatility threshold rule out of 8,160 (ten half-lives;
  absolute thresholds, and multiples of six causal reference scales), chosen **with
  hindsight** on the series of a goal at once: the rule whose lowest agreement is highest.
  No rule chosen without hindsight can do better on that goal's minimum.

All three (the detector is ``streamgmm.regime:RegimeDetector`` with its defaults) are scored on
the same returns: the detector's warm ones from the second calendar year on, where the refit has
its first fit.

Usage::

    python3 benchmarks/regime_ceiling.py [--processes 2] [--json PATH]

About 17 minutes on two cores the first time (the yearly refits of the 32 series dominate);
the refits are then cached with the Hamilton fits, and a rerun takes about 10 seconds.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import regime_support as rs

from streamgmm.regime import RegimeDetector

#: Returns a first fit needs.
MIN_FIT = 250
#: The series of each agreement goal of issue 9, and the goal.
GOALS = {
    "index and commodity series (goal: each >= 0.90)": (
        ("sp500_1999", "sp500_2004", "sp500_2012", "sp500_2017", "nasdaq", "wti"),
        0.90,
    ),
    "stocks (goal: each >= 0.85, median >= 0.90)": (
        tuple(f"stock_{t}" for t in rs.STOCK_TICKERS),
        0.85,
    ),
}
FRESH = rs.FRESH.real


def refit_labels(prices: Any) -> tuple[np.ndarray, np.ndarray]:
    """Per return, the yearly causal refit's label (0 calm, 1 turbulent), and the mask of the
    returns it labels (each calendar year with at least ``MIN_FIT`` returns before it)."""
    returns = rs.log_returns(prices)
    years = np.asarray(prices.index[1:].year)
    labels = np.zeros(returns.size, dtype=np.int64)
    scored = np.zeros(returns.size, dtype=bool)
    previous: np.ndarray | None = None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # numerical-derivative and convergence warnings
        for year in np.unique(years):
            rows = np.flatnonzero(years == year)
            first, last = int(rows[0]), int(rows[-1]) + 1
            if first < MIN_FIT:
                continue
            model = rs.hamilton_model(returns[:first])
            fits = []
            # statsmodels' default start, last year's optimum, then a random search: the best
            # that does not fail (a stretch of constant prices can break a fit).
            starts: list[dict[str, Any]] = [{}, {"search_reps": 20, "rng": 0}]
            if previous is not None:
                starts.insert(1, {"start_params": previous})
            for options in starts:
                try:
                    fit = model.fit(disp=False, **options)
                except (np.linalg.LinAlgError, ValueError, RuntimeError):
                    continue
                if np.isfinite(fit.llf):
                    fits.append(fit)
            if fits:
                previous = np.asarray(max(fits, key=lambda f: f.llf).params)
            elif previous is None:
                continue  # no fit yet: the year is not scored
            params = dict(zip(model.param_names, previous, strict=True))
            high = int(params["sigma2[1]"] > params["sigma2[0]"])
            filtered = np.asarray(
                rs.hamilton_model(returns[:last]).filter(previous).filtered_marginal_probabilities
            )[first:last]
            labels[first:last] = filtered[:, high] > filtered[:, 1 - high]
            scored[first:last] = True
    return labels, scored


def cached_refit_labels(prices: Any) -> tuple[np.ndarray, np.ndarray]:
    """:func:`refit_labels`, cached on disk next to the Hamilton fits (keyed by the data, the
    statsmodels version and ``MIN_FIT``)."""
    path = rs.cache_file(prices, f"refit-{MIN_FIT}")
    if path.is_file():
        with np.load(path) as stored:
            return stored["labels"], stored["scored"]
    labels, scored = refit_labels(prices)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, labels=labels, scored=scored)
    return labels, scored


def task(name: str) -> dict[str, Any]:
    prices = rs.real_series()[name]
    reference = rs.hamilton_reference(prices).labels
    refit, scored = cached_refit_labels(prices)
    run = rs.detector_labels(prices, RegimeDetector, keep_outputs=False)
    mask = scored & run.warm
    rules = rs.ewma_rule_agreements(prices, reference, mask=mask)
    return {
        "name": name,
        "returns": int(mask.sum()),
        "detector": rs.agreement(run.regime, reference, mask),
        "refit": rs.agreement(refit, reference, mask),
        "rules": np.array([score for _, score in rules]),
        "rule_names": [rule.describe() for rule, _ in rules],
    }


def main() -> None:
    started = time.perf_counter()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args()
    names = [n for names, _ in GOALS.values() for n in names] + list(FRESH)
    rs.hamilton_references({n: rs.real_series()[n] for n in names}, processes=args.processes)
    results: dict[str, dict[str, Any]] = {}
    with ProcessPoolExecutor(args.processes) as pool:
        for r in pool.map(task, names, chunksize=1):
            results[r["name"]] = r
            print(
                f"  {r['name']}: detector {r['detector']:.3f}, refit {r['refit']:.3f}", flush=True
            )
    rule_names = results[names[0]]["rule_names"]
    out: dict[str, Any] = {"series": {}, "goals": {}}
    for title, (members, goal) in GOALS.items():
        table = np.vstack([results[n]["rules"] for n in members])
        best = int(np.argmax(table.min(axis=0)))
        print(f"\n{title}; best rule with hindsight: {rule_names[best]}")
        print(f"{'series':12s} {'returns':>7s} {'detector':>8s} {'refit':>6s} {'rule':>6s}")
        for i, n in enumerate(members):
            r = results[n]
            print(
                f"{n.removeprefix('stock_'):12s} {r['returns']:7d} {r['detector']:8.3f} "
                f"{r['refit']:6.3f} {table[i, best]:6.3f}"
            )
            out["series"][n] = {
                "returns": r["returns"],
                "detector": r["detector"],
                "refit": r["refit"],
                "best_rule": float(table[i, best]),
            }
        columns = {
            "detector": np.array([results[n]["detector"] for n in members]),
            "refit": np.array([results[n]["refit"] for n in members]),
            "rule": table[:, best],
        }
        for label, values in columns.items():
            print(
                f"  {label:8s}: min {values.min():.3f}, median {np.median(values):.3f}, "
                f"{int(np.sum(values >= goal))} of {values.size} >= {goal:.2f}"
            )
        meets = (table >= goal).all(axis=0)
        print(f"  rules of the grid meeting the minimum on every series: {int(meets.sum())}")
        out["goals"][title] = {"best_rule": rule_names[best], "rules_meeting": int(meets.sum())}
    print("\nFRESH series (no goal stated)")
    for n in FRESH:
        r = results[n]
        print(f"{n:12s} {r['returns']:7d} {r['detector']:8.3f} {r['refit']:6.3f}")
        out["series"][n] = {"returns": r["returns"], "detector": r["detector"], "refit": r["refit"]}
    print(f"\nruntime {time.perf_counter() - started:.0f} s on {args.processes} processes")
    if args.json is not None:
        args.json.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
