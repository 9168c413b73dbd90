"""A sample producer: synthetic market ticks for a few instruments, sent to a Kafka topic.

Each instrument is a random walk whose volatility switches between a calm and a turbulent
level, so the service has regimes to find. Ticks are JSON records keyed by symbol, the
service's input format.

    python examples/synthetic_feed.py --bootstrap-servers localhost:9092 --topic ticks

It runs until Ctrl-C (or SIGTERM), or until ``--count`` ticks per instrument were sent. The
Docker Compose file (deploy/docker-compose.yml) runs it as its ``producer`` service. With
``--csv FILE`` it writes ``--count`` ticks per instrument to a CSV file instead, the input of
``streamgmm produce`` and ``streamgmm replay``; ``examples/ticks.csv`` was written so:

    python examples/synthetic_feed.py --csv examples/ticks.csv --instruments 3 --count 500
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import math
import random
import signal
import sys
import time
from collections.abc import Iterator
from typing import Any


def ticks(instruments: int, seed: int = 0, start: float = 1.7e9) -> Iterator[dict[str, Any]]:
    """Endless ticks, one per instrument per step (one trading day apart), in time order."""
    rng = random.Random(seed)
    names = [f"SYN{i:02d}" for i in range(instruments)]
    prices = {name: 100.0 + 5 * i for i, name in enumerate(names)}
    # Each instrument switches regime at its own pace: calm 0.8 %/day, turbulent 3 %/day.
    periods = {name: rng.randint(150, 400) for name in names}
    for step in itertools.count():
        for name in names:
            vol = 0.03 if (step // periods[name]) % 2 else 0.008
            prices[name] *= math.exp(rng.gauss(0.0, vol))
            yield {
                "symbol": name,
                "ts": start + 86400.0 * step,
                "price": round(prices[name], 4),
                "volume": float(rng.randint(10_000, 1_000_000)),
            }


def send(
    bootstrap_servers: str,
    topic: str,
    instruments: int,
    rate: float,
    count: int | None,
    **client: Any,
) -> int:
    """Send ``count`` ticks per instrument (None: until interrupted) at ``rate`` per second."""
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=bootstrap_servers, linger_ms=5, **client)
    total = None if count is None else count * instruments
    started, sent = time.monotonic(), 0
    try:
        for tick in itertools.islice(ticks(instruments), total):
            producer.send(topic, key=tick["symbol"].encode(), value=json.dumps(tick).encode())
            sent += 1
            if rate > 0:
                delay = started + sent / rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
    except KeyboardInterrupt:
        pass
    finally:
        producer.flush()
        producer.close()
    return sent


def write_csv(path: str, instruments: int, count: int) -> int:
    """Write ``count`` ticks per instrument to ``path`` as CSV; return the number of rows."""
    rows = list(itertools.islice(ticks(instruments), count * instruments))
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["symbol", "ts", "price", "volume"])
        writer.writeheader()
        writer.writerows(rows)
    return len(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap-servers", default="localhost:9092")
    parser.add_argument("--topic", default="ticks")
    parser.add_argument("--instruments", type=int, default=8)
    parser.add_argument("--rate", type=float, default=100.0, help="ticks per second, 0: no pause")
    parser.add_argument("--count", type=int, default=None, help="ticks per instrument")
    parser.add_argument("--api-version", default="2.5", help='broker protocol version or "auto"')
    parser.add_argument("--csv", metavar="FILE", help="write --count ticks to a CSV file instead")
    args = parser.parse_args(argv)
    if args.csv:
        n = write_csv(args.csv, args.instruments, args.count or 500)
        print(f"wrote {n} ticks to {args.csv}", file=sys.stderr)
        return 0
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # stop like Ctrl-C
    client = {}
    if args.api_version != "auto":
        client["api_version"] = tuple(int(p) for p in args.api_version.split("."))
    n = send(args.bootstrap_servers, args.topic, args.instruments, args.rate, args.count, **client)
    print(f"sent {n} ticks to {args.topic}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
