"""Kafka I/O for the service: the group consumer, the producer, the reader and topic creation.

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
import socket
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic
from kafka.consumer.subscription_state import ConsumerRebalanceListener
from kafka.errors import KafkaConnectionError, KafkaError, TopicAlreadyExistsError

log = logging.getLogger(__name__)

PartitionHook = Callable[[set[TopicPartition]], None]


class DeliveryError(RuntimeError):
    """At least one produced record was not acknowledged by the broker."""


@dataclass
class RebalanceEvents:
    """Partitions assigned / revoked / lost since the processing thread last looked."""

    assigned: set[TopicPartition] = field(default_factory=set)
    revoked: set[TopicPartition] = field(default_factory=set)
    lost: set[TopicPartition] = field(default_factory=set)

    def __bool__(self) -> bool:
        return bool(self.assigned or self.revoked or self.lost)


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
        revoked = set(revoked)
        if not revoked:
            return
        log.info("partitions revoked: %s", _fmt(revoked))
        if self._on_revoke is not None:
            self._on_revoke(revoked)
        with self._lock:
            self._events.revoked |= revoked
            self._events.assigned -= revoked

    def on_partitions_lost(self, lost: set[TopicPartition]) -> None:
        lost = set(lost)
        if not lost:
            return
        log.warning("partitions lost (group moved on without us): %s", _fmt(lost))
        if self._on_lost is not None:
            self._on_lost(lost)
        with self._lock:
            self._events.lost |= lost
            self._events.assigned -= lost

    def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        assigned = set(assigned)
        if not assigned:
            return
        log.info("partitions assigned: %s", _fmt(assigned))
        # Pausing here, before the fetcher runs, keeps records of these partitions out of
        # poll() results until the processing thread has restored their keys' state.
        if self.consumer is not None:
            self.consumer.pause(*assigned)
        with self._lock:
            self._events.assigned |= assigned
            self._events.revoked -= assigned
            self._events.lost -= assigned

    def drain(self) -> RebalanceEvents:
        """Return and clear the events recorded so far."""
        with self._lock:
            events, self._events = self._events, RebalanceEvents()
        return events


def ensure_reachable(bootstrap_servers: Iterable[str], timeout: float = 3.0) -> None:
    """Raise ``KafkaConnectionError`` unless at least one bootstrap server accepts TCP.

    kafka-python's metadata calls (``topics()``, ``partitions_for_topic()``) wait without a
    timeout while no broker answers, and a signal cannot interrupt them. Checking the sockets
    first keeps start-up and recovery responsive to SIGTERM and lets the caller log and back
    off instead of hanging.
    """
    tried = []
    for server in bootstrap_servers:
        host, _, port = str(server).rpartition(":")
        host = host.strip("[]") or "localhost"
        try:
            with socket.create_connection((host, int(port)), timeout=timeout):
                return
        except (OSError, ValueError) as exc:
            tried.append(f"{server} ({exc.__class__.__name__}: {exc})")
    raise KafkaConnectionError("no bootstrap server reachable: " + "; ".join(tried))


def _fmt(tps: Iterable[TopicPartition]) -> str:
    return ", ".join(f"{tp.topic}[{tp.partition}]" for tp in sorted(tps))


def make_group_consumer(
    client_kwargs: Mapping[str, Any],
    topic: str,
    group_id: str,
    listener: RebalanceRecorder,
    **consumer_kwargs: Any,
) -> KafkaConsumer:
    """Create a group consumer subscribed to ``topic`` with manual offset commits.

    ``consumer_kwargs`` carries tuning knobs (session_timeout_ms, heartbeat_interval_ms,
    max_poll_records, auto_offset_reset, ...). Keys and values stay raw bytes; decoding is
    :mod:`.decode`'s job.
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


def make_reader(client_kwargs: Mapping[str, Any], **consumer_kwargs: Any) -> KafkaConsumer:
    """A group-less consumer for reading topics from the beginning (changelog restore)."""
    return KafkaConsumer(
        **client_kwargs, group_id=None, enable_auto_commit=False, **consumer_kwargs
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
    """

    def __init__(
        self,
        client_kwargs: Mapping[str, Any],
        on_delivered: Callable[[str, int], None] | None = None,
        **producer_kwargs: Any,
    ) -> None:
        self._producer = KafkaProducer(**client_kwargs, **producer_kwargs)
        self._lock = threading.Lock()
        self._failures: list[BaseException] = []
        self._on_delivered = on_delivered

    def _record_failure(self, exc: BaseException) -> None:
        with self._lock:
            self._failures.append(exc)

    def send(
        self,
        topic: str,
        value: bytes | None,
        key: bytes | None = None,
        headers: list[tuple[str, bytes]] | None = None,
        partition: int | None = None,
    ) -> Any:
        """Queue one record; returns kafka-python's future (its value holds the offset)."""
        future = self._producer.send(
            topic, value=value, key=key, headers=headers, partition=partition
        )
        future.add_errback(self._record_failure)
        if self._on_delivered is not None:
            future.add_callback(self._delivered, topic)
        return future

    def _delivered(self, topic: str, _metadata: Any) -> None:
        assert self._on_delivered is not None
        self._on_delivered(topic, 1)

    def send_pending(self) -> None:
        """Nothing to do: records go to kafka-python's accumulator as they are sent.

        Present so that this producer and :class:`streamgmm.service.sink.ProducerProcess`
        are interchangeable as the runner's output sink.
        """

    def flush(self, timeout: float | None = None) -> None:
        """Block until queued records are acknowledged; raise if any delivery failed."""
        try:
            self._producer.flush(timeout=timeout)
        except KafkaError as exc:
            raise DeliveryError(f"producer flush failed: {exc}") from exc
        with self._lock:
            failures, self._failures = self._failures, []
        if failures:
            raise DeliveryError(
                f"{len(failures)} record(s) were not delivered; first error: {failures[0]}"
            )

    def partitions_for(self, topic: str) -> set[int]:
        """Partition numbers of ``topic`` (blocks for metadata)."""
        return set(self._producer.partitions_for(topic) or ())

    def close(self, timeout: float | None = None) -> None:
        """Flush what can be flushed and close the client."""
        self._producer.close(timeout=timeout)
