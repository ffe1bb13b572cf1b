"""gitpod.v1.WorkspacesService over grpclib: a thin adapter from the wire to the engine.

Every handler takes grpclib's raw ``Stream`` (the generated base class hides metadata), then:
authenticate -> bring the engine up to the clock -> one engine call -> convert -> send. Engine
errors become the gRPC status they name. Streams subscribe to the hub in the same step as they
read the current state (no await in between), so they never miss or repeat a change.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

import betterproto2
from grpclib.const import Cardinality, Handler, Status
from grpclib.exceptions import GRPCError
from grpclib.server import Stream

from simulator._proto.gitpod import v1 as pb
from simulator.core.errors import InvalidArgument, PermissionDenied, SimError
from simulator.core.faults import RpcError, RpcLatency, StreamDuplicate, StreamEnd
from simulator.core.model import User
from simulator.core.simtime import SECOND
from simulator.core.transitions import Phase
from simulator.server.auth import authenticate, bearer_token
from simulator.server.broadcast import Closed, Delivery, Subscription
from simulator.server.codec import Preencoded
from simulator.server.convert import STOP_PAYLOAD, instance_pb, log_payload, workspace_pb
from simulator.server.field_mask import FieldMaskError, FieldMaskPlan

if TYPE_CHECKING:
    from simulator.core.engine import Engine
    from simulator.server.runtime import Simulator

SERVICE_NAME = "gitpod.v1.WorkspacesService"
CONTROL_SERVICE = "gitpod.simulator.v1.SimulatorService"
log = logging.getLogger("gitpod_sim.rpc")

Req = TypeVar("Req")
RawHandler = Callable[[Stream[Any, Any]], Awaitable[None]]
_STOP = Preencoded(STOP_PAYLOAD)
MAX_MASK_PATHS = 64
WORKSPACE_ANSWER_CACHE = 4096


class WorkspacesService:
    """Serves one :class:`~simulator.server.runtime.Simulator` (pass it to a grpclib ``Server``)."""

    def __init__(self, sim: Simulator) -> None:
        self._sim = sim
        self._hub = sim.hub
        self._activity = sim.activity
        self._workspace_answers: OrderedDict[str, bytes] = OrderedDict()

    @property
    def _engine(self) -> Engine:
        return self._sim.engine  # replaced on reset and import

    # ------------------------------------------------------------------ plumbing

    def __mapping__(self) -> dict[str, Handler]:
        unary, stream = self._unary, self._streaming
        table: list[tuple[str, Callable[[str, Any], RawHandler], Any, type[Any], type[Any]]] = [
            ("ListWorkspaces", unary, self.list_workspaces,
             pb.ListWorkspacesRequest, pb.ListWorkspacesResponse),
            ("GetWorkspace", unary, self.get_workspace,
             pb.GetWorkspaceRequest, pb.GetWorkspaceResponse),
            ("GetOwnerToken", unary, self.get_owner_token,
             pb.GetOwnerTokenRequest, pb.GetOwnerTokenResponse),
            ("CreateAndStartWorkspace", unary, self.create_and_start_workspace,
             pb.CreateAndStartWorkspaceRequest, pb.CreateAndStartWorkspaceResponse),
            ("StartWorkspace", unary, self.start_workspace,
             pb.StartWorkspaceRequest, pb.StartWorkspaceResponse),
            ("GetActiveWorkspaceInstance", unary, self.get_active_workspace_instance,
             pb.GetActiveWorkspaceInstanceRequest, pb.GetActiveWorkspaceInstanceResponse),
            ("GetWorkspaceInstanceOwnerToken", unary, self.get_workspace_instance_owner_token,
             pb.GetWorkspaceInstanceOwnerTokenRequest, pb.GetWorkspaceInstanceOwnerTokenResponse),
            ("ListenToWorkspaceInstance", stream, self.listen_to_workspace_instance,
             pb.ListenToWorkspaceInstanceRequest, pb.ListenToWorkspaceInstanceResponse),
            ("ListenToImageBuildLogs", stream, self.listen_to_image_build_logs,
             pb.ListenToImageBuildLogsRequest, pb.ListenToImageBuildLogsResponse),
            ("StopWorkspace", stream, self.stop_workspace,
             pb.StopWorkspaceRequest, pb.StopWorkspaceResponse),
        ]  # fmt: skip
        return {
            f"/{SERVICE_NAME}/{name}": Handler(
                wrap(name, fn),
                Cardinality.UNARY_STREAM if wrap == self._streaming else Cardinality.UNARY_UNARY,
                request,
                reply,
            )
            for name, wrap, fn, request, reply in table
        }

    async def _begin(self, path: str, stream: Stream[Any, Any], request: Any) -> User:
        """Authenticate, bring the engine up to the clock's present, apply RPC faults."""
        self._activity.io()
        if request is None:
            raise InvalidArgument("request message is missing")
        if bearer_token(stream.metadata) == self._sim.admin_token:
            raise PermissionDenied(
                f"the admin token is for {CONTROL_SERVICE} only;"
                f" call {SERVICE_NAME} with an API token"
            )
        user = authenticate(stream.metadata, self._engine.user_by_token)
        self._sim.sync()
        faults = self._engine.take_rpc_faults(path)
        for fault in faults:  # latency first, then an injected error
            effect = fault.effect
            if isinstance(effect, RpcLatency):
                if effect.simulated:
                    await self._sim.sleep_simulated(effect.latency)
                else:
                    await asyncio.sleep(effect.latency / SECOND)
                self._sim.sync()
        for fault in faults:
            effect = fault.effect
            if isinstance(effect, RpcError):
                raise GRPCError(Status[effect.code], effect.message)
        return user

    def _unary(self, method: str, fn: Callable[[User, Any], Any]) -> RawHandler:
        path = f"/{SERVICE_NAME}/{method}"

        async def handle(stream: Stream[Any, Any]) -> None:
            self._activity.call_started()
            caller, code, message, request = "-", "OK", "", None
            try:
                request = await stream.recv_message()
                user = await self._begin(path, stream, request)
                caller = user.id
                response = fn(user, request)
                self._sim.kick()
            except SimError as exc:
                code, message = exc.code, exc.message
                raise GRPCError(Status[exc.code], exc.message) from None
            except GRPCError as exc:
                code, message = exc.status.name, exc.message or ""
                raise
            finally:
                self._activity.call_ended()
                self._finish(path, caller, request, code, message)
            await stream.send_message(response)

        return handle

    def _streaming(
        self, method: str, fn: Callable[[Stream[Any, Any], User, Any], Awaitable[None]]
    ) -> RawHandler:
        path = f"/{SERVICE_NAME}/{method}"

        async def handle(stream: Stream[Any, Any]) -> None:
            self._activity.call_started()
            caller, code, message, request = "-", "OK", "", None
            try:
                request = await stream.recv_message()
                user = await self._begin(path, stream, request)
                caller = user.id
                await fn(stream, user, request)
            except SimError as exc:
                code, message = exc.code, exc.message
                raise GRPCError(Status[exc.code], exc.message) from None
            except Closed as exc:
                code, message = exc.code, exc.reason
                raise GRPCError(Status[exc.code], exc.reason) from None
            except GRPCError as exc:
                code, message = exc.status.name, exc.message or ""
                raise
            except asyncio.CancelledError:
                code = "CANCELLED"
                raise
            finally:
                self._activity.call_ended()
                self._finish(path, caller, request, code, message)

        return handle

    def _finish(self, path: str, caller: str, request: Any, code: str, message: str) -> None:
        self._sim.record_rpc(path, caller, request, code, message)
        if log.isEnabledFor(logging.INFO):
            suffix = f": {message}" if message else ""
            log.info("rpc %s by %s -> %s%s", path.rsplit("/", 1)[-1], caller, code, suffix)

    async def _send(self, stream: Stream[Any, Any], message: Any) -> None:
        await stream.send_message(message)
        self._activity.io()

    # ------------------------------------------------------------------ unary RPCs

    def list_workspaces(self, user: User, request: pb.ListWorkspacesRequest) -> Any:
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
        page = self._engine.list_workspaces(
            user,
            pagination.page_size if pagination is not None else 0,
            pagination.page_token if pagination is not None else "",
        )
        items = []
        for ws, inst in page.items:
            item = pb.ListWorkspacesResponseWorkspaceAndInstance(
                result=workspace_pb(ws),
                last_active_instances=instance_pb(inst) if inst is not None else None,
            )
            items.append(item if mask.is_everything else mask.apply(item))
        return pb.ListWorkspacesResponse(next_page_token=page.next_page_token, result=items)

    def get_workspace(self, user: User, request: pb.GetWorkspaceRequest) -> Any:
        ws = self._engine.get_workspace(user, request.workspace_id)
        # A workspace never changes after creation: encode its answer once.
        cache = self._workspace_answers
        payload = cache.get(ws.id)
        if payload is None:
            payload = bytes(pb.GetWorkspaceResponse(result=workspace_pb(ws)))
            cache[ws.id] = payload
            if len(cache) > WORKSPACE_ANSWER_CACHE:
                cache.popitem(last=False)
        return Preencoded(payload)

    def forget_answers(self) -> None:
        """Drop cached answers (the engine was replaced by a reset or an import)."""
        self._workspace_answers.clear()

    def get_owner_token(self, user: User, request: pb.GetOwnerTokenRequest) -> Any:
        return pb.GetOwnerTokenResponse(token=self._engine.owner_token(user, request.workspace_id))

    def create_and_start_workspace(
        self, user: User, request: pb.CreateAndStartWorkspaceRequest
    ) -> Any:
        field, value = betterproto2.which_one_of(request, "source")
        ws = self._engine.create_workspace(
            user,
            context_url=value if field == "context_url" else None,
            prebuild_id=value if field == "prebuild_id" else None,
            idempotency_token=request.idempotency_token,
        )
        return pb.CreateAndStartWorkspaceResponse(workspace_id=ws.id)

    def start_workspace(self, user: User, request: pb.StartWorkspaceRequest) -> Any:
        inst = self._engine.start_workspace(user, request.workspace_id, request.idempotency_token)
        return pb.StartWorkspaceResponse(instance_id=inst.id, workspace_url=inst.status.url)

    def get_active_workspace_instance(
        self, user: User, request: pb.GetActiveWorkspaceInstanceRequest
    ) -> Any:
        inst = self._engine.active_instance(user, request.workspace_id)
        return pb.GetActiveWorkspaceInstanceResponse(instance=instance_pb(inst))

    def get_workspace_instance_owner_token(
        self, user: User, request: pb.GetWorkspaceInstanceOwnerTokenRequest
    ) -> Any:
        inst = self._engine.instance_for(user, request.instance_id, owner_only=True)
        return pb.GetWorkspaceInstanceOwnerTokenResponse(owner_token=inst.owner_token)

    # ------------------------------------------------------------------ streaming RPCs

    async def listen_to_workspace_instance(
        self, stream: Stream[Any, Any], user: User, request: pb.ListenToWorkspaceInstanceRequest
    ) -> None:
        """The current status, then every change in order; ends right after STOPPED."""
        inst = self._engine.instance_for(user, request.instance_id)
        faults = [f.effect for f in self._engine.take_stream_faults(inst)]
        end = next((e for e in faults if isinstance(e, StreamEnd)), None)
        duplicate = any(isinstance(e, StreamDuplicate) for e in faults)
        sent = 0

        async def send(payload: bytes) -> None:
            nonlocal sent
            if end is not None and sent >= end.after_messages:
                raise GRPCError(Status[end.code], end.message)
            await self._send(stream, Preencoded(payload))
            sent += 1

        current = self._hub.current_payload(inst.id, inst.status)
        if inst.phase is Phase.STOPPED:
            await send(current)
            return
        sub = self._hub.subscribe_status(inst.id)
        try:
            await send(current)
            while (item := await sub.next()) is not None:
                assert isinstance(item, Delivery)
                await send(item.payload)
                if duplicate:
                    duplicate = False
                    await send(item.payload)
                if item.change.status.phase is Phase.STOPPED:
                    return
        finally:
            sub.cancel()

    async def listen_to_image_build_logs(
        self, stream: Stream[Any, Any], user: User, request: pb.ListenToImageBuildLogsRequest
    ) -> None:
        """Lines so far, then new lines while the build runs; no build: ends at once."""
        inst = self._engine.instance_for(user, request.instance_id)
        build = inst.build
        if build is None:
            self._sim.coverage_feed.build_log("no-build")
            return
        backlog = list(build.lines)
        sub: Subscription | None = None if build.finished else self._hub.subscribe_logs(inst.id)
        self._sim.coverage_feed.build_log("replayed" if sub is None else "live")
        try:
            for line in backlog:
                await self._send(stream, Preencoded(log_payload(line)))
            if sub is None:
                return
            while (item := await sub.next()) is not None:
                assert isinstance(item, bytes)
                await self._send(stream, Preencoded(item))
        finally:
            if sub is not None:
                sub.cancel()

    async def stop_workspace(
        self, stream: Stream[Any, Any], user: User, request: pb.StopWorkspaceRequest
    ) -> None:
        """One message per phase change after the request; ends when the instance is STOPPED."""
        result = self._engine.stop_workspace(user, request.workspace_id, request.idempotency_token)
        self._sim.kick()
        inst = result.instance
        seen = result.phase_before
        if seen is Phase.STOPPED:
            return
        sub = self._hub.subscribe_status(inst.id)
        try:
            if inst.phase is not seen:
                seen = inst.phase
                await self._send(stream, _STOP)
            while seen is not Phase.STOPPED and (item := await sub.next()) is not None:
                assert isinstance(item, Delivery)
                phase = item.change.status.phase
                if phase is not seen:
                    seen = phase
                    await self._send(stream, _STOP)
        finally:
            sub.cancel()
