"""RegimeDetector / EventDetector: real S&P 500, synthetic regimes, stable labels, state."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pandas as pd
import pytest

from streamgmm.regime import OUTPUT_KEYS, EventDetector, RegimeDetector, RegimeLabeller

DAY = 86400.0


# ---------------------------------------------------------------------------------------------
# Real data: S&P 500 daily closes 1999-2018 (arch.data.sp500), default detector settings.
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sp500() -> pd.DataFrame:
    from streamgmm.plot import run_sp500

    frame = run_sp500(n_regimes=2)  # default detector, one tick per trading day
    frame["ret"] = 100 * np.log(frame["price"]).diff()
    frame["high"] = frame["p_1"]
    frame["raw_high"] = frame["raw_1"]
    return frame


def test_sp500_high_volatility_probability_in_crisis_and_calm(sp500: pd.DataFrame) -> None:
    crisis = sp500.loc["2008-09-15":"2009-03-31", "high"].mean()
    calm = sp500.loc["2005-01-01":"2006-12-31", "high"].mean()
    assert crisis >= 0.8
    assert calm <= 0.2


def test_sp500_agrees_with_statsmodels_markov_regression(sp500: pd.DataFrame) -> None:
    from statsmodels.tsa.regime_switching.markov_regression import MarkovRegression

    returns = sp500["ret"].iloc[1:]
    res = MarkovRegression(returns.to_numpy(), k_regimes=2, switching_variance=True).fit(disp=False)
    # Match labels by variance: the reference's high-volatility state has the larger sigma2.
    sigma2 = [res.params[-2], res.params[-1]]
    high = int(np.argmax(sigma2))
    reference = np.asarray(res.filtered_marginal_probabilities)[:, high] > 0.5
    ours = sp500["regime"].iloc[1:].to_numpy() == 1
    warm = sp500["warm"].iloc[1:].to_numpy()
    agreement = float(np.mean(ours[warm] == reference[warm]))
    assert warm.sum() > 4500
    assert agreement >= 0.85


def test_plot_writes_a_png_and_reports_the_headline_figures(
    sp500: pd.DataFrame, tmp_path: Any
) -> None:
    from streamgmm.plot import plot_regimes, summarise

    path = plot_regimes(tmp_path / "sub" / "regimes.png", frame=sp500)
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(data) > 50_000  # four filled panels, not an empty canvas
    figures = summarise(sp500)
    assert figures["crisis_2008_09_15_to_2009_03_31"] >= 0.8
    assert figures["drifts_detected"] == int(sp500["drift_detected"].sum())


def test_sp500_filter_flips_less_than_raw_posteriors(sp500: pd.DataFrame) -> None:
    warm = sp500[sp500["warm"]]
    filtered_flips = int(np.sum(np.diff(warm["high"].to_numpy() > 0.5)))
    raw_flips = int(np.sum(np.diff(warm["raw_high"].to_numpy() > 0.5)))
    assert filtered_flips < raw_flips / 2


# ---------------------------------------------------------------------------------------------
# Synthetic regime switching with known states.
# ---------------------------------------------------------------------------------------------


def switching(n: int, seed: int) -> tuple[np.ndarray, list[dict[str, float]]]:
    """Two volatility levels (0.7 % / 2.0 % a day), geometric durations (mean 150 / 75 days)."""
    rng = np.random.default_rng(seed)
    states = np.empty(n, dtype=int)
    s, i = 0, 0
    while i < n:
        d = int(rng.geometric(1 / (150, 75)[s]))
        states[i : i + d] = s
        i += d
        s = 1 - s
    returns = rng.standard_normal(n) * np.array([0.7, 2.0])[states]
    prices = 100 * np.exp(np.cumsum(returns / 100))
    return states, [{"ts": DAY * i, "price": float(p)} for i, p in enumerate(prices)]


def test_synthetic_regimes_are_recovered() -> None:
    # Ten independent streams of 4,000 days. Stated bound (docs/regime.md): filtered accuracy
    # >= 0.9 on at least 8 of 10 streams and in the median. The misses are the documented
    # failure mode: a warm-up that sees one regime only can lock the mixture into splitting
    # that regime (measured: 15 of 20 seeds >= 0.9, median 0.928).
    accuracies = []
    for seed in range(10):
        states, ticks = switching(4000, seed)
        det = RegimeDetector()
        outs = [det.learn_predict_one(t) for t in ticks]
        warm = np.array([o["warm"] for o in outs])
        filtered = np.array([o["regime"] for o in outs])
        raw = np.array([int(o["raw_probabilities"][1] > 0.5) for o in outs])
        accuracies.append(float(np.mean(filtered[warm] == states[warm])))
        # Persistence: fewer label flips than the per-tick mixture posteriors, on every stream.
        assert np.sum(np.diff(filtered[warm]) != 0) < np.sum(np.diff(raw[warm]) != 0)
    assert sum(a >= 0.9 for a in accuracies) >= 8, accuracies
    assert float(np.median(accuracies)) >= 0.9, accuracies


# ---------------------------------------------------------------------------------------------
# Stable labels.
# ---------------------------------------------------------------------------------------------


def test_labeller_ranks_by_volatility_with_hysteresis() -> None:
    lab = RegimeLabeller(3, hysteresis=0.1)
    assert lab.update([2.0, 0.5, 1.0], [[0.0]] * 3)
    assert lab.order == [1, 2, 0]
    assert not lab.update([2.0, 1.04, 1.0], [[0.0]] * 3)  # inverted by 4 % < 10 %: keep
    assert lab.order == [1, 2, 0]
    assert lab.update([2.0, 1.2, 1.0], [[0.0]] * 3)
    assert lab.order == [2, 1, 0]
    assert lab.n_label_changes == 1


def test_labeller_is_equivariant_under_permutation() -> None:
    rng = np.random.default_rng(0)
    for _ in range(50):
        measure = rng.uniform(0, 5, size=4).tolist()
        tiebreak = rng.normal(size=(4, 2)).tolist()
        perm = rng.permutation(4).tolist()  # new component i is old component perm[i]
        order = RegimeLabeller.ranking(measure, tiebreak)
        permuted = RegimeLabeller.ranking([measure[p] for p in perm], [tiebreak[p] for p in perm])
        assert [perm[c] for c in permuted] == order


def _permute_mixture_state(state: dict[str, Any], perm: list[int]) -> dict[str, Any]:
    """Reorder the mixture's components: new component i is old component perm[i]."""
    state = json.loads(json.dumps(state))
    mix = state["mixture"]
    for key in ("mass", "means", "scatter"):
        mix[key] = [mix[key][p] for p in perm]
    return state


