"""Every RPC of gitpod.v1.WorkspacesService through a real grpclib client, in memory.

Each test names the behaviour from BEHAVIOUR.md it checks; codes and messages are exact.
"""

from __future__ import annotations

import re

import pytest
from grpc_helpers import REPO, active_instance_id, collect, create, drive, stub_for
from grpclib.client import Channel
from grpclib.const import Status
from grpclib.exceptions import GRPCError

from simulator import Phase, Simulator
from simulator._proto.gitpod import v1 as pb
from simulator._proto.google.protobuf import FieldMask

WORKSPACE_ID = re.compile(r"^[0-9a-z]{2,16}-[0-9a-z]{2,16}-[0-9a-z]{8,11}$")
UUID4 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
UNKNOWN_WS = "gitpodio-gitpod-aaaaaaaaaaa"
UNKNOWN_INSTANCE = "00000000-0000-4000-8000-000000000000"


async def expect(code: Status, awaitable: object, message: str | None = None) -> GRPCError:
    with pytest.raises(GRPCError) as info:
        await awaitable  # type: ignore[misc]
    assert info.value.status is code, (info.value.status, info.value.message)
    if message is not None:
        assert info.value.message == message
    return info.value


# ---------------------------------------------------------------------- authentication


async def test_no_authorization_header_is_unauthenticated(channel: Channel) -> None:
    anonymous = stub_for(channel, None)
    err = await expect(
        Status.UNAUTHENTICATED, anonymous.list_workspaces(pb.ListWorkspacesRequest())
    )
    assert err.message in ("no credentials provided", "no authorization header specified")


async def test_unknown_token_is_unauthenticated(channel: Channel) -> None:
    stranger = stub_for(channel, "nope")
    await expect(
        Status.UNAUTHENTICATED,
        stranger.list_workspaces(pb.ListWorkspacesRequest()),
        "invalid credentials: unknown token",
    )


async def test_bare_token_and_bearer_token_are_both_accepted(channel: Channel) -> None:
    bare = pb.WorkspacesServiceStub(channel, metadata={"authorization": "tok-alice"})
    lower = pb.WorkspacesServiceStub(channel, metadata={"authorization": "bearer tok-alice"})
    assert (await bare.list_workspaces(pb.ListWorkspacesRequest())).result == []
    assert (await lower.list_workspaces(pb.ListWorkspacesRequest())).result == []


async def test_two_authorization_headers_are_refused(channel: Channel) -> None:
    stub = pb.WorkspacesServiceStub(channel)
    await expect(
        Status.UNAUTHENTICATED,
        stub.list_workspaces(
            pb.ListWorkspacesRequest(),
            metadata=[("authorization", "tok-alice"), ("authorization", "tok-bob")],
        ),
        "more than one authorization header specified, exactly one is required",
    )


async def test_other_metadata_without_authorization(channel: Channel) -> None:
    stub = pb.WorkspacesServiceStub(channel, metadata={"x-client": "test"})
    await expect(
        Status.UNAUTHENTICATED,
        stub.list_workspaces(pb.ListWorkspacesRequest()),
        "no authorization header specified",
    )


# ---------------------------------------------------------------------- CreateAndStartWorkspace


async def test_create_from_context_url(alice: pb.WorkspacesServiceStub) -> None:
    wsid = await create(alice, "github.com/gitpod-io/gitpod/tree/main")
    assert WORKSPACE_ID.match(wsid) and wsid.startswith("gitpodio-gitpod-")
    ws = (await alice.get_workspace(pb.GetWorkspaceRequest(workspace_id=wsid))).result
    assert ws.workspace_id == wsid
    assert ws.owner_id == "alice"
    assert ws.context.context_url == "github.com/gitpod-io/gitpod/tree/main"
    assert ws.context.git is not None
    assert ws.context.git.normalized_context_url == "https://github.com/gitpod-io/gitpod/tree/main"
    assert re.fullmatch(r"[0-9a-f]{40}", ws.context.git.commit)
    assert ws.description.startswith("gitpod-io/gitpod")


