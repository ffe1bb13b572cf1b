"""Everything that can happen, as data: the space that coverage is counted against.

Derived wherever possible from the tables it describes, so it cannot drift from the engine:
transitions from :data:`~simulator.core.transitions.EVENT_TRIGGERED_TRANSITIONS` (plus the two
ways an instance starts), phases from the phase enum, failure conditions from the phases where
``failed`` applies, timeout kinds from :data:`~simulator.core.plan.TIMEOUT_NAMES`, fault kinds from
the fault module's own names, methods from :data:`~simulator.core.faults.WORKSPACES_METHODS`. The
one table written by hand is :data:`EXPECTED_CODES`: which status each RPC may answer, as the spec
(BEHAVIOUR.md, workspaces.proto.txt) and the simulator's documented [chosen] rules say.
"""

from __future__ import annotations

from collections.abc import Mapping

from simulator.core.faults import FAULT_NAMES, WORKSPACES_METHODS
from simulator.core.plan import TIMEOUT_NAMES
from simulator.core.transitions import (
    EVENT_TRIGGERED_TRANSITIONS,
    HAPPY_PATH,
    INITIAL_PHASES,
    TIMEOUT_ACTIVITY,
    Phase,
    Trigger,
)

__all__ = [
    "BUILD_LOG_KINDS",
    "CAUSE_TRIGGERS",
    "CONDITIONS",
    "EXPECTED_CODES",
    "FAULT_KINDS",
    "FEATURES",
    "GROUPS",
    "PHASES",
    "START_TRIGGER",
    "STREAM_ENDS",
    "STREAM_METHODS",
    "TIMEOUT_ACTIVITIES",
    "TRANSITIONS",
    "condition_of",
    "trigger_of",
]

GROUPS = (
    "transitions",
    "phases",
    "conditions",
    "rpcs",
    "streams",
    "build_logs",
    "faults",
    "features",
)
"""The groups of a coverage report, in the order reports show them."""

START_TRIGGER = "start"
"""The trigger of an instance's first status (``from`` is None)."""

TransitionKey = tuple[str | None, str, str]
"""(from phase name or None for a start, to phase name, trigger)."""

TRANSITIONS: tuple[TransitionKey, ...] = (
    *((None, p.name, START_TRIGGER) for p in HAPPY_PATH if p in INITIAL_PHASES),
    *(
        (phase.name, target.name, trigger.value)
        for phase, triggers in EVENT_TRIGGERED_TRANSITIONS.items()
        for trigger, target in triggers.items()
    ),
)
"""Every legal phase change of the table, and the two starts."""

PHASES: tuple[str, ...] = tuple(
    p.name
    for p in (*HAPPY_PATH[:-2], Phase.INTERRUPTED, *HAPPY_PATH[-2:])
    if p is not Phase.UNSPECIFIED
)
"""Every phase an instance can be in, in lifecycle order (never UNSPECIFIED)."""
assert set(PHASES) == {p.name for p in Phase if p is not Phase.UNSPECIFIED}

CAUSE_TRIGGERS: Mapping[str, str] = {
    "start": START_TRIGGER,
    "step": Trigger.STEP_DONE.value,
    "stop-request": Trigger.STOP_REQUESTED.value,
    "failed": Trigger.FAILED.value,
    "interrupted": Trigger.INTERRUPTED.value,
    "recovered": Trigger.RECOVERED.value,
}
"""The engine's ``StatusChange.cause`` -> the table's trigger (``timeout:*`` is timed-out)."""

TIMEOUT_ACTIVITIES: Mapping[str, str] = {
    activity: timeout.value for timeout, activity in TIMEOUT_ACTIVITY.items()
}
"""The activity a timeout's text names -> the limit's name in :data:`TIMEOUT_NAMES`."""
assert set(TIMEOUT_ACTIVITIES.values()) == set(TIMEOUT_NAMES)

CONDITIONS: tuple[str, ...] = (
    *(
        f"failed:{p.name}"
        for p in EVENT_TRIGGERED_TRANSITIONS
        if Trigger.FAILED in EVENT_TRIGGERED_TRANSITIONS[p]
    ),
    *(f"timeout:{name}" for name in TIMEOUT_NAMES),
    "stopped-by-request",
    "interrupted",
    "recovered",
    "first-user-activity",
    "admission-changed",
)
"""Every condition a status can bring: a failure in each phase where one applies, each timeout,
a stop request, an interruption and its recovery, the first user activity, a sharing change."""

