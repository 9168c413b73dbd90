"""Compiled per-tick and per-batch kernels of the online Gaussian mixture.

Everything here is pure arithmetic on one flat ``float64`` buffer (the *state*); there is no I/O,
no dicts and no Python objects. Keeping the whole model in one contiguous buffer is what makes
``learn_one`` cheap: numba unboxes one array instead of a dozen, and the batch path
(:func:`learn_batch`) runs exactly the same :func:`_learn_point` as the per-tick path, so the two
agree to the bit.

The buffer is declared by :data:`TABLE`: the shape, where each region starts, then the header
slots. ``mass``, ``means`` and ``scatter`` are the decayed sufficient statistics of each
component, kept in centred form (mean and scatter about the mean, never raw second moments).
``factor`` and ``log_norm`` are derived from them after every update: the row-major lower
Cholesky factor L of the floored covariance for "full", per-dimension standard deviations
otherwise, and log N_k - log det L. The ring holds recent points and their log-likelihoods,
used to reseed dead components.

Hot helpers take the buffer and its layout tuple (:func:`layout`), never array views: numba passes
each array argument with reference-count traffic, which at D=2 costs more than the arithmetic.
"""

from __future__ import annotations

import math

import numpy as np

from streamgmm._layout import Table, read_ints
from streamgmm._numeric import LOG_2PI, MAX_ABS_VALUE, TINY, hot, jit

FULL, DIAG, SPHERICAL = range(3)
STEPWISE, DECAY = range(2)

#: The table: the shape is K components, D features, a ring of R recent points, and M floats per
#: component's scatter or factor (D * D for "full", D otherwise).
TABLE = Table("n_components", "n_features", "ring_size", "stride")
N_COMPONENTS, N_FEATURES, RING_SIZE, STRIDE = TABLE.shape
#: FULL, DIAG or SPHERICAL (the kernels branch on it, so it is read with the shape).
(COVARIANCE,) = TABLE.slots(1)
# -- where each region starts: the decayed sufficient statistics, their factors, the ring of
#    recent points and their log-likelihoods, and working space (the point, its
#    responsibilities, a work vector) -----------------------------------------------------
MASS = TABLE.region("mass", lambda k, d, r, m: k)
MEANS = TABLE.region("means", lambda k, d, r, m: k * d)
SCATTER = TABLE.region("scatter", lambda k, d, r, m: k * m)
FACTOR = TABLE.region("factor", lambda k, d, r, m: k * m)
LOG_NORM = TABLE.region("log_norm", lambda k, d, r, m: k)
RING_X = TABLE.region("ring_x", lambda k, d, r, m: r * d)
RING_SCORE = TABLE.region("ring_score", lambda k, d, r, m: r)
X = TABLE.region("x", lambda k, d, r, m: d)
P = TABLE.region("p", lambda k, d, r, m: k)
W = TABLE.region("w", lambda k, d, r, m: d)
END = TABLE.end()
# -- header slots: settings, then the state's scalars ------------------------------------------
SCHEDULE, DECAY_FACTOR, ALPHA, REG, MIN_WEIGHT = TABLE.slots(5)
N_SEEN, N_RESEEDS, RING_POS, RING_FILL = TABLE.slots(4)

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


@hot
def layout(state):
    """The shape and where each region starts, as integers (the header's first slots)."""
    return read_ints(state, END)


def new_state(n_components: int, n_features: int, cov_type: int, ring_size: int) -> np.ndarray:
    """A zeroed buffer with its shape, table of contents and covariance type written."""
    stride = n_features * n_features if cov_type == FULL else n_features
    state = TABLE.new(n_components, n_features, ring_size, stride)
    state[COVARIANCE] = cov_type
    return state


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
    lay = layout(state)
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
def _posterior(state, lay, ox):
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
def _update(state, lay, k, ox, w, keep):
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
def _schedule(state):
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
def _any_dead(state, lay):
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
def _reseed_dead(state):
    """Move each component whose weight fell below min_weight onto the worst-explained recent point.

    The reseeded component gets mass total/(2K) and the pooled within-component covariance, so it
    starts as a plausible cluster of typical spread rather than a spike.
    """
    lay = layout(state)
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
    score = _posterior(state, lay, ox)
    keep, step = _schedule(state)
    reg = state[REG]
    for k in range(lay[N_COMPONENTS]):
        _update(state, lay, k, ox, step * state[lay[P] + k], keep)
        factorise(state, lay, k, reg)
    _remember(state, lay, ox, score)
    state[N_SEEN] += 1.0
    if _any_dead(state, lay):
        _reseed_dead(state)
    return OK


# --------------------------------------------------------------------------------------------
# Partially observed points: exact marginals for scoring, conditional expectations for learning.
# This path is rare, so it favours plain dense linear algebra over speed.
# --------------------------------------------------------------------------------------------


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
    lay = layout(state)
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
    lay = layout(state)
    k_total, d, m = lay[N_COMPONENTS], lay[N_FEATURES], lay[STRIDE]
    x_obs = x[observed]
    for i in range(x_obs.shape[0]):
        if not math.isfinite(x_obs[i]):
            return -(i + 1) * 4 - NON_FINITE
        if abs(x_obs[i]) > MAX_ABS_VALUE:
            return -(i + 1) * 4 - OUT_OF_RANGE
    resp = np.empty(k_total)
    posterior_partial(state, x, observed, resp)
    keep, step = _schedule(state)
    x_hats = np.empty((k_total, d))
    conds = np.empty((k_total, d, d))
    for k in range(k_total):
        _, x_hats[k], conds[k] = _marginal(state, lay, k, x, observed)
    ox = lay[X]
    for k in range(k_total):
        w = step * resp[k]
        state[ox : ox + d] = x_hats[k]
        _update(state, lay, k, ox, w, keep)
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
    if _any_dead(state, lay):
        _reseed_dead(state)
    return OK


