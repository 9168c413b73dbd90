"""streamgmm run side by side with its peers: records/s and CPU per record, on one broker.

Runs on the embedded broker, in one run, over the same input topic (``--records`` JSON ticks
over ``--keys`` keys, ``--partitions`` partitions), each contender a fresh process tree
started as its users start it, one after another; the repeats alternate the contenders
(each repeat starts one further along the list), and the figures printed are medians:

- ``bare-confluent``: a confluent-kafka (librdkafka) group consumer, ``consume(500)`` ->
  ``json.loads`` -> ``produce`` of a small JSON record per input record, an asynchronous
  commit per batch; no model;
- ``quixstreams``: a quixstreams application keeping a per-key EWMA of squared log returns
  in quixstreams ``State`` (RocksDB, with its changelog topic), at-least-once (the default);
- ``bare-kafka-python``: the bare kafka-python loop of ``benchmarks/bench_service.py``;
- ``streamgmm``: ``streamgmm run`` with its defaults, as a subprocess; more variants of it
  (``--variant``, or :data:`STREAMGMM_VARIANTS`) are the same command with ``--set`` flags.

What is measured, per run:

- records/s, after the fact, from the output records: each carries its source partition and
  offset, and its broker timestamp (CreateTime, stamped when the producer sends it). The
  input progress at a moment is the sum over partitions of the highest source offset output
  by then, plus one; the rate is the progress made between the first output past
  ``--warmup`` records and the last output, over the time between them. With one output per
  input record this is the count of outputs; with fewer (``emit_policy = "on_change"``) it
  is still the input records handled. Outputs are read back by consuming them (the embedded
  broker under-reports end offsets). Nothing watches the contenders while they run, except
  the ``streamgmm run`` metrics endpoint, scraped once a second to know when it is done;
- CPU seconds per 1,000 records of the contender's process tree (the process and its
  descendants, e.g. the service's producer process), read from ``/proc`` every 50 ms and
  interpolated at the two timestamps that bound the rate's window; the same for the broker;
- how busy the machine was: cores used by everything else during the window (all busy CPU
  time from ``/proc/stat``, less the contender's and the broker's), and the load averages.

Ratios are medians of the per-repeat ratios (each repeat's contenders ran minutes apart, so
a ratio within a repeat shares most of its noise).

Usage::

    python3 benchmarks/bench_peers.py [--records 300000] [--keys 300] [--repeats 3]
    python3 benchmarks/bench_peers.py --records 30000 --warmup 3000 --repeats 1   # quick
    python3 benchmarks/bench_peers.py --with streamgmm-on-change
    python3 benchmarks/bench_peers.py --variant one-process=output.producer_process=false

Needs confluent-kafka and quixstreams (``pip install -e '.[dev]'``). Linux only (``/proc``).
"""

from __future__ import annotations

import argparse
import bisect
import contextlib
import json
import math
import os
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bench_service import _scrape, _start_service, _ticks, _wait_metrics, kafka_python_loop
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from streamgmm.broker import EmbeddedBroker, free_port

HERE = Path(__file__).resolve().parent
#: Group timeouts every contender uses: a first join on the embedded broker waits about
#: half the session timeout (librdkafka's default of 45 s would make it 23 s).
SESSION_TIMEOUT_MS = 6000
HEARTBEAT_MS = 500
#: quixstreams asks for the input topic's retention when it creates its changelog, and the
#: embedded broker describes only the configs a topic was created with.
INPUT_TOPIC_CONFIG = {"retention.ms": "604800000", "retention.bytes": "-1"}
BARE = ("bare-confluent", "quixstreams", "bare-kafka-python")
#: ``streamgmm run`` variants: label -> ``--set SECTION.KEY=VALUE`` flags. A label listed in
#: DEFAULT_CONTENDERS runs by default; the others with ``--with LABEL``.
STREAMGMM_VARIANTS: dict[str, tuple[str, ...]] = {
    "streamgmm": (),
    "streamgmm-on-change": ("output.emit_policy=on_change",),
    # producer_process = "auto" (the default) means false with confluent.
    "streamgmm-confluent": ("kafka.client=confluent",),
    "streamgmm-confluent-process": ("kafka.client=confluent", "output.producer_process=true"),
}
DEFAULT_CONTENDERS = (
    "bare-confluent", "quixstreams", "bare-kafka-python", "streamgmm", "streamgmm-confluent",
)  # fmt: skip
#: The goals: (variant whose --set flags contain this, peer, figure, bound): the variant's
#: figure over the peer's is at least (rate) or at most (CPU) the bound.
GOALS = (
    ("kafka.client=confluent", "quixstreams", "rate", 2.0),
    ("kafka.client=confluent", "quixstreams", "cpu", 0.5),
    ("kafka.client=confluent", "bare-confluent", "rate", 0.6),
    ("", "quixstreams", "rate", 1.0),
)
_CLK_TCK = os.sysconf("SC_CLK_TCK")


