"""The compiled per-tick step of the regime detectors: the one place their arithmetic is written.

:class:`streamgmm.regime.RegimeDetector` and :class:`~streamgmm.regime.EventDetector` run every
tick through :func:`regime_run`, one tick (``learn_predict_one``) or many
(``learn_predict_many``). The standalone transformers and monitors of :mod:`streamgmm.features`,
:mod:`streamgmm.persistence` and :mod:`streamgmm.drift` call the same functions on their own
buffers. The step, for one tick:

1. **Features** (:func:`_tick_features`, :func:`_event_features`): the time rules (duplicate,
   out-of-order, session gaps), the log return scaled to the time unit, or the event's fields;
   standardised by the warm-up's scale (and location, for events).
2. **Warm-up** (:func:`_start`): the first ``U`` feature vectors are buffered; then the time
   unit (median spacing) and the scale are fixed, the hidden Markov model is initialised with
   variance-ordered regimes, and the buffered vectors are replayed through step 3.
3. **Online EM for the hidden Markov model** (:func:`_hmm_step`, Cappé 2011): the forward
   filter with Gaussian emissions, then the auxiliary statistics that carry each sufficient
   statistic's expectation given the current regime, then a MAP M-step
   (:func:`_maximise`) that refreshes the transition matrix and the emission model, an
   :mod:`streamgmm._kernels` Gaussian mixture buffer factorised by the mixture's own code.
4. **Labels** (:func:`_relabel`): regimes ranked by emission variance, with hysteresis.
5. **Drift** (:func:`_drift_update`): Page-Hinkley on the standardised shortfall of the
   regime-conditional log-likelihood.

Every function is pure arithmetic on the detector's buffer (:mod:`streamgmm._regime_layout`).
A tick the step refuses (a bad value) leaves the buffer untouched, and every loop is bounded by
the buffer's shape or the number of ticks given.
"""

from __future__ import annotations

import math

import numpy as np

from streamgmm._numeric import LOG_2PI, MAX_ABS_VALUE, TINY, hot, jit
from streamgmm._regime_layout import (
    ALPHA,
    AUX,
    BACK,
    BUCKETS,
    DRIFT_CLIP,
    DRIFT_DECAY,
    DRIFT_DELTA,
    DRIFT_MIN,
    DRIFT_SCORE,
    DRIFT_SEEN,
    DRIFT_THRESHOLD,
    DT_UNIT,
    EMISSION_STATS,
    EMISSIONS,
    EVENTS,
    EXCESS,
    EXPECTED_SQ,
    FILTERED,
    GAP_UNITS,
    HYSTERESIS,
    KIND,
    LAST_DRIFT,
    LAST_LL,
    LAST_P,
    LAST_PRICE,
    LAST_RAW,
    LAST_TS,
    LAST_WARM,
    LOC,
    LOG_MASS,
    LOGS,
    MEAN_DECAY,
    MEAN_LL,
    MEAN_LL_WEIGHT,
    MEASURE,
    MIN_DT_UNITS,
    MIN_STEP,
    N_BUFFERED,
    N_DRIFTS,
    N_DUPLICATES,
    N_FEATURES,
    N_GAPS,
    N_LABEL_CHANGES,
    N_OUT_OF_ORDER,
    N_REGIMES,
    N_SEEN,
    N_STATS,
    N_STEPS,
    NEW_EMISSION_STATS,
    NEW_TRANSITION_STATS,
    ORDER,
    PH_MEAN,
    PH_MIN,
    PH_N,
    PH_RESET,
    PH_RUNNING,
    PH_SUM,
    PHASE,
    POOL_COV,
    POOL_MEAN,
    PREDICTED,
    PRIOR_HIGH,
    PRIOR_LOW,
    PROFILE,
    PROFILE_BUCKETS,
    PROFILE_DAY,
    PROFILE_HALFLIFE,
    PROFILE_M,
    PROFILE_N,
    PROFILE_ON,
    PROFILE_S,
    PROFILE_S2,
    R_DRIFT,
    R_DRIFT_SCORE,
    R_FIELD,
    R_LL,
    R_PROBS,
    R_REGIME,
    R_SEEN,
    R_STATUS,
    R_WARM,
    RAW,
    REF_MEAN,
    REF_VAR,
    REF_WEIGHT,
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
    SCALE,
    SELF_TRANSITION,
    STEP_OFFSET,
    TRANSITION_PRIOR,
    TRANSITION_STATS,
    TRANSITIONS,
    UNIT,
    VARIANCE_FLOOR,
    VARIANCE_PRIOR,
    WARMING,
    WARMUP,
    WARMUP_BUFFER,
    layout,
)
from streamgmm.mixture import layout as mx
from streamgmm.mixture.kernels import factorise, log_gauss_full

