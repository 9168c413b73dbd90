"""Likelihood-drift monitor: false-alarm rate, detection delay, state, validation.

Stated bounds (docs/regime.md), with the detector's default settings:

* false alarms: at most 10 per 100,000 stationary ticks (rate <= 1e-4 per tick), both for the
  monitor on i.i.d. log-likelihoods and for the whole RegimeDetector on a stationary
  two-regime switching stream (regime switches between known regimes are not drift);
* delay: a jump of volatility to 3x the turbulent regime after 3,000 stationary ticks is
  flagged within 30 ticks.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from streamgmm.drift import LikelihoodDriftMonitor
from streamgmm.regime import RegimeDetector

DAY = 86400.0
MAX_FALSE_ALARMS_PER_100K = 10
MAX_DELAY_TICKS = 30


def switching_returns(n: int, rng: np.random.Generator) -> np.ndarray:
    """Daily % returns of a stationary 2-regime process: sd 0.7 / 2.0, mean stays 150 / 75."""
    states = np.empty(n, dtype=int)
    s, i = 0, 0
    while i < n:
        d = int(rng.geometric(1 / (150, 75)[s]))
        states[i : i + d] = s
        i += d
        s = 1 - s
    return rng.standard_normal(n) * np.array([0.7, 2.0])[states]


def price_ticks(returns: np.ndarray) -> list[dict[str, float]]:
    prices = 100.0 * np.exp(np.cumsum(returns / 100.0))
    return [{"ts": DAY * i, "price": float(p)} for i, p in enumerate(prices)]


def test_monitor_false_alarm_rate_on_iid_log_likelihoods() -> None:
    rng = np.random.default_rng(11)
    lls = (-0.5 * rng.chisquare(1, size=100_000)).tolist()
    mon = LikelihoodDriftMonitor()
    for ll in lls:
        mon.update(ll)
    assert mon.n_drifts <= MAX_FALSE_ALARMS_PER_100K


def test_monitor_detects_a_likelihood_drop_quickly() -> None:
    rng = np.random.default_rng(12)
    mon = LikelihoodDriftMonitor()
    for ll in (-0.5 * rng.chisquare(1, size=3000)).tolist():
        mon.update(ll)
    alarms_before = mon.n_drifts
    # Data now 3x wider than the model expects: each tick is about 4 nats less likely.
    delay = None
    for i, ll in enumerate((-0.5 * 9 * rng.chisquare(1, size=500)).tolist()):
        mon.update(ll)
        if mon.drift_detected:
            delay = i
            break
    assert delay is not None
    assert delay < MAX_DELAY_TICKS
    assert mon.n_drifts == alarms_before + 1


def test_expected_log_likelihood_removes_level_shifts_the_model_explains() -> None:
    # The log-likelihood level jumps by 3 nats, but so does what the model expects: no drift.
    rng = np.random.default_rng(13)
    mon = LikelihoodDriftMonitor()
    for t in range(20_000):
        level = 0.0 if (t // 500) % 2 == 0 else -3.0
        mon.update(level - 0.5 * rng.chisquare(1), expected_log_likelihood=level - 0.5)
    assert mon.n_drifts <= 2
    plain = LikelihoodDriftMonitor()
    for t in range(20_000):
        level = 0.0 if (t // 500) % 2 == 0 else -3.0
        plain.update(level - 0.5 * rng.chisquare(1))
    assert plain.n_drifts >= 10  # without the expectation every switch looks like drift


def test_drift_score_reaches_one_exactly_when_drift_is_detected() -> None:
    rng = np.random.default_rng(14)
    mon = LikelihoodDriftMonitor(threshold=10.0)
    for t in range(5000):
        scale = 1.0 if t < 2500 else 2.5
        mon.update(-0.5 * scale**2 * rng.chisquare(1))
        assert mon.drift_detected == (mon.drift_score > 1.0)
        assert mon.drift_score >= 0.0
    assert mon.n_drifts >= 1


def test_detector_false_alarms_over_100k_stationary_ticks() -> None:
    rng = np.random.default_rng(2024)
    det = RegimeDetector()
    alarms = 0
    for tick in price_ticks(switching_returns(100_000, rng)):
        alarms += det.learn_predict_one(tick)["drift_detected"]
    assert det.drift_monitor.n_drifts == alarms
    assert alarms <= MAX_FALSE_ALARMS_PER_100K


@pytest.mark.parametrize("seed", range(5))
def test_detector_flags_a_volatility_jump_within_the_stated_delay(seed: int) -> None:
    rng = np.random.default_rng(seed)
    returns = np.r_[switching_returns(3000, rng), rng.standard_normal(300) * 6.0]
    det = RegimeDetector()
    detected_at = None
    for i, tick in enumerate(price_ticks(returns)):
        out = det.learn_predict_one(tick)
        if out["drift_detected"] and i >= 3000:
            detected_at = i - 3000
            break
    assert detected_at is not None
    assert detected_at < MAX_DELAY_TICKS


def test_state_round_trip_is_bit_identical_and_strict_json() -> None:
    rng = np.random.default_rng(15)
    a = LikelihoodDriftMonitor()
    # Fresh river PH holds an infinite sentinel; it must survive strict JSON.
    json.dumps(a.to_state(), allow_nan=False)
    for ll in (-0.5 * rng.chisquare(1, size=1500)).tolist():
        a.update(ll)
    state = json.loads(json.dumps(a.to_state(), allow_nan=False))
    b = LikelihoodDriftMonitor.from_state(state)
    tail = (-0.5 * np.r_[rng.chisquare(1, 300), 9 * rng.chisquare(1, 300)]).tolist()
    for ll in tail:
        a.update(ll, expected_log_likelihood=-0.5)
        b.update(ll, expected_log_likelihood=-0.5)
        assert (a.drift_score, a.drift_detected, a.mean_log_likelihood, a.n_drifts) == (
            b.drift_score,
            b.drift_detected,
            b.mean_log_likelihood,
            b.n_drifts,
        )
    assert a.n_drifts >= 1
    assert a.to_state() == b.to_state()


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, "1.0", None, True])
def test_bad_log_likelihood_raises_and_leaves_state_unchanged(bad: object) -> None:
    mon = LikelihoodDriftMonitor()
    for i in range(200):
        mon.update(-float(i % 7))
    before = mon.to_state()
    with pytest.raises(ValueError, match="log_likelihood"):
        mon.update(bad)  # type: ignore[arg-type]
    if bad is not None:  # None means "no expectation"
        with pytest.raises(ValueError, match="expected_log_likelihood"):
            mon.update(-1.0, expected_log_likelihood=bad)  # type: ignore[arg-type]
    assert mon.to_state() == before


def test_parameter_validation() -> None:
    with pytest.raises(ValueError, match="threshold"):
        LikelihoodDriftMonitor(threshold=0)
    with pytest.raises(ValueError, match="mode"):
        LikelihoodDriftMonitor(mode="down")
    with pytest.raises(ValueError, match="not a LikelihoodDriftMonitor"):
        LikelihoodDriftMonitor.from_state({"kind": "other"})
