"""Service settings: shipped defaults < config file < environment < CLI overrides.

Every setting has one home in a TOML section (``[kafka] bootstrap_servers``), one
environment variable (``STREAMGMM_KAFKA_BOOTSTRAP_SERVERS``) and one attribute of the flat,
frozen :class:`Settings` (``settings.bootstrap_servers``). The table :data:`SPECS` is the
single source of that mapping; ``streamgmm/service/default.toml`` documents each entry.

Validation happens once, in :func:`load_settings`. A bad value raises :class:`ConfigError`
whose message is one line naming the setting, where it came from and the value, so the CLI
can print it and exit with code 2.
"""

from __future__ import annotations

import argparse
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

__all__ = [
    "COMPRESSION_TYPES",
    "ENV_PREFIX",
    "SECURITY_KEYS",
    "SPECS",
    "ConfigError",
    "Settings",
    "add_cli_overrides",
    "default_config_text",
    "kafka_client_kwargs",
    "load_settings",
    "overrides_from_args",
]

ENV_PREFIX = "STREAMGMM_"

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
_FIELD_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class ConfigError(ValueError):
    """A setting has a bad value; the message is one line naming the setting and the value."""


class _Invalid(Exception):
    """Raised by a parser with the reason only; :func:`load_settings` adds name and value."""


