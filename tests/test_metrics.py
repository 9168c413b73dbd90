"""ServiceMetrics over its real HTTP endpoint, parsed with prometheus-client's own parser."""

from __future__ import annotations

import hashlib
import platform
import time
import urllib.error
import urllib.request
from collections.abc import Iterator

import numpy as np
import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

import streamgmm
from streamgmm.service.metrics import KEY_LABEL_BYTES, ServiceMetrics, key_label


@pytest.fixture
def served() -> Iterator[tuple[ServiceMetrics, str]]:
    metrics = ServiceMetrics(max_keys=2)
    host, port = metrics.serve("127.0.0.1", 0)
    try:
        yield metrics, f"http://{host}:{port}/metrics"
    finally:
        metrics.close()


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(url, timeout=5) as response:
        assert response.status == 200
        text = response.read().decode("utf-8")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def key_series(samples: dict, key: str) -> set[str]:
    return {name for name, labels in samples if ("key", key) in labels}


def test_serve_binds_the_requested_host_and_an_ephemeral_port() -> None:
    metrics = ServiceMetrics()
    try:
        host, port = metrics.serve("127.0.0.1", 0)
        assert host == "127.0.0.1"
        assert 0 < port < 65536
        with pytest.raises(RuntimeError):
            metrics.serve("127.0.0.1", 0)
    finally:
        metrics.close()
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2)
    metrics.close()  # idempotent


def test_serve_defaults_to_loopback() -> None:
    metrics = ServiceMetrics()
    try:
        host, port = metrics.serve()
        assert host == "127.0.0.1"
        assert scrape(f"http://127.0.0.1:{port}/metrics")[("streamgmm_active_keys", ())] == 0
    finally:
        metrics.close()


def test_service_wide_metrics(served: tuple[ServiceMetrics, str]) -> None:
    metrics, url = served
    metrics.consumed(3)
    metrics.consumed()
    metrics.produced(2)
    for reason in ("oversized", "oversized", "invalid_json"):
        metrics.dead_lettered(reason)
    metrics.observe_latency(0.002)
    metrics.observe_latency(0.003)
    metrics.observe_checkpoint(0.5)
    metrics.set_lag("ticks", 0, 17)
    metrics.set_lag("ticks", 1, 4)
    metrics.set_last_processed_timestamp(1_700_000_000.5)
    metrics.set_active_keys(12)
    metrics.rebalance("assigned")
    metrics.rebalance("assigned")
    metrics.rebalance("revoked")
    s = scrape(url)
    assert s[("streamgmm_records_consumed_total", ())] == 4
    assert s[("streamgmm_records_produced_total", ())] == 2
    assert s[("streamgmm_records_dead_lettered_total", (("reason", "oversized"),))] == 2
    assert s[("streamgmm_records_dead_lettered_total", (("reason", "invalid_json"),))] == 1
    assert s[("streamgmm_processing_latency_seconds_count", ())] == 2
    assert s[("streamgmm_processing_latency_seconds_sum", ())] == pytest.approx(0.005)
    assert s[("streamgmm_processing_latency_seconds_bucket", (("le", "0.0025"),))] == 1
    assert s[("streamgmm_processing_latency_seconds_bucket", (("le", "+Inf"),))] == 2
    assert s[("streamgmm_checkpoint_duration_seconds_count", ())] == 1
    assert s[("streamgmm_consumer_lag", (("partition", "0"), ("topic", "ticks")))] == 17
    assert s[("streamgmm_consumer_lag", (("partition", "1"), ("topic", "ticks")))] == 4
    assert s[("streamgmm_last_processed_timestamp_seconds", ())] == 1_700_000_000.5
    assert s[("streamgmm_active_keys", ())] == 12
    assert s[("streamgmm_rebalances_total", (("kind", "assigned"),))] == 2
    assert s[("streamgmm_rebalances_total", (("kind", "revoked"),))] == 1
    metrics.forget_partitions([("ticks", 0)])
    s = scrape(url)
    assert ("streamgmm_consumer_lag", (("partition", "0"), ("topic", "ticks"))) not in s
    assert s[("streamgmm_consumer_lag", (("partition", "1"), ("topic", "ticks")))] == 4


