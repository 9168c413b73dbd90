"""Snapshot: the changelog's value format, a key's state as versioned JSON and nothing else.

Owns how one key's state travels to the changelog and back (the checkpoint, in
:mod:`.checkpoint`, decides when). A value is a JSON object
``{"format": "streamgmm.snapshot", "version": 1, "key", "partition", "next_offset", "state"}``;
:func:`decode_snapshot` refuses anything else, a pickle included, without executing it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

import orjson

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


#: Where orjson's bytes may differ from json's (the bytes a snapshot has always had): ``null``
#: (None, but also a NaN or an infinity, which json refuses), and a float below 1e-4 in
#: magnitude, which orjson writes ``0.00001`` or ``1e-7`` where json writes ``1e-05`` and
#: ``1e-07``. orjson refuses outright what else json would write its own way (integers past 64
#: bits, keys that are not strings, lone surrogates, NumPy values).
_NULL = b"null"
#: orjson's ``d.ddde-N`` (a float below 1e-5 in magnitude, down to 1e-9), where json pads the
#: exponent to two digits.
_SHORT_EXPONENT = re.compile(rb"e-(\d)(?=[,\]}])")
#: orjson's ``0.0000dddd`` (a float from 1e-5 to 1e-4 in magnitude), where json writes
#: ``d.ddde-05``; the match is the start of a number when no digit or point precedes it.
_FIFTH_DECIMAL = re.compile(rb"0\.0000([1-9])(\d*)(?=[,\]}])")
#: JSON text (with no backslash) none of whose strings holds a digit: the matches above are
#: then numbers, never inside a string.
_NO_DIGIT_IN_STRINGS = re.compile(rb'(?:[^"]*"[^"\d]*")*[^"]*')


def _as_json_writes(match: re.Match[bytes]) -> bytes:
    start = match.start()
    if start and match.string[start - 1] in b"0123456789.":
        return match.group(0)  # inside a longer number, as json writes it too
    first, rest = match.groups()
    return first + (b"." + rest if rest else b"") + b"e-05"


def _orjson_state(state: dict[str, Any]) -> bytes | None:
    """``state`` as json writes it (compact, UTF-8), written by orjson; None when that cannot
    be told to be the same (then json writes it)."""
    try:
        text = orjson.dumps(state)
    except TypeError:  # orjson.JSONEncodeError
        return None
    if _NULL in text:
        return None
    exponent, fifth = b"e-" in text, b"0.0000" in text
    if exponent or fifth:
        if b"\\" in text or not _NO_DIGIT_IN_STRINGS.fullmatch(text):
            return None
        if exponent:
            text = _SHORT_EXPONENT.sub(rb"e-0\1", text)
        if fifth:
            text = _FIFTH_DECIMAL.sub(_as_json_writes, text)
    return text


def encode_snapshot(key: str, state: dict[str, Any], partition: int, next_offset: int) -> bytes:
    """Serialise a key's state as a versioned JSON changelog value.

    The bytes are those of ``json.dumps(..., separators=(",", ":"), ensure_ascii=False)``,
    written by orjson (several times faster) whenever that gives exactly those.

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
    state_text = _orjson_state(state)
    if state_text is not None:
        try:
            head = orjson.dumps({name: document[name] for name in _FIELDS[:-1]})
        except TypeError:  # orjson.JSONEncodeError
            pass
        else:
            return head[:-1] + b',"state":' + state_text + b"}"
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
