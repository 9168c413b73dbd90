"""Key state: one key's detector and the bookkeeping the tick rules and the checkpoint need.

Owns :class:`KeyState` (the key's detector, input partition, next offset, last ts and regime)
and its versioned JSON state, which travels inside each changelog snapshot; and the key's
detector itself: what the tick path needs of one (:class:`Pipeline`), a fresh one for the
settings (:func:`make_pipeline`), or one rebuilt from its state (:func:`restore_pipeline`,
never from pickle).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from streamgmm import _validate
from streamgmm.regime import StreamProblem
from streamgmm.settings.detector import detector_class, detector_kwargs
from streamgmm.settings.service import Settings

__all__ = ["STATE_VERSION", "KeyState", "Pipeline", "make_pipeline", "restore_pipeline"]

#: Version of :meth:`KeyState.to_state`'s dict (inside each changelog snapshot).
STATE_VERSION = 1


class Pipeline(Protocol):
    """What the tick path needs from a per-key detector.

    A detector that also has ``learn_predict_block(ts, fields) -> OutputBlock`` (both of
    streamgmm's do: :meth:`streamgmm.RegimeDetector.learn_predict_block`) is run through it;
    another gets its ticks as dicts through ``learn_predict_many``.
    """

    def learn_predict_one(self, tick: dict[str, float]) -> dict[str, Any]: ...

    def learn_predict_many(
        self, ticks: Sequence[Mapping[str, Any]]
    ) -> list[dict[str, Any] | ValueError]: ...

    def to_state(self) -> dict[str, Any]: ...

    @property
    def stream_problem(self) -> StreamProblem | None:
        """Why the stream gives no regimes (a sentence with its ``kind``), or None."""
        ...


def make_pipeline(settings: Settings) -> Pipeline:
    """A fresh detector for one key: RegimeDetector (market ticks) or EventDetector (events).

    Parameters
    ----------
    settings : Settings
        Uses ``tick_kind``, ``event_fields`` and the ``[detector]`` settings that were given
        (:func:`streamgmm.settings.detector.detector_kwargs`); the others keep the detector's
        defaults.
    """
    cls = detector_class(settings.tick_kind)
    return cls(**detector_kwargs(settings))  # type: ignore[no-any-return]


def restore_pipeline(settings: Settings, state: dict[str, Any]) -> Pipeline:
    """Rebuild a detector from its ``to_state()`` dict (never from pickle)."""
    return detector_class(settings.tick_kind).from_state(state)  # type: ignore[attr-defined, no-any-return]


@dataclass
class KeyState:
    """One key's detector plus the bookkeeping the tick rules and the checkpoint need.

    ``next_offset`` is the first input offset not yet applied to the detector, ``last_ts`` and
    ``last_regime`` those of the last applied tick; ``dirty`` is set when a tick was applied
    since the key's last snapshot. ``problem`` is the kind of the detector's stream problem
    last reported (:attr:`streamgmm.ticks.rules.KeyRun.problem`), kept in memory only: a
    restarted service reports a key's problem once more.
    """

    pipeline: Pipeline
    partition: int
    next_offset: int = 0
    last_ts: float | None = None
    last_regime: int | None = None
    dirty: bool = False
    problem: str | None = None

    def to_state(self) -> dict[str, Any]:
        """Versioned JSON-safe state (the partition and offset travel in the snapshot)."""
        return {
            "version": STATE_VERSION,
            "pipeline": self.pipeline.to_state(),
            "last_ts": self.last_ts,
            "last_regime": self.last_regime,
        }

    @classmethod
    def from_state(
        cls, settings: Settings, state: Mapping[str, Any], partition: int, next_offset: int
    ) -> KeyState:
        """Rebuild from :meth:`to_state` and the snapshot's partition and next offset.

        Raises
        ------
        ValueError
            If the state is not one :meth:`to_state` writes: another version, a field missing
            or unknown, a value of the wrong type or out of range (checked here), or a
            detector state its ``from_state`` refuses. Nothing is built before the checks.
        """
        _validate.fields("state", state, ("version", "pipeline", "last_ts", "last_regime"))
        version = state["version"]
        if isinstance(version, bool) or version != STATE_VERSION:
            raise ValueError(
                f"state.version must be {STATE_VERSION}, got {_validate._show(version)}"
            )
        last_ts = _validate.optional_number("state.last_ts", state["last_ts"])
        last_regime = state["last_regime"]
        if last_regime is not None:
            last_regime = _validate.integer("state.last_regime", last_regime, hi=2**31 - 1)
        if not isinstance(state["pipeline"], Mapping):
            raise ValueError("state.pipeline must be an object")
        return cls(
            pipeline=restore_pipeline(settings, dict(state["pipeline"])),
            partition=partition,
            next_offset=next_offset,
            last_ts=last_ts,
            last_regime=last_regime,
        )
