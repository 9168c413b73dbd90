"""Compiled per-tick and per-batch kernels of the online Gaussian mixture.

Everything here is pure arithmetic on the model's flat ``float64`` buffer (the *state*, laid out
by :mod:`streamgmm.mixture.layout`); there is no I/O, no dicts and no Python objects. Keeping
the whole model in one contiguous buffer is what makes ``learn_one`` cheap: numba unboxes one
array instead of a dozen, and the batch path (:func:`learn_batch`) runs exactly the same
:func:`_learn_point` as the per-tick path, so the two agree to the bit.

One step, for a point: the E-step (:func:`posterior`: responsibilities in log space from the
Cholesky factors), the centred M-step (:func:`update`) under the schedule (:func:`schedule`),
the refactorisation of each component (:func:`factorise`), the ring of recent points, and the
reseeding of dead components. :mod:`streamgmm.mixture.missing` runs the same step for a point
with missing features, :mod:`streamgmm.mixture.warmup` fits the first buffer by batch EM, and
the regime detectors' emission model uses :func:`log_gauss_full` and :func:`factorise`.

Hot helpers take the buffer and its layout tuple (:func:`~streamgmm.mixture.layout.read_layout`),
never array views: numba passes each array argument with reference-count traffic, which at
D=2 costs more than the arithmetic.
"""

from __future__ import annotations

import math

import numpy as np

from streamgmm._numeric import LOG_2PI, MAX_ABS_VALUE, TINY, hot, jit
from streamgmm.mixture.layout import (
    ALPHA,
    COVARIANCE,
    DECAY,
    DECAY_FACTOR,
    FACTOR,
    FULL,
    LOG_NORM,
    MASS,
    MEANS,
    MIN_WEIGHT,
    N_COMPONENTS,
    N_FEATURES,
    N_RESEEDS,
    N_SEEN,
    REG,
    RING_FILL,
    RING_POS,
    RING_SCORE,
    RING_SIZE,
    RING_X,
    SCATTER,
    SCHEDULE,
    SPHERICAL,
    STRIDE,
    P,
    W,
    X,
    read_layout,
)

# A floor relative to the largest variance keeps every covariance's condition number below ~1e9,
# so its Cholesky factor exists in float64 even when features sit at 1e12 with 1e-12 spread.
RELATIVE_FLOOR = 1e-9
# Squared Mahalanobis distances are capped so that log-densities stay finite.
MAX_MAHALANOBIS = 1e300
# Marks a ring entry already used for a reseed, so two dead components never share a seed point.
USED_SCORE = 1e308
# Cholesky retries, each with a tenfold larger diagonal shift. The first shift is at least 1e-9
# of the largest variance, so 64 tries reach 1e55 times it: more than any finite indefiniteness
# of a symmetric matrix needs. Only non-finite statistics exhaust them.
MAX_SHIFT_TRIES = 64

OK, NON_FINITE, OUT_OF_RANGE = range(3)


# --------------------------------------------------------------------------------------------
# Covariance-type specifics: log-density and M-step factorisation.
# --------------------------------------------------------------------------------------------


@hot
def log_gauss_full(state, lay, k, ox):
    """log N_k - log det L_k - ½(D log 2π + |L⁻¹(x - μ_k)|²), by forward substitution.

    ``ox`` is where x starts in the buffer; the solve is written to the scratch vector.
    """
    d = lay[N_FEATURES]
    mean = lay[MEANS] + k * d
    fac = lay[FACTOR] + k * lay[STRIDE]
    work = lay[W]
    maha = 0.0
    for i in range(d):
        s = state[ox + i] - state[mean + i]
        row = fac + i * d
        for j in range(i):
            s -= state[row + j] * state[work + j]
        z = s / state[row + i]
        state[work + i] = z
        maha += z * z
    maha = min(maha, MAX_MAHALANOBIS)
    return state[lay[LOG_NORM] + k] - 0.5 * (d * LOG_2PI + maha)


@hot
def _log_gauss_diag(state, lay, k, ox):
    """As :func:`log_gauss_full` with diagonal standard deviations ("diag" and "spherical")."""
    d = lay[N_FEATURES]
    mean = lay[MEANS] + k * d
    std = lay[FACTOR] + k * d
    maha = 0.0
    for i in range(d):
        z = (state[ox + i] - state[mean + i]) / state[std + i]
        maha += z * z
    maha = min(maha, MAX_MAHALANOBIS)
    return state[lay[LOG_NORM] + k] - 0.5 * (d * LOG_2PI + maha)


