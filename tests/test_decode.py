"""Tick decoding and validation, dead letters and the key codec."""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamgmm.service.dead_letters import dead_letter_headers, refused_copy
from streamgmm.settings.layers import load_settings
from streamgmm.settings.service import Settings
from streamgmm.settings.table import spec_named
from streamgmm.ticks import decode as decode_mod
from streamgmm.ticks.decode import AUTO_TS_UNITS, TickDecoder, ts_unit_of
from streamgmm.ticks.tick import REASONS, DeadLetter, Tick, dead_letter_for, decode_key, encode_key

# 2024-01-02T03:04:05Z: 19723 days from 1970-01-01 to 2024-01-01, one more day, 03:04:05.
JAN2_030405 = 19724 * 86400 + 3 * 3600 + 4 * 60 + 5


def market(**env: str) -> Settings:
    return load_settings(None, {f"STREAMGMM_{k}": v for k, v in env.items()}, {})


def decode(value: bytes | None, key: bytes | None = b"SPX", **env: str) -> Tick | DeadLetter:
    return TickDecoder(market(**env)).decode(key, value, "ticks", 2, 41)


def reason(value: bytes | None, key: bytes | None = b"SPX", **env: str) -> str:
    result = decode(value, key, **env)
    assert isinstance(result, DeadLetter), result
    return result.reason


def test_market_tick_with_key_from_record_key() -> None:
    tick = decode(b'{"symbol":"SPX","ts":1700000000,"price":4500.25,"volume":1200}')
    assert tick == Tick("SPX", 1700000000.0, {"price": 4500.25, "volume": 1200.0}, "ticks", 2, 41)


def test_volume_is_optional_and_null_counts_as_absent() -> None:
    for value in (b'{"ts":1,"price":2}', b'{"ts":1,"price":2,"volume":null}'):
        tick = decode(value)
        assert isinstance(tick, Tick)
        assert tick.fields == {"price": 2.0}


@pytest.mark.parametrize(
    ("ts", "expected"),
    [
        ('"2024-01-02T03:04:05Z"', JAN2_030405),
        ('"2024-01-02T03:04:05"', JAN2_030405),  # no offset: UTC
        ('"2024-01-02T03:04:05+01:00"', JAN2_030405 - 3600),
        ('"2024-01-02 03:04:05.5+00:00"', JAN2_030405 + 0.5),
        ('"2024-01-02"', JAN2_030405 - (3 * 3600 + 4 * 60 + 5)),  # a date: midnight UTC
        ('"20240102T030405Z"', JAN2_030405),  # ISO-8601's basic format
        ("1704164645.25", 1704164645.25),
    ],
)
def test_ts_is_epoch_seconds_or_iso_8601(ts: str, expected: float) -> None:
    tick = decode(f'{{"ts":{ts},"price":1}}'.encode())
    assert isinstance(tick, Tick)
    assert tick.ts == expected


@pytest.mark.parametrize(
    ("ts", "unit", "seconds"),
    [
        # The same instant in each unit, as a JSON integer.
        ("1704164645", "s", 1704164645.0),
        ("1704164645250", "ms", 1704164645.25),
        ("1704164645250000", "us", 1704164645.25),
        ("1704164645250000000", "ns", 1704164645.25),
        # Either side of each bound of the rule.
        ("99999999999", "s", 99999999999.0),  # 5138 in seconds
        ("100000000000", "ms", 1e8),  # 1e11: milliseconds (1973)
        ("99999999999999.0", "ms", 99999999999.999),
        ("1e14", "us", 1e8),
        ("1e17", "ns", 1e8),
        ("-1e12", "ms", -1e9),  # before 1970, in milliseconds
        ("1e20", "s", 1e20),  # beyond every unit: seconds, far in the future
        ("0", "s", 0.0),  # a clock of its own, in seconds
    ],
)
def test_a_numeric_ts_unit_is_read_from_its_size(ts: str, unit: str, seconds: float) -> None:
    tick = decode(f'{{"ts":{ts},"price":1}}'.encode())
    assert isinstance(tick, Tick)
    assert tick.ts == pytest.approx(seconds, rel=1e-15, abs=0)
    assert ts_unit_of(float(ts)) == unit


