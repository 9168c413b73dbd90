"""The volatility forecast: two GARCH-type models with Student-t innovations, pooled.

The second stage of the market detector's step (:mod:`streamgmm.regime.forecast`). On the
tick's return ``x`` (percent log return over the warm-up's scale) with variance multiplier
``tm`` (time rules and intraday profile, :mod:`streamgmm.regime.clock`), ``e = (x - mu) /
sqrt(tm)``, two models each predict ``x ~ mu + sqrt(tm h) t_nu`` (a Student-t of unit
variance):

* **GJR-GARCH(1,1)**: ``h' = (1 - a - g/2 - b) V + (a + g 1[e < 0]) e^2 + b h``;
* **Beta-t-EGARCH** (Harvey 2013): ``log h' = (1 - b)(log V + c) + b log h + a u
  + g sgn(-e)(u + 1)``, with ``u = (nu + 1) q / (1 + q) - 1``, ``q = e^2 / (h (nu - 2))``, the
  bounded score of the t density, so one huge return moves it a bounded step.

``V`` is the expanding mean of ``min(e^2, 50 V)`` (variance targeting). Each model's parameters
``theta = (a, g, b, log(nu - 2), mu, c)`` are learnt online by **recursive maximum
likelihood**: the score of the tick's log predictive density through the tangent recursion
``d h / d theta``, a curvature ``F`` averaged from a diagonal prior at the starting values,
the step ``theta += clip(r F^-1 s)`` with ``r = 1 / (t + 250)``, then a projection onto the
stationary region (GJR: ``a in [0, .5]``, ``g in [-a, .5]``, ``a + g/2 + b <= 0.9995``; EGARCH:
``a in [0, .5]``, ``|g| <= .3``, ``b <= .9995``, ``|c| <= 2``; both ``nu in [2.75, 62]``,
``|mu| <= .3``). The Cholesky factor of ``F`` is reused for :data:`REFACTOR` ticks, and the
t density's constants are recomputed only when ``nu`` moves.

**Pool**: the predictive density is ``w p_GJR + (1 - w) p_EGARCH`` with Bayesian log weights
forgotten at 0.999 per tick, so the better model of the recent past leads.

Floors: ``h >= 1e-2 V`` (GJR) and ``log h`` within ``log V + [log 1e-2, 12]`` (EGARCH), so a
run of stale prices cannot shrink the forecast to nothing; scores and tangents are clipped, so
no finite input gives a non-finite state. Every loop is bounded by the parameter count.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from streamgmm import _validate as V
from streamgmm._numeric import hot
from streamgmm.regime import clock
from streamgmm.regime.layout import (
    N_THETA,
    VCHOL,
    VDH,
    VDIGAMMA,
    VFISH,
    VGRAD,
    VH,
    VLOGC,
    VNU,
    VQ,
    VQ_NU,
    VSTEP,
    VSTEPS,
    VTHETA,
    VV,
    VW,
)

__all__ = ["from_state", "to_state"]

LOG_PI = math.log(math.pi)
#: Offset of the recursive-maximum-likelihood step ``1 / (t + N0)``.
N0 = 250.0
#: Ticks between refactorisations of the curvature.
REFACTOR = 16
#: Forgetting of the pool's log weights per tick.
POOL_FORGET = 0.999
#: Variance floor relative to the long-run variance, and the EGARCH ceiling (in log).
H_FLOOR = 1e-2
LOG_H_CEILING = 12.0
#: Starting weight (ticks) of the long-run variance, and the cap of one tick's square in it.
V_START_WEIGHT = 50.0
V_CAP = 50.0
#: Largest step of each parameter per tick.
MAX_STEP = (0.01, 0.01, 0.01, 0.1, 0.02, 0.02)
#: Bounds on a score component and a tangent, so the curvature stays finite.
MAX_SCORE = 1e6
MAX_TANGENT = 1e12
#: nu moves by this fraction before the t density's constants (lgamma, digamma) are
#: recomputed; in between the log constant is moved to first order (:func:`t_logpdf`).
NU_TOLERANCE = 1e-2
#: Newton steps of the pool's quantile, and the relative error in probability it stops at.
QUANTILE_STEPS = 1
QUANTILE_TOLERANCE = 1e-4
#: Starting values (a, g, b, nu) and the curvature's diagonal prior, per model.
GJR_START = (0.05, 0.0, 0.9, 6.0)
EGARCH_START = (0.05, 0.0, 0.95, 6.0)
GJR_PRIOR = (50.0, 15.0, 50.0, 0.02, 1.0, 0.3)
EGARCH_PRIOR = (2.0, 2.0, 8.0, 0.02, 1.0, 0.3)
#: Bounds of nu, and of the parameter log(nu - 2). Below 3 the t's variance is more than 3 times
#: its squared scale: returns with heavier tails than a t(3) (intraday bars with stale quotes)
#: get a predictive variance that matches their squared returns (docs/regime.md).
NU_MIN = 2.75
NU_MAX = 62.0
ETA_MIN = math.log(NU_MIN - 2.0)
ETA_MAX = math.log(NU_MAX - 2.0)


# -- the Student-t and the normal -------------------------------------------------------------


def _digamma(x):
    """psi(x) for x > 0: recurrence up to 6, then the asymptotic series (bounded loop).

    Plain Python, for the state's checks, which run before any compiled code; :func:`digamma`
    is the same function compiled for the step."""
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


digamma = hot(_digamma)


@hot
def nu_of(m):
    """The model's degrees of freedom."""
    return 2.0 + math.exp(m[VTHETA + 3])


