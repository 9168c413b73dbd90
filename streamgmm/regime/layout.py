"""The layout of a detector's state buffer and of the output row of its compiled step.

A detector keeps everything in one flat ``float64`` buffer, declared here once as a table
(:class:`streamgmm._layout.Table`): the shape, where each region starts, then the header
slots, each group under the stage of the step that owns it. Slots are numbered by their order
here, so adding one is one line in its stage's block. The compiled step reads the shape and
the table of contents once per call (:func:`read_layout`); Python reads regions by name
(:data:`TABLE`'s ``views``). numba freezes these numbers into the compiled code: after editing
the table, delete the cached kernels (see :mod:`streamgmm._numeric`).

The emission model is an :class:`streamgmm.OnlineGaussianMixture` buffer nested in the
detector's (region :data:`EMISSIONS`, laid out by :mod:`streamgmm.mixture.layout`).

The output row each tick writes (``R_*`` slots, :func:`row_width`) and its status codes
(``S_*``) are the rest of the contract between the compiled step and Python.
"""

from __future__ import annotations

import numpy as np

from streamgmm._layout import Table, read_ints
from streamgmm._numeric import hot
from streamgmm.mixture import layout as mx

#: Buckets of the intraday profile: half-hours of the UTC day.
PROFILE_BUCKETS = 48


def n_stats(d: int) -> int:
    """Sufficient statistics per regime for ``d`` features: occupancy, sum of x, sum of x xᵀ."""
    return 1 + d + d * d


#: The table: the shape is K regimes, D features, a warm-up of U ticks, S statistics per regime.
TABLE = Table("n_regimes", "n_features", "warmup", "n_stats")
N_REGIMES, N_FEATURES, WARMUP, N_STATS = TABLE.shape
#: ``KIND``: price ticks (log returns) or event ticks (numeric fields as they are).
(KIND,) = TABLE.slots(1)
TICKS, EVENTS = range(2)

# -- where each region starts ---------------------------------------------------------------------
# features: each feature's location and scale; the warm-up's ticks (spacing, then the values).
LOC = TABLE.region("loc", lambda k, d, u, s: d)
SCALE = TABLE.region("scale", lambda k, d, u, s: d)
WARMUP_BUFFER = TABLE.region("warmup_buffer", lambda k, d, u, s: u * (1 + d))
# intraday profile: per half-hour bucket, the sum of z and the count.
BUCKETS = TABLE.region("profile_buckets", lambda k, d, u, s: 2 * PROFILE_BUCKETS)
# hidden Markov model: filtered and predicted probabilities, the transition matrix, the
# auxiliary statistics per current regime (transitions: K x K, emissions: K x S), and the
# emission model (a mixture buffer, derived from the statistics by the M-step).
FILTERED = TABLE.region("filtered", lambda k, d, u, s: k)
PREDICTED = TABLE.region("predicted", lambda k, d, u, s: k)
TRANSITIONS = TABLE.region("transitions", lambda k, d, u, s: k * k)
TRANSITION_STATS = TABLE.region("transition_stats", lambda k, d, u, s: k * k * k)
EMISSION_STATS = TABLE.region("emission_stats", lambda k, d, u, s: k * k * s)
EMISSIONS = TABLE.region("emissions", lambda k, d, u, s: mx.TABLE.size(k, d, 0, d * d))
# hidden Markov model, working space of one tick: retrospective probabilities (K x K), the new
# statistics, the pooled mean and covariance, per-regime log-densities and log-occupancies,
# the M-step's row, and the tick's raw probabilities.
BACK = TABLE.region("back", lambda k, d, u, s: k * k)
NEW_TRANSITION_STATS = TABLE.region("new_transition_stats", lambda k, d, u, s: k * k * k)
NEW_EMISSION_STATS = TABLE.region("new_emission_stats", lambda k, d, u, s: k * k * s)
POOL_MEAN = TABLE.region("pool_mean", lambda k, d, u, s: d)
POOL_COV = TABLE.region("pool_cov", lambda k, d, u, s: d * d)
LOGS = TABLE.region("logs", lambda k, d, u, s: k)
LOG_MASS = TABLE.region("log_mass", lambda k, d, u, s: k)
AUX = TABLE.region("aux", lambda k, d, u, s: k)
RAW = TABLE.region("raw", lambda k, d, u, s: k)
# labels: the model state shown as each regime; working space: each regime's variance measure.
ORDER = TABLE.region("order", lambda k, d, u, s: k)
MEASURE = TABLE.region("measure", lambda k, d, u, s: k)
# the step's last output, in regime order: filtered and raw probabilities.
LAST_P = TABLE.region("last_probabilities", lambda k, d, u, s: k)
LAST_RAW = TABLE.region("last_raw_probabilities", lambda k, d, u, s: k)
END = TABLE.end()

