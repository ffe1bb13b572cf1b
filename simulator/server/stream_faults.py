"""A grpclib stream whose sends obey the faults that hit its call (decided in the core).

``FaultyStream`` wraps the handler's stream only when a fault hit it, so a stream without faults
pays nothing. It ends the stream with a status after N messages (``stream-end``), sends the second
message twice (``stream-duplicate``), or, for ``rpc-error`` with ``after_effect``, answers the
status at the first send: the handler's command has run, its answer is lost. A
``connection-drop`` fault closes the connection the call came on (after a GOAWAY, if asked),
before the call runs or, with ``after_effect``, at the point the answer would go out.
"""

from __future__ import annotations

import logging
from typing import Any

from grpclib.const import Status
from grpclib.exceptions import GRPCError

from simulator.core.fault_book import StreamFaults
from simulator.core.faults import ConnectionDrop, RpcError

_NONE = StreamFaults()
log = logging.getLogger("gitpod_sim.rpc")


class LostAnswer(GRPCError):
    """The status an answer-lost fault answers after the call ran (the journal says it ran)."""

    @classmethod
    def of(cls, error: RpcError) -> LostAnswer:
        return cls(Status[error.code], error.message)


class ConnectionDropped(GRPCError):
    """The call's connection was closed by a connection-drop fault: nothing more reaches the
    client (it sees UNAVAILABLE); the journal keeps UNAVAILABLE and how the connection went."""

    def __init__(self, drop: ConnectionDrop, *, ran: bool) -> None:
        how = "GOAWAY, then closed" if drop.goaway else "TCP connection closed"
        when = "after the call ran" if ran else "before the call ran"
        super().__init__(Status.UNAVAILABLE, f"connection dropped ({how}) {when}")
        self.ran = ran


def drop_connection(stream: Any, drop: ConnectionDrop, *, ran: bool) -> ConnectionDropped:
    """Close the HTTP/2 connection ``stream`` came on (a GOAWAY naming this stream as the last
    one processed first, when asked) and answer the error to raise. A stream that is not a
    grpclib one (the Connect/gRPC-Web gateway) has no connection of its own to drop: its call
    answers UNAVAILABLE with the same message."""
    while isinstance(stream, FaultyStream):
        stream = stream.wrapped
    h2_stream = getattr(stream, "_stream", None)
    transport = getattr(h2_stream, "_transport", None)
    if transport is not None and not transport.is_closing():
        if drop.goaway:
            h2 = h2_stream._h2_connection  # type: ignore[union-attr]
            try:
                h2.close_connection(last_stream_id=h2_stream.id)  # type: ignore[union-attr]
                transport.write(h2.data_to_send())
            except Exception:  # the h2 state machine refused: closing is all that is left
                log.debug("GOAWAY not sent", exc_info=True)
        transport.close()
    return ConnectionDropped(drop, ran=ran)


def lost_answer(stream: Any, lost: RpcError | ConnectionDrop) -> GRPCError:
    """The error to raise once the call ran and its answer is lost (the connection dropped when
    that is the fault)."""
    if isinstance(lost, ConnectionDrop):
        return drop_connection(stream, lost, ran=True)
    return LostAnswer.of(lost)


class FaultyStream:
    """Delegates everything to the grpclib stream but ``send_message``."""

    def __init__(
        self,
        stream: Any,
        faults: StreamFaults = _NONE,
        lost: RpcError | ConnectionDrop | None = None,
    ) -> None:
        self._stream = stream
        self.faults = faults
        self.lost = lost
        self.sent = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)

    @property
    def wrapped(self) -> Any:
        return self._stream

    def arm(self, faults: StreamFaults) -> None:
        self.faults = faults

    def raise_lost(self) -> None:
        """The answer-lost status, when one is pending (the handler ran to its end)."""
        if self.lost is not None:
            lost, self.lost = self.lost, None
            raise lost_answer(self._stream, lost)

    async def send_message(self, message: Any) -> None:
        self.raise_lost()
        end = self.faults.end
        if end is not None and self.sent >= end.after_messages:
            raise GRPCError(Status[end.code], end.message)
        await self._stream.send_message(message)
        self.sent += 1
        if self.sent == 2 and self.faults.duplicate:
            self.faults = StreamFaults(end, duplicate=False)
            await self.send_message(message)


def with_faults(stream: Any, faults: StreamFaults) -> Any:
    """``stream`` itself when no fault hit it, else the same stream with the faults applied."""
    if isinstance(stream, FaultyStream):
        stream.arm(faults)
        return stream
    return FaultyStream(stream, faults) if faults else stream
