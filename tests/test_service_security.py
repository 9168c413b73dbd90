"""A pickle in the changelog is refused with a clear error, and nothing in it runs."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from conftest import REPO, KafkaTools, service_config

from streamgmm.broker import EmbeddedBroker
from streamgmm.service.config import load_settings

pytestmark = pytest.mark.integration


class _Exploit:
    """Unpickling this would create ``path``."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (open, (str(self.path), "w"))


def test_pickle_in_changelog_is_rejected(broker: EmbeddedBroker, tmp_path: Path) -> None:
    name = f"sec-{uuid.uuid4().hex[:8]}"
    broker.create_topics({f"{name}-in": 1})
    config = service_config(broker, name, tmp_path / "svc.toml")
    settings = load_settings(config, {}, {})
    broker.create_topics({settings.changelog_topic: 1})
    # The payload is a working exploit: unpickled here, it creates its file.
    probe = tmp_path / "probe"
    pickle.loads(pickle.dumps(_Exploit(probe))).close()
    assert probe.exists()
    marker = tmp_path / "pwned"
    payload = pickle.dumps(_Exploit(marker))
    KafkaTools(broker).send_all(settings.changelog_topic, [(b"AAA", payload, 0)])

    result = subprocess.run(
        [sys.executable, "-m", "streamgmm.cli", "run", "--config", str(config)],
        cwd=REPO, capture_output=True, text=True, timeout=90, env={**os.environ},
    )
    assert result.returncode == 1
    assert "pickle" in result.stderr
    assert f"{settings.changelog_topic}[0]@0" in result.stderr  # says where the bad record is
    assert not marker.exists()
