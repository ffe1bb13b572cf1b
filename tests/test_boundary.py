"""The one RPC boundary and the narrow host: what every call shares, on every port."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import aiohttp
import pytest
from grpc_helpers import ALICE, active_instance_id, create, stub_for
from grpclib.const import Status
from grpclib.exceptions import GRPCError

from simulator import Simulator
from simulator._proto.gitpod import v1 as pb
from simulator._proto.gitpod.simulator import v1 as spb
from simulator.server.boundary import Call
from simulator.server.journal import RpcEntry

ADMIN = "admin-token"


def rpc_entries(sim: Simulator) -> list[RpcEntry]:
    return [e for e in sim.journal if isinstance(e, RpcEntry)]


def test_the_edge_does_not_import_the_runtime() -> None:
    """Services, boundary and driver depend on the World protocols, not on Simulator."""
    code = (
        "import sys\n"
        "import simulator.server.service, simulator.server.control, simulator.server.driver\n"
        "import simulator.server.boundary, simulator.server.connect_gateway\n"
        "assert 'simulator.server.runtime' not in sys.modules, 'runtime was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


async def test_a_cut_deadline_is_journaled_as_deadline_exceeded() -> None:
    """The server's own deadline (here Connect-Timeout-Ms) ends the stream: the journal says
    DEADLINE_EXCEEDED, what the client is sent. (On the gRPC port the client's own timer usually
    resets the stream first; that is journaled as CANCELLED, and nothing is sent.)"""
    sim = Simulator(seed=1, users={"alice": ALICE})
    async with sim.channel() as channel:
        stub = stub_for(channel, ALICE)
        iid = await active_instance_id(stub, await create(stub))
    listen = "/gitpod.v1.WorkspacesService/ListenToWorkspaceInstance"
    async with (
        sim.serve_http() as gateway,
        aiohttp.ClientSession() as http,
        http.post(
            f"http://127.0.0.1:{gateway.port}{listen}",
            data=b"\x00"
            + len(json.dumps({"instanceId": iid})).to_bytes(4, "big")
            + json.dumps({"instanceId": iid}).encode(),
            headers={
                "Authorization": f"Bearer {ALICE}",
                "Content-Type": "application/connect+json",
                "Connect-Timeout-Ms": "50",
            },
        ) as reply,
    ):
        body = await reply.read()
    assert b'"deadline_exceeded"' in body
    entry = [e for e in rpc_entries(sim) if e.method == listen][-1]
    assert (entry.caller, entry.code) == ("alice", "DEADLINE_EXCEEDED")


async def test_a_handler_bug_is_unknown_on_the_wire_and_in_the_journal() -> None:
    sim = Simulator(seed=1, users={"alice": ALICE})

    def broken(call: Call) -> Any:
        raise RuntimeError("bug")

    sim.service.get_workspace = broken  # type: ignore[method-assign]
    async with sim.channel() as channel:
        with pytest.raises(GRPCError) as err:
            await stub_for(channel, ALICE).get_workspace(pb.GetWorkspaceRequest(workspace_id="x"))
    assert err.value.status is Status.UNKNOWN
    last = rpc_entries(sim)[-1]
    assert (last.method, last.caller, last.code) == (
        "/gitpod.v1.WorkspacesService/GetWorkspace",
        "alice",
        "UNKNOWN",
    )


async def test_control_refusals_are_journaled_without_an_admin_caller() -> None:
    sim = Simulator(seed=1, users={"alice": ALICE}, admin_token=ADMIN)
    async with sim.channel() as channel:
        for token, status in ((ALICE, Status.PERMISSION_DENIED), ("nope", Status.UNAUTHENTICATED)):
            ctl = spb.SimulatorServiceStub(channel, metadata={"authorization": f"Bearer {token}"})
            with pytest.raises(GRPCError) as err:
                await ctl.get_clock(spb.GetClockRequest())
            assert err.value.status is status
        admin = spb.SimulatorServiceStub(channel, metadata={"authorization": f"Bearer {ADMIN}"})
        await admin.get_clock(spb.GetClockRequest())  # a read answered OK: not journaled
        await admin.list_faults(spb.ListFaultsRequest())
    got = [(e.caller, e.code) for e in rpc_entries(sim)]
    assert got == [("-", "PERMISSION_DENIED"), ("-", "UNAUTHENTICATED"), ("admin", "OK")]


async def test_the_admin_token_is_refused_by_the_api_on_both_ports() -> None:
    sim = Simulator(seed=1, users={"alice": ALICE}, admin_token=ADMIN)
    message = (
        "the admin token is for gitpod.simulator.v1.SimulatorService only;"
        " call gitpod.v1.WorkspacesService with an API token"
    )
    async with sim.channel() as channel:
        with pytest.raises(GRPCError) as err:
            await stub_for(channel, ADMIN).list_workspaces(pb.ListWorkspacesRequest())
    assert (err.value.status, err.value.message) == (Status.PERMISSION_DENIED, message)
    async with (
        sim.serve_http() as gateway,
        aiohttp.ClientSession() as http,
        http.post(
            f"http://127.0.0.1:{gateway.port}/gitpod.v1.WorkspacesService/ListWorkspaces",
            json={},
            headers={"Authorization": f"Bearer {ADMIN}"},
        ) as reply,
    ):
        body = await reply.json()
    assert (reply.status, body) == (403, {"code": "permission_denied", "message": message})


async def test_a_reset_swaps_the_contents_behind_the_same_world() -> None:
    """Holders keep the Simulator; after a reset it answers from the new engine at once."""
    sim = Simulator(seed=5, users={"alice": ALICE})
    async with sim.channel() as channel:
        stub = stub_for(channel, ALICE)
        wsid = await create(stub)
        await stub.get_workspace(pb.GetWorkspaceRequest(workspace_id=wsid))
        assert wsid in sim.answers
        old = sim.engine
        sim.reset(seed=6)
        assert sim.engine is not old and sim.answers == {}
        with pytest.raises(GRPCError) as err:
            await stub.get_workspace(pb.GetWorkspaceRequest(workspace_id=wsid))
        assert err.value.status is Status.NOT_FOUND
