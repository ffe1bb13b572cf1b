"""grpclib's HTTP/2 server with the hygiene a shared server needs (the gRPC port's transport).

What plain grpclib 0.4 does, and what this module changes:
- A request message of any size is read into memory before it is decoded: here the 5-byte gRPC
  frame header is checked first, and a message over ``max_request_bytes`` ends its call with
  RESOURCE_EXHAUSTED before a byte of it is read (a compressed message with UNIMPLEMENTED:
  the server advertises no compression, so there is no gzip bomb on this port).
- A stream the client opens and resets in the same breath (HTTP/2 rapid reset) was kept for the
  connection's life (about 8 KB each: its handler task never ran, so it never released the
  stream): here a reset stream is dropped at once (and its request task as soon as it is done,
  not when grpclib next tidies up), and a connection whose streams are mostly
  reset within a second of opening is closed with GOAWAY ENHANCE_YOUR_CALM (Envoy's rule after
  CVE-2023-44487).
- A header value that is not ASCII (legal in HTTP/2) raised out of h2 and closed the whole
  connection with a traceback: here headers stay bytes inside h2 and are decoded per stream, so
  such a stream alone ends with INVALID_ARGUMENT. An unknown frame type is ignored (RFC 9113
  §4.1) instead of crashing the connection.
- A stream opened beyond SETTINGS_MAX_CONCURRENT_STREAMS made h2 raise and grpclib close the
  whole connection: here that stream alone is refused with RST_STREAM REFUSED_STREAM (RFC 9113
  §5.1.2; a gRPC client may retry it), and the connection's other streams go on.
- Connections are counted and closed when idle (:mod:`simulator.server.connections`).
- grpclib writes every frame to the socket as it makes it: here what one turn of the event loop
  sends on a connection leaves in one write (:class:`CoalescingTransport`).
- At shutdown every open stream, whatever its kind, ends with UNAVAILABLE and the connection
  with GOAWAY, instead of a dropped connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from asyncio import BaseTransport, Transport
from collections.abc import Callable, Collection
from functools import partial
from typing import Any, Protocol, cast

import h2.config
from grpclib.config import Configuration
from grpclib.const import Status
from grpclib.encoding.base import CodecBase
from grpclib.exceptions import GRPCError
from grpclib.metadata import encode_grpc_message
from grpclib.protocol import (
    AbstractHandler,
    AckedData,
    Buffer,
    Connection,
    EventsProcessor,
    H2Protocol,
)
from grpclib.protocol import (
    Stream as H2Stream,
)
from grpclib.server import Handler, Server
from h2.connection import H2Connection
from h2.errors import ErrorCodes
from h2.events import Event as H2Event
from h2.events import RequestReceived, StreamReset, TrailersReceived
from h2.exceptions import H2Error
from h2.settings import SettingCodes
from h2.stream import StreamState

from simulator.server.connections import ConnectionGuard
from simulator.server.limits import PREMATURE_RESET_SECONDS, Limits, format_size

log = logging.getLogger("gitpod_sim.transport")
_Headers = list[tuple[str, str]]
_SENDING = (StreamState.OPEN, StreamState.HALF_CLOSED_REMOTE)
LINGER_SECONDS = 1.0


API_PREFIX = "/gitpod.v1.WorkspacesService/"
STREAMING_API = frozenset(
    API_PREFIX + name
    for name in ("ListenToWorkspaceInstance", "ListenToImageBuildLogs", "StopWorkspace")
)
"""The calls autojump counts while they send (their handler is busy until the stream ends)."""


class Pause(Protocol):
    """What the transport tells autojump's accounting (``activity.Activity``)."""

    def pause(self) -> None:
        """A counted call is blocked on its client: it no longer holds the clock."""

    def resume(self) -> None: ...


PauseFor = Callable[[_Headers], "Pause | None"]
"""Whose accounting a stream's blocking goes to, from its request headers (a server hosting many
worlds answers the world its session header names; None: not counted)."""


