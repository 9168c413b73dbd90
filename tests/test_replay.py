"""``streamgmm replay`` and ``streamgmm produce``."""

from __future__ import annotations

import dataclasses
import importlib.util
import io
import json
import math
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamgmm import produce
from streamgmm import replay as replay_mod
from streamgmm.replay import ReplayError, replay, row_message
from streamgmm.replay import run as replay_run
from streamgmm.replay.columns import CsvColumns
from streamgmm.replay.files import TickFile
from streamgmm.replay.summary import summary_table
from streamgmm.settings.layers import load_settings
from streamgmm.settings.service import Settings
from streamgmm.ticks.decode import TickDecoder
from streamgmm.ticks.record import RECORD_KEYS
from streamgmm.ticks.tick import DeadLetter

# 2024-01-02T03:04:05Z in epoch seconds (19724 days, then 03:04:05).
JAN2_030405 = 19724 * 86400 + 3 * 3600 + 4 * 60 + 5

MIXED_CSV = """symbol,ts,price,volume
A,1,50,10
B,2024-01-02T03:04:05Z,150,
A,2,150,10
A,1.5,60,1
B,1704164646,abc,1
,3,10,1
A,3,nan,1
A,4,-1,1
A,5,13,1
001,6,99,1
A,7,80,
"""


class StepPipeline:
    """Stand-in model: regime 1 above price 100; refuses price 13 like a model would."""

    stream_problem: str | None = None

    def __init__(self, settings: Settings) -> None:
        self.n = 0

    def learn_predict_one(self, tick: dict[str, float]) -> dict[str, Any]:
        if tick["price"] == 13.0:
            raise ValueError("price 13 is unlucky")
        self.n += 1
        regime = int(tick["price"] > 100)
        return {
            "regime": regime,
            "probabilities": {0: 1.0 - regime, 1: float(regime)},
            "raw_probabilities": {0: 0.5, 1: 0.5},
            "log_likelihood": -tick["price"],
            "drift_score": 0.0,
            "drift_detected": False,
            "n_samples_seen": self.n,
            "warm": True,
        }

    def learn_predict_many(
        self, ticks: list[dict[str, float]]
    ) -> list[dict[str, Any] | ValueError]:
        outs: list[dict[str, Any] | ValueError] = []
        for tick in ticks:
            try:
                outs.append(self.learn_predict_one(tick))
            except ValueError as exc:
                outs.append(exc)
        return outs

    def to_state(self) -> dict[str, Any]:
        return {"n": self.n}


def settings_with(**env: str) -> Settings:
    return load_settings(None, {f"STREAMGMM_{k}": v for k, v in env.items()}, {})


def run(path: Path, settings: Settings, **kw: Any) -> tuple[list[dict], Any]:
    out = io.BytesIO()
    summary = replay(path, out, settings, pipeline_factory=StepPipeline, **kw)
    return [json.loads(line) for line in out.getvalue().splitlines()], summary


def test_replay_validates_like_the_service_and_writes_output_records(tmp_path: Path) -> None:
    path = tmp_path / "mixed.csv"
    path.write_text(MIXED_CSV)
    dead = io.BytesIO()
    records, summary = run(path, settings_with(), dead_letters=dead)
    assert [r["offset"] for r in records] == [0, 1, 2, 9, 10]
    assert [r["key"] for r in records] == ["A", "B", "A", "001", "A"]
    assert [r["regime"] for r in records] == [0, 1, 1, 0, 0]
    assert [r["n_samples_seen"] for r in records if r["key"] == "A"] == [1, 2, 3]
    assert records[1]["ts"] == JAN2_030405
    assert all(tuple(r) == RECORD_KEYS for r in records)
    assert {(r["topic"], r["partition"]) for r in records} == {("mixed.csv", -1)}
    assert records[0]["probabilities"] == {"0": 1.0, "1": 0.0}
    assert records[0]["log_likelihood"] == -50.0
    assert summary.dead_letters == Counter(
        out_of_order=1,
        wrong_type=1,
        empty_key=1,
        non_finite=1,
        non_positive_price=1,
        rejected_by_model=1,
    )
    assert (summary.rows, summary.ticks, summary.records, summary.keys) == (11, 5, 5, 3)
    lines = [json.loads(line) for line in dead.getvalue().splitlines()]
    assert [(d["row"], d["reason"]) for d in lines] == [
        (3, "out_of_order"),
        (4, "wrong_type"),
        (5, "empty_key"),
        (6, "non_finite"),
        (7, "non_positive_price"),
        (8, "rejected_by_model"),
    ]
    assert lines[0]["key"] == "A"
    assert json.loads(lines[0]["value"]) == {"symbol": "A", "ts": 1.5, "price": 60.0, "volume": 1.0}
    assert "unlucky" in lines[5]["detail"]


