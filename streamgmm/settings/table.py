"""Every setting, ``[detector]`` included: in the order of configs/default.toml, and by name.

The service's settings are declared in :mod:`streamgmm.settings.service`; the ``[detector]``
ones are derived from the detector classes (:mod:`streamgmm.settings.detector`) on first use,
as that imports the detectors (numba, river).
"""

from __future__ import annotations

from streamgmm.settings.detector import detector_specs
from streamgmm.settings.service import SECTION_ORDER, SPECS
from streamgmm.settings.spec import ENV_PREFIX, Spec

__all__ = ["SECTIONS", "all_specs", "spec_named", "spec_of_attr", "spec_of_env"]

_BY_NAME = {spec.name: spec for spec in SPECS}
_BY_ATTR = {spec.attr: spec for spec in SPECS}
_BY_ENV = {spec.env: spec for spec in SPECS}
#: Every section a config file may have.
SECTIONS = frozenset(spec.section for spec in SPECS) | {"detector"}


def all_specs() -> tuple[Spec, ...]:
    """Every setting, ``[detector]`` included, in the order of configs/default.toml."""
    everything = SPECS + detector_specs()
    return tuple(
        spec for section in SECTION_ORDER for spec in everything if spec.section == section
    )


def spec_named(name: str) -> Spec | None:
    """The setting called ``section.key``; [detector] ones are derived on first use."""
    spec = _BY_NAME.get(name)
    if spec is None and name.startswith("detector."):
        spec = next((s for s in detector_specs() if s.name == name), None)
    return spec


def spec_of_attr(attr: str) -> Spec | None:
    """The setting held in attribute ``attr`` of :class:`~streamgmm.settings.service.Settings`."""
    return _BY_ATTR.get(attr)


def spec_of_env(var: str) -> Spec | None:
    """The setting environment variable ``var`` sets (None for an unknown variable)."""
    spec = _BY_ENV.get(var)
    detector = f"{ENV_PREFIX}DETECTOR_"
    if spec is None and var.startswith(detector):
        spec = spec_named(f"detector.{var.removeprefix(detector).lower()}")
    return spec
