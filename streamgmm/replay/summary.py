"""What a replay wrote for each key, in a few figures a person reads at the end of the run.

:class:`KeyFigures` takes the regime columns of a key's output records as they are written
(:meth:`~KeyFigures.observe`, the :class:`~streamgmm.ticks.rules.Labels` of each batch, in
order) and keeps: the ticks applied, the time span, the share of time spent in the turbulent
regime (the highest of the regimes, ranked by variance), the regime switches, the drift alarms
and the last regime. Only warm records count towards the regime figures: before it is warm a
detector has not yet told its regimes apart. The share of time weights each warm record's
regime by the time until the key's next warm record, so it means the same whatever the emit
policy (with ``on_change`` the records are the switches); with no time between them (one warm
record, or equal timestamps) it is the share of warm records. A drift alarm is a record with
``drift_detected`` after one without.

:func:`summary_table` lays the figures out as text.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from streamgmm.ticks.rules import Labels

__all__ = ["KeyFigures", "summary_table"]


@dataclass
class KeyFigures:
    """One key's figures, from its output records (see the module's text)."""

    ticks: int = 0
    records: int = 0
    first_ts: float = math.nan
    last_ts: float = math.nan
    #: The highest regime (the number of regimes less one), -1 before any record.
    top_regime: int = -1
    warm_records: int = 0
    turbulent_records: int = 0
    warm_seconds: float = 0.0
    turbulent_seconds: float = 0.0
    switches: int = 0
    drift_alarms: int = 0
    last_regime: int | None = None
    _warm_ts: float | None = None
    _warm_regime: int = 0
    _drifting: bool = False

    def observe(self, labels: Labels) -> None:
        """Take the key's next batch of records, in their order."""
        n = len(labels.ts)
        if n == 0:
            return
        if not self.records:
            self.first_ts = float(labels.ts[0])
        self.records += n
        self.last_ts = float(labels.ts[-1])
        self.last_regime = int(labels.regime[-1])
        top = self.top_regime = max(self.top_regime, labels.n_regimes - 1)
        drift = labels.drift_detected
        self.drift_alarms += int(drift[0] and not self._drifting) + int(
            np.count_nonzero(drift[1:] & ~drift[:-1])
        )
        self._drifting = bool(drift[-1])
        warm = labels.warm
        ts, regime = labels.ts[warm], labels.regime[warm]
        if not len(ts):
            return
        self.warm_records += len(ts)
        if top > 0:
            self.turbulent_records += int(np.count_nonzero(regime == top))
        if self._warm_ts is not None:  # the span from the key's last warm record
            ts = np.concatenate(([self._warm_ts], ts))
            regime = np.concatenate(([self._warm_regime], regime))
        spans = np.maximum(np.diff(ts), 0.0)
        self.warm_seconds += float(spans.sum())
        if top > 0:
            self.turbulent_seconds += float(spans[regime[:-1] == top].sum())
        self.switches += int(np.count_nonzero(np.diff(regime)))
        self._warm_ts, self._warm_regime = float(ts[-1]), int(regime[-1])

    @property
    def turbulent_share(self) -> float | None:
        """The share of warm time in the turbulent regime; None with no warm record or a
        single regime."""
        if self.top_regime < 1 or not self.warm_records:
            return None
        if self.warm_seconds > 0.0:
            return self.turbulent_seconds / self.warm_seconds
        return self.turbulent_records / self.warm_records


def _date(ts: float) -> str:
    if not math.isfinite(ts) or abs(ts) > 1e11:
        return "-"
    return time.strftime("%Y-%m-%d", time.gmtime(ts))


def summary_table(figures: Mapping[str, KeyFigures], limit: int = 20) -> list[str]:
    """The figures as lines of a table, one key a line in key order, at most ``limit`` keys
    (then a line counting the others)."""
    header = (
        "key",
        "ticks",
        "from",
        "to",
        "turbulent",
        "switches",
        "drift_alarms",
        "last_regime",
    )
    rows = [header]
    for key in sorted(figures)[:limit]:
        f = figures[key]
        share = f.turbulent_share
        last = "-" if f.last_regime is None else str(f.last_regime)
        if f.last_regime is not None and f.warm_records == 0:
            last += " (warming up)"
        rows.append(
            (
                key,
                str(f.ticks),
                _date(f.first_ts),
                _date(f.last_ts),
                "-" if share is None else f"{100.0 * share:.1f}%",
                str(f.switches),
                str(f.drift_alarms),
                last,
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = [
        "  ".join(
            # Text columns to the left, numbers to the right.
            cell.ljust(width) if i in (0, 7) else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        ).rstrip()
        for row in rows
    ]
    if len(figures) > limit:
        lines.append(f"... and {len(figures) - limit} more keys")
    return lines