@hot
def refresh_constants(m):
    """The t density's log constant and the digamma difference, recomputed only when the
    model's nu has moved by :data:`NU_TOLERANCE` since they were; returns the model's nu."""
    nu = nu_of(m)
    if abs(nu - m[VNU]) > NU_TOLERANCE * nu:
        m[VNU] = nu
        m[VLOGC] = (
            math.lgamma(0.5 * (nu + 1.0))
            - math.lgamma(0.5 * nu)
            - 0.5 * (LOG_PI + math.log(nu - 2.0))
        )
        m[VDIGAMMA] = digamma(0.5 * (nu + 1.0)) - digamma(0.5 * nu)
    return nu


@hot
def t_logpdf(m, u, nu):
    """Log density at ``u`` of the unit-variance Student-t with ``nu`` degrees of freedom: the
    log constant from the model's cache, moved to ``nu`` to first order (its derivative is the
    cached digamma difference's; the error is below 1e-4 nats within the cache's tolerance)."""
    c = m[VNU]
    logc = m[VLOGC] + (0.5 * m[VDIGAMMA] - 0.5 / (c - 2.0)) * (nu - c)
    return logc - 0.5 * (nu + 1.0) * math.log1p(u * u / (nu - 2.0))


@hot
def t_normal_score(u, nu):
    """Normal score of the unit-variance Student-t value ``u`` (Wallace's 1959 approximation)."""
    t = u * math.sqrt(nu / (nu - 2.0))
    z = math.sqrt(nu * math.log1p(t * t / nu)) * (8.0 * nu + 1.0) / (8.0 * nu + 3.0)
    return z if t >= 0.0 else -z


@hot
def t_quantile(z, nu):
    """The unit-variance Student-t value with normal score ``z`` (inverse of the above)."""
    w = min(abs(z) * (8.0 * nu + 3.0) / (8.0 * nu + 1.0), 40.0)
    t = math.sqrt(nu * math.expm1(min(w * w / nu, 700.0)))
    u = t * math.sqrt((nu - 2.0) / nu)
    return u if z >= 0.0 else -u


@hot
def norm_cdf(z):
    return 0.5 * math.erfc(-z / math.sqrt(2.0))


