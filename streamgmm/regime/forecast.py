"""The compiled per-tick step of the market detector: forecast, score, learn, filter.

:func:`market_run` is the one entry into :class:`~streamgmm.regime.RegimeDetector`'s step (the
detector calls it for one tick or many, :mod:`streamgmm.regime.base`); each tick goes through
:func:`_apply`:

1. **checks and time rules** (:mod:`~streamgmm.regime.clock`): a bad tick is refused and
   changes nothing; duplicates and out-of-order ticks are skipped; the spacing gives the
   return's variance multiplier (a closure's learnt gap multiplier, the intraday profile).
   During the warm-up the ticks are buffered; at its end (:func:`_start`) the time unit and
   the scale are fixed and the buffered returns are replayed through the models.
2. **score** (:mod:`~streamgmm.regime.volatility`): the tick's return under the pooled
   predictive made before it: its log density (the output's ``log_likelihood``) and its
   probability integral transform.
3. **drift** (:mod:`~streamgmm.regime.drift`): the CUSUM of the transform's normal score.
4. **learn**: the time rules' and the profile's sums, each model's variance recursion and
   parameters, the pool's weights.
5. **regime filter** (:mod:`~streamgmm.regime.level`) on the forecast's volatility level.
6. **forecast** of the next tick, one time unit ahead: ``volatility`` and ``value_at_risk``.

The output row has the layout's ``R_*`` slots (:mod:`~streamgmm.regime.layout`), then the
predictive the tick was scored under (``X_*``, for benchmarks). A refused tick leaves the
buffer untouched; every loop is bounded by the warm-up's length, the parameter count or the
number of ticks given.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from streamgmm import _validate as V
from streamgmm._numeric import MAX_ABS_VALUE, hot, jit
from streamgmm.regime import clock, drift, level, volatility
from streamgmm.regime.layout import (
    EGARCH,
    GJR,
    M_DT_UNIT,
    M_LAST_PRICE,
    M_LAST_TS,
    M_LOG_W_EG,
    M_LOG_W_GJR,
    M_MEAN_LL,
    M_MEAN_LL_W,
    M_MIN_DT,
    M_N_BUFFERED,
    M_N_DUPLICATES,
    M_N_GAPS,
    M_N_OUT_OF_ORDER,
    M_N_SEEN,
    M_NEXT_SD,
    M_NEXT_VAR,
    M_PHASE,
    M_SCALE,
    M_UNIT,
    M_VAR_Z,
    M_WARMUP,
    N_EXTRA,
    R_DRIFT,
    R_DRIFT_SCORE,
    R_FIELD,
    R_LL,
    R_PROBS,
    R_REGIME,
    R_SEEN,
    R_STATUS,
    R_VAR,
    R_VOLATILITY,
    R_WARM,
    RUNNING,
    S_BAD_PRICE,
    S_BAD_RETURN,
    S_BAD_TS,
    S_BAD_VALUE,
    S_COLD,
    S_DUPLICATE,
    S_FIRST,
    S_OUT_OF_ORDER,
    S_WARM,
    VH,
    VTHETA,
    VV,
    WARM_TICKS,
    X_MEAN_A,
    X_MEAN_B,
    X_NU_A,
    X_NU_B,
    X_PIT,
    X_SD_A,
    X_SD_B,
    X_W,
    read_market_layout,
)

__all__ = ["market_run", "next_from_state", "next_to_state"]

#: Returns in percent.
RETURN_SCALE = 100.0
#: A standardised return beyond this is refused (far beyond any market's scale).
MAX_STANDARDISED = 1e60
#: Decay per tick of ``mean_log_likelihood`` (half-life 20 ticks).
MEAN_LL_DECAY = 2.0 ** (-1.0 / 20.0)


@hot
def _write(buf, row, status, warm):
    """The output row from the filter's state and the stored next-tick forecast."""
    n = row.shape[0]
    for j in range(n):
        row[j] = np.nan
    row[R_STATUS] = status
    row[R_FIELD] = 0.0
    row[R_WARM] = warm
    row[R_SEEN] = buf[M_N_SEEN]
    row[R_DRIFT] = 0.0
    row[R_DRIFT_SCORE] = drift.pit_score(buf)
    row[R_VOLATILITY] = buf[M_NEXT_SD]
    row[R_VAR] = buf[M_NEXT_VAR]
    if buf[M_PHASE] == RUNNING:
        p = level.turbulent(buf)
        raw = level.turbulent_raw(buf)
    else:
        p = 0.5
        raw = 0.5
    row[R_PROBS] = 1.0 - p
    row[R_PROBS + 1] = p
    row[R_PROBS + 2] = 1.0 - raw
    row[R_PROBS + 3] = raw
    row[R_REGIME] = 1.0 if p > 0.5 else 0.0


