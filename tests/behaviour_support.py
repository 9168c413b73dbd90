"""Digests of what the tick path writes, on long fixed streams: the before/after check of a
restructuring.

Everything a user or an operator can see is captured as bytes and digested:

* ``streamgmm replay``'s output records and dead letters, on a long synthetic file of four
  instruments (intraday bars with sessions, gaps and stale quotes; daily switching volatility;
  GARCH-like heavy tails) with hostile rows mixed in, under the default settings and under
  ``on_change`` / ``skip``; on the real daily series (``arch.data``'s S&P 500, NASDAQ and WTI,
  and skfolio's 20 stocks); and on a file of event ticks;
* the service's per-key path (decoder, tick rules, key state) over the same real rows sent as
  Kafka records in polls of uneven size: output records, dead letters with their headers, and
  each key's changelog snapshot;
* every detector's final ``to_state()``, and the detectors' own calls (``learn_predict_one``,
  ``learn_predict_many``, ``learn_predict_block``) on the S&P 500;
* snapshots written by a fixed commit, kept in ``tests/data/behaviour/``: restored and run on,
  their outputs and final states.

``python tests/behaviour_support.py write`` records the digests (and the snapshot files) from
the code it imports; ``tests/test_behaviour_unchanged.py`` recomputes them and compares. Each
capture keeps one digest per block of :data:`BLOCK_LINES` lines, so a difference is reported at
the first block that differs. The digests were written by the commit before the regime package
restructuring (c03a088); a change that means to alter outputs rewrites them and says so.
"""

from __future__ import annotations

import hashlib
import io
import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

DATA = Path(__file__).parent / "data" / "behaviour"
DIGESTS = DATA / "digests.json"
BLOCK_LINES = 2000
#: The daily synthetic streams' first timestamp (2001-09-09); the intraday ones start in 2021.
#: Both are long before the wall clock, so ``max_ts_jump`` never refuses them.
T0 = 1_000_000_000.0


# --------------------------------------------------------------------------- digests


def digest(data: bytes) -> dict[str, Any]:
    """sha256 of the whole, its line count, and the sha256 of each block of lines."""
    lines = data.split(b"\n")
    blocks = [
        hashlib.sha256(b"\n".join(lines[i : i + BLOCK_LINES])).hexdigest()[:16]
        for i in range(0, len(lines), BLOCK_LINES)
    ]
    return {"sha256": hashlib.sha256(data).hexdigest(), "lines": len(lines), "blocks": blocks}


def _json_lines(items: Iterator[Any]) -> bytes:
    return b"".join(
        json.dumps(item, sort_keys=True, separators=(",", ":")).encode() + b"\n" for item in items
    )


# --------------------------------------------------------------------------- inputs


def _synthetic_rows() -> list[str]:
    """Four instruments interleaved by time, with hostile rows at fixed places."""
    from streamgmm import synthetic as syn

    streams = {
        "INTRA1": syn.intraday_stream(5, days=60),
        "INTRA2": syn.intraday_stream(6, days=60, bar_seconds=60.0, df=3.0),
        "DAILY": syn.switching_stream(7, n=6000, t0=T0),
        "GARCH": syn.heavy_tailed_stream(8, n=6000, kind="garch", t0=T0),
    }
    rows: list[tuple[float, str, str]] = []
    for key, s in streams.items():
        volume = 100.0
        for i, (t, p) in enumerate(zip(s.ts.tolist(), s.price.tolist(), strict=True)):
            volume = (volume * 7 + i) % 1000
            # Prices to 9 significant digits: the generators' np.exp differs in the last bits
            # between CPUs (NumPy picks AVX2 or AVX-512 code), which the digests must not see.
            rows.append((t, key, f"{key},{t!r},{p:.9g},{volume!r}"))
    rows.sort(key=lambda r: (r[0], r[1]))
    lines = [r[2] for r in rows]
    rng = np.random.default_rng(19)
    bad = [
        "INTRA1,{ts},abc,1",  # wrong_type
        "DAILY,{ts},,1",  # missing_field
        "GARCH,{ts},-5,1",  # non_positive_price
        "INTRA2,{ts},nan,1",  # non_finite
        ",{ts},10,1",  # empty_key
        "DAILY,{ts},10,-3",  # negative_volume
        "GARCH,1000.0,50,1",  # out_of_order
        "INTRA1,{ts},1e308,1",  # a return too large to use
    ]
    for j, template in enumerate(bad * 6):
        at = int(rng.integers(500, len(lines)))
        ts = float(lines[at].split(",")[1])
        lines.insert(at, template.format(ts=repr(ts + 0.5 + j)))
    for _ in range(40):  # repeated ticks: the detector repeats its output
        at = int(rng.integers(500, len(lines)))
        lines.insert(at + 1, lines[at])
    for _ in range(10):  # ISO-8601 text timestamps
        at = int(rng.integers(500, len(lines)))
        key, ts, *rest = lines[at].split(",")
        if key and ts.replace(".", "").isdigit():
            from datetime import UTC, datetime

            iso = datetime.fromtimestamp(float(ts), UTC).isoformat()
            lines[at] = ",".join([key, iso, *rest])
    return ["symbol,ts,price,volume", *lines]


