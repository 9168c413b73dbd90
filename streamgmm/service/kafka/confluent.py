"""The confluent-kafka implementation of :mod:`streamgmm.service.kafka` (``[kafka] client =
"confluent"``): librdkafka's consumer, producer and admin client.

librdkafka fetches, batches, compresses and sends from its own threads, outside the
interpreter lock. Callbacks (rebalances, delivery reports, logs) run on the thread that calls
``consume``, ``poll`` or ``flush``: a revoke's checkpoint runs while the processing thread is
inside ``poll``, as with :mod:`.kafka_python`.

- Rebalances are incremental (``cooperative-sticky``). Assigned partitions start at their
  committed offsets and are not paused (librdkafka 2.12 aborts when such a partition is
  stopped before its fetcher started); the runner restores them right after the ``poll`` that
  assigned them and leaves records it read before for the re-read from the committed offset.
  Its seek there is a no-op while nothing of the partition was read (a fetcher that has not
  started cannot seek).
- A revoke's commit is synchronous (librdkafka allows it in a rebalance callback). Lost
  partitions write nothing, and the next ``poll`` raises
  :class:`~streamgmm.service.kafka.BrokerError`: the runner recreates its producers and
  topics and rewinds, as after kafka-python's failed deliveries. A moment when every broker
  connection is down is left to librdkafka, which reconnects by itself: treating it as broker
  trouble (a rewind that seeks partitions librdkafka is still taking apart) made librdkafka
  2.12 crash (SIGSEGV) about one time in ten. The price: a broker that comes back within the
  session timeout having lost its data and the group (tansu with memory storage) can go
  unnoticed, its partitions read on from offsets above the new records
  (docs/reliability.md, point 4).
- Delivery failures are kept until the next ``flush``; a record refused for good is copied to
  the dead-letter topic as with kafka-python (the producer: :mod:`.confluent_producer`).
  :func:`client_config` maps ``[security]`` to librdkafka's names.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Mapping
from typing import Any

try:
    from confluent_kafka import (
        OFFSET_BEGINNING,
        OFFSET_END,
        Consumer,
        KafkaError,
        KafkaException,
    )
    from confluent_kafka import TopicPartition as _RdTP
    from confluent_kafka.admin import AdminClient, NewTopic
except ImportError:  # pragma: no cover - depends on the install
    raise ImportError(
        '[kafka] client = "confluent" needs confluent-kafka: pip install "streamgmm[confluent]"'
    ) from None

from streamgmm.service.kafka import (
    BrokerError,
    PartitionHook,
    RebalanceEvents,
    Record,
    TopicPartition,
    fmt_partitions,
)
from streamgmm.service.kafka.confluent_producer import Producer, _with_logger

log = logging.getLogger(__name__)

NAME = "confluent"
#: librdkafka's errors: broker trouble.
ERRORS: tuple[type[BaseException], ...] = (KafkaException,)
#: Snapshots get a producer of their own, without the output batching.
ONE_PRODUCER = False
#: ``[security]`` (kafka-python names) -> librdkafka names.
SECURITY_NAMES = {
    "security_protocol": "security.protocol",
    "sasl_mechanism": "sasl.mechanism",
    "sasl_plain_username": "sasl.username",
    "sasl_plain_password": "sasl.password",
    "sasl_kerberos_service_name": "sasl.kerberos.service.name",
    "ssl_cafile": "ssl.ca.location",
    "ssl_certfile": "ssl.certificate.location",
    "ssl_keyfile": "ssl.key.location",
    "ssl_password": "ssl.key.password",
    "ssl_crlfile": "ssl.crl.location",
}


def client_config(settings: Any) -> dict[str, Any]:
    """librdkafka configuration every client (consumer, producer, admin) shares.

    ``[kafka] api_version`` is kafka-python's: librdkafka asks the broker which versions it
    speaks. ``[security] sasl_kerberos_domain_name`` has no librdkafka equivalent (it takes
    the broker's host name) and is left out.
    """
    s = settings
    config: dict[str, Any] = {
        "bootstrap.servers": ",".join(s.bootstrap_servers),
        "client.id": s.client_id,
        "socket.timeout.ms": min(s.request_timeout_ms, 300_000),
        "retry.backoff.ms": max(1, min(s.retry_backoff_ms, 300_000)),
        "reconnect.backoff.max.ms": min(s.reconnect_backoff_max_ms, 3_600_000),
        # librdkafka's 5 minutes would leave a topic that came back (a broker that lost its
        # data, a topic created again) unnoticed for as long.
        "topic.metadata.refresh.interval.ms": 10_000,
    }
    for name, value in s.security.items():
        if name == "ssl_check_hostname":
            config["ssl.endpoint.identification.algorithm"] = "https" if value else "none"
        elif name in SECURITY_NAMES:
            config[SECURITY_NAMES[name]] = value
    return config


def _raise_on(err: KafkaError | None) -> None:
    if err is not None:
        raise KafkaException(err)


# =============================================================================== consumers


def _group(msgs: list[Any], what: str) -> dict[TopicPartition, list[Record]]:
    """Records of one ``consume`` per partition, as ``(key, value, offset)``."""
    out: dict[tuple[str, int], list[Record]] = {}
    current: tuple[str, int] | None = None
    records: list[Record] = []
    for m in msgs:
        err = m.error()
        if err is not None:
            if err.code() == KafkaError._PARTITION_EOF:
                continue
            if err.fatal():
                raise KafkaException(err)
            log.warning("%s: %s", what, err.str())
            continue
        where = (m.topic(), m.partition())
        if where != current:
            current = where
            records = out.setdefault(where, [])
        records.append((m.key(), m.value(), m.offset()))
    return {TopicPartition(*where): recs for where, recs in out.items()}


class _GroupConsumer:
    """:class:`~streamgmm.service.kafka.GroupConsumer` over librdkafka's consumer."""

    def __init__(
        self,
        settings: Any,
        on_revoke: PartitionHook | None,
        on_lost: PartitionHook | None,
    ) -> None:
        s = settings
        self._on_revoke_hook = on_revoke
        self._on_lost_hook = on_lost
        self._lock = threading.Lock()
        self._events = RebalanceEvents()
        self._max = s.max_poll_records
        self._timeout_ms = s.request_timeout_ms
        self._reset = OFFSET_BEGINNING if s.auto_offset_reset == "earliest" else OFFSET_END
        # Offsets partitions were assigned at and not read since (see the module notes).
        self._fresh: dict[TopicPartition, int] = {}
        self._lost_now: set[TopicPartition] = set()
        self._consumer = Consumer(
            {
                **_with_logger(client_config(s)),
                "group.id": s.group_id,
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "auto.offset.reset": s.auto_offset_reset,
                "session.timeout.ms": s.session_timeout_ms,
                "heartbeat.interval.ms": s.heartbeat_interval_ms,
                "max.poll.interval.ms": s.max_poll_interval_ms,
                "enable.partition.eof": False,
                # Incremental rebalances (see the module notes).
                "partition.assignment.strategy": "cooperative-sticky",
            }
        )
        self._consumer.subscribe(
            [s.input_topic], on_assign=self._assigned, on_revoke=self._revoked, on_lost=self._lost
        )

    # Rebalance callbacks: librdkafka runs them inside consume(), on the processing thread.
    def _assigned(self, consumer: Any, partitions: list[Any]) -> None:
        assigned = {TopicPartition(p.topic, p.partition) for p in partitions}
        if not assigned:
            consumer.incremental_assign(partitions)
            return
        # Explicit offsets: the fetchers start at once, with nothing to look up first.
        starts = consumer.committed(partitions, timeout=self._timeout_ms / 1000)
        for p in starts:
            _raise_on(p.error)
            if p.offset < 0:
                p.offset = self._reset
            self._fresh[TopicPartition(p.topic, p.partition)] = p.offset
        consumer.incremental_assign(starts)
        log.info("partitions assigned: %s", fmt_partitions(assigned))
        with self._lock:
            self._events.assigned |= assigned
            self._events.revoked -= assigned
            self._events.lost -= assigned

    def _revoked(self, _consumer: Any, partitions: list[Any]) -> None:
        self._gone(partitions, lost=False)

    def _lost(self, _consumer: Any, partitions: list[Any]) -> None:
        self._gone(partitions, lost=True)

    def _gone(self, partitions: list[Any], lost: bool) -> None:
        gone = {TopicPartition(p.topic, p.partition) for p in partitions}
        for tp in gone:
            self._fresh.pop(tp, None)
        if not gone:
            return
        if lost:
            log.warning("partitions lost (group moved on without us): %s", fmt_partitions(gone))
            self._lost_now |= gone
        else:
            log.info("partitions revoked: %s", fmt_partitions(gone))
        hook = self._on_lost_hook if lost else self._on_revoke_hook
        if hook is not None:
            hook(gone)
        with self._lock:
            (self._events.lost if lost else self._events.revoked).update(gone)
            self._events.assigned -= gone

    # The interface.
    def poll(self, timeout_ms: int) -> dict[TopicPartition, list[Record]]:
        batch = _group(self._consumer.consume(self._max, timeout_ms / 1000), "consumer")
        if self._fresh:
            for tp in batch:
                # Read from where it was assigned: a seek there is a real one from now on,
                # also when this batch is dropped below (the rewind's seek must move back).
                self._fresh.pop(tp, None)
        if self._lost_now:
            # As after kafka-python's failed deliveries (see the module notes).
            lost, self._lost_now = self._lost_now, set()
            raise BrokerError(
                f"partitions lost while cut off from the group: {fmt_partitions(lost)}"
            )
        return batch

    def drain_events(self) -> RebalanceEvents:
        with self._lock:
            events, self._events = self._events, RebalanceEvents()
        return events

    def assignment(self) -> set[TopicPartition]:
        return {TopicPartition(p.topic, p.partition) for p in self._consumer.assignment()}

    def committed(self, tp: TopicPartition, timeout_ms: int) -> int | None:
        fresh = self._fresh.get(tp)
        if fresh is not None:
            # Looked up when it was assigned, after every revoke's (synchronous) commit.
            return fresh if fresh >= 0 else None
        (got,) = self._consumer.committed([_RdTP(*tp)], timeout=timeout_ms / 1000)
        _raise_on(got.error)
        return int(got.offset) if got.offset >= 0 else None

    def seek(self, tp: TopicPartition, offset: int) -> None:
        if self._fresh.pop(tp, None) != offset:
            self._consumer.seek(_RdTP(tp.topic, tp.partition, offset))

    def seek_to_beginning(self, tp: TopicPartition) -> None:
        self.seek(tp, OFFSET_BEGINNING)

    def pause(self, tps: Iterable[TopicPartition]) -> None:
        parts = [_RdTP(*tp) for tp in tps]
        if parts:
            self._consumer.pause(parts)

    def resume(self, tps: Iterable[TopicPartition]) -> None:
        tps = list(tps)
        for tp in tps:
            self._fresh.pop(tp, None)
        parts = [_RdTP(*tp) for tp in tps]
        if parts:
            self._consumer.resume(parts)

    def highwater(self, tp: TopicPartition) -> int | None:
        _low, high = self._consumer.get_watermark_offsets(_RdTP(*tp), cached=True)
        return int(high) if high >= 0 else None

    def commit(self, positions: Mapping[TopicPartition, int], timeout_ms: int) -> None:
        if positions:
            done = self._consumer.commit(offsets=_offsets(positions), asynchronous=False)
            for got in done or ():
                _raise_on(got.error)

    def commit_async(self, positions: Mapping[TopicPartition, int]) -> None:
        # Synchronous: allowed in a rebalance callback, and it lands before the hand-over.
        if positions:
            self._consumer.commit(offsets=_offsets(positions), asynchronous=False)

    def close(self) -> None:
        self._consumer.close()


def _offsets(positions: Mapping[TopicPartition, int]) -> list[Any]:
    return [_RdTP(tp.topic, tp.partition, off) for tp, off in positions.items()]


class _Reader:
    """:class:`~streamgmm.service.kafka.Reader`: librdkafka's consumer, assigned by hand.

    A partition, once added, stays assigned; the reader moves it with seeks and pauses the
    partitions it is not reading. librdkafka 2.12 can abort when one partition is removed from
    an assignment twice before its fetcher has stopped, which re-assigning on every seek did.
    Assignment changes and seeks wait for the next :meth:`poll`.
    """

    def __init__(self, settings: Any) -> None:
        self._timeout = settings.request_timeout_ms / 1000
        # A group id librdkafka wants; this consumer never joins it nor commits.
        self._consumer = Consumer(
            {
                **_with_logger(client_config(settings)),
                "group.id": f"{settings.group_id}.reader",
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                "enable.partition.eof": False,
            }
        )
        self._added: set[TopicPartition] = set()  # ever assigned (incrementally)
        self._reading: set[TopicPartition] = set()  # the current assignment
        self._paused: set[TopicPartition] = set()
        self._moves: dict[TopicPartition, int] = {}  # offsets to seek to at the next poll
        self._positions: dict[TopicPartition, int] = {}

    def topics(self) -> set[str]:
        return set(self._consumer.list_topics(timeout=self._timeout).topics)

    def partitions_for(self, topic: str) -> set[int]:
        meta = self._consumer.list_topics(timeout=self._timeout).topics.get(topic)
        if meta is None or meta.error is not None:
            return set()
        return set(meta.partitions)

    def assign(self, tps: list[TopicPartition]) -> None:
        self._reading = set(tps)
        self._positions = {}
        self._moves = {tp: OFFSET_BEGINNING for tp in tps}

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self._moves[tp] = offset
        self._positions[tp] = offset

    def seek_to_beginning(self, tps: list[TopicPartition]) -> None:
        for tp in tps:
            self._moves[tp] = OFFSET_BEGINNING
            self._positions[tp] = 0

    def _apply(self) -> None:
        consumer = self._consumer
        new = [tp for tp in self._reading if tp not in self._added]
        if new:
            consumer.incremental_assign(
                [_RdTP(tp.topic, tp.partition, self._moves.pop(tp, OFFSET_BEGINNING)) for tp in new]
            )
            self._added.update(new)
        stop = [_RdTP(*tp) for tp in self._added - self._reading - self._paused]
        if stop:
            consumer.pause(stop)
            self._paused.update(self._added - self._reading)
        go = [_RdTP(*tp) for tp in self._reading & self._paused]
        if go:
            consumer.resume(go)
            self._paused -= self._reading
        deadline = time.monotonic() + self._timeout
        while self._moves:
            try:
                for tp, offset in self._moves.items():
                    consumer.seek(_RdTP(tp.topic, tp.partition, offset))
            except KafkaException as exc:
                # Not started yet: let it start, then seek all again (what this reads is dropped).
                if exc.args[0].code() != KafkaError._STATE or time.monotonic() > deadline:
                    raise
                consumer.consume(1, 0.05)
                continue
            self._moves.clear()

    def end_offsets(self, tps: list[TopicPartition], timeout_ms: int) -> dict[TopicPartition, int]:
        ends = {}
        for tp in tps:
            _low, high = self._consumer.get_watermark_offsets(_RdTP(*tp), timeout=timeout_ms / 1000)
            ends[tp] = int(high)
        return ends

    def poll(self, timeout_ms: int, max_records: int) -> dict[TopicPartition, list[Record]]:
        if self._moves or self._reading - self._added or self._reading & self._paused:
            self._apply()
        batch = _group(self._consumer.consume(max_records, timeout_ms / 1000), "reader")
        batch = {tp: recs for tp, recs in batch.items() if tp in self._reading}
        for tp, recs in batch.items():
            self._positions[tp] = recs[-1][2] + 1
        return batch

    def position(self, tp: TopicPartition, timeout_ms: int) -> int:
        return self._positions.get(tp, 0)

    def highwater(self, tp: TopicPartition) -> int | None:
        _low, high = self._consumer.get_watermark_offsets(_RdTP(*tp), cached=True)
        return int(high) if high >= 0 else None

    def close(self) -> None:
        self._consumer.close()


def make_group_consumer(
    settings: Any, on_revoke: PartitionHook | None = None, on_lost: PartitionHook | None = None
) -> _GroupConsumer:
    """The group consumer of ``settings.input_topic``, offsets committed by hand."""
    return _GroupConsumer(settings, on_revoke, on_lost)


def make_reader(settings: Any) -> _Reader:
    """A group-less reader (changelog restores, topic listing)."""
    return _Reader(settings)


#: An output producer (batched, compressed as asked) or a snapshot producer.
make_producer = Producer

# =============================================================================== admin


def create_topics(
    config: Mapping[str, Any],
    topics: Mapping[str, int] | Iterable[str],
    configs: Mapping[str, Mapping[str, str]] | None = None,
    replication_factor: int = 1,
) -> list[str]:
    """Create missing topics; return the names created (existing ones are left alone)."""
    wanted = dict(topics) if isinstance(topics, Mapping) else dict.fromkeys(topics, 1)
    configs = configs or {}
    admin = AdminClient(_with_logger(config))
    new = [
        NewTopic(
            name,
            num_partitions=int(partitions),
            replication_factor=replication_factor,
            config=dict(configs.get(name, {})),
        )
        for name, partitions in wanted.items()
    ]
    created: list[str] = []
    timeout = float(config.get("socket.timeout.ms", 30000)) / 1000
    for name, future in admin.create_topics(new, request_timeout=timeout).items():
        try:
            future.result(timeout=timeout)
            created.append(name)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise
    return created
