"""Hand-written protobuf encoders for the messages sent most: ListenToWorkspaceInstanceResponse,
GetWorkspaceResponse (once per workspace), ListWorkspacesResponse (its workspaces' parts as
GetWorkspace's) and the string-only replies of CreateAndStartWorkspace and StartWorkspace.

Why: every status change is encoded for its listeners, and with many instances that encoding is
most of the fan-out's cost; betterproto2 spends most of it on generic field handling and two
datetime conversions. This encoder writes the same bytes (tests/test_wire.py checks it against
betterproto2 and Google's protobuf on random statuses) in a fraction of the time.
"""

from __future__ import annotations

from simulator.core.model import Instance, InstanceStatus, Workspace
from simulator.core.simtime import SECOND
from simulator.core.transitions import Phase


def _varint(value: int) -> bytes:
    if value < 0x80:
        return _SMALL[value]
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


_SMALL = [bytes((n,)) for n in range(0x80)]


def _len_field(tag: int, payload: bytes) -> bytes:
    return bytes((tag,)) + _varint(len(payload)) + payload


def _string(tag: int, text: str) -> bytes:
    return _len_field(tag, text.encode()) if text else b""


def _timestamp(micros: int) -> bytes:
    seconds, rest = divmod(micros, SECOND)
    out = b""
    if seconds:
        out += b"\x08" + _varint(seconds & 0xFFFFFFFFFFFFFFFF)
    if rest:
        out += b"\x10" + _varint(rest * 1000)
    return out


def status_bytes(status: InstanceStatus) -> bytes:
    """gitpod.v1.WorkspaceInstanceStatus, as produced by `convert.status_pb` (written inline: it
    is encoded once per status change of every followed instance)."""
    conditions = b""
    failed, timeout = status.failed, status.timeout
    if failed:
        conditions = _string(0x0A, failed)
    if timeout:
        conditions += _string(0x12, timeout)
    first = status.first_user_activity
    if first is not None:
        conditions += _len_field(0x4A, _timestamp(first))
    stopped = status.stopped_by_request
    if stopped is not None:
        conditions += b"\x58\x01" if stopped else b"\x58\x00"
    version = status.version
    out = (b"\x08" + _varint(version) if version else b"") + _PHASE_FIELDS[status.phase]
    size = len(conditions)
    out += b"\x1a" + (_SMALL[size] if size < 0x80 else _varint(size)) + conditions
    message, url = status.message, status.url
    if message:
        out += _string(0x22, message)
    if url:
        out += _string(0x2A, url)
    return out + (b"\x30\x02" if status.admission_everyone else b"\x30\x01")


_PHASE_FIELDS = tuple(b"\x10" + _varint(value) if value else b"" for value in range(max(Phase) + 1))
"""The phase field by the phase's value (a tuple: an enum's hash is a Python call)."""


def listen_response_bytes(status: InstanceStatus) -> bytes:
    """gitpod.v1.ListenToWorkspaceInstanceResponse{instance_status: status}."""
    return _len_field(0x0A, status_bytes(status))


def workspace_bytes(ws: Workspace) -> bytes:
    """gitpod.v1.Workspace, as produced by `convert.workspace_pb` (project_id is always empty)."""
    ctx = ws.context
    git = _string(0x0A, ctx.normalized_url) + _string(0x12, ctx.commit)
    if ctx.kind == "prebuild":
        details = _len_field(0x1A, _len_field(0x0A, git) + _string(0x12, ctx.prebuild_id))
    elif ctx.kind == "snapshot":
        details = _len_field(0x22, _string(0x0A, ctx.snapshot_id))
    else:
        details = _len_field(0x12, git)
    context = _string(0x0A, ctx.context_url) + details
    return (
        _string(0x0A, ws.id)
        + _string(0x12, ws.owner_id)
        + _len_field(0x22, context)
        + _string(0x2A, ws.description)
    )


def get_workspace_response_bytes(ws: Workspace) -> bytes:
    """gitpod.v1.GetWorkspaceResponse{result: ws}."""
    return _len_field(0x0A, workspace_bytes(ws))


def string_field_bytes(*values: str) -> bytes:
    """A message whose fields 1, 2, ... are the strings ``values`` (CreateAndStartWorkspace's and
    StartWorkspace's responses)."""
    return b"".join(_string((n << 3) | 2, value) for n, value in enumerate(values, 1))


def instance_bytes(inst: Instance, status: InstanceStatus) -> bytes:
    """gitpod.v1.WorkspaceInstance, as produced by `convert.instance_pb` (``status``: the one a
    read answers, `convert.as_read`)."""
    return (
        _string(0x0A, inst.id)
        + _string(0x12, inst.workspace_id)
        + _len_field(0x1A, _timestamp(inst.created_at))
        + _len_field(0x22, status_bytes(status))
    )


def list_workspaces_response_bytes(items: list[tuple[bytes, bytes | None]], token: str) -> bytes:
    """gitpod.v1.ListWorkspacesResponse: ``items`` are each workspace's
    `get_workspace_response_bytes` (field 1 of a WorkspaceAndInstance is GetWorkspaceResponse's
    field 1) and its latest instance's `instance_bytes` (None: it has none)."""
    out = _string(0x0A, token)
    for workspace, instance in items:
        item = workspace if instance is None else workspace + _len_field(0x12, instance)
        out += _len_field(0x12, item)
    return out
