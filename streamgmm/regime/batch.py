"""Many keys' runs of ticks through their detectors at once, outputs as one set of columns.

The service's poll holds a few ticks of each of many keys. :func:`learn_predict_runs` packs
every key's ticks into one array, applies each key's run to its own detector with the compiled
step (:meth:`~streamgmm.regime.base._Detector._run`, on a view of that array) and unpacks all
the output rows at once into one :class:`~streamgmm.regime.output.OutputBlock`: the same
outputs, bit for bit, as each detector's ``learn_predict_block`` on its own run, without a
Python call chain, an array and a transposition per key.

Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np

from streamgmm.regime import layout as L
from streamgmm.regime.base import _Detector, output_columns
from streamgmm.regime.output import OutputBlock

__all__ = ["batch_kind", "learn_predict_runs"]


def batch_kind(detector: object) -> Hashable | None:
    """What detectors must share to go through :func:`learn_predict_runs` together (their
    class and shape), or None for one that cannot (not a streamgmm detector)."""
    if not isinstance(detector, _Detector):
        return None
    return (type(detector), detector._width, detector._k, len(detector._value_names()))


def learn_predict_runs(
    runs: Sequence[tuple[Any, Sequence[float], Sequence[Mapping[str, float]]]],
) -> tuple[OutputBlock, list[int]]:
    """Each key's run of ticks through its own detector; all outputs as one block.

    Parameters
    ----------
    runs
        Per key, ``(detector, ts, fields)``: the key's detector (all of one
        :func:`batch_kind`) and its ticks in order, as timestamps and the value
        fields of each tick (``{"price": ...}``; ``{name: ...}`` for events).

    Returns
    -------
    OutputBlock, list of int
        The ticks' positions are their places in the concatenation of the runs (run ``i``'s
        ticks after run ``i - 1``'s): the applied ones in order, their outputs in column
        form, and the ``ValueError`` of each refused one (it left its detector unchanged).
        Then, per run, where its ticks start in the concatenation (one more entry: the end).

    Raises
    ------
    ValueError
        If the detectors are not all of one :func:`batch_kind`.
    """
    if not runs:
        return OutputBlock([], output_columns([], 2, L.row_width(2)), []), [0]
    first = runs[0][0]
    kind, width = batch_kind(first), first._width
    if kind is None:
        raise ValueError(f"{type(first).__name__} cannot go in a batch")
    flat: list[float] = []
    starts = [0]
    refused: list[tuple[int, ValueError]] = []
    placed: list[int] = []  # concatenation position of each row of data
    position = 0
    extend = flat.extend
    for detector, ts, fields in runs:
        if detector is not first and batch_kind(detector) != kind:
            raise ValueError("the detectors of one batch must be of one class and shape")
        read = detector._read
        for t, values in zip(ts, fields, strict=True):
            try:
                extend(read({"ts": t, **values}))
            except ValueError as exc:
                refused.append((position, exc))
            else:
                placed.append(position)
            position += 1
        starts.append(position)
    n = len(placed)
    data = np.array(flat).reshape(n, -1) if n else np.empty((0, 1))
    rows = np.empty((n, width))
    # Each run on its own detector, on its rows of the one array.
    row = 0
    for (detector, _ts, _fields), end in zip(runs, starts[1:], strict=True):
        stop = row
        while stop < n and placed[stop] < end:
            stop += 1
        if stop > row:
            detector._run(data[row:stop], rows[row:stop])
        row = stop
    listed = rows.tolist()
    bad = L.S_BAD_TS
    if refused or (n and rows[:, L.R_STATUS].max() >= bad):
        applied = []
        kept = []
        run_of = np.searchsorted(starts, placed, side="right") - 1
        for j, (where, values) in enumerate(zip(placed, listed, strict=True)):
            if values[L.R_STATUS] < bad:
                applied.append(where)
                kept.append(values)
                continue
            r = int(run_of[j])
            detector, ts, fields = runs[r]
            at = where - starts[r]
            tick = {"ts": ts[at], **fields[at]}
            refused.append((where, detector._refusal(values, tick)))
        refused.sort(key=lambda item: item[0])
        listed = kept
    else:
        applied = placed
    return OutputBlock(applied, output_columns(listed, first._k, width), refused), starts
