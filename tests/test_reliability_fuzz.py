"""Bad-input fuzz (hypothesis) through the real consumer path of a running ``streamgmm run``.

One service process runs for the whole module. Each hypothesis example produces one batch of
a few hundred records to its input topic: hypothesis-generated bad records (random bytes,
deeply nested JSON, huge strings, wrong types, NaN / ±inf / overflowing numbers, integer
literals past Python's 4,300-digit limit, zero, negative and extreme prices, empty, blank,
non-UTF-8 and over-long keys, outrageous timestamps, oversized records) interleaved with valid
ticks (some on hypothesis-generated unicode keys). Then it waits until every record is
accounted for, and checks:

- the service is still running (it never crashes);
- every bad record is in the dead-letter topic exactly as sent (key and value bytes), with a
  reason header from the documented set (and the expected reason where only one fits) and
  headers naming its source topic, partition and offset; none has an output record;
- every valid record interleaved with them has its output record;
- records the decoder cannot judge on its own (finite but extreme prices, which the model may
  refuse) end up in exactly one of the two topics.

A second test sends the shapes that used to stop a partition for good, once each: a value of
1,048,400 bytes and keys of 600 kB and 1 MB (their dead-letter copies exceed the producer's
1 MiB limit, so they arrive truncated, with headers saying so), a value one byte under
``max_record_bytes``, a 4,301-digit integer, JSON nested 65,000 deep and a tick dated 1e21;
valid ticks of the same keys and partitions after them must still get their outputs.

At the end the metrics endpoint must agree with the topics, and SIGTERM must give exit 0.
Examples are few (10) and derandomized (each round trip through Kafka costs seconds, and CI must be
reproducible); widen ``max_examples`` locally to fuzz harder.
"""

from __future__ import annotations

import json
import math
import uuid
import zlib
from collections.abc import Callable, Iterator
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
from streamgmm.service import dead_letters as decode
from streamgmm.settings.layers import load_settings
from streamgmm.ticks.tick import REASONS

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PARTITIONS = 3
MAX_RECORD_BYTES = 65536
MAX_KEY_BYTES = 1024  # the default
VALID_KEYS = ["K0", "K1", "K2", "K3", "K4"]
ANY_REASON = frozenset(REASONS)


