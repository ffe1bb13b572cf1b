"""Nothing outlives a reset: a call waiting on a latency fault when Reset or ImportState replaces
the world ends with ABORTED and never acts on the world that replaced its own (before: the wait
ended with the reset and the call ran on the new world, e.g. creating a workspace for a user the
reset had dropped)."""

from __future__ import annotations

import asyncio

import pytest
from grpc_helpers import ALICE, REPO, settle, stub_for
from grpclib.const import Status
from grpclib.exceptions import GRPCError

from simulator import Simulator
from simulator._proto.gitpod import v1 as pb
from simulator._proto.gitpod.simulator import v1 as spb
from simulator.core.faults import RpcLatency, Target, TargetKind
from simulator.core.simtime import SECOND

ADMIN = "adm-reset"
CREATE = "/gitpod.v1.WorkspacesService/CreateAndStartWorkspace"


def _replace(sim: Simulator, how: str) -> None:
    if how == "reset":
        sim.reset(drop_users=True)
    elif how == "reset-keep-users":
        sim.reset()
    else:
        sim.import_state(sim.export_state())


@pytest.mark.parametrize("simulated", [True, False], ids=["simulated", "real-time"])
@pytest.mark.parametrize("how", ["reset", "reset-keep-users", "import"])
async def test_a_call_waiting_on_latency_is_aborted_by_a_reset(how: str, simulated: bool) -> None:
    sim = Simulator(seed=4, users={"alice": ALICE}, admin_token=ADMIN)
    delay = (3600 if simulated else 0.3) * SECOND
    sim.add_fault(
        RpcLatency(CREATE, round(delay), simulated=simulated), Target(TargetKind.ANY), count=1
    )
    async with sim.channel() as channel:
        stub = stub_for(channel, ALICE)
        waiting = asyncio.ensure_future(
            stub.create_and_start_workspace(pb.CreateAndStartWorkspaceRequest(context_url=REPO))
        )
        await settle(
            lambda: sim.activity.calls == 1 and (sim.activity.waiting == 1 or not simulated)
        )
        await asyncio.sleep(0.01 if not simulated else 0)  # into the real-time sleep
        _replace(sim, how)
        with pytest.raises(GRPCError) as info:
            await asyncio.wait_for(waiting, 10)
        assert info.value.status is Status.ABORTED
        assert "while the call waited on a latency fault" in (info.value.message or "")
        assert "did not run" in (info.value.message or "")
        assert sim.engine.workspaces == {}  # it did not act on the new world
        entry = [e for e in sim.journal if getattr(e, "method", "") == CREATE][-1]
        assert entry.code == "ABORTED"  # type: ignore[union-attr]
        if how != "reset":  # the server goes on answering
            created = await stub.create_and_start_workspace(
                pb.CreateAndStartWorkspaceRequest(context_url=REPO)
            )
            assert created.workspace_id


async def test_reset_over_the_control_plane_aborts_a_waiting_call() -> None:
    sim = Simulator(seed=4, users={"alice": ALICE}, admin_token=ADMIN)
    sim.add_fault(RpcLatency(CREATE, 3600 * SECOND, simulated=True), Target(TargetKind.ANY))
    async with sim.channel() as channel:
        waiting = asyncio.ensure_future(
            stub_for(channel, ALICE).create_and_start_workspace(
                pb.CreateAndStartWorkspaceRequest(context_url=REPO)
            )
        )
        await settle(lambda: sim.activity.waiting == 1)
        control = spb.SimulatorServiceStub(channel, metadata={"authorization": f"Bearer {ADMIN}"})
        await control.reset(spb.ResetRequest(drop_users=True))
        with pytest.raises(GRPCError) as info:
            await asyncio.wait_for(waiting, 10)
        assert info.value.status is Status.ABORTED
        assert sim.engine.workspaces == {} and sim.engine.users == {}
