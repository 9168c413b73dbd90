"""regimes_frame: a frame of ticks in, the detector's per-tick outputs out, on the same index."""

from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd
import pytest

from streamgmm import EventDetector, RegimeDetector
from streamgmm.frame import regimes_frame

N = 600


@pytest.fixture(scope="module")
def prices() -> pd.DataFrame:
    rng = np.random.default_rng(3)
    vol = np.where(np.arange(N) % 300 < 150, 0.006, 0.03)
    days = pd.bdate_range("2021-01-01", periods=N, name="day")
    price = 50 * np.exp(np.cumsum(rng.normal(0, vol)))
    volume = rng.integers(1_000, 50_000, size=N).astype(float)
    return pd.DataFrame({"price": price, "volume": volume, "note": "x"}, index=days)


def _one_by_one(frame: pd.DataFrame, **kwargs) -> list[dict]:
    det = RegimeDetector(**kwargs)
    seconds = (frame.index - pd.Timestamp("1970-01-01")).total_seconds()
    return [
        det.learn_predict_one({"ts": float(t), "price": float(p), "volume": float(v)})
        for t, p, v in zip(seconds, frame["price"], frame["volume"], strict=True)
    ]


def test_rows_are_the_detectors_outputs_on_the_input_index(prices: pd.DataFrame) -> None:
    out = regimes_frame(prices, RegimeDetector(warmup=100))
    assert out.index.equals(prices.index)
    want = _one_by_one(prices, warmup=100)
    for (_, row), expected in zip(out.iterrows(), want, strict=True):
        assert row["regime"] == expected["regime"]
        assert row["warm"] == expected["warm"]
        assert row["n_samples_seen"] == expected["n_samples_seen"]
        for r, p in expected["probabilities"].items():
            assert math.isclose(row[f"p_{r}"], p, abs_tol=1e-12)
        for r, p in expected["raw_probabilities"].items():
            assert math.isclose(row[f"raw_{r}"], p, abs_tol=1e-12)
    assert out["warm"].sum() > N / 2  # the comparison covered warm rows


def test_timestamps_from_a_column_or_an_aware_index_agree(prices: pd.DataFrame) -> None:
    base = regimes_frame(prices, RegimeDetector(warmup=100))
    seconds = (prices.index - pd.Timestamp("1970-01-01")).total_seconds()
    by_column = regimes_frame(
        prices.reset_index(drop=True).assign(t=seconds), RegimeDetector(warmup=100), ts="t"
    )
    np.testing.assert_array_equal(by_column["p_1"].to_numpy(), base["p_1"].to_numpy())
    # The same instants written in New York time.
    aware = prices.set_axis(prices.index.tz_localize("UTC").tz_convert("America/New_York"))
    np.testing.assert_array_equal(
        regimes_frame(aware, RegimeDetector(warmup=100))["p_1"].to_numpy(), base["p_1"].to_numpy()
    )
    with pytest.raises(ValueError, match="timestamps must be datetimes or epoch seconds"):
        regimes_frame(prices.reset_index(drop=True).assign(t="x"), ts="t")


def test_a_bad_row_raises_naming_it_or_is_coerced_to_missing(prices: pd.DataFrame) -> None:
    bad = prices.copy()
    bad.iloc[200, bad.columns.get_loc("price")] = float("nan")
    label = bad.index[200]
    with pytest.raises(ValueError, match=re.escape(f"row {label!r}: ") + ".*'price'"):
        regimes_frame(bad)
    out = regimes_frame(bad, RegimeDetector(warmup=100), errors="coerce")
    assert out.iloc[200].isna().all()
    # The rejected row left the detector as it was: the rest equals a run without that row.
    skipped = regimes_frame(prices.drop(index=label), RegimeDetector(warmup=100))
    np.testing.assert_array_equal(
        out.drop(index=label)["p_1"].to_numpy(), skipped["p_1"].to_numpy()
    )


def test_named_fields_feed_an_event_detector() -> None:
    rng = np.random.default_rng(0)
    busy = (np.arange(400) // 100) % 2 == 1
    frame = pd.DataFrame(
        {"latency": np.where(busy, rng.normal(50, 10, 400), rng.normal(10, 1, 400))},
        index=pd.RangeIndex(400, name="t").astype(float),
    )
    out = regimes_frame(frame, EventDetector(["latency"], warmup=50), fields=["latency"])
    det = EventDetector(["latency"], warmup=50)
    want = [det.learn_predict_one({"ts": t, "latency": v}) for t, v in frame["latency"].items()]
    assert out["regime"].tolist() == [w["regime"] for w in want]
    assert out["p_1"].tolist() == [w["probabilities"][1] for w in want]
    assert out["warm"].to_numpy()[60:].all()
    with pytest.raises(ValueError, match="no 'price' column"):
        regimes_frame(frame)
    with pytest.raises(ValueError, match=r"lacks columns \['load'\]"):
        regimes_frame(frame, fields=["load"])
