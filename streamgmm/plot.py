"""``streamgmm plot``: stream the real S&P 500 through a regime detector and draw the result.

The daily S&P 500 closes bundled with ``arch`` (``arch.data.sp500``, 1999-2018) go tick by tick
through :class:`streamgmm.regime.RegimeDetector` with its default settings, exactly as the
service would process them, and a three-panel PNG is written:

1. the price (log scale), its background shaded by the most likely (filtered) regime;
2. the filtered probability of the high-volatility regime, with its raw probability (from
   each tick's volatility level alone, before the filter's memory) faintly behind it;
3. the per-tick log-likelihood with its EWMA, and below it the drift score (alarm at 1), with
   detected drifts marked on both.

Usage::

    streamgmm plot --output docs/sp500_regimes.png
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from streamgmm._precompile import compile_if_cold
from streamgmm.frame import regimes_frame
from streamgmm.regime import RegimeDetector

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["main", "plot_regimes", "run_sp500", "summarise"]

DEFAULT_OUTPUT = "sp500_regimes.png"
# Calm to turbulent; more regimes interpolate between the two ends.
_CALM_RGB = np.array([0.80, 0.92, 0.80])
_WILD_RGB = np.array([0.98, 0.72, 0.70])


def run_sp500(**detector_kwargs: Any) -> pd.DataFrame:
    """Stream ``arch.data.sp500`` through a fresh detector; one row per trading day.

    Parameters
    ----------
    **detector_kwargs
        Passed to :class:`RegimeDetector` (defaults: the library's defaults, 2 regimes).

    Returns
    -------
    pandas.DataFrame
        Indexed by date, with columns ``price``, ``regime``, ``p_<r>`` (filtered probability of
        each regime), ``raw_<r>`` (the same from that day's volatility level alone, before the
        filter's memory), ``log_likelihood``, ``drift_score``, ``drift_detected`` and
        ``warm`` (see :func:`streamgmm.frame.regimes_frame`).
    """
    from arch.data import sp500

    close = sp500.load()["Adj Close"]
    frame = regimes_frame(close.to_frame("price"), RegimeDetector(**detector_kwargs))
    frame.insert(0, "price", close.to_numpy())
    return frame


def _runs(values: np.ndarray) -> list[tuple[int, int, int]]:
    """(start, stop, value) of each run of equal consecutive values."""
    edges = np.flatnonzero(np.diff(values)) + 1
    starts = np.r_[0, edges]
    stops = np.r_[edges, len(values)]
    return [(int(a), int(b), int(values[a])) for a, b in zip(starts, stops, strict=True)]


def plot_regimes(
    output_png: str | Path = DEFAULT_OUTPUT,
    frame: pd.DataFrame | None = None,
    **detector_kwargs: Any,
) -> Path:
    """Write the S&P 500 regime picture to ``output_png`` and return its path.

    Parameters
    ----------
    output_png
        Destination PNG; parent directories are created.
    frame
        Output of :func:`run_sp500`; computed here when omitted.
    **detector_kwargs
        Passed to :func:`run_sp500` when ``frame`` is omitted.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    if frame is None:
        frame = run_sp500(**detector_kwargs)
    n_regimes = sum(c.startswith("p_") for c in frame.columns)
    top = n_regimes - 1
    colours = [_CALM_RGB + (_WILD_RGB - _CALM_RGB) * (r / max(top, 1)) for r in range(n_regimes)]
    dates = frame.index
    warm = frame["warm"].to_numpy()
    first_warm = dates[int(np.argmax(warm))] if warm.any() else dates[-1]

    fig, (ax_price, ax_prob, ax_ll, ax_drift) = plt.subplots(
        4,
        1,
        figsize=(13, 10),
        sharex=True,
        gridspec_kw={"height_ratios": [2.4, 1.1, 1.1, 0.9]},
    )

    # 1. Price, shaded by the filtered regime (warm-up left grey).
    regimes = frame["regime"].to_numpy()
    bounds = [*dates, dates[-1] + (dates[-1] - dates[-2])]
    for start, stop, regime in _runs(np.where(warm, regimes, -1)):
        colour = (0.9, 0.9, 0.9) if regime < 0 else colours[regime]
        ax_price.axvspan(bounds[start], bounds[stop], color=colour, lw=0)
    ax_price.plot(dates, frame["price"], color="black", lw=0.9)
    ax_price.set_yscale("log")
    ax_price.set_ylabel("S&P 500 (log scale)")
    names = ["calm", "turbulent"] if n_regimes == 2 else [f"regime {r}" for r in range(n_regimes)]
    handles = [Patch(color=colours[r], label=names[r]) for r in range(n_regimes)]
    handles.append(Patch(color=(0.9, 0.9, 0.9), label="warm-up"))
    ax_price.legend(handles=handles, loc="upper left", frameon=True, fontsize=9)
    ax_price.set_title(
        "S&P 500 daily closes 1999-2018, streamed tick by tick through streamgmm.RegimeDetector"
        f" ({n_regimes} regimes)\nbackground: most likely regime (filtered, causal)",
        fontsize=11,
    )

    # 2. High-volatility probability.
    high_name = "turbulent" if n_regimes == 2 else f"regime {top}"
    ax_prob.plot(
        dates,
        frame[f"raw_{top}"].where(frame["warm"]),
        color="grey",
        lw=0.3,
        alpha=0.5,
        label="raw (this tick's level alone)",
    )
    ax_prob.fill_between(
        dates,
        0,
        frame[f"p_{top}"].where(frame["warm"], 0.0),
        color="tab:red",
        alpha=0.55,
        lw=0,
        label="filtered probability",
    )
    ax_prob.set_ylim(0, 1)
    ax_prob.set_ylabel(f"P({high_name})")
    ax_prob.legend(loc="upper right", fontsize=8, ncol=2, framealpha=0.9)

    # 3. Log-likelihood of each tick under the model, before it learns the tick.
    ll = frame["log_likelihood"].where(frame["warm"])
    ax_ll.plot(dates, ll, color="tab:blue", lw=0.3, alpha=0.35, label="per tick")
    ax_ll.plot(
        dates, ll.ewm(halflife=20).mean(), color="tab:blue", lw=1.2, label="EWMA, half-life 20 days"
    )
    if ll.notna().any():
        low, high = float(np.nanpercentile(ll, 0.5)), float(np.nanmax(ll))
        ax_ll.set_ylim(low - 0.1 * (high - low), high + 0.1 * (high - low))
    ax_ll.set_ylabel("log-likelihood")
    ax_ll.legend(loc="lower right", fontsize=8, ncol=2, framealpha=0.9)

    # 4. Drift score; an alarm fires when it reaches 1.
    drifts = dates[frame["drift_detected"].to_numpy()]
    ax_drift.plot(dates, frame["drift_score"], color="tab:orange", lw=0.8, label="drift score")
    ax_drift.axhline(1.0, color="black", lw=0.7, ls="--", label="alarm threshold")
    ax_drift.set_ylim(0, max(1.25, float(frame["drift_score"].max()) * 1.1))
    ax_drift.set_ylabel("drift score")
    for ax in (ax_ll, ax_drift):
        for when in drifts:
            ax.axvline(when, color="crimson", lw=1.4, alpha=0.85)
    marker = plt.Line2D([], [], color="crimson", lw=1.4, label=f"drift detected ({len(drifts)})")
    lines, labels = ax_drift.get_legend_handles_labels()
    ax_drift.legend(
        [*lines, marker],
        [*labels, marker.get_label()],
        loc="upper right",
        fontsize=8,
        ncol=3,
        framealpha=0.9,
    )
    for ax in (ax_price, ax_prob, ax_ll, ax_drift):
        ax.axvline(first_warm, color="grey", lw=0.6, ls=":")
    ax_ll = ax_drift
    ax_ll.set_xlim(dates[0], dates[-1])
    fig.tight_layout()

    path = Path(output_png)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def summarise(frame: pd.DataFrame) -> dict[str, float]:
    """Headline figures of a :func:`run_sp500` frame (the numbers quoted in docs/regime.md)."""
    top = sum(c.startswith("p_") for c in frame.columns) - 1
    warm = frame[frame["warm"]]
    high = warm[f"p_{top}"]
    return {
        "crisis_2008_09_15_to_2009_03_31": float(high.loc["2008-09-15":"2009-03-31"].mean()),
        "calm_2005_to_2006": float(high.loc["2005-01-01":"2006-12-31"].mean()),
        "label_flips_filtered": int(np.sum(np.diff(warm["regime"].to_numpy()) != 0)),
        "label_flips_raw": int(
            np.sum(np.diff(warm[[f"raw_{r}" for r in range(top + 1)]].to_numpy().argmax(1)) != 0)
        ),
        "drifts_detected": int(frame["drift_detected"].sum()),
        "warm_days": len(warm),
    }


def main(argv: Sequence[str] | None = None) -> int:
    """``streamgmm plot --output PATH [--n-regimes N]``; returns the exit code."""
    parser = argparse.ArgumentParser(
        prog="streamgmm plot",
        description="Stream the S&P 500 (arch.data.sp500) through a regime detector and write "
        "a PNG: price shaded by regime, high-volatility probability, log-likelihood and drift.",
    )
    parser.add_argument(
        "--output",
        default=DEFAULT_OUTPUT,
        metavar="PATH",
        help="PNG to write (default: %(default)s)",
    )
    parser.add_argument(
        "--n-regimes",
        type=int,
        default=2,
        metavar="N",
        help="number of regimes (default: %(default)s)",
    )
    args = parser.parse_args(list(argv) if argv is not None else None)
    if args.n_regimes < 1:
        parser.error(f"--n-regimes must be a positive integer, got {args.n_regimes}")
    compile_if_cold()
    frame = run_sp500(n_regimes=args.n_regimes)
    path = plot_regimes(args.output, frame=frame)
    for name, value in summarise(frame).items():
        print(f"{name}: {value:.3f}" if isinstance(value, float) else f"{name}: {value}")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