@hot
def _cholesky_shifted(state, scatter, inv_mass, shift, d, out):
    """Lower factor of scatter * inv_mass + shift * I, written at ``out``; False if not SPD."""
    for i in range(d):
        for j in range(i + 1):
            s = state[scatter + i * d + j] * inv_mass
            if i == j:
                s += shift
            for m in range(j):
                s -= state[out + i * d + m] * state[out + j * d + m]
            if i == j:
                if not s > 0.0:
                    return False
                state[out + i * d + i] = math.sqrt(s)
            else:
                state[out + i * d + j] = s / state[out + j * d + j]
        for j in range(i + 1, d):
            state[out + i * d + j] = 0.0
    return True


@hot
def _factorise_full(state, lay, k, reg_covar):
    """Cholesky factor of the floored covariance of component k; returns det L."""
    d = lay[N_FEATURES]
    scatter = lay[SCATTER] + k * lay[STRIDE]
    out = lay[FACTOR] + k * lay[STRIDE]
    mass = state[lay[MASS] + k]
    inv_mass = 1.0 / mass if mass > 0.0 else 0.0
    largest = 0.0
    for i in range(d):
        largest = max(largest, state[scatter + i * d + i] * inv_mass)
    shift = reg_covar + RELATIVE_FLOOR * largest
    if not shift > 0.0:
        shift = TINY
    # Rounding can leave a numerically indefinite matrix; growing the shift is deterministic.
    # The retries are bounded: statistics no shift can repair (a restored state with an
    # infinite or NaN scatter, say) fall back to a diagonal factor instead of looping.
    factored = False
    for _ in range(MAX_SHIFT_TRIES):
        if _cholesky_shifted(state, scatter, inv_mass, shift, d, out):
            factored = True
            break
        shift *= 10.0
    if not factored:
        for i in range(d):
            v = state[scatter + i * d + i] * inv_mass + shift
            state[out + i * d + i] = math.sqrt(v) if v > 0.0 and v < np.inf else 1.0
            for j in range(d):
                if j != i:
                    state[out + i * d + j] = 0.0
    det_root = 1.0
    for i in range(d):
        det_root *= state[out + i * d + i]
    return det_root


@hot
def _factorise_diag(state, lay, k, reg_covar):
    """Per-dimension standard deviations ("spherical" shares one variance); returns the product."""
    d = lay[N_FEATURES]
    scatter = lay[SCATTER] + k * d
    out = lay[FACTOR] + k * d
    mass = state[lay[MASS] + k]
    inv_mass = 1.0 / mass if mass > 0.0 else 0.0
    largest = 0.0
    total = 0.0
    for i in range(d):
        v = state[scatter + i] * inv_mass
        largest = max(largest, v)
        total += v
    shift = reg_covar + RELATIVE_FLOOR * largest
    if not shift > 0.0:
        shift = TINY
    spherical = lay[COVARIANCE] == SPHERICAL
    det_root = 1.0
    for i in range(d):
        v = (total / d if spherical else state[scatter + i] * inv_mass) + shift
        state[out + i] = math.sqrt(v)
        det_root *= state[out + i]
    return det_root


@hot
def factorise(state, lay, k, reg_covar):
    """Refresh component k's factor and log_norm[k] = log N_k - log det L_k.

    Folding the unnormalised log-weight into the determinant term costs one log per component
    per tick instead of two; transcendental calls matter at small D.
    """
    if lay[COVARIANCE] == FULL:
        det_root = _factorise_full(state, lay, k, reg_covar)
    else:
        det_root = _factorise_diag(state, lay, k, reg_covar)
    mass = state[lay[MASS] + k]
    slot = lay[LOG_NORM] + k
    if not mass > 0.0:
        state[slot] = -np.inf
        return
    ratio = mass / det_root
    if ratio > 0.0 and ratio < np.inf and det_root < np.inf:
        state[slot] = math.log(ratio)
        return
    # The product under- or overflowed (extreme scales): sum the logs instead.
    d = lay[N_FEATURES]
    stride = d + 1 if lay[COVARIANCE] == FULL else 1
    fac = lay[FACTOR] + k * lay[STRIDE]
    log_det_root = 0.0
    for i in range(d):
        log_det_root += math.log(state[fac + i * stride])
    state[slot] = math.log(mass) - log_det_root


@jit
def refactorise_all(state):
    """Recompute every component's factor from its sufficient statistics (after a restore)."""
    lay = read_layout(state)
    for k in range(lay[N_COMPONENTS]):
        factorise(state, lay, k, state[REG])


# --------------------------------------------------------------------------------------------
# E-step: responsibilities in log space.
# --------------------------------------------------------------------------------------------


