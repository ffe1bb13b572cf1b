"""gitpod.simulator.v1 messages <-> the simulator's own plan, fault and journal types.

Every conversion validates as it goes: a bad control request becomes INVALID_ARGUMENT with a
message naming the field, never a crash.
"""

from __future__ import annotations

import datetime as dt
from functools import cache
from typing import TYPE_CHECKING

from simulator.core import limits
from simulator.core.errors import InvalidArgument
from simulator.core.faults import (
    FAULT_KINDS,
    Effect,
    Fault,
    FaultKind,
    Param,
    ParamType,
    Target,
    TargetKind,
    status_number,
)
from simulator.core.model import StatusChange
from simulator.core.plan import (
    DEFAULT_DURATIONS,
    TIMEOUT_NAMES,
    BuildPolicy,
    Distribution,
    Fixed,
    LifecyclePlan,
    LogNormal,
    ScopedPlan,
    Timeouts,
    Uniform,
)
from simulator.core.simtime import Duration, SimTime, from_datetime, to_datetime
from simulator.core.transitions import Phase
from simulator.server.convert import phase_pb
from simulator.server.deferred import deferred_module
from simulator.server.journal import Entry, RpcEntry

if TYPE_CHECKING:
    import betterproto2

    from simulator._proto.gitpod.simulator import v1 as spb
else:  # loaded by the first control call (start-up time: see deferred.py)
    betterproto2 = deferred_module("betterproto2")
    spb = deferred_module("simulator._proto.gitpod.simulator.v1")

_BY_PROTO_FIELD = {k.proto_field: k for k in FAULT_KINDS}


@cache
def _build_policies() -> dict[spb.BuildPolicy, BuildPolicy]:
    return {
        spb.BuildPolicy.FIRST_START: BuildPolicy.FIRST_START,
        spb.BuildPolicy.ALWAYS: BuildPolicy.ALWAYS,
        spb.BuildPolicy.NEVER: BuildPolicy.NEVER,
    }


# ---------------------------------------------------------------------------- time


def duration_in(value: dt.timedelta | None, field: str, *, default: Duration = 0) -> Duration:
    """A protobuf Duration as microseconds; negative or out of range (``limits.MAX_DURATION``) is
    INVALID_ARGUMENT naming ``field``."""
    if value is None:
        return default
    micros = (value.days * 86_400 + value.seconds) * 1_000_000 + value.microseconds
    if micros < 0:
        raise InvalidArgument(f"{field} must not be negative, got {value}")
    return limits.duration(field, micros)


def duration_out(micros: Duration) -> dt.timedelta:
    return dt.timedelta(microseconds=micros)


def instant_in(value: dt.datetime | None, field: str = "instant") -> SimTime | None:
    """A protobuf Timestamp as an instant, within ``limits`` (years 1..9999)."""
    return None if value is None else limits.event_instant(field, from_datetime(value))


def transition_pb(change: StatusChange) -> spb.Transition:
    return spb.Transition(
        at=to_datetime(change.at),
        instance_id=change.instance_id,
        workspace_id=change.workspace_id,
        from_phase=phase_pb(
            change.previous.phase if change.previous is not None else Phase.UNSPECIFIED
        ),
        to_phase=phase_pb(change.status.phase),
        status_version=change.status.version,
        cause=change.cause,
        owner_id=change.owner_id,
    )


def journal_entry_pb(entry: Entry, session: str = "default") -> spb.JournalEntry:
    if isinstance(entry, RpcEntry):
        return spb.JournalEntry(
            seq=entry.seq,
            session=session,
            at=to_datetime(entry.at),
            rpc=spb.RpcRecord(
                method=entry.method,
                caller=entry.caller,
                request=entry.request,
                code=entry.code,
                message=entry.message,
                idempotency_token=entry.idempotency_token,
            ),
        )
    return spb.JournalEntry(
        seq=entry.seq,
        session=session,
        at=to_datetime(entry.at),
        transition=transition_pb(entry.change),
    )


# ---------------------------------------------------------------------------- plans


