"""The output record: one schema (streamgmm.ticks.record), two encoders held byte-equal."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamgmm.regime.output import (
    NAN_IS_NONE,
    OUTPUT_FIELDS,
    OUTPUT_KEYS,
    make_output,
    make_output_columns,
    output_rows,
)
from streamgmm.ticks.encode import (
    COLUMNS_ENCODER_SOURCE,
    ENCODER_SOURCE,
    build_output_record,
    encode_output,
    encode_output_columns,
    encode_output_record,
    encode_output_run,
)
from streamgmm.ticks.record import (
    DERIVED_FIELDS,
    RECORD_FIELDS,
    RECORD_KEYS,
    SOURCE_FIELDS,
    fields_table,
    iso_time,
)
from streamgmm.ticks.tick import Tick


def test_the_schema_is_the_one_list_of_fields() -> None:
    # The source, then the detector's output, each derived field right after its own.
    derived = set(DERIVED_FIELDS.values())
    assert tuple(f for f in RECORD_FIELDS if f not in derived) == SOURCE_FIELDS + OUTPUT_FIELDS
    assert RECORD_KEYS[RECORD_KEYS.index("ts") + 1] == "time"
    assert RECORD_KEYS[RECORD_KEYS.index("regime") + 1] == "regime_name"
    assert tuple(f.name for f in RECORD_FIELDS) == RECORD_KEYS
    assert len(set(RECORD_KEYS)) == len(RECORD_KEYS)
    # The source fields are read from the decoded tick.
    assert {f.name for f in SOURCE_FIELDS} <= set(Tick._fields)
    out = make_output(
        1, {0: 0.25, 1: 0.75}, {0: 0.5, 1: 0.5}, -1.5, 0.25, True, 7, True, 0.01, -0.03
    )
    assert tuple(out) == OUTPUT_KEYS
    # The fast encoder is generated from the schema: every field, in order, and nothing else.
    positions = [ENCODER_SOURCE.index(f'"{name}":') for name in RECORD_KEYS]
    assert positions == sorted(positions)
    assert ENCODER_SOURCE.count('":') == len(RECORD_KEYS)
    # The docs table lists every field.
    table = fields_table()
    assert all(f"| `{name}` |" in table for name in RECORD_KEYS)


def test_make_output_turns_nan_into_none_exactly_for_the_fields_that_can_have_no_value() -> None:
    nan = float("nan")
    out = make_output(0, {0: 1.0}, {0: 1.0}, nan, nan, False, 1, False, nan, nan)
    assert {name for name, value in out.items() if value is None} == NAN_IS_NONE
    assert {"log_likelihood", "drift_score", "volatility", "value_at_risk"} == NAN_IS_NONE
    # Every output path goes through make_output: columns and a batch's rows agree.
    columns = make_output_columns(
        np.array([0]), [np.array([1.0])], [np.array([1.0])], np.array([nan]),
        np.array([0.5]), np.array([False]), np.array([1]), np.array([False]),
        np.array([nan]), np.array([nan]),
    )  # fmt: skip
    assert output_rows(columns)[0]["log_likelihood"] is None


def test_a_record_carries_the_warm_flag() -> None:
    tick = Tick("SPX", 1.5, {"price": 2.0}, "ticks", 3, 77)
    cold = make_output(
        0, {0: 0.5, 1: 0.5}, {0: 0.5, 1: 0.5}, None, 0.0, False, 1, False, None, None
    )
    record = json.loads(encode_output_record(tick, cold))
    assert record["warm"] is False
    assert record["log_likelihood"] is record["volatility"] is record["value_at_risk"] is None
    assert build_output_record(tick, {**cold, "warm": True})["warm"] is True


def _numpy_output() -> dict[str, Any]:
    """A detector output with numpy scalars and a non-finite value in it."""
    return {
        "regime": np.int64(1),
        "probabilities": {np.int64(0): np.float64(0.25), 1: 0.75},
        "raw_probabilities": {0: 0.5, 1: 0.5},
        "log_likelihood": float("-inf"),
        "drift_score": np.float64(1.25),
        "drift_detected": np.bool_(True),
        "n_samples_seen": np.int64(9),
        "warm": True,
        "volatility": np.float64(0.012),
        "value_at_risk": None,
    }


def test_build_output_record_is_plain_json_safe_and_round_trips() -> None:
    tick = Tick("SPX", 1.5, {"price": 2.0}, "ticks", 3, 77)
    out = _numpy_output()
    record = build_output_record(tick, out)
    assert tuple(record) == RECORD_KEYS
    assert record["probabilities"] == {"0": 0.25, "1": 0.75}
    assert record["log_likelihood"] is None  # JSON has no -inf
    assert type(record["regime"]) is int
    assert type(record["drift_detected"]) is bool
    assert type(record["drift_score"]) is float
    assert (record["topic"], record["partition"], record["offset"]) == ("ticks", 3, 77)
    assert json.loads(encode_output(record)) == record


def test_encode_output_record_equals_the_generic_encoder_on_the_same_record() -> None:
    tick = Tick("SPX", 1.5, {"price": 2.0}, "ticks", 3, 77)
    out = _numpy_output()
    assert encode_output_record(tick, out) == encode_output(build_output_record(tick, out))


_floats = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(min_value=0.0, max_value=1.0).map(np.float64),
    st.integers(-(2**40), 2**40),
)
#: A forecast field: a number, or None where no forecast was made.
_forecast = st.one_of(_floats, st.none())


@settings(max_examples=300, deadline=None)
@given(
    key=st.text(min_size=1, max_size=20),
    topic=st.text(min_size=1, max_size=10),
    ts=st.floats(allow_nan=False, allow_infinity=False),
    partition=st.integers(0, 1000),
    offset=st.integers(0, 2**62),
    regime=st.integers(0, 15),
    probabilities=st.lists(_floats, min_size=1, max_size=16),
    raw=st.lists(_floats, min_size=1, max_size=16),
    log_likelihood=_forecast,
    drift_score=_floats,
    drift_detected=st.booleans(),
    n_samples_seen=st.integers(0, 2**62),
    warm=st.booleans(),
    volatility=_forecast,
    value_at_risk=_forecast,
)
def test_encode_output_record_matches_json_dumps_byte_for_byte(
    key: str,
    topic: str,
    ts: float,
    partition: int,
    offset: int,
    regime: int,
    probabilities: list[Any],
    raw: list[Any],
    log_likelihood: Any,
    drift_score: Any,
    drift_detected: bool,
    n_samples_seen: int,
    warm: bool,
    volatility: Any,
    value_at_risk: Any,
) -> None:
    tick = Tick(key, ts, {"price": 1.0}, topic, partition, offset)
    out = make_output(
        regime,
        dict(enumerate(probabilities)),
        dict(enumerate(raw)),
        log_likelihood,
        drift_score,
        drift_detected,
        n_samples_seen,
        warm,
        volatility,
        value_at_risk,
    )
    assert encode_output_record(tick, out) == encode_output(build_output_record(tick, out))


def test_generic_encoder_writes_compact_json_and_refuses_non_finite() -> None:
    record = {"key": "SPX", "probabilities": {"0": 0.25, "1": 0.75}, "drift_detected": False}
    data = encode_output(record)
    assert data == b'{"key":"SPX","probabilities":{"0":0.25,"1":0.75},"drift_detected":false}'
    assert encode_output({"key": "Zürich"}) == '{"key":"Zürich"}'.encode()
    with pytest.raises(ValueError):
        encode_output({"log_likelihood": float("nan")})


# --------------------------------------------------------------------------- column form

_column_floats = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    # repr() and a column formatter part ways below 1e-4 ("1e-05"): many values there.
    st.floats(min_value=-1e-3, max_value=1e-3),
    st.floats(min_value=0.0, max_value=1.0),
)
_column_forecasts = st.one_of(_column_floats, st.none())


@settings(max_examples=300, deadline=None)
@given(
    n=st.integers(0, 12),
    k=st.integers(0, 4),
    key=st.text(min_size=1, max_size=12),
    topic=st.text(min_size=1, max_size=8),
    partition=st.integers(-1, 1000),
    data=st.data(),
)
def test_encode_output_columns_matches_the_generic_encoder_record_by_record(
    n: int, k: int, key: str, topic: str, partition: int, data: st.DataObject
) -> None:
    def floats() -> list[float]:
        return data.draw(st.lists(_column_floats, min_size=n, max_size=n))

    def forecasts() -> list[float | None]:
        return data.draw(st.lists(_column_forecasts, min_size=n, max_size=n))

    ts = data.draw(
        st.lists(st.floats(allow_nan=False, allow_infinity=False), min_size=n, max_size=n)
    )
    offsets = data.draw(st.lists(st.integers(0, 2**62), min_size=n, max_size=n))
    columns = make_output_columns(
        data.draw(st.lists(st.integers(0, 15), min_size=n, max_size=n)),
        [floats() for _ in range(k)],
        [floats() for _ in range(k)],
        forecasts(),
        floats(),
        data.draw(st.lists(st.booleans(), min_size=n, max_size=n)),
        data.draw(st.lists(st.integers(0, 2**62), min_size=n, max_size=n)),
        data.draw(st.lists(st.booleans(), min_size=n, max_size=n)),
        forecasts(),
        forecasts(),
    )
    # The source as a block holds it: one key, topic and partition; ts and offsets as arrays.
    source = {
        "key": key,
        "ts": np.array(ts, dtype=np.float64),
        "topic": topic,
        "partition": partition,
        "offset": np.array(offsets, dtype=np.int64),
    }
    names = data.draw(st.one_of(st.none(), st.lists(st.text(), min_size=k, max_size=k)))
    got = encode_output_columns(source, columns, names)
    outs = output_rows(columns)
    want = [
        encode_output(build_output_record(Tick(key, t, {}, topic, partition, o), out, names))
        for t, o, out in zip(ts, offsets, outs, strict=True)
    ]
    assert got == want


def test_number_columns_are_written_as_repr_writes_each_float() -> None:
    rng = np.random.default_rng(5)
    # Random bit patterns: every sign, exponent and mantissa, NaN and infinity among them.
    bits = rng.integers(0, 2**64 - 1, 20_000, dtype=np.uint64, endpoint=True).view(np.float64)
    values = np.concatenate(
        [
            bits,
            10.0 ** rng.uniform(-30, 30, 20_000),
            # Around 1e-4 and 1e-5, where the two writers' forms differ most, either sign.
            rng.choice([-1.0, 1.0], 20_000) * 10.0 ** rng.uniform(-6, -3, 20_000),
            [0.0, -0.0, 1e-5, 1.5e-7, 1e-4, 9.999e-5, 1e16, 1e22, 5e-324, 1.7976931348623157e308],
        ]
    )
    columns = make_output_columns(
        [0] * values.size, [], [], values.tolist(), [0.0] * values.size,
        [False] * values.size, [1] * values.size, [True] * values.size,
        [None] * values.size, [None] * values.size,
    )  # fmt: skip
    records = encode_output_columns(
        {"key": "K", "ts": 0.0, "topic": "t", "partition": 0, "offset": 0}, columns
    )
    got = [json.loads(r)["log_likelihood"] for r in records]
    texts = [r.split(b'"log_likelihood":')[1].split(b",")[0].decode() for r in records]
    finite = np.isfinite(values)
    assert texts == [repr(float(v)) if f else "null" for v, f in zip(values, finite, strict=True)]
    assert [g for g, f in zip(got, finite, strict=True) if f] == values[finite].tolist()


def test_the_columns_encoder_is_generated_from_the_schema() -> None:
    # Every field is written, by name, and a record holds the fields in the schema's order
    # (two fields in a row may be written as one text: regime and regime_name, for one).
    assert all(f'"{name}":' in COLUMNS_ENCODER_SOURCE for name in RECORD_KEYS)
    columns = make_output_columns(
        [1], [[0.25], [0.75]], [[0.5], [0.5]], [-1.0], [0.5], [False], [3], [True], [0.01], [-0.02]
    )
    source = {"key": "K", "ts": 1.5, "topic": "t", "partition": 0, "offset": 7}
    (record,) = encode_output_columns(source, columns)
    assert tuple(json.loads(record)) == RECORD_KEYS
    assert record.count(b'":') == len(RECORD_KEYS) + 4  # and the regime ids in probabilities


# --------------------------------------------------------------------------- for people


def test_time_is_ts_as_iso_8601_utc() -> None:
    # 2024-01-02 14:30:00 UTC is 1704205800 seconds since the epoch.
    assert iso_time(1704205800.0) == "2024-01-02T14:30:00Z"
    assert iso_time(1704205800.5) == "2024-01-02T14:30:00.5Z"
    assert iso_time(0.0) == "1970-01-01T00:00:00Z"
    assert iso_time(-86400.0) == "1969-12-31T00:00:00Z"
    assert iso_time(1e18) is None  # past the year 9999: null
    tick = Tick("SPX", 1704205800.0, {"price": 2.0}, "ticks", 0, 1)
    out = make_output(0, {0: 0.5, 1: 0.5}, {0: 0.5, 1: 0.5}, None, 0.0, False, 1, False, None, None)
    record = json.loads(encode_output_record(tick, out))
    assert (record["ts"], record["time"]) == (1704205800.0, "2024-01-02T14:30:00Z")
    assert list(record).index("time") == list(record).index("ts") + 1


@pytest.mark.parametrize("fraction", [0.0, 0.25])
def test_a_long_time_column_equals_the_record_by_record_text(fraction: float) -> None:
    # 60 values: past the short-column path. Whole seconds take the vectorised path.
    ts = np.arange(60, dtype=np.float64) * 86_399.0 + 1704205800.0 + fraction
    n = ts.size
    columns = make_output_columns(
        [0] * n, [[1.0] * n], [[1.0] * n], [0.0] * n, [0.0] * n, [False] * n, [1] * n, [True] * n,
        [0.01] * n, [-0.03] * n,
    )  # fmt: skip
    source = {"key": "K", "ts": ts, "topic": "t", "partition": 0, "offset": np.arange(n)}
    times = [json.loads(r)["time"] for r in encode_output_columns(source, columns)]
    assert times == [iso_time(t) for t in ts.tolist()]
    assert times[0] == ("2024-01-02T14:30:00Z" if fraction == 0.0 else "2024-01-02T14:30:00.25Z")


def test_regime_name_defaults_and_given_names() -> None:
    tick = Tick("SPX", 1.0, {"price": 2.0}, "ticks", 0, 1)
    two = make_output(1, {0: 0.2, 1: 0.8}, {0: 0.5, 1: 0.5}, 0.0, 0.0, False, 1, True, 0.01, -0.03)
    three = make_output(1, {0: 0.1, 1: 0.8, 2: 0.1}, {0: 0.5, 1: 0.5, 2: 0.0}, 0.0, 0.0,
                        False, 1, True, None, None)  # fmt: skip
    assert json.loads(encode_output_record(tick, two))["regime_name"] == "turbulent"
    assert json.loads(encode_output_record(tick, three))["regime_name"] == "normal"
    named = encode_output_record(tick, two, ("quiet", 'wild "one"'))
    assert json.loads(named)["regime_name"] == 'wild "one"'
    assert named == encode_output(build_output_record(tick, two, ("quiet", 'wild "one"')))
    columns = make_output_columns(
        [0, 1], [[0.9, 0.2], [0.1, 0.8]], [[0.5, 0.5], [0.5, 0.5]], [0.0, 0.0], [0.0, 0.0],
        [False, False], [1, 2], [True, True], [0.01, 0.01], [-0.03, -0.03],
    )  # fmt: skip
    source = {"key": "K", "ts": np.array([1.0, 2.0]), "topic": "t", "partition": 0,
              "offset": np.array([0, 1])}  # fmt: skip
    got = [json.loads(r)["regime_name"] for r in encode_output_columns(source, columns)]
    assert got == ["calm", "turbulent"]
    got = [json.loads(r)["regime_name"] for r in encode_output_columns(source, columns, ("a", "b"))]
    assert got == ["a", "b"]


@settings(max_examples=200, deadline=None)
@given(
    rows=st.lists(
        st.tuples(
            st.sampled_from(["SPX", "SPX", "SPX", 'é\u2028"K']),
            st.sampled_from(["ticks", "ticks", "other"]),
            st.sampled_from([3, 3, 4]),
            st.floats(allow_nan=True, allow_infinity=True),
            st.integers(0, 2**62),
            st.integers(0, 1),
            _floats,
            _floats,
        ),
        max_size=8,
    ),
    names=st.sampled_from([None, ("calm", "stormy"), ("only",)]),
)
def test_encode_output_run_equals_the_per_record_encoder(
    rows: list[tuple[str, str, int, float, int, int, Any, Any]], names: tuple[str, ...] | None
) -> None:
    """A run's records, written with its key, topic and partition once, are byte for byte the
    per-record encoder's; a tick of another key, topic or partition in the run too."""
    ticks = [Tick(k, ts, {"price": 1.0}, t, p, o) for k, t, p, ts, o, _r, _ll, _d in rows]
    outs = [
        make_output(r, {0: 0.25, 1: 0.75}, {0: p, 1: 0.5}, ll, d, r == 1, o, True, d, None)
        for _k, _t, _p, p, o, r, ll, d in rows
    ]
    assert encode_output_run(ticks, outs, names) == [
        encode_output_record(tick, out, names) for tick, out in zip(ticks, outs, strict=True)
    ]


