"""Prototype: the pooled forecast with a third member, a constant-variance Student-t.

The pool of :func:`forecast_models.pool_run` (GJR-GARCH-t and Beta-t-EGARCH, Bayesian log weights
forgotten at ``pool_forget`` a tick) plus a model with no volatility dynamics (``vol`` 2 in
:mod:`forecast_models`): its variance is the long-run variance V (the same expanding mean of
squared adjusted returns the other members target) times the time multiplier, with Student-t
innovations whose nu and mean are learnt by the same recursive maximum likelihood. On returns
without volatility clustering its weight should grow; on clustered returns it should fade.

The regime filter reads the pooled relative level ``sum_k w_k h_k / V_k`` (1 for the constant
member); the PIT and the next-tick variance are pooled the same way as with two members.

numba caches :func:`pool3_run` with the kernels of :mod:`forecast_models` compiled into it, and
an edit of that module does not invalidate it: after one, delete
``benchmarks/__pycache__/forecast_pool3*.nbi`` and ``*.nbc``.
"""

from __future__ import annotations

import math

import forecast_models as fm
import numpy as np

_jit = fm._jit

# Output row: the two-member pool's columns, then the second weight and the third member.
Q3_WB = fm.Q_SIZE
Q3_MEAN_C = fm.Q_SIZE + 1
Q3_SD_C = fm.Q_SIZE + 2
Q3_NU_C = fm.Q_SIZE + 3
Q3_SIZE = fm.Q_SIZE + 4

# Pool state: three log weights, then the two-member pool's slots shifted by one.
P3_LA, P3_LB, P3_LC, P3_SEEN, P3_LABEL, P3_LEVEL, P3_LEVEL_W, P3_LAST_TS, P3_HMM = range(9)


