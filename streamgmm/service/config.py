"""Service settings: defaults < config file < environment < command line.

Owns every setting: its TOML section and key (``[kafka] bootstrap_servers``), its environment
variable (``STREAMGMM_KAFKA_BOOTSTRAP_SERVERS``), its attribute of the flat, frozen
:class:`Settings` (``settings.bootstrap_servers``), its parser, default and meaning. The table
:data:`SPECS` is the one home of all that; ``configs/default.toml`` and the settings table in
docs/service.md are generated from it (:func:`default_config_text`, :func:`settings_table`) and
a test holds them equal.

The ``[detector]`` settings are not listed by hand: :func:`detector_specs` derives them from
the constructors of :class:`~streamgmm.regime.RegimeDetector` and
:class:`~streamgmm.regime.EventDetector` (names, type hints, defaults, and the numpydoc
``Parameters`` section for their meaning), so a parameter added to a detector is a setting.
Their values are checked by the detector's own constructor; :attr:`Settings.detector` holds
only the parameters that were set, and the detector's defaults apply to the others.

Validation happens once, in :func:`load_settings`. A bad value raises :class:`ConfigError`
whose message is one line naming the setting, where it came from and the value, so the CLI
can print it and exit with code 2.
"""

from __future__ import annotations

import argparse
import functools
import inspect
import re
import textwrap
import tomllib
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

__all__ = [
    "COMPRESSION_TYPES",
    "EMIT_POLICIES",
    "ENV_PREFIX",
    "EXIT_CONFIG_ERROR",
    "ON_BAD_SNAPSHOT",
    "OUT_OF_ORDER",
    "SECURITY_KEYS",
    "SPECS",
    "ConfigError",
    "Settings",
    "add_cli_overrides",
    "all_specs",
    "default_config_text",
    "detector_class",
    "detector_kwargs",
    "detector_specs",
    "kafka_client_kwargs",
    "load_settings",
    "overrides_from_args",
    "settings_table",
]

ENV_PREFIX = "STREAMGMM_"
#: Exit code of ``streamgmm run`` for a bad setting (also one found only at start, such as a
#: metrics port in use).
EXIT_CONFIG_ERROR = 2

#: kafka-python options accepted in ``[security]``; all three client kinds take each of them.
SECURITY_KEYS: tuple[str, ...] = (
    "security_protocol",
    "sasl_mechanism",
    "sasl_plain_username",
    "sasl_plain_password",
    "sasl_kerberos_service_name",
    "sasl_kerberos_domain_name",
    "ssl_cafile",
    "ssl_certfile",
    "ssl_keyfile",
    "ssl_password",
    "ssl_crlfile",
    "ssl_check_hostname",
)
_SECRET_KEYS = frozenset({"sasl_plain_password", "ssl_password"})
_SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
_SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "GSSAPI", "OAUTHBEARER")
# Kafka's own rule for legal topic names.
_TOPIC_RE = re.compile(r"^[A-Za-z0-9._-]{1,249}$")
_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
#: Batch codecs kafka-python produces with the codec packages the core install brings.
COMPRESSION_TYPES = ("gzip", "lz4", "zstd", "snappy")
#: Values of ``[output] emit_policy`` (see :func:`streamgmm.service.apply.should_emit`).
EMIT_POLICIES = ("every_tick", "on_change", "every_n")
#: Values of ``[input] out_of_order``.
OUT_OF_ORDER = ("reject", "skip")
#: Values of ``[checkpoint] on_bad_snapshot``.
ON_BAD_SNAPSHOT = ("reset_key", "fail")
_FIELD_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class ConfigError(ValueError):
    """A setting has a bad value; the message is one line naming the setting and the value."""


class _Invalid(Exception):
    """Raised by a parser with the reason only; :func:`load_settings` adds name and value."""


@dataclass(frozen=True)
class Settings:
    """Validated service settings (flat; :data:`SPECS` says what each one means).

    Topic names are already derived: ``output_topic``, ``dlq_topic`` and ``changelog_topic``
    are never empty.
    """

    # [kafka]
    bootstrap_servers: tuple[str, ...]
    api_version: tuple[int, ...] | None  # None means "auto": kafka-python probes the broker
    client_id: str
    group_id: str
    session_timeout_ms: int
    heartbeat_interval_ms: int
    max_poll_records: int
    max_poll_interval_ms: int
    auto_offset_reset: str
    request_timeout_ms: int
    retry_backoff_ms: int
    reconnect_backoff_max_ms: int
    # [security]: only the keys that are set, ready for kafka-python
    security: Mapping[str, Any] = field(hash=False)
    # [topics]
    input_topic: str
    output_topic: str
    dlq_topic: str
    changelog_topic: str
    create_topics: bool
    topic_replication_factor: int
    # [input]
    tick_kind: str
    event_fields: tuple[str, ...]
    key_field: str | None
    out_of_order: str
    max_record_bytes: int
    max_key_bytes: int
    max_ts_jump_seconds: float
    # [output]
    emit_policy: str
    emit_every_n: int
    producer_process: bool
    compression_type: str | None  # None: uncompressed batches
    # [checkpoint]
    checkpoint_every_records: int
    checkpoint_every_seconds: float
    on_bad_snapshot: str
    # [state]
    max_keys_in_memory: int
    # [metrics]
    metrics_enabled: bool
    metrics_host: str
    metrics_port: int
    max_metric_keys: int
    # [logging]
    log_level: str
    # [detector]: only the parameters that were set (by name), typed and checked by the
    # detector; its own defaults apply to the others (see detector_kwargs)
    detector: Mapping[str, Any] = field(default_factory=dict, hash=False)


