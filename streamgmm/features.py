"""Tick feature transformers: raw ticks in, numeric feature dicts out.

Two river-compatible transformers (``learn_one`` / ``transform_one``) turn ticks into the
feature vectors that :class:`streamgmm.OnlineGaussianMixture` sees:

* :class:`TickFeatures` for market ticks ``{"ts", "price", "volume"?}``: a time-scaled log
  return, the cube root and the log of an EWMA variance and, optionally, a volume z-score.
* :class:`EventFeatures` for event ticks whose fields are already numeric: the selected fields
  pass through unchanged.

Time handling (both transformers)
---------------------------------
``ts`` is in seconds. A tick whose ``ts`` equals the last accepted ``ts`` is a *duplicate*; a
tick whose ``ts`` is smaller is *out of order*. Both are skipped: ``transform_one`` returns an
empty dict, ``learn_one`` leaves the state unchanged, and the counters ``n_duplicates`` /
``n_out_of_order`` are incremented by :meth:`TickFeatures.step`. Nothing crashes on them.

Return scaling (market ticks)
-----------------------------
With ``dt = clip(Δts / dt_unit, 1e-12, max_dt_units)`` the return feature is
``ret = return_scale * log(p_t / p_{t-1}) / sqrt(dt)``: a return per ``dt_unit`` (one day by
default) in percent. Under a random walk its variance then does not depend on the spacing of
ticks. Gaps longer than ``max_dt_units`` (default one unit: weekends, holidays, trading halts
on daily data) count as ``max_dt_units``, because a market accrues little variance while
closed; with the defaults, daily closes are therefore used unscaled. The EWMA volatility decays
in the same clipped time, with a half-life of ``vol_halflife`` units.

Non-finite or missing values raise :class:`ValueError` naming the field and the value, and
leave the state unchanged.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from typing import Any

from river import base

__all__ = ["EventFeatures", "TickFeatures", "check_number"]

# Floor for the EWMA variance (in squared feature units) so that a constant price gives a finite
# log-volatility instead of log(0).
_VAR_FLOOR = 1e-12
_ONE_THIRD = 1.0 / 3.0
# Spacings below this many units (86 ns with daily units) count as this many, so that ticks
# almost on the same timestamp cannot blow a return up towards infinity.
_MIN_DT_UNITS = 1e-12
# Largest feature magnitude the mixture accepts (it rejects values beyond ±1e100).
_MAX_FEATURE = 1e100

STATUS_FIRST = "first"
STATUS_OK = "ok"
STATUS_DUPLICATE = "duplicate"
STATUS_OUT_OF_ORDER = "out_of_order"


def check_number(tick: Mapping[str, Any], field: str, *, required: bool = True) -> float | None:
    """Return ``tick[field]`` as a finite float.

    Parameters
    ----------
    tick
        The tick dict.
    field
        Name of the field to read.
    required
        If False a missing (or ``None``) field gives ``None`` instead of an error.

    Raises
    ------
    ValueError
        If the field is missing (and required), not a real number, or not finite. The message
        names the field and the value.
    """
    value = tick.get(field)
    # The common case, a finite float, returns before the (slow) ABC isinstance check.
    if type(value) is float and math.isfinite(value):
        return value
    if value is None:
        if required:
            raise ValueError(f"tick field {field!r} is missing")
        return None
    # bool is an int subclass but a True price is a data bug, not a number.
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"tick field {field!r} must be a number, got {value!r}")
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"tick field {field!r} must be finite, got {value!r}")
    return number


class _Clock:
    """Last accepted timestamp plus counters of skipped ticks (shared by both transformers)."""

    def __init__(self) -> None:
        self.last_ts: float | None = None
        self.n_duplicates = 0
        self.n_out_of_order = 0

    def classify(self, ts: float) -> str:
        if self.last_ts is None:
            return STATUS_FIRST
        if ts == self.last_ts:
            return STATUS_DUPLICATE
        if ts < self.last_ts:
            return STATUS_OUT_OF_ORDER
        return STATUS_OK

    def count(self, status: str) -> None:
        if status == STATUS_DUPLICATE:
            self.n_duplicates += 1
        elif status == STATUS_OUT_OF_ORDER:
            self.n_out_of_order += 1

    def to_state(self) -> dict[str, Any]:
        return {
            "last_ts": self.last_ts,
            "n_duplicates": self.n_duplicates,
            "n_out_of_order": self.n_out_of_order,
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> _Clock:
        clock = cls()
        clock.last_ts = None if state["last_ts"] is None else float(state["last_ts"])
        clock.n_duplicates = int(state["n_duplicates"])
        clock.n_out_of_order = int(state["n_out_of_order"])
        return clock


class _ClockCounters:
    """The skip counters and last timestamp of a transformer's :class:`_Clock`."""

    _clock: _Clock

    @property
    def n_duplicates(self) -> int:
        """Ticks skipped because their ``ts`` equalled the last accepted one."""
        return self._clock.n_duplicates

    @property
    def n_out_of_order(self) -> int:
        """Ticks skipped because their ``ts`` was older than the last accepted one."""
        return self._clock.n_out_of_order

    @property
    def last_ts(self) -> float | None:
        """Timestamp of the last accepted tick."""
        return self._clock.last_ts


