"""A raw HTTP/2 client (the h2 library over asyncio streams) for tests written as attacks.

grpclib's own client refuses to do what an attacker does (reset streams at once, send a header
that is not ASCII, ignore flow control), so these tests speak HTTP/2 frame by frame. Every read
is bounded by a timeout.
"""

from __future__ import annotations

import asyncio
import struct
from dataclasses import dataclass, field

import h2.config
import h2.connection
import h2.events
import h2.settings

READ_TIMEOUT = 5.0


def grpc_headers(path: str, token: str | None = None) -> list[tuple[bytes, bytes]]:
    headers = [
        (b":method", b"POST"),
        (b":scheme", b"http"),
        (b":path", path.encode()),
        (b":authority", b"127.0.0.1"),
        (b"content-type", b"application/grpc"),
        (b"te", b"trailers"),
    ]
    if token is not None:
        headers.append((b"authorization", f"Bearer {token}".encode()))
    return headers


def frame(message: bytes) -> bytes:
    """A gRPC length-prefixed message."""
    return struct.pack(">?I", False, len(message)) + message


@dataclass
class StreamResult:
    headers: dict[str, str] = field(default_factory=dict)
    data: bytearray = field(default_factory=bytearray)
    ended: bool = False
    reset: bool = False
    error_code: int | None = None
    """The RST_STREAM error code, when the server reset the stream."""

    @property
    def grpc_status(self) -> int | None:
        value = self.headers.get("grpc-status")
        return None if value is None else int(value)


class Attacker:
    """One HTTP/2 connection to a server; events are collected per stream."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.conn = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=True, header_encoding=None)
        )
        self.streams: dict[int, StreamResult] = {}
        self.goaway: h2.events.ConnectionTerminated | None = None
        self.closed = False
        self.ack = True
        """Acknowledge received data (False: a client that takes nothing)."""

    @classmethod
    async def connect(cls, port: int, *, window: int | None = None, ack: bool = True) -> Attacker:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        self = cls(reader, writer)
        self.ack = ack
        self.conn.initiate_connection()
        if window is not None:
            self.conn.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: window})
        await self.flush()
        return self

    async def flush(self) -> None:
        data = self.conn.data_to_send()
        if data and not self.closed:
            try:
                self.writer.write(data)
                await self.writer.drain()
            except (ConnectionError, RuntimeError):
                self.closed = True

    def open(
        self, headers: list[tuple[bytes, bytes]], body: bytes | None = None, *, end: bool = True
    ) -> int:
        """Open a stream; without a body it ends with its headers unless ``end`` is False."""
        stream_id = self.conn.get_next_available_stream_id()
        self.conn.send_headers(stream_id, headers, end_stream=body is None and end)
        if body is not None:
            self.conn.send_data(stream_id, body, end_stream=True)
        self.streams[stream_id] = StreamResult()
        return stream_id

    async def pump(self, seconds: float = READ_TIMEOUT) -> bool:
        """Read once; False when the connection is closed."""
        try:
            data = await asyncio.wait_for(self.reader.read(65536), seconds)
        except (ConnectionError, TimeoutError):
            data = b""
        if not data:
            self.closed = True
            return False
        for event in self.conn.receive_data(data):
            self._on(event)
        await self.flush()
        return True

    def _on(self, event: h2.events.Event) -> None:
        if isinstance(event, h2.events.ResponseReceived | h2.events.TrailersReceived):
            result = self.streams.setdefault(event.stream_id, StreamResult())
            for name, value in event.headers or []:
                result.headers[bytes(name).decode()] = bytes(value).decode()
        elif isinstance(event, h2.events.DataReceived):
            result = self.streams.setdefault(event.stream_id, StreamResult())
            result.data += event.data or b""
            if self.ack:
                self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
        elif isinstance(event, h2.events.StreamEnded):
            self.streams.setdefault(event.stream_id, StreamResult()).ended = True
        elif isinstance(event, h2.events.StreamReset):
            result = self.streams.setdefault(event.stream_id, StreamResult())
            result.reset = True
            result.error_code = event.error_code
        elif isinstance(event, h2.events.ConnectionTerminated):
            self.goaway = event

    async def until(self, stream_id: int, seconds: float = READ_TIMEOUT) -> StreamResult:
        """Pump until the stream has ended (or the connection closed)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        result = self.streams[stream_id]
        while not (result.ended or result.reset) and loop.time() < deadline:
            if not await self.pump(max(0.01, deadline - loop.time())):
                break
        return result

    async def until_closed(self, seconds: float = READ_TIMEOUT) -> bool:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        while not self.closed and loop.time() < deadline:
            await self.pump(max(0.01, deadline - loop.time()))
        return self.closed

    def close(self) -> None:
        self.closed = True
        self.writer.close()
