"""Every setting, ``[detector]`` included: in the order of configs/default.toml, and by name.

The service's settings are declared in :mod:`streamgmm.settings.service`; the ``[detector]``
ones with the detectors (:mod:`streamgmm.regime.params`), read by
:mod:`streamgmm.settings.detector`.
"""

from __future__ import annotations

from streamgmm.settings.detector import detector_specs
from streamgmm.settings.service import SECTION_ORDER, SPECS
from streamgmm.settings.spec import Spec

__all__ = ["SECTIONS", "all_specs", "spec_named", "spec_of_attr", "spec_of_env"]

_EVERY = SPECS + detector_specs()
_BY_NAME = {spec.name: spec for spec in _EVERY}
_BY_ATTR = {spec.attr: spec for spec in SPECS}
_BY_ENV = {spec.env: spec for spec in _EVERY}
#: Every section a config file may have.
SECTIONS = frozenset(spec.section for spec in _EVERY)


def all_specs() -> tuple[Spec, ...]:
    """Every setting, ``[detector]`` included, in the order of configs/default.toml."""
    return tuple(spec for section in SECTION_ORDER for spec in _EVERY if spec.section == section)


def spec_named(name: str) -> Spec | None:
    """The setting called ``section.key``."""
    return _BY_NAME.get(name)


def spec_of_attr(attr: str) -> Spec | None:
    """The setting held in attribute ``attr`` of :class:`~streamgmm.settings.service.Settings`."""
    return _BY_ATTR.get(attr)


def spec_of_env(var: str) -> Spec | None:
    """The setting environment variable ``var`` sets (None for an unknown variable)."""
    return _BY_ENV.get(var)
