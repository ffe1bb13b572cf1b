"""A grpclib stream whose sends obey the faults that hit its call (decided in the core).

``FaultyStream`` wraps the handler's stream only when a fault hit it, so a stream without faults
pays nothing. It ends the stream with a status after N messages (``stream-end``), sends the second
message twice (``stream-duplicate``), or, for ``rpc-error`` with ``after_effect``, answers the
status at the first send: the handler's command has run, its answer is lost.
"""

from __future__ import annotations

from typing import Any

from grpclib.const import Status
from grpclib.exceptions import GRPCError

from simulator.core.fault_book import StreamFaults
from simulator.core.faults import RpcError

_NONE = StreamFaults()


class LostAnswer(GRPCError):
    """The status an answer-lost fault answers after the call ran (the journal says it ran)."""

    @classmethod
    def of(cls, error: RpcError) -> LostAnswer:
        return cls(Status[error.code], error.message)


class FaultyStream:
    """Delegates everything to the grpclib stream but ``send_message``."""

    def __init__(
        self, stream: Any, faults: StreamFaults = _NONE, lost: RpcError | None = None
    ) -> None:
        self._stream = stream
        self.faults = faults
        self.lost = lost
        self.sent = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)

    def arm(self, faults: StreamFaults) -> None:
        self.faults = faults

    def raise_lost(self) -> None:
        """The answer-lost status, when one is pending (the handler ran to its end)."""
        if self.lost is not None:
            lost, self.lost = self.lost, None
            raise LostAnswer.of(lost)

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