@hot
def _normalise_log(state, start, n, best):
    """Turn n log-terms at ``start`` (maximum ``best``) into probabilities; returns log-sum-exp.

    The exponentials taken for the sum are reused as the probabilities.
    """
    acc = 0.0
    for k in range(n):
        e = math.exp(state[start + k] - best)
        state[start + k] = e
        acc += e
    for k in range(n):
        state[start + k] /= acc
    return best + math.log(acc)


@hot
def posterior(state, lay, ox):
    """E-step for the point at ``ox``: p(k | x) into the scratch slots; returns log p(x)."""
    k_total = lay[N_COMPONENTS]
    p = lay[P]
    total = 0.0
    best = -np.inf
    for k in range(k_total):
        total += state[lay[MASS] + k]
        if lay[COVARIANCE] == FULL:
            lp = log_gauss_full(state, lay, k, ox)
        else:
            lp = _log_gauss_diag(state, lay, k, ox)
        state[p + k] = lp
        best = max(best, lp)
    return _normalise_log(state, p, k_total, best) - math.log(total)


@hot
def _check_values(state, start, n):
    """OK, or -(4 * (index + 1) + reason) so the caller can name the offending feature."""
    for i in range(n):
        v = state[start + i]
        if not math.isfinite(v):
            return -(i + 1) * 4 - NON_FINITE
        if abs(v) > MAX_ABS_VALUE:
            return -(i + 1) * 4 - OUT_OF_RANGE
    return OK


# --------------------------------------------------------------------------------------------
# M-step: centred updates of the decayed sufficient statistics.
# --------------------------------------------------------------------------------------------


@hot
def update(state, lay, k, ox, w, keep):
    """mass <- keep*mass + w; centred (West/Welford) update of mean and scatter.

    S <- keep*S + w (1 - w/mass) δδᵀ with δ = x - mean_old equals the decayed scatter about the new
    mean exactly, is symmetric positive semi-definite by construction, and never forms raw second
    moments.
    """
    d = lay[N_FEATURES]
    slot = lay[MASS] + k
    new_mass = keep * state[slot] + w
    state[slot] = new_mass
    if not new_mass > 0.0:
        return
    frac = w / new_mass
    mean = lay[MEANS] + k * d
    delta = lay[W]
    for i in range(d):
        diff = state[ox + i] - state[mean + i]
        state[delta + i] = diff
        state[mean + i] += frac * diff
    c = w * (1.0 - frac)
    scatter = lay[SCATTER] + k * lay[STRIDE]
    if lay[COVARIANCE] == FULL:
        for i in range(d):
            for j in range(i + 1):
                v = keep * state[scatter + i * d + j] + c * state[delta + i] * state[delta + j]
                state[scatter + i * d + j] = v
                state[scatter + j * d + i] = v
    else:
        for i in range(d):
            state[scatter + i] = keep * state[scatter + i] + c * state[delta + i] ** 2


@hot
def schedule(state):
    """(keep, step) for the next update: decayed sums, or Liang & Klein's stepwise η_t."""
    if int(state[SCHEDULE]) == DECAY:
        return state[DECAY_FACTOR], 1.0
    alpha = state[ALPHA]
    # alpha = 1 (a running average) is the default; a division is far cheaper than pow().
    eta = 1.0 / (state[N_SEEN] + 2.0) if alpha == 1.0 else (state[N_SEEN] + 2.0) ** (-alpha)
    return 1.0 - eta, eta


@hot
def _remember(state, lay, ox, score):
    """Write the point at ``ox`` and its log-likelihood into the ring of recent points."""
    r = lay[RING_SIZE]
    if r == 0:
        return
    d = lay[N_FEATURES]
    pos = int(state[RING_POS])
    for i in range(d):
        state[lay[RING_X] + pos * d + i] = state[ox + i]
    state[lay[RING_SCORE] + pos] = score
    state[RING_POS] = pos + 1 if pos + 1 < r else 0
    state[RING_FILL] = min(state[RING_FILL] + 1.0, r)


@hot
def any_dead(state, lay):
    total = 0.0
    for k in range(lay[N_COMPONENTS]):
        total += state[lay[MASS] + k]
    threshold = state[MIN_WEIGHT] * total
    # An explicit loop: numba cannot compile any() over a generator.
    for k in range(lay[N_COMPONENTS]):  # noqa: SIM110
        if state[lay[MASS] + k] < threshold:
            return True
    return False