@pytest.mark.parametrize(
    ("unit", "divisor"), [("s", 1.0), ("ms", 1e3), ("us", 1e6), ("ns", 1e9), ("MS", 1e3)]
)
def test_a_set_ts_unit_applies_whatever_the_size(unit: str, divisor: float) -> None:
    for ts in (5.0, 1704164645250.0, 1e19):
        tick = decode(f'{{"ts":{ts!r},"price":1}}'.encode(), INPUT_TS_UNIT=unit)
        assert isinstance(tick, Tick)
        assert tick.ts == ts / divisor
    # ISO text is read as it is.
    tick = decode(b'{"ts":"2024-01-02T03:04:05Z","price":1}', INPUT_TS_UNIT=unit)
    assert isinstance(tick, Tick) and tick.ts == JAN2_030405


def test_the_ts_unit_setting_states_the_decoders_rule() -> None:
    doc = spec_named("input.ts_unit").doc  # type: ignore[union-attr]
    for bound, unit in AUTO_TS_UNITS:
        assert f"below {bound:.0e}".replace("e+", "e") in doc
        assert f'"{unit}"' in doc
    assert "anything larger is taken as seconds" in doc


@settings(max_examples=300, deadline=None)
@given(
    ts=st.one_of(
        st.floats(allow_nan=True, allow_infinity=True),
        st.floats(-1e21, 1e21),
        st.sampled_from([1e11, -1e11, 1e14, 1e17, 1e20, 99999999999.99998, 0.0, -0.0]),
    ),
    unit=st.sampled_from(["auto", "s", "ms", "us", "ns"]),
)
def test_a_column_of_ts_is_read_as_each_ts_alone(ts: float, unit: str) -> None:
    """replay's column path asks the decoder for the rule: the same seconds, bit for bit."""
    decoder = TickDecoder(market(INPUT_TS_UNIT=unit))
    column = decoder.seconds(np.array([ts, 1.0, 1e12]))
    tick = decoder.decode_parsed(b"K", {"ts": ts, "price": 1.0}, "t", 0, 0)
    if isinstance(tick, DeadLetter):
        assert not np.isfinite(column[0])
    else:
        assert column[0].tobytes() == np.float64(tick.ts).tobytes()


def test_key_from_a_configured_field_ignores_the_record_key() -> None:
    value = b'{"symbol":"AAPL","ts":1,"price":2}'
    tick = decode(value, key=b"other", INPUT_KEY_FIELD="symbol")
    assert isinstance(tick, Tick)
    assert tick.key == "AAPL"
    tick = decode(value, key=None, INPUT_KEY_FIELD="symbol")
    assert isinstance(tick, Tick)
    assert tick.key == "AAPL"


def test_event_ticks_read_the_configured_fields() -> None:
    env = {"INPUT_TICK_KIND": "event", "INPUT_EVENT_FIELDS": "temp,load"}
    tick = decode(b'{"ts":5,"temp":-3.5,"load":0,"price":-1,"other":"x"}', b"m1", **env)
    assert isinstance(tick, Tick)
    assert tick.fields == {"temp": -3.5, "load": 0.0}  # price is not an event field here
    assert reason(b'{"ts":5,"temp":1}', b"m1", **env) == "missing_field"
    assert reason(b'{"ts":5,"temp":1,"load":"2"}', b"m1", **env) == "wrong_type"


