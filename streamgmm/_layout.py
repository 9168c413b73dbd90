"""A flat ``float64`` buffer declared once, as a table: header slots, then sized regions.

The compiled models keep all their state in one contiguous ``float64`` buffer: numba then
unboxes one array per call instead of a dozen. A :class:`Table` declares such a buffer in
order, in one place:

* the **shape**: the first header slots, the integers every region's size depends on (the
  number of components, of features, ...);
* :meth:`Table.slots`: a block of header slots (a setting, a counter, a scalar of the state),
  numbered after every slot declared before it. Unpacking the block names its slots, and
  Python refuses a block whose size differs from the number of names, so no slot is numbered
  by hand and none is skipped;
* :meth:`Table.region`: an array whose size is a function of the shape. Its header slot holds
  where the region starts: the buffer carries its own table of contents, written once by
  :meth:`Table.new` from the sizes declared here. :meth:`Table.end` closes it with the slot
  that holds the buffer's length.

Everything declared up to :meth:`Table.end` is an integer, and compiled code reads all of it
once per call (``lay = read_layout(buf)``, through :func:`read_ints`) into a tuple indexed by the
same names: ``lay[N_FEATURES]`` is the number of features, ``buf[lay[MEANS] + i]`` the
``i``-th entry of the means, and region ``R`` spans ``buf[lay[R] : lay[R + 1]]``. Slots
declared after :meth:`Table.end` are read from the buffer itself (``buf[DECAY]``). Python
reads the regions by name (:meth:`Table.views`).

Examples
--------
>>> table = Table("n_rows", "n_columns")
>>> N_ROWS, N_COLUMNS = table.shape
>>> CELLS = table.region("cells", lambda rows, columns: rows * columns)
>>> TOTALS = table.region("totals", lambda rows, columns: rows)
>>> END = table.end()
>>> SCALE, N_SEEN = table.slots(2)
>>> buf = table.new(3, 2)
>>> table.header_size, len(buf)                     # 7 header slots, 6 cells, 3 totals
(7, 16)
>>> int(buf[CELLS]), int(buf[TOTALS]), int(buf[END])  # the table of contents
(7, 13, 16)
>>> {name: view.size for name, view in table.views(buf).items()}
{'cells': 6, 'totals': 3}
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from llvmlite import ir
from numba import types
from numba.core.errors import RequireLiteralValue
from numba.extending import intrinsic

__all__ = ["Table", "read_ints"]


class Table:
    """The declaration of a buffer: its shape, header slots and regions, in buffer order.

    Parameters
    ----------
    shape
        Names of the integers the regions' sizes depend on; they take the first header slots,
        in this order, and every region's size function takes them in this order.
    """

    def __init__(self, *shape: str) -> None:
        self.shape = range(len(shape))
        self._shape_names = shape
        self._n_slots = len(shape)
        self._regions: list[tuple[str, int, Callable[..., int]]] = []
        self._end: int | None = None

    def slots(self, n: int) -> range:
        """A block of ``n`` header slots, numbered after every slot declared before it.

        Integers the compiled code reads through ``layout`` are declared before the first
        region; settings and state after :meth:`end`.
        """
        if self._regions and self._end is None:
            raise ValueError("header slots go before the first region or after end()")
        block = range(self._n_slots, self._n_slots + n)
        self._n_slots += n
        return block

    def region(self, name: str, size: Callable[..., int]) -> int:
        """A region of ``size(*shape)`` floats; returns the header slot that holds its start."""
        if self._end is not None:
            raise ValueError(f"region {name!r} is declared after end()")
        if any(name == other for other, _, _ in self._regions):
            raise ValueError(f"region {name!r} is declared twice")
        slot = self._n_slots
        self._n_slots += 1
        self._regions.append((name, slot, size))
        return slot

    def end(self) -> int:
        """Close the table of contents; returns the slot that holds the buffer's length.

        Every slot up to this one is an integer, read by compiled code in one go.
        """
        if self._end is not None:
            raise ValueError("end() is called once")
        self._end = self._n_slots
        self._n_slots += 1
        return self._end

    @property
    def header_size(self) -> int:
        """Slots declared so far: where the first region starts."""
        return self._n_slots

    def _starts(self, shape: tuple[int, ...]) -> list[int]:
        if len(shape) != len(self._shape_names):
            raise TypeError(f"the shape is {self._shape_names}, got {shape}")
        starts = [self.header_size]
        for _, _, size in self._regions:
            starts.append(starts[-1] + int(size(*shape)))
        return starts

    def size(self, *shape: int) -> int:
        """Length of a buffer of this shape."""
        return self._starts(shape)[-1]

    def new(self, *shape: int) -> np.ndarray:
        """A zeroed buffer of this shape, with its shape and table of contents written."""
        if self._end is None:
            raise ValueError("the table is not closed: call end() after the last region")
        starts = self._starts(shape)
        buf = np.zeros(starts[-1])
        buf[self.shape] = shape
        for (_, slot, _), start in zip(self._regions, starts, strict=False):
            buf[slot] = start
        buf[self._end] = starts[-1]
        return buf

    def views(self, buf: np.ndarray) -> dict[str, np.ndarray]:
        """Every region of ``buf`` by name, as a flat view (writes go through to ``buf``)."""
        bounds = [int(buf[slot]) for _, slot, _ in self._regions]
        bounds.append(int(buf[self._end]))  # type: ignore[index]
        return {
            name: buf[bounds[i] : bounds[i + 1]] for i, (name, _, _) in enumerate(self._regions)
        }

    def view(self, buf: np.ndarray, region: int) -> np.ndarray:
        """One region of ``buf`` (``region`` is the slot :meth:`region` returned)."""
        return buf[int(buf[region]) : int(buf[region + 1])]


@intrinsic(prefer_literal=True)
def read_ints(typingctx, buf, last):  # type: ignore[no-untyped-def]
    """Entries ``0 .. last`` of a ``float64`` array as a tuple of integers.

    ``last`` must be a compile-time constant (a table's ``END`` slot). Compiled code calls this
    once per call to read a buffer's shape and table of contents (see :class:`Table`); the loads
    are straight-line, about 5 ns for 30 entries, where numba's own ``to_fixed_tuple`` loops
    and costs ten times that.
    """
    if not isinstance(last, types.IntegerLiteral):
        raise RequireLiteralValue("read_ints needs a constant index")
    count = last.literal_value + 1
    result = types.UniTuple(types.intp, count)

    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        array = context.make_array(signature.args[0])(context, builder, args[0])
        integer = context.get_value_type(types.intp)
        out = context.get_constant_undef(result)
        for i in range(count):
            pointer = builder.gep(array.data, [ir.Constant(integer, i)])
            out = builder.insert_value(out, builder.fptosi(builder.load(pointer), integer), i)
        return out

    return result(buf, last), codegen
