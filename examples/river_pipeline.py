"""OnlineGaussianMixture in a river pipeline, scored by progressive validation.

Three clusters whose two features live on very different scales (a size near 1 and a price
near 5000), so the mixture sees them only after ``preprocessing.StandardScaler``. river's
``evaluate.progressive_val_score`` predicts each point before learning it; the adjusted Rand
index compares the predicted components with the true clusters (it ignores how components
are numbered). Then the same pipeline learns and predicts in batches from a DataFrame.

    python examples/river_pipeline.py
"""

from __future__ import annotations

import random
from collections.abc import Iterator

from river import evaluate, metrics, preprocessing

from streamgmm import OnlineGaussianMixture

CENTRES = [(0.0, 4000.0), (2.0, 5000.0), (-1.5, 6500.0)]


def blobs(n: int, seed: int) -> Iterator[tuple[dict[str, float], int]]:
    rng = random.Random(seed)
    for _ in range(n):
        label = rng.randrange(len(CENTRES))
        size, price = CENTRES[label]
        yield {"size": rng.gauss(size, 0.4), "price": rng.gauss(price, 300.0)}, label


def main() -> None:
    # The scaler's mean and variance move most over the first points, and the mixture's
    # initial fit uses the points of its warm-up as they were scaled then. A warm-up of 300
    # rather than 100 lets the scaler settle first; with 100, a stream can start with two
    # components on one cluster, a split that online EM rarely leaves.
    model = preprocessing.StandardScaler() | OnlineGaussianMixture(3, warmup=300, seed=0)
    metric = metrics.AdjustedRand()
    evaluate.progressive_val_score(blobs(6000, seed=1), model, metric, print_every=2000)
    print(f"progressive validation, 6000 points: {metric}")

    # Mini-batches: learn_many / predict_many take and give pandas objects, as river's do.
    import pandas as pd

    points, labels = zip(*blobs(6000, seed=2), strict=True)
    frame = pd.DataFrame(list(points))
    batch = preprocessing.StandardScaler() | OnlineGaussianMixture(n_components=3, seed=0)
    for start in range(0, 4000, 500):
        batch.learn_many(frame.iloc[start : start + 500])
    predicted = batch.predict_many(frame.iloc[4000:])
    held_out = metrics.AdjustedRand()
    for truth, guess in zip(labels[4000:], predicted, strict=True):
        held_out.update(truth, guess)
    print(f"mini-batches: learnt 4000 points, held-out 2000: {held_out}")


if __name__ == "__main__":
    main()