@jit
def _learn_model(buf, m, ts, x, tau, pm, b, egarch):
    """The time rules' and the profile's sums, then the model's recursion and RML step.

    Compiled once and called, not inlined: inlined into its four call sites (two models, the
    warm-up's end and the step), it made the market step's cold compile 2.5 times longer for
    no measurable speed (as :func:`_forecast_next`)."""
    absz = min(abs(x - m[VTHETA + 4]) / math.sqrt(m[VH]), clock.MAX_ABS_Z)
    if b == 0:
        if clock.profile_on(buf):
            clock.profile_learn(buf, m, ts, absz / math.sqrt(tau))
        clock.gap_learn(m, 0, absz / math.sqrt(tau * pm))
    else:
        clock.gap_learn(m, b, absz)
    volatility.learn(m, x, tau * pm, egarch)


@hot
def _multipliers(buf, m, ts, dt):
    """(time multiplier, profile multiplier, gap bucket) of a tick for model block ``m``."""
    tau, b = clock.time_factor(buf, m, dt)
    pm = clock.profile_multiplier(buf, m, ts) if b == 0 else 1.0
    return tau, pm, b


@jit
def _forecast_next(buf, ma, mb, ts):
    """The next tick's volatility and value at risk, one time unit after ``ts``."""
    unit = buf[M_UNIT]
    k = buf[M_SCALE] / RETURN_SCALE
    wa, _ = volatility.pool_weight(buf[M_LOG_W_GJR], buf[M_LOG_W_EG])
    va = clock.profile_multiplier(buf, ma, ts + unit) * ma[VH]
    vb = clock.profile_multiplier(buf, mb, ts + unit) * mb[VH]
    buf[M_NEXT_SD] = math.sqrt(wa * va + (1.0 - wa) * vb) * k
    volatility.refresh_constants(ma)
    volatility.refresh_constants(mb)
    q = volatility.mixture_quantile(wa, ma, mb, math.sqrt(va), math.sqrt(vb), buf[M_VAR_Z])
    buf[M_NEXT_VAR] = q * k


@jit
def _start(buf, lay):
    """End of the warm-up: the time unit and the scale, the models started, the buffered
    returns replayed (learning only). False (the warm-up starts over) when the returns do not
    vary."""
    u = lay[M_WARMUP]
    w = lay[WARM_TICKS]
    dts = np.empty(u)
    for i in range(u):
        dts[i] = buf[w + 2 * i]
    unit = buf[M_DT_UNIT] if buf[M_DT_UNIT] > 0.0 else max(np.median(dts), 1e-9)
    buf[M_UNIT] = unit
    ss = 0.0
    n = 0
    for i in range(u):
        dtu = dts[i] / unit
        if clock.bucket(buf, dtu) == 0:
            r = buf[w + 2 * i + 1] / math.sqrt(max(min(dtu, 1.0), buf[M_MIN_DT]))
            ss += r * r
            n += 1
    scale = math.sqrt(ss / n) if n >= 2 else 0.0
    if not (scale > 0.0 and math.isfinite(scale)):
        buf[M_N_BUFFERED] = 0.0
        return False
    buf[M_SCALE] = scale
    ma = buf[lay[GJR] : lay[GJR + 1]]
    mb = buf[lay[EGARCH] : lay[EGARCH + 1]]
    volatility.start(ma, False)
    volatility.start(mb, True)
    level.start(buf)
    buf[M_LOG_W_GJR] = math.log(0.5)
    buf[M_LOG_W_EG] = math.log(0.5)
    buf[M_PHASE] = RUNNING
    # The buffered ticks' times, from the last one back.
    times = np.empty(u)
    t = buf[M_LAST_TS]
    for i in range(u - 1, -1, -1):
        times[i] = t
        t -= dts[i]
    for i in range(u):
        x = min(max(buf[w + 2 * i + 1] / scale, -MAX_STANDARDISED), MAX_STANDARDISED)
        tau, pm, b = _multipliers(buf, ma, times[i], dts[i])
        _learn_model(buf, ma, times[i], x, tau, pm, b, False)
        tau, pm, b = _multipliers(buf, mb, times[i], dts[i])
        _learn_model(buf, mb, times[i], x, tau, pm, b, True)
    buf[M_N_BUFFERED] = 0.0
    _forecast_next(buf, ma, mb, buf[M_LAST_TS])
    return True


