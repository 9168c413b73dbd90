"""The service: the poll loop, rebalances and the Kafka clients' lifecycle.

Owns the orchestration: poll a batch, decode it (:mod:`streamgmm.ticks.decode`), hand each
key's ticks to the per-key tick rules (:mod:`streamgmm.ticks.rules`, which encode their output
records with :mod:`streamgmm.ticks.encode`), send records and dead letters to the sink
(:mod:`.sink` or a :class:`.kafka.Producer`), and checkpoint (:mod:`.checkpoint`) every
``[checkpoint] every_records`` records or ``every_seconds``, on revoke and on shutdown.
Per-key state lives in the key store (:mod:`.keystore`). The runner holds no maths (the
detectors do), no wire formats and no per-key rules.

One thread does all processing. Rebalance callbacks run while that thread is parked in
``poll()`` (see :mod:`.kafka`), so per-key state has a single writer. The runner knows no Kafka
library: ``[kafka] client`` picks the implementation of :mod:`.kafka`.
"""

from __future__ import annotations

import contextlib
import difflib
import gc
import logging
import signal
import threading
import time
from collections.abc import Callable, Sequence
from types import FrameType
from typing import Any

from streamgmm._precompile import precompile
from streamgmm.exits import EXIT_FAILURE, EXIT_USAGE
from streamgmm.service.checkpoint import BadSnapshot, Changelog, ChangelogError, Checkpointer
from streamgmm.service.dead_letters import dead_letter_headers
from streamgmm.service.kafka import (
    BrokerError,
    Client,
    DeliveryError,
    GroupConsumer,
    Producer,
    Reader,
    TopicPartition,
    ensure_reachable,
    get_client,
)
from streamgmm.service.keystore import KeyStore
from streamgmm.service.metrics import ServiceMetrics
from streamgmm.service.sink import ProducerProcess
from streamgmm.settings.service import Settings, use_producer_process
from streamgmm.settings.spec import ConfigError
from streamgmm.ticks.decode import TickDecoder
from streamgmm.ticks.encode import build_output_record
from streamgmm.ticks.rules import KeyRun, TickRules
from streamgmm.ticks.tick import DeadLetter, encode_key

log = logging.getLogger(__name__)

#: Seconds between retries while the broker misbehaves: doubles from the first to the last.
BACKOFF_INITIAL = 0.5
BACKOFF_MAX = 30.0
#: Longest single poll; bounds how long a SIGTERM waits before the loop notices it.
POLL_TIMEOUT_MS = 250

#: Seconds between two updates of the consumer lag gauges.
LAG_INTERVAL = 0.5
#: Seconds between two listings of the broker's topics while the input topic is missing.
TOPIC_LISTING_INTERVAL = 60.0
#: Most topic names one listing shows.
TOPIC_LISTING_MAX = 20

OutputObserver = Callable[[str, dict[str, Any]], None]


class FatalServiceError(RuntimeError):
    """An error that retrying cannot fix (e.g. a changelog record that is not a snapshot)."""


class _Stopped(Exception):
    """A stop was asked for before the clients were set up."""


def closest_topics(
    wanted: str, topics: set[str] | list[str], limit: int = TOPIC_LISTING_MAX
) -> str:
    """The topic names, closest to ``wanted`` first (difflib's ratio), for a log line.

    Examples
    --------
    >>> closest_topics("ticks", {"orders", "tick", "ticks.regimes", "__consumer_offsets"})
    'tick, ticks.regimes, orders'
    >>> closest_topics("ticks", set())
    '(none)'
    """
    names = [t for t in topics if not t.startswith("__")]
    if not names:
        return "(none)"

    def distance(name: str) -> tuple[float, str]:
        return (-difflib.SequenceMatcher(None, wanted, name).ratio(), name)

    names.sort(key=distance)
    shown = ", ".join(names[:limit])
    return shown if len(names) <= limit else f"{shown} and {len(names) - limit} more"


