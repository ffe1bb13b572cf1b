"""End-to-end tests: a real ``gitpod-sim serve`` process and an independent grpcio client.

The client shares no code with the server: its stubs are generated at test time by Google's
``grpc_tools.protoc`` from the ``.proto`` files in ``proto/``, and nothing from ``simulator`` is
imported here.
"""

from __future__ import annotations

import itertools
import re
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import grpc
import pytest
from server_process import ServerProcess

PROTO_DIR = Path(__file__).parent.parent / "proto"
RPC_TIMEOUT = 10.0
# The lifecycle tests stop a workspace right after seeing RUNNING while a listener still waits;
# with the default 20 ms grace a loaded CI machine could let the inactivity timeout win the race.
GRACE = "2s"

ALICE = (("authorization", "Bearer tok-a"),)
BOB = (("authorization", "Bearer tok-b"),)
CONTEXT_URL = "https://github.com/gitpod-io/gitpod"
# Images are cached per repository and only a first start builds one: every test but the
# lifecycle one starts workspaces from other repositories, so test order does not matter.
OTHER_URL = "https://github.com/gitpod-io/spec-examples"
WORKSPACE_ID_RE = re.compile(r"^[0-9a-z]{2,16}-[0-9a-z]{2,16}-[0-9a-z]{8,11}$")


# --------------------------------------------------------------------------------------------
# Stubs generated at test time
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def pb(grpcio_pb: SimpleNamespace) -> SimpleNamespace:
    """Google protobuf messages and grpc stubs, generated from ``proto/`` at test time."""
    return grpcio_pb


# --------------------------------------------------------------------------------------------
# Server processes
# --------------------------------------------------------------------------------------------


def _start(*extra: str) -> Iterator[str]:
    server = ServerProcess(
        "--seed",
        "7",
        "--user",
        "alice=tok-a",
        "--user",
        "bob=tok-b",
        *extra,
    )
    try:
        yield server.address
    finally:
        rc = server.stop()
        stderr = server.stderr()
        server.close()
        assert rc == 0, f"server exit code {rc}; stderr:\n{stderr}"


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    """host:port of a server with the autojump clock."""
    yield from _start("--clock", "autojump", "--autojump-grace", GRACE)


@pytest.fixture(scope="module")
def manual_server() -> Iterator[str]:
    """host:port of a server whose clock never moves (``--clock manual``)."""
    yield from _start("--clock", "manual")


@pytest.fixture(scope="module")
def patient_server() -> Iterator[str]:
    """host:port of an autojump server that waits 1 h of real quiet before jumping to a timeout."""
    yield from _start("--clock", "autojump", "--autojump-grace", "1h")


@pytest.fixture(scope="module")
def stub(pb: SimpleNamespace, server: str) -> Iterator[Any]:
    with grpc.insecure_channel(server) as channel:
        grpc.channel_ready_future(channel).result(timeout=RPC_TIMEOUT)
        yield pb.grpc.WorkspacesServiceStub(channel)


@pytest.fixture(scope="module")
def manual_stub(pb: SimpleNamespace, manual_server: str) -> Iterator[Any]:
    with grpc.insecure_channel(manual_server) as channel:
        grpc.channel_ready_future(channel).result(timeout=RPC_TIMEOUT)
        yield pb.grpc.WorkspacesServiceStub(channel)


@pytest.fixture(scope="module")
def patient_stub(pb: SimpleNamespace, patient_server: str) -> Iterator[Any]:
    with grpc.insecure_channel(patient_server) as channel:
        grpc.channel_ready_future(channel).result(timeout=RPC_TIMEOUT)
        yield pb.grpc.WorkspacesServiceStub(channel)


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def _create(
    pb: SimpleNamespace, stub: Any, context_url: str = OTHER_URL, metadata: Any = ALICE
) -> str:
    response = stub.CreateAndStartWorkspace(
        pb.ws.CreateAndStartWorkspaceRequest(context_url=context_url),
        metadata=metadata,
        timeout=RPC_TIMEOUT,
    )
    return str(response.workspace_id)


