r"""The hidden Markov model over regimes, learnt online: filter, statistics, M-step, start.

Per-tick posteriors treat every tick as independent, so one large return would flip the regime.
Regimes persist, and a hidden Markov model says so: hidden regime $s_t$ with transition matrix
$A$ (close to the identity), and Gaussian emissions $x_t \mid s_t = k \sim N(\mu_k, \Sigma_k)$
in the standardised feature (the scaled return, for prices). This is Hamilton's
Markov-switching model, and the detector estimates it **online**, one tick at a time, with
Cappé's online EM for hidden Markov models (Cappé 2011): the second stage of the step
(:mod:`streamgmm.regime.step`), after the features and before the labels.

Per tick with evidence:

1. **Filter.** $\alpha_t(k) \propto g_k(x_t) \sum_i \alpha_{t-1}(i) A_{ik}$, the filtered
   regime probabilities: causal, nothing changes with hindsight.
2. **Auxiliary statistics.** For each current regime $k$, $\rho_t(k)$ is the expectation of the
   running (step-weighted) sufficient statistics given $s_t = k$ and the past: transition counts
   and each regime's occupancy, $\sum x$ and $\sum x x^\top$.
   $\rho_t(k) = \sum_i r_t(i \mid k)\,[(1-\gamma_t)\,\rho_{t-1}(i) + \gamma_t\, s(i, k, x_t)]$
   with the retrospective probabilities $r_t(i \mid k) = \alpha_{t-1}(i) A_{ik} / \sum_j
   \alpha_{t-1}(j) A_{jk}$. Unlike statistics weighted by filtered probabilities, these are the
   smoothed expectations, so the estimates converge to the maximum-likelihood fit rather than
   to a biased point.
3. **M-step** on $S_t = \sum_k \alpha_t(k) \rho_t(k)$, with conjugate priors worth a fixed number
   of ticks (so their weight in the normalised statistics is that number times $\gamma_t$):
   transitions shrink towards ``self_transition`` on the diagonal; regime $a$'s covariance
   towards $c_a$ times the pooled covariance, $c_a$ from ``prior_low`` (calmest) to
   ``prior_high`` (wildest). The emission model is a :class:`streamgmm.OnlineGaussianMixture`
   buffer (centred scatter, Cholesky factors, the covariance floor), factorised by the
   mixture's own compiled code (:mod:`streamgmm.mixture.kernels`).

The step is $\gamma_t = \max((t + t_0)^{-\alpha}, \gamma_{\min})$: early ticks move the estimates
quickly, later ones less, and ``halflife`` (through $\gamma_{\min}$) keeps tracking a market
that changes. A session gap (no evidence) moves the filter one step through $A$ and carries the
auxiliary statistics along, without a new term.

**Start.** After the warm-up every regime sits at the standardised origin with covariance
$c_a I$ and weight $1/K$, the variance-ordered start: regime 0 is the calm one from the first
tick, and a regime the warm-up never showed rests at its prior until data claims it (a calm-only
warm-up no longer splits calm days into two regimes).

Each tick also leaves two numbers for the stages after it: the drift monitor's input
(``EXCESS``, :mod:`streamgmm.regime.drift`) and the predictive mean square of the feature
(``EXPECTED_SQ``, :mod:`streamgmm.regime.profile`).

Owns the settings ``ALPHA``, ``STEP_OFFSET``, ``MIN_STEP``, ``SELF_TRANSITION``,
``TRANSITION_PRIOR``, ``VARIANCE_PRIOR``, ``PRIOR_LOW``, ``PRIOR_HIGH``, ``VARIANCE_FLOOR``, the
counter ``N_STEPS``, the regions ``filtered``, ``predicted``, ``transitions``,
``transition_stats``, ``emission_stats``, ``emissions`` and its working space (``back`` to
``raw``) of :mod:`streamgmm.regime.layout`.

References
----------
Cappé, O. (2011). Online EM algorithm for hidden Markov models. Journal of Computational and
Graphical Statistics, 20(3), 728-749.
Hamilton, J. D. (1989). A new approach to the economic analysis of nonstationary time series
and the business cycle. Econometrica, 57(2), 357-384.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from streamgmm import _validate as V
from streamgmm._numeric import LOG_2PI, TINY, hot, jit
from streamgmm.mixture import layout as mx
from streamgmm.mixture.kernels import factorise, log_gauss_full
from streamgmm.regime.layout import (
    ALPHA,
    AUX,
    BACK,
    EMISSION_STATS,
    EMISSIONS,
    EXCESS,
    EXPECTED_SQ,
    FILTERED,
    LOG_MASS,
    LOGS,
    MIN_STEP,
    N_FEATURES,
    N_REGIMES,
    N_STATS,
    N_STEPS,
    NEW_EMISSION_STATS,
    NEW_TRANSITION_STATS,
    PHASE,
    POOL_COV,
    POOL_MEAN,
    PREDICTED,
    PRIOR_HIGH,
    PRIOR_LOW,
    RAW,
    RUNNING,
    SELF_TRANSITION,
    STEP_OFFSET,
    TABLE,
    TRANSITION_PRIOR,
    TRANSITION_STATS,
    TRANSITIONS,
    VARIANCE_FLOOR,
    VARIANCE_PRIOR,
    read_layout,
)
from streamgmm.regime.params import ModelSettings

__all__ = ["FIELDS", "from_state", "initialise", "learn", "refresh", "settings", "to_state"]

#: Largest magnitude of a stored emission statistic.
_MAX_MOMENT = 1e200
# Filtered probabilities are normalised by the step; a stored state may be off by rounding only.
_SUM_TOLERANCE = 1e-9


@hot
def _emission_logs(buf, lay, mix, mlay):
    """log g_k(x) for the standardised point in the mixture's x slots, into the logs scratch
    (and log N_k into the log-mass scratch); returns the maximum.

    ``log_gauss_full`` folds log N_k into its value; the emission density is without it.
    """
    k_total = lay[N_REGIMES]
    logs = lay[LOGS]
    log_mass = lay[LOG_MASS]
    best = -np.inf
    for k in range(k_total):
        lp = log_gauss_full(mix, mlay, k, mlay[mx.X])
        lm = math.log(mix[mlay[mx.MASS] + k])
        buf[log_mass + k] = lm
        lg = lp - lm
        buf[logs + k] = lg
        best = max(best, lg)
    return best


@hot
def _step_size(buf):
    """The step size gamma_t = max((t + t0)^-alpha, min_step) after t steps with evidence.

    ``t + t0`` is taken as at least 1, so no step exceeds 1: with ``step_offset`` below 1 the
    first step (t = 0) would be 0^-alpha, an infinity that made every output NaN.
    """
    return max(max(buf[N_STEPS] + buf[STEP_OFFSET], 1.0) ** (-buf[ALPHA]), buf[MIN_STEP])


@hot
def _factorise_all(mix, mlay):
    """Every regime's Cholesky factor and log-normaliser, by the mixture's own code."""
    for a in range(mlay[mx.N_COMPONENTS]):
        factorise(mix, mlay, a, mix[mx.REG])


@hot
def _prior_multiplier(buf, a, k_total):
    """c_a: prior_low for the calmest regime, prior_high for the wildest, geometric between."""
    if k_total == 1:
        return 1.0
    low, high = buf[PRIOR_LOW], buf[PRIOR_HIGH]
    if a == 0:
        return low
    if a == k_total - 1:
        return high
    return low * (high / low) ** (a / (k_total - 1))


@jit
def _maximise(buf, mix, step):
    """MAP M-step from the expected sufficient statistics.

    Transitions: a Dirichlet prior centred on the fixed matrix (``self_transition`` on the
    diagonal) with ``transition_prior`` ticks of weight. Emissions: regime ``a``'s covariance is
    shrunk towards ``c_a`` times the pooled covariance with ``variance_prior`` ticks of weight,
    so a regime that has seen no data rests at its prior, a reserve that later turbulence can
    take. Prior weights count ticks, so in the normalised statistics they scale with the step.
    The emission model is an :mod:`streamgmm.mixture` buffer (mass = occupancy,
    centred scatter = mass x covariance), factorised by the mixture's own code with the floor
    ``variance_floor`` x the pooled mean variance.
    """
    lay = read_layout(buf)
    mlay = mx.read_layout(mix)
    k_total, d, s = lay[N_REGIMES], lay[N_FEATURES], lay[N_STATS]
    filtered, tstats, estats = lay[FILTERED], lay[TRANSITION_STATS], lay[EMISSION_STATS]
    trans = lay[TRANSITIONS]
    aux = lay[AUX]
    pool_mean = lay[POOL_MEAN]
    pool_cov = lay[POOL_COV]
    stay = buf[SELF_TRANSITION]
    leave = (1.0 - stay) / (k_total - 1) if k_total > 1 else 0.0
    t_weight = buf[TRANSITION_PRIOR] * step
    for a in range(k_total):
        row = 0.0
        for b in range(k_total):
            acc = 0.0
            for k in range(k_total):
                acc += buf[filtered + k] * buf[tstats + (k * k_total + a) * k_total + b]
            v = acc + t_weight * (stay if a == b else leave)
            buf[aux + b] = v
            row += v
        for b in range(k_total):
            if row > 0.0:
                buf[trans + a * k_total + b] = buf[aux + b] / row
            else:
                buf[trans + a * k_total + b] = stay if a == b else leave
    # Expected statistics per regime: occupancy into mass, sum of x into means and sum of x xᵀ
    # into scatter, for now; and their pooled sums.
    mass0, means0, scatter0 = mlay[mx.MASS], mlay[mx.MEANS], mlay[mx.SCATTER]
    for i in range(d):
        buf[pool_mean + i] = 0.0
    for i in range(d * d):
        buf[pool_cov + i] = 0.0
    for a in range(k_total):
        base = a * s
        occ = 0.0
        for k in range(k_total):
            occ += buf[filtered + k] * buf[estats + k * k_total * s + base]
        mix[mass0 + a] = occ
        for i in range(d):
            acc = 0.0
            for k in range(k_total):
                acc += buf[filtered + k] * buf[estats + k * k_total * s + base + 1 + i]
            mix[means0 + a * d + i] = acc
            buf[pool_mean + i] += acc
        for i in range(d * d):
            acc = 0.0
            for k in range(k_total):
                acc += buf[filtered + k] * buf[estats + k * k_total * s + base + 1 + d + i]
            mix[scatter0 + a * d * d + i] = acc
            buf[pool_cov + i] += acc
    # The occupancies sum to one, so the pooled sums are moments of all the data.
    pooled_var = 0.0
    for i in range(d):
        for j in range(d):
            buf[pool_cov + i * d + j] -= buf[pool_mean + i] * buf[pool_mean + j]
        pooled_var += buf[pool_cov + i * d + i]
    pooled_var = max(pooled_var / d, TINY)
    v_weight = buf[VARIANCE_PRIOR] * step
    for a in range(k_total):
        occ = mix[mass0 + a]
        c = _prior_multiplier(buf, a, k_total)
        live = occ > TINY
        for i in range(d):
            sx = mix[means0 + a * d + i]
            mix[means0 + a * d + i] = sx / occ if live else buf[pool_mean + i]
        denominator = max(occ + v_weight, TINY)
        weight = occ if live else TINY
        for i in range(d):
            for j in range(d):
                own = 0.0
                if live:
                    own = mix[scatter0 + a * d * d + i * d + j] - occ * (
                        mix[means0 + a * d + i] * mix[means0 + a * d + j]
                    )
                cov = (own + v_weight * c * buf[pool_cov + i * d + j]) / denominator
                if not live and v_weight == 0.0:
                    cov = c * buf[pool_cov + i * d + j]
                mix[scatter0 + a * d * d + i * d + j] = weight * cov
        mix[mass0 + a] = weight
    mix[mx.REG] = buf[VARIANCE_FLOOR] * pooled_var
    _factorise_all(mix, mlay)


@jit
def learn(buf, mix, evidence):
    """One tick of online EM for the HMM on the point in the mixture's x slots.

    Returns log p(x | past) for the standardised point, or NaN without evidence. Without
    ``evidence`` (a session gap) the filter only moves one step through the transition matrix,
    and the auxiliary statistics follow the hidden state without a new term.
    """
    lay = read_layout(buf)
    mlay = mx.read_layout(mix)
    k_total, d, s = lay[N_REGIMES], lay[N_FEATURES], lay[N_STATS]
    filtered, predicted = lay[FILTERED], lay[PREDICTED]
    trans, tstats, estats = lay[TRANSITIONS], lay[TRANSITION_STATS], lay[EMISSION_STATS]
    back = lay[BACK]
    new_t = lay[NEW_TRANSITION_STATS]
    new_e = lay[NEW_EMISSION_STATS]
    logs = lay[LOGS]
    log_mass = lay[LOG_MASS]  # log N_k, from _emission_logs
    for k in range(k_total):
        acc = 0.0
        for i in range(k_total):
            acc += buf[filtered + i] * buf[trans + i * k_total + k]
        buf[predicted + k] = acc
    # Retrospective probabilities r(i | k) = P(previous regime i | current regime k, past).
    for k in range(k_total):
        p = buf[predicted + k]
        for i in range(k_total):
            joint = buf[filtered + i] * buf[trans + i * k_total + k]
            buf[back + i * k_total + k] = joint / p if p > 0.0 else 0.0
    score = np.nan
    gamma = 0.0
    step = _step_size(buf) if not evidence else 0.0
    if evidence:
        best = _emission_logs(buf, lay, mix, mlay)
        # One exponential per regime serves the filter, the raw posterior and the score: the
        # raw scratch holds g_k(x) / g_max until it is normalised.
        raw = lay[RAW]
        total = 0.0
        for k in range(k_total):
            e = math.exp(buf[logs + k] - best)
            buf[raw + k] = e
            total += buf[predicted + k] * e
        if total > 0.0 and total < np.inf and best > -np.inf:
            # Drift input, with the parameters the tick was scored with: sum_k P(k | x, past)
            # (log g_k(x) + H_k), H_k = log det L_k + D (log 2 pi + 1) / 2 the entropy.
            # log det L_k = log N_k - log_norm_k, and the raw probabilities' weights are N_k.
            excess = 0.0
            norm = 0.0
            for k in range(k_total):
                e = buf[raw + k]
                post = buf[predicted + k] * e / total
                buf[filtered + k] = post
                log_det = buf[log_mass + k] - mix[mlay[mx.LOG_NORM] + k]
                excess += post * (buf[logs + k] + log_det + 0.5 * d * (LOG_2PI + 1.0))
                # The tick's own posterior with the occupancies as weights (raw probabilities).
                v = mix[mlay[mx.MASS] + k] * e
                buf[raw + k] = v
                norm += v
            buf[EXCESS] = excess
            for k in range(k_total):
                buf[raw + k] = buf[raw + k] / norm if norm > 0.0 else 1.0 / k_total
            # The predictive mean square of x (intraday profile): sum_k P(k | past) (s_k + m_k^2).
            if d == 1:
                sq = 0.0
                for k in range(k_total):
                    f = mix[mlay[mx.FACTOR] + k]
                    m = mix[mlay[mx.MEANS] + k]
                    sq += buf[predicted + k] * (f * f + m * m)
                buf[EXPECTED_SQ] = sq
            score = best + math.log(total)
            buf[N_STEPS] += 1.0
            gamma = _step_size(buf)
            step = gamma
    if gamma == 0.0:
        step = _step_size(buf)
        for k in range(k_total):
            buf[filtered + k] = buf[predicted + k]
    # Cappé's recursion: rho'(k) = sum_i r(i|k) [(1 - gamma) rho(i) + gamma s(i, k, x)].
    keep = 1.0 - gamma
    x = mlay[mx.X]
    n_t = k_total * k_total
    n_e = k_total * s
    for k in range(k_total):
        for j in range(n_t):
            acc = 0.0
            for i in range(k_total):
                acc += buf[back + i * k_total + k] * buf[tstats + i * n_t + j]
            buf[new_t + k * n_t + j] = keep * acc
        for j in range(n_e):
            acc = 0.0
            for i in range(k_total):
                acc += buf[back + i * k_total + k] * buf[estats + i * n_e + j]
            buf[new_e + k * n_e + j] = keep * acc
        if gamma > 0.0:
            for i in range(k_total):
                buf[new_t + k * n_t + i * k_total + k] += gamma * buf[back + i * k_total + k]
            base = new_e + k * n_e + k * s
            buf[base] += gamma
            for i in range(d):
                buf[base + 1 + i] += gamma * mix[x + i]
                for j in range(d):
                    buf[base + 1 + d + i * d + j] += gamma * mix[x + i] * mix[x + j]
    for j in range(k_total * n_t):
        buf[tstats + j] = buf[new_t + j]
    for j in range(k_total * n_e):
        buf[estats + j] = buf[new_e + j]
    # The M-step runs on every tick, so the parameters are always a function of the statistics
    # and the step count (which is what from_state recomputes them from).
    _maximise(buf, mix, step)
    return score


@jit
def initialise(buf, mix):
    """Variance-ordered start: every regime at the standardised origin, regime ``a`` with
    covariance ``c_a`` I and weight 1/K, the fixed transition matrix, uniform beliefs, and the
    auxiliary statistics these parameters would give (so the first M-step keeps them)."""
    lay = read_layout(buf)
    mlay = mx.read_layout(mix)
    k_total, d, s = lay[N_REGIMES], lay[N_FEATURES], lay[N_STATS]
    filtered, trans, tstats, estats = (
        lay[FILTERED],
        lay[TRANSITIONS],
        lay[TRANSITION_STATS],
        lay[EMISSION_STATS],
    )
    stay = buf[SELF_TRANSITION]
    leave = (1.0 - stay) / (k_total - 1) if k_total > 1 else 0.0
    w = 1.0 / k_total
    for a in range(k_total):
        buf[filtered + a] = w
        for b in range(k_total):
            buf[trans + a * k_total + b] = stay if a == b else leave
    for k in range(k_total):
        for a in range(k_total):
            for b in range(k_total):
                buf[tstats + (k * k_total + a) * k_total + b] = w * buf[trans + a * k_total + b]
            base = estats + (k * k_total + a) * s
            buf[base] = w
            c = _prior_multiplier(buf, a, k_total)
            for i in range(d):
                buf[base + 1 + i] = 0.0
                for j in range(d):
                    buf[base + 1 + d + i * d + j] = w * c if i == j else 0.0
    mix[mx.REG] = buf[VARIANCE_FLOOR]
    for a in range(k_total):
        mix[mlay[mx.MASS] + a] = w
        c = _prior_multiplier(buf, a, k_total)
        for i in range(d):
            mix[mlay[mx.MEANS] + a * d + i] = 0.0
            for j in range(d):
                mix[mlay[mx.SCATTER] + a * d * d + i * d + j] = w * c if i == j else 0.0
    _factorise_all(mix, mlay)
    buf[N_STEPS] = 0.0


@jit
def refresh(buf):
    """Recompute the derived parameters (transitions, emission model) from the statistics.

    ``from_state`` calls this after writing validated statistics: the parameters are the
    M-step's output, so they are never read from stored state.
    """
    lay = read_layout(buf)
    mix = buf[lay[EMISSIONS] : lay[EMISSIONS + 1]]
    if int(buf[PHASE]) == RUNNING:
        _maximise(buf, mix, _step_size(buf))


# -- settings and state (Python) ------------------------------------------------------------------


def settings(buf: np.ndarray, s: ModelSettings) -> None:
    """Write the model's settings (checked by their declaration,
    :class:`~streamgmm.regime.params.ModelSettings`); ``halflife`` becomes the smallest step."""
    buf[ALPHA] = s.alpha
    buf[STEP_OFFSET] = s.step_offset
    buf[MIN_STEP] = 0.0 if s.halflife is None else 1.0 - 2.0 ** (-1.0 / s.halflife)
    buf[SELF_TRANSITION] = s.self_transition
    buf[TRANSITION_PRIOR] = s.transition_prior
    buf[VARIANCE_PRIOR] = s.variance_prior
    buf[PRIOR_LOW], buf[PRIOR_HIGH] = s.prior_low, s.prior_high
    buf[VARIANCE_FLOOR] = s.variance_floor


#: The model's entries in the state's ``hmm`` part (the labels' ``order`` is stored beside them).
FIELDS = ("filtered", "transition_stats", "emission_stats")


def to_state(buf: np.ndarray) -> dict[str, Any]:
    """The model's part of the state (once it runs): filtered probabilities and statistics."""
    k, s = int(buf[N_REGIMES]), int(buf[N_STATS])
    return {
        "filtered": TABLE.view(buf, FILTERED).tolist(),
        "transition_stats": TABLE.view(buf, TRANSITION_STATS).reshape(k, k, k).tolist(),
        "emission_stats": TABLE.view(buf, EMISSION_STATS).reshape(k, k, s).tolist(),
    }


