"""Compile the numba kernels ``streamgmm run`` uses into numba's on-disk cache, ahead of time.

``python -m streamgmm._precompile`` streams synthetic market ticks through a
:class:`~streamgmm.RegimeDetector` the way the service does (tick by tick during warm-up,
``learn_predict_many`` once warm, a snapshot round trip for checkpoints), so every kernel
specialisation the default service needs is compiled and written to the cache
(``NUMBA_CACHE_DIR``, else ``__pycache__`` next to the package). A fresh process then loads
the kernels instead of compiling them for 30-60 s of CPU.

The Docker image runs it at build time with ``NUMBA_CPU_NAME=generic``, so that the cached
machine code targets no particular CPU and a container on another host still uses it; the same
variable must then be set at run time, as the image does. Event streams
(``tick_kind = "event"``) run the same compiled step (its arguments have the same types
whatever the number of fields), so they are covered too.
"""

from __future__ import annotations

import json
import math
import random
import time


def _ticks(n: int, seed: int) -> list[dict[str, float]]:
    rng = random.Random(seed)
    price, ticks = 100.0, []
    for i in range(n):
        vol = 0.03 if (i // 300) % 2 else 0.008
        price *= math.exp(rng.gauss(0.0, vol))
        ticks.append({"ts": 1.0e9 + 86400.0 * i, "price": price, "volume": 1000.0 + i})
    return ticks


def precompile() -> float:
    """Run the service's per-key paths once; return the seconds it took."""
    from streamgmm.regime import RegimeDetector

    started = time.perf_counter()
    ticks = _ticks(1500, seed=0)
    det = RegimeDetector()
    for tick in ticks[:400]:  # warm-up and first warm ticks, one at a time
        det.learn_predict_one(tick)
    det.learn_predict_many(ticks[400:1000])  # the compiled per-key run
    det = RegimeDetector.from_state(json.loads(json.dumps(det.to_state())))  # checkpoints
    det.learn_predict_many(ticks[1000:])
    det.learn_predict_one(ticks[-1])  # a duplicate tick
    return time.perf_counter() - started


def main() -> int:
    seconds = precompile()
    print(f"streamgmm: numba kernels compiled and cached in {seconds:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