@hot
def _apply(buf, lay, ts, price, row):
    """Score, then learn, one tick; writes its output row and returns its status."""
    if not math.isfinite(ts):
        _write(buf, row, S_BAD_TS, 0.0)
        return S_BAD_TS
    if not (math.isfinite(price) and abs(price) <= MAX_ABS_VALUE):
        _write(buf, row, S_BAD_VALUE, 0.0)
        return S_BAD_VALUE
    if not price > 0.0:
        _write(buf, row, S_BAD_PRICE, 0.0)
        return S_BAD_PRICE
    running = buf[M_PHASE] == RUNNING
    warm = 1.0 if running else 0.0
    if buf[M_N_SEEN] == 0.0:
        buf[M_N_SEEN] = 1.0
        buf[M_LAST_TS] = ts
        buf[M_LAST_PRICE] = price
        _write(buf, row, S_FIRST, warm)
        return S_FIRST
    if ts <= buf[M_LAST_TS]:
        status = S_DUPLICATE if ts == buf[M_LAST_TS] else S_OUT_OF_ORDER
        buf[M_N_DUPLICATES if status == S_DUPLICATE else M_N_OUT_OF_ORDER] += 1.0
        _write(buf, row, status, warm)
        return status
    r = RETURN_SCALE * math.log(price / buf[M_LAST_PRICE])
    if not (math.isfinite(r) and abs(r) <= MAX_ABS_VALUE):
        _write(buf, row, S_BAD_RETURN, 0.0)
        return S_BAD_RETURN
    dt = ts - buf[M_LAST_TS]
    if not running:
        x = 0.0
    else:
        x = r / buf[M_SCALE]
        if not (math.isfinite(x) and abs(x) <= MAX_STANDARDISED):
            _write(buf, row, S_BAD_RETURN, 0.0)
            return S_BAD_RETURN
    buf[M_N_SEEN] += 1.0
    buf[M_LAST_TS] = ts
    buf[M_LAST_PRICE] = price
    if not running:
        n = int(buf[M_N_BUFFERED])
        buf[lay[WARM_TICKS] + 2 * n] = dt
        buf[lay[WARM_TICKS] + 2 * n + 1] = r
        buf[M_N_BUFFERED] = n + 1
        if n + 1 < lay[M_WARMUP] or not _start(buf, lay):
            _write(buf, row, S_COLD, 0.0)
            return S_COLD
        _write(buf, row, S_WARM, 1.0)
        return S_WARM
    ma = buf[lay[GJR] : lay[GJR + 1]]
    mb = buf[lay[EGARCH] : lay[EGARCH + 1]]
    # -- score under the predictive made before the tick
    tau_a, pm_a, b = _multipliers(buf, ma, ts, dt)
    tau_b, pm_b, _ = _multipliers(buf, mb, ts, dt)
    la, ua, nu_a, sa = volatility.log_density(ma, x, tau_a * pm_a)
    lb, ub, nu_b, sb = volatility.log_density(mb, x, tau_b * pm_b)
    wa, norm = volatility.pool_weight(buf[M_LOG_W_GJR], buf[M_LOG_W_EG])
    top = max(la, lb)
    pooled = top + math.log(wa * math.exp(la - top) + (1.0 - wa) * math.exp(lb - top))
    log_unit = math.log(RETURN_SCALE / buf[M_SCALE])
    ll = pooled + log_unit
    pit = wa * volatility.norm_cdf(volatility.t_normal_score(ua, nu_a)) + (
        1.0 - wa
    ) * volatility.norm_cdf(volatility.t_normal_score(ub, nu_b))
    z = volatility.norm_ppf(pit)
    alarm = drift.pit_update(buf, z)
    # -- learn
    buf[M_LOG_W_GJR] = volatility.POOL_FORGET * (buf[M_LOG_W_GJR] - norm) + la
    buf[M_LOG_W_EG] = volatility.POOL_FORGET * (buf[M_LOG_W_EG] - norm) + lb
    _learn_model(buf, ma, ts, x, tau_a, pm_a, b, False)
    _learn_model(buf, mb, ts, x, tau_b, pm_b, b, True)
    if b > 0:
        buf[M_N_GAPS] += 1.0
    rel = wa * ma[VH] / ma[VV] + (1.0 - wa) * mb[VH] / mb[VV]
    y = level.smooth(buf, 0.5 * math.log(rel), dt)
    level.update(buf, y)
    _forecast_next(buf, ma, mb, ts)
    w = buf[M_MEAN_LL_W] * MEAN_LL_DECAY + 1.0
    buf[M_MEAN_LL_W] = w
    buf[M_MEAN_LL] += (ll - buf[M_MEAN_LL]) / w
    # -- output
    _write(buf, row, S_WARM, 1.0)
    row[R_LL] = ll
    row[R_DRIFT] = 1.0 if alarm else 0.0
    if row.shape[0] >= R_PROBS + 4 + N_EXTRA:
        k = buf[M_SCALE] / RETURN_SCALE
        e = R_PROBS + 4
        row[e + X_W] = wa
        row[e + X_MEAN_A] = _mean(ua, sa, x) * k
        row[e + X_SD_A] = sa * k
        row[e + X_NU_A] = nu_a
        row[e + X_MEAN_B] = _mean(ub, sb, x) * k
        row[e + X_SD_B] = sb * k
        row[e + X_NU_B] = nu_b
        row[e + X_PIT] = pit
    return S_WARM