__all__ = ["drift_run", "page_hinkley_run", "refresh", "regime_run"]

#: Returns in percent.
RETURN_SCALE = 100.0
_DAY_SECONDS = 86400.0
#: Drift inputs are clamped to this magnitude (far beyond any surprise that is not absurd).
EXCESS_BOUND = 1e12
#: Prior weight (in ticks) of the drift reference's starting point, the model's own
#: expectation: mean 0 and variance D/2 of the excess.
DRIFT_PRIOR_WEIGHT = 50.0
#: Warm-up values whose standard deviation is below this fraction of their mean are constant.
CONSTANT_RELATIVE = 1e-9


# --------------------------------------------------------------------------------------------
# 1. Features
# --------------------------------------------------------------------------------------------


@hot
def _classify(buf, ts):
    """S_FIRST, S_DUPLICATE, S_OUT_OF_ORDER or S_WARM (in order) for a finite ``ts``."""
    if buf[N_SEEN] == 0.0:
        return S_FIRST
    last = buf[LAST_TS]
    if ts == last:
        return S_DUPLICATE
    if ts < last:
        return S_OUT_OF_ORDER
    return S_WARM


@hot
def _scaled_return(buf, dt_seconds, log_return):
    """(x, gap) for a return over ``dt_seconds`` once the time unit is known.

    Spacings shorter than the unit scale the return up by 1/sqrt(dt) (at most by
    1/sqrt(min_dt_units)); spacings from one to ``gap_units`` units count as one step (a
    market accrues little variance while it is closed); longer spacings are session gaps,
    whose return is not evidence about the regime.
    """
    dt = dt_seconds / buf[UNIT]
    if dt > buf[GAP_UNITS]:
        return log_return, True
    if dt < 1.0:
        dt = max(dt, buf[MIN_DT_UNITS])
        return log_return / math.sqrt(dt), False
    return log_return, False


# --------------------------------------------------------------------------------------------
# 3. Online EM for the hidden Markov model
# --------------------------------------------------------------------------------------------