def _same_exact(x: dict[str, Any], y: dict[str, Any]) -> None:
    assert x == y


def _same_to_1e12(x: dict[str, Any], y: dict[str, Any]) -> None:
    assert {k: v for k, v in x.items() if type(v) is not dict and type(v) is not float} == {
        k: v for k, v in y.items() if type(v) is not dict and type(v) is not float
    }
    for key in ("probabilities", "raw_probabilities"):
        assert x[key] == pytest.approx(y[key], abs=1e-12)
    for key in ("log_likelihood", "drift_score"):
        assert x[key] == pytest.approx(y[key], abs=1e-12, rel=1e-12)


@pytest.mark.parametrize("n_regimes", [2, 3])
def test_permuting_mixture_components_changes_no_output(n_regimes: int) -> None:
    rng = np.random.default_rng(7)
    sig = [0.5, 1.5, 4.0][:n_regimes]
    returns = np.concatenate([rng.standard_normal(200) * s for s in sig * 3])
    prices = 100 * np.exp(np.cumsum(returns / 100))
    ticks = [{"ts": DAY * i, "price": float(p)} for i, p in enumerate(prices)]
    det = RegimeDetector(n_regimes=n_regimes, warmup=300)
    for t in ticks[:900]:
        det.learn_predict_one(t)
    assert det.warm
    state = det.to_state()
    perm = list(range(n_regimes))[::-1]
    inverse = [perm.index(c) for c in range(n_regimes)]

    # (a) components permuted, the label map carried along: same outputs to the bit.
    carried = _permute_mixture_state(state, perm)
    carried["labels"]["order"] = [inverse[c] for c in state["labels"]["order"]]
    # (b) components permuted and labels recomputed from scratch, against the unpermuted
    #     detector with labels recomputed from scratch.
    fresh_perm = _permute_mixture_state(state, perm)
    fresh_perm["labels"]["order"] = None
    fresh = json.loads(json.dumps(state))
    fresh["labels"]["order"] = None

    a = RegimeDetector.from_state(state)
    b = RegimeDetector.from_state(carried)
    c = RegimeDetector.from_state(fresh)
    d = RegimeDetector.from_state(fresh_perm)
    # With two components the mixture's own arithmetic is order-free, so outputs are equal to
    # the bit; with three, its log-sum-exp adds terms in another order (last-bit differences).
    same = _same_exact if n_regimes == 2 else _same_to_1e12
    for t in ticks[900:]:
        same(a.learn_predict_one(t), b.learn_predict_one(t))
        same(c.learn_predict_one(t), d.learn_predict_one(t))
    assert b.regime_order == [inverse[c] for c in a.regime_order]