@hot
def norm_ppf(p):
    """The normal quantile: Acklam's rational approximation and one Halley step."""
    p = min(max(p, 1e-300), 1.0 - 1e-16)
    lo = 0.02425
    if p < lo or p > 1.0 - lo:
        q = math.sqrt(-2.0 * math.log(p)) if p < lo else math.sqrt(-2.0 * math.log1p(-p))
        x = (
            ((((-7.784894002430293e-03 * q - 3.223964580411365e-01) * q - 2.400758277161838e00)
              * q - 2.549732539343734e00) * q + 4.374664141464968e00) * q + 2.938163982698783e00
        ) / (
            (((7.784695709041462e-03 * q + 3.224671290700398e-01) * q + 2.445134137142996e00)
             * q + 3.754408661907416e00) * q + 1.0
        )  # fmt: skip
        if p > 1.0 - lo:
            x = -x
    else:
        q = p - 0.5
        r = q * q
        x = (
            (((((-3.969683028665376e01 * r + 2.209460984245205e02) * r - 2.759285104469687e02)
               * r + 1.383577518672690e02) * r - 3.066479806614716e01) * r + 2.506628277459239e00)
            * q
        ) / (
            ((((-5.447609879822406e01 * r + 1.615858368580409e02) * r - 1.556989798598866e02)
              * r + 6.680131188771972e01) * r - 1.328068155288572e01) * r + 1.0
        )  # fmt: skip
    e = norm_cdf(x) - p
    u = e * math.sqrt(2.0 * math.pi) * math.exp(min(0.5 * x * x, 700.0))
    return x - u / (1.0 + 0.5 * x * u)


# -- a model: start, predict, learn -----------------------------------------------------------


@hot
def start(m, egarch):
    """Starting parameters, variance 1 (the warm-up's scale), the curvature's prior."""
    init = EGARCH_START if egarch else GJR_START
    prior = EGARCH_PRIOR if egarch else GJR_PRIOR
    m[VTHETA + 0] = init[0]
    m[VTHETA + 1] = init[1]
    m[VTHETA + 2] = init[2]
    m[VTHETA + 3] = math.log(init[3] - 2.0)
    m[VTHETA + 4] = 0.0
    m[VTHETA + 5] = 0.0
    m[VH] = 1.0
    m[VV] = 1.0
    m[VW] = V_START_WEIGHT
    m[VSTEPS] = 0.0
    m[VNU] = 0.0
    m[VQ_NU] = np.nan
    for i in range(N_THETA):
        m[VDH + i] = 0.0
    for i in range(N_THETA * N_THETA):
        m[VFISH + i] = 0.0
        m[VCHOL + i] = 0.0
    for i in range(N_THETA):
        m[VFISH + i * N_THETA + i] = prior[i]
    refresh_constants(m)


@hot
def _clip(v, lim):
    return min(max(v, -lim), lim) if v == v else 0.0


@hot
def _chol_solve(m, refactor):
    """m[VSTEP] = F^-1 m[VGRAD] by the Cholesky factor of F (plus a small ridge), refactored
    when ``refactor`` or none is held; a factor that fails gives a zero step."""
    n = N_THETA
    a = VCHOL
    if refactor or not m[a] > 0.0:
        tr = 0.0
        for i in range(n):
            tr += m[VFISH + i * n + i]
        ridge = 1e-6 * tr / n + 1e-12
        for i in range(n):
            for j in range(n):
                m[a + i * n + j] = m[VFISH + i * n + j] + (ridge if i == j else 0.0)
        for j in range(n):
            s = m[a + j * n + j]
            for k in range(j):
                s -= m[a + j * n + k] ** 2
            if not s > 0.0:
                m[a] = 0.0
                for i in range(n):
                    m[VSTEP + i] = 0.0
                return
            d = math.sqrt(s)
            m[a + j * n + j] = d
            for i in range(j + 1, n):
                s2 = m[a + i * n + j]
                for k in range(j):
                    s2 -= m[a + i * n + k] * m[a + j * n + k]
                m[a + i * n + j] = s2 / d
    for i in range(n):
        s = m[VGRAD + i]
        for k in range(i):
            s -= m[a + i * n + k] * m[VSTEP + k]
        m[VSTEP + i] = s / m[a + i * n + i]
    for i in range(n - 1, -1, -1):
        s = m[VSTEP + i]
        for k in range(i + 1, n):
            s -= m[a + k * n + i] * m[VSTEP + k]
        m[VSTEP + i] = s / m[a + i * n + i]


