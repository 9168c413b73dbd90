"""The compiled per-tick step of the event detector: the stages in order, and the output row.

(:class:`~streamgmm.regime.RegimeDetector` runs :func:`streamgmm.regime.forecast.market_run`.)

:func:`regime_run` is the one entry into the step: the detectors call it for one tick or many
(:mod:`streamgmm.regime.base`), and it applies each tick in order with :func:`_apply`:

1. **features** (:mod:`~streamgmm.regime.features`): check the tick, apply the time rules,
   standardise its feature vector (dividing by the intraday profile's multiplier,
   :mod:`~streamgmm.regime.profile`). During the warm-up the tick is buffered; at the end of the
   warm-up (:func:`_start`) the unit and the scale are fixed, the model is initialised and the
   buffered ticks are replayed through it.
2. **model** (:mod:`~streamgmm.regime.hmm`): one tick of online EM for the hidden Markov model:
   the filter, the auxiliary statistics, the M-step. The profile then learns from the tick.
3. **labels** (:mod:`~streamgmm.regime.labels`): the output is kept in the current labels, then
   the regimes are re-ranked by variance.
4. **drift** (:mod:`~streamgmm.regime.drift`): Page-Hinkley on the model's shortfall.
5. **output row**: status, regime, probabilities, log-likelihood, drift (the ``R_*`` slots of
   :mod:`~streamgmm.regime.layout`), which the detector turns into the output record.

A tick the step refuses (a bad value) leaves the buffer untouched, and every loop is bounded by
the buffer's shape or the number of ticks given. Owns ``PHASE`` and the last output (the
slots ``LAST_LL``, ``LAST_DRIFT``, ``LAST_WARM`` and the regions ``last_probabilities`` and
``last_raw_probabilities``), which a skipped tick repeats.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from streamgmm import _validate as V
from streamgmm._numeric import hot, jit
from streamgmm.mixture import layout as mx
from streamgmm.regime import drift, features, hmm, labels, profile
from streamgmm.regime.layout import (
    DRIFT_SCORE,
    EMISSIONS,
    EVENTS,
    EXCESS,
    EXPECTED_SQ,
    FILTERED,
    KIND,
    LAST_DRIFT,
    LAST_LL,
    LAST_P,
    LAST_RAW,
    LAST_WARM,
    N_FEATURES,
    N_LABEL_CHANGES,
    N_REGIMES,
    N_SEEN,
    ORDER,
    PHASE,
    PROFILE_M,
    R_DRIFT,
    R_DRIFT_SCORE,
    R_FIELD,
    R_LL,
    R_PROBS,
    R_REGIME,
    R_SEEN,
    R_STATUS,
    R_VAR,
    R_VOLATILITY,
    R_WARM,
    RAW,
    RUNNING,
    S_COLD,
    S_DUPLICATE,
    S_FIRST,
    S_OUT_OF_ORDER,
    S_WARM,
    TABLE,
    WARMING,
    WARMUP,
    read_layout,
)

__all__ = ["last_output_from_state", "last_output_to_state", "regime_run"]


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
    row[R_VOLATILITY] = np.nan  # no return forecast from this step
    row[R_VAR] = np.nan
    best = 0
    for r in range(k_total):
        p = buf[lay[LAST_P] + r]
        row[R_PROBS + r] = p
        row[R_PROBS + k_total + r] = buf[lay[LAST_RAW] + r]
        if p > buf[lay[LAST_P] + best]:
            best = r
    row[R_REGIME] = best


@jit
def _start(buf, mix):
    """End of the warm-up: fix the time unit and the scale, initialise, replay the buffer.

    Returns False (the warm-up starts over) when the buffered values do not vary.
    """
    if not features.fix_scale(buf):
        return False
    lay = read_layout(buf)
    mlay = mx.read_layout(mix)
    hmm.initialise(buf, mix)
    labels.reset(buf, lay)
    buf[PHASE] = RUNNING
    values = np.empty(lay[N_FEATURES])
    for i in range(lay[WARMUP]):
        evidence = features.replay_tick(buf, lay, mix, mlay, i, values)
        score = hmm.learn(buf, mix, evidence)
        if evidence:
            buf[LAST_LL] = score
    labels.relabel(buf, lay, mix, mlay)
    buf[N_LABEL_CHANGES] = 0.0
    return True


@hot
def _apply(buf, lay, mix, mlay, ts, vals, row):
    """Predict, then learn, one tick; writes its output row and returns its status."""
    for j in range(row.shape[0]):
        row[j] = 0.0
    status, field, evidence, dt, log_return = features.standardise(buf, lay, mix, mlay, ts, vals)
    if status in (S_DUPLICATE, S_OUT_OF_ORDER):
        features.skip(buf, status)
        _write_output(buf, lay, row, status, buf[LAST_WARM])
        row[R_DRIFT] = 0.0
        row[R_LL] = np.nan  # nothing was scored: never the previous tick's value
        return status
    if status != S_WARM and status != S_FIRST:
        row[R_STATUS] = status
        row[R_FIELD] = field
        return status
    features.accept(buf, ts, vals)
    if status == S_FIRST and int(buf[KIND]) != EVENTS:
        _write_output(buf, lay, row, S_FIRST, buf[LAST_WARM])
        return S_FIRST
    buf[LAST_DRIFT] = 0.0
    if int(buf[PHASE]) == WARMING:
        if not features.buffer_tick(buf, lay, dt, vals, log_return) or not _start(buf, mix):
            _write_output(buf, lay, row, S_COLD, 0.0)
            return S_COLD
        buf[LAST_WARM] = 1.0
        buf[LAST_LL] -= features.log_scale(buf, lay)
        _remember_outputs(buf, lay, True)
        _write_output(buf, lay, row, S_WARM, 1.0)
        return S_WARM
    if not evidence:
        features.count_gap(buf)
    x = mix[mlay[mx.X]]
    score = hmm.learn(buf, mix, evidence)
    scored = evidence and math.isfinite(score)
    if scored and profile.learns(buf) and buf[EXPECTED_SQ] > 0.0:
        profile.update(buf, lay, ts, x * x * buf[PROFILE_M] / buf[EXPECTED_SQ])
    if scored:
        buf[LAST_LL] = score - features.log_scale(buf, lay) - 0.5 * math.log(buf[PROFILE_M])
        drift.track_log_likelihood(buf, buf[LAST_LL])
        if drift.update(buf, buf[EXCESS], float(lay[N_FEATURES])):
            buf[LAST_DRIFT] = 1.0
    # A new ranking applies at once: the output's probabilities are in the same regime order
    # as the fitted views (means_, covariances_) after this tick.
    labels.relabel(buf, lay, mix, mlay)
    _remember_outputs(buf, lay, scored)
    _write_output(buf, lay, row, S_WARM, 1.0)
    if not scored:
        row[R_LL] = np.nan  # no forecast was scored on this tick
    return S_WARM


@jit
def regime_run(buf, data, out):
    """Apply ticks ``0 .. len(data) - 1`` in order; ``out[i]`` is tick i's output row.

    ``data[i]`` is ``(ts, price)`` or ``(ts, field values...)``. Refused ticks leave the
    buffer unchanged and carry their status; the run goes on with the next tick.
    """
    lay = read_layout(buf)
    mix = buf[lay[EMISSIONS] : lay[EMISSIONS + 1]]
    mlay = mx.read_layout(mix)
    for i in range(data.shape[0]):
        _apply(buf, lay, mix, mlay, data[i, 0], data[i, 1:], out[i])


# -- state (Python) -------------------------------------------------------------------------------

_LAST_FIELDS = ("probabilities", "raw_probabilities", "log_likelihood", "drift_detected", "warm")


def last_output_to_state(buf: np.ndarray) -> dict[str, Any]:
    """The last output (repeated for a skipped tick): probabilities, log-likelihood, flags."""
    return {
        "probabilities": TABLE.view(buf, LAST_P).tolist(),
        "raw_probabilities": TABLE.view(buf, LAST_RAW).tolist(),
        "log_likelihood": float(buf[LAST_LL]),
        "drift_detected": bool(buf[LAST_DRIFT]),
        "warm": bool(buf[LAST_WARM]),
    }


def last_output_from_state(path: str, last: Any, buf: np.ndarray) -> None:
    """Validate ``last`` (:func:`last_output_to_state` output) and write it into ``buf``."""
    V.fields(path, last, _LAST_FIELDS)
    k = int(buf[N_REGIMES])
    probs = V.matrix(f"{path}.probabilities", last["probabilities"], (k,), lo=0, hi=1)
    raw = V.matrix(f"{path}.raw_probabilities", last["raw_probabilities"], (k,), lo=0, hi=1)
    TABLE.view(buf, LAST_P)[:] = probs
    TABLE.view(buf, LAST_RAW)[:] = raw
    buf[LAST_LL] = V.number(f"{path}.log_likelihood", last["log_likelihood"])
    buf[LAST_DRIFT] = V.flag(f"{path}.drift_detected", last["drift_detected"])
    buf[LAST_WARM] = V.flag(f"{path}.warm", last["warm"])
    if buf[LAST_WARM] and int(buf[PHASE]) != RUNNING:
        raise ValueError(f"{path}.warm is true but the model is not running")
