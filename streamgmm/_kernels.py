"""Compiled per-tick and per-batch kernels of the online Gaussian mixture.

Everything here is pure arithmetic on one flat ``float64`` buffer (the *state*); there is no I/O,
no dicts and no Python objects. Keeping the whole model in one contiguous buffer is what makes
``learn_one`` cheap: numba unboxes one array instead of a dozen, and the batch path
(:func:`learn_batch`) loops over exactly the same :func:`_learn_point` as the per-tick path, so the
two agree to the bit.

Buffer layout (see :func:`offsets`)::

    header (16 slots) | mass (K) | means (K*D) | scatter (K*D*D or K*D) | factor (same) |
    log_norm (K) | ring_x (R*D) | ring_score (R) | scratch_x (D) | scratch_p (K) | scratch_d (D)

``mass``, ``means`` and ``scatter`` are the decayed sufficient statistics of each component, kept in
centred form (mean and scatter about the mean, never raw second moments). ``factor`` and
``log_norm`` are derived from them after every update: the lower Cholesky factor of the
(floored) covariance for "full", and per-dimension standard deviations for "diag" and "spherical".
The ring holds recent points and their log-likelihoods, used to reseed dead components.
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np

FULL, DIAG, SPHERICAL = 0, 1, 2
STEPWISE, DECAY = 0, 1

# Header slots.
H_K, H_D, H_COV, H_SCHEDULE, H_DECAY, H_ALPHA, H_REG, H_MIN_WEIGHT = 0, 1, 2, 3, 4, 5, 6, 7
H_N_SEEN, H_N_RESEEDS, H_RING_SIZE, H_RING_POS, H_RING_FILL = 8, 9, 10, 11, 12
HEADER_SIZE = 16

# A floor relative to the largest variance keeps every covariance's condition number below ~1e9,
# so its Cholesky factor exists in float64 even when features sit at 1e12 with 1e-12 spread.
RELATIVE_FLOOR = 1e-9
# Inputs beyond this magnitude could overflow squared distances; they are rejected as out of range.
MAX_ABS_VALUE = 1e100
# Squared Mahalanobis distances are capped so that log-densities stay finite.
MAX_MAHALANOBIS = 1e300
# Marks a ring entry already used for a reseed, so two dead components never share a seed point.
USED_SCORE = 1e308
LOG_2PI = math.log(2.0 * math.pi)

OK, NON_FINITE, OUT_OF_RANGE = 0, 1, 2

# error_model="numpy": divisions are guarded explicitly, so numba's per-division zero checks (which
# would raise ZeroDivisionError) only cost time on the hot path.
_jit = nb.njit(cache=True, error_model="numpy")
# Hot helpers are inlined at numba-IR level: a call between jitted functions passes every array
# with reference-count traffic, which costs ~10x the arithmetic of a D=2 update.
_hot = nb.njit(cache=True, error_model="numpy", inline="always")


@_hot
def offsets(n_components: int, n_features: int, cov_type: int, ring_size: int):
    """Start of each region in the state buffer, and the buffer's total length."""
    k, d = n_components, n_features
    block = d * d if cov_type == FULL else d
    mass = HEADER_SIZE
    means = mass + k
    scatter = means + k * d
    factor = scatter + k * block
    log_norm = factor + k * block
    ring_x = log_norm + k
    ring_score = ring_x + ring_size * d
    scratch_x = ring_score + ring_size
    scratch_p = scratch_x + d
    scratch_d = scratch_p + k
    end = scratch_d + d
    return (
        mass,
        means,
        scatter,
        factor,
        log_norm,
        ring_x,
        ring_score,
        scratch_x,
        scratch_p,
        scratch_d,
        end,
    )


