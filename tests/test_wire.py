"""The hand-written encoder gives exactly betterproto2's bytes, and Google's parser agrees."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from simulator._proto.gitpod import v1 as pb
from simulator.core.model import InstanceStatus
from simulator.core.transitions import Phase
from simulator.server.convert import status_pb
from simulator.server.reflection import message_class
from simulator.server.wire import listen_response_bytes

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
