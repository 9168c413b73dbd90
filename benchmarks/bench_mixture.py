"""Per-tick and batch throughput of OnlineGaussianMixture against river's KMeans.

Run:  python benchmarks/bench_mixture.py [--n 200000] [--repeats 5]

All figures come from one run on the same 200k make_blobs points (D=2, 4 centres). Each timing is
repeated and the median reported, because the machine is shared and noisy; the ratio is taken
between medians measured in the same run. The first-call compile time of the numba kernels is
reported separately (it is paid once per machine: the compiled code is cached on disk).
"""

from __future__ import annotations

import argparse
import statistics
import time

from river import cluster
from sklearn.datasets import make_blobs

from streamgmm import OnlineGaussianMixture


def _rate(n: int, seconds: float) -> float:
    return n / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200_000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    X, _ = make_blobs(n_samples=args.n, centers=4, cluster_std=0.5, random_state=0)
    dicts = [{"x1": float(a), "x2": float(b)} for a, b in X]

    # First call in this process: loads the cached kernels, or compiles them on a fresh machine.
    t0 = time.perf_counter()
    probe = OnlineGaussianMixture(n_components=4, seed=0, warmup=100)
    for x in dicts[:101]:
        probe.learn_one(x)
    probe.learn_many(X[101:102])
    first_call = time.perf_counter() - t0

    gmm_rates, km_rates, many_rates = [], [], []
    for r in range(args.repeats):
        model = OnlineGaussianMixture(n_components=4, seed=r, warmup=100)
        t = time.perf_counter()
        for x in dicts:
            model.learn_one(x)
        gmm_rates.append(_rate(len(dicts), time.perf_counter() - t))

        km = cluster.KMeans(n_clusters=4, seed=r)
        t = time.perf_counter()
        for x in dicts:
            km.learn_one(x)
        km_rates.append(_rate(len(dicts), time.perf_counter() - t))

        batch = OnlineGaussianMixture(n_components=4, seed=r, warmup=100)
        for x in dicts[:100]:
            batch.learn_one(x)
        t = time.perf_counter()
        batch.learn_many(X[100:])
        many_rates.append(_rate(len(X) - 100, time.perf_counter() - t))

    gmm, km, many = (statistics.median(v) for v in (gmm_rates, km_rates, many_rates))
    print(f"points: {args.n} make_blobs (D=2, 4 centres); repeats: {args.repeats}; medians below")
    print(f"first call (kernel load/compile + warm-up fit): {first_call:.2f} s")
    print(f"OnlineGaussianMixture(n_components=4, full).learn_one: {gmm:,.0f} ticks/s")
    print(f"river.cluster.KMeans(n_clusters=4).learn_one:          {km:,.0f} ticks/s")
    print(f"ratio learn_one / KMeans: {gmm / km:.2f}x   (goal >= 3x)")
    print(
        f"OnlineGaussianMixture.learn_many:                      {many:,.0f} ticks/s   (goal >= 2M)"
    )


if __name__ == "__main__":
    main()