def out(ll: float, drift: bool, p1: float, score: float = 0.5) -> dict:
    return {
        "regime": int(p1 > 0.5),
        "probabilities": {0: 1.0 - p1, 1: p1},
        "raw_probabilities": {0: 0.5, 1: 0.5},
        "log_likelihood": ll,
        "drift_score": score,
        "drift_detected": drift,
        "n_samples_seen": 1,
    }


def test_per_key_series(served: tuple[ServiceMetrics, str]) -> None:
    metrics, url = served
    flags = [False, True, True, False, True]
    for i, flag in enumerate(flags):
        metrics.observe_key("SPX", out(-2.0 if i == 0 else -4.0, flag, 0.25, score=float(i)))
    s = scrape(url)
    spx = (("key", "SPX"),)
    # EWMA with weight 2 / (100 + 1): -2, then four steps towards -4.
    expected = -2.0
    for _ in range(4):
        expected += 2.0 / 101.0 * (-4.0 - expected)
    assert s[("streamgmm_key_mean_log_likelihood", spx)] == pytest.approx(expected)
    assert s[("streamgmm_key_drift_score", spx)] == 4.0
    assert s[("streamgmm_key_drift_events_total", spx)] == 2  # two rises of drift_detected
    assert s[("streamgmm_key_regime_probability", (("key", "SPX"), ("regime", "0")))] == 0.75
    assert s[("streamgmm_key_regime_probability", (("key", "SPX"), ("regime", "1")))] == 0.25


def test_process_platform_gc_collectors_and_build_info(served: tuple[ServiceMetrics, str]) -> None:
    _, url = served
    s = scrape(url)
    assert s[("process_cpu_seconds_total", ())] > 0
    assert s[("process_resident_memory_bytes", ())] > 10e6
    assert s[("process_start_time_seconds", ())] > 1.7e9
    assert ("python_gc_collections_total", (("generation", "0"),)) in s
    python = platform.python_version()
    assert any(name == "python_info" and ("version", python) in labels for name, labels in s)
    build = (("python", python), ("version", streamgmm.__version__))
    assert s[("streamgmm_build_info", build)] == 1


def test_no_created_series(served: tuple[ServiceMetrics, str]) -> None:
    metrics, url = served
    metrics.consumed(3)
    metrics.dead_lettered("bad_json")
    metrics.observe_latency(0.001)
    metrics.observe_key("SPX", out(-2.0, True, 0.25))
    names = {name for name, _ in scrape(url)}
    assert "streamgmm_records_consumed_total" in names
    assert "streamgmm_key_drift_events_total" in names
    assert not [name for name in names if name.endswith("_created")]


def test_non_finite_log_likelihood_does_not_poison_the_mean(
    served: tuple[ServiceMetrics, str],
) -> None:
    metrics, url = served
    metrics.observe_key("A", out(-1.0, False, 0.5))
    metrics.observe_key("A", out(float("-inf"), False, 0.5))
    assert scrape(url)[("streamgmm_key_mean_log_likelihood", (("key", "A"),))] == -1.0


def test_per_key_series_are_capped_and_removed_on_forget(
    served: tuple[ServiceMetrics, str],
) -> None:
    metrics, url = served  # max_keys=2
    for key in ("A", "B", "C"):
        metrics.observe_key(key, out(-1.0, True, 0.9))
    s = scrape(url)
    assert key_series(s, "A") == {
        "streamgmm_key_mean_log_likelihood",
        "streamgmm_key_drift_score",
        "streamgmm_key_drift_events_total",
        "streamgmm_key_regime_probability",
    }
    assert key_series(s, "B")
    assert key_series(s, "C") == set()  # over the cap
    assert s[("streamgmm_exported_keys", ())] == 2
    metrics.forget_keys(["A", "never-seen"])
    s = scrape(url)
    assert key_series(s, "A") == set()
    assert s[("streamgmm_exported_keys", ())] == 1
    metrics.observe_key("C", out(-1.0, False, 0.9))  # a slot is free now
    s = scrape(url)
    assert key_series(s, "C")
    assert key_series(s, "B")


def test_instances_do_not_collide_in_registries() -> None:
    first, second = ServiceMetrics(), ServiceMetrics()
    first.consumed(5)
    assert second.registry.get_sample_value("streamgmm_records_consumed_total") == 0
    assert first.registry.get_sample_value("streamgmm_records_consumed_total") == 5