def _edge_times() -> np.ndarray:
    """Timestamps where writing ``time`` a column at once could part from iso_time."""
    first, past = -62135596800.0, 253402300800.0  # 0001-01-01 and 10000-01-01
    rng = np.random.default_rng(11)
    return np.concatenate(
        [
            # Bit patterns: NaN, infinities, tiny and huge values of either sign.
            rng.integers(0, 2**64 - 1, 3_000, dtype=np.uint64, endpoint=True).view(np.float64),
            rng.uniform(first - 1e6, past + 1e6, 3_000),  # every year, fractional
            np.round(rng.uniform(first, past, 3_000)),  # whole seconds, every year
            np.round(rng.uniform(0.0, 2e9, 3_000), 3),  # millisecond ticks
            [first, first - 1.0, first - 1e-7, past, past - 1.0, past - 1e-7, past - 4e-7],
            [0.0, -0.0, -1e-7, 0.9999996, 0.9999994, 0.5e-6, 1.5e-6, 2.5e-6, -86400.5, 5e-324],
            [951782400.0, 951868799.999, 4107542400.25, -2208988800.5],  # leap days, 1900
        ]
    )


def test_a_time_column_is_iso_time_of_each_value_at_every_edge() -> None:
    values = _edge_times()
    records = encode_output_columns(
        {"key": "K", "ts": values, "topic": "t", "partition": 0, "offset": 0},
        make_output_columns(
            [0] * values.size, [], [], [None] * values.size, [0.0] * values.size,
            [False] * values.size, [1] * values.size, [True] * values.size,
            [None] * values.size, [None] * values.size,
        ),
    )  # fmt: skip
    got = [json.loads(r)["time"] for r in records]
    assert got == [iso_time(t) for t in values.tolist()]
    assert any(g is None for g in got) and any("." in g for g in got if g)


