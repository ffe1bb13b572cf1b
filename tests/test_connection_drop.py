"""The connection-drop fault (issue 19 item 1) as a grpcio client meets it: the TCP connection
closes (or a GOAWAY comes first) before the call runs or after it ran; the client sees
UNAVAILABLE, reconnects on its own, and the journal says what happened to the call."""

from __future__ import annotations

from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import grpc
import pytest
from server_process import ServerProcess

ADMIN = "adm-token"
ALICE = (("authorization", "Bearer tok-a"),)
ADMIN_MD = (("authorization", f"Bearer {ADMIN}"),)
TIMEOUT = 10.0
REPO = "https://github.com/gitpod-io/empty"


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    proc = ServerProcess("--clock", "manual", "--seed", "5", "--user", "alice=tok-a",
                         "--admin-token", ADMIN)  # fmt: skip
    try:
        yield proc
    finally:
        assert proc.stop() == 0
        proc.close()


@pytest.fixture
def stubs(grpcio_pb: SimpleNamespace, server: ServerProcess) -> Iterator[SimpleNamespace]:
    """The client's channel (the one whose connection drops) and, in ``check``, the stubs of a
    second channel the test looks with (a call the client makes the instant its connection
    closed may still go out on it and fail: that is for the client's retry to handle)."""
    # a local subchannel pool each: grpcio channels to one address share a connection otherwise
    local = [("grpc.use_local_subchannel_pool", 1)]
    channels = [grpc.insecure_channel(server.address, options=local) for _ in range(2)]

    def on(channel: grpc.Channel) -> SimpleNamespace:
        return SimpleNamespace(
            api=grpcio_pb.grpc.WorkspacesServiceStub(channel),
            ctl=grpcio_pb.sim_grpc.SimulatorServiceStub(channel),
            pb=grpcio_pb.ws,
            spb=grpcio_pb.sim,
        )

    client, check = on(channels[0]), on(channels[1])
    check.ctl.Reset(
        grpcio_pb.sim.ResetRequest(clear_journal=True), metadata=ADMIN_MD, timeout=TIMEOUT
    )
    client.check = check
    try:
        yield client
    finally:
        for channel in channels:
            channel.close()


def retried(call: Any, request: Any) -> Any:
    """What a client does about UNAVAILABLE: try again (a few times, the same request)."""
    for _ in range(4):
        try:
            return call(request, metadata=ALICE, timeout=TIMEOUT)
        except grpc.RpcError as exc:
            if exc.code() is not grpc.StatusCode.UNAVAILABLE:
                raise
            last = exc
    raise last


def drop(stubs: SimpleNamespace, method: str, **fields: Any) -> None:
    spb = stubs.spb
    spec = spb.FaultSpec(count=1, connection_drop=spb.ConnectionDrop(method=method, **fields))
    stubs.check.ctl.AddFault(spb.AddFaultRequest(spec=spec), metadata=ADMIN_MD, timeout=TIMEOUT)


def journaled(stubs: SimpleNamespace, method: str) -> list[tuple[str, str]]:
    response = stubs.check.ctl.ReadJournal(
        stubs.spb.ReadJournalRequest(), metadata=ADMIN_MD, timeout=TIMEOUT
    )
    return [
        (e.rpc.code, e.rpc.message)
        for e in response.entries
        if e.WhichOneof("entry") == "rpc" and e.rpc.method.endswith("/" + method)
    ]


def workspaces(stubs: SimpleNamespace) -> int:
    listing = stubs.check.api.ListWorkspaces(
        stubs.pb.ListWorkspacesRequest(), metadata=ALICE, timeout=TIMEOUT
    )
    return len(listing.result)