# -- header slots ---------------------------------------------------------------------------------
# features: settings; the time unit; the last accepted tick; counters; the warm-up's fill.
DT_UNIT, GAP_UNITS, MIN_DT_UNITS = TABLE.slots(3)
UNIT, LAST_TS, LAST_PRICE = TABLE.slots(3)
N_SEEN, N_DUPLICATES, N_OUT_OF_ORDER, N_GAPS, N_BUFFERED = TABLE.slots(5)
# intraday profile: settings (on/off, half-life in seconds); the gate and the decayed totals;
# working space of one tick: its variance multiplier.
PROFILE, PROFILE_HALFLIFE = TABLE.slots(2)
PROFILE_ON, PROFILE_DAY, PROFILE_S, PROFILE_S2, PROFILE_N = TABLE.slots(5)
(PROFILE_M,) = TABLE.slots(1)
# hidden Markov model: settings; the count of steps with evidence; outputs of one tick for
# the drift monitor (the excess) and the profile (the predictive mean square).
ALPHA, STEP_OFFSET, MIN_STEP = TABLE.slots(3)
SELF_TRANSITION, TRANSITION_PRIOR = TABLE.slots(2)
VARIANCE_PRIOR, PRIOR_LOW, PRIOR_HIGH, VARIANCE_FLOOR = TABLE.slots(4)
(N_STEPS,) = TABLE.slots(1)
EXCESS, EXPECTED_SQ = TABLE.slots(2)
# labels: the setting and the count of changes.
(HYSTERESIS,) = TABLE.slots(1)
(N_LABEL_CHANGES,) = TABLE.slots(1)
# drift: settings (and the decay factors derived from the half-lives); the reference,
# Page-Hinkley's sums since its last reset (and a pending reset), the score, the EWMA of the
# log-likelihood, the count of alarms.
DRIFT_THRESHOLD, DRIFT_DELTA, DRIFT_CLIP, DRIFT_MIN, PH_RUNNING = TABLE.slots(5)
DRIFT_DECAY, MEAN_DECAY = TABLE.slots(2)
REF_MEAN, REF_VAR, REF_WEIGHT = TABLE.slots(3)
PH_N, PH_MEAN, PH_SUM, PH_MIN, PH_RESET = TABLE.slots(5)
DRIFT_SEEN, DRIFT_SCORE, MEAN_LL, MEAN_LL_WEIGHT, N_DRIFTS = TABLE.slots(5)
# the step: the phase, and the last output's scalars.
(PHASE,) = TABLE.slots(1)
LAST_LL, LAST_DRIFT, LAST_WARM = TABLE.slots(3)
#: ``PHASE``: buffering the warm-up, or running the online HMM.
WARMING, RUNNING = range(2)

# -- the output row -------------------------------------------------------------------------------
#: Status, field, regime, warm, n_samples_seen, log-likelihood (NaN: no forecast), drift score,
#: drift flag, the next tick's volatility and value at risk (NaN where there is none), then K
#: filtered and K raw probabilities in regime order. Both detectors' steps write this row.
(R_STATUS, R_FIELD, R_REGIME, R_WARM, R_SEEN, R_LL, R_DRIFT_SCORE, R_DRIFT,
 R_VOLATILITY, R_VAR, R_PROBS) = range(11)  # fmt: skip