def _real_rows() -> list[str]:
    """The daily closes of the three ``arch.data`` series and skfolio's 20 stocks."""
    import pandas as pd
    from arch.data import nasdaq, sp500, wti
    from skfolio.datasets import load_sp500_dataset

    series: dict[str, pd.Series] = {
        "SPX": sp500.load()["Adj Close"],
        "NDX": nasdaq.load()["Adj Close"],
        "WTI": wti.load()["DCOILWTICO"],
    }
    stocks = load_sp500_dataset()
    for ticker in sorted(stocks.columns):
        series[ticker] = stocks[ticker]
    rows: list[tuple[float, str, str]] = []
    for key, s in series.items():
        s = s.dropna()
        s = s[s > 0]
        ts = (s.index.tz_localize(None) - pd.Timestamp("1970-01-01")) // pd.Timedelta("1s")
        for t, p in zip(ts.tolist(), s.to_numpy(dtype=float).tolist(), strict=True):
            rows.append((float(t), key, f"{key},{float(t)!r},{p!r}"))
    rows.sort(key=lambda r: (r[0], r[1]))
    return ["symbol,ts,price", *(r[2] for r in rows)]


def _event_rows() -> list[str]:
    """Two sensors with two fields each: quiet, then busy, then quiet; a few bad rows."""
    rng = np.random.default_rng(23)
    lines = ["sensor,ts,temp,load"]
    for i in range(6000):
        for j, sensor in enumerate(("pump-1", "pump-2")):
            busy = 2000 <= i < 3500 + 500 * j
            temp = rng.normal(70.0 + (8.0 if busy else 0.0), 3.0 if busy else 1.0)
            load = rng.normal(0.8 if busy else 0.4, 0.1 if busy else 0.03)
            lines.append(f"{sensor},{T0 + 10.0 * i + j!r},{temp!r},{load!r}")
    for at, row in ((700, "pump-1,{ts},hot,0.5"), (1500, "pump-2,{ts},,0.5")):
        ts = float(lines[at].split(",")[1]) + 0.25
        lines.insert(at, row.format(ts=repr(ts)))
    return lines


def write_inputs(directory: Path) -> dict[str, Path]:
    """The three input files, written into ``directory``."""
    paths = {}
    for name, make in (
        ("synthetic", _synthetic_rows),
        ("real", _real_rows),
        ("events", _event_rows),
    ):
        path = directory / f"{name}.csv"
        path.write_text("\n".join(make()) + "\n")
        paths[name] = path
    return paths


# --------------------------------------------------------------------------- the tick path's API
# The one place that names where the tick path lives; a restructuring that moves it edits
# these imports and nothing else.


