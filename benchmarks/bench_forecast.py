"""Next-tick forecasts and regimes, causally, against the models a quant reaches for first.

For every series (TUNING, HELD-OUT, and FRESH data looked at once) each model makes, before tick
``t``, a predictive distribution of the log return ``log(p_t / p_{t-1})``; the scores cover every
return from the first refit point on (the start of the second calendar year; for sub-daily
series the start of the second calendar quarter; at least MIN_FIT returns before it):

* mean log predictive density (natural log-return units), the candidate's difference with each
  baseline and its Diebold-Mariano t (Newey-West variance, Bartlett kernel, lag
  ``floor(4 (n / 100)^(2/9))``);
* Kupiec's unconditional-coverage test and Christoffersen's independence test (and their sum,
  conditional coverage, in the JSON) for the one-step 1 % and 5 % quantiles;
* the mean of realised squared return over predicted variance;
* label switches per year against the argmax of the refitted Hamilton filter, and whether
  regime 0 is the calmest (mean squared return by label).

Models:

* ``cand``: the prototype (``benchmarks/forecast_models.py``): online GJR-GARCH-t with learnt
  gap multipliers and intraday profile, and a regime filter on the volatility level;
* ``ewma``: EWMA variance, lambda = 0.94, normal, zero mean;
* ``garch``: GARCH(1,1) with Student-t errors and a constant mean (``arch``), refitted at each
  refit point on all data so far, the recursion running tick by tick with those parameters;
* ``ham``: statsmodels ``MarkovRegression(k_regimes=2, switching_variance=True)``, refitted at
  each refit point on all data so far, filtering tick by tick (fits cached on disk);
* ``det``: the package's ``streamgmm.RegimeDetector()``, the default candidate (``--model
  det``): its ``log_likelihood``, labels and drift flags, and the exact quantiles of the pooled
  predictive it reports per tick (the compiled step's extra columns).

Usage::

    python benchmarks/bench_forecast.py [--only tuning|held-out|fresh] [--model NAME]
        [--params JSON] [--processes 2] [--json PATH] [--sections table,intraday,...]

``--params`` overrides the prototype's settings (names of ``forecast_models.DEFAULTS``).
Other candidates: ``--model pool`` (the two-member prototype pool), ``pool3`` (the pool with a
third, constant-variance member, ``forecast_pool3.py``; ``prior_c`` its initial weight and
``c_<name>`` settings of that member alone in ``--params``), ``vlr`` (one volatility model),
``ms`` (Markov-switching GARCH).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import sys
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from numba import njit
from scipy import stats

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
sys.path.insert(0, str(HERE))

import forecast_models as fm  # noqa: E402
import regime_support as rs  # noqa: E402

from streamgmm import synthetic as syn  # noqa: E402

MIN_FIT = 100
LOG100 = math.log(100.0)
SYN_T0 = 946684800.0  # 2000-01-01
_FIT_VERSION = "forecast-v1"

# ---------------------------------------------------------------------------------------------
# Series and the split
# ---------------------------------------------------------------------------------------------


@dataclass
class Series:
    name: str
    split: str
    ts: np.ndarray  # POSIX seconds
    price: np.ndarray
    kind: str = "daily"  # daily | intraday | low
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def dates(self) -> pd.DatetimeIndex:
        return pd.to_datetime(self.ts, unit="s")

    def prices(self) -> pd.Series:
        return pd.Series(self.price, index=self.dates, name=self.name)


def _real(name: str, split: str, prices: pd.Series, kind: str = "daily") -> Series:
    return Series(name, split, rs.posix_seconds(prices.index), prices.to_numpy(float), kind)


def _synthetic(split: str, seeds: dict[str, tuple[int, ...]]) -> list[Series]:
    out = []
    for seed in seeds["switching"]:
        s = syn.switching_stream(seed, n=4000, t0=SYN_T0)
        out.append(Series(f"syn_switch_{seed}", split, s.ts, s.price, extra={"regime": s.regime}))
    for seed in seeds["garch"]:
        s = syn.heavy_tailed_stream(seed, n=5000, kind="garch", t0=SYN_T0)
        out.append(Series(f"syn_garch_{seed}", split, s.ts, s.price))
    for seed in seeds["t4"]:
        s = syn.heavy_tailed_stream(seed, n=5000, kind="t4", t0=SYN_T0)
        out.append(Series(f"syn_t4_{seed}", split, s.ts, s.price))
    for seed in seeds["intraday"]:
        s = intraday_t3(seed)
        out.append(
            Series(
                f"syn_intraday_{seed}",
                split,
                s.ts,
                s.price,
                kind="intraday",
                extra={"regime": s.regime, "session": s.session, "bar": s.bar},
            )
        )
    return out


def intraday_t3(seed: int, days: int = 400) -> syn.IntradayStream:
    """15-minute bars, Student-t(3) innovations, U-shape 4.4x peak to trough, sessions, gaps."""
    return syn.intraday_stream(seed, days=days, bar_seconds=900.0, df=3.0, u_shape=3.5)


TUNING_SEEDS = {"switching": (100, 101), "garch": (100, 101), "t4": (100,), "intraday": (100, 101)}
HELD_SEEDS = {"switching": (2, 3, 4), "garch": (0, 1, 2), "t4": (0, 1), "intraday": (0, 1, 2)}


def _fresh() -> list[Series]:
    """Data nobody tuned on: other spacings and markets bundled with installed packages."""
    out: list[Series] = []
    real = rs.real_series()
    for name in rs.FRESH.real:  # skfolio factor ETFs (daily), skfolio S&P 500 index (daily)
        out.append(_real(name, "FRESH", real[name]))
    idx = real["sp500_index"]
    out.append(_real("sp500_index_weekly", "FRESH", idx.resample("W-FRI").last().dropna(), "low"))
    out.append(_real("sp500_index_monthly", "FRESH", idx.resample("ME").last().dropna(), "low"))
    for etf in ("factor_MTUM", "factor_USMV"):
        out.append(
            _real(f"{etf}_weekly", "FRESH", real[etf].resample("W-FRI").last().dropna(), "low")
        )
    from arch.data import crude, frenchdata

    c = crude.load()
    for col in ("Brent", "WTI"):
        out.append(_real(f"{col.lower()}_monthly", "FRESH", c[col].dropna(), "low"))
    ff = frenchdata.load()
    months = pd.to_datetime(
        [str(int(i.value)) if hasattr(i, "value") else str(i) for i in ff.index], format="%Y%m"
    )
    for col in ("Mkt-RF", "SMB", "HML"):
        level = 100.0 * np.exp(np.cumsum(np.log1p(ff[col].to_numpy(float) / 100.0)))
        out.append(_real(f"ff_{col}_monthly", "FRESH", pd.Series(level, index=months), "low"))
    try:  # backtesting.py bundles hourly EUR/USD bars and daily GOOG closes
        from backtesting.test import EURUSD, GOOG
    except ImportError:
        pass
    else:
        out.append(_real("eurusd_1h", "FRESH", EURUSD["Close"].astype(float), "intraday"))
        out.append(_real("goog", "FRESH", GOOG["Close"].astype(float)))
    return out


def load_split(split: str) -> list[Series]:
    real = rs.real_series()
    if split == "TUNING":
        out = [_real(n, split, real[n]) for n in rs.TUNING.real]
        return out + _synthetic(split, TUNING_SEEDS)
    if split == "HELD-OUT":
        names = ["nasdaq", "wti", *(n for n in rs.HELD_OUT.real if n.startswith("stock_"))]
        out = [_real(n, split, real[n]) for n in names]
        return out + _synthetic(split, HELD_SEEDS)
    if split == "FRESH":
        return _fresh()
    raise ValueError(split)


# ---------------------------------------------------------------------------------------------
# Refit schedule and scoring window
# ---------------------------------------------------------------------------------------------


def refit_points(s: Series) -> np.ndarray:
    """Return indices (into the returns) where a refit happens: the first return of each
    calendar year (quarter for intraday series) with at least MIN_FIT returns before it."""
    dates = s.dates[1:]
    period = dates.year * 4 + (dates.month - 1) // 3 if s.kind == "intraday" else dates.year
    period = np.asarray(period)
    starts = np.flatnonzero(np.r_[True, period[1:] != period[:-1]])
    return starts[starts >= MIN_FIT]


# ---------------------------------------------------------------------------------------------
# Predictives: per return, logpdf (natural units), mean, variance, 1 % and 5 % quantiles
# ---------------------------------------------------------------------------------------------


@dataclass
class Pred:
    logpdf: np.ndarray
    var: np.ndarray
    q01: np.ndarray
    q05: np.ndarray
    label: np.ndarray | None = None
    p_turb: np.ndarray | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def _t_pred(logpdf: np.ndarray, mean: np.ndarray, sd: np.ndarray, nu: np.ndarray) -> Pred:
    nu_safe = np.where(np.isfinite(nu), nu, 30.0)
    k = np.sqrt((nu_safe - 2.0) / nu_safe)
    q01 = mean + sd * k * stats.t.ppf(0.01, nu_safe)
    q05 = mean + sd * k * stats.t.ppf(0.05, nu_safe)
    # the upper quantiles of a symmetric predictive, for the tail diagnosis
    upper = {"q95": 2.0 * mean - q05, "q99": 2.0 * mean - q01}
    return Pred(logpdf, sd**2, q01, q05, extra=upper)


def ewma_pred(r: np.ndarray) -> Pred:
    v = np.empty(r.size)
    v[0] = np.mean(r[: min(20, r.size)] ** 2)
    lam = 0.94
    for i in range(1, r.size):
        v[i] = lam * v[i - 1] + (1.0 - lam) * r[i - 1] ** 2
    sd = np.sqrt(v)
    with np.errstate(divide="ignore", invalid="ignore"):  # a run of zero returns: v = 0
        lp = -0.5 * np.log(2 * np.pi * v) - 0.5 * r**2 / v
    return Pred(lp, v, stats.norm.ppf(0.01) * sd, stats.norm.ppf(0.05) * sd)


def _cached(s: Series, kind: str, compute: Any) -> dict[str, np.ndarray]:
    path = rs.cache_file(s.prices(), f"{_FIT_VERSION}-{kind}-{s.kind}")
    if path.is_file():
        try:
            with np.load(path, allow_pickle=False) as data:
                return {k: data[k] for k in data.files}
        except (OSError, ValueError):
            pass
    result = compute()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, **result)
    tmp.replace(path)
    return result


def _garch_fits(s: Series, r_pct: np.ndarray) -> dict[str, np.ndarray]:
    from arch import arch_model

    points = refit_points(s)
    params = np.full((points.size, 5), np.nan)
    previous = None
    for i, first in enumerate(points):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                model = arch_model(r_pct[:first], mean="Constant", vol="GARCH", p=1, q=1, dist="t")
                fit = model.fit(disp="off", show_warning=False)
                p = np.asarray(fit.params, float)
                if np.all(np.isfinite(p)):
                    previous = p
            except (ValueError, np.linalg.LinAlgError, RuntimeError):
                pass
        if previous is not None:
            params[i] = previous
    return {"points": points, "params": params}


def garch_pred(s: Series, r: np.ndarray) -> Pred:
    r_pct = 100.0 * r
    fits = _cached(s, "garch", lambda: _garch_fits(s, r_pct))
    points, params = fits["points"], fits["params"]
    n = r.size
    mean = np.full(n, np.nan)
    var = np.full(n, np.nan)
    nu = np.full(n, np.nan)
    for i, first in enumerate(points):
        last = int(points[i + 1]) if i + 1 < points.size else n
        mu, omega, alpha, beta, dof = params[i]
        if not np.isfinite(mu):
            continue
        eps = r_pct[:last] - mu
        head = eps[:first][: min(75, first)] ** 2
        w = 0.94 ** np.arange(head.size)
        backcast = float(np.sum(w * head) / np.sum(w))
        sig2 = _garch_recursion(np.ascontiguousarray(eps), omega, alpha, beta, backcast)
        mean[first:last] = mu
        var[first:last] = sig2[first:last]
        nu[first:last] = dof
    sd = np.sqrt(var)
    u = (r_pct - mean) / sd
    nu_ok = np.where(np.isfinite(nu), nu, 30.0)
    lp = (
        stats.t.logpdf(u * np.sqrt(nu_ok / (nu_ok - 2)), nu_ok)
        + 0.5 * np.log(nu_ok / (nu_ok - 2))
        - np.log(sd)
        + LOG100
    )
    pred = _t_pred(lp, mean / 100.0, sd / 100.0, nu)
    return pred


@njit(cache=True)
def _garch_recursion(eps, omega, alpha, beta, backcast):
    """GARCH(1,1) variances with arch's backcast as the start."""
    out = np.empty(eps.size)
    h = backcast
    prev = backcast
    for t in range(eps.size):
        h = omega + alpha * prev + beta * h
        out[t] = h
        prev = eps[t] * eps[t]
    return out