@pytest.mark.parametrize(
    ("value", "key", "expected"),
    [
        (b"{not json", b"A", "invalid_json"),
        (b"", b"A", "invalid_json"),
        (None, b"A", "invalid_json"),
        (b"\xff\xfe{}", b"A", "invalid_json"),
        (b'{"ts":1,"price":2', b"A", "invalid_json"),
        (b"[1,2]", b"A", "not_an_object"),
        (b"42", b"A", "not_an_object"),
        (b'"a string"', b"A", "not_an_object"),
        (b"null", b"A", "not_an_object"),
        (b'{"price":2}', b"A", "missing_field"),
        (b'{"ts":1}', b"A", "missing_field"),
        (b'{"ts":1,"price":"101.5"}', b"A", "wrong_type"),
        (b'{"ts":1,"price":true}', b"A", "wrong_type"),
        (b'{"ts":1,"price":null}', b"A", "wrong_type"),
        (b'{"ts":1,"price":[1]}', b"A", "wrong_type"),
        (b'{"ts":true,"price":1}', b"A", "wrong_type"),
        (b'{"ts":"yesterday","price":1}', b"A", "wrong_type"),
        (b'{"ts":1,"price":1,"volume":"5"}', b"A", "wrong_type"),
        (b'{"ts":1,"price":NaN}', b"A", "non_finite"),
        (b'{"ts":1,"price":Infinity}', b"A", "non_finite"),
        (b'{"ts":-Infinity,"price":1}', b"A", "non_finite"),
        (b'{"ts":1,"price":1e999}', b"A", "non_finite"),
        (b'{"ts":1,"price":1,"volume":NaN}', b"A", "non_finite"),
        (b'{"ts":1,"price":' + b"9" * 400 + b"}", b"A", "non_finite"),
        # Past Python's 4,300-digit limit int() raises ValueError (once a crash loop).
        (b'{"ts":1,"price":' + b"9" * 4301 + b"}", b"A", "invalid_json"),
        (b'{"ts":1,"price":1,"note":-' + b"1" * 5000 + b"}", b"A", "invalid_json"),
        (b'{"ts":1,"price":1,"note":[' + b"7" * 4400 + b"]}", b"A", "invalid_json"),
        (b'{"ts":1,"price":1,"note":NaN}', b"A", "non_finite"),
        (b'{"ts":1,"price":0}', b"A", "non_positive_price"),
        (b'{"ts":1,"price":-3.5}', b"A", "non_positive_price"),
        (b'{"ts":1,"price":1,"volume":-1}', b"A", "negative_volume"),
        (b'{"ts":1,"price":1}', None, "empty_key"),
        (b'{"ts":1,"price":1}', b"", "empty_key"),
        (b'{"ts":1,"price":1}', b"  ", "empty_key"),
        (b'{"ts":1,"price":1}', b"\xff", "wrong_type"),
        (b'{"ts":1,"price":1}', b"K" * 1025, "oversized_key"),
        # The key is checked before the value is even looked at.
        (b"[" * 10, b"K" * 5000, "oversized_key"),
    ],
)
def test_rejections_have_stable_reasons(
    value: bytes | None, key: bytes | None, expected: str
) -> None:
    result = decode(value, key)
    assert isinstance(result, DeadLetter)
    assert result.reason == expected
    assert result.detail  # says what was wrong
    # The original bytes and the source travel with the dead letter.
    assert (result.key, result.value) == (key, value)
    assert (result.topic, result.partition, result.offset) == ("ticks", 2, 41)


def test_empty_key_field_value_is_empty_key() -> None:
    assert reason(b'{"symbol":"","ts":1,"price":1}', INPUT_KEY_FIELD="symbol") == "empty_key"
    assert reason(b'{"symbol":7,"ts":1,"price":1}', INPUT_KEY_FIELD="symbol") == "wrong_type"
    assert reason(b'{"ts":1,"price":1}', INPUT_KEY_FIELD="symbol") == "missing_field"


def test_key_size_limit_is_inclusive_counts_utf8_bytes_and_covers_key_fields() -> None:
    value = b'{"ts":1,"price":1}'
    assert isinstance(decode(value, b"K" * 1024), Tick)  # the default limit, 1024 bytes
    assert isinstance(decode(value, b"K" * 10, INPUT_MAX_KEY_BYTES="10"), Tick)
    assert reason(value, b"K" * 11, INPUT_MAX_KEY_BYTES="10") == "oversized_key"
    # With key_field, the field's UTF-8 bytes count (4 characters, 8 bytes)...
    field = '{"symbol":"ÄÖÜß","ts":1,"price":1}'.encode()
    assert isinstance(decode(field, None, INPUT_KEY_FIELD="symbol", INPUT_MAX_KEY_BYTES="8"), Tick)
    dl = decode(field, None, INPUT_KEY_FIELD="symbol", INPUT_MAX_KEY_BYTES="7")
    assert isinstance(dl, DeadLetter)
    assert dl.reason == "oversized_key"
    assert "8 bytes" in dl.detail
    # ...and so does the ignored record key, which a dead letter would carry.
    assert reason(field, b"x" * 9, INPUT_KEY_FIELD="symbol", INPUT_MAX_KEY_BYTES="8") == (
        "oversized_key"
    )


