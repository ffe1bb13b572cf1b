"""The hand-written encoders give exactly betterproto2's bytes, and Google's parser agrees."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from simulator._proto.gitpod import v1 as pb
from simulator.core.model import Instance, InstanceStatus, Workspace, WorkspaceContext
from simulator.core.plan import LifecyclePlan
from simulator.core.transitions import Phase
from simulator.server.convert import as_read, instance_pb, status_pb, workspace_pb
from simulator.server.reflection import message_class
from simulator.server.wire import (
    get_workspace_response_bytes,
    instance_bytes,
    list_workspaces_response_bytes,
    listen_response_bytes,
    string_field_bytes,
)

statuses = st.builds(
    InstanceStatus,
    version=st.integers(0, 2**64 - 1),
    phase=st.sampled_from(list(Phase)),
    workspace_id=st.text(max_size=36),  # the URL's parts: any text, the encoder escapes nothing
    cluster=st.text(max_size=20),
    admission_everyone=st.booleans(),
    failed=st.text(max_size=80),
    timeout=st.text(max_size=80),
    message=st.text(max_size=80),
    first_user_activity=st.none() | st.integers(0, 2**50),
    stopped_by_request=st.none() | st.booleans(),
)


@settings(max_examples=300, deadline=None)
@given(statuses)
def test_same_bytes_as_betterproto2(status: InstanceStatus) -> None:
    expected = bytes(pb.ListenToWorkspaceInstanceResponse(instance_status=status_pb(status)))
    assert listen_response_bytes(status) == expected


@settings(max_examples=100, deadline=None)
@given(statuses)
def test_google_protobuf_reads_it_back(status: InstanceStatus) -> None:
    cls = message_class("gitpod.v1.ListenToWorkspaceInstanceResponse")
    parsed = cls.FromString(listen_response_bytes(status)).instance_status
    assert parsed.status_version == status.version
    assert parsed.phase == int(status.phase)
    assert parsed.url == status.url and parsed.message == status.message
    assert parsed.conditions.failed == status.failed
    assert parsed.conditions.HasField("stopped_by_request") == (
        status.stopped_by_request is not None
    )


workspaces = st.builds(
    Workspace,
    id=st.text(max_size=40),
    owner_id=st.text(max_size=40),
    context=st.builds(
        WorkspaceContext,
        context_url=st.text(max_size=80),
        kind=st.sampled_from(["git", "prebuild", "snapshot"]),
        normalized_url=st.text(max_size=80),
        commit=st.text(max_size=40),
        prebuild_id=st.text(max_size=20),
        snapshot_id=st.text(max_size=20),
    ),
    description=st.text(max_size=200),
    created_at=st.integers(0, 2**50),
    seq=st.integers(0, 2**20),
)


@settings(max_examples=300, deadline=None)
@given(workspaces)
def test_get_workspace_response_same_bytes_as_betterproto2(ws: Workspace) -> None:
    expected = bytes(pb.GetWorkspaceResponse(result=workspace_pb(ws)))
    assert get_workspace_response_bytes(ws) == expected


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=60), st.text(max_size=60))
def test_string_field_responses_same_bytes_as_betterproto2(first: str, second: str) -> None:
    assert string_field_bytes(first) == bytes(
        pb.CreateAndStartWorkspaceResponse(workspace_id=first)
    )
    assert string_field_bytes(first, second) == bytes(
        pb.StartWorkspaceResponse(instance_id=first, workspace_url=second)
    )


def _instance(status: InstanceStatus, instance_id: str, created_at: int) -> Instance:
    return Instance(
        id=instance_id,
        owner_id="o",
        created_at=created_at,
        status=status,
        plan=LifecyclePlan(),
        repository="r",
        phase_started_at=created_at,
    )


listed = st.lists(
    st.tuples(
        workspaces,
        st.none() | st.tuples(statuses, st.text(max_size=36), st.integers(0, 2**50)),
        st.booleans(),
    ),
    max_size=4,
)


@settings(max_examples=200, deadline=None)
@given(listed, st.text(max_size=30))
def test_list_workspaces_response_same_bytes_as_betterproto2(
    items: list[tuple[Workspace, tuple[InstanceStatus, str, int] | None, bool]], token: str
) -> None:
    """ListWorkspaces items are GetWorkspace's workspace bytes and the instance as a read answers
    it (admission from the workspace's sharing); a workspace without an instance has none."""
    expected = pb.ListWorkspacesResponse(next_page_token=token, result=[])
    encoded: list[tuple[bytes, bytes | None]] = []
    for ws, drawn, shared in items:
        inst = None if drawn is None else _instance(*drawn)
        expected.result.append(
            pb.ListWorkspacesResponseWorkspaceAndInstance(
                result=workspace_pb(ws),
                last_active_instances=None if inst is None else instance_pb(inst, shared),
            )
        )
        encoded.append(
            (
                get_workspace_response_bytes(ws),
                None if inst is None else instance_bytes(inst, as_read(inst.status, shared)),
            )
        )
    assert list_workspaces_response_bytes(encoded, token) == bytes(expected)
