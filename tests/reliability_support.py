"""Shared helpers for the fault-injection suite (``tests/test_reliability_*.py``).

Everything here talks to a real broker (the embedded tansu broker of ``tests/conftest.py``) or
to the real per-key pipeline; nothing is mocked. The helpers are:

- :class:`ServiceProcess`: ``python -m streamgmm.cli run --config FILE`` as a subprocess that a
  test can SIGKILL, SIGTERM, restart and measure (RSS, log lines);
- :func:`write_config`: a TOML config with short group timeouts for the embedded broker;
- :func:`produce` / :class:`TopicReader`: send records and learn their exact offsets; read a
  topic incrementally to its end;
- :func:`reference_run`: the uninterrupted run, computed in-process by the same pipeline
  factory over the same per-key tick sequence;
- :func:`last_snapshots` / :func:`assert_states_close`: final per-key state from the changelog,
  compared numerically with the reference.

Timeouts are generous on purpose: the machine has two cores shared with other jobs, and a
timeout here only turns a hang into a failure, never a slow run into one.
"""

from __future__ import annotations

import json
import math
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from conftest import ConsumedRecord, write_toml
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

REPO = Path(__file__).resolve().parents[1]

# A group's first join waits about session_timeout_ms / 2, and a SIGKILLed member is noticed
# after session_timeout_ms: short values keep each kill/restart cycle to seconds.
SESSION_TIMEOUT_MS = 6000
HEARTBEAT_MS = 500
API_VERSION = (2, 5, 0)

# Relative-or-absolute tolerance of every numeric state / output comparison.
TOL = 1e-9

#: Type of pytest's ``record_property`` fixture.
RecordProperty = Callable[[str, object], None]


# --------------------------------------------------------------------------- waiting


def wait_until(
    predicate: Callable[[], bool],
    timeout: float,
    what: str | Callable[[], str],
    interval: float = 0.1,
) -> None:
    """Poll ``predicate`` until it is true; fail the test with ``what`` after ``timeout`` s.

    ``what`` may be a callable, called at the time-out (a log tail as it is then).
    """
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            said = what() if callable(what) else what
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {said}")
        time.sleep(interval)


# --------------------------------------------------------------------------- configuration


def write_config(
    path: Path,
    bootstrap: str,
    name: str,
    *,
    metrics: bool = True,
    client: str = "kafka-python",
    **extra: Any,
) -> Path:
    """Write a TOML config for a service instance on the test broker; return ``path``.

    ``name`` prefixes the topics and group (input ``<name>-in``, group ``<name>-group``).
    ``extra`` maps ``"section.key"`` to a value, e.g. ``{"checkpoint.every_records": 500}``.
    With ``metrics=False`` the metrics server is disabled; with ``metrics=True`` it binds an
    ephemeral port on the default host (the shipped default, 127.0.0.1). ``client`` is
    ``[kafka] client``.
    """
    sections: dict[str, dict[str, Any]] = {
        "kafka": {
            "client": client,
            "bootstrap_servers": bootstrap,
            "group_id": f"{name}-group",
            "session_timeout_ms": SESSION_TIMEOUT_MS,
            "heartbeat_interval_ms": HEARTBEAT_MS,
            "request_timeout_ms": 15000,
        },
        "topics": {"input": f"{name}-in"},
        "metrics": {"enabled": metrics, "port": 0},
        "checkpoint": {"every_records": 1000, "every_seconds": 1.0},
    }
    return write_toml(path, sections, extra)


# --------------------------------------------------------------------------- the service