def _hamilton_fits(s: Series, r_pct: np.ndarray) -> dict[str, np.ndarray]:
    points = refit_points(s)
    n = r_pct.size
    llf = np.full(n, np.nan)
    pred_p = np.full((n, 2), np.nan)
    params = np.full((points.size, 6), np.nan)
    previous = None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for i, first in enumerate(points):
            last = int(points[i + 1]) if i + 1 < points.size else n
            model = rs.hamilton_model(r_pct[:first])
            starts: list[dict[str, Any]] = [{}]
            if previous is not None:
                starts.append({"start_params": previous})
            fits = []
            for options in starts:
                try:
                    fit = model.fit(disp=False, **options)
                except (np.linalg.LinAlgError, ValueError, RuntimeError):
                    continue
                if np.isfinite(fit.llf):
                    fits.append(fit)
            if not fits and previous is None:
                with contextlib.suppress(np.linalg.LinAlgError, ValueError, RuntimeError):
                    fits.append(model.fit(disp=False, search_reps=20, rng=0))
            if fits:
                previous = np.asarray(max(fits, key=lambda f: f.llf).params)
            if previous is None:
                continue
            params[i] = previous
            res = rs.hamilton_model(r_pct[:last]).filter(previous)
            llf[first:last] = np.asarray(res.llf_obs)[first:last]
            pred_p[first:last] = np.asarray(res.predicted_marginal_probabilities)[first:last]
    return {"points": points, "params": params, "llf": llf, "pred_p": pred_p}


