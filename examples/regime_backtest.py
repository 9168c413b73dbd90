"""A regime backtest over a pandas DataFrame: S&P 500 daily closes, 1999-2018.

``streamgmm.frame.regimes_frame`` streams the closes through a ``RegimeDetector`` and returns
one row per day: what the detector said at that close, having learnt only from the days
before. The backtest holds the index on the next day only when today's regime is the calm
one, and compares that with buy-and-hold from the first day the detector is warm.

    python examples/regime_backtest.py        # needs the [demo] extra (arch, pandas)

An illustration of the API, not investment advice: no costs, no slippage, one index.
"""

from __future__ import annotations

import math

import pandas as pd
from arch.data import sp500

from streamgmm import RegimeDetector
from streamgmm.frame import regimes_frame


def stats(daily: pd.Series) -> dict[str, float]:
    wealth = (1.0 + daily).cumprod()
    years = len(daily) / 252
    return {
        "annual return": wealth.iloc[-1] ** (1 / years) - 1,
        "annual volatility": daily.std() * math.sqrt(252),
        "max drawdown": (wealth / wealth.cummax() - 1).min(),
    }


def main() -> None:
    close = sp500.load()["Adj Close"]
    regimes = regimes_frame(close.to_frame("price"), RegimeDetector(n_regimes=2))
    warm = regimes["warm"].to_numpy().argmax()  # first warm day
    returns = close.pct_change().iloc[warm + 1 :]
    # Decided at each close from that close's output, applied to the next day's return.
    calm = (regimes["regime"] == 0).shift(1).iloc[warm + 1 :].astype(bool)
    strategy = returns.where(calm, 0.0)
    print(
        f"{len(returns)} trading days from {returns.index[0]:%Y-%m-%d}; "
        f"in the market on {calm.mean():.0%} of them"
    )
    print(f"{'':20} {'buy and hold':>14} {'calm only':>10}")
    for (name, hold), (_, timed) in zip(
        stats(returns).items(), stats(strategy).items(), strict=True
    ):
        print(f"{name:20} {hold:>14.1%} {timed:>10.1%}")
    crisis = regimes.loc["2008-09-15":"2009-03-31"]
    print(
        f"2008-09-15..2009-03-31: turbulent on {(crisis['regime'] == 1).mean():.0%} of days, "
        f"mean P(turbulent) {crisis['p_1'].mean():.3f}"
    )


if __name__ == "__main__":
    main()
