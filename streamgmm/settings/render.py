"""The settings as text: configs/default.toml and the docs' settings table.

Both are made from the declarations (:func:`~streamgmm.settings.table.all_specs`), so neither is
edited by hand; a test holds the files equal to :func:`default_config_text` and
:func:`settings_table`.
"""

from __future__ import annotations

import textwrap

from streamgmm.settings.service import SECTION_DOCS
from streamgmm.settings.spec import toml_value
from streamgmm.settings.table import all_specs

__all__ = ["default_config_text", "settings_table"]

_CONFIG_HEADER = """\
# streamgmm service — default configuration.
#
# Every setting, at its default, with what it means. Generated from the code
# (streamgmm.settings.render.default_config_text); tests/test_generated_docs.py holds it equal.
# A config file may set any subset of these keys. Precedence, lowest to highest:
#   1. these defaults;
#   2. the file given with `streamgmm run --config FILE` (only the keys it sets);
#   3. environment variables STREAMGMM_<SECTION>_<KEY>, e.g. STREAMGMM_KAFKA_BOOTSTRAP_SERVERS,
#      STREAMGMM_TOPICS_INPUT, STREAMGMM_DETECTOR_DT_UNIT, STREAMGMM_SECURITY_SASL_PLAIN_PASSWORD;
#   4. command-line flags: --set SECTION.KEY=VALUE for any setting, and --bootstrap-servers,
#      --input-topic, --output-topic, --group-id, --metrics-port, --metrics-host.
# Every value is validated when the service starts; a bad value stops it with a one-line
# message naming the setting and the value, and exit code 2.
# An empty string means "not set" wherever a setting is optional.
"""


def _comment(text: str, width: int = 99) -> list[str]:
    return textwrap.wrap(text, width - 2, initial_indent="# ", subsequent_indent="# ")


def default_config_text() -> str:
    """Every setting at its default, with its meaning: the text of configs/default.toml."""
    lines = [_CONFIG_HEADER.rstrip("\n")]
    section = ""
    for spec in all_specs():
        if spec.section != section:
            section = spec.section
            lines += ["", f"[{section}]"]
            if section in SECTION_DOCS:
                lines += [*_comment(SECTION_DOCS[section]), "#"]
        lines += [*_comment(spec.doc), f"{spec.key} = {toml_value(spec.default)}"]
    return "\n".join(lines) + "\n"


def settings_table() -> str:
    """Every setting as a Markdown table (docs/service.md holds exactly this)."""
    rows = [
        "| setting | environment variable | default | meaning |",
        "|---------|----------------------|---------|---------|",
    ]
    for spec in all_specs():
        doc = spec.doc.replace("|", "\\|")
        rows.append(f"| `{spec.name}` | `{spec.env}` | `{toml_value(spec.default)}` | {doc} |")
    return "\n".join(rows) + "\n"