@hot
def _mean(u, s, x):
    """The predictive mean a standardised value ``u = (x - mean) / s`` was made with."""
    return x - u * s


@jit
def market_run(buf, data, out):
    """Apply ticks ``0 .. len(data) - 1`` in order; ``out[i]`` is tick i's output row.

    ``data[i]`` is ``(ts, price)``. Refused ticks leave the buffer unchanged and carry their
    status; the run goes on with the next tick.
    """
    lay = read_market_layout(buf)
    for i in range(data.shape[0]):
        _apply(buf, lay, data[i, 0], data[i, 1], out[i])


# -- state (Python) -------------------------------------------------------------------------------


def next_to_state(buf: np.ndarray) -> dict[str, Any]:
    """The next tick's forecast (volatility, value at risk; null before the warm-up ends) and
    the dashboards' mean log-likelihood."""
    running = buf[M_PHASE] == RUNNING
    return {
        "volatility": float(buf[M_NEXT_SD]) if running else None,
        "value_at_risk": float(buf[M_NEXT_VAR]) if running else None,
        "mean_log_likelihood": [float(buf[M_MEAN_LL]), float(buf[M_MEAN_LL_W])],
    }


def next_from_state(path: str, state: Any, buf: np.ndarray) -> None:
    """Validate the forecast part and write it into ``buf``."""
    V.fields(path, state, ("volatility", "value_at_risk", "mean_log_likelihood"))
    running = buf[M_PHASE] == RUNNING
    sd = V.optional_number(f"{path}.volatility", state["volatility"], lo=0.0, hi=1e300)
    var = V.optional_number(f"{path}.value_at_risk", state["value_at_risk"], lo=-1e300, hi=1e300)
    if (sd is None or var is None) == running:
        raise ValueError(f"{path}: volatility and value_at_risk are set exactly once running")
    mean_ll = V.matrix(f"{path}.mean_log_likelihood", state["mean_log_likelihood"], (2,),
                       lo=-1e300, hi=1e300)  # fmt: skip
    if not 0.0 <= mean_ll[1] <= 1.0 / (1.0 - MEAN_LL_DECAY) + 1.0:
        raise ValueError(f"{path}.mean_log_likelihood weight is out of range")
    buf[M_NEXT_SD] = np.nan if sd is None else sd
    buf[M_NEXT_VAR] = np.nan if var is None else var
    buf[M_MEAN_LL], buf[M_MEAN_LL_W] = mean_ll