@_hot
def _views(state):
    """Flat views of each region. Reshaping costs ~100 ns a call in numba, slicing nothing, so
    kernels index component k of a (K, m) region as ``region[k * m:(k + 1) * m]``."""
    k = int(state[H_K])
    d = int(state[H_D])
    cov = int(state[H_COV])
    r = int(state[H_RING_SIZE])
    (
        o_mass,
        o_means,
        o_scatter,
        o_factor,
        o_log_norm,
        o_ring_x,
        o_ring_s,
        o_sx,
        o_sp,
        o_sd,
        end,
    ) = offsets(k, d, cov, r)
    return (
        state[o_mass:o_means],
        state[o_means:o_scatter],
        state[o_scatter:o_factor],
        state[o_factor:o_log_norm],
        state[o_log_norm:o_ring_x],
        state[o_ring_x:o_ring_s],
        state[o_ring_s:o_sx],
        state[o_sx:o_sp],
        state[o_sp:o_sd],
        state[o_sd:end],
    )


# --------------------------------------------------------------------------------------------
# Covariance-type specifics: log-density and M-step factorisation. ``m`` is the per-component
# block size (D*D for "full", D otherwise) and ``o`` a component's offset into a flat region.
# --------------------------------------------------------------------------------------------


@_hot
def _log_gauss_full(x, means, o_mean, factor, o_factor, log_norm, work):
    """log N_k + log N(x | mean, L Lᵀ), by forward substitution with the row-major factor L."""
    d = x.shape[0]
    maha = 0.0
    for i in range(d):
        s = x[i] - means[o_mean + i]
        row = o_factor + i * d
        for j in range(i):
            s -= factor[row + j] * work[j]
        z = s / factor[row + i]
        work[i] = z
        maha += z * z
    maha = min(maha, MAX_MAHALANOBIS)
    return log_norm - 0.5 * (d * LOG_2PI + maha)


@_hot
def _log_gauss_diag(x, means, o_mean, std, o_std, log_norm):
    """log N_k + log N(x | mean, diag(std²)); serves "diag" and "spherical" alike."""
    d = x.shape[0]
    maha = 0.0
    for i in range(d):
        z = (x[i] - means[o_mean + i]) / std[o_std + i]
        maha += z * z
    maha = min(maha, MAX_MAHALANOBIS)
    return log_norm - 0.5 * (d * LOG_2PI + maha)


@_hot
def _cholesky_shifted(scatter, o, inv_mass, shift, d, out):
    """Lower Cholesky factor of scatter * inv_mass + shift * I into ``out``; False if not SPD."""
    for i in range(d):
        for j in range(i + 1):
            s = scatter[o + i * d + j] * inv_mass
            if i == j:
                s += shift
            for m in range(j):
                s -= out[o + i * d + m] * out[o + j * d + m]
            if i == j:
                if not s > 0.0:
                    return False
                out[o + i * d + i] = math.sqrt(s)
            else:
                out[o + i * d + j] = s / out[o + j * d + j]
        for j in range(i + 1, d):
            out[o + i * d + j] = 0.0
    return True


@_hot
def _factorise_full(scatter, mass_k, reg_covar, d, o, out):
    """Cholesky factor of the floored covariance; returns det(L) = sqrt(det Σ)."""
    inv_mass = 1.0 / mass_k if mass_k > 0.0 else 0.0
    largest = 0.0
    for i in range(d):
        largest = max(largest, scatter[o + i * d + i] * inv_mass)
    shift = reg_covar + RELATIVE_FLOOR * largest
    if not shift > 0.0:
        shift = np.finfo(np.float64).tiny
    # Rounding can leave a numerically indefinite matrix; growing the shift is deterministic.
    while not _cholesky_shifted(scatter, o, inv_mass, shift, d, out):
        shift *= 10.0
    det_root = 1.0
    for i in range(d):
        det_root *= out[o + i * d + i]
    return det_root


