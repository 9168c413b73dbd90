"""Do returns across closures move the regime filter as much as ordinary returns?

For every daily real series (the S&P 500, NASDAQ, WTI and skfolio's 20 stocks) the default
``RegimeDetector()`` runs tick by tick. A *large* return is one beyond 3 times the standard
deviation the detector forecast for one time unit (its ``volatility`` of the tick before),
taken where the filter was calm (P(turbulent) below 0.5 before it). Per series, and pooled,
the script prints how many large returns came after an ordinary step (under 1.5 days) and
across a closure (a weekend, a holiday: 2.5 days or more), and the mean rise of P(turbulent)
on that tick.

Usage::

    python benchmarks/closure_evidence.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import regime_support as rs

from streamgmm.regime import RegimeDetector

LARGE = 3.0
CALM = 0.5


def moves(name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rise of P(turbulent), days since the last tick, |return| over the forecast sd) of each
    scored tick that followed a calm one."""
    prices = rs.real_series()[name]
    ts = rs.posix_seconds(prices.index)
    price = prices.to_numpy(float)
    run = rs.run_detector(ts, price, RegimeDetector)  # aligned with the returns
    p_turb = np.where(run.warm, run.probabilities[:, 1], np.nan)
    sd = np.array([np.nan if o["volatility"] is None else o["volatility"] for o in run.outputs])
    # return j + 1 against the forecast made at tick j + 1, the one return j ended on
    size = np.abs(np.diff(np.log(price))[1:]) / sd[:-1]
    rise = p_turb[1:] - p_turb[:-1]
    days = np.diff(ts)[1:] / 86400.0
    keep = np.isfinite(size) & np.isfinite(rise) & (p_turb[:-1] < CALM)
    return rise[keep], days[keep], size[keep]


def main() -> None:
    names = ["sp500_1999", "nasdaq", "wti", *(f"stock_{t}" for t in rs.STOCK_TICKERS)]
    pooled = {"ordinary": [], "closure": []}
    print(f"returns beyond {LARGE:g} forecast sd from P(turbulent) < {CALM}: count, mean rise")
    for name in names:
        rise, days, size = moves(name)
        large = size > LARGE
        row = []
        for kind, mask in (("ordinary", large & (days < 1.5)), ("closure", large & (days >= 2.5))):
            pooled[kind].append(rise[mask])
            row.append(f"{kind} {mask.sum():4d} {rise[mask].mean() if mask.any() else np.nan:+.3f}")
        print(f"{name:14s} " + "   ".join(row))
    for kind, parts in pooled.items():
        allr = np.concatenate(parts)
        print(f"pooled {kind:9s} {allr.size:5d} ticks, mean rise {allr.mean():+.3f}")


if __name__ == "__main__":
    main()
