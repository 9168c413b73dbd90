"""What both detectors share: building the buffer, the one path into the compiled step,
the outputs, the fitted views and the state.

A detector is one ``float64`` buffer (:mod:`~streamgmm.regime.layout`) and the compiled step
that updates it (:func:`~streamgmm.regime.step.regime_run`). :meth:`~_Detector.learn_predict_one`,
:meth:`~_Detector.learn_predict_many` and :meth:`~_Detector.learn_predict_block` differ only in
how ticks are packed (a tick dict, a list of them, columns) and how the output rows are
unpacked (an output dict per tick, or columns: :mod:`~streamgmm.regime.output`); all three, and
:meth:`~_Detector.predict_proba_one` on a copy of the buffer, go through :meth:`~_Detector._run`.
:class:`~streamgmm.regime.RegimeDetector` and :class:`~streamgmm.regime.EventDetector`
(:mod:`~streamgmm.regime.detectors`) say how a tick becomes numbers.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Self, TypeVar

import numpy as np
from river import base

from streamgmm.mixture import layout as mx
from streamgmm.regime import drift, features, hmm, labels
from streamgmm.regime import layout as L
from streamgmm.regime import state as snapshot
from streamgmm.regime.output import OutputBlock, make_output, make_output_columns
from streamgmm.regime.params import DriftMonitorSettings, ModelSettings, Shape, params_of
from streamgmm.regime.step import regime_run

__all__ = ["StreamProblem", "row_columns", "takes_old_names"]


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


_D = TypeVar("_D", bound=type)


def takes_old_names(cls: _D) -> _D:
    """Let detector class ``cls`` take the old names of its settings (``cls._RENAMED``) as
    keywords, with a DeprecationWarning naming the new one. ``inspect.signature`` still shows
    the real parameters."""
    init = cls.__init__  # type: ignore[misc]
    renamed: Mapping[str, str] = cls._RENAMED  # type: ignore[attr-defined]

    @functools.wraps(init)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        for old, new in renamed.items():
            if old in kwargs:
                warnings.warn(
                    f"{cls.__name__}({old}=...) is deprecated: use {new}=...",
                    DeprecationWarning,
                    stacklevel=2,
                )
                if new in kwargs:
                    raise TypeError(f"{cls.__name__}() got both {old} and {new}")
                kwargs[new] = kwargs.pop(old)
        init(self, *args, **kwargs)

    setattr(cls, "__init__", __init__)  # noqa: B010 (mypy keeps the dataclass's signature)
    return cls


def row_columns(rows: np.ndarray, k: int) -> dict[str, Any]:
    """The outputs in column form (:func:`~streamgmm.regime.output.make_output_columns`) of
    the output rows ``rows`` (one per tick applied) of a detector with ``k`` regimes: each
    column a NumPy array, NaN where an output dict has None (no value)."""
    p = L.R_PROBS
    return make_output_columns(
        rows[:, L.R_REGIME].astype(np.int64),
        tuple(rows[:, p + r] for r in range(k)),
        tuple(rows[:, p + k + r] for r in range(k)),
        rows[:, L.R_LL],
        rows[:, L.R_DRIFT_SCORE],
        rows[:, L.R_DRIFT] != 0.0,
        rows[:, L.R_SEEN].astype(np.int64),
        rows[:, L.R_WARM] != 0.0,
        rows[:, L.R_VOLATILITY],
        rows[:, L.R_VAR],
    )


class _Detector(base.Base, Shape):
    """The shared pipeline; subclasses say how a tick becomes numbers and build the buffer.

    A detector class also extends its settings class (:mod:`~streamgmm.regime.params`), whose
    fields are its constructor's parameters: constructing it checks them, then
    :meth:`__post_init__` builds the buffer (:meth:`_build`) and each stage writes its settings
    into it. ``_step`` is the compiled step, ``_slots`` where the counters live.
    """

    _KIND: ClassVar[str] = ""
    _FEATURE_KIND: ClassVar[int] = L.TICKS

    _buf: np.ndarray
    _k: int
    _d: int
    _width: int
    _step: Any
    _slots: Mapping[str, int]

    # -- construction ----------------------------------------------------------------------
    def __post_init__(self) -> None:
        super().__post_init__()  # every setting checked against its declaration
        self._build()
        self._one_data = np.empty((1, 1 + self._value_columns()))
        self._one_row = np.empty((1, self._width))

    def _build(self) -> None:
        raise NotImplementedError

    def _build_hmm(self, n_features: int, settings: ModelSettings) -> None:
        """The event model's buffer, with the settings written by the stages that read them."""
        k = self.n_regimes
        buf = L.new_buffer(self._FEATURE_KIND, k, n_features, self.warmup)
        hmm.settings(buf, settings)
        labels.settings(buf, settings)
        drift.settings(buf, DriftMonitorSettings.of(settings))
        # The starting state: a fixed emission model's schedule, no intraday correction,
        # uniform last probabilities, regime r shown as model state r.
        mix = L.mixture(buf)
        mix[mx.SCHEDULE] = mx.DECAY
        mix[mx.DECAY_FACTOR] = 1.0
        buf[L.PROFILE_M] = 1.0
        regions = L.regions(buf)
        regions["last_probabilities"][:] = 1.0 / k
        regions["last_raw_probabilities"][:] = 1.0 / k
        regions["order"][:] = np.arange(k)
        self._buf = buf
        self._k = k
        self._d = n_features
        self._width = L.row_width(k)
        self._step = regime_run
        self._slots = _HMM_SLOTS

    def _value_columns(self) -> int:
        return 1 if self._FEATURE_KIND == L.TICKS else self._d

    # -- reading ticks ---------------------------------------------------------------------
    def _read(self, tick: Mapping[str, Any]) -> tuple[float, ...]:
        """``(ts, values...)`` of a tick as floats; ValueError for a missing or non-numeric
        field (finiteness and ranges are the compiled step's checks)."""
        raise NotImplementedError

    def _read_fields(self, ts: Any, fields: Mapping[str, Any]) -> tuple[float, ...]:
        """:meth:`_read` of the tick ``{"ts": ts, **fields}``."""
        return self._read({"ts": ts, **fields})

    def _value_names(self) -> Sequence[str]:
        raise NotImplementedError

    def _refusal(self, row: list[float], tick: Mapping[str, Any]) -> ValueError:
        """The error of a tick the compiled step refused (its row's status and field)."""
        status = int(row[L.R_STATUS])
        name = self._value_names()[int(row[L.R_FIELD])] if status == L.S_BAD_VALUE else ""
        return features.refusal(status, name, tick)

    # -- the one path into the compiled step ------------------------------------------------
    def _run(self, data: np.ndarray, rows: np.ndarray, buf: np.ndarray | None = None) -> None:
        """Apply the ticks packed in ``data`` (a row per tick: ``ts``, then the values) in order
        to this detector's buffer (or to ``buf``); ``rows`` receives one output row per tick."""
        self._step(self._buf if buf is None else buf, data, rows)

    # -- outputs ---------------------------------------------------------------------------
    def _output(self, row: list[float]) -> dict[str, Any]:
        """The output record of one row, through the schema's one constructor."""
        k = self._k
        p = L.R_PROBS
        if k == 2:
            # The usual case, by position (0.1 us a tick faster than by name): the layout's
            # R_* order, which test_the_two_regime_row_unpacks_in_layout_order holds.
            # NaN (no forecast) becomes None in make_output: null in the record.
            return make_output(
                1 if row[2] else 0,
                {0: row[p], 1: row[p + 1]},
                {0: row[p + 2], 1: row[p + 3]},
                row[5],
                row[6],
                row[7] != 0.0,
                int(row[4]),
                row[3] != 0.0,
                row[8],
                row[9],
            )
        return make_output(
            int(row[L.R_REGIME]),
            dict(enumerate(row[p : p + k])),
            dict(enumerate(row[p + k : p + 2 * k])),
            row[L.R_LL],
            row[L.R_DRIFT_SCORE],
            row[L.R_DRIFT] != 0.0,
            int(row[L.R_SEEN]),
            row[L.R_WARM] != 0.0,
            row[L.R_VOLATILITY],
            row[L.R_VAR],
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
        self._run(data, self._one_row)
        row = self._one_row[0].tolist()
        if row[L.R_STATUS] >= L.S_BAD_TS:
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
        self._run(data, rows)
        bad = L.S_BAD_TS
        listed = rows.tolist()
        output = self._output
        outs = [output(row) for row in listed]
        for i, row, out in zip(used, listed, outs, strict=True):
            results[i] = self._refusal(row, ticks[i]) if row[L.R_STATUS] >= bad else out
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
            (:func:`~streamgmm.regime.output.make_output_columns`: each column a NumPy array,
            NaN where :meth:`learn_predict_many` gives None; :func:`~streamgmm.regime.output.
            output_rows` turns them into its dicts) and the ``ValueError`` of each tick
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
            self._run(data, rows)
        refused: list[tuple[int, ValueError]] = []
        bad = L.S_BAD_TS
        if n and rows[:, L.R_STATUS].max() >= bad:
            ok = rows[:, L.R_STATUS] < bad
            for i in np.flatnonzero(~ok).tolist():
                tick = {
                    "ts": float(ts[i]),
                    **{m: float(data[i, j]) for j, m in enumerate(names, 1)},
                }
                refused.append((i, self._refusal(rows[i].tolist(), tick)))
            index = np.flatnonzero(ok).tolist()
            rows = rows[ok]
        else:
            index = list(range(n))
        return OutputBlock(index, row_columns(rows, self._k), refused)

    def learn_one(self, tick: Mapping[str, Any]) -> None:
        """Learn from ``tick`` (river-style; returns None)."""
        self.learn_predict_one(tick)

    def predict_proba_one(self, tick: Mapping[str, Any]) -> dict[int, float]:
        """Filtered probabilities ``tick`` would get, without changing any state."""
        data = np.array([self._read(tick)])
        row = np.empty((1, self._width))
        self._run(data, row, buf=self._buf.copy())
        values = row[0].tolist()
        if values[L.R_STATUS] >= L.S_BAD_TS:
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
        return int(self._buf[self._slots["phase"]]) == L.RUNNING

    @property
    def n_samples_seen(self) -> int:
        """Ticks accepted (skipped and refused ticks excluded)."""
        return int(self._buf[self._slots["n_seen"]])

    @property
    def n_duplicates(self) -> int:
        """Ticks skipped for a repeated ``ts``."""
        return int(self._buf[self._slots["n_duplicates"]])

    @property
    def n_out_of_order(self) -> int:
        """Ticks skipped for a ``ts`` older than the last accepted one."""
        return int(self._buf[self._slots["n_out_of_order"]])

    @property
    def n_gaps(self) -> int:
        """Ticks after a gap (a closure): market ticks score them with the gap's learnt
        variance multiplier; events have none."""
        return int(self._buf[self._slots["n_gaps"]])

    @property
    def n_label_changes(self) -> int:
        """How often the ranking of regimes changed after the warm-up."""
        return int(self._buf[self._slots["n_label_changes"]])

    @property
    def n_drifts(self) -> int:
        """Drift alarms so far."""
        return int(self._buf[self._slots["n_drifts"]])

    @property
    def mean_log_likelihood(self) -> float:
        """EWMA of the log-likelihood (dashboards)."""
        return float(self._buf[self._slots["mean_ll"]])

    @property
    def stream_problem(self) -> StreamProblem | None:
        """Why this stream is not giving regimes, in one sentence, or None when it is.

        ``"no scale: ..."`` (kind ``no_scale``) when the warm-up has started over for lack of
        variation (a price that does not move, an event field that stays constant) for four
        warm-ups' worth of ticks. The service logs it once per key and counts such keys in a
        metric, by :attr:`StreamProblem.kind`.
        """
        if self.warm:  # the usual case, and the quickest to tell
            return None
        seen = self.n_samples_seen
        warmup = self.warmup
        if seen >= 4 * warmup:
            return StreamProblem(
                "no_scale",
                f"{seen} ticks and the values never varied over a warm-up of {warmup} "
                "(a constant price or field?); outputs stay warm=False",
            )
        return None

    def _fitted(self) -> None:
        if not self.warm:
            raise AttributeError("the detector is still warming up: there is no fitted model")

    # -- state -----------------------------------------------------------------------------
    def to_state(self) -> dict[str, Any]:
        """Versioned, JSON-safe state: settings, counters, each stage's part."""
        raise NotImplementedError

    def _load(self, state: Mapping[str, Any]) -> None:
        raise NotImplementedError

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> Self:
        """Rebuild from :meth:`to_state`, validating every part first; outputs continue
        bit-identically."""
        names = [param.name for param in params_of(cls)]
        detector = cls(**snapshot.params_from_state(state, cls._KIND, names, cls._RENAMED))
        detector._load(state)
        return detector


#: Where the event model's step keeps the counters the views read.
_HMM_SLOTS = {
    "phase": L.PHASE,
    "n_seen": L.N_SEEN,
    "n_duplicates": L.N_DUPLICATES,
    "n_out_of_order": L.N_OUT_OF_ORDER,
    "n_gaps": L.N_GAPS,
    "n_label_changes": L.N_LABEL_CHANGES,
    "n_drifts": L.N_DRIFTS,
    "mean_ll": L.MEAN_LL,
}
