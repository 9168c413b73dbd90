"""Volatility targeting with the detector's forecast, against buy-and-hold: S&P 500, 1999-2018.

``streamgmm.frame.regimes_frame`` streams the daily closes through a ``RegimeDetector`` and
returns one row per day: what the detector said at that close, having learnt only from the
days before. Its ``volatility`` column is the forecast standard deviation of the next day's log
return. The example sizes a position with it: the position for day ``t`` is
``TARGET / forecast volatility``, at most ``MAX_EXPOSURE``, from the forecast made at the close
of day ``t - 1``; it earns day ``t``'s return.

For comparison it prints buy-and-hold and the same rule with the plain RiskMetrics forecast (an
exponentially weighted variance of the daily log returns, ``EWMA_LAMBDA``), all from the first
day the detector is warm: annual return, annual volatility, maximum drawdown, Sharpe ratio
(risk-free rate 0) and mean exposure. What it shows is printed at the end, from the numbers,
not written in advance.

    python examples/regime_backtest.py        # needs the [demo] extra (arch, pandas)

An illustration of the API, not investment advice: one index, no trading costs, no cost of
the cash or of the leverage up to ``MAX_EXPOSURE``; TARGET, MAX_EXPOSURE and EWMA_LAMBDA are
round or textbook numbers chosen before looking at the results, not fitted.
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
#: Decay of the plain forecast: variance = lambda * variance + (1 - lambda) * return^2.
EWMA_LAMBDA = 0.94
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


def position(daily_vol: pd.Series) -> pd.Series:
    """Exposure for each day, from the daily volatility forecast made at the previous close."""
    return (TARGET / (daily_vol * math.sqrt(DAYS))).clip(upper=MAX_EXPOSURE).shift(1)


def main() -> None:
    close = sp500.load()["Adj Close"]
    regimes = regimes_frame(close.to_frame("price"), RegimeDetector(n_regimes=2))
    returns = close.pct_change().fillna(0.0)
    log_returns = np.log(close).diff().fillna(0.0)
    ewma_vol = np.sqrt(log_returns.pow(2).ewm(alpha=1 - EWMA_LAMBDA, adjust=False).mean())
    warm = int(regimes["warm"].to_numpy().argmax())  # the first warm day
    detector_exposure = position(regimes["volatility"]).iloc[warm + 1 :]
    ewma_exposure = position(ewma_vol).iloc[warm + 1 :]
    held = returns.iloc[warm + 1 :]
    columns = {
        "buy and hold": stats(held),
        "detector vol": stats(held * detector_exposure, detector_exposure),
        "EWMA vol": stats(held * ewma_exposure, ewma_exposure),
    }
    print(
        f"{len(held)} trading days from {held.index[0]:%Y-%m-%d}; volatility target "
        f"{TARGET:.0%}, exposure at most {MAX_EXPOSURE:.0%}"
    )
    print(f"{'':18}" + "".join(f"{name:>15}" for name in columns))
    for row in columns["buy and hold"]:
        cells = [columns[name][row] for name in columns]
        cell = "{:>15.2f}" if row == "Sharpe ratio" else "{:>15.1%}"
        print(f"{row:18}" + "".join(cell.format(v) for v in cells))
    crisis = regimes.loc["2008-09-15":"2009-03-31"]
    print(
        f"2008-09-15..2009-03-31: turbulent on {(crisis['regime'] == 1).mean():.0%} of days, "
        f"mean P(turbulent) {crisis['p_1'].mean():.3f}, mean exposure "
        f"{detector_exposure.loc['2008-09-15':'2009-03-31'].mean():.0%}"
    )
    hold, detector, ewma = columns.values()
    verdict = "beat" if detector["Sharpe ratio"] > ewma["Sharpe ratio"] else "did not beat"
    print(
        "What it shows: sized by the detector's forecast, the position ran at "
        f"{detector['annual volatility']:.1%} volatility for a {TARGET:.0%} target\n"
        f"(buy-and-hold: {hold['annual volatility']:.1%}), with a worst drawdown of "
        f"{detector['max drawdown']:.0%} (buy-and-hold: {hold['max drawdown']:.0%}) and a Sharpe "
        f"ratio of {detector['Sharpe ratio']:.2f} (buy-and-hold: {hold['Sharpe ratio']:.2f}).\n"
        f"The EWMA forecast's Sharpe ratio was {ewma['Sharpe ratio']:.2f}: on this index the "
        f"detector's forecast {verdict} the plain EWMA forecast."
    )


if __name__ == "__main__":
    main()
