"""The service's settings, each declared once: the fields of the frozen :class:`Settings`.

Each field is one setting (:func:`~streamgmm.settings.spec.setting`): its TOML section and key
(``[kafka] bootstrap_servers``), its parser with its bounds and choices, its default and its
meaning. ``[security]`` is one field made of several settings, the kafka-python options passed
through as they are. The ``[detector]`` settings are declared with the detectors instead
(:mod:`streamgmm.regime.params`) and read by :mod:`streamgmm.settings.detector`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from streamgmm.settings.parsers import (
    Choice,
    boolean,
    boolean_or_auto,
    field_list,
    integer,
    kafka_version,
    name_list,
    nonempty_string,
    optional_field_name,
    positive_float,
    secret,
    servers,
    string,
    topic,
)
from streamgmm.settings.spec import Spec, setting, setting_group, specs_of

__all__ = [
    "COMPRESSION_TYPES",
    "EMIT_POLICIES",
    "KAFKA_CLIENTS",
    "ON_BAD_SNAPSHOT",
    "OUT_OF_ORDER",
    "SECTION_DOCS",
    "SECTION_ORDER",
    "SPECS",
    "TICK_KINDS",
    "TS_UNITS",
    "Settings",
    "use_producer_process",
]

#: Batch codecs kafka-python produces with the codec packages the core install brings.
COMPRESSION_TYPES = ("gzip", "lz4", "zstd", "snappy")
#: Values of ``[kafka] client`` (the implementations: :mod:`streamgmm.service.kafka`).
KAFKA_CLIENTS = ("kafka-python", "confluent")
#: Values of ``[output] emit_policy`` (see :func:`streamgmm.ticks.rules.should_emit`).
EMIT_POLICIES = ("every_tick", "on_change", "every_n")
#: Values of ``[input] out_of_order``.
OUT_OF_ORDER = ("reject", "skip")
#: Values of ``[checkpoint] on_bad_snapshot``.
ON_BAD_SNAPSHOT = ("reset_key", "fail")
#: Values of ``[input] tick_kind``.
TICK_KINDS = ("market", "event")
#: Values of ``[input] ts_unit`` (the rule is the decoder's: :mod:`streamgmm.ticks.decode`).
TS_UNITS = ("auto", "s", "ms", "us", "ns")
_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
_OFFSET_RESETS = ("earliest", "latest")
_SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
_SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "GSSAPI", "OAUTHBEARER")

#: What a section is about, where its settings need it (under its header in default.toml).
SECTION_DOCS: dict[str, str] = {
    "security": "Passed to every Kafka client (consumer, producer, admin): unchanged to "
    "kafka-python, under librdkafka's names to confluent (security.protocol, sasl.mechanism, "
    "sasl.username, sasl.password, sasl.kerberos.service.name, ssl.ca.location, "
    "ssl.certificate.location, ssl.key.location, ssl.key.password, ssl.crl.location, "
    "ssl.endpoint.identification.algorithm; librdkafka has no sasl_kerberos_domain_name). "
    "Empty = not set.",
    "detector": "The per-key detector: the parameters of streamgmm.RegimeDetector (market ticks) "
    "and streamgmm.EventDetector (event ticks), with their defaults. Checked against the "
    'detectors\' declaration when the service starts. For a parameter that may be None, "" (or '
    '"none") means None.',
    "logging": "Log lines on stderr.",
}
#: Section order of configs/default.toml and the docs table.
SECTION_ORDER = (
    "kafka", "security", "topics", "input", "output", "checkpoint", "state", "metrics",
    "detector", "logging",
)  # fmt: skip


@dataclass(frozen=True)
class Settings:
    """Validated service settings, flat: one attribute per setting (``[security]``: a mapping).

    Topic names are already derived: ``output_topic``, ``dlq_topic`` and ``changelog_topic``
    are never empty. Made by :func:`streamgmm.settings.layers.load_settings`.
    """

    # fmt: off
    # [kafka]
    client: str = setting(
        "kafka", "client", Choice(KAFKA_CLIENTS), "kafka-python",
        "Kafka client library: $alternatives. kafka-python is pure Python and comes with "
        "streamgmm; confluent is librdkafka, through confluent-kafka (pip install "
        "\"streamgmm[confluent]\"), and moves more records per CPU second. Both give the same "
        "guarantees; see docs/service.md.",
    )
    bootstrap_servers: tuple[str, ...] = setting(
        "kafka", "bootstrap_servers", servers, "localhost:9092",
        "Comma-separated host:port list (a TOML array of strings is accepted too).",
    )
    #: None means "auto": kafka-python probes the broker.
    api_version: tuple[int, ...] | None = setting(
        "kafka", "api_version", kafka_version, "2.5",
        'Kafka protocol version the client assumes, "X.Y" or "X.Y.Z", or "auto" to let '
        "kafka-python probe the broker. Default 2.5: probing has been seen to stall "
        "consumer-group joins for over a minute on some Kafka-compatible brokers (the "
        "embedded tansu broker among them), while 2.5 joins in seconds. Every Apache Kafka "
        "broker from 2.5 up, 4.x included, speaks these request versions. kafka-python only: "
        "librdkafka asks the broker.",
    )
    client_id: str = setting(
        "kafka", "client_id", nonempty_string, "streamgmm",
        "Client id sent to the broker; shows up in broker logs and quotas.",
    )
    group_id: str = setting(
        "kafka", "group_id", topic(optional=False), "streamgmm",
        "Consumer group. Run N instances with the same group_id to split the partitions "
        "between them.",
    )
    session_timeout_ms: int = setting(
        "kafka", "session_timeout_ms", integer(1000, 3_600_000), 10000,
        "Milliseconds without a heartbeat before the group evicts a member. A group's first "
        "join waits about half of this, so lower it in tests (for example 6000 with a 500 ms "
        "heartbeat).",
    )
    heartbeat_interval_ms: int = setting(
        "kafka", "heartbeat_interval_ms", integer(100, 3_600_000), 3000,
        "Milliseconds between heartbeats; must be lower than session_timeout_ms.",
    )
    max_poll_records: int = setting(
        "kafka", "max_poll_records", integer(1, 1_000_000), 2000,
        "Largest number of records one poll returns; one poll is one processing batch. "
        "Larger batches cost less CPU per record (each key's ticks of a poll go through its "
        "detector in one call) and add up to one batch's processing time to output latency.",
    )
    max_poll_interval_ms: int = setting(
        "kafka", "max_poll_interval_ms", integer(1000), 300000,
        "Milliseconds allowed between polls before the member is considered dead.",
    )
    auto_offset_reset: str = setting(
        "kafka", "auto_offset_reset", Choice(_OFFSET_RESETS), "earliest",
        "Where to start a partition that has no committed offset: $earliest or $latest.",
    )
    # kafka-python's consumer needs fetch_max_wait_ms (500) < this < connections_max_idle_ms.
    request_timeout_ms: int = setting(
        "kafka", "request_timeout_ms", integer(1000, 539_999), 30000,
        "Milliseconds the client waits for a broker response.",
    )
    retry_backoff_ms: int = setting(
        "kafka", "retry_backoff_ms", integer(0), 100,
        "Milliseconds to wait before retrying a failed request.",
    )
    reconnect_backoff_max_ms: int = setting(
        "kafka", "reconnect_backoff_max_ms", integer(1), 10000,
        "Upper bound, in milliseconds, of the exponential reconnect backoff while a broker "
        "is down.",
    )
    # [security]: only the keys that are set, ready for kafka-python
    security: Mapping[str, Any] = setting_group(
        ("security", "security_protocol", Choice(_SECURITY_PROTOCOLS, case=str.upper),
         "PLAINTEXT", "One of $choices.", False),
        ("security", "sasl_mechanism", Choice(_SASL_MECHANISMS, case=str.upper, blank=True),
         "", "One of $choices (with a SASL_* protocol).", False),
        ("security", "sasl_plain_username", string, "", "Username for PLAIN and SCRAM.", False),
        ("security", "sasl_plain_password", secret, "",
         "Password for PLAIN and SCRAM; prefer the environment variable "
         "STREAMGMM_SECURITY_SASL_PLAIN_PASSWORD to writing it here. Errors never print it.",
         True),
        ("security", "sasl_kerberos_service_name", string, "",
         "Kerberos service name, for GSSAPI.", False),
        ("security", "sasl_kerberos_domain_name", string, "",
         "Kerberos domain name, for GSSAPI (empty: the broker's host name).", False),
        ("security", "ssl_cafile", string, "",
         "PEM file of the CA certificates that sign the broker certificates.", False),
        ("security", "ssl_certfile", string, "",
         "PEM file of the client certificate, for mutual TLS.", False),
        ("security", "ssl_keyfile", string, "",
         "PEM file of the client private key, for mutual TLS.", False),
        ("security", "ssl_password", secret, "",
         "Password of ssl_keyfile, if it is encrypted. Errors never print it.", True),
        ("security", "ssl_crlfile", string, "", "PEM file of certificate revocation lists.",
         False),
        ("security", "ssl_check_hostname", boolean, True,
         "Check that the broker certificate matches its host name.", False),
    )
    # [topics]
    input_topic: str = setting(
        "topics", "input", topic(optional=False), "ticks", "Topic of incoming ticks."
    )
    output_topic: str = setting(
        "topics", "output", topic(optional=True), "",
        'Topic of regime records. Empty -> "<input>.regimes".',
    )
    dlq_topic: str = setting(
        "topics", "dlq", topic(optional=True), "",
        "Dead-letter topic for records that cannot be decoded or validated. Empty -> "
        '"<input>.dlq".',
    )
    changelog_topic: str = setting(
        "topics", "changelog", topic(optional=True), "",
        'Compacted topic of per-key model snapshots. Empty -> "<group_id>.changelog".',
    )
    create_topics: bool = setting(
        "topics", "create_missing", boolean, True,
        "Create missing output, dead-letter and changelog topics at start (the changelog "
        "compacted).",
    )
    topic_replication_factor: int = setting(
        "topics", "replication_factor", integer(1, 32), 1,
        "Replication factor for topics the service creates. Use 3 on a production cluster.",
    )
    # [input]
    tick_kind: str = setting(
        "input", "tick_kind", Choice(TICK_KINDS), "market",
        '$market: {"symbol", "ts", "price", "volume"?} ticks fed to a RegimeDetector. '
        '$event: {"ts", <event_fields>...} ticks fed to an EventDetector.',
    )
    event_fields: tuple[str, ...] = setting(
        "input", "event_fields", field_list, [],
        'Numeric fields read from event ticks (tick_kind = "event"); required then, ignored '
        "otherwise.",
    )
    key_field: str | None = setting(
        "input", "key_field", optional_field_name, "",
        "Empty -> the instrument key is the Kafka record key. Otherwise the key is read from "
        'this JSON field of the value (for example "symbol"), and the record key is ignored.',
    )
    out_of_order: str = setting(
        "input", "out_of_order", Choice(OUT_OF_ORDER), "reject",
        "What to do with a tick whose ts is earlier than the last ts applied to its key: "
        "$reject sends it to the dead-letter topic (reason out_of_order); $skip drops it, "
        "counted.",
    )
    max_record_bytes: int = setting(
        "input", "max_record_bytes", integer(64, 100 * 1024 * 1024), 65536,
        "Records whose value (the record's value bytes only; keys are bounded by "
        "max_key_bytes) is larger than this many bytes go to the dead-letter topic unparsed "
        "(reason oversized).",
    )
    max_key_bytes: int = setting(
        "input", "max_key_bytes", integer(1, 65536), 1024,
        "Records whose Kafka key, or whose key_field value in UTF-8, is longer than this "
        "many bytes go to the dead-letter topic (reason oversized_key). The key travels in "
        "every output record, snapshot and metric label, so it is kept short.",
    )
    ts_unit: str = setting(
        "input", "ts_unit", Choice(TS_UNITS, case=str.lower), "auto",
        "Unit of a ts given as a number: $s, $ms, $us or $ns (since the epoch, or since any "
        "start), or $auto: read from its size, below 1e11 as seconds, below 1e14 as "
        "milliseconds, below 1e17 as microseconds and below 1e20 as nanoseconds, so that "
        "times since the epoch from 1973 to 5138 are read right in each unit (anything larger "
        "is taken as seconds). Set the unit for a clock that does not count from the epoch, "
        "such as milliseconds since the start of a run. A ts given as ISO-8601 text is read "
        "as it is, whatever this says.",
    )
    max_ts_jump_seconds: float = setting(
        "input", "max_ts_jump_seconds", positive_float, 604800.0,
        "A tick whose ts is more than this many seconds ahead of both its key's last "
        "applied ts and the wall clock goes to the dead-letter topic (reason ts_jump), so "
        "that one outrageous timestamp cannot make every later tick of its key out of "
        "order. A key's first tick is measured against the wall clock alone. A tick no "
        "further ahead of the wall clock is never refused, whatever gap precedes it (a long "
        "trading halt, a backfill); a stream dated in the future must move in steps of at "
        "most this much. Default 7 days.",
    )
    # [output]
    emit_policy: str = setting(
        "output", "emit_policy", Choice(EMIT_POLICIES), "every_tick",
        "When to emit a regime record: $every_tick, $on_change (the key's first tick, then "
        "each tick whose regime differs from the previous tick's), or $every_n (each tick "
        "whose n_samples_seen is a multiple of emit_every_n).",
    )
    emit_every_n: int = setting(
        "output", "emit_every_n", integer(1), 10, 'N for emit_policy = "every_n".'
    )
    #: None ("auto"): true with kafka-python, false with confluent (see use_producer_process).
    producer_process: bool | None = setting(
        "output", "producer_process", boolean_or_auto, "auto",
        "Produce output and dead-letter records from a child process (true), so that the "
        "producer runs on another core instead of sharing the service's interpreter lock, or "
        "from the service process (false, also for platforms that restrict subprocesses). "
        '"auto" (the default) is true with kafka-python, whose producer costs enough CPU per '
        "record for the child to pay off (about 1.8x the throughput on 2 cores, "
        "benchmarks/bench_service.py), and false with confluent, whose librdkafka produces "
        "from its own threads already (benchmarks/bench_peers.py measured 1.16x the "
        "throughput without the child). Snapshots are always written from the service "
        "process.",
    )
    #: None: uncompressed batches.
    compression_type: str | None = setting(
        "output", "compression_type",
        Choice(("none", *COMPRESSION_TYPES), case=str.lower, none="none"), "none",
        "Codec of output and dead-letter batches: $alternatives. Input topics in any of these "
        "are read whatever this says; changelog snapshots stay uncompressed.",
    )
    #: Empty when made directly; load_settings fills in the default names.
    regime_names: tuple[str, ...] = setting(
        "output", "regime_names", name_list, [],
        "Names of the regimes, calmest first, written as each record's regime_name: one "
        "name per regime (as many as detector.n_regimes), distinct and not blank. Empty -> "
        '"calm", "turbulent" for two regimes, "calm", "normal", "turbulent" for three '
        '(one: "calm"; more: "calm", "normal_1", ..., "turbulent").',
    )
    # [checkpoint]
    checkpoint_every_records: int = setting(
        "checkpoint", "every_records", integer(1), 100000,
        "Checkpoint (flush outputs, write dirty snapshots to the changelog, commit offsets) "
        "after this many processed records, or after every_seconds, whichever comes first.",
    )
    checkpoint_every_seconds: float = setting(
        "checkpoint", "every_seconds", positive_float, 30.0,
        "Seconds between checkpoints at most (see every_records). Also on revoke and on "
        "shutdown.",
    )
    on_bad_snapshot: str = setting(
        "checkpoint", "on_bad_snapshot", Choice(ON_BAD_SNAPSHOT), "reset_key",
        "What to do with a changelog snapshot that cannot be restored (not a streamgmm "
        "snapshot, another version, or a state that fails validation): $reset_key starts "
        "that key afresh, sends the snapshot to the dead-letter topic (reason bad_snapshot) "
        "and counts it; $fail stops the service with exit code 1 and one log line naming "
        "the changelog record, the key and the reason.",
    )
    # [state]
    max_keys_in_memory: int = setting(
        "state", "max_keys_in_memory", integer(1), 100000,
        "Most per-key models held in memory; the least recently used key beyond this is "
        "checkpointed and evicted, and restored from the changelog when it shows up again.",
    )
    # [metrics]
    metrics_enabled: bool = setting(
        "metrics", "enabled", boolean, True, "Serve Prometheus metrics over HTTP."
    )
    metrics_host: str = setting(
        "metrics", "host", nonempty_string, "127.0.0.1",
        "Address to bind. 127.0.0.1 keeps metrics local; use 0.0.0.0 inside a container.",
    )
    metrics_port: int = setting(
        "metrics", "port", integer(0, 65535), 9464,
        "Port to bind; 0 picks a free port (logged at start).",
    )
    max_metric_keys: int = setting(
        "metrics", "max_keys", integer(0), 1000,
        "Most keys exported with per-key series; further keys are not exported until a "
        "partition revoke or an eviction frees a slot.",
    )
    # [logging]
    log_level: str = setting(
        "logging", "level", Choice(_LOG_LEVELS, case=str.upper), "INFO", "One of $choices."
    )
    # [detector]: only the parameters that were set (by name), typed and checked against the
    # detectors' declaration; their own defaults apply to the others (streamgmm.settings.detector)
    detector: Mapping[str, Any] = field(default_factory=dict, hash=False)
    # fmt: on


#: Every setting but ``[detector]``'s, in the order of the :class:`Settings` fields.
SPECS: tuple[Spec, ...] = specs_of(Settings)


def use_producer_process(settings: Settings) -> bool:
    """Whether the service produces from a child process (``[output] producer_process``)."""
    if settings.producer_process is None:
        return settings.client == "kafka-python"
    return settings.producer_process
