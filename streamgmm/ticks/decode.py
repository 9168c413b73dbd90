"""Decode: a record's bytes become a validated :class:`~.tick.Tick` or a
:class:`~.tick.DeadLetter`.

Owns the input format and every rule a tick must pass before it reaches its key: the first
step of the tick path, decode -> rules (:mod:`.rules`) -> encode (:mod:`.encode`).

Input values are JSON objects. Market ticks look like
``{"symbol": "SPX", "ts": 1700000000.0, "price": 4500.25, "volume": 1200}`` and event ticks
like ``{"ts": "2024-03-01T12:00:00Z", "<field>": 1.5, ...}`` with the configured fields.
``ts`` is a number or an ISO-8601 string. A number is in ``[input] ts_unit``; by default its
unit is read from its size (:data:`AUTO_TS_UNITS`: epoch seconds, milliseconds,
microseconds or nanoseconds), and a tick's ``ts`` is in seconds from then on. An ISO string
without an offset is taken as UTC, and a date alone (``2024-03-01``) is midnight UTC.

A record that cannot be used becomes a dead letter with one of the stable reasons in
:data:`~.tick.REASONS`; those strings are metric labels and dead-letter headers, so they never
change meaning. Nothing here raises on bad input, whatever its bytes.

Each rule has its home here, also for ``streamgmm replay``'s column-at-a-time path, which asks
:meth:`TickDecoder.seconds`, :meth:`TickDecoder.refused_rows`, :meth:`TickDecoder.key_is_usable`
and :meth:`TickDecoder.record_fits` instead of checking on its own.
"""

from __future__ import annotations

import json
import math
from collections.abc import Collection, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, NamedTuple, cast

import numpy as np
import orjson

from streamgmm.settings.service import Settings
from streamgmm.ticks.tick import DeadLetter, Tick, short_repr

__all__ = [
    "AUTO_TS_UNITS",
    "MARKET_FIELDS",
    "TS_DIVISORS",
    "Floor",
    "TickDecoder",
    "group_by_key",
    "non_finite_literal",
    "ts_unit_of",
]


