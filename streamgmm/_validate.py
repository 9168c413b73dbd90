"""Checks for values read from stored state: types, shapes and bounds, before any allocation.

A state dict comes from a changelog topic or a file, so it is untrusted input. Every
``from_state`` reads it through these functions, which raise :class:`ValueError` naming the
path of the offending entry (``"hmm.filtered[1]"``) and its value, and never build an array
whose shape they have not checked against bounds first. Strings are never numbers here, and
neither are booleans.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = ["fields", "flag", "integer", "matrix", "number", "optional_number"]

#: Counters are stored as floats inside the compiled state: beyond 2**53 they lose integers.
MAX_COUNT = 2**53


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def fields(path: str, state: Any, required: Sequence[str], optional: Sequence[str] = ()) -> None:
    """``state`` is a dict with every required key, only known keys, all keys strings."""
    if not isinstance(state, Mapping):
        raise ValueError(f"{path} must be an object, got {type(state).__name__}")
    missing = [k for k in required if k not in state]
    if missing:
        raise ValueError(f"{path} lacks {', '.join(repr(k) for k in missing)}")
    known = set(required) | set(optional)
    unknown = [k for k in state if k not in known]
    if unknown:
        shown = ", ".join(_show(k) for k in unknown[:5])
        raise ValueError(f"{path} has unknown field(s) {shown}")


def number(
    path: str,
    value: Any,
    *,
    lo: float = -math.inf,
    hi: float = math.inf,
    lo_open: bool = False,
) -> float:
    """A finite real number (int or float, not bool or str) within ``[lo, hi]``.

    With ``lo_open`` the lower bound is excluded.
    """
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{path} must be a number, got {_show(value)}")
    try:
        v = float(value)
    except OverflowError:
        raise ValueError(f"{path} is out of range, got {_show(value)}") from None
    if not math.isfinite(v):
        raise ValueError(f"{path} must be finite, got {_show(value)}")
    if v < lo or v > hi or (lo_open and v == lo):
        bound = f"({lo}" if lo_open else f"[{lo}"
        raise ValueError(f"{path} must be in {bound}, {hi}], got {_show(value)}")
    return v


def optional_number(path: str, value: Any, **bounds: Any) -> float | None:
    """None, or :func:`number`."""
    return None if value is None else number(path, value, **bounds)


def integer(path: str, value: Any, *, lo: int = 0, hi: int = MAX_COUNT) -> int:
    """An int (not bool, not a float) within ``[lo, hi]``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{path} must be an integer, got {_show(value)}")
    if not lo <= value <= hi:
        raise ValueError(f"{path} must be in [{lo}, {hi}], got {_show(value)}")
    return int(value)


def flag(path: str, value: Any) -> bool:
    """A JSON boolean."""
    if not isinstance(value, bool):
        raise ValueError(f"{path} must be true or false, got {_show(value)}")
    return value


def matrix(
    path: str,
    value: Any,
    shape: tuple[int, ...],
    *,
    lo: float = -math.inf,
    hi: float = math.inf,
) -> np.ndarray:
    """Nested lists of exactly ``shape`` holding :func:`number` values in ``[lo, hi]``.

    The shape is checked level by level before any value is converted, so a short document
    cannot make this allocate more than ``prod(shape)`` floats.
    """
    flat: list[float] = []

    def walk(node: Any, where: str, depth: int) -> None:
        if depth == len(shape):
            flat.append(number(where, node, lo=lo, hi=hi))
            return
        if not isinstance(node, list):
            raise ValueError(f"{where} must be a list, got {type(node).__name__}")
        if len(node) != shape[depth]:
            raise ValueError(f"{where} must have {shape[depth]} entries, got {len(node)}")
        for i, child in enumerate(node):
            walk(child, f"{where}[{i}]", depth + 1)

    walk(value, path, 0)
    return np.array(flat, dtype=np.float64).reshape(shape)
