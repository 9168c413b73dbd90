"""Diagnostics of the detector, and designs measured against it and not adopted.

docs/regime.md quotes each. The designs are compared on the TUNING data of
``tests/regime_support.py`` only (HELD-OUT is left clean for them):

``history-em``
    Emission variances re-estimated every ``--every`` ticks by EM over a histogram of **all**
    returns so far (so old ticks are re-classified with the current parameters, as a
    full-span fit does), with a hidden Markov filter on top. Prints argmax agreement with the
    Hamilton reference on the TUNING real series, next to the detector's.
``llr-cusum``
    A CUSUM of the log-likelihood ratio "every regime's variance x c" against the model,
    computed from the detector's own predictive probabilities and regime parameters tick by
    tick: the optimal test for a known variance jump. Prints false alarms on stationary
    Student-t(4) and GARCH-t(4) streams and delays of a x3 jump beyond the turbulent regime,
    next to the detector's own drift monitor.
``simulate-fit``
    Streams the full-span Hamilton fit of a real series, simulated (its variances, means and
    transition matrix; as many ticks as the series), through the detector, and prints the
    regime standard deviations it learns against the fit's: the online estimator on data that
    *are* the reference's model.
``garch-episodes``
    How often the GARCH-t(4) stream's true conditional variance stays above three times the
    detector's turbulent variance for ``--run`` ticks or more: episodes that *are* x3 variance
    jumps beyond the model, so a monitor that flags such jumps quickly alarms on them too.

Usage::

    python3 benchmarks/regime_alternatives.py history-em [--every 20] [--halflife TICKS]
    python3 benchmarks/regime_alternatives.py llr-cusum [--factor 3] [--threshold 10] [--clip 2]
    python3 benchmarks/regime_alternatives.py simulate-fit [--series stock_JNJ] [--seeds 3]
    python3 benchmarks/regime_alternatives.py garch-episodes [--run 15]
"""

from __future__ import annotations

import argparse
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import regime_support as rs

from streamgmm import synthetic as syn
from streamgmm.regime import RegimeDetector

# -- history-em ---------------------------------------------------------------------------------


