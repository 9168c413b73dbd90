"""librdkafka's producer for :mod:`.confluent` (``[kafka] client = "confluent"``), with
:class:`.kafka_python.Producer`'s guarantees.

Delivery failures are kept until the next ``flush``, which raises; a record refused for good
(``PERMANENT_CODES``) is copied to the dead-letter topic
(:func:`~streamgmm.service.kafka.divert_refused`), or raises
:class:`~streamgmm.service.kafka.RecordRefused` when sent with ``divert=False`` (snapshots). An
output producer asks librdkafka for the delivery reports of failed records only and counts
the others as delivered once they leave librdkafka's hands.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from typing import Any

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka import Producer as _RdProducer

from streamgmm.service.kafka import (
    DeliveredCallback,
    DeliveryError,
    RecordRefused,
    Refused,
    RefusedCallback,
    divert_refused,
)

__all__ = ["OUTPUT_PRODUCER_CONFIG", "PERMANENT_CODES", "Producer"]

#: librdkafka's own log lines (quietened like kafka-python's: :mod:`streamgmm.logs`).
_rdlog = logging.getLogger("librdkafka")
#: Error codes no retry can cure (kafka-python's ``PERMANENT_RECORD_ERRORS``), named as
#: kafka-python names them, so a dead letter's ``streamgmm.refused`` header is the same.
PERMANENT_CODES = {
    KafkaError.MSG_SIZE_TOO_LARGE: "MessageSizeTooLargeError",
    KafkaError.RECORD_LIST_TOO_LARGE: "RecordListTooLargeError",
    KafkaError.INVALID_RECORD: "InvalidRecordError",
    KafkaError.INVALID_TIMESTAMP: "InvalidTimestampError",
}
#: Output batching, as for kafka-python's output producer: 20 ms linger, large batches.
OUTPUT_PRODUCER_CONFIG = {"linger.ms": 20, "batch.size": 1024 * 1024}
#: Records handed to librdkafka between two services of its delivery reports.
_POLL_EVERY = 1000


def _with_logger(config: Mapping[str, Any]) -> dict[str, Any]:
    """``config`` with librdkafka's log lines sent to the ``librdkafka`` logger."""
    return {**config, "logger": _rdlog}