# =============================================================================== workers
# Each contender but streamgmm runs as `python bench_peers.py --worker NAME ...`, so that it
# is a process tree of its own, measured like the service.


def worker_bare_confluent(bootstrap: str, topic: str, output: str, group: str, n: int) -> None:
    """consume(500) -> json.loads -> produce, asynchronous commit per batch; n records."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "session.timeout.ms": SESSION_TIMEOUT_MS,
            "heartbeat.interval.ms": HEARTBEAT_MS,
        }
    )
    producer = Producer({"bootstrap.servers": bootstrap})
    consumer.subscribe([topic])
    moved = 0
    loads, dumps = json.loads, json.dumps
    while moved < n:
        msgs = consumer.consume(500, 0.5)
        for msg in msgs:
            if msg.error():
                raise KafkaException(msg.error())
            tick = loads(msg.value())
            out = {
                "key": msg.key().decode(),
                "ts": tick["ts"],
                "price": tick["price"],
                "partition": msg.partition(),
                "offset": msg.offset(),
            }
            value = dumps(out, separators=(",", ":")).encode()
            while True:
                try:
                    producer.produce(output, value, msg.key())
                    break
                except BufferError:  # librdkafka's queue is full: let it send
                    producer.poll(0.05)
        if msgs:
            producer.poll(0)
            consumer.commit(asynchronous=True)
            moved += len(msgs)
    producer.flush(60)
    consumer.close()


def worker_quixstreams(bootstrap: str, topic: str, output: str, group: str, n: int) -> None:
    """A quixstreams app: per-key EWMA of squared log returns in State; n outputs."""
    from quixstreams import Application, State, message_context

    state_dir = tempfile.mkdtemp(prefix="bench-peers-quix-")
    try:
        app = Application(
            broker_address=bootstrap,
            consumer_group=group,
            auto_offset_reset="earliest",
            state_dir=state_dir,
            consumer_extra_config={
                "session.timeout.ms": SESSION_TIMEOUT_MS,
                "heartbeat.interval.ms": HEARTBEAT_MS,
            },
            loglevel="WARNING",
        )
        source = app.topic(topic, key_deserializer="str", value_deserializer="json")
        sink = app.topic(output, key_serializer="str", value_serializer="json")

        def ewma(tick: dict[str, float], state: State) -> dict[str, object]:
            price = tick["price"]
            last = state.get("ewma")
            var = 0.0
            if last is not None:
                r = math.log(price / last[0])
                var = 0.94 * last[1] + 0.06 * r * r
            state.set("ewma", [price, var])
            ctx = message_context()
            return {
                "key": tick["symbol"],
                "ts": tick["ts"],
                "var": var,
                "partition": ctx.partition,
                "offset": ctx.offset,
            }

        sdf = app.dataframe(source).apply(ewma, stateful=True)
        # quixstreams stamps an output with its input's timestamp; the rate needs the time it
        # was produced (the embedded broker ignores LogAppendTime).
        sdf = sdf.set_timestamp(lambda _value, _key, _ts, _headers: int(time.time() * 1000))
        sdf.to_topic(sink)
        app.run(count=n, collect=False)
    finally:
        shutil.rmtree(state_dir, ignore_errors=True)


def worker_bare_kafka_python(bootstrap: str, topic: str, output: str, group: str, n: int) -> None:
    """The bare kafka-python loop of bench_service.py; n records."""
    kafka_python_loop(
        {"bootstrap_servers": bootstrap, "api_version": (2, 5)}, topic, output, group, n
    )


WORKERS: dict[str, Callable[[str, str, str, str, int], None]] = {
    "bare-confluent": worker_bare_confluent,
    "quixstreams": worker_quixstreams,
    "bare-kafka-python": worker_bare_kafka_python,
}


# =============================================================================== CPU
def _proc_cpu(pid: int) -> float | None:
    """User + system CPU seconds of one process (all its threads), or None if it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK


