"""grpcio's asyncio client (``grpc.aio``) against a real ``gitpod-sim serve`` process: every RPC,
streams, a deadline and a cancel. Stubs are generated from ``proto/`` by Google's protoc at test
time; nothing from ``simulator`` is imported."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from types import SimpleNamespace
from typing import Any

import grpc
import pytest
from server_process import ServerProcess

ALICE = (("authorization", "Bearer tok-a"),)
T = 10.0


@pytest.fixture(scope="module")
def pb(grpcio_pb: SimpleNamespace) -> SimpleNamespace:
    """grpcio stubs generated from proto/ at test time (tests/grpcio_stubs.py)."""
    return grpcio_pb


def _server(*args: str) -> Iterator[str]:
    server = ServerProcess("--seed", "9", "--user", "alice=tok-a", "--user", "bob=tok-b", *args)
    try:
        yield server.address
    finally:
        assert server.stop() == 0, server.stderr()
        server.close()


@pytest.fixture(scope="module")
def autojump() -> Iterator[str]:
    yield from _server("--clock", "autojump", "--autojump-grace", "2s")


@pytest.fixture(scope="module")
def manual() -> Iterator[str]:
    yield from _server("--clock", "manual")


@pytest.fixture
async def stub(pb: SimpleNamespace, autojump: str) -> AsyncIterator[Any]:
    async with grpc.aio.insecure_channel(autojump) as channel:
        yield pb.grpc.WorkspacesServiceStub(channel)


async def test_every_rpc(pb: SimpleNamespace, stub: Any) -> None:
    ws, phase = pb.ws, pb.ws.WorkspaceInstanceStatus.Phase
    created = await stub.CreateAndStartWorkspace(
        ws.CreateAndStartWorkspaceRequest(context_url="https://github.com/gitpod-io/aio"),
        metadata=ALICE, timeout=T,
    )  # fmt: skip
    wid = created.workspace_id
    got = await stub.GetWorkspace(
        ws.GetWorkspaceRequest(workspace_id=wid), metadata=ALICE, timeout=T
    )
    assert got.result.owner_id == "alice"
    listed = await stub.ListWorkspaces(ws.ListWorkspacesRequest(), metadata=ALICE, timeout=T)
    assert wid in [item.result.workspace_id for item in listed.result]
    token = await stub.GetOwnerToken(
        ws.GetOwnerTokenRequest(workspace_id=wid), metadata=ALICE, timeout=T
    )
    assert len(token.token) == 32
    inst = (
        await stub.GetActiveWorkspaceInstance(
            ws.GetActiveWorkspaceInstanceRequest(workspace_id=wid), metadata=ALICE, timeout=T
        )
    ).instance
    owner = await stub.GetWorkspaceInstanceOwnerToken(
        ws.GetWorkspaceInstanceOwnerTokenRequest(instance_id=inst.instance_id),
        metadata=ALICE, timeout=T,
    )  # fmt: skip
    assert owner.owner_token == token.token
    again = await stub.StartWorkspace(
        ws.StartWorkspaceRequest(workspace_id=wid), metadata=ALICE, timeout=T
    )
    assert again.instance_id == inst.instance_id  # already active: the same instance

    listen = stub.ListenToWorkspaceInstance(
        ws.ListenToWorkspaceInstanceRequest(instance_id=inst.instance_id), metadata=ALICE, timeout=T
    )
    phases = []
    async for message in listen:
        phases.append(message.instance_status.phase)
        if phases[-1] == phase.PHASE_RUNNING:
            break
    assert phases[0] == phase.PHASE_IMAGEBUILD
    logs = [
        m.line
        async for m in stub.ListenToImageBuildLogs(
            ws.ListenToImageBuildLogsRequest(instance_id=inst.instance_id),
            metadata=ALICE,
            timeout=T,
        )
    ]
    assert logs
    stop = stub.StopWorkspace(ws.StopWorkspaceRequest(workspace_id=wid), metadata=ALICE, timeout=T)
    assert len([m async for m in stop]) == 2
    rest = [m.instance_status.phase async for m in listen]
    assert rest[-1] == phase.PHASE_STOPPED

    with pytest.raises(grpc.aio.AioRpcError) as excinfo:
        await stub.GetWorkspace(
            ws.GetWorkspaceRequest(workspace_id=wid),
            metadata=(("authorization", "tok-b"),),
            timeout=T,
        )
    assert excinfo.value.code() == grpc.StatusCode.NOT_FOUND


async def test_deadline_and_cancel(pb: SimpleNamespace, manual: str) -> None:
    ws = pb.ws
    async with grpc.aio.insecure_channel(manual) as channel:
        stub = pb.grpc.WorkspacesServiceStub(channel)
        created = await stub.CreateAndStartWorkspace(
            ws.CreateAndStartWorkspaceRequest(context_url="https://github.com/gitpod-io/aio-deadline"),
            metadata=ALICE, timeout=T,
        )  # fmt: skip
        inst = (
            await stub.GetActiveWorkspaceInstance(
                ws.GetActiveWorkspaceInstanceRequest(workspace_id=created.workspace_id),
                metadata=ALICE,
                timeout=T,
            )
        ).instance
        request = ws.ListenToWorkspaceInstanceRequest(instance_id=inst.instance_id)
        call = stub.ListenToWorkspaceInstance(request, metadata=ALICE, timeout=0.3)
        with pytest.raises(grpc.aio.AioRpcError) as excinfo:
            async for _ in call:  # the manual clock never moves: one message, then the deadline
                pass
        assert excinfo.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED

        call = stub.ListenToWorkspaceInstance(request, metadata=ALICE, timeout=T)
        first = await asyncio.wait_for(call.read(), T)
        assert first.instance_status.phase == inst.status.phase
        assert call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call.read()
        # the server is still fine
        got = await stub.GetWorkspace(
            ws.GetWorkspaceRequest(workspace_id=created.workspace_id), metadata=ALICE, timeout=T
        )
        assert got.result.workspace_id == created.workspace_id
