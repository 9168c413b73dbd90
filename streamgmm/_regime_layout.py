"""Named layout of a detector's packed state: one flat ``float64`` buffer per detector.

:mod:`streamgmm._regime_kernel` reads and writes the buffer; :mod:`streamgmm.regime`,
:mod:`streamgmm.features`, :mod:`streamgmm.persistence` and :mod:`streamgmm.drift` build it,
serialise named parts of it and restore it. This module is the one place that says where each
part lives, so the compiled step and the Python side cannot disagree.

The buffer is ``header | regions``. Header slots hold the settings (written once from the
validated constructor arguments) and the scalar state; :func:`offsets` gives the start of each
region for a model with ``K`` regimes, ``D`` features and a warm-up of ``U`` ticks::

    loc (D) | scale (D) | warm-up (U * (1 + D)) | filtered (K) | predicted (K) |
    transitions (K * K) | transition stats (K * K * K) | emission stats (K * K * S) |
    order (K) | last probabilities (K) | last raw probabilities (K) |
    intraday profile (PROFILE_BUCKETS * 2: sum of z, count) | scratch |
    emission model (an OnlineGaussianMixture buffer, see :mod:`streamgmm._kernels`)

with ``S = 1 + D + D * D`` sufficient statistics per regime (occupancy, sum of x, sum of x xᵀ).
The scratch region is working space of one step, never state: :func:`scratch_offsets` splits
it. The output row each tick writes (``R_*`` slots, :func:`row_width`) and its status codes
(``S_*``) are the rest of the contract between the compiled step and Python, and live here too.
"""

from __future__ import annotations

import numpy as np

from streamgmm import _kernels as _mix

# -- header: settings -----------------------------------------------------------------------
KIND, N_REGIMES, N_FEATURES, WARMUP = 0, 1, 2, 3
DT_UNIT, GAP_UNITS, MIN_DT_UNITS = 4, 5, 6
ALPHA, STEP_OFFSET, MIN_STEP = 7, 8, 9
SELF_TRANSITION, TRANSITION_PRIOR = 10, 11
VARIANCE_PRIOR, PRIOR_LOW, PRIOR_HIGH, VARIANCE_FLOOR = 12, 13, 14, 15
HYSTERESIS = 16
DRIFT_THRESHOLD, DRIFT_DELTA, DRIFT_CLIP, DRIFT_REFERENCE, DRIFT_MIN, DRIFT_HALFLIFE = (
    17,
    18,
    19,
    20,
    21,
    22,
)
# -- header: scalar state -------------------------------------------------------------------
PHASE, N_BUFFERED, N_SEEN, N_STEPS = 23, 24, 25, 26
N_DUPLICATES, N_OUT_OF_ORDER, N_GAPS, N_LABEL_CHANGES = 27, 28, 29, 30
LAST_TS, LAST_PRICE, UNIT = 31, 32, 33
REF_MEAN, REF_VAR, REF_WEIGHT, PH_SUM, PH_MIN, DRIFT_SEEN, DRIFT_SCORE = 34, 35, 36, 37, 38, 39, 40
MEAN_LL, MEAN_LL_WEIGHT, N_DRIFTS = 41, 42, 43
LAST_REGIME, LAST_LL, LAST_DRIFT, LAST_WARM = 44, 45, 46, 47
#: The last tick's drift input (see :func:`streamgmm._regime_kernel._hmm_step`).
EXCESS = 48
# -- header: the intraday volatility profile (price ticks) ------------------------------------
PROFILE, PROFILE_HALFLIFE = 49, 50  # settings: on/off, half-life in seconds
PROFILE_ON, PROFILE_DAY, PROFILE_S, PROFILE_S2, PROFILE_N = 51, 52, 54, 55, 56
EXPECTED_SQ, PROFILE_M = 57, 58  # scratch of one tick
# -- header: settings derived once (decay factors) -------------------------------------------
DRIFT_DECAY, MEAN_DECAY = 59, 60
# -- header: Page-Hinkley's own count and mean since its last reset, and a pending reset -----
PH_N, PH_MEAN, PH_RESET = 61, 62, 63
#: Setting: Page-Hinkley centres on its running mean since the last alarm (river's
#: definition) when 1, or on the reference (the input is already centred) when 0.
PH_RUNNING = 64
HEADER_SIZE = 72

# -- per-tick status, written to each output row --------------------------------------------
#: An output row from the running model, or the repeated cold output during the warm-up.
S_WARM, S_COLD = 0, 1
#: The first tick of a price stream: it only sets the reference price.
S_FIRST = 2
#: Skipped ticks: the previous output repeats with drift_detected false.
S_DUPLICATE, S_OUT_OF_ORDER = 3, 4
#: Refused ticks (the state is unchanged): non-finite ts; a bad value (R_FIELD names which);
#: a price that is not positive; a return too large to use.
S_BAD_TS, S_BAD_VALUE, S_BAD_PRICE, S_BAD_RETURN = 5, 6, 7, 8