async def test_create_needs_a_source(alice: pb.WorkspacesServiceStub) -> None:
    await expect(
        Status.INVALID_ARGUMENT,
        alice.create_and_start_workspace(pb.CreateAndStartWorkspaceRequest()),
        "either context_url or prebuild_id must be set",
    )


@pytest.mark.parametrize(
    "bad", ["", "not a url", "https://github.com/only-owner", "ftp://x.org/a/b"]
)
async def test_unparseable_context_is_invalid_argument(
    alice: pb.WorkspacesServiceStub, bad: str
) -> None:
    err = await expect(
        Status.INVALID_ARGUMENT,
        alice.create_and_start_workspace(pb.CreateAndStartWorkspaceRequest(context_url=bad)),
    )
    assert err.message is not None and err.message.startswith("context parse error")


async def test_create_from_prebuild_skips_the_build(
    sim: Simulator, alice: pb.WorkspacesServiceStub
) -> None:
    sim.add_prebuild("pb-1", "https://github.com/gitpod-io/gitpod/tree/main", "a" * 40)
    response = await alice.create_and_start_workspace(
        pb.CreateAndStartWorkspaceRequest(prebuild_id="pb-1")
    )
    ws = (
        await alice.get_workspace(pb.GetWorkspaceRequest(workspace_id=response.workspace_id))
    ).result
    assert ws.context.prebuild is not None and ws.context.git is None
    assert ws.context.prebuild.prebuild_id == "pb-1"
    assert ws.context.prebuild.original_context is not None
    assert ws.context.prebuild.original_context.commit == "a" * 40
    inst = await alice.get_active_workspace_instance(
        pb.GetActiveWorkspaceInstanceRequest(workspace_id=response.workspace_id)
    )
    assert inst.instance.status.phase == Phase.PENDING


async def test_unknown_prebuild_is_not_found(alice: pb.WorkspacesServiceStub) -> None:
    await expect(
        Status.NOT_FOUND,
        alice.create_and_start_workspace(pb.CreateAndStartWorkspaceRequest(prebuild_id="nope")),
        "prebuild 'nope' does not exist",
    )


async def test_snapshot_context(alice: pb.WorkspacesServiceStub) -> None:
    wsid = await create(alice, "snapshot/abc123")
    ws = (await alice.get_workspace(pb.GetWorkspaceRequest(workspace_id=wsid))).result
    assert ws.context.snapshot is not None and ws.context.snapshot.snapshot_id == "abc123"
    assert WORKSPACE_ID.match(wsid)


async def test_idempotent_create(
    alice: pb.WorkspacesServiceStub, bob: pb.WorkspacesServiceStub
) -> None:
    request = pb.CreateAndStartWorkspaceRequest(idempotency_token="retry-1", context_url=REPO)
    first = await alice.create_and_start_workspace(request)
    again = await alice.create_and_start_workspace(request)
    assert again.workspace_id == first.workspace_id
    listed = await alice.list_workspaces(pb.ListWorkspacesRequest())
    assert len(listed.result) == 1
    await expect(
        Status.INVALID_ARGUMENT,
        alice.create_and_start_workspace(
            pb.CreateAndStartWorkspaceRequest(
                idempotency_token="retry-1", context_url="https://github.com/a/b"
            )
        ),
        "idempotency_token 'retry-1' was already used"
        " for a different CreateAndStartWorkspace request",
    )
    # Scoped per caller: bob's identical token makes his own workspace.
    other = await bob.create_and_start_workspace(request)
    assert other.workspace_id != first.workspace_id