def _mixture_quantile(w, m, sd, p):
    lo = np.min(m - 8 * sd, axis=1)
    hi = np.max(m + 8 * sd, axis=1)
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        cdf = np.sum(w * stats.norm.cdf((mid[:, None] - m) / sd), axis=1)
        below = cdf < p
        lo = np.where(below, mid, lo)
        hi = np.where(below, hi, mid)
    return 0.5 * (lo + hi)


def hamilton_pred(s: Series, r: np.ndarray) -> Pred:
    r_pct = 100.0 * r
    fits = _cached(s, "hamilton", lambda: _hamilton_fits(s, r_pct))
    points, params, llf, pred_p = fits["points"], fits["params"], fits["llf"], fits["pred_p"]
    n = r.size
    m = np.full((n, 2), np.nan)
    sd = np.full((n, 2), np.nan)
    high = np.zeros(n, dtype=int)
    for i, first in enumerate(points):
        last = int(points[i + 1]) if i + 1 < points.size else n
        p = params[i]
        if not np.isfinite(p[0]):
            continue
        m[first:last] = p[2:4]
        sd[first:last] = np.sqrt(p[4:6])
        high[first:last] = int(p[5] > p[4])
    var = np.sum(pred_p * (sd**2 + m**2), axis=1) - np.sum(pred_p * m, axis=1) ** 2
    ok = np.isfinite(var)
    q01 = np.full(n, np.nan)
    q05 = np.full(n, np.nan)
    if ok.any():
        q01[ok] = _mixture_quantile(pred_p[ok], m[ok], sd[ok], 0.01)
        q05[ok] = _mixture_quantile(pred_p[ok], m[ok], sd[ok], 0.05)
    # Labels: argmax of the filtered probabilities, 1 = the higher-variance regime.
    filt = np.full(n, np.nan)
    for i, first in enumerate(points):
        last = int(points[i + 1]) if i + 1 < points.size else n
        p = params[i]
        if not np.isfinite(p[0]):
            continue
        seg = slice(first, last)
        dens = pred_p[seg] * stats.norm.pdf((r_pct[seg, None] - m[seg]) / sd[seg]) / sd[seg]
        filt[seg] = dens[np.arange(last - first), high[seg]] / dens.sum(axis=1)
    label = (filt > 0.5).astype(float)
    label[~np.isfinite(filt)] = np.nan
    return Pred(llf + LOG100, var / 1e4, q01 / 100, q05 / 100, label=label, p_turb=filt)


def candidate_pred(s: Series, r: np.ndarray, params: dict[str, float]) -> Pred:
    out = fm.run_vlr(s.ts, s.price, **params)[1:]
    pred = _t_pred(out[:, fm.O_LOGPDF], out[:, fm.O_MEAN], out[:, fm.O_SD], out[:, fm.O_NU])
    pred.label = out[:, fm.O_LABEL]
    pred.p_turb = out[:, fm.O_PTURB]
    pred.extra = {"drift": out[:, fm.O_DRIFT], "z": out[:, fm.O_Z], "gap": out[:, fm.O_GAP]}
    return pred


def _t_mixture_quantile(w, m, sd, nu, p):
    k = np.sqrt((nu - 2.0) / nu)[:, None]
    lo = np.min(m[:, None] - 30 * sd, axis=1)
    hi = np.max(m[:, None] + 30 * sd, axis=1)
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        u = (mid[:, None] - m[:, None]) / (sd * k)
        cdf = np.sum(w * stats.t.cdf(u, nu[:, None]), axis=1)
        below = cdf < p
        lo = np.where(below, mid, lo)
        hi = np.where(below, hi, mid)
    return 0.5 * (lo + hi)


def ms_pred(s: Series, r: np.ndarray, params: dict[str, float]) -> Pred:
    out = fm.run_ms(s.ts, s.price, **params)[1:]
    w = out[:, 1:3]
    sd = out[:, 3:5]
    nu = out[:, 5]
    mean = out[:, 6]
    var = np.sum(w * sd**2, axis=1)
    ok = np.isfinite(var)
    q01 = np.full(r.size, np.nan)
    q05 = np.full(r.size, np.nan)
    if ok.any():
        q01[ok] = _t_mixture_quantile(w[ok], mean[ok], sd[ok], nu[ok], 0.01)
        q05[ok] = _t_mixture_quantile(w[ok], mean[ok], sd[ok], nu[ok], 0.05)
    p = out[:, 7]
    return Pred(out[:, 0], var, q01, q05, label=(p > 0.5).astype(float), p_turb=p)