class ServiceRunner:
    """The long-running consumer service.

    Parameters
    ----------
    settings : Settings
        Validated settings (:func:`streamgmm.settings.layers.load_settings`).
    metrics : ServiceMetrics or None
        Metrics sink; a fresh one (own registry) is created when ``None``.
    install_signal_handlers : bool
        Stop gracefully on SIGTERM/SIGINT. Only possible on the main thread; the demo runs the
        service on a worker thread and calls :meth:`stop` instead.
    observers : list of callables or None
        Called as ``observer(key, output_record)`` for every processed tick (the demo's live
        table uses this); they must be quick and must not raise.
    """

    def __init__(
        self,
        settings: Settings,
        metrics: ServiceMetrics | None = None,
        install_signal_handlers: bool = True,
        observers: list[OutputObserver] | None = None,
    ) -> None:
        self.settings = settings
        self.metrics = metrics or ServiceMetrics(max_keys=settings.max_metric_keys)
        self._install_signals = install_signal_handlers
        self._observers = list(observers or [])
        self._stop = threading.Event()
        self.metrics_address: tuple[str, int] | None = None
        self.ready = threading.Event()  # set once the consumer has its first assignment

        self._client: Client | None = None  # [kafka] client, imported at start
        self._errors: tuple[type[BaseException], ...] = (BrokerError, DeliveryError, OSError)
        self._revoke_errors: tuple[type[BaseException], ...] = (*self._errors, ChangelogError)
        self._consumer: GroupConsumer | None = None
        self._producer: Producer | None = None  # snapshots (and outputs in one process)
        self._sink: Producer | ProducerProcess | None = None  # outputs and dead letters
        self._reader: Reader | None = None
        self._changelog: Changelog | None = None
        self._checkpointer: Checkpointer | None = None
        self._store: KeyStore | None = None  # per-key state; made with the changelog
        self._decoder: TickDecoder | None = None
        self._rules = TickRules.from_settings(settings)

        self._owned: set[TopicPartition] = set()  # assigned and restored
        self._restoring: set[TopicPartition] = set()  # assigned, waiting for restore
        self._positions: dict[TopicPartition, int] = {}  # next offset to process
        self._uncommitted: set[TopicPartition] = set()
        self._since_checkpoint = 0
        self._last_checkpoint = time.monotonic()
        self._closing = False
        self._n_input = 0
        self._last_lag_update = 0.0
        # This poll's outputs per key and its last tick's ts, for the per-key and last-ts
        # metrics: updated once per poll, as per-tick metric calls cost as much as the model.
        self._key_outputs: dict[str, Sequence[dict[str, Any]]] = {}
        self._batch_last_ts: float | None = None

    # ------------------------------------------------------------------ public API
    def stop(self) -> None:
        """Ask the loop to finish its batch, checkpoint, commit, close and return."""
        self._stop.set()

    def run(self) -> int:
        """Run until :meth:`stop` or a signal; return the process exit code."""
        previous = self._install_handlers() if self._install_signals else {}
        try:
            self._start()
            self._loop()
            self._shutdown()
            return 0
        except ConfigError as exc:
            log.error("configuration error: %s", exc)
            self._close_clients()
            return EXIT_USAGE
        except (FatalServiceError, ChangelogError) as exc:
            log.error("stopping: %s", exc)
            self._close_clients()
            return EXIT_FAILURE
        except Exception:
            # A bug, not broker trouble: stop without a checkpoint (state since the last one is
            # recomputed on restart, exactly as after a crash) but leave the group promptly.
            log.exception("stopping on an unexpected error; a restart resumes from the checkpoint")
            self._closing = True
            self._close_clients()
            return EXIT_FAILURE
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            if self.metrics_address is not None:
                self.metrics.close()

    # ------------------------------------------------------------------ signals
    def _install_handlers(self) -> dict[int, Any]:
        previous: dict[int, Any] = {}

        def handle(signum: int, _frame: FrameType | None) -> None:
            log.info(
                "received %s: finishing the batch, then checkpoint and exit",
                signal.Signals(signum).name,
            )
            self._stop.set()

        for sig in (signal.SIGTERM, signal.SIGINT):
            previous[sig] = signal.signal(sig, handle)
        return previous

    # ------------------------------------------------------------------ start-up
    def _start(self) -> None:
        s = self.settings
        if s.metrics_enabled:
            try:
                self.metrics_address = self.metrics.serve(s.metrics_host, s.metrics_port)
            except (OSError, ValueError, OverflowError) as exc:
                # An unresolvable host or a port in use: the settings are wrong, and no retry
                # will serve them.
                raise ConfigError(
                    f"cannot serve metrics on {s.metrics_host}:{s.metrics_port} ([metrics] host "
                    f"and port): {' '.join(str(exc).split()) or type(exc).__name__}"
                ) from None
            log.info("metrics on http://%s:%d/metrics", *self.metrics_address)
        try:
            self._client = get_client(s.client)
        except ImportError as exc:
            raise ConfigError(str(exc)) from None
        self._errors = (BrokerError, DeliveryError, OSError, *self._client.ERRORS)
        self._revoke_errors = (*self._errors, ChangelogError)
        self._decoder = TickDecoder(s)
        backoff = BACKOFF_INITIAL
        while not self._stop.is_set():
            try:
                self._connect()
                return
            except _Stopped:
                return
            except self._errors as exc:
                log.error(
                    "cannot set up Kafka clients on %s: %s; retrying in %.1fs",
                    ",".join(s.bootstrap_servers),
                    exc,
                    backoff,
                )
                self._close_clients()
                self._stop.wait(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX)

    def _connect(self) -> None:
        s = self.settings
        assert self._client is not None
        ensure_reachable(s.bootstrap_servers)
        self._reader = self._client.make_reader(s)
        self._n_input = self._wait_for_input_topic()
        self._open_writers()
        assert self._changelog is not None
        if not self._changelog.copartitioned:
            log.warning(
                "changelog %s is not co-partitioned with %s; restores read all of it",
                s.changelog_topic,
                s.input_topic,
            )
        self._consumer = self._client.make_group_consumer(
            s, on_revoke=self._on_revoke, on_lost=self._on_lost
        )
        log.info(
            "consuming %s as group %s with %s; output %s, dead letters %s, changelog %s",
            s.input_topic,
            s.group_id,
            s.client,
            s.output_topic,
            s.dlq_topic,
            s.changelog_topic,
        )

    def _open_writers(self) -> None:
        """(Re)create the producer, the service's own topics, the changelog and the key store.

        Called at start and after broker trouble: an idempotent producer whose broker lost
        its state (a restarted broker, say) keeps failing with the old producer id, and a
        broker that lost its data has lost these topics too.
        """
        s = self.settings
        assert self._reader is not None and self._client is not None
        kafka = self._client
        client = kafka.client_config(s)
        ensure_reachable(s.bootstrap_servers)
        self._close_writers(timeout=1)
        timeout_ms = s.request_timeout_ms
        use_process = use_producer_process(s)
        if use_process:
            self._sink = ProducerProcess(
                client, {"compression": s.compression_type, "timeout_ms": timeout_ms},
                on_delivered=self._delivered,
                # Longer than a hand-over may block, which the child may spend on one record.
                write_timeout=timeout_ms / 1000 + 30.0,
                dead_letter_topic=s.dlq_topic, on_refused=self._refused, client=kafka.NAME,
            )  # fmt: skip
        else:
            self._sink = kafka.make_producer(
                client, self._delivered, output=True, compression=s.compression_type,
                timeout_ms=timeout_ms, dead_letter_topic=s.dlq_topic, on_refused=self._refused,
            )  # fmt: skip
        if use_process or not kafka.ONE_PRODUCER:
            self._producer = kafka.make_producer(client, output=False, timeout_ms=timeout_ms)
        else:
            assert not isinstance(self._sink, ProducerProcess)
            self._producer = self._sink
        if s.create_topics:
            n = self._n_input
            created = kafka.create_topics(
                client,
                {s.output_topic: n, s.dlq_topic: n, s.changelog_topic: n},
                {s.changelog_topic: {"cleanup.policy": "compact"}},
                replication_factor=s.topic_replication_factor,
            )
            if created:
                log.info("created topics: %s", ", ".join(created))
        self._reader.topics()  # refresh metadata so the changelog's partitions are known
        self._changelog = Changelog(
            s.changelog_topic,
            self._producer,
            self._reader,
            self._n_input,
            timeout_ms=s.request_timeout_ms,
        )
        self._checkpointer = Checkpointer(self._changelog, self._sink, s.request_timeout_ms)
        # A fresh store: whatever the old one held is restored from the changelog (_rewind).
        self._store = KeyStore(
            s, self._changelog, self._checkpointer.save, self._evicted, self._key_reset
        )

    def _wait_for_input_topic(self) -> int:
        """Wait until the input topic exists; return its partition count.

        While it is missing, the broker's topics are logged once a minute, closest names
        first, as the input topic may be misspelt. A stop during the wait is a clean stop.
        """
        assert self._reader is not None
        wanted = self.settings.input_topic
        next_listing = 0.0
        while not self._stop.is_set():
            ensure_reachable(self.settings.bootstrap_servers)
            parts = self._reader.partitions_for(wanted)
            if parts:
                return len(parts)
            now = time.monotonic()
            if now >= next_listing:
                log.warning(
                    "input topic %s does not exist yet; waiting for it (listing the topics "
                    "again in %.0fs). Topics on the broker, closest names first: %s",
                    wanted,
                    TOPIC_LISTING_INTERVAL,
                    closest_topics(wanted, self._reader.topics()),
                )
                next_listing = now + TOPIC_LISTING_INTERVAL
            self._stop.wait(1.0)
        raise _Stopped

    # ------------------------------------------------------------------ main loop
    def _loop(self) -> None:
        backoff = BACKOFF_INITIAL
        needs_recovery = False
        while not self._stop.is_set():
            try:
                if needs_recovery:
                    self._open_writers()
                    self._rewind()
                    needs_recovery = False
                    # The broker answers again: what follows a reconnection (the group's
                    # partitions lost and assigned anew) is retried promptly.
                    backoff = BACKOFF_INITIAL
                    log.info("reconnected; resuming from the last checkpoint")
                self._iteration()
                backoff = BACKOFF_INITIAL
            except ChangelogError as exc:
                raise FatalServiceError(str(exc)) from exc
            except self._errors as exc:
                log.error(
                    "broker trouble: %s; rewinding to the last checkpoint, retrying in %.1fs",
                    exc,
                    backoff,
                )
                needs_recovery = True
                self._stop.wait(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX)

    def _iteration(self) -> None:
        assert self._consumer is not None
        if self._restoring:
            self._restore()
        restored = set(self._owned)
        batch = self._consumer.poll(POLL_TIMEOUT_MS)
        self._apply_rebalance_events()
        for tp, recs in batch.items():
            if tp not in restored or tp not in self._owned:
                # Fetched before a restore/rewind (a client that does not pause a partition
                # it assigns may return its records in the poll that assigned it): its
                # partition is re-read from the committed offset once restored.
                continue
            # Counters move once per partition batch: per-record calls cost more than the
            # count is worth.
            self.metrics.consumed(len(recs))
            self._process_batch(tp, recs)
            self._positions[tp] = recs[-1][2] + 1
            self._uncommitted.add(tp)
        if batch:
            assert self._sink is not None
            self._sink.send_pending()
            self._publish_batch_metrics()
        now = time.monotonic()
        if now - self._last_lag_update >= LAG_INTERVAL:
            # Busy or idle alike: per poll, the client's watermark lookups cost more than a
            # fresher gauge is worth, and while idle a lag alert must not read a stale one.
            self._last_lag_update = now
            self._update_lag()
        self._maybe_checkpoint()

    def _publish_batch_metrics(self) -> None:
        if self._store is not None:
            self.metrics.set_active_keys(len(self._store))
        if self._key_outputs:
            self.metrics.observe_keys(self._key_outputs)
            self._key_outputs = {}
        if self._batch_last_ts is not None:
            self.metrics.set_last_processed_timestamp(self._batch_last_ts)
            self._batch_last_ts = None

    def _apply_rebalance_events(self) -> None:
        assert self._consumer is not None
        events = self._consumer.drain_events()
        if events.revoked:
            self.metrics.rebalance("revoked")
        if events.lost:
            self.metrics.rebalance("lost")
        if events.assigned:
            self.metrics.rebalance("assigned")
            self._restoring |= events.assigned
            self._restore()
            self.ready.set()

    # ------------------------------------------------------------------ per record
    def _process_batch(self, tp: TopicPartition, recs: list[tuple[Any, Any, int]]) -> None:
        """Handle one partition's records from one poll: outputs, dead letters or nothing.

        Records are decoded in offset order and grouped by key; each key's ticks then go
        through the per-key tick path (:meth:`TickRules.apply`) together. Output records keep
        their order per key (the output topic is keyed by instrument).
        """
        assert self._decoder is not None and self._store is not None
        started = time.perf_counter()
        partition = tp.partition
        by_key, dead = self._decoder.decode_by_key(recs, tp.topic, partition)
        for dl in dead:
            self._dead_letter(dl)
        store = self._store
        if len(store) + len(by_key) <= self.settings.max_keys_in_memory:
            # Room for every key of the poll, so no lookup can evict another: the keys go
            # through the tick rules together (their detectors in one batch).
            groups = [(store.get(key, partition), group) for key, group in by_key.items()]
            runs = self._rules.apply_keys(groups)
            n = sum([self._emit(key, run, None) for key, run in zip(by_key, runs, strict=True)])
            # Every tick of the batch waited about the same time since its poll returned:
            # their records were all made at once.
            self.metrics.observe_latency(time.perf_counter() - started, n)
            return
        for key, group in by_key.items():
            # Looked up and applied one key at a time: an eviction can only drop keys already
            # applied in this poll (their snapshots carry their new state) or keys still to
            # come (restored from the changelog when their turn comes).
            state = store.get(key, partition)
            self._emit(key, self._rules.apply(state, group), started)

    def _emit(self, key: str, run: KeyRun, started: float | None) -> int:
        """Send one key's records and dead letters; note its outputs for the metrics (its
        ticks' latency too, from ``started``, unless None); return how many outputs."""
        assert self._sink is not None
        for dl in run.dead_letters:
            self._dead_letter(dl)
        for _ in range(run.skipped):
            # Not a dead letter: nothing was sent there, and a DLQ alert must not fire.
            self.metrics.skipped("out_of_order")
        if run.problem is not None:
            log.warning("key %r gives no regimes: %s", key, run.problem)
            self.metrics.stream_problem(run.problem.kind)
        if run.records:
            self._sink.send_all(
                self.settings.output_topic, encode_key(key), [value for _o, value in run.records]
            )
        outs = run.outputs
        if not outs:
            return 0
        self._since_checkpoint += len(outs)
        self._batch_last_ts = run.ticks[-1].ts
        pending = self._key_outputs.get(key)
        self._key_outputs[key] = outs if pending is None else [*pending, *outs]
        if started is not None:
            # Every tick of the run waited the same time since its poll returned.
            self.metrics.observe_latency(time.perf_counter() - started, len(outs))
        for tick, out in zip(run.ticks, outs, strict=True) if self._observers else ():
            record = build_output_record(tick, out, self.settings.regime_names)
            for observer in self._observers:
                observer(key, record)
        return len(outs)

    def _delivered(self, topic: str, n: int) -> None:
        # Counted when the broker acknowledges, not when handed over: the figure an operator
        # (and the benchmark) reads is records that really reached the output topic.
        if topic == self.settings.output_topic:
            self.metrics.produced(n)

    def _refused(self, topic: str, outcome: str) -> None:
        # A record the broker refused for good (the sink logged it): an output record whose
        # copy went to the dead-letter topic is a dead letter, not an output.
        self.metrics.refused(outcome)
        if topic == self.settings.output_topic and outcome == "dead_lettered":
            self.metrics.dead_lettered("unproducible")

    def _key_reset(self, _key: str, bad: BadSnapshot | None) -> None:
        # [checkpoint] on_bad_snapshot = "reset_key": the key store started the key afresh
        # (and logged why); the changelog record it could not restore is a dead letter.
        self.metrics.key_reset()
        if bad is not None:
            where = (bad.topic, bad.partition, bad.offset)
            self._dead_letter(DeadLetter(bad.key, bad.value, "bad_snapshot", bad.reason, *where))

    def _dead_letter(self, dl: DeadLetter) -> None:
        assert self._sink is not None
        self._sink.send(
            self.settings.dlq_topic,
            value=dl.value,
            key=dl.key,
            headers=dead_letter_headers(dl),
        )
        self.metrics.dead_lettered(dl.reason)

    def _evicted(self, keys: list[str]) -> None:
        for key in keys:
            self._key_outputs.pop(key, None)
        self.metrics.forget_keys(keys)

    # ------------------------------------------------------------------ checkpoint
    def _maybe_checkpoint(self) -> None:
        s = self.settings
        due = self._since_checkpoint >= s.checkpoint_every_records or (
            time.monotonic() - self._last_checkpoint >= s.checkpoint_every_seconds
        )
        if due:
            self._checkpoint()

    def _checkpoint(self) -> None:
        """Flush, snapshot every dirty key, commit every processed partition."""
        assert self._consumer is not None and self._checkpointer is not None
        assert self._store is not None
        started = time.perf_counter()
        positions = {tp: self._positions[tp] for tp in self._uncommitted if tp in self._owned}
        self._checkpointer.commit(self._store, self._consumer, positions)
        self._uncommitted.clear()
        self._since_checkpoint = 0
        self._last_checkpoint = time.monotonic()
        self.metrics.committed()
        self.metrics.observe_checkpoint(time.perf_counter() - started)

    def _on_revoke(self, revoked: set[TopicPartition]) -> None:
        """Rebalance hook (consumer IO thread, processing thread parked in poll)."""
        mine = revoked & self._owned
        if mine and not self._closing:
            assert self._checkpointer is not None and self._store is not None
            assert self._consumer is not None
            try:
                self._checkpointer.commit(
                    self._store,
                    self._consumer,
                    {tp: self._positions[tp] for tp in mine & self._uncommitted},
                    partitions={tp.partition for tp in mine},
                    sync=False,
                )
            except self._revoke_errors as exc:
                # The next owner restores the previous snapshots and replays from the previous
                # commit; models stay exact, some outputs are emitted again.
                log.error("checkpoint on revoke failed: %s; the next owner replays more", exc)
        self._drop(revoked)

    def _on_lost(self, lost: set[TopicPartition]) -> None:
        # Another member may own these already: writing a snapshot now could overwrite its
        # newer one, so drop the state unsaved.
        self._drop(lost)

    def _drop(self, tps: set[TopicPartition]) -> None:
        gone = self._store.drop({tp.partition for tp in tps}) if self._store is not None else []
        for key in gone:
            self._key_outputs.pop(key, None)
        for tp in tps:
            self._owned.discard(tp)
            self._restoring.discard(tp)
            self._positions.pop(tp, None)
            self._uncommitted.discard(tp)
        self.metrics.forget_keys(gone)
        self.metrics.forget_partitions((tp.topic, tp.partition) for tp in tps)
        self.metrics.set_active_keys(len(self._store or ()))

    # ------------------------------------------------------------------ restore / rewind
    def _restore(self) -> None:
        """Index the changelog for partitions awaiting restore, seek, resume."""
        assert self._consumer is not None and self._store is not None
        assignment = self._consumer.assignment()
        tps = self._restoring & assignment
        self._restoring &= assignment
        if not tps:
            return
        started = time.monotonic()
        self._store.index({tp.partition for tp in tps})
        for tp in tps:
            committed = self._consumer.committed(tp, timeout_ms=self.settings.request_timeout_ms)
            if committed is not None:
                self._consumer.seek(tp, committed)
            elif self.settings.auto_offset_reset == "earliest":
                self._consumer.seek_to_beginning(tp)
            self._positions.pop(tp, None)
        self._owned |= tps
        self._restoring -= tps
        self._consumer.resume(tps)
        log.info(
            "restored %d partition(s) in %.2fs: %s",
            len(tps),
            time.monotonic() - started,
            ", ".join(f"{tp.topic}[{tp.partition}]" for tp in sorted(tps)),
        )

    def _rewind(self) -> None:
        """Forget everything since the last checkpoint and restore it from the changelog.

        Used after a delivery failure: outputs of the forgotten ticks may not have reached the
        broker, so they are recomputed from the snapshots and emitted again.
        """
        if self._consumer is None:
            return
        owned = set(self._owned) | set(self._restoring)
        if self._store is not None:
            self._store.clear()
        self._positions.clear()
        self._uncommitted.clear()
        self._since_checkpoint = 0
        self._owned.clear()
        self._restoring = owned
        if owned:
            with contextlib.suppress(*self._errors, AssertionError):
                self._consumer.pause(owned)
        self.metrics.set_active_keys(0)

    def _update_lag(self) -> None:
        assert self._consumer is not None
        for tp in self._owned:
            high = self._consumer.highwater(tp)
            pos = self._positions.get(tp)
            if high is not None and pos is not None:
                self.metrics.set_lag(tp.topic, tp.partition, max(0, high - pos))

    # ------------------------------------------------------------------ shutdown
    def _shutdown(self) -> None:
        if self._consumer is None:
            self._close_clients()
            log.info("stopped before connecting to Kafka")
            return
        log.info("shutting down: final checkpoint")
        # Two bounded attempts (each flush/commit waits at most request_timeout_ms): a stop
        # must not hang on a dead broker. If both fail, the next owner resumes from the
        # previous checkpoint, exactly as after a crash.
        for attempt in (1, 2):
            try:
                self._checkpoint()
                break
            except self._errors as exc:
                log.error("final checkpoint failed (attempt %d/2): %s", attempt, exc)
                if attempt == 1:
                    time.sleep(BACKOFF_INITIAL)
        self._closing = True
        self._close_clients()
        log.info("stopped cleanly")

    def _close_clients(self) -> None:
        self._closing = True
        for name in ("_consumer", "_reader"):
            client = getattr(self, name)
            if client is not None:
                try:
                    client.close()
                except Exception as exc:  # closing must not mask the exit path
                    log.warning("closing %s failed: %s", name.strip("_"), exc)
                setattr(self, name, None)
        self._close_writers(timeout=10)

    def _close_writers(self, timeout: float) -> None:
        for name in ("_sink", "_producer"):
            client = getattr(self, name)
            if client is not None and (name == "_sink" or client is not self._sink):
                try:
                    client.close(timeout=timeout)
                except Exception as exc:  # closing must not mask the exit path
                    log.warning("closing %s failed: %s", name.strip("_"), exc)
        self._sink = None
        self._producer = None


def run_service(settings: Settings) -> int:
    """Run the service in the foreground until SIGTERM/SIGINT; return the exit code."""
    # The kernels loaded (from numba's cache) now rather than at the first poll, then every
    # object so far (numba's, numpy's, the imports') moved out of the cyclic collector's
    # sight: they live as long as the process, and its full collections would walk them all
    # while the poll loop allocates (2-3 us of CPU a record; a per-key state has no cycles,
    # so an evicted one is freed all the same).
    precompile()
    gc.freeze()
    return ServiceRunner(settings).run()