def _active(pb: SimpleNamespace, stub: Any, workspace_id: str) -> Any:
    response = stub.GetActiveWorkspaceInstance(
        pb.ws.GetActiveWorkspaceInstanceRequest(workspace_id=workspace_id),
        metadata=ALICE,
        timeout=RPC_TIMEOUT,
    )
    return response.instance


def _run_to_stopped(pb: SimpleNamespace, stub: Any, workspace_id: str, instance_id: str) -> None:
    """Follow the instance to RUNNING, stop it and drain everything to STOPPED."""
    listen = stub.ListenToWorkspaceInstance(
        pb.ws.ListenToWorkspaceInstanceRequest(instance_id=instance_id),
        metadata=ALICE,
        timeout=RPC_TIMEOUT,
    )
    phase = pb.ws.WorkspaceInstanceStatus.Phase
    for message in listen:
        if message.instance_status.phase == phase.PHASE_RUNNING:
            break
    stop = stub.StopWorkspace(
        pb.ws.StopWorkspaceRequest(workspace_id=workspace_id), metadata=ALICE, timeout=RPC_TIMEOUT
    )
    assert len(list(stop)) == 2
    for _ in listen:
        pass


def _code(excinfo: pytest.ExceptionInfo[grpc.RpcError]) -> grpc.StatusCode:
    return excinfo.value.code()  # type: ignore[attr-defined,no-any-return]


# --------------------------------------------------------------------------------------------
# Lifecycle
# --------------------------------------------------------------------------------------------


def test_full_lifecycle(pb: SimpleNamespace, stub: Any) -> None:
    phase = pb.ws.WorkspaceInstanceStatus.Phase
    started = time.perf_counter()

    workspace_id = _create(pb, stub, CONTEXT_URL)
    assert WORKSPACE_ID_RE.match(workspace_id), workspace_id
    assert workspace_id.startswith("gitpodio-gitpod-"), workspace_id

    instance = _active(pb, stub, workspace_id)
    assert instance.workspace_id == workspace_id
    assert instance.instance_id
    assert instance.status.phase == phase.PHASE_IMAGEBUILD

    listen = stub.ListenToWorkspaceInstance(
        pb.ws.ListenToWorkspaceInstanceRequest(instance_id=instance.instance_id),
        metadata=ALICE,
        timeout=RPC_TIMEOUT,
    )
    statuses = []
    for message in listen:
        statuses.append(message.instance_status)
        if message.instance_status.phase == phase.PHASE_RUNNING:
            break
    running_at = time.perf_counter()

    stop_messages = list(
        stub.StopWorkspace(
            pb.ws.StopWorkspaceRequest(workspace_id=workspace_id),
            metadata=ALICE,
            timeout=RPC_TIMEOUT,
        )
    )
    assert len(stop_messages) == 2
    statuses.extend(message.instance_status for message in listen)  # ends after STOPPED
    ms = (time.perf_counter() - started) * 1000
    print(f"lifecycle wall time: {ms:.1f} ms")
    print(f"  of which create -> RUNNING: {(running_at - started) * 1000:.1f} ms")

    names = [phase.Name(s.phase) for s in statuses]
    assert names == [
        "PHASE_IMAGEBUILD",
        "PHASE_PENDING",
        "PHASE_CREATING",
        "PHASE_INITIALIZING",
        "PHASE_RUNNING",
        "PHASE_RUNNING",
        "PHASE_STOPPING",
        "PHASE_STOPPED",
    ]
    assert not statuses[4].conditions.stopped_by_request
    assert statuses[5].conditions.HasField("stopped_by_request")
    assert statuses[5].conditions.stopped_by_request
    assert statuses[7].conditions.stopped_by_request
    versions = [s.status_version for s in statuses]
    assert all(a < b for a, b in itertools.pairwise(versions)), versions
    for status in statuses:
        assert status.url == f"https://{workspace_id}.ws-eu53.gitpod.io"
        assert not status.conditions.failed
        assert not status.conditions.timeout
        assert status.admission == pb.ws.ADMISSION_LEVEL_OWNER_ONLY
    assert ms < 10_000