@_hot
def _factorise_diag(scatter, mass_k, reg_covar, spherical, d, o, out):
    """Per-dimension standard deviations ("spherical" shares one variance); returns the product."""
    inv_mass = 1.0 / mass_k if mass_k > 0.0 else 0.0
    largest = 0.0
    total = 0.0
    for i in range(d):
        v = scatter[o + i] * inv_mass
        largest = max(largest, v)
        total += v
    shift = reg_covar + RELATIVE_FLOOR * largest
    if not shift > 0.0:
        shift = np.finfo(np.float64).tiny
    det_root = 1.0
    for i in range(d):
        v = (total / d if spherical else scatter[o + i] * inv_mass) + shift
        out[o + i] = math.sqrt(v)
        det_root *= out[o + i]
    return det_root


@_hot
def _factorise_k(mass, scatter, factor, log_norm, k, d, cov, reg):
    """Refresh component k's factor and log_norm[k] = log N_k - log det L_k.

    Folding the unnormalised log-weight into the determinant term costs one log per component
    per tick instead of two; transcendental calls dominate the per-tick cost at small D.
    """
    m = d * d if cov == FULL else d
    if cov == FULL:
        det_root = _factorise_full(scatter, mass[k], reg, d, k * m, factor)
    else:
        det_root = _factorise_diag(scatter, mass[k], reg, cov == SPHERICAL, d, k * m, factor)
    if not mass[k] > 0.0:
        log_norm[k] = -np.inf
        return
    ratio = mass[k] / det_root
    if ratio > 0.0 and ratio < np.inf and det_root < np.inf:
        log_norm[k] = math.log(ratio)
        return
    # The product under- or overflowed (extreme scales): sum the logs instead.
    step = d + 1 if cov == FULL else 1
    log_det_root = 0.0
    for i in range(d):
        log_det_root += math.log(factor[k * m + i * step])
    log_norm[k] = math.log(mass[k]) - log_det_root


@_jit
def _factorise(state, k):
    mass, _, scatter, factor, log_norm, _, _, _, _, _ = _views(state)
    _factorise_k(
        mass, scatter, factor, log_norm, k, int(state[H_D]), int(state[H_COV]), state[H_REG]
    )


@_jit
def refactorise_all(state):
    """Recompute every component's factor from its sufficient statistics (after a restore)."""
    for k in range(int(state[H_K])):
        _factorise(state, k)


# --------------------------------------------------------------------------------------------
# E-step: responsibilities in log space.
# --------------------------------------------------------------------------------------------


@_hot
def _posterior_arrays(mass, means, factor, log_norm, work, cov, x, proba):
    """E-step for one point: proba[k] = p(k | x), computed in log space; returns log p(x).

    log N_k + log N(x | k) - log Σ N_j is normalised by log-sum-exp, and the exponentials taken
    for the sum are reused as the responsibilities.
    """
    k_total = mass.shape[0]
    d = x.shape[0]
    m = d * d if cov == FULL else d
    best = -np.inf
    for k in range(k_total):
        if cov == FULL:
            proba[k] = _log_gauss_full(x, means, k * d, factor, k * m, log_norm[k], work)
        else:
            proba[k] = _log_gauss_diag(x, means, k * d, factor, k * m, log_norm[k])
        best = max(best, proba[k])
    return _normalise_log(proba, best) - math.log(mass.sum())


@_hot
def _normalise_log(log_p, best):
    """Turn log_p (max ``best``) into probabilities in place; returns the log-sum-exp."""
    acc = 0.0
    for k in range(log_p.shape[0]):
        log_p[k] = math.exp(log_p[k] - best)
        acc += log_p[k]
    for k in range(log_p.shape[0]):
        log_p[k] /= acc
    return best + math.log(acc)


@_jit
def _posterior(state, x, proba):
    mass, means, _, factor, log_norm, _, _, _, _, work = _views(state)
    return _posterior_arrays(mass, means, factor, log_norm, work, int(state[H_COV]), x, proba)