@hot
def _emission_logs(buf, lay, mix, mlay):
    """log g_k(x) for the standardised point in the mixture's x slots, into the logs scratch
    (and log N_k into the log-mass scratch); returns the maximum.

    ``_log_gauss_full`` folds log N_k into its value; the emission density is without it.
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
def _step(buf):
    """The step size gamma_t = max((t + t0)^-alpha, min_step) after t steps with evidence.

    ``t + t0`` is taken as at least 1, so no step exceeds 1: with ``step_offset`` below 1 the
    first step (t = 0) would be 0^-alpha, an infinity that made every output NaN.
    """
    return max(max(buf[N_STEPS] + buf[STEP_OFFSET], 1.0) ** (-buf[ALPHA]), buf[MIN_STEP])


@jit
def refresh(buf):
    """Recompute the derived parameters (transitions, emission model) from the statistics.

    ``from_state`` calls this after writing validated statistics: the parameters are the
    M-step's output, so they are never read from stored state.
    """
    lay = layout(buf)
    mix = buf[lay[EMISSIONS] : lay[EMISSIONS + 1]]
    if int(buf[PHASE]) == RUNNING:
        _maximise(buf, mix, _step(buf))


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
    The emission model is an :mod:`streamgmm._kernels` mixture buffer (mass = occupancy,
    centred scatter = mass x covariance), factorised by the mixture's own code with the floor
    ``variance_floor`` x the pooled mean variance.
    """
    lay = layout(buf)
    mlay = mx.layout(mix)
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
def _hmm_step(buf, mix, evidence):
    """One tick of online EM for the HMM on the point in the mixture's x slots.

    Returns log p(x | past) for the standardised point, or NaN without evidence. Without
    ``evidence`` (a session gap) the filter only moves one step through the transition matrix,
    and the auxiliary statistics follow the hidden state without a new term.
    """
    lay = layout(buf)
    mlay = mx.layout(mix)
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
    step = _step(buf) if not evidence else 0.0
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
            gamma = _step(buf)
            step = gamma
    if gamma == 0.0:
        step = _step(buf)
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
def _initialise(buf, lay, mix, mlay):
    """Variance-ordered start: every regime at the standardised origin, regime ``a`` with
    covariance ``c_a`` I and weight 1/K, the fixed transition matrix, uniform beliefs, and the
    auxiliary statistics these parameters would give (so the first M-step keeps them)."""
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
        buf[lay[ORDER] + a] = a
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


# --------------------------------------------------------------------------------------------
# 4. Labels
# --------------------------------------------------------------------------------------------


@hot
def _relabel(buf, lay, mix, mlay):
    """Rank regimes by emission variance (the covariance trace), with hysteresis.

    ``order[r]`` is the HMM state shown as regime ``r``. The ranking is replaced only when an
    adjacent pair is inverted by more than ``label_hysteresis`` (relative); ties keep the state
    index order. Returns True if the order changed.
    """
    k_total, d = lay[N_REGIMES], lay[N_FEATURES]
    order = lay[ORDER]
    measure = lay[MEASURE]
    for a in range(k_total):
        tr = 0.0
        for i in range(d):
            tr += mix[mlay[mx.SCATTER] + a * d * d + i * d + i]
        buf[measure + a] = tr / mix[mlay[mx.MASS] + a]
    margin = 1.0 + buf[HYSTERESIS]
    violated = False
    for r in range(k_total - 1):
        lo = int(buf[order + r])
        hi = int(buf[order + r + 1])
        if buf[measure + lo] > margin * buf[measure + hi]:
            violated = True
    if not violated:
        return False
    # Insertion sort by measure (K is small); stable, so ties keep the state order.
    for r in range(k_total):
        buf[order + r] = r
    for r in range(1, k_total):
        v = buf[order + r]
        j = r
        for _ in range(r):
            if buf[measure + int(buf[order + j - 1])] <= buf[measure + int(v)]:
                break
            buf[order + j] = buf[order + j - 1]
            j -= 1
        buf[order + j] = v
    buf[N_LABEL_CHANGES] += 1.0
    return True


# --------------------------------------------------------------------------------------------
# 5. Drift
# --------------------------------------------------------------------------------------------


#: Page-Hinkley's forgetting factor (river's default).
PH_ALPHA = 1.0 - 1e-4