#: Per-tick status: an output row from the running model, or the repeated cold output during
#: the warm-up; the first tick of a price stream (it only sets the reference price); skipped
#: ticks (the previous output repeats with drift_detected false); refused ticks (the state is
#: unchanged): non-finite ts, a bad value (R_FIELD names which), a price that is not
#: positive, a return too large to use.
(S_WARM, S_COLD, S_FIRST, S_DUPLICATE, S_OUT_OF_ORDER,
 S_BAD_TS, S_BAD_VALUE, S_BAD_PRICE, S_BAD_RETURN) = range(9)  # fmt: skip


def row_width(n_regimes: int) -> int:
    """Width of an output row for ``n_regimes`` regimes."""
    return R_PROBS + 2 * n_regimes


@hot
def read_layout(buf):
    """The shape and where each region starts, as integers (the header's first slots)."""
    return read_ints(buf, END)


def size(k: int, d: int, u: int) -> int:
    """Length of the buffer of a detector with ``k`` regimes, ``d`` features, warm-up ``u``."""
    return TABLE.size(k, d, u, n_stats(d))


def new_buffer(kind: int, k: int, d: int, u: int) -> np.ndarray:
    """A zeroed detector buffer with its shape, table of contents and nested mixture header."""
    buf = TABLE.new(k, d, u, n_stats(d))
    buf[KIND] = kind
    mixture(buf)[:] = mx.new_state(k, d, mx.FULL, 0)
    return buf


def regions(buf: np.ndarray) -> dict[str, np.ndarray]:
    """Named flat views of the regions of ``buf`` (writes go through to the buffer)."""
    return TABLE.views(buf)


def mixture(buf: np.ndarray) -> np.ndarray:
    """The emission model's own buffer (a view), laid out by :mod:`streamgmm.mixture.layout`."""
    return TABLE.view(buf, EMISSIONS)


# == the market detector's buffer ================================================================
# RegimeDetector runs the forecaster's step (:mod:`streamgmm.regime.forecast`): a volatility
# forecast pooled from two models, a regime filter on its level, and drift on its probability
# integral transform. Its buffer is a second table; the shape is the warm-up's length U.
MARKET = Table("warmup")
(M_WARMUP,) = MARKET.shape
#: Gap buckets: log2 of a spacing in units, [2, 4), [4, 8), ... (bucket 0: an ordinary step).
GAP_BUCKETS = 24

# -- a volatility model's block (one per model, :mod:`streamgmm.regime.volatility`) --------------
# The model's scalars; its parameters theta = (a, g, b, log(nu - 2), mu, c); the derivatives of
# its variance (GJR: h, EGARCH: log h) by theta; the curvature of the recursive maximum
# likelihood and its Cholesky factor (reused between refactorisations); the tick's score and
# step (working space); the cached constants of the t density at the cached nu, and its
# value-at-risk quantile at the nu it was computed for (NaN: recompute). The time rules
# and the intraday profile standardise by the model's own variance, so each model keeps its
# own gap and profile sums (:mod:`streamgmm.regime.clock`).
N_THETA = 6
(VH, VV, VW, VSTEPS, VNU, VLOGC, VDIGAMMA, VQ_NU, VQ,
 A0_S, A0_N, PROF_DAY, PROF_S, PROF_N, _V_HEAD) = range(15)  # fmt: skip
VTHETA = _V_HEAD
VDH = VTHETA + N_THETA
VFISH = VDH + N_THETA
VCHOL = VFISH + N_THETA * N_THETA
VGRAD = VCHOL + N_THETA * N_THETA
VSTEP = VGRAD + N_THETA
VGAP_S = VSTEP + N_THETA
VGAP_N = VGAP_S + GAP_BUCKETS
VPRO_S = VGAP_N + GAP_BUCKETS
VPRO_N = VPRO_S + PROFILE_BUCKETS
MODEL_SIZE = VPRO_N + PROFILE_BUCKETS

