"""Compiled run of :class:`streamgmm.RegimeDetector`'s per-tick step over many ticks of one key.

``RegimeDetector.learn_predict_one`` calls about twenty small Python functions per tick
(features, mixture, labels, filter), which costs about 10 µs. :func:`regime_run` performs the
same arithmetic, in the same order, for a run of ticks in one compiled call; only the drift
monitor (river's Page-Hinkley) and the output dicts stay in Python. It covers the common
configuration: two regimes, the single feature ``var_cbrt``, a full covariance and fixed
transitions. Anything else, and every unusual tick, takes the per-tick path.

The run stops *before* a tick it does not handle (a duplicate or out-of-order ``ts``, a
non-positive price, a feature or emission that is not finite) without touching any state, so
the caller can hand that tick to the per-tick path, which raises or skips it exactly as it
always does. It stops *after* a tick whose learning step breaks the regime ranking, so the
caller can relabel before the next tick. Pure arithmetic on arrays: no I/O, no Python objects.

Array layouts (the caller packs and unpacks them):

- ``features``: last ts, last price, EWMA sum of squared returns, EWMA weight, ``dt_unit``,
  ``max_dt_units``, ``return_scale``, ``vol_halflife``;
- ``log_filter``: log filtered probabilities of regimes 0 and 1, then the row-major log
  transition matrix;
- ``order``: component index of regime 0 and of regime 1;
- ``out`` row per tick: filtered p0 and p1, raw posterior of regime 0 and 1, log p(x), the
  regime-conditional log-likelihood and its model expectation (the drift monitor's inputs).
"""

from __future__ import annotations

import math

import numpy as np

from streamgmm._kernels import (
    L_FACTOR,
    L_MASS,
    L_MEANS,
    L_P,
    L_X,
    _jit,
    _learn_point,
    _posterior,
    layout,
)

__all__ = ["DONE", "RELABEL", "STOPPED", "regime_run"]

#: How a run ended: every tick done; stopped before tick ``i``; tick ``i - 1`` needs a relabel.
DONE, STOPPED, RELABEL = 0, 1, 2

# The same constants as the per-tick path (features.py, regime.py).
_MIN_DT_UNITS = 1e-12
_MAX_FEATURE = 1e100
_ONE_THIRD = 1.0 / 3.0
_PROBA_FLOOR = 1e-300
_LOG_2PI_E = math.log(2.0 * math.pi) + 1.0


@_jit
def _log_add(u, v):
    # ForwardFilter._update2's two-term log-sum-exp, operation for operation.
    top = v if v > u else u
    if top == -np.inf:
        return top
    return top + math.log(math.exp(u - top) + math.exp(v - top))


@_jit
def regime_run(mix, features, log_filter, order, margin, ts, price, start, out):
    """Predict-then-learn ticks ``start, start + 1, ...``; returns ``(next index, how)``.

    Parameters
    ----------
    mix
        The mixture's state buffer (two components, one feature, full covariance).
    features, log_filter, order
        See the module docstring; updated in place for every tick processed.
    margin
        ``1 + label_hysteresis``.
    ts, price
        The ticks' timestamps and prices.
    start
        First tick to process.
    out
        ``(len(ts), 7)`` output rows, written for every tick processed.
    """
    lay = layout(mix)
    ox, p, mass, means, factor = lay[L_X], lay[L_P], lay[L_MASS], lay[L_MEANS], lay[L_FACTOR]
    c0, c1 = order[0], order[1]
    for i in range(start, ts.shape[0]):
        t, pr = ts[i], price[i]
        last_ts, last_price = features[0], features[1]
        if not (t > last_ts and pr > 0.0 and math.isfinite(t) and math.isfinite(pr)):
            return i, STOPPED
        # TickFeatures._compute
        dt = (t - last_ts) / features[4]
        dt = min(max(dt, _MIN_DT_UNITS), features[5])
        ret = features[6] * math.log(pr / last_price) / math.sqrt(dt)
        lam = 2.0 ** (-dt / features[7])
        sq = lam * features[2] + (1.0 - lam) * ret * ret
        w = lam * features[3] + (1.0 - lam)
        x = (sq / w) ** _ONE_THIRD
        if not (math.isfinite(sq) and abs(ret) <= _MAX_FEATURE):
            return i, STOPPED
        if not (math.isfinite(x) and abs(x) <= _MAX_FEATURE):
            return i, STOPPED
        # _Detector._emissions on the mixture before it learns this tick.
        m0, m1 = mix[mass], mix[mass + 1]
        if not (m0 > 0.0 and m1 > 0.0):
            return i, STOPPED
        total = m0 + m1
        log_w0, log_w1 = math.log(m0 / total), math.log(m1 / total)
        mix[ox] = x
        score = _posterior(mix, lay, ox)
        q0, q1 = mix[p + c0], mix[p + c1]
        e0 = math.log(_PROBA_FLOOR if q0 < _PROBA_FLOOR else q0) - (log_w0 if c0 == 0 else log_w1)
        e1 = math.log(_PROBA_FLOOR if q1 < _PROBA_FLOOR else q1) - (log_w0 if c1 == 0 else log_w1)
        if not (math.isfinite(e0) and math.isfinite(e1) and math.isfinite(score)):
            return i, STOPPED
        # ForwardFilter._update2
        la0, la1 = log_filter[0], log_filter[1]
        p0 = _log_add(la0 + log_filter[2], la1 + log_filter[4])
        p1 = _log_add(la0 + log_filter[3], la1 + log_filter[5])
        j0 = p0 + e0
        j1 = p1 + e1
        top = j1 if j1 > j0 else j0
        norm = top + math.log(math.exp(j0 - top) + math.exp(j1 - top))
        a0 = j0 - norm
        a1 = j1 - norm
        log_filter[0], log_filter[1] = a0, a1
        f0, f1 = math.exp(a0), math.exp(a1)
        # _Detector._update_drift's inputs: entropies of the components before learning.
        v0 = mix[factor + c0] * mix[factor + c0]
        v1 = mix[factor + c1] * mix[factor + c1]
        h0 = 0.5 * (_LOG_2PI_E + (math.log(v0) if v0 != 0.0 else -np.inf))
        h1 = 0.5 * (_LOG_2PI_E + (math.log(v1) if v1 != 0.0 else -np.inf))
        out[i, 0], out[i, 1], out[i, 2], out[i, 3], out[i, 4] = f0, f1, q0, q1, score
        out[i, 5] = f0 * (e0 + score) + f1 * (e1 + score)
        out[i, 6] = -(f0 * h0 + f1 * h1)
        # OnlineGaussianMixture.learn_one, then the features' commit.
        mix[ox] = x
        _learn_point(mix, lay)
        features[0], features[1], features[2], features[3] = t, pr, sq, w
        # _Detector._relabel's test: the ranking by mean var_cbrt, with hysteresis.
        if mix[means + c0] > margin * mix[means + c1]:
            return i + 1, RELABEL
    return ts.shape[0], DONE
