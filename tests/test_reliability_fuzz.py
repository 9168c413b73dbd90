"""Bad-input fuzz (hypothesis) through the real consumer path of a running ``streamgmm run``.

One service process runs for the whole module. Each hypothesis example produces one batch of
a few hundred records to its input topic: hypothesis-generated bad records (random bytes,
deeply nested JSON, huge strings, wrong types, NaN / ±inf / overflowing numbers, zero,
negative and extreme prices, empty, blank and non-UTF-8 keys, oversized records) interleaved
with valid ticks (some on hypothesis-generated unicode keys). Then it waits until every record
is accounted for, and checks:

- the service is still running (it never crashes);
- every bad record is in the dead-letter topic exactly as sent (key and value bytes), with a
  reason header from the documented set (and the expected reason where only one fits) and
  headers naming its source topic, partition and offset; none has an output record;
- every valid record interleaved with them has its output record;
- records the decoder cannot judge on its own (finite but extreme prices, which the model may
  refuse) end up in exactly one of the two topics.

At the end the metrics endpoint must agree with the topics, and SIGTERM must give exit 0.
Examples are few (10) and derandomized (each round trip through Kafka costs seconds, and CI must be
reproducible); widen ``max_examples`` locally to fuzz harder.
"""

from __future__ import annotations

import json
import math
import uuid
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from reliability_support import (
    ServiceProcess,
    TopicReader,
    produce,
    scrape,
    wait_until,
    write_config,
)

from streamgmm.broker import EmbeddedBroker
from streamgmm.service import decode
from streamgmm.service.config import load_settings

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PARTITIONS = 3
MAX_RECORD_BYTES = 65536
VALID_KEYS = ["K0", "K1", "K2", "K3", "K4"]
ANY_REASON = frozenset(decode.REASONS)


@dataclass(frozen=True)
class Case:
    """One record to send and what must become of it."""

    key: bytes | None
    value: bytes | None
    partition: int
    expect: str  # "output", "dlq" or "either"
    reasons: frozenset[str] = ANY_REASON


class Clock:
    """Strictly increasing timestamps shared by every record of the module.

    Every record gets the next one, so per key (one partition per key) the valid ticks are in
    order across all examples, and no valid tick is ever out of order or a duplicate.
    """

    def __init__(self) -> None:
        self.ts = 1.7e9
        self.price: dict[str, float] = {}

    def tick(self, key: str, step: float) -> dict[str, Any]:
        self.ts += 60.0
        price = self.price.get(key, 100.0) * math.exp(step)
        self.price[key] = price
        return {"symbol": key, "ts": self.ts, "price": price, "volume": 1000.0}


CLOCK = Clock()


def _partition(key: bytes) -> int:
    return zlib.crc32(key) % PARTITIONS


# --------------------------------------------------------------------------- strategies

_json_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**30), 10**30),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
)
_json_any = st.recursive(
    _json_leaf,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=20,
)
_wrong = st.one_of(
    st.text(max_size=30),
    st.booleans(),
    st.none(),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)


def _could_be_a_tick(value: bytes) -> bool:
    try:
        obj = json.loads(value)
    except (ValueError, RecursionError):
        return False
    return isinstance(obj, dict) and "price" in obj and "ts" in obj


