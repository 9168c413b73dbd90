"""The Kafka clients behind one small interface: the rest of the service knows no Kafka library.

``[kafka] client`` picks the implementation: :mod:`.kafka_python` (the default, pure Python)
or :mod:`.confluent` (librdkafka through confluent-kafka, the ``[confluent]`` extra). Each
gives:

- a **group consumer** (:class:`GroupConsumer`): ``poll`` returns, per partition, the records
  as ``(key, value, offset)`` tuples; newly assigned partitions are paused until the runner
  has restored their keys' state; revoked and lost partitions call the runner's hooks while
  the processing thread is parked in ``poll`` (see :mod:`.kafka_python` for why), and every
  assignment change is also recorded for the runner (:meth:`GroupConsumer.drain_events`);
- a **reader** (:class:`Reader`): a consumer without a group, for reading the changelog and
  listing topics;
- a **producer** (:class:`Producer`): remembers delivery failures until the next ``flush``,
  which raises :class:`DeliveryError`; a record refused for good (too large, invalid) is
  copied to the dead-letter topic, or raises :class:`RecordRefused` when sent with
  ``divert=False`` (snapshots);
- ``create_topics`` and the errors that mean broker trouble (:attr:`Client.errors`), which the
  runner answers by rewinding to its last checkpoint.

Both implementations give the same guarantees; the checkpoint protocol
(:mod:`streamgmm.service.checkpoint`) is written against this interface only.
"""

from __future__ import annotations

import importlib
import logging
import socket
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

from streamgmm.service.dead_letters import HEADER_REFUSED, refused_copy

__all__ = [
    "CLIENTS",
    "BrokerError",
    "Client",
    "DeliveryError",
    "GroupConsumer",
    "PartitionHook",
    "Producer",
    "Reader",
    "RebalanceEvents",
    "Record",
    "RecordRefused",
    "Refused",
    "RefusedCallback",
    "TopicPartition",
    "divert_refused",
    "ensure_reachable",
    "fmt_partitions",
    "get_client",
]

log = logging.getLogger(__name__)

#: ``[kafka] client`` values, and the module of each.
CLIENTS = {"kafka-python": "kafka_python", "confluent": "confluent"}


class TopicPartition(NamedTuple):
    """A topic's partition. Equal to, and hashed like, kafka-python's own."""

    topic: str
    partition: int


#: One consumed record: ``(key, value, offset)``.
Record = tuple[bytes | None, bytes | None, int]
PartitionHook = Callable[[set[TopicPartition]], None]
#: ``on_refused(topic, outcome)``: a record of ``topic`` was refused for good, and its copy
#: went to the dead-letter topic (``"dead_lettered"``) or was refused too (``"lost"``).
RefusedCallback = Callable[[str, str], None]
#: ``on_delivered(topic, n)``: ``n`` more records of ``topic`` were acknowledged.
DeliveredCallback = Callable[[str, int], None]


class BrokerError(RuntimeError):
    """Broker trouble that a retry may cure (a broker away, a timeout, a lost topic)."""


class DeliveryError(RuntimeError):
    """At least one produced record was not acknowledged by the broker."""


class RecordRefused(DeliveryError):
    """The broker refused a record for good, and it may not be dead-lettered (a snapshot)."""


@dataclass
class RebalanceEvents:
    """Partitions assigned / revoked / lost since the processing thread last looked."""

    assigned: set[TopicPartition] = field(default_factory=set)
    revoked: set[TopicPartition] = field(default_factory=set)
    lost: set[TopicPartition] = field(default_factory=set)

    def __bool__(self) -> bool:
        return bool(self.assigned or self.revoked or self.lost)


class GroupConsumer(Protocol):
    """The group consumer of the input topic, offsets committed by hand."""

    def poll(self, timeout_ms: int) -> Mapping[TopicPartition, list[Record]]: ...
    def drain_events(self) -> RebalanceEvents: ...
    def assignment(self) -> set[TopicPartition]: ...
    def committed(self, tp: TopicPartition, timeout_ms: int) -> int | None: ...
    def seek(self, tp: TopicPartition, offset: int) -> None: ...
    def seek_to_beginning(self, tp: TopicPartition) -> None: ...
    def pause(self, tps: Iterable[TopicPartition]) -> None: ...
    def resume(self, tps: Iterable[TopicPartition]) -> None: ...
    def highwater(self, tp: TopicPartition) -> int | None: ...
    def commit(self, positions: Mapping[TopicPartition, int], timeout_ms: int) -> None: ...
    def commit_async(self, positions: Mapping[TopicPartition, int]) -> None: ...
    def close(self) -> None: ...


class Reader(Protocol):
    """A consumer without a group: lists topics, reads partitions from where it is told."""

    def topics(self) -> set[str]: ...
    def partitions_for(self, topic: str) -> set[int]: ...
    def assign(self, tps: list[TopicPartition]) -> None: ...
    def seek(self, tp: TopicPartition, offset: int) -> None: ...
    def seek_to_beginning(self, tps: list[TopicPartition]) -> None: ...
    def end_offsets(
        self, tps: list[TopicPartition], timeout_ms: int
    ) -> dict[TopicPartition, int]: ...
    def poll(self, timeout_ms: int, max_records: int) -> Mapping[TopicPartition, list[Record]]: ...
    def position(self, tp: TopicPartition, timeout_ms: int) -> int: ...
    def highwater(self, tp: TopicPartition) -> int | None: ...
    def close(self) -> None: ...


