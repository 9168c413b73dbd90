"""The command-line layer: ``--config``, ``--set SECTION.KEY=VALUE`` and the named flags.

:func:`add_cli_overrides` adds them to a command's parser; :func:`overrides_from_args` turns
what was given into the top layer of :func:`~streamgmm.settings.layers.load_settings`, and
:func:`settings_from_args` loads a command's settings with them, its warnings on stderr
(:func:`command_settings`: and its error).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping

from streamgmm.settings.layers import load_settings
from streamgmm.settings.service import Settings
from streamgmm.settings.spec import ConfigError

__all__ = ["add_cli_overrides", "command_settings", "overrides_from_args", "settings_from_args"]


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


def settings_from_args(
    args: argparse.Namespace, command: str, extra: Mapping[str, object] | None = None
) -> Settings:
    """A command's settings: its ``--config`` file, the environment, then ``extra`` overrides
    and the flags given (:func:`overrides_from_args`).

    Warnings (a ``STREAMGMM_*`` variable that names no setting) are printed on stderr, one
    line each, as ``<command>: warning: ...``.

    Raises
    ------
    ConfigError
        For a bad or unknown setting (one line).
    """

    def warn(message: str) -> None:
        print(f"{command}: warning: {message}", file=sys.stderr)

    overrides = {**(extra or {}), **overrides_from_args(args)}
    return load_settings(getattr(args, "config", None), os.environ, overrides, warn=warn)


def command_settings(
    args: argparse.Namespace, command: str, extra: Mapping[str, object] | None = None
) -> Settings | None:
    """:func:`settings_from_args`, or None once a bad setting's one-line error is printed on
    stderr (``<command>: error: ...``), for the command to exit with code 2."""
    try:
        return settings_from_args(args, command, extra)
    except ConfigError as exc:
        print(f"{command}: error: {exc}", file=sys.stderr)
        return None
