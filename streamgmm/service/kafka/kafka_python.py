"""The kafka-python implementation of :mod:`streamgmm.service.kafka` (``[kafka] client =
"kafka-python"``, the default): the clients' arguments, the group consumer, the producer, the
reader and topic creation.

No model maths here; this module only moves bytes and records rebalance events.

Rebalance design
----------------
kafka-python 3.x runs rebalance listeners on its IO thread, and a blocking ``commit()`` from
there raises. Rebalances, however, only happen inside ``KafkaConsumer.poll()`` (and
``close()``), which the service calls from its single processing thread, so while a listener
runs the processing thread is parked in ``poll()`` and no per-key state is being mutated. The
:class:`RebalanceRecorder` therefore does two things:

- on assign it *pauses* the new partitions (a local, non-blocking call) and records them. The
  processing thread restores their state from the changelog after ``poll()`` returns, seeks
  them to their committed offsets and resumes them, so no record of an assigned partition is
  processed before its keys' state is in place;
- on revoke it calls the runner's ``on_revoke`` hook synchronously. That hook flushes the
  output producer (the producer process of :mod:`streamgmm.service.sink`, or with
  ``producer_process = false`` a separate client with its own IO thread: either way flushing it
  from the consumer's IO thread does not deadlock), writes snapshots of the
  revoked partitions' dirty keys to the changelog, flushes again, and commits with
  ``commit_async`` (non-blocking). Should that commit not land, the next owner replays from the
  previous commit and skips every record below its key's snapshot offset, so the models stay
  exact and only output records may repeat.

On ``on_partitions_lost`` (the group already gave the partitions away) nothing is written:
another member may own them by now, and a late snapshot from here could overwrite its newer one.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from operator import attrgetter
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka import TopicPartition as _KafkaTP
from kafka.admin import NewTopic
from kafka.consumer.subscription_state import ConsumerRebalanceListener
from kafka.errors import (
    InvalidRecordError,
    InvalidTimestampError,
    KafkaError,
    MessageSizeTooLargeError,
    RecordListTooLargeError,
    TopicAlreadyExistsError,
)
from kafka.partitioner.default import DefaultPartitioner, murmur2
from kafka.structs import OffsetAndMetadata

from streamgmm.service.kafka import (
    DeliveredCallback,
    DeliveryError,
    PartitionHook,
    RebalanceEvents,
    Record,
    RecordRefused,
    RefusedCallback,
    TopicPartition,
    divert_refused,
    fmt_partitions,
)

log = logging.getLogger(__name__)

#: Errors about one record that no retry can cure: too large for the client's
#: ``max_request_size`` or the broker's limit, or refused by the broker's record validation.
#: Anything else (a broker away, a timeout, a leader moving) is transient.
PERMANENT_RECORD_ERRORS: tuple[type[KafkaError], ...] = (
    MessageSizeTooLargeError,
    RecordListTooLargeError,
    InvalidRecordError,
    InvalidTimestampError,
)


class RebalanceRecorder(ConsumerRebalanceListener):
    """Rebalance listener that records events and pauses newly assigned partitions.

    Parameters
    ----------
    on_revoke : callable or None
        Called with the revoked partitions before they are handed over (see module docstring).
    on_lost : callable or None
        Called with partitions the group already reassigned; must not write anything.
    """

    def __init__(
        self, on_revoke: PartitionHook | None = None, on_lost: PartitionHook | None = None
    ) -> None:
        self.consumer: KafkaConsumer | None = None
        self._on_revoke = on_revoke
        self._on_lost = on_lost
        self._lock = threading.Lock()
        self._events = RebalanceEvents()

    def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        revoked = {TopicPartition(*tp) for tp in revoked}
        if not revoked:
            return
        log.info("partitions revoked: %s", fmt_partitions(revoked))
        if self._on_revoke is not None:
            self._on_revoke(revoked)
        with self._lock:
            self._events.revoked |= revoked
            self._events.assigned -= revoked

    def on_partitions_lost(self, lost: set[TopicPartition]) -> None:
        lost = {TopicPartition(*tp) for tp in lost}
        if not lost:
            return
        log.warning("partitions lost (group moved on without us): %s", fmt_partitions(lost))
        if self._on_lost is not None:
            self._on_lost(lost)
        with self._lock:
            self._events.lost |= lost
            self._events.assigned -= lost

    def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        assigned = {TopicPartition(*tp) for tp in assigned}
        if not assigned:
            return
        log.info("partitions assigned: %s", fmt_partitions(assigned))
        # Pausing here, before the fetcher runs, keeps records of these partitions out of
        # poll() results until the processing thread has restored their keys' state.
        if self.consumer is not None:
            self.consumer.pause(*(_KafkaTP(*tp) for tp in assigned))
        with self._lock:
            self._events.assigned |= assigned
            self._events.revoked -= assigned
            self._events.lost -= assigned

    def drain(self) -> RebalanceEvents:
        """Return and clear the events recorded so far."""
        with self._lock:
            events, self._events = self._events, RebalanceEvents()
        return events


NAME = "kafka-python"
#: kafka-python's errors (a broker away, a timeout, a leader moving): broker trouble.
ERRORS: tuple[type[BaseException], ...] = (KafkaError,)
#: One producer may carry outputs and snapshots alike.
ONE_PRODUCER = True
#: Output producer batching, larger than kafka-python's defaults (linger 0 ms, 16 KiB):
#: measured on the embedded broker, linger 20 ms with 256 KiB batches moved ~1.8x more
#: records/s, because the sender computes CRCs and builds requests per batch.
OUTPUT_PRODUCER_CONFIG = {"linger_ms": 20, "batch_size": 256 * 1024}


class KeyHashCache(DefaultPartitioner):
    """kafka-python's default partitioner (a keyed record's partition is the Java client's
    murmur2 of its key modulo the partition count), with each key's murmur2 remembered.

    kafka-python hashes every record's key in pure Python (about 2 µs); an output topic's
    records repeat the same few instruments' keys. The cache forgets everything once it holds
    :attr:`LIMIT` keys, and keys longer than :attr:`LONGEST` bytes are hashed each time, so
    its memory stays bounded (under 20 MB) whatever the keys.
    """

    LIMIT = 100_000
    LONGEST = 64

    def __init__(self) -> None:
        self._hashes: dict[bytes, int] = {}

    def partition(
        self,
        topic: str,
        key: Any,
        serialized_key: bytes | None,
        value: Any,
        serialized_value: bytes | None,
        cluster: Any,
    ) -> int:
        if (
            serialized_key is None
            or type(serialized_key) is not bytes
            or len(serialized_key) > self.LONGEST
        ):
            return int(
                super().partition(topic, key, serialized_key, value, serialized_value, cluster)
            )
        # Read once, before hashing: the sender thread may replace the metadata meanwhile
        # (hashing a long key takes a while).
        known = cluster.partitions_for_topic(topic)
        if not known:
            raise ValueError(f"Topic {topic} not found in ClusterMetadata")
        partitions = sorted(known)
        hashes = self._hashes
        h = hashes.get(serialized_key)
        if h is None:
            if len(hashes) >= self.LIMIT:
                hashes.clear()
            h = hashes[serialized_key] = murmur2(serialized_key) & 0x7FFFFFFF
        return int(partitions[h % len(partitions)])


_KVO = attrgetter("key", "value", "offset")


def client_config(settings: Any) -> dict[str, Any]:
    """Keyword arguments of every kafka-python client (see :func:`kafka_client_kwargs`)."""
    return kafka_client_kwargs(settings)


def kafka_client_kwargs(settings: Any) -> dict[str, Any]:
    """Keyword arguments every kafka-python client (consumer, producer, admin) accepts.

    Returns the bootstrap servers, client id, api_version (omitted for ``"auto"``, so
    kafka-python probes), timeouts, backoffs and the ``[security]`` pass-through settings.
    """
    kwargs: dict[str, Any] = {
        "bootstrap_servers": list(settings.bootstrap_servers),
        "client_id": settings.client_id,
        "request_timeout_ms": settings.request_timeout_ms,
        "retry_backoff_ms": settings.retry_backoff_ms,
        "reconnect_backoff_max_ms": settings.reconnect_backoff_max_ms,
    }
    if settings.api_version is not None:
        kwargs["api_version"] = settings.api_version
    kwargs.update(settings.security)
    return kwargs


def _make_group_consumer(
    client_kwargs: Mapping[str, Any],
    topic: str,
    group_id: str,
    listener: RebalanceRecorder,
    **consumer_kwargs: Any,
) -> KafkaConsumer:
    """Create a group consumer subscribed to ``topic`` with manual offset commits.

    ``consumer_kwargs`` carries tuning knobs (session_timeout_ms, heartbeat_interval_ms,
    max_poll_records, auto_offset_reset, ...). Keys and values stay raw bytes; decoding is
    :mod:`streamgmm.ticks.decode`'s job.
    """
    consumer = KafkaConsumer(
        **client_kwargs,
        group_id=group_id,
        enable_auto_commit=False,
        **consumer_kwargs,
    )
    listener.consumer = consumer
    consumer.subscribe([topic], listener=listener)
    return consumer


def _make_reader(client_kwargs: Mapping[str, Any], **consumer_kwargs: Any) -> KafkaConsumer:
    """A group-less consumer for reading topics from the beginning (changelog restore)."""
    return KafkaConsumer(
        **client_kwargs, group_id=None, enable_auto_commit=False, **consumer_kwargs
    )


class _GroupConsumer:
    """:class:`~streamgmm.service.kafka.GroupConsumer` over ``KafkaConsumer``."""

    def __init__(self, consumer: KafkaConsumer, recorder: RebalanceRecorder) -> None:
        self._consumer = consumer
        self._recorder = recorder

    def poll(self, timeout_ms: int) -> dict[TopicPartition, list[Record]]:
        batch = self._consumer.poll(timeout_ms=timeout_ms)
        return {tp: list(map(_KVO, recs)) for tp, recs in batch.items()}

    def drain_events(self) -> RebalanceEvents:
        return self._recorder.drain()

    def assignment(self) -> set[TopicPartition]:
        return {TopicPartition(*tp) for tp in self._consumer.assignment()}

    def committed(self, tp: TopicPartition, timeout_ms: int) -> int | None:
        committed: int | None = self._consumer.committed(_KafkaTP(*tp), timeout_ms=timeout_ms)
        return committed

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self._consumer.seek(_KafkaTP(*tp), offset)

    def seek_to_beginning(self, tp: TopicPartition) -> None:
        self._consumer.seek_to_beginning(_KafkaTP(*tp))

    def pause(self, tps: Iterable[TopicPartition]) -> None:
        self._consumer.pause(*(_KafkaTP(*tp) for tp in tps))

    def resume(self, tps: Iterable[TopicPartition]) -> None:
        self._consumer.resume(*(_KafkaTP(*tp) for tp in tps))

    def highwater(self, tp: TopicPartition) -> int | None:
        high: int | None = self._consumer.highwater(_KafkaTP(*tp))
        return high

    def commit(self, positions: Mapping[TopicPartition, int], timeout_ms: int) -> None:
        if positions:
            self._consumer.commit(_offsets(positions), timeout_ms=timeout_ms)

    def commit_async(self, positions: Mapping[TopicPartition, int]) -> None:
        if positions:
            self._consumer.commit_async(_offsets(positions))

    def close(self) -> None:
        self._consumer.close(autocommit=False, timeout_ms=5000)


def _offsets(positions: Mapping[TopicPartition, int]) -> dict[_KafkaTP, OffsetAndMetadata]:
    return {_KafkaTP(*tp): OffsetAndMetadata(off, "", -1) for tp, off in positions.items()}


class _Reader:
    """:class:`~streamgmm.service.kafka.Reader` over a group-less ``KafkaConsumer``."""

    def __init__(self, consumer: KafkaConsumer) -> None:
        self._consumer = consumer

    def topics(self) -> set[str]:
        return set(self._consumer.topics())

    def partitions_for(self, topic: str) -> set[int]:
        return set(self._consumer.partitions_for_topic(topic) or ())

    def assign(self, tps: list[TopicPartition]) -> None:
        self._consumer.assign([_KafkaTP(*tp) for tp in tps])

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self._consumer.seek(_KafkaTP(*tp), offset)

    def seek_to_beginning(self, tps: list[TopicPartition]) -> None:
        self._consumer.seek_to_beginning(*(_KafkaTP(*tp) for tp in tps))

    def end_offsets(self, tps: list[TopicPartition], timeout_ms: int) -> dict[TopicPartition, int]:
        ends = self._consumer.end_offsets([_KafkaTP(*tp) for tp in tps], timeout_ms=timeout_ms)
        return {TopicPartition(*tp): int(end) for tp, end in ends.items()}

    def poll(self, timeout_ms: int, max_records: int) -> dict[TopicPartition, list[Record]]:
        batch = self._consumer.poll(timeout_ms=timeout_ms, max_records=max_records)
        return {tp: list(map(_KVO, recs)) for tp, recs in batch.items()}

    def position(self, tp: TopicPartition, timeout_ms: int) -> int:
        return int(self._consumer.position(_KafkaTP(*tp), timeout_ms=timeout_ms))

    def highwater(self, tp: TopicPartition) -> int | None:
        high: int | None = self._consumer.highwater(_KafkaTP(*tp))
        return high

    def close(self) -> None:
        self._consumer.close(autocommit=False, timeout_ms=5000)


def make_group_consumer(
    settings: Any, on_revoke: PartitionHook | None = None, on_lost: PartitionHook | None = None
) -> _GroupConsumer:
    """The group consumer of ``settings.input_topic``, offsets committed by hand."""
    s = settings
    recorder = RebalanceRecorder(on_revoke=on_revoke, on_lost=on_lost)
    consumer = _make_group_consumer(
        kafka_client_kwargs(s),
        s.input_topic,
        s.group_id,
        recorder,
        session_timeout_ms=s.session_timeout_ms,
        heartbeat_interval_ms=s.heartbeat_interval_ms,
        max_poll_records=s.max_poll_records,
        max_poll_interval_ms=s.max_poll_interval_ms,
        auto_offset_reset=s.auto_offset_reset,
    )
    return _GroupConsumer(consumer, recorder)


def make_reader(settings: Any) -> _Reader:
    """A group-less reader (changelog restores, topic listing)."""
    return _Reader(_make_reader(kafka_client_kwargs(settings), auto_offset_reset="earliest"))


def make_producer(
    config: Mapping[str, Any],
    on_delivered: DeliveredCallback | None = None,
    *,
    output: bool = True,
    compression: str | None = None,
    timeout_ms: int = 30000,
    dead_letter_topic: str | None = None,
    on_refused: RefusedCallback | None = None,
    **extra: Any,
) -> Producer:
    """An output producer (batched, compressed as asked) or a snapshot producer.

    ``extra`` holds further ``KafkaProducer`` arguments.
    """
    kwargs: dict[str, Any] = {"max_block_ms": timeout_ms}
    if output:
        kwargs.update(
            OUTPUT_PRODUCER_CONFIG, compression_type=compression, partitioner=KeyHashCache()
        )
    kwargs.update(extra)
    return Producer(
        config,
        on_delivered,
        dead_letter_topic=dead_letter_topic,
        on_refused=on_refused,
        **kwargs,
    )


def create_topics(
    client_kwargs: Mapping[str, object],
    topics: Mapping[str, int] | Iterable[str],
    configs: Mapping[str, Mapping[str, str]] | None = None,
    replication_factor: int = 1,
) -> list[str]:
    """Create missing topics through ``KafkaAdminClient``; return the names created.

    Existing topics are left alone (``TopicAlreadyExistsError`` is expected, not an error), so
    this is safe to call on every start.
    """
    wanted = dict(topics) if isinstance(topics, Mapping) else dict.fromkeys(topics, 1)
    configs = configs or {}
    admin = KafkaAdminClient(**client_kwargs)
    created: list[str] = []
    try:
        for name, partitions in wanted.items():
            new = NewTopic(
                name=name,
                num_partitions=int(partitions),
                replication_factor=replication_factor,
                topic_configs=dict(configs.get(name, {})),
            )
            try:
                admin.create_topics([new])
                created.append(name)
            except TopicAlreadyExistsError:
                pass
    finally:
        admin.close()
    return created


class Producer:
    """KafkaProducer wrapper that remembers delivery failures until the next :meth:`flush`.

    The producer's own retries cover short broker hiccups; a failure that survives them is
    reported by :meth:`flush` as :class:`DeliveryError`, and the runner rewinds to its last
    checkpoint rather than commit past a record that never arrived.

    A record refused for good (:data:`PERMANENT_RECORD_ERRORS`: too large, invalid) is no
    broker trouble, and retrying it would stall its partition forever. With
    ``dead_letter_topic`` set, :meth:`flush` sends a copy that fits instead
    (:func:`~streamgmm.service.dead_letters.refused_copy`: truncated, with headers saying so, the
    original sizes and the source coordinates) and waits for it; a copy refused again is
    logged and counted as lost. Records sent with ``divert=False`` (snapshots) are never
    copied: their refusal raises :class:`RecordRefused`.

    Parameters
    ----------
    client_kwargs
        kafka-python client arguments.
    on_delivered
        ``on_delivered(topic, n)``: ``n`` more records of ``topic`` were acknowledged.
    dead_letter_topic
        Where copies of refused records go; None: refusals are failures like any other.
    on_refused
        ``on_refused(topic, outcome)`` per refused record (see :data:`RefusedCallback`).
    producer_kwargs
        Further ``KafkaProducer`` arguments.
    """

    def __init__(
        self,
        client_kwargs: Mapping[str, Any],
        on_delivered: Callable[[str, int], None] | None = None,
        *,
        dead_letter_topic: str | None = None,
        on_refused: RefusedCallback | None = None,
        **producer_kwargs: Any,
    ) -> None:
        self._producer = KafkaProducer(**client_kwargs, **producer_kwargs)
        self._lock = threading.Lock()
        self._failures: list[BaseException] = []
        self._refused: list[tuple[str, bytes | None, bytes | None, Any, BaseException]] = []
        self._on_delivered = on_delivered
        self._dead_letter_topic = dead_letter_topic
        self._on_refused = on_refused
        # One acknowledgement callback per topic, made once: kafka-python would build a
        # partial per record for a callback with arguments.
        self._ack_callbacks: dict[str, Callable[[Any], None]] = {}

    @property
    def failed(self) -> bool:
        """Whether a record failed since the last :meth:`flush` (it will raise)."""
        return bool(self._failures)

    def _record_failure(self, exc: BaseException) -> None:
        with self._lock:
            self._failures.append(exc)

    def _record_error(
        self,
        record: tuple[str, bytes | None, bytes | None, Any, bool],
        exc: BaseException,
    ) -> None:
        # Runs on the caller's thread for the client's own size check, on kafka-python's
        # sender thread for the broker's answers.
        topic, key, value, headers, divert = record
        with self._lock:
            if not isinstance(exc, PERMANENT_RECORD_ERRORS):
                self._failures.append(exc)
            elif not divert or self._dead_letter_topic is None:
                self._failures.append(RecordRefused(f"{type(exc).__name__}: {exc}"))
            else:
                self._refused.append((topic, key, value, headers, exc))

    def send(
        self,
        topic: str,
        value: bytes | None,
        key: bytes | None = None,
        headers: list[tuple[str, bytes]] | None = None,
        partition: int | None = None,
        divert: bool = True,
    ) -> Any:
        """Queue one record; returns kafka-python's future (its value holds the offset).

        A record refused at once (too large for ``max_request_size``) returns None; it is
        handled at the next :meth:`flush`, as if the broker had refused it.
        """
        try:
            future = self._producer.send(
                topic, value=value, key=key, headers=headers, partition=partition
            )
        except PERMANENT_RECORD_ERRORS as exc:
            self._record_error((topic, key, value, headers, divert), exc)
            return None
        if self._dead_letter_topic is None and divert:
            future.add_errback(self._record_failure)
        else:
            future.add_errback(self._record_error, (topic, key, value, headers, divert))
        if self._on_delivered is not None:
            callback = self._ack_callbacks.get(topic)
            if callback is None:
                callback = self._ack_callbacks[topic] = self._ack_callback(topic)
            future.add_callback(callback)
        return future

    def send_all(self, topic: str, key: bytes | None, values: Iterable[bytes]) -> None:
        """:meth:`send` of each of ``values`` with ``key``, in order."""
        for value in values:
            self.send(topic, value, key)

    def _ack_callback(self, topic: str) -> Callable[[Any], None]:
        on_delivered = self._on_delivered
        assert on_delivered is not None

        def delivered(_metadata: Any) -> None:
            on_delivered(topic, 1)

        return delivered

    def where(self, handle: Any) -> tuple[int, int]:
        """``(partition, offset)`` of a record :meth:`send` returned ``handle`` for, once
        flushed."""
        meta = handle.get(timeout=0)
        return int(meta.partition), int(meta.offset)

    def send_pending(self) -> None:
        """Nothing to do: records go to kafka-python's accumulator as they are sent.

        Present so that this producer and :class:`streamgmm.service.sink.ProducerProcess`
        are interchangeable as the runner's output sink.
        """

    def flush(self, timeout: float | None = None) -> None:
        """Block until queued records are acknowledged; raise if any delivery failed.

        Copies of records refused for good go to the dead-letter topic first, within the
        same ``timeout`` (see the class notes).

        Raises
        ------
        RecordRefused
            A record sent with ``divert=False`` was refused for good.
        DeliveryError
            Any other failure (the caller rewinds and produces again).
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        self._flush_client(timeout)
        # Round 1 copies the refused records, round 2 notes copies refused in turn as lost.
        for _round in range(2):
            with self._lock:
                refused, self._refused = self._refused, []
            if not refused:
                break
            assert self._dead_letter_topic is not None
            divert_refused(
                [(t, k, v, h, f"{type(exc).__name__}: {exc}") for t, k, v, h, exc in refused],
                self.send,
                self._dead_letter_topic,
                self._on_refused,
            )
            left = None if deadline is None else max(0.5, deadline - time.monotonic())
            self._flush_client(left)
        with self._lock:
            failures, self._failures = self._failures, []
        if failures:
            refusals = [exc for exc in failures if isinstance(exc, RecordRefused)]
            first = refusals[0] if refusals else failures[0]
            raise (RecordRefused if refusals else DeliveryError)(
                f"{len(failures)} record(s) were not delivered; first error: {first}"
            )

    def _flush_client(self, timeout: float | None) -> None:
        try:
            self._producer.flush(timeout=timeout)
        except KafkaError as exc:
            raise DeliveryError(f"producer flush failed: {exc}") from exc

    def partitions_for(self, topic: str) -> set[int]:
        """Partition numbers of ``topic`` (blocks for metadata)."""
        return set(self._producer.partitions_for(topic) or ())

    def close(self, timeout: float | None = None) -> None:
        """Flush what can be flushed and close the client."""
        self._producer.close(timeout=timeout)
