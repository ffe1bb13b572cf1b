"""The instance lifecycle, kept as data in one place.

Rules (BEHAVIOUR.md, "Lifecycle of an instance"):

1. A start creates a new instance directly in IMAGEBUILD (an image must be built) or PENDING.
   PHASE_UNSPECIFIED is never reported.
2. Happy path: IMAGEBUILD -> PENDING -> CREATING -> INITIALIZING -> RUNNING -> STOPPING -> STOPPED.
   Each arrow is a STEP_DONE: the phase's own duration has passed.
3. STOPPED is terminal: nothing leaves it. An instance that is not STOPPED is *active*; a workspace
   has at most one active instance, and a restart makes a new instance.
4. An event that brings a condition (a stop request, a failure, a timeout) first publishes the
   condition as a status change of its own in the current phase, then the phase changes at the same
   simulated instant. So a listener always sees *why* before *what*.
5. A stop request moves every phase before STOPPING to STOPPING; a stop of a STOPPING instance
   changes nothing.
6. A failure before the cluster runs anything (IMAGEBUILD, PENDING) or while pulling the image
   (CREATING) goes straight to STOPPED; later (INITIALIZING, RUNNING, INTERRUPTED) it goes through
   STOPPING. ``conditions.failed`` is never cleared.
7. A timeout goes to STOPPING, except a STOPPING timeout, which forces STOPPED.
8. INTERRUPTED is entered only from RUNNING; it goes back to RUNNING when it recovers, or to
   STOPPING when its timeout hits.
9. Same-phase status changes (rule 4, first user activity, admission) are legal in every active
   phase; every status change gets a strictly greater status_version.

Everything the engine does, and everything the contract tests check, comes from the tables below.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping

__all__ = [
    "ACTIVE_PHASES",
    "EVENT_TRIGGERED_TRANSITIONS",
    "HAPPY_PATH",
    "INITIAL_PHASES",
    "LEGAL_TRANSITIONS",
    "Phase",
    "Trigger",
    "is_legal",
    "next_phase",
]


class Phase(enum.IntEnum):
    """Where an instance is in its lifecycle: the core's own enum, with the names and values of
    gitpod.v1 ``WorkspaceInstanceStatusPhase`` (the edge converts; the core never imports protobuf).
    """

    UNSPECIFIED = 0
    IMAGEBUILD = 1
    PENDING = 2
    CREATING = 3
    INITIALIZING = 4
    RUNNING = 5
    INTERRUPTED = 6
    STOPPING = 7
    STOPPED = 8


class Trigger(enum.Enum):
    """What makes an instance change phase."""

    STEP_DONE = "step-done"
    STOP_REQUESTED = "stop-requested"
    FAILED = "failed"
    TIMED_OUT = "timed-out"
    INTERRUPTED = "interrupted"
    RECOVERED = "recovered"


HAPPY_PATH: tuple[Phase, ...] = (
    Phase.IMAGEBUILD,
    Phase.PENDING,
    Phase.CREATING,
    Phase.INITIALIZING,
    Phase.RUNNING,
    Phase.STOPPING,
    Phase.STOPPED,
)

ACTIVE_PHASES: frozenset[Phase] = frozenset(
    p for p in Phase if p not in (Phase.UNSPECIFIED, Phase.STOPPED)
)
"""Every phase that counts as an active instance (STOPPING included)."""

INITIAL_PHASES: frozenset[Phase] = frozenset({Phase.IMAGEBUILD, Phase.PENDING})

EVENT_TRIGGERED_TRANSITIONS: Mapping[Phase, Mapping[Trigger, Phase]] = {
    Phase.IMAGEBUILD: {
        Trigger.STEP_DONE: Phase.PENDING,
        Trigger.STOP_REQUESTED: Phase.STOPPING,
        Trigger.FAILED: Phase.STOPPED,
        Trigger.TIMED_OUT: Phase.STOPPING,
    },
    Phase.PENDING: {
        Trigger.STEP_DONE: Phase.CREATING,
        Trigger.STOP_REQUESTED: Phase.STOPPING,
        Trigger.FAILED: Phase.STOPPED,
        Trigger.TIMED_OUT: Phase.STOPPING,
    },
    Phase.CREATING: {
        Trigger.STEP_DONE: Phase.INITIALIZING,
        Trigger.STOP_REQUESTED: Phase.STOPPING,
        Trigger.FAILED: Phase.STOPPED,
        Trigger.TIMED_OUT: Phase.STOPPING,
    },
    Phase.INITIALIZING: {
        Trigger.STEP_DONE: Phase.RUNNING,
        Trigger.STOP_REQUESTED: Phase.STOPPING,
        Trigger.FAILED: Phase.STOPPING,
        Trigger.TIMED_OUT: Phase.STOPPING,
    },
    Phase.RUNNING: {
        Trigger.STOP_REQUESTED: Phase.STOPPING,
        Trigger.FAILED: Phase.STOPPING,
        Trigger.TIMED_OUT: Phase.STOPPING,
        Trigger.INTERRUPTED: Phase.INTERRUPTED,
    },
    Phase.INTERRUPTED: {
        Trigger.RECOVERED: Phase.RUNNING,
        Trigger.STOP_REQUESTED: Phase.STOPPING,
        Trigger.FAILED: Phase.STOPPING,
        Trigger.TIMED_OUT: Phase.STOPPING,
    },
    Phase.STOPPING: {
        Trigger.STEP_DONE: Phase.STOPPED,
        Trigger.TIMED_OUT: Phase.STOPPED,
    },
    Phase.STOPPED: {},
}
"""(current phase, trigger) -> next phase. A missing entry means the trigger does not apply."""


def _legal_transitions() -> dict[Phase, frozenset[Phase]]:
    table: dict[Phase, set[Phase]] = {}
    for phase, triggers in EVENT_TRIGGERED_TRANSITIONS.items():
        targets = set(triggers.values())
        if phase in ACTIVE_PHASES:
            targets.add(phase)  # rule 9: same-phase status changes
        table[phase] = targets
    return {phase: frozenset(targets) for phase, targets in table.items()}


LEGAL_TRANSITIONS: Mapping[Phase, frozenset[Phase]] = _legal_transitions()
"""phase -> every phase the *next* status of an instance may have. Derived from the table above;
this is what observers (tests, the contract suite) check a stream against."""


def next_phase(phase: Phase, trigger: Trigger) -> Phase | None:
    """The phase ``trigger`` leads to from ``phase``, or None when it does not apply there."""
    return EVENT_TRIGGERED_TRANSITIONS[phase].get(trigger)


def is_legal(previous: Phase | None, current: Phase) -> bool:
    """Whether a status in ``current`` may directly follow one in ``previous``.

    ``previous`` is None for an instance's first status."""
    if previous is None:
        return current in INITIAL_PHASES
    return current in LEGAL_TRANSITIONS[previous]
