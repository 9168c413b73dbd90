"""The changelog's value format: versioned JSON snapshots, and nothing else."""

from __future__ import annotations

import json
import pickle

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamgmm.service.snapshot import SnapshotError, decode_snapshot, encode_snapshot


def test_snapshot_round_trip() -> None:
    state = {"version": 1, "weights": [0.5, 0.5], "nested": {"a": [1, 2, {"b": None}]}}
    snap = decode_snapshot(encode_snapshot("SPX", state, 3, 1234))
    assert (snap.key, snap.state, snap.partition, snap.next_offset) == ("SPX", state, 3, 1234)


_EXECUTED: list[str] = []


def _side_effect() -> str:
    _EXECUTED.append("pickle payload was executed")
    return "pwned"


class _Evil:
    def __reduce__(self) -> tuple[object, tuple[()]]:
        return (_side_effect, ())


@pytest.mark.parametrize("protocol", [0, pickle.HIGHEST_PROTOCOL])
def test_pickle_payloads_are_rejected_without_executing_them(protocol: int) -> None:
    payload = pickle.dumps({"key": "SPX", "state": _Evil()}, protocol=protocol)
    with pytest.raises(SnapshotError, match="not a streamgmm snapshot"):
        decode_snapshot(payload)
    assert _EXECUTED == []
    if protocol >= 2:
        with pytest.raises(SnapshotError, match="pickle"):
            decode_snapshot(payload)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (None, "has no value"),
        (b"\xff\x00", "not UTF-8"),
        (b"{broken", "invalid JSON"),
        (b"[1]", "format"),
        (b'{"format":"other","version":1}', "format"),
        (b'{"format":"streamgmm.snapshot","version":2,"key":"A","state":{}}', "version 2"),
        (
            b'{"format":"streamgmm.snapshot","version":1,"key":"A","state":{},'
            b'"partition":0,"next_offset":NaN}',
            "invalid JSON",
        ),
        (
            b'{"format":"streamgmm.snapshot","version":1,"key":"A","state":[],'
            b'"partition":0,"next_offset":1}',
            "state must be an object",
        ),
        (
            b'{"format":"streamgmm.snapshot","version":1,"key":"A","state":{},'
            b'"partition":-1,"next_offset":1}',
            "partition must be an integer",
        ),
        (
            b'{"format":"streamgmm.snapshot","version":1,"key":"","state":{},'
            b'"partition":0,"next_offset":1}',
            "key must be a non-empty string",
        ),
        (b"[" * 100_000, "invalid JSON"),
        # An integer literal beyond Python's 4,300-digit limit is a ValueError, not a crash.
        (
            b'{"format":"streamgmm.snapshot","version":1,"key":"A","state":{},'
            b'"partition":0,"next_offset":' + b"9" * 4301 + b"}",
            "invalid JSON",
        ),
        (
            b'{"format":"streamgmm.snapshot","version":1,"key":"A","state":{},'
            b'"partition":0,"next_offset":' + b"1" + b"0" * 19 + b"}",
            "next_offset must be an integer from 0 to",
        ),
        (
            b'{"format":"streamgmm.snapshot","version":1,"key":"A","state":{},'
            b'"partition":2147483648,"next_offset":0}',
            "partition must be an integer from 0 to",
        ),
        (
            b'{"format":"streamgmm.snapshot","version":1,"key":"A","state":{},'
            b'"partition":0.0,"next_offset":0}',
            "partition must be an integer",
        ),
        (
            b'{"format":"streamgmm.snapshot","version":1,"key":"A","state":{},'
            b'"partition":0,"next_offset":true}',
            "next_offset must be an integer",
        ),
        (
            b'{"format":"streamgmm.snapshot","version":1,"key":"A","state":{},'
            b'"partition":0,"next_offset":0,"extra":1}',
            "unknown field",
        ),
        (
            b'{"format":"streamgmm.snapshot","version":1,"key":7,"state":{},'
            b'"partition":0,"next_offset":0}',
            "key must be a non-empty string",
        ),
    ],
)
def test_decode_snapshot_refuses_anything_not_ours(value: bytes | None, message: str) -> None:
    with pytest.raises(SnapshotError, match=message):
        decode_snapshot(value)


def test_encode_snapshot_refuses_state_that_is_not_json_safe() -> None:
    with pytest.raises(SnapshotError, match="not JSON-safe"):
        encode_snapshot("SPX", {"x": float("nan")}, 0, 1)
    with pytest.raises(SnapshotError, match="not JSON-safe"):
        encode_snapshot("SPX", {"x": {1, 2}}, 0, 1)


def _json_writes(key: str, state: object, partition: int, next_offset: int) -> bytes:
    document = {
        "format": "streamgmm.snapshot",
        "version": 1,
        "key": key,
        "partition": partition,
        "next_offset": next_offset,
        "state": state,
    }
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


_FLOATS = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),
    # Around the magnitudes where orjson's text and json's differ (below 1e-4).
    st.builds(lambda m, e: m * 10.0**e, st.floats(-9.99, 9.99), st.integers(-12, -3)),
    st.sampled_from([1e-5, -1e-5, 2e-5, 1e-4, 9.999e-5, 1e-9, 1e-10, 100.00001, 10.0000001]),
)
_LEAVES = st.one_of(
    _FLOATS,
    st.integers(-(2**70), 2**70),
    st.booleans(),
    st.none(),
    st.text(max_size=12),
    st.sampled_from(["e-5]", ",0.00001,", "a1e-7", "x\\y", 'q"1']),
)
_STATES = st.recursive(
    _LEAVES,
    lambda inner: st.one_of(
        st.lists(inner, max_size=6), st.dictionaries(st.text(max_size=8), inner, max_size=6)
    ),
    max_leaves=40,
).map(lambda value: {"s": value})


@settings(max_examples=600, deadline=None)
@given(key=st.text(min_size=1, max_size=10), state=_STATES)
def test_a_snapshot_has_the_bytes_json_gives(key: str, state: dict) -> None:
    """encode_snapshot writes with orjson when that gives json's bytes exactly, and with json
    otherwise: the bytes are json's for any state, small floats, big ints and odd strings
    included."""
    try:
        want = _json_writes(key, state, 3, 1234)
    except (UnicodeEncodeError, ValueError):
        with pytest.raises((UnicodeEncodeError, SnapshotError)):
            encode_snapshot(key, state, 3, 1234)
        return
    assert encode_snapshot(key, state, 3, 1234) == want


def test_a_detector_snapshot_has_the_bytes_json_gives() -> None:
    """A warm market detector's state, with floats below 1e-4 beside it, is written by orjson,
    with the bytes json gives."""
    import numpy as np

    from streamgmm.regime import RegimeDetector
    from streamgmm.service import snapshot

    rng = np.random.default_rng(5)
    det = RegimeDetector()
    prices = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.002, 800)))
    det.learn_predict_many([{"ts": 1e9 + i, "price": float(p)} for i, p in enumerate(prices)])
    state = {"pipeline": det.to_state(), "last_ts": 1e9, "small": [1.5e-7, -2e-5, 1e-5, 3e-9]}
    text = snapshot._orjson_state(state)
    assert text is not None  # written by orjson
    assert b"[1.5e-07,-2e-05,1e-05,3e-09]" in text
    assert encode_snapshot("S1", state, 0, 7) == _json_writes("S1", state, 0, 7)