class RefusingH2Connection(H2Connection):
    """h2's connection, refusing one stream over the concurrent-stream cap instead of failing
    the connection (h2 raises TooManyStreamsError, a connection error)."""

    _inbound: int | None = None
    """While a HEADERS frame is taken: the open inbound streams counted for it (h2 counts them
    again itself, a walk over every stream of the connection), 0 when it is being refused."""
    refused = 0
    """Streams refused over the cap on this connection."""

    @property
    def open_inbound_streams(self) -> int:
        inbound = self._inbound
        return super().open_inbound_streams if inbound is None else inbound

    def _receive_headers_frame(self, frame: Any) -> tuple[list[Any], list[H2Event]]:
        if frame.stream_id in self.streams:
            return super()._receive_headers_frame(frame)
        count = super().open_inbound_streams
        refuse = count >= self.local_settings.max_concurrent_streams
        # Taken as usual (a refused one too: the header block must still be decoded, HPACK
        # state is the connection's); a refused one is reset at once and its events never
        # reach grpclib.
        self._inbound = 0 if refuse else count
        try:
            frames, events = super()._receive_headers_frame(frame)
        finally:
            self._inbound = None
        if not refuse:
            return frames, events
        self.refused += 1
        self._prepare_for_sending(frames)
        self.reset_stream(frame.stream_id, ErrorCodes.REFUSED_STREAM)
        return [], []


class GuardedBuffer(Buffer):
    """grpclib's receive buffer, telling ``on_block`` when a read has to wait for the client."""

    on_block: Pause | None = None

    async def read(self, size: int) -> bytes:  # grpclib's Buffer.read, with the two hooks
        assert size >= 0, "Size can not be negative"
        if size == 0:
            return b""
        if not self._eof or not self._unacked.empty():
            while self._acked_size < size:
                hook = self.on_block if self._unacked.empty() else None
                if hook is None:
                    data, data_size, ack_size = await self._unacked.get()
                else:
                    hook.pause()  # a request still arriving does not hold the clock
                    try:
                        data, data_size, ack_size = await self._unacked.get()
                    finally:
                        hook.resume()
                if not ack_size:
                    break
                self._acked.append(AckedData(memoryview(data), data_size))
                self._acked_size += data_size
                self._ack_callback(ack_size)
        if self._eof and self._acked_size == 0:
            return b""
        if self._acked_size < size:
            raise AssertionError("Received less data than expected")
        chunks: list[memoryview] = []
        chunks_size = 0
        while chunks_size < size:
            next_chunk, next_chunk_size = self._acked[0]
            if chunks_size + next_chunk_size <= size:
                chunks.append(next_chunk)
                chunks_size += next_chunk_size
                self._acked.popleft()
            else:
                offset = size - chunks_size
                chunks.append(next_chunk[:offset])
                chunks_size += offset
                self._acked[0] = AckedData(
                    data=next_chunk[offset:], data_size=next_chunk_size - offset
                )
        self._acked_size -= size
        return b"".join(chunks)