# --------------------------------------------------------------------------------------------
# Errors and authentication
# --------------------------------------------------------------------------------------------


def test_no_metadata_is_unauthenticated(pb: SimpleNamespace, stub: Any) -> None:
    with pytest.raises(grpc.RpcError) as excinfo:
        stub.ListWorkspaces(pb.ws.ListWorkspacesRequest(), timeout=RPC_TIMEOUT)
    assert _code(excinfo) == grpc.StatusCode.UNAUTHENTICATED
    assert excinfo.value.details() in (  # type: ignore[attr-defined]
        "no credentials provided",
        "no authorization header specified",
    )


def test_unknown_token_is_unauthenticated(pb: SimpleNamespace, stub: Any) -> None:
    with pytest.raises(grpc.RpcError) as excinfo:
        stub.ListWorkspaces(
            pb.ws.ListWorkspacesRequest(),
            metadata=(("authorization", "Bearer tok-nobody"),),
            timeout=RPC_TIMEOUT,
        )
    assert _code(excinfo) == grpc.StatusCode.UNAUTHENTICATED


def test_two_authorization_headers_are_unauthenticated(pb: SimpleNamespace, stub: Any) -> None:
    with pytest.raises(grpc.RpcError) as excinfo:
        stub.ListWorkspaces(
            pb.ws.ListWorkspacesRequest(),
            metadata=(("authorization", "Bearer tok-a"), ("authorization", "Bearer tok-a")),
            timeout=RPC_TIMEOUT,
        )
    assert _code(excinfo) == grpc.StatusCode.UNAUTHENTICATED


def test_unauthenticated_stream(pb: SimpleNamespace, stub: Any) -> None:
    call = stub.ListenToWorkspaceInstance(
        pb.ws.ListenToWorkspaceInstanceRequest(instance_id="00000000-0000-4000-8000-000000000000"),
        timeout=RPC_TIMEOUT,
    )
    with pytest.raises(grpc.RpcError) as excinfo:
        list(call)
    assert _code(excinfo) == grpc.StatusCode.UNAUTHENTICATED


def test_bare_token_is_accepted(pb: SimpleNamespace, stub: Any) -> None:
    response = stub.ListWorkspaces(
        pb.ws.ListWorkspacesRequest(), metadata=(("authorization", "tok-a"),), timeout=RPC_TIMEOUT
    )
    assert response.next_page_token == "" or isinstance(response.next_page_token, str)


def test_get_workspace_malformed_id(pb: SimpleNamespace, stub: Any) -> None:
    with pytest.raises(grpc.RpcError) as excinfo:
        stub.GetWorkspace(
            pb.ws.GetWorkspaceRequest(workspace_id="Not A Workspace!"),
            metadata=ALICE,
            timeout=RPC_TIMEOUT,
        )
    assert _code(excinfo) == grpc.StatusCode.INVALID_ARGUMENT


def test_get_workspace_unknown_id(pb: SimpleNamespace, stub: Any) -> None:
    with pytest.raises(grpc.RpcError) as excinfo:
        stub.GetWorkspace(
            pb.ws.GetWorkspaceRequest(workspace_id="gitpodio-gitpod-zzzzzzzzzzz"),
            metadata=ALICE,
            timeout=RPC_TIMEOUT,
        )
    assert _code(excinfo) == grpc.StatusCode.NOT_FOUND
    assert "workspace does not exist" in excinfo.value.details()  # type: ignore[attr-defined]