@hot
def _page_hinkley(buf, x):
    """Page-Hinkley (mode "up") on ``x``; returns True on an alarm.

    ``sum = alpha * sum + (x - centre) - delta``; an alarm needs ``min_instances`` updates since
    the last one and ``sum - min(sum) > threshold``, and the next update starts over. With
    PH_RUNNING the centre is the running mean since that start: exactly
    ``river.drift.PageHinkley.update`` (tests/test_drift.py holds them equal). The detectors
    centre on 0 instead, because their input is already standardised against a slow
    reference: a running mean over the few ticks since a start would absorb a change that
    comes soon after it. The minimum starts at the first sum rather than at infinity, so the
    state stays finite JSON.
    """
    if buf[PH_RESET] != 0.0:
        buf[PH_RESET] = 0.0
        buf[PH_N] = 0.0
        buf[PH_MEAN] = 0.0
        buf[PH_SUM] = 0.0
        buf[PH_MIN] = 0.0
    buf[PH_N] += 1.0
    if buf[PH_RUNNING] != 0.0:
        buf[PH_MEAN] += (1.0 / buf[PH_N]) * (x - buf[PH_MEAN])
    buf[PH_SUM] = PH_ALPHA * buf[PH_SUM] + (x - buf[PH_MEAN]) - buf[DRIFT_DELTA]
    if buf[PH_N] == 1.0 or buf[PH_SUM] < buf[PH_MIN]:
        buf[PH_MIN] = buf[PH_SUM]
    rise = buf[PH_SUM] - buf[PH_MIN]
    buf[DRIFT_SCORE] = rise / buf[DRIFT_THRESHOLD]
    if buf[PH_N] >= buf[DRIFT_MIN] and rise > buf[DRIFT_THRESHOLD]:
        buf[PH_RESET] = 1.0
        buf[N_DRIFTS] += 1.0
        return True
    return False


@hot
def _drift_update(buf, excess, dims):
    """The drift monitor: the standardised shortfall of the regime-conditional log-likelihood,
    fed to Page-Hinkley. Returns True on an alarm.

    ``excess`` is ``sum_k P(k) (log g_k(x) + H_k)``, zero in expectation when the model is
    right whatever the regime. ``z = (reference mean - excess) / reference sd`` against a slow
    EWMA reference (half-life ``drift_reference_halflife`` ticks, starting from the model's own
    expectation: mean 0, variance dims/2, worth DRIFT_PRIOR_WEIGHT ticks), clipped to
    ``±drift_clip`` so one extreme tick cannot raise an alarm alone.
    """
    if buf[REF_WEIGHT] == 0.0:
        buf[REF_MEAN] = 0.0
        buf[REF_VAR] = 0.5 * dims
        buf[REF_WEIGHT] = DRIFT_PRIOR_WEIGHT
    # An absurd tick (a return 1e50 sd out) would overflow the reference's variance.
    excess = min(max(excess, -EXCESS_BOUND), EXCESS_BOUND)
    sd = math.sqrt(max(buf[REF_VAR], TINY))
    z = (buf[REF_MEAN] - excess) / sd
    clip = buf[DRIFT_CLIP]
    z = min(max(z, -clip), clip)
    weight = buf[DRIFT_DECAY] * buf[REF_WEIGHT] + 1.0
    a = 1.0 / weight
    delta = excess - buf[REF_MEAN]
    buf[REF_MEAN] += a * delta
    buf[REF_VAR] = (1.0 - a) * (buf[REF_VAR] + a * delta * delta)
    buf[REF_WEIGHT] = weight
    buf[DRIFT_SEEN] += 1.0
    return _page_hinkley(buf, z)


@jit
def page_hinkley_run(buf, xs, alarms):
    """Page-Hinkley alone over ``xs`` (the tests hold it equal to river's)."""
    for i in range(xs.shape[0]):
        alarms[i] = _page_hinkley(buf, xs[i])


@hot
def _mean_ll_update(buf, value):
    """Bias-corrected EWMA of the log-likelihood (half-life ``drift_halflife`` ticks)."""
    weight = buf[MEAN_DECAY] * buf[MEAN_LL_WEIGHT] + 1.0
    buf[MEAN_LL] += (value - buf[MEAN_LL]) / weight
    buf[MEAN_LL_WEIGHT] = weight


@jit
def drift_run(buf, log_likelihood, expected, alarms, scores):
    """The drift monitor alone (:class:`streamgmm.drift.LikelihoodDriftMonitor`): one update
    per value, with excess ``log_likelihood - expected``."""
    for i in range(log_likelihood.shape[0]):
        _mean_ll_update(buf, log_likelihood[i])
        alarms[i] = _drift_update(buf, log_likelihood[i] - expected[i], 1.0)
        scores[i] = buf[DRIFT_SCORE]


