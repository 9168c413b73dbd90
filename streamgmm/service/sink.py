"""Output and dead-letter records leave through a producer that runs in a child process.

Why a process: kafka-python spends about 17 µs of CPU per produced record (building record
batches, one future per record, its sender thread) against about 6 µs per consumed record,
measured on the embedded broker. In the service's own process that time competes for one GIL
with decoding and the models; in a child process it runs on another core. The service hands
over encoded bytes in batches and never waits for the child except at a checkpoint's flush.

The two processes talk over the child's stdin and stdout in a framed binary format:
lengths and bytes, plus JSON for configuration and replies. Nothing is pickled, so neither
side ever unpickles what the other wrote. A frame is ``kind`` (1 byte), ``length`` (u32,
little-endian) and ``length`` bytes of payload.

Parent to child:

- ``C`` configuration (JSON): the client (``[kafka] client``), its configuration, the
  producer's options and the log level.
  Always the first frame; the child answers ``A``.
- ``T`` one topic name (UTF-8); topics are numbered in the order they are announced.
- ``R`` records: u32 ``n``, then ``n`` times (i32 topic number, i32 key length, i32 value
  length, i32 headers length), then the bytes of each record's key, value and headers in that
  order. A length of -1 means None. Headers are a JSON list of ``[name, value]`` with the
  value's bytes as Latin-1 text (a lossless byte-to-character mapping).
- ``F`` flush (f64 timeout in seconds): the child sends every record before it, waits for the
  broker's acknowledgements and answers ``A``.
- ``X`` close (f64 timeout): as ``F``, then the child closes its producer and exits.

Child to parent:

- ``P`` progress: (i32 topic number, u64 records acknowledged so far) pairs, at most every
  50 ms while records are being acknowledged, and always just before an ``A``.
- ``D`` refused (JSON): ``{"topic": number, "outcome": "dead_lettered" | "lost"}``, one per
  record the broker refused for good (see below), before the ``A`` of the flush that
  handled it.
- ``A`` answer (JSON): ``{"error": null}`` or ``{"error": "what failed"}``.

Once a record fails, the child stops sending until the next flush, which reports every record
since then as not delivered: the service answers a failed flush by rewinding to its last
checkpoint and producing all of them again, while sending on to a broker that is away would
cost up to ``max_block_ms`` per record. A record refused for good (too large, invalid) is no
such failure: the child's producer is a :class:`~streamgmm.service.kafka.Producer` with
the dead-letter topic of the configuration, which sends a copy that fits there instead.

The child ignores SIGINT and SIGTERM: the service decides when it stops, so a Ctrl-C aimed
at the process group cannot drop records the service still has to flush. It exits after
``X``, or when its stdin closes because the service died; then it first tries to deliver what
it holds, as a crashed service's outputs are re-emitted after the restart anyway.
"""

from __future__ import annotations

import contextlib
import gc
import json
import logging
import os
import queue
import signal
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Mapping
from typing import IO, Any

from streamgmm.exits import EXIT_FAILURE, EXIT_USAGE
from streamgmm.service.kafka import (
    DeliveredCallback,
    DeliveryError,
    Producer,
    RefusedCallback,
    get_client,
)

log = logging.getLogger(__name__)

__all__ = ["DeliveredCallback", "ProducerProcess"]


_FRAME = struct.Struct("<cI")
_F64 = struct.Struct("<d")
_U32 = struct.Struct("<I")
_PROGRESS = struct.Struct("<iQ")
#: Records and bytes held by the parent before it writes them to the child unasked.
_SHIP_RECORDS = 1000
_SHIP_BYTES = 512 * 1024
#: Batches the child holds between its pipe reader and its producer: bounded, so a slow
#: broker slows the service down instead of filling the child's memory.
_CHILD_QUEUE_BATCHES = 16
_PROGRESS_INTERVAL = 0.05
#: Seconds beyond a flush's own timeout that the parent waits for the child's answer.
_ANSWER_GRACE = 10.0
#: Linux only: a 1 MiB pipe lets the parent write a whole poll's outputs without waiting.
_F_SETPIPE_SZ = 1031


def _frame(kind: bytes, payload: bytes) -> bytes:
    return _FRAME.pack(kind, len(payload)) + payload


def _read_exact(stream: IO[bytes], n: int) -> bytes | None:
    data = stream.read(n)
    if data is None or len(data) < n:
        return None
    return data


def _read_frame(stream: IO[bytes]) -> tuple[bytes, bytes] | None:
    head = _read_exact(stream, _FRAME.size)
    if head is None:
        return None
    kind, length = _FRAME.unpack(head)
    payload = _read_exact(stream, length) if length else b""
    if payload is None:
        return None
    return kind, payload