def test_other_users_workspace_is_not_found(pb: SimpleNamespace, stub: Any) -> None:
    workspace_id = _create(pb, stub)
    got = stub.GetWorkspace(
        pb.ws.GetWorkspaceRequest(workspace_id=workspace_id), metadata=ALICE, timeout=RPC_TIMEOUT
    )
    assert got.result.workspace_id == workspace_id
    assert got.result.owner_id == "alice"
    assert got.result.context.context_url == OTHER_URL
    with pytest.raises(grpc.RpcError) as excinfo:
        stub.GetWorkspace(
            pb.ws.GetWorkspaceRequest(workspace_id=workspace_id), metadata=BOB, timeout=RPC_TIMEOUT
        )
    assert _code(excinfo) == grpc.StatusCode.NOT_FOUND
    listed = stub.ListWorkspaces(pb.ws.ListWorkspacesRequest(), metadata=BOB, timeout=RPC_TIMEOUT)
    assert workspace_id not in [item.result.workspace_id for item in listed.result]


def test_list_page_size_101_is_invalid(pb: SimpleNamespace, stub: Any) -> None:
    request = pb.ws.ListWorkspacesRequest(pagination=pb.pagination.Pagination(page_size=101))
    with pytest.raises(grpc.RpcError) as excinfo:
        stub.ListWorkspaces(request, metadata=ALICE, timeout=RPC_TIMEOUT)
    assert _code(excinfo) == grpc.StatusCode.INVALID_ARGUMENT
    assert "invalid pagination page size" in excinfo.value.details()  # type: ignore[attr-defined]
    request = pb.ws.ListWorkspacesRequest(pagination=pb.pagination.Pagination(page_size=100))
    stub.ListWorkspaces(request, metadata=ALICE, timeout=RPC_TIMEOUT)


def test_stop_stopped_workspace_fails_precondition(pb: SimpleNamespace, stub: Any) -> None:
    workspace_id = _create(pb, stub)
    instance = _active(pb, stub, workspace_id)
    _run_to_stopped(pb, stub, workspace_id, instance.instance_id)
    with pytest.raises(grpc.RpcError) as excinfo:
        list(
            stub.StopWorkspace(
                pb.ws.StopWorkspaceRequest(workspace_id=workspace_id),
                metadata=ALICE,
                timeout=RPC_TIMEOUT,
            )
        )
    assert _code(excinfo) == grpc.StatusCode.FAILED_PRECONDITION
    with pytest.raises(grpc.RpcError) as excinfo:
        _active(pb, stub, workspace_id)
    assert _code(excinfo) == grpc.StatusCode.FAILED_PRECONDITION


def test_owner_token(pb: SimpleNamespace, stub: Any) -> None:
    workspace_id = _create(pb, stub)
    response = stub.GetOwnerToken(
        pb.ws.GetOwnerTokenRequest(workspace_id=workspace_id), metadata=ALICE, timeout=RPC_TIMEOUT
    )
    assert re.fullmatch(r"[0-9A-Za-z_.\-]{32}", response.token), response.token
    with pytest.raises(grpc.RpcError) as excinfo:
        stub.GetOwnerToken(
            pb.ws.GetOwnerTokenRequest(workspace_id=workspace_id), metadata=BOB, timeout=RPC_TIMEOUT
        )
    assert _code(excinfo) == grpc.StatusCode.NOT_FOUND


# --------------------------------------------------------------------------------------------
# Streams: build logs, deadlines, cancellation
# --------------------------------------------------------------------------------------------


