"""``streamgmm demo``: the whole service on one machine, with no infrastructure.

1. starts the embedded tansu broker (memory storage, 127.0.0.1, free port);
2. creates the input topic (the service creates its output, dead-letter and changelog topics);
3. streams the S&P 500 daily closes from ``arch.data.sp500`` plus three synthetic instruments
   (:data:`SYNTHETIC` says what each one is);
4. runs the service in-process (the same :class:`~streamgmm.service.runner.ServiceRunner` as
   ``streamgmm run``) with Prometheus metrics on 127.0.0.1;
5. shows a live table of regime probabilities and drift per instrument, under the metrics
   address and over a legend of the instruments;
6. writes the regime PNG (:func:`streamgmm.plot.plot_regimes`, to the file ``streamgmm plot``
   writes unless told otherwise) and stops the broker.

It finishes by itself in about a minute; ``--follow`` keeps the synthetic instruments
streaming until Ctrl-C; ``--no-live`` prints only a final summary (scripts and tests).
"""

from __future__ import annotations

import json
import math
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from kafka import KafkaProducer

from streamgmm.broker import EmbeddedBroker
from streamgmm.exits import EXIT_FAILURE, interrupt_on_stop_signals
from streamgmm.plot import DEFAULT_OUTPUT
from streamgmm.service.runner import ServiceRunner
from streamgmm.settings.layers import load_settings
from streamgmm.ticks.record import regime_name

INPUT_TOPIC = "demo.ticks"
PARTITIONS = 3
DEFAULT_DURATION = 45.0  # seconds of streaming; start-up, restore and the plot add the rest
#: The instruments the demo streams, and what each is (the table's legend). The synthetic ones
#: are random walks with the volatility per tick :func:`_synthetic` gives them.
INSTRUMENTS: dict[str, str] = {
    "SP500": "the S&P 500's daily closes, 1999-2018 (arch.data.sp500)",
    "SYN-CALM": "synthetic: calm throughout (0.6 % a tick)",
    "SYN-SWITCH": "synthetic: calm (0.7 %) and turbulent (2.5 %) in turn, 400 ticks each",
    "SYN-SHOCK": "synthetic: calm (0.8 %), turbulent (4 %) for the last 100 of every 1000 ticks",
}
SYNTHETIC = tuple(name for name in INSTRUMENTS if name.startswith("SYN-"))


@dataclass
class _Row:
    ticks: int = 0
    regime: str = "-"
    probabilities: dict[str, float] = field(default_factory=dict)
    names: tuple[str, ...] = ()
    volatility: float = math.nan
    value_at_risk: float = math.nan
    drift_score: float = 0.0
    drift_events: int = 0
    drifting: bool = False
    last_ts: float = 0.0


