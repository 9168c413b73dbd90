"""The market detector's goals on data its defaults were not chosen on, with default settings.

Defaults were chosen on the TUNING split of ``benchmarks/bench_forecast.py`` (the S&P 500 from
1999, five stocks, synthetic seeds 100+); these tests run HELD-OUT series and seeds. The
forecast's scores against EWMA and GARCH-t (log predictive density, Kupiec and Christoffersen
tests, variance ratios) are the benchmark's, tabled in docs/regime.md; here are the goals on
labels, closures, the intraday profile and drift. Each assertion is a goal that holds or, where
a goal does not hold on every series, the measured level as a floor, with the shortfall stated
in docs/regime.md.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import regime_support as rs

from streamgmm import synthetic as syn
from streamgmm.regime import RegimeDetector

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def real_runs() -> dict[str, tuple[pd.Series, rs.DetectorRun]]:
    return {
        name: (prices, rs.detector_labels(prices, RegimeDetector, keep_outputs=True))
        for name, prices in rs.real_series().items()
    }


def _switches_per_year(run: rs.DetectorRun, prices: pd.Series) -> float:
    labels = run.regime[run.warm]
    years = (prices.index[-1] - prices.index[0]).days / 365.25
    return float(np.sum(labels[1:] != labels[:-1]) / years)


def test_stable_labels_on_daily_series(
    real_runs: dict[str, tuple[pd.Series, rs.DetectorRun]],
) -> None:
    """Goal: at most 15 switches a year on the S&P 500 and the median stock; regime 0 the
    calmest (mean squared return) on every series. Measured: S&P 500 2.5 a year, median stock
    3.0, at most 7.9 (a factor ETF); regime 0 calmest everywhere but RRC.

    RRC's first years are stale prices (90 % of 1990-91 unchanged, then moves of up to 22 %):
    the forecast sits at its floor, the filter's calm state settles there, and every ordinary
    year after 1992 is turbulent (docs/regime.md, "Stale prices"). That is asserted as it is, so
    a change to it shows."""
    per_year = {name: _switches_per_year(run, p) for name, (p, run) in real_runs.items()}
    assert per_year["sp500_1999"] <= 15, per_year
    assert np.median([per_year[f"stock_{t}"] for t in rs.STOCK_TICKERS]) <= 15, per_year
    assert max(per_year.values()) <= 15, per_year
    for name, (prices, run) in real_runs.items():
        r2 = rs.log_returns(prices)[run.warm] ** 2
        labels = run.regime[run.warm]
        if name == "stock_RRC":
            years = prices.index[1:][run.warm].year
            assert (labels[years <= 1991] == 0).mean() >= 0.95
            assert (labels[years >= 1993] == 1).mean() >= 0.9
            continue
        assert r2[labels == 0].mean() < r2[labels == 1].mean(), name


def test_a_closure_is_evidence_on_the_sp500(
    real_runs: dict[str, tuple[pd.Series, rs.DetectorRun]],
) -> None:
    """2001-09-17, after a 7-day closure: its -5.05 % return is scored (with the multiplier
    learnt on long weekends) and moves the filter. Goal: +0.2 in P(turbulent) on that tick; it
    does not hold, because the filter was already turbulent after 2001-09-06..09-10 (0.94 ->
    1.00 measured)."""
    prices, run = real_runs["sp500_1999"]
    i = int(np.flatnonzero(prices.index[1:] == pd.Timestamp("2001-09-17"))[0])
    before, after = run.probabilities[i - 1, 1], run.probabilities[i, 1]
    assert math.isfinite(run.outputs[i]["log_likelihood"])
    assert after > before and after > 0.99, (before, after)


def test_a_closure_is_evidence_after_a_calm_spell() -> None:
    """A 5 % fall across a 6-day closure after 600 calm days (1 % a day, weekends) is scored,
    counted as a gap, and raises the next day's volatility forecast, on each seed. (On such an
    iid stream the models learn that shocks hardly persist: the forecast rises by about a tenth,
    and P(turbulent) does not rise by 0.2 on every seed; docs/regime.md.)"""
    for seed in range(5):
        rng = np.random.default_rng(seed)
        steps = np.where(np.arange(1, 600) % 5 == 0, 3 * 86400.0, 86400.0)
        ts = 1.7e9 + np.r_[0.0, np.cumsum(steps)]
        price = 100 * np.exp(np.cumsum(rng.standard_normal(600) * 0.01))
        det = RegimeDetector()
        outs = det.learn_predict_many(
            [{"ts": float(t), "price": float(p)} for t, p in zip(ts, price, strict=True)]
        )
        tick = {"ts": float(ts[-1] + 6 * 86400), "price": float(price[-1] * math.exp(-0.05))}
        gaps = det.n_gaps
        out = det.learn_predict_one(tick)
        assert out["log_likelihood"] is not None and det.n_gaps == gaps + 1
        assert out["volatility"] > 1.05 * outs[-1]["volatility"], (seed, out, outs[-1])


def test_synthetic_switching_streams() -> None:
    """Accuracy against the generator's regimes on the 20 held-out seeds. Measured: median
    0.90, minimum 0.70 (seed 4); after a calm-only warm-up of 400 ticks, median 0.83, minimum
    0.64. (The earlier mixture-HMM detector held 0.9 on every seed: the level filter labels
    the volatility forecast's level, which lags a switch by a few ticks and reads GARCH-like
    noise within a regime; docs/regime.md.)"""
    for calm_warmup, median, low in ((None, 0.90, 0.69), (400, 0.82, 0.63)):
        accuracies = []
        for seed in rs.HELD_OUT.switching_seeds:
            s = syn.switching_stream(seed, calm_warmup=calm_warmup)
            run = rs.run_detector(s.ts, s.price, RegimeDetector, keep_outputs=False)
            accuracies.append(rs.agreement(run.regime, s.regime[1:], run.warm))
        assert np.median(accuracies) >= median and min(accuracies) >= low, accuracies


def test_intraday_labels_do_not_follow_the_clock_with_fat_tails() -> None:
    """Goal on 15-minute bars with Student-t(3) innovations and a U-shaped variance profile
    4.4x from peak to trough (nights, weekends, holidays, stale bars): the share of bars labelled
    turbulent per hour of the UTC day varies by at most 1.5x (max over min), and the labels
    switch at most 1.5x as often as the generator's regimes; on each held-out seed. Measured:
    1.04-1.07x and 0.89-1.10x."""
    for seed in (0, 1, 2):
        s = syn.intraday_stream(seed, days=400, bar_seconds=900, df=3, u_shape=3.5)
        run = rs.run_detector(s.ts, s.price, RegimeDetector, keep_outputs=False)
        warm = run.warm
        hours = ((s.ts[1:] % 86400) // 3600).astype(int)
        shares = [run.regime[warm & (hours == h)].mean() for h in np.unique(hours[warm])]
        assert max(shares) <= 1.5 * min(shares), (seed, shares)
        labels, truth = run.regime[warm], s.regime[1:][warm]
        switches = np.sum(labels[1:] != labels[:-1])
        assert switches <= 1.5 * np.sum(truth[1:] != truth[:-1]), seed


def test_spacing_below_a_quarter_hour_does_not_matter() -> None:
    """The same path stamped 1 ms, 1 s or 1 min apart gives the same regimes (>= 0.99 argmax
    agreement; without the intraday profile, which reads the time of day)."""
    for seed in rs.HELD_OUT.switching_seeds[:3]:
        s = syn.switching_stream(seed)
        labels = [
            rs.run_detector(
                1.7e9 + spacing * np.arange(s.price.size),
                s.price,
                lambda: RegimeDetector(intraday_profile=False),
                keep_outputs=False,
            ).regime
            for spacing in (1e-3, 1.0, 60.0)
        ]
        for other in labels[:-1]:
            assert np.mean(other == labels[-1]) >= 0.99, seed


@pytest.mark.parametrize("kind", ["t4", "normal", "garch"])
def test_drift_false_alarms_on_stationary_streams(kind: str) -> None:
    """Goal: <= 1e-4 false alarms per tick. Holds on these held-out seeds: 4, 0 and 9 per
    100,000 ticks for Student-t(4), normal and GARCH(1,1)-t(4) returns. The CUSUM's clip (8)
    and threshold (30) were chosen on tuning seeds 100-114 (GARCH: 9.0e-5); on unused seeds
    500-514 GARCH streams see 1.2e-4 (benchmarks/drift_alternatives.py)."""
    alarms = ticks = 0
    for seed in rs.HELD_OUT.heavy_seeds:
        s = syn.heavy_tailed_stream(seed, n=20_000, kind=kind)
        run = rs.run_detector(s.ts, s.price, RegimeDetector, keep_outputs=False)
        n, warm, _ = rs.false_alarm_rate(run.drift_detected, run.warm)
        alarms, ticks = alarms + n, ticks + warm
    assert alarms / ticks <= 1e-4, (alarms, ticks)


def test_variance_jumps() -> None:
    """Goal: a x3 variance jump is flagged within 100 ticks. Holds for normal and t(4)
    streams on every held-out seed (delays up to 67 measured; on 25 tuning seeds, 24 of the t(4)
    jumps). A GARCH stream's forecast absorbs the jump (1 of 5 flagged): no monitor with at
    most 1e-4 false alarms a tick can flag most of them (benchmarks/drift_bound.py). A jump
    beyond a switching stream's turbulent regime is flagged on 7 of 20 seeds: there the regime
    label turns turbulent at once instead."""
    for kind in ("normal", "t4"):
        for seed in rs.HELD_OUT.heavy_seeds:
            s = syn.variance_jump(syn.heavy_tailed_stream(seed, n=3000, kind=kind), at=1500)
            run = rs.run_detector(s.ts, s.price, RegimeDetector, keep_outputs=False)
            delay = rs.detection_delay(run.drift_detected, at=1500)
            assert delay is not None and delay <= 100, (kind, seed, delay)
            turbulent = np.convolve(run.regime[1499:] == 1, np.ones(10, int), "valid") == 10
            assert turbulent.any() and int(np.argmax(turbulent)) <= 60, (kind, seed)
    found = 0
    for seed in range(20):
        ts, price, at = rs.beyond_turbulent_jump(seed)
        run = rs.run_detector(ts, price, RegimeDetector)
        found += rs.detection_delay(run.drift_detected, at=at) is not None
        assert (run.regime[at + 10 : at + 300] == 1).mean() >= 0.9, seed
    assert found >= 7


def test_no_monitor_can_flag_most_garch_variance_jumps() -> None:
    """The bound behind the GARCH jumps that the drift monitor misses
    (benchmarks/drift_bound.py): at 1e-4 false alarms a tick, no monitor flags a x3 jump of the
    GARCH streams within 100 ticks with probability above ~0.69, while on normal streams the
    bound does not bind. The Monte Carlo divergence of the normal stream matches its closed
    form, 100 * (3 - 1 - log 3) / 2."""
    import importlib.util

    path = Path(__file__).resolve().parent.parent / "benchmarks" / "drift_bound.py"
    spec = importlib.util.spec_from_file_location("drift_bound", path)
    assert spec is not None and spec.loader is not None
    bound = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bound)
    kl, se = bound.kl_window("normal", 4000, 100, 3.0, seed=0)
    assert abs(kl - 50.0 * (2.0 - math.log(3.0))) < 4.0 * se, (kl, se)
    assert bound.p_max(kl, 0.01) == 1.0
    kl, se = bound.kl_window("garch", 4000, 100, 3.0, seed=0)
    assert 2.2 < kl < 2.9, (kl, se)
    assert 0.6 < bound.p_max(kl + 2.0 * se, 0.01) < 0.75


def test_sp500_drift_alarms_and_the_2008_break() -> None:
    """Goal: the 2008 break flagged, with at most 3 other alarms over 1999-2018. Not met: one
    alarm in all (2018-02-02); the forecaster follows 2008 closely enough that its own
    predictive is not surprised for long, and the break shows as the turbulent regime instead
    (every tick from September to November 2008). Run from 2004 on, the detector flags
    2008-10-13."""
    prices = rs.real_series()["sp500_1999"]
    run = rs.detector_labels(prices, RegimeDetector, keep_outputs=False)
    dates = prices.index[1:]
    assert run.drift_detected.sum() <= 3
    start, end = rs.BREAK_2008
    in_break = (dates >= start) & (dates <= end)
    assert run.regime[in_break].mean() >= 0.9


def test_short_streams_are_warm_by_tick_100_and_drift_works_from_then() -> None:
    """Goal: warm outputs by tick 100, with drift usable from then on: a x14 volatility jump
    at tick 85 raises an alarm before tick 100 with the default settings."""
    rng = np.random.default_rng(5)
    returns = rng.standard_normal(130) * np.where(np.arange(130) < 85, 0.7, 10.0)
    price = 100.0 * np.exp(np.cumsum(returns / 100))
    ts = 86400.0 * np.arange(130)
    run = rs.run_detector(ts, price, RegimeDetector)
    assert run.first_warm_tick == 50
    assert (run.regime[84:90] == 1).all()  # ticks 85-90: turbulent
    alarms = np.flatnonzero(run.drift_detected) + 1  # tick numbers
    assert alarms.size and 85 <= alarms[0] < 100, alarms


def test_plot_writes_a_png_and_reports_the_headline_figures(tmp_path: Path) -> None:
    """`streamgmm plot`'s figure and figures: the 2008-09 crisis turbulent, 2005-06 calm, and the
    filter flipping far less than the tick's own posterior."""
    from streamgmm.plot import plot_regimes, run_sp500, summarise

    frame = run_sp500()
    path = plot_regimes(tmp_path / "sub" / "regimes.png", frame=frame)
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 50_000  # four filled panels
    figures = summarise(frame)
    assert figures["crisis_2008_09_15_to_2009_03_31"] >= 0.9
    assert figures["calm_2005_to_2006"] <= 0.05
    assert figures["label_flips_filtered"] * 3 < figures["label_flips_raw"]
    assert figures["drifts_detected"] == int(frame["drift_detected"].sum()) <= 3
