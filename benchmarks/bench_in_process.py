"""What one in-process test costs: a Simulator, its in-memory channel, and a workspace through
create -> RUNNING -> stop -> STOPPED over that channel (manual clock, advanced by the test).

Median wall time of many rounds in one process (imports are paid once, as in a test session),
against the same calls' floor: a bare grpclib server on an in-memory channel answering the same
number of unary calls with pre-encoded bytes. Not part of CI::

    .venv/bin/python benchmarks/bench_in_process.py
"""

from __future__ import annotations

import asyncio
import statistics
import time
from typing import Any

ROUNDS = 200


async def _simulator_round() -> float:
    from simulator import Simulator
    from simulator._proto.gitpod import v1 as pb

    begin = time.perf_counter()
    sim = Simulator(seed=1, users={"a": "t"})
    async with sim.channel() as channel:
        stub = pb.WorkspacesServiceStub(channel, metadata={"authorization": "Bearer t"})
        ws = await stub.create_and_start_workspace(
            pb.CreateAndStartWorkspaceRequest(context_url="https://github.com/o/r")
        )
        sim.advance("5m")
        running = await stub.get_workspace(pb.GetWorkspaceRequest(workspace_id=ws.workspace_id))
        assert running.result is not None
        async for _ in stub.stop_workspace(pb.StopWorkspaceRequest(workspace_id=ws.workspace_id)):
            sim.advance("1m")
    return time.perf_counter() - begin


async def _bare_round() -> float:
    """Three unary calls and one short stream through grpclib's in-memory channel, no logic."""
    from grpclib.const import Cardinality, Handler
    from grpclib.testing import ChannelFor

    class Raw:
        __content_subtype__ = "proto"

        def encode(self, message: Any, message_type: Any) -> bytes:
            return bytes(message)

        def decode(self, data: bytes, message_type: Any) -> bytes:
            return data

    payload = b"\x0a\x10" + b"x" * 16

    class Bare:
        async def unary(self, stream: Any) -> None:
            await stream.recv_message()
            await stream.send_message(payload)

        async def stream(self, stream: Any) -> None:
            await stream.recv_message()
            for _ in range(2):
                await stream.send_message(payload)

        def __mapping__(self) -> dict[str, Handler]:
            return {
                "/b.B/U": Handler(self.unary, Cardinality.UNARY_UNARY, bytes, bytes),
                "/b.B/S": Handler(self.stream, Cardinality.UNARY_STREAM, bytes, bytes),
            }

    begin = time.perf_counter()
    async with ChannelFor([Bare()], codec=Raw()) as channel:  # type: ignore[arg-type]
        for _ in range(2):
            async with channel.request("/b.B/U", Cardinality.UNARY_UNARY, bytes, bytes) as s:
                await s.send_message(b"", end=True)
                await s.recv_message()
        async with channel.request("/b.B/S", Cardinality.UNARY_STREAM, bytes, bytes) as s:
            await s.send_message(b"", end=True)
            while await s.recv_message() is not None:
                pass
    return time.perf_counter() - begin


def run(rounds: int = ROUNDS) -> dict[str, float]:
    async def main() -> dict[str, float]:
        await _simulator_round()  # imports and first-use caches, as a test session has them
        await _bare_round()
        sim, bare = [], []
        for _ in range(rounds):
            sim.append(await _simulator_round())
            bare.append(await _bare_round())
        return {
            "sim_ms": statistics.median(sim) * 1000,
            "bare_ms": statistics.median(bare) * 1000,
        }

    return asyncio.run(main())


if __name__ == "__main__":
    figures = run()
    print(
        f"in-process test (Simulator + channel + create -> RUNNING -> STOPPED): "
        f"{figures['sim_ms']:.2f} ms; bare grpclib, same calls: {figures['bare_ms']:.2f} ms; "
        f"ratio {figures['bare_ms'] / figures['sim_ms']:.2f}"
    )