def _api() -> dict[str, Any]:
    from streamgmm.regime import EventDetector, RegimeDetector
    from streamgmm.replay import replay, row_message
    from streamgmm.service.dead_letters import dead_letter_headers
    from streamgmm.service.snapshot import decode_snapshot, encode_snapshot
    from streamgmm.settings.layers import load_settings
    from streamgmm.ticks.decode import TickDecoder, group_by_key
    from streamgmm.ticks.keystate import KeyState, make_pipeline
    from streamgmm.ticks.rules import TickRules

    return {
        "RegimeDetector": RegimeDetector,
        "EventDetector": EventDetector,
        "replay": replay,
        "row_message": row_message,
        "KeyState": KeyState,
        "TickRules": TickRules,
        "make_pipeline": make_pipeline,
        "load_settings": load_settings,
        "TickDecoder": TickDecoder,
        "dead_letter_headers": dead_letter_headers,
        "group_by_key": group_by_key,
        "decode_snapshot": decode_snapshot,
        "encode_snapshot": encode_snapshot,
    }


def _settings(api: dict[str, Any], **sections: dict[str, Any]) -> Any:
    overrides = {f"{s}.{k}": v for s, values in sections.items() for k, v in values.items()}
    return api["load_settings"](None, {}, overrides)


EVENT_INPUT = {"tick_kind": "event", "event_fields": ["temp", "load"], "key_field": "sensor"}


# --------------------------------------------------------------------------- captures


def _replay(api: dict[str, Any], path: Path, settings: Any) -> dict[str, bytes]:
    created: list[Any] = []

    def factory(s: Any) -> Any:
        pipeline = api["make_pipeline"](s)
        created.append(pipeline)
        return pipeline

    out, dead = io.BytesIO(), io.BytesIO()
    api["replay"](path, out, settings, pipeline_factory=factory, dead_letters=dead)
    return {
        "output": out.getvalue(),
        "dead_letters": dead.getvalue(),
        "states": _json_lines(p.to_state() for p in created),
    }


def _service_path(api: dict[str, Any], path: Path, settings: Any) -> dict[str, bytes]:
    """The Kafka path without Kafka: records in polls of uneven size, three partitions."""
    import csv

    decoder = api["TickDecoder"](settings)
    rules = api["TickRules"].from_settings(settings)
    states: dict[str, Any] = {}
    records, dead = bytearray(), bytearray()
    with path.open(newline="") as handle:
        rows = [
            {k: (v if k == "symbol" else _cell(v)) for k, v in row.items() if v}
            for row in csv.DictReader(handle)
        ]
    messages = [api["row_message"](row) for row in rows]
    rng = np.random.default_rng(5)
    offsets = [0, 0, 0]
    i = 0
    while i < len(messages):
        n = int(rng.integers(1, 300))
        poll = messages[i : i + n]
        i += n
        per_partition: dict[int, list[tuple[Any, bytes]]] = {}
        for key, value in poll:
            partition = sum(key or b"") % 3
            decoded = decoder.decode(key, value, "ticks", partition, offsets[partition])
            offsets[partition] += 1
            per_partition.setdefault(partition, []).append((decoded, value))
        for partition, decoded in sorted(per_partition.items()):
            by_key, rejected = api["group_by_key"](decoded)
            for dl in rejected:
                dead += _dead_letter_line(api, dl)
            for key, group in by_key.items():
                state = states.get(key)
                if state is None:
                    state = states[key] = api["KeyState"](api["make_pipeline"](settings), partition)
                run = rules.apply(state, group)
                for offset, value in run.records:
                    records += b"%d " % offset + value + b"\n"
                for dl in run.dead_letters:
                    dead += _dead_letter_line(api, dl)
    snapshots = b"".join(
        api["encode_snapshot"](key, state.to_state(), state.partition, state.next_offset) + b"\n"
        for key, state in states.items()
    )
    return {"records": bytes(records), "dead_letters": bytes(dead), "snapshots": snapshots}


def _cell(text: str) -> object:
    try:
        return float(text)
    except ValueError:
        return text


