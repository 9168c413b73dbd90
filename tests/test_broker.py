"""The embedded broker launcher: start, topics, restart on the same port, clean stop."""

from __future__ import annotations

import socket

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from streamgmm.broker import EmbeddedBroker

pytestmark = pytest.mark.integration


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def test_start_create_restart_stop() -> None:
    broker = EmbeddedBroker()
    with broker:
        assert broker.running and _port_open(broker.port)
        assert broker.bootstrap_servers == f"127.0.0.1:{broker.port}"
        assert broker.create_topics({"a": 3, "b": 1}) == ["a", "b"]
        # Creating again is not an error and creates nothing.
        assert broker.create_topics({"a": 3}) == []
        assert broker.topic_partitions("a") == {0, 1, 2}
        assert broker.topic_partitions("missing") == set()

        producer = KafkaProducer(**broker.client_kwargs())
        producer.send("b", value=b"hello").get(timeout=10)
        producer.close()
        consumer = KafkaConsumer(**broker.client_kwargs(), group_id=None)
        tp = TopicPartition("b", 0)
        consumer.assign([tp])
        consumer.seek_to_beginning(tp)
        got = consumer.poll(timeout_ms=5000)
        consumer.close()
        assert [r.value for r in got[tp]] == [b"hello"]

        port = broker.port
        broker.restart()
        # Same address, fresh memory storage.
        assert broker.port == port and broker.running
        assert broker.topic_partitions("a") == set()
    assert not broker.running
    assert broker.pid is None
    assert not _port_open(port)


def test_stop_is_idempotent() -> None:
    broker = EmbeddedBroker().start()
    broker.stop()
    broker.stop()
    assert not broker.running
