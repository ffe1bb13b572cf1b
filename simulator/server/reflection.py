"""gRPC server reflection (v1 and v1alpha), so grpcurl, evans, grpcui and Postman need no .proto.

Why our own service rather than grpclib's: grpclib's reflection and health modules register their
messages in Google's default descriptor pool, where they clash with grpcio's ``grpc_reflection``
and ``grpc_health`` (the same symbols under other file names): a test process that imports both
fails. So everything here lives in a private ``DescriptorPool`` loaded from the FileDescriptorSet
that ``scripts/generate_proto.py`` writes beside the generated code (every proto under ``proto/``,
its imports, and the standard health and reflection protos), and messages are built from it.

Google's protobuf and the pool load with the first call that needs them (a reflection or health
request, or the codec checking the first request), not when a server starts (see deferred.py).
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import cache
from typing import Any

from grpclib.const import Cardinality, Handler, Status
from grpclib.server import Stream
from grpclib.utils import _service_name

from simulator.server.deferred import Deferred, LazyHandler

DESCRIPTOR_SET = "descriptors.binpb"
REFLECTION_V1 = "grpc.reflection.v1.ServerReflection"
REFLECTION_V1ALPHA = "grpc.reflection.v1alpha.ServerReflection"


def descriptor_set_bytes() -> bytes:
    """The committed, serialized FileDescriptorSet (see the module docstring)."""
    from importlib.resources import files

    return files("simulator._proto").joinpath(DESCRIPTOR_SET).read_bytes()


@cache
def descriptor_pool_for_server() -> Any:
    """The private pool of every served file (built once per process)."""
    from google.protobuf import descriptor_pb2, descriptor_pool  # type: ignore[import-untyped]

    pool = descriptor_pool.DescriptorPool()
    fds = descriptor_pb2.FileDescriptorSet.FromString(descriptor_set_bytes())
    for file in fds.file:  # dependencies come before their dependents
        pool.AddSerializedFile(file.SerializeToString())
    return pool


def message_class(full_name: str) -> Any:
    """A Google message class for ``full_name`` from the private pool."""
    from google.protobuf import message_factory

    pool = descriptor_pool_for_server()
    return message_factory.GetMessageClass(pool.FindMessageTypeByName(full_name))


@cache
def deferred_message_class(full_name: str) -> Deferred[Any]:
    """The message class ``full_name`` of the private pool, built at the first read (one for the
    process: every server's health and reflection share it)."""
    return Deferred(lambda: message_class(full_name))


def service_names(services: Iterable[Any]) -> list[str]:
    """The full names (``pkg.Service``) of grpclib servables, in order."""
    return [_service_name(service) for service in services]


class ServerReflection:
    """``ServerReflectionInfo`` for one protocol version (v1 and v1alpha share the messages'
    shape, only the package differs)."""

    def __init__(self, package: str, names: Iterable[str]) -> None:
        self._package = package
        self._names = list(names)
        self._request = deferred_message_class(f"{package}.ServerReflectionRequest")
        self._response = deferred_message_class(f"{package}.ServerReflectionResponse")
        self._mapping: dict[str, Handler] | None = None

    def __mapping__(self) -> dict[str, Handler]:
        if self._mapping is None:
            self._mapping = self._build_mapping()
        return self._mapping

    def _build_mapping(self) -> dict[str, Handler]:
        return {
            f"/{self._package}.ServerReflection/ServerReflectionInfo": LazyHandler(
                self._info, Cardinality.STREAM_STREAM, self._request, self._response
            )
        }

    @property
    def _pool(self) -> Any:
        return descriptor_pool_for_server()

    async def _info(self, stream: Stream[Any, Any]) -> None:
        """One answer per request, until the client half-closes."""
        async for request in stream:
            await stream.send_message(self._answer(request))

    def _answer(self, request: Any) -> Any:
        response = self._response.get()(valid_host=request.host, original_request=request)
        kind = request.WhichOneof("message_request")
        try:
            if kind == "list_services":
                for name in self._names:
                    response.list_services_response.service.add(name=name)
            elif kind == "file_by_filename":
                self._add_file(response, self._pool.FindFileByName(request.file_by_filename))
            elif kind == "file_containing_symbol":
                symbol = request.file_containing_symbol
                self._add_file(response, self._pool.FindFileContainingSymbol(symbol))
            elif kind == "file_containing_extension":
                ext = request.file_containing_extension
                message = self._pool.FindMessageTypeByName(ext.containing_type)
                extension = self._pool.FindExtensionByNumber(message, ext.extension_number)
                self._add_file(response, extension.file)
            elif kind == "all_extension_numbers_of_type":
                message = self._pool.FindMessageTypeByName(request.all_extension_numbers_of_type)
                numbers = response.all_extension_numbers_response
                numbers.base_type_name = message.full_name
                numbers.extension_number.extend(
                    sorted(e.number for e in self._pool.FindAllExtensions(message))
                )
            else:
                response.error_response.error_code = Status.INVALID_ARGUMENT.value
                response.error_response.error_message = "no request kind set"
        except KeyError:
            response.ClearField("message_response")
            response.error_response.error_code = Status.NOT_FOUND.value
            response.error_response.error_message = "not found"
        return response

    def _add_file(self, response: Any, file: Any) -> None:
        """The file and everything it imports (clients resolve imports from one answer)."""
        seen: set[str] = set()
        ordered: list[Any] = []

        def visit(f: Any) -> None:
            if f.name in seen:
                return
            seen.add(f.name)
            for dep in f.dependencies:
                visit(dep)
            ordered.append(f)

        visit(file)
        from google.protobuf import descriptor_pb2

        out = response.file_descriptor_response.file_descriptor_proto
        for f in reversed(ordered):  # the requested file first, as grpc-go answers
            proto = descriptor_pb2.FileDescriptorProto()
            f.CopyToProto(proto)
            out.append(proto.SerializeToString())


def reflection_services(names: Iterable[str]) -> list[ServerReflection]:
    """Reflection v1 and v1alpha, listing ``names`` and themselves."""
    listed = list(names)
    listed += [n for n in (REFLECTION_V1, REFLECTION_V1ALPHA) if n not in listed]
    return [
        ServerReflection("grpc.reflection.v1", listed),
        ServerReflection("grpc.reflection.v1alpha", listed),
    ]