def _descendants(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        parent = todo.pop()
        try:
            tasks = os.listdir(f"/proc/{parent}/task")
        except OSError:
            continue
        for tid in tasks:
            with contextlib.suppress(OSError):
                children = Path(f"/proc/{parent}/task/{tid}/children").read_text()
                kids = [int(c) for c in children.split()]
                found += kids
                todo += kids
    return found


def _machine_busy() -> float:
    """Busy CPU seconds of the whole machine since boot (all cores)."""
    with open("/proc/stat") as stat:
        parts = stat.readline().split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in parts[:8])
    return (user + nice + system + irq + softirq + steal) / _CLK_TCK


class TreeSampler(threading.Thread):
    """CPU of a process tree, of the broker and of the machine, every ``interval`` seconds.

    A process of the tree that exits keeps its last reading, so the tree's CPU never drops.
    """

    def __init__(self, root: int, broker: int, interval: float = 0.05) -> None:
        super().__init__(daemon=True)
        self.root, self.broker, self.interval = root, broker, interval
        self.times: list[float] = []
        self.tree: list[float] = []
        self.broker_cpu: list[float] = []
        self.machine: list[float] = []
        self._last: dict[int, float] = {}
        self._done = threading.Event()

    def run(self) -> None:
        members = [self.root]
        tick = 0
        while not self._done.is_set():
            if tick % 10 == 0:
                members = [self.root, *_descendants(self.root)]
            tick += 1
            now = time.time()
            for pid in members:
                cpu = _proc_cpu(pid)
                if cpu is not None:
                    self._last[pid] = max(cpu, self._last.get(pid, 0.0))
            self.times.append(now)
            self.tree.append(sum(self._last.values()))
            self.broker_cpu.append(_proc_cpu(self.broker) or 0.0)
            self.machine.append(_machine_busy())
            self._done.wait(self.interval)

    def stop(self) -> None:
        self._done.set()
        self.join()

    def at(self, series: list[float], t: float) -> float:
        """``series`` at wall time ``t``, interpolated between samples."""
        i = bisect.bisect_left(self.times, t)
        if i <= 0:
            return series[0]
        if i >= len(self.times):
            return series[-1]
        t0, t1 = self.times[i - 1], self.times[i]
        w = (t - t0) / (t1 - t0) if t1 > t0 else 1.0
        return series[i - 1] + w * (series[i] - series[i - 1])


# =============================================================================== broker I/O
def _admin(bootstrap: str) -> AdminClient:
    return AdminClient({"bootstrap.servers": bootstrap})


def create_topic(bootstrap: str, name: str, partitions: int, config: dict[str, str]) -> None:
    admin = _admin(bootstrap)  # held until the answer: a dropped client cancels its requests
    futures = admin.create_topics([NewTopic(name, partitions, 1, config=config)])
    for future in futures.values():
        future.result(30)


def delete_topics(bootstrap: str, group: str) -> None:
    """Delete a run's topics (``GROUP.*``, and quixstreams' ``changelog__GROUP--*``)."""
    admin = _admin(bootstrap)
    names = [
        t
        for t in admin.list_topics(timeout=10).topics
        if t.startswith(f"{group}.") or t.startswith(f"changelog__{group}--")
    ]
    if names:
        for future in admin.delete_topics(names).values():
            with contextlib.suppress(KafkaException):
                future.result(30)


def produce_input(bootstrap: str, topic: str, records: Sequence[tuple[bytes, bytes]]) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20})
    for key, value in records:
        while True:
            try:
                producer.produce(topic, value, key)
                break
            except BufferError:
                producer.poll(0.05)
    if producer.flush(120):
        raise RuntimeError("the input was not all acknowledged")


