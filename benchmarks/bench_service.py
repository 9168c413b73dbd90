"""Service throughput against a bare kafka-python loop, and RSS with many keys.

Runs on the embedded broker, in one process tree, and prints figures measured in this run:

1. ``bare``: a kafka-python group consumer that polls, ``json.loads`` each value and produces a
   small JSON record per input record (no model, same producer batching as the service), and
   commits after each poll, until every record is moved and flushed;
2. ``service``: ``streamgmm run`` (a subprocess, as users run it) over the same records;
3. RSS of a ``streamgmm run`` process tree (the service and its producer process) before data
   and after it holds ``--keys`` keys.

Both rates are timed the same way, from the output topics after the runs: records per second
between the broker timestamps (CreateTime, stamped when the producer sends) of the output
record of input ``--warmup`` and of the last one. Neither loop is watched while it runs, so
the measurement costs neither any CPU.

Usage::

    python3 benchmarks/bench_service.py [--records 150000] [--keys 10000] [--ticks-per-key 12]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from streamgmm.broker import EmbeddedBroker, free_port

REPO = Path(__file__).resolve().parents[1]
PARTITIONS = 3


def _ticks(
    n_records: int, n_keys: int, seed: int = 0, prefix: str = "S"
) -> list[tuple[bytes, bytes]]:
    rng = np.random.default_rng(seed)
    per_key = max(1, n_records // n_keys)
    prices = 100.0 * np.exp(np.cumsum(rng.normal(0, 0.01, size=(n_keys, per_key)), axis=1))
    out = []
    for i in range(per_key):
        for k in range(n_keys):
            tick = {
                "symbol": f"{prefix}{k:05d}",
                "ts": 1.0e9 + 86400.0 * i,
                "price": round(float(prices[k, i]), 6),
                "volume": 1000.0,
            }
            out.append((tick["symbol"].encode(), json.dumps(tick).encode()))
    return out[:n_records]


def _produce(broker: EmbeddedBroker, topic: str, records: list[tuple[bytes, bytes]]) -> None:
    producer = KafkaProducer(**broker.client_kwargs(), linger_ms=20, batch_size=256 * 1024)
    for key, value in records:
        producer.send(topic, key=key, value=value)
    producer.flush()
    producer.close()


def _output_rate(broker: EmbeddedBroker, topic: str, n: int, warm: int) -> float:
    """Records/s between the CreateTime of output record ``warm`` and of the last one."""
    reader = KafkaConsumer(
        **broker.client_kwargs(),
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        consumer_timeout_ms=3000,
    )
    parts = [TopicPartition(topic, p) for p in reader.partitions_for_topic(topic) or ()]
    reader.assign(parts)
    reader.seek_to_beginning(*parts)
    stamps = sorted(rec.timestamp for rec in reader)
    reader.close()
    if len(stamps) < n:
        raise RuntimeError(f"{topic} holds {len(stamps)} records, expected {n}")
    return (n - 1 - warm) / ((stamps[n - 1] - stamps[warm]) / 1000.0)


def kafka_python_loop(
    client_kwargs: dict[str, object], topic: str, output: str, group: str, n: int
) -> None:
    """Move ``n`` records: poll, ``json.loads``, produce a small JSON record, commit per poll."""
    consumer = KafkaConsumer(
        topic,
        **client_kwargs,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        session_timeout_ms=6000,
        heartbeat_interval_ms=500,
        max_poll_records=500,
    )
    # The same producer batching as the service uses (streamgmm/service/runner.py).
    producer = KafkaProducer(**client_kwargs, linger_ms=20, batch_size=256 * 1024)
    moved = 0
    while moved < n:
        batch = consumer.poll(timeout_ms=500)
        for recs in batch.values():
            for rec in recs:
                tick = json.loads(rec.value)
                out = {
                    "key": rec.key.decode(),
                    "ts": tick["ts"],
                    "price": tick["price"],
                    "partition": rec.partition,
                    "offset": rec.offset,
                }
                producer.send(
                    output, key=rec.key, value=json.dumps(out, separators=(",", ":")).encode()
                )
            moved += len(recs)
        if batch:
            consumer.commit()
    producer.flush()
    producer.close()
    consumer.close()


def bare_loop(broker: EmbeddedBroker, topic: str, n: int, warm: int) -> float:
    """Records/s of consume → json.loads → produce (see the module docstring)."""
    kafka_python_loop(broker.client_kwargs(), topic, f"{topic}.bare", "bench-bare", n)
    return _output_rate(broker, f"{topic}.bare", n, warm)


def _scrape(port: int) -> dict[str, float]:
    for attempt in range(5):
        try:
            text = (
                urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5)
                .read()
                .decode()
            )
            break
        except ConnectionError:
            # The single-threaded HTTP server can drop a connection while the service is busy.
            if attempt == 4:
                raise
            time.sleep(0.05)
    values = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            values[name] = float(value)
    return values


def _rss_mib(pid: int) -> float:
    """RSS of ``pid`` plus its child processes (the service's producer process)."""
    total = 0.0
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    for member in (pid, *map(int, children)):
        for line in Path(f"/proc/{member}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1]) / 1024
    return total


def _start_service(
    broker: EmbeddedBroker,
    topic: str,
    group: str,
    port: int,
    workdir: Path,
    args: tuple[str, ...] = (),
    **extra: object,
) -> subprocess.Popen[bytes]:
    """``streamgmm run --config FILE *args`` with the settings below and ``extra`` in FILE."""
    sections: dict[str, dict[str, object]] = {
        "kafka": {
            "bootstrap_servers": broker.bootstrap_servers,
            "group_id": group,
            "session_timeout_ms": 6000,
            "heartbeat_interval_ms": 500,
            "request_timeout_ms": 15000,
        },
        "topics": {"input": topic},
        "metrics": {"port": port},
    }
    for dotted, value in extra.items():
        section, key = dotted.split(".", 1)
        sections.setdefault(section, {})[key] = value
    lines = []
    for section, values in sections.items():
        lines.append(f"[{section}]")
        lines += [f"{key} = {json.dumps(value)}" for key, value in values.items()]
    config = workdir / f"{group}.toml"
    config.write_text("\n".join(lines) + "\n")
    with open(workdir / f"{group}.log", "wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "streamgmm.cli", "run", "--config", str(config), *args],
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=log,
            env={**os.environ},
        )


def _wait_metrics(port: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            _scrape(port)
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("service metrics never came up")


def service_run(
    broker: EmbeddedBroker,
    topic: str,
    n: int,
    warm: int,
    workdir: Path,
    producer_process: bool = True,
) -> float:
    """Ticks/s of ``streamgmm run`` (see the module docstring).

    The first ``warm`` ticks absorb one-off start-up costs (numba compiling or loading the
    kernels). Completion is read from the service's metrics twice a second.
    """
    port = free_port()
    group = "bench-svc" if producer_process else "bench-svc-one-process"
    output = f"{topic}.{group}"
    proc = _start_service(
        broker,
        topic,
        group,
        port,
        workdir,
        **{
            "checkpoint.every_records": 10000,
            "checkpoint.every_seconds": 5.0,
            "topics.output": output,
            "output.producer_process": producer_process,
        },
    )
    try:
        _wait_metrics(port)
        deadline = time.monotonic() + 600
        while (m := _scrape(port)).get("streamgmm_records_produced_total", 0.0) < n:
            if time.monotonic() > deadline:
                raise RuntimeError(f"service did not produce {n} records; see {workdir}")
            time.sleep(0.5)
        count = m.get("streamgmm_checkpoint_duration_seconds_count", 0.0)
        total = m.get("streamgmm_checkpoint_duration_seconds_sum", 0.0)
        print(f"  ({group}: {count:.0f} checkpoints took {total:.2f} s in all)")
        return _output_rate(broker, output, n, warm)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)


def service_rss(
    broker: EmbeddedBroker, n_keys: int, ticks_per_key: int, workdir: Path
) -> tuple[float, float, float]:
    """RSS (MiB) of ``streamgmm run`` with 5 warm keys, and once it holds ``n_keys`` more."""
    topic = "bench-rss"
    broker.create_topics({topic: PARTITIONS})
    port = free_port()
    # warmup 10: every key fits its mixture, so the figure is for warm models.
    proc = _start_service(
        broker,
        topic,
        "bench-rss",
        port,
        workdir,
        **{"detector.warmup": 10, "state.max_keys_in_memory": n_keys + 1, "metrics.max_keys": 1000},
    )
    try:
        _wait_metrics(port)
        # Baseline after a few keys have gone through the models, so that the one-off memory of
        # compiling / loading the numba kernels is not charged to the keys.
        warm = _ticks(500, 5, seed=3, prefix="RSSWARM")
        _produce(broker, topic, warm)
        while _scrape(port).get("streamgmm_records_produced_total", 0.0) < len(warm):
            time.sleep(0.2)
        idle = _rss_mib(proc.pid)
        records = _ticks(n_keys * ticks_per_key, n_keys, seed=1)
        started = time.perf_counter()
        _produce(broker, topic, records)
        while _scrape(port).get("streamgmm_records_produced_total", 0.0) < len(records) + len(warm):
            time.sleep(0.2)
        elapsed = time.perf_counter() - started
        loaded = _rss_mib(proc.pid)
        return idle, loaded, len(records) / elapsed
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=150000)
    parser.add_argument("--warmup", type=int, default=3000)
    parser.add_argument("--symbols", type=int, default=30)
    parser.add_argument("--keys", type=int, default=10000)
    parser.add_argument("--ticks-per-key", type=int, default=12)
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="bench-service-"))
    print(f"service logs in {workdir}")
    with EmbeddedBroker() as broker:
        warmup = _ticks(args.warmup, 10, seed=2, prefix="WARM")
        records = _ticks(args.records, args.symbols)
        broker.create_topics({"bench-in": PARTITIONS})
        _produce(broker, "bench-in", warmup + records)
        n = len(warmup) + len(records)
        from kafka.record import util as record_util

        crc = "C crc32c" if record_util.crc32c_c is not None else "pure-Python crc32c"
        print(
            f"{len(records)} ticks over {args.symbols} keys (after {len(warmup)} warm-up "
            f"ticks), {PARTITIONS} partitions, embedded tansu broker, {os.cpu_count()} CPUs, "
            f"kafka-python {crc}"
        )
        bare = bare_loop(broker, "bench-in", n, len(warmup))
        print(f"bare kafka-python consume->decode->produce: {bare:10.0f} records/s")
        svc = service_run(broker, "bench-in", n, len(warmup), workdir)
        print(f"streamgmm run (end to end)               : {svc:10.0f} ticks/s")
        print(f"ratio service / bare                     : {svc / bare:10.2f}")
        one = service_run(broker, "bench-in", n, len(warmup), workdir, producer_process=False)
        print(
            f"  with producer_process = false          : {one:10.0f} ticks/s "
            f"(ratio {one / bare:.2f})"
        )
        idle, loaded, rate = service_rss(broker, args.keys, args.ticks_per_key, workdir)
        print(f"RSS streamgmm run, 5 keys, kernels loaded: {idle:10.1f} MiB")
        label = f"RSS with {args.keys} more warm keys"
        print(
            f"{label:<41}: {loaded:10.1f} MiB "
            f"({(loaded - idle) * 1024 / args.keys:.1f} KiB/key; {rate:.0f} ticks/s while "
            f"creating keys)"
        )


if __name__ == "__main__":
    main()