@_jit
def pool3_run(sa, sb, sc, sp, cfg_a, cfg_b, cfg_c, ts, price, ra, rb, rc, out, prior_c):
    """The three volatility models over a series; the pooled predictive, its PIT, drift and
    labels. ``prior_c``: the constant member's initial weight (the others share the rest)."""
    lam = cfg_a[fm.C_POOL_FORGET]
    for i in range(ts.shape[0]):
        for j in range(Q3_SIZE):
            out[i, j] = np.nan
        fm.vlr_step(sa, cfg_a, ts[i], price[i], ra[i])
        fm.vlr_step(sb, cfg_b, ts[i], price[i], rb[i])
        fm.vlr_step(sc, cfg_c, ts[i], price[i], rc[i])
        la_, lb_, lc_ = ra[i, fm.O_LOGPDF], rb[i, fm.O_LOGPDF], rc[i, fm.O_LOGPDF]
        dt = ts[i] - sp[P3_LAST_TS] if sp[P3_SEEN] > 0.0 else 0.0
        sp[P3_LAST_TS] = ts[i]
        sp[P3_SEEN] += 1.0
        if not (math.isfinite(la_) and math.isfinite(lb_) and math.isfinite(lc_)):
            continue
        hm = sp[P3_HMM:]
        if hm[fm.PHASE] == fm.PH_WARMING:
            hm[fm.PHASE] = fm.PH_RUNNING
            fm._hmm_init(hm, cfg_a, 0.0)
            sp[P3_LA] = math.log(0.5 * (1.0 - prior_c))
            sp[P3_LB] = math.log(0.5 * (1.0 - prior_c))
            sp[P3_LC] = math.log(prior_c)
        top = max(sp[P3_LA], sp[P3_LB], sp[P3_LC])
        norm = top + math.log(
            math.exp(sp[P3_LA] - top) + math.exp(sp[P3_LB] - top) + math.exp(sp[P3_LC] - top)
        )
        wa = math.exp(sp[P3_LA] - norm)
        wb = math.exp(sp[P3_LB] - norm)
        wc = max(1.0 - wa - wb, 0.0)
        m = max(la_, lb_, lc_)
        out[i, fm.Q_LOGPDF] = m + math.log(
            wa * math.exp(la_ - m) + wb * math.exp(lb_ - m) + wc * math.exp(lc_ - m)
        )
        out[i, fm.Q_WA] = wa
        out[i, Q3_WB] = wb
        out[i, fm.Q_MEAN_A] = ra[i, fm.O_MEAN]
        out[i, fm.Q_SD_A] = ra[i, fm.O_SD]
        out[i, fm.Q_NU_A] = ra[i, fm.O_NU]
        out[i, fm.Q_MEAN_B] = rb[i, fm.O_MEAN]
        out[i, fm.Q_SD_B] = rb[i, fm.O_SD]
        out[i, fm.Q_NU_B] = rb[i, fm.O_NU]
        out[i, Q3_MEAN_C] = rc[i, fm.O_MEAN]
        out[i, Q3_SD_C] = rc[i, fm.O_SD]
        out[i, Q3_NU_C] = rc[i, fm.O_NU]
        out[i, fm.Q_GAP] = ra[i, fm.O_GAP]
        u = (
            wa * fm.norm_cdf(ra[i, fm.O_Z])
            + wb * fm.norm_cdf(rb[i, fm.O_Z])
            + wc * fm.norm_cdf(rc[i, fm.O_Z])
        )
        z = fm.norm_ppf(u)
        out[i, fm.Q_Z] = z
        out[i, fm.Q_DRIFT] = fm._drift(hm, cfg_a, z)
        sp[P3_LA] = lam * (sp[P3_LA] - norm) + la_
        sp[P3_LB] = lam * (sp[P3_LB] - norm) + lb_
        sp[P3_LC] = lam * (sp[P3_LC] - norm) + lc_
        rel = wa * sa[fm.H] / sa[fm.V] + wb * sb[fm.H] / sb[fm.V] + wc
        y = 0.5 * math.log(rel)
        if cfg_a[fm.C_LEVEL_SECONDS] > 0.0:
            y = fm._smooth_level(sp, P3_LEVEL, y, dt, cfg_a[fm.C_LEVEL_SECONDS])
        p = fm._level_hmm(hm, cfg_a, y)
        lab = fm._label(sp[P3_LABEL], p, cfg_a[fm.C_LABEL_HOLD])
        sp[P3_LABEL] = lab
        out[i, fm.Q_PTURB] = p
        out[i, fm.Q_LABEL] = lab
        out[i, fm.Q_NEXT_SD] = math.sqrt(
            wa * ra[i, fm.O_NEXT_SD] ** 2
            + wb * rb[i, fm.O_NEXT_SD] ** 2
            + wc * rc[i, fm.O_NEXT_SD] ** 2
        )


def run_pool3(
    ts: np.ndarray,
    price: np.ndarray,
    prior_c: float = 1.0 / 3.0,
    const: dict[str, float] | None = None,
    **overrides: float,
) -> np.ndarray:
    """Pooled-output rows (:data:`Q3_SIZE` columns) over a whole series; ``const``: settings
    of the constant-variance member only."""
    cfg_a = fm.settings(**{**overrides, "vol": 0.0, "labels": 0.0})
    cfg_b = fm.settings(**{**overrides, "vol": 1.0, "labels": 0.0})
    cfg_c = fm.settings(**{**overrides, **(const or {}), "vol": 2.0, "labels": 0.0})
    sa, sb, sc = fm.new_state(cfg_a), fm.new_state(cfg_b), fm.new_state(cfg_c)
    sp = np.zeros(P3_HMM + fm.state_size(cfg_a))
    n = ts.size
    ra, rb, rc = (np.empty((n, fm.O_SIZE)) for _ in range(3))
    out = np.empty((n, Q3_SIZE))
    t = np.ascontiguousarray(ts, float)
    p = np.ascontiguousarray(price, float)
    pool3_run(sa, sb, sc, sp, cfg_a, cfg_b, cfg_c, t, p, ra, rb, rc, out, float(prior_c))
    return out
