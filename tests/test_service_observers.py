"""A service's observers (the demo's live table) see the records the output topic gets."""

from __future__ import annotations

import json
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from conftest import KafkaTools, make_ticks, service_config
from kafka import KafkaProducer

from streamgmm.broker import EmbeddedBroker
from streamgmm.service.runner import ServiceRunner
from streamgmm.settings.layers import load_settings


def test_observers_see_the_configured_regime_names(broker: EmbeddedBroker, tmp_path: Path) -> None:
    name = f"obs-{uuid.uuid4().hex[:8]}"
    broker.create_topics({f"{name}-in": 1})
    config = service_config(
        broker, name, tmp_path / "svc.toml", **{"output.regime_names": ["quiet", "stressed"]}
    )
    settings = load_settings(config, {}, {})
    ticks = make_ticks(["AAA"], 80, seed=4)
    producer = KafkaProducer(**broker.client_kwargs())
    for tick in ticks:
        producer.send(f"{name}-in", key=b"AAA", value=json.dumps(tick).encode())
    producer.flush()
    producer.close()

    seen: list[dict[str, Any]] = []
    runner = ServiceRunner(
        settings, install_signal_handlers=False, observers=[lambda key, rec: seen.append(rec)]
    )
    thread = threading.Thread(target=runner.run, daemon=True)
    thread.start()
    try:
        assert runner.ready.wait(60), "the service did not join its group"
        written = KafkaTools(broker).read_all(settings.output_topic, timeout=60, idle=3.0)
        deadline = time.monotonic() + 30
        while len(seen) < len(ticks) and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        runner.stop()
        thread.join(60)
    outputs = [json.loads(r.value) for r in written]
    assert len(outputs) == len(seen) == len(ticks)
    assert {o["regime_name"] for o in outputs} <= {"quiet", "stressed"}
    assert [r["regime_name"] for r in seen] == [o["regime_name"] for o in outputs]
