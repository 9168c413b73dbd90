"""Property tests: whatever finite data arrives, the mixture stays a valid probability model."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streamgmm import OnlineGaussianMixture

FEATURES = ["a", "b", "c"]

# Values around 1e12 and 1e-12, exact duplicates and constants are all in play.
magnitudes = st.sampled_from([1e-12, 1.0, 1e3, 1e12])
finite = st.floats(min_value=-1e3, max_value=1e3, allow_nan=False, allow_infinity=False)


@st.composite
def streams(draw: st.DrawFn) -> list[dict[str, float]]:
    n = draw(st.integers(min_value=12, max_value=120))
    scale = draw(st.lists(magnitudes, min_size=3, max_size=3))
    offset = draw(st.lists(st.sampled_from([0.0, 4000.0, -1e12]), min_size=3, max_size=3))
    constant = draw(st.lists(st.booleans(), min_size=3, max_size=3))
    base = draw(st.lists(st.lists(finite, min_size=3, max_size=3), min_size=1, max_size=n))
    repeat = draw(st.integers(min_value=1, max_value=4))  # duplicates: each row may repeat
    rows = [row for row in base for _ in range(repeat)][:n]
    while len(rows) < n:
        rows.append(rows[len(rows) % len(base)])
    return [
        {f: offset[j] + (0.0 if constant[j] else row[j] * scale[j]) for j, f in enumerate(FEATURES)}
        for row in rows
    ]


params = st.fixed_dictionaries(
    {
        "n_components": st.integers(min_value=1, max_value=4),
        "covariance_type": st.sampled_from(["full", "diag", "spherical"]),
        "halflife": st.sampled_from([None, 5.0, 100.0]),
        "warmup": st.integers(min_value=4, max_value=10),
        "seed": st.integers(min_value=0, max_value=3),
    }
)


def assert_valid(model: OnlineGaussianMixture, probes: list[dict[str, float]]) -> None:
    assert math.isclose(model.weights_.sum(), 1.0, rel_tol=1e-9)
    assert np.isfinite(model.weights_).all() and (model.weights_ >= 0).all()
    assert np.isfinite(model.means_).all()
    covs = model.covariances_
    assert np.isfinite(covs).all()
    if model.covariance_type == "full":
        for c in covs:
            np.testing.assert_array_equal(c, c.T)
            np.linalg.cholesky(c)  # raises LinAlgError unless positive definite
    else:
        assert (covs > 0).all()
    for x in probes:
        proba = model.predict_proba_one(x)
        assert all(math.isfinite(p) and p >= 0 for p in proba.values())
        assert math.isclose(sum(proba.values()), 1.0, rel_tol=1e-9)
        assert math.isfinite(model.score_one(x))
    assert json.loads(json.dumps(model.to_state(), allow_nan=False))


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=streams(), p=params)
def test_any_finite_stream_keeps_the_model_valid(data, p):
    if p["warmup"] < p["n_components"]:
        p["warmup"] = p["n_components"]
    model = OnlineGaussianMixture(**p)
    for x in data:
        model.learn_one(x)
    assume_initialised = len(data) >= p["warmup"]
    assert model.is_initialised == assume_initialised
    probes = [*data[:3], {"a": 0.0, "b": 1e12, "c": -1e12}, {"a": data[0]["a"]}]
    assert_valid(model, probes)


@settings(max_examples=30, deadline=None)
@given(
    data=streams(),
    p=params,
    bad=st.sampled_from([math.nan, math.inf, -math.inf]),
    key=st.sampled_from(FEATURES),
)
def test_nan_input_raises_and_leaves_state_unchanged(data, p, bad, key):
    p["warmup"] = max(p["warmup"], p["n_components"])
    model = OnlineGaussianMixture(**p)
    for x in data:
        model.learn_one(x)
    before = json.dumps(model.to_state())
    poisoned = {**data[-1], key: bad}
    with pytest.raises(ValueError, match=repr(key)):
        model.learn_one(poisoned)
    assert json.dumps(model.to_state()) == before