# --------------------------------------------------------------------------- value parsers
# Each parser takes a raw value (TOML-typed from files and overrides, str from the
# environment) and returns the typed value or raises _Invalid with the expected form.


def _int(lo: int | None = None, hi: int | None = None) -> Callable[[object], int]:
    def parse(raw: object) -> int:
        if isinstance(raw, bool):
            raise _Invalid("expected an integer, not a boolean")
        if isinstance(raw, str):
            try:
                value = int(raw.strip())
            except ValueError:
                raise _Invalid("expected an integer") from None
        elif isinstance(raw, int):
            value = raw
        elif isinstance(raw, float) and raw.is_integer():
            value = int(raw)
        else:
            raise _Invalid("expected an integer")
        if lo is not None and value < lo:
            raise _Invalid(f"expected an integer >= {lo}")
        if hi is not None and value > hi:
            raise _Invalid(f"expected an integer <= {hi}")
        return value

    return parse


def _positive_float(raw: object) -> float:
    if isinstance(raw, bool):
        raise _Invalid("expected a number, not a boolean")
    try:
        value = float(raw.strip()) if isinstance(raw, str) else float(raw)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise _Invalid("expected a number") from None
    if not (value > 0.0 and value < float("inf")):
        raise _Invalid("expected a finite number > 0")
    return value


def _compression(raw: object) -> str | None:
    text = _choice("none", *COMPRESSION_TYPES)(raw.strip().lower() if isinstance(raw, str) else raw)
    return None if text == "none" else text


def _bool(raw: object) -> bool:
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, str):
        text = raw.strip().lower()
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("0", "false", "no", "off"):
            return False
    raise _Invalid("expected true or false")


def _choice(*choices: str, upper: bool = False) -> Callable[[object], str]:
    def parse(raw: object) -> str:
        if not isinstance(raw, str):
            raise _Invalid(f"expected one of {', '.join(choices)}")
        text = raw.strip().upper() if upper else raw.strip()
        if text not in choices:
            raise _Invalid(f"expected one of {', '.join(choices)}")
        return text

    return parse


def _string(raw: object) -> str:
    if not isinstance(raw, str):
        raise _Invalid("expected a string")
    return raw.strip()


def _nonempty_string(raw: object) -> str:
    text = _string(raw)
    if not text:
        raise _Invalid("expected a non-empty string")
    return text


def _optional_field_name(raw: object) -> str | None:
    text = _string(raw)
    if not text:
        return None
    if not _FIELD_RE.match(text):
        raise _Invalid("expected a JSON field name of letters, digits and underscores")
    return text


def _string_list(raw: object) -> tuple[str, ...]:
    if isinstance(raw, str):
        items = [part.strip() for part in raw.split(",")]
        items = [part for part in items if part]
    elif isinstance(raw, list | tuple) and all(isinstance(part, str) for part in raw):
        items = [part.strip() for part in raw]
    else:
        raise _Invalid("expected a comma-separated string or a list of strings")
    return tuple(items)


def _servers(raw: object) -> tuple[str, ...]:
    servers = _string_list(raw)
    if not servers:
        raise _Invalid("expected at least one host:port")
    for server in servers:
        host, sep, port = server.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise _Invalid(f"expected host:port, got {server!r}")
    return servers


def _api_version(raw: object) -> tuple[int, ...] | None:
    if isinstance(raw, str):
        text = raw.strip()
        if text.lower() == "auto":
            return None
        parts: list[object] = list(text.split("."))
    elif isinstance(raw, list | tuple):
        parts = list(raw)
    else:
        raise _Invalid('expected "auto" or a version such as "2.5.0"')
    version_parts: list[int] = []
    for part in parts:
        if isinstance(part, bool) or not isinstance(part, int | str):
            raise _Invalid('expected "auto" or a version such as "2.5.0"')
        try:
            version_parts.append(int(part))
        except ValueError:
            raise _Invalid('expected "auto" or a version such as "2.5.0"') from None
    version = tuple(version_parts)
    if not 2 <= len(version) <= 3 or any(part < 0 for part in version) or version < (0, 10):
        raise _Invalid('expected "auto" or a version such as "2.5.0" (at least 0.10)')
    return version


def _topic(optional: bool) -> Callable[[object], str]:
    def parse(raw: object) -> str:
        text = _string(raw)
        if not text and optional:
            return ""
        if not _TOPIC_RE.match(text) or text in (".", ".."):
            raise _Invalid("expected a Kafka topic name: 1-249 of [A-Za-z0-9._-]")
        return text

    return parse


def _field_list(raw: object) -> tuple[str, ...]:
    names = _string_list(raw)
    for name in names:
        if not _FIELD_RE.match(name):
            raise _Invalid(f"expected JSON field names, got {name!r}")
    if len(set(names)) != len(names):
        raise _Invalid("expected distinct field names")
    return names


def _security_value(key: str) -> Callable[[object], object]:
    if key == "ssl_check_hostname":
        return _bool
    if key == "security_protocol":
        return _choice(*_SECURITY_PROTOCOLS, upper=True)

    def parse(raw: object) -> object:
        if key in _SECRET_KEYS:
            # A password is used verbatim: surrounding spaces may be part of it.
            if not isinstance(raw, str):
                raise _Invalid("expected a string")
            return raw
        text = _string(raw)
        if key == "sasl_mechanism" and text and text.upper() not in _SASL_MECHANISMS:
            raise _Invalid(f"expected one of {', '.join(_SASL_MECHANISMS)}")
        return text.upper() if key == "sasl_mechanism" else text

    return parse