class _Reject(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


class Floor(NamedTuple):
    """A field's lower bound, and the reason a tick whose value is past it is dead-lettered."""

    reason: str
    bound: float
    inclusive: bool

    def holds(self, value: Any) -> Any:
        """Whether ``value`` is within the bound (elementwise for an array)."""
        return value >= self.bound if self.inclusive else value > self.bound

    def detail(self, name: str, value: float) -> str:
        relation = ">=" if self.inclusive else ">"
        return f"{name} must be {relation} {self.bound:g}, got {short_repr(value)}"


#: The value fields of a market tick: name, whether required, and its floor. An optional field
#: that is absent or JSON null is left out of the tick.
MARKET_FIELDS: tuple[tuple[str, bool, Floor | None], ...] = (
    ("price", True, Floor("non_positive_price", 0.0, inclusive=False)),
    ("volume", False, Floor("negative_volume", 0.0, inclusive=True)),
)


def _literal_detail(name: str) -> str:
    return f"non-finite literal {name} in JSON"


def non_finite_literal(
    key: bytes | None, name: str, topic: str, partition: int, offset: int
) -> DeadLetter:
    """The dead letter of a record whose JSON value holds ``name`` (``NaN``, ``Infinity`` or
    ``-Infinity``, the first of them) as a literal, as :meth:`TickDecoder.decode` makes it
    (without the value bytes)."""
    return DeadLetter(key, None, "non_finite", _literal_detail(name), topic, partition, offset)


def _reject_constant(name: str) -> float:
    # Python's json accepts the non-standard NaN / Infinity / -Infinity literals by default.
    raise _Reject("non_finite", _literal_detail(name))


# One decoder for every record: json.loads(..., parse_constant=...) builds a new one per call.
_JSON_DECODER = json.JSONDecoder(parse_constant=_reject_constant)


#: orjson reads an integer literal past 64 bits as a float; Python's json keeps it an int.
_INT64_BOUND = float(2**63)
_PLAIN = (str, float, int, bool, type(None))


def _fast_parse(value: bytes) -> dict[str, Any] | None:
    """``value`` parsed by orjson when that gives exactly what :data:`_JSON_DECODER` gives,
    else None (the caller parses with the latter, which also words any refusal).

    orjson refuses what Python's json reads differently (``NaN``, numbers overflowing a
    float, lone surrogates, invalid UTF-8); of what it accepts, only integers past 64 bits
    differ (read as floats), so a result with a float that large, or with a value that
    could hold one nested, is not taken.
    """
    try:
        obj = orjson.loads(value)
    except orjson.JSONDecodeError:
        return None
    if type(obj) is not dict or not _plain(obj):
        return None
    return obj


def _plain(obj: dict[str, Any]) -> bool:
    """Whether orjson's parse ``obj`` is what Python's json gives: plain values only, and no
    float that may have been an integer past 64 bits."""
    for item in obj.values():
        kind = type(item)
        if kind is float:
            if not -_INT64_BOUND < item < _INT64_BOUND:
                return False
        elif kind not in _PLAIN:
            return False
    return True


def _number(obj: dict[str, Any], name: str) -> float:
    raw = obj[name]
    # The usual case first: a finite float (x - x is 0.0 for those only).
    if type(raw) is float and raw - raw == 0.0:
        return raw
    # bool is an int subclass in Python, but true is not a price; strings are not numbers.
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        raise _Reject("wrong_type", f"field {name!r} must be a number, got {short_repr(raw)}")
    try:
        value = float(raw)
    except OverflowError:
        raise _Reject(
            "non_finite", f"field {name!r} overflows a float: {short_repr(raw)}"
        ) from None
    if not math.isfinite(value):
        raise _Reject("non_finite", f"field {name!r} is not finite: {short_repr(raw)}")
    return value


#: The units of a numeric ts, as what it is divided by to give seconds (``[input] ts_unit``).
TS_DIVISORS: dict[str, float] = {"s": 1.0, "ms": 1e3, "us": 1e6, "ns": 1e9}
#: ``ts_unit = "auto"``: a numeric ts whose size is below a bound is in that bound's unit, so
#: times since the epoch from 1973 (1e11 ms) to 5138 (1e11 s) are read right in each unit. A
#: larger one is taken as seconds (and is far in the future: the ``ts_jump`` rule's to judge).
AUTO_TS_UNITS: tuple[tuple[float, str], ...] = (
    (1e11, "s"),
    (1e14, "ms"),
    (1e17, "us"),
    (1e20, "ns"),
)
_AUTO_SECONDS_BELOW = AUTO_TS_UNITS[0][0]


def ts_unit_of(value: float) -> str:
    """The unit ``ts_unit = "auto"`` reads a numeric ts of this value in."""
    size = abs(value)
    return next((unit for bound, unit in AUTO_TS_UNITS if size < bound), "s")


def _timestamp(obj: dict[str, Any], unit: str) -> float:
    if "ts" not in obj:
        raise _Reject("missing_field", "missing field 'ts'")
    raw = obj["ts"]
    if isinstance(raw, str):
        try:
            moment = datetime.fromisoformat(raw.strip())
        except ValueError:
            raise _Reject(
                "wrong_type",
                f"field 'ts' must be a number or an ISO-8601 time or date, got {short_repr(raw)}",
            ) from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return moment.timestamp()
    value = _number(obj, "ts")
    if unit == "auto":
        if -_AUTO_SECONDS_BELOW < value < _AUTO_SECONDS_BELOW:
            return value
        unit = ts_unit_of(value)
    return value / TS_DIVISORS[unit]


class TickDecoder:
    """Decode and validate raw Kafka records into :class:`Tick` or :class:`DeadLetter`.

    Parameters
    ----------
    settings
        Uses ``tick_kind``, ``event_fields``, ``key_field``, ``ts_unit``, ``max_record_bytes``
        and ``max_key_bytes``.
    """

    def __init__(self, settings: Settings) -> None:
        self.tick_kind = settings.tick_kind
        self.ts_unit = settings.ts_unit
        self.event_fields = tuple(settings.event_fields)
        self.key_field = settings.key_field
        self.max_record_bytes = settings.max_record_bytes
        self.max_key_bytes = settings.max_key_bytes
        #: The value fields a tick reads: (name, required, floor), in the order they are read.
        self.value_fields: tuple[tuple[str, bool, Floor | None], ...] = (
            tuple((name, True, None) for name in self.event_fields)
            if self.tick_kind == "event"
            else MARKET_FIELDS
        )

    @property
    def required_fields(self) -> tuple[str, ...]:
        """The fields every tick must have: ``ts`` and the required value fields."""
        return ("ts", *(name for name, required, _floor in self.value_fields if required))

    def fields_read(self, available: Collection[str]) -> dict[str, Floor | None]:
        """The value fields a tick is read from when its names are ``available``, with their
        floors: the required ones, and each optional one that is available."""
        return {
            name: floor
            for name, required, floor in self.value_fields
            if required or name in available
        }

    def record_fits(self, size: int) -> bool:
        """Whether a record value of ``size`` bytes is within ``max_record_bytes``."""
        return size <= self.max_record_bytes

    def key_is_usable(self, text: str) -> bool:
        """Whether ``text`` passes the instrument key's rules: not blank, and its UTF-8 within
        ``max_key_bytes``."""
        return not _blank(text) and self._key_fits(len(text.encode("utf-8")))

    def seconds(self, ts: np.ndarray) -> np.ndarray:
        """A column of numeric ``ts`` in seconds, each read as :meth:`decode` reads one
        (``[input] ts_unit``)."""
        if self.ts_unit != "auto":
            return ts / TS_DIVISORS[self.ts_unit]
        size = np.abs(ts)
        divisors = [TS_DIVISORS[unit] for _bound, unit in AUTO_TS_UNITS]
        # NaN matches no bound and stays NaN, for refused_rows to refuse.
        return ts / np.select([size < bound for bound, _unit in AUTO_TS_UNITS], divisors, 1.0)

    def refused_rows(self, ts: np.ndarray, fields: Mapping[str, np.ndarray]) -> np.ndarray:
        """Which ticks of numbers given as columns the field rules refuse (elementwise): a
        ``ts`` or a value that is not finite, or a value past its floor. ``fields`` maps names
        of :meth:`fields_read` to their columns."""
        bad = ~np.isfinite(ts)
        floors = self.fields_read(fields)
        for name, values in fields.items():
            bad |= ~np.isfinite(values)
            floor = floors[name]
            if floor is not None:
                bad |= ~floor.holds(values)
        return bad

    def _key_fits(self, size: int) -> bool:
        return size <= self.max_key_bytes

    def decode(
        self, key: bytes | None, value: bytes | None, topic: str, partition: int, offset: int
    ) -> Tick | DeadLetter:
        """Return the tick, or a dead letter naming why the record cannot be used."""
        try:
            # The record key first, whether or not it is the instrument key: it travels in
            # the dead letter, and a record must stay small enough to be dead-lettered.
            if key is not None and not self._key_fits(len(key)):
                raise _Reject("oversized_key", self._key_size_detail(len(key)))
            obj = self._parse(value)
        except _Reject as exc:
            return DeadLetter(key, value, exc.reason, exc.detail, topic, partition, offset)
        return self.decode_parsed(key, obj, topic, partition, offset, value)

    def decode_by_key(
        self, records: Iterable[tuple[bytes | None, bytes | None, int]], topic: str, partition: int
    ) -> tuple[dict[str, list[tuple[Tick, bytes | None]]], list[DeadLetter]]:
        """:meth:`decode` each ``(key, value, offset)`` of one partition, in offset order,
        and :func:`group_by_key` the results: the same ticks and dead letters.

        A record of the usual shape (its record key the instrument, a JSON object of plain
        values whose ``ts`` and value fields are finite floats within their bounds) is read
        here in one go; any other takes :meth:`decode`.
        """
        by_key: dict[str, list[tuple[Tick, bytes | None]]] = {}
        dead: list[DeadLetter] = []
        plain_key = self.key_field is None
        max_key, max_record = self.max_key_bytes, self.max_record_bytes
        divisor = None if self.ts_unit == "auto" else TS_DIVISORS[self.ts_unit]
        # Per value field: name, required, and its floor as (bound, inclusive) (-inf, inclusive:
        # none).
        checks = tuple(
            (name, required, -math.inf, True) if floor is None
            else (name, required, floor.bound, floor.inclusive)
            for name, required, floor in self.value_fields
        )  # fmt: skip
        texts: dict[bytes, str | None] = {}  # record key -> its text, None if unusable
        loads, not_json = orjson.loads, orjson.JSONDecodeError
        for key, value, offset in records:
            tick: Tick | None = None
            if (
                plain_key
                and type(key) is bytes
                and key
                and value is not None
                and len(key) <= max_key
                and len(value) <= max_record
            ):
                try:
                    obj = loads(value)
                except not_json:
                    obj = None
                if type(obj) is dict:
                    text = texts.get(key, "")
                    if text == "":
                        text = texts[key] = _usable_text(key)
                    if text is not None:
                        tick = _usual_tick(obj, text, divisor, checks, topic, partition, offset)
            if tick is None:
                result = self.decode(key, value, topic, partition, offset)
                if type(result) is DeadLetter:
                    dead.append(result)
                    continue
                tick = cast(Tick, result)
            group = by_key.get(tick.key)
            if group is None:
                by_key[tick.key] = [(tick, value)]
            else:
                group.append((tick, value))
        return by_key, dead

    def decode_parsed(
        self,
        key: bytes | None,
        obj: dict[str, Any],
        topic: str,
        partition: int,
        offset: int,
        value: bytes | None = None,
    ) -> Tick | DeadLetter:
        """:meth:`decode` for a value already parsed from JSON into ``obj``.

        ``value`` is the record's bytes when known; a dead letter carries it (else None).
        """
        try:
            tick_key = self._key(key, obj)
            ts = _timestamp(obj, self.ts_unit)
            fields = self._fields(obj)
        except _Reject as exc:
            return DeadLetter(key, value, exc.reason, exc.detail, topic, partition, offset)
        return Tick(tick_key, ts, fields, topic, partition, offset)

    def _parse(self, value: bytes | None) -> dict[str, Any]:
        if value is None:
            raise _Reject("invalid_json", "record has no value")
        # Size first: an oversized record is never parsed, whatever it contains.
        if not self.record_fits(len(value)):
            raise _Reject(
                "oversized", f"value is {len(value)} bytes, limit is {self.max_record_bytes}"
            )
        obj = _fast_parse(value)
        if obj is not None:
            return obj
        try:
            obj = _JSON_DECODER.decode(bytes(value).decode("utf-8"))
        except UnicodeDecodeError as exc:
            raise _Reject("invalid_json", f"value is not UTF-8: {exc.reason}") from None
        except json.JSONDecodeError as exc:
            raise _Reject("invalid_json", f"invalid JSON: {exc}") from None
        except ValueError as exc:
            # Valid JSON Python will not read, e.g. an integer literal of more than 4,300
            # digits (sys.get_int_max_str_digits()).
            raise _Reject("invalid_json", f"JSON this decoder cannot read: {exc}") from None
        except RecursionError:
            raise _Reject("invalid_json", "JSON nested too deeply") from None
        if not isinstance(obj, dict):
            raise _Reject("not_an_object", f"JSON value is a {type(obj).__name__}, not an object")
        return obj

    def _key(self, key: bytes | None, obj: dict[str, Any]) -> str:
        if self.key_field is not None:
            if self.key_field not in obj:
                raise _Reject("missing_field", f"missing key field {self.key_field!r}")
            text = obj[self.key_field]
            if not isinstance(text, str):
                detail = f"key field {self.key_field!r} must be a string, got {short_repr(text)}"
                raise _Reject("wrong_type", detail)
            try:
                size = len(text.encode("utf-8"))
            except UnicodeEncodeError:
                # JSON's \ud800 escapes give lone surrogates, which no output can carry.
                detail = f"key field {self.key_field!r} is not valid Unicode: {short_repr(text)}"
                raise _Reject("wrong_type", detail) from None
            if not self._key_fits(size):
                raise _Reject("oversized_key", self._key_size_detail(size))
        else:
            if not key:
                raise _Reject("empty_key", "record has no key")
            if not self._key_fits(len(key)):
                raise _Reject("oversized_key", self._key_size_detail(len(key)))
            try:
                text = bytes(key).decode("utf-8")
            except UnicodeDecodeError:
                raise _Reject("wrong_type", "record key is not UTF-8") from None
        if _blank(text):
            raise _Reject("empty_key", f"key is empty or blank: {short_repr(text)}")
        return text

    def _key_size_detail(self, size: int) -> str:
        return f"key is {size} bytes, limit is {self.max_key_bytes} ([input] max_key_bytes)"

    def _fields(self, obj: dict[str, Any]) -> dict[str, float]:
        fields = {}
        for name, required, floor in self.value_fields:
            if required:
                if name not in obj:
                    raise _Reject("missing_field", f"missing field {name!r}")
            elif obj.get(name) is None:  # JSON null counts as absent
                continue
            value = _number(obj, name)
            if floor is not None and not floor.holds(value):
                raise _Reject(floor.reason, floor.detail(name, value))
            fields[name] = value
        return fields


def _usable_text(key: bytes) -> str | None:
    """A record key's text when :meth:`TickDecoder._key` takes it as it is (UTF-8, not
    blank), else None."""
    try:
        text = bytes(key).decode("utf-8")
    except UnicodeDecodeError:
        return None
    return None if _blank(text) else text


def _usual_tick(
    obj: dict[str, Any],
    key: str,
    divisor: float | None,
    checks: tuple[tuple[str, bool, float, bool], ...],
    topic: str,
    partition: int,
    offset: int,
) -> Tick | None:
    """The tick :meth:`TickDecoder.decode_parsed` makes of ``obj`` (orjson's parse of the
    record) for a record of the usual shape (see :meth:`TickDecoder.decode_by_key`;
    ``divisor``: the ts unit's, None for ``"auto"``; ``checks``: the value fields' floors),
    or None for any other record."""
    if not _plain(obj):
        return None
    ts = obj.get("ts")
    if type(ts) is not float or ts - ts != 0.0:
        return None
    if divisor is not None:
        ts = ts / divisor
    elif not -_AUTO_SECONDS_BELOW < ts < _AUTO_SECONDS_BELOW:
        return None
    fields = {}
    for name, required, bound, inclusive in checks:
        value = obj.get(name)
        if value is None:
            if required:
                return None
            continue
        if (
            type(value) is not float
            or value - value != 0.0
            or not (value >= bound if inclusive else value > bound)
        ):
            return None
        fields[name] = value
    # The tuple the named tuple's __new__ makes, without that Python-level call (a record).
    return _new_tuple(Tick, (key, ts, fields, topic, partition, offset))  # type: ignore[no-any-return]


_new_tuple = tuple.__new__


def _blank(text: str) -> bool:
    return not text.strip()


def group_by_key(
    decoded: Iterable[tuple[Tick | DeadLetter, bytes | None]],
) -> tuple[dict[str, list[tuple[Tick, bytes | None]]], list[DeadLetter]]:
    """Group decoded records of one partition, in offset order, by key.

    ``decoded`` holds each record's :meth:`TickDecoder.decode` result with its value bytes.
    Returns the ticks per key with their bytes (for a later dead letter), in offset order,
    and the dead letters.
    """
    by_key: dict[str, list[tuple[Tick, bytes | None]]] = {}
    dead: list[DeadLetter] = []
    for result, value in decoded:
        if type(result) is DeadLetter:
            dead.append(result)
            continue
        tick: Tick = result  # type: ignore[assignment]
        group = by_key.get(tick.key)
        if group is None:
            by_key[tick.key] = [(tick, value)]
        else:
            group.append((tick, value))
    return by_key, dead
