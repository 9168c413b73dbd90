"""The online Gaussian mixture estimator: stepwise EM over decayed sufficient statistics.

:class:`OnlineGaussianMixture` checks and converts points, buffers the warm-up
(:mod:`streamgmm.mixture.warmup`), and hands every point to the compiled kernels
(:mod:`streamgmm.mixture.kernels`, :mod:`streamgmm.mixture.missing`) that update its state
buffer (:mod:`streamgmm.mixture.layout`); :mod:`streamgmm.mixture.state` writes and checks its
snapshot.
"""

from __future__ import annotations

import inspect
import math
import numbers
import operator
from collections.abc import Callable, Iterator, Mapping
from typing import Any, ClassVar

import narwhals.stable.v2 as nw
import numpy as np
from river import base
from river.utils import dataframe as rdf

from streamgmm import _validate as V
from streamgmm._numeric import MAX_ABS_VALUE
from streamgmm.mixture import kernels as K
from streamgmm.mixture import layout as L
from streamgmm.mixture import missing, warmup
from streamgmm.mixture.state import (
    MAX_COMPONENTS,
    MAX_FEATURES,
    STATE_VERSION,
    read_params,
    read_running,
    read_warmup,
    running_to_state,
)

__all__ = ["MAX_COMPONENTS", "MAX_FEATURES", "OnlineGaussianMixture"]

_COVARIANCE_TYPES = {"full": L.FULL, "diag": L.DIAG, "spherical": L.SPHERICAL}