@hot
def _project(m, egarch):
    th = VTHETA
    if egarch:
        m[th + 0] = min(max(m[th + 0], 0.0), 0.5)
        m[th + 1] = min(max(m[th + 1], -0.3), 0.3)
        m[th + 2] = min(max(m[th + 2], 0.0), 0.9995)
        m[th + 5] = min(max(m[th + 5], -2.0), 2.0)
    else:
        a = min(max(m[th + 0], 0.0), 0.5)
        g = min(max(m[th + 1], -a), 0.5)
        b = min(max(m[th + 2], 0.0), 0.9995)
        if a + 0.5 * g + b > 0.9995:
            b = 0.9995 - a - 0.5 * g
        m[th + 0] = a
        m[th + 1] = g
        m[th + 2] = b
        m[th + 5] = 0.0
    m[th + 3] = min(max(m[th + 3], ETA_MIN), ETA_MAX)
    m[th + 4] = min(max(m[th + 4], -0.3), 0.3)


@hot
def _rml_step(m, egarch):
    """One recursive-maximum-likelihood step from the score in VGRAD."""
    n = m[VSTEPS]
    step = 1.0 / (n + N0)
    m[VSTEPS] = n + 1.0
    for i in range(N_THETA):
        m[VGRAD + i] = _clip(m[VGRAD + i], MAX_SCORE)
    for i in range(N_THETA):
        gi = m[VGRAD + i]
        for j in range(N_THETA):
            k = VFISH + i * N_THETA + j
            m[k] = (1.0 - step) * m[k] + step * gi * m[VGRAD + j]
    _chol_solve(m, int(n) % REFACTOR == 0)
    for i in range(N_THETA):
        m[VTHETA + i] += _clip(step * m[VSTEP + i], MAX_STEP[i])
    _project(m, egarch)


@hot
def _update_v(m, e2):
    vv = m[VV]
    w = m[VW] + 1.0
    m[VW] = w
    m[VV] = vv + (min(e2, V_CAP * vv) - vv) / w


@hot
def log_density(m, x, tm):
    """(log density of ``x`` with multiplier ``tm``, standardised value u, nu, sd)."""
    nu = refresh_constants(m)
    s = math.sqrt(tm * m[VH])
    u = (x - m[VTHETA + 4]) / s
    return t_logpdf(m, u, nu) - math.log(s), u, nu, s


@hot
def learn(m, x, tm, egarch):
    """After the tick ``x`` with multiplier ``tm``: the variance recursion and one RML step."""
    if egarch:
        _egarch_learn(m, x, tm)
    else:
        _gjr_learn(m, x, tm)


@hot
def _dl_dnu(m, q, nu):
    return (
        0.5 * m[VDIGAMMA]
        - 0.5 / (nu - 2.0)
        - 0.5 * math.log1p(q)
        + 0.5 * (nu + 1.0) * q / ((nu - 2.0) * (1.0 + q))
    )


