"""A key state that cannot be written to the changelog follows ``[checkpoint] on_bad_snapshot``.

Against the embedded broker: a real changelog topic, producer and reader. The model is a
stand-in whose state holds an infinity (as a detector bug could leave it), so its snapshot is
not JSON-safe; before, every checkpoint from then on failed and the service crash-looped.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import KafkaTools, open_changelog

from streamgmm.broker import EmbeddedBroker
from streamgmm.service.checkpoint import BadSnapshot, Changelog, ChangelogError, Checkpointer
from streamgmm.service.kafka import Producer
from streamgmm.service.keystore import KeyStore
from streamgmm.settings.layers import load_settings
from streamgmm.ticks.keystate import KeyState

pytestmark = pytest.mark.integration


class Poisoned:
    """A model whose state holds an infinity."""

    stream_problem: str | None = None

    def learn_predict_one(self, tick: dict[str, float]) -> dict[str, Any]:
        raise AssertionError("not used")

    def learn_predict_many(self, ticks: Any) -> list[Any]:
        raise AssertionError("not used")

    def to_state(self) -> dict[str, Any]:
        return {"s2": float("inf")}


@pytest.fixture(params=["kafka-python", "confluent"])
def changelog(
    request: pytest.FixtureRequest, broker: EmbeddedBroker, unique: str
) -> Iterator[tuple[Changelog, Producer]]:
    with open_changelog(broker, unique, request.param) as opened:
        yield opened


def _store(changelog: Changelog, producer: Producer, policy: str, resets: list[Any]) -> KeyStore:
    settings = load_settings(None, {"STREAMGMM_CHECKPOINT_ON_BAD_SNAPSHOT": policy}, {})
    checkpointer = Checkpointer(changelog, producer, 10000)
    return KeyStore(
        settings, changelog, checkpointer.save, on_reset=lambda k, b: resets.append((k, b))
    )


def test_an_unwritable_state_starts_its_key_afresh(
    changelog: tuple[Changelog, Producer], kafka_tools: KafkaTools
) -> None:
    log, producer = changelog
    resets: list[tuple[str, BadSnapshot | None]] = []
    store = _store(log, producer, "reset_key", resets)
    poisoned = store.get("K", 0)
    poisoned.pipeline = Poisoned()
    poisoned.next_offset, poisoned.last_ts, poisoned.dirty = 12, 99.0, True
    healthy = store.get("H", 0)
    healthy.next_offset, healthy.dirty = 3, True
    checkpointer = Checkpointer(log, producer, 10000)
    refs = checkpointer.save(store.dirty(), store.reset)
    assert resets == [("K", None)]
    assert set(refs) == {"K", "H"}
    fresh = store.get("K", 0)
    assert fresh is not poisoned and not fresh.dirty
    # The bookkeeping stays, so no tick is applied twice or out of order; the model is new.
    assert (fresh.next_offset, fresh.last_ts, fresh.last_regime) == (12, 99.0, None)
    written = {r.key: json.loads(r.value) for r in kafka_tools.read_all(log.topic, expect=2)}
    assert written[b"K"]["next_offset"] == 12
    assert written[b"K"]["state"]["pipeline"]["counters"]["n_samples_seen"] == 0
    assert written[b"H"]["next_offset"] == 3
    # Restoring reads them back through this client's reader, at the offsets the write gave.
    index, bad = log.read_index([0])
    assert set(index) == {"K", "H"} and bad == []
    assert index["H"].changelog_offset == refs["H"].changelog_offset
    snapshot, _value = log.load(index["H"])
    assert (snapshot.key, snapshot.next_offset) == ("H", 3)


def test_an_unwritable_state_fails_with_one_line_when_asked(
    changelog: tuple[Changelog, Producer],
) -> None:
    log, producer = changelog
    resets: list[Any] = []
    store = _store(log, producer, "fail", resets)
    state: KeyState = store.get("K", 0)
    state.pipeline = Poisoned()
    state.dirty = True
    with pytest.raises(ChangelogError, match=r"key 'K' cannot be written.*on_bad_snapshot") as exc:
        Checkpointer(log, producer, 10000).save(store.dirty(), store.reset)
    assert "\n" not in str(exc.value) and resets == []