def test_alert_rules_use_only_exported_metrics() -> None:
    import re
    from pathlib import Path

    import yaml

    metrics = ServiceMetrics()
    # Touch every series so each family has samples to list.
    metrics.consumed()
    metrics.produced()
    metrics.dead_lettered("oversized")
    metrics.observe_latency(0.001)
    metrics.observe_checkpoint(0.1)
    metrics.set_lag("t", 0, 1)
    metrics.set_last_processed_timestamp(1.0)
    metrics.set_active_keys(1)
    metrics.rebalance("assigned")
    metrics.observe_key("K", out(-1.0, True, 0.5))
    metrics.key_reset()
    metrics.refused("lost")
    exported = {sample.name for family in metrics.registry.collect() for sample in family.samples}
    path = Path(__file__).resolve().parents[1] / "deploy" / "alerts.yml"
    rules = [
        rule for group in yaml.safe_load(path.read_text())["groups"] for rule in group["rules"]
    ]
    assert {rule["alert"] for rule in rules} >= {
        "StreamgmmLikelihoodDrift",
        "StreamgmmConsumerLagHigh",
    }
    for rule in rules:
        assert rule["labels"]["severity"] in {"warning", "critical"}
        assert rule["annotations"]["summary"]
        for name in re.findall(r"streamgmm_[a-z_]+", rule["expr"]):
            assert name in exported, f"{rule['alert']} uses unknown metric {name}"


def test_skipped_records_are_not_dead_letters(served: tuple[ServiceMetrics, str]) -> None:
    metrics, url = served
    metrics.skipped("out_of_order")
    metrics.skipped("out_of_order")
    metrics.dead_lettered("oversized")
    samples = scrape(url)
    assert samples[("streamgmm_records_skipped_total", (("reason", "out_of_order"),))] == 2.0
    dead = {labels for name, labels in samples if name == "streamgmm_records_dead_lettered_total"}
    assert dead == {(("reason", "oversized"),)}


def test_observe_keys_in_batches_equals_one_output_at_a_time() -> None:
    import random

    rng = random.Random(3)
    stream = [
        (
            rng.choice("ABC"),
            out(
                rng.choice([-1.0, -3.0, float("-inf")]),
                rng.random() < 0.3,
                rng.random(),
                score=rng.random(),
            ),
        )
        for _ in range(400)
    ]
    one, many = ServiceMetrics(max_keys=2), ServiceMetrics(max_keys=2)
    for key, o in stream:
        one.observe_key(key, o)
    for i in range(0, len(stream), 37):
        batch: dict[str, list[dict]] = {}
        for key, o in stream[i : i + 37]:
            batch.setdefault(key, []).append(o)
        many.observe_keys(batch)

    def samples(m: ServiceMetrics) -> dict:
        return {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in m.registry.collect()
            for s in family.samples
            if (s.name.startswith("streamgmm_key") or s.name == "streamgmm_exported_keys")
            and not s.name.endswith("_created")  # creation times differ, of course
        }

    expected = samples(one)
    assert any(
        name == "streamgmm_key_drift_events_total" and v > 5 for (name, _), v in expected.items()
    )
    assert samples(many) == expected


def test_outputs_as_columns_count_as_their_dicts() -> None:
    """observe_keys reads a key's outputs held as columns (OutputRows, the batch path's)
    without a dict per output, and exports what the same outputs as dicts give."""
    from streamgmm.regime.batch import OutputRows
    from streamgmm.regime.output import make_output_columns

    nan = float("nan")  # the columns' "no value"
    lls = np.array([-1.0, nan, -3.0, float("-inf"), 0.0, -2.0, -5.0])
    flags = np.array([False, True, True, False, True, False, True])
    p1 = np.array([0.1, 0.7, 0.2, 0.9, 0.4, 0.6, 0.3])
    columns = make_output_columns(
        (p1 > 0.5).astype(np.int64), (1.0 - p1, p1), (np.full(7, 0.5), np.full(7, 0.5)),
        lls, np.arange(7.0), flags, np.arange(7), np.ones(7, bool), np.full(7, nan),
        np.full(7, nan),
    )  # fmt: skip
    rows = OutputRows(columns, 2, 7)  # the 3rd to the 7th output
    assert len(rows) == 5 and rows[-1]["drift_score"] == 6.0 and rows[0]["log_likelihood"] == -3.0
    assert rows[0] == {
        "regime": 0, "probabilities": {0: 0.8, 1: 0.2}, "raw_probabilities": {0: 0.5, 1: 0.5},
        "log_likelihood": -3.0, "drift_score": 2.0, "drift_detected": True,
        "n_samples_seen": 2, "warm": True, "volatility": None, "value_at_risk": None,
    }  # fmt: skip
    assert [type(v) for v in rows[0].values()] == [int, dict, dict, float, float, bool, int,
                                                   bool, type(None), type(None)]  # fmt: skip
    as_dicts, as_columns = ServiceMetrics(), ServiceMetrics()
    as_dicts.observe_keys({"A": list(rows)})
    as_columns.observe_keys({"A": rows})

    def samples(m: ServiceMetrics) -> dict:
        return {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in m.registry.collect()
            for s in family.samples
            if s.name.startswith("streamgmm_key")
        }

    expected = samples(as_dicts)
    assert expected[("streamgmm_key_drift_events_total", (("key", "A"),))] == 3
    assert expected[("streamgmm_key_drift_score", (("key", "A"),))] == 6.0
    assert samples(as_columns) == expected


