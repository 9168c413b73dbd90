"""Regime detection per tick: features -> online mixture -> stable labels -> persistence filter.

:class:`RegimeDetector` (market ticks) and :class:`EventDetector` (numeric event ticks) share one
pipeline:

1. **Features** (:mod:`streamgmm.features`): duplicate and out-of-order ``ts`` are skipped.
2. **Mixture** (:class:`streamgmm.OnlineGaussianMixture`, one component per regime): per-tick
   component posteriors and the log-likelihood, computed *before* the mixture learns the tick.
3. **Labels** (:class:`RegimeLabeller`): components are ranked by a volatility measure, so regime
   0 is always the calmest. The ranking is recomputed after every learning step but only
   replaced when the current one is violated by more than ``label_hysteresis`` (relative), and
   each replacement is counted in ``n_label_changes``. Components are identified by their
   statistics, never by their index, so permuting the mixture's components changes no output.
4. **Persistence** (:class:`streamgmm.persistence.ForwardFilter`): HMM forward filter over
   regimes, fed with per-regime emission log-likelihoods ``log p(x | k) = log r_k + log p(x) -
   log w_k`` (the mixture posterior divided by its prior weight, so the prior is not counted
   twice).
5. **Drift** (:class:`streamgmm.drift.LikelihoodDriftMonitor`) on the log-likelihood.

``learn_predict_one`` is the single per-tick call: it predicts causally, then learns, and
returns a dict with exactly the keys of :data:`OUTPUT_KEYS`.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np

from streamgmm._regime_kernel import DONE, RELABEL, STOPPED, regime_run
from streamgmm.drift import LikelihoodDriftMonitor
from streamgmm.features import (
    STATUS_FIRST,
    STATUS_OK,
    EventFeatures,
    TickFeatures,
)
from streamgmm.mixture import OnlineGaussianMixture
from streamgmm.output import OUTPUT_KEYS, make_output
from streamgmm.persistence import ForwardFilter

__all__ = ["OUTPUT_KEYS", "EventDetector", "RegimeDetector", "RegimeLabeller"]

#: Most ticks learn_predict_many gathers for one compiled run, and the code for "that chunk is
#: done, more may follow" (the kernel's own codes are DONE, STOPPED and RELABEL).
_COMPILED_CHUNK = 4096
_CHUNK_DONE = -1

# A posterior that underflowed to 0 still carries information relative to the others; flooring
# it keeps the emission finite (log(1e-300) ~ -691) without changing the filter's answer.
_PROBA_FLOOR = 1e-300

STATE_VERSION = 1


class RegimeLabeller:
    """Map mixture components to regimes ranked by a volatility measure, with hysteresis.

    ``order[r]`` is the component index holding regime ``r``. A new ranking replaces the current
    one only if some adjacent pair of regimes is inverted by more than the relative margin
    ``hysteresis``: ``measure[order[r]] > (1 + hysteresis) * measure[order[r + 1]]``.

    Parameters
    ----------
    n_regimes
        Number of regimes (= mixture components).
    hysteresis
        Relative margin a ranking must be violated by before labels change.

    Examples
    --------
    >>> lab = RegimeLabeller(2, hysteresis=0.1)
    >>> lab.update([4.0, 1.0], [[0.0], [0.0]])
    True
    >>> lab.order
    [1, 0]
    >>> lab.update([1.0, 1.05], [[0.0], [0.0]])   # inverted, but within the 10 % margin
    False
    >>> lab.update([1.0, 1.2], [[0.0], [0.0]])
    True
    >>> lab.order, lab.n_label_changes
    ([0, 1], 1)
    """

    def __init__(self, n_regimes: int, hysteresis: float = 0.1) -> None:
        if not (math.isfinite(hysteresis) and hysteresis >= 0):
            raise ValueError(f"label_hysteresis must be a non-negative number, got {hysteresis!r}")
        self.n_regimes = n_regimes
        self.hysteresis = float(hysteresis)
        self.order: list[int] | None = None
        self.n_label_changes = 0

    @staticmethod
    def ranking(measure: Sequence[float], tiebreak: Sequence[Sequence[float]]) -> list[int]:
        """Components sorted by measure; exact ties broken by the components' statistics."""
        keys = [
            (float(m), tuple(float(v) for v in t)) for m, t in zip(measure, tiebreak, strict=True)
        ]
        # The index is the last resort only for components identical in every statistic, where
        # any order gives the same outputs.
        return sorted(range(len(keys)), key=lambda k: (keys[k], k))

    def update(self, measure: Sequence[float], tiebreak: Sequence[Sequence[float]]) -> bool:
        """Re-rank if needed; return True if ``order`` changed (first assignment included)."""
        if self.order is None:
            self.order = self.ranking(measure, tiebreak)
            return True
        if not self.violated(measure):
            return False
        order = self.order
        new = self.ranking(measure, tiebreak)
        if new == order:
            return False
        self.order = new
        self.n_label_changes += 1
        return True

    def violated(self, measure: Sequence[float]) -> bool:
        """Whether ``measure`` breaks the current ranking by more than the hysteresis margin.

        True when there is no ranking yet.
        """
        order = self.order
        if order is None:
            return True
        margin = 1.0 + self.hysteresis
        if len(order) == 2:
            return measure[order[0]] > margin * measure[order[1]]
        return any(
            measure[order[r]] > margin * measure[order[r + 1]] for r in range(len(order) - 1)
        )

    def to_state(self) -> dict[str, Any]:
        """JSON-safe state."""
        return {"order": self.order, "n_label_changes": self.n_label_changes}

    def load_state(self, state: Mapping[str, Any]) -> None:
        """Restore from :meth:`to_state` output."""
        order = state["order"]
        self.order = None if order is None else [int(v) for v in order]
        self.n_label_changes = int(state["n_label_changes"])


