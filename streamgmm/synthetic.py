"""Synthetic price streams with known regimes, for testing and evaluating regime detectors.

Every generator is pure numpy (no I/O), seeded, and returns a small named tuple of numpy
arrays: ``ts`` (seconds), ``price`` (positive floats) and ``regime`` (the true regime of the
return *into* each tick: 0 calm, 1 turbulent; tick 0 has no return and carries the regime of
the first draw). Returns are log returns in percent, ``100 * log(p_t / p_{t-1})``.

* :func:`switching_stream`: two volatility levels with geometric durations, one tick per
  ``spacing`` seconds (the switching process of the regime tests).
* :func:`intraday_stream`: intraday bars with a U-shaped volatility profile, overnight gaps,
  weekends and holidays, stale quotes (zero returns) and persistent regimes.
* :func:`heavy_tailed_stream`: stationary streams without a regime change (Student-t with
  four degrees of freedom, or GARCH(1,1) clustering with Student-t innovations), for drift
  false-alarm rates; :func:`variance_jump` multiplies the variance from a known tick on.

Each stream has :meth:`~RegimeStream.ticks`, the ``{"ts", "price"}`` dicts a detector takes.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

__all__ = [
    "DAY",
    "IntradayStream",
    "RegimeStream",
    "heavy_tailed_stream",
    "intraday_stream",
    "switching_stream",
    "variance_jump",
]

#: Seconds in a day.
DAY = 86400.0

# Student-t with nu degrees of freedom has variance nu / (nu - 2).
_T4_SD = float(np.sqrt(2.0))


def _ticks(ts: np.ndarray, price: np.ndarray) -> list[dict[str, Any]]:
    return [{"ts": t, "price": p} for t, p in zip(ts.tolist(), price.tolist(), strict=True)]


class RegimeStream(NamedTuple):
    """A price stream with its true regime per tick.

    Attributes
    ----------
    ts
        Timestamps in seconds, strictly increasing (float64).
    price
        Prices, positive (float64).
    regime
        True regime of the return into each tick (int64; 0 calm, 1 turbulent).
    """

    ts: np.ndarray
    price: np.ndarray
    regime: np.ndarray

    def ticks(self) -> list[dict[str, Any]]:
        """The stream as ``{"ts": float, "price": float}`` dicts, in order."""
        return _ticks(self.ts, self.price)


class IntradayStream(NamedTuple):
    """Intraday bars with session markers (see :func:`intraday_stream`).

    Attributes
    ----------
    ts
        Bar close times in POSIX seconds (float64).
    price
        Bar close prices (float64); a stale bar repeats the previous close.
    regime
        True regime of the return into each bar (int64; 0 calm, 1 turbulent).
    after_gap
        True on the first bar of every session but the first: its return spans the overnight
        (or weekend, or holiday) gap.
    session
        Index of the trading session (day) of each bar, from 0.
    bar
        Index of the bar within its session, from 0.
    """

    ts: np.ndarray
    price: np.ndarray
    regime: np.ndarray
    after_gap: np.ndarray
    session: np.ndarray
    bar: np.ndarray

    def ticks(self) -> list[dict[str, Any]]:
        """The stream as ``{"ts": float, "price": float}`` dicts, in order."""
        return _ticks(self.ts, self.price)


def _positive(name: str, value: float) -> float:
    number = float(value)
    if not (np.isfinite(number) and number > 0):
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    return number


def _count(name: str, value: int, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _pair(name: str, values: tuple[float, float]) -> tuple[float, float]:
    if len(values) != 2:
        raise ValueError(f"{name} must hold two values (calm, turbulent), got {values!r}")
    return _positive(f"{name}[0]", values[0]), _positive(f"{name}[1]", values[1])


def _prices(returns: np.ndarray) -> np.ndarray:
    return 100.0 * np.exp(np.cumsum(returns / 100.0))


def _regime_path(
    rng: np.random.Generator,
    n: int,
    durations: tuple[float, float],
    first: int,
    min_first: int = 0,
) -> np.ndarray:
    """Alternating two-state path, geometric spells with means ``durations`` (in ticks)."""
    states = np.empty(n, dtype=np.int64)
    s, i = first, 0
    while i < n:
        d = int(rng.geometric(1 / durations[s]))
        if i == 0:
            d = max(d, min_first)
        states[i : i + d] = s
        i += d
        s = 1 - s
    return states


def switching_stream(
    seed: int,
    n: int = 4000,
    sigmas: tuple[float, float] = (0.7, 2.0),
    mean_durations: tuple[float, float] = (150.0, 75.0),
    spacing: float = DAY,
    calm_warmup: int | None = None,
    t0: float = 0.0,
) -> RegimeStream:
    """Two-regime switching volatility: Gaussian returns, geometric regime durations.

    The stream starts calm. Regime ``s`` lasts a geometric number of ticks with mean
    ``mean_durations[s]``; each tick's return is ``N(0, sigmas[s]²)`` percent. The same seed
    gives the same price path whatever ``spacing`` and ``t0`` are, so one path can be stamped
    at several spacings.

    Parameters
    ----------
    seed
        Seed of :func:`numpy.random.default_rng`.
    n
        Number of ticks.
    sigmas
        Standard deviation of the return per tick, in percent, in the calm and the turbulent
        regime (per day at the default spacing).
    mean_durations
        Mean regime durations in ticks (calm, turbulent).
    spacing
        Seconds between ticks.
    calm_warmup
        If set, the first calm spell lasts at least this many ticks, so that a detector's
        warm-up sees the calm regime only. ``None`` leaves the draw alone (and reproduces the
        regime tests' streams).
    t0
        Timestamp of the first tick.

    Returns
    -------
    RegimeStream

    Examples
    --------
    >>> s = switching_stream(0, n=1000)
    >>> s.price.shape, s.regime[:3].tolist(), float(s.ts[1] - s.ts[0])
    ((1000,), [0, 0, 0], 86400.0)
    >>> bool(switching_stream(3, n=1000, calm_warmup=500).regime[:500].max() == 0)
    True
    """
    n = _count("n", n)
    sig = np.array(_pair("sigmas", sigmas))
    durations = _pair("mean_durations", mean_durations)
    if min(durations) < 1.0:
        raise ValueError(f"mean_durations must be >= 1 tick, got {mean_durations!r}")
    spacing = _positive("spacing", spacing)
    if calm_warmup is not None:
        calm_warmup = _count("calm_warmup", calm_warmup, minimum=0)
    rng = np.random.default_rng(seed)
    states = _regime_path(rng, n, durations, first=0, min_first=calm_warmup or 0)
    returns = rng.standard_normal(n) * sig[states]
    ts = t0 + spacing * np.arange(n, dtype=np.float64)
    return RegimeStream(ts=ts, price=_prices(returns), regime=states)


def _unit_innovations(rng: np.random.Generator, size: int, df: float | None) -> np.ndarray:
    if df is None:
        return rng.standard_normal(size)
    return rng.standard_t(df, size) / np.sqrt(df / (df - 2.0))


def intraday_stream(
    seed: int,
    days: int = 120,
    bar_seconds: float = 300.0,
    *,
    sigmas: tuple[float, float] = (0.7, 2.0),
    mean_durations: tuple[float, float] = (8.0, 4.0),
    session_seconds: float = 23400.0,
    open_seconds: float = 52200.0,
    start: str = "2021-01-04",
    u_shape: float = 3.0,
    overnight_share: float = 0.2,
    closed_day_share: float = 0.25,
    holiday_rate: float = 0.04,
    stale_rate: float = 0.07,
    df: float | None = None,
) -> IntradayStream:
    """Intraday bars of an exchange-traded instrument, with regime switches.

    What the stream has, and how it is drawn:

    * **Sessions.** ``days`` trading sessions from ``start``: business days (Monday to Friday)
      minus holidays, each business day being a holiday with probability ``holiday_rate``.
      Each session has ``m = session_seconds // bar_seconds`` bars, stamped at their close:
      ``open_seconds + (k + 1) * bar_seconds`` after midnight UTC (the default 14:30 UTC is
      09:30 in New York in winter).
    * **Regimes.** A two-state chain over *bars* that runs on through nights, weekends and
      holidays: regime ``s`` lasts a geometric number of bars with mean
      ``mean_durations[s] * m`` (durations are given in sessions). The first state is drawn
      from the chain's stationary distribution.
    * **Volatility.** In regime ``s`` a whole session (overnight gap included) has variance
      ``sigmas[s]²`` (percent², log returns). A fraction ``overnight_share`` of it falls in the
      overnight gap; the rest is spread over the bars in proportion to the U-shaped profile
      ``1 + u_shape * (2x - 1)²`` with ``x = (k + 0.5) / m``: the first and last bars have
      about ``1 + u_shape`` times the variance of midday bars.
    * **Gaps.** The first bar of each session after the first carries the overnight return
      (in the regime of that bar) plus its own bar return. Each calendar day the market stays
      closed beyond one night adds ``closed_day_share`` of an overnight variance (a weekend
      gap has ``1 + 2 * closed_day_share`` times an ordinary night's variance).
    * **Stale quotes.** Every bar but a session's first is stale with probability
      ``stale_rate``: its price repeats the previous close (a zero return) while the latent
      price moves on, and the next fresh bar catches up. About ``stale_rate * (m - 1) / m``
      of all returns are exactly zero.
    * **Innovations.** Gaussian, or Student-t with ``df`` degrees of freedom scaled to unit
      variance.

    Parameters
    ----------
    seed
        Seed of :func:`numpy.random.default_rng`.
    days
        Number of trading sessions.
    bar_seconds
        Bar length in seconds (300: five-minute bars, 78 per session).
    sigmas
        Daily volatility in percent (calm, turbulent), overnight gap included.
    mean_durations
        Mean regime durations in sessions (calm, turbulent).
    session_seconds
        Length of a session in seconds (23,400: 6.5 hours).
    open_seconds
        Session open in seconds after midnight UTC.
    start
        First calendar date considered (ISO format); sessions start on the first business day
        from it that is not a holiday.
    u_shape
        Strength of the intraday U-shape (0: flat).
    overnight_share
        Fraction of a session's variance that falls in the overnight gap, in [0, 1).
    closed_day_share
        Extra overnight variance per additional closed calendar day, as a fraction of one
        night's.
    holiday_rate
        Probability that a business day is a holiday, in [0, 1).
    stale_rate
        Probability that a bar (not the first of its session) is stale, in [0, 1).
    df
        Degrees of freedom (> 2) of Student-t innovations; ``None`` for Gaussian.

    Returns
    -------
    IntradayStream

    Examples
    --------
    >>> s = intraday_stream(0, days=20)
    >>> s.price.size, int(s.bar.max()) + 1, int(s.after_gap.sum())
    (1560, 78, 19)
    >>> weekday = (np.floor(s.ts / DAY).astype(int) + 3) % 7  # 1970-01-01 was a Thursday
    >>> bool(weekday.max() <= 4)
    True
    """
    days = _count("days", days)
    bar_seconds = _positive("bar_seconds", bar_seconds)
    session_seconds = _positive("session_seconds", session_seconds)
    m = int(session_seconds // bar_seconds)
    if m < 2:
        raise ValueError(
            f"a session must hold at least 2 bars, got session_seconds={session_seconds!r} "
            f"and bar_seconds={bar_seconds!r}"
        )
    if not (open_seconds >= 0.0 and open_seconds + m * bar_seconds < DAY):
        raise ValueError(
            f"open_seconds must put the whole session within one UTC day, got {open_seconds!r}"
        )
    sig = np.array(_pair("sigmas", sigmas))
    durations = _pair("mean_durations", mean_durations)
    for name, value in (
        ("overnight_share", overnight_share),
        ("holiday_rate", holiday_rate),
        ("stale_rate", stale_rate),
    ):
        if not 0.0 <= value < 1.0:
            raise ValueError(f"{name} must be in [0, 1), got {value!r}")
    if not (u_shape >= 0.0 and closed_day_share >= 0.0):
        raise ValueError(
            f"u_shape and closed_day_share must be >= 0, got {u_shape!r}, {closed_day_share!r}"
        )
    if df is not None and not df > 2.0:
        raise ValueError(f"df must be > 2 (finite variance) or None, got {df!r}")
    rng = np.random.default_rng(seed)

    # Calendar: business days from `start`, minus random holidays, until `days` sessions.
    first_day = np.datetime64(start, "D")
    candidates = first_day + np.arange(2 * days + 14)
    while True:
        business = candidates[np.is_busday(candidates)]
        open_days = business[rng.random(business.size) >= holiday_rate]
        if open_days.size >= days:
            break
        candidates = first_day + np.arange(2 * candidates.size)
    open_days = open_days[:days]
    day_number = open_days.astype(np.int64)  # days since 1970-01-01
    nights = np.diff(day_number)  # calendar days between consecutive sessions (>= 1)

    n = days * m
    bars = m * np.array(durations)
    first = int(rng.random() < bars[1] / (bars[0] + bars[1]))
    states = _regime_path(rng, n, (float(bars[0]), float(bars[1])), first)

    x = (np.arange(m) + 0.5) / m
    profile = 1.0 + u_shape * (2.0 * x - 1.0) ** 2
    bar_share = (1.0 - overnight_share) * profile / profile.sum()
    session = np.repeat(np.arange(days), m)
    bar = np.tile(np.arange(m), days)
    variance = sig[states] ** 2 * bar_share[bar]
    returns = np.sqrt(variance) * _unit_innovations(rng, n, df)
    after_gap = (bar == 0) & (session > 0)
    gap_factor = 1.0 + closed_day_share * (nights - 1)
    gap_var = sig[states[after_gap]] ** 2 * overnight_share * gap_factor
    returns[after_gap] += np.sqrt(gap_var) * _unit_innovations(rng, days - 1, df)

    latent = np.cumsum(returns)
    stale = (rng.random(n) < stale_rate) & (bar > 0)
    fresh = np.flatnonzero(~stale)  # bar 0 is always fresh, so every bar has a fresh one
    last_fresh = fresh[np.searchsorted(fresh, np.arange(n), side="right") - 1]
    price = 100.0 * np.exp(latent[last_fresh] / 100.0)
    ts = DAY * day_number[session] + open_seconds + (bar + 1) * bar_seconds
    return IntradayStream(
        ts=ts.astype(np.float64),
        price=price,
        regime=states,
        after_gap=after_gap,
        session=session,
        bar=bar,
    )


def heavy_tailed_stream(
    seed: int,
    n: int = 20000,
    kind: str = "t4",
    *,
    sigma: float = 1.0,
    garch: tuple[float, float] = (0.08, 0.9),
    burn_in: int = 2000,
    spacing: float = DAY,
    t0: float = 0.0,
) -> RegimeStream:
    """A stationary stream with no regime change (``regime`` is all 0), heavy-tailed or not.

    Parameters
    ----------
    seed
        Seed of :func:`numpy.random.default_rng`.
    n
        Number of ticks.
    kind
        ``"normal"``: independent Gaussian returns (a light-tailed control).
        ``"t4"``: independent Student-t returns with 4 degrees of freedom at a constant scale.
        ``"garch"``: GARCH(1,1) volatility clustering, ``h_t = ω + a r²_{t-1} + b h_{t-1}``
        with ``(a, b) = garch`` and Student-t(4) innovations scaled to unit variance;
        ``ω = sigma² (1 - a - b)``, and the first ``burn_in`` draws are discarded so that the
        stream starts in the stationary distribution.
    sigma
        Unconditional standard deviation of the return per tick, in percent.
    garch
        ``(a, b)`` with ``a, b >= 0`` and ``a + b < 1`` (only for ``kind="garch"``).
    burn_in
        Discarded GARCH draws.
    spacing, t0
        Seconds between ticks and the first timestamp.

    Returns
    -------
    RegimeStream

    Examples
    --------
    >>> s = heavy_tailed_stream(0, n=50000, kind="t4")
    >>> r = np.diff(np.log(s.price)) * 100
    >>> bool(0.9 < r.std() < 1.1), bool(np.abs(r).max() > 6), int(s.regime.max())
    (True, True, 0)
    >>> g = heavy_tailed_stream(0, n=5000, kind="garch")
    >>> g.price.shape
    (5000,)
    """
    n = _count("n", n)
    sigma = _positive("sigma", sigma)
    spacing = _positive("spacing", spacing)
    rng = np.random.default_rng(seed)
    if kind == "normal":
        returns = sigma * rng.standard_normal(n)
    elif kind == "t4":
        returns = sigma * rng.standard_t(4.0, n) / _T4_SD
    elif kind == "garch":
        a, b = (float(v) for v in garch)
        if not (a >= 0.0 and b >= 0.0 and a + b < 1.0):
            raise ValueError(f"garch must be (a, b) with a, b >= 0 and a + b < 1, got {garch!r}")
        burn_in = _count("burn_in", burn_in, minimum=0)
        z = rng.standard_t(4.0, n + burn_in) / _T4_SD
        omega = sigma**2 * (1.0 - a - b)
        out = np.empty(n + burn_in)
        h = sigma**2
        prev = 0.0
        for t in range(n + burn_in):
            h = omega + a * prev * prev + b * h
            prev = float(np.sqrt(h) * z[t])
            out[t] = prev
        returns = out[burn_in:]
    else:
        raise ValueError(f"kind must be 'normal', 't4' or 'garch', got {kind!r}")
    ts = t0 + spacing * np.arange(n, dtype=np.float64)
    return RegimeStream(ts=ts, price=_prices(returns), regime=np.zeros(n, dtype=np.int64))


def variance_jump(stream: RegimeStream, at: int, factor: float = 3.0) -> RegimeStream:
    """The same stream with the variance of every return from tick ``at`` on times ``factor``.

    The returns into ticks ``at, at + 1, ...`` are multiplied by ``sqrt(factor)``; the
    timestamps and the earlier prices are unchanged. ``regime`` becomes 1 from tick ``at`` on
    (for a stream that was all calm, as from :func:`heavy_tailed_stream`).

    Parameters
    ----------
    stream
        The stream to change.
    at
        Index of the first tick whose return is scaled, ``1 <= at < len(stream.price)``.
    factor
        Variance multiplier (> 0).

    Returns
    -------
    RegimeStream

    Examples
    --------
    >>> base = heavy_tailed_stream(1, n=4000)
    >>> jumped = variance_jump(base, at=2000)
    >>> r0, r1 = (np.diff(np.log(s.price))[1999:] for s in (base, jumped))
    >>> bool(np.allclose(r1, r0 * np.sqrt(3.0))), int(jumped.regime[1999]), int(jumped.regime[2000])
    (True, 0, 1)
    """
    n = stream.price.size
    if isinstance(at, bool) or not isinstance(at, int | np.integer) or not 1 <= at < n:
        raise ValueError(f"at must be an integer in [1, {n}), got {at!r}")
    factor = _positive("factor", factor)
    log_price = np.log(stream.price)
    returns = np.diff(log_price)
    returns[at - 1 :] *= np.sqrt(factor)
    price = np.exp(np.concatenate([log_price[:1], log_price[0] + np.cumsum(returns)]))
    regime = stream.regime.copy()
    regime[at:] = np.maximum(regime[at:], 1)
    return RegimeStream(ts=stream.ts.copy(), price=price, regime=regime)
