"""README.md is true: its Python blocks run as written (doctest, also as ``python -m doctest
README.md`` with no flags), and every other block is either the two opening commands (CI runs
them), the quick start's terminals (tests/test_quickstart.py runs them), data, output, or
plainly marked as a fragment. The user docs speak to users: no words about how the work was
organised."""

from __future__ import annotations

import doctest
import json
import re
import subprocess
import sys

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
MARKERS = ("# fragment:", "# not run by the tests", "# terminal ")
#: Words about how the work was organised, not about the software. "session" alone is not one:
#: trading sessions and session_timeout_ms are the software's.
PROCESS_WORDS = re.compile(
    r"\bissues?\b|\bthis\s+machine\b|\bshared\s+(?:\d+-core\s+)?machine\b"
    r"|suggested\s+architecture|\bhelpers?\s+(?:session|agent)|\b(?:work|coding|agent)\s+sessions?\b"
    r"|\bthe\s+lead\b|\bthis\s+was\s+built\s+on\b",
    re.IGNORECASE,
)
USER_DOCS = [REPO / "README.md", REPO / "CHANGELOG.md", *sorted((REPO / "docs").glob("*.md"))]


def test_readme_opens_with_one_sentence_then_exactly_the_two_commands() -> None:
    lines = README.splitlines()
    assert lines[0] == "# streamgmm" and lines[1] == ""
    lang, body, line = BLOCKS[0]
    assert lang == "bash"
    # Between the title and the commands: one paragraph of one sentence, saying what it is.
    sentence = " ".join(lines[2 : line - 2])
    assert lines[line - 2] == "" and sentence.startswith("streamgmm ")
    assert sentence.endswith(".") and sentence.count(". ") == 0
    assert body.splitlines() == OPENING


def test_the_quick_start_follows_the_two_commands() -> None:
    after = README.split("```", 2)[2]  # past the opening block
    headings = re.findall(r"^## (.+)$", after, re.M)
    assert headings[0].startswith("Quick start")
    assert "# terminal 1" in after.split("\n## ", 2)[1]


def test_python_m_doctest_readme_passes_with_no_flags() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "doctest", "README.md"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


def test_no_pip_install_of_an_unpublished_package() -> None:
    for path in USER_DOCS:
        assert "pip install streamgmm" not in path.read_text("utf-8"), path.name
    assert "pip install ." in README


@pytest.mark.parametrize("path", USER_DOCS, ids=lambda p: p.name)
def test_user_docs_have_no_process_words(path: object) -> None:
    text = path.read_text("utf-8")  # type: ignore[attr-defined]
    found = [
        f"line {text.count(chr(10), 0, m.start()) + 1}: {m[0]!r}"
        for m in PROCESS_WORDS.finditer(text)
    ]
    assert not found


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