def _distribution_in(d: spb.Distribution | None, phase: Phase) -> Distribution:
    where = f"duration of {phase.name}"
    if d is None:
        raise InvalidArgument(f"{where} is missing")
    kind, value = betterproto2.which_one_of(d, "kind")
    try:
        if kind == "fixed":
            return Fixed(duration_in(value, where))
        if kind == "uniform":
            assert isinstance(value, spb.UniformDistribution)
            return Uniform(duration_in(value.low, where), duration_in(value.high, where))
        if kind == "lognormal":
            assert isinstance(value, spb.LogNormalDistribution)
            cap = None if value.cap is None else duration_in(value.cap, where)
            return LogNormal(duration_in(value.median, where), value.sigma, cap)
    except ValueError as exc:
        raise InvalidArgument(f"{where}: {exc}") from None
    raise InvalidArgument(f"{where} needs one of fixed, uniform, lognormal")


def plan_in(message: spb.LifecyclePlan | None) -> LifecyclePlan:
    if message is None:
        return LifecyclePlan()
    durations = dict(DEFAULT_DURATIONS)
    for item in message.durations:
        phase = Phase(item.phase)
        if phase not in DEFAULT_DURATIONS:
            raise InvalidArgument(
                f"phase {phase.name} has no duration of its own "
                "(IMAGEBUILD, PENDING, CREATING, INITIALIZING, STOPPING do)"
            )
        durations[phase] = _distribution_in(item.duration, phase)
    timeouts = Timeouts()
    if message.timeouts is not None:
        values: dict[str, Duration | None] = {}
        for name in TIMEOUT_NAMES:
            given = getattr(message.timeouts, name)
            if given is None:
                values[name] = getattr(timeouts, name)
            else:
                micros = duration_in(given, f"timeouts.{name}")
                values[name] = micros or None  # zero disables the limit
        timeouts = Timeouts(**values)
    if message.build_policy != spb.BuildPolicy.UNSPECIFIED and (
        message.build_policy not in _build_policies()
    ):
        raise InvalidArgument(f"unknown build_policy {int(message.build_policy)}")
    try:
        return LifecyclePlan(
            durations=durations,
            build_policy=_build_policies().get(message.build_policy, BuildPolicy.FIRST_START),
            timeouts=timeouts,
            cluster=message.cluster or "eu53",
            build_log_lines=message.build_log_lines or 8,
        )
    except limits.OutOfRange:
        raise
    except ValueError as exc:
        raise InvalidArgument(str(exc)) from None


def _distribution_out(d: Distribution) -> spb.Distribution:
    if isinstance(d, Fixed):
        return spb.Distribution(fixed=duration_out(d.duration))
    if isinstance(d, Uniform):
        return spb.Distribution(
            uniform=spb.UniformDistribution(low=duration_out(d.low), high=duration_out(d.high))
        )
    return spb.Distribution(
        lognormal=spb.LogNormalDistribution(
            median=duration_out(d.median),
            sigma=d.sigma,
            cap=None if d.cap is None else duration_out(d.cap),
        )
    )


def plan_out(plan: LifecyclePlan) -> spb.LifecyclePlan:
    reverse = {v: k for k, v in _build_policies().items()}
    t = plan.timeouts
    return spb.LifecyclePlan(
        durations=[
            spb.PhaseDuration(phase=phase_pb(phase), duration=_distribution_out(d))
            for phase, d in plan.durations.items()
        ],
        build_policy=reverse[plan.build_policy],
        timeouts=spb.Timeouts(
            **{name: duration_out(getattr(t, name) or 0) for name in TIMEOUT_NAMES}
        ),
        cluster=plan.cluster,
        build_log_lines=plan.build_log_lines,
    )


def scope_in(scope: spb.PlanScope | None) -> tuple[str, str]:
    if scope is None:
        return "global", ""
    kind, value = betterproto2.which_one_of(scope, "target")
    if kind in ("", "global", "global_"):
        return "global", ""
    if kind == "user_id":
        if not value:
            raise InvalidArgument("scope.user_id must not be empty")
        return "user", limits.name("scope.user_id", str(value))
    return "context", str(value)