class Raw(str):
    """JSON text that a template puts into a record as it is (a literal json.dumps cannot write)."""


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
                "huge_int",
                "long_key",
                "ts_jump",
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
    if kind == "huge_int":
        # int() refuses more than 4,300 digits with a ValueError (once a crash loop).
        field = draw(st.sampled_from(["price", "ts", "volume", "note"]))
        digits = draw(st.integers(4301, 6000))
        return (
            kind,
            key,
            {field: Raw(draw(st.sampled_from(["", "-"])) + "7" * digits)},
            (frozenset({"invalid_json"})),
        )
    if kind == "long_key":
        long_key = draw(st.sampled_from(["K", "é", "😀"])) * draw(st.integers(400, 3000))
        long = long_key.encode()
        if len(long) <= MAX_KEY_BYTES:
            long += b"K" * (MAX_KEY_BYTES + 1 - len(long))
        return kind, long, {}, frozenset({"oversized_key"})
    if kind == "ts_jump":
        # Far beyond the wall clock and the key's last ts: dead-lettered, the key not locked.
        # The year 2096 in seconds, milliseconds and nanoseconds ([input] ts_unit = "auto"),
        # the year 4822, and sizes beyond every unit (read as seconds).
        ts = draw(st.sampled_from([4e9, 4e12, 4e18, 9e10, 1e21, 1.7e308]))
        return kind, key, {"ts": ts}, frozenset({"ts_jump"})
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
        if isinstance(value, Raw) or (
            value in ("NaN", "Infinity", "-Infinity", "1e400", "-1e400") and field != "pad"
        ):
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
def env(
    broker: EmbeddedBroker, tmp_path_factory: pytest.TempPathFactory, module_client: str
) -> Iterator[Env]:
    tmp = tmp_path_factory.mktemp("fuzz")
    name = f"rz-{uuid.uuid4().hex[:8]}"
    broker.create_topics({f"{name}-in": PARTITIONS})
    config = write_config(
        tmp / "svc.toml",
        broker.bootstrap_servers,
        name,
        client=module_client,
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


def _key_on(partition: int) -> bytes:
    """A key (HOST if it fits) whose records go to ``partition``."""
    return next(
        key
        for key in (b"HOST", *(f"HOST{i}".encode() for i in range(100)))
        if _partition(key) == partition
    )


def _padded_tick(key: str, size: int) -> bytes:
    """A valid tick of ``key`` padded to exactly ``size`` bytes."""
    tick = {**CLOCK.tick(key, 0.0), "pad": ""}
    tick["pad"] = "p" * (size - len(json.dumps(tick).encode()))
    value = json.dumps(tick).encode()
    assert len(value) == size
    return value


def test_shapes_that_stalled_a_partition_each_get_a_dead_letter(env: Env) -> None:
    """Each shape once, followed by valid ticks of its key and partition: nothing stalls."""
    host = b"HOST"
    valid = lambda key: json.dumps(CLOCK.tick(key.decode(), 0.001)).encode()  # noqa: E731
    huge_key, long_key = b"H" * 1_048_500, b"L" * 600_000
    shapes: list[tuple[bytes, Callable[[], bytes], str, bool]] = [
        # (key, its value (made in turn: timestamps rise), what must become of it, whether its
        # dead letter is cut to fit)
        (host, lambda: _padded_tick("HOST", 1_048_400), "oversized", True),
        (host, lambda: _padded_tick("HOST", MAX_RECORD_BYTES - 1), "output", False),
        (host, lambda: _render(host, {"price": Raw("9" * 4301)}), "invalid_json", False),
        (host, lambda: b"[" * 65_000, "invalid_json", False),
        (host, lambda: _render(host, {"ts": 1e21}), "ts_jump", False),
        (long_key, lambda: valid(b"L"), "oversized_key", False),
        (huge_key, lambda: valid(b"H"), "oversized_key", True),
    ]
    records: list[tuple[bytes | None, bytes | None, int]] = []
    expect: list[tuple[str, bool]] = []
    for key, make, what, cut in shapes:
        records.append((key, make(), _partition(key)))
        expect.append((what, cut))
        after = _key_on(_partition(key))
        for _ in range(2):  # then valid ticks on the same partition (of the same key): go on
            records.append((after, valid(after), _partition(key)))
            expect.append(("output", False))
    sent = produce(env.bootstrap, env.topic, records)
    placed = [(s.partition, s.offset) for s in sent]
    env.sent.extend(
        (Case(k, v, p, "output" if w == "output" else "dlq"), s.partition, s.offset)
        for (k, v, p), (w, _c), s in zip(records, expect, sent, strict=True)
    )

    def accounted() -> bool:
        assert env.svc.alive, f"service died:\n{env.svc.tail()}"
        env.outputs.poll(0.1)
        env.dlq.poll(0.1)
        outs, dls = _index(env.outputs, False), _index(env.dlq, True)
        return all(po in outs or po in dls for po in placed)

    wait_until(accounted, 180, "every hostile record in the output or dead-letter topic", 0.2)
    outs, dls = _index(env.outputs, False), _index(env.dlq, True)
    for (key, value, _p), (what, cut), where in zip(records, expect, placed, strict=True):
        assert key is not None and value is not None
        label = f"{what} record key={key[:20]!r}... value={value[:40]!r}... at {where}"
        if what == "output":
            assert where in outs and where not in dls, label
            continue
        assert where in dls and where not in outs and len(dls[where]) == 1, label
        rec = dls[where][0]
        assert rec.headers[decode.HEADER_REASON].decode() == what, label
        if not cut:
            assert (rec.key, rec.value) == (key, value), label
            continue
        # Too large to dead-letter whole: the first bytes, and headers that say so.
        assert rec.key == key[: decode.TRUNCATED_KEY_BYTES], label
        assert rec.value == value[: decode.TRUNCATED_VALUE_BYTES], label
        assert rec.headers[decode.HEADER_TRUNCATED] == b"true", label
        assert rec.headers[decode.HEADER_KEY_BYTES] == str(len(key)).encode(), label
        assert rec.headers[decode.HEADER_VALUE_BYTES] == str(len(value)).encode(), label
        assert rec.headers[decode.HEADER_REFUSED].startswith(b"MessageSizeTooLargeError"), label
        assert rec.headers[decode.HEADER_TOPIC].decode() == env.topic, label


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
    # Lag per partition: one series per input partition, drained to 0.
    wait_until(
        lambda: (
            [v for k, v in scrape(env.svc.metrics_port()).items()
             if k.startswith("streamgmm_consumer_lag{")] == [0.0] * PARTITIONS
        ),
        10,
        "the lag of every partition to read 0",
        0.2,
    )  # fmt: skip
    assert env.svc.terminate() == 0, env.svc.tail()
    kinds: dict[str, int] = {}
    for rec in env.dlq.records:
        reason = rec.headers[decode.HEADER_REASON].decode()
        kinds[reason] = kinds.get(reason, 0) + 1
    print(
        f"fuzz: {len(env.sent)} records, {len(env.outputs.records)} outputs, dead letters "
        f"by reason {kinds}"
    )