def _dead_letter_line(api: dict[str, Any], dl: Any) -> bytes:
    headers = [
        (name, value.decode("utf-8", "replace")) for name, value in api["dead_letter_headers"](dl)
    ]
    return _json_lines(
        iter(
            [
                {
                    "key": (dl.key or b"").decode("utf-8", "replace"),
                    "value": (dl.value or b"").decode("utf-8", "replace"),
                    "headers": headers,
                }
            ]
        )
    )


def _sp500() -> tuple[np.ndarray, np.ndarray]:
    import pandas as pd
    from arch.data import sp500

    s = sp500.load()["Adj Close"].dropna()
    ts = (s.index - pd.Timestamp("1970-01-01")) // pd.Timedelta("1s")
    return np.asarray(ts, dtype=float), s.to_numpy(dtype=float)


def _detector_calls(api: dict[str, Any]) -> dict[str, bytes]:
    """The detectors' own calls on the S&P 500 (and an event stream), outputs and states."""
    ts, price = _sp500()
    ticks = [{"ts": t, "price": p} for t, p in zip(ts.tolist(), price.tolist(), strict=True)]
    captured: dict[str, bytes] = {}
    det = api["RegimeDetector"]()
    one = [det.learn_predict_one(t) for t in ticks]
    captured["one"] = _json_lines(iter(one)) + _json_lines(iter([det.to_state()]))
    det = api["RegimeDetector"](var_level=0.95)  # (a market detector has two regimes)
    many: list[Any] = []
    for start in range(0, len(ticks), 333):
        many += det.learn_predict_many(ticks[start : start + 333])
    captured["many_var95"] = _json_lines(iter(many)) + _json_lines(iter([det.to_state()]))
    det = api["RegimeDetector"]()
    blocks: list[Any] = []
    for start in range(0, len(ticks), 1024):
        block = det.learn_predict_block(
            ts[start : start + 1024], {"price": price[start : start + 1024]}
        )
        blocks.append({"applied": list(block.applied), "columns": _plain(block.columns)})
    captured["block"] = _json_lines(iter(blocks)) + _json_lines(iter([det.to_state()]))
    rng = np.random.default_rng(3)
    ev = api["EventDetector"](["a", "b"])
    outs = []
    for i in range(3000):
        scale = 3.0 if 1200 <= i < 2000 else 1.0
        tick = {
            "ts": float(i),
            "a": float(rng.normal(5.0, scale)),
            "b": float(rng.normal(-1.0, 1.0)),
        }
        outs.append(ev.learn_predict_one(tick))
    captured["events"] = _json_lines(iter(outs)) + _json_lines(iter([ev.to_state()]))
    return captured


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        # A column's NaN is "no value" (None in an output dict, null in a record).
        return [None if v != v else v for v in value.tolist()]
    if isinstance(value, np.generic):
        return value.item()
    return value


# --------------------------------------------------------------------------- stored snapshots

#: The snapshots kept in DATA: (file, tick kind, how many S&P 500 / event ticks went in).
SNAPSHOTS = (
    ("snapshot_warm.json", "market", 2500),
    ("snapshot_warming.json", "market", 30),
    ("snapshot_events.json", "event", 1500),
)


def _event_ticks(n: int) -> list[dict[str, Any]]:
    rng = np.random.default_rng(29)
    return [
        {
            "ts": T0 + i,
            "temp": float(rng.normal(70.0, 1.0 + (i > 1000))),
            "load": float(rng.normal(0.5, 0.1)),
        }
        for i in range(n)
    ]


def _snapshot_settings(api: dict[str, Any], kind: str) -> Any:
    if kind == "event":
        return _settings(api, input={"tick_kind": "event", "event_fields": ["temp", "load"]})
    return _settings(api)


#: The snapshots ``write`` records again: the market detector's state format changed in state
#: version 3; the event snapshot stays as the fixed commit wrote it (version 2, still read).
REWRITTEN_KINDS = ("market",)


