"""Volatility targeting with the regime output, against buy-and-hold: S&P 500, 1999-2018.

``streamgmm.frame.regimes_frame`` streams the daily closes through a ``RegimeDetector`` and
returns one row per day: what the detector said at that close, having learnt only from the
days before. The example turns that into a volatility forecast and sizes a position with it:

* each regime's variance is the probability-weighted mean of the squared daily returns so far
  (day ``s`` counts towards regime ``r`` with the detector's ``P(r)`` at close ``s``);
* tomorrow's variance is today's regime probabilities times those variances;
* the position for tomorrow is ``TARGET / forecast volatility``, at most ``MAX_EXPOSURE``.

Every number used at a close is known at that close, and the position earns the next day's
return. For comparison it prints buy-and-hold and the same rule with a plain forecast that
knows nothing of regimes (an exponentially weighted variance, ``EWMA_HALFLIFE`` days), all from
the first day the detector is warm: annual return, annual volatility, maximum drawdown, Sharpe
ratio (risk-free rate 0) and mean exposure. What it shows is printed at the end, from the
numbers, not written in advance.

    python examples/regime_backtest.py        # needs the [demo] extra (arch, pandas)

An illustration of the API, not investment advice: one index, no trading costs, no cost of
the cash or of the leverage up to ``MAX_EXPOSURE``; TARGET, MAX_EXPOSURE and EWMA_HALFLIFE are
round numbers chosen before looking at the results, not fitted.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from arch.data import sp500

from streamgmm import RegimeDetector
from streamgmm.frame import regimes_frame

#: Annual volatility the position aims for, and the largest position (1.5 = 150 % invested).
TARGET = 0.15
MAX_EXPOSURE = 1.5
#: Half-life, in days, of the plain volatility forecast the regime forecast is compared with.
EWMA_HALFLIFE = 20
DAYS = 252


def stats(daily: pd.Series, exposure: pd.Series | None = None) -> dict[str, float]:
    wealth = (1.0 + daily).cumprod()
    years = len(daily) / DAYS
    vol = daily.std() * math.sqrt(DAYS)
    return {
        "annual return": wealth.iloc[-1] ** (1 / years) - 1,
        "annual volatility": vol,
        "max drawdown": (wealth / wealth.cummax() - 1).min(),
        "Sharpe ratio": daily.mean() * DAYS / vol,
        "mean exposure": 1.0 if exposure is None else exposure.mean(),
    }


def regime_variance(returns: pd.Series, probabilities: pd.DataFrame) -> pd.Series:
    """Forecast of the next day's variance at each close, from the regime probabilities."""
    squared = returns.pow(2).to_numpy()[:, None]
    p = probabilities.to_numpy()
    # Each regime's probability-weighted mean squared return over the days up to this one.
    per_regime = np.cumsum(p * squared, axis=0) / np.maximum(np.cumsum(p, axis=0), 1e-12)
    return pd.Series((p * per_regime).sum(axis=1), index=returns.index)


def position(variance: pd.Series) -> pd.Series:
    """Exposure decided at each close from that close's variance forecast, for the next day."""
    vol = np.sqrt(variance * DAYS)
    return (TARGET / vol).clip(upper=MAX_EXPOSURE).shift(1)


def main() -> None:
    close = sp500.load()["Adj Close"]
    regimes = regimes_frame(close.to_frame("price"), RegimeDetector(n_regimes=2))
    returns = close.pct_change().fillna(0.0)
    warm = int(regimes["warm"].to_numpy().argmax())  # the first warm day
    p = regimes[["p_0", "p_1"]]
    regime_exposure = position(regime_variance(returns, p)).iloc[warm + 1 :]
    ewma_exposure = position(returns.pow(2).ewm(halflife=EWMA_HALFLIFE).mean()).iloc[warm + 1 :]
    held = returns.iloc[warm + 1 :]
    columns = {
        "buy and hold": stats(held),
        "regime target": stats(held * regime_exposure, regime_exposure),
        "EWMA target": stats(held * ewma_exposure, ewma_exposure),
    }
    print(
        f"{len(held)} trading days from {held.index[0]:%Y-%m-%d}; volatility target "
        f"{TARGET:.0%}, exposure at most {MAX_EXPOSURE:.0%}"
    )
    print(f"{'':18}" + "".join(f"{name:>15}" for name in columns))
    for row in columns["buy and hold"]:
        cells = [columns[name][row] for name in columns]
        if row == "Sharpe ratio":
            print(f"{row:18}" + "".join(f"{v:>15.2f}" for v in cells))
        else:
            print(f"{row:18}" + "".join(f"{v:>15.1%}" for v in cells))
    crisis = regimes.loc["2008-09-15":"2009-03-31"]
    print(
        f"2008-09-15..2009-03-31: turbulent on {(crisis['regime'] == 1).mean():.0%} of days, "
        f"mean P(turbulent) {crisis['p_1'].mean():.3f}, mean exposure "
        f"{regime_exposure.loc['2008-09-15':'2009-03-31'].mean():.0%}"
    )
    hold, regime, ewma = (columns[name] for name in columns)
    verdict = "beat" if regime["Sharpe ratio"] > ewma["Sharpe ratio"] else "did not beat"
    print(
        "What it shows: sized by the regime forecast, the position ran at "
        f"{regime['annual volatility']:.1%} volatility for a {TARGET:.0%} target\n"
        f"(buy-and-hold: {hold['annual volatility']:.1%}), with a worst drawdown of "
        f"{regime['max drawdown']:.0%} (buy-and-hold: {hold['max drawdown']:.0%}) and a Sharpe "
        f"ratio of {regime['Sharpe ratio']:.2f} (buy-and-hold: {hold['Sharpe ratio']:.2f}).\n"
        f"The plain EWMA forecast's Sharpe ratio was {ewma['Sharpe ratio']:.2f}: on this index "
        f"the regimes {verdict} a forecast that knows nothing of them."
    )


if __name__ == "__main__":
    main()