def pool_pred(s: Series, r: np.ndarray, params: dict[str, float]) -> Pred:
    out = fm.run_pool(s.ts, s.price, **params)[1:]
    wa = out[:, fm.Q_WA]
    w = np.column_stack([wa, 1.0 - wa])
    mean = out[:, fm.Q_MEAN_A]
    sd = out[:, [fm.Q_SD_A, fm.Q_SD_B]]
    nu2 = out[:, [fm.Q_NU_A, fm.Q_NU_B]]
    var = np.sum(w * sd**2, axis=1)
    ok = np.isfinite(var)
    q = {}
    for level in (0.01, 0.05, 0.95, 0.99):
        q[level] = np.full(r.size, np.nan)
        if ok.any():
            q[level][ok] = _t_mixture_quantile2(w[ok], mean[ok], sd[ok], nu2[ok], level)
    pred = Pred(out[:, fm.Q_LOGPDF], var, q[0.01], q[0.05])
    pred.label = out[:, fm.Q_LABEL]
    pred.p_turb = out[:, fm.Q_PTURB]
    pred.extra = {"drift": out[:, fm.Q_DRIFT], "z": out[:, fm.Q_Z], "wa": wa}
    return pred


def pool3_pred(s: Series, r: np.ndarray, params: dict[str, float]) -> Pred:
    """The pool with a third, constant-variance member (``forecast_pool3``); quantiles of the
    three-component t mixture with per-component means."""
    import forecast_pool3 as fp3

    params = dict(params)
    prior_c = params.pop("prior_c", 1.0 / 3.0)
    const = {k[2:]: params.pop(k) for k in list(params) if k.startswith("c_")}
    out = fp3.run_pool3(s.ts, s.price, prior_c=prior_c, const=const, **params)[1:]
    wa, wb = out[:, fm.Q_WA], out[:, fp3.Q3_WB]
    w = np.column_stack([wa, wb, np.clip(1.0 - wa - wb, 0.0, 1.0)])
    mean = out[:, [fm.Q_MEAN_A, fm.Q_MEAN_B, fp3.Q3_MEAN_C]]
    sd = out[:, [fm.Q_SD_A, fm.Q_SD_B, fp3.Q3_SD_C]]
    nu3 = out[:, [fm.Q_NU_A, fm.Q_NU_B, fp3.Q3_NU_C]]
    var = np.sum(w * sd**2, axis=1)
    ok = np.isfinite(var)
    q = {}
    for level in (0.01, 0.05):
        q[level] = np.full(r.size, np.nan)
        if ok.any():
            q[level][ok] = _t_mixture_quantile_means(w[ok], mean[ok], sd[ok], nu3[ok], level)
    pred = Pred(out[:, fm.Q_LOGPDF], var, q[0.01], q[0.05])
    pred.label = out[:, fm.Q_LABEL]
    pred.p_turb = out[:, fm.Q_PTURB]
    pred.extra = {"drift": out[:, fm.Q_DRIFT], "z": out[:, fm.Q_Z], "wa": wa, "wc": w[:, 2]}
    return pred


def _t_mixture_quantile2(w, m, sd, nu, p):
    """Quantile of a mixture of unit-variance Student-t's with per-component dof."""
    k = np.sqrt((nu - 2.0) / nu)
    lo = np.min(m[:, None] - 30 * sd, axis=1)
    hi = np.max(m[:, None] + 30 * sd, axis=1)
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        cdf = np.sum(w * stats.t.cdf((mid[:, None] - m[:, None]) / (sd * k), nu), axis=1)
        below = cdf < p
        lo = np.where(below, mid, lo)
        hi = np.where(below, hi, mid)
    return 0.5 * (lo + hi)


def package_rows(ts: np.ndarray, price: np.ndarray) -> np.ndarray:
    """The package's ``RegimeDetector()`` over a series: its compiled step's rows, with the
    predictive each tick was scored under (the ``X_*`` columns after the public ones)."""
    from streamgmm.regime import RegimeDetector
    from streamgmm.regime import layout as L

    det = RegimeDetector()
    data = np.column_stack([np.asarray(ts, float), np.asarray(price, float)])
    rows = np.empty((data.shape[0], L.market_row_width(extra=True)))
    det._step(det._buf, data, rows)
    return rows


def package_pred(s: Series, r: np.ndarray) -> Pred:
    """The candidate: the package's RegimeDetector (its log_likelihood, its drift flag, its
    label and P(turbulent)); the scored predictive's variance and exact t-mixture quantiles
    from the components it reports."""
    from streamgmm.regime import layout as L

    rows = package_rows(s.ts, s.price)[1:]
    e = L.R_PROBS + 4
    scored = np.isfinite(rows[:, L.R_LL])
    wa = np.where(scored, rows[:, e + L.X_W], np.nan)
    w = np.column_stack([wa, 1.0 - wa])
    mean = rows[:, [e + L.X_MEAN_A, e + L.X_MEAN_B]]
    sd = rows[:, [e + L.X_SD_A, e + L.X_SD_B]]
    nu2 = rows[:, [e + L.X_NU_A, e + L.X_NU_B]]
    var = np.sum(w * sd**2, axis=1)
    ok = np.isfinite(var)
    q = {}
    for level in (0.01, 0.05, 0.95, 0.99):
        q[level] = np.full(r.size, np.nan)
        if ok.any():
            q[level][ok] = _t_mixture_quantile_means(w[ok], mean[ok], sd[ok], nu2[ok], level)
    warm = rows[:, L.R_WARM] == 1.0
    pred = Pred(rows[:, L.R_LL], var, q[0.01], q[0.05])
    pred.label = np.where(warm, rows[:, L.R_REGIME], np.nan)
    pred.p_turb = np.where(warm, rows[:, L.R_PROBS + 1], np.nan)
    pred.extra = {
        "drift": np.where(scored, rows[:, L.R_DRIFT], np.nan),
        "wa": wa,
        "q95": q[0.95],
        "q99": q[0.99],
    }
    return pred


def _t_mixture_quantile_means(w, m, sd, nu, p):
    """Quantile of a mixture of unit-variance Student-t's with per-component means and dof."""
    k = np.sqrt((nu - 2.0) / nu)
    lo = np.min(m - 30 * sd, axis=1)
    hi = np.max(m + 30 * sd, axis=1)
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        cdf = np.sum(w * stats.t.cdf((mid[:, None] - m) / (sd * k), nu), axis=1)
        below = cdf < p
        lo = np.where(below, mid, lo)
        hi = np.where(below, hi, mid)
    return 0.5 * (lo + hi)


# ---------------------------------------------------------------------------------------------
# Scores
# ---------------------------------------------------------------------------------------------


