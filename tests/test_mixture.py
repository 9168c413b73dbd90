"""OnlineGaussianMixture: river conventions, batch-EM agreement, forgetting, state, batch path."""

from __future__ import annotations

import copy
import itertools
import json
import math
import pickle

import numpy as np
import pandas as pd
import pytest
from river import checks, datasets, preprocessing, stream
from river.checks import common
from scipy.optimize import linear_sum_assignment
from scipy.stats import multivariate_normal
from sklearn.datasets import make_blobs
from sklearn.metrics import adjusted_rand_score
from sklearn.mixture import GaussianMixture

from streamgmm import OnlineGaussianMixture

COVARIANCE_TYPES = ["full", "diag", "spherical"]


def as_dicts(X: np.ndarray, names: list[str] | None = None) -> list[dict[str, float]]:
    names = names or [f"x{i}" for i in range(X.shape[1])]
    return [dict(zip(names, map(float, row), strict=True)) for row in X]


def match_components(estimated: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Permutation p such that estimated[p[i]] is the component matching reference[i]."""
    cost = ((reference[:, None, :] - estimated[None, :, :]) ** 2).sum(axis=2)
    rows, cols = linear_sum_assignment(cost)
    return cols[np.argsort(rows)]


@pytest.fixture(scope="module")
def blobs() -> tuple[np.ndarray, np.ndarray]:
    return make_blobs(n_samples=800, centers=4, cluster_std=0.50, random_state=0)


# ---------------------------------------------------------------------------------------------
# river's own checks
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("params", list(OnlineGaussianMixture._unit_test_params()), ids=str)
def test_river_check_estimator(params):
    checks.check_estimator(OnlineGaussianMixture(**params))


DATA_DRIVEN_CHECKS = [
    common.check_learn_one,
    common.check_pickling,
    common.check_shuffle_features_no_impact,
    common.check_emerging_features,
    common.check_disappearing_features,
    common.check_radically_disappearing_features,
    common.check_predict_one_pure,
    common.check_predict_one_before_any_learn,
    common.check_no_state_aliasing_with_input,
    common.check_clone_is_independent,
    common.check_bounded_memory_growth,
]


@pytest.mark.parametrize("params", list(OnlineGaussianMixture._unit_test_params()), ids=str)
@pytest.mark.parametrize("check", DATA_DRIVEN_CHECKS, ids=lambda c: c.__name__)
def test_river_data_driven_checks(check, params):
    # river yields no dataset for clusterers, so its data-driven checks are called directly on a
    # numeric stream it ships.
    n = 2000 if check is common.check_bounded_memory_growth else 200
    dataset = list(datasets.Phishing().take(n))
    model = OnlineGaussianMixture(**params)
    check(model, dataset=dataset)
    # The checks drop and add keys; whatever they did, the fitted model must still be sound.
    if model.is_initialised:
        assert np.isclose(model.weights_.sum(), 1.0)
        assert np.isfinite(model.means_).all() and np.isfinite(model.covariances_).all()


# ---------------------------------------------------------------------------------------------
# Agreement with batch EM
# ---------------------------------------------------------------------------------------------


def test_blobs_streamed_once_recovers_the_clusters(blobs):
    X, y = blobs
    model = OnlineGaussianMixture(n_components=4, seed=42)
    points = as_dicts(X)
    for x in points:
        model.learn_one(x)
    labels = [model.predict_one(x) for x in points]
    assert adjusted_rand_score(y, labels) >= 0.99


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_blobs_three_passes_score_matches_sklearn(blobs, covariance_type):
    X, _ = blobs
    model = OnlineGaussianMixture(n_components=4, covariance_type=covariance_type, seed=42)
    points = as_dicts(X)
    for _ in range(3):
        for x in points:
            model.learn_one(x)
    ours = np.mean([model.score_one(x) for x in points])
    reference = GaussianMixture(4, covariance_type=covariance_type, random_state=0).fit(X).score(X)
    assert abs(ours - reference) <= 0.02 * abs(reference)


def test_stepwise_schedule_converges_to_the_batch_solution():
    rng = np.random.default_rng(3)
    true_means = np.array([[0.0, 0.0, 0.0], [4.0, 4.0, 0.0], [0.0, 4.0, 4.0]])
    true_weights = np.array([0.5, 0.3, 0.2])
    covs = [
        np.eye(3),
        np.diag([0.5, 1.0, 1.5]),
        np.array([[1, 0.3, 0], [0.3, 1, 0.2], [0, 0.2, 1]]),
    ]
    z = rng.choice(3, size=20_000, p=true_weights)
    X = np.stack([rng.multivariate_normal(true_means[k], covs[k]) for k in z])

    model = OnlineGaussianMixture(n_components=3, halflife=None, seed=0)
    for x in as_dicts(X):
        model.learn_one(x)
    batch = GaussianMixture(3, random_state=0, n_init=3).fit(X)

    perm = match_components(model.means_, batch.means_)
    assert np.abs(model.means_[perm] - batch.means_).max() <= 0.05
    assert np.abs(model.weights_[perm] - batch.weights_).max() <= 0.02


def _jump_stream(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    before = np.array([[0.0, 0.0], [6.0, 0.0]])
    after = before + np.array([3.0, 3.0])
    z = rng.integers(0, 2, size=15_000)
    centres = np.where(np.arange(15_000)[:, None] < 10_000, before[z], after[z])
    return centres + rng.normal(scale=0.5, size=centres.shape), before, after


@pytest.mark.parametrize("halflife, recovers", [(500.0, True), (None, False)])
def test_forgetting_tracks_a_jump_and_no_forgetting_does_not(halflife, recovers):
    X, _, after = _jump_stream(np.random.default_rng(11))
    model = OnlineGaussianMixture(n_components=2, halflife=halflife, seed=0)
    for x in as_dicts(X[:12_500]):  # 2,500 points after the jump at t = 10k
        model.learn_one(x)
    perm = match_components(model.means_, after)
    error = np.abs(model.means_[perm] - after).max()
    tolerance = 0.25
    assert bool(error <= tolerance) is recovers, error


# ---------------------------------------------------------------------------------------------
# Missing keys, extra keys, bad values
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fitted_3d() -> OnlineGaussianMixture:
    rng = np.random.default_rng(5)
    A = rng.normal(size=(3, 3))
    X = np.concatenate(
        [
            rng.multivariate_normal([0, 0, 0], A @ A.T + np.eye(3), size=600),
            rng.multivariate_normal([5, -2, 3], np.diag([1.0, 0.3, 2.0]), size=400),
        ]
    )
    rng.shuffle(X)
    model = OnlineGaussianMixture(n_components=2, seed=0)
    for x in as_dicts(X, ["a", "b", "c"]):
        model.learn_one(x)
    return model


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
@pytest.mark.parametrize("dropped", ["a", "b", "c"])
def test_missing_key_uses_the_exact_marginal(dropped, covariance_type):
    rng = np.random.default_rng(9)
    X = np.concatenate([rng.normal(0, 1, size=(300, 3)), rng.normal(3, 0.7, size=(300, 3))])
    X[:, 1] += 0.8 * X[:, 0]
    model = OnlineGaussianMixture(n_components=2, covariance_type=covariance_type, seed=0)
    for x in as_dicts(X, ["a", "b", "c"]):
        model.learn_one(x)

    keep = [i for i, n in enumerate(model.feature_names_) if n != dropped]
    covs = model.covariances_
    if covariance_type == "diag":
        covs = np.array([np.diag(c) for c in covs])
    elif covariance_type == "spherical":
        covs = np.array([c * np.eye(3) for c in covs])
    for point in ({"a": 0.5, "b": 1.0, "c": -0.2}, {"a": 2.5, "b": 3.0, "c": 2.0}):
        partial = {k: v for k, v in point.items() if k != dropped}
        sub = np.array([partial[model.feature_names_[i]] for i in keep])
        joint = np.array(
            [
                w * multivariate_normal(m[keep], c[np.ix_(keep, keep)]).pdf(sub)
                for w, m, c in zip(model.weights_, model.means_, covs, strict=True)
            ]
        )
        expected = joint / joint.sum()
        got = model.predict_proba_one(partial)
        np.testing.assert_allclose([got[k] for k in range(2)], expected, rtol=1e-9, atol=1e-12)
        assert math.isclose(model.score_one(partial), math.log(joint.sum()), rel_tol=1e-9)


def test_learning_from_a_partial_point_leaves_observed_block_statistics_sound(fitted_3d):
    model = copy.deepcopy(fitted_3d)
    before_means = model.means_.copy()
    for _ in range(50):
        model.learn_one({"a": 0.1, "c": -0.3})
    assert model.n_samples_seen_ == fitted_3d.n_samples_seen_ + 50
    # Conditional-expectation updates move 'b' only as far as 'a' and 'c' inform it, so 'b'
    # stays finite and its variance positive; the other statistics are not corrupted.
    assert np.isfinite(model.means_).all()
    assert all(np.linalg.eigvalsh(c).min() > 0 for c in model.covariances_)
    assert np.abs(model.means_ - before_means).max() < 1.0


def test_unknown_keys_are_ignored_and_counted(fitted_3d):
    model = copy.deepcopy(fitted_3d)
    x = {"a": 0.1, "b": 0.2, "c": 0.3}
    reference = copy.deepcopy(model)
    model.learn_one({**x, "zz": 1.0, "yy": "not even numeric"})
    reference.learn_one(x)
    assert model.n_unknown_keys_ == reference.n_unknown_keys_ + 2
    np.testing.assert_array_equal(model.means_, reference.means_)
    assert model.predict_proba_one({**x, "zz": 5.0}) == reference.predict_proba_one(x)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, "1.0", None, 1e200])
def test_bad_values_raise_naming_the_key_and_leave_the_state_unchanged(fitted_3d, bad):
    model = copy.deepcopy(fitted_3d)
    before = json.dumps(model.to_state())
    with pytest.raises(ValueError, match="'b'") as info:
        model.learn_one({"a": 0.1, "b": bad, "c": 0.3})
    assert repr(bad) in str(info.value)
    assert json.dumps(model.to_state()) == before


def test_bad_values_during_warm_up_are_rejected_too():
    model = OnlineGaussianMixture(n_components=2, warmup=5)
    model.learn_one({"a": 1.0})
    before = model.to_state()
    with pytest.raises(ValueError, match="'a'"):
        model.learn_one({"a": math.nan})
    assert model.to_state() == before


def test_learn_many_rejects_a_bad_row_before_learning_anything(fitted_3d):
    model = copy.deepcopy(fitted_3d)
    before = json.dumps(model.to_state())
    X = np.ones((10, 3))
    X[7, 2] = np.nan
    with pytest.raises(ValueError, match="row 7: feature 'c'"):
        model.learn_many(X)
    assert json.dumps(model.to_state()) == before


def test_before_initialisation_predictions_are_documented_defaults():
    model = OnlineGaussianMixture(n_components=3, warmup=10)
    model.learn_one({"a": 1.0})
    assert not model.is_initialised
    assert model.predict_proba_one({"a": 1.0}) == {0: 1 / 3, 1: 1 / 3, 2: 1 / 3}
    assert model.predict_one({"a": 1.0}) == 0
    assert model.score_one({"a": 1.0}) == 0.0


@pytest.mark.parametrize(
    "name, value, message",
    [
        ("n_components", 0, "n_components=0"),
        ("covariance_type", "tied", "covariance_type='tied'"),
        ("halflife", -5, "halflife=-5"),
        ("alpha", 0.5, "alpha=0.5"),
        ("reg_covar", -1.0, "reg_covar=-1.0"),
        ("warmup", 1, "warmup=1"),
        ("min_weight", 0.6, "min_weight=0.6"),
    ],
)
def test_bad_parameters_are_named(name, value, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        OnlineGaussianMixture(**{"n_components": 2, name: value})


# ---------------------------------------------------------------------------------------------
# Numerics
# ---------------------------------------------------------------------------------------------


def test_price_level_inputs_keep_positive_variances():
    # Raw moments would give S2/N - mu^2 < 0 here; centred updates must recover the true spread.
    rng = np.random.default_rng(0)
    X = 4000.0 + rng.normal(scale=1e-4, size=(5000, 1))
    model = OnlineGaussianMixture(n_components=1, halflife=1000.0, reg_covar=0.0, seed=0)
    for x in as_dicts(X):
        model.learn_one(x)
    variance = float(model.covariances_[0, 0, 0])
    assert 0.8e-8 < variance < 1.2e-8
    assert abs(model.means_[0, 0] - 4000.0) < 1e-5


def test_dead_component_is_reseeded_at_a_recent_point():
    rng = np.random.default_rng(1)
    warm = np.concatenate(
        [rng.normal(0, 0.3, (40, 2)), rng.normal(10, 0.3, (40, 2)), rng.normal(-10, 0.3, (40, 2))]
    )
    rng.shuffle(warm)
    later = rng.normal([0, 30], 0.3, (3000, 2))
    model = OnlineGaussianMixture(n_components=3, halflife=50.0, warmup=120, seed=0)
    for x in as_dicts(warm):
        model.learn_one(x)
    assert model.n_reseeds_ == 0
    for x in as_dicts(later):
        model.learn_one(x)
    assert model.n_reseeds_ >= 1
    # Every component has been pulled to the only cluster still alive.
    assert np.abs(model.means_ - np.array([0.0, 30.0])).max() < 2.0
    assert model.weights_.min() >= 1e-3


# ---------------------------------------------------------------------------------------------
# Batch path and state
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
@pytest.mark.parametrize("halflife", [None, 300.0])
def test_learn_many_equals_learn_one_row_by_row(covariance_type, halflife):
    X, _ = make_blobs(n_samples=3000, centers=3, n_features=3, random_state=2)
    frame = pd.DataFrame(X, columns=["c", "a", "b"])  # column order differs from feature order
    one = OnlineGaussianMixture(3, covariance_type=covariance_type, halflife=halflife, seed=4)
    many = OnlineGaussianMixture(3, covariance_type=covariance_type, halflife=halflife, seed=4)
    for row in frame.to_dict("records"):
        one.learn_one(row)
    many.learn_many(frame.iloc[:1500])
    many.learn_many(frame.iloc[1500:][["a", "b", "c"]].to_numpy())
    assert one.n_samples_seen_ == many.n_samples_seen_ == 3000
    np.testing.assert_allclose(many.weights_, one.weights_, rtol=0, atol=1e-9)
    np.testing.assert_allclose(many.means_, one.means_, rtol=0, atol=1e-9)
    np.testing.assert_allclose(many.covariances_, one.covariances_, rtol=0, atol=1e-9)
    proba = many.predict_proba_many(frame)
    expected = [
        [one.predict_proba_one(r)[k] for k in range(3)] for r in frame.iloc[:50].to_dict("records")
    ]
    np.testing.assert_allclose(proba[:50], expected, atol=1e-9)
    scores = many.score_many(frame.iloc[:50])
    np.testing.assert_allclose(
        scores, [one.score_one(r) for r in frame.iloc[:50].to_dict("records")], rtol=1e-12
    )


def test_learn_many_takes_an_array_on_a_new_model_naming_features_like_river():
    X, _ = make_blobs(n_samples=400, centers=3, n_features=2, random_state=5)
    many = OnlineGaussianMixture(3, seed=1)
    many.learn_many(X)  # warm-up and batch path, no column names given
    one = OnlineGaussianMixture(3, seed=1)
    for x, _ in stream.iter_array(X):  # river names array columns 0, 1, ...
        one.learn_one(x)
    assert many.feature_names_ == one.feature_names_ == [0, 1]
    np.testing.assert_allclose(many.means_, one.means_, rtol=0, atol=1e-9)
    # Later arrays keep that column order; dataframes are matched by name.
    many.learn_many(X[:10])
    many.learn_many(pd.DataFrame(X[10:20], columns=[0, 1]))
    assert many.n_samples_seen_ == 420


def test_predict_many_and_predict_proba_many_follow_the_input_type(fitted_3d):
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(40, 3)), columns=["c", "a", "b"], index=range(100, 140))
    rows = frame.to_dict("records")
    labels = fitted_3d.predict_many(frame)
    assert isinstance(labels, pd.Series)
    assert list(labels.index) == list(frame.index)
    assert labels.tolist() == [fitted_3d.predict_one(r) for r in rows]
    proba = fitted_3d.predict_proba_many(frame)
    assert isinstance(proba, pd.DataFrame)
    assert list(proba.columns) == [0, 1] and list(proba.index) == list(frame.index)
    want = [[fitted_3d.predict_proba_one(r)[k] for k in range(2)] for r in rows]
    np.testing.assert_allclose(proba.to_numpy(), want, rtol=0, atol=1e-12)
    assert (proba.idxmax(axis="columns") == labels).all()
    scores = fitted_3d.score_many(frame)
    assert isinstance(scores, pd.Series) and list(scores.index) == list(frame.index)
    # Arrays in, arrays out, columns in feature order.
    array = frame[fitted_3d.feature_names_].to_numpy()
    np.testing.assert_array_equal(fitted_3d.predict_many(array), labels.to_numpy())
    np.testing.assert_allclose(fitted_3d.predict_proba_many(array), want, rtol=0, atol=1e-12)
    new = OnlineGaussianMixture(3)
    assert new.predict_many(frame).tolist() == [0] * 40
    np.testing.assert_allclose(new.predict_proba_many(array), np.full((40, 3), 1 / 3))


def test_a_river_pipeline_learns_and_predicts_in_batches():
    X, y = make_blobs(n_samples=900, centers=3, n_features=2, cluster_std=0.4, random_state=3)
    frame = pd.DataFrame(X * [1.0, 1000.0] + [0.0, 5000.0], columns=["small", "large"])
    model = preprocessing.StandardScaler() | OnlineGaussianMixture(3, seed=0)
    model.learn_many(frame.iloc[:600])
    labels = model.predict_many(frame.iloc[600:])
    assert isinstance(labels, pd.Series) and list(labels.index) == list(frame.index[600:])
    assert adjusted_rand_score(y[600:], labels) > 0.9


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_state_round_trip_continues_identically(covariance_type, blobs):
    X, _ = blobs
    points = as_dicts(X)
    model = OnlineGaussianMixture(4, covariance_type=covariance_type, halflife=200.0, seed=3)
    for x in points[:500]:
        model.learn_one(x)
    restored = OnlineGaussianMixture.from_state(json.loads(json.dumps(model.to_state())))
    for x in [*points[500:], {"x0": 1.0}]:
        assert restored.predict_proba_one(x) == model.predict_proba_one(x)
        assert restored.score_one(x) == model.score_one(x)
        model.learn_one(x)
        restored.learn_one(x)
    assert restored.to_state() == model.to_state()


def test_state_round_trip_during_warm_up():
    model = OnlineGaussianMixture(2, warmup=10, seed=1)
    for i in range(5):
        model.learn_one({"a": float(i), "b": float(i % 2)})
    restored = OnlineGaussianMixture.from_state(json.loads(json.dumps(model.to_state())))
    for i in range(5, 30):
        x = {"a": float(i), "b": float(i % 3)}
        model.learn_one(x)
        restored.learn_one(x)
    assert restored.to_state() == model.to_state()


def test_from_state_rejects_foreign_or_future_snapshots(fitted_3d):
    state = fitted_3d.to_state()
    with pytest.raises(ValueError, match="version"):
        OnlineGaussianMixture.from_state({**state, "version": 99})
    with pytest.raises(ValueError, match="not an OnlineGaussianMixture"):
        OnlineGaussianMixture.from_state({"kind": "something else"})


def test_pickling_round_trip_predicts_identically(fitted_3d):
    clone = pickle.loads(pickle.dumps(fitted_3d))
    x = {"a": 1.0, "b": -1.0, "c": 0.5}
    assert clone.predict_proba_one(x) == fitted_3d.predict_proba_one(x)
    clone.learn_one(x)
    assert clone.n_samples_seen_ == fitted_3d.n_samples_seen_ + 1


def test_covariances_have_sklearn_shapes():
    X, _ = make_blobs(n_samples=300, centers=3, n_features=4, random_state=0)
    for covariance_type, shape in [("full", (3, 4, 4)), ("diag", (3, 4)), ("spherical", (3,))]:
        model = OnlineGaussianMixture(3, covariance_type=covariance_type, seed=0)
        model.learn_many(pd.DataFrame(X, columns=list("abcd")))
        assert model.covariances_.shape == shape
        assert model.means_.shape == (3, 4)
        assert model.weights_.shape == (3,)
        assert model.feature_names_ == list("abcd")


def test_int_and_numpy_values_are_accepted_like_floats(fitted_3d):
    a, b = copy.deepcopy(fitted_3d), copy.deepcopy(fitted_3d)
    a.learn_one({"a": 1, "b": np.float32(2.5), "c": np.int64(-3)})
    b.learn_one({"a": 1.0, "b": 2.5, "c": -3.0})
    assert a.to_state() == b.to_state()


def test_permutations_of_key_order_do_not_matter(fitted_3d):
    x = {"a": 0.3, "b": -0.7, "c": 1.1}
    results = []
    for order in itertools.permutations(x):
        model = copy.deepcopy(fitted_3d)
        model.learn_one({k: x[k] for k in order})
        results.append(json.dumps(model.to_state()))
    assert len(set(results)) == 1


@pytest.mark.parametrize("bad", [math.nan, math.inf, "x", 1e101])
def test_inference_on_bad_values_raises_naming_the_key(fitted_3d, bad):
    for method in ("predict_proba_one", "score_one", "predict_one", "predict_proba_and_score_one"):
        with pytest.raises(ValueError, match="'c'"):
            getattr(fitted_3d, method)({"a": 0.0, "b": 1.0, "c": bad})


def test_combined_posterior_and_score_equal_the_separate_calls(fitted_3d):
    x = {"a": 0.4, "b": -0.2, "c": 2.0}
    proba, score = fitted_3d.predict_proba_and_score_one(x)
    assert proba == fitted_3d.predict_proba_one(x)
    assert score == fitted_3d.score_one(x)


@pytest.mark.parametrize("halflife", [2.2250738585e-313, 1e-5, 0.5])
def test_a_half_life_under_one_sample_still_gives_finite_outputs(halflife: float) -> None:
    """2 ** (-1 / halflife) underflows to 0 below about 1e-3 samples (found by the state fuzz:
    the warm-up then took log(0))."""
    model = OnlineGaussianMixture(2, halflife=halflife, warmup=20)
    rng = np.random.default_rng(0)
    for _ in range(100):
        x = {"x": float(rng.normal()), "y": float(rng.normal(3))}
        model.learn_one(x)
        assert all(math.isfinite(p) for p in model.predict_proba_one(x).values())
        assert math.isfinite(model.score_one(x))