async def test_failed_validation_records_nothing(alice: pb.WorkspacesServiceStub) -> None:
    bad = pb.CreateAndStartWorkspaceRequest(idempotency_token="t", context_url="nope nope")
    await expect(Status.INVALID_ARGUMENT, alice.create_and_start_workspace(bad))
    good = pb.CreateAndStartWorkspaceRequest(idempotency_token="t", context_url=REPO)
    assert WORKSPACE_ID.match((await alice.create_and_start_workspace(good)).workspace_id)


# ---------------------------------------------------------------------- GetWorkspace


async def test_get_workspace_errors(
    alice: pb.WorkspacesServiceStub, bob: pb.WorkspacesServiceStub
) -> None:
    wsid = await create(alice)
    await expect(
        Status.INVALID_ARGUMENT,
        alice.get_workspace(pb.GetWorkspaceRequest(workspace_id="not/an id")),
        "invalid workspace id 'not/an id': expected e.g. gitpodio-gitpod-isq6xj458lj",
    )
    await expect(
        Status.INVALID_ARGUMENT,
        alice.get_workspace(pb.GetWorkspaceRequest()),
        "workspace_id is required",
    )
    await expect(
        Status.NOT_FOUND,
        alice.get_workspace(pb.GetWorkspaceRequest(workspace_id=UNKNOWN_WS)),
        "workspace does not exist",
    )
    # Another user's workspace does not exist for them.
    await expect(
        Status.NOT_FOUND,
        bob.get_workspace(pb.GetWorkspaceRequest(workspace_id=wsid)),
        "workspace does not exist",
    )


async def test_shared_workspace_is_readable_but_tokens_stay_private(
    sim: Simulator, alice: pb.WorkspacesServiceStub, bob: pb.WorkspacesServiceStub
) -> None:
    wsid = await create(alice)
    iid = await active_instance_id(alice, wsid)
    sim.share(wsid)
    ws = (await bob.get_workspace(pb.GetWorkspaceRequest(workspace_id=wsid))).result
    assert ws.owner_id == "alice"
    active = await bob.get_active_workspace_instance(
        pb.GetActiveWorkspaceInstanceRequest(workspace_id=wsid)
    )
    assert active.instance.status.admission == pb.AdmissionLevel.EVERYONE
    denied = "insufficient permission to access workspace"
    await expect(
        Status.PERMISSION_DENIED,
        bob.get_owner_token(pb.GetOwnerTokenRequest(workspace_id=wsid)),
        denied,
    )
    await expect(
        Status.PERMISSION_DENIED,
        bob.get_workspace_instance_owner_token(
            pb.GetWorkspaceInstanceOwnerTokenRequest(instance_id=iid)
        ),
        denied,
    )
    await expect(
        Status.PERMISSION_DENIED,
        collect(bob.stop_workspace(pb.StopWorkspaceRequest(workspace_id=wsid))),
        denied,
    )
    await expect(
        Status.PERMISSION_DENIED,
        bob.start_workspace(pb.StartWorkspaceRequest(workspace_id=wsid)),
        denied,
    )
    # Still not in bob's own list.
    assert (await bob.list_workspaces(pb.ListWorkspacesRequest())).result == []
    sim.share(wsid, False)
    await expect(Status.NOT_FOUND, bob.get_workspace(pb.GetWorkspaceRequest(workspace_id=wsid)))


# ---------------------------------------------------------------------- owner tokens


async def test_owner_tokens(sim: Simulator, alice: pb.WorkspacesServiceStub) -> None:
    wsid = await create(alice)
    iid = await active_instance_id(alice, wsid)
    token = (await alice.get_owner_token(pb.GetOwnerTokenRequest(workspace_id=wsid))).token
    assert re.fullmatch(r"[0-9A-Za-z_.\-]{32}", token)
    by_instance = await alice.get_workspace_instance_owner_token(
        pb.GetWorkspaceInstanceOwnerTokenRequest(instance_id=iid)
    )
    assert by_instance.owner_token == token
    # A restart makes a new instance with a new token; GetOwnerToken follows the latest.
    sim.engine.stop_workspace(sim.engine.users["alice"], wsid)
    sim.run_until_idle()
    restarted = await alice.start_workspace(pb.StartWorkspaceRequest(workspace_id=wsid))
    assert restarted.instance_id != iid
    newer = (await alice.get_owner_token(pb.GetOwnerTokenRequest(workspace_id=wsid))).token
    assert newer != token


