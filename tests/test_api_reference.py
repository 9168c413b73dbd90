"""The API reference covers what users call, and the estimators print readably.

The reference (docs/api.md, built by mkdocs with mkdocstrings) must list the methods and fitted
attributes the detectors inherit from their private base class and the mixture's documented
methods; the test builds the site as CI does (``mkdocs build --strict``) and reads the names
from its objects inventory (``objects.inv``), the list of everything the reference documents.
"""

from __future__ import annotations

import inspect
import subprocess
import sys
import zlib

import pytest
from conftest import REPO

from streamgmm import EventDetector, LikelihoodDriftMonitor, OnlineGaussianMixture, RegimeDetector

DETECTOR_NAMES = [
    "learn_one",
    "learn_predict_one",
    "learn_predict_many",
    "learn_predict_block",
    "predict_one",
    "predict_proba_one",
    "to_state",
    "from_state",
    "means_",
    "covariances_",
    "transition_matrix_",
    "n_samples_seen",
    "warm",
]
MIXTURE_NAMES = [
    "learn_one",
    "learn_many",
    "predict_one",
    "predict_proba_one",
    "score_one",
    "weights_",
    "means_",
    "covariances_",
    "n_samples_seen_",
]


@pytest.fixture(scope="module")
def inventory(tmp_path_factory: pytest.TempPathFactory) -> set[str]:
    site = tmp_path_factory.mktemp("site")
    mkdocs = [sys.executable, "-m", "mkdocs", "build", "--strict", "-q", "-d", str(site)]
    result = subprocess.run(mkdocs, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    data = (site / "objects.inv").read_bytes()
    header = data.split(b"\n", 4)
    assert header[0] == b"# Sphinx inventory version 2"
    return {line.split()[0] for line in zlib.decompress(header[4]).decode().splitlines()}


@pytest.mark.parametrize("cls", ["RegimeDetector", "EventDetector"])
def test_the_reference_documents_what_the_detectors_inherit(cls: str, inventory: set[str]) -> None:
    missing = [n for n in DETECTOR_NAMES if f"streamgmm.regime.{cls}.{n}" not in inventory]
    assert not missing


def test_the_reference_documents_the_mixture(inventory: set[str]) -> None:
    missing = [
        n for n in MIXTURE_NAMES if f"streamgmm.mixture.OnlineGaussianMixture.{n}" not in inventory
    ]
    assert not missing


def test_learn_one_has_a_numpy_docstring_with_an_example() -> None:
    doc = inspect.getdoc(OnlineGaussianMixture.learn_one) or ""
    for section in ("Parameters", "Raises", "Examples"):
        assert f"{section}\n--------" in doc or f"{section}\n------" in doc
    assert ">>> model.learn_one(" in doc


@pytest.mark.parametrize(
    "estimator,given",
    [
        (RegimeDetector(n_regimes=3, warmup=80), ["n_regimes=3", "warmup=80"]),
        (EventDetector(fields=["temp", "load"]), ["fields=['temp', 'load']"]),
        (OnlineGaussianMixture(n_components=4, halflife=500), ["n_components=4", "halflife=500"]),
        (LikelihoodDriftMonitor(threshold=10.0), ["threshold=10."]),
    ],
    ids=lambda v: type(v).__name__ if not isinstance(v, list) else "",
)
def test_estimators_print_their_settings_like_river(estimator: object, given: list[str]) -> None:
    # river's convention: the class name, then every parameter as name=value, one a line.
    text = repr(estimator)
    name = type(estimator).__name__
    assert text.startswith(f"{name} (\n") and text.endswith("\n)")
    assert "object at 0x" not in text
    lines = [line.strip() for line in text.splitlines()[1:-1]]
    params = [
        p for p in inspect.signature(type(estimator)).parameters if p not in ("args", "kwargs")
    ]
    assert [line.split("=")[0] for line in lines] == params
    assert all(g in lines for g in given)