class _Detector:
    """Shared pipeline; subclasses define the features and the volatility measure."""

    _KIND: ClassVar[str] = ""

    def __init__(
        self,
        n_regimes: int,
        *,
        halflife: float | None,
        alpha: float,
        warmup: int,
        feature_warmup: int,
        covariance_type: str,
        reg_covar: float,
        min_weight: float,
        self_transition: float,
        learn_transitions: bool,
        transition_halflife: float,
        label_hysteresis: float,
        drift_threshold: float,
        drift_delta: float,
        drift_min_instances: int,
        drift_reference_halflife: float,
        drift_halflife: float,
        seed: int | None,
    ) -> None:
        if not (isinstance(n_regimes, int) and n_regimes >= 1):
            raise ValueError(f"n_regimes must be a positive integer, got {n_regimes!r}")
        if not (isinstance(feature_warmup, int) and feature_warmup >= 0):
            raise ValueError(
                f"feature_warmup must be a non-negative integer, got {feature_warmup!r}"
            )
        self.n_regimes = n_regimes
        self.halflife = halflife
        self.alpha = alpha
        self.warmup = warmup
        self.feature_warmup = feature_warmup
        self.covariance_type = covariance_type
        self.reg_covar = reg_covar
        self.min_weight = min_weight
        self.self_transition = self_transition
        self.learn_transitions = learn_transitions
        self.transition_halflife = transition_halflife
        self.label_hysteresis = label_hysteresis
        self.drift_threshold = drift_threshold
        self.drift_delta = drift_delta
        self.drift_min_instances = drift_min_instances
        self.drift_reference_halflife = drift_reference_halflife
        self.drift_halflife = drift_halflife
        self.seed = seed
        self._mixture = OnlineGaussianMixture(
            n_components=n_regimes,
            covariance_type=covariance_type,
            halflife=halflife,
            alpha=alpha,
            reg_covar=reg_covar,
            warmup=warmup,
            min_weight=min_weight,
            seed=seed,
        )
        self._labeller = RegimeLabeller(n_regimes, label_hysteresis)
        self._filter = ForwardFilter(
            n_regimes,
            self_transition=self_transition,
            learn_transitions=learn_transitions,
            transition_halflife=transition_halflife,
        )
        self._drift = LikelihoodDriftMonitor(
            threshold=drift_threshold,
            delta=drift_delta,
            min_instances=drift_min_instances,
            reference_halflife=drift_reference_halflife,
            halflife=drift_halflife,
        )
        self.n_samples_seen = 0
        self.n_feature_vectors = 0
        self._stats: tuple[list[float], list[float]] | None = None
        self._last = self._cold_output()

    # -- subclass hooks --------------------------------------------------------------------
    _features: TickFeatures | EventFeatures

    def _mixture_input(self, features: dict[str, float]) -> dict[str, float]:
        raise NotImplementedError

    def _measure(self, means: list[float]) -> list[float]:
        """Volatility measure per component; ``means`` is the flat (K * D) means region."""
        raise NotImplementedError

    def _params(self) -> dict[str, Any]:
        return {
            "n_regimes": self.n_regimes,
            "halflife": self.halflife,
            "alpha": self.alpha,
            "warmup": self.warmup,
            "feature_warmup": self.feature_warmup,
            "covariance_type": self.covariance_type,
            "reg_covar": self.reg_covar,
            "min_weight": self.min_weight,
            "self_transition": self.self_transition,
            "learn_transitions": self.learn_transitions,
            "transition_halflife": self.transition_halflife,
            "label_hysteresis": self.label_hysteresis,
            "drift_threshold": self.drift_threshold,
            "drift_delta": self.drift_delta,
            "drift_min_instances": self.drift_min_instances,
            "drift_reference_halflife": self.drift_reference_halflife,
            "drift_halflife": self.drift_halflife,
            "seed": self.seed,
        }

    # -- public read-only views ------------------------------------------------------------
    @property
    def mixture(self) -> OnlineGaussianMixture:
        """The underlying mixture (components in its own, arbitrary order)."""
        return self._mixture

    @property
    def drift_monitor(self) -> LikelihoodDriftMonitor:
        """The likelihood-drift monitor."""
        return self._drift

    @property
    def persistence_filter(self) -> ForwardFilter:
        """The forward filter (states are regimes)."""
        return self._filter

    @property
    def regime_order(self) -> list[int] | None:
        """``regime_order[r]`` is the mixture component currently labelled regime ``r``."""
        return None if self._labeller.order is None else list(self._labeller.order)

    @property
    def n_label_changes(self) -> int:
        """How often the component-to-regime mapping changed after it was first set."""
        return self._labeller.n_label_changes

    @property
    def n_duplicates(self) -> int:
        """Ticks skipped for a repeated ``ts``."""
        return self._features.n_duplicates

    @property
    def n_out_of_order(self) -> int:
        """Ticks skipped for a ``ts`` older than the last accepted one."""
        return self._features.n_out_of_order

    @property
    def warm(self) -> bool:
        """True once outputs come from a fitted mixture."""
        return self._labeller.order is not None

    # -- pipeline --------------------------------------------------------------------------
    def _cold_output(self) -> dict[str, Any]:
        uniform = dict.fromkeys(range(self.n_regimes), 1.0 / self.n_regimes)
        return make_output(0, dict(uniform), dict(uniform), 0.0, 0.0, False, 0, False)

    def _emissions(self, x: dict[str, float]) -> tuple[list[float], list[float], float]:
        """Per-regime raw posteriors, emission log-likelihoods relative to log p(x), and log p(x).

        The filter only needs emissions up to a common constant. Adding log p(x) (which can be
        -6e10 on an extreme tick) to each one would round away their differences.
        """
        assert self._labeller.order is not None
        proba, score = self._mixture.predict_proba_and_score_one(x)
        log_weights = self._component_stats()[0]
        order = self._labeller.order
        raw = [proba[c] for c in order]
        emission = []
        for c in order:
            p = proba[c]
            # Same value as max(p, _PROBA_FLOOR), without a builtin call per regime.
            emission.append(math.log(_PROBA_FLOOR if p < _PROBA_FLOOR else p) - log_weights[c])
        return raw, emission, score

    def _component_stats(self) -> tuple[list[float], list[float]]:
        """Log-weights and entropies of the components, cached until the mixture learns."""
        if self._stats is None:
            mixture = self._mixture
            # The mixture's state regions are read in place: weights_ and covariances_ build new
            # arrays on every call, which costs more than the arithmetic needed here.
            regions = mixture._regions()
            mass = regions["mass"]
            masses = mass.tolist()
            # The total must equal numpy's sum in weights_ to the bit: for two terms that is
            # one addition; numpy associates longer sums differently, so it sums those.
            total = masses[0] + masses[1] if len(masses) == 2 else float(mass.sum())
            log_weights = [math.log(m / total) for m in masses]
            if mixture.n_features == 1 and mixture.covariance_type == "full":
                # One feature: the factor is the standard deviation f, and slogdet of the 1x1
                # matrix [[f * f]] is libm's log(f * f), as math.log computes it. (diag and
                # spherical take numpy's vectorised log, which can differ in the last bit.)
                variances = [f * f for f in regions["factor"].tolist()]
                # A zero variance gives slogdet's -inf rather than math.log's exception.
                entropy = [
                    0.5 * (_LOG_2PI_E + (math.log(v) if v != 0.0 else -math.inf)) for v in variances
                ]
            else:
                entropy = _entropies(mixture)
            self._stats = (log_weights, entropy)
        return self._stats

    def _update_drift(self, filtered: list[float], emission: list[float]) -> None:
        """Feed the monitor the regime-conditional log-likelihood and its model expectation.

        Given regime ``k`` a well-specified Gaussian component has
        ``E[log p(x | k)] = -H_k``, minus its entropy. Weighting both by the filtered regime
        probabilities makes the excess independent of the regime, so switching between
        known regimes is not drift, while ticks that no component explains are.
        """
        order = self._labeller.order
        assert order is not None
        entropy = self._component_stats()[1]
        if len(order) == 2:
            # fsum of two terms is their correctly rounded sum, which is exactly what one
            # float addition gives; this skips two generators per tick.
            p0, p1 = filtered
            conditional = p0 * emission[0] + p1 * emission[1]
            expected = -(p0 * entropy[order[0]] + p1 * entropy[order[1]])
        else:
            conditional = math.fsum([p * e for p, e in zip(filtered, emission, strict=True)])
            expected = -math.fsum([p * entropy[c] for p, c in zip(filtered, order, strict=True)])
        self._drift.update(conditional, expected)

    def _relabel(self) -> None:
        old = self._labeller.order
        # Flat (K * D) means straight from the state buffer; means_ would copy them.
        means = self._mixture._regions()["means"].tolist()
        measure = self._measure(means)
        if not self._labeller.violated(measure):
            # The usual tick: the ranking stands, so its tie-break keys are not needed.
            return
        d = self._mixture.n_features
        tiebreak = [means[i : i + d] for i in range(0, len(means), d)]
        if self._labeller.update(measure, tiebreak) and old is not None:
            new = self._labeller.order
            assert new is not None
            position = {c: r for r, c in enumerate(old)}
            # The filter's beliefs follow their components to their new regime numbers.
            self._filter.reorder([position[c] for c in new])

    def _output(
        self, filtered: list[float], raw: list[float], log_likelihood: float
    ) -> dict[str, Any]:
        drift = self._drift
        return make_output(
            _most_probable(filtered),
            dict(enumerate(filtered)),
            dict(enumerate(raw)),
            log_likelihood,
            float(drift.drift_score),
            bool(drift.drift_detected),
            self.n_samples_seen,
            True,
        )

    def learn_predict_one(self, tick: Mapping[str, Any]) -> dict[str, Any]:
        """Predict regime probabilities for ``tick`` from the past only, then learn from it.

        Returns
        -------
        dict
            Exactly the keys of :data:`OUTPUT_KEYS`, plain JSON-safe types. A duplicate or
            out-of-order tick is skipped and the previous output is repeated with
            ``drift_detected=False`` (``n_samples_seen`` unchanged).

        Raises
        ------
        ValueError
            On missing, non-numeric or non-finite fields; the state is left unchanged.
        """
        features, status = self._features.step(tick)
        if status == STATUS_FIRST and not features:
            self.n_samples_seen += 1
            self._last = {**self._last, "n_samples_seen": self.n_samples_seen}
            return _copy_output(self._last)
        if status not in (STATUS_OK, STATUS_FIRST):
            return {**_copy_output(self._last), "drift_detected": False}
        self.n_samples_seen += 1
        self.n_feature_vectors += 1
        if self.n_feature_vectors <= self.feature_warmup:
            self._last = {**self._last, "n_samples_seen": self.n_samples_seen}
            return _copy_output(self._last)
        x = self._mixture_input(features)
        if self._labeller.order is not None:  # self.warm, without the property call
            raw, relative, score = self._emissions(x)
            filtered = self._filter.update(relative)
            self._update_drift(filtered, [e + score for e in relative])
            out = self._output(filtered, raw, score)
        else:
            out = {**self._last, "n_samples_seen": self.n_samples_seen}
        self._mixture.learn_one(x)
        self._stats = None
        if self._mixture.is_initialised:
            self._relabel()
        self._last = out
        return _copy_output(out)

    def learn_predict_many(
        self, ticks: Sequence[Mapping[str, Any]]
    ) -> list[dict[str, Any] | ValueError]:
        """:meth:`learn_predict_one` on each tick in order, in one call.

        Returns
        -------
        list
            Per tick, the dict :meth:`learn_predict_one` returns for it or the ``ValueError``
            it raises (that tick leaves the state unchanged; later ticks are still applied).

        Notes
        -----
        A warm :class:`RegimeDetector` with 2 to 7 regimes, the feature ``var_cbrt``, a full
        covariance and fixed transitions (the defaults) runs its ticks through one compiled
        call (:mod:`streamgmm._regime_kernel`), several times faster per tick. The results are
        those of :meth:`learn_predict_one`; the tests hold the two paths equal.
        """
        results: list[dict[str, Any] | ValueError] = []
        i, n = 0, len(ticks)
        while i < n:
            if self._compiled_ready():
                i, how = self._run_compiled(ticks, i, results)
                if how == RELABEL:
                    self._relabel()
                    continue
                if how == _CHUNK_DONE:
                    continue
                if i >= n:
                    break
            try:
                results.append(self.learn_predict_one(ticks[i]))
            except ValueError as exc:
                results.append(exc)
            i += 1
        return results

    def _compiled_ready(self) -> bool:
        return False

    def _run_compiled(
        self,
        ticks: Sequence[Mapping[str, Any]],
        start: int,
        results: list[dict[str, Any] | ValueError],
    ) -> tuple[int, int]:
        """Run ``ticks[start:]`` through :func:`regime_run`; returns (next index, how).

        At most :data:`_COMPILED_CHUNK` ticks per call, so that a long list with many
        stops is not gathered again and again.
        """
        times: list[float] = []
        prices: list[float] = []
        for tick in itertools.islice(ticks, start, start + _COMPILED_CHUNK):
            ts, price, volume = tick.get("ts"), tick.get("price"), tick.get("volume")
            # Plain floats only, and a volume the per-tick path would accept (it validates
            # volume even when unused); anything else stops the run at this tick.
            if type(ts) is not float or type(price) is not float:
                break
            if volume is not None and not (
                type(volume) is float and volume - volume == 0.0 and volume >= 0.0
            ):
                break
            times.append(ts)
            prices.append(price)
        features = self._features.packed()
        log_filter = self._filter.packed()
        order = self._labeller.order
        if not times or features is None or log_filter is None or order is None:
            return start, STOPPED
        packed_features = np.array(features)
        packed_filter = np.array(log_filter)
        k = self.n_regimes
        rows = np.empty((len(times), 2 * k + 3))
        done, how = regime_run(
            self._mixture._state, packed_features, packed_filter, np.array(order),
            1.0 + self._labeller.hysteresis, np.array(times), np.array(prices), 0, rows,
        )  # fmt: skip
        if done == 0:
            return start, how
        if how == DONE and done == _COMPILED_CHUNK:
            how = _CHUNK_DONE  # only the chunk ended: the caller goes straight on
        self._features.unpack(packed_features.tolist(), done)
        self._filter.unpack(packed_filter.tolist(), done)
        self._stats = None
        drift = self._drift
        out: dict[str, Any] = self._last
        for row in rows[:done].tolist():
            if k == 2:
                # The usual case, unpacked directly: slicing and enumerate() per tick cost
                # about a third of the compiled run's time per tick.
                f0, f1, raw0, raw1, score, conditional, expected = row
                regime = 1 if f1 > f0 else 0
                probabilities = {0: f0, 1: f1}
                raw = {0: raw0, 1: raw1}
            else:
                filtered, score, conditional, expected = row[:k], row[2 * k], row[-2], row[-1]
                regime = _most_probable(filtered)
                probabilities = dict(enumerate(filtered))
                raw = dict(enumerate(row[k : 2 * k]))
            self.n_samples_seen += 1
            self.n_feature_vectors += 1
            drift.update(conditional, expected)
            out = {
                "regime": regime,
                "probabilities": probabilities,
                "raw_probabilities": raw,
                "log_likelihood": score,
                "drift_score": float(drift.drift_score),
                "drift_detected": bool(drift.drift_detected),
                "n_samples_seen": self.n_samples_seen,
                "warm": True,
            }
            results.append(out)
        self._last = _copy_output(out)
        return start + done, how

    def learn_one(self, tick: Mapping[str, Any]) -> None:
        """Learn from ``tick`` (the filter and drift monitor advance too)."""
        self.learn_predict_one(tick)

    def learn_predict_proba_one(self, tick: Mapping[str, Any]) -> dict[int, float]:
        """Filtered regime probabilities for ``tick`` (predicted causally), then learn."""
        return self.learn_predict_one(tick)["probabilities"]

    def predict_proba_one(self, tick: Mapping[str, Any]) -> dict[int, float]:
        """Filtered probabilities ``tick`` would get, without changing any state.

        For a tick that would be skipped, or before warm-up, the current probabilities.
        """
        if not self.warm:
            return dict(self._last["probabilities"])
        features = self._features.transform_one(tick)
        if not features:
            return dict(self._last["probabilities"])
        _, emission, _ = self._emissions(self._mixture_input(features))
        clone = ForwardFilter.from_state(self._filter.to_state())
        return dict(enumerate(clone.update(emission)))

    def predict_one(self, tick: Mapping[str, Any]) -> int:
        """Most probable regime for ``tick`` without changing any state."""
        proba = self.predict_proba_one(tick)
        return max(proba, key=lambda r: (proba[r], -r))

    # -- state -----------------------------------------------------------------------------
    def to_state(self) -> dict[str, Any]:
        """Versioned, JSON-safe state of features, mixture, labels, filter and drift monitor."""
        last = self._last
        return {
            "version": STATE_VERSION,
            "kind": self._KIND,
            "params": self._params(),
            "features": self._features.to_state(),
            "mixture": self._mixture.to_state(),
            "labels": self._labeller.to_state(),
            "filter": self._filter.to_state(),
            "drift": self._drift.to_state(),
            "n_samples_seen": self.n_samples_seen,
            "n_feature_vectors": self.n_feature_vectors,
            "last_output": {
                "regime": last["regime"],
                "probabilities": [last["probabilities"][r] for r in range(self.n_regimes)],
                "raw_probabilities": [last["raw_probabilities"][r] for r in range(self.n_regimes)],
                "log_likelihood": last["log_likelihood"],
                "drift_score": last["drift_score"],
                "drift_detected": last["drift_detected"],
                "n_samples_seen": last["n_samples_seen"],
                "warm": last["warm"],
            },
        }

    def _load(self, state: Mapping[str, Any], features: TickFeatures | EventFeatures) -> None:
        self._features = features
        self._mixture = OnlineGaussianMixture.from_state(state["mixture"])
        self._stats = None
        self._labeller.load_state(state["labels"])
        self._filter = ForwardFilter.from_state(state["filter"])
        self._drift = LikelihoodDriftMonitor.from_state(state["drift"])
        self.n_samples_seen = int(state["n_samples_seen"])
        self.n_feature_vectors = int(state["n_feature_vectors"])
        last = state["last_output"]
        self._last = {
            "regime": int(last["regime"]),
            "probabilities": {r: float(p) for r, p in enumerate(last["probabilities"])},
            "raw_probabilities": {r: float(p) for r, p in enumerate(last["raw_probabilities"])},
            "log_likelihood": float(last["log_likelihood"]),
            "drift_score": float(last["drift_score"]),
            "drift_detected": bool(last["drift_detected"]),
            "n_samples_seen": int(last["n_samples_seen"]),
            "warm": bool(last["warm"]),
        }