@hot
def _gjr_learn(m, x, tm):
    h = m[VH]
    a, g, b = m[VTHETA + 0], m[VTHETA + 1], m[VTHETA + 2]
    nu = refresh_constants(m)
    mu = m[VTHETA + 4]
    s2 = tm * h
    d = x - mu
    q = d * d / (s2 * (nu - 2.0))
    dl_dh = 0.5 / h * ((nu + 1.0) * q / (1.0 + q) - 1.0)
    dl_dmu = (nu + 1.0) * d / (s2 * (nu - 2.0) * (1.0 + q))
    dl_dnu = _dl_dnu(m, q, nu)
    m[VGRAD + 0] = dl_dh * m[VDH + 0]
    m[VGRAD + 1] = dl_dh * m[VDH + 1]
    m[VGRAD + 2] = dl_dh * m[VDH + 2]
    m[VGRAD + 3] = dl_dnu * (nu - 2.0)
    m[VGRAD + 4] = dl_dh * m[VDH + 4] + dl_dmu
    m[VGRAD + 5] = 0.0
    rt = math.sqrt(tm)
    e = d / rt
    e2 = e * e
    neg = 1.0 if e < 0.0 else 0.0
    vv = m[VV]
    omega = (1.0 - a - 0.5 * g - b) * vv
    new_h = omega + (a + g * neg) * e2 + b * h
    m[VDH + 0] = _clip(-vv + e2 + b * m[VDH + 0], MAX_TANGENT)
    m[VDH + 1] = _clip(-0.5 * vv + neg * e2 + b * m[VDH + 1], MAX_TANGENT)
    m[VDH + 2] = _clip(-vv + h + b * m[VDH + 2], MAX_TANGENT)
    m[VDH + 3] = 0.0
    m[VDH + 4] = _clip((a + g * neg) * (-2.0 * e / rt) + b * m[VDH + 4], MAX_TANGENT)
    m[VDH + 5] = 0.0
    m[VH] = max(new_h, H_FLOOR * vv, 1e-300)
    _update_v(m, e2)
    if math.isfinite(dl_dh) and math.isfinite(dl_dnu):
        _rml_step(m, False)


@hot
def _egarch_learn(m, x, tm):
    h = m[VH]
    lam = math.log(h)
    a, g, b = m[VTHETA + 0], m[VTHETA + 1], m[VTHETA + 2]
    c = m[VTHETA + 5]
    nu = refresh_constants(m)
    mu = m[VTHETA + 4]
    s2 = tm * h
    d = x - mu
    q = d * d / (s2 * (nu - 2.0))
    u = (nu + 1.0) * q / (1.0 + q) - 1.0
    dl_dnu = _dl_dnu(m, q, nu)
    dl_dmu = (nu + 1.0) * d / (s2 * (nu - 2.0) * (1.0 + q))
    for i in range(N_THETA):
        m[VGRAD + i] = 0.5 * u * m[VDH + i]
    m[VGRAD + 3] += dl_dnu * (nu - 2.0)
    m[VGRAD + 4] += dl_dmu
    sg = 1.0 if d < 0.0 else -1.0
    du_dq = (nu + 1.0) / ((1.0 + q) * (1.0 + q))
    vv = m[VV]
    target = math.log(vv) + c
    new_lam = (1.0 - b) * target + b * lam + a * u + g * sg * (u + 1.0)
    coef = (a + g * sg) * du_dq
    for i in range(N_THETA):
        dq = -q * m[VDH + i]
        if i == 3:
            dq -= q
        elif i == 4:
            dq -= 2.0 * d / (s2 * (nu - 2.0))
        du = coef * dq
        if i == 3:
            du += (a + g * sg) * q / (1.0 + q) * (nu - 2.0)
        m[VDH + i] = b * m[VDH + i] + du
    m[VDH + 0] += u
    m[VDH + 1] += sg * (u + 1.0)
    m[VDH + 2] += lam - target
    m[VDH + 5] += 1.0 - b
    for i in range(N_THETA):
        m[VDH + i] = _clip(m[VDH + i], MAX_TANGENT)
    log_v = math.log(vv)
    new_lam = min(max(new_lam, log_v + math.log(H_FLOOR)), log_v + LOG_H_CEILING)
    m[VH] = math.exp(new_lam)
    e = d / math.sqrt(tm)
    _update_v(m, e * e)
    if math.isfinite(u) and math.isfinite(dl_dnu):
        _rml_step(m, True)