def test_replay_refuses_an_outrageous_ts_and_long_keys_like_the_service(tmp_path: Path) -> None:
    # The per-key path is the service's: a tick dated 1e21 (too large for any unit, so
    # seconds) is dead-lettered (ts_jump) and its key goes on; a key over max_key_bytes is
    # oversized_key; a 5,000-digit number in a CSV cell reads as a float (inf), so it is
    # non_finite as the message produce sends says.
    long = "K" * 1025
    path = tmp_path / "hostile.csv"
    path.write_text(
        f"symbol,ts,price\nA,1,50\nA,1e21,60\nA,2,70\n{long},3,80\nA,4,{'9' * 5000}\nA,5,90\n"
    )
    dead = io.BytesIO()
    records, summary = run(path, settings_with(), dead_letters=dead)
    assert [r["offset"] for r in records] == [0, 2, 5]
    assert summary.dead_letters == Counter(ts_jump=1, oversized_key=1, non_finite=1)
    lines = [json.loads(line) for line in dead.getvalue().splitlines()]
    assert [(d["row"], d["reason"]) for d in lines] == [
        (1, "ts_jump"),
        (3, "oversized_key"),
        (4, "non_finite"),
    ]


@pytest.mark.parametrize(("unit", "scale"), [("ms", 10**3), ("us", 10**6), ("ns", 10**9)])
def test_milliseconds_to_nanoseconds_are_read_as_such(
    tmp_path: Path, unit: str, scale: int
) -> None:
    """A file stamped in another unit gives the records of the same file in seconds."""
    rows = [(f"K{i % 2}", 1_700_000_000 + 60 * i, 100 + i % 7) for i in range(200)]
    seconds, scaled = tmp_path / "s.csv", tmp_path / f"{unit}.csv"
    seconds.write_text("symbol,ts,price\n" + "".join(f"{k},{t},{p}\n" for k, t, p in rows))
    scaled.write_text("symbol,ts,price\n" + "".join(f"{k},{t * scale},{p}\n" for k, t, p in rows))
    want, _ = run(seconds, settings_with())
    got, summary = run(scaled, settings_with())
    assert summary.ticks == 200 and not summary.dead_letters
    assert [{**r, "topic": "s.csv"} for r in got] == want
    # Named, the unit is used whatever the size; the wrong one sends ticks far ahead.
    got, summary = run(scaled, settings_with(INPUT_TS_UNIT=unit))
    assert [{**r, "topic": "s.csv"} for r in got] == want
    _, summary = run(scaled, settings_with(INPUT_TS_UNIT="s"))
    assert summary.ticks == 0 and summary.dead_letters == Counter(ts_jump=200)


def test_iso_dates_and_times_in_ts(tmp_path: Path) -> None:
    path = tmp_path / "dates.csv"
    path.write_text(
        "symbol,ts,price\nA,2024-01-02,10\nA,2024-01-02T03:04:05Z,11\nA,2024-01-03 00:00+00:00,12\n"
    )
    records, _ = run(path, settings_with())
    midnight = JAN2_030405 - (3 * 3600 + 4 * 60 + 5)
    assert [r["ts"] for r in records] == [midnight, JAN2_030405, midnight + 86400]


def test_out_of_order_skip_drops_without_dead_letter(tmp_path: Path) -> None:
    path = tmp_path / "mixed.csv"
    path.write_text(MIXED_CSV)
    _, summary = run(path, settings_with(INPUT_OUT_OF_ORDER="skip"))
    assert summary.skipped_out_of_order == 1
    assert "out_of_order" not in summary.dead_letters


@pytest.mark.parametrize(
    ("env", "emitted"),
    [
        ({}, [0, 1, 2, 3, 4, 5]),
        ({"OUTPUT_EMIT_POLICY": "on_change"}, [0, 1, 3, 5]),
        ({"OUTPUT_EMIT_POLICY": "every_n", "OUTPUT_EMIT_EVERY_N": "2"}, [1, 3, 5]),
    ],
)
def test_emit_policies(tmp_path: Path, env: dict[str, str], emitted: list[int]) -> None:
    path = tmp_path / "t.csv"
    prices = [50, 150, 160, 90, 80, 200]  # regimes 0 1 1 0 0 1
    path.write_text("symbol,ts,price\n" + "".join(f"X,{i},{p}\n" for i, p in enumerate(prices)))
    records, summary = run(path, settings_with(**env))
    assert [r["offset"] for r in records] == emitted
    assert summary.ticks == 6


