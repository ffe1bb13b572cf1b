"""Targeted faults: what can go wrong, aimed at what, how often and when.

Plain data, kept by the engine (so the state exports with everything else). Lifecycle faults are
*bound* to an instance when they first apply to it (at its start, or at once for a workspace's or
instance's active instance) and act at the phase they name; RPC and stream faults are consulted
by the service layer per call or per stream.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field

from simulator.core import limits
from simulator.core.errors import InvalidArgument
from simulator.core.simtime import Duration, SimTime
from simulator.core.transitions import Phase

DEFAULT_IMAGE_BUILD_REASON = "image build failed: exit code 100"
DEFAULT_IMAGE_PULL_REASON = (
    "cannot pull image: rpc error: code = NotFound desc = failed to pull and unpack image:"
    " not found"
)
DEFAULT_CONTENT_INIT_REASON = (
    "content initialization failed: cannot initialize workspace: git initializer: exit status 128"
)

WORKSPACES_SERVICE = "gitpod.v1.WorkspacesService"
WORKSPACES_METHODS = (
    "ListWorkspaces",
    "GetWorkspace",
    "GetOwnerToken",
    "CreateAndStartWorkspace",
    "StartWorkspace",
    "GetActiveWorkspaceInstance",
    "GetWorkspaceInstanceOwnerToken",
    "ListenToWorkspaceInstance",
    "ListenToImageBuildLogs",
    "StopWorkspace",
)


class TargetKind(enum.Enum):
    NEXT_START = "next-start"
    WORKSPACE = "workspace"
    INSTANCE = "instance"
    CONTEXT = "context"
    ANY = "any"


@dataclass(frozen=True, slots=True)
class Target:
    kind: TargetKind
    value: str = ""
    pattern: re.Pattern[str] | None = field(default=None, compare=False)

    @classmethod
    def of(cls, kind: TargetKind, value: str = "") -> Target:
        if kind is TargetKind.CONTEXT:
            return cls(kind, value, compile_pattern(value))
        if kind in (TargetKind.WORKSPACE, TargetKind.INSTANCE) and not value:
            raise InvalidArgument(f"a {kind.value} target needs an id")
        return cls(kind, value)

    def describe(self) -> str:
        return self.kind.value if not self.value else f"{self.kind.value} {self.value}"


def compile_pattern(pattern: str) -> re.Pattern[str]:
    """A context URL pattern; a malformed one is INVALID_ARGUMENT naming the problem."""
    if not pattern:
        raise InvalidArgument("context pattern must not be empty")
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise InvalidArgument(f"malformed context pattern {pattern!r}: {exc}") from None


# ---------------------------------------------------------------------------- effects


@dataclass(frozen=True, slots=True)
class FailPhase:
    """Fail at the end of ``phase`` (IMAGEBUILD, CREATING or INITIALIZING)."""

    phase: Phase
    reason: str
    log_tail: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class InterruptRunning:
    after: Duration = 0
    duration: Duration | None = None
    """None: stays interrupted until the interruption timeout."""


@dataclass(frozen=True, slots=True)
class StallPhase:
    phase: Phase


@dataclass(frozen=True, slots=True)
class RpcError:
    method: str
    """Full path, e.g. ``/gitpod.v1.WorkspacesService/GetWorkspace``."""
    code: str
    """A grpclib Status name, e.g. ``UNAVAILABLE``."""
    message: str
    probability: float = 0.0
    """0 means every matching call."""


@dataclass(frozen=True, slots=True)
class RpcLatency:
    method: str
    latency: Duration
    simulated: bool


@dataclass(frozen=True, slots=True)
class StreamEnd:
    after_messages: int
    code: str
    message: str


@dataclass(frozen=True, slots=True)
class StreamDuplicate:
    pass


Effect = (
    FailPhase | InterruptRunning | StallPhase | RpcError | RpcLatency | StreamEnd | StreamDuplicate
)
LIFECYCLE_EFFECTS = (FailPhase, InterruptRunning, StallPhase)
STREAM_EFFECTS = (StreamEnd, StreamDuplicate)
RPC_EFFECTS = (RpcError, RpcLatency)

_ALLOWED_TARGETS: dict[type, frozenset[TargetKind]] = {
    **{
        t: frozenset(
            {TargetKind.NEXT_START, TargetKind.WORKSPACE, TargetKind.INSTANCE, TargetKind.CONTEXT}
        )
        for t in LIFECYCLE_EFFECTS
    },
    **{
        t: frozenset({TargetKind.ANY, TargetKind.WORKSPACE, TargetKind.INSTANCE})
        for t in STREAM_EFFECTS
    },
    **{t: frozenset({TargetKind.ANY}) for t in RPC_EFFECTS},
}


def effect_name(effect: Effect) -> str:
    if isinstance(effect, FailPhase):
        return {
            Phase.IMAGEBUILD: "fail-image-build",
            Phase.CREATING: "fail-creating",
            Phase.INITIALIZING: "fail-initializing",
        }[effect.phase]
    return {
        InterruptRunning: "interrupt",
        StallPhase: "stall-phase",
        RpcError: "rpc-error",
        RpcLatency: "rpc-latency",
        StreamEnd: "stream-end",
        StreamDuplicate: "stream-duplicate",
    }[type(effect)]


def method_path(method: str) -> str:
    """Normalise ``GetWorkspace`` / ``gitpod.v1.WorkspacesService/GetWorkspace`` to a full path."""
    name = method.strip().lstrip("/")
    service, _, rpc = name.rpartition("/")
    if service and service != WORKSPACES_SERVICE:
        raise InvalidArgument(
            f"RPC faults apply to {WORKSPACES_SERVICE} only, got service {service!r}"
        )
    if rpc not in WORKSPACES_METHODS:
        raise InvalidArgument(
            f"unknown method {method!r}: expected one of {', '.join(WORKSPACES_METHODS)}"
        )
    return f"/{WORKSPACES_SERVICE}/{rpc}"


# ---------------------------------------------------------------------------- faults


@dataclass(slots=True, eq=False)
class Fault:
    id: str
    effect: Effect
    target: Target
    count: int = 0
    """How many times it applies; 0: unlimited."""
    active_from: SimTime | None = None
    active_until: SimTime | None = None
    times_applied: int = 0
    instances: list[str] = field(default_factory=list)
    """Instances a lifecycle fault is bound to (so clearing it can undo a stall)."""

    def __post_init__(self) -> None:
        allowed = _ALLOWED_TARGETS[type(self.effect)]
        if self.target.kind not in allowed:
            names = ", ".join(sorted(k.value for k in allowed))
            raise InvalidArgument(
                f"a {effect_name(self.effect)} fault cannot target {self.target.kind.value}; "
                f"use one of: {names}"
            )
        if self.count < 0:
            raise InvalidArgument(f"count must be >= 0, got {self.count}")
        limits.count("count", self.count)
        limits.count("times_applied", self.times_applied)
        for name in ("active_from", "active_until"):
            at = getattr(self, name)
            if at is not None:
                limits.event_instant(name, at)
        if (
            self.active_from is not None
            and self.active_until is not None
            and self.active_until <= self.active_from
        ):
            raise InvalidArgument("active_until must be after active_from")

    @property
    def exhausted(self) -> bool:
        return self.count > 0 and self.times_applied >= self.count

    def applies_at(self, now: SimTime) -> bool:
        if self.exhausted:
            return False
        if self.active_from is not None and now < self.active_from:
            return False
        return self.active_until is None or now < self.active_until

    def take(self) -> None:
        self.times_applied += 1

    @property
    def is_lifecycle(self) -> bool:
        return isinstance(self.effect, LIFECYCLE_EFFECTS)


def validate_effect(effect: Effect) -> Effect:
    """Reject effects that make no sense, with a message that says why."""
    if isinstance(effect, FailPhase) and effect.phase not in (
        Phase.IMAGEBUILD,
        Phase.CREATING,
        Phase.INITIALIZING,
    ):
        raise InvalidArgument(f"cannot fail phase {effect.phase.name}")
    if isinstance(effect, StallPhase) and effect.phase not in (
        Phase.IMAGEBUILD,
        Phase.PENDING,
        Phase.CREATING,
        Phase.INITIALIZING,
        Phase.STOPPING,
    ):
        raise InvalidArgument(
            f"cannot stall {effect.phase.name}: only IMAGEBUILD, PENDING, CREATING, INITIALIZING"
            " and STOPPING end on their own"
        )
    if isinstance(effect, InterruptRunning):
        if effect.after < 0 or (effect.duration is not None and effect.duration < 0):
            raise InvalidArgument("interrupt after/duration must not be negative")
        limits.duration("after", effect.after)
        if effect.duration is not None:
            limits.duration("duration", effect.duration)
    if isinstance(effect, RpcLatency):
        if effect.latency < 0:
            raise InvalidArgument("latency must not be negative")
        limits.duration("latency", effect.latency)
    if isinstance(effect, RpcError):
        if not 0 <= effect.probability <= 1:
            raise InvalidArgument(f"probability must be within [0, 1], got {effect.probability}")
        limits.text("message", effect.message)
    if isinstance(effect, StreamEnd):
        if effect.after_messages < 0:
            raise InvalidArgument("after_messages must be >= 0")
        limits.count("after_messages", effect.after_messages)
        limits.text("message", effect.message)
    if isinstance(effect, FailPhase):
        limits.text("reason", effect.reason)
        limits.count("log_tail", len(effect.log_tail), maximum=limits.MAX_LOG_TAIL)
        for line in effect.log_tail:
            limits.text("log_tail line", line)
    return effect