# ---------------------------------------------------------------------------------------------
# Contract: output shape, causality, state round trip, bad input, irregular timestamps.
# ---------------------------------------------------------------------------------------------


def _check_output(out: dict[str, Any], n_regimes: int) -> None:
    assert tuple(out) == OUTPUT_KEYS
    assert isinstance(out["regime"], int) and 0 <= out["regime"] < n_regimes
    for key in ("probabilities", "raw_probabilities"):
        assert sorted(out[key]) == list(range(n_regimes))
        assert all(type(v) is float for v in out[key].values())
        assert math.fsum(out[key].values()) == pytest.approx(1.0, abs=1e-9)
    assert type(out["log_likelihood"]) is float and math.isfinite(out["log_likelihood"])
    assert type(out["drift_score"]) is float
    assert type(out["drift_detected"]) is bool
    assert type(out["n_samples_seen"]) is int
    assert type(out["warm"]) is bool
    json.dumps(out, allow_nan=False)


def test_output_contract_and_warm_up() -> None:
    _, ticks = switching(400, 1)
    det = RegimeDetector(warmup=100)
    for i, t in enumerate(ticks):
        out = det.learn_predict_one(t)
        _check_output(out, 2)
        assert out["n_samples_seen"] == i + 1
        # The first tick has no return; the mixture fits after 100 returns, then predicts.
        assert out["warm"] == (i >= 101)
        if not out["warm"]:
            assert out["probabilities"] == {0: 0.5, 1: 0.5}


def test_predict_proba_one_is_causal_and_side_effect_free() -> None:
    _, ticks = switching(700, 2)
    det = RegimeDetector()
    for t in ticks[:600]:
        det.learn_predict_one(t)
    for t in ticks[600:]:
        before = json.dumps(det.to_state())
        peek = det.predict_proba_one(t)
        assert json.dumps(det.to_state()) == before
        assert det.learn_predict_one(t)["probabilities"] == peek


@pytest.mark.parametrize("split", [50, 600])  # during warm-up and after
def test_state_round_trip_gives_bit_identical_outputs(split: int) -> None:
    _, ticks = switching(1200, 3)
    a = RegimeDetector()
    for t in ticks[:split]:
        a.learn_predict_one(t)
    state = json.loads(json.dumps(a.to_state(), allow_nan=False))
    assert state["version"] == 1
    b = RegimeDetector.from_state(state)
    for t in ticks[split:]:
        assert a.learn_predict_one(t) == b.learn_predict_one(t)
    assert a.to_state() == b.to_state()


def test_skipped_ticks_repeat_the_last_output_and_never_crash() -> None:
    _, ticks = switching(600, 4)
    det = RegimeDetector()
    clean = RegimeDetector()
    for t in ticks:
        out = det.learn_predict_one(t)
        assert clean.learn_predict_one(t) == out
        dup = det.learn_predict_one({**t, "price": t["price"] * 2})
        late = det.learn_predict_one({"ts": t["ts"] - 3600.0, "price": 1.0})
        for skipped in (dup, late):
            assert skipped == {**out, "drift_detected": False}
    assert det.n_duplicates == 600
    assert det.n_out_of_order == 600
    assert det.n_samples_seen == clean.n_samples_seen == 600


def test_bad_ticks_raise_and_leave_state_unchanged() -> None:
    _, ticks = switching(400, 5)
    det = RegimeDetector()
    for t in ticks:
        det.learn_predict_one(t)
    before = json.dumps(det.to_state())
    for bad in (
        {"ts": 1e12, "price": math.nan},
        {"ts": 1e12, "price": math.inf},
        {"ts": math.inf, "price": 10.0},
        {"ts": 1e12},
        {"ts": 1e12, "price": -1.0},
    ):
        with pytest.raises(ValueError, match=r"price|ts"):
            det.learn_predict_one(bad)
    assert json.dumps(det.to_state()) == before