class GuardedStream(H2Stream):
    """A server stream that checks each request message's length before reading it, does not
    hold autojump while it waits for its client, and ends a client that takes nothing."""

    max_request_bytes = 0
    stall_timeout = 0.0
    on_send_block: Pause | None = None
    _header_next = True

    def init_stream(self, stream_id: int, connection: Connection) -> None:
        # grpclib's init_stream, making the one buffer this stream reads (not one more to drop)
        self.id = stream_id
        self.buffer = GuardedBuffer(partial(connection.ack, stream_id))
        connection.streams_started += 1
        self.created = connection.last_stream_created = time.monotonic()

    async def send_data(self, data: bytes, end_stream: bool = False) -> None:
        """grpclib's send loop, with a bound on how long the client may take nothing."""
        assert self.id is not None
        h2_conn = self._h2_connection
        position, last = 0, len(data)
        view = memoryview(data)
        while True:
            if not self.connection.write_ready.is_set():
                await self._stalled(self.connection.write_ready, transport=True)
            window = h2_conn.local_flow_control_window(self.id)
            if not window > 0:
                self.window_updated.clear()
                await self._stalled(self.window_updated, transport=False)
                continue
            size = min(window, h2_conn.max_outbound_frame_size)
            # the whole message in one frame (most): sent as it is, no copy
            whole = not position and last <= size
            chunk = data if whole else bytes(view[position : position + size])
            position += len(chunk)
            done = position == last
            h2_conn.send_data(self.id, chunk, end_stream=end_stream and done)
            self._transport.write(h2_conn.data_to_send())
            self.data_sent += len(chunk)
            self.connection.data_sent += len(chunk)
            self.connection.data_send_process()
            if done:
                return

    async def _stalled(self, ready: asyncio.Event, *, transport: bool) -> None:
        hook = self.on_send_block
        if hook is not None:
            hook.pause()
        try:
            async with asyncio.timeout(self.stall_timeout or None):
                await ready.wait()
        except TimeoutError:
            if transport:  # its socket is full: not even trailers would get through
                self._transport.abort()
            raise GRPCError(
                Status.RESOURCE_EXHAUSTED,
                f"the client took no message for {self.stall_timeout:g} s"
                " (serve --stall-timeout): a stream that cannot keep up is ended",
            ) from None
        finally:
            if hook is not None:
                hook.resume()

    async def recv_data(self, size: int) -> bytes:
        if not self._header_next:
            self._header_next = True
            return await self.buffer.read(size)  # what grpclib's Stream.recv_data does
        meta = await self.buffer.read(size)
        if len(meta) == 5:  # grpclib reads the 5-byte frame header, then the message
            if meta[0]:
                raise GRPCError(
                    Status.UNIMPLEMENTED,
                    "compressed request messages are not supported: send grpc-encoding identity",
                )
            length = int.from_bytes(meta[1:], "big")
            if length > self.max_request_bytes:
                raise GRPCError(
                    Status.RESOURCE_EXHAUSTED,
                    f"request message is {length} bytes, over the limit of"
                    f" {format_size(self.max_request_bytes)} (serve --max-request-size)",
                )
            self._header_next = False
        return meta


class GuardedConnection(Connection):
    max_request_bytes = 0
    stall_timeout = 0.0

    def create_stream(self, *, stream_id: int | None = None, wrapper: Any = None) -> H2Stream:
        stream = GuardedStream(
            self, self._connection, self._transport, stream_id=stream_id, wrapper=wrapper
        )
        stream.max_request_bytes = self.max_request_bytes
        stream.stall_timeout = self.stall_timeout
        return stream


class GuardedProcessor(EventsProcessor):
    """grpclib's event processor, made safe against the attacks listed in the module docs."""

    def __init__(
        self, handler: AbstractHandler, connection: Connection, protocol: GuardedProtocol
    ) -> None:
        super().__init__(handler, connection)
        self._protocol = protocol
        self.opened = 0
        self.premature_resets = 0

    def register(self, stream: H2Stream) -> Callable[[], None]:
        assert stream.id is not None
        self.streams[stream.id] = stream
        stream_id = stream.id

        def release_stream() -> None:
            self.release(stream_id)

        return release_stream

    def release(self, stream_id: int) -> None:
        """Forget a stream (idempotent: a reset and its handler may both release it)."""
        stream = self.streams.pop(stream_id, None)
        if stream is None:
            return
        cast(GuardedHandler, self.handler).forget(stream)
        self.connection.stream_close_waiter.set()
        if not self.connection.is_closing():
            self.connection.ack(stream_id, stream.buffer.unacked_size())
        self._protocol.guard.stream_ended(self._protocol)

    def process(self, event: H2Event) -> None:
        processors = getattr(self, "processors", None)
        if processors is None:
            return  # the connection was closed
        proc = processors.get(type(event))
        if proc is not None:  # unknown frames and the like are ignored, as RFC 9113 says
            proc(event)

    def process_request_received(self, event: RequestReceived) -> None:
        self.opened += 1
        headers = _decode(event.headers or [])
        if isinstance(headers, str):
            self._protocol.refuse_stream(event.stream_id, Status.INVALID_ARGUMENT, headers)
            return
        event.headers = headers  # type: ignore[assignment]
        protocol = self._protocol
        protocol.guard.stream_started(protocol)
        super().process_request_received(event)
        pause_for = protocol.activity
        if pause_for is None:
            return
        stream = self.streams.get(event.stream_id)
        path = ""
        for name, value in headers:
            if name == ":path":
                path = value
                break
        if path.startswith(API_PREFIX) and isinstance(stream, GuardedStream):
            activity = pause_for(headers)
            if activity is not None:  # counted from before its request is read
                cast(GuardedBuffer, stream.buffer).on_block = activity
                if path in STREAMING_API:  # ... and while it sends
                    stream.on_send_block = activity

    def process_trailers_received(self, event: TrailersReceived) -> None:
        headers = _decode(event.headers or [])
        event.headers = [] if isinstance(headers, str) else headers  # type: ignore[assignment]
        super().process_trailers_received(event)

    def process_stream_reset(self, event: StreamReset) -> None:
        stream = self.streams.get(event.stream_id)
        if stream is None:
            return
        created = stream.created
        if event.remote_reset and created is not None:
            self.premature_resets += time.monotonic() - created < PREMATURE_RESET_SECONDS
        super().process_stream_reset(event)
        self.release(event.stream_id)  # its handler may never have run: nothing kept
        limit = self._protocol.limits.rapid_reset_streams
        if limit and self.premature_resets >= limit and self.premature_resets * 2 > self.opened:
            self._protocol.close_abusive(
                f"{self.premature_resets} of {self.opened} streams reset within"
                f" {PREMATURE_RESET_SECONDS:g} s of opening (HTTP/2 rapid reset)"
            )


