"""Prometheus metrics of the service, built on prometheus-client and served over HTTP.

All series carry the ``streamgmm_`` prefix and base units (seconds). Per-key series are
capped at ``max_keys`` keys: a key seen when the cap is reached is not exported until
:meth:`ServiceMetrics.forget_keys` (called on partition revoke and on eviction) frees a
slot, so a flood of new instruments cannot blow up the scrape size. The ``key`` label is
capped in bytes too (:func:`key_label`): a key longer than :data:`KEY_LABEL_BYTES` is cut and
ends in a stable hash of the whole key, so two long keys never share a series.

``streamgmm_uncommitted_seconds`` makes a stall visible: it is the age of the oldest record
consumed since the last committed checkpoint, and grows while records are consumed and
nothing commits (deploy/alerts.yml alerts on it).

The registry also carries prometheus-client's process, platform and GC collectors and
``streamgmm_build_info`` (version, python). No ``*_created`` series are exported: they would
double every counter and histogram, per key too.
"""

from __future__ import annotations

import bisect
import contextlib
import hashlib
import math
import platform
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    disable_created_metrics,
    start_http_server,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from streamgmm import __version__

__all__ = ["KEY_LABEL_BYTES", "KEY_MEAN_SPAN", "ServiceMetrics", "key_label"]

#: Span, in ticks, of the exponentially weighted mean log-likelihood exported per key.
KEY_MEAN_SPAN = 100
_KEY_MEAN_WEIGHT = 2.0 / (KEY_MEAN_SPAN + 1)
#: Most UTF-8 bytes of a ``key`` label; longer keys are cut and end in a hash (key_label).
KEY_LABEL_BYTES = 128
_HASH_CHARS = 16  # hex digits of the hash suffix: 64 bits