def _most_probable(filtered: list[float]) -> int:
    """The regime with the highest filtered probability; ties go to the lower regime."""
    if len(filtered) == 2:
        return 1 if filtered[1] > filtered[0] else 0
    return max(range(len(filtered)), key=lambda r: (filtered[r], -r))


def _copy_output(out: dict[str, Any]) -> dict[str, Any]:
    return {
        **out,
        "probabilities": dict(out["probabilities"]),
        "raw_probabilities": dict(out["raw_probabilities"]),
    }


def _check_state(state: Mapping[str, Any], kind: str) -> None:
    if not isinstance(state, Mapping) or state.get("kind") != kind:
        raise ValueError(f"state: not a {kind} snapshot")
    if state.get("version") != STATE_VERSION:
        raise ValueError(
            f"{kind} state version {state.get('version')!r} is not supported "
            f"(expected {STATE_VERSION})"
        )


class RegimeDetector(_Detector):
    """Market regimes from price ticks: regime 0 is the calmest, ``n_regimes - 1`` the wildest.

    Parameters
    ----------
    n_regimes
        Number of regimes; the mixture has one component per regime.
    features
        Tick features the mixture sees, a subset of ``("ret", "log_vol", "volume_z")``.
    vol_halflife, dt_unit, max_dt_units, return_scale
        Passed to :class:`streamgmm.features.TickFeatures` (time scaling of returns).
    halflife
        Mixture forgetting half-life in feature ticks (``None``: stepwise schedule).
    alpha
        Mixture stepwise exponent (only with ``halflife=None``).
    warmup
        Feature vectors buffered before the mixture's first fit; outputs have ``warm=False``
        until then.
    feature_warmup
        Feature vectors discarded first, while the EWMA volatility settles.
    covariance_type, reg_covar, min_weight, seed
        Passed to :class:`streamgmm.OnlineGaussianMixture`.
    self_transition
        Persistence filter's probability of staying in a regime per tick.
    learn_transitions, transition_halflife
        Estimate the transition matrix online instead (see :mod:`streamgmm.persistence`).
    label_hysteresis
        Relative margin before the component-to-regime ranking changes.
    drift_threshold, drift_delta, drift_min_instances, drift_reference_halflife, drift_halflife
        Passed to :class:`streamgmm.drift.LikelihoodDriftMonitor`.

    Notes
    -----
    Volatility of a component is its mean of ``var_cbrt`` or else of ``log_vol`` (both grow
    with volatility); if the mixture sees neither, the second moment of ``ret``; failing that,
    the trace of the covariance.
    """

    _KIND = "RegimeDetector"
    _FEATURE_NAMES = ("ret", "var_cbrt", "log_vol", "volume_z")

    def __init__(
        self,
        n_regimes: int = 2,
        features: Sequence[str] = ("var_cbrt",),
        vol_halflife: float = 0.5,
        dt_unit: float = 86400.0,
        max_dt_units: float = 1.0,
        return_scale: float = 100.0,
        halflife: float | None = 1000.0,
        alpha: float = 1.0,
        warmup: int = 250,
        feature_warmup: int = 0,
        covariance_type: str = "full",
        reg_covar: float = 1e-6,
        min_weight: float = 1e-3,
        self_transition: float = 0.98,
        learn_transitions: bool = False,
        transition_halflife: float = 2000.0,
        label_hysteresis: float = 0.1,
        drift_threshold: float = 25.0,
        drift_delta: float = 0.5,
        drift_min_instances: int = 100,
        drift_reference_halflife: float = 500.0,
        drift_halflife: float = 20.0,
        seed: int | None = 0,
    ) -> None:
        features = list(features)
        unknown = [f for f in features if f not in self._FEATURE_NAMES]
        if not features or unknown or len(set(features)) != len(features):
            raise ValueError(
                f"features must be distinct names from {self._FEATURE_NAMES}, got {features!r}"
            )
        self.features = features
        self.vol_halflife = vol_halflife
        self.dt_unit = dt_unit
        self.max_dt_units = max_dt_units
        self.return_scale = return_scale
        self._features = TickFeatures(
            vol_halflife=vol_halflife,
            dt_unit=dt_unit,
            max_dt_units=max_dt_units,
            return_scale=return_scale,
            use_volume="volume_z" in features,
        )
        super().__init__(
            n_regimes,
            halflife=halflife,
            alpha=alpha,
            warmup=warmup,
            feature_warmup=feature_warmup,
            covariance_type=covariance_type,
            reg_covar=reg_covar,
            min_weight=min_weight,
            self_transition=self_transition,
            learn_transitions=learn_transitions,
            transition_halflife=transition_halflife,
            label_hysteresis=label_hysteresis,
            drift_threshold=drift_threshold,
            drift_delta=drift_delta,
            drift_min_instances=drift_min_instances,
            drift_reference_halflife=drift_reference_halflife,
            drift_halflife=drift_halflife,
            seed=seed,
        )

    def _mixture_input(self, features: dict[str, float]) -> dict[str, float]:
        return {name: features[name] for name in self.features}

    def _compiled_ready(self) -> bool:
        # The configuration regime_run implements, and a warm pipeline past its feature
        # warm-up (packed() checks the features and the filter themselves). Up to 7 regimes:
        # numpy sums the component masses left to right only below 8 terms, and the
        # compiled run must add them in the same order.
        return (
            2 <= self.n_regimes <= 7
            and self.features == ["var_cbrt"]
            and self.covariance_type == "full"
            and self._labeller.order is not None
            and self.n_feature_vectors >= self.feature_warmup
        )

    def _measure(self, means: list[float]) -> list[float]:
        m = self._mixture
        names = m.feature_names_
        d = len(names)
        # Both scale features grow monotonically with volatility.
        for name in ("var_cbrt", "log_vol"):
            if name in names:
                return means[names.index(name) :: d]
        if "ret" in names:
            i = names.index("ret")
            var = _feature_variances(m)[:, i]
            return [float(v + mu * mu) for v, mu in zip(var, means[i::d], strict=True)]
        return [float(v) for v in _feature_variances(m).sum(axis=1)]

    def _params(self) -> dict[str, Any]:
        return {
            **super()._params(),
            "features": list(self.features),
            "vol_halflife": self.vol_halflife,
            "dt_unit": self.dt_unit,
            "max_dt_units": self.max_dt_units,
            "return_scale": self.return_scale,
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> RegimeDetector:
        """Rebuild from :meth:`to_state`; continued outputs are bit-identical."""
        _check_state(state, cls._KIND)
        det = cls(**state["params"])
        det._load(state, TickFeatures.from_state(state["features"]))
        return det


class EventDetector(_Detector):
    """Regimes of numeric event streams; regime 0 has the smallest covariance trace.

    Parameters
    ----------
    fields
        Numeric tick fields fed to the mixture as they are.
    n_components
        Number of regimes (mixture components).
    **kwargs
        As for :class:`RegimeDetector` (mixture, filter, labels and drift settings).

    Examples
    --------
    >>> import random
    >>> rng = random.Random(0)
    >>> det = EventDetector(["latency"], warmup=50)
    >>> for t in range(300):                 # quiet 10 ms, then busy 50 ms, then quiet again
    ...     busy = (t // 100) % 2 == 1
    ...     latency = rng.gauss(50, 10) if busy else rng.gauss(10, 1)
    ...     out = det.learn_predict_one({"ts": float(t), "latency": latency})
    >>> sorted(out)
    ['drift_detected', 'drift_score', 'log_likelihood', 'n_samples_seen', 'probabilities', \
'raw_probabilities', 'regime', 'warm']
    >>> out["regime"], out["n_samples_seen"]
    (0, 300)
    """

    _KIND = "EventDetector"

    def __init__(
        self,
        fields: Sequence[str],
        n_components: int = 2,
        halflife: float | None = 1000.0,
        alpha: float = 1.0,
        warmup: int = 250,
        feature_warmup: int = 0,
        covariance_type: str = "full",
        reg_covar: float = 1e-6,
        min_weight: float = 1e-3,
        self_transition: float = 0.98,
        learn_transitions: bool = False,
        transition_halflife: float = 2000.0,
        label_hysteresis: float = 0.1,
        drift_threshold: float = 25.0,
        drift_delta: float = 0.5,
        drift_min_instances: int = 100,
        drift_reference_halflife: float = 500.0,
        drift_halflife: float = 20.0,
        seed: int | None = 0,
    ) -> None:
        self._features = EventFeatures(fields)
        self.fields = list(fields)
        self.n_components = n_components
        super().__init__(
            n_components,
            halflife=halflife,
            alpha=alpha,
            warmup=warmup,
            feature_warmup=feature_warmup,
            covariance_type=covariance_type,
            reg_covar=reg_covar,
            min_weight=min_weight,
            self_transition=self_transition,
            learn_transitions=learn_transitions,
            transition_halflife=transition_halflife,
            label_hysteresis=label_hysteresis,
            drift_threshold=drift_threshold,
            drift_delta=drift_delta,
            drift_min_instances=drift_min_instances,
            drift_reference_halflife=drift_reference_halflife,
            drift_halflife=drift_halflife,
            seed=seed,
        )

    def _mixture_input(self, features: dict[str, float]) -> dict[str, float]:
        return features

    def _measure(self, means: list[float]) -> list[float]:
        return [float(v) for v in _feature_variances(self._mixture).sum(axis=1)]

    def _params(self) -> dict[str, Any]:
        params = super()._params()
        params["n_components"] = params.pop("n_regimes")
        return {**params, "fields": list(self.fields)}

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> EventDetector:
        """Rebuild from :meth:`to_state`; continued outputs are bit-identical."""
        _check_state(state, cls._KIND)
        det = cls(**state["params"])
        det._load(state, EventFeatures.from_state(state["features"]))
        return det


def _feature_variances(mixture: OnlineGaussianMixture) -> np.ndarray:
    """Per-component variance of every feature, shape (K, D), whatever the covariance type."""
    cov = mixture.covariances_
    if mixture.covariance_type == "full":
        return np.diagonal(cov, axis1=1, axis2=2)
    if mixture.covariance_type == "diag":
        return cov
    return np.repeat(cov[:, None], mixture.n_features, axis=1)


_LOG_2PI_E = math.log(2.0 * math.pi) + 1.0


def _entropies(mixture: OnlineGaussianMixture) -> list[float]:
    """Differential entropy of every component, ``0.5 * (D log(2 pi e) + log det cov)``."""
    cov = mixture.covariances_
    d = mixture.n_features
    if mixture.covariance_type == "full":
        log_det = np.linalg.slogdet(cov)[1]
    elif mixture.covariance_type == "diag":
        log_det = np.log(cov).sum(axis=1)
    else:
        log_det = d * np.log(cov)
    return [0.5 * (d * _LOG_2PI_E + float(v)) for v in log_det]