# --------------------------------------------------------------------------------------------
# 2. Warm-up, and the run
# --------------------------------------------------------------------------------------------


@jit
def _warm_values(buf, lay, i, out):
    """Feature vector of warm-up entry ``i`` (raw, before standardisation) into ``out``;
    returns False for a session gap."""
    d = lay[N_FEATURES]
    entry = lay[WARMUP_BUFFER] + i * (1 + d)
    if int(buf[KIND]) == EVENTS:
        for j in range(d):
            out[j] = buf[entry + 1 + j]
        return True
    x, gap = _scaled_return(buf, buf[entry], buf[entry + 1])
    out[0] = x
    return not gap


@jit
def _start(buf, lay, mix, mlay):
    """End of the warm-up: fix the time unit and the scale, initialise, replay the buffer.

    Returns False (and empties the buffer, so the warm-up starts over) when the buffered
    values do not vary: a scale cannot be set from a constant stream.
    """
    d, u = lay[N_FEATURES], lay[WARMUP]
    loc, scale = lay[LOC], lay[SCALE]
    events = int(buf[KIND]) == EVENTS
    if not events:
        if buf[DT_UNIT] > 0.0:
            buf[UNIT] = buf[DT_UNIT]
        else:
            spacings = np.empty(u)
            for i in range(u):
                spacings[i] = buf[lay[WARMUP_BUFFER] + i * (1 + d)]
            buf[UNIT] = np.median(spacings)
    values = np.empty(d)
    n = 0
    for j in range(d):
        buf[loc + j] = 0.0
        buf[scale + j] = 0.0
    # Location (events only) and scale from the entries that are evidence.
    for i in range(u):
        if _warm_values(buf, lay, i, values):
            n += 1
            for j in range(d):
                buf[loc + j] += values[j]
    if n < 2:
        buf[N_BUFFERED] = 0.0
        return False
    for j in range(d):
        buf[loc + j] = buf[loc + j] / n if events else 0.0
    for i in range(u):
        if _warm_values(buf, lay, i, values):
            for j in range(d):
                buf[scale + j] += (values[j] - buf[loc + j]) ** 2
    constant = True
    for j in range(d):
        v = buf[scale + j] / (n - 1 if events else n)
        # A spread within rounding of the mean (a constant field) is no scale.
        noise = CONSTANT_RELATIVE * abs(buf[loc + j])
        if v > noise * noise and v < np.inf:
            constant = False
            buf[scale + j] = math.sqrt(v)
        else:
            buf[scale + j] = 1.0
    if constant:
        buf[N_BUFFERED] = 0.0
        return False
    _initialise(buf, lay, mix, mlay)
    buf[PHASE] = RUNNING
    buf[N_BUFFERED] = 0.0
    for i in range(u):
        evidence = _warm_values(buf, lay, i, values)
        for j in range(d):
            mix[mlay[mx.X] + j] = (values[j] - buf[loc + j]) / buf[scale + j]
        score = _hmm_step(buf, mix, evidence)
        if evidence:
            buf[LAST_LL] = score
    _relabel(buf, lay, mix, mlay)
    buf[N_LABEL_CHANGES] = 0.0
    return True


# --------------------------------------------------------------------------------------------
# 1b. The intraday volatility profile (price ticks)
# --------------------------------------------------------------------------------------------

#: The profile is learnt only for time units below a quarter day: with fewer than four ticks a
#: day there is no time-of-day pattern to see (on daily data every tick is in one bucket).
PROFILE_MAX_UNIT = _DAY_SECONDS / 4.0
#: Pseudo-ticks at multiplier 1 per profile bucket (shrinks sparsely seen buckets to no change).
PROFILE_PRIOR = 20.0
#: The profile is applied only while its buckets differ beyond noise: the heterogeneity
#: statistic must exceed its null mean by this many null standard deviations.
PROFILE_GATE = 4.0
_DAY = _DAY_SECONDS


