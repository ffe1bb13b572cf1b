"""A protobuf codec that lets a handler send bytes it encoded earlier.

Why: one status change goes to many listeners. Encoding it once and handing every stream the same
bytes keeps fan-out bound by the transport, not by betterproto2's encoder (STACK.md).
"""

from __future__ import annotations

from typing import Any

from grpclib.encoding.proto import ProtoCodec


class Preencoded:
    """A message already serialised; :class:`SimCodec` sends ``data`` as is."""

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data

    def __repr__(self) -> str:
        return f"Preencoded({len(self.data)} bytes)"


class SimCodec(ProtoCodec):
    """grpclib's ProtoCodec (betterproto2 messages speak its protocol) plus :class:`Preencoded`."""

    def encode(self, message: Any, message_type: Any) -> bytes:
        if type(message) is Preencoded:
            return message.data
        return super().encode(message, message_type)