class ServiceProcess:
    """``streamgmm run`` in a subprocess, with its log in a file.

    One object can be started many times (after a kill); every run appends to the same log,
    so log assertions see the whole history.
    """

    def __init__(self, config: Path, log_path: Path, env: Mapping[str, str] | None = None):
        self.config = config
        self.log_path = log_path
        # A crash in compiled code (librdkafka, numba) leaves every thread's Python stack in
        # the log, not just an exit code.
        self.env = {**os.environ, "PYTHONFAULTHANDLER": "1", **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> ServiceProcess:
        assert not self.alive, "already running"
        with open(self.log_path, "ab") as log:
            log.write(f"==== start #{self.starts + 1} ====\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "streamgmm.cli", "run", "--config", str(self.config)],
                cwd=REPO,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
            )
        self.starts += 1
        return self

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def kill(self) -> None:
        """SIGKILL: no checkpoint, no goodbye to the group."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(60)

    def terminate(self, timeout: float = 120.0) -> int:
        """SIGTERM and wait; return the exit code (SIGKILL and fail if it does not exit)."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(30)
                raise AssertionError(
                    f"service ignored SIGTERM for {timeout:.0f}s; log tail:\n{self.tail()}"
                ) from None
        return int(self.proc.returncode)

    def wait(self, timeout: float) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def running(self) -> bool:
        """True while the process runs; fails the test, with its exit code and log tail, once it
        has exited. For ``wait_until`` predicates of a service that must stay up."""
        if self.alive:
            return True
        code = self.proc.returncode if self.proc is not None else None
        raise AssertionError(f"the service exited (code {code}); log tail:\n{self.tail()}")

    def cleanup(self) -> None:
        """Kill the process if a failing test left it running."""
        if self.alive:
            assert self.proc is not None
            self.proc.kill()
            self.proc.wait(30)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def tail(self, n: int = 4000) -> str:
        return self.log()[-n:]

    def wait_for_log(self, text: str, count: int = 1, timeout: float = 90.0) -> None:
        def seen() -> bool:
            if not self.alive and self.log().count(text) < count:
                raise AssertionError(
                    f"service exited while waiting for {text!r}; log tail:\n{self.tail()}"
                )
            return self.log().count(text) >= count

        wait_until(seen, timeout, f"{text!r} x{count} in {self.log_path}")

    def rss_bytes(self) -> int:
        """Resident set size of the service process, from /proc."""
        with open(f"/proc/{self.pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        raise AssertionError("VmRSS not found")

    def metrics_port(self, timeout: float = 60.0) -> int:
        """The metrics port the service logged at start."""
        found: list[int] = []

        def logged() -> bool:
            m = re.findall(r"metrics on http://[^:]+:(\d+)/metrics", self.log())
            if m:
                found.append(int(m[-1]))
            return bool(m)

        wait_until(logged, timeout, "the metrics address in the log")
        return found[-1]

    def restored_partitions(self) -> list[int]:
        """Input partitions named in the last ``restored N partition(s)`` line of the log."""
        lines = re.findall(r"restored \d+ partition\(s\)[^:]*: (.*)", self.log())
        assert lines, "no restore in the log"
        return [int(p) for p in re.findall(r"\[(\d+)\]", lines[-1])]


# --------------------------------------------------------------------------- producing


@dataclass(frozen=True)
class Sent:
    """A produced record and where the broker put it."""

    key: bytes | None
    value: bytes | None
    partition: int
    offset: int


def producer(bootstrap: str, **kwargs: Any) -> KafkaProducer:
    opts: dict[str, Any] = {"linger_ms": 5, "max_request_size": 4 * 1024 * 1024}
    opts.update(kwargs)
    return KafkaProducer(bootstrap_servers=bootstrap, api_version=API_VERSION, **opts)


def produce(
    bootstrap: str,
    topic: str,
    records: Sequence[tuple[bytes | None, bytes | None, int]],
    prod: KafkaProducer | None = None,
) -> list[Sent]:
    """Send ``(key, value, partition)`` triples, wait for every ack, return their offsets.

    The offsets come from the broker's acknowledgements, so the tests never assume them.
    """
    own = prod is None
    prod = prod or producer(bootstrap)
    try:
        futures = [prod.send(topic, key=k, value=v, partition=p) for k, v, p in records]
        prod.flush()
        out = []
        for (k, v, _p), f in zip(records, futures, strict=True):
            meta = f.get(timeout=60)
            out.append(Sent(k, v, meta.partition, meta.offset))
        return out
    finally:
        if own:
            prod.close()


# --------------------------------------------------------------------------- reading


# The same read-back record as the service tests use.
Record = ConsumedRecord


@dataclass
class TopicReader:
    """Read a topic from its beginning, incrementally; ``records`` grows with each call."""

    bootstrap: str
    topic: str
    records: list[Record] = field(default_factory=list)
    _consumer: KafkaConsumer | None = None

    def _open(self, timeout: float) -> KafkaConsumer | None:
        if self._consumer is not None:
            return self._consumer
        consumer = KafkaConsumer(
            bootstrap_servers=self.bootstrap,
            api_version=API_VERSION,
            group_id=None,
            enable_auto_commit=False,
            fetch_max_bytes=16 * 1024 * 1024,
            # kafka-python checks CRCs in pure Python; the broker is local and trusted here.
            check_crcs=False,
            max_partition_fetch_bytes=8 * 1024 * 1024,
        )
        deadline = time.monotonic() + timeout
        parts = consumer.partitions_for_topic(self.topic) or set()
        while not parts and time.monotonic() < deadline:
            time.sleep(0.3)  # the service creates its output topics at start
            consumer.topics()
            parts = consumer.partitions_for_topic(self.topic) or set()
        if not parts:
            consumer.close()
            return None
        tps = [TopicPartition(self.topic, p) for p in sorted(parts)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        self._consumer = consumer
        return consumer

    def poll(self, timeout: float = 0.5) -> int:
        """Read what is available now (up to ``timeout`` s); return the number of new records."""
        consumer = self._open(timeout=max(timeout, 30.0))
        if consumer is None:
            return 0
        n = 0
        deadline = time.monotonic() + timeout
        while True:
            batch = consumer.poll(timeout_ms=100, max_records=50000)
            for tp, recs in batch.items():
                for r in recs:
                    self.records.append(
                        Record(r.key, r.value, dict(r.headers or []), tp.partition, r.offset)
                    )
                    n += 1
            if not batch and time.monotonic() >= deadline:
                return n

    def read_to_end(self, timeout: float = 60.0) -> list[Record]:
        """Read until the position reaches the end offsets taken now."""
        consumer = self._open(timeout=timeout)
        if consumer is None:
            return self.records
        tps = list(consumer.assignment())
        end = consumer.end_offsets(tps)
        deadline = time.monotonic() + timeout
        while any(consumer.position(tp) < end[tp] for tp in tps):
            assert time.monotonic() < deadline, f"could not read {self.topic} to its end"
            self.poll(0.2)
        return self.records

    def close(self) -> None:
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None


class OutputProgress:
    """Distinct source records ``(partition, offset)`` seen so far in an output topic."""

    def __init__(self, reader: TopicReader) -> None:
        self.reader = reader
        self.done: set[tuple[int, int]] = set()
        self._seen = 0

    def __call__(self, timeout: float = 0.05) -> int:
        """Read what arrived and return the number of distinct processed source records."""
        self.reader.poll(timeout)
        for rec in self.reader.records[self._seen :]:
            out = rec.json()
            self.done.add((out["partition"], out["offset"]))
        self._seen = len(self.reader.records)
        return len(self.done)


def read_topic(bootstrap: str, topic: str, timeout: float = 60.0) -> list[Record]:
    """Every record of ``topic`` up to its current end."""
    reader = TopicReader(bootstrap, topic)
    try:
        return reader.read_to_end(timeout)
    finally:
        reader.close()


def end_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, api_version=API_VERSION, group_id=None)
    try:
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic))]
        return {tp.partition: off for tp, off in consumer.end_offsets(tps).items()}
    finally:
        consumer.close()


