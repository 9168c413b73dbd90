"""Layered loading: defaults < config file < environment < command line, validated once.

:func:`load_settings` gathers each setting's raw value and where it came from, layer by layer,
then parses every value with its declared parser (:mod:`streamgmm.settings.service`, and the
detectors' own declaration for ``[detector]``), checks the rules that involve more than one
setting, and derives the topic names. A bad value raises
:class:`~streamgmm.settings.spec.ConfigError` whose message is one line naming the setting,
where it came from and the value, so a command can print it and exit with code 2. A name that
is not a setting (in a file, a flag or a ``STREAMGMM_*`` environment variable) comes with the
closest setting's name, when one is close ("did you mean ...?").
"""

from __future__ import annotations

import difflib
import tomllib
import warnings
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from streamgmm.settings.detector import check_detector, check_regime_names
from streamgmm.settings.parsers import Invalid
from streamgmm.settings.service import SPECS, Settings
from streamgmm.settings.spec import ENV_PREFIX, ConfigError
from streamgmm.settings.table import SECTIONS, all_specs, spec_named, spec_of_attr, spec_of_env

__all__ = ["did_you_mean", "load_settings"]

#: The mapping fields of Settings made of several settings (``[security]``).
_GROUPS = tuple(dict.fromkeys(spec.attr.split(".")[0] for spec in SPECS if "." in spec.attr))


def did_you_mean(name: str, candidates: Iterable[str], shown: str = "{}") -> str:
    """``"; did you mean X?"`` for the candidate closest to ``name``, or ``""`` if none is close.

    ``shown`` formats the candidate (``"[{}]"`` for a section).
    """
    close = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.75)
    return f"; did you mean {shown.format(close[0])}?" if close else ""


def _setting_names() -> list[str]:
    return [spec.name for spec in all_specs()]


def _flatten(document: Mapping[str, Any], source: str) -> dict[str, tuple[object, str]]:
    """Map ``section.key`` -> (raw value, source) for a parsed TOML document."""
    flat: dict[str, tuple[object, str]] = {}
    for section, table in document.items():
        if section not in SECTIONS:
            hint = did_you_mean(section, SECTIONS, "[{}]")
            raise ConfigError(f"unknown section [{section}] in {source}{hint}")
        if not isinstance(table, Mapping):
            raise ConfigError(f"setting {section} in {source} must be a [{section}] table")
        for key, raw in table.items():
            name = f"{section}.{key}"
            if spec_named(name) is None:
                hint = did_you_mean(name, _setting_names())
                raise ConfigError(f"unknown setting {name} in {source}{hint}")
            flat[name] = (raw, source)
    return flat


def _environment(
    env: Mapping[str, str], warn: Callable[[str], None]
) -> dict[str, tuple[object, str]]:
    """Map ``section.key`` -> (raw value, source) for the ``STREAMGMM_*`` variables of ``env``.

    A variable of a known section that names no setting is an error; any other
    ``STREAMGMM_*`` variable that names no setting is ignored, with a warning.
    """
    found: dict[str, tuple[object, str]] = {}
    for var, raw in env.items():
        if not var.startswith(ENV_PREFIX):
            continue
        spec = spec_of_env(var)
        if spec is not None:
            found[spec.name] = (raw, f"env {var}")
            continue
        hint = did_you_mean(var, [spec.env for spec in all_specs()])
        section = var[len(ENV_PREFIX) :].partition("_")[0]
        if section.lower() in SECTIONS:
            raise ConfigError(f"unknown setting in environment variable {var}{hint}")
        warn(f"environment variable {var} names no setting and is ignored{hint}")
    return found


def _read_toml(text: str, source: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"cannot parse {source}: {exc}".replace("\n", " ")) from None


def _warn(message: str) -> None:
    # stacklevel: the caller of load_settings.
    warnings.warn(message, stacklevel=4)


def load_settings(
    config_file: str | Path | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, object] | None = None,
    *,
    warn: Callable[[str], None] = _warn,
) -> Settings:
    """Build validated :class:`Settings` from all configuration layers.

    Parameters
    ----------
    config_file
        Optional TOML file; it may set any subset of the keys of ``default.toml``.
    env
        Environment mapping (usually ``os.environ``). Variables ``STREAMGMM_<SECTION>_<KEY>``
        override the file; a misspelt key in a known section is an error, and any other
        ``STREAMGMM_*`` variable that names no setting is ignored with a warning.
    overrides
        Highest layer, from CLI flags: keys are :class:`Settings` attribute names
        (``"input_topic"``) or ``"section.key"`` names; ``None`` values are ignored.
    warn
        Called with each warning's one-line text (default: :func:`warnings.warn`).

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
    values.update(_environment(env or {}, warn))
    for key, value in (overrides or {}).items():
        if value is None:
            continue
        spec = spec_of_attr(key) or spec_named(key)
        if spec is None:
            hint = did_you_mean(key, [*_setting_names(), *(spec.attr for spec in SPECS)])
            raise ConfigError(f"unknown setting {key!r} in command-line overrides{hint}")
        values[spec.name] = (value, "command line")

    typed: dict[str, Any] = {group: {} for group in _GROUPS}
    detector: dict[str, object] = {}
    sources: dict[str, str] = {}
    for name, (given, source) in values.items():
        spec = spec_named(name)
        assert spec is not None
        try:
            value = spec.parse(given)
        except Invalid as exc:
            raise ConfigError(
                f"invalid setting {name} = {spec.shown(given)} (from {source}): {exc}"
            ) from None
        sources[name] = source
        if spec.section == "detector":
            detector[spec.key] = value
        elif "." in spec.attr:
            # A member of a group such as [security]: empty strings mean "not set", so
            # kafka-python keeps its own default.
            if value != "":
                typed[spec.attr.split(".")[0]][spec.key] = value
        else:
            typed[spec.attr] = value
    settings = _finish(typed, detector, sources, values)
    check_detector(settings, sources, values)
    return check_regime_names(settings, sources, values)


def _finish(
    typed: dict[str, Any],
    detector: dict[str, object],
    sources: dict[str, str],
    values: Mapping[str, tuple[object, str]],
) -> Settings:
    """Derive topic names and check rules that involve more than one setting."""

    def fail(name: str, reason: str) -> ConfigError:
        spec = spec_named(name)
        assert spec is not None
        raw = values[name][0]
        return ConfigError(
            f"invalid setting {name} = {spec.shown(raw)} (from {sources[name]}): {reason}"
        )

    if typed["heartbeat_interval_ms"] >= typed["session_timeout_ms"]:
        raise fail("kafka.heartbeat_interval_ms", "must be lower than kafka.session_timeout_ms")
    if typed["tick_kind"] == "event" and not typed["event_fields"]:
        raise fail("input.event_fields", "must name at least one field when tick_kind = 'event'")
    if typed["tick_kind"] == "event" and "ts" in typed["event_fields"]:
        raise fail("input.event_fields", "'ts' is the timestamp, not an event field")
    security = typed["security"]
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
    return Settings(detector=detector, **typed)