def test_image_build_logs_replay_after_build(pb: SimpleNamespace, stub: Any) -> None:
    phase = pb.ws.WorkspaceInstanceStatus.Phase
    # a repository of its own: images are cached per repository, so only a first start builds
    workspace_id = _create(pb, stub, "https://github.com/gitpod-io/website")
    instance = _active(pb, stub, workspace_id)
    assert instance.status.phase == phase.PHASE_IMAGEBUILD
    listen = stub.ListenToWorkspaceInstance(
        pb.ws.ListenToWorkspaceInstanceRequest(instance_id=instance.instance_id),
        metadata=ALICE,
        timeout=RPC_TIMEOUT,
    )
    for message in listen:
        if message.instance_status.phase != phase.PHASE_IMAGEBUILD:
            break
    listen.cancel()

    request = pb.ws.ListenToImageBuildLogsRequest(instance_id=instance.instance_id)
    first = [
        m.line for m in stub.ListenToImageBuildLogs(request, metadata=ALICE, timeout=RPC_TIMEOUT)
    ]
    assert first, "a finished build replays its lines"
    assert all(isinstance(line, str) and line for line in first)
    again = [
        m.line for m in stub.ListenToImageBuildLogs(request, metadata=ALICE, timeout=RPC_TIMEOUT)
    ]
    assert again == first


def test_deadline_on_listen_stream(pb: SimpleNamespace, manual_stub: Any) -> None:
    workspace_id = _create(pb, manual_stub)
    instance = _active(pb, manual_stub, workspace_id)
    call = manual_stub.ListenToWorkspaceInstance(
        pb.ws.ListenToWorkspaceInstanceRequest(instance_id=instance.instance_id),
        metadata=ALICE,
        timeout=0.5,
    )
    received = []
    started = time.monotonic()
    with pytest.raises(grpc.RpcError) as excinfo:
        for message in call:
            received.append(message.instance_status.phase)
    assert _code(excinfo) == grpc.StatusCode.DEADLINE_EXCEEDED
    assert time.monotonic() - started < 5
    assert received == [instance.status.phase]  # the clock never moved
    # the server is still fine afterwards
    again = _active(pb, manual_stub, workspace_id)
    assert again.status.status_version == instance.status.status_version


def test_deadline_on_running_listen_stream(pb: SimpleNamespace, patient_stub: Any) -> None:
    """A RUNNING workspace that stays RUNNING (autojump whose grace before a timeout is 1 h)."""
    phase = pb.ws.WorkspaceInstanceStatus.Phase
    workspace_id = _create(pb, patient_stub)
    instance = _active(pb, patient_stub, workspace_id)
    request = pb.ws.ListenToWorkspaceInstanceRequest(instance_id=instance.instance_id)
    listen = patient_stub.ListenToWorkspaceInstance(request, metadata=ALICE, timeout=RPC_TIMEOUT)
    for message in listen:
        if message.instance_status.phase == phase.PHASE_RUNNING:
            break
    listen.cancel()

    call = patient_stub.ListenToWorkspaceInstance(request, metadata=ALICE, timeout=0.5)
    received = []
    with pytest.raises(grpc.RpcError) as excinfo:
        for message in call:
            received.append(phase.Name(message.instance_status.phase))
    assert _code(excinfo) == grpc.StatusCode.DEADLINE_EXCEEDED
    assert received == ["PHASE_RUNNING"]
    assert _active(pb, patient_stub, workspace_id).status.phase == phase.PHASE_RUNNING


def test_cancel_listen_stream_then_unary_works(pb: SimpleNamespace, stub: Any) -> None:
    phase = pb.ws.WorkspaceInstanceStatus.Phase
    workspace_id = _create(pb, stub, "https://github.com/gitpod-io/openvscode-server")
    instance = _active(pb, stub, workspace_id)
    call = stub.ListenToWorkspaceInstance(
        pb.ws.ListenToWorkspaceInstanceRequest(instance_id=instance.instance_id),
        metadata=ALICE,
        timeout=RPC_TIMEOUT,
    )
    first = next(call)
    assert first.instance_status.phase == phase.PHASE_IMAGEBUILD
    assert call.cancel()
    with pytest.raises(grpc.RpcError) as excinfo:
        list(call)
    assert _code(excinfo) == grpc.StatusCode.CANCELLED

    got = stub.GetWorkspace(
        pb.ws.GetWorkspaceRequest(workspace_id=workspace_id), metadata=ALICE, timeout=RPC_TIMEOUT
    )
    assert got.result.workspace_id == workspace_id
    listed = stub.ListWorkspaces(pb.ws.ListWorkspacesRequest(), metadata=ALICE, timeout=RPC_TIMEOUT)
    assert workspace_id in [item.result.workspace_id for item in listed.result]
    # a new listener still follows the instance to the end
    _run_to_stopped(pb, stub, workspace_id, instance.instance_id)


