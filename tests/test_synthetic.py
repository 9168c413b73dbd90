"""Synthetic streams: shapes, reproducibility, and the properties each generator promises."""

from __future__ import annotations

import numpy as np
import pytest

from streamgmm.synthetic import (
    DAY,
    heavy_tailed_stream,
    intraday_stream,
    switching_stream,
    variance_jump,
)

KINDS = ("normal", "t4", "garch")


def _returns(price: np.ndarray) -> np.ndarray:
    return 100.0 * np.diff(np.log(price))


def _same(a: tuple[np.ndarray, ...], b: tuple[np.ndarray, ...]) -> bool:
    return all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))


def test_switching_stream_shapes_regimes_and_reproducibility() -> None:
    s = switching_stream(0)
    assert s.ts.shape == s.price.shape == s.regime.shape == (4000,)
    assert set(np.unique(s.regime)) == {0, 1}
    assert np.all(np.diff(s.ts) == DAY) and np.all(s.price > 0)
    # The stream the regime tests have always used (this seed's last price, to the bit).
    assert s.price[-1] == pytest.approx(115.62419145365187, rel=1e-12)
    assert _same(s, switching_stream(0))
    assert not np.array_equal(s.price, switching_stream(1).price)
    r = _returns(s.price)
    calm, wild = r[s.regime[1:] == 0], r[s.regime[1:] == 1]
    assert 0.6 < calm.std() < 0.8 and 1.8 < wild.std() < 2.2
    # One price path whatever the stamping.
    other = switching_stream(0, spacing=1e-3, t0=1.6e9)
    assert np.array_equal(other.price, s.price) and other.ts[1] - other.ts[0] == pytest.approx(
        1e-3, rel=1e-3
    )


def test_switching_stream_calm_warmup_is_calm() -> None:
    for seed in range(5):
        s = switching_stream(seed, calm_warmup=600)
        assert s.regime[:600].max() == 0 and s.regime.max() == 1


@pytest.mark.parametrize("bar_seconds", [300.0, 1800.0])
def test_intraday_stream_sessions_weekends_and_stale_quotes(bar_seconds: float) -> None:
    m = int(23400 // bar_seconds)
    s = intraday_stream(3, days=150, bar_seconds=bar_seconds)
    n = 150 * m
    assert all(a.shape == (n,) for a in s)
    assert np.all(np.diff(s.ts) > 0) and np.all(s.price > 0)
    assert np.array_equal(s.bar, np.tile(np.arange(m), 150))
    assert np.array_equal(s.after_gap, (s.bar == 0) & (s.session > 0))
    day = np.floor(s.ts / DAY).astype(np.int64)
    assert np.all((day + 3) % 7 <= 4)  # Monday..Friday only (1970-01-01 was a Thursday)
    sessions = np.unique(day)
    assert sessions.size == 150
    business = np.busday_count(sessions[0], sessions[-1] + 1)  # weekdays in the span
    assert business > sessions.size  # some weekdays are holidays
    zero = float(np.mean(_returns(s.price) == 0.0))
    assert 0.05 <= zero <= 0.10
    assert _same(s, intraday_stream(3, days=150, bar_seconds=bar_seconds))
    assert not np.array_equal(s.price, intraday_stream(4, days=150, bar_seconds=bar_seconds).price)


def test_intraday_stream_u_shape_gaps_and_regimes() -> None:
    s = intraday_stream(0, days=400)  # 78 five-minute bars per session
    r = np.abs(_returns(s.price))
    bar, gap, regime = s.bar[1:], s.after_gap[1:], s.regime[1:]
    fresh = r > 0  # stale bars carry no move; catch-up bars carry two, at any time of day
    edge = fresh & ~gap & ((bar <= 5) | (bar >= 72))
    middle = fresh & (bar >= 33) & (bar <= 44)
    assert r[edge].mean() > 1.4 * r[middle].mean()
    assert r[gap].mean() > 3.0 * r[~gap & fresh].mean()  # the overnight gap is large
    for k in (0, 1):
        assert np.any(regime == k)
    assert r[~gap & (regime == 1)].mean() > 2.0 * r[~gap & (regime == 0)].mean()
    # Regimes persist across nights: a session starts in the regime the previous one ended in
    # about as often as consecutive bars share one.
    starts = np.flatnonzero(s.after_gap)
    assert np.mean(s.regime[starts] != s.regime[starts - 1]) < 0.05


def test_heavy_tailed_streams_are_stationary_and_heavy_tailed() -> None:
    streams = {k: _returns(heavy_tailed_stream(0, n=40000, kind=k).price) for k in KINDS}

    def kurtosis(r: np.ndarray) -> float:
        return float(np.mean(r**4) / np.mean(r**2) ** 2)

    def abs_lag1(r: np.ndarray) -> float:  # |r| has a finite variance even under t(4)
        a = np.abs(r) - np.mean(np.abs(r))
        return float(np.mean(a[1:] * a[:-1]) / np.mean(a * a))

    for r in streams.values():
        assert 0.85 < r.std() < 1.15
        first, second = np.array_split(np.abs(r), 2)  # no change of scale within the stream
        assert 0.9 < first.mean() / second.mean() < 1.12
    assert kurtosis(streams["normal"]) < 3.3 and kurtosis(streams["t4"]) > 5.0
    assert abs(abs_lag1(streams["t4"])) < 0.03 and abs_lag1(streams["garch"]) > 0.12
    assert heavy_tailed_stream(0, n=100, kind="garch").regime.max() == 0
    with pytest.raises(ValueError, match="kind"):
        heavy_tailed_stream(0, kind="t5")
    with pytest.raises(ValueError, match="garch"):
        heavy_tailed_stream(0, kind="garch", garch=(0.2, 0.9))


def test_variance_jump_scales_the_returns_after_the_change() -> None:
    base = heavy_tailed_stream(2, n=20000, kind="normal")
    jumped = variance_jump(base, at=10000)
    r0, r1 = _returns(base.price), _returns(jumped.price)
    assert np.allclose(r1[:9999], r0[:9999])
    assert 2.7 < r1[9999:].var() / r0[:9999].var() < 3.3
    assert jumped.regime[:10000].max() == 0 and jumped.regime[10000:].min() == 1
    with pytest.raises(ValueError, match="at"):
        variance_jump(base, at=0)


def test_bad_parameters_raise_naming_the_parameter() -> None:
    with pytest.raises(ValueError, match="sigmas"):
        switching_stream(0, sigmas=(0.7, -1.0))
    with pytest.raises(ValueError, match="stale_rate"):
        intraday_stream(0, stale_rate=1.5)
    with pytest.raises(ValueError, match="bars"):
        intraday_stream(0, bar_seconds=20000.0)
