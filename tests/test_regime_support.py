"""The evaluation helpers in regime_support: alignment, scores, the baseline, the Hamilton cache."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import regime_support as rs

from streamgmm.synthetic import switching_stream


def test_scores_on_hand_made_labels() -> None:
    labels = np.array([0, 0, 1, 1, 0, 0, 1, 0])
    truth = np.array([0, 1, 1, 1, 0, 0, 0, 0])
    warm = np.array([False, True, True, True, True, True, True, True])
    assert rs.agreement(labels, truth, warm) == pytest.approx(5 / 7)
    # Flips at 2, 4, 6 and 7, counted where both ticks are warm (2..7); gap bars at 4 and 5.
    after_gap = np.array([False, False, False, False, True, True, False, False])
    gap_rate, ordinary_rate, ratio = rs.gap_flip_rates(labels, after_gap, warm)
    assert (gap_rate, ordinary_rate) == (0.5, 0.75) and ratio == pytest.approx(0.5 / 0.75)
    means, high_over_calm = rs.regime_abs_returns(labels, np.arange(8.0) - 4.0, warm)
    assert means.tolist() == [pytest.approx((3 + 0 + 1 + 3) / 4), pytest.approx((2 + 1 + 2) / 3)]
    assert high_over_calm == pytest.approx(means[1] / means[0])
    # Element j of a per-return array is tick j + 1.
    drift = np.zeros(10, dtype=bool)
    drift[[2, 7]] = True  # alarms at ticks 3 and 8
    assert rs.detection_delay(drift, at=3) == 0
    assert rs.detection_delay(drift, at=4) == 4
    assert rs.detection_delay(drift, at=9) is None
    assert rs.false_alarm_rate(drift, np.arange(10) >= 5) == (1, 5, 0.2)
    with pytest.raises(ValueError, match="shapes"):
        rs.agreement(labels, truth[:-1], warm)


def _dated(prices: np.ndarray) -> pd.Series:
    return pd.Series(prices, index=pd.bdate_range("2001-01-01", periods=prices.size))


def test_ewma_rules_are_causal_and_the_best_rule_is_the_grid_maximum() -> None:
    s = switching_stream(5, n=1500)
    prices = _dated(s.price)
    truth = s.regime[1:]
    rule = rs.EwmaRule(halflife=5.0, reference="expanding_rms", threshold=1.2)
    labels = rs.apply_rule(rule, prices)
    assert labels.shape == truth.shape
    # Causal: a rule's label at t does not change when later prices change.
    altered = s.price.copy()
    altered[1000:] *= np.exp(np.linspace(0.0, 0.5, 500))
    assert np.array_equal(rs.apply_rule(rule, altered)[:999], labels[:999])
    best, score = rs.best_ewma_rule(prices, truth, warmup=200)
    scored = rs.ewma_rule_agreements(prices, truth, warmup=200)
    assert score == max(a for _, a in scored) > 0.85
    assert rs.agreement(rs.apply_rule(best, prices), truth, np.arange(truth.size) >= 200) == score
    # A mask scores only its returns: the same as warmup for a prefix, and any other set too.
    prefix = np.arange(truth.size) >= 200
    assert rs.ewma_rule_agreements(prices, truth, mask=prefix) == scored
    odd = np.arange(truth.size) % 2 == 1
    masked = dict(rs.ewma_rule_agreements(prices, truth, mask=odd))
    assert masked[best] == rs.agreement(rs.apply_rule(best, prices), truth, odd)
    with pytest.raises(ValueError, match="mask"):
        rs.ewma_rule_agreements(prices, truth, mask=np.zeros(truth.size, bool))
    absolute = rs.EwmaRule(halflife=5.0, reference="absolute", threshold=1.0)
    assert "%/tick" in absolute.describe() and "expanding_rms" in rule.describe()


def test_hamilton_reference_labels_by_variance_and_is_cached(tmp_path: Path) -> None:
    s = switching_stream(2, n=1000)
    prices = _dated(s.price)
    ref = rs.hamilton_reference(prices, directory=tmp_path)
    assert ref.converged and ref.labels.shape == (999,)
    assert ref.sigmas[0] < ref.sigmas[1]
    assert ref.sigmas == pytest.approx((0.7, 2.0), rel=0.15)
    assert rs.agreement(ref.labels, s.regime[1:], np.ones(999, bool)) > 0.9
    assert np.allclose(ref.transition.sum(axis=1), 1.0) and ref.transition[0, 0] > 0.9
    (entry,) = tmp_path.glob("*.npz")
    again = rs.hamilton_reference(prices, directory=tmp_path)
    assert np.array_equal(again.labels, ref.labels) and again.llf == ref.llf
    entry.write_bytes(b"not an npz")  # a corrupt entry is refitted, never trusted
    assert np.array_equal(rs.hamilton_reference(prices, directory=tmp_path).labels, ref.labels)


def test_detector_labels_align_with_the_returns() -> None:
    from streamgmm.regime import RegimeDetector

    s = switching_stream(1, n=600)
    prices = _dated(s.price)
    run = rs.detector_labels(prices, lambda: RegimeDetector(warmup=100), chunk=97)
    assert run.regime.shape == run.warm.shape == (599,)
    # warmup=100 returns: ticks 1..100 carry them, so tick 100 is the first warm one (its
    # return is element 99).
    assert run.first_warm_tick == 100 and not run.warm[98] and run.warm[99]
    det = RegimeDetector(warmup=100)
    seconds = rs.posix_seconds(prices.index)
    one = [
        det.learn_predict_one({"ts": float(t), "price": float(p)})
        for t, p in zip(seconds, s.price, strict=True)
    ]
    assert run.outputs == one[1:]
    assert seconds[1] - seconds[0] == 86400.0 and seconds[0] == 978307200.0  # 2001-01-01