# -- output row: status, field, regime, warm, n_samples_seen, log-likelihood, drift score,
#    drift flag, then K filtered and K raw probabilities in regime order -----------------------
R_STATUS, R_FIELD, R_REGIME, R_WARM, R_SEEN, R_LL, R_DRIFT_SCORE, R_DRIFT, R_PROBS = range(9)


def row_width(n_regimes: int) -> int:
    """Width of an output row for ``n_regimes`` regimes."""
    return R_PROBS + 2 * n_regimes


#: Buckets of the intraday profile: half-hours of the UTC day.
PROFILE_BUCKETS = 48

#: ``KIND``: price ticks (log returns) or event ticks (numeric fields as they are).
TICKS, EVENTS = 0, 1
#: ``PHASE``: buffering the warm-up, or running the online HMM.
WARMING, RUNNING = 0, 1

# Positions in the offsets tuple.
O_K, O_D, O_U, O_S = 0, 1, 2, 3
O_LOC, O_SCALE, O_WARM, O_FILTERED, O_PREDICTED, O_TRANSITIONS = 4, 5, 6, 7, 8, 9
(O_TSTATS, O_ESTATS, O_ORDER, O_LAST_P, O_LAST_RAW, O_PROFILE, O_SCRATCH, O_MIX, O_END) = range(
    10, 19
)

#: Region names, in buffer order (the entries O_LOC .. O_MIX of :func:`offsets`).
REGION_NAMES = (
    "loc",
    "scale",
    "warmup",
    "filtered",
    "predicted",
    "transitions",
    "transition_stats",
    "emission_stats",
    "order",
    "last_probabilities",
    "last_raw_probabilities",
    "profile",
    "scratch",
    "emission_model",
)


# Positions in the scratch offsets tuple.
(SC_BACK, SC_NEW_T, SC_NEW_E, SC_POOL_MEAN, SC_POOL_COV, SC_LOGS, SC_MEASURE, SC_AUX, SC_RAW,
 SC_END) = range(10)  # fmt: skip


@_mix._hot
def scratch_offsets(k, d):
    """Starts, relative to the scratch region, of: the retrospective probabilities (K x K), the
    new transition statistics (K^3), the new emission statistics (K^2 S), the pooled mean (D)
    and covariance (D x D), per-regime logs (K), the label measure (K), K more, and the end."""
    s = 1 + d + d * d
    back = 0
    new_t = back + k * k
    new_e = new_t + k * k * k
    pool_mean = new_e + k * k * s
    pool_cov = pool_mean + d
    logs = pool_cov + d * d
    measure = logs + k
    aux = measure + k
    raw = aux + k
    end = raw + k
    return (back, new_t, new_e, pool_mean, pool_cov, logs, measure, aux, raw, end)


@_mix._hot
def offsets(k, d, u):
    """(K, D, U, S, start of each region..., end) for a detector of this shape."""
    s = 1 + d + d * d
    loc = HEADER_SIZE
    scale = loc + d
    warm = scale + d
    filtered = warm + u * (1 + d)
    predicted = filtered + k
    transitions = predicted + k
    tstats = transitions + k * k
    estats = tstats + k * k * k
    order = estats + k * k * s
    last_p = order + k
    last_raw = last_p + k
    profile = last_raw + k
    scratch = profile + 2 * PROFILE_BUCKETS
    mix = scratch + scratch_offsets(k, d)[SC_END]
    end = mix + _mix.offsets(k, d, _mix.FULL, 0)[_mix.L_END]
    return (k, d, u, s, loc, scale, warm, filtered, predicted, transitions, tstats, estats,
            order, last_p, last_raw, profile, scratch, mix, end)  # fmt: skip


@_mix._hot
def layout(buf):
    """:func:`offsets` for the shape recorded in ``buf``'s header."""
    return offsets(int(buf[N_REGIMES]), int(buf[N_FEATURES]), int(buf[WARMUP]))


def size(k: int, d: int, u: int) -> int:
    """Length of the buffer of a detector with ``k`` regimes, ``d`` features, warm-up ``u``."""
    return int(offsets(k, d, u)[O_END])


def regions(buf: np.ndarray) -> dict[str, np.ndarray]:
    """Named flat views of the regions of ``buf`` (writes go through to the buffer)."""
    lay = layout(buf)
    bounds = lay[O_LOC : O_END + 1]
    return {name: buf[bounds[i] : bounds[i + 1]] for i, name in enumerate(REGION_NAMES)}


def mixture(buf: np.ndarray) -> np.ndarray:
    """The emission model's own buffer (a view), laid out as :mod:`streamgmm._kernels` says."""
    lay = layout(buf)
    return buf[lay[O_MIX] : lay[O_END]]