# --------------------------------------------------------------------------- the spec table


@dataclass(frozen=True)
class _Spec:
    section: str
    key: str
    attr: str
    parse: Callable[[object], object]
    default: object  # as a config file writes it (TOML types)
    doc: str  # what the setting means

    @property
    def name(self) -> str:
        return f"{self.section}.{self.key}"

    @property
    def env(self) -> str:
        return f"{ENV_PREFIX}{self.section.upper()}_{self.key.upper()}"


_SECURITY_DOCS = {
    "security_protocol": "One of PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL.",
    "sasl_mechanism": "One of PLAIN, SCRAM-SHA-256, SCRAM-SHA-512, GSSAPI, OAUTHBEARER (with a "
    "SASL_* protocol).",
    "sasl_plain_username": "Username for PLAIN and SCRAM.",
    "sasl_plain_password": "Password for PLAIN and SCRAM; prefer the environment variable "
    "STREAMGMM_SECURITY_SASL_PLAIN_PASSWORD to writing it here. Errors never print it.",
    "sasl_kerberos_service_name": "Kerberos service name, for GSSAPI.",
    "sasl_kerberos_domain_name": "Kerberos domain name, for GSSAPI (empty: the broker's host "
    "name).",
    "ssl_cafile": "PEM file of the CA certificates that sign the broker certificates.",
    "ssl_certfile": "PEM file of the client certificate, for mutual TLS.",
    "ssl_keyfile": "PEM file of the client private key, for mutual TLS.",
    "ssl_password": "Password of ssl_keyfile, if it is encrypted. Errors never print it.",
    "ssl_crlfile": "PEM file of certificate revocation lists.",
    "ssl_check_hostname": "Check that the broker certificate matches its host name.",
}

#: What a section is about, where its settings need it (under its header in default.toml).
SECTION_DOCS: dict[str, str] = {
    "security": "Passed unchanged to every kafka-python client (consumer, producer, admin). "
    "Empty = not set.",
    "detector": "The per-key detector: the parameters of streamgmm.RegimeDetector (market ticks) "
    "and streamgmm.EventDetector (event ticks), with their defaults. Checked by the detector "
    'itself when the service starts. For a parameter that may be None, "" (or "none") means '
    "None.",
    "logging": "Log lines on stderr.",
}