@_hot
def _check_values(x):
    """OK, or -(4 * (index + 1) + reason) so the caller can name the offending feature."""
    for i in range(x.shape[0]):
        v = x[i]
        if not math.isfinite(v):
            return -(i + 1) * 4 - NON_FINITE
        if abs(v) > MAX_ABS_VALUE:
            return -(i + 1) * 4 - OUT_OF_RANGE
    return OK


# --------------------------------------------------------------------------------------------
# M-step: centred updates of the decayed sufficient statistics.
# --------------------------------------------------------------------------------------------


@_hot
def _update_arrays(mass, means, scatter, delta, k, x, w, keep, full):
    """mass <- keep*mass + w; centred (West/Welford) update of mean and scatter.

    S <- keep*S + w (1 - w/mass) δδᵀ with δ = x - mean_old equals the decayed scatter about the new
    mean exactly, is symmetric positive semi-definite by construction, and never forms raw second
    moments.
    """
    d = x.shape[0]
    new_mass = keep * mass[k] + w
    mass[k] = new_mass
    if new_mass <= 0.0:
        return
    frac = w / new_mass
    om = k * d
    for i in range(d):
        delta[i] = x[i] - means[om + i]
        means[om + i] += frac * delta[i]
    c = w * (1.0 - frac)
    if full:
        o = k * d * d
        for i in range(d):
            for j in range(i + 1):
                v = keep * scatter[o + i * d + j] + c * delta[i] * delta[j]
                scatter[o + i * d + j] = v
                scatter[o + j * d + i] = v
    else:
        for i in range(d):
            scatter[om + i] = keep * scatter[om + i] + c * delta[i] * delta[i]


@_hot
def _schedule(state):
    """(keep, step) for the next update: decayed sums, or Liang & Klein's stepwise η_t."""
    if int(state[H_SCHEDULE]) == DECAY:
        return state[H_DECAY], 1.0
    alpha = state[H_ALPHA]
    # alpha = 1 (a running average) is the default; a division is far cheaper than pow().
    eta = 1.0 / (state[H_N_SEEN] + 2.0) if alpha == 1.0 else (state[H_N_SEEN] + 2.0) ** (-alpha)
    return 1.0 - eta, eta


@_hot
def _remember(state, ring_x, ring_score, x, score):
    """Write x and its log-likelihood into the ring of recent points."""
    r = ring_score.shape[0]
    if r == 0:
        return
    d = x.shape[0]
    pos = int(state[H_RING_POS])
    for i in range(d):
        ring_x[pos * d + i] = x[i]
    ring_score[pos] = score
    state[H_RING_POS] = pos + 1 if pos + 1 < r else 0
    state[H_RING_FILL] = min(state[H_RING_FILL] + 1.0, r)


@_jit
def remember(state, x, score):
    _, _, _, _, _, ring_x, ring_score, _, _, _ = _views(state)
    _remember(state, ring_x, ring_score, x, score)


@_hot
def _any_dead(mass, min_weight):
    threshold = min_weight * mass.sum()
    # An explicit loop: numba cannot compile any() over a generator.
    for k in range(mass.shape[0]):  # noqa: SIM110
        if mass[k] < threshold:
            return True
    return False


@_jit
def _reseed_dead(state):
    """Move each component whose weight fell below min_weight onto the worst-explained recent point.

    The reseeded component gets mass total/(2K) and the pooled within-component covariance, so it
    starts as a plausible cluster of typical spread rather than a spike.
    """
    mass, means, scatter, _, _, ring_x, ring_score, _, _, _ = _views(state)
    k_total = mass.shape[0]
    d = int(state[H_D])
    m = scatter.shape[0] // k_total
    fill = int(state[H_RING_FILL])
    if k_total < 2 or fill == 0:
        return
    min_weight = state[H_MIN_WEIGHT]
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
        _factorise(state, k)
        state[H_N_RESEEDS] += 1.0