def read_outputs(
    bootstrap: str, topic: str, expect: int | None, timeout: float = 300.0
) -> list[tuple[int, int, int]]:
    """``(timestamp ms, source partition, source offset)`` of every record of ``topic``.

    Reads until ``expect`` records came and then nothing for 1 s, or (``expect`` None) until
    nothing came for 3 s.
    """
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "bench-peers-reader",
            "enable.auto.commit": False,
        }
    )
    try:
        meta = consumer.list_topics(topic, timeout=10).topics[topic]
        consumer.assign([TopicPartition(topic, p, 0) for p in meta.partitions])
        out: list[tuple[int, int, int]] = []
        deadline = time.monotonic() + timeout
        last_new = time.monotonic()
        idle = 3.0 if expect is None else 1.0
        while time.monotonic() < deadline:
            msgs = consumer.consume(10000, 0.2)
            for msg in msgs:
                if msg.error():
                    raise KafkaException(msg.error())
                obj = json.loads(msg.value())
                out.append((msg.timestamp()[1], obj["partition"], obj["offset"]))
            if msgs:
                last_new = time.monotonic()
            elif (expect is None or len(out) >= expect) and time.monotonic() - last_new > idle:
                break
        return out
    finally:
        consumer.close()


# =============================================================================== one run
@dataclass
class Result:
    contender: str
    repeat: int
    rate: float  # input records per second
    cpu_per_1k: float  # CPU seconds of the process tree per 1,000 records
    cores: float  # the tree's CPU seconds per wall second in the window
    broker_per_1k: float
    others: float  # cores busy with everything else during the window
    outputs: int
    wall: float  # the whole run, start-up and read-back included


@dataclass
class Bench:
    broker: EmbeddedBroker
    topic: str
    n: int
    warm: int
    workdir: Path
    variants: dict[str, tuple[str, ...]] = field(default_factory=dict)
    commands: dict[str, str] = field(default_factory=dict)

    def run(self, contender: str, repeat: int) -> Result:
        started = time.monotonic()
        name = f"peers-{contender}-{repeat}"
        output = f"{name}.out"
        bootstrap = self.broker.bootstrap_servers
        create_topic(bootstrap, output, len(self._partitions()), {})
        if contender in WORKERS or contender in self.commands:
            where = {
                "bootstrap": bootstrap,
                "topic": self.topic,
                "output": output,
                "group": name,
                "records": self.n,
            }
            argv = (
                shlex.split(self.commands[contender].format(**where))
                if contender in self.commands
                else [
                    sys.executable,
                    str(HERE / "bench_peers.py"),
                    "--worker",
                    contender,
                    *(f"--{k}={v}" for k, v in where.items()),
                ]
            )
            with open(self.workdir / f"{name}.log", "wb") as log:
                proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=log)
            sampler = self._sample(proc.pid)
            try:
                code = proc.wait(900)
            finally:
                sampler.stop()
            if code != 0:
                raise RuntimeError(f"{contender} exited with {code}; see {self.workdir}/{name}.log")
            expect: int | None = self.n
        else:
            sampler, expect = self._run_streamgmm(contender, name, output)
        outputs = read_outputs(bootstrap, output, expect)
        delete_topics(bootstrap, name)
        return self._figures(contender, repeat, outputs, sampler, time.monotonic() - started)

    def _partitions(self) -> list[int]:
        consumer = Consumer({"bootstrap.servers": self.broker.bootstrap_servers, "group.id": "x"})
        try:
            return list(consumer.list_topics(self.topic, timeout=10).topics[self.topic].partitions)
        finally:
            consumer.close()

    def _sample(self, pid: int) -> TreeSampler:
        assert self.broker.pid is not None
        sampler = TreeSampler(pid, self.broker.pid)
        sampler.start()
        return sampler

    def _run_streamgmm(self, label: str, name: str, output: str) -> tuple[TreeSampler, int | None]:
        sets = self.variants[label]
        args = tuple(arg for item in sets for arg in ("--set", item))
        port = free_port()
        proc = _start_service(
            self.broker, self.topic, name, port, self.workdir, args, **{"topics.output": output}
        )
        sampler = self._sample(proc.pid)
        try:
            _wait_metrics(port)
            deadline = time.monotonic() + 900
            while _scrape(port).get("streamgmm_records_consumed_total", 0.0) < self.n:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{label} did not consume the input; see {self.workdir}")
                time.sleep(1.0)
        finally:
            # SIGTERM: the last batch's outputs are flushed by the final checkpoint.
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(120)
            sampler.stop()
        if code != 0:
            raise RuntimeError(f"{label} exited with {code}; see {self.workdir}/{name}.log")
        every_tick = not any(s.startswith("output.emit_policy=") for s in sets)
        return sampler, self.n if every_tick else None

    def _figures(
        self,
        contender: str,
        repeat: int,
        outputs: list[tuple[int, int, int]],
        sampler: TreeSampler,
        wall: float,
    ) -> Result:
        outputs.sort()
        highest: dict[int, int] = {}
        progress = 0
        first: tuple[float, int] | None = None
        for stamp, partition, offset in outputs:
            previous = highest.get(partition, -1)
            if offset > previous:
                progress += offset - previous
                highest[partition] = offset
            if first is None and progress > self.warm:
                first = (stamp / 1000.0, progress)
        last = (outputs[-1][0] / 1000.0, progress)
        if first is None or last[0] <= first[0]:
            raise RuntimeError(f"{contender}: too few outputs past the warm-up ({len(outputs)})")
        if progress < self.n and len(outputs) >= self.n:
            print(f"  warning: {contender} outputs cover {progress} of {self.n} input records")
        records = last[1] - first[1]
        seconds = last[0] - first[0]

        def used(series: list[float]) -> float:
            return sampler.at(series, last[0]) - sampler.at(series, first[0])

        tree, broker, machine = used(sampler.tree), used(sampler.broker_cpu), used(sampler.machine)
        return Result(
            contender,
            repeat,
            rate=records / seconds,
            cpu_per_1k=1000.0 * tree / records,
            cores=tree / seconds,
            broker_per_1k=1000.0 * broker / records,
            others=(machine - tree - broker) / seconds,
            outputs=len(outputs),
            wall=wall,
        )


