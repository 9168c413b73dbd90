"""Compile the numba kernels ``streamgmm run`` uses into numba's on-disk cache, ahead of time.

:func:`compile_if_cold` is what the commands (``run``, ``replay``, ``demo``, ``plot``) call
before their work: when :func:`kernels_cached` finds the market step missing from numba's
cache, it says so in one line, compiles every kernel (:func:`precompile`) and says how long
that took, so a first run is not silent for the minute it compiles; with a warm cache it
prints nothing and costs a fraction of a millisecond.

``python -m streamgmm._precompile`` streams synthetic market ticks through a
:class:`~streamgmm.RegimeDetector` the way the service does (tick by tick during warm-up,
``learn_predict_many`` once warm, a snapshot round trip for checkpoints), so every kernel
specialisation the default service needs is compiled and written to the cache
(``NUMBA_CACHE_DIR``, else ``__pycache__`` next to the package). A fresh process then loads
the kernels instead of compiling them for 30-60 s of CPU.

The Docker image runs it at build time with ``NUMBA_CPU_NAME=generic``, so that the cached
machine code targets no particular CPU and a container on another host still uses it; the same
variable must then be set at run time, as the image does. Event streams
(``tick_kind = "event"``) run the event model's step, compiled here too by a short event run.
"""

from __future__ import annotations

import json
import math
import random
import sys
import time
from typing import TextIO

__all__ = ["compile_if_cold", "kernels_cached", "precompile"]


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
    from streamgmm.regime import EventDetector

    events = EventDetector(["a"])
    events.learn_predict_many([{"ts": t["ts"], "a": t["price"]} for t in ticks[:200]])
    return time.perf_counter() - started


def kernels_cached() -> bool | None:
    """Whether numba's cache holds the market step (:func:`~streamgmm.regime.forecast.market_run`)
    for this source, this numba and this CPU; None when it cannot be told.

    The step and the two kernels it calls (a model's learning, the next tick's forecast) are
    most of the compile time, and are compiled together: when the step is cached, they are.
    The check reads the step's cache index, as numba itself does when it
    loads the kernel: the index is fresh when it was written for the same source text (numba
    keeps a hash of it) and numba version, and it must hold an entry for this CPU
    (``NUMBA_CPU_NAME``, ``NUMBA_CACHE_DIR`` and an installed, read-only package are all
    taken into account, as numba takes them).
    """
    try:
        from numba.core.registry import cpu_target

        from streamgmm.regime.forecast import market_run

        index = market_run._cache._cache_file._load_index()  # type: ignore[attr-defined]
        machine = cpu_target.target_context.codegen().magic_tuple()
        return any(key[1] == machine for key in index)
    except Exception:  # numba's internals moved, or caching is off: say nothing
        return None


def compile_if_cold(stream: TextIO | None = None) -> float | None:
    """Compile the kernels when the cache is cold, saying so on ``stream`` (stderr) in one
    line before and one after; return the seconds it took, or None when the cache was warm
    (nothing printed, nothing compiled)."""
    if kernels_cached() is not False:
        return None
    stream = stream or sys.stderr
    print(
        "streamgmm: compiling the numba kernels, about a minute on 2 cores (once: they "
        "are cached for later runs) ...",
        file=stream,
        flush=True,
    )
    seconds = precompile()
    print(f"streamgmm: kernels compiled in {seconds:.1f} s", file=stream, flush=True)
    return seconds


def main() -> int:
    seconds = precompile()
    print(f"streamgmm: numba kernels compiled and cached in {seconds:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
