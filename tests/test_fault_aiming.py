"""Issue 19's faults through the API: answers lost after the call ran, abandoned calls in the
journal, faults aimed at the Nth call or one user, stream faults on every server stream, and
faults that can never apply refused. Codes, messages and journal entries are exact."""

from __future__ import annotations

import asyncio
import datetime as dt
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
from simulator.core.faults import RpcError, Target, TargetKind
from simulator.server.journal import RpcEntry

ADMIN = "admin-secret"
BOB = "tok-bob"
S = dt.timedelta(seconds=1)
CREATE = "/gitpod.v1.WorkspacesService/CreateAndStartWorkspace"


@pytest.fixture
def sim() -> Simulator:
    return Simulator(seed=7, users={"alice": ALICE, "bob": BOB}, admin_token=ADMIN)


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


async def add(ctl: spb.SimulatorServiceStub, **spec: Any) -> spb.Fault:
    response = await ctl.add_fault(spb.AddFaultRequest(spec=spb.FaultSpec(**spec)))
    assert response.fault is not None
    return response.fault


async def refused(ctl: spb.SimulatorServiceStub, message: str, **spec: Any) -> None:
    with pytest.raises(GRPCError) as info:
        await add(ctl, **spec)
    assert (info.value.status, info.value.message) == (Status.INVALID_ARGUMENT, message)


def rpc_entries(sim: Simulator, method: str) -> list[RpcEntry]:
    return [
        e
        for e in sim.journal.read(0, 10_000)
        if isinstance(e, RpcEntry) and e.method.endswith("/" + method)
    ]


# ---------------------------------------------------------------------- item 1: answers lost


async def test_after_effect_runs_the_call_keeps_its_effect_and_loses_the_answer(
    sim: Simulator, ctl: spb.SimulatorServiceStub, api: pb.WorkspacesServiceStub
) -> None:
    await add(
        ctl,
        count=1,
        rpc_error=spb.RpcError(
            method="CreateAndStartWorkspace", code=14, message="reset", after_effect=True
        ),
    )
    request = pb.CreateAndStartWorkspaceRequest(context_url=REPO, idempotency_token="tok-1")
    with pytest.raises(GRPCError) as info:
        await api.create_and_start_workspace(request)
    assert (info.value.status, info.value.message) == (Status.UNAVAILABLE, "reset")
    listed = (await api.list_workspaces(pb.ListWorkspacesRequest())).result
    assert len(listed) == 1  # the call ran: the workspace exists
    assert listed[0].result is not None
    retried = await api.create_and_start_workspace(request)
    assert retried.workspace_id == listed[0].result.workspace_id  # the token proves it
    assert len((await api.list_workspaces(pb.ListWorkspacesRequest())).result) == 1
    first, second = rpc_entries(sim, "CreateAndStartWorkspace")
    assert (first.code, first.message) == ("UNAVAILABLE", "reset (after the call ran)")
    assert (second.code, second.message) == ("OK", "")


async def test_after_effect_on_a_stream_stops_the_workspace_then_answers_the_status(
    sim: Simulator, ctl: spb.SimulatorServiceStub, api: pb.WorkspacesServiceStub
) -> None:
    wsid = await create(api)
    iid = await active_instance_id(api, wsid)
    fault = sim.add_fault(  # the Python API takes the same effect
        RpcError(CREATE.replace("CreateAndStartWorkspace", "StopWorkspace"), "UNAVAILABLE",
                 "lost", after_effect=True),
        Target.of(TargetKind.ANY),
        count=1,
    )  # fmt: skip
    with pytest.raises(GRPCError) as info:
        await collect(api.stop_workspace(pb.StopWorkspaceRequest(workspace_id=wsid)))
    assert (info.value.status, info.value.message) == (Status.UNAVAILABLE, "lost")
    assert sim.instance(iid).status.phase is Phase.STOPPING
    assert fault.times_applied == 1
    entry = rpc_entries(sim, "StopWorkspace")[-1]
    assert (entry.code, entry.message) == ("UNAVAILABLE", "lost (after the call ran)")


async def test_a_call_the_client_abandons_is_journaled_cancelled_and_whether_it_ran(
    sim: Simulator, ctl: spb.SimulatorServiceStub, api: pb.WorkspacesServiceStub
) -> None:
    wsid = await create(api)
    await add(
        ctl,
        count=1,
        rpc_latency=spb.RpcLatency(method="GetWorkspace", latency=60 * S, simulated=True),
    )
    call = asyncio.ensure_future(api.get_workspace(pb.GetWorkspaceRequest(workspace_id=wsid)))
    await settle(lambda: sim.activity.waiting == 1)
    call.cancel()
    await settle(lambda: len(rpc_entries(sim, "GetWorkspace")) == 1)
    entry = rpc_entries(sim, "GetWorkspace")[0]
    assert (entry.code, entry.message) == (
        "CANCELLED",
        "cancelled by the client before the call ran",
    )

    stop = api.stop_workspace(pb.StopWorkspaceRequest(workspace_id=wsid))
    first = await stop.__anext__()  # STOPPING: the stop ran
    assert first is not None
    await stop.aclose()
    await settle(lambda: len(rpc_entries(sim, "StopWorkspace")) == 1)
    entry = rpc_entries(sim, "StopWorkspace")[0]
    assert (entry.code, entry.message) == (
        "CANCELLED",
        "cancelled by the client after the call ran",
    )


# ---------------------------------------------------------------------- item 2: aiming