async def test_owner_token_errors(
    alice: pb.WorkspacesServiceStub, bob: pb.WorkspacesServiceStub
) -> None:
    wsid = await create(alice)
    iid = await active_instance_id(alice, wsid)
    await expect(Status.NOT_FOUND, bob.get_owner_token(pb.GetOwnerTokenRequest(workspace_id=wsid)))
    await expect(
        Status.NOT_FOUND,
        bob.get_workspace_instance_owner_token(
            pb.GetWorkspaceInstanceOwnerTokenRequest(instance_id=iid)
        ),
    )
    await expect(
        Status.INVALID_ARGUMENT,
        alice.get_workspace_instance_owner_token(
            pb.GetWorkspaceInstanceOwnerTokenRequest(instance_id="xyz")
        ),
        "invalid instance id 'xyz': expected a UUID",
    )
    await expect(
        Status.NOT_FOUND,
        alice.get_workspace_instance_owner_token(
            pb.GetWorkspaceInstanceOwnerTokenRequest(instance_id=UNKNOWN_INSTANCE)
        ),
        f"workspace instance {UNKNOWN_INSTANCE} does not exist",
    )
    await expect(
        Status.NOT_FOUND,
        alice.get_owner_token(pb.GetOwnerTokenRequest(workspace_id=UNKNOWN_WS)),
        "workspace does not exist",
    )


# ---------------------------------------------------------------------- StartWorkspace


async def test_start_answers_the_active_instance_and_starts_nothing(
    sim: Simulator, alice: pb.WorkspacesServiceStub
) -> None:
    wsid = await create(alice)
    iid = await active_instance_id(alice, wsid)
    response = await alice.start_workspace(pb.StartWorkspaceRequest(workspace_id=wsid))
    assert response.instance_id == iid
    assert response.workspace_url == f"https://{wsid}.ws-eu53.gitpod.io"
    assert len(sim.engine.instances) == 1


async def test_start_after_stop_makes_a_new_instance(
    sim: Simulator, alice: pb.WorkspacesServiceStub
) -> None:
    wsid = await create(alice)
    first = await active_instance_id(alice, wsid)
    sim.run_until_idle("5m")
    stops = await _stop_and_drain(sim, alice, wsid)
    assert stops == 2
    response = await alice.start_workspace(pb.StartWorkspaceRequest(workspace_id=wsid))
    assert UUID4.match(response.instance_id) and response.instance_id != first
    # The image of this repository was built by the first start: no IMAGEBUILD now.
    assert sim.phase_of(response.instance_id) is Phase.PENDING


async def test_idempotent_start(sim: Simulator, alice: pb.WorkspacesServiceStub) -> None:
    wsid = await create(alice)
    sim.run_until_idle("5m")
    await _stop_and_drain(sim, alice, wsid)
    request = pb.StartWorkspaceRequest(idempotency_token="s1", workspace_id=wsid)
    first = await alice.start_workspace(request)
    sim.run_until_idle("5m")
    await _stop_and_drain(sim, alice, wsid)
    again = await alice.start_workspace(request)
    assert again.instance_id == first.instance_id  # the first answer again, nothing started
    assert sim.phase_of(first.instance_id) is Phase.STOPPED