# -- the pool ---------------------------------------------------------------------------------


@hot
def pool_weight(log_a, log_b):
    """(weight of the GJR model, log of the weights' sum)."""
    top = max(log_a, log_b)
    norm = top + math.log(math.exp(log_a - top) + math.exp(log_b - top))
    return math.exp(log_a - norm), norm


@hot
def _unit_quantile(m, z):
    """The unit-variance t quantile at normal score ``z`` for the model's cached nu, itself
    cached until nu moves."""
    if m[VQ_NU] != m[VNU]:
        m[VQ_NU] = m[VNU]
        m[VQ] = t_quantile(z, m[VNU])
    return m[VQ]


@hot
def mixture_quantile(w, ma, mb, s_a, s_b, z):
    """The quantile with normal score ``z`` of the pool ``w t_a + (1 - w) t_b``, each model's
    unit-variance t (its mean, its cached nu and constant) scaled by ``s``: Newton on the
    mixture's CDF (Wallace's normal scores) from the weighted component quantiles, at most
    :data:`QUANTILE_STEPS` steps, kept between the component quantiles."""
    mu_a, mu_b = ma[VTHETA + 4], mb[VTHETA + 4]
    nu_a, nu_b = ma[VNU], mb[VNU]
    qa = mu_a + s_a * _unit_quantile(ma, z)
    qb = mu_b + s_b * _unit_quantile(mb, z)
    q = w * qa + (1.0 - w) * qb
    lo = min(qa, qb)
    hi = max(qa, qb)
    if hi - lo <= 1e-12 * (abs(hi) + abs(lo)):
        return q
    p = norm_cdf(z)
    for _ in range(QUANTILE_STEPS):
        ua = (q - mu_a) / s_a
        ub = (q - mu_b) / s_b
        f = w * norm_cdf(t_normal_score(ua, nu_a)) + (1.0 - w) * norm_cdf(t_normal_score(ub, nu_b))
        if abs(f - p) <= QUANTILE_TOLERANCE * p:
            break
        dens = (
            w * math.exp(t_logpdf(ma, ua, nu_a)) / s_a
            + (1.0 - w) * math.exp(t_logpdf(mb, ub, nu_b)) / s_b
        )
        if not dens > 0.0:
            break
        q = min(max(q - (f - p) / dens, lo), hi)
    return q


# -- state (Python) -------------------------------------------------------------------------------

FIELDS = ("variance", "long_run", "long_run_weight", "steps", "theta", "tangent", "curvature",
          "factor", "t_constants", "time")  # fmt: skip

_THETA_LO = (0.0, -0.5, 0.0, ETA_MIN, -0.3, -2.0)
_THETA_HI = (0.5, 0.5, 0.9995, ETA_MAX, 0.3, 2.0)


def to_state(m: np.ndarray) -> dict[str, Any]:
    """A model's part of the state (with its time rules' sums, :mod:`~streamgmm.regime.clock`)."""
    k = N_THETA
    return {
        "variance": float(m[VH]),
        "long_run": float(m[VV]),
        "long_run_weight": float(m[VW]),
        "steps": int(m[VSTEPS]),
        "theta": m[VTHETA : VTHETA + k].tolist(),
        "tangent": m[VDH : VDH + k].tolist(),
        "curvature": m[VFISH : VFISH + k * k].reshape(k, k).tolist(),
        "factor": m[VCHOL : VCHOL + k * k].reshape(k, k).tolist(),
        "t_constants": [float(m[VNU]), float(m[VLOGC]), float(m[VDIGAMMA])],
        "time": clock.to_state(m),
    }