@jit
def reseed_dead(state):
    """Move each component whose weight fell below min_weight onto the worst-explained recent point.

    The reseeded component gets mass total/(2K) and the pooled within-component covariance, so it
    starts as a plausible cluster of typical spread rather than a spike.
    """
    lay = read_layout(state)
    k_total, d, m = lay[N_COMPONENTS], lay[N_FEATURES], lay[STRIDE]
    mass = state[lay[MASS] : lay[MASS + 1]]
    means = state[lay[MEANS] : lay[MEANS + 1]]
    scatter = state[lay[SCATTER] : lay[SCATTER + 1]]
    ring_x = state[lay[RING_X] : lay[RING_X + 1]]
    ring_score = state[lay[RING_SCORE] : lay[RING_SCORE + 1]]
    fill = int(state[RING_FILL])
    if k_total < 2 or fill == 0:
        return
    min_weight = state[MIN_WEIGHT]
    for k in range(k_total):
        total = mass.sum()
        if not mass[k] < min_weight * total:
            continue
        worst = -1
        for i in range(fill):
            if ring_score[i] < USED_SCORE and (worst < 0 or ring_score[i] < ring_score[worst]):
                worst = i
        if worst < 0:
            return
        others = total - mass[k]
        new_mass = total / (2.0 * k_total)
        pooled = np.zeros(m)
        for j in range(k_total):
            if j != k:
                pooled += scatter[j * m : (j + 1) * m]
        scatter[k * m : (k + 1) * m] = pooled * (new_mass / others)
        means[k * d : (k + 1) * d] = ring_x[worst * d : (worst + 1) * d]
        mass[k] = new_mass
        ring_score[worst] = USED_SCORE
        factorise(state, lay, k, state[REG])
        state[N_RESEEDS] += 1.0


@hot
def _learn_point(state, lay):
    """One online-EM step on the point in the scratch slots: E-step, centred M-step, refactorise,
    remember, reseed."""
    ox = lay[X]
    status = _check_values(state, ox, lay[N_FEATURES])
    if status != OK:
        return status
    score = posterior(state, lay, ox)
    keep, step = schedule(state)
    reg = state[REG]
    for k in range(lay[N_COMPONENTS]):
        update(state, lay, k, ox, step * state[lay[P] + k], keep)
        factorise(state, lay, k, reg)
    _remember(state, lay, ox, score)
    state[N_SEEN] += 1.0
    if any_dead(state, lay):
        reseed_dead(state)
    return OK


# --------------------------------------------------------------------------------------------
# Entry points called from Python.
# --------------------------------------------------------------------------------------------


@jit
def learn_tuple(state, values):
    """Per-tick entry point: ``values`` is a tuple of floats in feature order."""
    lay = read_layout(state)
    ox = lay[X]
    for i in range(len(values)):
        state[ox + i] = values[i]
    return _learn_point(state, lay)


@jit
def learn_batch(state, data):
    """Learn rows in order with the per-tick step; returns OK or the first bad row's status."""
    lay = read_layout(state)
    ox = lay[X]
    for i in range(data.shape[0]):
        for j in range(data.shape[1]):
            state[ox + j] = data[i, j]
        status = _learn_point(state, lay)
        if status != OK:
            return status
    return OK


@jit
def posterior_batch(state, data, out):
    """out[i, k] = p(k | x_i); returns the per-row log-likelihoods. Leaves statistics untouched."""
    lay = read_layout(state)
    ox, p = lay[X], lay[P]
    scores = np.empty(data.shape[0])
    for i in range(data.shape[0]):
        for j in range(data.shape[1]):
            state[ox + j] = data[i, j]
        scores[i] = posterior(state, lay, ox)
        for k in range(lay[N_COMPONENTS]):
            out[i, k] = state[p + k]
    return scores


@jit
def posterior_tuple(state, values, out):
    """out[k] = p(k | x) for a tuple of floats in feature order; returns (status, log p(x)).

    The per-tick inference entry point: values are checked here, as in :func:`learn_tuple`, so
    the caller need not build and scan an array first.
    """
    lay = read_layout(state)
    ox, p = lay[X], lay[P]
    for i in range(len(values)):
        state[ox + i] = values[i]
    status = _check_values(state, ox, lay[N_FEATURES])
    if status != OK:
        return status, 0.0
    score = posterior(state, lay, ox)
    for k in range(lay[N_COMPONENTS]):
        out[k] = state[p + k]
    return OK, score


@jit
def posterior_one(state, x, out):
    """out[k] = p(k | x); returns log p(x)."""
    lay = read_layout(state)
    ox, p = lay[X], lay[P]
    for j in range(x.shape[0]):
        state[ox + j] = x[j]
    score = posterior(state, lay, ox)
    for k in range(lay[N_COMPONENTS]):
        out[k] = state[p + k]
    return score


@jit
def remember(state, x, score):
    """Put x with its log-likelihood into the ring of recent points (used after warm-up)."""
    lay = read_layout(state)
    ox = lay[X]
    for j in range(x.shape[0]):
        state[ox + j] = x[j]
    _remember(state, lay, ox, score)
