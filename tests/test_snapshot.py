"""The changelog's value format: versioned JSON snapshots, and nothing else."""

from __future__ import annotations

import pickle

import pytest

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
