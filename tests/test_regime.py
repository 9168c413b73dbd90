"""RegimeDetector and EventDetector: the output contract, time rules, refusals, state, paths.

The statistical goals (real markets against Hamilton, synthetic streams, intraday sessions,
drift) are in tests/test_regime_goals.py; these tests hold the mechanics.
"""

from __future__ import annotations

import json
import math
import random
from typing import Any

import numpy as np
import pytest

from streamgmm.regime import OUTPUT_KEYS, EventDetector, RegimeDetector
from streamgmm.regime.output import output_rows
from streamgmm.synthetic import intraday_stream, switching_stream

DAY = 86400.0


def _same(a: Any, b: Any) -> bool:
    """Equal outputs (by repr: floats to the bit, NaN equal to NaN), with ValueErrors compared
    by message."""
    if isinstance(a, ValueError) or isinstance(b, ValueError):
        return type(a) is type(b) and str(a) == str(b)
    return repr(a) == repr(b)


def mixed_ticks(n: int, seed: int) -> list[Any]:
    """Price ticks with duplicates, out-of-order ticks, refused values and session gaps."""
    rng = random.Random(seed)
    stream = switching_stream(seed, n=n)
    ticks: list[Any] = []
    for tick in stream.ticks():
        roll = rng.random()
        if roll < 0.03 and ticks:
            ticks.append(dict(ticks[-1]))  # a duplicate
        elif roll < 0.05 and ticks:
            ticks.append({"ts": tick["ts"] - 3 * DAY, "price": tick["price"]})  # out of order
        elif roll < 0.07:
            ticks.append(
                rng.choice(
                    [
                        {"ts": tick["ts"], "price": -1.0},
                        {"ts": tick["ts"], "price": math.nan},
                        {"ts": math.inf, "price": 1.0},
                        {"ts": tick["ts"], "price": "12.5"},
                        {"ts": tick["ts"]},
                        {"ts": tick["ts"], "price": 1.0, "volume": -5.0},
                        {"ts": tick["ts"], "price": 1e305},
                    ]
                )
            )
        if roll > 0.99:
            tick = {**tick, "ts": tick["ts"] + 10 * DAY}  # a session gap (shifts later ticks'
            # order: those become out of order, which is part of the mix)
        ticks.append(tick)
    return ticks


def test_output_contract_warm_up_and_types() -> None:
    det = RegimeDetector()
    outs = det.learn_predict_many(switching_stream(1, n=300).ticks())
    assert all(isinstance(o, dict) and tuple(o) == OUTPUT_KEYS for o in outs)
    assert [o["warm"] for o in outs].index(True) == 50  # warm from the 51st tick (issue: <= 100)
    assert not any(o["warm"] for o in outs[:50]) and all(o["warm"] for o in outs[50:])
    cold = outs[10]
    assert cold["probabilities"] == {0: 0.5, 1: 0.5}
    for key in ("log_likelihood", "volatility", "value_at_risk"):
        assert cold[key] is None  # no forecast yet: null in the output record
    # The tick that ends the warm-up made no forecast (its return was buffered): null, never
    # a stale value; from then on every output carries the next tick's forecast.
    assert outs[50]["log_likelihood"] is None
    for o in outs[50:]:
        assert 0.0 < o["volatility"] < 0.1 and -0.5 < o["value_at_risk"] < -o["volatility"]
    for o in outs[51:]:
        assert type(o["regime"]) is int and o["regime"] in (0, 1)
        assert type(o["n_samples_seen"]) is int and type(o["drift_detected"]) is bool
        for key in ("probabilities", "raw_probabilities"):
            assert sorted(o[key]) == [0, 1]
            assert abs(sum(o[key].values()) - 1.0) < 1e-12
            assert all(0.0 <= p <= 1.0 for p in o[key].values())
        assert o["regime"] == max(o["probabilities"], key=lambda r: (o["probabilities"][r], -r))
        assert math.isfinite(o["log_likelihood"]) and math.isfinite(o["drift_score"])
    assert outs[-1]["n_samples_seen"] == 300
    json.dumps(outs)  # plain JSON types


def test_regime_zero_is_the_calmest_and_the_fit_is_in_input_units() -> None:
    det = RegimeDetector()
    det.learn_predict_many(switching_stream(4, n=3000).ticks())
    sd = np.sqrt(det.covariances_[:, 0, 0])
    assert list(sd) == sorted(sd)  # regime 0 calmest
    # The stream's 0.7 % and 2.0 % a day, seen through each state's typical volatility level
    # (the level's means are shrunk towards each other, so the spread is narrower).
    assert 0.004 < sd[0] < 0.01 and 0.01 < sd[1] < 0.03
    assert det.level_means_[0] < det.level_means_[1]
    a = det.transition_matrix_
    assert a.shape == (2, 2) and np.allclose(a.sum(axis=1), 1.0) and (np.diag(a) > 0.9).all()
    assert det.time_unit_ == DAY and det.means_.shape == (2, 1)


