"""Shared by the engine tests: simulated-time shorthands and the stream checker."""

from __future__ import annotations

from simulator.core.model import EngineEvent, InstanceStatus, StatusChange
from simulator.core.simtime import DEFAULT_START, SECOND
from simulator.core.transitions import Phase, is_legal

START = DEFAULT_START


def t(seconds: float) -> int:
    """The simulated instant ``seconds`` after the engine's start."""
    return START + round(seconds * SECOND)


def secs(at: int) -> float:
    return (at - START) / SECOND


def assert_valid_stream(events: list[EngineEvent]) -> None:
    """Every rule an observer of the engine relies on, checked over a whole event stream."""
    last: dict[str, InstanceStatus] = {}
    previous_at: int | None = None
    for event in events:
        if previous_at is not None:
            assert event.at >= previous_at, f"simulated time went backwards at {event}"
        previous_at = event.at
        if not isinstance(event, StatusChange):
            continue
        before = last.get(event.instance_id)
        assert event.previous == before, f"change does not follow the last status: {event}"
        assert event.status.phase is not Phase.UNSPECIFIED
        assert is_legal(before.phase if before else None, event.status.phase), (
            f"illegal {before.phase.name if before else None} -> {event.status.phase.name}"
        )
        if before is not None:
            assert event.status.version > before.version, f"version not increasing: {event}"
        last[event.instance_id] = event.status