def test_long_keys_are_cut_with_a_stable_hash(served: tuple[ServiceMetrics, str]) -> None:
    metrics, url = served
    # Two 10 kB keys that differ only at the end.
    first, second = "A" * 10_000 + "1", "A" * 10_000 + "2"
    metrics.observe_keys({first: [out(-1.0, False, 0.5)], second: [out(-2.0, False, 0.5)]})
    labels = {dict(labels).get("key") for _name, labels in scrape(url)} - {None}
    assert labels == {key_label(first), key_label(second)}
    assert all(len(label.encode()) <= KEY_LABEL_BYTES for label in labels)
    assert key_label(first) != key_label(second) and key_label(first).startswith("AAAA")
    # The same key gives the same label in every process (BLAKE2b, not hash()).
    digest = hashlib.blake2b(first.encode(), digest_size=8).hexdigest()
    assert key_label(first).endswith("~" + digest)
    cut = key_label("é" * 200)  # 400 bytes: cut between characters, never inside one
    assert len(cut.encode()) <= KEY_LABEL_BYTES and cut.startswith("é" * 55)
    assert key_label("K" * KEY_LABEL_BYTES) == "K" * KEY_LABEL_BYTES
    # Forgetting a key removes its cut series too.
    metrics.forget_keys([first, second])
    assert {dict(labels).get("key") for _name, labels in scrape(url)} == {None}


def test_uncommitted_seconds_grow_until_a_commit() -> None:
    metrics = ServiceMetrics()

    def age() -> float | None:
        return metrics.registry.get_sample_value("streamgmm_uncommitted_seconds")

    assert age() == 0.0
    metrics.consumed(0)
    assert age() == 0.0
    metrics.consumed(5)
    first = age()
    time.sleep(0.05)
    metrics.consumed(5)  # later records do not restart the clock: the oldest one counts
    assert age() >= first + 0.05
    metrics.committed()
    assert age() == 0.0


def test_key_resets_and_refused_records_are_counted(
    served: tuple[ServiceMetrics, str],
) -> None:
    metrics, url = served
    metrics.key_reset()
    metrics.refused("dead_lettered")
    metrics.refused("dead_lettered")
    metrics.refused("lost")
    s = scrape(url)
    assert s[("streamgmm_keys_reset_total", ())] == 1
    assert s[("streamgmm_records_refused_total", (("outcome", "dead_lettered"),))] == 2
    assert s[("streamgmm_records_refused_total", (("outcome", "lost"),))] == 1


def test_observing_n_latencies_at_once_equals_n_observations() -> None:
    one, many = ServiceMetrics(), ServiceMetrics()
    for seconds, n in ((0.002, 3), (0.0025, 2), (0.7, 1), (3.0, 4), (1e-6, 5)):
        for _ in range(n):
            one.observe_latency(seconds)
        many.observe_latency(seconds, n)

    def latency(m: ServiceMetrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        text = generate_latest(m.registry).decode()
        return {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
            if s.name.startswith("streamgmm_processing_latency")
        }

    assert latency(one).keys() == latency(many).keys()
    for key, value in latency(one).items():
        assert latency(many)[key] == pytest.approx(value), key
