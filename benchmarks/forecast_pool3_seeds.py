"""The two-member forecast pool and the pool with a third, constant-variance member
(``forecast_pool3.py``) against GARCH-t on more TUNING seeds: ``python
benchmarks/forecast_pool3_seeds.py`` prints each one's mean log-score difference (DM t) and the
constant member's mean weight."""

from __future__ import annotations

from typing import Any

import bench_forecast as bf
import numpy as np

# ---- more TUNING seeds: the two-member pool and this one against GARCH-t ---------------------
# Seeds of the TUNING split (tests/regime_support.py) that bench_forecast.py's table leaves out.
EXTRA_TUNING_SEEDS = {
    "switching": (102, 103, 104, 105),
    "garch": (102, 103, 104),
    "t4": (101, 102, 103, 104),
    "intraday": (),
}


def _compare(s: Any) -> list[str]:
    r = np.diff(np.log(s.price))
    mask = np.zeros(r.size, dtype=bool)
    mask[bf.refit_points(s)[0] :] = True
    garch = bf.garch_pred(s, r).logpdf
    cells = [s.name]
    for pred in (bf.pool_pred(s, r, {}), bf.pool3_pred(s, r, {})):
        ok = mask & np.isfinite(garch) & np.isfinite(pred.logpdf)
        d, t, _ = bf.dm_test(pred.logpdf[ok], garch[ok])
        cells.append(f"{d:+.4f} ({t:+.1f})")
    wc = pred.extra["wc"][mask]
    cells.append(f"{np.nanmean(wc):.3f}")
    return cells


def main() -> None:
    """Print, per extra TUNING seed, the two-member and three-member pools minus GARCH-t (DM t)
    and the constant member's mean weight."""
    from concurrent.futures import ProcessPoolExecutor

    series = bf._synthetic("TUNING", EXTRA_TUNING_SEEDS)
    with ProcessPoolExecutor(2) as pool:
        rows = list(pool.map(_compare, series))
    print(bf._table(["series", "pool - garch-t", "pool3 - garch-t", "mean w const"], rows))


if __name__ == "__main__":
    main()