async def test_start_errors(alice: pb.WorkspacesServiceStub, bob: pb.WorkspacesServiceStub) -> None:
    wsid = await create(alice)
    await expect(
        Status.NOT_FOUND, alice.start_workspace(pb.StartWorkspaceRequest(workspace_id=UNKNOWN_WS))
    )
    await expect(
        Status.INVALID_ARGUMENT, alice.start_workspace(pb.StartWorkspaceRequest(workspace_id="x"))
    )
    await expect(Status.NOT_FOUND, bob.start_workspace(pb.StartWorkspaceRequest(workspace_id=wsid)))


# ---------------------------------------------------------------------- GetActiveWorkspaceInstance


async def test_active_instance(sim: Simulator, alice: pb.WorkspacesServiceStub) -> None:
    wsid = await create(alice)
    response = await alice.get_active_workspace_instance(
        pb.GetActiveWorkspaceInstanceRequest(workspace_id=wsid)
    )
    inst = response.instance
    assert UUID4.match(inst.instance_id)
    assert inst.workspace_id == wsid
    assert inst.created_at == sim.now_datetime()
    assert inst.status.phase == Phase.IMAGEBUILD
    assert inst.status.url == f"https://{wsid}.ws-eu53.gitpod.io"
    assert inst.status.admission == pb.AdmissionLevel.OWNER_ONLY
    assert inst.status.conditions is not None
    assert inst.status.conditions.stopped_by_request is None
    await _stop_and_drain(sim, alice, wsid)
    await expect(
        Status.FAILED_PRECONDITION,
        alice.get_active_workspace_instance(
            pb.GetActiveWorkspaceInstanceRequest(workspace_id=wsid)
        ),
        f"workspace {wsid} has no active instance",
    )
    await expect(
        Status.NOT_FOUND,
        alice.get_active_workspace_instance(
            pb.GetActiveWorkspaceInstanceRequest(workspace_id=UNKNOWN_WS)
        ),
    )


# ---------------------------------------------------------------------- StopWorkspace


async def _stop_and_drain(
    sim: Simulator, stub: pb.WorkspacesServiceStub, wsid: str, token: str = ""
) -> int:
    """Stop and follow the stream to its end, moving simulated time while it waits."""
    request = pb.StopWorkspaceRequest(workspace_id=wsid, idempotency_token=token)
    return len(await drive(sim, collect(stub.stop_workspace(request))))


async def test_stop_running_workspace_sends_stopping_then_stopped(
    sim: Simulator, alice: pb.WorkspacesServiceStub
) -> None:
    wsid = await create(alice)
    iid = await active_instance_id(alice, wsid)
    sim.run_until_idle("5m")
    assert sim.phase_of(iid) is Phase.RUNNING
    assert await _stop_and_drain(sim, alice, wsid) == 2
    inst = sim.instance(iid)
    assert inst.phase is Phase.STOPPED
    assert inst.status.stopped_by_request is True


async def test_stop_errors(
    sim: Simulator, alice: pb.WorkspacesServiceStub, bob: pb.WorkspacesServiceStub
) -> None:
    wsid = await create(alice)
    await expect(
        Status.NOT_FOUND,
        collect(alice.stop_workspace(pb.StopWorkspaceRequest(workspace_id=UNKNOWN_WS))),
    )
    await expect(
        Status.INVALID_ARGUMENT,
        collect(alice.stop_workspace(pb.StopWorkspaceRequest(workspace_id="!"))),
    )
    await expect(
        Status.NOT_FOUND, collect(bob.stop_workspace(pb.StopWorkspaceRequest(workspace_id=wsid)))
    )
    await _stop_and_drain(sim, alice, wsid)
    await expect(
        Status.FAILED_PRECONDITION,
        collect(alice.stop_workspace(pb.StopWorkspaceRequest(workspace_id=wsid))),
        f"workspace {wsid} has no active instance to stop",
    )


async def test_stop_of_a_stopping_instance_sends_only_stopped(
    sim: Simulator, alice: pb.WorkspacesServiceStub
) -> None:
    wsid = await create(alice)
    sim.engine.stop_workspace(sim.engine.users["alice"], wsid)
    assert await _stop_and_drain(sim, alice, wsid) == 1