class Producer(Protocol):
    """A producer that reports delivery failures at its next :meth:`flush`."""

    @property
    def failed(self) -> bool: ...
    def send(
        self,
        topic: str,
        value: bytes | None,
        key: bytes | None = None,
        headers: list[tuple[str, bytes]] | None = None,
        partition: int | None = None,
        divert: bool = True,
    ) -> Any: ...
    def send_all(self, topic: str, key: bytes | None, values: Iterable[bytes]) -> None:
        """:meth:`send` of each of ``values`` with ``key``, in order (a key's output records)."""

    def where(self, handle: Any) -> tuple[int, int]: ...
    def send_pending(self) -> None: ...
    def flush(self, timeout: float | None = None) -> None: ...
    def close(self, timeout: float | None = None) -> None: ...


class Client(Protocol):
    """One implementation: its name, its errors and its factories (module-level functions)."""

    NAME: str
    #: Exceptions meaning broker trouble (retry after a rewind), besides :class:`BrokerError`.
    ERRORS: tuple[type[BaseException], ...]
    #: Whether one producer may carry outputs and snapshots alike (else two are made).
    ONE_PRODUCER: bool

    def client_config(self, settings: Any) -> dict[str, Any]: ...
    def make_group_consumer(
        self,
        settings: Any,
        on_revoke: PartitionHook | None = None,
        on_lost: PartitionHook | None = None,
    ) -> GroupConsumer: ...
    def make_reader(self, settings: Any) -> Reader: ...
    def make_producer(
        self,
        config: Mapping[str, Any],
        on_delivered: DeliveredCallback | None = None,
        *,
        output: bool = True,
        compression: str | None = None,
        timeout_ms: int = 30000,
        dead_letter_topic: str | None = None,
        on_refused: RefusedCallback | None = None,
        **extra: Any,
    ) -> Producer: ...
    def create_topics(
        self,
        config: Mapping[str, Any],
        topics: Mapping[str, int],
        configs: Mapping[str, Mapping[str, str]] | None = None,
        replication_factor: int = 1,
    ) -> list[str]: ...


#: A record the broker refused for good: ``(topic, key, value, headers, reason)``.
Refused = tuple[str, bytes | None, bytes | None, Any, str]


def divert_refused(
    refused: Iterable[Refused],
    send: Callable[[str, bytes | None, bytes | None, list[tuple[str, bytes]]], Any],
    dead_letter_topic: str,
    on_refused: RefusedCallback | None,
) -> None:
    """Send a copy that fits of each refused record to ``dead_letter_topic`` with
    ``send(topic, value, key, headers)`` (:func:`~streamgmm.service.dead_letters.
    refused_copy`); a record that is itself such a copy is lost, and logged, rather than
    copied again (which could go on forever). Both clients' producers do this at ``flush``."""
    originals = []
    for record in refused:
        topic, _key, _value, headers, reason = record
        if any(name == HEADER_REFUSED for name, _v in headers or ()):
            log.error(
                "a refused record's copy to %s was refused too (%s); it is lost", topic, reason
            )
            if on_refused is not None:
                on_refused(topic, "lost")
        else:
            originals.append(record)
    if not originals:
        return
    first = originals[0]
    log.warning(
        "%d record(s) refused for good (first, to %s: %s); copies that fit go to %s",
        len(originals),
        first[0],
        first[4],
        dead_letter_topic,
    )
    for topic, key, value, headers, reason in originals:
        copy_key, copy_value, copy_headers = refused_copy(key, value, headers, reason)
        send(dead_letter_topic, copy_value, copy_key, copy_headers)
        if on_refused is not None:
            on_refused(topic, "dead_lettered")


def get_client(name: str) -> Client:
    """The implementation of ``[kafka] client = name``, imported now.

    Raises
    ------
    ImportError
        With one line naming the extra to install, when its library is missing.
    ValueError
        For a name that is not in :data:`CLIENTS`.
    """
    module = CLIENTS.get(name)
    if module is None:
        raise ValueError(f"unknown Kafka client {name!r}; choose one of {sorted(CLIENTS)}")
    client: Client = importlib.import_module(f"{__name__}.{module}")  # type: ignore[assignment]
    return client


def ensure_reachable(bootstrap_servers: Iterable[str], timeout: float = 3.0) -> None:
    """Raise :class:`BrokerError` unless at least one bootstrap server accepts TCP.

    kafka-python's metadata calls wait without a timeout while no broker answers, and a
    signal cannot interrupt them. Checking the sockets first keeps start-up and recovery
    responsive to SIGTERM and lets the caller log and back off instead of hanging.
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
    raise BrokerError("no bootstrap server reachable: " + "; ".join(tried))


def fmt_partitions(tps: Iterable[TopicPartition]) -> str:
    """``topic[0], topic[1]``: partitions for a log line."""
    return ", ".join(f"{tp.topic}[{tp.partition}]" for tp in sorted(tps))