@_hot
def _learn_point(state, x, mass, means, scatter, factor, log_norm, ring_x, ring_score, resp, work):
    """One online-EM step on a complete point: E-step, centred M-step, refactorise, reseed."""
    status = _check_values(x)
    if status != OK:
        return status
    cov = int(state[H_COV])
    d = x.shape[0]
    reg = state[H_REG]
    score = _posterior_arrays(mass, means, factor, log_norm, work, cov, x, resp)
    keep, step = _schedule(state)
    for k in range(resp.shape[0]):
        w = step * resp[k]
        _update_arrays(mass, means, scatter, work, k, x, w, keep, cov == FULL)
        _factorise_k(mass, scatter, factor, log_norm, k, d, cov, reg)
    _remember(state, ring_x, ring_score, x, score)
    state[H_N_SEEN] += 1.0
    if _any_dead(mass, state[H_MIN_WEIGHT]):
        _reseed_dead(state)
    return OK


# --------------------------------------------------------------------------------------------
# Partially observed points: exact marginals for scoring, conditional expectations for learning.
# --------------------------------------------------------------------------------------------


@_jit
def _component_covariance(state, k):
    """The floored covariance of component k as a dense (D, D) matrix."""
    _, _, _, factor, _, _, _, _, _, _ = _views(state)
    d = int(state[H_D])
    cov = np.zeros((d, d))
    if int(state[H_COV]) == FULL:
        o = k * d * d
        for i in range(d):
            for j in range(i + 1):
                s = 0.0
                for m in range(j + 1):
                    s += factor[o + i * d + m] * factor[o + j * d + m]
                cov[i, j] = s
                cov[j, i] = s
    else:
        for i in range(d):
            cov[i, i] = factor[k * d + i] ** 2
    return cov


@_jit
def _solve_lower(lower, b):
    n = b.shape[0]
    z = np.empty(n)
    for i in range(n):
        s = b[i]
        for j in range(i):
            s -= lower[i, j] * z[j]
        z[i] = s / lower[i, i]
    return z


@_jit
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


@_jit
def _marginal(state, k, x, observed):
    """log N(x_o | μ_o, Σ_oo) for component k, the conditional mean x̂ (observed coordinates kept)
    and the conditional covariance of the missing coordinates (zero rows/cols for observed ones)."""
    _, means, _, _, _, _, _, _, _, _ = _views(state)
    d = x.shape[0]
    mu = means[k * d : (k + 1) * d]
    cov = _component_covariance(state, k)
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
                lower[i, i] = math.sqrt(max(s, np.finfo(np.float64).tiny))
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


@_jit
def posterior_partial(state, x, observed, proba):
    """p(k | x_o) into proba for a point with missing coordinates; returns log p(x_o)."""
    mass, _, _, _, _, _, _, _, _, _ = _views(state)
    log_total = math.log(mass.sum())
    best = -np.inf
    for k in range(mass.shape[0]):
        log_w = math.log(mass[k]) - log_total if mass[k] > 0.0 else -np.inf
        log_density, _, _ = _marginal(state, k, x, observed)
        proba[k] = log_w + log_density
        best = max(best, proba[k])
    return _normalise_log(proba, best)


