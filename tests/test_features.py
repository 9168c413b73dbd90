"""Tick features: return scaling, EWMA volatility, skipped timestamps, validation, state."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamgmm.features import EventFeatures, TickFeatures

DAY = 86400.0


def test_daily_return_is_percent_log_return() -> None:
    f = TickFeatures()
    assert f.step({"ts": 0.0, "price": 100.0}) == ({}, "first")
    x, status = f.step({"ts": DAY, "price": 102.0})
    assert status == "ok"
    assert x["ret"] == pytest.approx(100.0 * math.log(1.02), rel=1e-14)


def test_intraday_returns_are_scaled_to_one_day() -> None:
    # Six-hour spacing: a quarter of a day, so the return is divided by sqrt(0.25).
    f = TickFeatures()
    f.learn_one({"ts": 0.0, "price": 50.0})
    x = f.transform_one({"ts": DAY / 4, "price": 51.0})
    assert x["ret"] == pytest.approx(100.0 * math.log(51 / 50) / 0.5, rel=1e-14)


def test_gaps_longer_than_max_dt_count_as_one_unit() -> None:
    # A weekend (Friday -> Monday) is not three days of variance on daily closes.
    f = TickFeatures()
    f.learn_one({"ts": 0.0, "price": 50.0})
    x = f.transform_one({"ts": 3 * DAY, "price": 51.0})
    assert x["ret"] == pytest.approx(100.0 * math.log(51 / 50), rel=1e-14)
    g = TickFeatures(max_dt_units=5.0)
    g.learn_one({"ts": 0.0, "price": 50.0})
    y = g.transform_one({"ts": 3 * DAY, "price": 51.0})
    assert y["ret"] == pytest.approx(100.0 * math.log(51 / 50) / math.sqrt(3.0), rel=1e-14)


def test_ewma_variance_matches_an_independent_recursion() -> None:
    prices = [100.0, 101.0, 99.5, 99.7, 103.0, 102.2, 102.3]
    halflife = 2.0
    f = TickFeatures(vol_halflife=halflife)
    f.learn_one({"ts": 0.0, "price": prices[0]})
    lam = 0.5 ** (1 / halflife)
    num = den = 0.0
    for i in range(1, len(prices)):
        x, _ = f.step({"ts": i * DAY, "price": prices[i]})
        r = 100 * math.log(prices[i] / prices[i - 1])
        num = lam * num + (1 - lam) * r * r
        den = lam * den + (1 - lam)
        assert x["var_cbrt"] == pytest.approx((num / den) ** (1 / 3), rel=1e-12)
        assert x["log_vol"] == pytest.approx(0.5 * math.log(num / den), rel=1e-9)


def test_duplicate_and_out_of_order_ticks_are_skipped_and_counted() -> None:
    clean = TickFeatures()
    noisy = TickFeatures()
    ticks = [(0, 100.0), (1, 101.0), (2, 100.5), (3, 102.0)]
    out_clean = [clean.step({"ts": t * DAY, "price": p})[0] for t, p in ticks]
    out_noisy = []
    for t, p in ticks:
        out_noisy.append(noisy.step({"ts": t * DAY, "price": p})[0])
        assert noisy.step({"ts": t * DAY, "price": p * 3})[1] == "duplicate"
        if t:
            assert noisy.step({"ts": (t - 0.5) * DAY, "price": 1.0}) == ({}, "out_of_order")
    assert out_noisy == out_clean
    assert noisy.n_duplicates == 4
    assert noisy.n_out_of_order == 3
    assert noisy.to_state()["sq"] == clean.to_state()["sq"]


@pytest.mark.parametrize(
    ("tick", "field"),
    [
        ({"ts": 1.0, "price": float("nan")}, "price"),
        ({"ts": 1.0, "price": float("inf")}, "price"),
        ({"ts": float("nan"), "price": 1.0}, "ts"),
        ({"ts": 1.0}, "price"),
        ({"price": 1.0}, "ts"),
        ({"ts": 1.0, "price": "12"}, "price"),
        ({"ts": 1.0, "price": True}, "price"),
        ({"ts": 1.0, "price": -3.0}, "price"),
        ({"ts": 1.0, "price": 0.0}, "price"),
        ({"ts": 1.0, "price": 2.0, "volume": float("nan")}, "volume"),
    ],
)
def test_bad_ticks_raise_naming_the_field_and_leave_state_unchanged(tick: dict, field: str) -> None:
    f = TickFeatures()
    f.learn_one({"ts": 0.0, "price": 10.0})
    before = json.dumps(f.to_state())
    with pytest.raises(ValueError, match=field):
        f.learn_one(tick)
    assert json.dumps(f.to_state()) == before


def test_volume_z_score() -> None:
    f = TickFeatures(use_volume=True, volume_halflife=5.0)
    f.learn_one({"ts": 0.0, "price": 10.0, "volume": 1000.0})
    zs = [
        f.step({"ts": (i + 1) * DAY, "price": 10.0, "volume": 1000.0 * (1 + 0.1 * (i % 2))})[0][
            "volume_z"
        ]
        for i in range(30)
    ]
    assert all(abs(z) < 3 for z in zs[2:])
    spike = f.step({"ts": 40 * DAY, "price": 10.0, "volume": 50000.0})[0]["volume_z"]
    assert spike > 10
    with pytest.raises(ValueError, match="volume"):
        f.learn_one({"ts": 41 * DAY, "price": 10.0})


def test_constant_price_gives_finite_features() -> None:
    f = TickFeatures()
    for i in range(5):
        x, _ = f.step({"ts": i * DAY, "price": 7.0})
    assert x["ret"] == 0.0
    assert math.isfinite(x["log_vol"])
    assert x["var_cbrt"] == 0.0


def test_state_round_trip_continues_identically() -> None:
    a = TickFeatures(use_volume=True)
    for i in range(10):
        a.learn_one({"ts": i * 3600.0, "price": 100 + math.sin(i), "volume": 10.0 + i})
    b = TickFeatures.from_state(json.loads(json.dumps(a.to_state(), allow_nan=False)))
    for i in range(10, 20):
        tick = {"ts": i * 3600.0, "price": 100 + math.sin(i), "volume": 10.0 + i}
        assert a.step(tick) == b.step(tick)
    with pytest.raises(ValueError, match="TickFeatures"):
        TickFeatures.from_state({"version": 2, "kind": "TickFeatures"})


def test_event_features_pass_fields_through() -> None:
    f = EventFeatures(["cpu", "mem"])
    assert f.step({"ts": 5.0, "cpu": 1, "mem": 2.5, "host": "x"}) == (
        {"cpu": 1.0, "mem": 2.5},
        "first",
    )
    assert f.transform_one({"ts": 4.0, "cpu": 1, "mem": 2}) == {}
    assert f.step({"ts": 4.0, "cpu": 1, "mem": 2})[1] == "out_of_order"
    with pytest.raises(ValueError, match="'mem'"):
        f.learn_one({"ts": 6.0, "cpu": 1.0})
    with pytest.raises(ValueError, match=r"'cpu'.*inf"):
        f.learn_one({"ts": 6.0, "cpu": float("-inf"), "mem": 1.0})
    g = EventFeatures.from_state(json.loads(json.dumps(f.to_state())))
    tick = {"ts": 6.0, "cpu": 3.0, "mem": 1.0}
    assert g.step(tick) == f.step(tick)
    assert g.n_out_of_order == 1


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            # Timestamps may repeat, go backwards or differ by a hair.
            st.one_of(st.floats(min_value=-1e6, max_value=1e9), st.sampled_from([0.0, 1e-300])),
            st.floats(min_value=1e-6, max_value=1e9, allow_nan=False),
        ),
        min_size=1,
        max_size=40,
    )
)
def test_any_finite_tick_sequence_is_handled(ticks: list[tuple[float, float]]) -> None:
    f = TickFeatures()
    accepted = 0
    for ts, price in ticks:
        x, status = f.step({"ts": ts, "price": price})
        accepted += status in ("first", "ok")
        assert all(math.isfinite(v) for v in x.values())
    assert accepted + f.n_duplicates + f.n_out_of_order == len(ticks)