def key_label(key: str) -> str:
    """The ``key`` label of an instrument key: the key itself, at most :data:`KEY_LABEL_BYTES`.

    A longer key keeps its first bytes (whole characters) and ends in ``~`` and 16 hex digits
    of its BLAKE2b hash, the same in every process and run, so its series stay the same
    series and two long keys with the same start do not collide.

    Examples
    --------
    >>> key_label("SPX")
    'SPX'
    >>> label = key_label("K" * 1000)
    >>> len(label.encode()), label[:4], label[-17:-16]
    (128, 'KKKK', '~')
    """
    data = key.encode("utf-8", "surrogatepass")
    if len(data) <= KEY_LABEL_BYTES:
        return key
    digest = hashlib.blake2b(data, digest_size=_HASH_CHARS // 2).hexdigest()
    head = data[: KEY_LABEL_BYTES - _HASH_CHARS - 1].decode("utf-8", "ignore")
    return f"{head}~{digest}"


# Buckets fit per-tick processing (tens of microseconds up) and checkpoints (up to minutes).
_LATENCY_BUCKETS = (
    1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2, 0.1, 0.5, 1.0,
)  # fmt: skip
_CHECKPOINT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class _KeyState:
    # The per-key series' values, kept as plain numbers and written out at scrape time
    # (:class:`_KeySeries`): setting four labelled gauges per key per poll costs more than the
    # model's own update.
    __slots__ = ("drift", "drift_score", "events", "label", "mean", "probs")

    def __init__(self, label: str) -> None:
        self.label = label
        self.mean: float | None = None
        self.drift = False
        self.drift_score: float | None = None
        self.events = 0
        self.probs: dict[str, float] = {}


#: The per-key series: name and help text.
_KEY_SERIES = {
    "mean": (
        "streamgmm_key_mean_log_likelihood",
        f"Exponentially weighted mean log-likelihood per key (span {KEY_MEAN_SPAN} ticks).",
    ),
    "drift": ("streamgmm_key_drift_score", "Likelihood-drift score per key."),
    "events": ("streamgmm_key_drift_events", "Drift detections per key (rises of drift_detected)."),
    "probs": ("streamgmm_key_regime_probability", "Filtered probability of each regime per key."),
}


class _KeySeries(Collector):
    """The per-key series of the exported keys, read from their :class:`_KeyState` when
    scraped."""

    def __init__(self, keys: dict[str, _KeyState], lock: threading.Lock) -> None:
        self._keys = keys
        self._lock = lock

    def describe(self) -> list[Metric]:
        return list(self._families())

    def collect(self) -> list[Metric]:
        mean, drift, events, probs = families = self._families()
        with self._lock:
            for state in self._keys.values():
                label = [state.label]
                mean.add_metric(label, 0.0 if state.mean is None else state.mean)
                if state.drift_score is not None:
                    drift.add_metric(label, state.drift_score)
                events.add_metric(label, state.events)
                for regime, p in state.probs.items():
                    probs.add_metric([state.label, regime], p)
        return list(families)

    @staticmethod
    def _families() -> tuple[
        GaugeMetricFamily, GaugeMetricFamily, CounterMetricFamily, GaugeMetricFamily
    ]:
        return (
            GaugeMetricFamily(*_KEY_SERIES["mean"], labels=["key"]),
            GaugeMetricFamily(*_KEY_SERIES["drift"], labels=["key"]),
            CounterMetricFamily(*_KEY_SERIES["events"], labels=["key"]),
            GaugeMetricFamily(*_KEY_SERIES["probs"], labels=["key", "regime"]),
        )


class ServiceMetrics:
    """The service's metrics in their own registry.

    Parameters
    ----------
    registry
        Registry to register into; a fresh one by default, so several instances (tests,
        several services in one process) never collide.
    max_keys
        Most keys exported with per-key series.
    """

    def __init__(self, registry: CollectorRegistry | None = None, max_keys: int = 1000) -> None:
        if max_keys < 0:
            raise ValueError(f"max_keys must be >= 0, got {max_keys}")
        self.registry = registry if registry is not None else CollectorRegistry()
        self.max_keys = max_keys
        reg = self.registry
        # prometheus-client's switch is process-wide; the service never wants the series.
        disable_created_metrics()
        for collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
            with contextlib.suppress(ValueError):  # already in a registry passed in
                reg.register(collector)
        Info("streamgmm_build", "Version of streamgmm and of Python.", registry=reg).info(
            {"version": __version__, "python": platform.python_version()}
        )
        self._consumed = Counter(
            "streamgmm_records_consumed", "Records consumed from the input topic.", registry=reg
        )
        # Monotonic time of the first record consumed since the last committed checkpoint.
        self._uncommitted_since: float | None = None
        Gauge(
            "streamgmm_uncommitted_seconds",
            "Seconds since the oldest record consumed after the last committed checkpoint "
            "(0 when every consumed record is committed); grows while records are consumed "
            "and nothing commits.",
            registry=reg,
        ).set_function(self._uncommitted_age)
        self._keys_reset = Counter(
            "streamgmm_keys_reset",
            "Keys whose model started afresh because their snapshot could not be restored "
            "(dead-lettered, reason bad_snapshot) or could not be written ([checkpoint] "
            "on_bad_snapshot = reset_key).",
            registry=reg,
        )
        self._refused = Counter(
            "streamgmm_records_refused",
            "Output and dead-letter records the broker refused for good (too large, invalid), "
            "by outcome: dead_lettered (a copy that fits went to the dead-letter topic) or lost "
            "(that copy was refused too).",
            ["outcome"],
            registry=reg,
        )
        self._stream_problems = Counter(
            "streamgmm_stream_problems",
            "Keys whose stream gives no regimes, by kind: no_scale (the values never varied "
            "over four warm-ups: a constant price or field) or mostly_gaps (most ticks were "
            "session gaps: set detector.dt_unit or gap_units). Counted, and logged, once per "
            "key when the problem begins.",
            ["kind"],
            registry=reg,
        )
        self._produced = Counter(
            "streamgmm_records_produced", "Records produced to the output topic.", registry=reg
        )
        self._dead = Counter(
            "streamgmm_records_dead_lettered",
            "Records sent to the dead-letter topic, by reason.",
            ["reason"],
            registry=reg,
        )
        self._skipped = Counter(
            "streamgmm_records_skipped",
            "Valid records deliberately not applied (e.g. out-of-order ticks with "
            "out_of_order = skip), by reason.",
            ["reason"],
            registry=reg,
        )
        self._latency = Histogram(
            "streamgmm_processing_latency_seconds",
            "Time from the start of processing a record's poll batch to its output record.",
            buckets=_LATENCY_BUCKETS,
            registry=reg,
        )
        self._checkpoint = Histogram(
            "streamgmm_checkpoint_duration_seconds",
            "Time to flush outputs, write snapshots and commit offsets.",
            buckets=_CHECKPOINT_BUCKETS,
            registry=reg,
        )
        self._lag = Gauge(
            "streamgmm_consumer_lag",
            "Records between the consumer position and the end of the partition.",
            ["topic", "partition"],
            registry=reg,
        )
        self._last_ts = Gauge(
            "streamgmm_last_processed_timestamp_seconds",
            "Tick timestamp (epoch seconds) of the last processed record.",
            registry=reg,
        )
        self._active = Gauge(
            "streamgmm_active_keys", "Per-key models held in memory.", registry=reg
        )
        self._rebalances = Counter(
            "streamgmm_rebalances", "Consumer-group rebalance events, by kind.", ["kind"],
            registry=reg,
        )  # fmt: skip
        self._exported = Gauge(
            "streamgmm_exported_keys",
            "Keys exported with per-key series (capped by [metrics] max_keys).",
            registry=reg,
        )
        self._keys: dict[str, _KeyState] = {}
        # observe_key runs on the poll thread, forget_keys possibly on the rebalance thread,
        # the scrape on the HTTP server's.
        self._lock = threading.Lock()
        reg.register(_KeySeries(self._keys, self._lock))
        self._server: Any = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ service-wide
    def consumed(self, n: int = 1) -> None:
        """Count ``n`` records consumed (uncommitted until :meth:`committed`)."""
        self._consumed.inc(n)
        if n and self._uncommitted_since is None:
            self._uncommitted_since = time.monotonic()

    def committed(self) -> None:
        """A checkpoint committed every record consumed so far."""
        self._uncommitted_since = None

    def _uncommitted_age(self) -> float:
        since = self._uncommitted_since
        return 0.0 if since is None else time.monotonic() - since

    def key_reset(self) -> None:
        """Count one key whose model started afresh (its snapshot was refused)."""
        self._keys_reset.inc()

    def refused(self, outcome: str) -> None:
        """Count one record the broker refused for good (``dead_lettered`` or ``lost``)."""
        self._refused.labels(outcome=outcome).inc()

    def stream_problem(self, kind: str) -> None:
        """Count one key whose stream began to give no regimes, for ``kind``."""
        self._stream_problems.labels(kind=kind).inc()

    def produced(self, n: int = 1) -> None:
        """Count ``n`` output records produced."""
        self._produced.inc(n)

    def dead_lettered(self, reason: str) -> None:
        """Count one record sent to the dead-letter topic for ``reason``."""
        self._dead.labels(reason=reason).inc()

    def skipped(self, reason: str) -> None:
        """Count one valid record that was deliberately not applied, for ``reason``."""
        self._skipped.labels(reason=reason).inc()

    def observe_latency(self, seconds: float, n: int = 1) -> None:
        """Record the processing time of ``n`` records that each took ``seconds``.

        The same as ``n`` observations, in one step: the runner observes a key's ticks of a
        poll together, as they all waited the same time.
        """
        if n == 1:
            self._latency.observe(seconds)
            return
        if n <= 0:
            return
        # prometheus-client has no weighted observe: its sum and the one bucket, by n.
        latency = self._latency
        latency._sum.inc(seconds * n)
        i = bisect.bisect_left(latency._upper_bounds, seconds)
        latency._buckets[i].inc(n)

    def observe_checkpoint(self, seconds: float) -> None:
        """Record the duration of one checkpoint."""
        self._checkpoint.observe(seconds)

    def set_lag(self, topic: str, partition: int, lag: int) -> None:
        """Set the consumer lag of one partition."""
        self._lag.labels(topic=topic, partition=str(partition)).set(lag)

    def forget_partitions(self, partitions: Iterable[tuple[str, int]]) -> None:
        """Remove the lag series of revoked ``(topic, partition)`` pairs."""
        for topic, partition in partitions:
            with contextlib.suppress(KeyError):
                self._lag.remove(topic, str(partition))

    def set_last_processed_timestamp(self, ts: float) -> None:
        """Set the timestamp of the last processed tick (epoch seconds)."""
        self._last_ts.set(ts)

    def set_active_keys(self, n: int) -> None:
        """Set the number of per-key models in memory."""
        self._active.set(n)

    def rebalance(self, kind: str) -> None:
        """Count one rebalance event of ``kind`` (e.g. "assigned", "revoked", "lost")."""
        self._rebalances.labels(kind=kind).inc()

    # ------------------------------------------------------------------ per key
    def observe_key(self, key: str, out: dict[str, Any]) -> None:
        """Update ``key``'s series from one pipeline output (skipped beyond ``max_keys``)."""
        self.observe_keys({key: [out]})

    def observe_keys(self, outputs: Mapping[str, Sequence[dict[str, Any]]]) -> None:
        """Update per-key series from each key's pipeline outputs, oldest first.

        The same result as :meth:`observe_key` on every output in turn: the runner calls
        this once per poll. A key's outputs may also come as a sequence with a
        ``column(name)`` method giving one output field's values in order, per regime for
        the probabilities (the tick rules' :class:`~streamgmm.ticks.rules.OutputRows`),
        read without a dict per output.
        """
        with self._lock:
            for key, outs in outputs.items():
                state = self._keys.get(key)
                if state is None:
                    if len(self._keys) >= self.max_keys:
                        continue
                    state = self._keys[key] = _KeyState(key_label(key))
                    self._exported.set(len(self._keys))
                self._observe(state, outs)

    @staticmethod
    def _observe(state: _KeyState, outs: Sequence[dict[str, Any]]) -> None:
        column = getattr(outs, "column", None)
        if column is not None:
            lls, flags = column("log_likelihood"), column("drift_detected")
            last_score = column("drift_score")[-1]
            last_probs = {r: p[-1] for r, p in enumerate(column("probabilities"))}
        else:
            lls = [out["log_likelihood"] for out in outs]
            flags = [out["drift_detected"] for out in outs]
            last_score, last_probs = outs[-1]["drift_score"], outs[-1]["probabilities"]
        mean, drift, rises = state.mean, state.drift, 0
        for ll, flag in zip(lls, flags, strict=True):
            log_likelihood = float(ll or math.nan)  # None: no forecast
            if ll is not None and math.isfinite(log_likelihood):
                mean = (
                    log_likelihood
                    if mean is None
                    else mean + _KEY_MEAN_WEIGHT * (log_likelihood - mean)
                )
            detected = bool(flag)
            if detected and not drift:
                rises += 1
            drift = detected
        state.mean, state.drift = mean, drift
        state.events += rises
        state.drift_score = float(last_score)
        probs = state.probs
        for regime, p in last_probs.items():
            probs[str(regime)] = float(p)

    def forget_keys(self, keys: Iterable[str]) -> None:
        """Remove every series of ``keys`` (on revoke or eviction), freeing their slots."""
        with self._lock:
            for key in keys:
                self._keys.pop(key, None)
            self._exported.set(len(self._keys))

    # ------------------------------------------------------------------ HTTP
    def serve(self, host: str = "127.0.0.1", port: int = 0) -> tuple[str, int]:
        """Serve ``/metrics`` over HTTP on ``host:port`` (port 0: a free port).

        Loopback by default: metrics stay private unless a wider address is asked for.

        Returns
        -------
        tuple
            The bound ``(host, port)``.
        """
        if self._server is not None:
            raise RuntimeError("metrics server already running")
        self._server, self._thread = start_http_server(port, addr=host, registry=self.registry)
        bound_host, bound_port = self._server.server_address[:2]
        return str(bound_host), int(bound_port)

    def close(self) -> None:
        """Stop the HTTP server, if running. Idempotent."""
        server, thread = self._server, self._thread
        self._server, self._thread = None, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if thread is not None:
            thread.join(timeout=5.0)
