"""Server reflection and health, checked with grpcio's own reflection and health clients.

The client side knows no .proto file and imports nothing from ``simulator``: every message class
it uses for the Gitpod API is built from descriptors the server sends (what grpcurl, evans and
grpcui do). The server is a real ``gitpod-sim serve`` process.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)
from grpclib.const import Cardinality
from server_process import ServerProcess

TIMEOUT = 10.0
ALICE = (("authorization", "Bearer tok-a"),)
API = "gitpod.v1.WorkspacesService"
API_METHODS = {
    "ListWorkspaces", "GetWorkspace", "GetOwnerToken", "CreateAndStartWorkspace",
    "StartWorkspace", "GetActiveWorkspaceInstance", "GetWorkspaceInstanceOwnerToken",
    "ListenToWorkspaceInstance", "ListenToImageBuildLogs", "StopWorkspace",
}  # fmt: skip


@pytest.fixture(scope="module")
def channel() -> Iterator[grpc.Channel]:
    server = ServerProcess(
        "--clock", "autojump", "--autojump-grace", "2s", "--seed", "3", "--user", "alice=tok-a"
    )
    try:
        with grpc.insecure_channel(server.address) as ch:
            grpc.channel_ready_future(ch).result(timeout=TIMEOUT)
            yield ch
    finally:
        assert server.stop() == 0, server.stderr()
        server.close()


def _reflected_pool(channel: grpc.Channel) -> tuple[Any, Any]:
    db = ProtoReflectionDescriptorDatabase(channel)
    return db, descriptor_pool.DescriptorPool(db)


def _unary(channel: grpc.Channel, pool: Any, service: str, method: str) -> Any:
    """A callable for ``service/method`` whose message classes come from reflection only."""
    desc = pool.FindServiceByName(service).FindMethodByName(method)
    request_cls = message_factory.GetMessageClass(desc.input_type)
    reply_cls = message_factory.GetMessageClass(desc.output_type)
    path = f"/{service}/{method}"
    if desc.server_streaming:
        call = channel.unary_stream(
            path,
            request_serializer=request_cls.SerializeToString,
            response_deserializer=reply_cls.FromString,
        )
    else:
        call = channel.unary_unary(
            path,
            request_serializer=request_cls.SerializeToString,
            response_deserializer=reply_cls.FromString,
        )
    return request_cls, call


def test_lists_services(channel: grpc.Channel) -> None:
    db, _ = _reflected_pool(channel)
    services = set(db.get_services())
    assert {API, "grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection"} <= services
    assert "grpc.reflection.v1.ServerReflection" in services


def test_describes_every_listed_service(channel: grpc.Channel) -> None:
    db, pool = _reflected_pool(channel)
    for name in db.get_services():
        service = pool.FindServiceByName(name)
        assert service.methods, name
        for method in service.methods:  # every input and output type resolves
            assert method.input_type.full_name
            assert method.output_type.full_name
    methods = {m.name for m in pool.FindServiceByName(API).methods}
    assert methods == API_METHODS


def test_calls_methods_from_reflected_descriptors_only(channel: grpc.Channel) -> None:
    _, pool = _reflected_pool(channel)
    create_req, create = _unary(channel, pool, API, "CreateAndStartWorkspace")
    created = create(
        create_req(context_url="https://github.com/gitpod-io/gitpod"),
        metadata=ALICE,
        timeout=TIMEOUT,
    )
    assert created.workspace_id.startswith("gitpodio-gitpod-")

    active_req, active = _unary(channel, pool, API, "GetActiveWorkspaceInstance")
    instance = active(
        active_req(workspace_id=created.workspace_id), metadata=ALICE, timeout=TIMEOUT
    ).instance
    phase_enum = instance.status.DESCRIPTOR.fields_by_name["phase"].enum_type
    assert phase_enum.values_by_number[instance.status.phase].name == "PHASE_IMAGEBUILD"

    listen_req, listen = _unary(channel, pool, API, "ListenToWorkspaceInstance")
    phases = []
    for message in listen(
        listen_req(instance_id=instance.instance_id), metadata=ALICE, timeout=TIMEOUT
    ):
        phases.append(phase_enum.values_by_number[message.instance_status.phase].name)
        if phases[-1] == "PHASE_RUNNING":
            break
    assert phases == [
        "PHASE_IMAGEBUILD",
        "PHASE_PENDING",
        "PHASE_CREATING",
        "PHASE_INITIALIZING",
        "PHASE_RUNNING",
    ]


def test_v1_protocol_answers_like_v1alpha(channel: grpc.Channel) -> None:
    """grpcurl asks v1 first; its messages are v1alpha's, field for field."""
    call = channel.stream_stream(
        "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
        request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
        response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
    )
    requests = [
        reflection_pb2.ServerReflectionRequest(list_services=""),
        reflection_pb2.ServerReflectionRequest(file_containing_symbol=API),
        reflection_pb2.ServerReflectionRequest(file_containing_symbol="no.such.Thing"),
    ]
    listed, found, missing = list(call(iter(requests), timeout=TIMEOUT))
    assert API in [s.name for s in listed.list_services_response.service]
    protos = [
        descriptor_pb2.FileDescriptorProto.FromString(raw)
        for raw in found.file_descriptor_response.file_descriptor_proto
    ]
    assert protos[0].name == "gitpod/v1/workspaces.proto"
    assert missing.error_response.error_code == grpc.StatusCode.NOT_FOUND.value[0]


def test_health(channel: grpc.Channel) -> None:
    stub = health_pb2_grpc.HealthStub(channel)
    serving = health_pb2.HealthCheckResponse.SERVING
    for service in ("", API):
        reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=TIMEOUT)
        assert reply.status == serving, service
    with pytest.raises(grpc.RpcError) as excinfo:
        stub.Check(health_pb2.HealthCheckRequest(service="no.such.Service"), timeout=TIMEOUT)
    assert excinfo.value.code() == grpc.StatusCode.NOT_FOUND  # type: ignore[attr-defined]
    watch = stub.Watch(health_pb2.HealthCheckRequest(service=API), timeout=TIMEOUT)
    assert next(watch).status == serving
    watch.cancel()


async def test_in_memory_channel_serves_reflection_and_health() -> None:
    """``Simulator.channel()`` serves the same list as the TCP server (grpclib client, grpcio's
    messages: both sides in one process, which must not clash in the default pool)."""
    from grpclib.client import Stream as ClientStream

    from simulator import Simulator

    sim = Simulator(seed=1)
    async with sim.channel() as ch:
        check = ch.request(
            "/grpc.health.v1.Health/Check",
            Cardinality.UNARY_UNARY,
            health_pb2.HealthCheckRequest,
            health_pb2.HealthCheckResponse,
        )
        async with check as health:
            await health.send_message(health_pb2.HealthCheckRequest(service=API), end=True)
            reply = await health.recv_message()
        assert reply is not None and reply.status == health_pb2.HealthCheckResponse.SERVING
        info = ch.request(
            "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
            Cardinality.STREAM_STREAM,
            reflection_pb2.ServerReflectionRequest,
            reflection_pb2.ServerReflectionResponse,
        )
        stream: ClientStream[Any, Any]
        async with info as stream:
            await stream.send_message(
                reflection_pb2.ServerReflectionRequest(list_services=""), end=True
            )
            listed = await stream.recv_message()
    assert listed is not None
    names = [s.name for s in listed.list_services_response.service]
    assert names[0] == API
    assert "grpc.health.v1.Health" in names