@hot
def _bucket(ts):
    """Half-hour of the UTC day that ``ts`` falls in."""
    seconds = ts - math.floor(ts / _DAY) * _DAY
    return min(int(seconds / (_DAY / PROFILE_BUCKETS)), PROFILE_BUCKETS - 1)


@hot
def _profile_multiplier(buf, lay, ts):
    """Variance multiplier of ``ts``'s half-hour: its mean of ``z`` over the overall mean, with
    PROFILE_PRIOR pseudo-ticks at 1, while the gate is open; else 1.

    ``z`` is a tick's squared return over the model's predictive mean square, so regimes cancel
    and what remains is the time-of-day pattern (Andersen and Bollerslev 1997).
    """
    if buf[PROFILE] == 0.0 or buf[PROFILE_ON] == 0.0 or buf[PROFILE_N] <= 0.0:
        return 1.0
    entry = lay[BUCKETS] + 2 * _bucket(ts)
    mean = buf[PROFILE_S] / buf[PROFILE_N]
    if not mean > 0.0:
        return 1.0
    own = (buf[entry] + PROFILE_PRIOR * mean) / (buf[entry + 1] + PROFILE_PRIOR)
    return own / mean


@jit
def _profile_new_day(buf, lay, day):
    """Once per UTC day: decay every sum by the days elapsed (half-life ``profile_halflife``),
    then re-test whether the buckets differ beyond noise.

    The gate: Q = sum_b n_b (mean_b - mean)^2 / var(z) is chi-square with (buckets seen - 1)
    degrees of freedom when the profile is flat; the profile is used while Q exceeds that
    null's mean by PROFILE_GATE null standard deviations.
    """
    elapsed = max(day - buf[PROFILE_DAY], 0.0) if buf[PROFILE_N] > 0.0 else 0.0
    buf[PROFILE_DAY] = day
    f = 2.0 ** (-elapsed * _DAY / buf[PROFILE_HALFLIFE])
    buf[PROFILE_S] *= f
    buf[PROFILE_S2] *= f
    buf[PROFILE_N] *= f
    for b in range(PROFILE_BUCKETS):
        e = lay[BUCKETS] + 2 * b
        buf[e] *= f
        buf[e + 1] *= f
    n = buf[PROFILE_N]
    if not n > 0.0:
        buf[PROFILE_ON] = 0.0
        return
    mean = buf[PROFILE_S] / n
    var = buf[PROFILE_S2] / n - mean * mean
    if not (var > 0.0 and mean > 0.0):
        buf[PROFILE_ON] = 0.0
        return
    q = 0.0
    seen = 0
    for b in range(PROFILE_BUCKETS):
        e = lay[BUCKETS] + 2 * b
        nb = buf[e + 1]
        if nb >= 1.0:
            seen += 1
            q += nb * (buf[e] / nb - mean) ** 2
    dof = seen - 1
    open_gate = dof > 0 and q / var > dof + PROFILE_GATE * math.sqrt(2.0 * dof)
    buf[PROFILE_ON] = 1.0 if open_gate else 0.0


@hot
def _profile_update(buf, lay, ts, z):
    """Add a tick's ``z`` to its bucket and to the totals; a new UTC day decays and re-tests
    first (sums decay by whole days, so ticks of one day weigh the same)."""
    day = math.floor(ts / _DAY)
    if day != buf[PROFILE_DAY]:
        _profile_new_day(buf, lay, day)
    entry = lay[BUCKETS] + 2 * _bucket(ts)
    buf[entry] += z
    buf[entry + 1] += 1.0
    buf[PROFILE_S] += z
    buf[PROFILE_S2] += z * z
    buf[PROFILE_N] += 1.0