class TickFeatures(_ClockCounters, base.Transformer):
    """Market-tick features: scaled log return, log EWMA volatility, optional volume z-score.

    Parameters
    ----------
    vol_halflife
        Half-life of the EWMA of squared returns, in units of ``dt_unit`` (clipped time, so on
        daily data: trading days).
    dt_unit
        Seconds per time unit; returns are expressed per unit. Default one day (86400 s).
    max_dt_units
        Gaps longer than this many units count as this many units (see the module docstring).
    return_scale
        Multiplier of the log return; 100 gives percent, which keeps daily-return variances near
        one and well above the mixture's ``reg_covar``.
    use_volume
        If True, ``volume`` is required and ``volume_z`` (z-score of ``log1p(volume)`` against
        its EWMA mean and variance before this tick) is emitted.
    volume_halflife
        Half-life, in ticks, of the volume EWMA.

    Notes
    -----
    Output keys, with ``v`` the bias-corrected EWMA of ``ret**2`` including the current tick:

    * ``ret``;
    * ``var_cbrt = v**(1/3)``. A cube root makes a scaled chi-square variable nearly Gaussian
      (Wilson–Hilferty), so Gaussian components fitted to it separate regimes by volatility;
    * ``log_vol = 0.5 * log(v)``;
    * with ``use_volume``, ``volume_z``. The first
    accepted tick only sets the reference price and yields an empty dict.

    Examples
    --------
    >>> f = TickFeatures()
    >>> f.learn_one({"ts": 0.0, "price": 100.0})
    >>> x = f.transform_one({"ts": 86400.0, "price": 101.0})
    >>> round(x["ret"], 6), round(x["var_cbrt"], 6), round(x["log_vol"], 6)
    (0.995033, 0.996686, -0.004979)
    """

    def __init__(
        self,
        vol_halflife: float = 0.5,
        dt_unit: float = 86400.0,
        max_dt_units: float = 1.0,
        return_scale: float = 100.0,
        use_volume: bool = False,
        volume_halflife: float = 20.0,
    ) -> None:
        for name, value in (
            ("vol_halflife", vol_halflife),
            ("dt_unit", dt_unit),
            ("max_dt_units", max_dt_units),
            ("return_scale", return_scale),
            ("volume_halflife", volume_halflife),
        ):
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive finite number, got {value!r}")
        self.vol_halflife = float(vol_halflife)
        self.dt_unit = float(dt_unit)
        self.max_dt_units = float(max_dt_units)
        self.return_scale = float(return_scale)
        self.use_volume = bool(use_volume)
        self.volume_halflife = float(volume_halflife)
        self._clock = _Clock()
        self._last_price: float | None = None
        # Bias-corrected EWMA: var = _sq / _w, where _w is the decayed weight total.
        self._sq = 0.0
        self._w = 0.0
        self._vol_mean = 0.0
        self._vol_m2 = 0.0
        self._vol_w = 0.0
        self.n_returns = 0

    # -- core ------------------------------------------------------------------------------
    def _parse(self, tick: Mapping[str, Any]) -> tuple[float, float, float | None]:
        ts = check_number(tick, "ts")
        price = check_number(tick, "price")
        assert ts is not None and price is not None
        if price <= 0.0:
            raise ValueError(f"tick field 'price' must be positive, got {tick['price']!r}")
        volume = check_number(tick, "volume", required=self.use_volume)
        if volume is not None and volume < 0.0:
            raise ValueError(f"tick field 'volume' must be non-negative, got {tick['volume']!r}")
        return ts, price, volume

    def _compute(
        self, ts: float, price: float, volume: float | None
    ) -> tuple[dict[str, float], tuple[float, ...]]:
        """Features for an in-order tick and the state it would commit (no mutation)."""
        assert self._clock.last_ts is not None and self._last_price is not None
        dt = (ts - self._clock.last_ts) / self.dt_unit
        dt = min(max(dt, _MIN_DT_UNITS), self.max_dt_units)
        ret = self.return_scale * math.log(price / self._last_price) / math.sqrt(dt)
        lam = 2.0 ** (-dt / self.vol_halflife)
        sq = lam * self._sq + (1.0 - lam) * ret * ret
        w = lam * self._w + (1.0 - lam)
        out = {
            "ret": ret,
            "var_cbrt": (sq / w) ** _ONE_THIRD,
            "log_vol": 0.5 * math.log(sq / w + _VAR_FLOOR),
        }
        if not (math.isfinite(sq) and abs(ret) <= _MAX_FEATURE):
            # Only reachable with absurd inputs (e.g. a 1e300x price jump a nanosecond apart).
            raise ValueError(
                f"tick gives an unusable return feature {ret!r} (price {price!r}, ts {ts!r})"
            )
        vm, vm2, vw = self._vol_mean, self._vol_m2, self._vol_w
        if self.use_volume:
            assert volume is not None
            v = math.log1p(volume)
            if vw > 0.0:
                var = vm2 / vw
                out["volume_z"] = (v - vm) / math.sqrt(var + _VAR_FLOOR) if var > 0 else 0.0
            else:
                out["volume_z"] = 0.0
            vlam = 2.0 ** (-1.0 / self.volume_halflife)
            # Exponentially weighted Welford update (West 1979) keeps the variance centred.
            vw_new = vlam * vw + 1.0
            delta = v - vm
            vm_new = vm + delta / vw_new
            vm2 = vlam * vm2 + delta * (v - vm_new)
            vm, vw = vm_new, vw_new
        return out, (sq, w, vm, vm2, vw)

    def _first_volume_state(self, volume: float | None) -> tuple[float, float, float]:
        if not self.use_volume or volume is None:
            return self._vol_mean, self._vol_m2, self._vol_w
        return math.log1p(volume), 0.0, 1.0

    def step(self, tick: Mapping[str, Any]) -> tuple[dict[str, float], str]:
        """Transform and learn in one call.

        Returns
        -------
        features, status
            ``features`` is empty unless ``status == "ok"``. ``status`` is one of ``"first"``,
            ``"ok"``, ``"duplicate"``, ``"out_of_order"``; skipped ticks are counted.
        """
        ts, price, volume = self._parse(tick)
        status = self._clock.classify(ts)
        if status == STATUS_FIRST:
            self._clock.last_ts = ts
            self._last_price = price
            self._vol_mean, self._vol_m2, self._vol_w = self._first_volume_state(volume)
            return {}, status
        if status != STATUS_OK:
            self._clock.count(status)
            return {}, status
        out, (sq, w, vm, vm2, vw) = self._compute(ts, price, volume)
        self._sq, self._w = sq, w
        self._vol_mean, self._vol_m2, self._vol_w = vm, vm2, vw
        self._clock.last_ts = ts
        self._last_price = price
        self.n_returns += 1
        return out, status

    def learn_one(self, x: Mapping[str, Any]) -> None:  # type: ignore[override]
        """Update the state with tick ``x`` (skipped ticks are counted, not applied)."""
        self.step(x)

    # -- compiled runs (streamgmm._regime_kernel) -------------------------------------------
    def packed(self) -> list[float] | None:
        """Return/volatility state and parameters in the compiled run's ``features`` layout.

        None before the first tick, or with ``use_volume`` (the compiled run has no volume).
        """
        if self._clock.last_ts is None or self._last_price is None or self.use_volume:
            return None
        return [
            self._clock.last_ts, self._last_price, self._sq, self._w,
            self.dt_unit, self.max_dt_units, self.return_scale, self.vol_halflife,
        ]  # fmt: skip

    def unpack(self, packed: Sequence[float], n_ticks: int) -> None:
        """Take back :meth:`packed` state after a compiled run applied ``n_ticks`` ticks."""
        self._clock.last_ts, self._last_price, self._sq, self._w = (float(v) for v in packed[:4])
        self.n_returns += n_ticks

    def transform_one(self, x: Mapping[str, Any]) -> dict[str, float]:  # type: ignore[override]
        """Features of tick ``x`` given the state so far, without updating it.

        Returns an empty dict for the first tick and for duplicate or out-of-order ticks.
        """
        ts, price, volume = self._parse(x)
        if self._clock.classify(ts) != STATUS_OK:
            return {}
        return self._compute(ts, price, volume)[0]

    # -- state -----------------------------------------------------------------------------
    def to_state(self) -> dict[str, Any]:
        """JSON-safe, versioned state (parameters included)."""
        return {
            "version": 1,
            "kind": "TickFeatures",
            "params": {
                "vol_halflife": self.vol_halflife,
                "dt_unit": self.dt_unit,
                "max_dt_units": self.max_dt_units,
                "return_scale": self.return_scale,
                "use_volume": self.use_volume,
                "volume_halflife": self.volume_halflife,
            },
            "clock": self._clock.to_state(),
            "last_price": self._last_price,
            "sq": self._sq,
            "w": self._w,
            "vol_mean": self._vol_mean,
            "vol_m2": self._vol_m2,
            "vol_w": self._vol_w,
            "n_returns": self.n_returns,
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> TickFeatures:
        """Rebuild from :meth:`to_state` output."""
        _check_version(state, "TickFeatures")
        obj = cls(**state["params"])
        obj._clock = _Clock.from_state(state["clock"])
        obj._last_price = None if state["last_price"] is None else float(state["last_price"])
        obj._sq = float(state["sq"])
        obj._w = float(state["w"])
        obj._vol_mean = float(state["vol_mean"])
        obj._vol_m2 = float(state["vol_m2"])
        obj._vol_w = float(state["vol_w"])
        obj.n_returns = int(state["n_returns"])
        return obj


class EventFeatures(_ClockCounters, base.Transformer):
    """Pass selected numeric fields of event ticks through, with the same ``ts`` rules.

    Parameters
    ----------
    fields
        Names of the numeric fields to emit (in this order).

    Examples
    --------
    >>> f = EventFeatures(["cpu", "latency"])
    >>> f.step({"ts": 1.0, "cpu": 0.5, "latency": 12, "host": "a"})
    ({'cpu': 0.5, 'latency': 12.0}, 'first')
    >>> f.step({"ts": 1.0, "cpu": 0.7, "latency": 10})
    ({}, 'duplicate')
    """

    def __init__(self, fields: Sequence[str]) -> None:
        fields = list(fields)
        if not fields:
            raise ValueError("fields must name at least one numeric field, got []")
        if len(set(fields)) != len(fields):
            raise ValueError(f"fields must be distinct, got {fields!r}")
        if "ts" in fields:
            raise ValueError("fields must not include 'ts'")
        self.fields = fields
        self._clock = _Clock()
        self.n_events = 0

    def _parse(self, tick: Mapping[str, Any]) -> tuple[float, dict[str, float]]:
        ts = check_number(tick, "ts")
        assert ts is not None
        values: dict[str, float] = {}
        for field in self.fields:
            value = check_number(tick, field)
            assert value is not None
            values[field] = value
        return ts, values

    def step(self, tick: Mapping[str, Any]) -> tuple[dict[str, float], str]:
        """Transform and learn; unlike market ticks the first event already has features."""
        ts, values = self._parse(tick)
        status = self._clock.classify(ts)
        if status in (STATUS_DUPLICATE, STATUS_OUT_OF_ORDER):
            self._clock.count(status)
            return {}, status
        self._clock.last_ts = ts
        self.n_events += 1
        return values, status

    def learn_one(self, x: Mapping[str, Any]) -> None:  # type: ignore[override]
        """Record tick ``x``'s timestamp (skipped ticks are counted)."""
        self.step(x)

    def transform_one(self, x: Mapping[str, Any]) -> dict[str, float]:  # type: ignore[override]
        """The selected fields of ``x``; empty for duplicate or out-of-order ticks."""
        ts, values = self._parse(x)
        if self._clock.classify(ts) in (STATUS_DUPLICATE, STATUS_OUT_OF_ORDER):
            return {}
        return values

    def to_state(self) -> dict[str, Any]:
        """JSON-safe, versioned state."""
        return {
            "version": 1,
            "kind": "EventFeatures",
            "params": {"fields": list(self.fields)},
            "clock": self._clock.to_state(),
            "n_events": self.n_events,
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> EventFeatures:
        """Rebuild from :meth:`to_state` output."""
        _check_version(state, "EventFeatures")
        obj = cls(**state["params"])
        obj._clock = _Clock.from_state(state["clock"])
        obj.n_events = int(state["n_events"])
        return obj


def _check_version(state: Mapping[str, Any], kind: str) -> None:
    if not isinstance(state, Mapping):
        raise ValueError(f"{kind} state must be a dict, got {type(state).__name__}")
    if state.get("version") != 1 or state.get("kind") != kind:
        raise ValueError(
            f"unsupported {kind} state: version={state.get('version')!r}, "
            f"kind={state.get('kind')!r} (expected version 1, kind {kind!r})"
        )
