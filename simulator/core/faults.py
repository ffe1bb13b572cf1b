"""Targeted faults: what can go wrong, aimed at what, how often and when.

Plain data, kept by the engine (so the state exports with everything else). Lifecycle faults are
*bound* to an instance when they first apply to it (at its start, or at once for a workspace's or
instance's active instance) and act at the phase they name; RPC and stream faults are consulted
by the service layer per call or per stream.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

from simulator.core import limits
from simulator.core.errors import InvalidArgument
from simulator.core.patterns import Pattern, compile_pattern
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

CONTROL_SERVICE = "gitpod.simulator.v1.SimulatorService"
STREAM_METHODS = (
    "ListenToWorkspaceInstance",
    "ListenToImageBuildLogs",
    "StopWorkspace",
    "FollowJournal",
)
"""Every server stream a stream fault can act on (FollowJournal is the control plane's)."""
FOLLOW_JOURNAL = f"/{CONTROL_SERVICE}/FollowJournal"


class TargetKind(enum.Enum):
    NEXT_START = "next-start"
    WORKSPACE = "workspace"
    INSTANCE = "instance"
    CONTEXT = "context"
    ANY = "any"
    USER = "user"


@dataclass(frozen=True, slots=True)
class Target:
    kind: TargetKind
    value: str = ""
    pattern: Pattern | None = field(default=None, compare=False)

    @classmethod
    def of(cls, kind: TargetKind, value: str = "") -> Target:
        if kind is TargetKind.CONTEXT:
            return cls(kind, value, compile_pattern(value))
        if kind in (TargetKind.WORKSPACE, TargetKind.INSTANCE, TargetKind.USER) and not value:
            raise InvalidArgument(f"a {kind.value} target needs an id")
        return cls(kind, value)

    def describe(self) -> str:
        return self.kind.value if not self.value else f"{self.kind.value} {self.value}"


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
    after_effect: bool = False
    """True: the call runs (its effects stay), then the client gets the status instead."""


@dataclass(frozen=True, slots=True)
class RpcLatency:
    method: str
    latency: Duration
    simulated: bool


@dataclass(frozen=True, slots=True)
class ConnectionDrop:
    """The connection the call came on goes away: before the call runs, or after it ran (its
    effects stay; the answer is lost with the connection). Every call on that connection ends."""

    method: str
    after_effect: bool = False
    goaway: bool = False
    """True: an HTTP/2 GOAWAY first, then the close; False: the TCP connection just closes."""


@dataclass(frozen=True, slots=True)
class StreamEnd:
    after_messages: int
    code: str
    message: str
    method: str = f"/{WORKSPACES_SERVICE}/ListenToWorkspaceInstance"
    """The server stream it ends (a full path)."""


@dataclass(frozen=True, slots=True)
class StreamDuplicate:
    method: str = f"/{WORKSPACES_SERVICE}/ListenToWorkspaceInstance"
    """The server stream whose second message is sent twice (a full path)."""


Effect = (
    FailPhase
    | InterruptRunning
    | StallPhase
    | RpcError
    | RpcLatency
    | ConnectionDrop
    | StreamEnd
    | StreamDuplicate
)


# ---------------------------------------------------------------------------- the registry


class Family(enum.Enum):
    """Where a fault acts: an instance's lifecycle, one RPC call, or one server stream."""

    LIFECYCLE = "lifecycle"
    RPC = "rpc"
    STREAM = "stream"


class ParamType(enum.Enum):
    """How a parameter's value is typed in the core (each converter maps it to its format)."""

    DURATION = "duration"
    """Microseconds (a duration string in TOML and the CLI, a Duration in protobuf)."""
    OPTIONAL_DURATION = "optional duration"
    """Microseconds, or None when not given."""
    TEXT = "text"
    LINES = "lines"
    """A tuple of strings."""
    PHASE = "phase"
    """A :class:`Phase` (its name in TOML, JSON and the CLI)."""
    METHOD = "method"
    """A full WorkspacesService method path (``GetWorkspace`` is accepted as input)."""
    STREAM = "stream"
    """A full path of a server-streaming method (``StopWorkspace``, ``FollowJournal``...)."""
    CODE = "code"
    """A gRPC status name other than OK (a name or a number as input)."""
    PROBABILITY = "probability"
    FLAG = "flag"
    COUNT = "count"
    """An integer >= 0."""


@dataclass(frozen=True, slots=True)
class Param:
    """One parameter of a fault kind: the same name in TOML, JSON, protobuf and (dashed) the CLI."""

    name: str
    type: ParamType
    help: str
    default: object = None
    """The value when not given; None with ``required`` means the kind needs it."""
    required: bool = False
    off_flag: str = ""
    """For a FLAG: the CLI's name of its off switch (``--real`` for ``simulated``)."""

    @property
    def option(self) -> str:
        return "--" + self.name.replace("_", "-")


_LIFECYCLE_TARGETS = frozenset(
    {
        TargetKind.NEXT_START,
        TargetKind.WORKSPACE,
        TargetKind.INSTANCE,
        TargetKind.CONTEXT,
        TargetKind.USER,
    }
)
_STREAM_TARGETS = frozenset(
    {TargetKind.ANY, TargetKind.WORKSPACE, TargetKind.INSTANCE, TargetKind.USER}
)
_RPC_TARGETS = frozenset({TargetKind.ANY, TargetKind.USER})


@dataclass(frozen=True, slots=True)
class FaultKind:
    """One row of the registry: a fault's name, what it does, what it may aim at, its parameters.

    ``name`` is the one spelling everywhere: TOML ``effect = NAME``, ``ctl fault NAME``, the JSON
    state's ``type``, the timeline and the README; on the control plane it is the FaultSpec field
    of the same name with underscores (protobuf field names cannot have dashes).
    """

    name: str
    effect: type
    family: Family
    help: str
    params: tuple[Param, ...] = ()
    phase: Phase | None = None
    """For the fail kinds: the phase that fails (one effect class, three kinds)."""

    @property
    def proto_field(self) -> str:
        return self.name.replace("-", "_")

    @property
    def allowed_targets(self) -> frozenset[TargetKind]:
        return {
            Family.LIFECYCLE: _LIFECYCLE_TARGETS,
            Family.STREAM: _STREAM_TARGETS,
            Family.RPC: _RPC_TARGETS,
        }[self.family]

    @property
    def default_target(self) -> TargetKind:
        return TargetKind.NEXT_START if self.family is Family.LIFECYCLE else TargetKind.ANY

    def param(self, name: str) -> Param | None:
        return next((p for p in self.params if p.name == name), None)

    def matches(self, effect: Effect) -> bool:
        return type(effect) is self.effect and (
            self.phase is None or getattr(effect, "phase", None) is self.phase
        )

    def build(self, values: dict[str, object]) -> Effect:
        """The effect from typed parameter values (missing ones take their defaults), checked."""
        unknown = sorted(set(values) - {p.name for p in self.params})
        if unknown:
            raise InvalidArgument(
                f"a {self.name} fault has no parameter {', '.join(unknown)}; it takes: "
                + (", ".join(p.name for p in self.params) or "none")
            )
        kwargs: dict[str, object] = {}
        for p in self.params:
            value = values.get(p.name)
            if value is None or value == "":
                if p.required:
                    raise InvalidArgument(f"a {self.name} fault needs {p.name}")
                value = p.default
            if p.type is ParamType.METHOD:
                value = method_path(str(value))
            elif p.type is ParamType.STREAM:
                value = stream_path(str(value))
            elif p.type is ParamType.CODE:
                value = status_name(value)  # type: ignore[arg-type]
            elif p.type is ParamType.PROBABILITY:
                value = float(value)  # type: ignore[arg-type]
            elif p.type is ParamType.LINES:
                value = tuple(value)  # type: ignore[arg-type]
            kwargs[p.name] = value
        if self.phase is not None:
            kwargs["phase"] = self.phase
        if "message" in kwargs and not kwargs["message"]:
            kwargs["message"] = f"injected fault: {kwargs['code']}"
        return validate_effect(self.effect(**kwargs))

    def values(self, effect: Effect) -> dict[str, object]:
        """The parameters of ``effect`` (the inverse of :meth:`build`)."""
        return {p.name: getattr(effect, p.name) for p in self.params}


def _code(help: str) -> Param:
    return Param("code", ParamType.CODE, help, "UNAVAILABLE")


def _message() -> Param:
    return Param("message", ParamType.TEXT, "the message (default: injected fault: CODE)", "")


def _stream() -> Param:
    return Param(
        "method",
        ParamType.STREAM,
        "the server stream: " + ", ".join(STREAM_METHODS),
        "ListenToWorkspaceInstance",
    )


def _method() -> Param:
    return Param("method", ParamType.METHOD, "the method, e.g. GetWorkspace", required=True)


FAULT_KINDS: tuple[FaultKind, ...] = (
    FaultKind(
        "fail-image-build",
        FailPhase,
        Family.LIFECYCLE,
        "the image build fails at its end (failed set during IMAGEBUILD, then STOPPED)",
        (
            Param("reason", ParamType.TEXT, "the failure reason", DEFAULT_IMAGE_BUILD_REASON),
            Param("log_tail", ParamType.LINES, "the last build log lines to show", ()),
        ),
        phase=Phase.IMAGEBUILD,
    ),
    FaultKind(
        "fail-creating",
        FailPhase,
        Family.LIFECYCLE,
        "the image pull fails at the end of CREATING (failed set, then STOPPED)",
        (Param("reason", ParamType.TEXT, "the failure reason", DEFAULT_IMAGE_PULL_REASON),),
        phase=Phase.CREATING,
    ),
    FaultKind(
        "fail-initializing",
        FailPhase,
        Family.LIFECYCLE,
        "content initialisation fails at the end of INITIALIZING (failed, STOPPING, STOPPED)",
        (Param("reason", ParamType.TEXT, "the failure reason", DEFAULT_CONTENT_INIT_REASON),),
        phase=Phase.INITIALIZING,
    ),
    FaultKind(
        "interrupt",
        InterruptRunning,
        Family.LIFECYCLE,
        "interrupt a RUNNING instance, then it recovers (or times out)",
        (
            Param("after", ParamType.DURATION, "after being RUNNING for this long", 0),
            Param(
                "duration",
                ParamType.OPTIONAL_DURATION,
                "for this long (default: until the interruption timeout)",
            ),
        ),
    ),
    FaultKind(
        "stall-phase",
        StallPhase,
        Family.LIFECYCLE,
        "the phase never ends on its own until the fault is cleared or a timeout hits",
        (Param("phase", ParamType.PHASE, "the phase that stalls", required=True),),
    ),
    FaultKind(
        "rpc-error",
        RpcError,
        Family.RPC,
        "a method answers a status instead of running (or, with after_effect, after it ran)",
        (
            _method(),
            _code("the status (a name or a number)"),
            _message(),
            Param("probability", ParamType.PROBABILITY, "the chance per call (0: every call)", 0.0),
            Param(
                "after_effect",
                ParamType.FLAG,
                "run the call first (its effects stay), then answer the status",
                False,
            ),
        ),
    ),
    FaultKind(
        "rpc-latency",
        RpcLatency,
        Family.RPC,
        "a method answers late",
        (
            _method(),
            Param("latency", ParamType.DURATION, "how long", required=True),
            Param(
                "simulated",
                ParamType.FLAG,
                "wait for simulated time (false: real time)",
                True,
                off_flag="real",
            ),
        ),
    ),
    FaultKind(
        "connection-drop",
        ConnectionDrop,
        Family.RPC,
        "the connection a call came on closes (TCP close or GOAWAY), before or after the call ran",
        (
            _method(),
            Param(
                "after_effect",
                ParamType.FLAG,
                "run the call first (its effects stay), then drop the connection",
                False,
            ),
            Param(
                "goaway",
                ParamType.FLAG,
                "send an HTTP/2 GOAWAY before closing (default: just close the TCP connection)",
                False,
            ),
        ),
    ),
    FaultKind(
        "stream-end",
        StreamEnd,
        Family.STREAM,
        "a server stream ends with a status after some messages",
        (
            Param("after_messages", ParamType.COUNT, "after this many messages", 0),
            _code("the status (a name or a number)"),
            _message(),
            _stream(),
        ),
    ),
    FaultKind(
        "stream-duplicate",
        StreamDuplicate,
        Family.STREAM,
        "the second message of a server stream is sent twice",
        (_stream(),),
    ),
)
KINDS: dict[str, FaultKind] = {k.name: k for k in FAULT_KINDS}
FAULT_NAMES: tuple[str, ...] = tuple(KINDS)


def kind_named(name: str) -> FaultKind:
    """The kind called ``name``; an unknown name is INVALID_ARGUMENT listing the known ones."""
    try:
        return KINDS[name]
    except KeyError:
        raise InvalidArgument(
            f"unknown fault {name!r}; expected one of: {', '.join(FAULT_NAMES)}"
        ) from None


def kind_of(effect: Effect) -> FaultKind:
    return next(k for k in FAULT_KINDS if k.matches(effect))


def effect_name(effect: Effect) -> str:
    return kind_of(effect).name


def effect_to_json(effect: Effect) -> dict[str, object]:
    """``{"type": NAME, PARAM: value, ...}``: durations in microseconds, phases by name."""
    kind = kind_of(effect)
    data: dict[str, object] = {"type": kind.name}
    for name, value in kind.values(effect).items():
        if isinstance(value, Phase):
            value = value.name
        elif isinstance(value, tuple):
            value = list(value)
        data[name] = value
    return data


def effect_from_json(data: dict[str, Any]) -> Effect:
    kind = KINDS.get(data["type"])
    if kind is None:
        raise InvalidArgument(f"unknown fault type {data['type']!r} in state")
    values: dict[str, object] = {}
    for p in kind.params:
        value = data.get(p.name, p.default)  # a parameter newer than the document: its default
        if p.type is ParamType.PHASE:
            value = Phase[value]
        elif p.type in (ParamType.DURATION, ParamType.COUNT):
            value = int(value)
        elif p.type is ParamType.PROBABILITY:
            value = float(value)
        elif p.type is ParamType.FLAG:
            value = bool(value)
        values[p.name] = value
    return kind.build(values)


# gRPC status codes by name (as grpclib's Status and every gRPC library spell them); the core
# keeps its own copy so that it never imports grpclib.
STATUS_CODES: dict[str, int] = {
    "OK": 0,
    "CANCELLED": 1,
    "UNKNOWN": 2,
    "INVALID_ARGUMENT": 3,
    "DEADLINE_EXCEEDED": 4,
    "NOT_FOUND": 5,
    "ALREADY_EXISTS": 6,
    "PERMISSION_DENIED": 7,
    "RESOURCE_EXHAUSTED": 8,
    "FAILED_PRECONDITION": 9,
    "ABORTED": 10,
    "OUT_OF_RANGE": 11,
    "UNIMPLEMENTED": 12,
    "INTERNAL": 13,
    "UNAVAILABLE": 14,
    "DATA_LOSS": 15,
    "UNAUTHENTICATED": 16,
}
_STATUS_NAMES = {number: name for name, number in STATUS_CODES.items()}


def status_name(code: str | int) -> str:
    """A fault's status as its name, from a name (any case) or a number; OK is refused."""
    if isinstance(code, str) and code.strip().isdigit():
        code = int(code)
    if isinstance(code, int):
        if code not in _STATUS_NAMES:
            raise InvalidArgument(f"unknown gRPC status code {code}: expected 1..16")
        name = _STATUS_NAMES[code]
    else:
        name = code.strip().upper()
        if name not in STATUS_CODES:
            raise InvalidArgument(
                f"unknown gRPC status {code!r}: expected a name such as UNAVAILABLE or 1..16"
            )
    if name == "OK":
        raise InvalidArgument("a fault's status code cannot be OK (0)")
    return name


def status_number(name: str) -> int:
    return STATUS_CODES[name]


def stream_path(method: str) -> str:
    """A server stream's full path, from its name or path; a unary method is refused, saying why."""
    name = method.strip().lstrip("/")
    service, _, rpc = name.rpartition("/")
    if rpc == "FollowJournal" and service in ("", CONTROL_SERVICE):
        return FOLLOW_JOURNAL
    path = method_path(method)
    if path.rsplit("/", 1)[1] not in STREAM_METHODS:
        raise InvalidArgument(
            f"{rpc} is a unary method, not a server stream: a stream fault can never apply to it;"
            f" expected one of {', '.join(STREAM_METHODS)} (or use an rpc fault)"
        )
    return path


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
    skip: int = 0
    """Let this many matching occasions pass before the first application."""
    skipped: int = 0
    kind: FaultKind = field(init=False, compare=False)

    def __post_init__(self) -> None:
        self.kind = kind = kind_of(self.effect)
        allowed = kind.allowed_targets
        if self.target.kind not in allowed:
            names = ", ".join(sorted(k.value for k in allowed))
            raise InvalidArgument(
                f"a {kind.name} fault cannot target {self.target.kind.value}; use one of: {names}"
            )
        if self.count < 0:
            raise InvalidArgument(f"count must be >= 0, got {self.count}")
        limits.count("count", self.count)
        limits.count("times_applied", self.times_applied)
        limits.count("skip", self.skip)
        limits.count("skipped", self.skipped)
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

    def passes(self) -> bool:
        """On a matching occasion: True when it is one of the first ``skip`` (it lets it pass)."""
        if self.skipped < self.skip:
            self.skipped += 1
            return True
        return False

    @property
    def is_lifecycle(self) -> bool:
        return self.kind.family is Family.LIFECYCLE


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