class DriftingPipeline(StepPipeline):
    """StepPipeline, in drift at prices 150 and 160 and again at 200; not warm at price 50."""

    def learn_predict_one(self, tick: dict[str, float]) -> dict[str, Any]:
        out = super().learn_predict_one(tick)
        drift = tick["price"] in (150, 160, 200)
        return {**out, "drift_detected": drift, "warm": tick["price"] != 50}


@pytest.mark.parametrize("policy", ["every_tick", "on_change"])
def test_per_key_figures_are_read_from_the_records(tmp_path: Path, policy: str) -> None:
    path = tmp_path / "t.csv"
    prices = [55, 40, 150, 160, 90, 80, 200]  # regimes 0 0 1 1 0 0 1, one second apart
    path.write_text(
        "symbol,ts,price\n"
        + "".join(f"X,{100 + i},{p}\n" for i, p in enumerate(prices))
        + "Y,5,50\nY,6,40\n"
    )
    out = io.BytesIO()
    summary = replay(
        path,
        out,
        settings_with(OUTPUT_EMIT_POLICY=policy),
        pipeline_factory=DriftingPipeline,
    )
    x, y = summary.per_key["X"], summary.per_key["Y"]
    assert (x.ticks, x.first_ts, x.last_ts, x.last_regime) == (7, 100.0, 106.0, 1)
    # Regime 0 for 2 s, 1 for 2 s, 0 for 2 s; the last record ends the span. With on_change
    # the records are 100, 102, 104 and 106, and the spans are the same.
    assert (x.warm_seconds, x.turbulent_seconds, x.turbulent_share) == (6.0, 2.0, 1 / 3)
    assert (x.switches, x.top_regime) == (3, 1)
    if policy == "every_tick":
        assert x.drift_alarms == 2  # 150-160, then 200
        # Y's first record is not warm: one warm record, no span, the share of records.
        assert (y.ticks, y.warm_records, y.switches, y.turbulent_share) == (2, 1, 0, 0.0)
    else:
        assert x.records == 4  # the record at 160 was not written
        # Y's one record was not warm: no regime figures.
        assert (y.ticks, y.records, y.warm_records, y.turbulent_share) == (2, 1, 0, None)
    table = summary_table(summary.per_key)
    assert table[0].split() == [
        "key", "ticks", "from", "to", "turbulent", "switches", "drift_alarms", "last_regime"
    ]  # fmt: skip
    assert table[1].split()[:2] == ["X", "7"] and table[1].split()[4:] == [
        "33.3%", "3", str(x.drift_alarms), "1"
    ]  # fmt: skip
    assert len(summary_table(summary.per_key, limit=1)) == 3  # and "... and 1 more keys"


def test_key_field_and_event_ticks(tmp_path: Path) -> None:
    path = tmp_path / "events.csv"
    path.write_text("sensor,ts,temp,load\n007,1,20.5,3\n007,2,21,\n")
    seen: list[dict[str, float]] = []

    class Recorder(StepPipeline):
        def learn_predict_one(self, tick: dict[str, float]) -> dict[str, Any]:
            seen.append(tick)
            return super().learn_predict_one({"price": 1.0})

    env = {"INPUT_TICK_KIND": "event", "INPUT_EVENT_FIELDS": "temp,load"}
    out = io.BytesIO()
    summary = replay(
        path, out, settings_with(INPUT_KEY_FIELD="sensor", **env), pipeline_factory=Recorder
    )
    assert seen == [{"ts": 1.0, "temp": 20.5, "load": 3.0}]
    assert summary.dead_letters == Counter(missing_field=1)
    assert json.loads(out.getvalue())["key"] == "007"


def sp500_csv(path: Path, rows: int) -> list[tuple[str, str, float, float]]:
    from arch.data import sp500

    frame = sp500.load().iloc[:rows]
    ticks = [
        ("SPX", day.strftime("%Y-%m-%d"), float(close), float(volume))
        for day, close, volume in zip(frame.index, frame["Adj Close"], frame["Volume"], strict=True)
    ]
    # A second instrument, interleaved: the same closes scaled, in the same order.
    both = [t for spx in ticks for t in (spx, ("HALF", spx[1], spx[2] / 2, spx[3]))]
    path.write_text(
        "symbol,ts,price,volume\n" + "".join(f"{s},{d},{p!r},{v!r}\n" for s, d, p, v in both)
    )
    return both


