"""The warm-up fit: the first buffered points, seeded by k-means++ and fitted by batch EM.

A model buffers its first ``warmup`` points (:class:`~streamgmm.mixture.OnlineGaussianMixture`),
then :func:`fit` fixes the feature set (their sorted keys), fills missing values with column
means for this fit only, and keeps the best of a few k-means++ seedings after ``init_iter``
rounds of batch EM (:func:`batch_em`, compiled, sharing the log-densities and factorisations of
:mod:`streamgmm.mixture.kernels`). The statistics are then rescaled to the mass the model's
schedule gives that many points, and the last points fill the ring of recent points.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from streamgmm._numeric import jit
from streamgmm.mixture.kernels import (
    factorise,
    posterior,
    posterior_batch,
    refactorise_all,
    remember,
)
from streamgmm.mixture.layout import (
    COVARIANCE,
    DECAY_FACTOR,
    FULL,
    MASS,
    MEANS,
    N_COMPONENTS,
    N_FEATURES,
    N_SEEN,
    REG,
    RING_LENGTH,
    SCATTER,
    STRIDE,
    P,
    X,
    read_layout,
    regions,
)

__all__ = ["batch_em", "fit"]

#: k-means++ seedings tried; the best after EM is kept.
KMEANS_TRIALS = 3


def fit(
    points: list[dict[Any, float]],
    n_components: int,
    new_state: Callable[[int], np.ndarray],
    decayed: bool,
    init_iter: int,
    seed: int | None,
) -> tuple[list[Any], np.ndarray] | None:
    """The feature names and the fitted state for the buffered ``points``; None while they
    hold no feature (only empty dicts: keep buffering).

    ``new_state(n_features)`` makes a fresh buffer with the model's settings; ``decayed`` says
    whether its schedule forgets (decayed sums carry less mass than the number of points);
    ``seed`` draws the k-means++ seedings.
    """
    names = sorted_keys(points)
    if not names:
        return None
    data = np.array([[p.get(n, np.nan) for n in names] for p in points])
    column_means = np.nanmean(data, axis=0)
    data = np.where(np.isnan(data), column_means, data)
    rng = np.random.default_rng(seed)
    best_state, best_ll = None, -np.inf
    for _ in range(KMEANS_TRIALS):
        state = new_state(len(names))
        labels = kmeans_plus_plus_labels(data, n_components, rng)
        ll = batch_em(state, data, labels, init_iter)
        if ll > best_ll or best_state is None:
            best_state, best_ll = state, ll
    assert best_state is not None  # KMEANS_TRIALS >= 1
    state = best_state
    n = len(data)
    if decayed:
        # Decayed sums of n points carry total mass (1 - λ^n) / (1 - λ).
        lam = state[DECAY_FACTOR]
        # expm1 keeps precision for half-lives of many points; a half-life so long that
        # λ rounds to 1 decays nothing, and n points carry mass n; one so short (under
        # 1e-3 samples) that λ underflows to 0 keeps only the last point, mass 1.
        if lam <= 0.0:
            total = 1.0
        else:
            log_lam = math.log(lam)
            total = math.expm1(n * log_lam) / math.expm1(log_lam) if log_lam < 0.0 else float(n)
        r = regions(state)
        r["mass"] *= total
        r["scatter"] *= total
        refactorise_all(state)
    state[N_SEEN] = n
    tail = data[-RING_LENGTH:]
    scores = posterior_batch(state, tail, np.empty((len(tail), n_components)))
    for row, score in zip(tail, scores, strict=True):
        remember(state, row, score)
    return names, state


@jit
def batch_em(state, data, labels, n_iter):
    """Hard-assignment M-step from ``labels``, then ``n_iter`` EM rounds; returns mean log-lik.

    Leaves the state holding normalised statistics: mass = mixture weights, scatter = weight *
    covariance (before the floor). The caller rescales mass and scatter for its schedule.
    """
    lay = read_layout(state)
    k_total, d, m = lay[N_COMPONENTS], lay[N_FEATURES], lay[STRIDE]
    n = data.shape[0]
    full = lay[COVARIANCE] == FULL
    ox, p = lay[X], lay[P]
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
            state[lay[MASS] + k] = nk / n
            state[lay[MEANS] + k * d : lay[MEANS] + (k + 1) * d] = mu
            state[lay[SCATTER] + k * m : lay[SCATTER] + (k + 1) * m] = s / n
            factorise(state, lay, k, state[REG])
        if it == n_iter:
            break
        total = 0.0
        for i in range(n):
            for j in range(d):
                state[ox + j] = data[i, j]
            total += posterior(state, lay, ox)
            for k in range(k_total):
                resp[i, k] = state[p + k]
        mean_ll = total / n
    return mean_ll


def sorted_keys(points: list[dict[Any, float]]) -> list[Any]:
    keys: set[Any] = set()
    for p in points:
        keys.update(p)
    try:
        return sorted(keys)
    except TypeError:  # mixed key types: order by their repr, deterministically
        return sorted(keys, key=repr)


def kmeans_plus_plus_labels(data: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """Nearest-centre labels after k-means++ seeding (D² sampling)."""
    n = len(data)
    centres = [data[rng.integers(n)]]
    d2 = ((data - centres[0]) ** 2).sum(axis=1)
    for _ in range(1, k):
        total = d2.sum()
        idx = rng.integers(n) if not total > 0 else rng.choice(n, p=d2 / total)
        centres.append(data[idx])
        d2 = np.minimum(d2, ((data - data[idx]) ** 2).sum(axis=1))
    dist = np.stack([((data - c) ** 2).sum(axis=1) for c in centres], axis=1)
    return dist.argmin(axis=1).astype(np.int64)