class OnlineGaussianMixture(base.Clusterer):
    r"""Gaussian mixture learnt one point at a time by online (stepwise) EM.

    Each component keeps decayed sufficient statistics: a mass $N_k$, a mean $\mu_k$ and a scatter
    matrix $S_k$ about that mean. For every point the E-step computes responsibilities $r_k$ in log
    space from Cholesky factors, then the M-step folds the point in with a centred (West/Welford)
    update:

    $$N_k \leftarrow a N_k + b r_k,\quad \mu_k \leftarrow \mu_k + \frac{b r_k}{N_k}\delta,\quad
    S_k \leftarrow a S_k + b r_k \left(1 - \frac{b r_k}{N_k}\right) \delta\delta^\top,$$

    with $\delta = x - \mu_k^{old}$. Weights are $N_k / \sum_j N_j$ and covariances
    $S_k / N_k$ plus a floor. Raw second moments are never formed, so price-level inputs such as
    $4000 \pm 10^{-4}$ keep positive variances.

    The schedule $(a, b)$ is set by `halflife`:

    * a number $h$: decayed sums with $\lambda = 2^{-1/h}$, $a = \lambda$, $b = 1$. Normalised by
      their total mass $(1-\lambda^t)/(1-\lambda)$, these sums follow exactly Cappé & Moulines'
      online-EM recursion $s_t = (1-\gamma_t) s_{t-1} + \gamma_t \bar s(x_t)$ with step
      $\gamma_t = (1-\lambda)/(1-\lambda^t)$, which tends to the constant $1-\lambda$: a point's
      influence halves every $h$ points.
    * `None`: the stepwise-EM schedule of Liang & Klein, $a = 1-\eta_t$, $b = \eta_t$ with
      $\eta_t = (t+2)^{-\alpha}$. The steps sum to infinity while their squares (for
      $\alpha > 0.5$) do not, so on a stationary stream the estimate settles towards the batch
      maximum-likelihood solution.

    **Warm-up.** The first `warmup` points are buffered. Their sorted keys fix the feature set;
    missing values in the buffer are filled with column means for the initial fit only. The model
    is then seeded by k-means++ (three seedings drawn from `seed`; the best after EM is kept) and
    `init_iter` rounds of batch EM, and streaming begins. Until then `predict_proba_one` returns
    uniform probabilities, `predict_one` returns 0 and `score_one` returns 0.0; check
    `is_initialised`.

    **Numerical safety.** `reg_covar` plus $10^{-9}$ times the component's largest variance is
    added to each covariance's diagonal, so its condition number stays below about $10^9$. A
    non-finite or non-numeric value raises `ValueError` naming the feature, and so does a value
    beyond $\pm 10^{100}$, where squared distances could overflow; the state is left unchanged.

    **Dead components.** When a component's weight falls below `min_weight` it is reseeded at the
    worst-explained of the last 32 points, with weight $1/(2K)$ of the total mass and the pooled
    within-component covariance. `n_reseeds_` counts these events.

    **Missing and extra keys.** Once the feature set is fixed, unknown keys are ignored and counted
    in `n_unknown_keys_`. A point lacking some features is scored with the exact marginal Gaussian
    over the features it has. Learning from it is the EM step for missing data (Ghahramani and
    Jordan):
    responsibilities come from the marginal, and each component is updated with the conditional
    expectation of the missing coordinates and their conditional covariance. Observed coordinates
    are used as given, and missing ones move only as far as the observed ones inform them. A point
    with none of the features is ignored.

    Parameters
    ----------
    n_components
        Number of mixture components.
    covariance_type
        "full", "diag" or "spherical".
    halflife
        Forgetting half-life in samples, or `None` for the stepwise schedule without forgetting.
    alpha
        Exponent of the stepwise schedule, in (0.5, 1]. Used only when `halflife` is `None`.
    reg_covar
        Non-negative regularisation added to the diagonal of every covariance.
    warmup
        Number of points buffered before the first fit. At least `n_components`.
    init_iter
        Batch EM rounds on the warm-up buffer.
    min_weight
        Weight below which a component is considered dead and reseeded.
    seed
        Random seed for the k-means++ initialisation.

    Attributes
    ----------
    weights_
        Mixture weights, shape (n_components,).
    means_
        Component means, shape (n_components, n_features).
    covariances_
        Covariances in scikit-learn's shapes: (K, D, D) for "full", (K, D) for "diag" and (K,) for
        "spherical". These include the floor, i.e. they are exactly what the densities use.
    feature_names_
        Sorted feature names fixed at initialisation.
    n_samples_seen_
        Points learnt, warm-up included.
    n_reseeds_
        Number of dead-component reseeds.
    n_unknown_keys_
        Number of unknown feature keys ignored since initialisation.

    Examples
    --------
    >>> from sklearn.datasets import make_blobs
    >>> from streamgmm import OnlineGaussianMixture

    >>> X, y = make_blobs(n_samples=800, centers=4, cluster_std=0.50, random_state=0)
    >>> model = OnlineGaussianMixture(n_components=4, seed=42)
    >>> for x in X:
    ...     model.learn_one({"x1": x[0], "x2": x[1]})

    >>> model.n_samples_seen_
    800
    >>> labels = [model.predict_one({"x1": x[0], "x2": x[1]}) for x in X]
    >>> [labels[i] == labels[j] for i, j in [(0, 1), (0, 2), (1, 3)]] == [
    ...     y[i] == y[j] for i, j in [(0, 1), (0, 2), (1, 3)]]
    True
    >>> proba = model.predict_proba_one({"x1": X[0, 0], "x2": X[0, 1]})
    >>> round(sum(proba.values()), 12)
    1.0
    >>> round(max(proba.values()), 3)
    1.0

    References
    ----------
    1. Cappé, O. and Moulines, E. (2009). On-line expectation-maximization algorithm for latent data
       models. JRSS B, 71(3), 593-613.
    2. Liang, P. and Klein, D. (2009). Online EM for unsupervised models. NAACL-HLT, 611-619.
    3. Ghahramani, Z. and Jordan, M. I. (1994). Supervised learning from incomplete data via an EM
       approach. NIPS 6.
    4. West, D. H. D. (1979). Updating mean and variance estimates: an improved method.
       Communications of the ACM, 22(9), 532-535.
    5. Arthur, D. and Vassilvitskii, S. (2007). k-means++: the advantages of careful seeding. SODA.

    """

    _STATE_FIELDS: ClassVar[tuple[str, ...]] = ("mass", "means", "scatter")

    def __init__(
        self,
        n_components: int = 2,
        covariance_type: str = "full",
        halflife: float | None = None,
        alpha: float = 1.0,
        reg_covar: float = 1e-6,
        warmup: int = 100,
        init_iter: int = 20,
        min_weight: float = 1e-3,
        seed: int | None = None,
    ):
        self.n_components = n_components
        self.covariance_type = covariance_type
        self.halflife = halflife
        self.alpha = alpha
        self.reg_covar = reg_covar
        self.warmup = warmup
        self.init_iter = init_iter
        self.min_weight = min_weight
        self.seed = seed
        self._validate_params()

        self.feature_names_: list[Any] = []
        self.n_unknown_keys_ = 0
        self._buffer: list[dict[Any, float]] = []
        self._state: np.ndarray | None = None
        self._getter: Callable[[Mapping[Any, Any]], tuple[Any, ...]] | None = None
        self._region_views: tuple[np.ndarray, dict[str, np.ndarray]] | None = None

    # ----------------------------------------------------------------------------------------
    # Parameters and state
    # ----------------------------------------------------------------------------------------

    def _validate_params(self) -> None:
        def bad(name: str, value: Any, why: str) -> ValueError:
            return ValueError(f"{name}={value!r}: {why}")

        if not isinstance(self.n_components, numbers.Integral) or self.n_components < 1:
            raise bad("n_components", self.n_components, "must be a positive integer")
        if self.covariance_type not in _COVARIANCE_TYPES:
            raise bad(
                "covariance_type", self.covariance_type, f"must be one of {list(_COVARIANCE_TYPES)}"
            )
        if self.halflife is not None and not (
            isinstance(self.halflife, numbers.Real)
            and math.isfinite(self.halflife)
            and self.halflife > 0
        ):
            raise bad(
                "halflife", self.halflife, "must be None or a positive finite number of samples"
            )
        if not (isinstance(self.alpha, numbers.Real) and 0.5 < self.alpha <= 1.0):
            raise bad("alpha", self.alpha, "must lie in (0.5, 1]")
        if not (
            isinstance(self.reg_covar, numbers.Real)
            and self.reg_covar >= 0
            and math.isfinite(self.reg_covar)
        ):
            raise bad("reg_covar", self.reg_covar, "must be a non-negative finite number")
        if not isinstance(self.warmup, numbers.Integral) or self.warmup < self.n_components:
            raise bad(
                "warmup", self.warmup, f"must be an integer >= n_components ({self.n_components})"
            )
        if not isinstance(self.init_iter, numbers.Integral) or self.init_iter < 0:
            raise bad("init_iter", self.init_iter, "must be a non-negative integer")
        if not (
            isinstance(self.min_weight, numbers.Real)
            and 0 <= self.min_weight < 1 / self.n_components
        ):
            raise bad("min_weight", self.min_weight, "must lie in [0, 1/n_components)")

    @property
    def is_initialised(self) -> bool:
        """True once the warm-up buffer has been fitted and points are learnt online."""
        return self._state is not None

    @property
    def n_features(self) -> int:
        """Number of features, fixed at initialisation (0 before)."""
        return len(self.feature_names_)

    @property
    def n_samples_seen_(self) -> int:
        """Points learnt, warm-up included."""
        if self._state is None:
            return len(self._buffer)
        return int(self._state[L.N_SEEN])

    @property
    def n_reseeds_(self) -> int:
        """Number of dead-component reseeds."""
        return 0 if self._state is None else int(self._state[L.N_RESEEDS])

    def _regions(self) -> dict[str, np.ndarray]:
        if self._state is None:
            raise AttributeError("the model is not initialised yet: see is_initialised")
        # Views into the state buffer stay valid as long as the buffer does; the regime layer
        # reads fitted attributes on every tick, so they are built once per buffer.
        cached = self._region_views
        if cached is None or cached[0] is not self._state:
            cached = self._region_views = (self._state, L.regions(self._state))
        return cached[1]

    @property
    def weights_(self) -> np.ndarray:
        """Mixture weights, shape ``(n_components,)``; they sum to 1."""
        mass = self._regions()["mass"]
        return mass / mass.sum()

    @property
    def means_(self) -> np.ndarray:
        """Component means, shape ``(n_components, n_features)``, columns in
        ``feature_names_`` order."""
        return self._regions()["means"].reshape(self.n_components, self.n_features).copy()

    @property
    def covariances_(self) -> np.ndarray:
        """Covariances in scikit-learn's shapes: ``(K, D, D)`` for "full", ``(K, D)`` for
        "diag" and ``(K,)`` for "spherical", floor included (what the densities use)."""
        d = self.n_features
        factor = self._regions()["factor"].reshape(self.n_components, -1)
        if self.covariance_type == "full":
            lower = factor.reshape(-1, d, d)
            return lower @ lower.transpose(0, 2, 1)
        if self.covariance_type == "diag":
            return factor**2
        return factor[:, 0] ** 2

    def _new_state(self, n_features: int) -> np.ndarray:
        state = L.new_state(
            self.n_components, n_features, _COVARIANCE_TYPES[self.covariance_type], L.RING_LENGTH
        )
        if self.halflife is None:
            state[L.SCHEDULE] = L.STEPWISE
        else:
            state[L.SCHEDULE] = L.DECAY
            state[L.DECAY_FACTOR] = 2.0 ** (-1.0 / self.halflife)
        state[L.ALPHA] = self.alpha
        state[L.REG] = self.reg_covar
        state[L.MIN_WEIGHT] = self.min_weight
        return state

    def _set_features(self, names: list[Any]) -> None:
        self.feature_names_ = names
        if len(names) == 1:
            only = names[0]
            self._getter = _SingleGetter(only)
        else:
            self._getter = operator.itemgetter(*names)

    def __getstate__(self) -> dict[str, Any]:
        # itemgetter objects are rebuilt from feature_names_ rather than pickled.
        state = self.__dict__.copy()
        state["_getter"] = None
        state["_region_views"] = None  # views would be pickled as copies, detached from _state
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        if self.feature_names_:
            self._set_features(self.feature_names_)

    def to_state(self) -> dict[str, Any]:
        """Versioned, JSON-safe snapshot of everything needed to continue learning."""
        out: dict[str, Any] = {
            "version": STATE_VERSION,
            "kind": "OnlineGaussianMixture",
            "params": self._get_params(),
            "n_unknown_keys": self.n_unknown_keys_,
        }
        if self._state is None:
            out["warmup_buffer"] = [[[k, v] for k, v in point.items()] for point in self._buffer]
        else:
            out.update(running_to_state(self._state, self.feature_names_))
        return out

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> OnlineGaussianMixture:
        """Rebuild a model from :meth:`to_state`; prediction and learning continue exactly.

        Every field is checked before anything is allocated or compiled code runs: the kind
        and version, the parameters (the constructor's own checks, plus at most
        :data:`MAX_COMPONENTS` components), feature names (at most :data:`MAX_FEATURES`,
        distinct strings or integers), shapes, finite numbers (never strings), positive masses,
        symmetric scatter matrices with a non-negative diagonal, ring positions and fills, and
        no unknown field. A state that fails raises :class:`ValueError` naming the field.
        """
        params = read_params(state, list(inspect.signature(cls.__init__).parameters)[1:])
        model = cls(**params)
        model.n_unknown_keys_ = V.integer("state.n_unknown_keys", state["n_unknown_keys"])
        if "warmup_buffer" in state:
            model._buffer = read_warmup(state, model.warmup)
            return model
        names, buf = read_running(
            state, model.n_components, model.covariance_type, model._new_state
        )
        model._set_features(names)
        model._state = buf
        return model

    # ----------------------------------------------------------------------------------------
    # Input conversion
    # ----------------------------------------------------------------------------------------

    @staticmethod
    def _to_float(name: Any, value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise ValueError(f"feature {name!r} has non-numeric value {value!r}")
        try:
            v = float(value)
        except (OverflowError, ValueError, TypeError) as exc:
            raise ValueError(f"feature {name!r} has unusable value {value!r}") from exc
        if not math.isfinite(v):
            raise ValueError(f"feature {name!r} has non-finite value {value!r}")
        if abs(v) > MAX_ABS_VALUE:
            raise ValueError(f"feature {name!r} has value {value!r} beyond ±{MAX_ABS_VALUE:g}")
        return v

    def _raise_for_status(self, status: int, values: Any) -> None:
        code = (-status) % 4
        index = (-status) // 4 - 1
        name = self.feature_names_[index]
        value = values[index]
        if code == K.NON_FINITE:
            raise ValueError(f"feature {name!r} has non-finite value {value!r}")
        raise ValueError(f"feature {name!r} has value {value!r} beyond ±{MAX_ABS_VALUE:g}")

    def _split(self, x: Mapping[Any, Any]) -> tuple[np.ndarray, np.ndarray, int]:
        """Values in feature order (NaN where missing), observed mask, and unknown-key count."""
        d = self.n_features
        values = np.full(d, np.nan)
        observed = np.zeros(d, dtype=bool)
        for i, name in enumerate(self.feature_names_):
            if name in x:
                values[i] = self._to_float(name, x[name])
                observed[i] = True
        unknown = len(x) - int(observed.sum())
        return values, observed, unknown

    # ----------------------------------------------------------------------------------------
    # Learning
    # ----------------------------------------------------------------------------------------

    def learn_one(self, x: dict[Any, Any]) -> None:
        """Learn one point: an E-step and an M-step, or a place in the warm-up buffer.

        During the warm-up the point is buffered; the ``warmup``-th point fixes the features
        (the buffer's sorted keys) and fits the model on the buffer. Afterwards the point
        updates every component's decayed statistics by its responsibility. Keys outside the
        features are ignored (counted in ``n_unknown_keys_``); a point lacking some features is
        learnt by the EM step for missing data.

        Parameters
        ----------
        x
            Feature name -> number.

        Returns
        -------
        None
            river-style: the model is updated in place.

        Raises
        ------
        ValueError
            For a non-finite or non-numeric value, or a magnitude beyond ``1e100``, naming the
            feature; the model is left unchanged.

        Examples
        --------
        >>> import random
        >>> from streamgmm import OnlineGaussianMixture
        >>> rng = random.Random(0)
        >>> model = OnlineGaussianMixture(n_components=2, warmup=20, seed=0)
        >>> for _ in range(200):
        ...     model.learn_one({"x": rng.gauss(rng.choice([0.0, 10.0]), 1.0)})
        >>> model.is_initialised, model.n_samples_seen_
        (True, 200)
        >>> sorted(round(mean) for mean in model.means_[:, 0])
        [0, 10]
        >>> model.learn_one({"x": float("nan")})
        Traceback (most recent call last):
            ...
        ValueError: feature 'x' has non-finite value nan
        >>> model.n_samples_seen_  # unchanged
        200
        """
        state = self._state
        if state is None:
            self._learn_warmup(x)
            return
        try:
            values = self._getter(x)  # type: ignore[misc]
        except KeyError:
            self._learn_incomplete(x)
            return
        for v in values:
            if type(v) is not float:
                # Only exact floats take the compiled fast path, so numba never specialises the
                # kernel on other element types.
                values = tuple(
                    self._to_float(n, v) for n, v in zip(self.feature_names_, values, strict=True)
                )
                break
        status = K.learn_tuple(state, values)
        if status:
            self._raise_for_status(status, values)
        if len(x) != len(self.feature_names_):
            self.n_unknown_keys_ += len(x) - len(self.feature_names_)

    def _learn_incomplete(self, x: Mapping[Any, Any]) -> None:
        values, observed, unknown = self._split(x)
        if not observed.any():
            self.n_unknown_keys_ += unknown
            return
        status = missing.learn_partial(self._state, values, observed)
        if status:
            # Statuses index the observed sub-vector.
            index = np.flatnonzero(observed)[(-status) // 4 - 1]
            raise ValueError(
                f"feature {self.feature_names_[index]!r} has unusable value {values[index]!r}"
            )
        self.n_unknown_keys_ += unknown

    def _learn_warmup(self, x: Mapping[Any, Any]) -> None:
        point = {name: self._to_float(name, value) for name, value in x.items()}
        self._buffer.append(point)
        if len(self._buffer) >= self.warmup:
            self._initialise()

    def _initialise(self) -> None:
        fitted = warmup.fit(
            self._buffer,
            self.n_components,
            self._new_state,
            decayed=self.halflife is not None,
            init_iter=self.init_iter,
            seed=self.seed,
        )
        if fitted is None:
            return  # only empty dicts so far: keep buffering
        names, self._state = fitted
        self._set_features(names)
        self._buffer = []

    def learn_many(self, X: Any) -> None:
        """Learn rows in order; identical to calling :meth:`learn_one` on each row.

        ``X`` is what river's ``*_many`` methods take: a dataframe (pandas, or any eager
        backend narwhals supports), or a 2-D array. A dataframe's columns are matched to
        ``feature_names_`` by name. An array's columns are in ``feature_names_`` order; on a
        model that has not seen data yet they are the features ``0, 1, ...``, as river's
        ``stream.iter_array`` names them. The whole batch is validated first, so a bad value
        raises ``ValueError`` before anything is learnt.
        """
        data, columns, _ = _as_matrix(X)
        if self._state is None and columns is None:
            columns = list(range(data.shape[1]))
        while self._state is None and len(data):
            # Warm-up is per point: it fixes the feature names, so it goes through learn_one.
            assert columns is not None
            self.learn_one(dict(zip(columns, data[0].tolist(), strict=True)))
            data = data[1:]
        if not len(data):
            return
        data, n_extra = self._align(data, columns)
        status = K.learn_batch(self._state, data)
        if status:  # unreachable after validation; kept so a kernel change cannot pass silently
            raise RuntimeError(f"kernel rejected validated data (status {status})")
        self.n_unknown_keys_ += n_extra * len(data)

    def _align(self, data: np.ndarray, columns: list[Any] | None) -> tuple[np.ndarray, int]:
        """Columns in feature order, validated; also the number of extra (ignored) columns."""
        names = self.feature_names_
        if columns is None:
            if data.shape[1] != len(names):
                raise ValueError(f"X has {data.shape[1]} columns; the model has features {names}")
            aligned, n_extra = data, 0
        else:
            index = {c: i for i, c in enumerate(columns)}
            missing = [n for n in names if n not in index]
            if missing:
                raise ValueError(f"X lacks feature columns {missing}")
            aligned, n_extra = data[:, [index[n] for n in names]], len(columns) - len(names)
        aligned = np.ascontiguousarray(aligned, dtype=float)
        bad = ~np.isfinite(aligned) | (np.abs(aligned) > MAX_ABS_VALUE)
        if bad.any():
            row, col = np.argwhere(bad)[0]
            value = aligned[row, col]
            raise ValueError(f"row {row}: feature {names[col]!r} has unusable value {value!r}")
        return aligned, n_extra

    # ----------------------------------------------------------------------------------------
    # Inference
    # ----------------------------------------------------------------------------------------

    def _posterior(self, x: Mapping[Any, Any]) -> tuple[np.ndarray, float]:
        out = np.empty(self.n_components)
        if len(x) >= self.n_features:  # extra keys are ignored, as the getter picks features
            try:
                values = self._getter(x)  # type: ignore[misc]
            except KeyError:
                pass
            else:
                # Same rule as learn_one: only exact floats take the compiled fast path.
                if all(type(v) is float for v in values):
                    status, score = K.posterior_tuple(self._state, values, out)
                    if status == K.OK:
                        return out, score
        values, observed, _ = self._split(x)  # validates, naming the key, or handles gaps
        if observed.all():
            score = K.posterior_one(self._state, values, out)
        elif not observed.any():
            return self.weights_, 0.0
        else:
            score = missing.posterior_partial(self._state, values, observed, out)
        return out, float(score)

    def predict_proba_one(self, x: dict[Any, Any]) -> dict[int, float]:
        """Posterior probability of each component; uniform before initialisation."""
        if self._state is None:
            return dict.fromkeys(range(self.n_components), 1.0 / self.n_components)
        proba, _ = self._posterior(x)
        return {k: float(p) for k, p in enumerate(proba)}

    def predict_proba_and_score_one(self, x: dict[Any, Any]) -> tuple[dict[int, float], float]:
        """``(predict_proba_one(x), score_one(x))`` from one E-step."""
        if self._state is None:
            return self.predict_proba_one(x), 0.0
        proba, score = self._posterior(x)
        return {k: float(p) for k, p in enumerate(proba)}, score

    def predict_one(self, x: dict[Any, Any]) -> int:
        """Most probable component; 0 before initialisation."""
        if self._state is None:
            return 0
        proba, _ = self._posterior(x)
        return int(np.argmax(proba))

    def score_one(self, x: dict[Any, Any]) -> float:
        """Natural-log density of ``x``, marginal over the features present.

        0.0 before initialisation.
        """
        if self._state is None:
            return 0.0
        _, score = self._posterior(x)
        return score

    def predict_proba_many(self, X: Any) -> Any:
        """Posterior probability of each component for each row of ``X``.

        Returns a dataframe of the input's backend (index kept, one column per component)
        for a dataframe, and an array of shape (n, n_components) for an array. Uniform
        before initialisation.
        """
        proba, _, frame = self._many(X)
        if frame is None:
            return proba
        return rdf.to_native_frame({k: proba[:, k] for k in range(self.n_components)}, like=frame)

    def predict_many(self, X: Any) -> Any:
        """Most probable component for each row of ``X``; 0 before initialisation.

        A series of the input's backend (index kept) for a dataframe, an array for an array.
        """
        proba, _, frame = self._many(X)
        labels = proba.argmax(axis=1) if len(proba) else np.zeros(0, dtype=np.int64)
        if frame is None:
            return labels
        return rdf.to_native_series(labels, name=None, like=frame)

    def score_many(self, X: Any) -> Any:
        """Per-row natural-log densities: a series for a dataframe, shape (n,) for an array."""
        _, scores, frame = self._many(X)
        if frame is None:
            return scores
        return rdf.to_native_series(scores, name=None, like=frame)

    def _many(self, X: Any) -> tuple[np.ndarray, np.ndarray, Any]:
        data, columns, frame = _as_matrix(X)
        n = len(data)
        if self._state is None:
            uniform = np.full((n, self.n_components), 1.0 / self.n_components)
            return uniform, np.zeros(n), frame
        data, _ = self._align(data, columns)
        proba = np.empty((n, self.n_components))
        scores = K.posterior_batch(self._state, data, proba)
        return proba, scores, frame

    # ----------------------------------------------------------------------------------------
    # river hooks
    # ----------------------------------------------------------------------------------------

    @classmethod
    def _unit_test_params(cls) -> Iterator[dict[str, Any]]:
        yield {"n_components": 3, "warmup": 20, "seed": 42}
        yield {
            "n_components": 2,
            "covariance_type": "diag",
            "halflife": 50.0,
            "warmup": 15,
            "seed": 1,
        }
        yield {
            "n_components": 4,
            "covariance_type": "spherical",
            "halflife": 200.0,
            "alpha": 0.7,
            "warmup": 30,
            "seed": 7,
        }


class _SingleGetter:
    """itemgetter for one key that still returns a 1-tuple."""

    __slots__ = ("name",)

    def __init__(self, name: Any):
        self.name = name

    def __call__(self, x: Mapping[Any, Any]) -> tuple[Any]:
        return (x[self.name],)


def _as_matrix(X: Any) -> tuple[np.ndarray, list[Any] | None, Any]:
    """``(float matrix, column names or None, narwhals frame or None)`` for a ``*_many`` input.

    Dataframes go through river's own boundary helpers (narwhals), so every backend river's
    ``*_many`` methods take is taken here too.
    """
    frame = nw.from_native(X, eager_only=True, pass_through=True)
    if isinstance(frame, nw.DataFrame):
        return rdf.to_numpy(frame), list(frame.columns), frame
    data = np.asarray(X, dtype=float)
    if data.ndim != 2:
        raise ValueError(f"X must be 2-D, got shape {data.shape}")
    return data, None, None
