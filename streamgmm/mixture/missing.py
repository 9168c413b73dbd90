"""Partially observed points: exact marginals for scoring, conditional expectations for learning.

A point lacking some features is scored with the exact marginal Gaussian over the features it
has (:func:`posterior_partial`), and learnt by the EM step for missing data
(:func:`learn_partial`). This path is rare, so it favours plain dense linear algebra over speed;
it shares the M-step, the schedule and the factorisation with :mod:`streamgmm.mixture.kernels`.
"""

from __future__ import annotations

import math

import numpy as np

from streamgmm._numeric import LOG_2PI, MAX_ABS_VALUE, TINY, jit
from streamgmm.mixture.kernels import (
    MAX_MAHALANOBIS,
    NON_FINITE,
    OK,
    OUT_OF_RANGE,
    any_dead,
    factorise,
    reseed_dead,
    schedule,
    update,
)
from streamgmm.mixture.layout import (
    COVARIANCE,
    FACTOR,
    FULL,
    MASS,
    MEANS,
    N_COMPONENTS,
    N_FEATURES,
    N_SEEN,
    REG,
    SCATTER,
    STRIDE,
    X,
    read_layout,
)


@jit
def _component_covariance(state, lay, k):
    """The floored covariance of component k as a dense (D, D) matrix."""
    d = lay[N_FEATURES]
    fac = lay[FACTOR] + k * lay[STRIDE]
    cov = np.zeros((d, d))
    if lay[COVARIANCE] == FULL:
        for i in range(d):
            for j in range(i + 1):
                s = 0.0
                for m in range(j + 1):
                    s += state[fac + i * d + m] * state[fac + j * d + m]
                cov[i, j] = s
                cov[j, i] = s
    else:
        for i in range(d):
            cov[i, i] = state[fac + i] ** 2
    return cov


@jit
def _solve_lower(lower, b):
    n = b.shape[0]
    z = np.empty(n)
    for i in range(n):
        s = b[i]
        for j in range(i):
            s -= lower[i, j] * z[j]
        z[i] = s / lower[i, i]
    return z


@jit
def _solve_upper_t(lower, b):
    """Solve Lᵀ y = b."""
    n = b.shape[0]
    y = np.empty(n)
    for i in range(n - 1, -1, -1):
        s = b[i]
        for j in range(i + 1, n):
            s -= lower[j, i] * y[j]
        y[i] = s / lower[i, i]
    return y


@jit
def _marginal(state, lay, k, x, observed):
    """For component k: log N(x_o | μ_o, Σ_oo), the conditional mean x̂ (observed coordinates kept)
    and the conditional covariance of the missing coordinates (zero rows/cols for observed ones)."""
    d = lay[N_FEATURES]
    mu = state[lay[MEANS] + k * d : lay[MEANS] + (k + 1) * d]
    cov = _component_covariance(state, lay, k)
    obs = np.flatnonzero(observed)
    mis = np.flatnonzero(~observed)
    n_o = obs.shape[0]
    lower = np.zeros((n_o, n_o))
    for i in range(n_o):
        for j in range(i + 1):
            s = cov[obs[i], obs[j]]
            for m in range(j):
                s -= lower[i, m] * lower[j, m]
            if i == j:
                lower[i, i] = math.sqrt(max(s, TINY))
            else:
                lower[i, j] = s / lower[j, j]
    diff = np.empty(n_o)
    for a in range(n_o):
        diff[a] = x[obs[a]] - mu[obs[a]]
    z = _solve_lower(lower, diff)
    maha = min((z * z).sum(), MAX_MAHALANOBIS)
    half_log_det = 0.0
    for i in range(n_o):
        half_log_det += math.log(lower[i, i])
    log_density = -0.5 * (n_o * LOG_2PI + maha) - half_log_det
    # x̂_m = μ_m + Σ_mo Σ_oo⁻¹ (x_o − μ_o);  C_mm = Σ_mm − Σ_mo Σ_oo⁻¹ Σ_om
    alpha = _solve_upper_t(lower, z)
    x_hat = x.copy()
    cond = np.zeros((d, d))
    n_m = mis.shape[0]
    solved = np.empty((n_m, n_o))
    for a in range(n_m):
        col = np.empty(n_o)
        for b in range(n_o):
            col[b] = cov[obs[b], mis[a]]
        solved[a] = _solve_lower(lower, col)
        v = mu[mis[a]]
        for b in range(n_o):
            v += cov[mis[a], obs[b]] * alpha[b]
        x_hat[mis[a]] = v
    for a in range(n_m):
        for c in range(a + 1):
            v = cov[mis[a], mis[c]] - (solved[a] * solved[c]).sum()
            if a == c:
                v = max(v, 0.0)
            cond[mis[a], mis[c]] = v
            cond[mis[c], mis[a]] = v
    return log_density, x_hat, cond


@jit
def posterior_partial(state, x, observed, proba):
    """p(k | x_o) into proba for a point with missing coordinates; returns log p(x_o)."""
    lay = read_layout(state)
    k_total = lay[N_COMPONENTS]
    total = 0.0
    for k in range(k_total):
        total += state[lay[MASS] + k]
    log_total = math.log(total)
    best = -np.inf
    for k in range(k_total):
        mass = state[lay[MASS] + k]
        log_w = math.log(mass) - log_total if mass > 0.0 else -np.inf
        log_density, _, _ = _marginal(state, lay, k, x, observed)
        proba[k] = log_w + log_density
        best = max(best, proba[k])
    acc = 0.0
    for k in range(k_total):
        proba[k] = math.exp(proba[k] - best)
        acc += proba[k]
    proba /= acc
    return best + math.log(acc)


@jit
def learn_partial(state, x, observed):
    """EM step for a point with missing coordinates (Ghahramani & Jordan, 1994).

    Responsibilities come from the exact marginal over the observed coordinates; each component is
    then updated with its conditional expectation of the point and the conditional covariance of
    the missing part, i.e. the expected sufficient statistics. Observed coordinates are used as
    given, and missing ones move only as far as the observed ones inform them.
    """
    lay = read_layout(state)
    k_total, d, m = lay[N_COMPONENTS], lay[N_FEATURES], lay[STRIDE]
    x_obs = x[observed]
    for i in range(x_obs.shape[0]):
        if not math.isfinite(x_obs[i]):
            return -(i + 1) * 4 - NON_FINITE
        if abs(x_obs[i]) > MAX_ABS_VALUE:
            return -(i + 1) * 4 - OUT_OF_RANGE
    resp = np.empty(k_total)
    posterior_partial(state, x, observed, resp)
    keep, step = schedule(state)
    x_hats = np.empty((k_total, d))
    conds = np.empty((k_total, d, d))
    for k in range(k_total):
        _, x_hats[k], conds[k] = _marginal(state, lay, k, x, observed)
    ox = lay[X]
    for k in range(k_total):
        w = step * resp[k]
        state[ox : ox + d] = x_hats[k]
        update(state, lay, k, ox, w, keep)
        # The expected scatter of imputed coordinates adds w * Cov[x_m | x_o, k].
        scatter = lay[SCATTER] + k * m
        if lay[COVARIANCE] == FULL:
            state[scatter : scatter + m] += w * conds[k].ravel()
        else:
            for i in range(d):
                state[scatter + i] += w * conds[k, i, i]
    for k in range(k_total):
        factorise(state, lay, k, state[REG])
    state[N_SEEN] += 1.0
    if any_dead(state, lay):
        reseed_dead(state)
    return OK