def history_em_labels(
    returns: np.ndarray,
    *,
    warmup: int = 50,
    every: int = 20,
    halflife: float | None = None,
    prior_weight: float = 100.0,
    prior: tuple[float, float] = (0.35, 3.5),
    stay: float = 0.98,
    transition_prior: float = 20.0,
    bins: int = 600,
    span: float = 15.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Per return: the label (argmax of the filter) and whether it is scored (after warm-up).

    Returns are standardised by the warm-up's root mean square and binned on ``±span``. Every
    ``every`` ticks, five EM iterations (warm-started) fit a two-component Gaussian mixture to
    the histogram (decayed with ``halflife`` ticks; ``None``: all history), with the
    detector's variance prior (``prior`` times the pooled variance, ``prior_weight`` ticks).
    Transitions: expected counts from the filter, accumulated, with the detector's prior.
    """
    n = returns.size
    x = returns / (np.sqrt(np.mean(returns[:warmup] ** 2)) or 1.0)
    mids = np.linspace(-span, span, bins + 1)
    mids = 0.5 * (mids[1:] + mids[:-1])
    hist = np.zeros(bins)
    decay = 1.0 if halflife is None else 2.0 ** (-1.0 / halflife)
    mu, var, w = np.zeros(2), np.array(prior), np.full(2, 0.5)
    prior_counts = np.array([[stay, 1 - stay], [1 - stay, stay]]) * transition_prior
    counts = np.zeros((2, 2))
    a = prior_counts / prior_counts.sum(axis=1, keepdims=True)
    alpha = np.full(2, 0.5)
    labels = np.zeros(n, dtype=np.int64)
    scored = np.zeros(n, dtype=bool)
    for t in range(n):
        if t >= warmup:
            g = np.exp(-0.5 * (x[t] - mu) ** 2 / var) / np.sqrt(2 * np.pi * var)
            joint = alpha[:, None] * a * g[None, :]
            joint /= joint.sum()
            counts += joint
            alpha = joint.sum(axis=0)
            labels[t], scored[t] = int(alpha[1] > alpha[0]), True
        hist *= decay
        hist[int(np.clip((x[t] + span) / (2 * span) * bins, 0, bins - 1))] += 1.0
        if t >= warmup - 1 and (t - warmup + 1) % every == 0:
            total = hist.sum()
            pooled = np.sum(hist * (mids - np.sum(hist * mids) / total) ** 2) / total
            for _ in range(5):
                dens = w[:, None] * np.exp(-0.5 * (mids - mu[:, None]) ** 2 / var[:, None])
                dens /= np.sqrt(var[:, None])
                resp = dens / np.maximum(dens.sum(axis=0), 1e-300) * hist  # ticks per bin
                nk = resp.sum(axis=1)
                mu = (resp * mids).sum(axis=1) / np.maximum(nk, 1e-12)
                spread = (resp * (mids - mu[:, None]) ** 2).sum(axis=1)
                var = (spread + prior_weight * np.array(prior) * pooled) / (nk + prior_weight)
                w = nk / nk.sum()
            both = counts + prior_counts
            a = both / both.sum(axis=1, keepdims=True)
            if var[0] > var[1]:  # regime 0 stays the calmer
                mu, var, w, alpha = mu[::-1], var[::-1], w[::-1], alpha[::-1]
                counts, prior_counts = counts[::-1, ::-1], prior_counts[::-1, ::-1]
    return labels, scored


def history_em(args: argparse.Namespace) -> None:
    series = rs.real_series()
    print(f"{'series':12s} {'history-em':>10s} {'detector':>8s}")
    both = []
    for name in rs.TUNING.real:
        prices = series[name]
        reference = rs.hamilton_reference(prices).labels
        labels, scored = history_em_labels(
            rs.log_returns(prices), every=args.every, halflife=args.halflife
        )
        run = rs.detector_labels(prices, RegimeDetector, keep_outputs=False)
        pair = (
            rs.agreement(labels, reference, scored),
            rs.agreement(run.regime, reference, run.warm),
        )
        both.append(pair)
        print(f"{name:12s} {pair[0]:10.3f} {pair[1]:8.3f}")
    table = np.array(both)
    print(f"{'mean':12s} {table[:, 0].mean():10.3f} {table[:, 1].mean():8.3f}")
    print(f"{'min':12s} {table[:, 0].min():10.3f} {table[:, 1].min():8.3f}")


# -- llr-cusum ----------------------------------------------------------------------------------


def trace(ts: np.ndarray, price: np.ndarray) -> dict[str, Any]:
    """Per return: the detector's predictive regime probabilities and regime parameters before
    the tick (NaN before the warm-up ends), the return, and the detector's own drift alarms."""
    k = 2
    det = RegimeDetector(n_regimes=k)
    returns = np.diff(np.log(price)) * 100.0
    probs = np.full((returns.size, k), np.nan)
    means = np.full((returns.size, k), np.nan)
    variances = np.full((returns.size, k), np.nan)
    alarms = np.zeros(returns.size, dtype=bool)
    warm = np.zeros(returns.size, dtype=bool)
    last = det.learn_predict_one({"ts": float(ts[0]), "price": float(price[0])})
    for i in range(returns.size):
        if det.warm:
            filtered = np.array([last["probabilities"][r] for r in range(k)])
            probs[i] = filtered @ det.transition_matrix_
            means[i] = det.means_[:, 0]
            variances[i] = det.covariances_[:, 0, 0]
        last = det.learn_predict_one({"ts": float(ts[i + 1]), "price": float(price[i + 1])})
        alarms[i], warm[i] = last["drift_detected"], last["warm"]
    return {"returns": returns, "probs": probs, "means": means, "variances": variances,
            "alarms": alarms, "warm": warm}  # fmt: skip


def llr(t: dict[str, Any], factor: float) -> np.ndarray:
    """log p(x | every variance x factor) - log p(x | model), per return (NaN before warm)."""
    x = t["returns"][:, None]
    mu, var, p = t["means"], t["variances"], t["probs"]

    def log_mix(v: np.ndarray) -> np.ndarray:
        dens = p * np.exp(-0.5 * (x - mu) ** 2 / v) / np.sqrt(2 * np.pi * v)
        return np.log(dens.sum(axis=1))

    with np.errstate(invalid="ignore"):
        return log_mix(factor * var) - log_mix(var)


def cusum(values: np.ndarray, threshold: float, clip: float, min_instances: int = 30) -> np.ndarray:
    total, since = 0.0, 0
    alarms = np.zeros(values.size, dtype=bool)
    for i, v in enumerate(values):
        if np.isnan(v):
            continue
        since += 1
        total = max(0.0, total + min(v, clip))
        if total > threshold and since >= min_instances:
            alarms[i], total, since = True, 0.0, 0
    return alarms


def _heavy(job: tuple[int, str]) -> dict[str, Any]:
    seed, kind = job
    s = syn.heavy_tailed_stream(seed, 20000, kind)
    return {"kind": kind, **trace(s.ts, s.price)}


def _jump(seed: int) -> dict[str, Any]:
    ts, price, at = rs.beyond_turbulent_jump(seed)  # as tests/test_regime_goals.py
    return {"kind": "jump", "at": at, **trace(ts, price)}


def llr_cusum(args: argparse.Namespace) -> None:
    jobs = [(seed, kind) for seed in rs.TUNING.heavy_seeds for kind in ("t4", "garch")]
    with ProcessPoolExecutor(2) as pool:
        traces = list(pool.map(_heavy, jobs)) + list(pool.map(_jump, rs.TUNING.switching_seeds))

    def report(label: str, alarms_of: Any) -> None:
        rates, delays = {}, []
        for kind in ("t4", "garch"):
            runs = [t for t in traces if t["kind"] == kind]
            n = sum(int((alarms_of(t) & t["warm"]).sum()) for t in runs)
            rates[kind] = n / sum(int(t["warm"].sum()) for t in runs)
        for t in (t for t in traces if t["kind"] == "jump"):
            delays.append(rs.detection_delay(alarms_of(t), t["at"]))
        found = [d for d in delays if d is not None]
        print(
            f"{label:42s} false alarms t4 {rates['t4']:.1e} garch {rates['garch']:.1e}; "
            f"x3 jump found {len(found)}/{len(delays)}, median delay "
            f"{np.median(found) if found else float('nan'):.0f}, within 30: "
            f"{sum(d <= 30 for d in found)}"
        )

    report("detector's drift monitor", lambda t: t["alarms"])
    for factor in args.factor:
        for threshold in args.threshold:
            for clip in args.clip:
                report(
                    f"CUSUM x{factor:g}, threshold {threshold:g}, clip {clip:g}",
                    lambda t, f=factor, h=threshold, c=clip: cusum(llr(t, f), h, c),
                )


# -- garch-episodes -----------------------------------------------------------------------------


def _learnt_sd(price: np.ndarray, ts: np.ndarray, params: dict[str, Any]) -> np.ndarray:
    det = RegimeDetector(**params)
    ticks = [{"ts": t, "price": p} for t, p in zip(ts.tolist(), price.tolist(), strict=True)]
    det.learn_predict_many(ticks)
    return np.asarray(det.covariances_[:, 0, 0] ** 0.5)


def simulate_fit(args: argparse.Namespace) -> None:
    prices = rs.real_series()[args.series]
    ref = rs.hamilton_reference(prices)
    sigmas, means = np.array(ref.sigmas), np.array(ref.means)
    n = prices.size
    print(
        f"{args.series}: full-span fit sd {sigmas.round(2)}, "
        f"stay {np.diag(ref.transition).round(4)}"
    )
    days = rs.posix_seconds(prices.index)
    for label, params in (("defaults", {}), ("alpha=1", {"alpha": 1.0})):
        learnt = _learnt_sd(prices.to_numpy(np.float64), days, params)
        print(f"  the real series, {label:8s}: learnt sd {learnt.round(2)}")
    for seed in range(args.seeds):
        rng = np.random.default_rng(seed)
        state = np.zeros(n - 1, dtype=np.int64)
        for t in range(1, n - 1):
            stay = rng.random() < ref.transition[state[t - 1], state[t - 1]]
            state[t] = state[t - 1] if stay else 1 - state[t - 1]
        returns = means[state] + sigmas[state] * rng.standard_normal(n - 1)
        price = 100.0 * np.exp(np.concatenate([[0.0], np.cumsum(returns / 100.0)]))
        for label, params in (("defaults", {}), ("alpha=1", {"alpha": 1.0})):
            learnt = _learnt_sd(price, 86400.0 * np.arange(n), params)
            print(f"  simulated, seed {seed}, {label:8s}: learnt sd {learnt.round(2)}")


def garch_variance(returns: np.ndarray, garch: tuple[float, float] = (0.08, 0.9)) -> np.ndarray:
    """The conditional variance ``h_t`` of a GARCH(1,1) stream, recomputed from its returns
    (unit unconditional variance, as ``heavy_tailed_stream``'s default): the recursion forgets
    its start at rate ``b``, so only the first few hundred values depend on it."""
    a, b = garch
    h = np.empty(returns.size)
    level, previous = 1.0, 0.0
    for t, r in enumerate(returns):
        level = (1.0 - a - b) + a * previous * previous + b * level
        h[t], previous = level, r
    return h


def garch_episodes(args: argparse.Namespace) -> None:
    episodes = ticks = 0
    for seed in (*rs.TUNING.heavy_seeds, *rs.HELD_OUT.heavy_seeds):
        s = syn.heavy_tailed_stream(seed, 20000, "garch")
        variance = garch_variance(np.diff(np.log(s.price)) * 100.0)[500:]
        det = RegimeDetector()
        det.learn_predict_many(s.ticks())
        turbulent = float(det.covariances_[-1, 0, 0])
        above = np.convolve(variance > 3.0 * turbulent, np.ones(args.run, int), "valid")
        run = above == args.run
        found = int(run[0]) + int(np.sum(run[1:] & ~run[:-1]))
        episodes, ticks = episodes + found, ticks + variance.size
        print(f"seed {seed:3d}: turbulent sd {turbulent**0.5:.2f}, episodes {found}")
    print(
        f"episodes of {args.run}+ ticks above 3x the turbulent variance: "
        f"{episodes / ticks:.1e} per tick"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("history-em")
    p.add_argument("--every", type=int, default=20)
    p.add_argument("--halflife", type=float, default=None)
    p = sub.add_parser("llr-cusum")
    p.add_argument("--factor", type=float, nargs="+", default=[2.0, 3.0])
    p.add_argument("--threshold", type=float, nargs="+", default=[8.0, 10.0, 12.0, 15.0])
    p.add_argument("--clip", type=float, nargs="+", default=[1.0, 2.0, 4.0])
    p = sub.add_parser("simulate-fit")
    p.add_argument("--series", default="stock_JNJ")
    p.add_argument("--seeds", type=int, default=3)
    p = sub.add_parser("garch-episodes")
    p.add_argument("--run", type=int, default=15)
    args = parser.parse_args()
    commands = {
        "history-em": history_em,
        "llr-cusum": llr_cusum,
        "simulate-fit": simulate_fit,
        "garch-episodes": garch_episodes,
    }
    commands[args.command](args)


if __name__ == "__main__":
    main()