def from_state(path: str, state: Any, m: np.ndarray, egarch: bool) -> None:
    """Validate a model's part and write it into the block ``m``: every slot bounded, the
    parameters inside the projection's region, the curvature symmetric positive definite."""
    k = N_THETA
    V.fields(path, state, FIELDS)
    long_run = V.number(f"{path}.long_run", state["long_run"], lo=1e-200, hi=1e200)
    h = V.number(f"{path}.variance", state["variance"], lo=0.0, hi=1e300, lo_open=True)
    if egarch:
        if not (H_FLOOR * long_run * 0.999 <= h <= long_run * math.exp(LOG_H_CEILING) * 1.001):
            raise ValueError(f"{path}.variance is outside the model's bounds, got {h!r}")
    elif h < H_FLOOR * long_run * 0.999:
        raise ValueError(f"{path}.variance is below its floor, got {h!r}")
    weight = V.number(f"{path}.long_run_weight", state["long_run_weight"], lo=1.0, hi=2.0**53)
    steps = V.integer(f"{path}.steps", state["steps"])
    theta = V.matrix(f"{path}.theta", state["theta"], (k,))
    for i in range(k):
        if not _THETA_LO[i] <= theta[i] <= _THETA_HI[i]:
            raise ValueError(f"{path}.theta[{i}] is outside its bounds, got {theta[i]!r}")
    if not egarch and (theta[1] < -theta[0] or theta[0] + 0.5 * theta[1] + theta[2] > 0.9996):
        raise ValueError(f"{path}.theta is not stationary, got {theta.tolist()!r}")
    tangent = V.matrix(f"{path}.tangent", state["tangent"], (k,), lo=-MAX_TANGENT, hi=MAX_TANGENT)
    fish = V.matrix(f"{path}.curvature", state["curvature"], (k, k), lo=-1e15, hi=1e15)
    if not np.allclose(fish, fish.T, rtol=1e-9, atol=0.0):
        raise ValueError(f"{path}.curvature must be symmetric")
    if not np.all(np.linalg.eigvalsh(fish) > 0.0):
        raise ValueError(f"{path}.curvature must be positive definite")
    # The factor's lower triangle is the Cholesky factor (entries up to the square root of the
    # curvature's); its upper triangle keeps the curvature's copy it was made from.
    factor = V.matrix(f"{path}.factor", state["factor"], (k, k), lo=-1e15, hi=1e15)
    if factor[0, 0] > 0.0 and not (np.diag(factor) > 0.0).all():
        raise ValueError(f"{path}.factor must have a positive diagonal (or a zero first entry)")
    clock.from_state(f"{path}.time", state["time"], m)
    m[VH] = h
    m[VV] = long_run
    m[VW] = weight
    m[VSTEPS] = steps
    m[VTHETA : VTHETA + k] = theta
    m[VDH : VDH + k] = tangent
    m[VFISH : VFISH + k * k] = fish.ravel()
    m[VCHOL : VCHOL + k * k] = factor.ravel()
    m[VNU], m[VLOGC], m[VDIGAMMA] = _t_constants(f"{path}.t_constants", state["t_constants"])
    m[VQ_NU] = np.nan  # the quantile's cache: recomputed by the step, as it would be


def _t_constants(path: str, value: Any) -> tuple[float, float, float]:
    """The cached (nu, log constant, digamma difference): nu in range, the others its own
    (to rounding), so the stored cache continues the run bit for bit."""
    nu, logc, dig = V.matrix(path, value, (3,), lo=-1e3, hi=1e3).tolist()
    if not NU_MIN * (1 - 1e-9) <= nu <= NU_MAX * (1 + 1e-9):
        raise ValueError(f"{path}[0] (nu) must be in [{NU_MIN}, {NU_MAX:g}], got {nu!r}")
    want = (
        math.lgamma(0.5 * (nu + 1.0)) - math.lgamma(0.5 * nu) - 0.5 * (LOG_PI + math.log(nu - 2.0))
    )
    want_dig = _digamma(0.5 * (nu + 1.0)) - _digamma(0.5 * nu)
    if abs(logc - want) > 1e-9 or abs(dig - want_dig) > 1e-9:
        raise ValueError(f"{path} does not match its nu {nu!r}")
    return nu, logc, dig