@hot
def _standardised_features(buf, lay, mix, mlay, ts, vals, row):
    """Check the tick and write its standardised features into the mixture's x slots.

    Returns (status, evidence, dt_seconds, log_return); the status is S_WARM for a tick to
    apply. Nothing of the state changes here (PROFILE_M is scratch of one tick).
    """
    d = lay[N_FEATURES]
    events = int(buf[KIND]) == EVENTS
    if not math.isfinite(ts):
        return S_BAD_TS, False, 0.0, 0.0
    for j in range(vals.shape[0]):
        v = vals[j]
        if not (math.isfinite(v) and abs(v) <= MAX_ABS_VALUE):
            row[R_FIELD] = j
            return S_BAD_VALUE, False, 0.0, 0.0
    if not events and not vals[0] > 0.0:
        return S_BAD_PRICE, False, 0.0, 0.0
    status = _classify(buf, ts)
    if status != S_WARM:
        return status, False, 0.0, 0.0
    if events:
        dt = ts - buf[LAST_TS] if buf[N_SEEN] > 0.0 else 0.0
        if int(buf[PHASE]) == RUNNING:  # in the warm-up there is no scale yet
            for j in range(d):
                z = (vals[j] - buf[lay[LOC] + j]) / buf[lay[SCALE] + j]
                if not (math.isfinite(z) and abs(z) <= MAX_ABS_VALUE):
                    # Standardised beyond the mixture's range (a value very far from the
                    # warm-up's, or a tiny scale): refused like a bad value.
                    row[R_FIELD] = j
                    return S_BAD_VALUE, False, 0.0, 0.0
                mix[mlay[mx.X] + j] = z
        return S_WARM, True, dt, 0.0
    dt = ts - buf[LAST_TS]
    log_return = RETURN_SCALE * math.log(vals[0] / buf[LAST_PRICE])
    if not (math.isfinite(log_return) and abs(log_return) <= MAX_ABS_VALUE):
        return S_BAD_RETURN, False, 0.0, 0.0
    evidence = True
    if int(buf[PHASE]) == RUNNING:
        x, gap = _scaled_return(buf, dt, log_return)
        evidence = not gap
        m = _profile_multiplier(buf, lay, ts) if evidence else 1.0
        buf[PROFILE_M] = m
        z = (x / math.sqrt(m) - buf[lay[LOC]]) / buf[lay[SCALE]]
        if not (math.isfinite(z) and abs(z) <= MAX_ABS_VALUE):
            return S_BAD_RETURN, False, 0.0, 0.0
        mix[mlay[mx.X]] = z
    return S_WARM, evidence, dt, log_return


@hot
def _write_output(buf, lay, row, status, warm):
    """The output row from the remembered probabilities and the last values."""
    k_total = lay[N_REGIMES]
    row[R_STATUS] = status
    row[R_WARM] = warm
    row[R_SEEN] = buf[N_SEEN]
    row[R_LL] = buf[LAST_LL]
    row[R_DRIFT_SCORE] = buf[DRIFT_SCORE]
    row[R_DRIFT] = buf[LAST_DRIFT]
    best = 0
    for r in range(k_total):
        p = buf[lay[LAST_P] + r]
        row[R_PROBS + r] = p
        row[R_PROBS + k_total + r] = buf[lay[LAST_RAW] + r]
        if p > buf[lay[LAST_P] + best]:
            best = r
    row[R_REGIME] = best


@hot
def _log_scale(buf, lay):
    """Sum of log scales: turns a standardised log-density into one in the input's units."""
    acc = 0.0
    for j in range(lay[N_FEATURES]):
        acc += math.log(buf[lay[SCALE] + j])
    return acc


@hot
def _remember_outputs(buf, lay, with_raw):
    """Store the filtered and (for a tick with evidence) raw probabilities in regime order."""
    k_total = lay[N_REGIMES]
    order = lay[ORDER]
    raw = lay[RAW]
    for r in range(k_total):
        state = int(buf[order + r])
        buf[lay[LAST_P] + r] = buf[lay[FILTERED] + state]
        if with_raw:
            buf[lay[LAST_RAW] + r] = buf[raw + state]