def test_key_field_with_a_lone_surrogate_is_rejected() -> None:
    # JSON can escape half a UTF-16 pair; such a key could never be written out as UTF-8.
    value = b'{"symbol":"A\\ud800","ts":1,"price":1}'
    assert reason(value, None, INPUT_KEY_FIELD="symbol") == "wrong_type"


def test_size_is_checked_before_parsing() -> None:
    limit = 100
    body = b'{"ts":1,"price":1,"pad":"' + b"x" * 200 + b'"}'
    fits = body[: limit - 2] + b'"}'
    assert len(fits) == limit
    assert isinstance(decode(fits, INPUT_MAX_RECORD_BYTES=str(limit)), Tick)
    assert reason(fits[:-1] + b' "}', INPUT_MAX_RECORD_BYTES=str(limit)) == "oversized"
    # Garbage and depth bombs over the limit are never parsed: oversized, not invalid_json.
    assert reason(b"\xff" * 101, INPUT_MAX_RECORD_BYTES=str(limit)) == "oversized"
    assert reason(b"[" * 101, INPUT_MAX_RECORD_BYTES=str(limit)) == "oversized"


@pytest.mark.parametrize(
    "bomb", [b"[" * 200_000, b'{"a":' * 100_000, b"[" * 100_000 + b"]" * 100_000]
)
def test_nesting_bombs_are_invalid_json_not_a_crash(bomb: bytes) -> None:
    assert reason(bomb, INPUT_MAX_RECORD_BYTES=str(10 * 1024 * 1024)) == "invalid_json"


@settings(max_examples=300, deadline=None)
@given(
    value=st.one_of(st.none(), st.binary(max_size=200)),
    key=st.one_of(st.none(), st.binary(max_size=8)),
)
def test_arbitrary_bytes_never_raise(value: bytes | None, key: bytes | None) -> None:
    result = TickDecoder(market()).decode(key, value, "t", 0, 0)
    assert isinstance(result, Tick | DeadLetter)
    if isinstance(result, DeadLetter):
        assert result.reason in REASONS


_json = st.recursive(
    st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)


@settings(max_examples=300, deadline=None)
@given(ts=_json, price=_json, volume=_json)
def test_arbitrary_json_fields_give_a_tick_or_a_known_reason(
    ts: object, price: object, volume: object
) -> None:
    value = json.dumps({"ts": ts, "price": price, "volume": volume}).encode()
    result = TickDecoder(market()).decode(b"K", value, "t", 0, 0)
    if isinstance(result, Tick):
        assert result.fields["price"] > 0
        assert all(v == v and abs(v) != float("inf") for v in result.fields.values())
    else:
        assert result.reason in REASONS


def test_dead_letter_headers_name_reason_and_source() -> None:
    dl = decode(b'{"ts":1,"price":0}')
    assert isinstance(dl, DeadLetter)
    headers = dict(dead_letter_headers(dl))
    assert headers["streamgmm.reason"] == b"non_positive_price"
    assert headers["streamgmm.source.topic"] == b"ticks"
    assert headers["streamgmm.source.partition"] == b"2"
    assert headers["streamgmm.source.offset"] == b"41"
    assert b"price" in headers["streamgmm.detail"]
    assert all(isinstance(v, bytes) for v in headers.values())


@dataclass
class RawRecord:  # the attributes of kafka-python's ConsumerRecord that the codec reads
    key: bytes | None
    value: bytes | None
    topic: str
    partition: int
    offset: int


