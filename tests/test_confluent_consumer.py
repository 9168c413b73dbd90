"""librdkafka's group consumer (``[kafka] client = "confluent"``) against the embedded broker:
what the runner relies on when a partition comes back after broker trouble.

A broker that forgets the group (a restart, a long cut) makes librdkafka call the lost-partitions
callback and, once the group re-forms, assign the partitions again, fetching at once. When both
happen within one ``consume`` call the batch it returned is dropped (the next ``poll`` raises
broker trouble) and the runner rewinds: it seeks each partition back to where it must resume.
That seek must move the fetcher back even though the partition was "just assigned" there.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from conftest import KafkaTools
from reliability_support import wait_until, write_config

from streamgmm.broker import EmbeddedBroker
from streamgmm.service.kafka import BrokerError, TopicPartition
from streamgmm.settings.layers import load_settings

pytestmark = pytest.mark.integration

confluent = pytest.importorskip("streamgmm.service.kafka.confluent")


def test_a_rewind_after_lost_partitions_reads_the_dropped_batch_again(
    broker: EmbeddedBroker, kafka_tools: KafkaTools, unique: str, tmp_path: Path
) -> None:
    config = write_config(tmp_path / "c.toml", broker.bootstrap_servers, unique, client="confluent")
    settings = load_settings(config, {}, {})
    topic = settings.input_topic
    broker.create_topics({topic: 1})
    tp = TopicPartition(topic, 0)
    consumer = confluent.make_group_consumer(settings)
    try:
        # Joined and assigned, nothing read yet: the partition starts at the reset offset.
        wait_until(lambda: not consumer.poll(200) and tp in consumer.assignment(), 60, "join")
        assert consumer.committed(tp, timeout_ms=5000) is None
        # librdkafka's callbacks as a broker that forgot the group makes it run them: the
        # partition lost, then assigned again (at the reset offset, nothing committed) ...
        part = [confluent._RdTP(topic, 0)]
        consumer._consumer.incremental_unassign(part)
        consumer._lost(consumer._consumer, part)
        time.sleep(1.0)
        consumer._assigned(consumer._consumer, part)
        # ... and its first records fetched, all before one consume call returns them: that
        # poll reports the loss as broker trouble and its batch is dropped.
        kafka_tools.send_all(topic, [(b"k", f"v{i}".encode(), 0) for i in range(5)])
        time.sleep(3.0)  # librdkafka's fetcher queues them meanwhile
        with pytest.raises(BrokerError, match="partitions lost"):
            consumer.poll(200)
        # The rewind: back to where the partition resumes (nothing committed: the beginning).
        consumer.seek_to_beginning(tp)
        offsets: list[int] = []
        wait_until(
            lambda: (
                offsets.extend(o for _k, _v, o in consumer.poll(200).get(tp, []))
                or len(offsets) >= 5
            ),
            30,
            lambda: f"the records again from offset 0 (got {offsets})",
        )
        assert offsets == [0, 1, 2, 3, 4]
    finally:
        consumer.close()
