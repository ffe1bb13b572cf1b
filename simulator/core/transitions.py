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
7. A timeout goes to STOPPING, except a STOPPING timeout, which forces STOPPED, and an IMAGEBUILD
   timeout, which goes straight to STOPPED (upstream's bridge marked it stopped: nothing runs on
   the cluster yet). When an earlier timeout set ``conditions.timeout``, a later one keeps that
   text (it says why the instance stopped) and only changes the phase.
8. INTERRUPTED is entered only from RUNNING; it goes back to RUNNING when it recovers, or to
   STOPPING when its timeout hits.
9. Same-phase status changes (rule 4, first user activity, admission) are legal in every active
   phase; every status change gets a strictly greater status_version.

Timers (BEHAVIOUR.md, "Timeouts"), in :data:`TIMERS`:

10. Entering a phase cancels every pending timer of the instance that the new phase does not keep,
    then starts the new phase's timers, in the table's order.
11. STEP ends a phase that has a duration of its own (IMAGEBUILD, PENDING, CREATING, INITIALIZING,
    STOPPING). RUNNING and INTERRUPTED end only by an event.
12. Limits: IMAGEBUILD by *image build* (from the instance's creation, which is its entry into
    IMAGEBUILD); PENDING by *initialization*; PENDING, CREATING and INITIALIZING together by
    *startup*, counted from entering PENDING (the timer PENDING starts, CREATING and INITIALIZING
    keep); INTERRUPTED by *interruption*; STOPPING by *stopping*;
    RUNNING by *inactivity* (since the last user activity, or since RUNNING; each activity
    restarts it); RUNNING and INTERRUPTED by *max_lifetime*, counted from the instance's creation.
    A disabled limit starts no timer. The text names the activity (:data:`TIMEOUT_ACTIVITY`).
13. Leaving IMAGEBUILD ends the image build: successful when the next phase is PENDING.
14. Leaving INTERRUPTED, whichever way, clears the message the interruption set.