class Producer:
    """librdkafka's producer, with :class:`.kafka_python.Producer`'s guarantees.

    Parameters
    ----------
    config
        librdkafka configuration (:func:`client_config`).
    on_delivered
        ``on_delivered(topic, n)``: ``n`` more records of ``topic`` were acknowledged.
    output
        An output producer (batched, compressed as asked) rather than a snapshot producer.
    compression, timeout_ms
        Codec of output batches; bound of a delivery and of a blocked hand-over.
    dead_letter_topic, on_refused
        As for :class:`.kafka_python.Producer`.
    extra
        Further librdkafka settings (``{"linger.ms": 5}``).

    :func:`make_producer` is this class.
    """

    def __init__(
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
    ) -> None:
        conf = {
            **_with_logger(config),
            # Fail within the request timeout, as kafka-python's blocked send does (to a lost
            # topic librdkafka would wait minutes); the runner rewinds and sends it again.
            "message.timeout.ms": timeout_ms,
            "on_delivery": self._report,
            # A keyed record goes where kafka-python (and the Java client) put it: the same
            # output partition for an instrument with either client.
            "partitioner": "murmur2_random",
        }
        # An output producer hears of failures only (a report per record costs a Python call
        # each): what it counts as delivered is what it sent less what failed or is still
        # in librdkafka's hands (_tell_delivered).
        self._only_errors = output
        if output:
            conf.update(OUTPUT_PRODUCER_CONFIG)
            conf["compression.type"] = compression or "none"
            conf["delivery.report.only.error"] = True
        self._producer = _RdProducer({**conf, **extra})
        self._timeout = timeout_ms / 1000
        self._on_delivered = on_delivered
        self._dead_letter_topic = dead_letter_topic
        self._on_refused = on_refused
        self._failures: list[str] = []
        self._refusals: list[str] = []
        self._refused: list[Refused] = []
        self._acked: dict[str, int] = {}
        # Output producer: records sent and failed per topic, and how many were told delivered.
        self._sent: dict[str, int] = {}
        self._failed: dict[str, int] = {}
        self._told: dict[str, int] = {}
        self._unpolled = 0

    @property
    def failed(self) -> bool:
        """Whether a record failed since the last :meth:`flush` (it will raise)."""
        return bool(self._failures or self._refusals)

    def _report(self, err: KafkaError | None, msg: Any) -> None:
        # The delivery report of a record without a handle (outputs and dead letters); an
        # output producer's only for the records that failed.
        topic = msg.topic()
        if err is None:
            if self._on_delivered is not None:
                self._acked[topic] = self._acked.get(topic, 0) + 1
            return
        if self._only_errors:
            self._failed[topic] = self._failed.get(topic, 0) + 1
        self._error(topic, msg.key(), msg.value(), msg.headers(), err, True)

    def _error(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        headers: Any,
        err: KafkaError,
        divert: bool,
    ) -> None:
        code = err.code()
        text = f"{PERMANENT_CODES.get(code, err.name())}: {err.str()}"
        if code not in PERMANENT_CODES:
            self._failures.append(text)
        elif not divert or self._dead_letter_topic is None:
            self._refusals.append(text)
        else:
            self._refused.append((topic, key, value, list(headers or ()), text))

    def send(
        self,
        topic: str,
        value: bytes | None,
        key: bytes | None = None,
        headers: list[tuple[str, bytes]] | None = None,
        partition: int | None = None,
        divert: bool = True,
    ) -> Any:
        """Queue one record. For ``divert=False`` returns a handle for :meth:`where`."""
        if divert and partition is None and not headers:
            # The usual record (an output): straight to librdkafka.
            try:
                self._producer.produce(topic, value, key)
            except (BufferError, KafkaException):
                pass  # the general path below retries or words the refusal
            else:
                self._queued(topic)
                return None
        handle: list[Any] | None = None
        kwargs: dict[str, Any] = {}
        if partition is not None:
            kwargs["partition"] = partition
        if headers:
            kwargs["headers"] = headers
        if not divert:
            handle = []

            def delivered(err: KafkaError | None, msg: Any, handle: list[Any] = handle) -> None:
                if err is None:
                    handle.append((msg.partition(), msg.offset()))
                else:
                    self._error(topic, key, value, headers, err, False)

            kwargs["on_delivery"] = delivered
        deadline = None
        while True:
            try:
                self._producer.produce(topic, value, key, **kwargs)
                break
            except BufferError:
                # librdkafka's queue is full: serve delivery reports until there is room.
                now = time.monotonic()
                deadline = deadline or now + self._timeout
                if now > deadline:
                    self._failures.append(f"the producer queue stayed full for {self._timeout}s")
                    return handle
                self._producer.poll(0.05)
            except KafkaException as exc:
                # Refused at once (larger than message.max.bytes): as if the broker had.
                self._error(topic, key, value, headers, exc.args[0], divert)
                return handle
        self._queued(topic)
        return handle

    def send_all(self, topic: str, key: bytes | None, values: Iterable[bytes]) -> None:
        """:meth:`send` of each of ``values`` with ``key``, in order."""
        produce, n = self._producer.produce, 0
        for value in values:
            try:
                produce(topic, value, key)
            except (BufferError, KafkaException):
                self.send(topic, value, key)  # retries, or words the refusal
            else:
                n += 1
        self._queued(topic, n)

    def _queued(self, topic: str, n: int = 1) -> None:
        """Count ``n`` records librdkafka took."""
        if self._only_errors:
            self._sent[topic] = self._sent.get(topic, 0) + n
        self._unpolled += n
        if self._unpolled >= _POLL_EVERY:
            self.send_pending()

    def where(self, handle: Any) -> tuple[int, int]:
        """``(partition, offset)`` of a record sent with ``divert=False``, once flushed."""
        if not handle:
            raise DeliveryError("a snapshot was not acknowledged")
        partition, offset = handle[0]
        return int(partition), int(offset)

    def send_pending(self) -> None:
        """Serve delivery reports (records go to librdkafka as they are sent)."""
        self._unpolled = 0
        self._producer.poll(0)
        self._tell_delivered()

    def _tell_delivered(self) -> None:
        if self._on_delivered is None:
            return
        if self._only_errors:
            # At least sent - failed - in flight of a topic's records were delivered, and
            # exactly that many once none is in flight: tell the increase of that bound.
            in_flight = len(self._producer)
            for topic, sent in self._sent.items():
                delivered = sent - self._failed.get(topic, 0) - in_flight
                told = self._told.get(topic, 0)
                if delivered > told:
                    self._told[topic] = delivered
                    self._on_delivered(topic, delivered - told)
            return
        if self._acked:
            acked, self._acked = self._acked, {}
            for topic, n in acked.items():
                self._on_delivered(topic, n)

    def flush(self, timeout: float | None = None) -> None:
        """Block until queued records are acknowledged; raise if any delivery failed.

        Copies of records refused for good go to the dead-letter topic first, within the
        same ``timeout``.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        self._flush_client(timeout)
        for _round in range(2):
            refused, self._refused = self._refused, []
            if not refused:
                break
            assert self._dead_letter_topic is not None
            divert_refused(refused, self.send, self._dead_letter_topic, self._on_refused)
            left = None if deadline is None else max(0.5, deadline - time.monotonic())
            self._flush_client(left)
        self._tell_delivered()
        self._unpolled = 0
        failures, self._failures = self._failures, []
        refusals, self._refusals = self._refusals, []
        if refusals:
            raise RecordRefused(
                f"{len(failures) + len(refusals)} record(s) were not delivered; "
                f"first error: {refusals[0]}"
            )
        if failures:
            raise DeliveryError(
                f"{len(failures)} record(s) were not delivered; first error: {failures[0]}"
            )

    def _flush_client(self, timeout: float | None) -> None:
        left = self._producer.flush(-1 if timeout is None else timeout)
        if left:
            self._failures.append(f"{left} record(s) not acknowledged within {timeout}s")

    def close(self, timeout: float | None = None) -> None:
        """Deliver what can be delivered within ``timeout``; drop the rest."""
        left = self._producer.flush(10.0 if timeout is None else timeout)
        if left:
            self._producer.purge()
            self._producer.flush(0)
        self._tell_delivered()
