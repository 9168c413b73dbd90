"""An online Gaussian mixture's state as versioned JSON, checked field by field on the way in.

:meth:`~streamgmm.mixture.OnlineGaussianMixture.to_state` writes the settings and either the
warm-up buffer or the fitted statistics (masses, means, centred scatter matrices, the ring of
recent points); the factors are derived, never stored. A stored state comes from a changelog
topic or a file, so every field is checked before anything is allocated or compiled code
runs: the kind and version, the parameters, feature names, shapes, finite numbers, positive
masses, symmetric scatter matrices with a non-negative diagonal, ring positions and fills, and
no unknown field.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from streamgmm import _validate as V
from streamgmm._numeric import MAX_ABS_VALUE, TINY
from streamgmm.mixture.kernels import USED_SCORE, refactorise_all
from streamgmm.mixture.layout import (
    N_COMPONENTS,
    N_RESEEDS,
    N_SEEN,
    RING_FILL,
    RING_LENGTH,
    RING_POS,
    regions,
)

__all__ = [
    "MAX_COMPONENTS",
    "MAX_FEATURES",
    "STATE_VERSION",
    "read_params",
    "read_running",
    "read_warmup",
    "running_to_state",
]

STATE_VERSION = 1
#: Caps on a model read from stored state: they bound what ``from_state`` may allocate.
MAX_COMPONENTS = 64
MAX_FEATURES = 256

# A state holds either a warm-up buffer or these fitted fields.
_RUNNING_FIELDS = (
    "feature_names",
    "n_samples_seen",
    "n_reseeds",
    "mass",
    "means",
    "scatter",
    "ring",
)
_STATE_OPTIONAL = ("warmup_buffer", *_RUNNING_FIELDS)
_MAX_COUNT = {"n_components": MAX_COMPONENTS, "warmup": 1_000_000, "init_iter": 10_000}
# Stored masses start at TINY, where 1/mass is still finite; statistics beyond this bound would
# overflow when squared distances are formed.
_MAX_STAT = 1e300


def read_params(state: Any, names: Sequence[str]) -> dict[str, Any]:
    """The constructor arguments of a stored state, after its kind, version and fields.

    The constructor runs its own checks on them; here they are typed and bounded.
    """
    if not isinstance(state, Mapping) or state.get("kind") != "OnlineGaussianMixture":
        kind = state.get("kind") if isinstance(state, Mapping) else type(state).__name__
        raise ValueError(f"state: not an OnlineGaussianMixture snapshot ({kind!r})")
    V.fields("state", state, ("version", "kind", "params", "n_unknown_keys"), _STATE_OPTIONAL)
    if state["version"] != STATE_VERSION:
        raise ValueError(
            f"state version {state['version']!r} is not supported (expected {STATE_VERSION})"
        )
    params = state["params"]
    V.fields("state.params", params, tuple(names))
    for name in ("n_components", "warmup", "init_iter"):
        V.integer(f"state.params.{name}", params[name], hi=_MAX_COUNT[name])
    for name in ("alpha", "reg_covar", "min_weight"):
        V.number(f"state.params.{name}", params[name])
    V.optional_number("state.params.halflife", params["halflife"])
    if params["seed"] is not None:
        V.integer("state.params.seed", params["seed"], hi=2**63 - 1)
    if not isinstance(params["covariance_type"], str):
        raise ValueError(
            f"state.params.covariance_type must be text: {params['covariance_type']!r}"
        )
    return dict(params)


def read_warmup(state: Mapping[str, Any], warmup: int) -> list[dict[Any, float]]:
    """The warm-up buffer of a state taken during the warm-up."""
    if any(key in state for key in _RUNNING_FIELDS):
        raise ValueError("state: a warm-up buffer and fitted statistics at once")
    return _warmup_points(state["warmup_buffer"], warmup)


def running_to_state(buf: np.ndarray, feature_names: list[Any]) -> dict[str, Any]:
    """The fitted part of a state: feature names, counters, statistics and the ring."""
    k = int(buf[N_COMPONENTS])
    r = regions(buf)
    fill = int(buf[RING_FILL])
    return {
        "feature_names": list(feature_names),
        "n_samples_seen": int(buf[N_SEEN]),
        "n_reseeds": int(buf[N_RESEEDS]),
        "mass": r["mass"].tolist(),
        "means": r["means"].reshape(k, -1).tolist(),
        "scatter": r["scatter"].reshape(k, -1).tolist(),
        "ring": {
            "x": r["ring_x"].reshape(RING_LENGTH, -1)[:fill].tolist(),
            "score": r["ring_score"][:fill].tolist(),
            "pos": int(buf[RING_POS]),
        },
    }


def read_running(
    state: Mapping[str, Any],
    n_components: int,
    covariance_type: str,
    new_state: Callable[[int], np.ndarray],
) -> tuple[list[Any], np.ndarray]:
    """The feature names and the model buffer of a state taken after the warm-up.

    ``new_state(n_features)`` makes a fresh buffer with the model's settings; the statistics
    are written into it and the factors recomputed from them.
    """
    missing = [key for key in _RUNNING_FIELDS if key not in state]
    if missing:
        raise ValueError(f"state lacks {', '.join(missing)}")
    names = _feature_names(state["feature_names"])
    k, d = n_components, len(names)
    m = d * d if covariance_type == "full" else d
    mass = V.matrix("state.mass", state["mass"], (k,), lo=TINY, hi=_MAX_STAT)
    means = V.matrix("state.means", state["means"], (k, d), lo=-MAX_ABS_VALUE, hi=MAX_ABS_VALUE)
    scatter = V.matrix("state.scatter", state["scatter"], (k, m), lo=-_MAX_STAT, hi=_MAX_STAT)
    if covariance_type == "full":
        square = scatter.reshape(k, d, d)
        if not np.array_equal(square, square.transpose(0, 2, 1)):
            raise ValueError("state.scatter must be symmetric")
        diagonal = np.diagonal(square, axis1=1, axis2=2)
    else:
        diagonal = scatter
    if (diagonal < 0.0).any():
        raise ValueError("state.scatter must have a non-negative diagonal")
    ring = state["ring"]
    V.fields("state.ring", ring, ("x", "score", "pos"))
    score = ring["score"]
    if not isinstance(score, list) or len(score) > RING_LENGTH:
        raise ValueError(f"state.ring.score must be a list of at most {RING_LENGTH} numbers")
    fill = len(score)
    ring_x = V.matrix("state.ring.x", ring["x"], (fill, d), lo=-MAX_ABS_VALUE, hi=MAX_ABS_VALUE)
    ring_score = V.matrix("state.ring.score", score, (fill,), lo=-USED_SCORE, hi=USED_SCORE)
    pos = V.integer("state.ring.pos", ring["pos"], hi=RING_LENGTH - 1)
    if fill < RING_LENGTH and pos != fill:
        raise ValueError(f"state.ring.pos must be {fill} while the ring fills, got {pos}")
    s = new_state(d)
    r = regions(s)
    r["mass"][:] = mass
    r["means"][:] = means.ravel()
    r["scatter"][:] = scatter.ravel()
    r["ring_x"][: fill * d] = ring_x.ravel()
    r["ring_score"][:fill] = ring_score
    s[RING_FILL] = fill
    s[RING_POS] = pos
    s[N_SEEN] = V.integer("state.n_samples_seen", state["n_samples_seen"])
    s[N_RESEEDS] = V.integer("state.n_reseeds", state["n_reseeds"])
    refactorise_all(s)
    return names, s


def _feature_names(value: Any) -> list[Any]:
    """Distinct feature names (text or integers), at most MAX_FEATURES of them."""
    if not isinstance(value, list) or not 1 <= len(value) <= MAX_FEATURES:
        raise ValueError(f"state.feature_names must be a list of 1 to {MAX_FEATURES} names")
    for i, name in enumerate(value):
        if isinstance(name, bool) or not isinstance(name, str | int):
            raise ValueError(f"state.feature_names[{i}] must be text or an integer: {name!r}")
    if len(set(value)) != len(value):
        raise ValueError("state.feature_names must be distinct")
    return list(value)


def _warmup_points(value: Any, warmup: int) -> list[dict[Any, float]]:
    """The warm-up buffer: at most ``warmup`` points of [name, number] pairs."""
    if not isinstance(value, list) or len(value) >= max(warmup, 1):
        raise ValueError(f"state.warmup_buffer must be a list of fewer than {warmup} points")
    points = []
    for i, point in enumerate(value):
        if not isinstance(point, list) or len(point) > MAX_FEATURES:
            raise ValueError(f"state.warmup_buffer[{i}] must be a list of [name, value] pairs")
        parsed: dict[Any, float] = {}
        for j, pair in enumerate(point):
            where = f"state.warmup_buffer[{i}][{j}]"
            if not isinstance(pair, list) or len(pair) != 2:
                raise ValueError(f"{where} must be a [name, value] pair")
            name = _feature_names([pair[0]])[0]
            parsed[name] = V.number(where, pair[1], lo=-MAX_ABS_VALUE, hi=MAX_ABS_VALUE)
        points.append(parsed)
    return points