Everything the engine does, and everything the contract tests check, comes from the tables below.
The engine has no rule of its own about which phase follows which, or which timer runs when.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = [
    "ACTIVE_PHASES",
    "AFTER_STEP",
    "CANCELS",
    "CANCEL_SLOTS",
    "EVENT_TRIGGERED_TRANSITIONS",
    "HAPPY_PATH",
    "INITIAL_PHASES",
    "LEGAL_TRANSITIONS",
    "MAY_RUN",
    "TIMEOUT_ACTIVITY",
    "TIMERS",
    "TIMER_TIMEOUT",
    "Phase",
    "PhaseTimers",
    "Timeout",
    "Timer",
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
        Trigger.TIMED_OUT: Phase.STOPPED,
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


class Timer(enum.Enum):
    """The pending events an instance can have, at most one of each. The value names the
    instance's slot that holds it (and the key in state files, in this order)."""

    STEP = "step"
    """The phase's own duration is over (STEP_DONE)."""
    PHASE_TIMEOUT = "phase_timeout"
    """The limit of the phase (its :class:`Timeout` is in :data:`TIMERS`)."""
    INACTIVITY = "inactivity"
    LIFETIME = "lifetime"
    RECOVER = "recover"
    """A timed interruption ends."""
    BUILD_LOG = "log"
    """The image build writes its next log line."""
    INTERRUPT = "interrupt"
    """An interrupt fault's scheduled effect."""
    STARTUP = "startup"
    """The startup limit, from entering PENDING until RUNNING."""


class Timeout(enum.Enum):
    """The timeout kinds. The value is the limit's name in ``plan.Timeouts`` (and in state files,
    the control plane and scenarios)."""

    INITIALIZATION = "initialization"
    STARTUP = "startup"
    INACTIVITY = "inactivity"
    MAX_LIFETIME = "max_lifetime"
    INTERRUPTION = "interruption"
    STOPPING = "stopping"
    IMAGE_BUILD = "image_build"


TIMEOUT_ACTIVITY: Mapping[Timeout, str] = {
    Timeout.INITIALIZATION: "initialization",
    Timeout.STARTUP: "startup",
    Timeout.INACTIVITY: "period of inactivity",
    Timeout.MAX_LIFETIME: "maximum lifetime",
    Timeout.INTERRUPTION: "workspace interruption",
    Timeout.STOPPING: "stopping",
    Timeout.IMAGE_BUILD: "image build",
}
"""What upstream's ``conditions.timeout`` text says took too long (``workspace timed out after
<activity> (<took>) took longer than <limit>``); ``timeout:<activity>`` is the change's cause."""


@dataclass(frozen=True, slots=True)
class PhaseTimers:
    """What entering a phase does to the instance's timers (rules 10-13)."""

    starts: tuple[Timer, ...] = ()
    """Scheduled on entry, in this order (the order breaks ties between events due together).
    A started timer that the phase also keeps and that is still pending is left alone."""
    keeps: frozenset[Timer] = frozenset()
    """Left running from the phase before; every other pending timer is cancelled on entry."""
    during: frozenset[Timer] = frozenset()
    """Started later, while in the phase, by the build, a command or a fault."""
    timeout: Timeout | None = None
    """What the PHASE_TIMEOUT timer measures while in this phase."""


TIMERS: Mapping[Phase, PhaseTimers] = {
    Phase.IMAGEBUILD: PhaseTimers(
        starts=(Timer.STEP, Timer.PHASE_TIMEOUT),
        during=frozenset({Timer.BUILD_LOG}),
        timeout=Timeout.IMAGE_BUILD,
    ),
    Phase.PENDING: PhaseTimers(
        starts=(Timer.STEP, Timer.PHASE_TIMEOUT, Timer.STARTUP), timeout=Timeout.INITIALIZATION
    ),
    Phase.CREATING: PhaseTimers(starts=(Timer.STEP,), keeps=frozenset({Timer.STARTUP})),
    Phase.INITIALIZING: PhaseTimers(starts=(Timer.STEP,), keeps=frozenset({Timer.STARTUP})),
    Phase.RUNNING: PhaseTimers(
        starts=(Timer.LIFETIME, Timer.INACTIVITY, Timer.INTERRUPT),
        keeps=frozenset({Timer.LIFETIME, Timer.INTERRUPT}),
        during=frozenset({Timer.INTERRUPT}),
    ),
    Phase.INTERRUPTED: PhaseTimers(
        starts=(Timer.PHASE_TIMEOUT,),
        keeps=frozenset({Timer.LIFETIME, Timer.INTERRUPT}),
        during=frozenset({Timer.RECOVER}),
        timeout=Timeout.INTERRUPTION,
    ),
    Phase.STOPPING: PhaseTimers(starts=(Timer.STEP, Timer.PHASE_TIMEOUT), timeout=Timeout.STOPPING),
    Phase.STOPPED: PhaseTimers(),
}
"""phase -> its timers. Which timeout each timer measures: STEP the phase's planned duration,
PHASE_TIMEOUT the phase's :attr:`PhaseTimers.timeout`, INACTIVITY and LIFETIME their own."""

TIMER_TIMEOUT: Mapping[Timer, Timeout] = {
    Timer.INACTIVITY: Timeout.INACTIVITY,
    Timer.LIFETIME: Timeout.MAX_LIFETIME,
    Timer.STARTUP: Timeout.STARTUP,
}
"""The timers that are a timeout of their own, whatever the phase."""


def _may_run() -> dict[Phase, frozenset[Timer]]:
    """phase -> every timer that can be pending while an instance is in it (a fixpoint over the
    transition table: what the phase starts or starts later, and what it keeps from any phase that
    can lead to it)."""
    before: dict[Phase, set[Phase]] = {phase: set() for phase in EVENT_TRIGGERED_TRANSITIONS}
    for phase, triggers in EVENT_TRIGGERED_TRANSITIONS.items():
        for target in triggers.values():
            before[target].add(phase)
    out = {phase: set(t.starts) | t.during for phase, t in TIMERS.items()}
    changed = True
    while changed:
        changed = False
        for phase, timers in TIMERS.items():
            inherited = set().union(*(out[p] for p in before[phase])) & timers.keeps
            if not inherited <= out[phase]:
                out[phase] |= inherited
                changed = True
    return {phase: frozenset(timers) for phase, timers in out.items()}


MAY_RUN: Mapping[Phase, frozenset[Timer]] = _may_run()
"""phase -> the timers an instance in it may have pending (checked by ``check_invariants``)."""


def _cancels() -> dict[Phase, tuple[Timer, ...]]:
    before: dict[Phase, set[Timer]] = {phase: set() for phase in TIMERS}
    for phase, triggers in EVENT_TRIGGERED_TRANSITIONS.items():
        for target in triggers.values():
            before[target] |= MAY_RUN[phase]
    return {
        phase: tuple(t for t in Timer if t in before[phase] and t not in TIMERS[phase].keeps)
        for phase in TIMERS
    }


CANCELS: Mapping[Phase, tuple[Timer, ...]] = _cancels()
"""phase -> the timers entering it cancels: any a phase before may leave pending that it does not
keep (derived, so the engine never looks at a timer that cannot be there)."""

CANCEL_SLOTS: Mapping[Phase, tuple[str, ...]] = {
    phase: tuple(timer.value for timer in timers) for phase, timers in CANCELS.items()
}
"""The same, as the instance slots that hold those timers (the engine's hot path reads these)."""

AFTER_STEP: Mapping[Phase, Phase] = {
    phase: triggers[Trigger.STEP_DONE]
    for phase, triggers in EVENT_TRIGGERED_TRANSITIONS.items()
    if Trigger.STEP_DONE in triggers
}
"""phase -> where its STEP_DONE leads (:func:`next_phase` of the commonest trigger, kept ready)."""


def next_phase(phase: Phase, trigger: Trigger) -> Phase | None:
    """The phase ``trigger`` leads to from ``phase``, or None when it does not apply there."""
    return EVENT_TRIGGERED_TRANSITIONS[phase].get(trigger)


def is_legal(previous: Phase | None, current: Phase) -> bool:
    """Whether a status in ``current`` may directly follow one in ``previous``.

    ``previous`` is None for an instance's first status."""
    if previous is None:
        return current in INITIAL_PHASES
    return current in LEGAL_TRANSITIONS[previous]