@pytest.mark.parametrize("n", [3, 60])
def test_source_columns_as_lists_equal_the_generic_encoder(n: int) -> None:
    """The service passes each source field as a list: all-equal topics and partitions, and
    integers of other types than int, are written as the generic encoder writes them."""
    rng = np.random.default_rng(n)
    offsets: list[Any] = rng.integers(0, 2**62, n).tolist()
    offsets[0] = True  # int(True) is 1, not "true"
    offsets[-1] = float(offsets[-1] // 1024)
    ts = (np.round(rng.uniform(1.7e9, 1.8e9, n), 3)).tolist()
    columns = make_output_columns(
        rng.integers(0, 2, n), [rng.random(n), rng.random(n)], [rng.random(n), rng.random(n)],
        rng.normal(size=n), rng.random(n), rng.random(n) < 0.1, np.arange(n) + 300,
        np.ones(n, dtype=bool), rng.random(n), -rng.random(n),
    )  # fmt: skip
    outs = output_rows(columns)
    for topic, partition in [("ticks", 2), ("ticks", np.int64(2)), ("a%b", 1), ("é", -1)]:
        for mixed in (False, True):
            topics = [topic] * n
            partitions = [partition] * n
            if mixed:
                topics[-1], partitions[-1] = "other", 7
            keys = [f"K{i % 4}" for i in range(n)]
            source = {"key": keys, "ts": ts, "topic": topics, "partition": partitions,
                      "offset": offsets}  # fmt: skip
            want = [
                encode_output(build_output_record(Tick(k, t, {}, tp, p, o), out, None))
                for k, t, tp, p, o, out in zip(keys, ts, topics, partitions, offsets, outs,
                                               strict=True)
            ]  # fmt: skip
            assert encode_output_columns(source, columns) == want


@pytest.mark.parametrize(("k", "k_raw"), [(2, 2), (2, 3), (3, 2), (1, 2)])
def test_two_regime_probabilities_and_other_counts_equal_the_generic_encoder(
    k: int, k_raw: int
) -> None:
    """Two regimes' probabilities are written from one column per regime; any other count
    (in either mapping) as a mapping's text: both as the generic encoder writes them."""
    rng = np.random.default_rng(k * 10 + k_raw)
    n = 60
    probabilities = [rng.random(n) for _ in range(k)]
    probabilities[0][:3] = [1.5e-7, 0.0, np.nan]  # repr's forms, and null
    columns = make_output_columns(
        rng.integers(0, k, n), probabilities, [rng.random(n) for _ in range(k_raw)],
        rng.normal(size=n), rng.random(n), np.zeros(n, dtype=bool), np.arange(n),
        np.ones(n, dtype=bool), rng.random(n), -rng.random(n),
    )  # fmt: skip
    ts = np.arange(n, dtype=np.float64) + 1.7e9
    source = {"key": "K", "ts": ts, "topic": "t", "partition": 0, "offset": np.arange(n)}
    want = [
        encode_output(build_output_record(Tick("K", t, {}, "t", 0, o), out, None))
        for t, o, out in zip(ts.tolist(), range(n), output_rows(columns), strict=True)
    ]
    assert encode_output_columns(source, columns) == want
