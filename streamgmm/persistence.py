r"""Persistence: a hidden Markov model over regimes, learnt online, and its part of the state.

Per-tick posteriors treat every tick as independent, so one large return would flip the regime.
Regimes persist, and a hidden Markov model says so: hidden regime $s_t$ with transition matrix
$A$ (close to the identity), and Gaussian emissions $x_t \mid s_t = k \sim N(\mu_k, \Sigma_k)$
in the standardised feature (the scaled return, for prices). This is Hamilton's
Markov-switching model, and the detector estimates it **online**, one tick at a time, with
Cappé's online EM for hidden Markov models (Cappé 2011). The arithmetic is the compiled step's
section 3 (:mod:`streamgmm._regime_kernel`); this module owns the model's part of the state.

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
   mixture's own compiled code.

The step is $\gamma_t = \max((t + t_0)^{-\alpha}, \gamma_{\min})$: early ticks move the estimates
quickly, later ones less, and ``halflife`` (through $\gamma_{\min}$) keeps tracking a market
that changes. A session gap (no evidence) moves the filter one step through $A$ and carries the
auxiliary statistics along, without a new term.

**Start.** After the warm-up every regime sits at the standardised origin with covariance
$c_a I$ and weight $1/K$, the variance-ordered start: regime 0 is the calm one from the first
tick, and a regime the warm-up never showed rests at its prior until data claims it (a calm-only
warm-up no longer splits calm days into two regimes).

References
----------
Cappé, O. (2011). Online EM algorithm for hidden Markov models. Journal of Computational and
Graphical Statistics, 20(3), 728-749.
Hamilton, J. D. (1989). A new approach to the economic analysis of nonstationary time series
and the business cycle. Econometrica, 57(2), 357-384.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from streamgmm import _regime_layout as L
from streamgmm import _validate as V

__all__ = ["hmm_from_state", "hmm_to_state"]

_FIELDS = ("filtered", "transition_stats", "emission_stats", "order")
#: Largest magnitude of a stored emission statistic.
_MAX_MOMENT = 1e200
# Filtered probabilities are normalised by the step; a stored state may be off by rounding only.
_SUM_TOLERANCE = 1e-9


def hmm_to_state(buf: np.ndarray) -> dict[str, Any] | None:
    """The model's part of the state, or None during the warm-up (there is no model yet)."""
    if int(buf[L.PHASE]) != L.RUNNING:
        return None
    lay = L.layout(buf)
    k, s = lay[L.N_REGIMES], lay[L.N_STATS]
    r = L.regions(buf)
    return {
        "filtered": r["filtered"].tolist(),
        "transition_stats": r["transition_stats"].reshape(k, k, k).tolist(),
        "emission_stats": r["emission_stats"].reshape(k, k, s).tolist(),
        "order": [int(v) for v in r["order"]],
    }


def hmm_from_state(path: str, state: Any, buf: np.ndarray) -> None:
    """Validate ``state`` (:func:`hmm_to_state` output) and write it into ``buf``.

    Probabilities must lie in [0, 1] and sum to one, expected counts and occupancies must be
    non-negative, second moments' diagonals non-negative, and ``order`` a permutation of the
    regimes. The derived parameters (transition matrix, emission model) are recomputed from
    these statistics by the compiled M-step, never read.
    """
    if int(buf[L.PHASE]) != L.RUNNING:
        if state is not None:
            raise ValueError(f"{path} must be null during the warm-up")
        return
    V.fields(path, state, _FIELDS)
    lay = L.layout(buf)
    k, d, s = lay[L.N_REGIMES], lay[L.N_FEATURES], lay[L.N_STATS]
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
    order = state["order"]
    if not isinstance(order, list) or sorted(
        V.integer(f"{path}.order[{i}]", v, hi=k - 1) for i, v in enumerate(order)
    ) != list(range(k)):
        raise ValueError(f"{path}.order must be a permutation of 0..{k - 1}, got {order!r}")
    r = L.regions(buf)
    r["filtered"][:] = filtered
    r["transition_stats"][:] = tstats.ravel()
    r["emission_stats"][:] = estats.ravel()
    r["order"][:] = order
