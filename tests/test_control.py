"""The control plane (gitpod.simulator.v1.SimulatorService) through a grpclib client, in memory.

Each capability is checked through the service here; the same operations on the Python API are
what the service calls. Codes and messages are exact.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from grpc_helpers import ALICE, REPO, active_instance_id, collect, create, drive, settle, stub_for
from grpclib.client import Channel
from grpclib.const import Status
from grpclib.exceptions import GRPCError

from simulator import Phase, Simulator
from simulator._proto.gitpod import v1 as pb
from simulator._proto.gitpod.simulator import v1 as spb
from simulator.core.simtime import DEFAULT_START, SECOND, to_datetime

ADMIN = "admin-secret"
S = dt.timedelta(seconds=1)


@pytest.fixture
def sim() -> Simulator:
    return Simulator(seed=5, users={"alice": ALICE, "bob": "tok-bob"}, admin_token=ADMIN)


@pytest.fixture
async def channel(sim: Simulator) -> AsyncIterator[Channel]:
    async with sim.channel() as ch:
        yield ch


@pytest.fixture
def ctl(channel: Channel) -> spb.SimulatorServiceStub:
    return spb.SimulatorServiceStub(channel, metadata={"authorization": f"Bearer {ADMIN}"})


@pytest.fixture
def api(channel: Channel) -> pb.WorkspacesServiceStub:
    return stub_for(channel, ALICE)


async def expect(code: Status, awaitable: Any, message: str | None = None) -> GRPCError:
    with pytest.raises(GRPCError) as info:
        await awaitable
    assert info.value.status is code, (info.value.status, info.value.message)
    if message is not None:
        assert info.value.message == message
    return info.value


def offset(at: dt.datetime | None) -> float:
    assert at is not None
    return (at - to_datetime(DEFAULT_START)).total_seconds()


async def phases_of(api: pb.WorkspacesServiceStub, iid: str) -> list[tuple[Phase, str, str, str]]:
    """(phase, failed, timeout, message) of every status a listener sees (instance must end)."""
    messages = await collect(
        api.listen_to_workspace_instance(pb.ListenToWorkspaceInstanceRequest(instance_id=iid))
    )
    return [
        (
            Phase(m.instance_status.phase),
            m.instance_status.conditions.failed,
            m.instance_status.conditions.timeout,
            m.instance_status.message,
        )
        for m in messages
    ]


# ---------------------------------------------------------------------- access


async def test_admin_and_api_tokens_are_kept_apart(
    channel: Channel, ctl: spb.SimulatorServiceStub
) -> None:
    as_user = spb.SimulatorServiceStub(channel, metadata={"authorization": f"Bearer {ALICE}"})
    await expect(
        Status.PERMISSION_DENIED,
        as_user.get_clock(spb.GetClockRequest()),
        "gitpod.simulator.v1.SimulatorService needs the admin token; an API token cannot use it",
    )
    stranger = spb.SimulatorServiceStub(channel, metadata={"authorization": "Bearer nope"})
    await expect(Status.UNAUTHENTICATED, stranger.get_clock(spb.GetClockRequest()))
    anonymous = spb.SimulatorServiceStub(channel)
    await expect(Status.UNAUTHENTICATED, anonymous.get_clock(spb.GetClockRequest()))
    admin_on_api = stub_for(channel, ADMIN)
    await expect(
        Status.PERMISSION_DENIED,
        admin_on_api.list_workspaces(pb.ListWorkspacesRequest()),
        "the admin token is for gitpod.simulator.v1.SimulatorService only;"
        " call gitpod.v1.WorkspacesService with an API token",
    )
    assert (await ctl.get_clock(spb.GetClockRequest())).clock is not None


# ---------------------------------------------------------------------- clock


async def test_clock_read_set_and_advance(
    ctl: spb.SimulatorServiceStub, api: pb.WorkspacesServiceStub
) -> None:
    clock = (await ctl.get_clock(spb.GetClockRequest())).clock
    assert clock is not None
    assert clock.now == to_datetime(DEFAULT_START)
    assert clock.mode == spb.ClockMode.MANUAL and clock.pending_events == 0
    assert clock.next_event_at is None
    await create(api)
    clock = (await ctl.get_clock(spb.GetClockRequest())).clock
    # A build nobody follows schedules nothing for its log lines: the next event is its end.
    assert clock is not None and clock.next_event_kind == "step"
    assert offset(clock.next_event_at) == 60 and clock.pending_events == 2  # step, image_build
    answer = await ctl.advance(spb.AdvanceRequest(by=60 * S))
    assert [(Phase(t.from_phase), Phase(t.to_phase), t.cause) for t in answer.transitions] == [
        (Phase.IMAGEBUILD, Phase.PENDING, "step")
    ]
    assert offset(answer.transitions[0].at) == 60
    nxt = await ctl.advance(spb.AdvanceRequest(to_next_event=True))
    assert [Phase(t.to_phase) for t in nxt.transitions] == [Phase.CREATING]
    assert nxt.clock is not None and offset(nxt.clock.now) == 62
    idle = await ctl.advance(spb.AdvanceRequest(until_idle=dt.timedelta(days=3)))
    assert idle.idle is True
    assert [Phase(t.to_phase) for t in idle.transitions] == [
        Phase.INITIALIZING,
        Phase.RUNNING,
        Phase.RUNNING,  # the inactivity timeout's condition
        Phase.STOPPING,
        Phase.STOPPED,
    ]
    assert idle.transitions[2].cause == "timeout:period of inactivity"
    switched = await ctl.set_clock(
        spb.SetClockRequest(mode=spb.ClockMode.REALTIME, speed=60, autojump_grace=S / 10)
    )
    assert switched.clock is not None
    assert switched.clock.mode == spb.ClockMode.REALTIME and switched.clock.speed == 60
    assert switched.clock.autojump_grace == S / 10


async def test_bad_clock_requests(ctl: spb.SimulatorServiceStub) -> None:
    await expect(
        Status.INVALID_ARGUMENT,
        ctl.advance(spb.AdvanceRequest(by=-S)),
        "by must not be negative, got -1 day, 23:59:59",
    )
    await expect(
        Status.INVALID_ARGUMENT,
        ctl.advance(spb.AdvanceRequest()),
        "advance needs one of: by, to_next_event, until_idle",
    )
    await expect(
        Status.INVALID_ARGUMENT,
        ctl.set_clock(spb.SetClockRequest(speed=-2)),
        "speed -2.0 is out of range: 0 < speed <= 1000000",
    )


# ---------------------------------------------------------------------- plans


async def test_scoped_plans_shape_the_lifecycle(
    sim: Simulator, ctl: spb.SimulatorServiceStub, channel: Channel, api: pb.WorkspacesServiceStub
) -> None:
    def fixed(phase: Phase, seconds: int) -> spb.PhaseDuration:
        return spb.PhaseDuration(phase=phase, duration=spb.Distribution(fixed=seconds * S))

    global_plan = await ctl.set_plan(
        spb.SetPlanRequest(
            scope=spb.PlanScope(global_=True),
            plan=spb.LifecyclePlan(
                build_policy=spb.BuildPolicy.NEVER, durations=[fixed(Phase.PENDING, 100)]
            ),
        )
    )
    await ctl.set_plan(
        spb.SetPlanRequest(
            scope=spb.PlanScope(user_id="bob"),
            plan=spb.LifecyclePlan(build_policy=spb.BuildPolicy.NEVER, cluster="us12"),
        )
    )
    await ctl.set_plan(
        spb.SetPlanRequest(
            scope=spb.PlanScope(context_pattern=r"github\.com/acme/"),
            plan=spb.LifecyclePlan(
                build_policy=spb.BuildPolicy.ALWAYS,
                durations=[fixed(Phase.IMAGEBUILD, 5)],
                timeouts=spb.Timeouts(inactivity=dt.timedelta(0)),
            ),
        )
    )
    listed = await ctl.list_plans(spb.ListPlansRequest())
    assert [p.id for p in listed.plans] == ["plan-1", "plan-2", "plan-3"]
    assert global_plan.plan is not None and global_plan.plan.id == "plan-1"

    plain = await active_instance_id(api, await create(api, "https://github.com/org/x"))
    acme = await active_instance_id(api, await create(api, "https://github.com/acme/y"))
    bob_api = stub_for(channel, "tok-bob")
    bob_ws = await create(bob_api, "https://github.com/org/z")
    assert sim.phase_of(plain) is Phase.PENDING  # global: no build, PENDING lasts 100 s
    assert sim.phase_of(acme) is Phase.IMAGEBUILD  # the pattern wins: always builds, 5 s
    bob_inst = sim.instance(sim.workspace(bob_ws).latest_instance_id or "")
    assert bob_inst.status.url == f"https://{bob_ws}.ws-us12.gitpod.io"
    sim.advance("99s")
    assert sim.phase_of(plain) is Phase.PENDING
    assert sim.phase_of(acme) is Phase.RUNNING
    assert sim.phase_of(bob_inst.id) is Phase.RUNNING  # bob's plan: default PENDING of 2 s
    sim.advance("3h")
    assert sim.phase_of(acme) is Phase.RUNNING  # its inactivity limit is disabled
    assert sim.phase_of(plain) is Phase.STOPPED

    await ctl.delete_plan(spb.DeletePlanRequest(id="plan-3"))
    await expect(
        Status.NOT_FOUND,
        ctl.delete_plan(spb.DeletePlanRequest(id="plan-3")),
        "plan 'plan-3' does not exist",
    )


async def test_bad_plan_requests(ctl: spb.SimulatorServiceStub) -> None:
    await expect(
        Status.INVALID_ARGUMENT,
        ctl.set_plan(
            spb.SetPlanRequest(scope=spb.PlanScope(context_pattern="(unclosed"), plan=None)
        ),
    )
    await expect(
        Status.NOT_FOUND,
        ctl.set_plan(spb.SetPlanRequest(scope=spb.PlanScope(user_id="nobody"))),
        "user 'nobody' does not exist",
    )
    await expect(
        Status.INVALID_ARGUMENT,
        ctl.set_plan(
            spb.SetPlanRequest(
                plan=spb.LifecyclePlan(
                    durations=[
                        spb.PhaseDuration(phase=Phase.RUNNING, duration=spb.Distribution(fixed=S))
                    ]
                )
            )
        ),
        "phase RUNNING has no duration of its own "
        "(IMAGEBUILD, PENDING, CREATING, INITIALIZING, STOPPING do)",
    )
    await expect(
        Status.INVALID_ARGUMENT,
        ctl.set_plan(spb.SetPlanRequest(plan=spb.LifecyclePlan(timeouts=spb.Timeouts(startup=-S)))),
        "timeouts.startup must not be negative, got -1 day, 23:59:59",
    )


async def test_mark_active_share_and_prebuild(
    sim: Simulator, ctl: spb.SimulatorServiceStub, channel: Channel, api: pb.WorkspacesServiceStub
) -> None:
    wsid = await create(api)
    await expect(
        Status.FAILED_PRECONDITION,
        ctl.mark_active(spb.MarkActiveRequest(workspace_id=wsid)),
        f"workspace {wsid} is IMAGEBUILD, activity counts only while RUNNING",
    )
    sim.advance("90s")
    marked = await ctl.mark_active(spb.MarkActiveRequest(workspace_id=wsid))
    assert marked.instance is not None and marked.instance.status is not None
    conditions = marked.instance.status.conditions
    assert conditions is not None and offset(conditions.first_user_activity) == 90
    await expect(
        Status.NOT_FOUND,
        ctl.mark_active(spb.MarkActiveRequest(workspace_id="gitpodio-gitpod-aaaaaaaaaaa")),
    )
    await ctl.set_admission(
        spb.SetAdmissionRequest(workspace_id=wsid, admission=pb.AdmissionLevel.EVERYONE)
    )
    bob = stub_for(channel, "tok-bob")
    assert (await bob.get_workspace(pb.GetWorkspaceRequest(workspace_id=wsid))).result
    await expect(
        Status.INVALID_ARGUMENT,
        ctl.set_admission(spb.SetAdmissionRequest(workspace_id=wsid)),
        "admission must be ADMISSION_LEVEL_EVERYONE or _OWNER_ONLY",
    )
    added = await ctl.add_prebuild(
        spb.AddPrebuildRequest(prebuild_id="pb-7", context_url="https://github.com/acme/app")
    )
    assert len(added.commit) == 40
    await expect(
        Status.ALREADY_EXISTS,
        ctl.add_prebuild(
            spb.AddPrebuildRequest(prebuild_id="pb-7", context_url="https://github.com/acme/app")
        ),
    )
    await expect(
        Status.INVALID_ARGUMENT,
        ctl.add_prebuild(spb.AddPrebuildRequest(prebuild_id="x", context_url=REPO, commit="abc")),
        "commit must be 40 hex characters, got 'abc'",
    )


# ---------------------------------------------------------------------- lifecycle faults


async def add(ctl: spb.SimulatorServiceStub, **spec: Any) -> spb.Fault:
    response = await ctl.add_fault(spb.AddFaultRequest(spec=spb.FaultSpec(**spec)))
    assert response.fault is not None
    return response.fault


async def test_fail_image_build_with_its_log_tail(
    sim: Simulator, ctl: spb.SimulatorServiceStub, api: pb.WorkspacesServiceStub
) -> None:
    fault = await add(
        ctl,
        count=1,
        fail_image_build=spb.FailImageBuild(
            reason="image build failed: exit code 100",
            log_tail=["E: Unable to locate package nosuchpkg"],
        ),
    )
    assert fault.id == "fault-1" and fault.spec is not None
    assert fault.spec.target is not None and fault.spec.target.next_start is True
    iid = await active_instance_id(api, await create(api))
    sim.run_until_idle("10m")
    reason = "image build failed: exit code 100"
    assert await phases_of(api, iid) == [
        (Phase.STOPPED, reason, "", f"Workspace cannot be started: {reason}")
    ]
    changes = [
        (c.previous.phase if c.previous else None, c.status.phase) for c in _changes(sim, iid)
    ]
    assert changes == [
        (None, Phase.IMAGEBUILD),
        (Phase.IMAGEBUILD, Phase.IMAGEBUILD),  # failed set during IMAGEBUILD
        (Phase.IMAGEBUILD, Phase.STOPPED),
    ]
    logs = await collect(
        api.listen_to_image_build_logs(pb.ListenToImageBuildLogsRequest(instance_id=iid))
    )
    assert logs[-1].line == "E: Unable to locate package nosuchpkg"
    listed = (await ctl.list_faults(spb.ListFaultsRequest())).faults
    assert [(f.id, f.times_applied, f.exhausted) for f in listed] == [("fault-1", 1, True)]
    # Exhausted: the next start builds fine.
    second = await active_instance_id(api, await create(api, "https://github.com/org/other"))
    sim.run_until_idle("5m")
    assert sim.phase_of(second) is Phase.RUNNING


def _changes(sim: Simulator, iid: str) -> list[Any]:
    return [
        e.change
        for e in sim.journal
        if getattr(e, "change", None) is not None and e.change.instance_id == iid  # type: ignore[union-attr]
    ]


async def test_fail_creating_goes_straight_to_stopped(
    sim: Simulator, ctl: spb.SimulatorServiceStub, api: pb.WorkspacesServiceStub
) -> None:
    await add(
        ctl,
        target=spb.FaultTarget(context_pattern="acme"),
        fail_creating=spb.FailCreating(),
    )
    iid = await active_instance_id(api, await create(api, "https://github.com/acme/app"))
    ok = await active_instance_id(api, await create(api, "https://github.com/other/app"))
    sim.run_until_idle("10m")
    reason = (
        "cannot pull image: rpc error: code = NotFound desc = failed to pull and unpack image:"
        " not found"
    )
    path = [(c.status.phase, c.status.failed) for c in _changes(sim, iid)]
    assert path[-3:] == [(Phase.CREATING, ""), (Phase.CREATING, reason), (Phase.STOPPED, reason)]
    assert sim.instance(iid).status.message == reason
    assert sim.phase_of(ok) is Phase.RUNNING


async def test_fail_initializing_goes_through_stopping(
    sim: Simulator, ctl: spb.SimulatorServiceStub, api: pb.WorkspacesServiceStub
) -> None:
    wsid = await create(api)
    await add(
        ctl,
        target=spb.FaultTarget(workspace_id=wsid),
        fail_initializing=spb.FailInitializing(reason="git clone failed"),
    )
    iid = await active_instance_id(api, wsid)
    sim.run_until_idle("10m")
    assert [(p, f) for p, f, _, _ in await phases_of(api, iid)] == [
        (Phase.STOPPED, "git clone failed")
    ]
    path = [c.status.phase for c in _changes(sim, iid)]
    assert path[-4:] == [Phase.INITIALIZING, Phase.INITIALIZING, Phase.STOPPING, Phase.STOPPED]
    assert sim.instance(iid).status.stopped_by_request is None


async def test_interrupt_and_recover_or_time_out(
    sim: Simulator, ctl: spb.SimulatorServiceStub, api: pb.WorkspacesServiceStub
) -> None:
    recovering = await active_instance_id(api, await create(api))
    await add(
        ctl,
        target=spb.FaultTarget(instance_id=recovering),
        interrupt=spb.Interrupt(after=10 * S, duration=60 * S),
    )
    stuck_ws = await create(api, "https://github.com/org/stuck")
    await add(ctl, target=spb.FaultTarget(workspace_id=stuck_ws), interrupt=spb.Interrupt())
    stuck = await active_instance_id(api, stuck_ws)
    sim.advance("87s")  # both RUNNING now
    sim.advance("10s")
    assert sim.phase_of(recovering) is Phase.INTERRUPTED
    sim.advance("60s")
    assert sim.phase_of(recovering) is Phase.RUNNING
    assert sim.phase_of(stuck) is Phase.STOPPED or sim.phase_of(stuck) is Phase.INTERRUPTED
    sim.advance("5m")
    status = sim.instance(stuck).status
    assert status.phase is Phase.STOPPED
    assert status.timeout == (
        "workspace timed out after workspace interruption (00h05m) took longer than 00h05m"
    )


async def test_stall_until_cleared_or_timeout(
    sim: Simulator, ctl: spb.SimulatorServiceStub, api: pb.WorkspacesServiceStub
) -> None:
    fault = await add(ctl, stall_phase=spb.StallPhase(phase=Phase.CREATING), count=2)
    cleared_one = await active_instance_id(api, await create(api, "https://github.com/org/a"))
    timed_out = await active_instance_id(api, await create(api, "https://github.com/org/b"))
    sim.advance("10m")
    assert sim.phase_of(cleared_one) is Phase.CREATING
    assert (await ctl.clear_faults(spb.ClearFaultsRequest(ids=[fault.id]))).cleared == 1
    sim.advance("10s")
    assert sim.phase_of(cleared_one) is Phase.INITIALIZING
    # The other was bound too and is freed as well: both go on after the clear.
    assert sim.phase_of(timed_out) is Phase.INITIALIZING
    await add(ctl, stall_phase=spb.StallPhase(phase=Phase.PENDING))
    third = await active_instance_id(api, await create(api, "https://github.com/org/c"))
    sim.advance("2h")
    status = sim.instance(third).status
    assert status.phase is Phase.STOPPED
    assert status.timeout == (
        "workspace timed out after initialization (00h30m) took longer than 00h30m"
    )


async def test_bad_fault_requests(ctl: spb.SimulatorServiceStub) -> None:
    await expect(
        Status.INVALID_ARGUMENT,
        ctl.add_fault(spb.AddFaultRequest(spec=spb.FaultSpec())),
        "unknown fault kind: set one of fail_image_build, fail_creating, fail_initializing, "
        "interrupt, stall_phase, rpc_error, rpc_latency, connection_drop, stream_end, "
        "stream_duplicate",
    )
    await expect(Status.INVALID_ARGUMENT, ctl.add_fault(spb.AddFaultRequest()), "spec is required")
    await expect(
        Status.NOT_FOUND,
        add(
            ctl,
            target=spb.FaultTarget(workspace_id="gitpodio-gitpod-aaaaaaaaaaa"),
            fail_creating=spb.FailCreating(),
        ),
        "workspace 'gitpodio-gitpod-aaaaaaaaaaa' does not exist",
    )
    await expect(
        Status.INVALID_ARGUMENT,
        add(ctl, target=spb.FaultTarget(context_pattern="[a-"), fail_creating=spb.FailCreating()),
    )
    await expect(
        Status.INVALID_ARGUMENT,
        add(ctl, interrupt=spb.Interrupt(after=-S)),
        "after must not be negative, got -1 day, 23:59:59",
    )
    await expect(
        Status.INVALID_ARGUMENT,
        add(ctl, rpc_error=spb.RpcError(method="Nope", code=14)),
    )
    await expect(
        Status.INVALID_ARGUMENT,
        add(ctl, rpc_error=spb.RpcError(method="GetWorkspace", code=0)),
        "a fault's status code cannot be OK (0)",
    )
    await expect(
        Status.INVALID_ARGUMENT,
        add(
            ctl,
            target=spb.FaultTarget(next_start=True),
            rpc_error=spb.RpcError(method="GetWorkspace", code=14),
        ),
        "a rpc-error fault cannot target next-start; use one of: any, user",
    )
    await expect(
        Status.NOT_FOUND,
        ctl.clear_faults(spb.ClearFaultsRequest(ids=["fault-99"])),
        "no such fault: fault-99",
    )


# ---------------------------------------------------------------------- RPC and stream faults


async def test_rpc_error_for_the_next_n_calls(
    ctl: spb.SimulatorServiceStub, api: pb.WorkspacesServiceStub
) -> None:
    await add(
        ctl,
        count=2,
        rpc_error=spb.RpcError(method="ListWorkspaces", code=14, message="try again"),
    )
    for _ in range(2):
        await expect(
            Status.UNAVAILABLE, api.list_workspaces(pb.ListWorkspacesRequest()), "try again"
        )
    assert (await api.list_workspaces(pb.ListWorkspacesRequest())).result == []


async def _outcomes(seed: int) -> list[str]:
    sim = Simulator(seed=seed, users={"alice": ALICE}, admin_token=ADMIN)
    async with sim.channel() as channel:
        ctl = spb.SimulatorServiceStub(channel, metadata={"authorization": f"Bearer {ADMIN}"})
        api = stub_for(channel, ALICE)
        await add(ctl, rpc_error=spb.RpcError(method="GetWorkspace", code=13, probability=0.5))
        wsid = await create(api)
        out = []
        for _ in range(40):
            try:
                await api.get_workspace(pb.GetWorkspaceRequest(workspace_id=wsid))
                out.append("ok")
            except GRPCError as exc:
                assert exc.status is Status.INTERNAL and exc.message == "injected fault: INTERNAL"
                out.append("err")
        return out


async def test_probabilistic_faults_follow_the_seed() -> None:
    first, again, other = await _outcomes(11), await _outcomes(11), await _outcomes(12)
    assert first == again
    assert first != other
    assert 5 < first.count("err") < 35


async def test_simulated_latency_waits_for_simulated_time(
    sim: Simulator, ctl: spb.SimulatorServiceStub, api: pb.WorkspacesServiceStub
) -> None:
    await add(
        ctl, rpc_latency=spb.RpcLatency(method="ListWorkspaces", latency=30 * S, simulated=True)
    )
    call = asyncio.ensure_future(api.list_workspaces(pb.ListWorkspacesRequest()))
    await settle(lambda: sim.activity.waiting == 1)
    sim.advance("29s")
    for _ in range(50):
        await asyncio.sleep(0)
    assert not call.done()
    sim.advance("1s")
    assert (await call).result == []


async def test_stream_end_and_duplicate(
    sim: Simulator, ctl: spb.SimulatorServiceStub, api: pb.WorkspacesServiceStub
) -> None:
    iid = await active_instance_id(api, await create(api))
    await add(
        ctl,
        count=1,
        target=spb.FaultTarget(instance_id=iid),
        stream_end=spb.StreamEnd(after_messages=2, code=14, message="connection reset"),
    )
    request = pb.ListenToWorkspaceInstanceRequest(instance_id=iid)
    received: list[Any] = []

    async def follow() -> None:
        async for message in api.listen_to_workspace_instance(request):
            received.append(message)

    task = asyncio.ensure_future(follow())
    await settle(lambda: sim.activity.waiting == 1)
    sim.run_until_idle("70s")
    with pytest.raises(GRPCError) as info:
        await task
    assert (info.value.status, info.value.message) == (Status.UNAVAILABLE, "connection reset")
    assert [Phase(m.instance_status.phase) for m in received] == [Phase.IMAGEBUILD, Phase.PENDING]

    await add(ctl, count=1, stream_duplicate=spb.StreamDuplicate())
    twice = asyncio.ensure_future(collect(api.listen_to_workspace_instance(request)))
    await settle(lambda: sim.activity.waiting == 1)
    await drive(
        sim,
        collect(
            api.stop_workspace(pb.StopWorkspaceRequest(workspace_id=sim.instance(iid).workspace_id))
        ),
    )
    await drive(sim, twice, new_calls=0)
    phases = [Phase(m.instance_status.phase) for m in twice.result()]
    # The current status, then the stop's first change (stopped_by_request) sent twice.
    assert phases == [Phase.CREATING] * 3 + [Phase.STOPPING, Phase.STOPPED]
    versions = [m.instance_status.status_version for m in twice.result()]
    assert versions[1] == versions[2]


# ---------------------------------------------------------------------- journal


async def test_journal_records_rpcs_and_transitions_in_order(
    sim: Simulator, ctl: spb.SimulatorServiceStub, api: pb.WorkspacesServiceStub
) -> None:
    wsid = await create(api)
    await expect(
        Status.NOT_FOUND,
        api.get_workspace(pb.GetWorkspaceRequest(workspace_id="gitpodio-gitpod-aaaaaaaaaaa")),
    )
    sim.advance("61s")
    page = await ctl.read_journal(spb.ReadJournalRequest())
    kinds = [
        (e.rpc.method.rsplit("/", 1)[-1], e.rpc.code)
        if e.rpc
        else (Phase(e.transition.to_phase).name, e.transition.cause)  # type: ignore[union-attr]
        for e in page.entries
    ]
    assert kinds == [
        ("IMAGEBUILD", "start"),
        ("CreateAndStartWorkspace", "OK"),
        ("GetWorkspace", "NOT_FOUND"),
        ("PENDING", "step"),
    ]
    assert [e.seq for e in page.entries] == [1, 2, 3, 4] and page.next_seq == 5
    first = page.entries[1].rpc
    assert first is not None and first.caller == "alice" and REPO in first.request
    assert page.entries[0].transition is not None
    assert page.entries[0].transition.workspace_id == wsid
    ranged = await ctl.read_journal(spb.ReadJournalRequest(from_seq=3, limit=1))
    assert [e.seq for e in ranged.entries] == [3] and ranged.next_seq == 4
    lines = [json.loads(line) for line in sim.journal.to_jsonl().splitlines()]
    assert [line["seq"] for line in lines] == [1, 2, 3, 4]  # reads are not journaled
    assert page.last_seq == ranged.last_seq == 4
    assert lines[3] == {
        "seq": 4,
        "at": "2022-06-01T00:01:00Z",
        "type": "transition",
        "instance_id": page.entries[3].transition.instance_id,  # type: ignore[union-attr]
        "workspace_id": wsid,
        "owner_id": "alice",
        "from": "IMAGEBUILD",
        "to": "PENDING",
        "status_version": page.entries[3].transition.status_version,  # type: ignore[union-attr]
        "cause": "step",
    }


async def test_follow_journal_streams_new_entries(
    sim: Simulator, ctl: spb.SimulatorServiceStub, api: pb.WorkspacesServiceStub
) -> None:
    seen: list[spb.JournalEntry] = []

    async def follow() -> None:
        async for entry in ctl.follow_journal(spb.FollowJournalRequest(from_seq=1)):
            seen.append(entry)
            if len(seen) == 3:
                return

    task = asyncio.ensure_future(follow())
    await create(api)
    sim.advance("61s")
    await asyncio.wait_for(task, timeout=10)
    assert [e.seq for e in seen] == [1, 2, 3]
    assert seen[1].rpc is not None and seen[1].rpc.method.endswith("CreateAndStartWorkspace")


def test_journal_is_bounded() -> None:
    sim = Simulator(seed=1, users={"alice": ALICE}, journal_size=5)
    user = sim.engine.users["alice"]
    for i in range(4):
        sim.engine.create_workspace(user, context_url=f"https://github.com/o/r{i}")
    sim.run_until_idle("1h")
    assert len(sim.journal) == 5
    assert sim.journal.first_seq == sim.journal.next_seq - 5
    assert [e.seq for e in sim.journal.read(0, 100)] == list(
        range(sim.journal.first_seq, sim.journal.next_seq)
    )


# ---------------------------------------------------------------------- state


async def test_reset_keeps_users_unless_dropped(
    sim: Simulator, ctl: spb.SimulatorServiceStub, api: pb.WorkspacesServiceStub
) -> None:
    wsid = await create(api)
    sim.advance("10m")
    iid = sim.workspace(wsid).latest_instance_id or ""
    listener = asyncio.ensure_future(
        collect(
            api.listen_to_workspace_instance(pb.ListenToWorkspaceInstanceRequest(instance_id=iid))
        )
    )
    await settle(lambda: sim.activity.waiting == 1)
    answer = await ctl.reset(spb.ResetRequest())
    assert answer.seed == 5
    with pytest.raises(GRPCError) as info:
        await listener
    assert (info.value.status, info.value.message) == (Status.ABORTED, "the simulator was reset")
    assert (await api.list_workspaces(pb.ListWorkspacesRequest())).result == []
    assert sim.now() == DEFAULT_START
    # Same seed, same calls: the same ids as the first time.
    assert await create(api) == wsid
    await ctl.reset(spb.ResetRequest(seed=6, drop_users=True))
    await expect(Status.UNAUTHENTICATED, api.list_workspaces(pb.ListWorkspacesRequest()))
    added = await ctl.add_user(spb.AddUserRequest(user_id="carol"))
    assert added.token.startswith("gitpod_sim_")
    carol = stub_for(api.channel, added.token)
    assert await create(carol) != wsid
    await expect(
        Status.ALREADY_EXISTS,
        ctl.add_user(spb.AddUserRequest(user_id="carol", token="other")),
        "user 'carol' already exists",
    )


async def test_export_import_gives_the_same_answers(
    sim: Simulator, ctl: spb.SimulatorServiceStub, api: pb.WorkspacesServiceStub
) -> None:
    await create(api)
    fault = await add(
        ctl, count=3, rpc_error=spb.RpcError(method="GetWorkspace", code=14, probability=0.5)
    )
    await ctl.set_plan(
        spb.SetPlanRequest(
            scope=spb.PlanScope(user_id="alice"), plan=spb.LifecyclePlan(cluster="ab1")
        )
    )
    sim.advance("75s")  # mid-lifecycle: pending events, a build done, the image cached
    state = (await ctl.export_state(spb.ExportStateRequest())).state_json

    async def script(sim: Simulator, api: pb.WorkspacesServiceStub) -> list[bytes]:
        out = []
        wsid = await create(api, "https://github.com/org/next")
        out.append(wsid.encode())
        for _ in range(6):
            try:
                out.append(
                    bytes(await api.get_workspace(pb.GetWorkspaceRequest(workspace_id=wsid)))
                )
            except GRPCError as exc:
                out.append(exc.status.name.encode())
        out += [repr(c).encode() for c in sim.run_until_idle("2h")]
        out.append(bytes(await api.list_workspaces(pb.ListWorkspacesRequest())))
        out.append(bytes(await api.get_owner_token(pb.GetOwnerTokenRequest(workspace_id=wsid))))
        return out

    original = await script(sim, api)
    other = Simulator(seed=999, admin_token="x")
    async with other.channel() as channel:
        imported = await spb.SimulatorServiceStub(
            channel, metadata={"authorization": "Bearer x"}
        ).import_state(spb.ImportStateRequest(state_json=state))
        assert (imported.users, imported.workspaces, imported.instances) == (2, 1, 1)
        replayed = await script(other, stub_for(channel, ALICE))
    assert replayed == original
    assert other.seed == 5 and [f.id for f in other.faults()] == [fault.id]


async def test_bad_state_imports(ctl: spb.SimulatorServiceStub) -> None:
    await expect(
        Status.INVALID_ARGUMENT,
        ctl.import_state(spb.ImportStateRequest(state_json="{")),
    )
    await expect(
        Status.INVALID_ARGUMENT,
        ctl.import_state(spb.ImportStateRequest(state_json='{"format": "other"}')),
        "not a gitpod-sim-state document",
    )
    await expect(
        Status.INVALID_ARGUMENT,
        ctl.import_state(
            spb.ImportStateRequest(state_json='{"format": "gitpod-sim-state", "version": 1}')
        ),
        "$: missing 'seed', 'now', 'plan', 'scoped_plans', 'rngs', 'counters', 'users',"
        " 'prebuilds', 'workspaces', 'instances', 'plans', 'image_cache', 'idempotency',"
        " 'faults'",
    )


def test_save_and_load_state_files(tmp_path: Any) -> None:
    sim = Simulator(seed=3, users={"alice": ALICE})
    ws = sim.engine.create_workspace(sim.engine.users["alice"], context_url=REPO)
    sim.advance("30s")
    path = tmp_path / "state.json"
    sim.save_state(path)
    loaded = Simulator(seed=0)
    loaded.load_state(path)
    assert loaded.now() == DEFAULT_START + 30 * SECOND
    assert loaded.workspace(ws.id).owner_id == "alice"
    assert [c.status.phase for c in loaded.run_until_idle("1m")] == [
        c.status.phase for c in sim.run_until_idle("1m")
    ]


async def test_fail_instance_fails_an_active_instance_now(
    sim: Simulator, ctl: spb.SimulatorServiceStub, api: pb.WorkspacesServiceStub
) -> None:
    wsid = await create(api)
    sim.advance("90s")
    inst = await active_instance_id(api, wsid)
    reply = await ctl.fail_instance(spb.FailInstanceRequest(instance_id=inst, reason="oom"))
    assert reply.instance is not None and reply.instance.status is not None
    assert Phase(reply.instance.status.phase) is Phase.STOPPING
    assert reply.instance.status.conditions is not None
    assert reply.instance.status.conditions.failed == "oom"
    await expect(
        Status.FAILED_PRECONDITION,
        ctl.fail_instance(spb.FailInstanceRequest(instance_id=inst, reason="again")),
        f"instance {inst} is already STOPPING",
    )
    await expect(
        Status.INVALID_ARGUMENT,
        ctl.fail_instance(spb.FailInstanceRequest(instance_id=inst)),
        "reason is required",
    )
