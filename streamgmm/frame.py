"""Regimes over a pandas DataFrame, for backtests: a frame of ticks in, a frame of outputs out.

:func:`regimes_frame` streams the rows of a frame, in order, through a detector's
:meth:`~streamgmm.RegimeDetector.learn_predict_many` (the same per-tick path the service runs
per instrument), and lays the output dicts out as columns on the input's index. Every value is
causal: what the detector said at that row, having learnt only from the rows before it.

This module only moves data between a frame and the detector's public API; it holds no maths.
pandas is needed (it comes with the ``[demo]`` extra) and is imported on first use.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal, Protocol

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["regimes_frame"]

#: Column prefixes for the dict-valued outputs; other dict outputs use their own name.
_PREFIXES = {"probabilities": "p", "raw_probabilities": "raw"}


class _ManyDetector(Protocol):
    def learn_predict_many(
        self, ticks: Sequence[Mapping[str, Any]]
    ) -> list[dict[str, Any] | ValueError]: ...


def regimes_frame(
    frame: pd.DataFrame,
    detector: _ManyDetector | None = None,
    *,
    ts: str | None = None,
    fields: Sequence[str] | None = None,
    errors: Literal["raise", "coerce"] = "raise",
) -> pd.DataFrame:
    """Run a regime detector over the rows of ``frame``; one output row per input row.

    Parameters
    ----------
    frame
        One tick per row, in time order.
    detector
        A :class:`~streamgmm.RegimeDetector` or :class:`~streamgmm.EventDetector` (anything
        with ``learn_predict_many``). It keeps learning, so a second call continues where the
        first stopped. Default: a new ``RegimeDetector()``.
    ts
        Column of timestamps: epoch seconds, or datetimes. Default: the index, which must then
        be a ``DatetimeIndex`` or numeric. Naive datetimes are taken as UTC.
    fields
        Columns passed to the detector as tick fields. Default: ``price``, and ``volume`` when
        the frame has it.
    errors
        What a row the detector rejects (a missing, non-numeric or non-finite value) gives:
        ``"raise"`` raises ``ValueError`` naming the row; ``"coerce"`` gives a row of missing
        values and carries on (the detector's state is unchanged by that row).

    Returns
    -------
    pandas.DataFrame
        On ``frame``'s index: one column per scalar output (``regime``, ``log_likelihood``,
        ``drift_score``, ``drift_detected``, ``n_samples_seen``, ``warm``, ``volatility``,
        ``value_at_risk``, ...), and one per regime for the filtered probabilities (``p_0``,
        ``p_1``, ...) and the raw probabilities (``raw_0``, ...): for a ``RegimeDetector``, the
        same from that tick's volatility level alone, before the filter's memory; for an
        ``EventDetector``, the mixture's posteriors.

    Examples
    --------
    >>> import numpy as np
    >>> import pandas as pd
    >>> from streamgmm import RegimeDetector
    >>> from streamgmm.frame import regimes_frame

    >>> rng = np.random.default_rng(0)
    >>> vol = np.where(np.arange(1200) % 400 < 200, 0.005, 0.03)  # calm, then turbulent, ...
    >>> days = pd.bdate_range("2020-01-01", periods=1200)
    >>> prices = pd.DataFrame({"price": 100 * np.exp(np.cumsum(rng.normal(0, vol)))}, days)
    >>> out = regimes_frame(prices, RegimeDetector(n_regimes=2))
    >>> list(out.columns)  # doctest: +NORMALIZE_WHITESPACE
    ['regime', 'p_0', 'p_1', 'raw_0', 'raw_1', 'log_likelihood', 'drift_score',
     'drift_detected', 'n_samples_seen', 'warm', 'volatility', 'value_at_risk']
    >>> late = out[out["warm"]].iloc[-400:]  # the last 400 days: 200 calm, 200 turbulent
    >>> bool((late["regime"] == (vol[-400:] > 0.01)).mean() > 0.9)
    True
    """
    import pandas as pd

    if errors not in ("raise", "coerce"):
        raise ValueError(f"errors must be 'raise' or 'coerce', got {errors!r}")
    if detector is None:
        from streamgmm.regime import RegimeDetector

        detector = RegimeDetector()
    if fields is None:
        fields = [c for c in ("price", "volume") if c in frame.columns]
        if "price" not in fields:
            raise ValueError("frame has no 'price' column: name the tick fields with fields=")
    missing = [c for c in [*fields, *([ts] if ts is not None else [])] if c not in frame.columns]
    if missing:
        raise ValueError(f"frame lacks columns {missing}")
    stamps = _epoch_seconds(frame[ts] if ts is not None else frame.index)
    columns = [frame[c].tolist() for c in fields]
    ticks = [
        {"ts": t, **dict(zip(fields, values, strict=True))}
        for t, *values in zip(stamps, *columns, strict=True)
    ]
    outputs = detector.learn_predict_many(ticks)
    rows: list[dict[str, Any]] = []
    for label, out in zip(frame.index, outputs, strict=True):
        if isinstance(out, ValueError):
            if errors == "raise":
                raise ValueError(f"row {label!r}: {out}") from out
            rows.append({})
            continue
        row: dict[str, Any] = {}
        for key, value in out.items():
            if isinstance(value, Mapping):
                prefix = _PREFIXES.get(key, key)
                row.update({f"{prefix}_{k}": v for k, v in value.items()})
            else:
                row[key] = value
        rows.append(row)
    return pd.DataFrame(rows, index=frame.index)


def _epoch_seconds(values: Any) -> list[float]:
    """Timestamps as float epoch seconds: datetimes (naive = UTC) or numbers as they are."""
    import pandas as pd

    if pd.api.types.is_datetime64_any_dtype(values):
        stamps = pd.DatetimeIndex(values)
        stamps = stamps.tz_localize("UTC") if stamps.tz is None else stamps.tz_convert("UTC")
        seconds = (stamps - pd.Timestamp(0, tz="UTC")).total_seconds()
        return [float(s) for s in seconds]
    if pd.api.types.is_numeric_dtype(values):
        return [float(s) for s in values]
    raise ValueError(
        "timestamps must be datetimes or epoch seconds: use a DatetimeIndex, a numeric index, "
        "or name a column with ts="
    )
