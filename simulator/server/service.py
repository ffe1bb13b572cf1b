"""gitpod.v1.WorkspacesService over grpclib: a thin adapter from the wire to the engine.

Every method goes through the one RPC boundary (:mod:`simulator.server.boundary`: world,
authentication, RPC faults, error mapping, journal, activity), then makes one engine call of the
call's world, converts and sends. Streams subscribe to the hub in the same step as they read the
current state (no await in between), so they never miss or repeat a change.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from grpclib.const import Handler

from simulator.core.errors import InvalidArgument
from simulator.core.fault_book import StreamFaults
from simulator.core.model import Instance, Workspace
from simulator.core.transitions import Phase
from simulator.server.boundary import API, API_SERVICE, Call, Method, mapping
from simulator.server.broadcast import Delivery, Subscription
from simulator.server.codec import Preencoded
from simulator.server.convert import (
    STOP_PAYLOAD,
    as_read,
    instance_pb,
    listen_payload,
    log_payload,
    workspace_pb,
)
from simulator.server.deferred import deferred_module, message_type
from simulator.server.field_mask import FieldMaskError, FieldMaskPlan
from simulator.server.stream_faults import with_faults
from simulator.server.wire import (
    get_workspace_response_bytes,
    instance_bytes,
    list_workspaces_response_bytes,
    string_field_bytes,
)
from simulator.server.world import Worlds

if TYPE_CHECKING:
    import betterproto2

    from simulator._proto.gitpod import v1 as pb
else:  # loaded by the first call that needs them (start-up time: see deferred.py)
    betterproto2 = deferred_module("betterproto2")
    pb = deferred_module("simulator._proto.gitpod.v1")

SERVICE_NAME = API_SERVICE
_STOP = Preencoded(STOP_PAYLOAD)
MAX_MASK_PATHS = 64
WORKSPACE_ANSWER_CACHE = 4096


def _method(name: str, attr: str, streaming: bool = False) -> Method:
    """One RPC: its path, the method that serves it, and its message classes (on first use)."""
    return Method.of(
        f"/{SERVICE_NAME}/{name}",
        attr,
        API,
        message_type(pb, f"{name}Request"),
        message_type(pb, f"{name}Response"),
        streaming=streaming,
    )


_METHODS = (
    _method("ListWorkspaces", "list_workspaces"),
    _method("GetWorkspace", "get_workspace"),
    _method("GetOwnerToken", "get_owner_token"),
    _method("CreateAndStartWorkspace", "create_and_start_workspace"),
    _method("StartWorkspace", "start_workspace"),
    _method("GetActiveWorkspaceInstance", "get_active_workspace_instance"),
    _method("GetWorkspaceInstanceOwnerToken", "get_workspace_instance_owner_token"),
    _method("ListenToWorkspaceInstance", "listen_to_workspace_instance", streaming=True),
    _method("ListenToImageBuildLogs", "listen_to_image_build_logs", streaming=True),
    _method("StopWorkspace", "stop_workspace", streaming=True),
)


def _with_stream_faults(call: Call, method: str, inst: Instance) -> Any:
    """The call's stream, with the stream faults that hit it (decided by the engine's book)."""
    hits = call.world.engine.take_stream_faults(f"/{SERVICE_NAME}/{method}", call.caller.id, inst)
    return with_faults(call.stream, StreamFaults.of(hits)) if hits else call.stream


def _workspace_answer(call: Call, ws: Workspace) -> bytes:
    """GetWorkspaceResponse{result: ws}, encoded once per workspace (it never changes after
    creation) and kept per world; ListWorkspaces items begin with the same bytes."""
    cache = call.world.answers
    payload = cache.get(ws.id)
    if payload is None:
        payload = get_workspace_response_bytes(ws)
        cache[ws.id] = payload
        if len(cache) > WORKSPACE_ANSWER_CACHE:
            del cache[next(iter(cache))]
    return payload


class WorkspacesService:
    """Serves the worlds that ``worlds`` resolves (pass it to a grpclib ``Server``)."""

    def __init__(self, worlds: Worlds) -> None:
        self._worlds = worlds
        self._mapping: dict[str, Handler] | None = None

    def __mapping__(self) -> dict[str, Handler]:
        """Built once: grpclib asks on every server, and each in-memory channel is one."""
        if self._mapping is None:
            self._mapping = mapping(self._worlds, self, _METHODS)
        return self._mapping

    # ------------------------------------------------------------------ unary RPCs

    def list_workspaces(self, call: Call) -> Any:
        request: pb.ListWorkspacesRequest = call.request
        paths = request.field_mask.paths if request.field_mask is not None else []
        if len(paths) > MAX_MASK_PATHS:
            raise InvalidArgument(
                f"invalid field_mask: {len(paths)} paths (at most {MAX_MASK_PATHS})"
            )
        try:
            mask = FieldMaskPlan.compile(pb.ListWorkspacesResponseWorkspaceAndInstance, paths)
        except FieldMaskError as exc:
            raise InvalidArgument(f"invalid field_mask: {exc}") from None
        pagination = request.pagination
        page = call.world.engine.list_workspaces(
            call.caller,
            pagination.page_size if pagination is not None else 0,
            pagination.page_token if pagination is not None else "",
        )
        if mask.is_everything:  # the common case, encoded by hand (the same bytes)
            encoded = [
                (
                    _workspace_answer(call, ws),
                    None if inst is None else instance_bytes(inst, as_read(inst.status, ws.shared)),
                )
                for ws, inst in page.items
            ]
            return Preencoded(list_workspaces_response_bytes(encoded, page.next_page_token))
        items = []
        for ws, inst in page.items:
            item = pb.ListWorkspacesResponseWorkspaceAndInstance(
                result=workspace_pb(ws),
                last_active_instances=instance_pb(inst, ws.shared) if inst is not None else None,
            )
            items.append(mask.apply(item))
        return pb.ListWorkspacesResponse(next_page_token=page.next_page_token, result=items)

    def get_workspace(self, call: Call) -> Any:
        ws = call.world.engine.get_workspace(call.caller, call.request.workspace_id)
        return Preencoded(_workspace_answer(call, ws))

    def get_owner_token(self, call: Call) -> Any:
        token = call.world.engine.owner_token(call.caller, call.request.workspace_id)
        return pb.GetOwnerTokenResponse(token=token)

    def create_and_start_workspace(self, call: Call) -> Any:
        request: pb.CreateAndStartWorkspaceRequest = call.request
        field, value = betterproto2.which_one_of(request, "source")
        ws = call.world.engine.create_workspace(
            call.caller,
            context_url=value if field == "context_url" else None,
            prebuild_id=value if field == "prebuild_id" else None,
            idempotency_token=request.idempotency_token,
        )
        return Preencoded(string_field_bytes(ws.id))  # CreateAndStartWorkspaceResponse

    def start_workspace(self, call: Call) -> Any:
        request: pb.StartWorkspaceRequest = call.request
        inst = call.world.engine.start_workspace(
            call.caller, request.workspace_id, request.idempotency_token
        )
        return Preencoded(string_field_bytes(inst.id, inst.status.url))  # StartWorkspaceResponse

    def get_active_workspace_instance(self, call: Call) -> Any:
        engine = call.world.engine
        inst = engine.active_instance(call.caller, call.request.workspace_id)
        shared = engine.workspaces[inst.workspace_id].shared
        return pb.GetActiveWorkspaceInstanceResponse(instance=instance_pb(inst, shared))

    def get_workspace_instance_owner_token(self, call: Call) -> Any:
        inst = call.world.engine.instance_for(
            call.caller, call.request.instance_id, owner_only=True
        )
        return pb.GetWorkspaceInstanceOwnerTokenResponse(owner_token=inst.owner_token)

    # ------------------------------------------------------------------ streaming RPCs

    async def listen_to_workspace_instance(self, call: Call) -> None:
        """The current status, then every change in order; ends right after STOPPED."""
        world, stream = call.world, call.stream
        engine, hub, activity = world.engine, world.hub, world.activity
        inst = engine.instance_for(call.caller, call.request.instance_id)
        stream = _with_stream_faults(call, "ListenToWorkspaceInstance", inst)

        async def send(payload: bytes) -> None:
            await stream.send_message(Preencoded(payload))
            activity.io()

        if inst.phase is Phase.STOPPED:  # admission as the workspace's sharing says now
            shared = engine.workspaces[inst.workspace_id].shared
            await send(listen_payload(as_read(inst.status, shared)))
            return
        current = hub.current_payload(inst.id, inst.status)
        sub = hub.subscribe_status(inst.id, call.caller.id)  # unsharing revokes it
        try:
            await send(current)
            send_message, io = stream.send_message, activity.io
            while (item := await sub.next()) is not None:
                assert isinstance(item, Delivery)
                await send_message(Preencoded(item.payload))  # as send() does, one frame less
                io()
                if item.change.status.phase is Phase.STOPPED:
                    return
        finally:
            sub.cancel()

    async def listen_to_image_build_logs(self, call: Call) -> None:
        """Lines so far, then new lines while the build runs; no build: ends at once."""
        world = call.world
        inst = world.engine.instance_for(call.caller, call.request.instance_id)
        stream = _with_stream_faults(call, "ListenToImageBuildLogs", inst)
        build = inst.build
        if build is None:
            world.coverage_feed.build_log("no-build")
            return
        backlog = list(build.lines)
        sub: Subscription | None = (
            None if build.finished else world.hub.subscribe_logs(inst.id, call.caller.id)
        )
        if sub is not None:
            world.engine.follow_build(inst)  # its next lines reach the hub at their instants
        world.coverage_feed.build_log("replayed" if sub is None else "live")
        try:
            for line in backlog:
                await stream.send_message(Preencoded(log_payload(line)))
                world.activity.io()
            if sub is None:
                return
            while (item := await sub.next()) is not None:
                assert isinstance(item, bytes)
                await stream.send_message(Preencoded(item))
                world.activity.io()
        finally:
            if sub is not None:
                sub.cancel()

    async def stop_workspace(self, call: Call) -> None:
        """One message per phase change after the request; ends when the instance is STOPPED."""
        world, request = call.world, call.request
        result = world.engine.stop_workspace(
            call.caller, request.workspace_id, request.idempotency_token
        )
        world.kick()
        inst = result.instance
        stream = _with_stream_faults(call, "StopWorkspace", inst)
        seen = result.phase_before
        if seen is Phase.STOPPED:
            return
        sub = world.hub.subscribe_status(inst.id)
        try:
            if inst.phase is not seen:
                seen = inst.phase
                await stream.send_message(_STOP)
                world.activity.io()
            while seen is not Phase.STOPPED and (item := await sub.next()) is not None:
                assert isinstance(item, Delivery)
                phase = item.change.status.phase
                if phase is not seen:
                    seen = phase
                    await stream.send_message(_STOP)
                    world.activity.io()
        finally:
            sub.cancel()