SPECS: tuple[_Spec, ...] = (
    _Spec("kafka", "bootstrap_servers", "bootstrap_servers", _servers, "localhost:9092",
          "Comma-separated host:port list (a TOML array of strings is accepted too)."),
    _Spec("kafka", "api_version", "api_version", _api_version, "2.5",
          'Kafka protocol version the client assumes, "X.Y" or "X.Y.Z", or "auto" to let '
          "kafka-python probe the broker. Default 2.5: probing has been seen to stall "
          "consumer-group joins for over a minute on some Kafka-compatible brokers (the "
          "embedded tansu broker among them), while 2.5 joins in seconds. Every Apache Kafka "
          "broker from 2.5 up, 4.x included, speaks these request versions."),
    _Spec("kafka", "client_id", "client_id", _nonempty_string, "streamgmm",
          "Client id sent to the broker; shows up in broker logs and quotas."),
    _Spec("kafka", "group_id", "group_id", _topic(optional=False), "streamgmm",
          "Consumer group. Run N instances with the same group_id to split the partitions "
          "between them."),
    _Spec("kafka", "session_timeout_ms", "session_timeout_ms", _int(1000, 3_600_000), 10000,
          "Milliseconds without a heartbeat before the group evicts a member. A group's first "
          "join waits about half of this, so lower it in tests (for example 6000 with a 500 ms "
          "heartbeat)."),
    _Spec("kafka", "heartbeat_interval_ms", "heartbeat_interval_ms", _int(100, 3_600_000), 3000,
          "Milliseconds between heartbeats; must be lower than session_timeout_ms."),
    _Spec("kafka", "max_poll_records", "max_poll_records", _int(1, 1_000_000), 500,
          "Largest number of records one poll returns; one poll is one processing batch."),
    _Spec("kafka", "max_poll_interval_ms", "max_poll_interval_ms", _int(1000), 300000,
          "Milliseconds allowed between polls before the member is considered dead."),
    _Spec("kafka", "auto_offset_reset", "auto_offset_reset", _choice("earliest", "latest"),
          "earliest",
          'Where to start a partition that has no committed offset: "earliest" or "latest".'),
    # kafka-python's consumer needs fetch_max_wait_ms (500) < this < connections_max_idle_ms.
    _Spec("kafka", "request_timeout_ms", "request_timeout_ms", _int(1000, 539_999), 30000,
          "Milliseconds the client waits for a broker response."),
    _Spec("kafka", "retry_backoff_ms", "retry_backoff_ms", _int(0), 100,
          "Milliseconds to wait before retrying a failed request."),
    _Spec("kafka", "reconnect_backoff_max_ms", "reconnect_backoff_max_ms", _int(1), 10000,
          "Upper bound, in milliseconds, of the exponential reconnect backoff while a broker "
          "is down."),
    *(
        _Spec("security", key, f"security.{key}", _security_value(key),
              {"security_protocol": "PLAINTEXT", "ssl_check_hostname": True}.get(key, ""),
              _SECURITY_DOCS[key])
        for key in SECURITY_KEYS
    ),
    _Spec("topics", "input", "input_topic", _topic(optional=False), "ticks",
          "Topic of incoming ticks."),
    _Spec("topics", "output", "output_topic", _topic(optional=True), "",
          'Topic of regime records. Empty -> "<input>.regimes".'),
    _Spec("topics", "dlq", "dlq_topic", _topic(optional=True), "",
          "Dead-letter topic for records that cannot be decoded or validated. Empty -> "
          '"<input>.dlq".'),
    _Spec("topics", "changelog", "changelog_topic", _topic(optional=True), "",
          'Compacted topic of per-key model snapshots. Empty -> "<group_id>.changelog".'),
    _Spec("topics", "create_missing", "create_topics", _bool, True,
          "Create missing output, dead-letter and changelog topics at start (the changelog "
          "compacted)."),
    _Spec("topics", "replication_factor", "topic_replication_factor", _int(1, 32), 1,
          "Replication factor for topics the service creates. Use 3 on a production cluster."),
    _Spec("input", "tick_kind", "tick_kind", _choice("market", "event"), "market",
          '"market": {"symbol", "ts", "price", "volume"?} ticks fed to a RegimeDetector. '
          '"event": {"ts", <event_fields>...} ticks fed to an EventDetector.'),
    _Spec("input", "event_fields", "event_fields", _field_list, [],
          'Numeric fields read from event ticks (tick_kind = "event"); required then, ignored '
          "otherwise."),
    _Spec("input", "key_field", "key_field", _optional_field_name, "",
          "Empty -> the instrument key is the Kafka record key. Otherwise the key is read from "
          'this JSON field of the value (for example "symbol"), and the record key is ignored.'),
    _Spec("input", "out_of_order", "out_of_order", _choice(*OUT_OF_ORDER), "reject",
          "What to do with a tick whose ts is earlier than the last ts applied to its key: "
          '"reject" sends it to the dead-letter topic (reason out_of_order); "skip" drops it, '
          "counted."),
    _Spec("input", "max_record_bytes", "max_record_bytes", _int(64, 100 * 1024 * 1024), 65536,
          "Records whose value (the record's value bytes only; keys are bounded by "
          "max_key_bytes) is larger than this many bytes go to the dead-letter topic unparsed "
          "(reason oversized)."),
    _Spec("input", "max_key_bytes", "max_key_bytes", _int(1, 65536), 1024,
          "Records whose Kafka key, or whose key_field value in UTF-8, is longer than this "
          "many bytes go to the dead-letter topic (reason oversized_key). The key travels in "
          "every output record, snapshot and metric label, so it is kept short."),
    _Spec("input", "max_ts_jump_seconds", "max_ts_jump_seconds", _positive_float, 604800.0,
          "A tick whose ts is more than this many seconds ahead of both its key's last "
          "applied ts and the wall clock goes to the dead-letter topic (reason ts_jump), so "
          "that one outrageous timestamp cannot make every later tick of its key out of "
          "order. A key's first tick is measured against the wall clock alone. A tick no "
          "further ahead of the wall clock is never refused, whatever gap precedes it (a long "
          "trading halt, a backfill); a stream dated in the future must move in steps of at "
          "most this much. Default 7 days."),
    _Spec("output", "emit_policy", "emit_policy", _choice(*EMIT_POLICIES),
          "every_tick",
          'When to emit a regime record: "every_tick", "on_change" (the key\'s first tick, then '
          "each tick whose regime differs from the previous tick's), or \"every_n\" (each tick "
          "whose n_samples_seen is a multiple of emit_every_n)."),
    _Spec("output", "emit_every_n", "emit_every_n", _int(1), 10,
          'N for emit_policy = "every_n".'),
    _Spec("output", "producer_process", "producer_process", _bool, True,
          "Produce output and dead-letter records from a child process (true), so that "
          "kafka-python's producer runs on another core instead of sharing the service's "
          "interpreter lock; about 1.8x the throughput on 2 cores "
          "(benchmarks/bench_service.py). false keeps one process, for platforms that restrict "
          "subprocesses. Snapshots are always written from the service process."),
    _Spec("output", "compression_type", "compression_type", _compression, "none",
          "Codec of output and dead-letter batches: none, gzip, lz4, zstd or snappy. Input "
          "topics in any of these are read whatever this says; changelog snapshots stay "
          "uncompressed."),
    _Spec("checkpoint", "every_records", "checkpoint_every_records", _int(1), 10000,
          "Checkpoint (flush outputs, write dirty snapshots to the changelog, commit offsets) "
          "after this many processed records, or after every_seconds, whichever comes first."),
    _Spec("checkpoint", "every_seconds", "checkpoint_every_seconds", _positive_float, 30.0,
          "Seconds between checkpoints at most (see every_records). Also on revoke and on "
          "shutdown."),
    _Spec("checkpoint", "on_bad_snapshot", "on_bad_snapshot", _choice(*ON_BAD_SNAPSHOT),
          "reset_key",
          "What to do with a changelog snapshot that cannot be restored (not a streamgmm "
          "snapshot, another version, or a state that fails validation): \"reset_key\" starts "
          "that key afresh, sends the snapshot to the dead-letter topic (reason bad_snapshot) "
          "and counts it; \"fail\" stops the service with exit code 1 and one log line naming "
          "the changelog record, the key and the reason."),
    _Spec("state", "max_keys_in_memory", "max_keys_in_memory", _int(1), 100000,
          "Most per-key models held in memory; the least recently used key beyond this is "
          "checkpointed and evicted, and restored from the changelog when it shows up again."),
    _Spec("metrics", "enabled", "metrics_enabled", _bool, True,
          "Serve Prometheus metrics over HTTP."),
    _Spec("metrics", "host", "metrics_host", _nonempty_string, "127.0.0.1",
          "Address to bind. 127.0.0.1 keeps metrics local; use 0.0.0.0 inside a container."),
    _Spec("metrics", "port", "metrics_port", _int(0, 65535), 9464,
          "Port to bind; 0 picks a free port (logged at start)."),
    _Spec("metrics", "max_keys", "max_metric_keys", _int(0), 1000,
          "Most keys exported with per-key series; further keys are not exported until a "
          "partition revoke or an eviction frees a slot."),
    _Spec("logging", "level", "log_level", _choice(*_LOG_LEVELS, upper=True), "INFO",
          "One of DEBUG, INFO, WARNING, ERROR."),
)  # fmt: skip
_BY_NAME = {spec.name: spec for spec in SPECS}
_BY_ATTR = {spec.attr: spec for spec in SPECS}
_BY_ENV = {spec.env: spec for spec in SPECS}
_SECTIONS = frozenset(spec.section for spec in SPECS) | {"detector"}
#: Section order of configs/default.toml and the docs table.
_SECTION_ORDER = (
    "kafka", "security", "topics", "input", "output", "checkpoint", "state", "metrics",
    "detector", "logging",
)  # fmt: skip


