"""Engine state -> gitpod.v1 wire messages. The only module that knows both sides."""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING

from simulator.core.model import Instance, InstanceStatus, Workspace
from simulator.core.simtime import to_datetime
from simulator.core.transitions import Phase
from simulator.server.deferred import deferred_module
from simulator.server.wire import listen_response_bytes

if TYPE_CHECKING:
    from simulator._proto.gitpod import v1 as pb
else:  # loaded by the first message built (start-up time: see deferred.py)
    pb = deferred_module("simulator._proto.gitpod.v1")


@cache
def _pb_phases() -> tuple[pb.WorkspaceInstanceStatusPhase, ...]:
    return tuple(pb.WorkspaceInstanceStatusPhase(phase.value) for phase in Phase)


def phase_pb(phase: Phase) -> pb.WorkspaceInstanceStatusPhase:
    """The core's phase as the gitpod.v1 enum (same names and values)."""
    return _pb_phases()[phase]


def workspace_pb(ws: Workspace) -> pb.Workspace:
    ctx = ws.context
    git = pb.WorkspaceContextGit(normalized_context_url=ctx.normalized_url, commit=ctx.commit)
    if ctx.kind == "prebuild":
        context = pb.WorkspaceContext(
            context_url=ctx.context_url,
            prebuild=pb.WorkspaceContextPrebuild(original_context=git, prebuild_id=ctx.prebuild_id),
        )
    elif ctx.kind == "snapshot":
        context = pb.WorkspaceContext(
            context_url=ctx.context_url,
            snapshot=pb.WorkspaceContextSnapshot(snapshot_id=ctx.snapshot_id),
        )
    else:
        context = pb.WorkspaceContext(context_url=ctx.context_url, git=git)
    return pb.Workspace(
        workspace_id=ws.id,
        owner_id=ws.owner_id,
        project_id="",
        context=context,
        description=ws.description,
    )


def status_pb(status: InstanceStatus) -> pb.WorkspaceInstanceStatus:
    first = status.first_user_activity
    return pb.WorkspaceInstanceStatus(
        status_version=status.version,
        phase=_pb_phases()[status.phase],
        conditions=pb.WorkspaceInstanceStatusConditions(
            failed=status.failed,
            timeout=status.timeout,
            first_user_activity=to_datetime(first) if first is not None else None,
            stopped_by_request=status.stopped_by_request,
        ),
        message=status.message,
        url=status.url,
        admission=(
            pb.AdmissionLevel.EVERYONE
            if status.admission_everyone
            else pb.AdmissionLevel.OWNER_ONLY
        ),
    )


def as_read(status: InstanceStatus, shared: bool) -> InstanceStatus:
    """``status`` as a read answers it: admission is the workspace's sharing now, for every
    instance (a STOPPED one included), as upstream computed it on every read. An active
    instance's status already says so (sharing it is a status change); a STOPPED one keeps
    the admission it had when it stopped, and no status change follows STOPPED."""
    if status.admission_everyone == shared:
        return status
    return status._replace(admission_everyone=shared)


def instance_pb(inst: Instance, shared: bool) -> pb.WorkspaceInstance:
    """The instance as a read answers it; ``shared``: its workspace's sharing (see as_read)."""
    return pb.WorkspaceInstance(
        instance_id=inst.id,
        workspace_id=inst.workspace_id,
        created_at=to_datetime(inst.created_at),
        status=status_pb(as_read(inst.status, shared)),
    )


def listen_payload(status: InstanceStatus) -> bytes:
    """A ListenToWorkspaceInstanceResponse, serialised once for every listener (by the fast
    encoder in :mod:`simulator.server.wire`, byte for byte what betterproto2 would write)."""
    return listen_response_bytes(status)


def log_payload(line: str) -> bytes:
    return bytes(pb.ListenToImageBuildLogsResponse(line=line))


STOP_PAYLOAD = b""
"""An encoded StopWorkspaceResponse: the message has no fields (tests/test_startup.py compares it
with betterproto2's encoding)."""