# --------------------------------------------------------------------------------------------
# Fidelity (issue 18): context URL forms, commit shas, workspace id fallback, from the spec
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "normalized"),
    [
        # "Open in Gitpod" from a file, a history, a release or a wiki page sends these paths.
        (
            "https://github.com/acme/blobs/blob/main/README.md",
            "https://github.com/acme/blobs/tree/main",
        ),
        ("https://github.com/acme/hist/commits/main", "https://github.com/acme/hist/tree/main"),
        (
            "https://github.com/acme/rel/releases/tag/v1.0",
            "https://github.com/acme/rel/releases/tag/v1.0",
        ),
        ("https://github.com/acme/wikis/wiki", "https://github.com/acme/wikis"),
    ],
)
def test_github_url_forms_gitpod_accepted_are_accepted(
    pb: SimpleNamespace, manual_stub: Any, url: str, normalized: str
) -> None:
    """BEHAVIOUR.md: `blob/<ref>/<path>` and `commits/<ref>` select a branch, `releases/tag/<tag>`
    a tag, and any other path after owner/repo opens the default branch."""
    created = manual_stub.CreateAndStartWorkspace(
        pb.ws.CreateAndStartWorkspaceRequest(context_url=url), metadata=ALICE, timeout=RPC_TIMEOUT
    )
    got = manual_stub.GetWorkspace(
        pb.ws.GetWorkspaceRequest(workspace_id=created.workspace_id),
        metadata=ALICE,
        timeout=RPC_TIMEOUT,
    )
    assert got.result.context.context_url == url
    assert got.result.context.git.normalized_context_url == normalized


def test_a_short_commit_sha_is_a_context_parse_error(pb: SimpleNamespace, manual_stub: Any) -> None:
    """BEHAVIOUR.md: `commit/<sha>` takes a full 40-hex sha only: a shorter one is a context
    parse error (INVALID_ARGUMENT)."""
    with pytest.raises(grpc.RpcError) as excinfo:
        manual_stub.CreateAndStartWorkspace(
            pb.ws.CreateAndStartWorkspaceRequest(
                context_url="https://github.com/acme/app/commit/0123456"
            ),
            metadata=ALICE,
            timeout=RPC_TIMEOUT,
        )
    assert _code(excinfo) == grpc.StatusCode.INVALID_ARGUMENT
    assert "context parse error" in excinfo.value.details()  # type: ignore[attr-defined]
    assert "40 hex" in excinfo.value.details()  # type: ignore[attr-defined]


def test_only_the_short_id_segment_is_replaced(pb: SimpleNamespace, manual_stub: Any) -> None:
    """BEHAVIOUR.md: a segment with fewer than 2 usable chars is replaced by a random word while
    the other segment is kept (`['f', 'bar']` gives `<word>-bar-<11>`)."""
    created = manual_stub.CreateAndStartWorkspace(
        pb.ws.CreateAndStartWorkspaceRequest(context_url="https://github.com/f/bar"),
        metadata=ALICE,
        timeout=RPC_TIMEOUT,
    )
    word, repo, suffix = created.workspace_id.split("-")
    assert repo == "bar" and word != "f" and len(word) >= 2 and len(suffix) == 11
    assert WORKSPACE_ID_RE.fullmatch(created.workspace_id)