def dm_test(a: np.ndarray, b: np.ndarray) -> tuple[float, float, int]:
    """(mean difference, Diebold-Mariano t with Newey-West variance, n) over finite pairs."""
    d = a - b
    d = d[np.isfinite(d)]
    n = d.size
    if n < 10:
        return math.nan, math.nan, n
    mean = float(d.mean())
    x = d - mean
    lag = int(4 * (n / 100.0) ** (2.0 / 9.0))
    var = float(x @ x) / n
    for k in range(1, lag + 1):
        var += 2.0 * (1.0 - k / (lag + 1.0)) * float(x[k:] @ x[:-k]) / n
    return mean, mean / math.sqrt(var / n) if var > 0 else math.nan, n


def kupiec(viol: np.ndarray, p: float) -> float:
    n, x = viol.size, int(viol.sum())
    if n == 0:
        return math.nan
    phat = x / n
    ll0 = (n - x) * math.log(1 - p) + x * math.log(p)
    ll1 = (n - x) * math.log(1 - phat) if phat < 1 else 0.0
    ll1 += x * math.log(phat) if x > 0 else 0.0
    return float(stats.chi2.sf(max(-2 * (ll0 - ll1), 0.0), 1))


def christoffersen(viol: np.ndarray) -> float:
    """p-value of Christoffersen's (1998) independence test (first-order Markov)."""
    v = viol.astype(int)
    a, b = v[:-1], v[1:]
    n00 = int(np.sum((a == 0) & (b == 0)))
    n01 = int(np.sum((a == 0) & (b == 1)))
    n10 = int(np.sum((a == 1) & (b == 0)))
    n11 = int(np.sum((a == 1) & (b == 1)))

    def ll(k0: int, k1: int, p: float) -> float:
        out = 0.0
        if k0:
            out += k0 * math.log(1 - p) if p < 1 else -math.inf
        if k1:
            out += k1 * math.log(p) if p > 0 else -math.inf
        return out

    pi01 = n01 / (n00 + n01) if n00 + n01 else 0.0
    pi11 = n11 / (n10 + n11) if n10 + n11 else 0.0
    pi = (n01 + n11) / max(n00 + n01 + n10 + n11, 1)
    lr = -2 * (ll(n00 + n10, n01 + n11, pi) - ll(n00, n01, pi01) - ll(n10, n11, pi11))
    return float(stats.chi2.sf(max(lr, 0.0), 1))


def calibration(pred: Pred, r: np.ndarray, mask: np.ndarray) -> dict[str, float]:
    ok = mask & np.isfinite(pred.q01) & np.isfinite(pred.var)
    out: dict[str, float] = {}
    for p, q in ((0.01, pred.q01), (0.05, pred.q05)):
        viol = r[ok] < q[ok]
        tag = f"{int(p * 100)}"
        out[f"kupiec{tag}"] = kupiec(viol, p)
        out[f"chr{tag}"] = christoffersen(viol)
        out[f"cc{tag}"] = float(
            stats.chi2.sf(
                stats.chi2.isf(out[f"kupiec{tag}"], 1) + stats.chi2.isf(out[f"chr{tag}"], 1), 2
            )
        )
        out[f"rate{tag}"] = float(viol.mean()) if viol.size else math.nan
    out["ratio"] = float(np.mean(r[ok] ** 2 / pred.var[ok])) if ok.any() else math.nan
    # Which tail fails, and whether violations follow violations (the tail diagnosis): the
    # upper 5 % and 1 % rates where the predictive's upper quantiles are known, and the rate of
    # 5 % violations on the tick after one (5 % if independent).
    for tag, key in (("5", "q95"), ("1", "q99")):
        upper = pred.extra.get(key)
        if upper is not None:
            out[f"upper{tag}"] = float(np.mean(r[ok] > upper[ok])) if ok.any() else math.nan
    viol = r[ok] < pred.q05[ok]
    after = viol[1:][viol[:-1]]
    out["after5"] = float(after.mean()) if after.size else math.nan
    return out


def switches_per_year(label: np.ndarray, mask: np.ndarray, ts: np.ndarray) -> float:
    lab = label[mask]
    ok = np.isfinite(lab)
    lab = lab[ok]
    t = ts[1:][mask][ok]
    if lab.size < 2:
        return math.nan
    years = (t[-1] - t[0]) / (365.25 * 86400.0)
    return float(np.sum(lab[1:] != lab[:-1]) / max(years, 1e-9))


def calm_first(label: np.ndarray, r: np.ndarray, mask: np.ndarray) -> bool | None:
    lab = label[mask]
    x = r[mask] ** 2
    if not ((lab == 0).any() and (lab == 1).any()):
        return None
    return bool(x[lab == 0].mean() < x[lab == 1].mean())


# ---------------------------------------------------------------------------------------------
# One series
# ---------------------------------------------------------------------------------------------

_PARAMS: dict[str, float] = {}
_MODEL = "det"