def test_replay_with_the_service_pipeline_equals_a_direct_run(tmp_path: Path) -> None:
    from streamgmm.ticks.keystate import make_pipeline

    path = tmp_path / "sp500.csv"
    rows = 800
    ticks = sp500_csv(path, rows)
    settings = load_settings(None, {}, {})
    out = io.BytesIO()
    summary = replay(path, out, settings)
    assert summary.dead_letters == Counter()
    records = [json.loads(line) for line in out.getvalue().splitlines()]
    assert len(records) == 2 * rows
    last = {r["key"]: r for r in records}
    for key in ("SPX", "HALF"):
        model = make_pipeline(settings)
        for symbol, day, price, volume in ticks:
            if symbol == key:
                y, m, d = map(int, day.split("-"))
                ts = np.datetime64(f"{y:04d}-{m:02d}-{d:02d}") - np.datetime64("1970-01-01")
                expected = model.learn_predict_one(
                    {"ts": float(ts / np.timedelta64(1, "s")), "price": price, "volume": volume}
                )
        record = last[key]
        assert record["n_samples_seen"] == rows
        assert record["regime"] == expected["regime"]
        assert record["probabilities"] == {str(k): v for k, v in expected["probabilities"].items()}
        assert record["raw_probabilities"] == {
            str(k): v for k, v in expected["raw_probabilities"].items()
        }
        assert record["log_likelihood"] == expected["log_likelihood"]
        assert record["drift_score"] == expected["drift_score"]
        assert record["drift_detected"] == expected["drift_detected"]