# --------------------------------------------------------------------------- [detector]
# Derived from the detector classes: the first class that has a parameter gives its type,
# default and meaning. Detector parameters that other settings supply, and the settings'
# names for parameters a class names differently:
_DETECTOR_CLASSES = ("RegimeDetector", "EventDetector")
_SET_ELSEWHERE = frozenset({"fields"})  # [input] event_fields
_SETTING_NAME = {"n_components": "n_regimes"}  # EventDetector's name -> the setting's
#: Values that meant None before the [detector] section was derived; still read that way.
_LEGACY_NONE: dict[str, object] = {"halflife": 0.0, "seed": -1}


def _detector_classes() -> dict[str, type]:
    from streamgmm import regime

    return {name: getattr(regime, name) for name in _DETECTOR_CLASSES}


def detector_class(tick_kind: str) -> type:
    """The detector class ``[input] tick_kind`` selects."""
    return _detector_classes()["EventDetector" if tick_kind == "event" else "RegimeDetector"]


_RST_ROLE = re.compile(r":[a-z]+:`~?([^`]+)`")


def _numpydoc_parameters(doc: str | None) -> dict[str, str]:
    """Parameter name -> description, from a numpydoc ``Parameters`` section.

    Handles ``name`` / ``name : type`` headings, several comma-separated names sharing one
    description, and reStructuredText roles and literals (written as Markdown code).
    """
    lines = inspect.cleandoc(doc or "").splitlines()
    try:
        start = next(
            i + 2
            for i, line in enumerate(lines[:-1])
            if line.strip() == "Parameters" and set(lines[i + 1].strip()) == {"-"}
        )
    except StopIteration:
        return {}
    found: dict[str, str] = {}
    names: list[str] = []
    for i, line in enumerate(lines[start:], start):
        if i + 1 < len(lines) and line.strip() and set(lines[i + 1].strip()) == {"-"}:
            break  # the next section's heading
        if line and not line[0].isspace():
            names = [n.strip() for n in line.split(":", 1)[0].split(",") if n.strip()]
            for name in names:
                found[name] = ""
        elif line.strip():
            for name in names:
                found[name] = f"{found[name]} {line.strip()}".strip()
    return {
        name: _RST_ROLE.sub(lambda m: "`" + m.group(1).rsplit(".", 1)[-1] + "`", text).replace(
            "``", "`"
        )
        for name, text in found.items()
    }


def _number(raw: object) -> float:
    if isinstance(raw, bool):
        raise _Invalid("expected a number, not a boolean")
    try:
        return float(raw.strip()) if isinstance(raw, str) else float(raw)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise _Invalid("expected a number") from None