def evaluate(s: Series) -> dict[str, Any]:
    r = np.diff(np.log(s.price))
    points = refit_points(s)
    mask = np.zeros(r.size, dtype=bool)
    if points.size:
        mask[points[0] :] = True
    if _MODEL == "det":
        cand = package_pred(s, r)
    elif _MODEL == "pool":
        cand = pool_pred(s, r, _PARAMS)
    elif _MODEL == "pool3":
        cand = pool3_pred(s, r, _PARAMS)
    elif _MODEL == "ms":
        cand = ms_pred(s, r, _PARAMS)
        cand.extra = {"drift": np.zeros(r.size)}
    else:
        cand = candidate_pred(s, r, _PARAMS)
    preds = {
        "cand": cand,
        "ewma": ewma_pred(r),
        "garch": garch_pred(s, r),
        "ham": hamilton_pred(s, r),
        # the package's detector; with --model det it is the candidate itself
        "det": cand if _MODEL == "det" else package_pred(s, r),
    }
    res: dict[str, Any] = {"name": s.name, "split": s.split, "kind": s.kind, "n": int(mask.sum())}
    cand = preds["cand"]
    for key, pred in preds.items():
        lp = np.where(mask, pred.logpdf, np.nan)
        res[f"lpd_{key}"] = float(np.nanmean(lp))
        if key != "cand":
            both = mask & np.isfinite(pred.logpdf) & np.isfinite(cand.logpdf)
            diff, t, n = dm_test(cand.logpdf[both], pred.logpdf[both])
            res[f"d_{key}"], res[f"t_{key}"], res[f"n_{key}"] = diff, t, n
        if key != "det":
            res[f"cal_{key}"] = calibration(pred, r, mask)
    det = preds["det"].logpdf
    for key in ("ewma", "garch"):
        both = mask & np.isfinite(det) & np.isfinite(preds[key].logpdf)
        res[f"det_{key}"] = dm_test(det[both], preds[key].logpdf[both])[:2]
        later = both & (s.dates[1:] >= pd.Timestamp("2001-01-01"))
        res[f"det_{key}_2001"] = dm_test(det[later], preds[key].logpdf[later])[:2]
    res["sw_cand"] = switches_per_year(cand.label, mask, s.ts)
    res["sw_ham"] = switches_per_year(preds["ham"].label, mask, s.ts)
    res["sw_det"] = switches_per_year(preds["det"].label, mask, s.ts)
    res["calm_cand"] = calm_first(cand.label, r, mask)
    res["turb_share"] = float(np.nanmean(cand.label[mask])) if mask.any() else math.nan
    if "regime" in s.extra:
        truth = s.extra["regime"][1:]
        res["true_sw"] = switches_per_year(truth.astype(float), mask, s.ts)
        res["acc_cand"] = float(np.mean(cand.label[mask] == truth[mask]))
    if s.kind == "intraday":
        hours = ((s.ts[1:] % 86400.0) // 3600.0).astype(int)
        shares = [np.mean(cand.label[mask & (hours == h)]) for h in np.unique(hours[mask])]
        res["hour_share_ratio"] = float(max(shares) / max(min(shares), 1e-9))
        res["hour_shares"] = [float(x) for x in shares]
    if s.name == "sp500_1999":
        dates = s.dates[1:]
        i = int(np.flatnonzero(dates == pd.Timestamp("2001-09-17"))[0])
        res["sep17"] = {
            "before": float(cand.p_turb[i - 1]),
            "after": float(cand.p_turb[i]),
            "ham_before": float(preds["ham"].p_turb[i - 1]),
            "ham_after": float(preds["ham"].p_turb[i]),
        }
        drift = cand.extra["drift"]
        alarms = dates[(drift == 1) & np.isfinite(drift)]
        res["sp500_alarms"] = [d.strftime("%Y-%m-%d") for d in alarms]
    return res


def _init(params: dict[str, float], model: str = "det") -> None:
    global _PARAMS, _MODEL
    _PARAMS = params
    _MODEL = model


# ---------------------------------------------------------------------------------------------
# Reporting
# ---------------------------------------------------------------------------------------------


def _f(x: Any, d: int = 3) -> str:
    if x is None:
        return "-"
    if isinstance(x, bool):
        return "yes" if x else "NO"
    if isinstance(x, float) and not math.isfinite(x):
        return "nan"
    return f"{x:.{d}f}" if isinstance(x, float) else str(x)


def _dt(res: dict[str, Any], key: str) -> str:
    d, t = res.get(f"d_{key}"), res.get(f"t_{key}")
    if d is None or not math.isfinite(d):
        return "-"
    return f"{d:+.4f} ({t:+.1f})"


def _table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    lines = [
        "  ".join(
            h.ljust(w) if i == 0 else h.rjust(w)
            for i, (h, w) in enumerate(zip(header, widths, strict=True))
        )
    ]
    for r in rows:
        lines.append(
            "  ".join(
                c.ljust(w) if i == 0 else c.rjust(w)
                for i, (c, w) in enumerate(zip(r, widths, strict=True))
            )
        )
    return "\n".join(lines)


def report(split: str, results: list[dict[str, Any]]) -> dict[str, Any]:
    print(f"\n{'=' * 40} {split} {'=' * 40}")
    print(
        "Next-tick log predictive density (natural log-return units); "
        "candidate minus baseline (DM t)"
    )
    rows = []
    for r in results:
        rows.append(
            [
                r["name"],
                str(r["n"]),
                _f(r["lpd_cand"]),
                _dt(r, "ewma"),
                _dt(r, "garch"),
                _dt(r, "ham"),
                *([] if _MODEL == "det" else [_dt(r, "det")]),
            ]
        )
    print(
        _table(
            ["series", "n", "lpd cand", "- ewma", "- garch-t", "- hamilton"]
            + ([] if _MODEL == "det" else ["- detector"]),
            rows,
        )
    )
    print(
        "\nCalibration: Kupiec 1%/5%, Christoffersen independence 1%/5% (p-values), "
        "realised/predicted variance"
    )
    rows = []
    for r in results:
        row = [r["name"]]
        for key in ("cand", "garch", "ewma", "ham"):
            c = r[f"cal_{key}"]
            row.append(
                f"{c['kupiec1']:.2f} {c['kupiec5']:.2f} {c['chr1']:.2f} {c['chr5']:.2f} "
                f"| {c['ratio']:.2f}"
            )
        rows.append(row)
    print(_table(["series", "cand K1 K5 C1 C5 | ratio", "garch-t", "ewma", "hamilton"], rows))
    print(
        "\nTails (% of scored ticks): below the 1 % and 5 % quantiles, above the 95 % and 99 % "
        "quantiles; P(below 5 % | below 5 % the tick before)"
    )
    rows = []
    for r in results:
        row = [r["name"]]
        for key in ("cand", "garch"):
            c = r[f"cal_{key}"]
            cells = [100 * c.get(k, math.nan) for k in ("rate1", "rate5", "upper5", "upper1")]
            row.append(" ".join(f"{x:.2f}" for x in cells) + f" | {100 * c['after5']:.1f}")
        rows.append(row)
    print(_table(["series", "cand L1 L5 U5 U1 | after", "garch-t"], rows))
    print(
        "\nLabels: switches per year (candidate, refitted Hamilton argmax, detector), "
        "regime 0 calmest, turbulent share"
    )
    rows = []
    for r in results:
        extra = ""
        if "true_sw" in r:
            extra = f"true {r['true_sw']:.1f}/yr acc {r['acc_cand']:.3f}"
        if "hour_share_ratio" in r:
            extra += f" hour-share max/min {r['hour_share_ratio']:.2f}"
        rows.append(
            [
                r["name"],
                _f(r["sw_cand"], 1),
                _f(r["sw_ham"], 1),
                _f(r["sw_det"], 1),
                _f(r["calm_cand"]),
                _f(r["turb_share"], 2),
                extra,
            ]
        )
    print(_table(["series", "cand", "hamilton", "detector", "calm 0", "turb", "synthetic"], rows))
    report_detector(results)
    return goals(split, results)


def report_detector(results: list[dict[str, Any]]) -> None:
    """The package's detector against the baselines, also from 2001 on (after GARCH-t's short
    first fits)."""
    print("\nRegimeDetector: detector minus baseline (DM t), all scored ticks / from 2001")
    rows = []
    for r in results:
        cells = [r["name"]]
        for key in ("det_ewma", "det_garch", "det_ewma_2001", "det_garch_2001"):
            d, t = r[key]
            cells.append("-" if not math.isfinite(d) else f"{d:+.4f} ({t:+.1f})")
        rows.append(cells)
    print(_table(["series", "det - ewma", "det - garch-t", "from 2001: - ewma", "- garch-t"], rows))


def goals(split: str, results: list[dict[str, Any]]) -> dict[str, Any]:
    n = len(results)
    above_ewma = sum(r["d_ewma"] > 0 for r in results)
    t2_ewma = sum(r["t_ewma"] >= 2 for r in results)
    below_garch = [r["name"] for r in results if r["t_garch"] < -1]
    t2_garch = sum(r["t_garch"] >= 2 for r in results)
    out: dict[str, Any] = {}
    print(f"\nGoals ({split}, {n} series)")
    print(f"  above EWMA: {above_ewma}/{n}; t >= 2: {t2_ewma}/{n} (goal: all above, most t >= 2)")
    print(
        f"  GARCH-t: below with t < -1 on {len(below_garch)} {below_garch}; above with t >= 2 on "
        f"{t2_garch}/{n} (goal: none below, >= 1/3 above)"
    )
    for key in ("cand", "garch", "ewma", "ham"):
        counts = {
            test: sum(r[f"cal_{key}"][test] >= 0.05 for r in results)
            for test in ("kupiec1", "kupiec5", "chr1", "chr5")
        }
        ratios = np.array([r[f"cal_{key}"]["ratio"] for r in results])
        inside = int(np.sum((ratios >= 0.9) & (ratios <= 1.1)))
        print(
            f"  {key:5s} calibration p >= 0.05: K1 {counts['kupiec1']}/{n} "
            f"K5 {counts['kupiec5']}/{n} "
            f"C1 {counts['chr1']}/{n} C5 {counts['chr5']}/{n}; variance ratio in [0.9, 1.1] "
            f"{inside}/{n}, median {np.median(ratios):.3f} (goal: >= 90 %, median in [0.95, 1.05])"
        )
        out[key] = {
            "counts": counts,
            "ratio_inside": inside,
            "ratio_median": float(np.median(ratios)),
        }
    daily = [r for r in results if r["kind"] == "daily" and not r["name"].startswith("syn_")]
    if daily:
        le = [r["name"] for r in daily if not r["sw_cand"] <= r["sw_ham"]]
        print(
            f"  label switches <= refitted Hamilton argmax: {len(daily) - len(le)}/{len(daily)} "
            f"real daily series (more: {le})"
        )
        stocks = [r["sw_cand"] for r in daily if r["name"].startswith("stock_")]
        sp = [r["sw_cand"] for r in daily if r["name"] == "sp500_1999"]
        if stocks:
            print(
                f"  switches/year: median stock {np.median(stocks):.1f}"
                + (f", S&P 500 {sp[0]:.1f}" if sp else "")
                + " (goal <= 15)"
            )
    calm = [r["name"] for r in results if r["calm_cand"] is False]
    print(f"  regime 0 calmest: {sum(r['calm_cand'] is True for r in results)}/{n} (not: {calm})")
    intraday = [r for r in results if "hour_share_ratio" in r]
    if intraday:
        for r in intraday:
            truth = (
                f"vs true {r['true_sw']:.1f} (ratio {r['sw_cand'] / r['true_sw']:.2f}, goal <= 1.5)"
                if "true_sw" in r
                else f"({r['sw_cand'] / 365.25:.2f} a day)"
            )
            print(
                f"  intraday {r['name']}: turbulent share per hour max/min "
                f"{r['hour_share_ratio']:.2f} (goal <= 1.5); switches {r['sw_cand']:.1f}/yr {truth}"
            )
    for r in results:
        if "sep17" in r:
            d = r["sep17"]
            print(
                f"  S&P 500 2001-09-17: P(turbulent) {d['before']:.2f} -> {d['after']:.2f} "
                f"(+{d['after'] - d['before']:.2f}, goal >= +0.2); Hamilton refit "
                f"{d['ham_before']:.2f} -> {d['ham_after']:.2f}"
            )
            print(
                f"  S&P 500 drift alarms ({len(r['sp500_alarms'])}): {', '.join(r['sp500_alarms'])}"
            )
    return out


# ---------------------------------------------------------------------------------------------
# Drift and speed (the prototype only)
# ---------------------------------------------------------------------------------------------

DRIFT_N = 20_000
JUMP_DEADLINE = 100


def _drift_flags(ts: np.ndarray, price: np.ndarray, params: dict[str, float]) -> np.ndarray:
    """Per tick 1.0 on a drift alarm, 0.0 otherwise, NaN where nothing was scored."""
    if _MODEL == "det":
        from streamgmm.regime import layout as L

        rows = package_rows(ts, price)
        return np.where(np.isfinite(rows[:, L.R_LL]), rows[:, L.R_DRIFT], np.nan)
    return fm.run_pool(ts, price, **params)[:, fm.Q_DRIFT]


def _drift_stationary(job: tuple[int, str, dict[str, float]]) -> tuple[str, int, int]:
    seed, kind, params = job
    s = syn.heavy_tailed_stream(seed, DRIFT_N, kind, t0=SYN_T0)
    d = _drift_flags(s.ts, s.price, params)
    warm = np.isfinite(d)
    return kind, int(np.nansum(d[warm])), int(warm.sum())


def _drift_jump(job: tuple[int, str, dict[str, float]]) -> tuple[str, int | None, int]:
    seed, kind, params = job
    if kind == "beyond-turbulent":
        ts, price, at = rs.beyond_turbulent_jump(seed)
    else:
        s = syn.variance_jump(syn.heavy_tailed_stream(seed, 3000, kind, t0=SYN_T0), 1500, 3.0)
        ts, price, at = s.ts, s.price, 1500
    d = np.nan_to_num(_drift_flags(ts, price, params))
    alarms = np.flatnonzero(d == 1.0)
    after = alarms[alarms >= at]
    before = int(np.sum(alarms < at))
    return kind, (int(after[0] - at) if after.size else None), before


def drift_section(split: str, params: dict[str, float], processes: int) -> dict[str, Any]:
    seeds = tuple(range(100, 105)) if split == "TUNING" else tuple(range(5))
    stationary = [(seed, kind, params) for seed in seeds for kind in ("t4", "garch", "normal")]
    jumps = [
        (seed, kind, params)
        for seed in seeds
        for kind in ("normal", "t4", "garch", "beyond-turbulent")
    ]
    with ProcessPoolExecutor(processes) as pool:
        st = list(pool.map(_drift_stationary, stationary))
        jp = list(pool.map(_drift_jump, jumps))
    print(
        f"\nDrift ({split}; seeds {seeds[0]}-{seeds[-1]}): false alarms per tick on "
        "stationary streams (goal <= 1e-4)"
    )
    out: dict[str, Any] = {"stationary": {}, "jumps": {}}
    for kind in ("t4", "garch", "normal"):
        alarms = sum(a for k, a, _ in st if k == kind)
        ticks = sum(n for k, _, n in st if k == kind)
        print(f"  {kind:7s} {alarms} alarms / {ticks} ticks = {alarms / ticks:.1e}")
        out["stationary"][kind] = alarms / ticks
    print(f"x3 variance jump: delay to the first alarm (goal <= {JUMP_DEADLINE} ticks)")
    for kind in ("normal", "t4", "garch", "beyond-turbulent"):
        delays = [d for k, d, _ in jp if k == kind]
        before = sum(b for k, _, b in jp if k == kind)
        hit = sum(d is not None and d <= JUMP_DEADLINE for d in delays)
        shown = " ".join("miss" if d is None else str(d) for d in delays)
        print(
            f"  {kind:16s} within {JUMP_DEADLINE}: {hit}/{len(delays)}  delays {shown}  "
            f"alarms before the jump {before}"
        )
        out["jumps"][kind] = delays
    return out


def speed_section(params: dict[str, float], repeats: int = 7) -> dict[str, float]:
    """Per-tick time of each compiled step over the same ticks (the S&P 500 five times over),
    medians of alternating repeats: the pool (both volatility models, the pooled PIT, drift
    and the regime filter), the GJR model alone, and the MS-GARCH alternative."""
    s = rs.real_series()["sp500_1999"]
    ts, price = rs.posix_seconds(s.index), s.to_numpy(float)
    ts = np.tile(ts, 5) + np.repeat(np.arange(5), ts.size) * (ts[-1] - ts[0] + 86400.0)
    price = np.tile(price, 5)
    n = ts.size
    cfg_a = fm.settings(**{**params, "vol": 0.0, "labels": 0.0})
    cfg_b = fm.settings(**{**params, "vol": 1.0, "labels": 0.0})
    offs = fm.ms_offsets(cfg_a)
    ra, rb = np.empty((n, fm.O_SIZE)), np.empty((n, fm.O_SIZE))
    out, ms_out = np.empty((n, fm.Q_SIZE)), np.empty((n, 8))

    def pool() -> None:
        sp = np.zeros(fm.P_HMM + fm.state_size(cfg_a))
        sa, sb = fm.new_state(cfg_a), fm.new_state(cfg_b)
        fm.pool_run(sa, sb, sp, cfg_a, cfg_b, ts, price, ra, rb, out)

    cfg_g = fm.settings(**{**params, "vol": 0.0})

    def gjr() -> None:
        fm.vlr_run(fm.new_state(cfg_g), cfg_g, ts, price, ra)

    def ms() -> None:
        fm.ms_run(np.zeros(offs["end"]), cfg_a, ts, price, ms_out, offs["theta"])

    runs = {"pool": pool, "gjr": gjr, "ms": ms}
    from streamgmm.regime import RegimeDetector
    from streamgmm.regime import layout as L

    data = np.column_stack([ts, price])
    rows = np.empty((n, L.market_row_width()))

    def current() -> None:
        det = RegimeDetector()
        det._step(det._buf, data, rows)

    runs["current"] = current
    times: dict[str, list[float]] = {k: [] for k in runs}
    for fn in runs.values():
        fn()  # compile
    for _ in range(repeats):
        for key, fn in runs.items():
            t = time.perf_counter()
            fn()
            times[key].append((time.perf_counter() - t) / n * 1e6)
    result = {f"{k}_us": float(np.median(v)) for k, v in times.items()}
    shown = ", ".join(f"{k} {v:.3f}" for k, v in result.items())
    print(
        f"\nSpeed of the compiled steps ({n} daily ticks, median of {repeats} alternating "
        f"repeats, us/tick): {shown}"
    )
    if "current_us" in result:
        ratios = {k: np.median(np.array(v) / np.array(times["current"])) for k, v in times.items()}
        print(
            "  per-repeat ratio to the package detector's step (median): "
            + ", ".join(f"{k} {v:.2f}" for k, v in ratios.items() if k != "current")
        )
    return result


def main() -> None:
    started = time.perf_counter()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=("tuning", "held-out", "fresh"), action="append")
    parser.add_argument("--params", default="{}")
    parser.add_argument("--model", choices=("det", "pool", "pool3", "vlr", "ms"), default="det")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--series", default=None, help="comma-separated names to keep")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument(
        "--sections", default="table,drift,speed", help="comma-separated: table, drift, speed"
    )
    args = parser.parse_args()
    params = json.loads(args.params)
    _init(params, args.model)  # the drift section's workers inherit it
    splits = [s.upper() for s in (args.only or ["tuning", "held-out"])]
    print(f"candidate {args.model}, settings: {json.dumps({**fm.DEFAULTS, **params})}")
    everything: dict[str, Any] = {"params": params, "splits": {}}
    sections = set(args.sections.split(","))
    for split in splits:
        if "drift" in sections and split != "FRESH":
            everything.setdefault("drift", {})[split] = drift_section(split, params, args.processes)
        if "table" not in sections:
            continue
        series = load_split(split)
        if args.series:
            keep = set(args.series.split(","))
            series = [s for s in series if s.name in keep]
        if not series:
            continue
        if args.processes > 1:
            with ProcessPoolExecutor(
                args.processes, initializer=_init, initargs=(params, args.model)
            ) as pool:
                results = list(pool.map(evaluate, series, chunksize=1))
        else:
            _init(params, args.model)
            results = [evaluate(s) for s in series]
        summary = report(split, results)
        everything["splits"][split] = {"results": results, "goals": summary}
    if "speed" in sections:
        everything["speed"] = speed_section(params)
    print(f"\nruntime {time.perf_counter() - started:.0f} s")
    if args.json:
        args.json.write_text(json.dumps(everything, indent=1, default=_jsonable))


def _jsonable(x: Any) -> Any:
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, np.generic):
        return x.item()
    raise TypeError(type(x).__name__)


if __name__ == "__main__":
    main()