@dataclass(frozen=True)
class Settings:
    """Validated service settings (flat; see ``default.toml`` for each one's meaning).

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
    # [output]
    emit_policy: str
    emit_every_n: int
    producer_process: bool
    compression_type: str | None  # None: uncompressed batches
    # [checkpoint]
    checkpoint_every_records: int
    checkpoint_every_seconds: float
    # [state]
    max_keys_in_memory: int
    # [metrics]
    metrics_enabled: bool
    metrics_host: str
    metrics_port: int
    max_metric_keys: int
    # [detector]
    n_regimes: int
    halflife: float | None  # None: stepwise learning-rate schedule
    warmup: int
    seed: int | None  # None: unseeded
    # [logging]
    log_level: str


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


def _halflife(raw: object) -> float | None:
    expected = "expected a finite number > 0, or 0 for the stepwise schedule"
    if isinstance(raw, str) and raw.strip().lower() in ("", "none"):
        return None
    if isinstance(raw, bool):
        raise _Invalid(expected)
    try:
        value = float(raw.strip()) if isinstance(raw, str) else float(raw)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise _Invalid(expected) from None
    if value == 0.0:
        return None
    if not (value > 0.0 and value < float("inf")):
        raise _Invalid(expected)
    return value


def _compression(raw: object) -> str | None:
    text = _choice("none", *COMPRESSION_TYPES)(raw.strip().lower() if isinstance(raw, str) else raw)
    return None if text == "none" else text


def _seed(raw: object) -> int | None:
    value = _int(lo=-1, hi=2**32 - 1)(raw)
    return None if value == -1 else value


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

    @property
    def name(self) -> str:
        return f"{self.section}.{self.key}"

    @property
    def env(self) -> str:
        return f"{ENV_PREFIX}{self.section.upper()}_{self.key.upper()}"


SPECS: tuple[_Spec, ...] = (
    _Spec("kafka", "bootstrap_servers", "bootstrap_servers", _servers),
    _Spec("kafka", "api_version", "api_version", _api_version),
    _Spec("kafka", "client_id", "client_id", _nonempty_string),
    _Spec("kafka", "group_id", "group_id", _topic(optional=False)),
    _Spec("kafka", "session_timeout_ms", "session_timeout_ms", _int(1000, 3_600_000)),
    _Spec("kafka", "heartbeat_interval_ms", "heartbeat_interval_ms", _int(100, 3_600_000)),
    _Spec("kafka", "max_poll_records", "max_poll_records", _int(1, 1_000_000)),
    _Spec("kafka", "max_poll_interval_ms", "max_poll_interval_ms", _int(1000)),
    _Spec("kafka", "auto_offset_reset", "auto_offset_reset", _choice("earliest", "latest")),
    # kafka-python's consumer needs fetch_max_wait_ms (500) < this < connections_max_idle_ms.
    _Spec("kafka", "request_timeout_ms", "request_timeout_ms", _int(1000, 539_999)),
    _Spec("kafka", "retry_backoff_ms", "retry_backoff_ms", _int(0)),
    _Spec("kafka", "reconnect_backoff_max_ms", "reconnect_backoff_max_ms", _int(1)),
    *(_Spec("security", key, f"security.{key}", _security_value(key)) for key in SECURITY_KEYS),
    _Spec("topics", "input", "input_topic", _topic(optional=False)),
    _Spec("topics", "output", "output_topic", _topic(optional=True)),
    _Spec("topics", "dlq", "dlq_topic", _topic(optional=True)),
    _Spec("topics", "changelog", "changelog_topic", _topic(optional=True)),
    _Spec("topics", "create_missing", "create_topics", _bool),
    _Spec("topics", "replication_factor", "topic_replication_factor", _int(1, 32)),
    _Spec("input", "tick_kind", "tick_kind", _choice("market", "event")),
    _Spec("input", "event_fields", "event_fields", _field_list),
    _Spec("input", "key_field", "key_field", _optional_field_name),
    _Spec("input", "out_of_order", "out_of_order", _choice("reject", "skip")),
    _Spec("input", "max_record_bytes", "max_record_bytes", _int(64, 100 * 1024 * 1024)),
    _Spec("output", "emit_policy", "emit_policy", _choice("every_tick", "on_change", "every_n")),
    _Spec("output", "emit_every_n", "emit_every_n", _int(1)),
    _Spec("output", "producer_process", "producer_process", _bool),
    _Spec("output", "compression_type", "compression_type", _compression),
    _Spec("checkpoint", "every_records", "checkpoint_every_records", _int(1)),
    _Spec("checkpoint", "every_seconds", "checkpoint_every_seconds", _positive_float),
    _Spec("state", "max_keys_in_memory", "max_keys_in_memory", _int(1)),
    _Spec("metrics", "enabled", "metrics_enabled", _bool),
    _Spec("metrics", "host", "metrics_host", _nonempty_string),
    _Spec("metrics", "port", "metrics_port", _int(0, 65535)),
    _Spec("metrics", "max_keys", "max_metric_keys", _int(0)),
    _Spec("detector", "n_regimes", "n_regimes", _int(2, 16)),
    _Spec("detector", "halflife", "halflife", _halflife),
    _Spec("detector", "warmup", "warmup", _int(1)),
    _Spec("detector", "seed", "seed", _seed),
    _Spec("logging", "level", "log_level", _choice(*_LOG_LEVELS, upper=True)),
)
_BY_NAME = {spec.name: spec for spec in SPECS}
_BY_ATTR = {spec.attr: spec for spec in SPECS}
_BY_ENV = {spec.env: spec for spec in SPECS}
_SECTIONS = frozenset(spec.section for spec in SPECS)


# --------------------------------------------------------------------------- loading


def default_config_text() -> str:
    """Return the text of the shipped default configuration (package data)."""
    try:
        return resources.files("streamgmm.service").joinpath("default.toml").read_text("utf-8")
    except FileNotFoundError:
        # Only a broken install gets here: the file is package data of streamgmm.service.
        raise ConfigError(
            "the shipped defaults streamgmm/service/default.toml are missing from the install"
        ) from None


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
            if name not in _BY_NAME:
                raise ConfigError(f"unknown setting {name} in {source}")
            flat[name] = (raw, source)
    return flat


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
    values = _flatten(_read_toml(default_config_text(), "the shipped defaults"), "defaults")
    if config_file is not None:
        path = Path(config_file)
        try:
            text = path.read_text("utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot read config file {str(path)!r}: {exc.strerror}") from None
        except UnicodeDecodeError:
            raise ConfigError(f"cannot read config file {str(path)!r}: not UTF-8") from None
        values.update(_flatten(_read_toml(text, f"config file {path}"), f"config file {path}"))
    for var, text in (env or {}).items():
        if not var.startswith(ENV_PREFIX):
            continue
        spec = _BY_ENV.get(var)
        if spec is None:
            section = var[len(ENV_PREFIX) :].split("_", 1)[0].lower()
            if section in _SECTIONS:
                raise ConfigError(f"unknown setting in environment variable {var}")
            continue
        values[spec.name] = (text, f"env {var}")
    for key, raw in (overrides or {}).items():
        if raw is None:
            continue
        spec = _BY_ATTR.get(key) or _BY_NAME.get(key)
        if spec is None:
            raise ConfigError(f"unknown setting {key!r} in command-line overrides")
        values[spec.name] = (raw, "command line")

    typed: dict[str, object] = {}
    security: dict[str, object] = {}
    sources: dict[str, str] = {}
    for name, (raw, source) in values.items():
        spec = _BY_NAME[name]
        try:
            value = spec.parse(raw)
        except _Invalid as exc:
            raise ConfigError(
                f"invalid setting {name} = {_shown(spec, raw)} (from {source}): {exc}"
            ) from None
        sources[name] = source
        if spec.section == "security":
            # Empty strings mean "not set", so kafka-python keeps its own default.
            if value != "":
                security[spec.key] = value
        else:
            typed[spec.attr] = value
    return _finish(typed, security, sources, values)


def _finish(
    typed: dict[str, object],
    security: dict[str, object],
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
    return Settings(security=security, **typed)  # type: ignore[arg-type]


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


def add_cli_overrides(parser: argparse.ArgumentParser) -> None:
    """Add ``--config`` and the setting-override flags to ``parser``.

    Values stay strings here, so :func:`load_settings` validates them (and reports a bad
    ``--metrics-port`` as a ConfigError, exit code 2) exactly like file and env values.
    """
    parser.add_argument(
        "--config",
        metavar="FILE",
        default=None,
        help="TOML configuration file (overrides the shipped defaults)",
    )
    for flag, dest, help_text, kind in _CLI_FLAGS:
        parser.add_argument(flag, dest=dest, default=None, type=kind, help=help_text)


def overrides_from_args(args: argparse.Namespace) -> dict[str, object]:
    """Return the overrides given on the command line (flags left out are omitted)."""
    found: dict[str, object] = {}
    for _flag, dest, _help, _kind in _CLI_FLAGS:
        value = getattr(args, dest, None)
        if value is not None:
            found[dest] = value
    return found
