"""Compressed topics: gzip, lz4, zstd and snappy input is consumed; output compression is set.

Real market-data topics are usually compressed. Before the core install brought kafka-python's
codec packages, an lz4 or zstd batch raised ``UnsupportedCodecError`` and the service looped
on "broker trouble".
"""

from __future__ import annotations

import json
import logging
import threading
import uuid
from pathlib import Path

import pytest
from conftest import KafkaTools, make_ticks, service_config
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from streamgmm.broker import EmbeddedBroker
from streamgmm.service.runner import ServiceRunner
from streamgmm.settings.layers import load_settings
from streamgmm.settings.service import COMPRESSION_TYPES
from streamgmm.settings.spec import ConfigError

pytestmark = pytest.mark.integration

N_PER_KEY = 60


class _FetchedBytes(logging.Handler):
    """Adds up the record-batch bytes kafka-python's fetcher reads off the wire.

    The consumer hands out decompressed records only; the size of what the broker sent is in
    the fetcher's debug line "Preparing to read %s bytes of data for partition %s ...".
    """

    def __init__(self, topic: str) -> None:
        super().__init__(logging.DEBUG)
        self.topic = topic
        self.total = 0

    def emit(self, record: logging.LogRecord) -> None:
        args = record.args
        # The service's own consumer, in this process too, logs its input fetches here.
        preparing = record.msg.startswith("Preparing to read") and isinstance(args, tuple)
        if preparing and args[1].topic == self.topic:  # type: ignore[index]
            self.total += int(args[0])  # type: ignore[index]


def _read_counting_wire_bytes(broker: EmbeddedBroker, topic: str, expect: int):
    fetcher_log = logging.getLogger("kafka.consumer.fetcher")
    handler = _FetchedBytes(topic)
    old_level = fetcher_log.level
    fetcher_log.addHandler(handler)
    fetcher_log.setLevel(logging.DEBUG)
    consumer = KafkaConsumer(**broker.client_kwargs(), group_id=None, enable_auto_commit=False)
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        consumer.seek_to_beginning(tp)
        records = []
        for _ in range(300):
            for recs in consumer.poll(timeout_ms=200).values():
                records.extend(recs)
            if len(records) >= expect:
                break
        return records, handler.total
    finally:
        consumer.close()
        fetcher_log.removeHandler(handler)
        fetcher_log.setLevel(old_level)


def test_every_input_codec_is_consumed_and_outputs_are_compressed(
    broker: EmbeddedBroker, tmp_path: Path, client: str
) -> None:
    name = f"cz-{uuid.uuid4().hex[:8]}"
    broker.create_topics({f"{name}-in": 1})
    config = service_config(
        broker, name, tmp_path / "svc.toml", client, **{"output.compression_type": "zstd"}
    )
    settings = load_settings(config, {}, {})
    keys = {codec: f"{codec.upper()}-KEY" for codec in COMPRESSION_TYPES}
    ticks = make_ticks(list(keys.values()), N_PER_KEY, seed=2)
    # One producer per codec, each sending its own key's ticks: the partition then holds
    # batches of all four codecs, interleaved.
    producers = {
        codec: KafkaProducer(**broker.client_kwargs(), compression_type=codec, linger_ms=2)
        for codec in COMPRESSION_TYPES
    }
    try:
        by_key = {key: codec for codec, key in keys.items()}
        for tick in ticks:
            producer = producers[by_key[tick["symbol"]]]
            producer.send(
                f"{name}-in", key=tick["symbol"].encode(), value=json.dumps(tick).encode()
            )
            producer.flush()  # one batch per tick keeps the codecs interleaved record by record
    finally:
        for producer in producers.values():
            producer.close()

    runner = ServiceRunner(settings, install_signal_handlers=False)
    thread = threading.Thread(target=runner.run, daemon=True)
    thread.start()
    try:
        assert runner.ready.wait(60), "the service did not join its group"
        records, wire_bytes = _read_counting_wire_bytes(broker, settings.output_topic, len(ticks))
    finally:
        runner.stop()
        thread.join(60)
    outputs = [json.loads(r.value) for r in records]
    assert len(outputs) == len(ticks)
    seen = {
        key: max(o["n_samples_seen"] for o in outputs if o["key"] == key) for key in keys.values()
    }
    assert seen == dict.fromkeys(keys.values(), N_PER_KEY)
    assert KafkaTools(broker).read_all(settings.dlq_topic, timeout=3, idle=1.0) == []
    # zstd batches of these JSON records are far smaller than the records themselves; an
    # uncompressed batch is larger (record framing on top).
    plain = sum(len(r.key) + len(r.value) for r in records)
    assert 0 < wire_bytes < 0.5 * plain, (wire_bytes, plain)


def test_compression_type_setting() -> None:
    assert load_settings(None, {}, {}).compression_type is None
    env = {"STREAMGMM_OUTPUT_COMPRESSION_TYPE": "LZ4"}
    assert load_settings(None, env, {}).compression_type == "lz4"
    with pytest.raises(ConfigError, match=r"output\.compression_type = 'brotli'"):
        load_settings(None, {}, {"output.compression_type": "brotli"})