def scoped_plan_out(scoped: ScopedPlan) -> spb.ScopedPlan:
    if scoped.scope == "user":
        scope = spb.PlanScope(user_id=scoped.value)
    elif scoped.scope == "context":
        scope = spb.PlanScope(context_pattern=scoped.value)
    else:
        scope = spb.PlanScope(global_=True)
    return spb.ScopedPlan(id=scoped.id, scope=scope, plan=plan_out(scoped.plan))


# ---------------------------------------------------------------------------- faults


def target_in(target: spb.FaultTarget | None, default: TargetKind) -> Target:
    if target is None:
        return Target.of(default)
    kind, value = betterproto2.which_one_of(target, "target")
    mapping = {
        "next_start": TargetKind.NEXT_START,
        "workspace_id": TargetKind.WORKSPACE,
        "instance_id": TargetKind.INSTANCE,
        "context_pattern": TargetKind.CONTEXT,
        "any": TargetKind.ANY,
        "user_id": TargetKind.USER,
    }
    if kind == "":
        return Target.of(default)
    if kind in ("workspace_id", "instance_id", "context_pattern", "user_id"):
        return Target.of(mapping[kind], str(value))
    return Target.of(mapping[kind])


def _param_in(param: Param, message: object) -> object:
    """One parameter from its field of the kind's message (None: not given, take the default)."""
    value = getattr(message, param.name)
    if param.type in (ParamType.DURATION, ParamType.OPTIONAL_DURATION):
        return None if value is None else duration_in(value, param.name)
    if param.type is ParamType.PHASE:
        return Phase(value)
    if param.type is ParamType.LINES:
        return tuple(value)
    return value


def effect_in(spec: spb.FaultSpec) -> tuple[Effect, TargetKind]:
    """The effect of a fault spec and the target kind used when the spec names none."""
    field, value = betterproto2.which_one_of(spec, "kind")
    kind = _BY_PROTO_FIELD.get(field)
    if kind is None:
        raise InvalidArgument(
            "unknown fault kind: set one of " + ", ".join(k.proto_field for k in FAULT_KINDS)
        )
    values = {p.name: _param_in(p, value) for p in kind.params}
    return kind.build(values), kind.default_target


def _param_out(param: Param, value: object) -> object:
    if param.type is ParamType.DURATION:
        return duration_out(value)  # type: ignore[arg-type]
    if param.type is ParamType.OPTIONAL_DURATION:
        return None if value is None else duration_out(value)  # type: ignore[arg-type]
    if param.type is ParamType.CODE:
        return status_number(str(value))
    if param.type is ParamType.LINES:
        return list(value)  # type: ignore[call-overload]
    if param.type is ParamType.PHASE:
        return phase_pb(value)  # type: ignore[arg-type]
    return value


def effect_message(kind: FaultKind, values: dict[str, object]) -> object:
    """The kind's control-plane message holding ``values`` (typed as the registry types them)."""
    message_class = getattr(spb, kind.proto_field.title().replace("_", ""))
    return message_class(
        **{p.name: _param_out(p, values[p.name]) for p in kind.params if p.name in values}
    )


def _target_out(target: Target) -> spb.FaultTarget:
    kind = target.kind
    if kind is TargetKind.WORKSPACE:
        return spb.FaultTarget(workspace_id=target.value)
    if kind is TargetKind.INSTANCE:
        return spb.FaultTarget(instance_id=target.value)
    if kind is TargetKind.CONTEXT:
        return spb.FaultTarget(context_pattern=target.value)
    if kind is TargetKind.ANY:
        return spb.FaultTarget(any=True)
    if kind is TargetKind.USER:
        return spb.FaultTarget(user_id=target.value)
    return spb.FaultTarget(next_start=True)


def fault_out(fault: Fault) -> spb.Fault:
    effect = fault.effect
    spec = spb.FaultSpec(
        target=_target_out(fault.target),
        count=fault.count,
        skip=fault.skip,
        active_from=None if fault.active_from is None else to_datetime(fault.active_from),
        active_until=None if fault.active_until is None else to_datetime(fault.active_until),
    )
    setattr(spec, fault.kind.proto_field, effect_message(fault.kind, fault.kind.values(effect)))
    return spb.Fault(
        id=fault.id, spec=spec, times_applied=fault.times_applied, exhausted=fault.exhausted
    )
