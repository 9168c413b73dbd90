"""Compiled run of :class:`streamgmm.RegimeDetector`'s per-tick step over many ticks of one key.

``RegimeDetector.learn_predict_one`` calls about twenty small Python functions per tick
(features, mixture, labels, filter), which costs about 10 µs. :func:`regime_run` performs the
same arithmetic, in the same order, for a run of ticks in one compiled call; only the drift
monitor (river's Page-Hinkley) and the output dicts stay in Python. It covers the common
configuration: 2 to 7 regimes, the single feature ``var_cbrt``, a full covariance and fixed
transitions. Anything else, and every unusual tick, takes the per-tick path.

The run stops *before* a tick it does not handle (a duplicate or out-of-order ``ts``, a
non-positive price, a feature or emission that is not finite) without touching any state, so
the caller can hand that tick to the per-tick path, which raises or skips it exactly as it
always does. It stops *after* a tick whose learning step breaks the regime ranking, so the
caller can relabel before the next tick. Pure arithmetic on arrays: no I/O, no Python objects.

Array layouts (the caller packs and unpacks them):

- ``features``: last ts, last price, EWMA sum of squared returns, EWMA weight, ``dt_unit``,
  ``max_dt_units``, ``return_scale``, ``vol_halflife``;
- ``log_filter``: the K log filtered regime probabilities, then the row-major K x K log
  transition matrix;
- ``order``: the component index of each regime, calmest first;
- ``out`` row per tick (2 K + 3 values): the K filtered regime probabilities, the K raw
  posteriors in regime order, log p(x), then the regime-conditional log-likelihood and its
  model expectation (the drift monitor's inputs).
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
def _fsum(values, n, partials):
    """``math.fsum(values[:n])`` for finite values: CPython's algorithm, step for step.

    Shewchuk's exact partial sums, then the half-even correction across partials, so the
    result is the correctly rounded sum, the same float CPython returns.
    """
    m = 0
    for k in range(n):
        x = values[k]
        i = 0
        for j in range(m):
            y = partials[j]
            if abs(x) < abs(y):
                x, y = y, x
            hi = x + y
            yr = hi - x
            lo = y - yr
            if lo != 0.0:
                partials[i] = lo
                i += 1
            x = hi
        m = i
        if x != 0.0:
            partials[m] = x
            m += 1
    hi = 0.0
    if m > 0:
        m -= 1
        hi = partials[m]
        lo = 0.0
        while m > 0:
            x = hi
            m -= 1
            y = partials[m]
            hi = x + y
            yr = hi - x
            lo = y - yr
            if lo != 0.0:
                break
        if m > 0 and ((lo < 0.0 and partials[m - 1] < 0.0) or (lo > 0.0 and partials[m - 1] > 0.0)):
            y = lo * 2.0
            x = hi + y
            yr = x - hi
            if y == yr:
                hi = x
    return hi


@_jit
def _logsumexp(values, n, scratch, partials):
    # persistence.logsumexp: the largest term, then fsum of the shifted exponentials.
    top = values[0]
    for k in range(1, n):
        if values[k] > top:
            top = values[k]
    if top == -np.inf:
        return top
    for k in range(n):
        scratch[k] = math.exp(values[k] - top)
    return top + math.log(_fsum(scratch, n, partials))


@_jit
def regime_run(mix, features, log_filter, order, margin, ts, price, start, out):
    """Predict-then-learn ticks ``start, start + 1, ...``; returns ``(next index, how)``.

    Parameters
    ----------
    mix
        The mixture's state buffer (K components, one feature, full covariance).
    features, log_filter, order
        See the module docstring; updated in place for every tick processed.
    margin
        ``1 + label_hysteresis``.
    ts, price
        The ticks' timestamps and prices.
    start
        First tick to process.
    out
        ``(len(ts), 2 K + 3)`` output rows, written for every tick processed.
    """
    lay = layout(mix)
    ox, p, mass, means, factor = lay[L_X], lay[L_P], lay[L_MASS], lay[L_MEANS], lay[L_FACTOR]
    k_total = order.shape[0]
    log_w = np.empty(k_total)
    emission = np.empty(k_total)
    entropy = np.empty(k_total)
    terms = np.empty(k_total)
    predicted = np.empty(k_total)
    scratch = np.empty(k_total)
    partials = np.empty(k_total + 1)
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
        # _Detector._component_stats on the mixture before it learns this tick: the total
        # mass summed left to right (numpy's sum does the same below 8 terms), the log-weights
        # and, for one feature, the entropies from the standard deviations.
        total = 0.0
        for c in range(k_total):
            if not mix[mass + c] > 0.0:
                return i, STOPPED
            total += mix[mass + c]
        for c in range(k_total):
            log_w[c] = math.log(mix[mass + c] / total)
            v = mix[factor + c] * mix[factor + c]
            entropy[c] = 0.5 * (_LOG_2PI_E + (math.log(v) if v != 0.0 else -np.inf))
        # _Detector._emissions
        mix[ox] = x
        score = _posterior(mix, lay, ox)
        if not math.isfinite(score):
            return i, STOPPED
        for r in range(k_total):
            q = mix[p + order[r]]
            emission[r] = math.log(_PROBA_FLOOR if q < _PROBA_FLOOR else q) - log_w[order[r]]
            if not math.isfinite(emission[r]):
                return i, STOPPED
            out[i, k_total + r] = q
        # ForwardFilter.update with fixed transitions. Its two-state shortcut (_update2) gives
        # the same floats as this general path: fsum of two terms is their rounded sum.
        for j in range(k_total):
            for r in range(k_total):
                terms[r] = log_filter[r] + log_filter[k_total + r * k_total + j]
            predicted[j] = _logsumexp(terms, k_total, scratch, partials)
        for j in range(k_total):
            predicted[j] += emission[j]
        norm = _logsumexp(predicted, k_total, scratch, partials)
        for j in range(k_total):
            log_filter[j] = predicted[j] - norm
        for r in range(k_total):
            out[i, r] = math.exp(log_filter[r])
        out[i, 2 * k_total] = score
        # _Detector._update_drift's inputs: the filtered mix of the regime-conditional
        # log-likelihoods and of the components' expected ones (minus their entropies).
        for r in range(k_total):
            terms[r] = out[i, r] * (emission[r] + score)
        out[i, 2 * k_total + 1] = _fsum(terms, k_total, partials)
        for r in range(k_total):
            terms[r] = out[i, r] * entropy[order[r]]
        out[i, 2 * k_total + 2] = -_fsum(terms, k_total, partials)
        # OnlineGaussianMixture.learn_one, then the features' commit.
        mix[ox] = x
        _learn_point(mix, lay)
        features[0], features[1], features[2], features[3] = t, pr, sq, w
        # _Detector._relabel's test: the ranking by mean var_cbrt, with hysteresis.
        for r in range(k_total - 1):
            if mix[means + order[r]] > margin * mix[means + order[r + 1]]:
                return i + 1, RELABEL
    return ts.shape[0], DONE