def test_dead_letter_for_runner_rejections() -> None:
    tick = Tick("SPX", 5.0, {"price": 1.0}, "ticks", 1, 9)
    dl = dead_letter_for(tick, "out_of_order", "ts 5 < 6", value=b'{"ts":5,"price":1}')
    assert dl == DeadLetter(
        b"SPX", b'{"ts":5,"price":1}', "out_of_order", "ts 5 < 6", "ticks", 1, 9
    )
    raw = RawRecord(b"K", b"v", "in", 0, 3)
    assert dead_letter_for(raw, "out_of_order", "d") == DeadLetter(
        b"K", b"v", "out_of_order", "d", "in", 0, 3
    )
    with pytest.raises(ValueError, match="reason must be one of"):
        dead_letter_for(raw, "because", "d")


def test_key_codec() -> None:
    assert encode_key("Zürich") == "Zürich".encode()
    assert decode_key("Zürich".encode()) == "Zürich"


def test_refused_dead_letter_keeps_its_headers_and_is_cut_to_fit() -> None:
    dl = DeadLetter(b"K" * 5000, b"v" * 2_000_000, "oversized", "big", "ticks", 2, 41)
    key, value, headers = refused_copy(
        dl.key, dl.value, dead_letter_headers(dl), "MessageSizeTooLargeError: too big"
    )
    assert key == b"K" * 1024 and value == b"v" * 65536
    named = dict(headers)
    assert named["streamgmm.reason"] == b"oversized"
    assert (named["streamgmm.source.topic"], named["streamgmm.source.offset"]) == (b"ticks", b"41")
    assert named["streamgmm.truncated"] == b"true"
    assert named["streamgmm.original.key_bytes"] == b"5000"
    assert named["streamgmm.original.value_bytes"] == b"2000000"
    assert named["streamgmm.refused"].startswith(b"MessageSizeTooLargeError")
    # A copy refused again is copied afresh, not with its copy headers twice.
    again = refused_copy(key, value, headers, "again")[2]
    assert len(again) == len(headers)
    assert dict(again)["streamgmm.original.value_bytes"] == b"65536"


def test_refused_output_record_becomes_an_unproducible_dead_letter() -> None:
    output = json.dumps({"key": "K", "topic": "ticks", "partition": 1, "offset": 7}).encode()
    key, value, headers = refused_copy(b"K", output, None, "InvalidRecordError")
    named = dict(headers)
    assert (key, value) == (b"K", output)
    assert named["streamgmm.reason"] == b"unproducible"
    assert b"InvalidRecordError" in named["streamgmm.detail"]
    assert named["streamgmm.source.topic"] == b"ticks"
    assert (named["streamgmm.source.partition"], named["streamgmm.source.offset"]) == (b"1", b"7")
    assert named["streamgmm.truncated"] == b"false"
    # Not JSON, or cut: the source is unknown, the copy is still made.
    named = dict(refused_copy(None, b"[" * 10, None, "x")[2])
    assert named["streamgmm.source.partition"] == b"-1"
    assert named["streamgmm.original.key_bytes"] == b"-1"


FAST_PATH_VALUES = [
    b'{"symbol":"A","ts":1.7e9,"price":101.5,"volume":3}',
    b'{"symbol":"A","ts":1.7e9,"price":123456789012345678901234567890}',
    b'{"symbol":"A","ts":-9223372036854775809,"price":1.0}',
    b'{"symbol":123456789012345678901234567890,"ts":1.7e9,"price":1.0}',
    b'{"symbol":"A","ts":1.7e9,"price":[123456789012345678901234567890]}',
    b'{"symbol":"A","ts":1.7e9,"price":{"x":18446744073709551616}}',
    b'{"symbol":"\\ud800","ts":1.7e9,"price":1.0}',
    b'{"symbol":"A","ts":1.7e9,"price":1e400}',
    b'{"symbol":"A","ts":1.7e9,"price":NaN}',
    b'{"symbol":"A","ts":1.7e9,"price":1.0,"price":-1.0}',
    b'{"symbol":"A\xff","ts":1.7e9,"price":1.0}',
    b'\xef\xbb\xbf{"symbol":"A","ts":1.7e9,"price":1.0}',
    b'{"symbol":"A","ts":"2024-01-02T03:04:05","price":01}',
    b'[{"symbol":"A"}]',
]