@st.composite
def bad_record(draw: st.DrawFn) -> tuple[str, bytes | None, Any, frozenset[str]]:
    """``(kind, key, value_or_template, reasons)``; a template dict gets ``ts`` at send time."""
    kind = draw(
        st.sampled_from(
            [
                "bytes",
                "nested",
                "json_any",
                "huge_string",
                "wrong_type",
                "non_finite",
                "price",
                "volume",
                "key",
                "oversized",
                "missing",
            ]
        )
    )
    key = draw(st.sampled_from(VALID_KEYS)).encode()
    if kind == "bytes":
        value = draw(st.binary(max_size=3000))
        if _could_be_a_tick(value):
            value = b"\xff" + value
        return kind, key, value, ANY_REASON
    if kind == "nested":
        depth = draw(st.integers(2, 30000))
        opener, closer = draw(st.sampled_from([("[", "]"), ('{"a":', "}")]))
        value = (opener * depth + "1" + closer * depth).encode()
        if len(value) > MAX_RECORD_BYTES:
            return kind, key, value, frozenset({"oversized"})
        return kind, key, value, frozenset({"invalid_json", "not_an_object", "missing_field"})
    if kind == "json_any":
        obj = draw(_json_any)
        if isinstance(obj, dict):
            obj.pop("price", None)
            return kind, key, json.dumps(obj).encode(), frozenset({"missing_field"})
        return kind, key, json.dumps(obj).encode(), frozenset({"not_an_object"})
    if kind == "huge_string":
        n = draw(st.integers(1000, MAX_RECORD_BYTES - 200))
        char = draw(st.sampled_from(["x", "é", "😀", "\u0000"]))
        field = draw(st.sampled_from(["price", "ts"]))
        return kind, key, {field: char * (n // 4)}, frozenset({"wrong_type"})
    if kind == "wrong_type":
        field = draw(st.sampled_from(["price", "ts", "volume"]))
        wrong = draw(_wrong)
        if field == "ts" and isinstance(wrong, str):
            wrong = "not a time " + wrong  # an ISO-8601 string would be a valid ts
        if field == "volume" and wrong is None:
            wrong = "none"  # volume null means absent, which is valid
        return kind, key, {field: wrong}, frozenset({"wrong_type"})
    if kind == "non_finite":
        field = draw(st.sampled_from(["price", "ts", "volume"]))
        literal = draw(st.sampled_from(["NaN", "Infinity", "-Infinity", "1e400", "-1e400"]))
        return kind, key, {field: literal}, frozenset({"non_finite"})
    if kind == "price":
        price = draw(
            st.one_of(
                st.just(0),
                st.just(0.0),
                st.just(-0.0),
                st.floats(max_value=-1e-300, allow_nan=False, allow_infinity=False),
                st.integers(max_value=-1),
            )
        )
        return kind, key, {"price": price}, frozenset({"non_positive_price"})
    if kind == "volume":
        volume = draw(st.floats(max_value=-1e-300, allow_nan=False, allow_infinity=False))
        return kind, key, {"volume": volume}, frozenset({"negative_volume"})
    if kind == "key":
        bad_key = draw(
            st.one_of(
                st.none(),
                st.just(b""),
                st.text(alphabet=" \t\n\r\u00a0\u2003", min_size=1, max_size=5).map(str.encode),
                st.binary(min_size=1, max_size=8).map(lambda b: b"\xff" + b),
            )
        )
        reasons = (
            frozenset({"wrong_type"})
            if bad_key and bad_key[:1] == b"\xff"
            else frozenset({"empty_key"})
        )
        return kind, bad_key, {}, reasons
    if kind == "oversized":
        n = draw(st.integers(MAX_RECORD_BYTES + 1, 3 * MAX_RECORD_BYTES))
        return kind, key, {"pad": "p" * n}, frozenset({"oversized"})
    # missing: drop a required field
    field = draw(st.sampled_from(["price", "ts"]))
    return kind, key, {"-": field}, frozenset({"missing_field"})


def _render(key: bytes | None, template: dict[str, Any]) -> bytes:
    """A valid tick for ``key`` with the template's fields overriding (or removing) fields."""
    name = key.decode("utf-8", "replace") if key else "K0"
    tick = CLOCK.tick(name, 0.0)
    if "-" in template:
        tick.pop(template["-"])
    literals: dict[str, str] = {}
    for field, value in template.items():
        if field == "-":
            continue
        if value in ("NaN", "Infinity", "-Infinity", "1e400", "-1e400") and field != "pad":
            literals[field] = value
            value = f"@@{field}@@"
        tick[field] = value
    text = json.dumps(tick, ensure_ascii=False)
    for field, literal in literals.items():
        text = text.replace(f'"@@{field}@@"', literal)
    return text.encode("utf-8")


@st.composite
def batch(draw: st.DrawFn) -> list[Case]:
    """A few hundred records: bad ones, each followed by valid ticks, plus extremes."""
    bad = draw(st.lists(bad_record(), min_size=40, max_size=90))
    new_keys = draw(
        st.lists(st.text(min_size=1, max_size=12).filter(lambda s: s.strip() != ""), max_size=5)
    )
    valid_keys = [k.encode() for k in VALID_KEYS] + [k.encode("utf-8") for k in new_keys]
    cases: list[Case] = []
    for i, (_kind, key, value, reasons) in enumerate(bad):
        raw = value if isinstance(value, bytes) else _render(key, value)
        if len(raw) > MAX_RECORD_BYTES:
            # Size is checked first (e.g. a string of NULs escapes to 6 bytes per character).
            reasons = frozenset({"oversized"})
        part = _partition(key) if key else i % PARTITIONS
        cases.append(Case(key, raw, part, "dlq", reasons))
        for _ in range(draw(st.integers(1, 3))):
            vk = valid_keys[draw(st.integers(0, len(valid_keys) - 1))]
            step = draw(st.floats(-0.05, 0.05))
            value = json.dumps(CLOCK.tick(vk.decode("utf-8"), step), ensure_ascii=False)
            cases.append(Case(vk, value.encode("utf-8"), _partition(vk), "output"))
    # Finite but extreme prices: the decoder accepts them, the model may refuse them (then the
    # record is dead-lettered with the model's reason). Either way: exactly one destination.
    for extreme in draw(st.lists(st.sampled_from([1e300, 1e-300, 5e-324, 1.7e308]), max_size=3)):
        vk = b"EXTREME"
        tick = CLOCK.tick("EXTREME", 0.0)
        tick["price"] = extreme
        cases.append(Case(vk, json.dumps(tick).encode(), _partition(vk), "either"))
    return cases


# --------------------------------------------------------------------------- the service


@dataclass
class Env:
    bootstrap: str
    topic: str
    settings: Any
    svc: ServiceProcess
    outputs: TopicReader
    dlq: TopicReader
    sent: list[tuple[Case, int, int]]  # case, partition, offset


@pytest.fixture(scope="module")
def env(broker: EmbeddedBroker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    tmp = tmp_path_factory.mktemp("fuzz")
    name = f"rz-{uuid.uuid4().hex[:8]}"
    broker.create_topics({f"{name}-in": PARTITIONS})
    config = write_config(
        tmp / "svc.toml",
        broker.bootstrap_servers,
        name,
        **{"input.max_record_bytes": MAX_RECORD_BYTES, "input.out_of_order": "reject"},
    )
    settings_ = load_settings(config, {}, {})
    svc = ServiceProcess(config, tmp / "service.log").start()
    svc.wait_for_log("restored 3 partition(s)", timeout=120)
    e = Env(
        broker.bootstrap_servers,
        f"{name}-in",
        settings_,
        svc,
        TopicReader(broker.bootstrap_servers, settings_.output_topic),
        TopicReader(broker.bootstrap_servers, settings_.dlq_topic),
        [],
    )
    try:
        yield e
    finally:
        svc.cleanup()
        e.outputs.close()
        e.dlq.close()


def _index(reader: TopicReader, dlq: bool) -> dict[tuple[int, int], list[Any]]:
    out: dict[tuple[int, int], list[Any]] = {}
    for rec in reader.records:
        if dlq:
            src = (
                int(rec.headers[decode.HEADER_PARTITION]),
                int(rec.headers[decode.HEADER_OFFSET]),
            )
            out.setdefault(src, []).append(rec)
        else:
            o = rec.json()
            out.setdefault((o["partition"], o["offset"]), []).append(o)
    return out


@settings(
    max_examples=10,
    deadline=None,
    derandomize=True,
    database=None,
    # No shrinking or explaining: each example is a Kafka round trip of seconds, and the
    # explain phase's tracing makes kafka-python's pure-Python CRC crawl. A failure reports
    # the record it is about instead.
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.large_base_example,
    ],
)
@given(cases=batch())
def test_bad_records_go_to_dlq_valid_ones_are_processed(env: Env, cases: list[Case]) -> None:
    sent = produce(env.bootstrap, env.topic, [(c.key, c.value, c.partition) for c in cases])
    placed = [(c, s.partition, s.offset) for c, s in zip(cases, sent, strict=True)]
    env.sent.extend(placed)

    def accounted() -> bool:
        assert env.svc.alive, f"service died:\n{env.svc.tail()}"
        env.outputs.poll(0.1)
        env.dlq.poll(0.1)
        outs, dls = _index(env.outputs, False), _index(env.dlq, True)
        return all((p, o) in outs or (p, o) in dls for _c, p, o in placed)

    wait_until(accounted, 180, "every record in the output or dead-letter topic", 0.2)
    outs, dls = _index(env.outputs, False), _index(env.dlq, True)
    for case, p, o in placed:
        where = f"{case.expect} record key={case.key!r} value={case.value[:80]!r} at {p}@{o}"
        if case.expect == "output":
            assert (p, o) in outs and (p, o) not in dls, where
            assert outs[(p, o)][0]["key"] == case.key.decode("utf-8"), where
            continue
        if case.expect == "either":
            assert ((p, o) in outs) != ((p, o) in dls), where
            if (p, o) in outs:
                continue
        assert (p, o) in dls and (p, o) not in outs, where
        assert len(dls[(p, o)]) == 1, where
        rec = dls[(p, o)][0]
        reason = rec.headers[decode.HEADER_REASON].decode()
        assert reason in case.reasons, f"{where}: reason {reason!r} not in {set(case.reasons)}"
        assert rec.headers[decode.HEADER_TOPIC].decode() == env.topic
        assert rec.headers[decode.HEADER_DETAIL]  # a human-readable explanation
        assert rec.value == case.value and rec.key == case.key, where


def test_metrics_agree_and_service_stops_cleanly(env: Env) -> None:
    """Runs after the fuzz examples (same module, definition order)."""
    assert env.sent, "the fuzz test sent nothing"
    env.outputs.read_to_end()
    env.dlq.read_to_end()
    # Outputs are counted when the broker acknowledges them, which the producer process
    # reports every 50 ms: the counter may trail the topic by that much.
    wait_until(
        lambda: (
            scrape(env.svc.metrics_port()).get("streamgmm_records_produced_total")
            == len(env.outputs.records)
        ),
        10,
        "the produced counter to reach the outputs read",
        0.1,
    )
    metrics = scrape(env.svc.metrics_port())
    consumed = metrics["streamgmm_records_consumed_total"]
    dead = sum(
        v for k, v in metrics.items() if k.startswith("streamgmm_records_dead_lettered_total{")
    )
    produced = metrics["streamgmm_records_produced_total"]
    assert consumed == len(env.sent)
    assert dead == len(env.dlq.records)
    assert produced == len(env.outputs.records)
    assert consumed == dead + produced  # every record went exactly one way
    assert env.svc.terminate() == 0, env.svc.tail()
    kinds: dict[str, int] = {}
    for rec in env.dlq.records:
        reason = rec.headers[decode.HEADER_REASON].decode()
        kinds[reason] = kinds.get(reason, 0) + 1
    print(
        f"fuzz: {len(env.sent)} records, {len(env.outputs.records)} outputs, dead letters "
        f"by reason {kinds}"
    )
