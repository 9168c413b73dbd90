"""Adversarial numerics through the service's per-key pipeline (and through replay).

1,000,000 ticks of hostile but valid series go through
:func:`streamgmm.ticks.keystate.make_pipeline` (the detector the service and ``streamgmm
replay`` build per key), 200,000 per series:

- ``constant``: the same price forever (zero returns, zero variance);
- ``tiny_steps``: the price moves by 1e-12 relative steps (returns at the edge of float
  resolution);
- ``jumps``: the price jumps between 1 and 1e12 every 50 ticks (returns of ±2,763 %);
- ``duplicates``: runs of 1,000 identical ticks (same ts and price), then a fresh tick, and
  runs of 1,000 equal prices at rising ts, alternating with a random walk;
- ``tiny_dt``: a random walk with ticks 1 µs apart (returns scaled by 1/sqrt(dt) become huge).

Claims, per tick: every number in the output is finite (the forecast's fields are None where no
forecast was made, and finite with a positive volatility and a negative value at risk once
warm), probabilities lie in [0, 1] and sum to 1, the regime is a valid index. Every 20,000
ticks and at the end, the inspected state (restored
with ``from_state`` from ``to_state()``, as the changelog would) has finite weights and means,
symmetric positive-definite covariances (Cholesky succeeds, smallest eigenvalue > 0) and is
JSON-safe (the snapshot codec refuses NaN / inf).

The service's default detector sees one feature, so its covariances are 1x1; the same series
therefore also run (shorter) through a two-field event detector with three regimes (price and
volume as they are), where symmetry and positive definiteness are not trivial. A last check
replays a file of all series through ``streamgmm.replay.replay`` and finds no null
(non-finite) field in any output record but the forecast's where none was made.
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from streamgmm.regime import EventDetector, RegimeDetector
from streamgmm.replay import replay
from streamgmm.service import snapshot
from streamgmm.settings.layers import load_settings
from streamgmm.ticks.keystate import make_pipeline

pytestmark = pytest.mark.slow

N_PER_SERIES = 200_000
N_PER_SERIES_3D = 20_000
INSPECT_EVERY = 20_000
SUM_TOL = 1e-9
T0 = 1.7e9

Tick = dict[str, float]


def constant(n: int, rng: np.random.Generator) -> Iterator[Tick]:
    for i in range(n):
        yield {"ts": T0 + i, "price": 123.45, "volume": 1000.0}


def tiny_steps(n: int, rng: np.random.Generator) -> Iterator[Tick]:
    signs = rng.choice([-1.0, 1.0], size=n)
    price = 100.0
    for i in range(n):
        price *= 1.0 + 1e-12 * signs[i]
        yield {"ts": T0 + i, "price": price, "volume": 1000.0 + (i % 3)}


def jumps(n: int, rng: np.random.Generator) -> Iterator[Tick]:
    for i in range(n):
        yield {"ts": T0 + i, "price": 1e12 if (i // 50) % 2 else 1.0, "volume": 5.0}


def duplicates(n: int, rng: np.random.Generator) -> Iterator[Tick]:
    shocks = rng.normal(0.0, 0.01, n)
    price, ts = 100.0, T0
    for i in range(n):
        block = (i // 1000) % 3
        if block == 0:  # identical ticks: same ts, same price, same volume
            if i % 1000 == 0:
                ts += 1.0
        elif block == 1:  # equal prices at rising ts
            ts += 1.0
        else:  # a random walk in between
            ts += 1.0
            price *= math.exp(shocks[i])
        yield {"ts": ts, "price": price, "volume": 10.0}


def tiny_dt(n: int, rng: np.random.Generator) -> Iterator[Tick]:
    shocks = rng.normal(0.0, 0.001, n)
    price = 50.0
    for i in range(n):
        price *= math.exp(shocks[i])
        yield {"ts": T0 + 1e-6 * i, "price": price, "volume": float(rng.integers(1, 10**6))}


SERIES: dict[str, Callable[[int, np.random.Generator], Iterator[Tick]]] = {
    "constant": constant,
    "tiny_steps": tiny_steps,
    "jumps": jumps,
    "duplicates": duplicates,
    "tiny_dt": tiny_dt,
}


def check_output(out: dict[str, Any], n_regimes: int, where: str) -> None:
    assert 0 <= out["regime"] < n_regimes, where
    for name in ("probabilities", "raw_probabilities"):
        probs = list(out[name].values())
        assert len(probs) == n_regimes, where
        assert all(math.isfinite(p) and 0.0 <= p <= 1.0 for p in probs), (where, name, probs)
        assert abs(sum(probs) - 1.0) <= SUM_TOL, (where, name, probs)
    # No forecast (the warm-up, a skipped tick) is None; a forecast is finite.
    ll = out["log_likelihood"]
    assert ll is None or math.isfinite(ll), (where, ll)
    assert math.isfinite(out["drift_score"]), (where, out["drift_score"])
    vol, var = out["volatility"], out["value_at_risk"]
    if vol is not None or var is not None:  # market ticks once warm
        assert out["warm"] and math.isfinite(vol) and vol > 0.0, (where, vol)
        assert math.isfinite(var) and var < 0.0, (where, var)


def check_state(det: Any, where: str) -> dict[str, float]:
    """Inspect the state as a restore would see it; return figures for the report."""
    state = det.to_state()
    # JSON-safe: the snapshot codec refuses NaN and infinities.
    snapshot.encode_snapshot("k", {"version": 1, "pipeline": state}, 0, 0)
    restored = type(det).from_state(json.loads(json.dumps(state)))
    assert restored.to_state() == state, where
    if not restored.warm:
        return {}
    a, mu, cov = restored.transition_matrix_, restored.means_, restored.covariances_
    assert np.all(np.isfinite(a)) and np.allclose(a.sum(axis=1), 1.0), (where, a)
    assert np.all(np.isfinite(mu)), (where, mu)
    assert np.all(np.isfinite(cov)), (where, cov)
    min_eig, max_asym = math.inf, 0.0
    for k, c in enumerate(cov):
        max_asym = max(max_asym, float(np.max(np.abs(c - c.T))))
        assert np.array_equal(c, c.T) or np.allclose(c, c.T, rtol=1e-12, atol=0), (where, k, c)
        np.linalg.cholesky(c)  # raises LinAlgError unless positive definite
        eig = float(np.linalg.eigvalsh(c).min())
        assert eig > 0.0, (where, k, c)
        min_eig = min(min_eig, eig)
    return {"min_eig": min_eig, "max_asym": max_asym}


def run_series(det: Any, ticks: Iterator[Tick], n_regimes: int, name: str) -> dict[str, Any]:
    checks = 0
    min_eig = math.inf
    n = 0
    for n, tick in enumerate(ticks, start=1):
        out = det.learn_predict_one(tick)
        check_output(out, n_regimes, f"{name} tick {n}")
        if n % INSPECT_EVERY == 0:
            min_eig = min(min_eig, check_state(det, f"{name} tick {n}").get("min_eig", math.inf))
            checks += 1
    final = check_state(det, f"{name} end")
    return {
        "ticks": n,
        "inspections": checks + 1,
        "n_samples_seen": out["n_samples_seen"],
        "min_eig": min(min_eig, final.get("min_eig", math.inf)),
    }


@pytest.mark.parametrize("name", list(SERIES))
def test_service_pipeline_survives_adversarial_series(name: str) -> None:
    settings = load_settings(None, {}, {})
    det = make_pipeline(settings)
    figures = run_series(
        det, SERIES[name](N_PER_SERIES, np.random.default_rng(1)), det.n_regimes, name
    )
    assert figures["ticks"] == N_PER_SERIES
    # A constant price has no scale to start from, so it never leaves the warm-up (and says so
    # with warm=False); every other series starts the model.
    assert det.warm == (name != "constant"), f"{name}: warm={det.warm}"
    print(f"{name}: {figures}")


@pytest.mark.parametrize("name", list(SERIES))
def test_two_field_full_covariance_stays_spd(name: str) -> None:
    det = EventDetector(["price", "volume"], n_regimes=3)
    figures = run_series(det, SERIES[name](N_PER_SERIES_3D, np.random.default_rng(2)), 3, name)
    # Fields constant through every warm-up window give no scale: "constant", and "jumps",
    # whose price and volume are constant for 50 ticks at a time.
    assert det.warm == (name not in ("constant", "jumps")), f"{name}: warm={det.warm}"
    print(f"{name} (3 features): {figures}")


def test_replay_of_adversarial_file_has_no_null_fields(tmp_path: Path) -> None:
    path = tmp_path / "adversarial.csv"
    rng = np.random.default_rng(3)
    n_rows = 0
    with path.open("w") as f:
        f.write("symbol,ts,price,volume\n")
        for name, make in SERIES.items():
            for t in make(4000, rng):
                f.write(f"{name},{float(t['ts'])!r},{float(t['price'])!r},{float(t['volume'])!r}\n")
                n_rows += 1
    out = io.BytesIO()
    summary = replay(path, out, load_settings(None, {}, {}))
    assert summary.rows == n_rows and not summary.dead_letters
    lines = out.getvalue().splitlines()
    assert len(lines) == summary.records > 0
    forecast = ("log_likelihood", "volatility", "value_at_risk")
    for line in lines:
        rec = json.loads(line)
        # null only where no forecast was made: the warm-up and skipped ticks
        assert None not in [v for k, v in rec.items() if k not in forecast], rec
        if rec["warm"]:
            assert rec["volatility"] is not None and rec["value_at_risk"] is not None, rec
        assert None not in rec["probabilities"].values(), rec
        assert None not in rec["raw_probabilities"].values(), rec


def test_filtered_probabilities_sum_to_one_after_extreme_likelihood() -> None:
    """A random walk, 1,000 equal prices (the calm regime's variance falls to its floor), then
    one 5 % step: an emission far in every regime's tail."""
    det = RegimeDetector()
    rng = np.random.default_rng(2)
    prices = list(100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.01, 500))))
    prices += [prices[-1]] * 1000 + [prices[-1] * 1.05]
    worst = 0.0
    for i, price in enumerate(prices):
        out = det.learn_predict_one({"ts": T0 + i, "price": float(price)})
        check_output(out, 2, f"tick {i}")
        worst = max(worst, abs(math.fsum(out["probabilities"].values()) - 1.0))
    assert out["log_likelihood"] < -20  # the extreme tick this reproducer is about (-47)
    assert worst <= 1e-9, worst
