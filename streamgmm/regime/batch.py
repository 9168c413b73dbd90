"""Many keys' runs of ticks through their detectors at once, outputs as one set of columns.

The service's poll holds a few ticks of each of many keys. :func:`learn_predict_runs` packs
every key's ticks into one array, applies each key's run to its own detector with the compiled
step (:meth:`~streamgmm.regime.base._Detector._run`, on a view of that array) and unpacks all
the output rows at once into one :class:`~streamgmm.regime.output.OutputBlock` of NumPy
columns: the same outputs, bit for bit, as each detector's ``learn_predict_block`` on its own
run (:class:`OutputRows` reads them as its output dicts), without a Python call chain, an
array and a transposition per key.

Pure: no I/O.
"""

from __future__ import annotations

import bisect
from collections.abc import Hashable, Mapping, Sequence
from typing import Any, overload

import numpy as np

from streamgmm.regime import layout as L
from streamgmm.regime.base import _Detector, row_columns
from streamgmm.regime.output import OUTPUT_FIELDS, OutputBlock, make_output

__all__ = ["OutputRows", "batch_kind", "learn_predict_runs"]


def batch_kind(detector: object) -> Hashable | None:
    """What detectors must share to go through :func:`learn_predict_runs` together (their
    class and shape), or None for one that cannot (not a streamgmm detector)."""
    if not isinstance(detector, _Detector):
        return None
    return (type(detector), detector._width, detector._k, detector._d)


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
        form (:func:`~streamgmm.regime.output.make_output_columns`, each column a NumPy
        array, NaN where ``learn_predict_block`` gives None), and the ``ValueError`` of each
        refused one (it left its detector unchanged).
        Then, per run, where its ticks start in the concatenation (one more entry: the end).

    Raises
    ------
    ValueError
        If the detectors are not all of one :func:`batch_kind`.
    """
    if not runs:
        return OutputBlock([], row_columns(np.empty((0, L.row_width(2))), 2), []), [0]
    first = runs[0][0]
    kind, width = batch_kind(first), first._width
    if kind is None:
        raise ValueError(f"{type(first).__name__} cannot go in a batch")
    flat: list[float] = []
    starts = [0]
    counts: list[int] = []  # rows of data per run
    refused: list[tuple[int, ValueError]] = []
    placed: list[int] = []  # concatenation position of each row of data
    position = 0
    extend, place = flat.extend, placed.append
    for detector, ts, fields in runs:
        if detector is not first and batch_kind(detector) != kind:
            raise ValueError("the detectors of one batch must be of one class and shape")
        read = detector._read_fields
        before = len(placed)
        for t, values in zip(ts, fields, strict=True):
            try:
                extend(read(t, values))
            except ValueError as exc:
                refused.append((position, exc))
            else:
                place(position)
            position += 1
        starts.append(position)
        counts.append(len(placed) - before)
    n = len(placed)
    data = np.array(flat).reshape(n, -1) if n else np.empty((0, 1))
    rows = np.empty((n, width))
    # Each run on its own detector, on its rows of the one array.
    row = 0
    for (detector, _ts, _fields), count in zip(runs, counts, strict=True):
        if count:
            detector._run(data[row : row + count], rows[row : row + count])
            row += count
    bad = L.S_BAD_TS
    if refused or (n and rows[:, L.R_STATUS].max() >= bad):
        ok = rows[:, L.R_STATUS] < bad
        applied = [where for where, good in zip(placed, ok.tolist(), strict=True) if good]
        for j in np.flatnonzero(~ok).tolist():
            where = placed[j]
            r = bisect.bisect_right(starts, where) - 1
            detector, ts, fields = runs[r]
            at = where - starts[r]
            tick = {"ts": ts[at], **fields[at]}
            refused.append((where, detector._refusal(rows[j].tolist(), tick)))
        refused.sort(key=lambda item: item[0])
        rows = rows[ok]
    else:
        applied = placed
    return OutputBlock(applied, row_columns(rows, first._k), refused), starts


#: The output fields that are a mapping of regime to probability.
_PROBABILITIES = frozenset(f.name for f in OUTPUT_FIELDS if f.kind == "probabilities")


class OutputRows(Sequence[dict[str, Any]]):
    """Outputs ``start`` to ``stop - 1`` of :func:`learn_predict_runs`' output columns, as a
    sequence of output dicts (:func:`~streamgmm.regime.output.make_output`, as
    ``learn_predict_many`` gives them), each built when read.

    :meth:`column` gives one field's values without building any. ``lists`` is where the
    columns are kept as lists once :meth:`column` asked for them: shared by the outputs of
    several keys of one batch, each column is converted once.
    """

    __slots__ = ("_columns", "_lists", "_start", "_stop")

    def __init__(
        self,
        columns: Mapping[str, Any],
        start: int,
        stop: int,
        lists: dict[str, Any] | None = None,
    ) -> None:
        self._columns, self._start, self._stop = columns, start, stop
        self._lists = {} if lists is None else lists

    def __len__(self) -> int:
        return self._stop - self._start

    @overload
    def __getitem__(self, i: int) -> dict[str, Any]: ...
    @overload
    def __getitem__(self, i: slice) -> list[dict[str, Any]]: ...
    def __getitem__(self, i: int | slice) -> dict[str, Any] | list[dict[str, Any]]:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        n = len(self)
        if not -n <= i < n:
            raise IndexError("output index out of range")
        j = self._start + (i % n)
        values: list[Any] = []
        for f in OUTPUT_FIELDS:
            column = self._columns[f.name]
            if f.name in _PROBABILITIES:
                values.append({r: float(c[j]) for r, c in enumerate(column)})
                continue
            values.append(column[j].item())  # make_output turns NaN into None
        return make_output(*values)

    def column(self, name: str) -> list[Any]:
        """The values of output field ``name``, in order, as a list (of a probabilities
        field: per regime, a list of its values); NaN where an output dict has None."""
        values = self._lists.get(name)
        if values is None:
            column = self._columns[name]
            values = self._lists[name] = (
                [c.tolist() for c in column] if name in _PROBABILITIES else column.tolist()
            )
        start, stop = self._start, self._stop
        if name in _PROBABILITIES:
            return [c[start:stop] for c in values]
        return values[start:stop]  # type: ignore[no-any-return]
