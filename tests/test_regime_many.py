"""``learn_predict_many`` (the compiled run of streamgmm._regime_kernel) against the per-tick path.

The claim is exact: for the same ticks, a detector fed in chunks through ``learn_predict_many``
returns the same outputs (to the bit), raises the same errors at the same ticks and ends in the
same state as one fed tick by tick through ``learn_predict_one``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamgmm import _regime_kernel
from streamgmm.regime import EventDetector, RegimeDetector

DAY = 86400.0


def switching_ticks(seed: int, n: int, block: int = 300) -> list[dict[str, Any]]:
    """Daily ticks whose volatility alternates between 1% and 4% every ``block`` days."""
    rng = np.random.default_rng(seed)
    vol = np.where((np.arange(n) // block) % 2 == 0, 0.01, 0.04)
    prices = 100.0 * np.exp(np.cumsum(rng.normal(0.0, vol)))
    return [
        {"ts": 1.0e9 + DAY * i, "price": float(p), "volume": 1000.0} for i, p in enumerate(prices)
    ]


def per_tick(detector: Any, ticks: list[dict[str, Any]]) -> list[Any]:
    results: list[Any] = []
    for tick in ticks:
        try:
            results.append(detector.learn_predict_one(tick))
        except ValueError as exc:
            results.append(exc)
    return results


def chunked(detector: Any, ticks: list[dict[str, Any]], sizes: list[int]) -> list[Any]:
    results: list[Any] = []
    i = 0
    for size in sizes:
        results += detector.learn_predict_many(ticks[i : i + size])
        i += size
    results += detector.learn_predict_many(ticks[i:])
    return results


def assert_same(expected: list[Any], got: list[Any]) -> None:
    assert len(got) == len(expected)
    for i, (want, have) in enumerate(zip(expected, got, strict=True)):
        if isinstance(want, ValueError):
            assert isinstance(have, ValueError), f"tick {i}: {have!r}"
            assert str(have) == str(want)
        else:
            assert have == want, f"tick {i}"


def compiled_ticks(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Count the ticks that go through regime_run, so a test can show the compiled run ran."""
    counted = [0]
    original = _regime_kernel.regime_run

    def counting(*args: Any) -> tuple[int, int]:
        done, how = original(*args)
        counted[0] += done - args[7]
        return done, how

    monkeypatch.setattr("streamgmm.regime.regime_run", counting)
    return counted


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_chunks_equal_ticks_to_the_bit(seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    ticks = switching_ticks(seed, 4000)
    counted = compiled_ticks(monkeypatch)
    one, many = RegimeDetector(warmup=100), RegimeDetector(warmup=100)
    expected = per_tick(one, ticks)
    counted[0] = 0
    got = chunked(many, ticks, list(np.random.default_rng(seed).integers(1, 60, size=120)))
    assert_same(expected, got)
    assert many.to_state() == one.to_state()
    # Nearly every warm tick went through the compiled run.
    assert counted[0] > 0.9 * (len(ticks) - 100)


def test_relabels_inside_a_run_match(monkeypatch: pytest.MonkeyPatch) -> None:
    # A short memory, zero hysteresis and a high min_weight (so dead components get reseeded)
    # make the components swap ranks often: runs stop for a relabel and resume with the new
    # order and the reordered filter.
    params = {"warmup": 60, "halflife": 20.0, "label_hysteresis": 0.0, "min_weight": 0.2}
    ticks = switching_ticks(7, 3000, block=90)
    one, many = RegimeDetector(**params), RegimeDetector(**params)
    expected = per_tick(one, ticks)
    got = chunked(many, ticks, [500] * 5)
    assert one._labeller.n_label_changes > 10
    assert_same(expected, got)
    assert many.to_state() == one.to_state()


def test_unusual_ticks_take_the_per_tick_path_with_the_same_result() -> None:
    ticks = switching_ticks(3, 1500)
    # Duplicates, out-of-order, bad values and odd types, sprinkled over the warm part.
    rng = np.random.default_rng(5)
    bad: list[dict[str, Any]] = [
        {"ts": math.nan, "price": 100.0},
        {"ts": 1.0e9, "price": -1.0},
        {"ts": 1.0e9, "price": "100"},
        {"ts": 1.0e9, "price": math.inf},
        {"ts": 1.0e9, "price": 100.0, "volume": -5.0},
        {"ts": 1.0e9, "price": 100.0, "volume": math.nan},
        {"price": 100.0},
        {"ts": 1.0e9, "price": 100},  # an int price is valid, just not a plain float
        {"ts": 1.0e9, "price": 1e300},  # an absurd jump: the feature is unusable
    ]
    stream: list[dict[str, Any]] = []
    for i, tick in enumerate(ticks):
        stream.append(tick)
        if i > 200 and rng.random() < 0.05:
            kind = int(rng.integers(0, 3))
            if kind == 0:
                stream.append(dict(tick))  # duplicate ts
            elif kind == 1:
                stream.append({**tick, "ts": tick["ts"] - 3 * DAY})  # out of order
            else:
                extra = dict(bad[int(rng.integers(0, len(bad)))])
                if "ts" in extra and not math.isnan(extra["ts"]):
                    extra["ts"] = tick["ts"] + 1.0
                stream.append(extra)
    one, many = RegimeDetector(warmup=100), RegimeDetector(warmup=100)
    expected = per_tick(one, stream)
    got = chunked(many, stream, [37] * 40)
    assert sum(isinstance(r, ValueError) for r in expected) > 5
    assert_same(expected, got)
    assert many.to_state() == one.to_state()


@pytest.mark.parametrize(("n_regimes", "min_weight"), [(3, 0.1), (4, 0.08), (7, 0.04)])
def test_more_regimes_run_compiled_and_agree(
    n_regimes: int, min_weight: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    # More than two regimes take the general filter (log-sum-exp over math.fsum) and the
    # fsum drift inputs; the compiled run reproduces math.fsum step for step. A short memory
    # and a high min_weight make components reseed and swap ranks, so runs also stop for
    # relabels of more than two regimes.
    counted = compiled_ticks(monkeypatch)
    params = {
        "n_regimes": n_regimes,
        "warmup": 150,
        "label_hysteresis": 0.0,
        "halflife": 30.0,
        "min_weight": min_weight,
    }
    ticks = switching_ticks(n_regimes, 3000, block=200)
    one, many = RegimeDetector(**params), RegimeDetector(**params)
    expected = per_tick(one, ticks)
    counted[0] = 0
    assert_same(expected, chunked(many, ticks, [40] * 50))
    assert many.to_state() == one.to_state()
    assert one._labeller.n_label_changes > 20
    assert counted[0] > 0.9 * (len(ticks) - 150)


@pytest.mark.parametrize(
    "make",
    [
        lambda: RegimeDetector(n_regimes=8, warmup=100),
        lambda: RegimeDetector(features=("ret", "var_cbrt"), warmup=100),
        lambda: RegimeDetector(warmup=100, learn_transitions=True),
        lambda: RegimeDetector(warmup=100, covariance_type="diag"),
        lambda: RegimeDetector(warmup=100, feature_warmup=150),
    ],
)
def test_other_configurations_agree_too(make: Any) -> None:
    ticks = switching_ticks(4, 1200)
    one, many = make(), make()
    assert_same(per_tick(one, ticks), chunked(many, ticks, [50] * 20))
    assert many.to_state() == one.to_state()


def test_event_detector_many_equals_one() -> None:
    rng = np.random.default_rng(0)
    ticks = [{"ts": float(t), "latency": float(rng.normal(10.0, 1.0))} for t in range(600)]
    one, many = EventDetector(["latency"], warmup=50), EventDetector(["latency"], warmup=50)
    assert_same(per_tick(one, ticks), chunked(many, ticks, [64] * 8))


def test_a_restored_detector_continues_identically() -> None:
    ticks = switching_ticks(9, 2000)
    one = RegimeDetector(warmup=100)
    many = RegimeDetector(warmup=100)
    per_tick(one, ticks[:1000])
    many.learn_predict_many(ticks[:1000])
    restored = RegimeDetector.from_state(many.to_state())
    assert_same(per_tick(one, ticks[1000:]), restored.learn_predict_many(ticks[1000:]))


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**16),
    sizes=st.lists(st.integers(1, 80), min_size=1, max_size=30),
    gaps=st.lists(st.sampled_from([0.0, 1.0, 60.0, DAY, 3 * DAY]), min_size=1, max_size=8),
)
def test_any_chunking_and_spacing_agree(seed: int, sizes: list[int], gaps: list[float]) -> None:
    rng = np.random.default_rng(seed)
    n = 400
    ts = 1.0e9 + np.cumsum(np.array(gaps)[rng.integers(0, len(gaps), size=n)])
    prices = 50.0 * np.exp(np.cumsum(rng.normal(0.0, rng.choice([0.002, 0.02, 0.05], size=n))))
    ticks = [{"ts": float(t), "price": float(p)} for t, p in zip(ts, prices, strict=True)]
    one, many = RegimeDetector(warmup=50), RegimeDetector(warmup=50)
    assert_same(per_tick(one, ticks), chunked(many, ticks, sizes))
    assert many.to_state() == one.to_state()


def test_long_lists_are_run_in_chunks_with_the_same_result(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A small chunk puts many chunk ends inside one call; each must resume the compiled run
    # (not fall back to the per-tick path) and change nothing.
    monkeypatch.setattr("streamgmm.regime._COMPILED_CHUNK", 7)
    counted = compiled_ticks(monkeypatch)
    ticks = switching_ticks(5, 2000)
    one, many = RegimeDetector(warmup=100), RegimeDetector(warmup=100)
    expected = per_tick(one, ticks)
    counted[0] = 0
    assert_same(expected, many.learn_predict_many(ticks))
    assert many.to_state() == one.to_state()
    assert counted[0] >= len(ticks) - 100 - 2  # every warm tick but the warm-up boundary


@settings(max_examples=500, deadline=None)
@given(
    st.lists(
        st.floats(min_value=-1e290, max_value=1e290, allow_nan=False, allow_infinity=False),
        min_size=0,
        max_size=9,
    )
)
def test_compiled_fsum_is_math_fsum(values: list[float]) -> None:
    n = len(values)
    array = np.array([*values, 0.0])  # never empty
    assert _regime_kernel._fsum(array, n, np.empty(n + 1)) == math.fsum(values)