class LiveTable:
    """Latest output per instrument, rendered as a small text table (thread-safe)."""

    def __init__(self, regime_names: tuple[str, ...] | None = None) -> None:
        #: ``[output] regime_names`` (None: the default names), for the probability columns.
        self.regime_names = regime_names
        self._rows: dict[str, _Row] = {}
        self._lock = threading.Lock()
        self.total = 0

    def observe(self, key: str, record: dict[str, Any]) -> None:
        with self._lock:
            row = self._rows.setdefault(key, _Row())
            row.ticks = int(record["n_samples_seen"])
            row.regime = str(record["regime_name"])
            row.probabilities = {
                k: (v if v is not None else math.nan) for k, v in record["probabilities"].items()
            }
            n = len(row.probabilities)
            row.names = tuple(regime_name(i, self.regime_names or None, n) for i in range(n))
            row.volatility = _number(record.get("volatility"))
            row.value_at_risk = _number(record.get("value_at_risk"))
            row.drift_score = record["drift_score"] or 0.0
            drift = bool(record["drift_detected"])
            row.drift_events += int(drift and not row.drifting)  # count episodes, not ticks
            row.drifting = drift
            row.last_ts = float(record["ts"])
            self.total += 1

    def render(self, header: str = "", legend: bool = False) -> str:
        """The table, under ``header``; with ``legend``, over a line per instrument saying
        what it is (:data:`INSTRUMENTS`). Each heading is one word over its own column."""
        with self._lock:
            rows = sorted(self._rows.items())
        lines = header.splitlines() if header else []
        names = max((r.names for _k, r in rows), key=len, default=("turbulent",))
        regime_width = max(len(n) for n in (*names, "regime"))
        top = f"P({names[-1]})"  # the most turbulent regime's probability
        lines.append(
            f"{'instrument':<10} {'ticks':>6} {'date':>10} {'regime':>{regime_width}} {top:>7}"
            f" {'volatility':>10} {'VaR':>7} {'drift':>5} {'alarms':>6}"
        )
        for key, r in rows:
            date = time.strftime("%Y-%m-%d", time.gmtime(r.last_ts)) if r.last_ts else "-"
            p = r.probabilities.get(str(len(names) - 1), math.nan)
            lines.append(
                f"{key:<10} {r.ticks:>6} {date:>10} {r.regime:>{regime_width}} {p:>{len(top)}.3f}"
                f" {_percent(r.volatility):>10} {_percent(r.value_at_risk):>7}"
                f" {r.drift_score:>5.2f} {r.drift_events:>6}"
            )
        if legend:
            lines.append("")
            lines += [f"{key:<10} {text}" for key, text in INSTRUMENTS.items()]
            lines += [
                f"{top}: the probability that the instrument is {names[-1]} now",
                "volatility: the next day's predicted standard deviation of the log return",
                "VaR: the next day's predicted 1 % quantile of the log return (value at risk)",
                "drift: the drift monitor's score; alarms: times it reached 1 (the stream stopped "
                "fitting)",
            ]
        return "\n".join(lines)


def _number(value: Any) -> float:
    return math.nan if value is None else float(value)


def _percent(value: float) -> str:
    """A log return in per cent, ``-`` where none was forecast (the warm-up)."""
    return f"{100.0 * value:.2f}%" if math.isfinite(value) else "-"


def _sp500_ticks() -> list[dict[str, Any]]:
    import arch.data.sp500

    data = arch.data.sp500.load()
    closes = data["Close"].to_numpy(dtype=float)
    volumes = data["Volume"].to_numpy(dtype=float)
    # Timestamp.timestamp() is independent of the index's datetime64 unit (us here, ns elsewhere).
    stamps = [float(t.tz_localize("UTC").timestamp()) for t in data.index]
    return [
        {"symbol": "SP500", "ts": stamps[i], "price": closes[i], "volume": volumes[i]}
        for i in range(len(closes))
    ]