def test_irregular_intraday_ticks_use_the_time_scaling() -> None:
    # The same random walk sampled every 6 hours: returns per day keep the daily scale, so
    # the detector still separates the volatility levels.
    rng = np.random.default_rng(6)
    states = np.repeat([0, 1] * 5, 160)
    gaps = rng.uniform(0.1, 0.4, size=states.size)  # irregular, in days
    returns = rng.standard_normal(states.size) * np.array([0.7, 2.0])[states] * np.sqrt(gaps)
    prices = 100 * np.exp(np.cumsum(returns / 100))
    ts = np.cumsum(gaps) * DAY
    det = RegimeDetector(warmup=300)
    outs = [
        det.learn_predict_one({"ts": float(t), "price": float(p)})
        for t, p in zip(ts, prices, strict=True)
    ]
    warm = np.array([o["warm"] for o in outs])
    regimes = np.array([o["regime"] for o in outs])
    assert float(np.mean(regimes[warm] == states[warm])) >= 0.85


# ---------------------------------------------------------------------------------------------
# Event ticks.
# ---------------------------------------------------------------------------------------------


def test_event_detector_orders_regimes_by_covariance_trace() -> None:
    rng = np.random.default_rng(8)
    busy = np.repeat([0, 1, 0, 1, 0], 300)
    latency = np.where(busy, rng.normal(50, 10, busy.size), rng.normal(10, 1, busy.size))
    cpu = np.where(busy, rng.normal(0.8, 0.1, busy.size), rng.normal(0.2, 0.02, busy.size))
    det = EventDetector(["latency", "cpu"], n_components=2, warmup=400)
    outs = []
    for i in range(busy.size):
        out = det.learn_predict_one({"ts": float(i), "latency": latency[i], "cpu": cpu[i]})
        _check_output(out, 2)
        outs.append(out)
    warm = np.array([o["warm"] for o in outs])
    regimes = np.array([o["regime"] for o in outs])
    assert float(np.mean(regimes[warm] == busy[warm])) >= 0.95
    state = json.loads(json.dumps(det.to_state(), allow_nan=False))
    twin = EventDetector.from_state(state)
    for i in range(5):
        tick = {"ts": 2000.0 + i, "latency": 12.0 + i, "cpu": 0.3}
        assert det.learn_predict_one(tick) == twin.learn_predict_one(tick)
    with pytest.raises(ValueError, match="'cpu'"):
        det.learn_predict_one({"ts": 3000.0, "latency": 1.0})


def test_a_single_regime_is_allowed() -> None:
    _, ticks = switching(400, 9)
    det = RegimeDetector(n_regimes=1, warmup=50)
    for t in ticks:
        out = det.learn_predict_one(t)
        _check_output(out, 1)
    assert out["warm"] and out["probabilities"] == {0: 1.0} and out["regime"] == 0


def test_constructor_validation() -> None:
    with pytest.raises(ValueError, match="features"):
        RegimeDetector(features=("price",))
    with pytest.raises(ValueError, match="n_regimes"):
        RegimeDetector(n_regimes=0)
    with pytest.raises(ValueError, match="not a RegimeDetector"):
        RegimeDetector.from_state({"kind": "EventDetector", "version": 1})


@pytest.mark.parametrize("covariance_type", ["full", "diag", "spherical"])
def test_one_feature_entropies_equal_the_determinant_formula_to_the_bit(
    covariance_type: str,
) -> None:
    # With one feature the detector takes component entropies from the stored standard
    # deviations; they must equal 0.5 * (log(2 pi e) + slogdet(cov)) exactly, or drift scores
    # would move in the last bits.
    from streamgmm.regime import _entropies

    rng = np.random.default_rng(3)
    prices = 100 * np.exp(np.cumsum(rng.standard_normal(700) * np.repeat([0.5, 2.0], 350) / 100))
    det = RegimeDetector(warmup=100, covariance_type=covariance_type)
    for i, p in enumerate(prices):
        det.learn_predict_one({"ts": DAY * i, "price": float(p)})
        if det.warm:
            _, entropy = det._component_stats()
            assert entropy == _entropies(det.mixture)
            if covariance_type == "full":
                cov = det.mixture.covariances_[:, 0, 0]
                log_det = np.linalg.slogdet(det.mixture.covariances_)[1]
                assert entropy == [0.5 * (math.log(2 * math.pi) + 1.0 + v) for v in log_det]
                assert entropy == [0.5 * (math.log(2 * math.pi) + 1.0 + math.log(c)) for c in cov]