@_jit
def learn_partial(state, x, observed):
    """EM step for a point with missing coordinates (Ghahramani & Jordan, 1994).

    Responsibilities come from the exact marginal over the observed coordinates; each component is
    then updated with its conditional expectation of the point and the conditional covariance of the
    missing part, i.e. the expected sufficient statistics. Observed coordinates are used as given,
    and missing ones move only as far as the observed ones inform them.
    """
    status = _check_values(x[observed])
    if status != OK:
        return status
    mass, means, scatter, factor, log_norm, _, _, _, resp, work = _views(state)
    cov = int(state[H_COV])
    d = x.shape[0]
    posterior_partial(state, x, observed, resp)
    keep, step = _schedule(state)
    k_total = mass.shape[0]
    x_hats = np.empty((k_total, d))
    conds = np.empty((k_total, d, d))
    for k in range(k_total):
        _, x_hats[k], conds[k] = _marginal(state, k, x, observed)
    for k in range(k_total):
        w = step * resp[k]
        _update_arrays(mass, means, scatter, work, k, x_hats[k], w, keep, cov == FULL)
        # The expected scatter of imputed coordinates adds w * Cov[x_m | x_o, k].
        if cov == FULL:
            scatter[k * d * d : (k + 1) * d * d] += w * conds[k].ravel()
        else:
            for i in range(d):
                scatter[k * d + i] += w * conds[k, i, i]
    for k in range(k_total):
        _factorise_k(mass, scatter, factor, log_norm, k, d, cov, state[H_REG])
    state[H_N_SEEN] += 1.0
    if _any_dead(mass, state[H_MIN_WEIGHT]):
        _reseed_dead(state)
    return OK


# --------------------------------------------------------------------------------------------
# Entry points called from Python.
# --------------------------------------------------------------------------------------------


@_jit
def learn_tuple(state, values):
    """Per-tick entry point: ``values`` is a tuple of floats in feature order."""
    mass, means, scatter, factor, log_norm, ring_x, ring_score, x, resp, work = _views(state)
    for i in range(len(values)):
        x[i] = values[i]
    return _learn_point(
        state, x, mass, means, scatter, factor, log_norm, ring_x, ring_score, resp, work
    )


@_jit
def learn_batch(state, data):
    """Learn rows in order with the per-tick step; returns OK or the first bad row's status."""
    mass, means, scatter, factor, log_norm, ring_x, ring_score, x, resp, work = _views(state)
    for i in range(data.shape[0]):
        # Copying the row into the scratch vector avoids creating a view per row.
        for j in range(x.shape[0]):
            x[j] = data[i, j]
        status = _learn_point(
            state, x, mass, means, scatter, factor, log_norm, ring_x, ring_score, resp, work
        )
        if status != OK:
            return status
    return OK


@_jit
def posterior_batch(state, data, out):
    """out[i, k] = p(k | x_i); returns the per-row log-likelihoods."""
    mass, means, _, factor, log_norm, _, _, _, _, work = _views(state)
    cov = int(state[H_COV])
    scores = np.empty(data.shape[0])
    for i in range(data.shape[0]):
        scores[i] = _posterior_arrays(mass, means, factor, log_norm, work, cov, data[i], out[i])
    return scores


@_jit
def posterior_one(state, x, out):
    """out[k] = p(k | x); returns log p(x)."""
    return _posterior(state, x, out)


# --------------------------------------------------------------------------------------------
# Warm-up: batch EM on the buffered points, sharing the log-densities and factorisations above.
# --------------------------------------------------------------------------------------------


@_jit
def batch_em(state, data, labels, n_iter):
    """Hard-assignment M-step from ``labels``, then ``n_iter`` EM rounds; returns mean log-lik.

    Leaves the state holding normalised statistics: mass = mixture weights, scatter = weight *
    covariance (before the floor). The caller rescales mass and scatter for its schedule.
    """
    mass, means, scatter, factor, log_norm, _, _, _, _, work = _views(state)
    n, d = data.shape
    k_total = mass.shape[0]
    cov = int(state[H_COV])
    full = cov == FULL
    m = scatter.shape[0] // k_total
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
            means[k * d : (k + 1) * d] = mu
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
            mass[k] = nk / n
            scatter[k * m : (k + 1) * m] = s / n
            _factorise_k(mass, scatter, factor, log_norm, k, d, cov, state[H_REG])
        if it == n_iter:
            break
        total = 0.0
        for i in range(n):
            total += _posterior_arrays(mass, means, factor, log_norm, work, cov, data[i], resp[i])
        mean_ll = total / n
    return mean_ll
