"""Connect and gRPC-Web over HTTP/1.1, in front of the same grpclib handlers as the gRPC port.

Why: browsers cannot speak raw gRPC (HTTP/2 trailers), and Gitpod's own TypeScript clients speak
the Connect protocol. Why aiohttp: one well-kept package gives an HTTP/1.1 server that runs inside
our event loop (one state, one clock), streams chunked responses, starts on port 0 without taking
over signal handling, and cancels a handler when its client goes away (so a stream's subscription
is dropped at once); starlette would need uvicorn beside it for the same.

How: each call runs the very handler that grpclib's ``Server`` would run (from the servables'
``__mapping__``: the RPC boundary of :mod:`simulator.server.boundary`), through
:class:`_HttpStream`, a stand-in for grpclib's ``Stream``. So the world chosen by the metadata,
authentication, faults, activity (autojump), journaling and error mapping are shared with the gRPC
port; this module only turns the handler's outcome into HTTP (as grpclib's server does for HTTP/2),
and every unary and server-streaming method of every served service is reachable, the control
plane's included. Binary bodies go through the same codec as gRPC; JSON goes through Google's
reference ``json_format`` over the descriptor pool that reflection serves (canonical proto3 JSON:
the generated betterproto2 messages write a FieldMask as ``{"paths": [...]}``, not as the canonical
string, and reject the string form).

Protocols: Connect unary (``application/json``, ``application/proto``), Connect server streaming
(``application/connect+json``, ``application/connect+proto``), gRPC-Web (``application/grpc-web``,
``+proto``, and the base64 ``application/grpc-web-text``). CORS for configured origins.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import struct
import zlib
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import quote

from aiohttp import web
from aiohttp.web_protocol import RequestHandler
from google.protobuf import json_format, message_factory  # type: ignore[import-untyped]
from grpclib.const import Cardinality, Status
from grpclib.exceptions import GRPCError
from grpclib.metadata import Deadline
from grpclib.server import Stream
from multidict import CIMultiDictProxy, MultiDict

from simulator.server.connections import ConnectionGuard
from simulator.server.limits import Limits, format_size
from simulator.server.reflection import descriptor_pool_for_server

log = logging.getLogger("gitpod_sim.http")

# Connect's code names (https://connectrpc.com/docs/protocol#error-codes) and HTTP statuses.
_CONNECT_CODES: dict[Status, tuple[str, int]] = {
    Status.CANCELLED: ("canceled", 499),
    Status.UNKNOWN: ("unknown", 500),
    Status.INVALID_ARGUMENT: ("invalid_argument", 400),
    Status.DEADLINE_EXCEEDED: ("deadline_exceeded", 504),
    Status.NOT_FOUND: ("not_found", 404),
    Status.ALREADY_EXISTS: ("already_exists", 409),
    Status.PERMISSION_DENIED: ("permission_denied", 403),
    Status.RESOURCE_EXHAUSTED: ("resource_exhausted", 429),
    Status.FAILED_PRECONDITION: ("failed_precondition", 400),
    Status.ABORTED: ("aborted", 409),
    Status.OUT_OF_RANGE: ("out_of_range", 400),
    Status.UNIMPLEMENTED: ("unimplemented", 501),
    Status.INTERNAL: ("internal", 500),
    Status.UNAVAILABLE: ("unavailable", 503),
    Status.DATA_LOSS: ("data_loss", 500),
    Status.UNAUTHENTICATED: ("unauthenticated", 401),
}
_UNARY_TYPES = {"application/json": "json", "application/proto": "proto"}
_STREAM_TYPES = {"application/connect+json": "json", "application/connect+proto": "proto"}
_GRPC_WEB_TYPES = {
    "application/grpc-web": "proto",
    "application/grpc-web+proto": "proto",
    "application/grpc-web-text": "proto",
    "application/grpc-web-text+proto": "proto",
}
_ACCEPT_POST = ", ".join([*_UNARY_TYPES, *_STREAM_TYPES, *_GRPC_WEB_TYPES])
# Request headers that are transport, not call metadata.
_NOT_METADATA = {
    "host", "content-type", "content-length", "content-encoding", "connection", "keep-alive",
    "accept", "accept-encoding", "accept-language", "origin", "referer", "user-agent", "te",
    "transfer-encoding", "upgrade", "x-grpc-web", "x-user-agent", "cookie", "expect",
}  # fmt: skip
_NOT_METADATA_PREFIXES = ("connect-", "grpc-", "sec-", "access-control-")
_CORS_ALLOW_HEADERS = ", ".join([
    "Authorization", "Content-Type", "Connect-Protocol-Version", "Connect-Timeout-Ms",
    "Connect-Content-Encoding", "Connect-Accept-Encoding", "Content-Encoding", "Grpc-Timeout",
    "X-Grpc-Web", "X-User-Agent", "X-Gitpod-Sim-Session",
])  # fmt: skip
_CORS_EXPOSE_HEADERS = ", ".join([
    "Grpc-Status", "Grpc-Message", "Grpc-Status-Details-Bin", "Connect-Content-Encoding",
    "Connect-Accept-Encoding", "Content-Encoding",
])  # fmt: skip
_ENVELOPE = 5
_END_STREAM = 0x02
_COMPRESSED = 0x01
_TRAILER = 0x80


class _CallError(Exception):
    """A status to answer with before or instead of running a handler."""

    def __init__(self, status: Status, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True, slots=True)
class _Method:
    path: str
    handler: Callable[[Stream[Any, Any]], Awaitable[None]]
    streaming: bool
    request_type: Any
    reply_type: Any
    json_request: Any  # Google message class, for canonical JSON
    json_reply: Any


class _HttpStream:
    """What a grpclib handler needs of ``grpclib.server.Stream``, fed from an HTTP request.

    Replies are encoded with the server's codec (so pre-encoded bytes pass through) and handed
    to ``emit``; a status set with ``send_trailing_metadata`` (grpclib's health service does
    that) is kept for the answer.
    """

    def __init__(
        self,
        request: Any,
        metadata: MultiDict[str],
        method: _Method,
        codec: Any,
        emit: Callable[[bytes], Awaitable[None]],
        peer: Any,
    ) -> None:
        self._request: Any = request
        self._method = method
        self._codec = codec
        self._emit = emit
        self.metadata = metadata
        self.peer = peer
        self.deadline: Deadline | None = None
        self.user_agent = metadata.get("user-agent")
        self.status: Status | None = None
        self.status_message: str | None = None

    async def recv_message(self) -> Any:
        request, self._request = self._request, None
        return request

    async def send_initial_metadata(self, *, metadata: Any = None) -> None:
        return None

    async def send_message(self, message: Any) -> None:
        await self._emit(self._codec.encode(message, self._method.reply_type))

    async def send_trailing_metadata(
        self,
        *,
        status: Status = Status.OK,
        status_message: str | None = None,
        status_details: Any = None,
        metadata: Any = None,
    ) -> None:
        self.status = status
        self.status_message = status_message


class _HttpConnection:
    """One HTTP/1.1 connection as the :class:`ConnectionGuard` sees it."""

    __slots__ = ("handler",)

    def __init__(self, handler: RequestHandler) -> None:
        self.handler = handler

    def close_idle(self, reason: str) -> None:
        self.handler.force_close()


class _GuardedServer(web.Server):
    """aiohttp's low-level server, with every connection counted by the guard."""

    def __init__(self, handler: Any, guard: ConnectionGuard, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self.guard = guard
        self.by_handler: dict[RequestHandler, _HttpConnection] = {}

    def connection_made(self, handler: RequestHandler, transport: asyncio.Transport) -> None:
        super().connection_made(handler, transport)
        conn = self.by_handler[handler] = _HttpConnection(handler)
        if not self.guard.admit(conn):
            handler.force_close()

    def connection_lost(self, handler: RequestHandler, exc: BaseException | None = None) -> None:
        conn = self.by_handler.pop(handler, None)
        if conn is not None:
            self.guard.release(conn)
        super().connection_lost(handler, exc)


class ConnectGateway:
    """An aiohttp server answering Connect and gRPC-Web calls with grpclib servables."""

    def __init__(
        self,
        services: Iterable[Any],
        codec: Any,
        cors_origins: Iterable[str] = (),
        *,
        limits: Limits | None = None,
        guard: ConnectionGuard | None = None,
    ):
        self._codec = codec
        self._cors = frozenset(cors_origins)
        self._limits = limits or Limits()
        self._guard = guard or ConnectionGuard(self._limits)
        self._server: _GuardedServer | None = None
        self._closing: asyncio.Future[None] | None = None
        self._closing_message = ""
        self._pool = descriptor_pool_for_server()
        self._methods: dict[str, _Method] = {}
        for service in services:
            for path, handler in service.__mapping__().items():
                if handler.cardinality not in (Cardinality.UNARY_UNARY, Cardinality.UNARY_STREAM):
                    continue  # client and bidi streams need HTTP/2 (reflection)
                self._methods[path] = self._method(path, handler)
        self._runner: web.ServerRunner | None = None
        self._site: web.TCPSite | None = None

    def _method(self, path: str, handler: Any) -> _Method:
        service_name, method_name = path.strip("/").split("/")
        desc = self._pool.FindServiceByName(service_name).FindMethodByName(method_name)
        return _Method(
            path=path,
            handler=handler.func,
            streaming=handler.cardinality is Cardinality.UNARY_STREAM,
            request_type=handler.request_type,
            reply_type=handler.reply_type,
            json_request=message_factory.GetMessageClass(desc.input_type),
            json_reply=message_factory.GetMessageClass(desc.output_type),
        )

    @property
    def paths(self) -> list[str]:
        return sorted(self._methods)

    # ------------------------------------------------------------------ lifecycle

    async def start(self, host: str, port: int) -> None:
        self._closing = asyncio.get_running_loop().create_future()
        server = self._server = _GuardedServer(self._handle, self._guard, handler_cancellation=True)
        self._runner = web.ServerRunner(server, shutdown_timeout=2.0, access_log=None)
        await self._runner.setup()
        self._site = web.TCPSite(self._runner, host, port)
        try:
            await self._site.start()
        except OSError:
            await self.close()  # a busy port leaves nothing half set up
            raise

    @property
    def port(self) -> int:
        """The bound TCP port (useful after ``port=0``)."""
        server = self._site._server if self._site is not None else None
        for sock in getattr(server, "sockets", None) or ():
            return int(sock.getsockname()[1])
        raise RuntimeError("gateway is not listening")

    async def close(self, message: str = "gitpod-sim is shutting down") -> None:
        """Stop: calls still running (streams of every kind) end with UNAVAILABLE first."""
        if self._closing is not None and not self._closing.done():
            self._closing_message = message
            self._closing.set_result(None)
            for _ in range(20):  # let them write their last message
                await asyncio.sleep(0)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
            self._site = None

    # ------------------------------------------------------------------ HTTP

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        conn = self._server.by_handler.get(request.protocol) if self._server else None
        if conn is None:
            return await self._answer(request)
        self._guard.stream_started(conn)
        try:
            return await self._answer(request)
        finally:
            self._guard.stream_ended(conn)

    async def _answer(self, request: web.BaseRequest) -> web.StreamResponse:
        cors = self._cors_headers(request)
        if request.method == "OPTIONS":
            return web.Response(status=204, headers=self._preflight_headers(request, cors))
        content_type = request.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if request.method != "POST":
            return web.Response(status=405, headers={**cors, "Allow": "POST, OPTIONS"})
        if content_type in _UNARY_TYPES:
            return await self._connect_unary(request, _UNARY_TYPES[content_type], cors)
        if content_type in _STREAM_TYPES:
            return await self._connect_stream(request, _STREAM_TYPES[content_type], cors)
        if content_type in _GRPC_WEB_TYPES:
            return await self._grpc_web(request, content_type, cors)
        return web.Response(status=415, headers={**cors, "Accept-Post": _ACCEPT_POST})

    def _cors_headers(self, request: web.BaseRequest) -> dict[str, str]:
        origin = request.headers.get("Origin")
        if origin is None or not ("*" in self._cors or origin in self._cors):
            return {}
        return {
            "Access-Control-Allow-Origin": origin,
            "Access-Control-Expose-Headers": _CORS_EXPOSE_HEADERS,
            "Vary": "Origin",
        }

    def _preflight_headers(self, request: web.BaseRequest, cors: dict[str, str]) -> dict[str, str]:
        if not cors:
            return {}
        return {
            **cors,
            "Access-Control-Allow-Methods": "POST, GET, OPTIONS",
            "Access-Control-Allow-Headers": _CORS_ALLOW_HEADERS,
            "Access-Control-Max-Age": "7200",
        }

    # ------------------------------------------------------------------ Connect unary

    async def _connect_unary(
        self, request: web.BaseRequest, codec: str, cors: dict[str, str]
    ) -> web.Response:
        replies: list[bytes] = []
        try:
            method = self._find(request.path, streaming=False)
            body = await self._read(request, self._limits.max_request_bytes)
            message = self._decode(method, body, codec)
            timeout = _connect_timeout(request.headers)
            status, text = await self._run(request, method, message, replies.append, timeout)
        except _CallError as exc:
            status, text = exc.status, exc.message
        if status is Status.OK:
            if len(replies) != 1:
                status, text = Status.INTERNAL, "unary handler sent no single reply"
            else:
                body = self._encode(method, replies[0], codec)
                content_type = "application/json" if codec == "json" else "application/proto"
                return web.Response(body=body, headers={**cors, "Content-Type": content_type})
        name, http_status = _CONNECT_CODES.get(status, ("unknown", 500))
        error: dict[str, str] = {"code": name}
        if text:
            error["message"] = text
        return web.Response(
            status=http_status,
            body=json.dumps(error).encode(),
            headers={**cors, "Content-Type": "application/json"},
        )

    # ------------------------------------------------------------------ Connect streaming

    async def _connect_stream(
        self, request: web.BaseRequest, codec: str, cors: dict[str, str]
    ) -> web.StreamResponse:
        content_type = f"application/connect+{codec}"
        response = web.StreamResponse(headers={**cors, "Content-Type": content_type})

        async def emit(data: bytes) -> None:
            if not response.prepared:
                await response.prepare(request)
            await response.write(_envelope(0, self._encode(method, data, codec)))

        try:
            method = self._find(request.path, streaming=True)
            encoding = request.headers.get("Connect-Content-Encoding", "identity")
            raw = await self._read(request, self._limits.max_request_bytes + _ENVELOPE)
            body = _unenvelope_one(raw, encoding, self._limits.max_request_bytes)
            message = self._decode(method, body, codec)
            timeout = _connect_timeout(request.headers)
            status, text = await self._run(request, method, message, emit, timeout)
        except _CallError as exc:
            status, text = exc.status, exc.message
        end: dict[str, Any] = {}
        if status is not Status.OK:
            name, _ = _CONNECT_CODES.get(status, ("unknown", 500))
            end["error"] = {"code": name, **({"message": text} if text else {})}
        if not response.prepared:
            await response.prepare(request)
        with contextlib.suppress(ConnectionError):
            await response.write(_envelope(_END_STREAM, json.dumps(end).encode()))
            await response.write_eof()
        return response

    # ------------------------------------------------------------------ gRPC-Web

    async def _grpc_web(
        self, request: web.BaseRequest, content_type: str, cors: dict[str, str]
    ) -> web.StreamResponse:
        text_mode = content_type.startswith("application/grpc-web-text")
        reply_type = (
            "application/grpc-web-text+proto" if text_mode else "application/grpc-web+proto"
        )
        response = web.StreamResponse(headers={**cors, "Content-Type": reply_type})

        async def write(frame: bytes) -> None:
            if not response.prepared:
                await response.prepare(request)
            await response.write(base64.b64encode(frame) if text_mode else frame)

        async def emit(data: bytes) -> None:
            await write(_envelope(0, data))

        try:
            method = self._find(request.path, streaming=None)
            limit = self._limits.max_request_bytes
            wire_limit = limit + _ENVELOPE
            if text_mode:  # base64: 4 characters per 3 bytes, and the trailer's padding
                wire_limit = -(-wire_limit // 3) * 4 + 8
            raw = await self._read(request, wire_limit)
            if text_mode:
                raw = _b64decode_chunks(raw)
            encoding = request.headers.get("Grpc-Encoding", "identity")
            message = self._decode(method, _unenvelope_one(raw, encoding, limit), "proto")
            timeout = _grpc_timeout(request.headers)
            status, text = await self._run(request, method, message, emit, timeout)
        except _CallError as exc:
            status, text = exc.status, exc.message
        trailer = f"grpc-status:{status.value}\r\n"
        if text:
            trailer += f"grpc-message:{quote(text, safe=' !#$&()*+,/:;=?@[]~')}\r\n"
        with contextlib.suppress(ConnectionError):
            await write(_envelope(_TRAILER, trailer.encode()))
            await response.write_eof()
        return response

    # ------------------------------------------------------------------ calls

    async def _read(self, request: web.BaseRequest, limit: int) -> bytes:
        """The body, refused as soon as it grows past ``limit`` (aiohttp undoes a gzip or
        deflate Content-Encoding in bounded chunks, so this counts decompressed bytes)."""
        body = bytearray()
        async for chunk in request.content.iter_any():
            body += chunk
            if len(body) > limit:
                raise _CallError(
                    Status.RESOURCE_EXHAUSTED,
                    f"request body is over the limit of {format_size(limit)}"
                    " (serve --max-request-size)",
                )
        return bytes(body)

    def _find(self, path: str, *, streaming: bool | None) -> _Method:
        method = self._methods.get(path)
        if method is None:
            raise _CallError(Status.UNIMPLEMENTED, f"unknown method {path}")
        if streaming is not None and method.streaming != streaming:
            kind = "server-streaming" if method.streaming else "unary"
            raise _CallError(
                Status.UNIMPLEMENTED, f"{path} is {kind}: use the matching Connect content type"
            )
        return method

    def _decode(self, method: _Method, body: bytes, codec: str) -> Any:
        try:
            if codec == "json":
                parsed = json_format.Parse(body or b"{}", method.json_request())
                body = parsed.SerializeToString()
            return self._codec.decode(body, method.request_type)
        except Exception as exc:  # any malformed body: json, proto or a type mismatch
            raise _CallError(Status.INVALID_ARGUMENT, f"cannot decode request: {exc}") from None

    def _encode(self, method: _Method, data: bytes, codec: str) -> bytes:
        if codec != "json":
            return data
        message = method.json_reply.FromString(data)
        return json_format.MessageToJson(message, indent=None).encode()  # type: ignore[no-any-return]

    async def _run(
        self,
        request: web.BaseRequest,
        method: _Method,
        message: Any,
        emit: Callable[[bytes], Any],
        time_limit: float | None,
    ) -> tuple[Status, str | None]:
        """Run the grpclib handler; answer its status the way grpclib's server would."""

        async def sink(data: bytes) -> None:
            result = emit(data)
            if asyncio.iscoroutine(result):
                await result

        stream = _HttpStream(
            message, _metadata(request.headers), method, self._codec, sink, request.remote
        )
        if time_limit is not None:  # the boundary journals a call cut by it as DEADLINE_EXCEEDED
            stream.deadline = Deadline.from_timeout(time_limit)
        # The handler runs as its own task so that shutdown can end it with UNAVAILABLE.
        call = asyncio.ensure_future(method.handler(cast(Stream[Any, Any], stream)))
        closing = self._closing
        try:
            try:
                async with asyncio.timeout(time_limit):
                    await asyncio.wait(
                        [call] if closing is None else [call, closing],
                        return_when=asyncio.FIRST_COMPLETED,
                    )
            finally:
                if not call.done():
                    call.cancel()
                    await asyncio.wait([call])
            if call.cancelled():
                return Status.UNAVAILABLE, self._closing_message
            call.result()
        except GRPCError as exc:
            return exc.status, exc.message
        except TimeoutError:
            return Status.DEADLINE_EXCEEDED, "deadline exceeded"
        except ConnectionError:  # the client went away mid-stream
            return Status.CANCELLED, "client disconnected"
        except Exception:
            log.exception("handler %s failed", method.path)
            return Status.UNKNOWN, "Internal Server Error"
        if stream.status is not None:
            return stream.status, stream.status_message
        return Status.OK, None


# ---------------------------------------------------------------------- framing helpers


def _envelope(flags: int, data: bytes) -> bytes:
    return struct.pack(">BI", flags, len(data)) + data


def _unenvelope_one(raw: bytes, encoding: str, limit: int) -> bytes:
    """The one message of an enveloped request body (Connect streaming, gRPC-Web)."""
    if len(raw) < 5:
        raise _CallError(Status.INVALID_ARGUMENT, "request body is not an enveloped message")
    flags, length = struct.unpack(">BI", raw[:5])
    data = raw[5 : 5 + length]
    if len(data) != length or len(raw) > 5 + length:
        raise _CallError(Status.INVALID_ARGUMENT, "expected exactly one enveloped message")
    if flags & _COMPRESSED:
        if encoding != "gzip":
            raise _CallError(Status.UNIMPLEMENTED, f"unsupported compression {encoding!r}")
        data = _gunzip(data, limit)
    if len(data) > limit:
        raise _CallError(
            Status.RESOURCE_EXHAUSTED,
            f"request message is {len(data)} bytes, over the limit of {format_size(limit)}"
            " (serve --max-request-size)",
        )
    return data


def _gunzip(data: bytes, limit: int) -> bytes:
    """Decompress at most ``limit`` bytes: a gzip bomb is refused, never inflated."""
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        out = inflater.decompress(data, limit + 1)
    except zlib.error as exc:
        raise _CallError(Status.INVALID_ARGUMENT, f"bad gzip message: {exc}") from None
    if len(out) > limit:
        raise _CallError(
            Status.RESOURCE_EXHAUSTED,
            f"request message decompresses to over the limit of {format_size(limit)}"
            " (serve --max-request-size)",
        )
    if not inflater.eof:
        raise _CallError(Status.INVALID_ARGUMENT, "bad gzip message: truncated")
    return out


def _b64decode_chunks(raw: bytes) -> bytes:
    """gRPC-Web text bodies may be several padded base64 chunks back to back."""
    out = bytearray()
    raw = b"".join(raw.split())
    while raw:
        end = raw.find(b"=")
        if end == -1:
            chunk, raw = raw, b""
        else:
            end += 1
            while end < len(raw) and raw[end : end + 1] == b"=":
                end += 1
            chunk, raw = raw[:end], raw[end:]
        try:
            out += base64.b64decode(chunk, validate=True)
        except ValueError as exc:
            raise _CallError(Status.INVALID_ARGUMENT, f"bad base64 body: {exc}") from None
    return bytes(out)


def _metadata(headers: CIMultiDictProxy[str]) -> MultiDict[str]:
    out: MultiDict[str] = MultiDict()
    for key, value in headers.items():
        name = key.lower()
        if name in _NOT_METADATA or name.startswith(_NOT_METADATA_PREFIXES):
            continue
        out.add(name, value)
    return out


def _connect_timeout(headers: CIMultiDictProxy[str]) -> float | None:
    value = headers.get("Connect-Timeout-Ms")
    if value is None:
        return None
    if not value.isdigit() or len(value) > 10:
        raise _CallError(Status.INVALID_ARGUMENT, f"bad Connect-Timeout-Ms {value!r}")
    return int(value) / 1000


_GRPC_UNITS = {"H": 3600.0, "M": 60.0, "S": 1.0, "m": 1e-3, "u": 1e-6, "n": 1e-9}


def _grpc_timeout(headers: CIMultiDictProxy[str]) -> float | None:
    value = headers.get("Grpc-Timeout")
    if value is None:
        return None
    digits, unit = value[:-1], value[-1:]
    if not digits.isdigit() or len(digits) > 8 or unit not in _GRPC_UNITS:
        raise _CallError(Status.INVALID_ARGUMENT, f"bad grpc-timeout {value!r}")
    return int(digits) * _GRPC_UNITS[unit]