# =============================================================================== report
def _row(label: str, r: Result | dict[str, float]) -> str:
    get = (lambda k: getattr(r, k)) if isinstance(r, Result) else r.__getitem__
    return (
        f"{label:<28}{get('rate'):>11,.0f}{get('cpu_per_1k'):>10.4f}{get('cores'):>7.2f}"
        f"{get('broker_per_1k'):>10.4f}{get('others'):>8.2f}"
    )


HEADER = f"{'':<28}{'records/s':>11}{'CPU s/1k':>10}{'cores':>7}{'broker/1k':>10}{'others':>8}"


def report(results: list[Result], variants: dict[str, tuple[str, ...]]) -> None:
    contenders = list(dict.fromkeys(r.contender for r in results))
    by = {c: [r for r in results if r.contender == c] for c in contenders}
    print("\nmedians over the repeats")
    print(HEADER)
    for c in contenders:
        keys = ("rate", "cpu_per_1k", "cores", "broker_per_1k", "others")
        print(_row(c, {k: statistics.median(getattr(r, k) for r in by[c]) for k in keys}))

    def ratio(a: str, b: str, what: str) -> float | None:
        pairs = {r.repeat: getattr(r, what) for r in by.get(b, [])}
        values = [getattr(r, what) / pairs[r.repeat] for r in by.get(a, []) if r.repeat in pairs]
        return statistics.median(values) if values else None

    print("\nratios (median of the per-repeat ratios)")
    for label in (c for c in contenders if c not in BARE):
        for peer in ("quixstreams", "bare-confluent", "bare-kafka-python"):
            rate, cpu = ratio(label, peer, "rate"), ratio(label, peer, "cpu_per_1k")
            if rate is None or cpu is None:
                continue
            line = f"{label} / {peer}:"
            print(f"  {line:<48} rate {rate:5.2f}x   CPU per record {cpu:5.2f}x")
        if label not in variants:
            continue  # the goals are those of streamgmm run
        sets = ",".join(variants[label])
        for marker, peer, what, bound in GOALS:
            # A goal of the confluent client, or (no marker) of the default client.
            if (marker not in sets) if marker else ("kafka.client=" in sets):
                continue
            value = ratio(label, peer, "rate" if what == "rate" else "cpu_per_1k")
            if value is None:
                continue
            sense = ">=" if what == "rate" else "<="
            met = value >= bound if what == "rate" else value <= bound
            print(
                f"  goal: {label} {what} / {peer} {sense} {bound:.1f}x: "
                f"{value:.2f}x {'met' if met else 'NOT met'}"
            )
    for peer in ("quixstreams", "bare-kafka-python"):
        rate = ratio(peer, "bare-confluent", "rate")
        if rate is not None:
            cpu = ratio(peer, "bare-confluent", "cpu_per_1k")
            print(f"  {peer} / bare-confluent: rate {rate:.2f}x, CPU per record {cpu:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=300_000)
    parser.add_argument("--keys", type=int, default=300)
    parser.add_argument("--partitions", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=None, help="default: 10%% of --records")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--only", default=None, help="comma-separated contenders to run (default: all default)"
    )
    parser.add_argument(
        "--with", dest="extra", action="append", default=[], metavar="LABEL",
        help=f"add a streamgmm variant of {sorted(STREAMGMM_VARIANTS)}",
    )  # fmt: skip
    parser.add_argument(
        "--variant", action="append", default=[], metavar="LABEL=SECTION.KEY=VALUE[,...]",
        help="add a streamgmm run variant with these --set flags",
    )  # fmt: skip
    parser.add_argument(
        "--command", action="append", default=[], metavar="LABEL=COMMAND",
        help="add a contender run as COMMAND, with {bootstrap} {topic} {output} {group} "
        "{records} filled in; it must output one record per input record, each a JSON object "
        'with the source "partition" and "offset", and exit when done',
    )  # fmt: skip
    # The workers' own arguments (the harness starts them).
    parser.add_argument("--worker", choices=sorted(WORKERS), help=argparse.SUPPRESS)
    parser.add_argument("--bootstrap", help=argparse.SUPPRESS)
    parser.add_argument("--topic", help=argparse.SUPPRESS)
    parser.add_argument("--output", help=argparse.SUPPRESS)
    parser.add_argument("--group", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker:
        WORKERS[args.worker](args.bootstrap, args.topic, args.output, args.group, args.records)
        return

    variants = dict(STREAMGMM_VARIANTS)
    for item in args.variant:
        label, _, sets = item.partition("=")
        variants[label] = tuple(s for s in sets.split(",") if s)
    commands = dict(item.partition("=")[::2] for item in args.command)
    contenders = list(args.only.split(",") if args.only else DEFAULT_CONTENDERS)
    contenders += [c for c in [*args.extra, *(v.partition("=")[0] for v in args.variant),
                               *commands] if c not in contenders]  # fmt: skip
    unknown = [c for c in contenders if c not in WORKERS and c not in variants | commands]
    if unknown:
        parser.error(f"unknown contenders {unknown}")
    warm = args.warmup if args.warmup is not None else args.records // 10

    workdir = Path(tempfile.mkdtemp(prefix="bench-peers-"))
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"logs in {workdir}; load averages at start (1, 5, 15 min): {load}")
    results: list[Result] = []
    with EmbeddedBroker() as broker:
        topic = "peers-in"
        create_topic(broker.bootstrap_servers, topic, args.partitions, INPUT_TOPIC_CONFIG)
        records = _ticks(args.records, args.keys)
        produce_input(broker.bootstrap_servers, topic, records)
        print(
            f"{len(records):,} JSON ticks over {args.keys} keys, {args.partitions} partitions, "
            f"embedded tansu broker, {os.cpu_count()} CPUs; warm-up {warm:,} records; "
            f"{args.repeats} repeats of {', '.join(contenders)}"
        )
        for label in contenders:
            if variants.get(label):
                print(f"  {label}: streamgmm run --set {' --set '.join(variants[label])}")
        bench = Bench(broker, topic, len(records), warm, workdir, variants, commands)
        print("\n" + f"{'run':<28}" + HEADER[28:] + f"{'outputs':>9}{'wall s':>8}")
        for repeat in range(args.repeats):
            shift = repeat % len(contenders)
            for contender in contenders[shift:] + contenders[:shift]:
                result = bench.run(contender, repeat)
                results.append(result)
                print(
                    _row(f"{repeat + 1} {contender}", result)
                    + f"{result.outputs:>9,}{result.wall:>8.0f}",
                    flush=True,
                )
    report(results, variants)
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"\nload averages at the end (1, 5, 15 min): {load}")
    print(
        "cores: the contender's CPU seconds per second in the window; others: cores busy with "
        "everything else on the machine then (2 cores in all)"
    )


if __name__ == "__main__":
    main()