def committed(bootstrap: str, group: str, topic: str) -> dict[int, int | None]:
    """The group's committed offsets per partition of ``topic`` (no group join)."""
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        api_version=API_VERSION,
        group_id=group,
        enable_auto_commit=False,
    )
    try:
        parts = consumer.partitions_for_topic(topic) or set()
        return {p: consumer.committed(TopicPartition(topic, p)) for p in sorted(parts)}
    finally:
        consumer.close()


def scrape(port: int) -> dict[str, float]:
    """Prometheus text exposition from 127.0.0.1:port as ``{series: value}``."""
    import urllib.request

    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    out: dict[str, float] = {}
    # Only "\n" ends a line in the exposition format; label values may hold other separators
    # (U+2028, U+0085, ...) that str.splitlines() would split on.
    for line in text.split("\n"):
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


# --------------------------------------------------------------------------- ticks


def market_ticks(keys: Sequence[str], n_per_key: int, seed: int) -> list[dict[str, Any]]:
    """Valid market ticks with alternating calm / wild volatility, interleaved across keys.

    Timestamps rise strictly per key (one day apart), so every tick is applied and counts
    towards ``n_samples_seen``. The volatility switch points differ per key.
    """
    rng = np.random.default_rng(seed)
    ticks: list[dict[str, Any]] = []
    for k, key in enumerate(keys):
        price = 50.0 + 13.0 * k
        period = 200 + 37 * k
        shocks = rng.normal(0.0, 1.0, n_per_key)
        volumes = rng.integers(1_000, 100_000, n_per_key)
        for i in range(n_per_key):
            vol = 0.03 if (i // period) % 2 else 0.008
            price *= math.exp(vol * shocks[i])
            ticks.append(
                {
                    "symbol": key,
                    "ts": 1.0e9 + 86400.0 * i + k,
                    "price": round(price, 8),
                    "volume": float(volumes[i]),
                }
            )
    ticks.sort(key=lambda t: (t["ts"] - t["ts"] % 86400.0, t["symbol"]))
    return ticks


def encode_ticks(
    ticks: Iterable[dict[str, Any]], partition_of: Mapping[str, int]
) -> list[tuple[bytes, bytes, int]]:
    return [
        (t["symbol"].encode(), json.dumps(t).encode(), partition_of[t["symbol"]]) for t in ticks
    ]


# --------------------------------------------------------------------------- reference


@dataclass
class Reference:
    """The uninterrupted run: per-key final state, last output record and tick count."""

    states: dict[str, dict[str, Any]]
    last_outputs: dict[str, dict[str, Any]]
    counts: dict[str, int]


def reference_run(settings: Any, sent: Sequence[Sent]) -> Reference:
    """Feed every sent tick, once, in offset order per partition, to one pipeline per key.

    Uses the service's own decoder, pipeline factory and output-record builder, in-process and
    without Kafka; per key the order is the partition's offset order, as in the service.
    """
    from streamgmm.ticks.decode import TickDecoder
    from streamgmm.ticks.encode import build_output_record, encode_output
    from streamgmm.ticks.keystate import make_pipeline
    from streamgmm.ticks.tick import Tick

    decoder = TickDecoder(settings)
    pipes: dict[str, Any] = {}
    last: dict[str, dict[str, Any]] = {}
    counts: dict[str, int] = {}
    for s in sorted(sent, key=lambda s: (s.partition, s.offset)):
        tick = decoder.decode(s.key, s.value, settings.input_topic, s.partition, s.offset)
        assert isinstance(tick, Tick), tick
        pipe = pipes.get(tick.key)
        if pipe is None:
            pipe = pipes[tick.key] = make_pipeline(settings)
        out = pipe.learn_predict_one({"ts": tick.ts, **tick.fields})
        last[tick.key] = json.loads(encode_output(build_output_record(tick, out)))
        counts[tick.key] = counts.get(tick.key, 0) + 1
    return Reference({k: p.to_state() for k, p in pipes.items()}, last, counts)


def last_snapshots(bootstrap: str, changelog_topic: str) -> dict[str, Any]:
    """Last snapshot per key in the changelog (decoded by the service's own codec)."""
    from streamgmm.service.snapshot import decode_snapshot

    snaps: dict[str, Any] = {}
    for rec in read_topic(bootstrap, changelog_topic):
        # Order within a key is the changelog partition's offset order (one partition per key).
        snap = decode_snapshot(rec.value)
        prev = snaps.get(snap.key)
        if prev is None or (rec.partition, rec.offset) > prev[0]:
            snaps[snap.key] = ((rec.partition, rec.offset), snap)
    return {k: v[1] for k, v in snaps.items()}


def state_deviation(got: Any, want: Any, path: str = "") -> float:
    """Largest relative-or-absolute difference between two JSON-like trees.

    Structure (keys, lengths, types of non-numbers) must match exactly; numbers are compared
    as ``|a - b| / max(1, |b|)``. Raises AssertionError naming the path on a structural
    mismatch.
    """
    if isinstance(want, bool) or want is None or isinstance(want, str):
        assert got == want, f"{path}: {got!r} != {want!r}"
        return 0.0
    if isinstance(want, int | float):
        assert isinstance(got, int | float) and not isinstance(got, bool), f"{path}: {got!r}"
        assert math.isfinite(got) == math.isfinite(want), f"{path}: {got!r} vs {want!r}"
        if not math.isfinite(want):
            assert got == want, f"{path}: {got!r} != {want!r}"
            return 0.0
        return abs(got - want) / max(1.0, abs(want))
    if isinstance(want, Mapping):
        assert isinstance(got, Mapping), f"{path}: {type(got).__name__}"
        assert set(map(str, got)) == set(map(str, want)), f"{path}: keys differ"
        g = {str(k): v for k, v in got.items()}
        return max(
            (state_deviation(g[str(k)], v, f"{path}.{k}") for k, v in want.items()), default=0.0
        )
    if isinstance(want, list | tuple):
        assert isinstance(got, list | tuple) and len(got) == len(want), f"{path}: length"
        return max(
            (
                state_deviation(a, b, f"{path}[{i}]")
                for i, (a, b) in enumerate(zip(got, want, strict=True))
            ),
            default=0.0,
        )
    raise AssertionError(f"{path}: unexpected type {type(want).__name__}")


def assert_states_close(got: Any, want: Any, what: str) -> float:
    """Assert two states / records agree to :data:`TOL`; return the largest deviation."""
    dev = state_deviation(json.loads(json.dumps(got)), json.loads(json.dumps(want)), what)
    assert dev <= TOL, f"{what}: deviation {dev:.3e} > {TOL}"
    return dev


def check_final_against_reference(
    bootstrap: str,
    settings: Any,
    ref: Reference,
    outputs: Sequence[Record],
) -> dict[str, Any]:
    """The exactness checks shared by the crash and failover tests; returns figures.

    - every sent tick has at least one output record; repeats of one source record are equal;
    - per key, the last output equals the reference's last output (floats to TOL);
    - per key, ``n_samples_seen`` of that output equals the ticks produced for the key;
    - per key, the changelog's last snapshot (written by the final clean stop) holds the
      reference's ``to_state()`` (to TOL) and ``next_offset`` = last offset + 1.
    """
    by_source: dict[tuple[int, int], list[dict[str, Any]]] = {}
    for rec in outputs:
        out = rec.json()
        by_source.setdefault((out["partition"], out["offset"]), []).append(out)
    repeats = 0
    for recs in by_source.values():
        for again in recs[1:]:
            repeats += 1
            assert_states_close(again, recs[0], "re-emitted output")
    last: dict[str, dict[str, Any]] = {}
    for recs in by_source.values():
        out = recs[0]
        if out["key"] not in last or out["offset"] > last[out["key"]]["offset"]:
            last[out["key"]] = out
    assert set(last) == set(ref.last_outputs)
    max_out_dev = 0.0
    for key, want in ref.last_outputs.items():
        assert last[key]["n_samples_seen"] == ref.counts[key], key
        max_out_dev = max(max_out_dev, assert_states_close(last[key], want, f"output {key}"))
    snaps = last_snapshots(bootstrap, settings.changelog_topic)
    max_state_dev = 0.0
    for key, want in ref.states.items():
        snap = snaps[key]
        assert snap.next_offset == ref.last_outputs[key]["offset"] + 1, key
        max_state_dev = max(
            max_state_dev, assert_states_close(snap.state["pipeline"], want, f"state {key}")
        )
    return {
        "distinct": len(by_source),
        "re_emitted": repeats,
        "max_output_dev": max_out_dev,
        "max_state_dev": max_state_dev,
    }