async def test_skip_lets_the_first_calls_pass_and_fails_page_two(
    ctl: spb.SimulatorServiceStub, api: pb.WorkspacesServiceStub
) -> None:
    for i in range(3):
        await create(api, f"https://github.com/acme/app{i}")
    await add(
        ctl,
        count=1,
        skip=1,
        rpc_error=spb.RpcError(method="ListWorkspaces", code=14, message="page lost"),
    )
    first = await api.list_workspaces(
        pb.ListWorkspacesRequest(pagination=pb.Pagination(page_size=2))
    )
    assert len(first.result) == 2 and first.next_page_token
    page_two = pb.ListWorkspacesRequest(
        pagination=pb.Pagination(page_size=2, page_token=first.next_page_token)
    )
    with pytest.raises(GRPCError) as info:
        await api.list_workspaces(page_two)
    assert (info.value.status, info.value.message) == (Status.UNAVAILABLE, "page lost")
    assert len((await api.list_workspaces(page_two)).result) == 1  # the retry gets page 2
    listed = (await ctl.list_faults(spb.ListFaultsRequest())).faults
    assert listed[0].spec is not None and listed[0].spec.skip == 1 and listed[0].exhausted


async def test_a_fault_aimed_at_one_user(
    ctl: spb.SimulatorServiceStub, api: pb.WorkspacesServiceStub, channel: Channel
) -> None:
    bob = stub_for(channel, BOB)
    await add(
        ctl,
        count=0,
        target=spb.FaultTarget(user_id="bob"),
        rpc_error=spb.RpcError(method="ListWorkspaces", code=7, message="not you"),
    )
    assert (await api.list_workspaces(pb.ListWorkspacesRequest())).result == []
    with pytest.raises(GRPCError) as info:
        await bob.list_workspaces(pb.ListWorkspacesRequest())
    assert (info.value.status, info.value.message) == (Status.PERMISSION_DENIED, "not you")
    with pytest.raises(GRPCError) as missing:
        await add(ctl, target=spb.FaultTarget(user_id="carol"), fail_creating=spb.FailCreating())
    assert (missing.value.status, missing.value.message) == (
        Status.NOT_FOUND,
        "user 'carol' does not exist",
    )


async def test_a_lifecycle_fault_aimed_at_a_user_hits_only_their_starts(
    sim: Simulator, ctl: spb.SimulatorServiceStub, api: pb.WorkspacesServiceStub, channel: Channel
) -> None:
    await add(ctl, count=0, target=spb.FaultTarget(user_id="bob"), fail_creating=spb.FailCreating())
    bob = stub_for(channel, BOB)
    mine = await active_instance_id(api, await create(api))
    theirs = await active_instance_id(bob, await create(bob))
    sim.run_until_idle("10m")
    assert sim.instance(theirs).status.failed.startswith("cannot pull image")
    assert sim.instance(mine).status.failed == ""


async def test_stream_end_and_duplicate_on_every_server_stream(
    sim: Simulator, ctl: spb.SimulatorServiceStub, api: pb.WorkspacesServiceStub
) -> None:
    wsid = await create(api)  # first start of the repository: it builds its image
    iid = await active_instance_id(api, wsid)
    sim.advance("40s")  # some build log lines exist
    assert len(sim.instance(iid).build.lines) >= 2  # type: ignore[union-attr]
    await add(
        ctl,
        count=1,
        stream_end=spb.StreamEnd(
            after_messages=1, code=14, message="logs cut", method="ListenToImageBuildLogs"
        ),
    )
    logs: list[Any] = []
    with pytest.raises(GRPCError) as info:
        async for line in api.listen_to_image_build_logs(
            pb.ListenToImageBuildLogsRequest(instance_id=iid)
        ):
            logs.append(line)
    assert (info.value.status, info.value.message, len(logs)) == (Status.UNAVAILABLE, "logs cut", 1)

    await add(ctl, count=1, stream_duplicate=spb.StreamDuplicate(method="StopWorkspace"))
    stopped = await drive(
        sim, collect(api.stop_workspace(pb.StopWorkspaceRequest(workspace_id=wsid)))
    )
    assert len(stopped) == 3  # STOPPING, then STOPPED twice

    await add(
        ctl,
        count=1,
        stream_end=spb.StreamEnd(
            after_messages=2, code=10, message="journal cut", method="FollowJournal"
        ),
    )
    entries: list[Any] = []
    with pytest.raises(GRPCError) as ended:
        async for entry in ctl.follow_journal(spb.FollowJournalRequest(from_seq=1)):
            entries.append(entry)
    assert (ended.value.status, ended.value.message, len(entries)) == (
        Status.ABORTED,
        "journal cut",
        2,
    )


async def test_faults_that_can_never_apply_are_refused(
    sim: Simulator, ctl: spb.SimulatorServiceStub
) -> None:
    await refused(
        ctl,
        "GetWorkspace is a unary method, not a server stream: a stream fault can never apply to"
        " it; expected one of ListenToWorkspaceInstance, ListenToImageBuildLogs, StopWorkspace,"
        " FollowJournal (or use an rpc fault)",
        stream_end=spb.StreamEnd(code=14, method="GetWorkspace"),
    )
    await refused(
        ctl,
        "this stream-duplicate fault can never apply: FollowJournal is about no instance and only"
        " the admin calls it; it cannot target user (use any)",
        target=spb.FaultTarget(user_id="alice"),
        stream_duplicate=spb.StreamDuplicate(method="FollowJournal"),
    )
    sim.advance("1h")
    await refused(
        ctl,
        "this rpc-error fault can never apply: its window ends at 2022-06-01T00:30:00Z,"
        " not after now",
        active_until=dt.datetime(2022, 6, 1, 0, 30, tzinfo=dt.UTC),
        rpc_error=spb.RpcError(method="GetWorkspace", code=14),
    )
    assert sim.faults() == []
