"""Per-key pipeline factory shared by the Kafka runner and ``streamgmm replay``.

Both paths build their detectors here, so for the same ticks they hold the same models and
emit the same records.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from streamgmm.service.config import Settings


class Pipeline(Protocol):
    """What the runner needs from a per-key detector."""

    def learn_predict_one(self, tick: dict[str, float]) -> dict[str, Any]: ...

    def learn_predict_many(
        self, ticks: Sequence[Mapping[str, Any]]
    ) -> list[dict[str, Any] | ValueError]: ...

    def to_state(self) -> dict[str, Any]: ...


def make_pipeline(settings: Settings) -> Pipeline:
    """A fresh detector for one key: RegimeDetector (market ticks) or EventDetector (events).

    Parameters
    ----------
    settings : Settings
        Uses ``tick_kind``, ``event_fields`` and the ``[detector]`` section.
    """
    from streamgmm.regime import EventDetector, RegimeDetector

    params: dict[str, Any] = {"halflife": settings.halflife}
    if settings.tick_kind == "event":
        return EventDetector(  # type: ignore[no-any-return]
            fields=list(settings.event_fields),
            n_components=settings.n_regimes,
            warmup=settings.warmup,
            **params,
        )
    return RegimeDetector(  # type: ignore[no-any-return]
        n_regimes=settings.n_regimes, warmup=settings.warmup, **params
    )


def restore_pipeline(settings: Settings, state: dict[str, Any]) -> Pipeline:
    """Rebuild a detector from its ``to_state()`` dict (never from pickle)."""
    from streamgmm.regime import EventDetector, RegimeDetector

    cls = EventDetector if settings.tick_kind == "event" else RegimeDetector
    return cls.from_state(state)  # type: ignore[no-any-return]