def write_snapshots(api: dict[str, Any]) -> None:
    """Write the :data:`SNAPSHOTS` of :data:`REWRITTEN_KINDS` with the code imported (only when
    recording)."""
    ts, price = _sp500()
    for name, kind, n in SNAPSHOTS:
        if kind not in REWRITTEN_KINDS:
            continue
        settings = _snapshot_settings(api, kind)
        state = api["KeyState"](api["make_pipeline"](settings), 0)
        rules = api["TickRules"].from_settings(settings)
        decoder = api["TickDecoder"](settings)
        ticks = (
            _event_ticks(n)
            if kind == "event"
            else [
                {"symbol": "K", "ts": t, "price": p}
                for t, p in zip(ts[:n].tolist(), price[:n].tolist(), strict=True)
            ]
        )
        group = []
        for offset, tick in enumerate(ticks):
            value = json.dumps({"symbol": "K", **tick}).encode()
            group.append((decoder.decode(b"K", value, "ticks", 0, offset), value))
        rules.apply(state, group)
        (DATA / name).write_bytes(
            api["encode_snapshot"]("K", state.to_state(), 0, state.next_offset)
        )


def _continue_snapshots(api: dict[str, Any]) -> dict[str, bytes]:
    """Each stored snapshot restored and run on to the end of its stream."""
    ts, price = _sp500()
    captured = {}
    for name, kind, n in SNAPSHOTS:
        settings = _snapshot_settings(api, kind)
        snap = api["decode_snapshot"]((DATA / name).read_bytes())
        state = api["KeyState"].from_state(settings, snap.state, snap.partition, snap.next_offset)
        rules = api["TickRules"].from_settings(settings)
        decoder = api["TickDecoder"](settings)
        if kind == "event":
            ticks = _event_ticks(3000)[n:]
        else:
            ticks = [
                {"symbol": "K", "ts": t, "price": p}
                for t, p in zip(ts[n:].tolist(), price[n:].tolist(), strict=True)
            ]
        group = []
        for offset, tick in enumerate(ticks, n):
            value = json.dumps({"symbol": "K", **tick}).encode()
            group.append((decoder.decode(b"K", value, "ticks", 0, offset), value))
        run = rules.apply(state, group)
        captured[name] = b"".join(v + b"\n" for _, v in run.records) + api["encode_snapshot"](
            "K", state.to_state(), 0, state.next_offset
        )
    return captured


# --------------------------------------------------------------------------- all of it


def capture(directory: Path) -> dict[str, dict[str, Any]]:
    """Every capture's digest, computed with the code imported; inputs go into ``directory``."""
    api = _api()
    paths = write_inputs(directory)
    default = _settings(api)
    parts: dict[str, Callable[[], dict[str, bytes]]] = {
        "replay_synthetic": lambda: _replay(api, paths["synthetic"], default),
        "replay_synthetic_on_change": lambda: _replay(
            api,
            paths["synthetic"],
            _settings(api, input={"out_of_order": "skip"}, output={"emit_policy": "on_change"}),
        ),
        "replay_real": lambda: _replay(api, paths["real"], default),
        "replay_events": lambda: _replay(api, paths["events"], _settings(api, input=EVENT_INPUT)),
        "service_real": lambda: _service_path(api, paths["real"], default),
        "service_synthetic_every_n": lambda: _service_path(
            api,
            paths["synthetic"],
            _settings(api, output={"emit_policy": "every_n", "emit_every_n": 7}),
        ),
        "detector": lambda: _detector_calls(api),
        "snapshots": lambda: _continue_snapshots(api),
    }
    result = {}
    for name, make in parts.items():
        for part, data in make().items():
            result[f"{name}.{part}"] = digest(data)
    return result


def main(argv: list[str]) -> int:
    import tempfile

    if argv != ["write"]:
        print("usage: python tests/behaviour_support.py write", file=sys.stderr)
        return 2
    DATA.mkdir(parents=True, exist_ok=True)
    write_snapshots(_api())
    with tempfile.TemporaryDirectory() as tmp:
        digests = capture(Path(tmp))
    DIGESTS.write_text(json.dumps(digests, indent=1, sort_keys=True) + "\n")
    for name, d in sorted(digests.items()):
        print(f"{name}: {d['lines']} lines, {d['sha256'][:16]}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