_SAME_PHASE_CONDITIONS: Mapping[str, str] = {
    "stop-request": "stopped-by-request",
    "user-activity": "first-user-activity",
    "admission": "admission-changed",
}
_PHASE_CHANGE_CONDITIONS: Mapping[str, str] = {
    "interrupted": "interrupted",
    "recovered": "recovered",
}


def trigger_of(cause: str) -> str:
    """The table's trigger for a phase change with this cause (the cause itself when unknown)."""
    if cause.startswith("timeout:"):
        return Trigger.TIMED_OUT.value
    return CAUSE_TRIGGERS.get(cause, cause)


def condition_of(phase: str, cause: str, phase_changed: bool) -> str | None:
    """The condition a status change brought, if any (``other:<cause>`` when unknown)."""
    if phase_changed:
        return _PHASE_CHANGE_CONDITIONS.get(cause)
    if cause == "failed":
        return f"failed:{phase}"
    if cause.startswith("timeout:"):
        activity = cause.partition(":")[2]
        return f"timeout:{TIMEOUT_ACTIVITIES.get(activity, activity)}"
    return _SAME_PHASE_CONDITIONS.get(cause, f"other:{cause}")


STREAM_METHODS: tuple[str, ...] = (
    "ListenToWorkspaceInstance",
    "ListenToImageBuildLogs",
    "StopWorkspace",
)
assert set(STREAM_METHODS) <= set(WORKSPACES_METHODS)

STREAM_ENDS: tuple[str, ...] = ("completed", "client-cancel", "server-error", "shutdown")
"""How a stream ended: ``completed`` (the status streams after STOPPED, the build log after the
build), the client went away, the server ended it with an error (a fault), the server shut down
or was reset."""

BUILD_LOG_KINDS: tuple[str, ...] = ("live", "replayed", "no-build")
"""ListenToImageBuildLogs joined a running build, replayed a finished one, or found no build."""

FAULT_KINDS: tuple[str, ...] = FAULT_NAMES
"""Every fault kind, by its one name in the registry (:data:`simulator.core.faults.FAULT_KINDS`)."""

_ALL = "OK", "UNAUTHENTICATED", "INVALID_ARGUMENT", "PERMISSION_DENIED"
EXPECTED_CODES: Mapping[str, tuple[str, ...]] = {
    # Every RPC: OK; UNAUTHENTICATED (no, repeated or unknown credentials); INVALID_ARGUMENT (a
    # malformed request or id, bad paging, a misused idempotency token, an unparseable context);
    # PERMISSION_DENIED (the admin token is refused on the Gitpod API; owner-only calls on a
    # workspace shared with the caller).
    "ListWorkspaces": _ALL,
    "GetWorkspace": (*_ALL, "NOT_FOUND"),
    # Never started is FAILED_PRECONDITION in the spec, but the API cannot make a workspace that
    # was never started (CreateAndStartWorkspace starts it), so that pair is not expected.
    "GetOwnerToken": (*_ALL, "NOT_FOUND"),
    "CreateAndStartWorkspace": (*_ALL, "NOT_FOUND"),
    "StartWorkspace": (*_ALL, "NOT_FOUND"),
    "GetActiveWorkspaceInstance": (*_ALL, "NOT_FOUND", "FAILED_PRECONDITION"),
    "GetWorkspaceInstanceOwnerToken": (*_ALL, "NOT_FOUND"),
    "ListenToWorkspaceInstance": (*_ALL, "NOT_FOUND"),
    "ListenToImageBuildLogs": (*_ALL, "NOT_FOUND"),
    "StopWorkspace": (*_ALL, "NOT_FOUND", "FAILED_PRECONDITION"),
}
"""Method -> every status the spec and the documented rules say it can answer. A stream's end
by a client cancel or a shutdown is counted under ``streams``, not here."""
assert tuple(EXPECTED_CODES) == WORKSPACES_METHODS

IDEMPOTENT_METHODS: tuple[str, ...] = ("CreateAndStartWorkspace", "StartWorkspace", "StopWorkspace")
SHARED_READ_METHODS: tuple[str, ...] = (
    "GetWorkspace",
    "GetActiveWorkspaceInstance",
    "ListenToWorkspaceInstance",
    "ListenToImageBuildLogs",
)
FEATURES: tuple[str, ...] = (
    "paging",
    *(f"idempotent-replay:{m}" for m in IDEMPOTENT_METHODS),
    *(f"shared-read:{m}" for m in SHARED_READ_METHODS),
)
"""``paging``: a ListWorkspaces page after the first; an idempotent replay of each RPC that takes
a token; a read of a workspace shared by another user."""