def _hint_parser(hint: object, where: str) -> Callable[[object], object]:
    """The parser of a setting whose detector parameter has type hint ``hint``."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (types.UnionType, typing.Union):
        optional = type(None) in args
        parsers = [_hint_parser(arg, where) for arg in args if arg is not type(None)]

        def parse_union(raw: object) -> object:
            if optional and (
                raw is None or (isinstance(raw, str) and raw.strip().lower() in ("", "none"))
            ):
                return None
            reasons = []
            for parse in parsers:
                try:
                    return parse(raw)
                except _Invalid as exc:
                    reasons.append(str(exc).removeprefix("expected "))
            raise _Invalid(
                "expected " + " or ".join(reasons + (['"" for None'] if optional else []))
            )

        return parse_union
    if origin is Literal:
        return _choice(*(str(arg) for arg in args))
    if hint is bool:
        return _bool
    if hint is int:
        return _int()
    if hint is float:
        return _number
    if hint is str:
        return _string
    if origin in (Sequence, list, tuple, typing.Sequence) and args[:1] == (str,):
        return _string_list
    raise TypeError(
        f"{where} has type {hint!r}, which settings cannot hold yet: teach "
        "streamgmm.service.config._hint_parser to read it"
    )


def _toml_default(value: object) -> object:
    if value is None:
        return ""
    if isinstance(value, tuple | list):
        return list(value)
    return value


@functools.cache
def detector_specs() -> tuple[_Spec, ...]:
    """The ``[detector]`` settings, derived from the detector classes' constructors.

    Imports :mod:`streamgmm.regime` (numba, river): called only when a ``[detector]`` setting
    is given, and to write the defaults and the docs.
    """
    classes = _detector_classes()
    specs: dict[str, _Spec] = {}
    owners: dict[str, list[str]] = {}
    for cls_name, cls in classes.items():
        hints = typing.get_type_hints(cls.__init__)  # type: ignore[misc]
        docs = _numpydoc_parameters(cls.__doc__)
        for name, param in inspect.signature(cls).parameters.items():
            if name in _SET_ELSEWHERE:
                continue
            if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
                continue
            key = _SETTING_NAME.get(name, name)
            owners.setdefault(key, []).append(cls_name)
            if key in specs:
                continue
            where = f"{cls_name}.__init__ parameter {name!r}"
            if param.default is param.empty:
                raise TypeError(f"{where} has no default, so the service cannot leave it unset")
            parse = _hint_parser(hints[name], where)
            if key in _LEGACY_NONE:
                parse = _with_legacy_none(parse, _LEGACY_NONE[key])
            specs[key] = _Spec(
                "detector", key, f"detector.{key}", parse, _toml_default(param.default),
                docs.get(name) or f"See {cls_name}.",
            )  # fmt: skip
    for key, spec in specs.items():
        notes = []
        if key in _LEGACY_NONE:
            notes.append(f"{_toml_value(_LEGACY_NONE[key])} also means None.")
        if len(owners[key]) < len(classes):
            kind = "Market" if owners[key] == ["RegimeDetector"] else "Event"
            notes.append(f"{kind} ticks only.")
        if notes:
            doc = spec.doc if spec.doc.endswith(".") else spec.doc + "."
            specs[key] = _Spec(
                spec.section, key, spec.attr, spec.parse, spec.default, " ".join([doc, *notes])
            )
    return tuple(specs.values())


def _with_legacy_none(
    parse: Callable[[object], object], legacy: object
) -> Callable[[object], object]:
    def parse_legacy(raw: object) -> object:
        value = parse(raw)
        return None if value == legacy and not isinstance(value, bool) else value

    return parse_legacy


def all_specs() -> tuple[_Spec, ...]:
    """Every setting, ``[detector]`` included, in the order of configs/default.toml."""
    everything = SPECS + detector_specs()
    return tuple(
        spec for section in _SECTION_ORDER for spec in everything if spec.section == section
    )


@functools.cache
def _parameters(tick_kind: str) -> Mapping[str, inspect.Parameter]:
    return inspect.signature(detector_class(tick_kind)).parameters


def detector_kwargs(settings: Settings) -> dict[str, Any]:
    """Keyword arguments of the detector class ``settings.tick_kind`` selects.

    The ``[detector]`` parameters that were set and that this class takes, under its own names,
    plus ``fields`` (``[input] event_fields``) for event ticks. Parameters left unset take the
    class's defaults.
    """
    accepted = _parameters(settings.tick_kind)
    to_param = {setting: param for param, setting in _SETTING_NAME.items() if param in accepted}
    kwargs = {
        to_param.get(key, key): value
        for key, value in settings.detector.items()
        if to_param.get(key, key) in accepted
    }
    if "fields" in accepted:
        kwargs["fields"] = list(settings.event_fields)
    return kwargs


# --------------------------------------------------------------------------- the defaults

_CONFIG_HEADER = """\
# streamgmm service — default configuration.
#
# Every setting, at its default, with what it means. Generated from the code
# (streamgmm.service.config.default_config_text); tests/test_config.py holds this file equal.
# A config file may set any subset of these keys. Precedence, lowest to highest:
#   1. these defaults;
#   2. the file given with `streamgmm run --config FILE` (only the keys it sets);
#   3. environment variables STREAMGMM_<SECTION>_<KEY>, e.g. STREAMGMM_KAFKA_BOOTSTRAP_SERVERS,
#      STREAMGMM_TOPICS_INPUT, STREAMGMM_DETECTOR_DT_UNIT, STREAMGMM_SECURITY_SASL_PLAIN_PASSWORD;
#   4. command-line flags: --set SECTION.KEY=VALUE for any setting, and --bootstrap-servers,
#      --input-topic, --output-topic, --group-id, --metrics-port, --metrics-host.
# Every value is validated when the service starts; a bad value stops it with a one-line
# message naming the setting and the value, and exit code 2.
# An empty string means "not set" wherever a setting is optional.
"""


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return repr(value)


def _comment(text: str, width: int = 99) -> list[str]:
    return textwrap.wrap(text, width - 2, initial_indent="# ", subsequent_indent="# ")


def default_config_text() -> str:
    """Every setting at its default, with its meaning: the text of configs/default.toml."""
    lines = [_CONFIG_HEADER.rstrip("\n")]
    section = ""
    for spec in all_specs():
        if spec.section != section:
            section = spec.section
            lines += ["", f"[{section}]"]
            if section in SECTION_DOCS:
                lines += [*_comment(SECTION_DOCS[section]), "#"]
        lines += [*_comment(spec.doc), f"{spec.key} = {_toml_value(spec.default)}"]
    return "\n".join(lines) + "\n"


def settings_table() -> str:
    """Every setting as a Markdown table (docs/service.md holds exactly this)."""
    rows = [
        "| setting | environment variable | default | meaning |",
        "|---------|----------------------|---------|---------|",
    ]
    for spec in all_specs():
        doc = spec.doc.replace("|", "\\|")
        rows.append(f"| `{spec.name}` | `{spec.env}` | `{_toml_value(spec.default)}` | {doc} |")
    return "\n".join(rows) + "\n"


# --------------------------------------------------------------------------- loading


def _shown(spec: _Spec, raw: object) -> str:
    if spec.key in _SECRET_KEYS and raw not in ("", None):
        return "'***'"
    return repr(raw)


def _flatten(document: Mapping[str, Any], source: str) -> dict[str, tuple[object, str]]:
    """Map ``section.key`` -> (raw value, source) for a parsed TOML document."""
    flat: dict[str, tuple[object, str]] = {}
    for section, table in document.items():
        if section not in _SECTIONS:
            raise ConfigError(f"unknown section [{section}] in {source}")
        if not isinstance(table, Mapping):
            raise ConfigError(f"setting {section} in {source} must be a [{section}] table")
        for key, raw in table.items():
            name = f"{section}.{key}"
            if _spec(name) is None:
                raise ConfigError(f"unknown setting {name} in {source}")
            flat[name] = (raw, source)
    return flat


def _spec(name: str) -> _Spec | None:
    """The setting called ``section.key``; [detector] ones are derived on first use."""
    spec = _BY_NAME.get(name)
    if spec is None and name.startswith("detector."):
        spec = next((s for s in detector_specs() if s.name == name), None)
    return spec


def _read_toml(text: str, source: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"cannot parse {source}: {exc}".replace("\n", " ")) from None


def load_settings(
    config_file: str | Path | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, object] | None = None,
) -> Settings:
    """Build validated :class:`Settings` from all configuration layers.

    Parameters
    ----------
    config_file
        Optional TOML file; it may set any subset of the keys of ``default.toml``.
    env
        Environment mapping (usually ``os.environ``). Variables ``STREAMGMM_<SECTION>_<KEY>``
        of a known section override the file; a misspelt key in a known section is an
        error, while other ``STREAMGMM_*`` variables are left to other tools.
    overrides
        Highest layer, from CLI flags: keys are :class:`Settings` attribute names
        (``"input_topic"``) or ``"section.key"`` names; ``None`` values are ignored.

    Returns
    -------
    Settings

    Raises
    ------
    ConfigError
        With a one-line message naming the setting, its source and the bad value.
    """
    values = {spec.name: (spec.default, "defaults") for spec in SPECS}
    if config_file is not None:
        path = Path(config_file)
        try:
            text = path.read_text("utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot read config file {str(path)!r}: {exc.strerror}") from None
        except UnicodeDecodeError:
            raise ConfigError(f"cannot read config file {str(path)!r}: not UTF-8") from None
        values.update(_flatten(_read_toml(text, f"config file {path}"), f"config file {path}"))
    for var, raw in (env or {}).items():
        if not var.startswith(ENV_PREFIX):
            continue
        spec = _BY_ENV.get(var)
        section, _, key = var[len(ENV_PREFIX) :].partition("_")
        if spec is None and section == "DETECTOR":
            spec = _spec(f"detector.{key.lower()}")
        if spec is None:
            if section.lower() in _SECTIONS:
                raise ConfigError(f"unknown setting in environment variable {var}")
            continue
        values[spec.name] = (raw, f"env {var}")
    for key, value in (overrides or {}).items():
        if value is None:
            continue
        spec = _BY_ATTR.get(key) or _spec(key)
        if spec is None:
            raise ConfigError(f"unknown setting {key!r} in command-line overrides")
        values[spec.name] = (value, "command line")

    typed: dict[str, object] = {}
    security: dict[str, object] = {}
    detector: dict[str, object] = {}
    sources: dict[str, str] = {}
    for name, (given, source) in values.items():
        spec = _spec(name)
        assert spec is not None
        try:
            value = spec.parse(given)
        except _Invalid as exc:
            raise ConfigError(
                f"invalid setting {name} = {_shown(spec, given)} (from {source}): {exc}"
            ) from None
        sources[name] = source
        if spec.section == "security":
            # Empty strings mean "not set", so kafka-python keeps its own default.
            if value != "":
                security[spec.key] = value
        elif spec.section == "detector":
            detector[spec.key] = value
        else:
            typed[spec.attr] = value
    settings = _finish(typed, security, detector, sources, values)
    if detector:
        _check_detector(settings, sources, values)
    return settings


def _finish(
    typed: dict[str, object],
    security: dict[str, object],
    detector: dict[str, object],
    sources: dict[str, str],
    values: Mapping[str, tuple[object, str]],
) -> Settings:
    """Derive topic names and check rules that involve more than one setting."""

    def fail(name: str, reason: str) -> ConfigError:
        spec = _BY_NAME[name]
        raw = values[name][0]
        return ConfigError(
            f"invalid setting {name} = {_shown(spec, raw)} (from {sources[name]}): {reason}"
        )

    if typed["heartbeat_interval_ms"] >= typed["session_timeout_ms"]:  # type: ignore[operator]
        raise fail("kafka.heartbeat_interval_ms", "must be lower than kafka.session_timeout_ms")
    if typed["tick_kind"] == "event" and not typed["event_fields"]:
        raise fail("input.event_fields", "must name at least one field when tick_kind = 'event'")
    if typed["tick_kind"] == "event" and "ts" in typed["event_fields"]:  # type: ignore[operator]
        raise fail("input.event_fields", "'ts' is the timestamp, not an event field")
    mechanism = security.get("sasl_mechanism")
    protocol = str(security.get("security_protocol", "PLAINTEXT"))
    if mechanism and not protocol.startswith("SASL_"):
        raise fail("security.sasl_mechanism", "needs security_protocol SASL_PLAINTEXT or SASL_SSL")
    if protocol.startswith("SASL_") and not mechanism:
        raise fail("security.security_protocol", "needs security.sasl_mechanism to be set")

    input_topic = str(typed["input_topic"])
    if not typed["output_topic"]:
        typed["output_topic"] = f"{input_topic}.regimes"
    if not typed["dlq_topic"]:
        typed["dlq_topic"] = f"{input_topic}.dlq"
    if not typed["changelog_topic"]:
        typed["changelog_topic"] = f"{typed['group_id']}.changelog"
    names = {
        "topics.input": input_topic,
        "topics.output": typed["output_topic"],
        "topics.dlq": typed["dlq_topic"],
        "topics.changelog": typed["changelog_topic"],
    }
    seen: dict[object, str] = {}
    for name, topic in names.items():
        if topic in seen:
            raise fail(name, f"the topic {topic!r} is also {seen[topic]}; topics must differ")
        seen[topic] = name
    for name, topic in names.items():
        if len(str(topic)) > 249:
            raise fail(name, f"the derived topic name {str(topic)[:40]}... is over 249 characters")
    return Settings(security=security, detector=detector, **typed)  # type: ignore[arg-type]


def _check_detector(
    settings: Settings, sources: Mapping[str, str], values: Mapping[str, tuple[object, str]]
) -> None:
    """Build the detector once with the [detector] settings given: its constructor checks them.

    Its ``ValueError`` names a parameter; the ConfigError names that setting, its source and
    value (or, if the message names no setting that was given, every one that was).
    """
    cls = detector_class(settings.tick_kind)
    try:
        cls(**detector_kwargs(settings))
    except (ValueError, TypeError) as exc:
        message = " ".join(str(exc).split())
        given = sorted(settings.detector, key=len, reverse=True)
        named = [k for k in given if re.search(rf"\b{re.escape(k)}\b", message)]
        named += [
            setting
            for param, setting in _SETTING_NAME.items()
            if setting in given and re.search(rf"\b{re.escape(param)}\b", message)
        ]
        if not named and len(given) == 1:
            named = given  # the one setting given is the one at fault
        if named:
            name = f"detector.{named[0]}"
            raw = values[name][0]
            raise ConfigError(
                f"invalid setting {name} = {raw!r} (from {sources[name]}): {message}"
            ) from None
        shown = ", ".join(
            f"{name} = {values[name][0]!r} (from {sources[name]})"
            for name in sorted(f"detector.{k}" for k in settings.detector)
        )
        raise ConfigError(f"invalid [detector] settings {shown}: {message}") from None


def kafka_client_kwargs(settings: Settings) -> dict[str, Any]:
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


# --------------------------------------------------------------------------- CLI helpers

_CLI_FLAGS: tuple[tuple[str, str, str, type], ...] = (
    ("--bootstrap-servers", "bootstrap_servers", "Kafka bootstrap servers, host:port[,...]", str),
    ("--input-topic", "input_topic", "topic of incoming ticks", str),
    ("--output-topic", "output_topic", "topic of regime records", str),
    ("--group-id", "group_id", "consumer group id", str),
    ("--metrics-port", "metrics_port", "Prometheus metrics port (0 = any free port)", str),
    ("--metrics-host", "metrics_host", "Prometheus metrics bind address", str),
)


def add_cli_overrides(parser: argparse.ArgumentParser, kafka_flags: bool = True) -> None:
    """Add ``--config``, ``--set SECTION.KEY=VALUE`` and the named override flags to ``parser``.

    Values stay strings here, so :func:`load_settings` validates them (and reports a bad
    ``--metrics-port`` as a ConfigError, exit code 2) exactly like file and env values.
    ``kafka_flags=False`` leaves out the named Kafka and metrics flags (for ``replay``).
    """
    parser.add_argument(
        "--config",
        metavar="FILE",
        default=None,
        help="TOML configuration file (overrides the defaults)",
    )
    parser.add_argument(
        "--set",
        dest="set_settings",
        metavar="SECTION.KEY=VALUE",
        action="append",
        default=None,
        help="set any setting, e.g. --set detector.dt_unit=60 (repeatable; highest precedence)",
    )
    for flag, dest, help_text, kind in _CLI_FLAGS if kafka_flags else ():
        parser.add_argument(flag, dest=dest, default=None, type=kind, help=help_text)


def overrides_from_args(args: argparse.Namespace) -> dict[str, object]:
    """Return the overrides given on the command line (flags left out are omitted).

    Raises
    ------
    ConfigError
        For a ``--set`` that is not ``SECTION.KEY=VALUE``.
    """
    found: dict[str, object] = {}
    for item in getattr(args, "set_settings", None) or ():
        name, sep, value = item.partition("=")
        if not sep or "." not in name:
            raise ConfigError(f"--set {item!r}: expected SECTION.KEY=VALUE")
        found[name.strip()] = value
    for _flag, dest, _help, _kind in _CLI_FLAGS:
        value = getattr(args, dest, None)
        if value is not None:
            found[dest] = value
    return found
