"""The generated parts of the docs match the code they are generated from.

docs/service.md holds the output record's field table (from :mod:`streamgmm.ticks.record`) and the
settings table (from :data:`streamgmm.settings.service.SPECS` and the detector classes), each
between ``<!-- generated: NAME -->`` and ``<!-- end generated -->``; configs/default.toml is
:func:`~streamgmm.settings.render.default_config_text`. After changing a field, a setting or a
detector parameter, regenerate them all with ``python tests/test_generated_docs.py``.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SERVICE_DOC = REPO / "docs" / "service.md"
DEFAULT_CONFIG = REPO / "configs" / "default.toml"


def _tables() -> dict[str, Callable[[], str]]:
    from streamgmm.settings.render import settings_table
    from streamgmm.ticks.record import fields_table

    return {"output-fields": fields_table, "settings": settings_table}


def _block(name: str) -> re.Pattern[str]:
    return re.compile(rf"(<!-- generated: {name} -->\n)(.*?)(<!-- end generated -->)", re.S)


def _regenerated(text: str) -> str:
    for name, render in _tables().items():
        text, n = _block(name).subn(lambda m, r=render: m.group(1) + r() + m.group(3), text)
        assert n == 1, f"docs/service.md has no generated block {name!r}"
    return text


def test_service_doc_tables_are_generated_from_the_code() -> None:
    text = SERVICE_DOC.read_text("utf-8")
    assert text == _regenerated(text), "run: python tests/test_generated_docs.py"


def test_default_config_is_generated_from_the_code() -> None:
    from streamgmm.settings.render import default_config_text

    assert DEFAULT_CONFIG.read_text("utf-8") == default_config_text(), (
        "run: python tests/test_generated_docs.py"
    )


def main() -> int:
    """Rewrite the generated parts from the code."""
    from streamgmm.settings.render import default_config_text

    SERVICE_DOC.write_text(_regenerated(SERVICE_DOC.read_text("utf-8")), "utf-8")
    DEFAULT_CONFIG.write_text(default_config_text(), "utf-8")
    print(f"wrote {SERVICE_DOC.relative_to(REPO)} and {DEFAULT_CONFIG.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
