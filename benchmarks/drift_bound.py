"""How fast can any monitor flag a x3 variance jump, at a given false-alarm rate?

The drift goal asks for a x3 variance jump flagged within 100 ticks, with at most 1e-4 false
alarms per tick on stationary streams. On iid streams this is easy; on a GARCH stream it is
not, and this script measures why, for every monitor at once.

**The bound.** Let a monitor raise at most ``rate`` false alarms per tick on the stationary
stream, so the chance of an alarm in any window of ``W`` ticks is at most ``q = W rate``. Let
``p`` be the chance that it raises one in the ``W`` ticks after a jump. The event "an alarm in
the window" is a function of the data, so by the data-processing inequality

    d(p || q) <= KL_W,

where ``d`` is the Kullback-Leibler divergence of two Bernoulli laws and ``KL_W`` that of the
stream with a jump from the stream without one: the expected sum over the window of the log
ratio of each tick's true conditional density (after the jump) to its conditional density had
there been no jump, given everything before it. That holds for any monitor, with any knowledge
of the parameters, at any threshold. ``p_max`` below is the largest ``p`` it allows.

The streams are :func:`streamgmm.synthetic.heavy_tailed_stream`'s (normal, Student-t(4), and
GARCH(1,1) with ``(a, b) = (0.08, 0.9)`` and t(4) innovations) with the returns from the jump
on multiplied by sqrt(3), as :func:`streamgmm.synthetic.variance_jump` does and as
``benchmarks/drift_alternatives.py`` measures. ``KL_W`` is estimated by Monte Carlo over
independent paths started from the stationary law (a burn-in), with its standard error.

For a GARCH stream without the jump, the conditional variance ``h0`` follows the recursion on
the observed returns ``r``: ``h0' = w + a r^2 + b h0``. With the jump the true conditional
variance is ``3 h``, ``h`` the recursion on ``r / sqrt(3)``. After a jump ``h0`` approaches
``3 h - 2 w / (1 - b)``: the recursion absorbs most of the jump within a few ticks, and what is
left for any monitor to see is a variance ratio of about 1.15 (when ``h`` is near its mean).

**A monitor near the bound.** The bound says what no monitor can beat; the second table shows
what one that knows everything but the jump's time achieves: a window-limited generalised
likelihood ratio (Lai 1998) with the GARCH stream's true parameters,
``G_t = max over v in (t - M, t] of sum_{s=v..t} llr_s(v)``, where ``llr_s(v)`` is the log ratio
of tick ``s``'s density under "a x3 jump at ``v``" to its density without one, with ``M = 100``,
an alarm at ``G_t > c`` (then the window starts afresh). Its threshold ``c`` is the lowest on a
grid whose false alarms on the stationary GARCH streams of ``drift_alternatives.py``'s TUNING
seeds (100-114, 20,000 ticks each) are at most ``--rate`` a tick; it is then run on those
streams' jump seeds (100-124, a x3 jump at tick 1,500 of 3,000), counting jumps flagged within
``--window`` ticks.

Usage::

    python benchmarks/drift_bound.py [--paths 20000] [--window 100] [--rate 1e-4]
"""

from __future__ import annotations

import argparse
import math

import numpy as np
from numba import njit
from scipy import optimize

from streamgmm import synthetic as syn

T4_SD = math.sqrt(2.0)  # the sd of a Student-t(4)


def t4_logpdf(r, var):
    """Log density of a Student-t(4) scaled to variance ``var``, at ``r`` (numbers or arrays):
    its squared scale is ``var / 2`` and its log constant ``log(3 / 8)``."""
    s2 = 0.5 * var
    return math.log(0.375) - 0.5 * np.log(s2) - 2.5 * np.log1p(r * r / (4.0 * s2))


#: The same density compiled, for the oracle's per-tick loop (NumPy arrays use the above).
_t4_logpdf = njit(cache=True)(t4_logpdf)


def norm_logpdf(r: np.ndarray, var: np.ndarray) -> np.ndarray:
    return -0.5 * np.log(2.0 * math.pi * var) - 0.5 * r * r / var


def kl_window(
    kind: str, paths: int, window: int, factor: float, seed: int, burn_in: int = 1000
) -> tuple[float, float]:
    """Monte Carlo ``KL_W`` (nats) and its standard error, over ``paths`` independent paths."""
    rng = np.random.default_rng(seed)
    total = np.zeros(paths)
    if kind in ("normal", "t4"):
        for _ in range(window):
            if kind == "normal":
                x = rng.standard_normal(paths)
                r = math.sqrt(factor) * x
                llr = norm_logpdf(r, np.full(paths, factor)) - norm_logpdf(r, np.ones(paths))
            else:
                x = rng.standard_t(4.0, paths) / T4_SD
                r = math.sqrt(factor) * x
                llr = t4_logpdf(r, np.full(paths, factor)) - t4_logpdf(r, np.ones(paths))
            total += llr
    elif kind == "garch":
        a, b = 0.08, 0.9
        w = 1.0 - a - b  # unit long-run variance
        h = np.ones(paths)
        prev = np.zeros(paths)
        for _ in range(burn_in):  # the stationary law: no jump yet
            h = w + a * prev * prev + b * h
            prev = np.sqrt(h) * rng.standard_t(4.0, paths) / T4_SD
        h0 = h.copy()  # before the jump both recursions are the same
        for _ in range(window):
            h = w + a * prev * prev + b * h  # the generator's recursion, on x = r / sqrt(3)
            x = np.sqrt(h) * rng.standard_t(4.0, paths) / T4_SD
            r = math.sqrt(factor) * x
            llr = t4_logpdf(r, factor * h) - t4_logpdf(r, h0)
            total += llr
            prev = x
            h0 = w + a * r * r + b * h0  # the no-jump recursion, on the observed returns
    else:
        raise ValueError(f"kind must be 'normal', 't4' or 'garch', got {kind!r}")
    return float(total.mean()), float(total.std(ddof=1) / math.sqrt(paths))