async def test_idempotent_stop_replays_without_a_second_action(
    sim: Simulator, alice: pb.WorkspacesServiceStub
) -> None:
    wsid = await create(alice)
    iid = await active_instance_id(alice, wsid)
    assert await _stop_and_drain(sim, alice, wsid, token="stop-1") == 2
    # Same token, instance already STOPPED: the stream ends at once, no FAILED_PRECONDITION.
    assert await _stop_and_drain(sim, alice, wsid, token="stop-1") == 0
    assert sim.phase_of(iid) is Phase.STOPPED


# ---------------------------------------------------------------------- ListWorkspaces


async def test_list_pages_and_sizes(sim: Simulator, alice: pb.WorkspacesServiceStub) -> None:
    for i in range(45):
        await create(alice, f"https://github.com/org/repo{i}")
    first = await alice.list_workspaces(pb.ListWorkspacesRequest())
    assert len(first.result) == 20 and first.next_page_token
    seen = [item.result.workspace_id for item in first.result]
    token = first.next_page_token
    while token:
        page = await alice.list_workspaces(
            pb.ListWorkspacesRequest(pagination=pb.Pagination(page_size=20, page_token=token))
        )
        seen += [item.result.workspace_id for item in page.result]
        token = page.next_page_token
    assert len(seen) == 45 == len(set(seen))
    everything = await alice.list_workspaces(
        pb.ListWorkspacesRequest(pagination=pb.Pagination(page_size=100))
    )
    assert len(everything.result) == 45 and everything.next_page_token == ""
    message = "invalid pagination page size (must be 0 < x < 100)"
    for bad in (101, -1):
        await expect(
            Status.INVALID_ARGUMENT,
            alice.list_workspaces(
                pb.ListWorkspacesRequest(pagination=pb.Pagination(page_size=bad))
            ),
            message,
        )


async def test_list_order_and_items(sim: Simulator, alice: pb.WorkspacesServiceStub) -> None:
    old = await create(alice, "https://github.com/org/old")
    sim.advance("1m")
    newer = await create(alice, "https://github.com/org/newer")
    sim.advance("1m")
    await _stop_and_drain(sim, alice, newer)
    sim.advance("1m")
    # `old` is still active: it comes first even though `newer` changed later.
    listed = await alice.list_workspaces(pb.ListWorkspacesRequest())
    assert [item.result.workspace_id for item in listed.result] == [old, newer]
    latest = listed.result[1].last_active_instances
    assert latest is not None and latest.status.phase == Phase.STOPPED
    await _stop_and_drain(sim, alice, old)
    listed = await alice.list_workspaces(pb.ListWorkspacesRequest())
    assert [item.result.workspace_id for item in listed.result] == [old, newer]


async def test_list_shows_only_own_workspaces(
    alice: pb.WorkspacesServiceStub, bob: pb.WorkspacesServiceStub
) -> None:
    mine = await create(alice)
    theirs = await create(bob)
    assert [
        i.result.workspace_id
        for i in (await alice.list_workspaces(pb.ListWorkspacesRequest())).result
    ] == [mine]
    assert [
        i.result.workspace_id
        for i in (await bob.list_workspaces(pb.ListWorkspacesRequest())).result
    ] == [theirs]


async def test_list_page_tokens_are_checked(
    alice: pb.WorkspacesServiceStub, bob: pb.WorkspacesServiceStub
) -> None:
    for i in range(3):
        await create(alice, f"https://github.com/org/r{i}")
    page = await alice.list_workspaces(
        pb.ListWorkspacesRequest(pagination=pb.Pagination(page_size=1))
    )
    message = (
        "invalid page_token: not issued by this server for this caller, or expired"
        " (each caller keeps their 256 most recently used page tokens)"
    )
    await expect(
        Status.INVALID_ARGUMENT,
        alice.list_workspaces(
            pb.ListWorkspacesRequest(pagination=pb.Pagination(page_token="forged"))
        ),
        message,
    )
    await expect(
        Status.INVALID_ARGUMENT,
        bob.list_workspaces(
            pb.ListWorkspacesRequest(pagination=pb.Pagination(page_token=page.next_page_token))
        ),
        message,
    )


