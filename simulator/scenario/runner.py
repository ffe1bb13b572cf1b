"""Play a scenario as a Gitpod client would, and check what that client observes.

Every API action goes through the real gRPC surface (in memory, or over TCP with ``--target``);
each started instance is followed with ListenToWorkspaceInstance (and ListenToImageBuildLogs
while it builds), so phase, condition and message expectations are checked against the stream a
client gets. Time moves only when a step says so. After each step the runner reads the journal
and waits until every listener has the statuses the journal says were published, so checks never
race the streams. The first difference stops the run with an account of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from grpclib.exceptions import GRPCError

from simulator._proto.gitpod import v1 as pb
from simulator.core.coverage import CoverageReport
from simulator.core.errors import SimError
from simulator.core.faults import Target, TargetKind
from simulator.core.simtime import SECOND, Duration, SimTime, parse_instant
from simulator.core.transitions import Phase
from simulator.scenario.backends import World
from simulator.scenario.schema import Expect, FaultSpec, Scenario, Step

MAX_EVENTS = 100_000
"""Events one ``advance = "idle"`` step may fire (a bound, not a goal)."""
IDLE_LIMIT: Duration = 7 * 24 * 3600 * SECOND
MAX_PACED_GAP = 3.0
"""Real seconds one gap between events may take in a paced (``--speed``) demo."""
MAX_PAGES = 10_000
_T = TypeVar("_T")
_ID_IN_REQUEST = re.compile(r"(workspace_id|instance_id)='([^']+)'")


class Difference(Exception):
    """The first thing the client observed that the scenario did not expect."""


@dataclass(frozen=True, slots=True)
class Seen:
    """One status as a ListenToWorkspaceInstance client received it."""

    phase: Phase
    version: int
    failed: str
    timeout: str
    message: str
    stopped_by_request: bool
    admission: str

    def brief(self) -> str:
        extra = [
            f"{k}={v!r}"
            for k, v in (
                ("failed", self.failed),
                ("timeout", self.timeout),
                ("message", self.message),
            )
            if v
        ]
        if self.stopped_by_request:
            extra.append("stopped_by_request")
        return " ".join([self.phase.name, *extra])


@dataclass(slots=True, eq=False)
class Observed:
    """One instance the runner follows."""

    workspace: str
    number: int
    workspace_id: str
    instance_id: str
    user: str
    statuses: list[Seen] = field(default_factory=list)
    ended: bool = False
    error: str = ""
    logs: list[str] = field(default_factory=list)
    logs_done: bool = True
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    @property
    def label(self) -> str:
        return f"{self.workspace} #{self.number}"

    @property
    def last(self) -> Seen | None:
        return self.statuses[-1] if self.statuses else None

    def phases(self) -> list[Phase]:
        out: list[Phase] = []
        for s in self.statuses:
            if not out or out[-1] is not s.phase:
                out.append(s.phase)
        return out


@dataclass(frozen=True, slots=True)
class Marker:
    """A fault aimed or a note written, for the timeline."""

    at: SimTime
    kind: str
    text: str
    workspace_id: str = ""


@dataclass(slots=True)
class Outcome:
    scenario: Scenario
    ok: bool
    failure: str
    start: SimTime
    end: SimTime
    wall_seconds: float
    journal: list[dict[str, Any]]
    names: dict[str, str]
    """workspace id -> scenario name."""
    markers: list[Marker]
    steps_run: int
    coverage: CoverageReport | None = None
    """What the run exercised (the world's coverage when the run ended)."""

    @property
    def simulated(self) -> Duration:
        return self.end - self.start

    def journal_jsonl(self) -> str:
        import json

        return "".join(json.dumps(e, ensure_ascii=False) + "\n" for e in self.journal)


class Runner:
    """Runs one scenario against one :class:`World`."""

    def __init__(
        self,
        scenario: Scenario,
        world: World,
        *,
        speed: float | None = None,
        on_update: Callable[[Runner], None] | None = None,
        sleep: Callable[[float], Any] = asyncio.sleep,
    ) -> None:
        self.sc = scenario
        self.world = world
        self.speed = speed
        self.on_update = on_update
        self._sleep = sleep
        self.tokens: dict[str, str] = {}
        self.ids: dict[str, str] = {}  # scenario name -> workspace id
        self.owner: dict[str, str] = {}  # scenario name -> user
        self.observed: list[Observed] = []
        self.by_instance: dict[str, Observed] = {}
        self.fault_ids: dict[str, str] = {}
        self.markers: list[Marker] = []
        self.journal: list[dict[str, Any]] = []
        self.phase_now: dict[str, tuple[str, SimTime]] = {}  # instance -> (phase, since)
        self.start: SimTime = 0
        self.now: SimTime = 0
        self.step: Step | None = None
        self.note = ""
        self._tasks: list[asyncio.Task[Any]] = []
        self._next_seq = 0

    # ------------------------------------------------------------------ running

    async def run(self) -> Outcome:
        wall = time.perf_counter()
        failure = ""
        steps = 0
        self.start = self.now = await self.world.now()
        try:
            await self.setup()
            for step in self.sc.steps:
                self.step = step
                await self.run_step(step)
                steps += 1
                self._updated()
        except Difference as exc:
            failure = str(exc)
        finally:
            for task in self._tasks:
                task.cancel()
            for task in self._tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        journal = await self.world.journal(0)
        end = await self.world.now()
        coverage = await self.world.coverage()
        return Outcome(
            scenario=self.sc,
            ok=not failure,
            failure=failure,
            start=self.start,
            end=end,
            wall_seconds=time.perf_counter() - wall,
            journal=canonical(journal),
            names={v: k for k, v in self.ids.items()},
            markers=self.markers,
            steps_run=steps,
            coverage=coverage,
        )

    async def setup(self) -> None:
        """Users, plans, prebuilds, faults and workspaces: the part ``serve --scenario`` loads."""
        for u in self.sc.users:
            self.tokens[u.id] = await self.world.add_user(u.id, u.token)
        for p in self.sc.plans:
            await self.world.set_plan(p.scope, p.value, p.plan)
        for pre in self.sc.prebuilds:
            await self.world.add_prebuild(pre.id, pre.context, pre.commit)
        for f in self.sc.faults:
            await self.add_fault(f, None)
        for ws in self.sc.workspaces:
            for name, context in ws.expand():
                request = (
                    pb.CreateAndStartWorkspaceRequest(prebuild_id=ws.prebuild)
                    if ws.prebuild
                    else pb.CreateAndStartWorkspaceRequest(context_url=context)
                )
                reply = await self.api(ws.user).create_and_start_workspace(request)
                self.ids[name], self.owner[name] = reply.workspace_id, ws.user
                if ws.listen:
                    await self.follow_active(name, ws.user)
        await self.catch_up()
        if self.sc.setup_advance:
            await self.move_to(self.now + self.sc.setup_advance)
        self._updated()

    async def run_step(self, step: Step) -> None:
        if step.at is not None:
            target = self.start + step.at
            if target < self.now:
                raise self.diff(
                    step,
                    f"'at' is {_fmt(step.at)} but the clock is already at"
                    f" {_fmt(self.now - self.start)}",
                )
            await self.move_to(target)
        action = getattr(self, f"do_{step.action}")
        await action(step)
        await self.catch_up()

    def api(self, user: str) -> pb.WorkspacesServiceStub:
        return pb.WorkspacesServiceStub(
            self.world.channel, metadata={"authorization": f"Bearer {self.tokens[user]}"}
        )

    def user_of(self, step: Step) -> str:
        if step.user is not None:
            return step.user
        return self.owner.get(step.subject, self.sc.default_user)

    # ------------------------------------------------------------------ API actions

    async def call(self, step: Step, coro: Any) -> Any:
        """Await an API call and check its outcome against expect_error / expect_message."""
        try:
            reply = await coro
        except GRPCError as exc:
            code, message = exc.status.name, exc.message or ""
            if step.expect_error is None:
                raise self.diff(step, f"the call failed with {code}: {message}") from None
            if code != step.expect_error:
                raise self.diff(
                    step, f"expected error {step.expect_error}, got {code}: {message}"
                ) from None
            if step.expect_message is not None and message != step.expect_message:
                raise self.diff(
                    step, f"expected message {step.expect_message!r}, got {message!r}"
                ) from None
            return None
        if step.expect_error is not None:
            raise self.diff(step, f"expected error {step.expect_error}, but the call succeeded")
        return reply

    async def do_create(self, step: Step) -> None:
        user = self.user_of(step)
        if step.same_as is not None and step.context is None and step.prebuild is None:
            raise self.diff(step, "same_as needs the same context or prebuild as the first call")
        request = (
            pb.CreateAndStartWorkspaceRequest(
                prebuild_id=step.prebuild, idempotency_token=step.idempotency_token
            )
            if step.prebuild
            else pb.CreateAndStartWorkspaceRequest(
                context_url=step.context or "", idempotency_token=step.idempotency_token
            )
        )
        reply = await self.call(step, self.api(user).create_and_start_workspace(request))
        if reply is None:
            return
        wid = str(reply.workspace_id)
        if step.same_as is not None:
            first = self.ids[step.same_as]
            if wid != first:
                raise self.diff(
                    step,
                    f"expected the same workspace as {step.same_as!r}"
                    f" ({first}), got a new one: {wid}",
                )
        elif wid in self.ids.values():
            raise self.diff(step, f"expected a new workspace, got {wid} again")
        self.ids[step.subject], self.owner[step.subject] = wid, user
        if step.listen:
            await self.follow_active(step.subject, user)

    async def follow_active(self, name: str, user: str) -> None:
        reply = await self.api(user).get_active_workspace_instance(
            pb.GetActiveWorkspaceInstanceRequest(workspace_id=self.ids[name])
        )
        assert reply.instance is not None
        await self.follow(name, user, str(reply.instance.instance_id))

    async def follow(self, name: str, user: str, instance_id: str) -> Observed:
        """Listen to an instance from its current status on (and to its build log)."""
        if instance_id in self.by_instance:
            return self.by_instance[instance_id]
        number = 1 + sum(1 for o in self.observed if o.workspace_id == self.ids[name])
        obs = Observed(name, number, self.ids[name], instance_id, user)
        self.observed.append(obs)
        self.by_instance[instance_id] = obs
        self._tasks.append(asyncio.ensure_future(self._listen(obs)))
        if not await self.world.wait(lambda: bool(obs.statuses) or obs.ended):
            raise Difference(f"no first status from ListenToWorkspaceInstance for {obs.label}")
        if obs.statuses and obs.statuses[0].phase is Phase.IMAGEBUILD:
            obs.logs_done = False
            self._tasks.append(asyncio.ensure_future(self._logs(obs)))
        return obs

    async def _listen(self, obs: Observed) -> None:
        request = pb.ListenToWorkspaceInstanceRequest(instance_id=obs.instance_id)
        try:
            stream = self.api(obs.user).listen_to_workspace_instance(request)
            await _consume(stream, lambda m: obs.statuses.append(_seen(m.instance_status)))
        except GRPCError as exc:
            obs.error = f"{exc.status.name}: {exc.message}"
        finally:
            obs.ended = True

    async def _logs(self, obs: Observed) -> None:
        request = pb.ListenToImageBuildLogsRequest(instance_id=obs.instance_id)
        try:
            stream = self.api(obs.user).listen_to_image_build_logs(request)
            await _consume(stream, lambda m: obs.logs.append(str(m.line)))
        except GRPCError:
            pass
        finally:
            obs.logs_done = True

    async def do_start(self, step: Step) -> None:
        user = self.user_of(step)
        request = pb.StartWorkspaceRequest(
            workspace_id=self.ids[step.subject], idempotency_token=step.idempotency_token
        )
        reply = await self.call(step, self.api(user).start_workspace(request))
        if reply is None:
            return
        iid = str(reply.instance_id)
        known = iid in self.by_instance
        if step.same_instance is not None and step.same_instance != known:
            raise self.diff(
                step,
                "expected the active instance again, got a new one"
                if step.same_instance
                else f"expected a new instance, got {iid} again",
            )
        await self.follow(step.subject, self.owner[step.subject], iid)

    async def do_stop(self, step: Step) -> None:
        user = self.user_of(step)
        request = pb.StopWorkspaceRequest(
            workspace_id=self.ids[step.subject], idempotency_token=step.idempotency_token
        )
        replies: list[Any] = []
        failure: list[GRPCError] = []

        async def drain() -> None:
            try:
                await _consume(self.api(user).stop_workspace(request), replies.append)
            except GRPCError as exc:
                failure.append(exc)

        task = asyncio.ensure_future(drain())
        self._tasks.append(task)
        watched = [o for o in self.observed if o.workspace_id == self.ids[step.subject]]
        counts = [len(o.statuses) for o in watched]

        def acted() -> bool:
            changed = any(len(o.statuses) > n for o, n in zip(watched, counts, strict=True))
            return task.done() or bool(replies) or changed

        # A stop of a STOPPING instance changes nothing visible: give it a short, bounded wait.
        await self.world.wait(acted, limit=1.0)
        if step.expect_error is not None or failure:
            await self.world.wait(task.done)

            async def outcome() -> None:
                if failure:
                    raise failure[0]

            await self.call(step, outcome())

    async def do_call(self, step: Step) -> None:
        """Any RPC with the ids and credentials the step gives (raw ones included): what a
        client that sends a bad id, a bad token or the admin token meets. A stream is read up to
        its first message, then closed."""
        method = step.subject
        wid = step.workspace_id
        if wid is None:
            wid = self.ids[step.workspace] if step.workspace is not None else ""
        iid = step.instance_id
        if iid is None:
            mine = [o for o in self.observed if step.workspace and o.workspace_id == wid]
            iid = mine[-1].instance_id if mine else ""
        if step.admin:
            token = self.world.admin_token
        elif step.token is not None:
            token = step.token
        else:
            token = self.tokens[step.user or self.sc.default_user]
        stub = pb.WorkspacesServiceStub(
            self.world.channel, metadata={"authorization": f"Bearer {token}"} if token else None
        )
        requests: dict[str, Any] = {
            "ListWorkspaces": pb.ListWorkspacesRequest(),
            "GetWorkspace": pb.GetWorkspaceRequest(workspace_id=wid),
            "GetOwnerToken": pb.GetOwnerTokenRequest(workspace_id=wid),
            "CreateAndStartWorkspace": pb.CreateAndStartWorkspaceRequest(
                context_url=step.context or ""
            ),
            "StartWorkspace": pb.StartWorkspaceRequest(workspace_id=wid),
            "GetActiveWorkspaceInstance": pb.GetActiveWorkspaceInstanceRequest(workspace_id=wid),
            "GetWorkspaceInstanceOwnerToken": pb.GetWorkspaceInstanceOwnerTokenRequest(
                instance_id=iid
            ),
            "ListenToWorkspaceInstance": pb.ListenToWorkspaceInstanceRequest(instance_id=iid),
            "ListenToImageBuildLogs": pb.ListenToImageBuildLogsRequest(instance_id=iid),
            "StopWorkspace": pb.StopWorkspaceRequest(workspace_id=wid),
        }
        name = re.sub(r"(?<!^)([A-Z])", r"_\1", method).lower()
        answer = getattr(stub, name)(requests[method])
        if method in ("ListenToWorkspaceInstance", "ListenToImageBuildLogs", "StopWorkspace"):

            async def first() -> None:
                async with contextlib.aclosing(answer) as stream:
                    async for _ in stream:
                        break

            await self.call(step, first())
        else:
            await self.call(step, answer)

    async def do_fail(self, step: Step) -> None:
        mine = [o for o in self.observed if o.workspace_id == self.ids[step.subject]]
        if not mine:
            raise self.diff(step, f"workspace {step.subject!r} has no instance to fail")
        await self.world_call(step, self.world.fail(mine[-1].instance_id, step.reason))

    async def do_get(self, step: Step) -> None:
        request = pb.GetWorkspaceRequest(workspace_id=self.ids[step.subject])
        await self.call(step, self.api(self.user_of(step)).get_workspace(request))

    async def do_owner_token(self, step: Step) -> None:
        request = pb.GetOwnerTokenRequest(workspace_id=self.ids[step.subject])
        await self.call(step, self.api(self.user_of(step)).get_owner_token(request))

    async def do_active_instance(self, step: Step) -> None:
        request = pb.GetActiveWorkspaceInstanceRequest(workspace_id=self.ids[step.subject])
        reply = await self.call(
            step, self.api(self.user_of(step)).get_active_workspace_instance(request)
        )
        if reply is not None and step.expect_phase is not None:
            got = Phase(reply.instance.status.phase)
            if got is not step.expect_phase:
                raise self.diff(
                    step,
                    f"expected the active instance in {step.expect_phase.name}, got {got.name}",
                )

    async def do_list(self, step: Step) -> None:
        api = self.api(step.subject)
        token, pages = "", 0
        seen: list[str] = []
        for _ in range(MAX_PAGES):
            request = pb.ListWorkspacesRequest(
                pagination=pb.Pagination(page_size=step.page_size, page_token=token)
            )
            reply = await self.call(step, api.list_workspaces(request))
            if reply is None:
                return
            pages += 1
            seen.extend(str(item.result.workspace_id) for item in reply.result)
            token = str(reply.next_page_token)
            if not token or not step.all_pages:
                break
        repeated = sorted({w for w in seen if seen.count(w) > 1}) if len(seen) < 2000 else []
        if len(set(seen)) != len(seen):
            raise self.diff(
                step, f"paging repeated {len(seen) - len(set(seen))} item(s): {repeated[:3]}"
            )
        if step.expect_count is not None and len(seen) != step.expect_count:
            raise self.diff(step, f"expected {step.expect_count} workspace(s), listed {len(seen)}")
        if step.expect_pages is not None and pages != step.expect_pages:
            raise self.diff(step, f"expected {step.expect_pages} page(s), got {pages}")
        if step.expect_workspaces is not None:
            names = {v: k for k, v in self.ids.items()}
            got = sorted(names.get(w, w) for w in seen)
            want = sorted(step.expect_workspaces)
            if got != want:
                raise self.diff(step, f"expected workspaces {want}, listed {got}")

    # ------------------------------------------------------------------ world actions

    async def world_call(self, step: Step, coro: Any) -> None:
        try:
            await coro
        except (GRPCError, SimError) as exc:
            raise self.diff(step, f"the simulator refused: {exc}") from None

    async def do_mark_active(self, step: Step) -> None:
        await self.world_call(step, self.world.mark_active(self.ids[step.subject]))

    async def do_share(self, step: Step) -> None:
        await self.world_call(step, self.world.share(self.ids[step.subject], step.shared))

    async def do_fault(self, step: Step) -> None:
        assert step.fault is not None
        await self.add_fault(step.fault, step)

    async def add_fault(self, f: FaultSpec, step: Step | None) -> None:
        value = self.ids[f.target_value] if f.target is TargetKind.WORKSPACE else f.target_value
        coro = self.world.add_fault(
            f.effect,
            Target.of(f.target, value),
            f.count,
            None if f.active_from is None else self.start + f.active_from,
            None if f.active_until is None else self.start + f.active_until,
            f.skip,
        )
        try:
            fid = await coro
        except (GRPCError, SimError) as exc:
            if step is None:
                raise Difference(f"{self.sc.path}:{f.line}: the simulator refused: {exc}") from None
            raise self.diff(step, f"the simulator refused: {exc}") from None
        if f.name:
            self.fault_ids[f.name] = fid
        wid = value if f.target is TargetKind.WORKSPACE else ""
        self.markers.append(Marker(self.now, "fault", f"{f.kind} ({f.target.value})", wid))

    async def do_clear_faults(self, step: Step) -> None:
        ids = None if step.clear is None else [self.fault_ids[n] for n in step.clear]
        await self.world_call(step, self.world.clear_faults(ids))
        self.markers.append(Marker(self.now, "fault", f"clear faults: {step.subject}"))

    async def do_note(self, step: Step) -> None:
        self.note = step.subject
        self.markers.append(Marker(self.now, "note", step.subject))

    async def do_advance(self, step: Step) -> None:
        if step.subject == "next":
            nxt = await self.world.next_event_at()
            if nxt is not None:
                await self.move_to(nxt)
            return
        if step.subject == "idle":
            limit = self.now + IDLE_LIMIT
            for _ in range(MAX_EVENTS):
                nxt = await self.world.next_event_at()
                if nxt is None or nxt > limit:
                    return
                await self.move_to(nxt)
            raise self.diff(step, f"still not idle after {MAX_EVENTS} events")
        from simulator.core.simtime import parse_duration

        await self.move_to(self.now + parse_duration(step.subject))

    # ------------------------------------------------------------------ time

    async def move_to(self, target: SimTime) -> None:
        """Move simulated time to ``target``; paced event by event in a ``--speed`` demo."""
        if self.speed is None:
            await self.world.advance_to(target)
            self.now = target
            await self.catch_up()
            return
        for _ in range(MAX_EVENTS):
            nxt = await self.world.next_event_at()
            stop = target if nxt is None or nxt > target else nxt
            await self._pause(stop - self.now)
            await self.world.advance_to(stop)
            self.now = stop
            await self.catch_up()
            self._updated()
            if stop >= target:
                return

    async def _pause(self, simulated: Duration) -> None:
        if self.speed is not None and simulated > 0:
            await self._sleep(min(simulated / SECOND / self.speed, MAX_PACED_GAP))

    async def catch_up(self) -> None:
        """Read the journal; wait until each listener has every status published so far."""
        fresh = await self.world.journal(self._next_seq)
        if fresh:
            self._next_seq = int(fresh[-1]["seq"]) + 1
        self.journal.extend(fresh)
        self.now = await self.world.now()
        wanted: dict[str, int] = {}
        for entry in fresh:
            if entry["type"] != "transition":
                continue
            iid = entry["instance_id"]
            wanted[iid] = max(wanted.get(iid, 0), int(entry["status_version"]))
            if entry["from"] != entry["to"]:
                self.phase_now[iid] = (entry["to"], parse_instant(entry["at"]))
        for iid, version in wanted.items():
            obs = self.by_instance.get(iid)
            if obs is None:
                continue

            def caught(o: Observed = obs, v: int = version) -> bool:
                return o.ended or (o.last is not None and o.last.version >= v)

            if not await self.world.wait(caught):
                raise Difference(f"the listener of {obs.label} did not receive status {version}")

    def _updated(self) -> None:
        if self.on_update is not None:
            self.on_update(self)

    # ------------------------------------------------------------------ expectations

    def diff(self, step: Step, what: str) -> Difference:
        where = f"{self.sc.path}:{step.line}: {step.describe()}"
        when = f"at simulated +{_fmt(self.now - self.start)}"
        wid = self.ids.get(step.subject)
        ident = f"; workspace {step.subject} = {wid}" if wid else ""
        return Difference(f"{where}: {what}\n  ({when}{ident})")

    async def do_expect(self, step: Step) -> None:
        e = step.expect
        assert e is not None
        mine = [o for o in self.observed if o.workspace_id == self.ids[step.subject]]
        if not mine:
            raise self.diff(step, "no instance of this workspace was followed")
        if e.instance is not None and e.instance > len(mine):
            raise self.diff(step, f"instance {e.instance} was expected, only {len(mine)} started")
        obs = mine[-1] if e.instance is None else mine[e.instance - 1]
        self.check(step, e, obs)
        await self.check_logs(step, e, obs)
        self.check_entered(step, e, obs)

    def check(self, step: Step, e: Expect, obs: Observed) -> None:
        last = obs.last
        assert last is not None
        seen = "\n  statuses seen: " + ", ".join(s.brief() for s in obs.statuses)
        if e.phases is not None and tuple(obs.phases()) != e.phases:
            raise self.diff(
                step,
                f"phases of {obs.label} differ\n  expected: "
                + " -> ".join(p.name for p in e.phases)
                + "\n  observed: "
                + " -> ".join(p.name for p in obs.phases())
                + seen,
            )
        checks: list[tuple[str, object, object]] = [
            ("phase", e.phase and e.phase.name, last.phase.name),
            ("conditions.failed", e.failed, last.failed),
            ("conditions.timeout", e.timeout, last.timeout),
            ("message", e.message, last.message),
            ("stopped_by_request", e.stopped_by_request, last.stopped_by_request),
            ("admission", e.admission, last.admission),
        ]
        for what, want, got in checks:
            if want is not None and want != got:
                raise self.diff(
                    step, f"{what} of {obs.label}: expected {want!r}, observed {got!r}{seen}"
                )

    async def check_logs(self, step: Step, e: Expect, obs: Observed) -> None:
        if e.log_tail is None and e.log_lines is None and not e.log_contains:
            return
        if not await self.world.wait(lambda: obs.logs_done):
            raise self.diff(
                step,
                f"the image build of {obs.label} is still running; expect its log after it ends",
            )
        if e.log_lines is not None and len(obs.logs) != e.log_lines:
            raise self.diff(
                step, f"expected {e.log_lines} build log line(s), got {len(obs.logs)}: {obs.logs!r}"
            )
        if e.log_tail is not None and tuple(obs.logs[-len(e.log_tail) :]) != e.log_tail:
            raise self.diff(
                step,
                f"build log tail differs\n  expected: {list(e.log_tail)!r}"
                f"\n  observed: {obs.logs[-max(len(e.log_tail), 1) :]!r}",
            )
        for text in e.log_contains:
            if not any(text in line for line in obs.logs):
                raise self.diff(step, f"no build log line contains {text!r}: {obs.logs!r}")

    def check_entered(self, step: Step, e: Expect, obs: Observed) -> None:
        if not e.entered:
            return
        entered: dict[str, SimTime] = {}
        for entry in self.journal:
            if (
                entry["type"] == "transition"
                and entry["instance_id"] == obs.instance_id
                and entry["from"] != entry["to"]
            ):
                entered.setdefault(entry["to"], parse_instant(entry["at"]))
        for phase, offset in e.entered:
            got = entered.get(phase.name)
            if got is None:
                raise self.diff(step, f"{obs.label} never entered {phase.name}")
            if got - self.start != offset:
                raise self.diff(
                    step,
                    f"{obs.label} entered {phase.name} at +"
                    f"{_fmt(got - self.start)}, expected +{_fmt(offset)}",
                )


async def _consume(stream: AsyncIterator[_T], each: Callable[[_T], object]) -> None:
    """Every message of a server stream, closing the stream whatever happens."""
    try:
        async for message in stream:
            each(message)
    finally:
        aclose = getattr(stream, "aclose", None)
        if aclose is not None:
            await aclose()


def _seen(status: pb.WorkspaceInstanceStatus | None) -> Seen:
    assert status is not None
    c = status.conditions
    return Seen(
        phase=Phase(status.phase),
        version=int(status.status_version),
        failed=c.failed if c is not None else "",
        timeout=c.timeout if c is not None else "",
        message=status.message,
        stopped_by_request=bool(c is not None and c.stopped_by_request),
        admission=pb.AdmissionLevel(status.admission).name,
    )


def _fmt(d: Duration) -> str:
    """``1h02m03s``-style, short, exact to the microsecond when needed."""
    sign = "-" if d < 0 else ""
    seconds, micros = divmod(abs(d), SECOND)
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    frac = f".{micros:06d}".rstrip("0") if micros else ""
    if h:
        return f"{sign}{h}h{m:02d}m{s:02d}{frac}s"
    if m:
        return f"{sign}{m}m{s:02d}{frac}s"
    return f"{sign}{s}{frac}s"


fmt_duration = _fmt


def canonical(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The journal with each run of RPC records at one instant in a stable order.

    Why: calls that end at the same simulated instant (a listener and a StopWorkspace at
    STOPPED) finish in whatever order their tasks and, against a server, their connections are
    scheduled, not in an order the story decides, so their records may swap between runs. (In
    process the hub wakes listeners in join order, but a remote target gives no such promise.)
    Sorting each such run (keeping its sequence numbers in place) makes the same scenario and seed
    give the same bytes; nothing else moves.
    """
    out = list(entries)
    i = 0
    while i < len(out):
        j = i
        while (
            j < len(out)
            and out[j]["type"] == "rpc"
            and out[j]["at"] == out[i]["at"]
            and out[i]["type"] == "rpc"
        ):
            j += 1
        if j - i > 1:
            seqs = [e["seq"] for e in out[i:j]]
            group = sorted(
                out[i:j],
                key=lambda e: (e["method"], e["caller"], e["request"], e["code"], e["message"]),
            )
            out[i:j] = [{**e, "seq": seq} for e, seq in zip(group, seqs, strict=True)]
        i = max(j, i + 1)
    return out


def request_ids(request: str) -> dict[str, str]:
    """``workspace_id`` / ``instance_id`` named in a journaled request summary."""
    return dict(_ID_IN_REQUEST.findall(request))
