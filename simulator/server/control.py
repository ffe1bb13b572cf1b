"""gitpod.simulator.v1.SimulatorService: the control plane over grpclib, for any language.

A thin adapter over :class:`~simulator.Simulator`'s Python API (the same operations are
available in process). Every call needs the admin token; API tokens are refused here.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from functools import cache
from typing import TYPE_CHECKING, Any

from grpclib.const import Handler

from simulator.core import limits
from simulator.core.errors import FailedPrecondition, InvalidArgument
from simulator.core.fault_book import StreamFaults
from simulator.core.faults import FOLLOW_JOURNAL
from simulator.core.simtime import SECOND, to_datetime
from simulator.core.transitions import Phase
from simulator.server.boundary import (
    CONTROL,
    CONTROL_FOLLOW,
    CONTROL_READ,
    CONTROL_SERVICE,
    Call,
    Method,
    Rules,
    mapping,
)
from simulator.server.clock import ClockMode
from simulator.server.control_convert import (
    duration_in,
    duration_out,
    effect_in,
    fault_out,
    instant_in,
    journal_entry_pb,
    plan_in,
    scope_in,
    scoped_plan_out,
    target_in,
    transition_pb,
)
from simulator.server.convert import instance_pb
from simulator.server.deferred import deferred_module, message_type
from simulator.server.journal import summarize
from simulator.server.stream_faults import with_faults
from simulator.server.waiting import DEFAULT_TIMEOUT, wait_for
from simulator.server.world import Sessions, SteeredWorld, Worlds

if TYPE_CHECKING:
    import betterproto2

    from simulator._proto.gitpod import v1 as pb
    from simulator._proto.gitpod.simulator import v1 as spb
else:  # loaded by the first call that needs them (start-up time: see deferred.py)
    betterproto2 = deferred_module("betterproto2")
    pb = deferred_module("simulator._proto.gitpod.v1")
    spb = deferred_module("simulator._proto.gitpod.simulator.v1")

SERVICE_NAME = CONTROL_SERVICE


@cache
def _modes() -> dict[spb.ClockMode, ClockMode]:
    """The wire's clock modes as the clock's."""
    return {
        spb.ClockMode.MANUAL: ClockMode.MANUAL,
        spb.ClockMode.REALTIME: ClockMode.REALTIME,
        spb.ClockMode.AUTOJUMP: ClockMode.AUTOJUMP,
    }


@cache
def _modes_out() -> dict[ClockMode, spb.ClockMode]:
    return {v: k for k, v in _modes().items()}


def _method(
    name: str, attr: str, rules: Rules = CONTROL, reply: str = "", *, streaming: bool = False
) -> Method:
    """One RPC: its path, the method that serves it, its boundary rules and its message classes
    (loaded on first use)."""
    return Method.of(
        f"/{SERVICE_NAME}/{name}",
        attr,
        rules,
        message_type(spb, f"{name}Request"),
        message_type(spb, reply or f"{name}Response"),
        streaming=streaming,
    )


_UNARY = (
    _method("GetClock", "get_clock", CONTROL_READ),
    _method("SetClock", "set_clock"),
    _method("Advance", "advance"),
    _method("SetPlan", "set_plan"),
    _method("ListPlans", "list_plans"),
    _method("DeletePlan", "delete_plan"),
    _method("MarkActive", "mark_active"),
    _method("SetAdmission", "set_admission"),
    _method("AddPrebuild", "add_prebuild"),
    _method("FailInstance", "fail_instance"),
    _method("AddFault", "add_fault"),
    _method("ListFaults", "list_faults"),
    _method("ClearFaults", "clear_faults"),
    _method("ReadJournal", "read_journal", CONTROL_READ),  # reads: not journaled (CONTROL_READ)
    _method("Reset", "reset"),
    _method("AddUser", "add_user"),
    _method("ExportState", "export_state"),
    _method("ImportState", "import_state"),
    _method("GetCoverage", "get_coverage"),
    _method("ResetCoverage", "reset_coverage"),
    _method("WaitFor", "wait_for", CONTROL_READ),
)
_MANAGING = (  # the server's sessions: admitted and journaled in its admin world
    _method("CreateSession", "create_session"),
    _method("DeleteSession", "delete_session"),
    _method("ListSessions", "list_sessions"),
)
_FOLLOW = (
    _method(
        "FollowJournal", "follow_journal", CONTROL_FOLLOW, reply="JournalEntry", streaming=True
    ),
)


class ControlService:
    """The control plane of the worlds that ``worlds`` resolves; every method gets the call's
    world from the RPC boundary (:mod:`simulator.server.boundary`)."""

    def __init__(self, worlds: Worlds, sessions: Sessions | None = None) -> None:
        self._worlds = worlds
        self._sessions = sessions
        self._mapping: dict[str, Handler] | None = None

    def __mapping__(self) -> dict[str, Handler]:
        """Built once: grpclib asks on every server, and each in-memory channel is one."""
        if self._mapping is None:
            self._mapping = self._build_mapping()
        return self._mapping

    def _build_mapping(self) -> dict[str, Handler]:
        admin_world = _AdminWorld(self._worlds, self._sessions)
        return {
            **mapping(self._worlds, self, _UNARY),
            **mapping(admin_world, self, _MANAGING),
            **mapping(self._worlds, self, _FOLLOW),
        }

    async def follow_journal(self, call: Call) -> None:
        """Entries from ``from_seq`` (default: from now on), then each new one as it comes."""
        journal, engine, stream = call.world.journal, call.world.engine, call.stream
        if len(engine.faults) and (hits := engine.take_stream_faults(FOLLOW_JOURNAL)):
            stream = with_faults(stream, StreamFaults.of(hits))
        cursor = call.request.from_seq or journal.next_seq
        while True:
            for entry in journal.read(cursor, 500):
                await stream.send_message(journal_entry_pb(entry, call.world.name))
                cursor = entry.seq + 1
            if cursor >= journal.next_seq:
                await journal.wait_for_more()

    # ------------------------------------------------------------------ clock

    def _clock(self, world: SteeredWorld) -> spb.Clock:
        info = world.clock_info()
        return spb.Clock(
            now=to_datetime(info.now),
            mode=_modes_out()[info.mode],
            speed=info.speed,
            autojump_grace=duration_out(round(info.autojump_grace * SECOND)),
            next_event_at=None if info.next_event_at is None else to_datetime(info.next_event_at),
            next_event_kind=info.next_event_kind,
            pending_events=info.pending_events,
        )

    def get_clock(self, call: Call) -> spb.GetClockResponse:
        return spb.GetClockResponse(clock=self._clock(call.world))

    def set_clock(self, call: Call) -> spb.SetClockResponse:
        request: spb.SetClockRequest = call.request
        if request.mode != spb.ClockMode.UNSPECIFIED and request.mode not in _modes():
            raise InvalidArgument(f"unknown clock mode {int(request.mode)}")
        mode = None if request.mode == spb.ClockMode.UNSPECIFIED else _modes()[request.mode]
        grace = (
            None
            if request.autojump_grace is None
            else duration_in(request.autojump_grace, "autojump_grace") / SECOND
        )
        if request.speed is not None:
            limits.speed(request.speed)
        call.world.set_clock(mode or call.world.clock.mode, request.speed, autojump_grace=grace)
        return spb.SetClockResponse(clock=self._clock(call.world))

    def advance(self, call: Call) -> spb.AdvanceResponse:
        request: spb.AdvanceRequest = call.request
        how, value = betterproto2.which_one_of(request, "how")
        sim = call.world
        if how == "by":
            by = duration_in(value, "by")
            limits.advance_target("by", sim.engine.now, by)
            changes = sim.advance(by / SECOND)
        elif how == "to_next_event":
            if not value:
                raise InvalidArgument("to_next_event must be true")
            changes = sim.advance_to_next()
        elif how == "until_idle":
            changes = sim.run_until_idle(duration_in(value, "until_idle") / SECOND)
        else:
            raise InvalidArgument("advance needs one of: by, to_next_event, until_idle")
        return spb.AdvanceResponse(
            clock=self._clock(call.world),
            transitions=[transition_pb(c) for c in changes],
            idle=sim.engine.next_event() is None,
        )

    # ------------------------------------------------------------------ lifecycle

    def set_plan(self, call: Call) -> spb.SetPlanResponse:
        request: spb.SetPlanRequest = call.request
        scope, value = scope_in(request.scope)
        scoped = call.world.set_plan(plan_in(request.plan), scope=scope, value=value)
        return spb.SetPlanResponse(plan=scoped_plan_out(scoped))

    def list_plans(self, call: Call) -> spb.ListPlansResponse:
        return spb.ListPlansResponse(plans=[scoped_plan_out(p) for p in call.world.plans()])

    def delete_plan(self, call: Call) -> spb.DeletePlanResponse:
        request: spb.DeletePlanRequest = call.request
        call.world.delete_plan(request.id)
        return spb.DeletePlanResponse()

    def mark_active(self, call: Call) -> spb.MarkActiveResponse:
        request: spb.MarkActiveRequest = call.request
        _require(request.workspace_id, "workspace_id")
        inst = call.world.mark_active(request.workspace_id)
        shared = call.world.engine.workspaces[inst.workspace_id].shared
        return spb.MarkActiveResponse(instance=instance_pb(inst, shared))

    def set_admission(self, call: Call) -> spb.SetAdmissionResponse:
        request: spb.SetAdmissionRequest = call.request
        _require(request.workspace_id, "workspace_id")
        if request.admission == pb.AdmissionLevel.EVERYONE:
            shared = True
        elif request.admission == pb.AdmissionLevel.OWNER_ONLY:
            shared = False
        else:
            raise InvalidArgument("admission must be ADMISSION_LEVEL_EVERYONE or _OWNER_ONLY")
        call.world.share(request.workspace_id, shared)
        return spb.SetAdmissionResponse()

    def add_prebuild(self, call: Call) -> spb.AddPrebuildResponse:
        request: spb.AddPrebuildRequest = call.request
        _require(request.prebuild_id, "prebuild_id")
        if request.commit and not _is_sha(request.commit):
            raise InvalidArgument(f"commit must be 40 hex characters, got {request.commit!r}")
        prebuild = call.world.add_prebuild(request.prebuild_id, request.context_url, request.commit)
        return spb.AddPrebuildResponse(prebuild_id=prebuild.id, commit=prebuild.commit)

    # ------------------------------------------------------------------ faults

    def add_fault(self, call: Call) -> spb.AddFaultResponse:
        request: spb.AddFaultRequest = call.request
        spec = request.spec
        if spec is None:
            raise InvalidArgument("spec is required")
        effect, default_target = effect_in(spec)
        fault = call.world.add_fault(
            effect,
            target_in(spec.target, default_target),
            count=spec.count,
            active_from=instant_in(spec.active_from, "active_from"),
            active_until=instant_in(spec.active_until, "active_until"),
            skip=spec.skip,
        )
        return spb.AddFaultResponse(fault=fault_out(fault))

    def list_faults(self, call: Call) -> spb.ListFaultsResponse:
        return spb.ListFaultsResponse(faults=[fault_out(f) for f in call.world.faults()])

    def clear_faults(self, call: Call) -> spb.ClearFaultsResponse:
        request: spb.ClearFaultsRequest = call.request
        cleared = call.world.clear_faults(list(request.ids) or None)
        return spb.ClearFaultsResponse(cleared=cleared)

    # ------------------------------------------------------------------ journal

    def read_journal(self, call: Call) -> spb.ReadJournalResponse:
        request: spb.ReadJournalRequest = call.request
        journal = call.world.journal
        entries = journal.read(request.from_seq, request.limit or 1000)
        next_seq = entries[-1].seq + 1 if entries else max(request.from_seq, journal.first_seq)
        return spb.ReadJournalResponse(
            entries=[journal_entry_pb(e, call.world.name) for e in entries],
            next_seq=next_seq,
            first_seq=journal.first_seq,
            last_seq=journal.last_seq,
        )

    # ------------------------------------------------------------------ state

    async def wait_for(self, call: Call) -> spb.WaitForResponse:
        request: spb.WaitForRequest = call.request
        timeout = (
            DEFAULT_TIMEOUT
            if request.timeout is None or not request.timeout.total_seconds()
            else duration_in(request.timeout, "timeout") / SECOND
        )
        seen = await wait_for(
            call.world,
            instance_id=request.instance_id,
            workspace_id=request.workspace_id,
            listeners=request.listeners,
            phase=Phase(request.phase) if request.phase else None,
            timeout=timeout,
        )
        return spb.WaitForResponse(
            instance_id=seen.instance_id,
            listeners=seen.listeners,
            phase=pb.WorkspaceInstanceStatusPhase(seen.phase.value),
        )

    def reset(self, call: Call) -> spb.ResetResponse:
        request: spb.ResetRequest = call.request
        call.world.reset(
            seed=request.seed,
            drop_users=request.drop_users,
            clear_journal=request.clear_journal,
        )
        return spb.ResetResponse(seed=call.world.seed)

    def add_user(self, call: Call) -> spb.AddUserResponse:
        request: spb.AddUserRequest = call.request
        user = call.world.add_user(request.user_id, request.token or None)
        return spb.AddUserResponse(user_id=user.id, token=user.token)

    def export_state(self, call: Call) -> spb.ExportStateResponse:
        return spb.ExportStateResponse(state_json=json.dumps(call.world.export_state()))

    def import_state(self, call: Call) -> spb.ImportStateResponse:
        request: spb.ImportStateRequest = call.request
        try:
            data = json.loads(request.state_json)
        except json.JSONDecodeError as exc:
            raise InvalidArgument(f"state_json is not JSON: {exc}") from None
        except RecursionError:
            raise InvalidArgument("state_json is nested too deeply") from None
        call.world.import_state(data)
        engine = call.world.engine
        return spb.ImportStateResponse(
            users=len(engine.users),
            workspaces=len(engine.workspaces),
            instances=len(engine.instances),
        )

    def fail_instance(self, call: Call) -> spb.FailInstanceResponse:
        request: spb.FailInstanceRequest = call.request
        _require(request.instance_id, "instance_id")
        _require(request.reason, "reason")
        inst = call.world.fail(request.instance_id, request.reason)
        shared = call.world.engine.workspaces[inst.workspace_id].shared
        return spb.FailInstanceResponse(instance=instance_pb(inst, shared))

    # ------------------------------------------------------------------ coverage

    def get_coverage(self, call: Call) -> spb.GetCoverageResponse:
        report = call.world.coverage()
        return spb.GetCoverageResponse(
            coverage_json=json.dumps(report.to_json()),
            totals=[
                spb.CoverageTotal(group=group, hit=t.hit, of=t.of, unexpected=t.unexpected)
                for group, t in report.totals().items()
            ],
        )

    def reset_coverage(self, call: Call) -> spb.ResetCoverageResponse:
        call.world.reset_coverage()
        return spb.ResetCoverageResponse()

    # ------------------------------------------------------------------ sessions

    def _host(self) -> Sessions:
        if self._sessions is None:
            raise FailedPrecondition(
                "this server hosts one world and no sessions (gitpod-sim serve and"
                " simulator.server.host.SimServer host sessions)"
            )
        return self._sessions

    def create_session(self, call: Call) -> spb.CreateSessionResponse:
        request: spb.CreateSessionRequest = call.request
        host = self._host()
        if request.clock_mode != spb.ClockMode.UNSPECIFIED and request.clock_mode not in _modes():
            raise InvalidArgument(f"unknown clock mode {int(request.clock_mode)}")
        users: dict[str, str | None] = {}
        for user in request.users:
            if user.user_id in users:
                raise InvalidArgument(f"user {user.user_id!r} is given twice")
            if user.token and user.token in users.values():
                raise InvalidArgument(f"user {user.user_id!r}: another user has the same token")
            users[user.user_id] = user.token or None
        options: dict[str, Any] = {}
        if request.autojump_grace is not None:
            options["autojump_grace"] = (
                duration_in(request.autojump_grace, "autojump_grace") / SECOND
            )
        start = instant_in(request.start_time, "start_time")
        if start is not None:
            options["start_time"] = start
        world = host.create_session(
            request.name,
            seed=None if request.seed is None else limits.seed(request.seed),
            clock=_modes().get(request.clock_mode, ClockMode.MANUAL),
            speed=1.0 if request.speed is None else limits.speed(request.speed),
            users=users,
            plan=None if request.plan is None else plan_in(request.plan),
            **options,
        )
        engine = world.engine
        return spb.CreateSessionResponse(
            session=self._session_pb(world, time.time()),
            users=[spb.SessionUser(user_id=u.id, token=u.token) for u in engine.users.values()],
        )

    def delete_session(self, call: Call) -> spb.DeleteSessionResponse:
        request: spb.DeleteSessionRequest = call.request
        self._host().delete_session(request.name)
        return spb.DeleteSessionResponse()

    def list_sessions(self, call: Call) -> spb.ListSessionsResponse:
        host = self._host()
        return spb.ListSessionsResponse(
            sessions=[self._session_pb(world, at) for world, at in host.sessions()],
            max_sessions=host.max_sessions,
        )

    def _session_pb(self, world: SteeredWorld, last_activity: float) -> spb.Session:
        engine = world.engine
        return spb.Session(
            name=world.name,
            seed=world.seed,
            clock=self._clock(world),
            users=len(engine.users),
            workspaces=len(engine.workspaces),
            open_streams=world.hub.subscription_count(),
            last_activity=dt.datetime.fromtimestamp(last_activity, dt.UTC),
        )


class _AdminWorld:
    """The session-management calls are for the server, not a session: whatever the key says,
    they are admitted and journaled in the host's admin world."""

    def __init__(self, worlds: Worlds, sessions: Sessions | None) -> None:
        self._worlds = worlds
        self._sessions = sessions

    def world_for(self, metadata: Any) -> SteeredWorld:
        if self._sessions is not None:
            return self._sessions.admin_world()
        return self._worlds.world_for(None)


def _require(value: str, field: str) -> None:
    if not value:
        raise InvalidArgument(f"{field} is required")


def _is_sha(text: str) -> bool:
    return len(text) == 40 and all(c in "0123456789abcdefABCDEF" for c in text)


__all__ = ["SERVICE_NAME", "ControlService", "summarize"]