@pytest.mark.parametrize(
    ("goaway", "how"), [(False, "TCP connection closed"), (True, "GOAWAY, then closed")]
)
def test_drop_before_the_call_runs(stubs: SimpleNamespace, goaway: bool, how: str) -> None:
    drop(stubs, "CreateAndStartWorkspace", goaway=goaway)
    with pytest.raises(grpc.RpcError) as info:
        stubs.api.CreateAndStartWorkspace(
            stubs.pb.CreateAndStartWorkspaceRequest(context_url=REPO, idempotency_token="t1"),
            metadata=ALICE,
            timeout=TIMEOUT,
        )
    assert info.value.code() is grpc.StatusCode.UNAVAILABLE
    assert workspaces(stubs) == 0  # the call never ran
    assert journaled(stubs, "CreateAndStartWorkspace") == [
        ("UNAVAILABLE", f"connection dropped ({how}) before the call ran")
    ]


@pytest.mark.parametrize("goaway", [False, True])
def test_drop_after_the_call_ran_keeps_its_effect_and_a_retry_with_the_token_replays(
    stubs: SimpleNamespace, goaway: bool
) -> None:
    drop(stubs, "CreateAndStartWorkspace", after_effect=True, goaway=goaway)
    request = stubs.pb.CreateAndStartWorkspaceRequest(context_url=REPO, idempotency_token="t2")
    with pytest.raises(grpc.RpcError) as info:
        stubs.api.CreateAndStartWorkspace(request, metadata=ALICE, timeout=TIMEOUT)
    assert info.value.code() is grpc.StatusCode.UNAVAILABLE
    assert workspaces(stubs) == 1  # the work was done
    retry = retried(stubs.api.CreateAndStartWorkspace, request)  # the client reconnects
    assert workspaces(stubs) == 1  # the retry with the same token created nothing new
    assert retry.workspace_id
    how = "GOAWAY, then closed" if goaway else "TCP connection closed"
    assert journaled(stubs, "CreateAndStartWorkspace") == [
        ("UNAVAILABLE", f"connection dropped ({how}) after the call ran"),
        ("OK", ""),
    ]


def test_drop_on_a_stream_after_it_ran(stubs: SimpleNamespace) -> None:
    created = stubs.api.CreateAndStartWorkspace(
        stubs.pb.CreateAndStartWorkspaceRequest(context_url=REPO), metadata=ALICE, timeout=TIMEOUT
    )
    drop(stubs, "StopWorkspace", after_effect=True)
    stream = stubs.api.StopWorkspace(
        stubs.pb.StopWorkspaceRequest(workspace_id=created.workspace_id),
        metadata=ALICE,
        timeout=TIMEOUT,
    )
    with pytest.raises(grpc.RpcError) as info:
        list(stream)
    assert info.value.code() is grpc.StatusCode.UNAVAILABLE
    active = stubs.check.api.GetActiveWorkspaceInstance(
        stubs.pb.GetActiveWorkspaceInstanceRequest(workspace_id=created.workspace_id),
        metadata=ALICE,
        timeout=TIMEOUT,
    )
    assert active.instance.status.phase == stubs.pb.WorkspaceInstanceStatus.PHASE_STOPPING


async def test_on_the_connect_port_a_drop_answers_unavailable() -> None:
    """The HTTP/1.1 port has no HTTP/2 connection to drop: the call answers UNAVAILABLE with the
    same words, and an after-effect drop still did the work."""
    import aiohttp

    from simulator import Simulator
    from simulator.core.faults import ConnectionDrop, Target, TargetKind

    sim = Simulator(seed=1, users={"alice": "tok-a"})
    path = "/gitpod.v1.WorkspacesService/CreateAndStartWorkspace"
    sim.add_fault(ConnectionDrop(path, after_effect=True), Target.of(TargetKind.ANY), count=1)
    async with (
        sim.serve_http("127.0.0.1", 0) as gateway,
        aiohttp.ClientSession() as http,
        http.post(
            f"http://127.0.0.1:{gateway.port}{path}",
            json={"contextUrl": REPO},
            headers={"Authorization": "Bearer tok-a"},
        ) as response,
    ):
        body = await response.json()
    assert (response.status, body) == (
        503,
        {
            "code": "unavailable",
            "message": "connection dropped (TCP connection closed) after the call ran",
        },
    )
    assert len(sim.engine.workspaces) == 1