def _decode(raw: Any) -> _Headers | str:
    """Headers as text, or why not (gRPC metadata values are printable ASCII)."""
    try:  # h2 hands them over as bytes (header_encoding=None)
        return [(name.decode("ascii"), value.decode("ascii")) for name, value in raw]
    except (UnicodeDecodeError, AttributeError):
        return _decode_slowly(raw)


def _decode_slowly(raw: Any) -> _Headers | str:
    """:func:`_decode` header by header, saying which one is not ASCII."""
    out: _Headers = []
    for name, value in raw:
        try:
            text_name = name.decode("ascii") if isinstance(name, bytes) else name
        except UnicodeDecodeError:
            return f"a header name is not ASCII: {name!r}"
        try:
            out.append((text_name, value.decode("ascii") if isinstance(value, bytes) else value))
        except UnicodeDecodeError:
            return (
                f"header {text_name!r} has a value that is not ASCII; gRPC metadata values are"
                " printable ASCII (use a key ending in -bin for binary values)"
            )
    return out


class CoalescingTransport:
    """A connection's socket transport that writes what one turn of the event loop sent on the
    connection in one ``write``: grpclib writes each HEADERS, DATA and trailers frame as it
    makes it (three socket writes per unary call, one per streamed message), and with many
    streams on a connection most of the server's time went to those system calls. The bytes and
    their order are the same; they leave at the end of the turn (``call_soon``), and before a
    ``close``."""

    __slots__ = ("_buffer", "_loop", "_scheduled", "_transport")

    def __init__(self, transport: Transport) -> None:
        self._transport = transport
        self._loop = asyncio.get_running_loop()
        self._buffer: list[bytes] = []
        self._scheduled = False

    def write(self, data: bytes) -> None:
        if not data:
            return
        self._buffer.append(data)
        if not self._scheduled:
            self._scheduled = True
            self._loop.call_soon(self.flush)

    def flush(self) -> None:
        """Hand what is buffered to the socket transport now."""
        self._scheduled = False
        buffer = self._buffer
        if buffer:
            self._buffer = []
            self._transport.write(buffer[0] if len(buffer) == 1 else b"".join(buffer))

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def abort(self) -> None:
        self._buffer = []
        self._transport.abort()

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._transport.get_extra_info(name, default)

    def __getattr__(self, name: str) -> Any:  # the rest of the transport's interface
        return getattr(self._transport, name)


