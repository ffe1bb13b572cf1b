"""Servers for the benchmarks, run as separate processes: the simulator, and a bare grpclib
handler that answers pre-encoded replies (the stack's limit).

    python benchmarks/_servers.py sim|bare [--clock MODE] [--workspaces N] [--messages M]

prints ``PORT WORKSPACE_ID INSTANCE_ID`` once listening, then serves until killed. The simulator's
admin token is ``bench-admin``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib
from typing import Any

from grpclib.const import Cardinality, Handler
from grpclib.encoding.base import CodecBase
from grpclib.server import Server, Stream

TOKEN = "bench-token"
ADMIN = "bench-admin"


class RawCodec(CodecBase):
    """Bytes in, bytes out: no encoding cost on either side."""

    __content_subtype__ = "proto"

    def encode(self, message: Any, message_type: Any) -> bytes:
        return bytes(message)

    def decode(self, data: bytes, message_type: Any) -> bytes:
        return data


class Bare:
    """GetWorkspace answering the bytes the simulator would; Listen streaming M copies."""

    def __init__(self, reply: bytes, status: bytes, messages: int) -> None:
        self.reply = reply
        self.status = status
        self.messages = messages
        self.go = asyncio.Event()

    async def get(self, stream: Stream[Any, Any]) -> None:
        await stream.recv_message()
        self.go.set()  # listeners send the rest once a client has asked (fair timing)
        await stream.send_message(self.reply)

    async def listen(self, stream: Stream[Any, Any]) -> None:
        await stream.recv_message()
        await stream.send_message(self.status)
        await self.go.wait()
        for _ in range(self.messages - 1):
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


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("kind", choices=["sim", "bare"])
    parser.add_argument("--clock", default="manual")
    parser.add_argument("--workspaces", type=int, default=1)
    parser.add_argument("--messages", type=int, default=8)
    args = parser.parse_args()
    gc.set_threshold(50_000, 20, 100)  # as `gitpod-sim serve` does

    from simulator import Simulator, bound_port
    from simulator._proto.gitpod import v1 as pb
    from simulator.server.convert import listen_payload, workspace_pb

    sim = Simulator(seed=1, users={"bench": TOKEN}, clock=args.clock, admin_token=ADMIN)
    user = sim.engine.users["bench"]
    created = [
        sim.engine.create_workspace(user, context_url=f"https://github.com/org/repo{i}")
        for i in range(args.workspaces)
    ]
    ws = created[0]
    inst = sim.engine.instances[ws.latest_instance_id or ""]
    if args.kind == "sim":
        # The control plane's generated code loads with the first control call (start-up time,
        # measured by the start-up rows); fan-out starts with one (SetClock), and that loading
        # (10 ms quiet, several times that loaded) blocked the loop inside the timed window.
        # Loaded here, as in a server that has answered a control call before.
        importlib.import_module("simulator._proto.gitpod.simulator.v1")
        context = sim.serve("127.0.0.1", 0)
        server = await context.__aenter__()
    else:
        reply = bytes(pb.GetWorkspaceResponse(result=workspace_pb(ws)))
        bare = Bare(reply, listen_payload(inst.status), args.messages)
        server = Server([bare], codec=RawCodec())
        await server.start("127.0.0.1", 0)
    print(bound_port(server), ws.id, inst.id, flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main())
