"""Servers for the benchmarks, run as separate processes: the simulator, and a bare grpclib
handler that answers a pre-encoded reply (the stack's limit).

    python benchmarks/_servers.py sim|bare
prints ``PORT WORKSPACE_ID INSTANCE_ID`` once listening, then serves until killed.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

from grpclib.const import Cardinality, Handler
from grpclib.encoding.base import CodecBase
from grpclib.server import Server, Stream

TOKEN = "bench-token"


class RawCodec(CodecBase):
    """Bytes in, bytes out: no encoding cost on either side."""

    __content_subtype__ = "proto"

    def encode(self, message: Any, message_type: Any) -> bytes:
        return bytes(message)

    def decode(self, data: bytes, message_type: Any) -> bytes:
        return data


class Bare:
    """GetWorkspace answering the bytes the simulator would; Listen streaming N copies."""

    def __init__(self, reply: bytes, status: bytes, count: int) -> None:
        self.reply = reply
        self.status = status
        self.count = count

    async def get(self, stream: Stream[Any, Any]) -> None:
        await stream.recv_message()
        await stream.send_message(self.reply)

    async def listen(self, stream: Stream[Any, Any]) -> None:
        await stream.recv_message()
        for _ in range(self.count):
            await stream.send_message(self.status)

    def __mapping__(self) -> dict[str, Handler]:
        return {
            "/gitpod.v1.WorkspacesService/GetWorkspace": Handler(
                self.get, Cardinality.UNARY_UNARY, bytes, bytes
            ),
            "/gitpod.v1.WorkspacesService/ListenToWorkspaceInstance": Handler(
                self.listen, Cardinality.UNARY_STREAM, bytes, bytes
            ),
        }


async def main(kind: str, clock: str) -> None:
    from simulator import Simulator, bound_port
    from simulator._proto.gitpod import v1 as pb
    from simulator.convert import listen_payload, workspace_pb

    sim = Simulator(seed=1, users={"bench": TOKEN}, clock=clock)
    user = sim.engine.users["bench"]
    ws = sim.engine.create_workspace(user, context_url="https://github.com/gitpod-io/gitpod")
    inst = sim.engine.instances[ws.latest_instance_id or ""]
    if kind == "sim":
        context = sim.serve("127.0.0.1", 0)
        server = await context.__aenter__()
        port = bound_port(server)
    else:
        reply = bytes(pb.GetWorkspaceResponse(result=workspace_pb(ws)))
        bare = Bare(reply, listen_payload(inst.status), int(sys.argv[3]) if len(sys.argv) > 3 else 8)
        server = Server([bare], codec=RawCodec())
        await server.start("127.0.0.1", 0)
        port = bound_port(server)
    print(port, ws.id, inst.id, flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "manual"))
