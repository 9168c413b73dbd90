"""The likelihood-drift monitor alone: Page-Hinkley against river's, alarms, state, validation.

The detectors' drift figures on real-like data (heavy tails, GARCH, the S&P 500, variance jumps)
are in tests/test_regime_goals.py.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from river.drift import PageHinkley

from streamgmm.regime import drift as _regime_kernel
from streamgmm.regime import layout as _regime_layout
from streamgmm.regime.drift import LikelihoodDriftMonitor


def _page_hinkley_buffer(delta: float, threshold: float, min_instances: int) -> np.ndarray:
    buf = np.zeros(_regime_layout.size(1, 1, 0))
    buf[_regime_layout.N_REGIMES] = 1
    buf[_regime_layout.N_FEATURES] = 1
    buf[_regime_layout.DRIFT_DELTA] = delta
    buf[_regime_layout.DRIFT_THRESHOLD] = threshold
    buf[_regime_layout.DRIFT_MIN] = min_instances
    buf[_regime_layout.PH_RUNNING] = 1.0  # river's centre: the running mean
    return buf


@pytest.mark.parametrize(
    ("delta", "threshold", "min_instances"), [(0.5, 20.0, 30), (0.005, 50.0, 1)]
)
def test_page_hinkley_is_rivers(delta: float, threshold: float, min_instances: int) -> None:
    """The compiled Page-Hinkley raises exactly river's alarms (mode "up") on the same inputs."""
    rng = np.random.default_rng(3)
    parts = [rng.normal(0, 1, 3000), rng.normal(2, 1, 300), rng.standard_t(3, 4000)]
    parts += [rng.normal(4, 2, 200), rng.normal(0, 1, 1000)]
    xs = np.concatenate(parts)
    buf = _page_hinkley_buffer(delta, threshold, min_instances)
    ours = np.zeros(xs.size, dtype=bool)
    _regime_kernel.page_hinkley_run(buf, xs, ours)
    river = PageHinkley(min_instances=min_instances, delta=delta, threshold=threshold, mode="up")
    theirs = []
    for x in xs.tolist():
        river.update(x)
        theirs.append(river.drift_detected)
    assert ours.sum() >= 2
    assert ours.tolist() == theirs


def test_no_alarm_on_a_well_specified_model() -> None:
    rng = np.random.default_rng(11)
    monitor = LikelihoodDriftMonitor()
    alarms = 0
    for x in rng.standard_normal(100_000):
        alarms += monitor.update(-0.5 * x * x, expected_log_likelihood=-0.5)
    assert alarms <= 10  # at most 1e-4 per tick
    assert monitor.n_seen == 100_000


def test_a_likelihood_drop_is_flagged_quickly() -> None:
    rng = np.random.default_rng(12)
    monitor = LikelihoodDriftMonitor()
    for x in rng.standard_normal(2000):
        monitor.update(-0.5 * x * x, -0.5)
    delays = []
    for _ in range(5):
        for i, x in enumerate(rng.standard_normal(200) * 2.0):  # variance x4
            if monitor.update(-0.5 * x * x, -0.5):
                delays.append(i)
                break
        for x in rng.standard_normal(2000):
            monitor.update(-0.5 * x * x, -0.5)
    # Measured 18-65 ticks (median 30) for this seed; the bounds are those, rounded up.
    assert len(delays) == 5 and float(np.median(delays)) <= 40 and max(delays) < 100
    assert monitor.drift_score < 1.0


def test_drift_score_passes_one_exactly_at_an_alarm() -> None:
    rng = np.random.default_rng(13)
    monitor = LikelihoodDriftMonitor(min_instances=0)
    for x in np.concatenate([rng.standard_normal(500), 3 * rng.standard_normal(300)]):
        alarm = monitor.update(-0.5 * x * x, -0.5)
        assert alarm == (monitor.drift_score > 1.0)


def test_state_round_trip_is_strict_json_and_bit_identical() -> None:
    rng = np.random.default_rng(14)
    values = np.concatenate([rng.standard_normal(800), 3 * rng.standard_normal(200)])
    monitor = LikelihoodDriftMonitor()
    for x in values[:900]:
        monitor.update(-0.5 * x * x, -0.5)
    restored = LikelihoodDriftMonitor.from_state(
        json.loads(json.dumps(monitor.to_state(), allow_nan=False))
    )
    for x in values[900:]:
        assert monitor.update(-0.5 * x * x, -0.5) == restored.update(-0.5 * x * x, -0.5)
    assert monitor.to_state() == restored.to_state() and monitor.n_drifts > 0


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, "1.0", None, True])
def test_bad_log_likelihood_raises_and_leaves_state_unchanged(bad: object) -> None:
    monitor = LikelihoodDriftMonitor()
    monitor.update(-1.0)
    before = monitor.to_state()
    with pytest.raises(ValueError, match="log_likelihood"):
        monitor.update(bad)  # type: ignore[arg-type]
    assert monitor.to_state() == before


@pytest.mark.parametrize(
    "kwargs",
    [{"threshold": 0.0}, {"delta": -1.0}, {"clip": math.inf}, {"min_instances": -1}],
)
def test_parameter_validation(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        LikelihoodDriftMonitor(**kwargs)  # type: ignore[arg-type]


def test_from_state_refuses_what_it_cannot_trust() -> None:
    state = LikelihoodDriftMonitor().to_state()
    for path, value, message in [
        (("state", "reference_var"), -1.0, "reference_var"),
        (("state", "ph_sum"), "0", "ph_sum must be a number"),
        (("params", "threshold"), math.nan, "threshold"),
        (("n_drifts",), 1.5, "n_drifts"),
    ]:
        broken = json.loads(json.dumps(state))
        node = broken
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
        with pytest.raises(ValueError, match=message):
            LikelihoodDriftMonitor.from_state(broken)
    with pytest.raises(ValueError, match="unknown"):
        LikelihoodDriftMonitor.from_state({**state, "extra": 1})


def test_the_monitor_takes_the_detectors_drift_settings() -> None:
    """LikelihoodDriftMonitor's settings are the detectors' drift_* settings, declared once:
    the same defaults, types, bounds and texts; a detector hands its own to its monitor."""
    from streamgmm.regime.params import DriftMonitorSettings, ModelSettings, params_of, values_of

    model = {p.name: p for p in params_of(ModelSettings)}
    monitor = params_of(LikelihoodDriftMonitor)
    assert [p.name for p in monitor] == [
        "threshold", "delta", "clip", "reference_halflife", "min_instances", "halflife",
    ]  # fmt: skip
    for p in monitor:
        q = model[f"drift_{p.name}"]
        assert (p.default, p.kind, p.lo, p.hi, p.lo_open, p.text) == (
            q.default, q.kind, q.lo, q.hi, q.lo_open, q.text,
        )  # fmt: skip
    given = DriftMonitorSettings.of(ModelSettings(drift_threshold=7.0, drift_min_instances=3))
    expected = {**values_of(LikelihoodDriftMonitor()), "threshold": 7.0, "min_instances": 3}
    assert values_of(given) == expected
    with pytest.raises(ValueError, match=r"min_instances must be in \[0, 2147483648\]"):
        LikelihoodDriftMonitor(min_instances=-1)
