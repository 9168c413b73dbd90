"""README.md is true: its Python blocks run as written (doctest), and every other block is
either the two opening commands (CI runs them), data, output, or plainly marked as a fragment."""

from __future__ import annotations

import doctest
import json
import re

import pytest
from conftest import REPO

README = (REPO / "README.md").read_text("utf-8")
BLOCKS = [
    (m["lang"], m["body"], README.count("\n", 0, m.start()) + 1)
    for m in re.finditer(r"^```(?P<lang>\w*)\n(?P<body>.*?)^```$", README, re.M | re.S)
]
OPENING = [
    "python3 -m pip install -e '.[dev]' && python3 -m streamgmm demo",
    "python3 -m pip install -e '.[dev]' && python3 -m pytest",
]
MARKERS = ("# fragment:", "# not run by the tests")


def test_readme_opens_with_exactly_the_two_commands() -> None:
    lines = README.splitlines()
    assert lines[0].startswith("# ") and lines[1] == ""
    lang, body, line = BLOCKS[0]
    assert (lang, line) == ("bash", 3)
    assert body.splitlines() == OPENING


def test_every_block_is_run_data_output_or_marked() -> None:
    for lang, body, line in BLOCKS[1:]:
        where = f"README.md:{line}"
        if lang == "python":
            assert ">>>" in body, f"{where}: a Python block is a doctest, so the tests run it"
        elif lang == "bash":
            assert body.startswith(MARKERS), f"{where}: shell block not marked as a fragment"
        elif lang == "json":  # one or more JSON records, each on one line or several
            decoder, text, i = json.JSONDecoder(), body.strip(), 0
            while i < len(text):
                _, i = decoder.raw_decode(text, i)
                i = len(text) - len(text[i:].lstrip())
        else:
            assert lang == "text", f"{where}: unknown block type {lang!r}"


@pytest.mark.parametrize(
    "body,line",
    [(body, line) for lang, body, line in BLOCKS if lang == "python"],
    ids=lambda v: f"line{v}" if isinstance(v, int) else "",
)
def test_python_block_runs_as_written(body: str, line: int) -> None:
    parser = doctest.DocTestParser()
    test = parser.get_doctest(body, {}, f"README.md:{line}", str(REPO / "README.md"), line)
    runner = doctest.DocTestRunner(
        optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, verbose=False
    )
    runner.run(test, out=lambda text: pytest.fail(text, pytrace=False))
    assert runner.summarize(verbose=False).attempted > 0