@jit
def _apply(buf, mix, ts, vals, row):
    """Predict, then learn, one tick; writes its output row and returns its status."""
    lay = layout(buf)
    mlay = mx.layout(mix)
    d = lay[N_FEATURES]
    for j in range(row.shape[0]):
        row[j] = 0.0
    status, evidence, dt, log_return = _standardised_features(buf, lay, mix, mlay, ts, vals, row)
    if status in (S_DUPLICATE, S_OUT_OF_ORDER):
        buf[N_DUPLICATES if status == S_DUPLICATE else N_OUT_OF_ORDER] += 1.0
        _write_output(buf, lay, row, status, buf[LAST_WARM])
        row[R_DRIFT] = 0.0
        return status
    if status != S_WARM and status != S_FIRST:
        row[R_STATUS] = status
        return status
    events = int(buf[KIND]) == EVENTS
    buf[N_SEEN] += 1.0
    buf[LAST_TS] = ts
    if not events:
        buf[LAST_PRICE] = vals[0]
        if status == S_FIRST:
            _write_output(buf, lay, row, S_FIRST, buf[LAST_WARM])
            return S_FIRST
    buf[LAST_DRIFT] = 0.0
    if int(buf[PHASE]) == WARMING:
        n = int(buf[N_BUFFERED])
        entry = lay[WARMUP_BUFFER] + n * (1 + d)
        buf[entry] = dt
        if events:
            for j in range(d):
                buf[entry + 1 + j] = vals[j]
        else:
            buf[entry + 1] = log_return
        buf[N_BUFFERED] = n + 1
        if n + 1 < lay[WARMUP] or not _start(buf, lay, mix, mlay):
            _write_output(buf, lay, row, S_COLD, 0.0)
            return S_COLD
        buf[LAST_WARM] = 1.0
        buf[LAST_LL] -= _log_scale(buf, lay)
        _remember_outputs(buf, lay, True)
        _write_output(buf, lay, row, S_WARM, 1.0)
        return S_WARM
    if not evidence:
        buf[N_GAPS] += 1.0
    x = mix[mlay[mx.X]]
    score = _hmm_step(buf, mix, evidence)
    profile = buf[PROFILE] != 0.0 and buf[UNIT] < PROFILE_MAX_UNIT
    if evidence and math.isfinite(score) and profile and buf[EXPECTED_SQ] > 0.0:
        _profile_update(buf, lay, ts, x * x * buf[PROFILE_M] / buf[EXPECTED_SQ])
    if evidence and math.isfinite(score):
        buf[LAST_LL] = score - _log_scale(buf, lay) - 0.5 * math.log(buf[PROFILE_M])
        _mean_ll_update(buf, buf[LAST_LL])
        if _drift_update(buf, buf[EXCESS], float(d)):
            buf[LAST_DRIFT] = 1.0
    # The output is in the labels the tick was scored under; a new ranking applies from the
    # next tick on.
    _remember_outputs(buf, lay, evidence and math.isfinite(score))
    _relabel(buf, lay, mix, mlay)
    _write_output(buf, lay, row, S_WARM, 1.0)
    return S_WARM


@jit
def regime_run(buf, data, out):
    """Apply ticks ``0 .. len(data) - 1`` in order; ``out[i]`` is tick i's output row.

    ``data[i]`` is ``(ts, price)`` or ``(ts, field values...)``. Refused ticks leave the
    buffer unchanged and carry their status; the run goes on with the next tick.
    """
    lay = layout(buf)
    mix = buf[lay[EMISSIONS] : lay[EMISSIONS + 1]]
    for i in range(data.shape[0]):
        _apply(buf, mix, data[i, 0], data[i, 1:], out[i])