def test_learn_predict_many_equals_learn_predict_one_to_the_bit() -> None:
    ticks = mixed_ticks(2500, seed=7)
    one, many = RegimeDetector(), RegimeDetector()
    expected = []
    for tick in ticks:
        try:
            expected.append(one.learn_predict_one(tick))
        except ValueError as exc:
            expected.append(exc)
    got: list[Any] = []
    for start in range(0, len(ticks), 37):  # chunks, as the service hands them over
        got.extend(many.learn_predict_many(ticks[start : start + 37]))
    assert len(got) == len(expected)
    assert all(_same(a, b) for a, b in zip(got, expected, strict=True))
    assert one.to_state() == many.to_state()
    assert sum(isinstance(o, ValueError) for o in got) > 20
    assert one.n_duplicates > 20 and one.n_out_of_order > 20


def _by_block(det: Any, ticks: list[dict[str, float]], names: list[str], size: int) -> list[Any]:
    """Outputs (dicts) and refusals of ``ticks`` through ``learn_predict_block``, in chunks."""
    got: list[Any] = []
    for start in range(0, len(ticks), size):
        chunk = ticks[start : start + size]
        block = det.learn_predict_block(
            np.array([t["ts"] for t in chunk]), {m: np.array([t[m] for t in chunk]) for m in names}
        )
        results: list[Any] = [None] * len(chunk)
        for i, out in zip(block.applied, output_rows(block.columns), strict=True):
            results[i] = out
        for i, error in block.refused:
            results[i] = error
        assert None not in results
        got += results
    return got


def test_learn_predict_block_equals_learn_predict_many_to_the_bit() -> None:
    # The block takes numbers only: the mix's ticks with float ts and price (NaN, inf,
    # negative and huge prices, duplicates, out-of-order ticks and gaps among them).
    ticks = [
        {"ts": t["ts"], "price": t["price"]}
        for t in mixed_ticks(2500, seed=11)
        if type(t.get("ts")) is float and type(t.get("price")) is float
    ]
    many, blocks = RegimeDetector(), RegimeDetector()
    expected: list[Any] = []
    for start in range(0, len(ticks), 37):
        expected += many.learn_predict_many(ticks[start : start + 37])
    got = _by_block(blocks, ticks, ["price"], 37)
    assert [repr(g) for g in got] == [repr(e) for e in expected]  # repr: floats to the bit
    assert blocks.to_state() == many.to_state()
    assert sum(isinstance(g, ValueError) for g in got) > 10


