"""The output record, the emit policy and the ordering rule, shared by runner and replay.

Keeping them in one place is what makes ``streamgmm replay`` reproduce the Kafka path: both
turn a pipeline's output into the same record, emit under the same policy and drop the same
out-of-order ticks.
"""

from __future__ import annotations

import json
import math
from typing import Any

from streamgmm.regime import OUTPUT_KEYS
from streamgmm.service.codec import Tick

__all__ = [
    "OUTPUT_FIELDS",
    "build_output_record",
    "encode_output_record",
    "is_out_of_order",
    "should_emit",
]

#: The keys of every output record, in the order they are written: where the tick came from,
#: then the detector's outputs (its ``warm`` flag stays internal).
OUTPUT_FIELDS: tuple[str, ...] = (
    "key",
    "ts",
    "topic",
    "partition",
    "offset",
    *(name for name in OUTPUT_KEYS if name != "warm"),
)


def _finite_or_none(value: object) -> float | None:
    # JSON has no NaN or infinity; null says "no value" without producing invalid JSON.
    number = float(value)  # type: ignore[arg-type]
    return number if math.isfinite(number) else None


# Regime ids as JSON object keys, built once: a per-tick str(int(...)) per regime is measurable.
_REGIME_KEYS = tuple(str(r) for r in range(16))


def _probabilities(probabilities: dict[Any, Any]) -> dict[str, float | None]:
    # JSON object keys are strings; building them as strings here makes the in-memory record
    # equal to the record a consumer decodes from the output topic.
    out: dict[str, float | None] = {}
    for regime, p in probabilities.items():
        key = (
            _REGIME_KEYS[regime]
            if type(regime) is int and 0 <= regime < len(_REGIME_KEYS)
            else str(int(regime))
        )
        # A finite float is already what _finite_or_none returns (x - x is NaN for inf, NaN).
        out[key] = p if type(p) is float and p - p == 0.0 else _finite_or_none(p)
    return out


def build_output_record(tick: Tick, out: dict[str, Any]) -> dict[str, Any]:
    """Build the JSON-safe output record for one processed tick.

    Parameters
    ----------
    tick
        The decoded tick (gives key, ts and the source topic, partition and offset).
    out
        ``pipeline.learn_predict_one(...)``'s result.

    Returns
    -------
    dict
        Keys :data:`OUTPUT_FIELDS`. Regime ids in ``probabilities`` and ``raw_probabilities``
        are strings (JSON object keys); a non-finite ``log_likelihood`` or ``drift_score``
        becomes ``None``.
    """
    return {
        "key": tick.key,
        "ts": tick.ts,
        "topic": tick.topic,
        "partition": tick.partition,
        "offset": tick.offset,
        "regime": int(out["regime"]),
        "probabilities": _probabilities(out["probabilities"]),
        "raw_probabilities": _probabilities(out["raw_probabilities"]),
        "log_likelihood": _finite_or_none(out["log_likelihood"]),
        "drift_score": _finite_or_none(out["drift_score"]),
        "drift_detected": bool(out["drift_detected"]),
        "n_samples_seen": int(out["n_samples_seen"]),
    }


# JSON string literal of a str, as json.dumps(..., ensure_ascii=False) writes it (C version).
_json_string = json.encoder.encode_basestring


def _json_number(value: object) -> str:
    # json writes a finite float as float.__repr__; x - x is 0.0 only for finite floats. Other
    # types (numpy floats, ints) go through float(), and a non-finite value becomes null, as
    # in build_output_record.
    if type(value) is float and value - value == 0.0:
        return repr(value)
    number = _finite_or_none(value)
    return "null" if number is None else repr(number)


def _json_probabilities(probabilities: dict[Any, Any]) -> str:
    if len(probabilities) == 2:
        # The usual record: regimes 0 and 1 with finite float probabilities.
        (r0, p0), (r1, p1) = probabilities.items()
        if (
            r0 == 0 and r1 == 1
            and type(p0) is float and p0 - p0 == 0.0
            and type(p1) is float and p1 - p1 == 0.0
        ):  # fmt: skip
            return f'"0":{p0!r},"1":{p1!r}'
    # Otherwise the record's own mapping (string keys, None for non-finite); the keys are
    # decimal digits, which need no JSON escaping.
    return ",".join(
        f'"{key}":{"null" if p is None else repr(p)}'
        for key, p in _probabilities(probabilities).items()
    )


def encode_output_record(tick: Tick, out: dict[str, Any]) -> bytes:
    """The output record as UTF-8 JSON, without building it as a dict first.

    Byte for byte ``codec.encode_output(build_output_record(tick, out))`` (a test holds the
    two equal), and a third faster, which matters at one call per tick.
    """
    return (
        f'{{"key":{_json_string(tick.key)},"ts":{_json_number(tick.ts)},'
        f'"topic":{_json_string(tick.topic)},"partition":{int(tick.partition)},'
        f'"offset":{int(tick.offset)},"regime":{int(out["regime"])},'
        f'"probabilities":{{{_json_probabilities(out["probabilities"])}}},'
        f'"raw_probabilities":{{{_json_probabilities(out["raw_probabilities"])}}},'
        f'"log_likelihood":{_json_number(out["log_likelihood"])},'
        f'"drift_score":{_json_number(out["drift_score"])},'
        f'"drift_detected":{"true" if out["drift_detected"] else "false"},'
        f'"n_samples_seen":{int(out["n_samples_seen"])}}}'
    ).encode()


def should_emit(
    policy: str, every_n: int, out: dict[str, Any], previous_regime: int | None
) -> bool:
    """Whether to emit the record for this tick under ``[output] emit_policy``.

    Parameters
    ----------
    policy
        ``"every_tick"``, ``"on_change"`` or ``"every_n"``.
    every_n
        N for ``"every_n"``: emit when the key's ``n_samples_seen`` is a multiple of N, which
        survives restarts because ``n_samples_seen`` is part of the model state.
    out
        The pipeline's output for this tick.
    previous_regime
        Regime of the key's previous tick, or None for its first tick; ``"on_change"`` emits
        when the regime differs from it (so the first tick of a key is always emitted).
    """
    if policy == "every_tick":
        return True
    if policy == "every_n":
        return int(out["n_samples_seen"]) % every_n == 0
    if policy == "on_change":
        return previous_regime is None or int(out["regime"]) != previous_regime
    raise ValueError(f"emit policy must be every_tick, on_change or every_n, got {policy!r}")


def is_out_of_order(last_ts: float | None, ts: float) -> bool:
    """True when a tick is earlier than the last one applied to its key.

    Equal timestamps are in order: several trades can share a second.
    """
    return last_ts is not None and ts < last_ts
