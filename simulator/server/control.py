"""gitpod.simulator.v1.SimulatorService: the control plane over grpclib, for any language.

A thin adapter over :class:`~simulator.Simulator`'s Python API (the same operations are
available in process). Every call needs the admin token; API tokens are refused here.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import betterproto2
from grpclib.const import Cardinality, Handler, Status
from grpclib.exceptions import GRPCError
from grpclib.server import Stream

from simulator._proto.gitpod import v1 as pb
from simulator._proto.gitpod.simulator import v1 as spb
from simulator.core import limits
from simulator.core.errors import InvalidArgument, PermissionDenied, SimError, Unauthenticated
from simulator.core.simtime import SECOND, to_datetime
from simulator.server.auth import bearer_token
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
from simulator.server.journal import summarize

if TYPE_CHECKING:
    from simulator.server.runtime import Simulator

SERVICE_NAME = "gitpod.simulator.v1.SimulatorService"
log = logging.getLogger("gitpod_sim.rpc")

_MODES = {
    spb.ClockMode.MANUAL: ClockMode.MANUAL,
    spb.ClockMode.REALTIME: ClockMode.REALTIME,
    spb.ClockMode.AUTOJUMP: ClockMode.AUTOJUMP,
}
_MODES_OUT = {v: k for k, v in _MODES.items()}
RawHandler = Callable[[Stream[Any, Any]], Awaitable[None]]


class ControlService:
    def __init__(self, sim: Simulator) -> None:
        self._sim = sim

    def __mapping__(self) -> dict[str, Handler]:
        unary: list[tuple[str, Callable[[Any], Any], type[Any], type[Any]]] = [
            ("GetClock", self.get_clock, spb.GetClockRequest, spb.GetClockResponse),
            ("SetClock", self.set_clock, spb.SetClockRequest, spb.SetClockResponse),
            ("Advance", self.advance, spb.AdvanceRequest, spb.AdvanceResponse),
            ("SetPlan", self.set_plan, spb.SetPlanRequest, spb.SetPlanResponse),
            ("ListPlans", self.list_plans, spb.ListPlansRequest, spb.ListPlansResponse),
            ("DeletePlan", self.delete_plan, spb.DeletePlanRequest, spb.DeletePlanResponse),
            ("MarkActive", self.mark_active, spb.MarkActiveRequest, spb.MarkActiveResponse),
            ("SetAdmission", self.set_admission, spb.SetAdmissionRequest, spb.SetAdmissionResponse),
            ("AddPrebuild", self.add_prebuild, spb.AddPrebuildRequest, spb.AddPrebuildResponse),
            ("AddFault", self.add_fault, spb.AddFaultRequest, spb.AddFaultResponse),
            ("ListFaults", self.list_faults, spb.ListFaultsRequest, spb.ListFaultsResponse),
            ("ClearFaults", self.clear_faults, spb.ClearFaultsRequest, spb.ClearFaultsResponse),
            ("ReadJournal", self.read_journal, spb.ReadJournalRequest, spb.ReadJournalResponse),
            ("Reset", self.reset, spb.ResetRequest, spb.ResetResponse),
            ("AddUser", self.add_user, spb.AddUserRequest, spb.AddUserResponse),
            ("ExportState", self.export_state, spb.ExportStateRequest, spb.ExportStateResponse),
            ("ImportState", self.import_state, spb.ImportStateRequest, spb.ImportStateResponse),
            ("GetCoverage", self.get_coverage, spb.GetCoverageRequest, spb.GetCoverageResponse),
            (
                "ResetCoverage",
                self.reset_coverage,
                spb.ResetCoverageRequest,
                spb.ResetCoverageResponse,
            ),
        ]
        mapping = {
            f"/{SERVICE_NAME}/{name}": Handler(
                self._unary(f"/{SERVICE_NAME}/{name}", fn), Cardinality.UNARY_UNARY, req, reply
            )
            for name, fn, req, reply in unary
        }
        follow = f"/{SERVICE_NAME}/FollowJournal"
        mapping[follow] = Handler(
            self._follow_journal(follow),
            Cardinality.UNARY_STREAM,
            spb.FollowJournalRequest,
            spb.JournalEntry,
        )
        return mapping

    # ------------------------------------------------------------------ plumbing

    def _admit(self, stream: Stream[Any, Any]) -> None:
        token = bearer_token(stream.metadata)
        if token == self._sim.admin_token:
            return
        if self._sim.engine.user_by_token(token) is not None:
            raise PermissionDenied(
                f"{SERVICE_NAME} needs the admin token; an API token cannot use it"
            )
        raise Unauthenticated("invalid credentials: unknown admin token")

    def _unary(self, path: str, fn: Callable[[Any], Any]) -> RawHandler:
        async def handle(stream: Stream[Any, Any]) -> None:
            request = await stream.recv_message()
            sim = self._sim
            code, message = "OK", ""
            try:
                if request is None:
                    raise InvalidArgument("request message is missing")
                self._admit(stream)
                sim.sync()
                response = fn(request)
                sim.kick()
            except SimError as exc:
                code, message = exc.code, exc.message
                raise GRPCError(Status[exc.code], exc.message) from None
            finally:
                sim.record_rpc(
                    path, "admin" if code != "UNAUTHENTICATED" else "-", request, code, message
                )
            await stream.send_message(response)

        return handle

    def _follow_journal(self, path: str) -> RawHandler:
        async def handle(stream: Stream[Any, Any]) -> None:
            request = await stream.recv_message()
            try:
                if request is None:
                    raise InvalidArgument("request message is missing")
                self._admit(stream)
            except SimError as exc:
                raise GRPCError(Status[exc.code], exc.message) from None
            journal = self._sim.journal
            cursor = request.from_seq or journal.next_seq
            while True:
                for entry in journal.read(cursor, 500):
                    await stream.send_message(journal_entry_pb(entry))
                    cursor = entry.seq + 1
                if cursor >= journal.next_seq:
                    await journal.wait_for_more()

        return handle

    # ------------------------------------------------------------------ clock

    def _clock(self) -> spb.Clock:
        info = self._sim.clock_info()
        return spb.Clock(
            now=to_datetime(info.now),
            mode=_MODES_OUT[info.mode],
            speed=info.speed,
            autojump_grace=duration_out(round(info.autojump_grace * SECOND)),
            next_event_at=None if info.next_event_at is None else to_datetime(info.next_event_at),
            next_event_kind=info.next_event_kind,
            pending_events=info.pending_events,
        )

    def get_clock(self, request: spb.GetClockRequest) -> spb.GetClockResponse:
        return spb.GetClockResponse(clock=self._clock())

    def set_clock(self, request: spb.SetClockRequest) -> spb.SetClockResponse:
        if request.mode != spb.ClockMode.UNSPECIFIED and request.mode not in _MODES:
            raise InvalidArgument(f"unknown clock mode {int(request.mode)}")
        mode = None if request.mode == spb.ClockMode.UNSPECIFIED else _MODES[request.mode]
        grace = (
            None
            if request.autojump_grace is None
            else duration_in(request.autojump_grace, "autojump_grace") / SECOND
        )
        if request.speed is not None:
            limits.speed(request.speed)
        self._sim.set_clock(mode or self._sim.clock.mode, request.speed, autojump_grace=grace)
        return spb.SetClockResponse(clock=self._clock())

    def advance(self, request: spb.AdvanceRequest) -> spb.AdvanceResponse:
        how, value = betterproto2.which_one_of(request, "how")
        sim = self._sim
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
            clock=self._clock(),
            transitions=[transition_pb(c) for c in changes],
            idle=sim.engine.next_event() is None,
        )

    # ------------------------------------------------------------------ lifecycle

    def set_plan(self, request: spb.SetPlanRequest) -> spb.SetPlanResponse:
        scope, value = scope_in(request.scope)
        scoped = self._sim.set_plan(plan_in(request.plan), scope=scope, value=value)
        return spb.SetPlanResponse(plan=scoped_plan_out(scoped))

    def list_plans(self, request: spb.ListPlansRequest) -> spb.ListPlansResponse:
        return spb.ListPlansResponse(plans=[scoped_plan_out(p) for p in self._sim.plans()])

    def delete_plan(self, request: spb.DeletePlanRequest) -> spb.DeletePlanResponse:
        self._sim.delete_plan(request.id)
        return spb.DeletePlanResponse()

    def mark_active(self, request: spb.MarkActiveRequest) -> spb.MarkActiveResponse:
        _require(request.workspace_id, "workspace_id")
        return spb.MarkActiveResponse(
            instance=instance_pb(self._sim.mark_active(request.workspace_id))
        )

    def set_admission(self, request: spb.SetAdmissionRequest) -> spb.SetAdmissionResponse:
        _require(request.workspace_id, "workspace_id")
        if request.admission == pb.AdmissionLevel.EVERYONE:
            shared = True
        elif request.admission == pb.AdmissionLevel.OWNER_ONLY:
            shared = False
        else:
            raise InvalidArgument("admission must be ADMISSION_LEVEL_EVERYONE or _OWNER_ONLY")
        self._sim.share(request.workspace_id, shared)
        return spb.SetAdmissionResponse()

    def add_prebuild(self, request: spb.AddPrebuildRequest) -> spb.AddPrebuildResponse:
        _require(request.prebuild_id, "prebuild_id")
        if request.commit and not _is_sha(request.commit):
            raise InvalidArgument(f"commit must be 40 hex characters, got {request.commit!r}")
        prebuild = self._sim.add_prebuild(request.prebuild_id, request.context_url, request.commit)
        return spb.AddPrebuildResponse(prebuild_id=prebuild.id, commit=prebuild.commit)

    # ------------------------------------------------------------------ faults

    def add_fault(self, request: spb.AddFaultRequest) -> spb.AddFaultResponse:
        spec = request.spec
        if spec is None:
            raise InvalidArgument("spec is required")
        effect, default_target = effect_in(spec)
        fault = self._sim.add_fault(
            effect,
            target_in(spec.target, default_target),
            count=spec.count,
            active_from=instant_in(spec.active_from, "active_from"),
            active_until=instant_in(spec.active_until, "active_until"),
        )
        return spb.AddFaultResponse(fault=fault_out(fault))

    def list_faults(self, request: spb.ListFaultsRequest) -> spb.ListFaultsResponse:
        return spb.ListFaultsResponse(faults=[fault_out(f) for f in self._sim.faults()])

    def clear_faults(self, request: spb.ClearFaultsRequest) -> spb.ClearFaultsResponse:
        cleared = self._sim.clear_faults(list(request.ids) or None)
        return spb.ClearFaultsResponse(cleared=cleared)

    # ------------------------------------------------------------------ journal

    def read_journal(self, request: spb.ReadJournalRequest) -> spb.ReadJournalResponse:
        journal = self._sim.journal
        entries = journal.read(request.from_seq, request.limit or 1000)
        next_seq = entries[-1].seq + 1 if entries else max(request.from_seq, journal.first_seq)
        return spb.ReadJournalResponse(
            entries=[journal_entry_pb(e) for e in entries],
            next_seq=next_seq,
            first_seq=journal.first_seq,
        )

    # ------------------------------------------------------------------ state

    def reset(self, request: spb.ResetRequest) -> spb.ResetResponse:
        self._sim.reset(seed=request.seed, drop_users=request.drop_users)
        return spb.ResetResponse(seed=self._sim.seed)

    def add_user(self, request: spb.AddUserRequest) -> spb.AddUserResponse:
        user = self._sim.add_user(request.user_id, request.token or None)
        return spb.AddUserResponse(user_id=user.id, token=user.token)

    def export_state(self, request: spb.ExportStateRequest) -> spb.ExportStateResponse:
        return spb.ExportStateResponse(state_json=json.dumps(self._sim.export_state()))

    def import_state(self, request: spb.ImportStateRequest) -> spb.ImportStateResponse:
        try:
            data = json.loads(request.state_json)
        except json.JSONDecodeError as exc:
            raise InvalidArgument(f"state_json is not JSON: {exc}") from None
        self._sim.import_state(data)
        engine = self._sim.engine
        return spb.ImportStateResponse(
            users=len(engine.users),
            workspaces=len(engine.workspaces),
            instances=len(engine.instances),
        )

    # ------------------------------------------------------------------ coverage

    def get_coverage(self, request: spb.GetCoverageRequest) -> spb.GetCoverageResponse:
        report = self._sim.coverage()
        return spb.GetCoverageResponse(
            coverage_json=json.dumps(report.to_json()),
            totals=[
                spb.CoverageTotal(group=group, hit=t.hit, of=t.of, unexpected=t.unexpected)
                for group, t in report.totals().items()
            ],
        )

    def reset_coverage(self, request: spb.ResetCoverageRequest) -> spb.ResetCoverageResponse:
        self._sim.reset_coverage()
        return spb.ResetCoverageResponse()


def _require(value: str, field: str) -> None:
    if not value:
        raise InvalidArgument(f"{field} is required")


def _is_sha(text: str) -> bool:
    return len(text) == 40 and all(c in "0123456789abcdefABCDEF" for c in text)


__all__ = ["SERVICE_NAME", "ControlService", "summarize"]