class GuardedProtocol(H2Protocol):
    processor: GuardedProcessor

    def __init__(
        self,
        handler: Handler,
        config: Configuration,
        h2_config: h2.config.H2Configuration,
        limits: Limits,
        guard: ConnectionGuard,
        on_lost: Callable[[GuardedProtocol], None],
        activity: PauseFor | None = None,
    ) -> None:
        super().__init__(handler, config, h2_config)
        self.activity = activity
        self.limits = limits
        self.guard = guard
        self._on_lost = on_lost
        self._grpc_handler = handler
        self._gone = False

    @property
    def _h2(self) -> H2Connection:
        return self.connection._connection

    def connection_made(self, transport: BaseTransport) -> None:
        h2_conn = RefusingH2Connection(config=self.h2_config)
        h2_conn.initiate_connection()
        config = self.config
        initial = h2_conn.local_settings.initial_window_size
        if config.http2_connection_window_size != initial:
            h2_conn.increment_flow_control_window(config.http2_connection_window_size - initial)
        settings: dict[SettingCodes | int, int] = {
            SettingCodes.MAX_CONCURRENT_STREAMS: self.limits.max_concurrent_streams
        }
        if config.http2_stream_window_size != initial:
            settings[SettingCodes.INITIAL_WINDOW_SIZE] = config.http2_stream_window_size
        h2_conn.update_settings(settings)
        coalescing = CoalescingTransport(cast(Transport, transport))
        connection = GuardedConnection(h2_conn, cast(Transport, coalescing), config=config)
        connection.max_request_bytes = self.limits.max_request_bytes
        connection.stall_timeout = self.limits.stall_timeout
        self.connection = connection
        self.processor = GuardedProcessor(self.handler, connection, self)
        connection.flush()
        connection.initialize()
        if not self.guard.admit(self):
            self._goaway(
                ErrorCodes.NO_ERROR,
                f"too many connections (serve --max-connections {self.limits.max_connections})",
            )

    def data_received(self, data: bytes) -> None:
        if self._gone:
            return  # after GOAWAY: read and dropped until the socket closes
        try:
            events = self.connection.feed(data)
        except Exception as exc:  # h2's ProtocolError and anything else a peer can provoke
            log.debug("HTTP/2 protocol error: %s", exc)
            self._goaway(ErrorCodes.PROTOCOL_ERROR, f"protocol error: {exc}")
            return
        self.connection.flush()
        for event in events:
            self.processor.process(event)
        self.connection.flush()

    def connection_lost(self, exc: BaseException | None) -> None:
        self.guard.release(self)
        self._on_lost(self)
        super().connection_lost(exc)

    # ------------------------------------------------------------------ ending things

    def refuse_stream(self, stream_id: int, status: Status, message: str) -> None:
        """End one stream with a status, without a handler; the connection goes on."""
        headers = [
            (":status", "200"),
            ("content-type", "application/grpc"),
            ("grpc-status", str(status.value)),
            ("grpc-message", encode_grpc_message(message)),
        ]
        with contextlib.suppress(H2Error):
            self._h2.send_headers(stream_id, headers, end_stream=True)
        with contextlib.suppress(H2Error):
            self._h2.reset_stream(stream_id, ErrorCodes.NO_ERROR)
        self.connection.flush()

    def close_idle(self, reason: str) -> None:
        self._goaway(ErrorCodes.NO_ERROR, reason)

    def close_abusive(self, reason: str) -> None:
        log.warning("closing connection from %s: %s", self._peer(), reason)
        self._goaway(ErrorCodes.ENHANCE_YOUR_CALM, reason)

    def end_streams(self, message: str) -> None:
        """Shutdown: every open stream ends with UNAVAILABLE, then GOAWAY and close."""
        if self.connection.is_closing():
            return
        h2_conn = self._h2
        for stream_id, stream in list(self.processor.streams.items()):
            with contextlib.suppress(KeyError):
                self._grpc_handler.cancel(stream)
            h2_stream = h2_conn.streams.get(stream_id)
            if h2_stream is None or h2_stream.state_machine.state not in _SENDING:
                continue
            headers = [] if h2_stream.state_machine.headers_sent else [
                (":status", "200"), ("content-type", "application/grpc"),
            ]  # fmt: skip
            headers += [
                ("grpc-status", str(Status.UNAVAILABLE.value)),
                ("grpc-message", encode_grpc_message(message)),
            ]
            with contextlib.suppress(H2Error):
                h2_conn.send_headers(stream_id, headers, end_stream=True)
            with contextlib.suppress(H2Error):
                h2_conn.reset_stream(stream_id, ErrorCodes.NO_ERROR)
        self._goaway(ErrorCodes.NO_ERROR, message, linger=False)

    def _goaway(self, code: ErrorCodes, reason: str, *, linger: bool = True) -> None:
        """Send GOAWAY and end the connection's handlers. With ``linger``, what the peer still
        sends is read and dropped for a moment before the socket closes: closing a socket with
        unread input makes the kernel send a reset, which can destroy the GOAWAY in flight."""
        if self._gone or self.connection.is_closing():
            return
        self._gone = True
        with contextlib.suppress(H2Error):
            self._h2.close_connection(code, additional_data=reason.encode()[:256])
        self.connection.flush()
        self._grpc_handler.close()
        for stream in list(self.processor.streams.values()):
            stream.__terminated__(reason)
        if linger:
            asyncio.get_running_loop().call_later(LINGER_SECONDS, self.processor.close, reason)
        else:
            self.processor.close(reason)

    def _peer(self) -> str:
        with contextlib.suppress(Exception):
            return str(self.connection.get_peer().addr())
        return "?"


