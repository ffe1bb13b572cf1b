"""Issue 19 item 6: ``gitpod_target`` and ``gitpod_control``, the fixtures for a client the test
cannot import: a blocking grpcio client in the test's thread, a subprocess, and an async test
that waits for its own listener without blocking its loop."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
from types import SimpleNamespace
from typing import Any

import grpc
import pytest
from grpclib.client import Channel
from server_process import command

from simulator._proto.gitpod import v1 as pb
from simulator.harness import ControlClient, Target

REPO = "https://github.com/gitpod-io/gitpod"


def test_target_has_host_port_tokens_and_admin_token(gitpod_target: Target) -> None:
    assert gitpod_target.host == "127.0.0.1" and gitpod_target.port > 0
    assert gitpod_target.address == f"127.0.0.1:{gitpod_target.port}"
    assert dict(gitpod_target.tokens) == {"alice": "alice-token", "bob": "bob-token"}
    assert gitpod_target.admin_token.startswith("gitpod_sim_admin_")
    assert gitpod_target.metadata("bob") == (("authorization", "Bearer bob-token"),)
    env = gitpod_target.env()
    assert env["GITPOD_SIM_TOKEN"] == "alice-token" and env["GITPOD_SIM_TOKEN_BOB"] == "bob-token"


def test_a_blocking_grpcio_client_steered_by_the_control_client(
    grpcio_pb: SimpleNamespace, gitpod_target: Target, gitpod_control: ControlClient
) -> None:
    with grpc.insecure_channel(gitpod_target.address) as channel:
        api = grpcio_pb.grpc.WorkspacesServiceStub(channel)
        ws = grpcio_pb.ws
        gitpod_control.fault("rpc-error", method="GetWorkspace", code="UNAVAILABLE", skip=1)
        created = api.CreateAndStartWorkspace(
            ws.CreateAndStartWorkspaceRequest(context_url=REPO, idempotency_token="k1"),
            metadata=gitpod_target.metadata(),
            timeout=10,
        )
        get = ws.GetWorkspaceRequest(workspace_id=created.workspace_id)
        api.GetWorkspace(get, metadata=gitpod_target.metadata(), timeout=10)  # skipped
        with pytest.raises(grpc.RpcError) as info:
            api.GetWorkspace(get, metadata=gitpod_target.metadata(), timeout=10)
        assert info.value.code() is grpc.StatusCode.UNAVAILABLE
        listen = api.ListenToWorkspaceInstance(
            ws.ListenToWorkspaceInstanceRequest(
                instance_id=api.GetActiveWorkspaceInstance(
                    ws.GetActiveWorkspaceInstanceRequest(workspace_id=created.workspace_id),
                    metadata=gitpod_target.metadata(),
                    timeout=10,
                ).instance.instance_id
            ),
            metadata=gitpod_target.metadata(),
            timeout=10,
        )
        assert next(listen).instance_status.phase == ws.WorkspaceInstanceStatus.PHASE_IMAGEBUILD
        seen = gitpod_control.wait_for(workspace_id=created.workspace_id, listeners=1)
        assert seen.listeners == 1
        gitpod_control.advance(until_idle="2h")
        phases = [m.instance_status.phase for m in listen]
        assert phases[-1] == ws.WorkspaceInstanceStatus.PHASE_STOPPED
    calls = [(r.method.rsplit("/", 1)[1], r.caller, r.code, r.idempotency_token)
             for r in gitpod_control.rpcs()]  # fmt: skip
    assert calls[1:4] == [  # after the AddFault
        ("CreateAndStartWorkspace", "alice", "OK", "k1"),
        ("GetWorkspace", "alice", "OK", ""),
        ("GetWorkspace", "alice", "UNAVAILABLE", ""),
    ]


def test_a_subprocess_client_gets_the_target_from_its_environment(
    gitpod_target: Target, gitpod_control: ControlClient
) -> None:
    env = {**os.environ, **gitpod_target.env()}
    out = subprocess.run(
        command("ctl", "--target", env["GITPOD_SIM_ADDRESS"], "--admin-token",
                env["GITPOD_SIM_ADMIN_TOKEN"], "user", "add", "carol=tok-c"),
        capture_output=True, text=True, timeout=30, env=env, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert [r.method.rsplit("/", 1)[1] for r in gitpod_control.rpcs()] == ["AddUser"]


@pytest.mark.gitpod_sim(clock="manual", users={"dana": "dana-token"})
async def test_an_async_test_awaits_its_own_listener(
    gitpod_target: Target, gitpod_control: ControlClient
) -> None:
    assert list(gitpod_target.tokens) == ["dana"]
    channel = Channel(gitpod_target.host, gitpod_target.port)
    try:
        api = pb.WorkspacesServiceStub(
            channel, metadata={"authorization": f"Bearer {gitpod_target.token()}"}
        )
        created = await api.create_and_start_workspace(
            pb.CreateAndStartWorkspaceRequest(context_url=REPO)
        )
        active = await api.get_active_workspace_instance(
            pb.GetActiveWorkspaceInstanceRequest(workspace_id=created.workspace_id)
        )
        assert active.instance is not None
        phases: list[pb.WorkspaceInstanceStatusPhase] = []

        async def follow() -> None:
            request = pb.ListenToWorkspaceInstanceRequest(instance_id=active.instance.instance_id)
            async for message in api.listen_to_workspace_instance(request):
                assert message.instance_status is not None
                phases.append(message.instance_status.phase)

        task = asyncio.ensure_future(follow())
        await gitpod_control.await_for(workspace_id=created.workspace_id, listeners=1)
        gitpod_control.advance(until_idle="2h")
        await asyncio.wait_for(task, 10)
        assert phases[0] == pb.WorkspaceInstanceStatusPhase.IMAGEBUILD
        assert phases[-1] == pb.WorkspaceInstanceStatusPhase.STOPPED
    finally:
        with contextlib.suppress(Exception):
            channel.close()


async def test_the_in_process_helper_waits_for_a_listener(gitpod: Any, gitpod_client: Any) -> None:
    created = await gitpod_client.create_and_start_workspace(
        pb.CreateAndStartWorkspaceRequest(context_url=REPO)
    )
    instance_id = gitpod.sim.workspace(created.workspace_id).latest_instance_id
    phases: list[pb.WorkspaceInstanceStatusPhase] = []

    async def follow() -> None:
        request = pb.ListenToWorkspaceInstanceRequest(instance_id=instance_id)
        async for message in gitpod_client.listen_to_workspace_instance(request):
            phases.append(message.instance_status.phase)

    task = asyncio.ensure_future(follow())
    assert await gitpod.wait_for_listeners(instance_id, 1) == 1
    before = gitpod.sim.now()
    gitpod.run_until_idle()
    await asyncio.wait_for(task, 10)
    assert gitpod.sim.now() > before
    assert phases[0] == pb.WorkspaceInstanceStatusPhase.IMAGEBUILD
    assert phases[-1] == pb.WorkspaceInstanceStatusPhase.STOPPED
    with pytest.raises(pytest.fail.Exception, match="it has 0 listener"):
        await gitpod.wait_for_listeners(instance_id, 1, timeout=0.05)
