"""Encode: a processed tick and its detector output become the output record's JSON bytes.

Owns the writing of output records, for the service and ``streamgmm replay`` alike. What a
record holds (field names, JSON types, the null and no-rounding rules) is not decided here but
in :mod:`streamgmm.ticks.record`; both encoders below are derived from its :data:`RECORD_FIELDS`:

- :func:`build_output_record` builds the record as a plain dict, field by field, and
  :func:`encode_output` writes any such dict as compact JSON (the general path);
- :func:`encode_output_record` writes the same bytes in one f-string, about a third faster,
  which matters at one call per tick. Its source is generated from the schema when this
  module is imported (kept in :data:`ENCODER_SOURCE`); a test holds it byte-equal to the
  general path;
- :func:`encode_output_columns` writes a run of records at once from columns (the source
  fields of a :class:`~streamgmm.ticks.tick.TickBlock`, the detector's outputs in column
  form): each field's values are turned into JSON text a column at a time, then each record
  is one f-string. This is what the per-key tick rules (:mod:`.rules`) use; its source is
  generated from the schema too (:data:`COLUMNS_ENCODER_SOURCE`) and a test holds it
  byte-equal to the general path.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import orjson

from streamgmm.ticks.record import (
    DERIVED_FIELDS,
    RECORD_FIELDS,
    SOURCE_FIELDS,
    finite_or_none,
    iso_time,
    json_value,
    regime_name,
    regime_probabilities,
)
from streamgmm.ticks.tick import Tick

__all__ = [
    "COLUMNS_ENCODER_SOURCE",
    "ENCODER_SOURCE",
    "RUN_ENCODER_SOURCE",
    "build_output_record",
    "encode_output",
    "encode_output_columns",
    "encode_output_record",
    "encode_output_run",
]

_SOURCE_NAMES = frozenset(field.name for field in SOURCE_FIELDS)


def build_output_record(
    tick: Tick, out: Mapping[str, Any], names: Sequence[str] | None = None
) -> dict[str, Any]:
    """The JSON-safe output record of one processed tick, as a dict.

    Parameters
    ----------
    tick
        The decoded tick (gives the source fields: key, ts, topic, partition, offset).
    out
        The detector's output for it (``learn_predict_one``'s result).
    names
        The regimes' names (``[output] regime_names``); None: the default names for the
        number of regimes in ``out``.

    Returns
    -------
    dict
        The keys of :data:`streamgmm.ticks.record.RECORD_KEYS`, with plain JSON-safe values.
    """

    def value(name: str) -> object:
        if name in _SOURCE_NAMES:
            return getattr(tick, name)
        if name == "time":
            return tick.ts
        if name == "regime_name":
            return regime_name(out["regime"], names, len(out["probabilities"]))
        return out[name]

    return {field.name: json_value(field, value(field.name)) for field in RECORD_FIELDS}


_OUTPUT_JSON = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)
# The C encoder json.dumps builds internally, with the same arguments. json.dumps constructs a
# JSONEncoder and re-derives these on every call, a sizeable share of the cost of one output
# record; building only the C encoder per call keeps a fresh circular-reference table.
_c_make_encoder: Any = json.encoder.c_make_encoder  # type: ignore[attr-defined]
# JSON string literal of a str, as json.dumps(..., ensure_ascii=False) writes it (C version).
_json_string = json.encoder.encode_basestring


def encode_output(record: dict[str, Any]) -> bytes:
    """Compact UTF-8 JSON for an output record; non-finite floats are refused, not emitted."""
    if _c_make_encoder is None or type(record) is not dict:
        return _OUTPUT_JSON.encode(record).encode("utf-8")
    # Arguments: markers, default, string encoder, indent, key and item separators,
    # sort_keys, skipkeys, allow_nan.
    encoder = _c_make_encoder(
        {}, _OUTPUT_JSON.default, _json_string, None, ":", ",", False, False, False
    )
    return "".join(encoder(record, 0)).encode("utf-8")


# --------------------------------------------------------------------------- the fast path
# One writer per JSON kind of streamgmm.regime.output.KINDS, each giving the exact text json.dumps
# gives for the value json_value() makes of it.


def _json_number(value: object) -> str:
    # json writes a finite float as float.__repr__; x - x is 0.0 only for finite floats.
    if type(value) is float and value - value == 0.0:
        return repr(value)
    number = finite_or_none(value)
    return "null" if number is None else repr(number)


def _json_time(ts: object) -> str:
    text = iso_time(ts)  # type: ignore[arg-type]
    return "null" if text is None else f'"{text}"'


def _json_regime_name(
    regime: object, names: Sequence[str] | None, probabilities: Mapping[Any, Any]
) -> str:
    if type(regime) is int and (names is None or type(names) is tuple):
        return _json_regime_name_of(regime, names, len(probabilities))
    return _json_string(regime_name(regime, names, len(probabilities)))


@functools.lru_cache(maxsize=256)
def _json_regime_name_of(regime: int, names: tuple[str, ...] | None, n_regimes: int) -> str:
    """:func:`_json_regime_name` of an int id and hashable names, written once per id."""
    return _json_string(regime_name(regime, names, n_regimes))


def _json_probabilities(probabilities: Mapping[Any, Any]) -> str:
    if len(probabilities) == 2:
        # The usual record: regimes 0 and 1 with finite float probabilities.
        (r0, p0), (r1, p1) = probabilities.items()
        if (
            r0 == 0 and r1 == 1
            and type(p0) is float and p0 - p0 == 0.0
            and type(p1) is float and p1 - p1 == 0.0
        ):  # fmt: skip
            return f'{{"0":{p0!r},"1":{p1!r}}}'
    # Otherwise the record's own mapping; the keys are decimal digits, which need no escaping.
    items = regime_probabilities(probabilities).items()
    return "{" + ",".join(f'"{k}":{"null" if p is None else repr(p)}' for k, p in items) + "}"


# Each kind's text as an f-string replacement field around the value's expression.
_WRITERS = {
    "string": "{_json_string(%s)}",
    # A finite float written in place (the usual value), anything else by _json_number: a
    # function call per number is a measurable share of a record.
    "number": "{(repr(_n) if type(_n := %s) is float and _n - _n == 0.0 else _json_number(_n))}",
    "integer": "{int(%s)}",
    "boolean": '{"true" if %s else "false"}',
    "probabilities": "{_json_probabilities(%s)}",
    "time": "{_json_time(%s)}",
    "regime_name": '{_json_regime_name(%s, names, out["probabilities"])}',
}
#: What a derived field is made of, in the per-record encoder.
_DERIVED_FROM = {"time": "tick.ts", "regime_name": 'out["regime"]'}


def _encoder_source() -> str:
    parts = []
    for field in RECORD_FIELDS:
        if field.name in _DERIVED_FROM:
            value = _DERIVED_FROM[field.name]
        elif field.name in _SOURCE_NAMES:
            value = f"tick.{field.name}"
        else:
            value = f'out["{field.name}"]'
        parts.append(f'"{field.name}":' + _WRITERS[field.kind] % value)
    # {{ and }} are the record's own braces inside the f-string.
    template = "{{" + ",".join(parts) + "}}"
    return f"def encode_output_record(tick, out, names=None):\n    return f'{template}'.encode()\n"


#: Source of :func:`encode_output_record`, generated from :data:`RECORD_FIELDS`.
ENCODER_SOURCE = _encoder_source()


def _compile_encoder() -> Callable[..., bytes]:
    namespace: dict[str, Any] = {
        "_json_string": _json_string,
        "_json_number": _json_number,
        "_json_probabilities": _json_probabilities,
        "_json_time": _json_time,
        "_json_regime_name": _json_regime_name,
    }
    exec(compile(ENCODER_SOURCE, f"<{__name__} encoder>", "exec"), namespace)
    encoder: Callable[..., bytes] = namespace["encode_output_record"]
    encoder.__doc__ = (
        "The output record as UTF-8 JSON, without building it as a dict first.\n\n"
        "Byte for byte ``encode_output(build_output_record(tick, out, names))``."
    )
    encoder.__module__ = __name__
    return encoder


encode_output_record = _compile_encoder()


# --------------------------------------------------------------------------- a key's run
#: Source fields one key's run of ticks shares (one key, from one partition of one topic):
#: :func:`encode_output_run` writes each of them once per run.
_RUN_CONSTANTS = ("key", "topic", "partition")


def _run_encoder_source() -> str:
    parts = []
    for field in RECORD_FIELDS:
        if field.name in _RUN_CONSTANTS:
            parts.append(f'"{field.name}":{{_c_{field.name}}}')
            continue
        if field.name in _DERIVED_FROM:
            value = _DERIVED_FROM[field.name]
        elif field.name in _SOURCE_NAMES:
            value = f"tick.{field.name}"
        else:
            value = f'out["{field.name}"]'
        parts.append(f'"{field.name}":' + _WRITERS[field.kind] % value)
    template = "{{" + ",".join(parts) + "}}"
    constants = {
        name: ("_json_string(first.%s)" if kind == "string" else "int(first.%s)") % name
        for name, kind in ((f.name, f.kind) for f in SOURCE_FIELDS if f.name in _RUN_CONSTANTS)
    }
    return (
        "def encode_output_run(ticks, outs, names=None):\n"
        "    if not ticks:\n"
        "        return []\n"
        "    first = ticks[0]\n"
        "    key, topic, partition = first.key, first.topic, first.partition\n"
        + "".join(f"    _c_{name} = {text}\n" for name, text in constants.items())
        + "    written = []\n"
        "    append = written.append\n"
        "    for tick, out in zip(ticks, outs, strict=True):\n"
        "        if tick.key != key or tick.topic != topic or tick.partition != partition:\n"
        "            append(encode_output_record(tick, out, names))\n"
        "            continue\n"
        f"        append(f'{template}'.encode())\n"
        "    return written\n"
    )


#: Source of :func:`encode_output_run`, generated from :data:`RECORD_FIELDS`.
RUN_ENCODER_SOURCE = _run_encoder_source()


def _compile_run_encoder() -> Callable[..., list[bytes]]:
    namespace: dict[str, Any] = {
        "_json_string": _json_string,
        "_json_number": _json_number,
        "_json_probabilities": _json_probabilities,
        "_json_time": _json_time,
        "_json_regime_name": _json_regime_name,
        "encode_output_record": encode_output_record,
    }
    exec(compile(RUN_ENCODER_SOURCE, f"<{__name__} run encoder>", "exec"), namespace)
    encoder: Callable[..., list[bytes]] = namespace["encode_output_run"]
    encoder.__doc__ = (
        "The output records of a run of ticks with their outputs, as UTF-8 JSON.\n\n"
        "Byte for byte ``[encode_output_record(t, o, names) for t, o in zip(ticks, outs)]``; "
        "the key, topic and partition a run shares are written once."
    )
    encoder.__module__ = __name__
    return encoder


encode_output_run = _compile_run_encoder()


# --------------------------------------------------------------------------- columns
# One writer per JSON kind again, now for a whole column: the JSON text of each value, as
# json_value() and json.dumps would write it. A source field of a block can be one value for
# every record (key, topic, partition): it is written once.


_COLUMN_TYPES = (list, tuple, np.ndarray)
#: The column types whose values are Python objects (``count`` compares them as ``==`` does).
_SEQUENCES = (list, tuple)
#: Below this many values, a column of numbers is written value by value: a run of a few ticks
#: (the service's usual poll holds a few per key) would spend more on NumPy's per-call costs.
_SHORT = 48


def _is_column(value: object) -> bool:
    return isinstance(value, _COLUMN_TYPES)


def _string_texts(value: Any, n: int) -> list[str]:
    if not _is_column(value):
        return [_json_string(str(value))] * n
    if type(value) in _SEQUENCES and value and value.count(value[0]) == len(value):
        # One value for every record (a batch's topic, usually): written once.
        first = value[0]
        if type(first) is str:
            return [_json_string(first)] * len(value)
    return list(map(_json_string, map(str, value)))


def _number_texts(value: Any, n: int) -> list[str]:
    if not _is_column(value):
        return [_json_number(value)] * n
    array = _float_array(value) if len(value) >= _SHORT else None
    if array is None:
        return [_json_number(v) for v in (value.tolist() if type(value) is np.ndarray else value)]
    # orjson writes each float's shortest round-trip digits, as repr() does (and null for a
    # non-finite one), a column at once. Its text differs from repr's only below 1e-4: those
    # are rewritten (_repr_small), eight times faster than repr() (probabilities near 0 are
    # common).
    texts = orjson.dumps(array, option=orjson.OPT_SERIALIZE_NUMPY)[1:-1].decode().split(",")
    magnitude = np.abs(array)
    small = np.flatnonzero((magnitude < 1e-4) & (magnitude > 0.0))
    for i in small.tolist():
        texts[i] = _repr_small(texts[i])
    return texts


def _repr_small(text: str) -> str:
    """repr()'s text of a float below 1e-4 in magnitude from orjson's, the same digits:
    repr writes the exponent with at least two digits ("1.5e-07" for orjson's "1.5e-7"), and
    an exponent where orjson writes 1e-5 to 1e-4 positionally ("1.25e-05" for "0.0000125")."""
    e = text.find("e")
    if e >= 0:
        return text if len(text) - e > 3 else f"{text[: e + 2]}0{text[e + 2 :]}"
    sign = "-" if text[0] == "-" else ""
    digits = text[len(sign) + 6 :]  # after "0.0000": the first is not 0 (|x| >= 1e-5)
    return f"{sign}{digits[0]}.{digits[1:]}e-05" if len(digits) > 1 else f"{sign}{digits}e-05"


def _float_array(value: Any) -> np.ndarray | None:
    """The column as a flat float64 array, or None when it is not one of plain numbers."""
    try:
        array = np.ascontiguousarray(value, dtype=np.float64)
    except (TypeError, ValueError, OverflowError):
        return None
    return array if array.shape == (len(value),) else None


def _integer_texts(value: Any, n: int) -> list[str]:
    if not _is_column(value):
        return [str(int(value))] * n
    if not len(value):
        return []
    if type(value) in _SEQUENCES and value.count(value[0]) == len(value):
        # One value for every record (a batch's partition, usually): written once.
        return [str(int(value[0]))] * len(value)
    if isinstance(value, np.ndarray) and value.dtype.kind not in "iu":
        value = value.tolist()
    # orjson writes ints (a list of them, or an int array) as their decimal digits, as str()
    # does, a column at once: about four times faster. Anything else (a bool, a float, None, a
    # string) it writes with other characters, and what it cannot write it refuses: then
    # int() of each value.
    try:
        text = orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY)
    except TypeError:  # orjson.JSONEncodeError
        text = b""
    if text.translate(None, b"0123456789-,") != b"[]":
        return list(map(str, map(int, value)))
    return text[1:-1].decode().split(",")


def _boolean_texts(value: Any, n: int) -> list[str]:
    if not _is_column(value):
        return ["true" if value else "false"] * n
    if isinstance(value, np.ndarray):
        value = value.tolist()
    return ["true" if v else "false" for v in value]


def _probabilities_texts(columns: Sequence[Any], n: int) -> list[str]:
    """``{"0":p0,"1":p1,...}`` per record from the per-regime columns."""
    texts = [_number_texts(column, n) for column in columns]
    if len(texts) == 2:
        return [f'{{"0":{a},"1":{b}}}' for a, b in zip(*texts, strict=True)]
    if not texts:
        return ["{}"] * n
    prefixes = [f'"{r}":' for r in range(len(texts))]
    return [
        "{" + ",".join(map(str.__add__, prefixes, values)) + "}"
        for values in zip(*texts, strict=True)
    ]


# Seconds of 0001-01-01 and 10000-01-01 since the epoch: the dates ISO-8601 text is written for.
_FIRST_SECOND, _PAST_LAST_SECOND = -62135596800.0, 253402300800.0
#: "00" to "99", each as the two bytes of a uint16 (native order, as the texts are written).
_DIGIT_PAIRS = np.frombuffer("".join(f"{i:02d}" for i in range(100)).encode(), dtype=np.uint16)
#: Where each pair of digits goes in a record's ``"YYYY-MM-DDTHH:MM:SS.ffffffZ"`` text: the
#: century, the year in it, month, day, hour, minute, second, and the fraction's three pairs.
_PAIR_AT = {
    "c": 1, "y": 3, "mo": 6, "d": 9, "h": 12, "mi": 15, "s": 18, "f0": 21, "f1": 23, "f2": 25
}  # fmt: skip


def _time_layout(text: str) -> tuple[np.dtype[Any], bytes]:
    """A record's time text with a newline after it, and the dtype of its pairs of digits."""
    width = len(text) + 1
    at = {name: i for name, i in _PAIR_AT.items() if i < width - 3}
    dtype = np.dtype(
        {"names": list(at), "formats": [np.uint16] * len(at), "offsets": list(at.values()),
         "itemsize": width}
    )  # fmt: skip
    return dtype, f"{text}\n".encode()


_WHOLE_TIME = _time_layout('"0000-00-00T00:00:00Z"')
_FRACTION_TIME = _time_layout('"0000-00-00T00:00:00.000000Z"')


def _time_texts(value: Any, n: int) -> list[str]:
    """The ``time`` of each record from its ``ts``."""
    if not _is_column(value):
        return [_json_time(value)] * n
    array = _float_array(value) if len(value) >= _SHORT else None
    if array is None:
        return [_json_time(v) for v in (value.tolist() if type(value) is np.ndarray else value)]
    return _time_column(array)


def _time_column(ts: np.ndarray) -> list[str]:
    """:func:`_json_time` of each value, a column at once: the digits are written into one
    byte buffer of fixed-width texts, then split. Four times faster for fractional seconds,
    twice for whole ones, than value by value."""
    # As iso_time: the microseconds rounded half to even (Python's round and NumPy's rint
    # agree), a million of them carried into the second.
    with np.errstate(invalid="ignore"):
        whole = np.floor(ts)
        micro = np.rint((ts - whole) * 1e6)
    carried = micro == 1e6
    whole[carried] += 1.0
    micro[carried] = 0.0
    valid = (whole >= _FIRST_SECOND) & (whole < _PAST_LAST_SECOND)  # False for NaN and inf
    every_valid = bool(valid.all())
    if not every_valid:
        whole[~valid] = 0.0
        micro[~valid] = 0.0
    days, second = np.divmod(whole.astype(np.int64), 86400)
    dates = days.astype("datetime64[D]")
    months = dates.astype("datetime64[M]")
    century, year = np.divmod(months.astype("datetime64[Y]").astype(np.int64) + 1970, 100)
    hour, second = np.divmod(second, 3600)
    minute, second = np.divmod(second, 60)
    fraction = bool(micro.any())
    dtype, text = _FRACTION_TIME if fraction else _WHOLE_TIME
    rows = np.frombuffer(bytearray(text * ts.size), dtype=dtype)
    pairs = _DIGIT_PAIRS
    rows["c"], rows["y"] = pairs[century], pairs[year]
    rows["mo"] = pairs[months.astype(np.int64) % 12 + 1]
    rows["d"] = pairs[(dates - months).astype(np.int64) + 1]
    rows["h"], rows["mi"], rows["s"] = pairs[hour], pairs[minute], pairs[second]
    if fraction:
        micro = micro.astype(np.int64)
        f0, rest = np.divmod(micro, 10_000)
        f1, f2 = np.divmod(rest, 100)
        rows["f0"], rows["f1"], rows["f2"] = pairs[f0], pairs[f1], pairs[f2]
        # The fraction's trailing zeros are dropped, and its point when it is zero: blanked
        # as NUL bytes, then removed from the whole text at once.
        chars = rows.view(np.uint8).reshape(ts.size, dtype.itemsize)
        digits = chars[:, 21:27]
        digits[np.logical_and.accumulate(digits[:, ::-1] == ord("0"), axis=1)[:, ::-1]] = 0
        chars[micro == 0, 20] = 0
        texts = rows.tobytes().decode("ascii").replace("\0", "").split("\n")
    else:
        texts = rows.tobytes().decode("ascii").split("\n")
    texts.pop()  # after the last newline
    if not every_valid:
        for i in np.flatnonzero(~valid).tolist():
            texts[i] = "null"
    return texts


def _regime_texts(
    regimes: Any, names: Sequence[str] | None, probabilities: Sequence[Any], n: int, separator: str
) -> list[str]:
    """``regime + separator + regime_name`` of each record (the two fields in a row): written
    once per regime id, then looked up."""
    n_regimes = len(probabilities)

    def text(r: Any) -> str:
        return f"{int(r)}{separator}{_json_string(regime_name(r, names, n_regimes))}"

    if not _is_column(regimes):
        return [text(regimes)] * n
    texts = [text(r) for r in range(n_regimes)]
    if isinstance(regimes, np.ndarray):
        regimes = regimes.tolist()
    return [texts[r] if type(r) is int and 0 <= r < n_regimes else text(r) for r in regimes]


_COLUMN_WRITERS = {
    "string": "_string_texts",
    "number": "_number_texts",
    "integer": "_integer_texts",
    "boolean": "_boolean_texts",
    "probabilities": "_probabilities_texts",
    "time": "_time_texts",
    "regime_name": "_regime_texts",
}
#: What a derived field is made of, in the columns encoder (regime_name: with its regime).
_DERIVED_COLUMNS = {"time": 'source["ts"], n'}


def _columns_encoder_source() -> str:
    derived = {f.name for f in DERIVED_FIELDS.values()}
    count = next(
        f.name
        for f in RECORD_FIELDS
        if f.name not in _SOURCE_NAMES and f.name not in derived and f.kind != "probabilities"
    )

    def value(field: Any) -> str:
        return f'{"source" if field.name in _SOURCE_NAMES else "columns"}["{field.name}"]'

    # One column of texts per field (the call writing it); a regime and its name, one column
    # (written once per regime id): one replacement field less in the record's f-string.
    segments: list[tuple[str, str, str | None]] = []  # (field name, call, mapping's columns)
    fields = list(RECORD_FIELDS)
    i = 0
    while i < len(fields):
        field = fields[i]
        after = fields[i + 1] if i + 1 < len(fields) else None
        if after is not None and after.kind == "regime_name":
            separator = f',"{after.name}":'
            call = (
                f"{_COLUMN_WRITERS['regime_name']}({value(field)}, names, "
                f'columns["probabilities"], n, {separator!r})'
            )
            i += 1
        elif field.name in _DERIVED_COLUMNS:
            call = f"{_COLUMN_WRITERS[field.kind]}({_DERIVED_COLUMNS[field.name]})"
        else:
            call = f"{_COLUMN_WRITERS[field.kind]}({value(field)}, n)"
        mapping = value(field) if field.kind == "probabilities" else None
        segments.append((field.name, call, mapping))
        i += 1

    def records(columns: list[str], parts: list[str]) -> str:
        loop = ", ".join(f"v{c[1:]}" for c in columns)
        template = "{{" + ",".join(parts) + "}}"
        return (
            f"return [f'{template}'.encode() for {loop} in zip({', '.join(columns)}, strict=True)]"
        )

    lines = [
        "def encode_output_columns(source, columns, names=None):",
        f'    n = len(columns["{count}"])',
    ]
    lines += [f"    t{j} = {call}" for j, (_, call, mapping) in enumerate(segments) if not mapping]
    # Where every mapping of regime probabilities holds two (the usual detector): one column
    # per regime, written in the record's own f-string, no text per mapping first.
    mappings = [(j, m) for j, (_, _, m) in enumerate(segments) if m]
    if mappings:
        lines.append(f"    if {' and '.join(f'len({m}) == 2' for _, m in mappings)}:")
        columns, parts = [], []
        for j, (name, _, mapping) in enumerate(segments):
            if mapping:
                lines += [f"        t{j}_{r} = _number_texts({mapping}[{r}], n)" for r in (0, 1)]
                columns += [f"t{j}_0", f"t{j}_1"]
                parts.append(f'"{name}":{{{{"0":{{v{j}_0}},"1":{{v{j}_1}}}}}}')
            else:
                columns.append(f"t{j}")
                parts.append(f'"{name}":{{v{j}}}')
        lines.append("        " + records(columns, parts))
    lines += [f"    t{j} = {call}" for j, (_, call, mapping) in enumerate(segments) if mapping]
    lines.append(
        "    "
        + records(
            [f"t{j}" for j in range(len(segments))],
            [f'"{name}":{{v{j}}}' for j, (name, _, _) in enumerate(segments)],
        )
    )
    return "\n".join(lines) + "\n"


#: Source of :func:`encode_output_columns`, generated from :data:`RECORD_FIELDS`.
COLUMNS_ENCODER_SOURCE = _columns_encoder_source()


def _compile_columns_encoder() -> Callable[..., list[bytes]]:
    namespace: dict[str, Any] = {name: globals()[name] for name in _COLUMN_WRITERS.values()}
    exec(compile(COLUMNS_ENCODER_SOURCE, f"<{__name__} columns encoder>", "exec"), namespace)
    encoder: Callable[..., list[bytes]] = namespace["encode_output_columns"]
    encoder.__doc__ = (
        "A run of output records as UTF-8 JSON, one bytes object per record.\n\n"
        "``source`` maps each source field (key, ts, topic, partition, offset) to one value for\n"
        "every record or to a column (a list, tuple or NumPy array); ``columns`` holds the\n"
        "detector's outputs in column form (:func:`streamgmm.regime.output.make_output_columns`);\n"
        "``names`` the regimes' names (None: the default names).\n"
        "Record ``j`` is byte for byte\n"
        "``encode_output(build_output_record(tick_j, out_j, names))``."
    )
    encoder.__module__ = __name__
    return encoder


encode_output_columns = _compile_columns_encoder()