@pytest.mark.parametrize("value", FAST_PATH_VALUES)
def test_orjson_fast_path_decodes_as_python_json(
    value: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    """orjson parses a record when it gives what Python's json gives: the tick or the dead
    letter (reason and detail) is the same with the fast path as without it."""
    env = {"INPUT_KEY_FIELD": "symbol"}
    fast = TickDecoder(market(**env)).decode(b"k", value, "t", 0, 7)
    monkeypatch.setattr(decode_mod, "_fast_parse", lambda _value: None)
    slow = TickDecoder(market(**env)).decode(b"k", value, "t", 0, 7)
    assert fast == slow
    assert repr(fast) == repr(slow)


BY_KEY_VALUES = [
    *FAST_PATH_VALUES,
    b'{"ts":1.7e9,"price":101.5,"volume":3.0}',
    b'{"ts":1.7e9,"price":101.5,"volume":null}',
    b'{"ts":1.7e9,"price":101.5}',
    b'{"ts":1.7e12,"price":101.5}',
    b'{"ts":1.7e18,"price":101.5}',
    b'{"ts":1.7e9,"price":0.0}',
    b'{"ts":1.7e9,"price":-2.5}',
    b'{"ts":1.7e9,"price":101.5,"volume":-1.0}',
    b'{"ts":1.7e9,"price":101.5,"volume":-0.0}',
    b'{"ts":1.7e9,"price":true}',
    b'{"ts":1.7e9,"price":null}',
    b'{"ts":1.7e9}',
    b'{"price":1.0}',
    b'{"ts":1700000000,"price":101}',
    b'{"ts":"2024-01-02T03:04:05","price":1.0}',
    b'{"ts":1.7e9,"price":1.0,"extra":{"deep":[1,2]}}',
    # Python's json refuses nesting this deep (RecursionError); orjson reads it.
    b'{"ts":1.7e9,"price":1.0,"deep":' + b"[" * 1010 + b"]" * 1010 + b"}",
    b'{"ts":1.7e9,"price":1.0,"deep":' + b'{"a":' * 1010 + b"1" + b"}" * 1010 + b"}",
    b'{"ts":1.7e9,"price":101.5,"note":"{braces} [and] brackets"}',
    # Integers past 64 bits: floats to orjson, ints to Python's json.
    b'{"ts":1.7e9,"price":101.5,"big":123456789012345678901234567890}',
    b'{"ts":1.7e9,"price":123456789012345678901234567890}',
    b'{"ts":123456789012345678901234567890,"price":1.0}',
    b'{"ts":1.7e9,"price":1e19,"volume":9.3e18}',
    b"not json",
    b"",
    b"x" * 300,
    None,
]


@pytest.mark.parametrize(
    "env",
    [
        {},
        {"INPUT_KEY_FIELD": "symbol"},
        {"INPUT_TS_UNIT": "ms"},
        {"INPUT_MAX_RECORD_BYTES": "256", "INPUT_MAX_KEY_BYTES": "4"},
        {"INPUT_TICK_KIND": "event", "INPUT_EVENT_FIELDS": "price,volume"},
    ],
)
def test_decode_by_key_is_decode_then_group_by_key(env: dict[str, str]) -> None:
    """decode_by_key (a fast read of the usual record) gives exactly what decode and
    group_by_key give, for usual, unusual and hostile records alike."""
    keys = [b"A", b"B", b"", None, b"\xff", b"  ", b"LONGKEY", "é".encode()]
    records = [
        (keys[i % len(keys)], value, i)
        for i, value in enumerate(v for _ in range(3) for v in BY_KEY_VALUES)
    ]
    decoder = TickDecoder(market(**env))
    by_key, dead = decoder.decode_by_key(records, "t", 2)
    want_by_key, want_dead = decode_mod.group_by_key(
        (decoder.decode(key, value, "t", 2, offset), value) for key, value, offset in records
    )
    assert repr(by_key) == repr(want_by_key)
    assert repr(dead) == repr(want_dead)
    assert sum(map(len, by_key.values())) >= 5 and len(dead) > 10