def _synthetic(symbol: str, seed: int) -> Iterator[tuple[float, float]]:
    """Endless (price, volume): calm, switching between two volatilities, or calm with shocks."""
    import numpy as np

    rng = np.random.default_rng(seed)
    price, i = 100.0, 0
    while True:
        if symbol == "SYN-CALM":
            vol = 0.006
        elif symbol == "SYN-SWITCH":
            vol = 0.025 if (i // 400) % 2 else 0.007
        else:
            vol = 0.04 if i % 1000 >= 900 else 0.008
        price *= float(np.exp(rng.normal(0.0, vol)))
        yield price, float(rng.integers(10_000, 1_000_000))
        i += 1


def _feed(follow: bool) -> Iterator[dict[str, Any]]:
    """S&P 500 with the synthetic instruments on the same trading days; endless with follow."""
    sp = _sp500_ticks()
    gens = {s: _synthetic(s, seed) for seed, s in enumerate(SYNTHETIC)}

    def synthetic_at(ts: float) -> Iterator[dict[str, Any]]:
        for symbol, gen in gens.items():
            price, volume = next(gen)
            yield {"symbol": symbol, "ts": ts, "price": price, "volume": volume}

    for tick in sp:
        yield tick
        yield from synthetic_at(tick["ts"])
    ts = sp[-1]["ts"]
    while follow:
        ts += 86400.0
        yield from synthetic_at(ts)


def run_demo(
    follow: bool = False,
    live: bool = True,
    output_png: str | Path | None = DEFAULT_OUTPUT,
    metrics_port: int = 0,
    duration: float | None = None,
    out: TextIO | None = None,
) -> int:
    """Run the demo; return the exit code (0 on success)."""
    out = out or sys.stdout
    duration = DEFAULT_DURATION if duration is None else duration
    # Ctrl-C and SIGTERM stop the demo: service checkpointed, broker stopped.
    interrupt_on_stop_signals()
    live = live and out.isatty()
    table = LiveTable()
    broker = EmbeddedBroker()
    runner: ServiceRunner | None = None
    thread: threading.Thread | None = None
    try:
        print(f"starting embedded broker (tansu) on {broker.bootstrap_servers} ...", file=out)
        broker.start()
        broker.create_topics({INPUT_TOPIC: PARTITIONS})
        settings = load_settings(
            None,
            {},
            {
                "bootstrap_servers": broker.bootstrap_servers,
                "input_topic": INPUT_TOPIC,
                "group_id": "streamgmm-demo",
                "metrics_host": "127.0.0.1",
                "metrics_port": metrics_port,
                "session_timeout_ms": 6000,
                "heartbeat_interval_ms": 500,
                "checkpoint_every_seconds": 5.0,
                "log_level": "WARNING",
            },
        )
        table.regime_names = settings.regime_names
        runner = ServiceRunner(settings, install_signal_handlers=False, observers=[table.observe])
        thread = threading.Thread(target=runner.run, name="streamgmm-service", daemon=True)
        thread.start()
        if not runner.ready.wait(60):
            print("the service did not join its consumer group within 60 s", file=sys.stderr)
            return EXIT_FAILURE
        metrics = ""
        if runner.metrics_address is not None:
            host, port = runner.metrics_address
            metrics = f"metrics on http://{host}:{port}/metrics"
            print(f"service running; {metrics}", file=out)
        sent = _stream(broker, follow, live, duration, table, out, metrics)
        # Let the service drain what was sent.
        deadline = time.monotonic() + 60
        while table.total < sent and time.monotonic() < deadline:
            time.sleep(0.1)
        runner.stop()
        thread.join(60)
        final = f"\nfinal: {table.total} of {sent} ticks processed"
        print(table.render(final, legend=True), file=out)
        if output_png is not None:
            from streamgmm.plot import plot_regimes

            path = plot_regimes(output_png)
            print(f"wrote {path or output_png}", file=out)
        return 0 if table.total >= sent else EXIT_FAILURE
    except KeyboardInterrupt:
        print("\ninterrupted; stopping", file=out)
        return 0
    finally:
        if runner is not None:
            runner.stop()
        if thread is not None:
            thread.join(60)
        broker.stop()
        print("broker stopped", file=out)


def _stream(
    broker: EmbeddedBroker,
    follow: bool,
    live: bool,
    duration: float,
    table: LiveTable,
    out: TextIO,
    metrics: str = "",
) -> int:
    """Produce the feed paced over ``duration`` seconds; return the number of ticks sent.

    The live table is redrawn on a cleared screen, so its header repeats ``metrics`` (where
    the service's metrics are)."""
    producer = KafkaProducer(**broker.client_kwargs(), linger_ms=5)
    n_total = 5031 * (1 + len(SYNTHETIC))
    per_tick = duration / n_total if duration > 0 else 0.0
    started = time.monotonic()
    last_render = 0.0
    sent = 0
    try:
        for tick in _feed(follow):
            producer.send(INPUT_TOPIC, key=tick["symbol"].encode(), value=json.dumps(tick).encode())
            sent += 1
            if per_tick and sent % 50 == 0:
                ahead = started + sent * per_tick - time.monotonic()
                if ahead > 0:
                    time.sleep(ahead)
            now = time.monotonic()
            if live and now - last_render > 0.5:
                last_render = now
                header = f"streamgmm demo - {sent} ticks sent, {table.total} processed" + (
                    " (Ctrl-C to stop)" if follow else ""
                )
                if metrics:
                    header += f"\n{metrics}"
                out.write("\x1b[2J\x1b[H" + table.render(header, legend=True) + "\n")
                out.flush()
        producer.flush()
    finally:
        producer.close()
    return sent