# --------------------------------------------------------------------------------------------
# Entry points called from Python.
# --------------------------------------------------------------------------------------------


@jit
def learn_tuple(state, values):
    """Per-tick entry point: ``values`` is a tuple of floats in feature order."""
    lay = layout(state)
    ox = lay[X]
    for i in range(len(values)):
        state[ox + i] = values[i]
    return _learn_point(state, lay)


@jit
def learn_batch(state, data):
    """Learn rows in order with the per-tick step; returns OK or the first bad row's status."""
    lay = layout(state)
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
    lay = layout(state)
    ox, p = lay[X], lay[P]
    scores = np.empty(data.shape[0])
    for i in range(data.shape[0]):
        for j in range(data.shape[1]):
            state[ox + j] = data[i, j]
        scores[i] = _posterior(state, lay, ox)
        for k in range(lay[N_COMPONENTS]):
            out[i, k] = state[p + k]
    return scores


@jit
def posterior_tuple(state, values, out):
    """out[k] = p(k | x) for a tuple of floats in feature order; returns (status, log p(x)).

    The per-tick inference entry point: values are checked here, as in :func:`learn_tuple`, so
    the caller need not build and scan an array first.
    """
    lay = layout(state)
    ox, p = lay[X], lay[P]
    for i in range(len(values)):
        state[ox + i] = values[i]
    status = _check_values(state, ox, lay[N_FEATURES])
    if status != OK:
        return status, 0.0
    score = _posterior(state, lay, ox)
    for k in range(lay[N_COMPONENTS]):
        out[k] = state[p + k]
    return OK, score


@jit
def posterior_one(state, x, out):
    """out[k] = p(k | x); returns log p(x)."""
    lay = layout(state)
    ox, p = lay[X], lay[P]
    for j in range(x.shape[0]):
        state[ox + j] = x[j]
    score = _posterior(state, lay, ox)
    for k in range(lay[N_COMPONENTS]):
        out[k] = state[p + k]
    return score


@jit
def remember(state, x, score):
    """Put x with its log-likelihood into the ring of recent points (used after warm-up)."""
    lay = layout(state)
    ox = lay[X]
    for j in range(x.shape[0]):
        state[ox + j] = x[j]
    _remember(state, lay, ox, score)


# --------------------------------------------------------------------------------------------
# Warm-up: batch EM on the buffered points, sharing the log-densities and factorisations above.
# --------------------------------------------------------------------------------------------


@jit
def batch_em(state, data, labels, n_iter):
    """Hard-assignment M-step from ``labels``, then ``n_iter`` EM rounds; returns mean log-lik.

    Leaves the state holding normalised statistics: mass = mixture weights, scatter = weight *
    covariance (before the floor). The caller rescales mass and scatter for its schedule.
    """
    lay = layout(state)
    k_total, d, m = lay[N_COMPONENTS], lay[N_FEATURES], lay[STRIDE]
    n = data.shape[0]
    full = lay[COVARIANCE] == FULL
    ox, p = lay[X], lay[P]
    resp = np.zeros((n, k_total))
    for i in range(n):
        resp[i, labels[i]] = 1.0
    mean_ll = -np.inf
    for it in range(n_iter + 1):
        # M-step, two-pass: means first, then the scatter about them.
        for k in range(k_total):
            nk = 0.0
            mu = np.zeros(d)
            for i in range(n):
                nk += resp[i, k]
                mu += resp[i, k] * data[i]
            # 10*eps keeps an empty component defined, as scikit-learn does.
            nk += 10.0 * np.finfo(np.float64).eps
            mu /= nk
            s = np.zeros(m)
            for i in range(n):
                r = resp[i, k]
                if r == 0.0:
                    continue
                for a in range(d):
                    da = data[i, a] - mu[a]
                    if full:
                        for b in range(d):
                            s[a * d + b] += r * da * (data[i, b] - mu[b])
                    else:
                        s[a] += r * da * da
            state[lay[MASS] + k] = nk / n
            state[lay[MEANS] + k * d : lay[MEANS] + (k + 1) * d] = mu
            state[lay[SCATTER] + k * m : lay[SCATTER] + (k + 1) * m] = s / n
            factorise(state, lay, k, state[REG])
        if it == n_iter:
            break
        total = 0.0
        for i in range(n):
            for j in range(d):
                state[ox + j] = data[i, j]
            total += _posterior(state, lay, ox)
            for k in range(k_total):
                resp[i, k] = state[p + k]
        mean_ll = total / n
    return mean_ll


def regions(state: np.ndarray) -> dict[str, np.ndarray]:
    """Named flat views of the regions, for Python-side reading and restoring."""
    return TABLE.views(state)