def bernoulli_kl(p: float, q: float) -> float:
    out = 0.0
    if p > 0.0:
        out += p * math.log(p / q)
    if p < 1.0:
        out += (1.0 - p) * math.log((1.0 - p) / (1.0 - q))
    return out


def p_max(kl: float, q: float) -> float:
    """The largest detection probability ``p >= q`` with ``d(p || q) <= kl``."""
    if bernoulli_kl(1.0 - 1e-15, q) <= kl:
        return 1.0
    return float(optimize.brentq(lambda p: bernoulli_kl(p, q) - kl, q, 1.0 - 1e-15))


GARCH = (0.08, 0.9)
STATIONARY_SEEDS = range(100, 115)
JUMP_SEEDS = range(100, 125)
JUMP_AT = 1500


@njit(cache=True)
def oracle_glr(r, a, b, factor, window, c):
    """Alarms (bool per return) of the window-limited GLR with the true GARCH parameters.

    Every loop is bounded by ``len(r) * window``."""
    w = 1.0 - a - b  # unit long-run variance (the generator's sigma = 1)
    n = r.size
    out = np.zeros(n, np.bool_)
    hp = np.zeros(window)  # per candidate jump time: its post-jump recursion on r / sqrt(f)
    cs = np.zeros(window)  # and its log likelihood ratio so far
    alive = np.zeros(window, np.bool_)
    h0 = 1.0
    prev = 0.0
    slot = 0
    for t in range(n):
        h0 = w + a * prev * prev + b * h0 if t > 0 else 1.0
        # a new candidate: the jump is at this tick; until now its recursion equals h0
        hp[slot] = h0
        cs[slot] = 0.0
        alive[slot] = True
        best = -1e300
        for k in range(window):
            if alive[k]:
                cs[k] += _t4_logpdf(r[t], factor * hp[k]) - _t4_logpdf(r[t], h0)
                if cs[k] > best:
                    best = cs[k]
        if best > c:
            out[t] = True
            for k in range(window):
                alive[k] = False
        x = r[t] / math.sqrt(factor)
        for k in range(window):
            if alive[k]:
                hp[k] = w + a * x * x + b * hp[k]
        slot = (slot + 1) % window
        alive[slot] = False  # the oldest candidate leaves the window
        prev = r[t]
    return out


def _returns(price: np.ndarray) -> np.ndarray:
    return 100.0 * np.diff(np.log(price))  # percent: the generator's sigma is 1 %


def oracle_table(rate: float, window: int, factor: float) -> None:
    a, b = GARCH
    stationary = [
        _returns(syn.heavy_tailed_stream(s, 20_000, "garch", garch=GARCH).price)
        for s in STATIONARY_SEEDS
    ]
    jumps = [
        _returns(
            syn.variance_jump(
                syn.heavy_tailed_stream(s, 3000, "garch", garch=GARCH), JUMP_AT, factor
            ).price
        )
        for s in JUMP_SEEDS
    ]
    ticks = sum(r.size for r in stationary)
    print(f"\nthe oracle GLR (window {window}) on GARCH streams: threshold, false alarms a tick,")
    print(f"x{factor:g} jumps flagged within {window} ticks (of {len(jumps)}), median delay")
    for c in (3.0, 4.0, 4.5, 5.0, 5.2, 5.4, 5.6, 5.8, 6.0):
        false = sum(int(oracle_glr(r, a, b, factor, window, c).sum()) for r in stationary)
        delays = []
        for r in jumps:
            hits = np.flatnonzero(oracle_glr(r, a, b, factor, window, c)[JUMP_AT - 1 :])
            if hits.size and hits[0] < window:
                delays.append(int(hits[0]))
        med = f"{np.median(delays):.0f}" if delays else "-"
        mark = "  <= the rate" if false / ticks <= rate else ""
        print(f"  c = {c:4.1f}: {false / ticks:.1e}  {len(delays):2d}/{len(jumps)}  {med:>4}{mark}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--paths", type=int, default=20_000)
    parser.add_argument("--window", type=int, default=100)
    parser.add_argument("--rate", type=float, default=1e-4, help="false alarms per tick")
    parser.add_argument("--factor", type=float, default=3.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    q = args.window * args.rate
    print(
        f"x{args.factor:g} variance jump, window {args.window} ticks, at most {args.rate:g} "
        f"false alarms a tick (q = {q:.3g}); {args.paths} paths"
    )
    print(f"{'stream':<8} {'KL_W (nats)':>16} {'p_max':>7}")
    for kind in ("normal", "t4", "garch"):
        kl, se = kl_window(kind, args.paths, args.window, args.factor, args.seed)
        # the bound with the KL two standard errors higher, so noise cannot flatter it
        print(f"{kind:<8} {kl:10.3f} ± {se:.3f} {p_max(kl + 2.0 * se, q):7.3f}")
    oracle_table(args.rate, args.window, args.factor)


if __name__ == "__main__":
    main()
