"""Prototype forecasting models for the regime detector, as bounded numba kernels over flat state.

Each model is one compiled per-tick step over a flat float64 state vector and a settings vector,
written stage by stage so that it ports mechanically into the package's regime stages:

1. **Time rules** (:func:`_time_factor`): the tick's spacing in time units; a spacing of one
   unit is an ordinary step, a shorter one scales the variance by the time elapsed, and a
   longer one (a closure: weekend, holiday, night, halt) is a *gap* whose variance multiplier
   is learnt per log2-bucket of its length (robustly, from mean absolute standardised returns),
   with a prior from the nearest shorter bucket seen. Gap returns are evidence.
2. **Intraday profile** (:func:`_profile_multiplier`, :func:`_profile_learn`): per half-hour of
   the UTC day, the squared ratio of the bucket's mean absolute standardised return to the
   overall mean, shrunk towards 1 by pseudo-ticks, decayed by days. Mean absolute values have a
   finite variance under fat tails (Student-t(3)), unlike squared returns, so no gate is needed.
   Used when the time unit is below a quarter of a day.
3. **Volatility model** (:func:`_garch_predict`, :func:`_garch_learn`): GJR-GARCH(1,1) with
   Student-t innovations on the time-adjusted return, variance-targeted on a slow EWMA of the
   squared adjusted returns, its parameters (alpha, gamma, beta, log(nu - 2), mean) estimated
   online by recursive maximum likelihood: a Gauss-Newton step on the one-step log predictive
   density with the step ``max(1 / (t + n0), floor)``, the outer product of scores as the
   curvature (with ``n0`` pseudo-ticks of a prior at the defaults), and projection onto the
   stationary region.
4. **Regime filter** (:func:`_level_hmm`): a two-state hidden Markov model on the log volatility
   level ``0.5 log h``, Gaussian emissions, online EM over decayed sufficient statistics
   weighted by filtered probabilities; regime 0 is the state with the lower mean level.
5. **Drift** (:func:`_drift`): CUSUM of the squared probability-integral transform (mapped to a
   normal score) of each return under its predictive.

:func:`ms_garch_run` is the Markov-switching GARCH alternative (Haas, Mittnik and Paolella 2004):
per-regime GJR-GARCH(1,1) recursions driven by the observed returns, Student-t emissions and
recursive maximum likelihood over all parameters through the filter's derivatives.

Returns inside the kernels are percent log returns divided by the warm-up root mean square; the
output rows are in natural log-return units.
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np

_jit = nb.njit(cache=True, error_model="numpy")
_hot = nb.njit(cache=True, error_model="numpy", inline="always")

DAY = 86400.0
LOG_PI = math.log(math.pi)
N_GAP = 24  # log2 buckets of gap length in units: [2, 4), [4, 8), ... (bucket 0 unused)
N_PROFILE = 48  # half-hours of the UTC day

# ---- settings (cfg) -------------------------------------------------------------------------
(
    C_WARMUP,
    C_N0,
    C_FLOOR,
    C_V_HALFLIFE,
    C_GAP_PRIOR,
    C_GAP_CAP,
    C_PROFILE_PRIOR,
    C_PROFILE_HALFLIFE,
    C_MIN_DT,
    C_HMM_N0,
    C_HMM_FLOOR,
    C_HMM_STAY,
    C_HMM_TPRIOR,
    C_HMM_SEP,
    C_HMM_SD,
    C_DRIFT_K,
    C_DRIFT_H,
    C_DRIFT_CLIP,
    C_NU0,
    C_ALPHA0,
    C_GAMMA0,
    C_BETA0,
    C_ASYM,
    C_HMM_SD_FLOOR,
    C_LEVEL_HALFLIFE,
    C_HMM_MU_PRIOR,
    C_LABEL_HOLD,
    C_VOL,
    C_LEVEL_SECONDS,
    C_POOL_FORGET,
    C_LABELS,
    C_REFACTOR,
    C_CONST_LEVEL,
    C_SIZE,
) = range(34)

DEFAULTS = {
    "warmup": 50.0,
    "n0": 250.0,
    "floor": 0.0,
    "v_halflife": 0.0,
    "gap_prior": 20.0,
    "gap_cap": 500.0,
    "profile_prior": 20.0,
    "profile_halflife": 60.0,
    "min_dt": 0.1,
    "hmm_n0": 200.0,
    "hmm_floor": 1.0 / 2000.0,
    "hmm_stay": 0.99,
    "hmm_tprior": 50.0,
    "hmm_sep": 0.35,
    "hmm_sd": 0.3,
    "drift_k": 1.25,
    "drift_h": 30.0,
    "drift_clip": 8.0,
    "nu0": 6.0,
    "alpha0": 0.05,
    "gamma0": 0.0,
    "beta0": 0.9,
    "asym": 1.0,
    "hmm_sd_floor": 0.1,
    "level_halflife": 0.0,
    "hmm_mu_prior": 100.0,
    "label_hold": 0.0,
    "vol": 0.0,
    "level_seconds": 14400.0,
    "pool_forget": 0.999,
    "labels": 1.0,
    "refactor": 1.0,
    "const_level": 0.0,  # constant-variance model (vol 2): 0 h = V, 1 h = V e^c, 2 h = e^c
}
_NAMES = list(DEFAULTS)


def settings(**overrides: float) -> np.ndarray:
    """The settings vector of :func:`vlr_run` with ``overrides`` (names of :data:`DEFAULTS`)."""
    unknown = set(overrides) - set(DEFAULTS)
    if unknown:
        raise ValueError(f"unknown settings {sorted(unknown)}")
    cfg = np.zeros(C_SIZE)
    for i, name in enumerate(_NAMES):
        cfg[i] = float(overrides.get(name, DEFAULTS[name]))
    return cfg


# ---- state slots ----------------------------------------------------------------------------
_P = 6  # volatility parameters: alpha, gamma, beta, eta = log(nu - 2), mu, c (EGARCH level)
(
    N_SEEN,
    LAST_TS,
    LAST_PRICE,
    PHASE,
    N_BUF,
    UNIT,
    SCALE,
    H,
    V,
    V_W,
    N_STEPS,
    A0_S,
    A0_N,
    PROF_DAY,
    PROF_S,
    PROF_N,
    HMM_N,
    CUSUM,
    N_DRIFT,
    LABEL,
    HMM_HIGH,
    LEVEL,
    LEVEL_W,
    _HEAD,
) = range(24)
THETA = _HEAD  # alpha, gamma, beta, eta, mu
DH = THETA + _P  # dh/dtheta
FISH = DH + _P  # _P x _P curvature
GAP_S = FISH + _P * _P
GAP_N = GAP_S + N_GAP
PRO_S = GAP_N + N_GAP
PRO_N = PRO_S + N_PROFILE
HMM_PF = PRO_N + N_PROFILE  # filtered probabilities (2)
HMM_T = HMM_PF + 2  # transition matrix (4)
HMM_S = HMM_T + 4  # per state: occupancy, sum y, sum y^2 (6)
HMM_X = HMM_S + 6  # pair statistics (4)
HMM_MU = HMM_X + 4  # means (2), shared variance (1)
SCR = HMM_MU + 3  # scratch (2 * _P + _P * _P)
WBUF = SCR + 2 * _P + _P * _P  # warm-up buffer: (dt, percent log return) pairs


def state_size(cfg: np.ndarray) -> int:
    return WBUF + 2 * int(cfg[C_WARMUP])


def new_state(cfg: np.ndarray) -> np.ndarray:
    return np.zeros(state_size(cfg))


# ---- output row -------------------------------------------------------------------------------
(
    O_LOGPDF,  # log predictive density of log(p_t / p_{t-1}); NaN where no forecast was made
    O_MEAN,  # predictive mean of the log return
    O_SD,  # predictive standard deviation of the log return
    O_NU,  # Student-t degrees of freedom of the predictive
    O_Z,  # normal score of the probability integral transform
    O_PTURB,  # P(turbulent) after the tick
    O_LABEL,  # regime label after the tick
    O_DRIFT,  # 1.0 on a drift alarm
    O_NEXT_SD,  # predictive sd of the next tick's log return, one time unit ahead
    O_GAP,  # gap bucket of the tick (0: an ordinary step)
    O_H,  # conditional variance (standardised units) after the tick
    O_SIZE,
) = range(12)

PH_WARMING, PH_RUNNING = 0.0, 1.0


# ============================================================================================
# Helpers
# ============================================================================================


@_hot
def digamma(x):
    """psi(x) for x > 0: recurrence up to 6, then the asymptotic series (bounded loop)."""
    r = 0.0
    for _ in range(8):
        if x >= 6.0:
            break
        r -= 1.0 / x
        x += 1.0
    f = 1.0 / (x * x)
    return (
        r
        + math.log(x)
        - 0.5 / x
        - f * (1.0 / 12.0 - f * (1.0 / 120.0 - f * (1.0 / 252.0 - f * (1.0 / 240.0 - f / 132.0))))
    )


@_hot
def t_logpdf_std(u, nu):
    """log density at ``u`` of the Student-t with ``nu`` dof scaled to unit variance."""
    return (
        math.lgamma(0.5 * (nu + 1.0))
        - math.lgamma(0.5 * nu)
        - 0.5 * (LOG_PI + math.log(nu - 2.0))
        - 0.5 * (nu + 1.0) * math.log1p(u * u / (nu - 2.0))
    )


@_hot
def t_normal_score(u, nu):
    """Normal score of the unit-variance Student-t value ``u`` (Wallace's 1959 approximation)."""
    t = u * math.sqrt(nu / (nu - 2.0))
    z = math.sqrt(nu * math.log1p(t * t / nu)) * (8.0 * nu + 1.0) / (8.0 * nu + 3.0)
    return z if t >= 0.0 else -z


@_hot
def t_quantile_std(z, nu):
    """Inverse of :func:`t_normal_score`: the unit-variance Student-t quantile at normal
    score ``z``."""
    w = abs(z) * (8.0 * nu + 3.0) / (8.0 * nu + 1.0)
    t = math.sqrt(nu * math.expm1(w * w / nu))
    u = t * math.sqrt((nu - 2.0) / nu)
    return u if z >= 0.0 else -u


# ============================================================================================
# 1. Time rules
# ============================================================================================


@_hot
def _gap_bucket(dtu):
    """0 for an ordinary step (< 2 units), else floor(log2(dt in units)), capped."""
    if dtu < 2.0:
        return 0
    return min(int(math.log2(dtu)), N_GAP - 1)


@_hot
def _gap_multiplier(st, cfg, b):
    """Variance multiplier of a gap in bucket ``b``: (A_b / A_0)^2, A = mean |standardised
    return|, with ``gap_prior`` pseudo-ticks at the nearest shorter bucket's multiplier."""
    a0 = st[A0_S] / st[A0_N] if st[A0_N] > 0.0 else 0.8
    if not a0 > 0.0:
        a0 = 0.8
    prior = a0  # mean |z| of the prior bucket (multiplier 1 for bucket 0)
    m = 1.0
    for k in range(1, b + 1):
        n = st[GAP_N + k]
        a = (st[GAP_S + k] + cfg[C_GAP_PRIOR] * prior) / (n + cfg[C_GAP_PRIOR])
        m = (a / a0) ** 2
        if n >= 1.0:
            prior = a
    return max(m, 0.05)


@_hot
def _time_factor(st, cfg, dt):
    """(variance multiplier of the elapsed time, gap bucket)."""
    dtu = dt / st[UNIT]
    if dtu < 1.0:
        return max(dtu, cfg[C_MIN_DT]), 0
    b = _gap_bucket(dtu)
    if b == 0:
        return 1.0, 0
    return _gap_multiplier(st, cfg, b), b


@_hot
def _gap_learn(st, cfg, b, absz):
    if b == 0:
        st[A0_S] += absz
        st[A0_N] += 1.0
        if st[A0_N] > cfg[C_GAP_CAP] * 10.0:
            f = cfg[C_GAP_CAP] * 10.0 / st[A0_N]
            st[A0_S] *= f
            st[A0_N] *= f
    else:
        st[GAP_S + b] += absz
        st[GAP_N + b] += 1.0
        if st[GAP_N + b] > cfg[C_GAP_CAP]:
            f = cfg[C_GAP_CAP] / st[GAP_N + b]
            st[GAP_S + b] *= f
            st[GAP_N + b] *= f


# ============================================================================================
# 2. Intraday profile
# ============================================================================================


@_hot
def _half_hour(ts):
    sec = ts - math.floor(ts / DAY) * DAY
    return min(int(sec / (DAY / N_PROFILE)), N_PROFILE - 1)


@_hot
def _profile_on(st):
    return st[UNIT] < DAY / 4.0


@_hot
def _profile_multiplier(st, cfg, ts):
    if not _profile_on(st) or st[PROF_N] <= 0.0:
        return 1.0
    mean = st[PROF_S] / st[PROF_N]
    if not mean > 0.0:
        return 1.0
    b = _half_hour(ts)
    own = (st[PRO_S + b] + cfg[C_PROFILE_PRIOR] * mean) / (st[PRO_N + b] + cfg[C_PROFILE_PRIOR])
    return (own / mean) ** 2


@_hot
def _profile_learn(st, cfg, ts, absz):
    day = math.floor(ts / DAY)
    if day != st[PROF_DAY]:
        elapsed = max(day - st[PROF_DAY], 0.0) if st[PROF_N] > 0.0 else 0.0
        st[PROF_DAY] = day
        f = 2.0 ** (-elapsed / cfg[C_PROFILE_HALFLIFE])
        st[PROF_S] *= f
        st[PROF_N] *= f
        for b in range(N_PROFILE):
            st[PRO_S + b] *= f
            st[PRO_N + b] *= f
    b = _half_hour(ts)
    st[PRO_S + b] += absz
    st[PRO_N + b] += 1.0
    st[PROF_S] += absz
    st[PROF_N] += 1.0


# ============================================================================================
# 3. Volatility model: GJR-GARCH(1,1)-t, recursive maximum likelihood
# ============================================================================================


@_hot
def _nu(st):
    return 2.0 + math.exp(st[THETA + 3])


@_hot
def _garch_init(st, cfg):
    st[THETA + 0] = cfg[C_ALPHA0]
    st[THETA + 1] = cfg[C_GAMMA0]
    st[THETA + 2] = cfg[C_BETA0]
    st[THETA + 3] = math.log(cfg[C_NU0] - 2.0)
    st[THETA + 4] = 0.0
    st[H] = 1.0
    st[V] = 1.0
    st[V_W] = 50.0
    st[N_STEPS] = 0.0
    for i in range(_P):
        st[DH + i] = 0.0
    for i in range(_P * _P):
        st[FISH + i] = 0.0
    # Prior curvature (per tick): of the order of the scores' variances at the defaults.
    st[FISH + 0 * _P + 0] = 50.0
    st[FISH + 1 * _P + 1] = 15.0
    st[FISH + 2 * _P + 2] = 50.0
    st[FISH + 3 * _P + 3] = 0.02
    st[FISH + 4 * _P + 4] = 1.0
    st[FISH + 5 * _P + 5] = 0.3
    st[THETA + 5] = 0.0
    if cfg[C_VOL] == 2.0:  # constant variance: only nu and mu are learnt
        st[THETA + 0] = 0.0
        st[THETA + 2] = 0.0
        return
    if cfg[C_VOL] != 0.0:  # Beta-t-EGARCH: scores' variances are of order 1
        st[FISH + 0 * _P + 0] = 2.0
        st[FISH + 1 * _P + 1] = 2.0
        st[FISH + 2 * _P + 2] = 8.0
        st[THETA + 0] = 0.05
        st[THETA + 2] = 0.95


@_hot
def _substitute(st, a, g, out, n):
    """out = (L L')^-1 g for the Cholesky factor L in the lower triangle of st[a:]."""
    for i in range(n):
        s = st[g + i]
        for k in range(i):
            s -= st[a + i * n + k] * st[out + k]
        st[out + i] = s / st[a + i * n + i]
    for i in range(n - 1, -1, -1):
        s = st[out + i]
        for k in range(i + 1, n):
            s -= st[a + k * n + i] * st[out + k]
        st[out + i] = s / st[a + i * n + i]


@_hot
def chol_solve(st, f, a, g, out, n, refactor):
    """st[out:out+n] = F^-1 g, F = st[f:] (n x n) plus a small ridge, by its Cholesky factor kept
    in st[a:]; the factor is recomputed only when ``refactor`` (or none was made yet). A
    factor that fails (not positive definite) gives a zero step."""
    if refactor or not st[a] > 0.0:
        tr = 0.0
        for i in range(n):
            tr += st[f + i * n + i]
        ridge = 1e-6 * tr / n + 1e-12
        for i in range(n):
            for j in range(n):
                st[a + i * n + j] = st[f + i * n + j] + (ridge if i == j else 0.0)
        for j in range(n):
            s = st[a + j * n + j]
            for k in range(j):
                s -= st[a + j * n + k] ** 2
            if not s > 0.0:
                st[a] = 0.0
                for i in range(n):
                    st[out + i] = 0.0
                return
            d = math.sqrt(s)
            st[a + j * n + j] = d
            for i in range(j + 1, n):
                s2 = st[a + i * n + j]
                for k in range(j):
                    s2 -= st[a + i * n + k] * st[a + j * n + k]
                st[a + i * n + j] = s2 / d
    _substitute(st, a, g, out, n)


_MAX_STEP = (0.01, 0.01, 0.01, 0.1, 0.02, 0.02)


@_hot
def _project(st, cfg):
    if cfg[C_VOL] == 2.0:
        st[THETA + 3] = min(max(st[THETA + 3], 0.0), math.log(60.0))
        st[THETA + 4] = min(max(st[THETA + 4], -0.3), 0.3)
        st[THETA + 5] = min(max(st[THETA + 5], -3.0), 3.0)
        return
    if cfg[C_VOL] != 0.0:
        st[THETA + 0] = min(max(st[THETA + 0], 0.0), 0.5)
        g = st[THETA + 1] if cfg[C_ASYM] != 0.0 else 0.0
        st[THETA + 1] = min(max(g, -0.3), 0.3)
        st[THETA + 2] = min(max(st[THETA + 2], 0.0), 0.9995)
        st[THETA + 3] = min(max(st[THETA + 3], 0.0), math.log(60.0))
        st[THETA + 4] = min(max(st[THETA + 4], -0.3), 0.3)
        st[THETA + 5] = min(max(st[THETA + 5], -2.0), 2.0)
        return
    a = min(max(st[THETA + 0], 0.0), 0.5)
    g = st[THETA + 1] if cfg[C_ASYM] != 0.0 else 0.0
    g = min(max(g, -a), 0.5)
    b = min(max(st[THETA + 2], 0.0), 0.9995)
    if a + 0.5 * g + b > 0.9995:
        b = 0.9995 - a - 0.5 * g
    st[THETA + 0] = a
    st[THETA + 1] = g
    st[THETA + 2] = b
    st[THETA + 3] = min(max(st[THETA + 3], 0.0), math.log(60.0))
    st[THETA + 4] = min(max(st[THETA + 4], -0.3), 0.3)


@_hot
def _rml_step(st, cfg, grad, step_v):
    n = st[N_STEPS]
    step = max(1.0 / (n + cfg[C_N0]), cfg[C_FLOOR])
    st[N_STEPS] = n + 1.0
    for i in range(_P):
        for j in range(_P):
            k = FISH + i * _P + j
            st[k] = (1.0 - step) * st[k] + step * st[grad + i] * st[grad + j]
    refactor = int(n) % int(cfg[C_REFACTOR]) == 0
    chol_solve(st, FISH, SCR + 2 * _P, grad, step_v, _P, refactor)
    for i in range(_P):
        dv = step * st[step_v + i]
        lim = _MAX_STEP[i]
        st[THETA + i] += min(max(dv, -lim), lim)
    _project(st, cfg)


@_hot
def _update_v(st, cfg, e2):
    vv = st[V]
    decay = 2.0 ** (-1.0 / cfg[C_V_HALFLIFE]) if cfg[C_V_HALFLIFE] > 0.0 else 1.0
    w = st[V_W] * decay + 1.0
    st[V_W] = w
    st[V] += (min(e2, 50.0 * vv) - vv) / w


@_hot
def _t_scores(d, s2, nu):
    """For a return ``d`` from the mean with predictive variance ``s2`` under a unit-variance
    Student-t with ``nu`` degrees of freedom: ``q = d^2 / (s2 (nu - 2))`` and the log density's
    derivatives in the mean and in nu, which every model's RML step shares."""
    q = d * d / (s2 * (nu - 2.0))
    dl_dmu = (nu + 1.0) * d / (s2 * (nu - 2.0) * (1.0 + q))
    dl_dnu = (
        0.5 * (digamma(0.5 * (nu + 1.0)) - digamma(0.5 * nu))
        - 0.5 / (nu - 2.0)
        - 0.5 * math.log1p(q)
        + 0.5 * (nu + 1.0) * q / ((nu - 2.0) * (1.0 + q))
    )
    return q, dl_dmu, dl_dnu


@_hot
def _egarch_learn(st, cfg, x, tm, learn):
    """Beta-t-EGARCH (Harvey 2013) on log h, driven by the bounded score of the t density:
    log h' = (1 - b)(log V + c) + b log h + a u + g sgn(-e)(u + 1), u = (nu + 1) q / (1 + q) - 1.
    DH holds d log h / d theta."""
    h = st[H]
    lam = math.log(h)
    a, g, b = st[THETA + 0], st[THETA + 1], st[THETA + 2]
    c = st[THETA + 5]
    nu = _nu(st)
    mu = st[THETA + 4]
    s2 = tm * h
    d = x - mu
    q, dl_dmu, dl_dnu = _t_scores(d, s2, nu)
    u = (nu + 1.0) * q / (1.0 + q) - 1.0
    grad = SCR
    step_v = SCR + _P
    for i in range(_P):
        st[grad + i] = 0.5 * u * st[DH + i]
    st[grad + 3] += dl_dnu * (nu - 2.0)
    st[grad + 4] += dl_dmu
    if cfg[C_ASYM] == 0.0:
        st[grad + 1] = 0.0
    sg = 1.0 if d < 0.0 else -1.0
    du_dq = (nu + 1.0) / ((1.0 + q) * (1.0 + q))
    vv = st[V]
    target = math.log(vv) + c
    new_lam = (1.0 - b) * target + b * lam + a * u + g * sg * (u + 1.0)
    coef = (a + g * sg) * du_dq
    for i in range(_P):
        dq = -q * st[DH + i]
        if i == 3:
            dq += -q / (nu - 2.0) * (nu - 2.0)
        elif i == 4:
            dq += -2.0 * d / (s2 * (nu - 2.0))
        du = coef * dq
        if i == 3:
            du += (a + g * sg) * q / (1.0 + q) * (nu - 2.0)
        st[DH + i] = b * st[DH + i] + du
    st[DH + 0] += u
    st[DH + 1] += sg * (u + 1.0)
    st[DH + 2] += lam - target
    st[DH + 5] += 1.0 - b
    new_lam = min(max(new_lam, math.log(vv) - 12.0), math.log(vv) + 12.0)
    st[H] = math.exp(new_lam)
    e = d / math.sqrt(tm)
    _update_v(st, cfg, e * e)
    if learn and math.isfinite(u) and math.isfinite(dl_dnu):
        _rml_step(st, cfg, grad, step_v)
    return e


@_hot
def _garch_learn(st, cfg, x, tm, learn):
    if cfg[C_VOL] == 2.0:
        return _const_learn(st, cfg, x, tm, learn)
    if cfg[C_VOL] != 0.0:
        return _egarch_learn(st, cfg, x, tm, learn)
    return _gjr_learn(st, cfg, x, tm, learn)


@_hot
def _const_h(st, cfg):
    """The constant-variance model's variance, by ``const_level``: V, V e^c or e^c."""
    mode = cfg[C_CONST_LEVEL]
    c = st[THETA + 5]
    return st[V] if mode == 0.0 else (st[V] * math.exp(c) if mode == 1.0 else math.exp(c))


@_hot
def _const_learn(st, cfg, x, tm, learn):
    """Constant variance (``vol`` 2): h is the long-run variance V itself, with no dynamics;
    the Student-t's nu and mean are learnt by the same RML step (the other coordinates' scores
    are zero, so they stay at zero)."""
    mode = cfg[C_CONST_LEVEL]
    h = _const_h(st, cfg)
    nu = _nu(st)
    mu = st[THETA + 4]
    s2 = tm * h
    d = x - mu
    q, dl_dmu, dl_dnu = _t_scores(d, s2, nu)
    grad = SCR
    step_v = SCR + _P
    for i in range(_P):
        st[grad + i] = 0.0
        st[DH + i] = 0.0
    st[grad + 3] = dl_dnu * (nu - 2.0)
    st[grad + 4] = dl_dmu
    if mode != 0.0:
        st[grad + 5] = 0.5 * ((nu + 1.0) * q / (1.0 + q) - 1.0)
    e = d / math.sqrt(tm)
    _update_v(st, cfg, e * e)
    if learn and math.isfinite(dl_dnu) and math.isfinite(dl_dmu):
        _rml_step(st, cfg, grad, step_v)
    st[H] = _const_h(st, cfg)
    return e


@_hot
def _gjr_learn(st, cfg, x, tm, learn):
    """After tick x (standardised) with time/profile multiplier tm: one RML step (if
    ``learn``), then the variance recursion. Returns the adjusted return e."""
    h = st[H]
    a, g, b = st[THETA + 0], st[THETA + 1], st[THETA + 2]
    nu = _nu(st)
    mu = st[THETA + 4]
    s2 = tm * h
    d = x - mu
    q, dl_dmu, dl_dnu = _t_scores(d, s2, nu)
    grad = SCR
    step_v = SCR + _P
    dl_dh = 0.5 / h * ((nu + 1.0) * q / (1.0 + q) - 1.0)
    st[grad + 0] = dl_dh * st[DH + 0]
    st[grad + 1] = dl_dh * st[DH + 1] if cfg[C_ASYM] != 0.0 else 0.0
    st[grad + 2] = dl_dh * st[DH + 2]
    st[grad + 3] = dl_dnu * (nu - 2.0)
    st[grad + 4] = dl_dh * st[DH + 4] + dl_dmu
    # The variance recursion and its derivatives, with the parameters the tick was scored with.
    rt = math.sqrt(tm)
    e = d / rt
    e2 = e * e
    neg = 1.0 if e < 0.0 else 0.0
    vv = st[V]
    omega = (1.0 - a - 0.5 * g - b) * vv
    new_h = omega + (a + g * neg) * e2 + b * h
    d0 = -vv + e2 + b * st[DH + 0]
    d1 = -0.5 * vv + neg * e2 + b * st[DH + 1]
    d2 = -vv + h + b * st[DH + 2]
    d4 = (a + g * neg) * (-2.0 * e / rt) + b * st[DH + 4]
    st[DH + 0] = d0
    st[DH + 1] = d1
    st[DH + 2] = d2
    st[DH + 3] = 0.0
    st[DH + 4] = d4
    floor_h = 1e-4 * vv
    st[H] = max(new_h, floor_h, 1e-12)
    # Long-run variance target: EWMA (half-life in ticks) or expanding mean.
    _update_v(st, cfg, e2)
    if learn and math.isfinite(dl_dh) and math.isfinite(dl_dnu):
        st[grad + 5] = 0.0
        _rml_step(st, cfg, grad, step_v)
    return e


# ============================================================================================
# 4. Regime filter on the volatility level
# ============================================================================================


@_hot
def _smooth_level(st, at, y, dt, seconds):
    """EWMA of the level y over time (half-life ``seconds``); st[at] holds the value and
    st[at + 1] its weight."""
    w = st[at + 1] * 2.0 ** (-dt / seconds) + 1.0
    st[at + 1] = w
    st[at] += (y - st[at]) / w
    return st[at]


@_hot
def _label(previous, p, hold):
    """The label after P(turbulent) = p: it changes only past 0.5 +- ``hold``."""
    if previous == 0.0 and p > 0.5 + hold:
        return 1.0
    if previous == 1.0 and p < 0.5 - hold:
        return 0.0
    return previous


@_hot
def _hmm_init(st, cfg, y0):
    stay = cfg[C_HMM_STAY]
    st[HMM_PF + 0] = 0.5
    st[HMM_PF + 1] = 0.5
    st[HMM_T + 0] = stay
    st[HMM_T + 1] = 1.0 - stay
    st[HMM_T + 2] = 1.0 - stay
    st[HMM_T + 3] = stay
    sep, sd = cfg[C_HMM_SEP], cfg[C_HMM_SD]
    for k in range(2):
        m = y0 - sep if k == 0 else y0 + sep
        st[HMM_S + 3 * k] = 0.5
        st[HMM_S + 3 * k + 1] = 0.5 * m
        st[HMM_S + 3 * k + 2] = 0.5 * (m * m + sd * sd)
        st[HMM_MU + k] = m
    st[HMM_MU + 2] = sd * sd
    for i in range(4):
        st[HMM_X + i] = 0.25 * st[HMM_T + i] * 2.0
    st[HMM_N] = 0.0
    st[HMM_HIGH] = 1.0


@_hot
def _level_hmm(st, cfg, y):
    """One filter step and online-EM update on level y; returns P(high-level state)."""
    var = st[HMM_MU + 2]
    p0 = st[HMM_PF + 0] * st[HMM_T + 0] + st[HMM_PF + 1] * st[HMM_T + 2]
    p1 = st[HMM_PF + 0] * st[HMM_T + 1] + st[HMM_PF + 1] * st[HMM_T + 3]
    l0 = -0.5 * (y - st[HMM_MU + 0]) ** 2 / var
    l1 = -0.5 * (y - st[HMM_MU + 1]) ** 2 / var
    top = max(l0, l1)
    f0 = math.exp(l0 - top)
    f1 = math.exp(l1 - top)
    tot = p0 * f0 + p1 * f1
    if not tot > 0.0:
        return st[HMM_PF + int(st[HMM_HIGH])]
    q0 = st[HMM_PF + 0]
    q1 = st[HMM_PF + 1]
    f0n = p0 * f0 / tot
    f1n = p1 * f1 / tot
    # Online EM (filtered weights), decaying step with a floor.
    n = st[HMM_N]
    rho = max(1.0 / (n + cfg[C_HMM_N0]), cfg[C_HMM_FLOOR])
    st[HMM_N] = n + 1.0
    for k in range(2):
        w = f0n if k == 0 else f1n
        st[HMM_S + 3 * k] = (1.0 - rho) * st[HMM_S + 3 * k] + rho * w
        st[HMM_S + 3 * k + 1] = (1.0 - rho) * st[HMM_S + 3 * k + 1] + rho * w * y
        st[HMM_S + 3 * k + 2] = (1.0 - rho) * st[HMM_S + 3 * k + 2] + rho * w * y * y
    for i in range(2):
        qi = q0 if i == 0 else q1
        for j in range(2):
            fj = f0 if j == 0 else f1
            xi = qi * st[HMM_T + 2 * i + j] * fj / tot
            st[HMM_X + 2 * i + j] = (1.0 - rho) * st[HMM_X + 2 * i + j] + rho * xi
    st[HMM_PF + 0] = f0n
    st[HMM_PF + 1] = f1n
    # M-step: means, shared variance (floored), transitions with a Dirichlet prior.
    within = 0.0
    occ_all = st[HMM_S + 0] + st[HMM_S + 3]
    pooled = (st[HMM_S + 1] + st[HMM_S + 4]) / max(occ_all, 1e-12)
    mw = cfg[C_HMM_MU_PRIOR] * rho
    high = int(st[HMM_HIGH])
    for k in range(2):
        occ = max(st[HMM_S + 3 * k], 1e-12)
        m_own = st[HMM_S + 3 * k + 1] / occ
        within += st[HMM_S + 3 * k + 2] - occ * m_own * m_own
        centre = pooled + (cfg[C_HMM_SEP] if k == high else -cfg[C_HMM_SEP])
        st[HMM_MU + k] = (st[HMM_S + 3 * k + 1] + mw * centre) / (occ + mw)
    floor_v = cfg[C_HMM_SD_FLOOR] ** 2
    st[HMM_MU + 2] = max(within / max(occ_all, 1e-12), floor_v)
    tw = cfg[C_HMM_TPRIOR] * rho
    stay = cfg[C_HMM_STAY]
    for i in range(2):
        a = st[HMM_X + 2 * i] + tw * (stay if i == 0 else 1.0 - stay)
        b = st[HMM_X + 2 * i + 1] + tw * (1.0 - stay if i == 0 else stay)
        st[HMM_T + 2 * i] = a / (a + b)
        st[HMM_T + 2 * i + 1] = b / (a + b)
    # Labels: regime 0 is the state with the lower mean level (hysteresis 0.05 in level).
    if st[HMM_MU + 1 - high] > st[HMM_MU + high] + 0.05:
        st[HMM_HIGH] = 1.0 - high
    return st[HMM_PF + int(st[HMM_HIGH])]


# ============================================================================================
# 5. Drift: CUSUM of the squared normal score of the PIT
# ============================================================================================


@_hot
def _drift(st, cfg, z):
    s = st[CUSUM] + min(z * z, cfg[C_DRIFT_CLIP]) - cfg[C_DRIFT_K]
    s = max(s, 0.0)
    if s > cfg[C_DRIFT_H]:
        st[CUSUM] = 0.0
        st[N_DRIFT] += 1.0
        return 1.0
    st[CUSUM] = s
    return 0.0


# ============================================================================================
# The step
# ============================================================================================


@_jit
def _unit_and_scale(st, cfg):
    """From the warm-up buffer: the time unit (median spacing) and the scale (RMS of the
    ordinary returns, scaled to one unit). False (and the buffer emptied, so the warm-up starts
    over) if the returns do not vary."""
    u = int(cfg[C_WARMUP])
    dts = np.empty(u)
    for i in range(u):
        dts[i] = st[WBUF + 2 * i]
    st[UNIT] = max(np.median(dts), 1e-9)
    ss = 0.0
    n = 0
    for i in range(u):
        dtu = st[WBUF + 2 * i] / st[UNIT]
        if dtu < 2.0:
            r = st[WBUF + 2 * i + 1] / math.sqrt(max(min(dtu, 1.0), cfg[C_MIN_DT]))
            ss += r * r
            n += 1
    if n < 2 or not ss > 0.0:
        st[N_BUF] = 0.0
        return False
    st[SCALE] = math.sqrt(ss / n)
    return True


@_jit
def _start(st, cfg):
    """End of the warm-up: the time unit and the scale, initial parameters, then the buffered
    returns replayed (learning only)."""
    u = int(cfg[C_WARMUP])
    if not _unit_and_scale(st, cfg):
        return False
    _garch_init(st, cfg)
    st[PHASE] = PH_RUNNING
    _hmm_init(st, cfg, 0.0)
    st[LEVEL] = 0.0
    st[LEVEL_W] = 0.0
    ts = st[LAST_TS] - 0.0
    for i in range(u):
        x = st[WBUF + 2 * i + 1] / st[SCALE]
        _learn(st, cfg, ts, st[WBUF + 2 * i], x)
    st[N_BUF] = 0.0
    return True


@_hot
def _predict(st, cfg, ts, dt):
    """(tm, bucket): the variance multiplier of this tick's return over h."""
    tau, b = _time_factor(st, cfg, dt)
    m = _profile_multiplier(st, cfg, ts) if b == 0 else 1.0
    return tau * m, b


@_jit
def _learn(st, cfg, ts, dt, x):
    tm, b = _predict(st, cfg, ts, dt)
    h = st[H]
    mu = st[THETA + 4]
    absz = abs(x - mu) / math.sqrt(h)
    if b == 0 and _profile_on(st):
        _profile_learn(st, cfg, ts, absz / math.sqrt(tm / _profile_multiplier(st, cfg, ts)))
    _gap_learn(st, cfg, b, absz / math.sqrt(tm) if b == 0 else absz)
    _garch_learn(st, cfg, x, tm, True)
    if cfg[C_LABELS] == 0.0:
        return np.nan
    y = 0.5 * math.log(st[H] / st[V])
    if cfg[C_LEVEL_SECONDS] > 0.0:
        y = _smooth_level(st, LEVEL, y, dt, cfg[C_LEVEL_SECONDS])
    elif cfg[C_LEVEL_HALFLIFE] > 0.0:  # the same EWMA, over ticks
        y = _smooth_level(st, LEVEL, y, 1.0, cfg[C_LEVEL_HALFLIFE])
    return _level_hmm(st, cfg, y)


@_jit
def vlr_step(st, cfg, ts, price, row):
    """One tick: score the return under the predictive made before it, then learn."""
    for j in range(O_SIZE):
        row[j] = np.nan
    if st[N_SEEN] == 0.0:
        st[N_SEEN] = 1.0
        st[LAST_TS] = ts
        st[LAST_PRICE] = price
        return
    dt = ts - st[LAST_TS]
    r = 100.0 * math.log(price / st[LAST_PRICE])
    st[N_SEEN] += 1.0
    st[LAST_TS] = ts
    st[LAST_PRICE] = price
    if st[PHASE] == PH_WARMING:
        n = int(st[N_BUF])
        st[WBUF + 2 * n] = dt
        st[WBUF + 2 * n + 1] = r
        st[N_BUF] = n + 1
        if n + 1 >= int(cfg[C_WARMUP]):
            _start(st, cfg)
        return
    x = r / st[SCALE]
    tm, b = _predict(st, cfg, ts, dt)
    h = st[H]
    nu = _nu(st)
    mu = st[THETA + 4]
    s = math.sqrt(tm * h)
    u = (x - mu) / s
    log_unit = math.log(100.0 / st[SCALE])
    row[O_LOGPDF] = t_logpdf_std(u, nu) - math.log(s) + log_unit
    row[O_MEAN] = mu * st[SCALE] / 100.0
    row[O_SD] = s * st[SCALE] / 100.0
    row[O_NU] = nu
    z = t_normal_score(u, nu)
    row[O_Z] = z
    row[O_GAP] = b
    if cfg[C_LABELS] != 0.0:
        row[O_DRIFT] = _drift(st, cfg, z)
    p = _learn(st, cfg, ts, dt, x)
    row[O_PTURB] = p
    lab = _label(st[LABEL], p, cfg[C_LABEL_HOLD])
    st[LABEL] = lab
    row[O_LABEL] = lab
    row[O_H] = st[H]
    m_next = _profile_multiplier(st, cfg, ts + st[UNIT])
    row[O_NEXT_SD] = math.sqrt(m_next * st[H]) * st[SCALE] / 100.0


@_jit
def vlr_run(st, cfg, ts, price, out):
    for i in range(ts.shape[0]):
        vlr_step(st, cfg, ts[i], price[i], out[i])


def run_vlr(ts: np.ndarray, price: np.ndarray, **overrides: float) -> np.ndarray:
    """Output rows (one per tick) of the prototype over a whole series."""
    cfg = settings(**overrides)
    st = new_state(cfg)
    out = np.empty((ts.size, O_SIZE))
    vlr_run(st, cfg, np.ascontiguousarray(ts, float), np.ascontiguousarray(price, float), out)
    return out


# ============================================================================================
# Alternative: Markov-switching GJR-GARCH-t (Haas, Mittnik and Paolella 2004), online RML
# ============================================================================================

_Q = 12  # per regime k: alpha, gamma, beta, c (log level); then eta, mu, logit p00, logit p11
_MS_ETA, _MS_MU, _MS_A00, _MS_A11 = 8, 9, 10, 11
_MS_MAX_STEP = (0.01, 0.01, 0.01, 0.05, 0.01, 0.01, 0.01, 0.05, 0.1, 0.02, 0.1, 0.1)


def ms_offsets(cfg: np.ndarray) -> dict[str, int]:
    base = state_size(cfg)
    names = (("theta", _Q), ("hk", 2), ("phi", 2), ("dh", 2 * _Q), ("dphi", 2 * _Q))
    names += (("fish", _Q * _Q), ("grad", _Q), ("stepv", _Q), ("chol", _Q * _Q), ("dpi", 2 * _Q))
    out, at = {}, base
    for name, size in names:
        out[name] = at
        at += size
    out["end"] = at
    return out


(
    MS_THETA,
    MS_HK,
    MS_PHI,
    MS_DH,
    MS_DPHI,
    MS_FISH,
    MS_GRAD,
    MS_STEPV,
    MS_CHOL,
    MS_DPI,
    _MS_END_REL,
) = range(11)


@_hot
def _ms_at(st, base, which):
    sizes = (_Q, 2, 2, 2 * _Q, 2 * _Q, _Q * _Q, _Q, _Q, _Q * _Q, 2 * _Q)
    at = base
    for i in range(which):
        at += sizes[i]
    return at


@_hot
def _ms_init(st, base):
    th = _ms_at(st, base, MS_THETA)
    for k in range(2):
        st[th + 4 * k + 0] = 0.03 if k == 0 else 0.08
        st[th + 4 * k + 1] = 0.0
        st[th + 4 * k + 2] = 0.9 if k == 0 else 0.85
        st[th + 4 * k + 3] = math.log(0.5) if k == 0 else math.log(2.0)
    st[th + _MS_ETA] = math.log(4.0)
    st[th + _MS_MU] = 0.0
    st[th + _MS_A00] = math.log(0.98 / 0.02)
    st[th + _MS_A11] = math.log(0.98 / 0.02)
    hk = _ms_at(st, base, MS_HK)
    st[hk] = 0.5
    st[hk + 1] = 2.0
    phi = _ms_at(st, base, MS_PHI)
    st[phi] = 0.5
    st[phi + 1] = 0.5
    for i in range(2 * _Q):
        st[_ms_at(st, base, MS_DH) + i] = 0.0
        st[_ms_at(st, base, MS_DPHI) + i] = 0.0
    f = _ms_at(st, base, MS_FISH)
    for i in range(_Q * _Q):
        st[f + i] = 0.0
    prior = (50.0, 15.0, 50.0, 0.1)
    for k in range(2):
        for j in range(4):
            st[f + (4 * k + j) * (_Q + 1)] = prior[j]
    st[f + _MS_ETA * (_Q + 1)] = 0.02
    st[f + _MS_MU * (_Q + 1)] = 1.0
    st[f + _MS_A00 * (_Q + 1)] = 0.01
    st[f + _MS_A11 * (_Q + 1)] = 0.01
    st[N_STEPS] = 0.0
    st[V] = 1.0
    st[V_W] = 50.0


@_hot
def _ms_project(st, th):
    for k in range(2):
        o = th + 4 * k
        a = min(max(st[o], 0.0), 0.5)
        g = min(max(st[o + 1], -a), 0.5)
        b = min(max(st[o + 2], 0.0), 0.9995)
        if a + 0.5 * g + b > 0.9995:
            b = 0.9995 - a - 0.5 * g
        st[o] = a
        st[o + 1] = g
        st[o + 2] = b
        st[o + 3] = min(max(st[o + 3], -4.0), 4.0)
    if st[th + 3] > st[th + 7] - 0.2:  # the calm regime keeps the lower level
        mid = 0.5 * (st[th + 3] + st[th + 7])
        st[th + 3] = mid - 0.1
        st[th + 7] = mid + 0.1
    st[th + _MS_ETA] = min(max(st[th + _MS_ETA], 0.0), math.log(60.0))
    st[th + _MS_MU] = min(max(st[th + _MS_MU], -0.3), 0.3)
    for j in (_MS_A00, _MS_A11):
        st[th + j] = min(max(st[th + j], 0.0), 9.0)


@_jit
def _ms_learn(st, cfg, base, x, tm, row, learn):
    """Score x (standardised, multiplier tm) under the MS-GARCH predictive, then one RML step
    and the recursions. Writes logpdf (standardised units), weights and sds into row."""
    th = _ms_at(st, base, MS_THETA)
    hk = _ms_at(st, base, MS_HK)
    phi = _ms_at(st, base, MS_PHI)
    dh = _ms_at(st, base, MS_DH)
    dphi = _ms_at(st, base, MS_DPHI)
    dpi = _ms_at(st, base, MS_DPI)
    grad = _ms_at(st, base, MS_GRAD)
    nu = 2.0 + math.exp(st[th + _MS_ETA])
    mu = st[th + _MS_MU]
    p00 = 1.0 / (1.0 + math.exp(-st[th + _MS_A00]))
    p11 = 1.0 / (1.0 + math.exp(-st[th + _MS_A11]))
    q0, q1 = st[phi], st[phi + 1]
    pi0 = q0 * p00 + q1 * (1.0 - p11)
    pi1 = q0 * (1.0 - p00) + q1 * p11
    dp00 = p00 * (1.0 - p00)
    dp11 = p11 * (1.0 - p11)
    for j in range(_Q):
        d0 = st[dphi + j] * p00 + st[dphi + _Q + j] * (1.0 - p11)
        d1 = st[dphi + j] * (1.0 - p00) + st[dphi + _Q + j] * p11
        if j == _MS_A00:
            d0 += q0 * dp00
            d1 -= q0 * dp00
        elif j == _MS_A11:
            d0 -= q1 * dp11
            d1 += q1 * dp11
        st[dpi + j] = d0
        st[dpi + _Q + j] = d1
    d = x - mu
    lf = np.empty(2)
    dlh = np.empty(2)
    dlmu = np.empty(2)
    dlnu = np.empty(2)
    for k in range(2):
        s2 = tm * st[hk + k]
        q = d * d / (s2 * (nu - 2.0))
        lf[k] = t_logpdf_std(d / math.sqrt(s2), nu) - 0.5 * math.log(s2)
        dlh[k] = 0.5 / st[hk + k] * ((nu + 1.0) * q / (1.0 + q) - 1.0)
        dlmu[k] = (nu + 1.0) * d / (s2 * (nu - 2.0) * (1.0 + q))
        dlnu[k] = (
            0.5 * (digamma(0.5 * (nu + 1.0)) - digamma(0.5 * nu))
            - 0.5 / (nu - 2.0)
            - 0.5 * math.log1p(q)
            + 0.5 * (nu + 1.0) * q / ((nu - 2.0) * (1.0 + q))
        )
    top = max(lf[0], lf[1])
    e0 = pi0 * math.exp(lf[0] - top)
    e1 = pi1 * math.exp(lf[1] - top)
    tot = e0 + e1
    ll = top + math.log(tot)
    w0, w1 = e0 / tot, e1 / tot
    row[0] = ll
    row[1] = pi0
    row[2] = pi1
    row[3] = math.sqrt(tm * st[hk])
    row[4] = math.sqrt(tm * st[hk + 1])
    row[5] = nu
    # Score: dl = sum_k w_k (dlog pi_k + dlog f_k).
    for j in range(_Q):
        acc = 0.0
        for k in range(2):
            w = w0 if k == 0 else w1
            pik = pi0 if k == 0 else pi1
            dlf = dlh[k] * st[dh + k * _Q + j]
            if j == _MS_ETA:
                dlf += dlnu[k] * (nu - 2.0)
            elif j == _MS_MU:
                dlf += dlmu[k]
            acc += w * (st[dpi + k * _Q + j] / max(pik, 1e-300) + dlf)
            st[dphi + k * _Q + j] = dlf  # temporarily dlog f_k
        st[grad + j] = acc
    for j in range(_Q):
        for k in range(2):
            w = w0 if k == 0 else w1
            pik = pi0 if k == 0 else pi1
            st[dphi + k * _Q + j] = w * (
                st[dpi + k * _Q + j] / max(pik, 1e-300) + st[dphi + k * _Q + j] - st[grad + j]
            )
    st[phi] = w0
    st[phi + 1] = w1
    # Recursions per regime.
    rt = math.sqrt(tm)
    e = d / rt
    e2 = e * e
    neg = 1.0 if e < 0.0 else 0.0
    vv = st[V]
    for k in range(2):
        o = th + 4 * k
        a, g, b, c = st[o], st[o + 1], st[o + 2], st[o + 3]
        lev = math.exp(c) * vv
        omega = (1.0 - a - 0.5 * g - b) * lev
        h = st[hk + k]
        for j in range(_Q):
            st[dh + k * _Q + j] *= b
        st[dh + k * _Q + 4 * k + 0] += -lev + e2
        st[dh + k * _Q + 4 * k + 1] += -0.5 * lev + neg * e2
        st[dh + k * _Q + 4 * k + 2] += -lev + h
        st[dh + k * _Q + 4 * k + 3] += omega
        st[dh + k * _Q + _MS_MU] += (a + g * neg) * (-2.0 * e / rt)
        st[hk + k] = max(omega + (a + g * neg) * e2 + b * h, 1e-4 * vv, 1e-12)
    w = st[V_W] + 1.0
    st[V_W] = w
    st[V] += (min(e2, 50.0 * vv) - vv) / w
    if learn and math.isfinite(ll):
        n = st[N_STEPS]
        step = max(1.0 / (n + cfg[C_N0]), cfg[C_FLOOR])
        st[N_STEPS] = n + 1.0
        f = _ms_at(st, base, MS_FISH)
        for i in range(_Q):
            for j in range(_Q):
                st[f + i * _Q + j] = (1.0 - step) * st[f + i * _Q + j] + step * st[grad + i] * st[
                    grad + j
                ]
        chol_solve(
            st,
            _ms_at(st, base, MS_FISH),
            _ms_at(st, base, MS_CHOL),
            _ms_at(st, base, MS_GRAD),
            _ms_at(st, base, MS_STEPV),
            _Q,
            True,
        )
        sv = _ms_at(st, base, MS_STEPV)
        for i in range(_Q):
            lim = _MS_MAX_STEP[i]
            st[th + i] += min(max(step * st[sv + i], -lim), lim)
        _ms_project(st, th)
    return w1


@_jit
def ms_run(st, cfg, ts, price, out, base):
    """The MS-GARCH prototype over a series: out[i] = (logpdf natural units, pi0, pi1, sd0,
    sd1 (natural units), nu, mean, P(turbulent) after the tick)."""
    u = int(cfg[C_WARMUP])
    tmp = np.empty(8)
    for i in range(ts.shape[0]):
        for j in range(8):
            out[i, j] = np.nan
        if st[N_SEEN] == 0.0:
            st[N_SEEN] = 1.0
            st[LAST_TS] = ts[i]
            st[LAST_PRICE] = price[i]
            continue
        dt = ts[i] - st[LAST_TS]
        r = 100.0 * math.log(price[i] / st[LAST_PRICE])
        st[LAST_TS] = ts[i]
        st[LAST_PRICE] = price[i]
        if st[PHASE] == PH_WARMING:
            n = int(st[N_BUF])
            st[WBUF + 2 * n] = dt
            st[WBUF + 2 * n + 1] = r
            st[N_BUF] = n + 1
            if n + 1 >= u:
                if not _unit_and_scale(st, cfg):
                    continue
                _ms_init(st, base)
                st[PHASE] = PH_RUNNING
                for k in range(u):
                    x = st[WBUF + 2 * k + 1] / st[SCALE]
                    tm, b = _predict(st, cfg, ts[i], st[WBUF + 2 * k])
                    _ms_learn(st, cfg, base, x, tm, tmp, True)
            continue
        x = r / st[SCALE]
        tm, b = _predict(st, cfg, ts[i], dt)
        hk = _ms_at(st, base, MS_HK)
        th = _ms_at(st, base, MS_THETA)
        mu = st[th + _MS_MU]
        hmix = tm * (
            st[_ms_at(st, base, MS_PHI)] * st[hk] + st[_ms_at(st, base, MS_PHI) + 1] * st[hk + 1]
        )
        absz = abs(x - mu) / math.sqrt(max(hmix / tm, 1e-300))
        p = _ms_learn(st, cfg, base, x, tm, tmp, True)
        if b == 0 and _profile_on(st):
            _profile_learn(
                st, cfg, ts[i], absz / math.sqrt(tm / _profile_multiplier(st, cfg, ts[i]))
            )
        _gap_learn(st, cfg, b, absz / math.sqrt(tm) if b == 0 else absz)
        sc = st[SCALE] / 100.0
        out[i, 0] = tmp[0] + math.log(100.0 / st[SCALE])
        out[i, 1] = tmp[1]
        out[i, 2] = tmp[2]
        out[i, 3] = tmp[3] * sc
        out[i, 4] = tmp[4] * sc
        out[i, 5] = tmp[5]
        out[i, 6] = mu * sc
        out[i, 7] = p


def run_ms(ts: np.ndarray, price: np.ndarray, **overrides: float) -> np.ndarray:
    cfg = settings(**overrides)
    offs = ms_offsets(cfg)
    st = np.zeros(offs["end"])
    out = np.empty((ts.size, 8))
    ms_run(
        st,
        cfg,
        np.ascontiguousarray(ts, float),
        np.ascontiguousarray(price, float),
        out,
        offs["theta"],
    )
    return out


# ============================================================================================
# The pooled forecast: GJR-GARCH-t and Beta-t-EGARCH, Bayesian weights with forgetting
# ============================================================================================

(
    P_LA,  # log weight of the GJR model
    P_LB,  # log weight of the EGARCH model
    P_SEEN,
    P_LABEL,
    P_LEVEL,
    P_LEVEL_W,
    P_LAST_TS,
    _P_HEAD,
) = range(8)
P_HMM = _P_HEAD  # a vlr-layout state used for its HMM and drift slots only

# Pooled output row: the vlr row fields, plus both components.
(
    Q_LOGPDF,
    Q_WA,
    Q_MEAN_A,
    Q_SD_A,
    Q_NU_A,
    Q_MEAN_B,
    Q_SD_B,
    Q_NU_B,
    Q_Z,
    Q_PTURB,
    Q_LABEL,
    Q_DRIFT,
    Q_NEXT_SD,
    Q_GAP,
    Q_SIZE,
) = range(15)


@_hot
def norm_cdf(z):
    return 0.5 * math.erfc(-z / math.sqrt(2.0))


@_hot
def norm_ppf(p):
    """Acklam's rational approximation of the normal quantile (relative error < 1.2e-9 after
    one Halley step)."""
    p = min(max(p, 1e-300), 1.0 - 1e-16)
    a = (
        -3.969683028665376e01,
        2.209460984245205e02,
        -2.759285104469687e02,
        1.383577518672690e02,
        -3.066479806614716e01,
        2.506628277459239e00,
    )
    b = (
        -5.447609879822406e01,
        1.615858368580409e02,
        -1.556989798598866e02,
        6.680131188771972e01,
        -1.328068155288572e01,
    )
    c = (
        -7.784894002430293e-03,
        -3.223964580411365e-01,
        -2.400758277161838e00,
        -2.549732539343734e00,
        4.374664141464968e00,
        2.938163982698783e00,
    )
    d = (7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e00, 3.754408661907416e00)
    lo = 0.02425
    if p < lo:
        q = math.sqrt(-2.0 * math.log(p))
        x = (((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) / (
            (((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1.0
        )
    elif p <= 1.0 - lo:
        q = p - 0.5
        r = q * q
        x = (
            (((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5])
            * q
            / (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1.0)
        )
    else:
        q = math.sqrt(-2.0 * math.log1p(-p))
        x = -(((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) / (
            (((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1.0
        )
    e = norm_cdf(x) - p
    u = e * math.sqrt(2.0 * math.pi) * math.exp(0.5 * x * x)
    return x - u / (1.0 + 0.5 * x * u)


@_jit
def pool_run(sa, sb, sp, cfg_a, cfg_b, ts, price, ra, rb, out):
    """Both volatility models over a series; the pooled predictive, its PIT, drift and labels.

    ``sa``/``sb``: vlr states of the GJR and EGARCH models; ``sp``: the pool's state (its
    ``P_HMM`` part is a vlr-layout state for the regime filter and drift).
    """
    lam = cfg_a[C_POOL_FORGET]
    for i in range(ts.shape[0]):
        for j in range(Q_SIZE):
            out[i, j] = np.nan
        vlr_step(sa, cfg_a, ts[i], price[i], ra[i])
        vlr_step(sb, cfg_b, ts[i], price[i], rb[i])
        la_, lb_ = ra[i, O_LOGPDF], rb[i, O_LOGPDF]
        dt = ts[i] - sp[P_LAST_TS] if sp[P_SEEN] > 0.0 else 0.0
        sp[P_LAST_TS] = ts[i]
        sp[P_SEEN] += 1.0
        if not (math.isfinite(la_) and math.isfinite(lb_)):
            continue
        hm = sp[P_HMM:]
        if hm[PHASE] == PH_WARMING:
            hm[PHASE] = PH_RUNNING
            _hmm_init(hm, cfg_a, 0.0)
            sp[P_LA] = math.log(0.5)
            sp[P_LB] = math.log(0.5)
        top = max(sp[P_LA], sp[P_LB])
        norm = top + math.log(math.exp(sp[P_LA] - top) + math.exp(sp[P_LB] - top))
        wa = math.exp(sp[P_LA] - norm)
        wb = 1.0 - wa
        m = max(la_, lb_)
        out[i, Q_LOGPDF] = m + math.log(wa * math.exp(la_ - m) + wb * math.exp(lb_ - m))
        out[i, Q_WA] = wa
        out[i, Q_MEAN_A] = ra[i, O_MEAN]
        out[i, Q_SD_A] = ra[i, O_SD]
        out[i, Q_NU_A] = ra[i, O_NU]
        out[i, Q_MEAN_B] = rb[i, O_MEAN]
        out[i, Q_SD_B] = rb[i, O_SD]
        out[i, Q_NU_B] = rb[i, O_NU]
        out[i, Q_GAP] = ra[i, O_GAP]
        u = wa * norm_cdf(ra[i, O_Z]) + wb * norm_cdf(rb[i, O_Z])
        z = norm_ppf(u)
        out[i, Q_Z] = z
        out[i, Q_DRIFT] = _drift(hm, cfg_a, z)
        sp[P_LA] = lam * (sp[P_LA] - norm) + la_
        sp[P_LB] = lam * (sp[P_LB] - norm) + lb_
        # Regime filter on the pooled level (relative to each model's long-run variance).
        rel = wa * sa[H] / sa[V] + wb * sb[H] / sb[V]
        y = 0.5 * math.log(rel)
        if cfg_a[C_LEVEL_SECONDS] > 0.0:
            y = _smooth_level(sp, P_LEVEL, y, dt, cfg_a[C_LEVEL_SECONDS])
        p = _level_hmm(hm, cfg_a, y)
        lab = _label(sp[P_LABEL], p, cfg_a[C_LABEL_HOLD])
        sp[P_LABEL] = lab
        out[i, Q_PTURB] = p
        out[i, Q_LABEL] = lab
        out[i, Q_NEXT_SD] = math.sqrt(wa * ra[i, O_NEXT_SD] ** 2 + wb * rb[i, O_NEXT_SD] ** 2)


def run_pool(ts: np.ndarray, price: np.ndarray, **overrides: float) -> np.ndarray:
    """Pooled-output rows (:data:`Q_SIZE` columns) over a whole series."""
    cfg_a = settings(**{**overrides, "vol": 0.0, "labels": 0.0})
    cfg_b = settings(**{**overrides, "vol": 1.0, "labels": 0.0})
    sa, sb = new_state(cfg_a), new_state(cfg_b)
    sp = np.zeros(P_HMM + state_size(cfg_a))
    n = ts.size
    ra, rb = np.empty((n, O_SIZE)), np.empty((n, O_SIZE))
    out = np.empty((n, Q_SIZE))
    t = np.ascontiguousarray(ts, float)
    p = np.ascontiguousarray(price, float)
    pool_run(sa, sb, sp, cfg_a, cfg_b, t, p, ra, rb, out)
    return out