def _grow_pipe(fd: int) -> None:
    try:
        import fcntl

        fcntl.fcntl(fd, _F_SETPIPE_SZ, 1024 * 1024)
    except (ImportError, OSError):
        pass  # not Linux, or over /proc/sys/fs/pipe-max-size: the default pipe still works


# =============================================================================== parent side


class ProducerProcess:
    """An output producer in a child process, with :class:`kafka.Producer`'s calls.

    Parameters
    ----------
    client_kwargs : Mapping
        The client's configuration (``client_config`` of :mod:`streamgmm.service.kafka`'s
        implementations); it must be JSON-safe, as every setting the configuration accepts is.
    producer_kwargs : Mapping
        Further ``make_producer`` arguments (``compression``, ``timeout_ms``).
    on_delivered : callable or None
        ``on_delivered(topic, n)``: ``n`` more records of ``topic`` were acknowledged by the
        broker. Called from a reader thread.
    dead_letter_topic : str or None
        Where the child sends a copy that fits of each record refused for good (see
        :class:`~streamgmm.service.kafka.Producer`).
    on_refused : callable or None
        ``on_refused(topic, outcome)`` per refused record, from a reader thread.
    start_timeout : float
        Seconds to wait for the child to start and create its producer.
    write_timeout : float
        Seconds a hand-over may wait for the child to make room in the pipe before the
        child is given up (killed) and :class:`DeliveryError` raised. Must exceed the
        producer's ``max_block_ms``, for which the child may legitimately wait.

    Raises
    ------
    DeliveryError
        When the child cannot start or cannot create its producer (broker unreachable, bad
        security settings); the message carries the child's error.

    Notes
    -----
    :meth:`send` only buffers. Buffered records go to the child when 1,000 of them or
    512 KiB have accumulated, on :meth:`send_pending`, and before every :meth:`flush`.
    Delivery failures are reported by the next :meth:`flush`, as with the in-process
    producer; so is the death of the child.
    """

    def __init__(
        self,
        client_kwargs: Mapping[str, Any],
        producer_kwargs: Mapping[str, Any],
        on_delivered: DeliveredCallback | None = None,
        start_timeout: float = 30.0,
        write_timeout: float = 60.0,
        *,
        dead_letter_topic: str | None = None,
        on_refused: RefusedCallback | None = None,
        client: str = "kafka-python",
    ) -> None:
        self._on_delivered = on_delivered
        self._on_refused = on_refused
        self._write_timeout = write_timeout
        self._topics: dict[str, int] = {}
        self._topic_names: list[str] = []
        self._acked: dict[int, int] = {}
        self._meta: list[int] = []
        self._parts: list[bytes] = []
        self._pending_bytes = 0
        self._lock = threading.Lock()
        self._answers: queue.SimpleQueue[dict[str, Any] | None] = queue.SimpleQueue()
        self._closed = False
        config = {
            "kafka": client,
            "client": dict(client_kwargs),
            "producer": dict(producer_kwargs),
            "dead_letter_topic": dead_letter_topic,
            "log_level": logging.getLevelName(logging.getLogger("streamgmm").getEffectiveLevel()),
        }
        try:
            payload = json.dumps(config).encode("utf-8")
        except TypeError as exc:
            raise DeliveryError(f"producer settings are not JSON-safe: {exc}") from None
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "streamgmm.service.sink"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        assert self._proc.stdin is not None and self._proc.stdout is not None
        self._stdin = self._proc.stdin
        self._fd = self._stdin.fileno()
        _grow_pipe(self._fd)
        # Writes block (the kernel then wakes the writer once, when the whole frame fits;
        # non-blocking writes with select() woke per 4 KiB and cost 20 % of the throughput).
        # A watchdog stops a child that leaves a write blocked beyond write_timeout.
        self._writing_since: float | None = None
        self._stalled = False
        threading.Thread(
            target=self._watch_writes, name="streamgmm-sink-watchdog", daemon=True
        ).start()
        self._reader = threading.Thread(
            target=self._read_answers, name="streamgmm-sink-reader", daemon=True
        )
        self._reader.start()
        try:
            self._write(b"C", payload)
            self._await_answer(start_timeout, "start")
            if dead_letter_topic is not None:
                # Numbered first: the child may send copies there before the service does.
                with self._lock:
                    self._announce(dead_letter_topic)
        except DeliveryError:
            self._kill()
            raise

    # ------------------------------------------------------------------ the Producer calls
    def send(
        self,
        topic: str,
        value: bytes | None,
        key: bytes | None = None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> None:
        """Queue one record for the child; see the class notes for when it is handed over."""
        with self._lock:
            number = self._topics.get(topic)
            if number is None:
                number = self._announce(topic)
            meta, parts = self._meta, self._parts
            size = 0
            meta.append(number)
            if key is None:
                meta.append(-1)
            else:
                meta.append(len(key))
                parts.append(key)
                size += len(key)
            if value is None:
                meta.append(-1)
            else:
                meta.append(len(value))
                parts.append(value)
                size += len(value)
            if headers:
                blob = json.dumps([[name, v.decode("latin-1")] for name, v in headers]).encode()
                meta.append(len(blob))
                parts.append(blob)
                size += len(blob)
            else:
                meta.append(-1)
            self._pending_bytes += size
            if len(meta) >= 4 * _SHIP_RECORDS or self._pending_bytes >= _SHIP_BYTES:
                self._ship()

    def send_all(self, topic: str, key: bytes | None, values: Iterable[bytes]) -> None:
        """:meth:`send` of each of ``values`` with ``key``, in order (no headers)."""
        with self._lock:
            number = self._topics.get(topic)
            if number is None:
                number = self._announce(topic)
            meta, parts = self._meta, self._parts
            key_size = -1 if key is None else len(key)
            for value in values:
                meta += (number, key_size, len(value), -1)
                if key is not None:
                    parts.append(key)
                parts.append(value)
                self._pending_bytes += max(key_size, 0) + len(value)
                if len(meta) >= 4 * _SHIP_RECORDS or self._pending_bytes >= _SHIP_BYTES:
                    self._ship()
                    meta, parts = self._meta, self._parts

    def send_pending(self) -> None:
        """Hand every buffered record to the child now (the runner calls this per poll)."""
        with self._lock:
            self._ship()

    def flush(self, timeout: float | None = None) -> None:
        """Block until every record sent so far is acknowledged; raise if any was not."""
        wait = 60.0 if timeout is None else float(timeout)
        with self._lock:
            self._ship()
            self._write(b"F", _F64.pack(wait))
        self._await_answer(wait + _ANSWER_GRACE, "flush")

    def close(self, timeout: float | None = None) -> None:
        """Deliver what can be delivered within ``timeout`` seconds, then stop the child."""
        if self._closed:
            with contextlib.suppress(OSError):
                self._stdin.close()
            return
        wait = 10.0 if timeout is None else float(timeout)
        try:
            with self._lock:
                self._ship()
                self._write(b"X", _F64.pack(wait))
            self._await_answer(wait + _ANSWER_GRACE, "close")
        except DeliveryError as exc:
            log.warning("output producer process: %s", exc)
        finally:
            self._closed = True
            try:
                self._proc.wait(timeout=_ANSWER_GRACE)
            except subprocess.TimeoutExpired:
                self._kill()
            self._stdin.close()

    @property
    def pid(self) -> int:
        """The child's process id."""
        return self._proc.pid

    # ------------------------------------------------------------------ internals
    def _announce(self, topic: str) -> int:
        # Records already buffered refer to earlier numbers only, so they may go first.
        self._ship()
        number = len(self._topic_names)
        self._write(b"T", topic.encode("utf-8"))
        self._topics[topic] = number
        self._topic_names.append(topic)
        return number

    def _ship(self) -> None:
        meta = self._meta
        if not meta:
            return
        n = len(meta) // 4
        payload = b"".join((_U32.pack(n), struct.pack(f"<{len(meta)}i", *meta), *self._parts))
        self._meta, self._parts, self._pending_bytes = [], [], 0
        self._write(b"R", payload)

    def _write(self, kind: bytes, payload: bytes) -> None:
        if self._closed:
            raise DeliveryError("the output producer process is closed")
        view = memoryview(_frame(kind, payload))
        self._writing_since = time.monotonic()
        try:
            while view:
                view = view[os.write(self._fd, view) :]
        except (BrokenPipeError, ValueError, OSError) as exc:
            if self._stalled:
                raise DeliveryError(
                    f"the output producer process (pid {self._proc.pid}) read nothing for "
                    f"{self._write_timeout:.0f}s; stopped it"
                ) from None
            raise DeliveryError(
                f"the output producer process (pid {self._proc.pid}) is gone: {exc}"
            ) from None
        finally:
            self._writing_since = None

    def _watch_writes(self) -> None:
        interval = min(1.0, self._write_timeout / 4)
        while not self._closed:
            time.sleep(interval)
            since = self._writing_since
            if since is not None and time.monotonic() - since > self._write_timeout:
                # The blocked write then fails with a broken pipe, which _write reports. The
                # pipe stays open here: closing it under a blocked write could let its file
                # descriptor number be reused before the write returns.
                log.error("output producer process stopped reading; stopping it")
                self._stalled = True
                self._kill(close_pipe=False)
                return

    def _await_answer(self, timeout: float, what: str) -> None:
        try:
            answer = self._answers.get(timeout=timeout)
        except queue.Empty:
            # A late answer would be taken for the next request's: give the child up.
            self._kill()
            raise DeliveryError(
                f"the output producer process did not answer a {what} within {timeout:.0f}s; "
                "stopped it"
            ) from None
        if answer is None:
            code = self._proc.poll()
            raise DeliveryError(
                f"the output producer process (pid {self._proc.pid}) exited"
                + ("" if code is None else f" with code {code}")
                + f" before answering a {what}"
            )
        if answer.get("error"):
            raise DeliveryError(str(answer["error"]))

    def _read_answers(self) -> None:
        stdout = self._proc.stdout
        assert stdout is not None
        while True:
            frame = _read_frame(stdout)
            if frame is None:
                stdout.close()
                self._answers.put(None)
                return
            kind, payload = frame
            if kind == b"P":
                self._progress(payload)
            elif kind == b"D":
                refused = json.loads(payload)
                if self._on_refused is not None:
                    self._on_refused(self._topic_names[refused["topic"]], refused["outcome"])
            elif kind == b"A":
                self._answers.put(json.loads(payload))

    def _progress(self, payload: bytes) -> None:
        for number, total in _PROGRESS.iter_unpack(payload):
            delta = total - self._acked.get(number, 0)
            self._acked[number] = total
            if delta and self._on_delivered is not None:
                self._on_delivered(self._topic_names[number], delta)

    def _kill(self, close_pipe: bool = True) -> None:
        self._closed = True
        if self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()
        if close_pipe:
            with contextlib.suppress(OSError):
                self._stdin.close()


# =============================================================================== child side


class _ChildProducer:
    """The child's half: reads frames, sends records, reports acknowledgements."""

    def __init__(self, stdin: IO[bytes], stdout: IO[bytes]) -> None:
        self._stdin = stdin
        self._stdout = stdout
        self._out_lock = threading.Lock()
        self._frames: queue.Queue[tuple[bytes, bytes] | None] = queue.Queue(_CHILD_QUEUE_BATCHES)
        self._topics: list[str] = []
        self._numbers: dict[str, int] = {}
        self._acked: list[int] = []
        self._reported: list[int] = []
        self._failures: list[BaseException] = []  # raised by send() itself
        self._dropped = 0  # records not even sent, after a failure, until the next flush
        self._producer: Producer | None = None
        self._done = threading.Event()

    def run(self) -> int:
        first = _read_frame(self._stdin)
        if first is None or first[0] != b"C":
            return EXIT_USAGE
        if not self._start(json.loads(first[1])):
            return EXIT_FAILURE
        # The objects so far (the imports', the client's) live as long as the process: out of
        # the cyclic collector's sight, its full collections stop walking them while records
        # are sent (what ``streamgmm run`` does for its own process).
        gc.freeze()
        threading.Thread(target=self._pump, name="sink-pipe", daemon=True).start()
        threading.Thread(target=self._report, name="sink-progress", daemon=True).start()
        assert self._producer is not None
        while True:
            try:
                frame = self._frames.get(timeout=_PROGRESS_INTERVAL)
            except queue.Empty:
                # Idle: let a client that reports deliveries on this thread (librdkafka) do so.
                self._producer.send_pending()
                continue
            if frame is None:
                # The service is gone: deliver what is here, briefly, and leave.
                self._finish(5.0, answer=False)
                return 0
            kind, payload = frame
            if kind == b"R":
                self._send_batch(payload)
            elif kind == b"T":
                self._numbers[payload.decode("utf-8")] = len(self._topics)
                self._topics.append(payload.decode("utf-8"))
                self._acked.append(0)
                self._reported.append(0)
            elif kind == b"F":
                self._answer(self._flush(_F64.unpack(payload)[0]))
            elif kind == b"X":
                self._finish(_F64.unpack(payload)[0], answer=True)
                return 0

    def _start(self, config: dict[str, Any]) -> bool:
        from streamgmm.logs import configure_logging

        configure_logging(str(config.get("log_level", "INFO")), process="sink")

        client = dict(config["client"])
        if isinstance(client.get("api_version"), list):
            client["api_version"] = tuple(client["api_version"])
        try:
            self._producer = get_client(config.get("kafka", "kafka-python")).make_producer(
                client,
                self._acknowledged,
                output=True,
                dead_letter_topic=config.get("dead_letter_topic"),
                on_refused=self._refused,
                **config["producer"],
            )
        except Exception as exc:
            self._answer(f"cannot create the output producer: {type(exc).__name__}: {exc}")
            return False
        self._answer(None)
        return True

    def _pump(self) -> None:
        while True:
            frame = _read_frame(self._stdin)
            self._frames.put(frame)
            if frame is None or frame[0] == b"X":
                return

    def _send_batch(self, payload: bytes) -> None:
        (n,) = _U32.unpack_from(payload, 0)
        assert self._producer is not None
        if self._failures or self._producer.failed:
            # A delivery already failed, so the service will rewind at its next flush and
            # produce everything since its last checkpoint again. Sending more now would
            # only block for max_block_ms per record while the broker is away.
            self._dropped += n
            return
        meta = struct.unpack_from(f"<{4 * n}i", payload, _U32.size)
        at = _U32.size + 16 * n
        send = self._producer.send
        topics = self._topics
        for i in range(0, 4 * n, 4):
            number, key_len, value_len, headers_len = meta[i : i + 4]
            key = value = None
            headers = None
            if key_len >= 0:
                key = payload[at : at + key_len]
                at += key_len
            if value_len >= 0:
                value = payload[at : at + value_len]
                at += value_len
            if headers_len >= 0:
                pairs = json.loads(payload[at : at + headers_len])
                headers = [(name, text.encode("latin-1")) for name, text in pairs]
                at += headers_len
            try:
                # A record refused for good is copied at the next flush, not raised here.
                send(topics[number], value, key, headers)
            except Exception as exc:  # e.g. a buffer that stayed full for max_block_ms
                self._failures.append(exc)
                self._dropped += n - i // 4 - 1
                return

    def _acknowledged(self, topic: str, n: int) -> None:
        # Callbacks run on the producer's one sender thread: a single writer per counter.
        self._acked[self._numbers[topic]] += n

    def _refused(self, topic: str, outcome: str) -> None:
        payload = json.dumps({"topic": self._numbers[topic], "outcome": outcome}).encode()
        with self._out_lock:
            self._emit(b"D", payload)

    def _flush(self, timeout: float) -> str | None:
        assert self._producer is not None
        try:
            self._producer.flush(timeout=timeout)
        except Exception as exc:
            self._failures.append(exc)
        failures, self._failures = self._failures, []
        dropped, self._dropped = self._dropped, 0
        if failures:
            return (
                f"{len(failures) + dropped} record(s) were not delivered; "
                f"first error: {failures[0]}"
            )
        return None

    def _finish(self, timeout: float, answer: bool) -> None:
        assert self._producer is not None
        error = self._flush(timeout)
        try:
            self._producer.close(timeout=timeout)
        except Exception as exc:
            error = error or f"closing the producer failed: {exc}"
        self._done.set()
        if answer:
            self._answer(error)
        elif error:
            log.error("output producer stopped with undelivered records: %s", error)

    def _answer(self, error: str | None) -> None:
        with self._out_lock:
            # Progress first, so a flush's caller sees every acknowledgement it waited for.
            self._progress_frame()
            self._emit(b"A", json.dumps({"error": error}).encode("utf-8"))

    def _progress_frame(self) -> None:
        changed = [
            (number, total)
            for number, total in enumerate(list(self._acked))
            if total != self._reported[number]
        ]
        if changed:
            for number, total in changed:
                self._reported[number] = total
            self._emit(b"P", b"".join(_PROGRESS.pack(n, t) for n, t in changed))

    def _report(self) -> None:
        while not self._done.wait(_PROGRESS_INTERVAL):
            with self._out_lock:
                self._progress_frame()

    def _emit(self, kind: bytes, payload: bytes) -> None:
        # A failed write means the service is gone: nothing is waiting for this frame.
        with contextlib.suppress(BrokenPipeError, ValueError, OSError):
            self._stdout.write(_frame(kind, payload))
            self._stdout.flush()


def main() -> int:
    """Entry point of the child process (``python -m streamgmm.service.sink``)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    # Nothing else may write to stdout: it carries frames.
    sys.stdout = sys.stderr
    return _ChildProducer(stdin, stdout).run()


if __name__ == "__main__":
    sys.exit(main())
