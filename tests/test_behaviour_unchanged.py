"""What the tick path writes is unchanged, byte for byte, on long fixed streams.

The digests in ``tests/data/behaviour/digests.json`` were recorded by
``python tests/behaviour_support.py write`` (see that module for what is captured: replay's
records and dead letters, the service path's records, dead letters and snapshots, the
detectors' own calls and final states, and stored snapshots restored and run on). A change
that means to alter an output records them again, in its own commit, and says why.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from behaviour_support import BLOCK_LINES, DIGESTS, capture


@pytest.fixture(scope="module")
def captured(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    return capture(Path(tmp_path_factory.mktemp("behaviour")))


def _names() -> list[str]:
    return sorted(json.loads(DIGESTS.read_text()))


def test_the_same_captures_are_made(captured: dict[str, dict]) -> None:
    assert sorted(captured) == _names()


@pytest.mark.parametrize("name", _names())
def test_output_is_byte_identical(captured: dict[str, dict], name: str) -> None:
    expected = json.loads(DIGESTS.read_text())[name]
    got = captured[name]
    if got["sha256"] == expected["sha256"]:
        return
    first = next(
        (
            i
            for i, (a, b) in enumerate(zip(got["blocks"], expected["blocks"], strict=False))
            if a != b
        ),
        min(len(got["blocks"]), len(expected["blocks"])),
    )
    pytest.fail(
        f"{name}: {got['lines']} lines (expected {expected['lines']}); the first block that "
        f"differs starts at line {first * BLOCK_LINES + 1}"
    )