class GuardedHandler(Handler):
    """grpclib's per-connection handler, forgetting each request task as soon as it is done.

    grpclib drops finished and cancelled tasks only every 10th new stream, and a closed
    connection's handler only when later connections come: the tasks of a connection that
    reset thousands of streams, each with its stream and frames (about 3 KB), stayed in memory
    well after the connection was gone. A task that runs is forgotten when it releases its
    stream (the last thing grpclib's request handler does; no callback per call), a cancelled
    one when it is done."""

    def forget(self, stream: H2Stream) -> None:
        """``stream``'s request task is ending (it released the stream)."""
        self._tasks.pop(stream, None)

    def cancel(self, stream: H2Stream) -> None:
        task = self._tasks.pop(stream, None)
        if task is not None and not task.done():  # a finished one is forgotten already
            task.cancel()
            self._cancelled.add(task)
            task.add_done_callback(self._forget_cancelled)

    def close(self) -> None:
        for task in self._tasks.values():
            task.add_done_callback(self._forget_cancelled)
        super().close()  # every task cancelled, and kept in _cancelled until done
        self._tasks.clear()

    def _forget_cancelled(self, task: asyncio.Task[None]) -> None:
        self._cancelled.discard(task)  # the set of now: grpclib's __gc_collect__ replaces it


class GuardedServer(Server):
    """grpclib's ``Server`` speaking through :class:`GuardedProtocol`."""

    def __init__(
        self,
        handlers: Collection[Any],
        *,
        codec: CodecBase,
        limits: Limits,
        guard: ConnectionGuard,
        activity: Pause | PauseFor | None = None,
    ) -> None:
        super().__init__(handlers, codec=codec)
        self._activity: PauseFor | None
        if activity is None or callable(activity):
            self._activity = activity
        else:
            self._activity = lambda headers, one=activity: one
        self._limits = limits
        self._guard = guard
        self._protocols: dict[GuardedProtocol, None] = {}
        # Headers stay bytes inside h2 (decoded per stream by GuardedProcessor).
        self._h2_config = h2.config.H2Configuration(
            client_side=False,
            header_encoding=None,
            validate_inbound_headers=False,
            validate_outbound_headers=False,
            normalize_inbound_headers=False,
            normalize_outbound_headers=False,
        )

    def _protocol_factory(self) -> H2Protocol:
        self.__gc_step__()
        handler = GuardedHandler(
            self._mapping, self._codec, self._status_details_codec, self.__dispatch__
        )
        self._handlers.add(handler)
        protocol = GuardedProtocol(
            handler,
            self._config,
            self._h2_config,
            self._limits,
            self._guard,
            self._lost,
            self._activity,
        )
        self._protocols[protocol] = None
        return protocol

    def _lost(self, protocol: GuardedProtocol) -> None:
        self._protocols.pop(protocol, None)

    def end_streams(self, message: str) -> None:
        """End every open stream with UNAVAILABLE and every connection with GOAWAY."""
        for protocol in list(self._protocols):
            protocol.end_streams(message)
