"""Where a scenario runs: in this process (the ``Simulator`` API, manual clock) or on a server.

Both give the runner the same two things: a grpclib channel for the Gitpod API (what a client
sees) and a small *world* interface for what the API cannot do (time, users, plans, prebuilds,
faults, activity, sharing, the journal). The remote one speaks
gitpod.simulator.v1.SimulatorService with the admin token; it resets the target first, so the
story starts from an empty world on a manual clock.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, Protocol

from grpclib.client import Channel
from grpclib.const import Status
from grpclib.exceptions import GRPCError

from simulator._proto.gitpod import v1 as pb
from simulator._proto.gitpod.simulator import v1 as spb
from simulator.core.coverage import CoverageReport
from simulator.core.faults import Effect, Fault, Target
from simulator.core.plan import LifecyclePlan
from simulator.core.simtime import SimTime, format_instant, from_datetime
from simulator.core.transitions import Phase
from simulator.server.control_convert import fault_out, plan_out
from simulator.session_client import SESSION_KEY

SETTLE_ROUNDS = 5000
"""Event-loop turns an in-process wait may take (no real time passes)."""
JOURNAL_PAGE = 1000
CONTROL_PREFIX = "gitpod.simulator.v1."
REMOTE_WAIT = 10.0
"""Seconds of real time a remote wait for a message already due may take (network only)."""


class World(Protocol):
    """What a scenario needs besides the Gitpod API."""

    channel: Channel
    remote: bool
    admin_token: str

    async def add_user(self, user_id: str, token: str | None) -> str: ...
    async def set_plan(self, scope: str, value: str, plan: LifecyclePlan) -> None: ...
    async def add_prebuild(self, prebuild_id: str, context_url: str, commit: str) -> None: ...
    async def add_fault(
        self,
        effect: Effect,
        target: Target,
        count: int,
        active_from: SimTime | None,
        active_until: SimTime | None,
        skip: int = 0,
    ) -> str: ...
    async def clear_faults(self, ids: list[str] | None) -> None: ...
    async def mark_active(self, workspace_id: str) -> None: ...
    async def fail(self, instance_id: str, reason: str) -> None: ...
    async def share(self, workspace_id: str, shared: bool) -> None: ...
    async def now(self) -> SimTime: ...
    async def next_event_at(self) -> SimTime | None: ...
    async def advance_to(self, t: SimTime) -> None: ...
    async def journal(self, from_seq: int) -> list[dict[str, Any]]:
        """Journal entries of this run from ``from_seq`` on, as ``Entry.to_dict`` gives them."""
        ...

    async def wait(self, condition: Callable[[], bool], limit: float = ...) -> bool:
        """Let deliveries already due arrive until ``condition`` holds; False if they did not."""
        ...

    async def coverage(self) -> CoverageReport:
        """What this run has exercised so far (counted from the world's opening)."""
        ...


class LocalWorld:
    """A fresh :class:`simulator.server.runtime.Simulator` on a manual clock, served in memory."""

    remote = False

    def __init__(self, seed: int, start_time: SimTime) -> None:
        from simulator.server.runtime import Simulator

        self.sim = Simulator(seed=seed, start_time=start_time, admin_token="scenario-admin")
        self.admin_token = self.sim.admin_token
        self.channel: Channel

    @asynccontextmanager
    async def open(self) -> AsyncIterator[LocalWorld]:
        async with self.sim.channel() as channel:
            self.channel = channel
            yield self

    async def add_user(self, user_id: str, token: str | None) -> str:
        return self.sim.add_user(user_id, token).token

    async def set_plan(self, scope: str, value: str, plan: LifecyclePlan) -> None:
        self.sim.set_plan(plan, scope=scope, value=value)

    async def add_prebuild(self, prebuild_id: str, context_url: str, commit: str) -> None:
        self.sim.add_prebuild(prebuild_id, context_url, commit)

    async def add_fault(
        self,
        effect: Effect,
        target: Target,
        count: int,
        active_from: SimTime | None,
        active_until: SimTime | None,
        skip: int = 0,
    ) -> str:
        fault = self.sim.add_fault(
            effect,
            target,
            count=count,
            active_from=active_from,
            active_until=active_until,
            skip=skip,
        )
        return fault.id

    async def clear_faults(self, ids: list[str] | None) -> None:
        self.sim.clear_faults(ids)

    async def mark_active(self, workspace_id: str) -> None:
        self.sim.mark_active(workspace_id)

    async def fail(self, instance_id: str, reason: str) -> None:
        self.sim.fail(instance_id, reason)

    async def share(self, workspace_id: str, shared: bool) -> None:
        self.sim.share(workspace_id, shared)

    async def now(self) -> SimTime:
        return self.sim.now()

    async def next_event_at(self) -> SimTime | None:
        event = self.sim.engine.next_event()
        return None if event is None else event.at

    async def advance_to(self, t: SimTime) -> None:
        self.sim.jump_to(t)

    async def journal(self, from_seq: int) -> list[dict[str, Any]]:
        entries = self.sim.journal.read(from_seq, limit=len(self.sim.journal))
        return [entry.to_dict() for entry in entries]

    async def coverage(self) -> CoverageReport:
        return self.sim.coverage()

    async def wait(self, condition: Callable[[], bool], limit: float = REMOTE_WAIT) -> bool:
        for _ in range(SETTLE_ROUNDS):
            if condition():
                return True
            await asyncio.sleep(0)
        return condition()


class RemoteWorld:
    """A running ``gitpod-sim serve`` steered through its control plane."""

    remote = True

    def __init__(
        self, target: str, admin_token: str, seed: int, session: str | None = None
    ) -> None:
        host, _, port = target.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"--target must be HOST:PORT, got {target!r}")
        self.host, self.port = host.strip("[]"), int(port)
        self.admin_token = admin_token
        self.seed = seed
        self.session = session
        """The session of the server to play in (created for the run if it does not exist,
        deleted after it then); None: the default session."""
        self.channel: Channel
        self.ctl: spb.SimulatorServiceStub
        self._from_seq = 0

    @asynccontextmanager
    async def open(self) -> AsyncIterator[RemoteWorld]:
        channel = Channel(self.host, self.port)
        try:
            self.channel = channel
            self.ctl = spb.SimulatorServiceStub(
                channel, metadata={"authorization": f"Bearer {self.admin_token}"}
            )
            created = False
            if self.session is not None:
                created = await self._enter_session(channel, self.session)
            await self.ctl.reset(spb.ResetRequest(seed=self.seed, drop_users=True))
            await self.ctl.set_clock(spb.SetClockRequest(mode=spb.ClockMode.MANUAL))
            await self.ctl.reset_coverage(spb.ResetCoverageRequest())
            self._from_seq = 0
            self._from_seq = await self._journal_end()
            try:
                yield self
            finally:
                if created and self.session is not None:
                    await self.ctl.delete_session(spb.DeleteSessionRequest(name=self.session))
        finally:
            channel.close()

    async def _enter_session(self, channel: Channel, name: str) -> bool:
        """Every call on ``channel`` names the session from now on; it is created (manual
        clock, the scenario's seed) if the server has none of that name. Answers whether it
        was."""
        from grpclib.events import SendRequest, listen

        async def name_it(event: SendRequest) -> None:
            event.metadata[SESSION_KEY] = name

        listen(channel, SendRequest, name_it)
        try:
            await self.ctl.get_clock(spb.GetClockRequest())
            return False
        except GRPCError as exc:
            if exc.status is not Status.NOT_FOUND:
                raise
        await self.ctl.create_session(spb.CreateSessionRequest(name=name, seed=self.seed))
        return True

    async def add_user(self, user_id: str, token: str | None) -> str:
        reply = await self.ctl.add_user(spb.AddUserRequest(user_id=user_id, token=token or ""))
        return str(reply.token)

    async def set_plan(self, scope: str, value: str, plan: LifecyclePlan) -> None:
        if scope == "user":
            pscope = spb.PlanScope(user_id=value)
        elif scope == "context":
            pscope = spb.PlanScope(context_pattern=value)
        else:
            pscope = spb.PlanScope(global_=True)
        # plan_out writes a disabled limit as zero, which SetPlan reads as disabled.
        await self.ctl.set_plan(spb.SetPlanRequest(scope=pscope, plan=plan_out(plan)))

    async def add_prebuild(self, prebuild_id: str, context_url: str, commit: str) -> None:
        await self.ctl.add_prebuild(
            spb.AddPrebuildRequest(prebuild_id=prebuild_id, context_url=context_url, commit=commit)
        )

    async def add_fault(
        self,
        effect: Effect,
        target: Target,
        count: int,
        active_from: SimTime | None,
        active_until: SimTime | None,
        skip: int = 0,
    ) -> str:
        spec = fault_out(
            Fault("", effect, target, count, active_from, active_until, skip=skip)
        ).spec
        reply = await self.ctl.add_fault(spb.AddFaultRequest(spec=spec))
        assert reply.fault is not None
        return str(reply.fault.id)

    async def clear_faults(self, ids: list[str] | None) -> None:
        await self.ctl.clear_faults(spb.ClearFaultsRequest(ids=ids or []))

    async def mark_active(self, workspace_id: str) -> None:
        await self.ctl.mark_active(spb.MarkActiveRequest(workspace_id=workspace_id))

    async def fail(self, instance_id: str, reason: str) -> None:
        request = spb.FailInstanceRequest(instance_id=instance_id, reason=reason)
        await self.ctl.fail_instance(request)

    async def share(self, workspace_id: str, shared: bool) -> None:
        level = pb.AdmissionLevel.EVERYONE if shared else pb.AdmissionLevel.OWNER_ONLY
        await self.ctl.set_admission(
            spb.SetAdmissionRequest(workspace_id=workspace_id, admission=level)
        )

    async def _clock(self) -> spb.Clock:
        clock = (await self.ctl.get_clock(spb.GetClockRequest())).clock
        assert clock is not None
        return clock

    async def now(self) -> SimTime:
        clock = await self._clock()
        assert clock.now is not None
        return from_datetime(clock.now)

    async def next_event_at(self) -> SimTime | None:
        clock = await self._clock()
        return None if clock.next_event_at is None else from_datetime(clock.next_event_at)

    async def advance_to(self, t: SimTime) -> None:
        by = t - await self.now()
        if by > 0:
            await self.ctl.advance(spb.AdvanceRequest(by=dt.timedelta(microseconds=by)))

    async def _read(self, from_seq: int) -> tuple[list[spb.JournalEntry], int]:
        """Entries from ``from_seq`` up to the read itself (each ReadJournal is journaled too,
        so reading "until nothing is left" would never end): pages until one is not full."""
        out: list[spb.JournalEntry] = []
        seq = max(from_seq, self._from_seq)
        for _ in range(10_000):  # bounded
            reply = await self.ctl.read_journal(
                spb.ReadJournalRequest(from_seq=seq, limit=JOURNAL_PAGE)
            )
            out.extend(reply.entries)
            seq = max(seq, reply.next_seq)
            if len(reply.entries) < JOURNAL_PAGE:
                break
        return out, seq

    async def _journal_end(self) -> int:
        return (await self._read(0))[1]

    async def journal(self, from_seq: int) -> list[dict[str, Any]]:
        entries, _ = await self._read(from_seq)
        # The control plane's own calls are this runner's plumbing, not the story: leave them
        # out, as the in-process journal (which never sees them) does.
        return [
            _entry_dict(e)
            for e in entries
            if e.rpc is None or not e.rpc.method.startswith(f"/{CONTROL_PREFIX}")
        ]

    async def coverage(self) -> CoverageReport:
        import json

        reply = await self.ctl.get_coverage(spb.GetCoverageRequest())
        return CoverageReport.from_json(json.loads(reply.coverage_json))

    async def wait(self, condition: Callable[[], bool], limit: float = REMOTE_WAIT) -> bool:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + limit
        while not condition():
            if loop.time() >= deadline:
                return False
            await asyncio.sleep(0.005)
        return True


def _entry_dict(entry: spb.JournalEntry) -> dict[str, Any]:
    """A control-plane journal entry in the same shape as the in-process journal's."""
    at = format_instant(from_datetime(entry.at)) if entry.at is not None else ""
    if entry.rpc is not None:
        r = entry.rpc
        return {
            "seq": entry.seq,
            "at": at,
            "type": "rpc",
            "method": r.method,
            "caller": r.caller,
            "request": r.request,
            "code": r.code,
            "message": r.message,
        }
    t = entry.transition
    assert t is not None
    return {
        "seq": entry.seq,
        "at": at,
        "type": "transition",
        "instance_id": t.instance_id,
        "workspace_id": t.workspace_id,
        "owner_id": t.owner_id,
        "from": None if t.from_phase == 0 else Phase(t.from_phase).name,
        "to": Phase(t.to_phase).name,
        "status_version": t.status_version,
        "cause": t.cause,
    }