WARM_TICKS = MARKET.region("warm_ticks", lambda u: 2 * u)
GJR = MARKET.region("gjr", lambda u: MODEL_SIZE)
EGARCH = MARKET.region("egarch", lambda u: MODEL_SIZE)
M_END = MARKET.end()

# -- header slots -------------------------------------------------------------------------------
# time rules (:mod:`streamgmm.regime.clock`): settings; the unit and scale; the last tick;
# counters; the warm-up's fill.
M_DT_UNIT, M_GAP_UNITS, M_MIN_DT, M_PROFILE, M_PROFILE_HALFLIFE = MARKET.slots(5)
M_UNIT, M_SCALE, M_LAST_TS, M_LAST_PRICE = MARKET.slots(4)
M_N_SEEN, M_N_DUPLICATES, M_N_OUT_OF_ORDER, M_N_GAPS, M_N_BUFFERED = MARKET.slots(5)
# pool (:mod:`streamgmm.regime.volatility`): the two models' log weights; the value-at-risk's
# level as its normal score.
M_LOG_W_GJR, M_LOG_W_EG, M_VAR_Z = MARKET.slots(3)
# regime filter (:mod:`streamgmm.regime.level`): the smoothed level and its weight; filtered
# probabilities (2), transitions (2 x 2), statistics per state (occupancy, sums of y and y^2),
# pair statistics (2 x 2), means (2) and the shared variance, steps, the high state, the
# count of label changes; the tick's raw probabilities (working space).
M_LEVEL, M_LEVEL_W = MARKET.slots(2)
M_PF0, M_PF1 = MARKET.slots(2)
M_T00, M_T01, M_T10, M_T11 = MARKET.slots(4)
M_S0, M_SY0, M_SYY0, M_S1, M_SY1, M_SYY1 = MARKET.slots(6)
M_X00, M_X01, M_X10, M_X11 = MARKET.slots(4)
M_MU0, M_MU1, M_VAR = MARKET.slots(3)
M_HMM_N, M_HIGH, M_N_LABEL_CHANGES = MARKET.slots(3)
M_RAW0, M_RAW1 = MARKET.slots(2)
# drift (:mod:`streamgmm.regime.drift`): the CUSUM and the count of alarms.
M_CUSUM, M_N_DRIFTS = MARKET.slots(2)
# the step (:mod:`streamgmm.regime.forecast`): the phase; the next tick's forecast
# (volatility and value at risk, natural units) and the last output's drift flag.
M_PHASE, M_NEXT_SD, M_NEXT_VAR = MARKET.slots(3)
# dashboards: the EWMA of the log-likelihood (half-life 20 ticks) and its weight.
M_MEAN_LL, M_MEAN_LL_W = MARKET.slots(2)

#: Extra columns of the market step's row, after the probabilities: the predictive the tick was
#: scored under (weight of the GJR model; each model's mean, sd and degrees of freedom, natural
#: log-return units) and the tick's probability integral transform.
(X_W, X_MEAN_A, X_SD_A, X_NU_A, X_MEAN_B, X_SD_B, X_NU_B, X_PIT) = range(8)
N_EXTRA = 8


def market_row_width(extra: bool = False) -> int:
    """Width of the market step's output row (two regimes), with ``extra`` the scored
    predictive's columns after it (written only into rows that wide)."""
    return R_PROBS + 4 + (N_EXTRA if extra else 0)


@hot
def read_market_layout(buf):
    """The market buffer's shape and region starts, as integers."""
    return read_ints(buf, M_END)


def new_market_buffer(u: int) -> np.ndarray:
    """A zeroed market-detector buffer with its shape and table of contents."""
    return MARKET.new(u)
