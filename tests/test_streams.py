"""Listen streams: order, fan-out, encode-once, build logs, disconnects and shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import itertools

import pytest
from grpc_helpers import ALICE, REPO, active_instance_id, collect, create, drive, settle, stub_for
from grpclib.client import Channel
from grpclib.const import Status
from grpclib.exceptions import GRPCError

import simulator.server.broadcast as broadcast
from simulator import Phase, Simulator
from simulator._proto.gitpod import v1 as pb
from simulator.core.transitions import is_legal

HAPPY = [
    Phase.IMAGEBUILD,
    Phase.PENDING,
    Phase.CREATING,
    Phase.INITIALIZING,
    Phase.RUNNING,
    Phase.RUNNING,  # stopped_by_request is set in RUNNING first
    Phase.STOPPING,
    Phase.STOPPED,
]


def listen(stub: pb.WorkspacesServiceStub, iid: str) -> object:
    return stub.listen_to_workspace_instance(pb.ListenToWorkspaceInstanceRequest(instance_id=iid))


async def test_several_listeners_get_every_update_in_order(
    sim: Simulator, alice: pb.WorkspacesServiceStub
) -> None:
    wsid = await create(alice)
    iid = await active_instance_id(alice, wsid)
    listeners = [asyncio.ensure_future(collect(listen(alice, iid))) for _ in range(5)]
    await settle(lambda: sim.activity.waiting == 5)

    sim.run_until_idle("2m")
    assert sim.phase_of(iid) is Phase.RUNNING
    await drive(sim, collect(alice.stop_workspace(pb.StopWorkspaceRequest(workspace_id=wsid))))
    await drive(sim, asyncio.gather(*listeners), new_calls=0)
    streams = [task.result() for task in listeners]
    for messages in streams:
        statuses = [m.instance_status for m in messages]
        assert [s.phase for s in statuses] == HAPPY
        versions = [s.status_version for s in statuses]
        assert versions == sorted(set(versions)), "status_version must strictly increase"
        for before, after in itertools.pairwise(statuses):
            assert is_legal(before.phase, after.phase)
        assert statuses[-2].conditions.stopped_by_request is True
    encoded = [[bytes(m) for m in messages] for messages in streams]
    assert all(other == encoded[0] for other in encoded)
    assert sim.hub.subscription_count() == 0


async def test_each_status_change_is_encoded_once(
    sim: Simulator, alice: pb.WorkspacesServiceStub, monkeypatch: pytest.MonkeyPatch
) -> None:
    wsid = await create(alice)
    iid = await active_instance_id(alice, wsid)
    calls: list[int] = []
    real = broadcast.listen_payload

    def counting(status: object) -> bytes:
        calls.append(1)
        return real(status)  # type: ignore[arg-type]

    monkeypatch.setattr(broadcast, "listen_payload", counting)
    listeners = [asyncio.ensure_future(collect(listen(alice, iid))) for _ in range(10)]
    await settle(lambda: sim.activity.waiting == 10)
    assert len(calls) == 1  # the current status: encoded once, shared by all ten
    changes = sim.run_until_idle("2m")  # to RUNNING
    assert len(changes) == 4
    assert len(calls) == 1 + 4
    await drive(sim, collect(alice.stop_workspace(pb.StopWorkspaceRequest(workspace_id=wsid))))
    await drive(sim, asyncio.gather(*listeners), new_calls=0)
    assert len(calls) == 1 + 4 + 3


async def test_listener_that_disconnects_leaves_nothing_behind(
    sim: Simulator, alice: pb.WorkspacesServiceStub
) -> None:
    wsid = await create(alice)
    iid = await active_instance_id(alice, wsid)
    baseline = len(asyncio.all_tasks())
    received: list[object] = []

    async def follow_then_leave() -> None:
        async with contextlib.aclosing(listen(alice, iid)) as stream:  # type: ignore[type-var]
            async for message in stream:
                received.append(message)
                if len(received) == 2:
                    break  # leaves mid-stream

    task = asyncio.ensure_future(follow_then_leave())
    await settle(lambda: sim.activity.waiting == 1)
    assert sim.hub.subscription_count() == 1
    sim.advance_to_next()  # build log line only
    sim.run_until_idle("61s")  # IMAGEBUILD -> PENDING: the second message
    await task
    await settle(lambda: sim.hub.subscription_count() == 0 and len(asyncio.all_tasks()) <= baseline)
    assert sim.activity.waiting == 0 and sim.activity.busy == 0
    # The server still serves, and later changes go nowhere.
    sim.run_until_idle("5m")
    assert (await alice.get_workspace(pb.GetWorkspaceRequest(workspace_id=wsid))).result


async def test_cancelled_client_task_leaves_nothing_behind(
    sim: Simulator, alice: pb.WorkspacesServiceStub
) -> None:
    wsid = await create(alice)
    iid = await active_instance_id(alice, wsid)
    baseline = len(asyncio.all_tasks())
    tasks = [asyncio.ensure_future(collect(listen(alice, iid))) for _ in range(20)]
    await settle(lambda: sim.activity.waiting == 20)
    for task in tasks:
        task.cancel()
    await settle(lambda: all(t.done() for t in tasks))
    await settle(lambda: sim.hub.subscription_count() == 0 and len(asyncio.all_tasks()) <= baseline)
    assert sim.activity.waiting == 0 and sim.activity.busy == 0


async def test_build_logs_follow_the_build_and_replay_after(
    sim: Simulator, alice: pb.WorkspacesServiceStub
) -> None:
    wsid = await create(alice)
    iid = await active_instance_id(alice, wsid)
    request = pb.ListenToImageBuildLogsRequest(instance_id=iid)
    early = asyncio.ensure_future(collect(alice.listen_to_image_build_logs(request)))
    await settle(lambda: sim.activity.waiting == 1)
    sim.advance("30s")  # half the build
    written = list(sim.instance(iid).build.lines)  # type: ignore[union-attr]
    assert 1 < len(written) < 8
    late = asyncio.ensure_future(collect(alice.listen_to_image_build_logs(request)))
    await settle(lambda: sim.activity.waiting == 2)
    sim.advance("31s")  # the build succeeds: PENDING
    early_lines = [m.line for m in await early]
    late_lines = [m.line for m in await late]
    full = sim.instance(iid).build.lines  # type: ignore[union-attr]
    assert len(full) == 8
    assert early_lines == late_lines == full
    assert full[0].startswith("Building workspace image for github.com/gitpod-io/gitpod")
    assert full[-1].startswith("Successfully built ")
    replay = [m.line for m in await collect(alice.listen_to_image_build_logs(request))]
    assert replay == full


async def test_build_logs_without_a_build_end_at_once(
    sim: Simulator, alice: pb.WorkspacesServiceStub
) -> None:
    wsid = await create(alice)
    sim.run_until_idle("5m")
    await drive(sim, collect(alice.stop_workspace(pb.StopWorkspaceRequest(workspace_id=wsid))))
    second = await alice.start_workspace(pb.StartWorkspaceRequest(workspace_id=wsid))
    assert sim.phase_of(second.instance_id) is Phase.PENDING  # cached image: no build
    lines = await collect(
        alice.listen_to_image_build_logs(
            pb.ListenToImageBuildLogsRequest(instance_id=second.instance_id)
        )
    )
    assert lines == []


async def test_failed_build_replays_its_lines_and_tail(
    sim: Simulator, alice: pb.WorkspacesServiceStub
) -> None:
    wsid = await create(alice)
    iid = await active_instance_id(alice, wsid)
    sim.advance("20s")
    sim.fail(iid, "exit code 100", log_tail=["E: Unable to locate package nosuchpkg"])
    inst = sim.instance(iid)
    assert inst.phase is Phase.STOPPED
    lines = [
        m.line
        for m in await collect(
            alice.listen_to_image_build_logs(pb.ListenToImageBuildLogsRequest(instance_id=iid))
        )
    ]
    assert lines[-1] == "E: Unable to locate package nosuchpkg"
    assert lines == inst.build.lines  # type: ignore[union-attr]
    statuses = [m.instance_status for m in await collect(listen(alice, iid))]
    assert [s.phase for s in statuses] == [Phase.STOPPED]
    assert statuses[0].conditions.failed == "exit code 100"
    assert statuses[0].message == "Workspace cannot be started: exit code 100"


async def test_shutdown_ends_open_streams(sim: Simulator) -> None:
    async with sim.channel() as channel:
        stub = stub_for(channel, ALICE)
        wsid = await create(stub)
        iid = await active_instance_id(stub, wsid)
        task = asyncio.ensure_future(collect(listen(stub, iid)))
        await settle(lambda: sim.activity.waiting == 1)
        async with sim.running():  # nested use shares the driver and does not end streams
            pass
        assert not task.done()
    with pytest.raises(GRPCError) as info:
        await task
    assert info.value.status is Status.UNAVAILABLE
    assert info.value.message == "gitpod-sim is shutting down"
    assert sim.hub.subscription_count() == 0


async def test_closing_a_channel_lets_a_call_another_task_just_made_finish(
    sim: Simulator,
) -> None:
    """Nothing is in flight on the connection yet, but another task is about to call: the
    channel still gives it the turns of the loop it needs before closing."""
    async with sim.channel() as channel:
        stub = stub_for(channel, ALICE)
        wsid = await create(stub)
        task = asyncio.ensure_future(stub.get_workspace(pb.GetWorkspaceRequest(workspace_id=wsid)))
    reply = await task
    assert reply.result is not None and reply.result.workspace_id == wsid


async def test_closing_a_channel_with_nothing_in_flight_leaves_nothing_running(
    sim: Simulator,
) -> None:
    async with sim.channel() as channel:
        stub = stub_for(channel, ALICE)
        wsid = await create(stub)
        await stub.get_workspace(pb.GetWorkspaceRequest(workspace_id=wsid))
    assert sim.activity.busy == 0 and sim.activity.waiting == 0
    assert [t for t in asyncio.all_tasks() if t is not asyncio.current_task()] == []


async def test_stream_of_a_shared_workspace_for_another_user(
    sim: Simulator, channel: Channel, alice: pb.WorkspacesServiceStub
) -> None:
    wsid = await create(alice, REPO)
    iid = await active_instance_id(alice, wsid)
    sim.share(wsid)
    bob = stub_for(channel, "tok-bob")
    first = await collect_first(listen(bob, iid))
    assert first.instance_status.admission == pb.AdmissionLevel.EVERYONE


async def collect_first(stream: object) -> pb.ListenToWorkspaceInstanceResponse:
    async with contextlib.aclosing(stream) as it:  # type: ignore[type-var]
        async for message in it:
            return message  # type: ignore[no-any-return]
    raise AssertionError("stream ended without a message")
