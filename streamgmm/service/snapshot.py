"""Snapshot: the changelog's value format, a key's state as versioned JSON and nothing else.

Owns how one key's state travels to the changelog and back (the checkpoint, in
:mod:`.checkpoint`, decides when). A value is a JSON object
``{"format": "streamgmm.snapshot", "version": 1, "key", "partition", "next_offset", "state"}``;
:func:`decode_snapshot` refuses anything else, a pickle included, without executing it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from streamgmm.ticks.tick import short_repr

__all__ = [
    "SNAPSHOT_FORMAT",
    "SNAPSHOT_VERSION",
    "Snapshot",
    "SnapshotError",
    "decode_snapshot",
    "encode_snapshot",
]

SNAPSHOT_FORMAT = "streamgmm.snapshot"
SNAPSHOT_VERSION = 1


@dataclass(frozen=True, slots=True)
class Snapshot:
    """One changelog value: a key's JSON-safe state and its partition's next offset."""

    key: str
    state: dict[str, Any]
    partition: int
    next_offset: int


class SnapshotError(ValueError):
    """A changelog value is not a streamgmm snapshot this version can read."""


def _reject_constant(name: str) -> float:
    # Python's json accepts the non-standard NaN / Infinity / -Infinity literals by default.
    raise ValueError(f"non-finite literal {name} in JSON")


_JSON_DECODER = json.JSONDecoder(parse_constant=_reject_constant)
_FIELDS = ("format", "version", "key", "partition", "next_offset", "state")
#: Kafka partitions are int32 and offsets int64.
_BOUNDS = {"partition": 2**31 - 1, "next_offset": 2**63 - 1}


def encode_snapshot(key: str, state: dict[str, Any], partition: int, next_offset: int) -> bytes:
    """Serialise a key's state as a versioned JSON changelog value.

    Raises
    ------
    SnapshotError
        If ``state`` is not JSON-safe (for example it holds NaN or a NumPy array).
    """
    document = {
        "format": SNAPSHOT_FORMAT,
        "version": SNAPSHOT_VERSION,
        "key": key,
        "partition": int(partition),
        "next_offset": int(next_offset),
        "state": state,
    }
    try:
        text = json.dumps(document, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise SnapshotError(f"state of key {key!r} is not JSON-safe: {exc}") from None
    return text.encode("utf-8")


def decode_snapshot(value: bytes | None) -> Snapshot:
    """Parse a changelog value written by :func:`encode_snapshot`.

    Only JSON is ever parsed; nothing in the payload is executed or imported.

    Checks the envelope only (fields, their types and bounds); the state inside is checked
    by the detector's ``from_state`` when the key is restored.

    Raises
    ------
    SnapshotError
        If the value is missing, not UTF-8 JSON, not a streamgmm snapshot, of another
        version, or malformed (a field missing, unknown, of the wrong type or out of bounds).
    """
    if value is None:
        raise SnapshotError("not a streamgmm snapshot: the changelog record has no value")
    data = bytes(value)
    if data[:1] == b"\x80":
        raise SnapshotError(
            "not a streamgmm snapshot: the value looks like a Python pickle (first byte 0x80); "
            "pickles are never loaded, snapshots are versioned JSON"
        )
    try:
        document = _JSON_DECODER.decode(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise SnapshotError(
            f"not a streamgmm snapshot: the value is not UTF-8 JSON (starts {data[:16]!r})"
        ) from None
    except (ValueError, RecursionError) as exc:  # JSONDecodeError is a ValueError
        raise SnapshotError(f"not a streamgmm snapshot: invalid JSON ({exc})") from None
    if not isinstance(document, dict) or document.get("format") != SNAPSHOT_FORMAT:
        raise SnapshotError(
            f"not a streamgmm snapshot: expected a JSON object with format {SNAPSHOT_FORMAT!r}"
        )
    version = document.get("version")
    if version != SNAPSHOT_VERSION or isinstance(version, bool):
        raise SnapshotError(
            f"unsupported snapshot version {short_repr(version)}; this streamgmm reads version "
            f"{SNAPSHOT_VERSION}"
        )
    unknown = [name for name in document if name not in _FIELDS]
    if unknown:
        shown = ", ".join(short_repr(name) for name in unknown[:5])
        raise SnapshotError(f"malformed snapshot: unknown field(s) {shown}")
    key, state = document.get("key"), document.get("state")
    partition, next_offset = document.get("partition"), document.get("next_offset")
    if not isinstance(key, str) or not key:
        raise SnapshotError(
            f"malformed snapshot: key must be a non-empty string, got {short_repr(key)}"
        )
    if not isinstance(state, dict):
        raise SnapshotError(
            f"malformed snapshot of key {short_repr(key)}: state must be an object, got "
            f"{short_repr(state)}"
        )
    for name, number in (("partition", partition), ("next_offset", next_offset)):
        if (
            isinstance(number, bool)
            or not isinstance(number, int)
            or not 0 <= number <= _BOUNDS[name]
        ):
            raise SnapshotError(
                f"malformed snapshot of key {short_repr(key)}: {name} must be an integer from 0 "
                f"to {_BOUNDS[name]}, got {short_repr(number)}"
            )
    return Snapshot(key, state, partition, next_offset)  # type: ignore[arg-type]