def from_state(path: str, state: Mapping[str, Any], buf: np.ndarray) -> None:
    """Validate the :data:`FIELDS` of ``state`` (:func:`to_state` output) and write them.

    Probabilities must lie in [0, 1] and sum to one, expected counts and occupancies must be
    non-negative, and second moments' diagonals non-negative. The derived parameters
    (transition matrix, emission model) are recomputed from these statistics by the compiled
    M-step (:func:`refresh`), never read.
    """
    k, d, s = int(buf[N_REGIMES]), int(buf[N_FEATURES]), int(buf[N_STATS])
    filtered = V.matrix(f"{path}.filtered", state["filtered"], (k,), lo=0.0, hi=1.0)
    if abs(filtered.sum() - 1.0) > _SUM_TOLERANCE:
        raise ValueError(f"{path}.filtered must sum to 1, got {filtered.sum()!r}")
    tstats = V.matrix(f"{path}.transition_stats", state["transition_stats"], (k, k, k), lo=0.0)
    # Normalised moments of standardised values within ±MAX_ABS_VALUE: squares stay within
    # its square, so nothing larger comes from a real stream.
    estats = V.matrix(
        f"{path}.emission_stats",
        state["emission_stats"],
        (k, k, s),
        lo=-_MAX_MOMENT,
        hi=_MAX_MOMENT,
    )
    occupancy = estats[:, :, 0]
    if (occupancy < 0.0).any():
        raise ValueError(f"{path}.emission_stats occupancies must be non-negative")
    if (occupancy.sum(axis=1) <= 0.0).any():
        raise ValueError(f"{path}.emission_stats must have positive total occupancy")
    second = estats[:, :, 1 + d :].reshape(k, k, d, d)
    if (np.diagonal(second, axis1=2, axis2=3) < 0.0).any():
        raise ValueError(f"{path}.emission_stats second moments must have a non-negative diagonal")
    TABLE.view(buf, FILTERED)[:] = filtered
    TABLE.view(buf, TRANSITION_STATS)[:] = tstats.ravel()
    TABLE.view(buf, EMISSION_STATS)[:] = estats.ravel()
