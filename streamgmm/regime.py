"""Regime detection per tick: features -> online hidden Markov model -> stable labels -> drift.

:class:`RegimeDetector` (price ticks) and :class:`EventDetector` (numeric event ticks) run one
compiled step per tick (:mod:`streamgmm._regime_kernel`), for one tick
(:meth:`~RegimeDetector.learn_predict_one`) or many
(:meth:`~RegimeDetector.learn_predict_many`), with identical results:

1. **Features** (:mod:`streamgmm.features`): the time rules, the return scaled to the time unit
   (automatic by default), session gaps; standardised by the warm-up's scale.
2. **Regimes** (:mod:`streamgmm.persistence`): a Gaussian hidden Markov model in the feature,
   Hamilton's Markov-switching model, learnt online by Cappé's online EM with conjugate priors;
   its emission model is a :class:`streamgmm.OnlineGaussianMixture` buffer.
3. **Labels**: regimes ranked by variance, so regime 0 is always the calmest, with hysteresis.
4. **Drift** (:mod:`streamgmm.drift`): Page-Hinkley on the shortfall of the regime-conditional
   log-likelihood.

Each detector keeps all of this in one ``float64`` buffer (:mod:`streamgmm._regime_layout`);
``to_state()`` writes it out as versioned JSON by named parts and ``from_state()`` validates
every part before writing it back.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np

from streamgmm import _regime_kernel as _K
from streamgmm import _regime_layout as L
from streamgmm import _validate as V
from streamgmm._numeric import MAX_ABS_VALUE
from streamgmm.drift import drift_from_state, drift_settings, drift_to_state
from streamgmm.features import check_number, features_from_state, features_to_state, read_volume
from streamgmm.mixture import layout as _mix
from streamgmm.output import OUTPUT_KEYS, OutputBlock, make_output, make_output_columns
from streamgmm.persistence import hmm_from_state, hmm_to_state

__all__ = [
    "MAX_FEATURES",
    "MAX_REGIMES",
    "MAX_WARMUP",
    "OUTPUT_KEYS",
    "EventDetector",
    "RegimeDetector",
    "StreamProblem",
]


class StreamProblem(str):
    """Why a stream gives no regimes: the sentence itself, and its :attr:`kind`.

    A ``str`` (``"no scale: 600 ticks and ..."``) that also carries ``kind``, the short label the
    service counts it under (``no_scale``, ``mostly_gaps``), so nothing has to parse the
    sentence for it.

    Examples
    --------
    >>> problem = StreamProblem("mostly_gaps", "900 of the ticks were session gaps")
    >>> problem
    'mostly gaps: 900 of the ticks were session gaps'
    >>> problem.kind
    'mostly_gaps'
    """

    kind: str

    def __new__(cls, kind: str, reason: str) -> StreamProblem:
        problem = super().__new__(cls, f"{kind.replace('_', ' ')}: {reason}")
        problem.kind = kind
        return problem


STATE_VERSION = 2
#: Caps on a detector's shape; they bound what a stored state can make ``from_state`` allocate.
MAX_REGIMES = 8
MAX_FEATURES = 16
MAX_WARMUP = 10_000
# Bounds on the other settings: beyond them products of settings and statistics could overflow.
_BIG = 1e12
_PRIOR_WEIGHT = 1e9
_PRIOR_RATIO = 1e6

_ROW_STATUS, _ROW_FIELD = L.R_STATUS, L.R_FIELD


class _Detector:
    """The shared pipeline; subclasses say how a tick becomes numbers."""

    _KIND: ClassVar[str] = ""
    _FEATURE_KIND: ClassVar[int] = L.TICKS

    # -- construction ----------------------------------------------------------------------
    def _build(self, n_regimes: int, n_features: int, settings: Mapping[str, Any]) -> None:
        k = V.integer("n_regimes", n_regimes, lo=1, hi=MAX_REGIMES)
        warmup = V.integer("warmup", settings["warmup"], lo=2, hi=MAX_WARMUP)
        buf = L.new_buffer(self._FEATURE_KIND, k, n_features, warmup)
        buf[L.ALPHA] = V.number("alpha", settings["alpha"], lo=0.5, hi=1.0, lo_open=True)
        buf[L.STEP_OFFSET] = V.number("step_offset", settings["step_offset"], lo=0.0, hi=_BIG)
        halflife = settings["halflife"]
        if halflife is None:
            buf[L.MIN_STEP] = 0.0
        else:
            h = V.number("halflife", halflife, lo=1.0, hi=_BIG)
            buf[L.MIN_STEP] = 1.0 - 2.0 ** (-1.0 / h)
        buf[L.SELF_TRANSITION] = V.number(
            "self_transition", settings["self_transition"], lo=0.0, hi=1.0, lo_open=True
        )
        if settings["self_transition"] >= 1.0 and k > 1:
            raise ValueError(
                f"self_transition must be below 1, got {settings['self_transition']!r}"
            )
        buf[L.TRANSITION_PRIOR] = V.number(
            "transition_prior", settings["transition_prior"], lo=0.0, hi=_PRIOR_WEIGHT
        )
        buf[L.VARIANCE_PRIOR] = V.number(
            "variance_prior", settings["variance_prior"], lo=0.0, hi=_PRIOR_WEIGHT
        )
        low = V.number("prior_low", settings["prior_low"], lo=1.0 / _PRIOR_RATIO, hi=_PRIOR_RATIO)
        high = V.number("prior_high", settings["prior_high"], lo=low, hi=_PRIOR_RATIO)
        buf[L.PRIOR_LOW], buf[L.PRIOR_HIGH] = low, high
        buf[L.VARIANCE_FLOOR] = V.number(
            "variance_floor", settings["variance_floor"], lo=0.0, hi=1.0, lo_open=True
        )
        buf[L.HYSTERESIS] = V.number(
            "label_hysteresis", settings["label_hysteresis"], lo=0.0, hi=_BIG
        )
        drift_settings(
            buf,
            threshold=settings["drift_threshold"],
            delta=settings["drift_delta"],
            clip=settings["drift_clip"],
            reference_halflife=settings["drift_reference_halflife"],
            min_instances=settings["drift_min_instances"],
            halflife=settings["drift_halflife"],
        )
        mix = L.mixture(buf)
        mix[_mix.SCHEDULE] = _mix.DECAY
        mix[_mix.DECAY_FACTOR] = 1.0
        buf[L.PROFILE_M] = 1.0
        regions = L.regions(buf)
        regions["last_probabilities"][:] = 1.0 / k
        regions["last_raw_probabilities"][:] = 1.0 / k
        regions["order"][:] = np.arange(k)
        self._buf = buf
        self._k = k
        self._d = n_features
        self._width = L.row_width(k)
        self._one_data = np.empty((1, 1 + self._value_columns()))
        self._one_row = np.empty((1, self._width))

    def _value_columns(self) -> int:
        return 1 if self._FEATURE_KIND == L.TICKS else self._d

    @classmethod
    def _param_names(cls) -> list[str]:
        """The constructor's keyword arguments: the one definition of the detector's settings."""
        return list(inspect.signature(cls.__init__).parameters)[1:]

    def _store_params(self, arguments: Mapping[str, Any]) -> None:
        """Keep each constructor argument as the attribute of the same name (scikit-learn)."""
        for name in self._param_names():
            setattr(self, name, arguments[name])

    def _params(self) -> dict[str, Any]:
        """Constructor arguments, read back from their attributes."""
        return {name: getattr(self, name) for name in self._param_names()}

    # -- reading ticks ---------------------------------------------------------------------
    def _read(self, tick: Mapping[str, Any]) -> tuple[float, ...]:
        """``(ts, values...)`` of a tick as floats; ValueError for a missing or non-numeric
        field (finiteness and ranges are the compiled step's checks)."""
        raise NotImplementedError

    def _refusal(self, row: list[float], tick: Mapping[str, Any]) -> ValueError:
        status = int(row[_ROW_STATUS])
        if status == L.S_BAD_TS:
            return ValueError(f"tick field 'ts' must be finite, got {tick.get('ts')!r}")
        if status == L.S_BAD_VALUE:
            name = self._value_names()[int(row[_ROW_FIELD])]
            value = tick.get(name)
            if isinstance(value, int | float) and abs(value) <= MAX_ABS_VALUE:
                return ValueError(
                    f"tick field {name!r} is {value!r}, too far from the warm-up's values to "
                    f"use (standardised beyond ±{MAX_ABS_VALUE:g})"
                )
            return ValueError(
                f"tick field {name!r} must be finite and within ±{MAX_ABS_VALUE:g}, got {value!r}"
            )
        if status == L.S_BAD_PRICE:
            return ValueError(f"tick field 'price' must be positive, got {tick.get('price')!r}")
        return ValueError(
            f"tick gives an unusable return (price {tick.get('price')!r}, ts {tick.get('ts')!r})"
        )

    def _value_names(self) -> list[str]:
        raise NotImplementedError

    # -- outputs ---------------------------------------------------------------------------
    def _output(self, row: list[float]) -> dict[str, Any]:
        """The output record of one row, through the schema's one constructor."""
        k = self._k
        if k == 2:
            # The usual case, unpacked by position (0.1 us a tick faster than by name): the
            # layout's R_* order, which test_the_two_regime_row_unpacks_in_layout_order holds.
            _, _, regime, warm, seen, ll, score, drift, p0, p1, r0, r1 = row
            return make_output(
                1 if regime else 0,
                {0: p0, 1: p1},
                {0: r0, 1: r1},
                ll,
                score,
                drift != 0.0,
                int(seen),
                warm != 0.0,
            )
        p = L.R_PROBS
        return make_output(
            int(row[L.R_REGIME]),
            dict(enumerate(row[p : p + k])),
            dict(enumerate(row[p + k : p + 2 * k])),
            row[L.R_LL],
            row[L.R_DRIFT_SCORE],
            row[L.R_DRIFT] != 0.0,
            int(row[L.R_SEEN]),
            row[L.R_WARM] != 0.0,
        )

    # -- the per-tick call -----------------------------------------------------------------
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
            On a missing, non-numeric or non-finite field or a non-positive price, naming the
            field and the value; the state is left unchanged.
        """
        data = self._one_data
        for j, value in enumerate(self._read(tick)):
            data[0, j] = value
        _K.regime_run(self._buf, data, self._one_row)
        row = self._one_row[0].tolist()
        if row[_ROW_STATUS] >= L.S_BAD_TS:
            raise self._refusal(row, tick)
        return self._output(row)

    def learn_predict_many(
        self, ticks: Sequence[Mapping[str, Any]]
    ) -> list[dict[str, Any] | ValueError]:
        """:meth:`learn_predict_one` on each tick in order, in one compiled call.

        Returns
        -------
        list
            Per tick, the dict :meth:`learn_predict_one` returns for it or the ``ValueError``
            it raises (that tick leaves the state unchanged; later ticks are still applied).
        """
        n = len(ticks)
        results: list[dict[str, Any] | ValueError] = [None] * n  # type: ignore[list-item]
        flat: list[float] = []
        used: list[int] = []
        read = self._read
        for i, tick in enumerate(ticks):
            try:
                flat.extend(read(tick))
            except ValueError as exc:
                results[i] = exc
                continue
            used.append(i)
        if not used:
            return results
        data = np.array(flat).reshape(len(used), -1)
        rows = np.empty((len(used), self._width))
        _K.regime_run(self._buf, data, rows)
        bad = L.S_BAD_TS
        listed = rows.tolist()
        output = self._output
        outs = [output(row) for row in listed]
        for i, row, out in zip(used, listed, outs, strict=True):
            results[i] = self._refusal(row, ticks[i]) if row[_ROW_STATUS] >= bad else out
        return results

    def learn_predict_block(self, ts: np.ndarray, fields: Mapping[str, np.ndarray]) -> OutputBlock:
        """:meth:`learn_predict_many` for a run of ticks given as columns; outputs as columns.

        The same compiled call and the same outputs, bit for bit, without a dict per tick in
        or out: the per-key tick path of the service and ``streamgmm replay`` runs through
        this.

        Parameters
        ----------
        ts
            The ticks' timestamps, shape ``(n,)``.
        fields
            An array of shape ``(n,)`` per value field the detector reads: ``price`` for
            :class:`RegimeDetector` (``volume`` plays no part in the model and is not read
            here), the ``fields`` for :class:`EventDetector`. Other entries are ignored.

        Returns
        -------
        OutputBlock
            The positions of the ticks applied, their outputs in column form
            (:func:`streamgmm.output.make_output_columns`) and the ``ValueError`` of each tick
            refused, which leaves the state unchanged (later ticks are still applied).

        Raises
        ------
        ValueError
            If a value field is missing or the arrays do not have ``n`` entries each.
        """
        names = self._value_names()
        n = len(ts)
        data = np.empty((n, 1 + len(names)))
        for j, (name, column) in enumerate((("ts", ts), *((m, fields.get(m)) for m in names))):
            if column is None:
                raise ValueError(f"tick field {name!r} is missing")
            if np.shape(column) != (n,):
                raise ValueError(
                    f"tick field {name!r} must have {n} values, got shape {np.shape(column)}"
                )
            data[:, j] = column
        rows = np.empty((n, self._width))
        if n:
            _K.regime_run(self._buf, data, rows)
        listed = rows.tolist()
        refused: list[tuple[int, ValueError]] = []
        bad = L.S_BAD_TS
        if n and rows[:, _ROW_STATUS].max() >= bad:
            index = []
            for i, row in enumerate(listed):
                if row[_ROW_STATUS] < bad:
                    index.append(i)
                    continue
                tick = {
                    "ts": float(ts[i]),
                    **{m: float(data[i, j]) for j, m in enumerate(names, 1)},
                }
                refused.append((i, self._refusal(row, tick)))
            listed = [listed[i] for i in index]
        else:
            index = list(range(n))
        # Transposed in Python: cheaper than NumPy slicing for the few ticks of a poll, and
        # no dearer for a long run.
        cols = list(zip(*listed, strict=True)) if listed else [()] * self._width
        k, p = self._k, L.R_PROBS
        columns = make_output_columns(
            list(map(int, cols[L.R_REGIME])),
            cols[p : p + k],
            cols[p + k : p + 2 * k],
            cols[L.R_LL],
            cols[L.R_DRIFT_SCORE],
            [v != 0.0 for v in cols[L.R_DRIFT]],
            list(map(int, cols[L.R_SEEN])),
            [v != 0.0 for v in cols[L.R_WARM]],
        )
        return OutputBlock(index, columns, refused)

    def learn_one(self, tick: Mapping[str, Any]) -> None:
        """Learn from ``tick`` (river-style; returns None)."""
        self.learn_predict_one(tick)

    def predict_proba_one(self, tick: Mapping[str, Any]) -> dict[int, float]:
        """Filtered probabilities ``tick`` would get, without changing any state."""
        scratch = self._buf.copy()
        data = np.array([self._read(tick)])
        row = np.empty((1, self._width))
        _K.regime_run(scratch, data, row)
        values = row[0].tolist()
        if values[_ROW_STATUS] >= L.S_BAD_TS:
            raise self._refusal(values, tick)
        return dict(enumerate(values[L.R_PROBS : L.R_PROBS + self._k]))

    def predict_one(self, tick: Mapping[str, Any]) -> int:
        """Most probable regime for ``tick`` without changing any state (ties: the calmer)."""
        proba = self.predict_proba_one(tick)
        return max(proba, key=lambda r: (proba[r], -r))

    # -- read-only views -------------------------------------------------------------------
    @property
    def warm(self) -> bool:
        """True once outputs come from the running model (after the warm-up)."""
        return int(self._buf[L.PHASE]) == L.RUNNING

    @property
    def n_samples_seen(self) -> int:
        """Ticks accepted (skipped and refused ticks excluded)."""
        return int(self._buf[L.N_SEEN])

    @property
    def n_duplicates(self) -> int:
        """Ticks skipped for a repeated ``ts``."""
        return int(self._buf[L.N_DUPLICATES])

    @property
    def n_out_of_order(self) -> int:
        """Ticks skipped for a ``ts`` older than the last accepted one."""
        return int(self._buf[L.N_OUT_OF_ORDER])

    @property
    def n_gaps(self) -> int:
        """Ticks after a session gap (no evidence; the filter only moved one step)."""
        return int(self._buf[L.N_GAPS])

    @property
    def n_label_changes(self) -> int:
        """How often the ranking of regimes changed after the warm-up."""
        return int(self._buf[L.N_LABEL_CHANGES])

    @property
    def n_drifts(self) -> int:
        """Drift alarms so far."""
        return int(self._buf[L.N_DRIFTS])

    @property
    def drift_score(self) -> float:
        """The drift monitor's score; an alarm fires at 1."""
        return float(self._buf[L.DRIFT_SCORE])

    @property
    def mean_log_likelihood(self) -> float:
        """EWMA of the log-likelihood (half-life ``drift_halflife`` ticks)."""
        return float(self._buf[L.MEAN_LL])

    @property
    def stream_problem(self) -> StreamProblem | None:
        """Why this stream is not giving regimes, in one sentence, or None when it is.

        ``"no scale: ..."`` (kind ``no_scale``) when the warm-up has started over for lack of
        variation (a price that does not move, an event field that stays constant) for four
        warm-ups' worth of ticks; ``"mostly gaps: ..."`` (kind ``mostly_gaps``) when more than
        half of the ticks since the warm-up were session gaps (so they were not evidence: set
        ``dt_unit`` or ``gap_units``). The service logs it once per key and counts such keys in
        a metric, by :attr:`StreamProblem.kind`.
        """
        buf = self._buf
        seen = int(buf[L.N_SEEN])
        warmup = int(buf[L.WARMUP])
        if not self.warm:
            if seen >= 4 * warmup:
                return StreamProblem(
                    "no_scale",
                    f"{seen} ticks and the values never varied over a warm-up of {warmup} "
                    "(a constant price or field?); outputs stay warm=False",
                )
            return None
        gaps, steps = int(buf[L.N_GAPS]), int(buf[L.N_STEPS])
        if gaps > 100 and gaps > steps:
            return StreamProblem(
                "mostly_gaps",
                f"{gaps} of the ticks since the warm-up were session gaps and only {steps} "
                "were evidence; set dt_unit (seconds) or gap_units",
            )
        return None

    @property
    def regime_order(self) -> list[int] | None:
        """``regime_order[r]`` is the model state shown as regime ``r``; None before warm-up."""
        if not self.warm:
            return None
        return [int(v) for v in L.regions(self._buf)["order"]]

    def _regime_order(self) -> np.ndarray:
        if not self.warm:
            raise AttributeError("the detector is still warming up: there is no fitted model")
        return L.regions(self._buf)["order"].astype(int)

    @property
    def transition_matrix_(self) -> np.ndarray:
        """Estimated transition probabilities between regimes, shape (K, K), in regime order."""
        order = self._regime_order()
        a = L.regions(self._buf)["transitions"].reshape(self._k, self._k)
        return a[np.ix_(order, order)].copy()

    @property
    def means_(self) -> np.ndarray:
        """Regime means of the feature in its own units, shape (K, D), in regime order."""
        order = self._regime_order()
        r = L.regions(self._buf)
        means = _mix.regions(L.mixture(self._buf))["means"].reshape(self._k, self._d)
        return (means * r["scale"] + r["loc"])[order]

    @property
    def covariances_(self) -> np.ndarray:
        """Regime covariances in the feature's units (floor included), shape (K, D, D)."""
        order = self._regime_order()
        r = L.regions(self._buf)
        regions = _mix.regions(L.mixture(self._buf))
        factor = regions["factor"].reshape(self._k, self._d, self._d)
        cov = factor @ np.swapaxes(factor, 1, 2)
        scale = r["scale"]
        return (cov * np.outer(scale, scale))[order]

    # -- state -----------------------------------------------------------------------------
    def to_state(self) -> dict[str, Any]:
        """Versioned, JSON-safe state: settings, features, model statistics, drift, last output."""
        buf = self._buf
        r = L.regions(buf)
        return {
            "version": STATE_VERSION,
            "kind": self._KIND,
            "params": self._params(),
            "counters": {name: int(buf[slot]) for name, slot in _COUNTERS.items()},
            "running": self.warm,
            "features": features_to_state(buf),
            "hmm": hmm_to_state(buf),
            "drift": drift_to_state(buf),
            "last_output": {
                "probabilities": r["last_probabilities"].tolist(),
                "raw_probabilities": r["last_raw_probabilities"].tolist(),
                "log_likelihood": float(buf[L.LAST_LL]),
                "drift_detected": bool(buf[L.LAST_DRIFT]),
                "warm": bool(buf[L.LAST_WARM]),
            },
        }

    def _load(self, state: Mapping[str, Any]) -> None:
        """Validate the parts of ``state`` and write them into this fresh detector's buffer."""
        buf = self._buf
        counters = state["counters"]
        V.fields("state.counters", counters, tuple(_COUNTERS))
        for name, slot in _COUNTERS.items():
            buf[slot] = V.integer(f"state.counters.{name}", counters[name])
        buf[L.PHASE] = L.RUNNING if V.flag("state.running", state["running"]) else L.WARMING
        features_from_state("state.features", state["features"], buf)
        hmm_from_state("state.hmm", state["hmm"], buf)
        drift_from_state("state.drift", state["drift"], buf)
        last = state["last_output"]
        V.fields("state.last_output", last, _LAST_FIELDS)
        k = self._k
        r = L.regions(buf)
        probs = V.matrix("state.last_output.probabilities", last["probabilities"], (k,), lo=0, hi=1)
        raw = V.matrix(
            "state.last_output.raw_probabilities", last["raw_probabilities"], (k,), lo=0, hi=1
        )
        r["last_probabilities"][:] = probs
        r["last_raw_probabilities"][:] = raw
        buf[L.LAST_LL] = V.number("state.last_output.log_likelihood", last["log_likelihood"])
        buf[L.LAST_DRIFT] = V.flag("state.last_output.drift_detected", last["drift_detected"])
        buf[L.LAST_WARM] = V.flag("state.last_output.warm", last["warm"])
        if buf[L.LAST_WARM] and not self.warm:
            raise ValueError("state.last_output.warm is true but the model is not running")
        _K.refresh(buf)
        # Statistics in range can still give an overflowing model (a second moment near the
        # float limit divided by a small occupancy): refuse it rather than run it.
        if not (np.isfinite(L.mixture(buf)).all() and np.isfinite(r["transitions"]).all()):
            raise ValueError(
                "state.hmm: the statistics give a non-finite model (a moment beyond range?)"
            )

    @classmethod
    def _params_from_state(cls, state: Any) -> dict[str, Any]:
        V.fields("state", state, _STATE_FIELDS)
        if state["kind"] != cls._KIND:
            raise ValueError(f"state: not a {cls._KIND} snapshot (kind {state['kind']!r})")
        if state["version"] != STATE_VERSION:
            raise ValueError(
                f"{cls._KIND} state version {state['version']!r} is not supported "
                f"(expected {STATE_VERSION})"
            )
        params = state["params"]
        V.fields("state.params", params, cls._param_names())
        return dict(params)


_COUNTERS = {
    "n_samples_seen": L.N_SEEN,
    "n_steps": L.N_STEPS,
    "n_duplicates": L.N_DUPLICATES,
    "n_out_of_order": L.N_OUT_OF_ORDER,
    "n_gaps": L.N_GAPS,
    "n_label_changes": L.N_LABEL_CHANGES,
    "n_drifts": L.N_DRIFTS,
}
_LAST_FIELDS = ("probabilities", "raw_probabilities", "log_likelihood", "drift_detected", "warm")
_STATE_FIELDS = (
    "version",
    "kind",
    "params",
    "counters",
    "running",
    "features",
    "hmm",
    "drift",
    "last_output",
)


class RegimeDetector(_Detector):
    """Market regimes from price ticks: regime 0 is the calmest, ``n_regimes - 1`` the wildest.

    Parameters
    ----------
    n_regimes
        Number of regimes (hidden states), at most 8.
    dt_unit
        Seconds per time unit, or ``"auto"``: the median spacing of the warm-up's ticks.
    gap_units
        Spacings above this many units are session gaps: their return is not evidence.
    min_dt_units
        Spacings below this many units count as this many when returns are scaled up.
    intraday_profile
        Divide returns by the learnt volatility of their half-hour of the UTC day, once that
        profile differs from flat beyond noise (time units below six hours only); see
        :mod:`streamgmm.features`.
    profile_halflife
        Half-life, in days, of the intraday profile's sums.
    warmup
        Returns (events: feature vectors) buffered before the model starts; they set the time
        unit and the scale. Outputs have ``warm=False`` until then.
    alpha
        Exponent of the online-EM step ``(t + step_offset) ** -alpha`` after ``t`` ticks with
        evidence, in (0.5, 1]; smaller adapts faster.
    step_offset
        Offset ``t0`` of the online-EM step: early steps are ``(t0 + 1) ** -alpha`` rather
        than 1, so the first ticks cannot overwrite the start (``t + t0`` is taken as at least
        1, so no step exceeds 1).
    halflife
        Smallest online-EM step, as a half-life in ticks: the memory of a long-running model
        (``None``: no floor, the model converges).
    self_transition
        Prior probability of staying in a regime from one tick to the next (the transition
        matrix's diagonal).
    transition_prior
        Weight of that prior, in ticks.
    variance_prior
        Weight, in ticks, of the prior on the regime variances.
    prior_low
        Prior variance of the calmest regime, as a multiple of the pooled variance (regimes in
        between interpolate geometrically); also where the model starts.
    prior_high
        Prior variance of the wildest regime, as a multiple of the pooled variance.
    variance_floor
        Covariance floor, relative to the pooled variance.
    label_hysteresis
        Relative margin by which the variance ranking of regimes must be inverted before the
        labels change.
    drift_threshold
        Page-Hinkley threshold of the drift monitor, in reference standard deviations of
        accumulated shortfall; an alarm fires above it.
    drift_delta
        Slack per tick of the drift monitor: a sustained shortfall smaller than this many
        reference standard deviations is tolerated.
    drift_clip
        Largest surprise one tick contributes to drift, in reference standard deviations.
    drift_reference_halflife
        Half-life, in ticks, of the drift monitor's reference mean and variance.
    drift_min_instances
        Ticks after the warm-up (and after each alarm) before a drift alarm is possible.
    drift_halflife
        Half-life, in ticks, of ``mean_log_likelihood`` (dashboards).

    Examples
    --------
    >>> from streamgmm.synthetic import switching_stream
    >>> stream = switching_stream(seed=3, n=1500)
    >>> det = RegimeDetector()
    >>> outputs = det.learn_predict_many(stream.ticks())
    >>> outputs[0]["warm"], outputs[50]["warm"]          # warm from the 51st tick
    (False, True)
    >>> sorted(outputs[-1])
    ['drift_detected', 'drift_score', 'log_likelihood', 'n_samples_seen', 'probabilities', \
'raw_probabilities', 'regime', 'warm']
    >>> labels = [o["regime"] for o in outputs[50:]]
    >>> accuracy = sum(a == b for a, b in zip(labels, stream.regime[50:])) / len(labels)
    >>> bool(accuracy > 0.9)
    True
    >>> det.covariances_[:, 0, 0] ** 0.5 / det.covariances_[0, 0, 0] ** 0.5 > [0.9, 2]
    array([ True,  True])
    """

    _KIND = "RegimeDetector"
    _FEATURE_KIND = L.TICKS

    def __init__(
        self,
        n_regimes: int = 2,
        *,
        dt_unit: float | str = "auto",
        gap_units: float = 4.0,
        min_dt_units: float = 0.1,
        intraday_profile: bool = True,
        profile_halflife: float = 20.0,
        warmup: int = 50,
        alpha: float = 0.85,
        step_offset: float = 100.0,
        halflife: float | None = 5000.0,
        self_transition: float = 0.98,
        transition_prior: float = 20.0,
        variance_prior: float = 100.0,
        prior_low: float = 0.35,
        prior_high: float = 3.5,
        variance_floor: float = 0.01,
        label_hysteresis: float = 0.1,
        drift_threshold: float = 20.0,
        drift_delta: float = 0.5,
        drift_clip: float = 4.0,
        drift_reference_halflife: float = 500.0,
        drift_min_instances: int = 30,
        drift_halflife: float = 20.0,
    ) -> None:
        self._store_params(locals())
        self._build(n_regimes, 1, locals())
        if dt_unit == "auto":
            self._buf[L.DT_UNIT] = 0.0
        elif isinstance(dt_unit, str):
            raise ValueError(f"dt_unit must be 'auto' or a number of seconds, got {dt_unit!r}")
        else:
            self._buf[L.DT_UNIT] = V.number("dt_unit", dt_unit, lo=1e-9, hi=_BIG)
        self._buf[L.GAP_UNITS] = V.number("gap_units", gap_units, lo=1.0, hi=_BIG)
        self._buf[L.MIN_DT_UNITS] = V.number("min_dt_units", min_dt_units, lo=1e-9, hi=1.0)
        self._buf[L.PROFILE] = V.flag("intraday_profile", intraday_profile)
        self._buf[L.PROFILE_HALFLIFE] = 86400.0 * V.number(
            "profile_halflife", profile_halflife, lo=1e-3, hi=1e6
        )

    @property
    def time_unit_(self) -> float:
        """The time unit in seconds (``dt_unit``, or the warm-up's median spacing)."""
        if not self.warm:
            raise AttributeError("the time unit is set at the end of the warm-up")
        return float(self._buf[L.UNIT])

    def _value_names(self) -> list[str]:
        return ["price"]

    def _read(self, tick: Mapping[str, Any]) -> tuple[float, ...]:
        t = tick.get("ts")
        p = tick.get("price")
        if type(t) is not float:
            t = check_number(tick, "ts")
        if type(p) is not float:
            p = check_number(tick, "price")
        v = tick.get("volume")
        if v is not None and not (type(v) is float and v >= 0.0 and v - v == 0.0):
            read_volume(tick)
        return t, p

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> RegimeDetector:
        """Rebuild from :meth:`to_state`, validating every part first; outputs continue
        bit-identically."""
        det = cls(**cls._params_from_state(state))
        det._load(state)
        return det


class EventDetector(_Detector):
    """Regimes of numeric event streams; regime 0 has the smallest (standardised) variance.

    The same model as :class:`RegimeDetector`, on the chosen fields as they are: its keyword
    arguments from ``warmup`` to ``drift_halflife`` are :class:`RegimeDetector`'s model
    settings, with the same defaults and meaning (documented there once; an event's feature
    vector stands where a return does). A test holds the two signatures equal.

    Parameters
    ----------
    fields
        Numeric tick fields the model sees, as they are (at most 16).
    n_components
        Number of regimes (hidden states), at most 8.

    Examples
    --------
    >>> import random
    >>> rng = random.Random(0)
    >>> det = EventDetector(["latency"])
    >>> for t in range(400):                 # quiet 10 ms, busy 50 ms from tick 200
    ...     busy = t >= 200
    ...     latency = rng.gauss(50, 10) if busy else rng.gauss(10, 1)
    ...     out = det.learn_predict_one({"ts": float(t), "latency": latency})
    >>> out["regime"], out["n_samples_seen"], det.warm
    (1, 400, True)
    """

    _KIND = "EventDetector"
    _FEATURE_KIND = L.EVENTS
    fields: list[str]

    def __init__(
        self,
        fields: Sequence[str],
        n_components: int = 2,
        *,
        warmup: int = 50,
        alpha: float = 0.85,
        step_offset: float = 100.0,
        halflife: float | None = 5000.0,
        self_transition: float = 0.98,
        transition_prior: float = 20.0,
        variance_prior: float = 100.0,
        prior_low: float = 0.35,
        prior_high: float = 3.5,
        variance_floor: float = 0.01,
        label_hysteresis: float = 0.1,
        drift_threshold: float = 20.0,
        drift_delta: float = 0.5,
        drift_clip: float = 4.0,
        drift_reference_halflife: float = 500.0,
        drift_min_instances: int = 30,
        drift_halflife: float = 20.0,
    ) -> None:
        names = list(fields) if isinstance(fields, list | tuple) else None
        if (
            not names
            or len(names) > MAX_FEATURES
            or not all(isinstance(f, str) and f for f in names)
            or len(set(names)) != len(names)
            or "ts" in names
        ):
            raise ValueError(
                f"fields must be 1 to {MAX_FEATURES} distinct non-empty names other than 'ts', "
                f"got {fields!r}"
            )
        self._store_params({**locals(), "fields": names})
        self._build(n_components, len(names), locals())

    @property
    def n_regimes(self) -> int:
        """Number of regimes (``n_components``)."""
        return self._k

    def _value_names(self) -> list[str]:
        return self.fields

    def _read(self, tick: Mapping[str, Any]) -> tuple[float, ...]:
        t = tick.get("ts")
        if type(t) is not float:
            t = check_number(tick, "ts")
        values = [t]
        for name in self.fields:
            v = tick.get(name)
            values.append(v if type(v) is float else check_number(tick, name))
        return tuple(values)

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> EventDetector:
        """Rebuild from :meth:`to_state`, validating every part first; outputs continue
        bit-identically."""
        det = cls(**cls._params_from_state(state))
        det._load(state)
        return det