def test_event_learn_predict_block_equals_learn_predict_many_to_the_bit() -> None:
    rng = np.random.default_rng(3)
    ticks = [
        {
            "ts": float(t),
            "a": float(rng.normal(0, 1 + 4 * (t // 300 % 2))),
            "b": float(rng.normal()),
        }
        for t in range(1500)
    ]
    ticks[700]["a"] = math.inf  # refused
    many, blocks = EventDetector(["a", "b"]), EventDetector(["a", "b"])
    expected: list[Any] = []
    for start in range(0, len(ticks), 50):
        expected += many.learn_predict_many(ticks[start : start + 50])
    got = _by_block(blocks, ticks, ["a", "b"], 50)
    assert [repr(g) for g in got] == [repr(e) for e in expected]
    assert isinstance(got[700], ValueError) and "'a'" in str(got[700])
    assert blocks.to_state() == many.to_state()


def test_learn_predict_block_names_a_missing_or_misshapen_field() -> None:
    det = RegimeDetector()
    with pytest.raises(ValueError, match="'price' is missing"):
        det.learn_predict_block(np.zeros(3), {"volume": np.ones(3)})
    with pytest.raises(ValueError, match="'price' must have 3 values"):
        det.learn_predict_block(np.zeros(3), {"price": np.ones(2)})
    assert det.n_samples_seen == 0


def test_skipped_ticks_repeat_the_last_output() -> None:
    det = RegimeDetector()
    ticks = switching_stream(2, n=200).ticks()
    det.learn_predict_many(ticks[:150])
    last = det.learn_predict_one(ticks[150])
    state = det.to_state()
    dup = det.learn_predict_one(ticks[150])
    old = det.learn_predict_one(ticks[100])
    for skipped in (dup, old):
        # Nothing was scored: log_likelihood is null (never the last tick's value); the rest
        # repeats, the forecast of the next tick included.
        assert skipped["log_likelihood"] is None
        same = {**skipped, "drift_detected": last["drift_detected"], "log_likelihood": 0.0}
        assert same == {**last, "log_likelihood": 0.0}
        assert skipped["drift_detected"] is False
    assert det.n_duplicates == 1 and det.n_out_of_order == 1
    counters = det.to_state()["counters"]
    assert counters["n_duplicates"] == 1 and counters["n_out_of_order"] == 1
    state["counters"].update(n_duplicates=1, n_out_of_order=1)
    assert det.to_state() == state  # nothing else moved


@pytest.mark.parametrize(
    ("tick", "message"),
    [
        ({"price": 1.0}, "'ts' is missing"),
        ({"ts": 1e9}, "'price' is missing"),
        ({"ts": "2024-01-01", "price": 1.0}, "'ts' must be a number, got '2024-01-01'"),
        ({"ts": 1e9, "price": True}, "'price' must be a number, got True"),
        ({"ts": 1e9, "price": 0.0}, "'price' must be positive, got 0.0"),
        ({"ts": 1e9, "price": math.inf}, "'price' must be finite"),
        ({"ts": math.nan, "price": 1.0}, "'ts' must be finite, got nan"),
        ({"ts": 1e9, "price": 1.0, "volume": -1}, "'volume' must be finite and non-negative"),
        ({"ts": 1e9, "price": 10**400}, "'price' is out of range"),
    ],
)
def test_refused_ticks_name_the_field_and_leave_the_state_unchanged(
    tick: dict[str, Any], message: str
) -> None:
    det = RegimeDetector()
    det.learn_predict_many(switching_stream(3, n=80).ticks())
    before = det.to_state()
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        det.learn_predict_one(tick)
    assert det.to_state() == before
    (result,) = det.learn_predict_many([tick])
    assert isinstance(result, ValueError) and det.to_state() == before


def test_prices_beyond_the_value_range_are_refused() -> None:
    det = RegimeDetector()
    det.learn_predict_one({"ts": 0.0, "price": 1e-300})
    with pytest.raises(
        ValueError, match=r"'price' must be finite and within ±1e\+100, got 1e\+300"
    ):
        det.learn_predict_one({"ts": 1.0, "price": 1e300})
    before = det.to_state()
    with pytest.raises(ValueError, match="unusable return"):  # 1e100 / 1e-300 overflows
        det.learn_predict_one({"ts": 1.0, "price": 1e100})
    assert det.to_state() == before
    assert det.learn_predict_one({"ts": 1.0, "price": 1e-299})["n_samples_seen"] == 2


@pytest.mark.parametrize("split", [30, 700])  # during the warm-up and after
def test_state_round_trip_continues_bit_identically(split: int) -> None:
    ticks = mixed_ticks(1500, seed=11)
    det = RegimeDetector()
    det.learn_predict_many(ticks[:split])
    text = json.dumps(det.to_state(), allow_nan=False)  # strict JSON
    restored = RegimeDetector.from_state(json.loads(text))
    assert restored.to_state() == det.to_state()
    a = det.learn_predict_many(ticks[split:])
    b = restored.learn_predict_many(ticks[split:])
    assert all(_same(x, y) for x, y in zip(a, b, strict=True))
    assert det.to_state() == restored.to_state()


def test_event_detector_round_trip_and_regimes() -> None:
    rng = np.random.default_rng(0)
    det = EventDetector(["latency", "cpu"], n_regimes=2)
    ticks = []
    for t in range(1200):
        busy = (t // 300) % 2 == 1
        ticks.append(
            {
                "ts": float(t),
                "latency": float(rng.normal(50, 10) if busy else rng.normal(10, 1)),
                "cpu": float(rng.normal(0.9, 0.05) if busy else rng.normal(0.3, 0.02)),
            }
        )
    outs = det.learn_predict_many(ticks[:700])
    restored = EventDetector.from_state(json.loads(json.dumps(det.to_state())))
    rest_a = det.learn_predict_many(ticks[700:])
    rest_b = restored.learn_predict_many(ticks[700:])
    assert rest_a == rest_b
    labels = np.array([o["regime"] for o in outs + rest_a])
    busy = (np.arange(1200) // 300) % 2 == 1
    assert (labels[busy[:] & (np.arange(1200) > 320)] == 1).mean() > 0.95
    assert (labels[~busy & (np.arange(1200) > 650)] == 0).mean() > 0.95
    assert det.covariances_.shape == (2, 2, 2)
    assert np.trace(det.covariances_[0]) < np.trace(det.covariances_[1])
    with pytest.raises(ValueError, match="'cpu' must be finite"):
        det.learn_predict_one({"ts": 5000.0, "latency": 1.0, "cpu": math.nan})


def test_predict_proba_one_changes_nothing() -> None:
    det = RegimeDetector()
    ticks = switching_stream(5, n=400).ticks()
    det.learn_predict_many(ticks[:399])
    before = det.to_state()
    proba = det.predict_proba_one(ticks[399])
    assert det.to_state() == before
    assert proba == det.learn_predict_one(ticks[399])["probabilities"]
    assert det.predict_one(ticks[399]) in (0, 1)


def test_closures_are_evidence_scored_with_their_gap_multiplier() -> None:
    stream = intraday_stream(0, days=20)
    det = RegimeDetector()
    outs = det.learn_predict_many(stream.ticks())
    assert det.time_unit_ == 300.0
    # Every spacing of two units or more after the warm-up is a gap (a night, a weekend, a
    # missing bar): counted, and scored like any other tick.
    gaps = np.flatnonzero(np.diff(stream.ts) >= 600.0) + 1
    gaps = gaps[gaps >= 51]
    assert det.n_gaps == gaps.size > 10
    assert all(math.isfinite(outs[i]["log_likelihood"]) for i in gaps)
    assert all(math.isfinite(o["log_likelihood"]) for o in outs[51:])


def test_auto_time_unit_makes_the_spacing_irrelevant_below_a_quarter_hour() -> None:
    """Spacings of a millisecond, a second or a minute give the same labels: the level's
    smoothing is 16 time units there. (From 15 minutes on it is four hours of time, and daily
    ticks are not smoothed, so labels at those spacings differ: docs/regime.md.)"""
    stream = switching_stream(6, n=1500)
    labels = []
    for spacing in (1e-3, 1.0, 60.0):
        ts = 1.7e9 + spacing * np.arange(stream.price.size)
        # Without the intraday profile, which reads the time of day (units below six hours).
        det = RegimeDetector(intraday_profile=False)
        outs = det.learn_predict_many(
            [{"ts": float(t), "price": float(p)} for t, p in zip(ts, stream.price, strict=True)]
        )
        labels.append(np.array([o["regime"] for o in outs]))
    for other in labels[:-1]:
        assert (other == labels[-1]).mean() >= 0.99


def test_a_constant_price_never_warms_up_never_breaks_and_says_so() -> None:
    det = RegimeDetector()
    outs = det.learn_predict_many([{"ts": float(i), "price": 7.0} for i in range(500)])
    assert not any(o["warm"] for o in outs) and outs[-1]["n_samples_seen"] == 500
    assert det.stream_problem is not None and det.stream_problem.startswith("no scale: 500")
    json.dumps(det.to_state(), allow_nan=False)
    more = det.learn_predict_many(switching_stream(8, n=200, t0=1000.0).ticks())
    assert more[-1]["warm"] and det.stream_problem is None


def test_a_stream_of_growing_gaps_is_still_scored() -> None:
    # Ticks whose spacing keeps growing, far beyond the warm-up's unit: each is a gap, scored
    # with the multiplier learnt for its length (the longest buckets from the shorter ones).
    det = RegimeDetector(warmup=20)
    rng = np.random.default_rng(1)
    ts, ticks = 0.0, []
    for i in range(400):
        ts += 1.0 if i < 21 else 10.0 * (i - 19)
        ticks.append({"ts": ts, "price": float(100 * np.exp(rng.normal(0, 0.01)))})
    outs = det.learn_predict_many(ticks)
    assert det.warm and det.n_gaps > 300 and det.stream_problem is None
    for out in outs[21:]:
        assert isinstance(out, dict) and math.isfinite(out["log_likelihood"])
        assert math.isfinite(out["volatility"]) and math.isfinite(out["value_at_risk"])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n_regimes": 0}, "n_regimes"),
        ({"n_regimes": 3}, "n_regimes must be 2 for market ticks"),
        ({"warmup": 1}, "warmup"),
        ({"dt_unit": "daily"}, "dt_unit"),
        ({"dt_unit": -1.0}, "dt_unit"),
        ({"var_level": 1.0}, "var_level"),
        ({"var_level": 0.3}, "var_level"),
        ({"intraday_profile": "yes"}, "intraday_profile"),
        ({"alpha": 0.9}, "unexpected keyword"),  # the event model's settings
    ],
)
def test_constructor_validation(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises((ValueError, TypeError), match=message):
        RegimeDetector(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n_regimes": 0}, "n_regimes"),
        ({"n_regimes": 9}, "n_regimes"),
        ({"warmup": 1}, "warmup"),
        ({"alpha": 0.5}, "alpha"),
        ({"self_transition": 1.0}, "self_transition"),
        ({"prior_low": 2.0, "prior_high": 1.0}, "prior_high"),
        ({"variance_floor": 0.0}, "variance_floor"),
        ({"drift_threshold": 0.0}, "threshold"),
        ({"drift_min_instances": 2.5}, "min_instances"),
        ({"halflife": "1000"}, "halflife"),
    ],
)
def test_event_constructor_validation(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        EventDetector(["a"], **kwargs)


def test_the_two_regime_row_unpacks_in_layout_order() -> None:
    """The detectors' _output unpacks a two-regime row by position, for speed: the layout's
    named slots must be in that order (status, field, regime, warm, seen, ll, drift score,
    drift, volatility, value at risk, then the probabilities and the raw ones)."""
    from streamgmm.regime import layout as L

    named = (L.R_STATUS, L.R_FIELD, L.R_REGIME, L.R_WARM, L.R_SEEN, L.R_LL, L.R_DRIFT_SCORE)
    assert (*named, L.R_DRIFT, L.R_VOLATILITY, L.R_VAR, L.R_PROBS) == tuple(range(11))
    assert L.row_width(2) == L.market_row_width() == 14


def test_the_two_detectors_share_one_declaration_of_their_shape() -> None:
    """Both detectors take Shape's fields (n_regimes, warmup), declared once; the market
    detector adds the forecast's settings and the time rules, the event detector its fields
    and the event model's settings."""
    import inspect

    from streamgmm.regime.params import (
        ForecastSettings,
        ModelSettings,
        Shape,
        TimeRules,
        params_of,
    )

    assert issubclass(RegimeDetector, Shape) and issubclass(EventDetector, ModelSettings)
    assert not issubclass(RegimeDetector, ModelSettings)
    shape = [p.name for p in params_of(Shape)]
    assert shape == ["n_regimes", "warmup"]
    regime = inspect.signature(RegimeDetector).parameters
    event = inspect.signature(EventDetector).parameters
    assert set(regime) == {p.name for p in params_of(ForecastSettings)} | {
        p.name for p in params_of(TimeRules)
    }
    assert set(event) == {p.name for p in params_of(ModelSettings)} | {"fields"}
    for name in shape:
        a, b = regime[name], event[name]
        assert (a.default, a.annotation, a.kind) == (b.default, b.annotation, b.kind), name
        declared = Shape.__dataclass_fields__[name]  # one field object, shared
        assert RegimeDetector.__dataclass_fields__[name] is declared, name
        assert EventDetector.__dataclass_fields__[name] is declared, name
    # The positional parameters: the number of regimes (after an event detector's fields).
    assert regime["n_regimes"].kind == inspect.Parameter.POSITIONAL_OR_KEYWORD
    assert list(event)[:2] == ["fields", "n_regimes"]
    # Each parameter is documented in the class's docstring with its declared text.
    for cls in (RegimeDetector, EventDetector):
        doc = inspect.getdoc(cls) or ""
        section = doc.split("Parameters\n----------\n", 1)[1].split("\nExamples\n")[0]
        for param in params_of(cls):
            assert f"\n{param.name}\n    " in "\n" + section, (cls, param.name)
            assert " ".join(param.text.split()) in " ".join(section.split()), (cls, param.name)


def test_n_components_is_the_old_name_of_n_regimes() -> None:
    """``EventDetector(fields, n_components=3)`` still works, with a DeprecationWarning that
    names n_regimes; the second positional argument is the number of regimes."""
    import warnings

    with pytest.warns(DeprecationWarning, match="use n_regimes"):
        old = EventDetector(["a", "b"], n_components=3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        new = EventDetector(["a", "b"], n_regimes=3)
        positional = EventDetector(["a", "b"], 3)
    assert old.to_state() == new.to_state() == positional.to_state()
    assert old.n_regimes == positional.n_regimes == 3
    assert old.to_state()["params"]["n_regimes"] == 3
    assert "n_components" not in old.to_state()["params"]
    with pytest.warns(DeprecationWarning, match="n_regimes"):
        assert old.n_components == 3
    with pytest.raises(TypeError, match="both"), pytest.warns(DeprecationWarning):
        EventDetector(["a"], n_components=2, n_regimes=3)


def test_an_event_state_that_says_n_components_is_still_read() -> None:
    """Snapshots written before the rename store ``n_components``: they restore, without a
    warning, and are written back with ``n_regimes``."""
    import warnings
    from pathlib import Path

    stored = Path(__file__).parent / "data" / "behaviour" / "snapshot_events.json"
    old = json.loads(stored.read_text())["state"]["pipeline"]
    assert "n_components" in old["params"] and "n_regimes" not in old["params"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        restored = EventDetector.from_state(old)
    renamed = {("n_regimes" if k == "n_components" else k): v for k, v in old["params"].items()}
    assert restored.to_state() == {**old, "version": 3, "params": renamed}  # same format
    assert list(restored.to_state()["params"]) == list(renamed)  # the same order
    both = {**old, "params": {**old["params"], "n_regimes": 2}}
    with pytest.raises(ValueError, match="old and its new name"):
        EventDetector.from_state(both)


def test_the_settings_are_read_only_and_stored_as_given() -> None:
    """A detector's settings cannot be changed after it is built (its buffer was made from
    them), and its stored params are river's ``_get_params``, in the same order."""
    import dataclasses

    det = RegimeDetector(var_level=0.95, warmup=30)
    with pytest.raises(dataclasses.FrozenInstanceError):
        det.var_level = 0.5  # type: ignore[misc]
    params = det.to_state()["params"]
    assert params == det._get_params() and list(params) == list(det._get_params())
    assert params["warmup"] == 30 and type(params["warmup"]) is int
    assert det.clone().to_state() == det.to_state()
    event = EventDetector(("a", "b"), n_regimes=3, halflife=1000)
    assert event.fields == ["a", "b"] and event.to_state()["params"] == event._get_params()
    assert event.to_state()["params"]["halflife"] == 1000


def test_event_detector_field_validation() -> None:
    for fields in ([], ["ts"], ["a", "a"], [""], "latency", [1]):
        with pytest.raises(ValueError, match="fields"):
            EventDetector(fields)  # type: ignore[arg-type]


def test_a_single_regime_is_allowed_for_events() -> None:
    rng = np.random.default_rng(9)
    det = EventDetector(["a"], n_regimes=1)
    outs = det.learn_predict_many([{"ts": float(t), "a": float(rng.normal())} for t in range(200)])
    assert outs[-1]["probabilities"] == {0: 1.0} and outs[-1]["regime"] == 0


def test_an_event_value_standardised_beyond_range_is_refused_and_changes_nothing() -> None:
    """A tiny stored scale (or a value very far from the warm-up's) would overflow the model:
    the tick is refused naming the field, and the state stays as it was (state fuzz find)."""
    rng = np.random.default_rng(0)
    det = EventDetector(["a", "b"], warmup=20)
    outs = det.learn_predict_many(
        [
            {"ts": float(t), "a": float(rng.normal()), "b": float(rng.normal(5, 2))}
            for t in range(60)
        ]
    )
    last = outs[-1]
    assert all(isinstance(out, dict) for out in outs) and isinstance(last, dict) and last["warm"]
    state = det.to_state()
    assert state["running"]
    state["features"]["scale"][0] = 5e-324
    hostile = EventDetector.from_state(state)
    before = hostile.to_state()
    with pytest.raises(ValueError, match=r"'a' is 0\.5, too far from the warm-up's values"):
        hostile.learn_predict_one({"ts": 100.0, "a": 0.5, "b": 5.0})
    [out] = hostile.learn_predict_many([{"ts": 100.0, "a": 0.5, "b": 5.0}])
    assert isinstance(out, ValueError)
    assert hostile.to_state() == before
    json.dumps(before, allow_nan=False)


def test_a_unit_that_shrinks_after_the_warm_up_gives_finite_outputs() -> None:
    """Daily ticks through the warm-up, then one a second: every later tick is a tenth of a
    unit (the smallest multiplier), and every output stays finite (a state fuzz find of the
    earlier model)."""
    rng = np.random.default_rng(3)
    price, ticks = 100.0, []
    for i in range(121):
        price *= math.exp(rng.normal(0, 0.01))
        ts = 86400.0 * i if i <= 20 else 86400.0 * 20 + (i - 20)
        ticks.append({"ts": ts, "price": price})
    det = RegimeDetector(warmup=20)
    outs = det.learn_predict_many(ticks)
    assert all(isinstance(out, dict) for out in outs)
    assert outs[-1]["warm"]  # type: ignore[index]
    for out in outs[22:]:
        assert isinstance(out, dict) and math.isfinite(out["log_likelihood"])
        assert all(math.isfinite(p) for p in out["probabilities"].values())
    json.dumps(det.to_state(), allow_nan=False)


@pytest.mark.parametrize("moment", [4.741789547888287e307, 1e201])
def test_a_stored_moment_beyond_range_is_refused(moment: float) -> None:
    """A second moment near the float limit passed the checks and gave a NaN drift score
    (found by the million-case state fuzz); moments beyond 1e200 are refused now."""
    rng = np.random.default_rng(0)
    det = EventDetector(["a"])
    det.learn_predict_many([{"ts": float(t), "a": float(rng.normal())} for t in range(300)])
    state = det.to_state()
    state["hmm"]["emission_stats"][0][1][2] = moment
    with pytest.raises(ValueError, match="emission_stats"):
        EventDetector.from_state(state)


def _event_ticks(n: int, seed: int) -> list[dict[str, float]]:
    """Two fields whose variance switches every 250 events, with drifting means, so the
    event model's regimes change rank now and then."""
    rng = np.random.default_rng(seed)
    ticks = []
    for t in range(n):
        wide = (t // 250) % 2 == 1
        ticks.append(
            {
                "ts": float(t),
                "a": float(rng.normal(t / 500.0, 3.0 if wide else 1.0)),
                "b": float(rng.normal(0.0, 1.0 if wide else 2.5)),
            }
        )
    return ticks


def test_probabilities_follow_the_regime_order_of_the_fitted_views_after_a_re_rank() -> None:
    """After every tick, a re-ranking included, the output's probabilities are in the order
    of ``means_``/``covariances_``: entry r is the filtered probability of the model state
    shown as regime r (``regime_order``)."""
    from streamgmm.regime import layout as L

    det = EventDetector(["a", "b"], n_regimes=3, label_hysteresis=0.0)
    changes_seen = 0
    for tick in _event_ticks(3000, seed=2):
        before = det.n_label_changes
        out = det.learn_predict_one(tick)
        if not out["warm"]:
            continue
        order = det.regime_order
        assert order is not None
        filtered = L.regions(det._buf)["filtered"]
        assert [out["probabilities"][r] for r in range(3)] == [filtered[s] for s in order]
        changes_seen += det.n_label_changes > before
    assert changes_seen >= 1  # the property was checked on re-ranking ticks too
    traces = [np.trace(c) for c in det.covariances_]
    assert traces == sorted(traces)


def test_market_probabilities_are_calm_first_and_follow_the_level_states() -> None:
    """The market detector's regime 1 is the filter state with the higher volatility level,
    after every tick; its probabilities are that state's and the other's, in that order."""
    from streamgmm.regime import layout as L
    from streamgmm.regime import level

    det = RegimeDetector()
    for tick in switching_stream(5, n=2500).ticks():
        out = det.learn_predict_one(tick)
        if out["warm"]:
            means = det.level_means_
            assert means[0] <= means[1] + level.RELABEL_MARGIN
            high = int(det._buf[L.M_HIGH])
            assert out["probabilities"][1] == det._buf[L.M_PF0 + high]
            assert out["regime"] == (1 if out["probabilities"][1] > 0.5 else 0)


def _predictive_on_grid(det: RegimeDetector, dt: float, grid: np.ndarray) -> np.ndarray:
    """The density (natural log-return units) the detector gives a tick ``dt`` seconds after
    its last one, for each log return in ``grid``, each on a copy of its buffer."""
    from streamgmm.regime import layout as L

    last_ts, last_price = det._buf[L.M_LAST_TS], det._buf[L.M_LAST_PRICE]
    data = np.array([[last_ts + dt, last_price * math.exp(r)] for r in grid])
    dens = np.empty(grid.size)
    row = np.empty((1, L.market_row_width()))
    for i in range(grid.size):
        det._run(data[i : i + 1], row, buf=det._buf.copy())
        dens[i] = math.exp(row[0, L.R_LL])
    return dens


@pytest.mark.parametrize("stream", ["daily", "intraday"])
def test_log_likelihood_volatility_and_value_at_risk_are_one_predictive(stream: str) -> None:
    """``log_likelihood`` is a density of the log return (it integrates to 1); the next tick's
    ``volatility`` is its standard deviation one time unit ahead and ``value_at_risk`` its 1 %
    quantile (the latter through Wallace's normal approximation of the t, within a few %)."""
    if stream == "daily":
        ticks = switching_stream(3, n=800).ticks()
    else:
        ticks = intraday_stream(1, days=15).ticks()
    det = RegimeDetector()
    out = det.learn_predict_many(ticks)[-1]
    sd = out["volatility"]
    grid = np.linspace(-25 * sd, 25 * sd, 6001)
    dens = _predictive_on_grid(det, det.time_unit_, grid)
    step = grid[1] - grid[0]
    assert abs(dens.sum() * step - 1.0) < 2e-3
    mean = (grid * dens).sum() * step
    # t(nu) tails beyond 25 sd hold little variance for the nu learnt here (about 6 to 7.5)
    assert (((grid - mean) ** 2 * dens).sum() * step) ** 0.5 == pytest.approx(sd, rel=0.03)
    below = dens[grid <= out["value_at_risk"]].sum() * step
    assert 0.0095 < below < 0.0105


def test_a_state_of_the_earlier_market_model_is_refused_with_its_version() -> None:
    """A RegimeDetector snapshot of state version 2 (the mixture-HMM model) cannot be read:
    it is refused naming its version, so ``[checkpoint] on_bad_snapshot`` resets the key;
    an EventDetector snapshot of version 2 is the same format and is read."""
    from pathlib import Path

    stored = Path(__file__).parent / "data" / "behaviour"
    # A service snapshot of a market key written before state version 3.
    old_market = json.loads((stored / "snapshot_v2_market.json").read_text())["state"]["pipeline"]
    assert old_market["version"] == 2
    with pytest.raises(ValueError, match=r"state version 2 is not supported \(expected 3\)"):
        RegimeDetector.from_state(old_market)
    event = EventDetector(["a"])
    event.learn_predict_many([{"ts": float(t), "a": math.sin(t) * (1 + t % 7)} for t in range(90)])
    state = {**event.to_state(), "version": 2}
    assert EventDetector.from_state(state).to_state() == event.to_state()
    with pytest.raises(ValueError, match="version 1 is not supported"):
        EventDetector.from_state({**state, "version": 1})


def test_a_stored_state_out_of_bounds_is_refused() -> None:
    det = RegimeDetector()
    det.learn_predict_many(switching_stream(0, n=300).ticks())
    good = det.to_state()
    RegimeDetector.from_state(json.loads(json.dumps(good)))
    for path, value, message in [
        (("gjr", "theta"), [0.6, 0.0, 0.3, 1.0, 0.0, 0.0], r"theta\[0\]"),
        (("egarch", "variance"), 1e300, "variance"),
        (("gjr", "curvature"), [[0.0] * 6] * 6, "positive definite"),
        (("level", "filtered"), [0.7, 0.7], "sum to 1"),
        (("drift", "cusum"), 1e9, "cusum"),
        (("gjr", "t_constants"), [6.0, 0.0, 0.0], "does not match"),
        # a count the step cannot have written (state fuzz find: NaN multipliers)
        (("gjr", "time", "profile_total"), [10.0, 1e-300], "exceeds 1000 times its count"),
        (("egarch", "time", "ordinary"), [5.0, 0.001], "exceeds 1000 times its count"),
    ]:
        state = json.loads(json.dumps(good))
        node: Any = state
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
        with pytest.raises(ValueError, match=message):
            RegimeDetector.from_state(state)


def test_degrees_of_freedom_stay_in_their_bounds_on_tails_heavier_than_t3() -> None:
    """iid Student-t(2.2) returns (infinite variance): both models' degrees of freedom go down
    to their lower bound, 2.75, and not below; outputs stay finite. A stored nu below the
    bound is refused, naming it."""
    from streamgmm.regime import volatility

    rng = np.random.default_rng(0)
    price = 100.0 * np.exp(np.cumsum(rng.standard_t(2.2, 4000) * 0.01))
    ticks = [{"ts": 86400.0 * i, "price": p} for i, p in enumerate(price.tolist())]
    det = RegimeDetector()
    out = det.learn_predict_many(ticks)
    state = det.to_state()
    for model in ("gjr", "egarch"):
        nu = state[model]["t_constants"][0]
        assert volatility.NU_MIN <= nu < 2.8, (model, nu)
    assert all(math.isfinite(o["volatility"]) and o["value_at_risk"] < 0 for o in out[60:])
    theta = list(state["gjr"]["theta"])
    theta[3] = math.log(2.7 - 2.0)
    bad = json.loads(json.dumps(state))
    bad["gjr"]["theta"] = theta
    with pytest.raises(ValueError, match=r"theta\[3\]"):
        RegimeDetector.from_state(bad)