def test_main_writes_a_csv_table_with_a_column_per_regime_probability(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import csv

    path = tmp_path / "sp500.csv"
    ticks = sp500_csv(path, 300)
    json_path, csv_path = tmp_path / "out.jsonl", tmp_path / "out.csv"
    assert replay_mod.main([str(path), "--output", str(json_path), "--no-progress"]) == 0
    command = [str(path), "--output", str(csv_path), "--format", "csv", "--no-progress"]
    assert replay_mod.main(command) == 0
    capsys.readouterr()
    records = [json.loads(line) for line in json_path.read_text().splitlines()]
    with csv_path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        header = list(reader.fieldnames or [])
        rows = list(reader)
    expected = [k for k in RECORD_KEYS if not k.endswith("probabilities")]
    assert [c for c in header if not c.startswith(("p_", "raw_p_"))] == expected
    probabilities = ["p_calm", "p_turbulent", "raw_p_calm", "raw_p_turbulent"]
    assert [c for c in header if c.startswith(("p_", "raw_p_"))] == probabilities
    assert len(rows) == len(records) == len(ticks)
    for row, record in zip(rows, records, strict=True):
        assert row["key"] == record["key"] and row["time"] == record["time"]
        assert float(row["ts"]) == record["ts"]
        assert int(row["regime"]) == record["regime"]
        assert row["regime_name"] == record["regime_name"]
        assert row["regime_name"] == ["calm", "turbulent"][record["regime"]]
        assert float(row["p_turbulent"]) == record["probabilities"]["1"]
        assert float(row["raw_p_calm"]) == record["raw_probabilities"]["0"]
        assert float(row["log_likelihood"]) == record["log_likelihood"]
        assert row["warm"] == ("true" if record["warm"] else "false")
    # Each input date is its record's time, at midnight UTC.
    assert [r["time"] for r in rows] == [f"{day}T00:00:00Z" for _, day, _, _ in ticks]
    assert {r["regime_name"] for r in rows if r["warm"] == "true"} == {"calm", "turbulent"}

    named = [*command, "--set", "output.regime_names=quiet,wild"]
    assert replay_mod.main(named) == 0
    with csv_path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        assert "p_wild" in (reader.fieldnames or [])
        assert {r["regime_name"] for r in reader} == {"quiet", "wild"}


def test_main_writes_json_lines_progress_and_summary(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "t.csv"
    path.write_text("symbol,ts,price,volume\n" + "".join(f"Q,{i},{100 + i},5\n" for i in range(30)))
    out_path = tmp_path / "out.jsonl"
    dead_path = tmp_path / "dead.jsonl"
    code = replay_mod.main([str(path), "--output", str(out_path), "--dead-letters", str(dead_path)])
    assert code == 0
    lines = out_path.read_text().splitlines()
    assert len(lines) == 30
    assert json.loads(lines[-1])["n_samples_seen"] == 30
    assert dead_path.read_text() == ""
    err = capsys.readouterr().err
    assert "30 rows" in err
    assert "30 records written" in err
    if importlib.util.find_spec("tqdm") is None:
        assert "replay: 30/30 rows (100%)" in err
    assert "gives no regimes" not in err


def test_main_ends_with_a_table_of_keys_and_fails_when_nothing_was_applied(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "t.csv"
    path.write_text("symbol,ts,price\n" + "".join(f"Q,{i},{100 + i}\n" for i in range(60)))
    out = str(tmp_path / "out.jsonl")
    assert replay_mod.main([str(path), "-o", out, "--no-progress"]) == 0
    lines = capsys.readouterr().err.splitlines()
    assert lines[-2].split()[:3] == ["key", "ticks", "from"]
    assert lines[-1].split()[:4] == ["Q", "60", "1970-01-01", "1970-01-01"]
    # Every row rejected: exit code 1 and a line saying why, with a hint.
    path.write_text("symbol,ts,price\n" + "".join(f"Q,{i}e20,{100 + i}\n" for i in range(1, 4)))
    assert replay_mod.main([str(path), "-o", out, "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "0 ticks applied" in err
    assert err.splitlines()[-1] == (
        "streamgmm replay: error: no row could be applied (3 of 3 rows rejected as ts_jump); "
        "the timestamps are far ahead of the clock: is [input] ts_unit right?"
    )
    path.write_text("symbol,ts,price\n")
    assert replay_mod.main([str(path), "-o", out, "--no-progress"]) == 1
    assert "no row could be applied: the file has no rows" in capsys.readouterr().err


def test_main_names_keys_that_give_no_regimes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "t.csv"
    rows = [f"FLAT,{60 * i},100,5\nOK,{60 * i},{100 + (i % 7) * 0.1},5\n" for i in range(300)]
    path.write_text("symbol,ts,price,volume\n" + "".join(rows))
    assert replay_mod.main([str(path), "--output", str(tmp_path / "out.jsonl")]) == 0
    err = capsys.readouterr().err
    assert "key 'FLAT' gives no regimes: no scale: 300 ticks" in err
    assert "'OK'" not in err


def test_main_exit_code_2_for_unusable_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = str(tmp_path / "out.jsonl")
    assert replay_mod.main([str(tmp_path / "missing.csv"), "--output", out]) == 2
    assert "no such file" in capsys.readouterr().err

    no_price = tmp_path / "no_price.csv"
    no_price.write_text("symbol,ts,volume\nA,1,2\n")
    assert replay_mod.main([str(no_price), "--output", out]) == 2
    assert "no column 'price'" in capsys.readouterr().err

    binary = tmp_path / "binary.csv"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    assert replay_mod.main([str(binary), "--output", out]) == 2
    assert "not UTF-8" in capsys.readouterr().err

    bad_config = tmp_path / "bad.toml"
    bad_config.write_text('[output]\nemit_policy = "sometimes"\n')
    assert replay_mod.main([str(no_price), "--output", out, "--config", str(bad_config)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err
    assert "output.emit_policy = 'sometimes'" in err

    names = ["--set", "output.regime_names=calm,normal,turbulent"]  # three names, two regimes
    assert replay_mod.main([str(no_price), "--output", out, *names]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err
    assert "output.regime_names = 'calm,normal,turbulent' (from command line): 3 names" in err


def test_parquet_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "ticks.parquet"
    out = tmp_path / "out.jsonl"
    if importlib.util.find_spec("pyarrow") is None:
        path.write_bytes(b"PAR1 not really")
        assert replay_mod.main([str(path), "--output", str(out)]) == 2
        assert "pyarrow" in capsys.readouterr().err
        return
    import pandas as pd

    frame = pd.DataFrame(
        {"symbol": ["A", "A", "B"], "ts": [1.0, 2.0, 3.0], "price": [5.0, 6.0, 7.0]}
    )
    frame.to_parquet(path)
    records, _ = run(path, settings_with())
    assert [(r["key"], r["offset"]) for r in records] == [("A", 0), ("A", 1), ("B", 2)]
    # A timestamp column is read as ISO-8601; a null cell is an absent field.
    stamped = frame.assign(ts=pd.to_datetime(["2024-01-02T03:04:05Z"] * 3), price=[5.0, None, 7.0])
    stamped.to_parquet(path)
    records, summary = run(path, settings_with())
    assert [r["ts"] for r in records] == [JAN2_030405, JAN2_030405]
    assert summary.dead_letters == Counter(missing_field=1)


def test_row_message_keeps_non_finite_values_for_the_decoder_to_reject() -> None:
    key, value = row_message({"symbol": "A", "ts": 1.0, "price": math.inf})
    assert key == b"A"
    assert value == b'{"symbol":"A","ts":1.0,"price":Infinity}'
    assert row_message({"ts": 1.0}) == (None, b'{"ts":1.0}')
    assert row_message({"sensor": "s1", "ts": 1.0}, "sensor")[0] == b"s1"


@pytest.mark.integration
def test_produce_maps_columns_and_reads_tab_separated_files(
    broker: Any, kafka_tools: Any, unique: str, tmp_path: Path
) -> None:
    topic = f"{unique}-ticks"
    broker.create_topics({topic: 1})
    path = tmp_path / "ticks.tsv"
    path.write_text("ticker\ttimestamp\tclose\nA\t2024-01-02\t10.5\n007\t1704164645250\t11\n")
    args = ["--topic", topic, "--bootstrap-servers", broker.bootstrap_servers]
    mapping = ["--columns", "symbol=ticker,ts=timestamp,price=close"]
    assert produce.main([str(path), *args, *mapping]) == 0
    got = kafka_tools.read_all(topic, expect=2, idle=0.5)
    assert [(r.key, r.json()) for r in got] == [
        (b"A", {"symbol": "A", "ts": "2024-01-02", "price": 10.5}),
        (b"007", {"symbol": "007", "ts": 1704164645250.0, "price": 11.0}),
    ]


@pytest.mark.integration
def test_produce_sends_rows_keyed_by_symbol(
    broker: Any, kafka_tools: Any, unique: str, tmp_path: Path
) -> None:
    topic = f"{unique}-ticks"
    broker.create_topics({topic: 1})
    csv_path = tmp_path / "ticks.csv"
    csv_path.write_text(
        "symbol,ts,price,volume\nA,1,10.5,3\n007,2024-01-02T03:04:05Z,11,\nA,2,nan,1\n"
    )
    code = produce.main(
        [str(csv_path), "--topic", topic, "--bootstrap-servers", broker.bootstrap_servers]
    )
    assert code == 0
    got = kafka_tools.read_all(topic, expect=3, idle=0.5)
    assert [r.key for r in got] == [b"A", b"007", b"A"]
    assert [r.value for r in got] == [
        b'{"symbol":"A","ts":1.0,"price":10.5,"volume":3.0}',
        b'{"symbol":"007","ts":"2024-01-02T03:04:05Z","price":11.0}',
        b'{"symbol":"A","ts":2.0,"price":NaN,"volume":1.0}',
    ]


@pytest.mark.parametrize("delimiter", [",", "\t", ";", "|"])
def test_the_delimiter_is_sniffed_from_the_header(tmp_path: Path, delimiter: str) -> None:
    path = tmp_path / "t.csv"
    rows = [["symbol", "ts", "price", "note"], ["A", "1", "10", "x,y"], ["B", "2", "11", "z"]]
    # A comma inside a cell of a file delimited otherwise is text.
    path.write_text("".join(delimiter.join(row) + "\n" for row in rows))
    records, summary = run(path, settings_with())
    assert [(r["key"], r["ts"]) for r in records] == [("A", 1.0), ("B", 2.0)]
    assert summary.dead_letters == Counter()


def test_the_delimiter_given(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "t.txt"
    path.write_text("symbol;ts;price\nA;1;10\n")
    out = tmp_path / "out.jsonl"
    assert replay_mod.main([str(path), "-o", str(out), "--delimiter", "semicolon"]) == 0
    assert json.loads(out.read_text())["key"] == "A"
    # Given wrongly, the header is one column and the error shows it.
    assert replay_mod.main([str(path), "-o", str(out), "--delimiter", "tab"]) == 2
    assert "(columns: symbol;ts;price)" in capsys.readouterr().err
    assert replay_mod.main([str(path), "-o", str(out), "--delimiter", ";;"]) == 2
    assert "--delimiter must be one character" in capsys.readouterr().err


def test_columns_are_mapped_to_the_ticks_fields(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "yahoo.csv"
    path.write_text("ticker,timestamp,close,volume\nA,1,10,5\nB,2,11,6\n")
    out = tmp_path / "out.jsonl"
    assert replay_mod.main([str(path), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert (
        "has no column 'ts', 'price', 'symbol' (columns: ticker, timestamp, close, volume)" in err
    )
    assert "--columns symbol=ticker" in err
    mapping = ["--columns", "symbol=ticker,ts=timestamp", "--columns", "price=close"]
    assert replay_mod.main([str(path), "-o", str(out), *mapping]) == 0
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(r["key"], r["ts"], r["n_samples_seen"]) for r in records] == [
        ("A", 1.0, 1),
        ("B", 2.0, 1),
    ]
    source = TickFile(path, columns={"symbol": "ticker", "ts": "timestamp", "price": "close"})
    assert list(source.rows()) == [
        {"symbol": "A", "ts": 1.0, "price": 10.0, "volume": 5.0},
        {"symbol": "B", "ts": 2.0, "price": 11.0, "volume": 6.0},
    ]
    for bad, why in [
        (
            "price=clse",
            "no column 'clse' (columns: ticker, timestamp, close, volume); did you mean 'close'?",
        ),
        ("volume=close", "--columns volume=close: " + f"{path} has a column 'volume' already"),
        ("price", "--columns 'price': expected FIELD=COLUMN"),
    ]:
        assert replay_mod.main([str(path), "-o", str(out), "--columns", bad]) == 2
        assert why in capsys.readouterr().err


def test_produce_checks_the_columns_before_it_connects(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A file replay refuses is refused by produce too, before any broker is asked."""
    path = tmp_path / "yahoo.csv"
    path.write_text("ticker,timestamp,close,volume\nA,1,10,5\n")
    assert produce.main([str(path), "--bootstrap-servers", "127.0.0.1:1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("streamgmm produce: error: ")
    assert "has no column 'ts', 'price', 'symbol'" in err
    mapped = ["--columns", "symbol=ticker,ts=timestamp,price=clse"]
    assert produce.main([str(path), "--bootstrap-servers", "127.0.0.1:1", *mapped]) == 2
    assert "did you mean 'close'?" in capsys.readouterr().err


def test_produce_exit_codes_without_a_broker(tmp_path: Path) -> None:
    assert produce.main([str(tmp_path / "missing.csv"), "--bootstrap-servers", "h:1"]) == 2
    path = tmp_path / "t.csv"
    path.write_text("symbol,ts,price\nA,1,2\n")
    assert produce.main([str(path), "--bootstrap-servers", "nohost"]) == 2
    assert produce.main([str(path), "--rate", "0"]) == 2


def test_replay_error_for_a_directory(tmp_path: Path) -> None:
    with pytest.raises(ReplayError, match="no such file"):
        replay(tmp_path, io.BytesIO(), settings_with(), pipeline_factory=StepPipeline)


_cells = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(-(2**70), 2**70),
    st.booleans(),
    st.text(max_size=12),
    st.sampled_from(["2024-01-02T03:04:05Z", "1.5", "nan", "", "A"]),
)


@settings(max_examples=400, deadline=None)
@given(
    row=st.dictionaries(
        st.sampled_from(["symbol", "ts", "price", "volume", "note", "sensor", "t\u00e9mp"]),
        _cells,
        max_size=6,
    ),
    limit=st.sampled_from([64, 90, 120, 65536]),
    kind=st.sampled_from(["market", "event"]),
)
def test_a_row_decodes_as_the_message_produce_sends_for_it(
    row: dict[str, object], limit: int, kind: str
) -> None:
    env = {"INPUT_MAX_RECORD_BYTES": str(limit), "INPUT_TICK_KIND": kind}
    if kind == "event":
        env["INPUT_EVENT_FIELDS"] = "price,note"
    settings_ = settings_with(**env)
    shortcut = replay_run._Replay(
        settings_, "f.csv", "symbol", StepPipeline, io.BytesIO(), None, replay_mod.ReplaySummary()
    )
    key, value = row_message(row)
    want = TickDecoder(settings_).decode(key, value, "f.csv", -1, 7)
    got = shortcut._decode(row, 7)
    if isinstance(want, DeadLetter):
        assert isinstance(got, DeadLetter)
        assert got.value in (None, value)  # filled in from the row when written
        assert dataclasses.replace(got, value=value) == want
    else:
        assert got == want


_csv_cells = st.sampled_from(
    ["A", "B", "", " ", "nan", "inf", "-Infinity", "NaN", "1", "1.5", "-3", "0", "1e400",
     "1_000", " 7 ", "2024-01-02T03:04:05Z", "abc", "NASDAQ", "\u00e9", "x" * 40, "9" * 400]
)  # fmt: skip


@settings(max_examples=200, deadline=None)
@given(
    header=st.sampled_from(
        [
            ["symbol", "ts", "price", "volume"],
            ["ts", "price", "symbol"],
            ["symbol", "ts", "price", "volume", "note"],
            ["symbol", "ts", "price", "price"],  # a repeated name: the later cell wins
            ["symbol", "ts", "b", "price"],
        ]
    ),
    rows=st.lists(
        st.tuples(
            st.sampled_from(["A", "B", "C"]),
            st.integers(-2, 5),  # ts step: some back, some equal
            st.floats(0.5, 200.0),
            st.lists(_csv_cells, max_size=6),  # stray cells
            st.integers(0, 9),  # which cell, if any, the stray ones replace or cut
        ),
        max_size=60,
    ),
    limits=st.sampled_from([(1_048_576, 1024), (110, 1024), (1_048_576, 2)]),
    kind=st.sampled_from(["market", "event"]),
    start=st.sampled_from([100, 1_704_164_645_250, 1_704_164_645_250_000_123]),  # s, ms, ns
)
def test_csv_columns_decode_exactly_as_rows_one_by_one(
    header: list[str],
    rows: list[tuple[str, int, float, list[str], int]],
    limits: tuple[int, int],
    kind: str,
    start: int,
) -> None:
    """The column-at-a-time CSV decoding takes only rows it decodes as the row-by-row path
    would: same records, dead letters (reasons, details, values) and summary on rows with
    missing, extra, blank, non-numeric, non-finite, huge and misplaced cells."""
    lines, ts = [",".join(header)], start
    for key, step, price, stray, where in rows:
        ts += step
        cells = [
            key if name == "symbol" else str(ts) if name == "ts" else repr(price) for name in header
        ]
        if where < len(cells):
            cells[where : where + 1] = stray[:1]  # replace a cell, or drop it
        elif where == 8:
            cells += stray  # extra cells
        lines.append(",".join(cells))
        if where == 9:
            lines.append("")  # a blank line
    text = "\n".join(lines) + "\n"
    env = {"INPUT_MAX_RECORD_BYTES": str(limits[0]), "INPUT_MAX_KEY_BYTES": str(limits[1])}
    env["INPUT_TICK_KIND"] = kind
    if kind == "event":
        env["INPUT_EVENT_FIELDS"] = "price,b" if "b" in header else "price"
    settings_ = settings_with(**env)

    def replayed() -> tuple[bytes, bytes, Any]:
        path = Path(tmp) / "ticks.csv"
        path.write_text(text)
        out, dead = io.BytesIO(), io.BytesIO()
        summary = replay(path, out, settings_, pipeline_factory=StepPipeline, dead_letters=dead)
        return out.getvalue(), dead.getvalue(), summary

    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        by_columns = replayed()
        columns_of = CsvColumns.of
        CsvColumns.of = lambda *args: None  # type: ignore[method-assign, assignment]
        try:
            by_rows = replayed()
        finally:
            CsvColumns.of = columns_of  # type: ignore[method-assign]
    assert by_columns == by_rows


def test_a_plain_csv_is_decoded_a_column_at_a_time(tmp_path: Path) -> None:
    """The fast path is taken (the test above would pass if it never were)."""
    path = tmp_path / "plain.csv"
    path.write_text(
        "symbol,ts,price,volume\n" + "".join(f"K{i % 3},{i},{100 + i},5\n" for i in range(30))
    )
    columns = CsvColumns.of(["symbol", "ts", "price", "volume"], "symbol", settings_with())
    assert columns is not None
    cells = [line.split(",") for line in path.read_text().splitlines()[1:]]
    cells[4][2] = "-1"  # not a plain tick: left for the row-by-row decoder
    keys, ts, fields, others = columns.plain(cells, TickDecoder(settings_with()))
    assert others == [4]
    assert keys[:3] == ["K0", "K1", "K2"] and ts[5] == 5.0 and fields["price"][7] == 107.0
    records, summary = run(path, settings_with())
    assert summary.records == 30 and [r["offset"] for r in records] == list(range(30))
