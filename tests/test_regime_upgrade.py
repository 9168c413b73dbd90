"""Upgrading to state version 3: a market key's snapshot of the earlier detector follows
``[checkpoint] on_bad_snapshot``, as docs/operations.md says.

Against the embedded broker: a real changelog topic holding a snapshot written by the
detector before state version 3 (``tests/data/behaviour/snapshot_v2_market.json``). With
``"reset_key"`` the key starts afresh with the new detector (and the record is reported for
the dead-letter topic); with ``"fail"`` the service stops with one line naming the version.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import KafkaTools, open_changelog

from streamgmm.broker import EmbeddedBroker
from streamgmm.regime import RegimeDetector
from streamgmm.service.checkpoint import Changelog, ChangelogError, Checkpointer
from streamgmm.service.kafka import Producer
from streamgmm.service.keystore import KeyStore
from streamgmm.settings.layers import load_settings

pytestmark = pytest.mark.integration

OLD = (Path(__file__).parent / "data" / "behaviour" / "snapshot_v2_market.json").read_bytes()


@pytest.fixture
def changelog(
    broker: EmbeddedBroker, unique: str, kafka_tools: KafkaTools
) -> Iterator[tuple[Changelog, Producer]]:
    with open_changelog(broker, unique) as opened:
        kafka_tools.send_all(f"{unique}.changelog", [(b"K", OLD, 0)])
        yield opened


def _store(changelog: tuple[Changelog, Producer], policy: str, resets: list[Any]) -> KeyStore:
    settings = load_settings(None, {"STREAMGMM_CHECKPOINT_ON_BAD_SNAPSHOT": policy}, {})
    log, producer = changelog
    checkpointer = Checkpointer(log, producer, 10000)
    return KeyStore(settings, log, checkpointer.save, on_reset=lambda k, b: resets.append((k, b)))


def test_an_earlier_market_snapshot_resets_its_key(changelog: tuple[Changelog, Producer]) -> None:
    resets: list[Any] = []
    store = _store(changelog, "reset_key", resets)
    store.index([0])
    state = store.get("K", 0)
    assert [key for key, _ in resets] == ["K"]
    bad = resets[0][1]
    assert "state version 2 is not supported (expected 3)" in bad.describe()
    assert bad.value == OLD  # the record, whole, for the dead-letter topic
    assert isinstance(state.pipeline, RegimeDetector) and state.pipeline.n_samples_seen == 0


def test_an_earlier_market_snapshot_stops_the_service_when_asked(
    changelog: tuple[Changelog, Producer],
) -> None:
    resets: list[Any] = []
    store = _store(changelog, "fail", resets)
    store.index([0])
    with pytest.raises(ChangelogError, match=r"state version 2 is not supported") as exc:
        store.get("K", 0)
    assert "\n" not in str(exc.value) and "on_bad_snapshot" in str(exc.value)
    assert resets == []