async def test_paging_while_the_list_changes_never_repeats(
    sim: Simulator, alice: pb.WorkspacesServiceStub
) -> None:
    for i in range(10):
        await create(alice, f"https://github.com/org/r{i}")
    page = await alice.list_workspaces(
        pb.ListWorkspacesRequest(pagination=pb.Pagination(page_size=4))
    )
    seen = [i.result.workspace_id for i in page.result]
    # Activity reshuffles the order mid-listing: stop the newest, create more.
    await _stop_and_drain(sim, alice, seen[0])
    await create(alice, "https://github.com/org/late")
    token = page.next_page_token
    while token:
        page = await alice.list_workspaces(
            pb.ListWorkspacesRequest(pagination=pb.Pagination(page_size=4, page_token=token))
        )
        seen += [i.result.workspace_id for i in page.result]
        token = page.next_page_token
    assert len(seen) == len(set(seen)) == 10


async def test_field_mask_prunes_items(alice: pb.WorkspacesServiceStub) -> None:
    wsid = await create(alice)
    listed = await alice.list_workspaces(
        pb.ListWorkspacesRequest(
            field_mask=FieldMask(
                paths=["result.workspace_id", "last_active_instances.status.phase"]
            )
        )
    )
    item = listed.result[0]
    assert item.result is not None and item.result.workspace_id == wsid
    assert item.result.owner_id == "" and item.result.context is None
    assert item.last_active_instances is not None
    assert item.last_active_instances.instance_id == ""
    assert item.last_active_instances.status is not None
    assert item.last_active_instances.status.phase == Phase.IMAGEBUILD
    assert item.last_active_instances.status.url == ""
    err = await expect(
        Status.INVALID_ARGUMENT,
        alice.list_workspaces(
            pb.ListWorkspacesRequest(field_mask=FieldMask(paths=["result.nope"]))
        ),
    )
    assert err.message is not None and "result.nope" in err.message


# ---------------------------------------------------------------------- listen streams


async def test_listen_errors(
    alice: pb.WorkspacesServiceStub, bob: pb.WorkspacesServiceStub
) -> None:
    wsid = await create(alice)
    iid = await active_instance_id(alice, wsid)
    for rpc in (alice.listen_to_workspace_instance, alice.listen_to_image_build_logs):
        request_type = (
            pb.ListenToWorkspaceInstanceRequest
            if rpc == alice.listen_to_workspace_instance
            else pb.ListenToImageBuildLogsRequest
        )
        await expect(Status.NOT_FOUND, collect(rpc(request_type(instance_id=UNKNOWN_INSTANCE))))
        await expect(Status.INVALID_ARGUMENT, collect(rpc(request_type(instance_id="nope"))))
        await expect(
            Status.INVALID_ARGUMENT, collect(rpc(request_type())), "instance_id is required"
        )
    await expect(
        Status.NOT_FOUND,
        collect(
            bob.listen_to_workspace_instance(pb.ListenToWorkspaceInstanceRequest(instance_id=iid))
        ),
    )


async def test_listen_to_a_stopped_instance_sends_its_status_and_ends(
    sim: Simulator, alice: pb.WorkspacesServiceStub
) -> None:
    wsid = await create(alice)
    iid = await active_instance_id(alice, wsid)
    await _stop_and_drain(sim, alice, wsid)
    messages = await collect(
        alice.listen_to_workspace_instance(pb.ListenToWorkspaceInstanceRequest(instance_id=iid))
    )
    assert [m.instance_status.phase for m in messages] == [Phase.STOPPED]
