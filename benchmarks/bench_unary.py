"""Unary GetWorkspace: throughput and p50/p99 latency at 1, 8 and 64 concurrent callers,
against a bare grpclib handler returning the same reply pre-encoded (the stack's limit).

Clients: 2 separate processes with a raw (bytes) codec, so neither encodes nor decodes.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import sys
import time
from typing import Any

from _servers import TOKEN, RawCodec
from common import percentile, server

DURATION = 3.0
PROCESSES = 2


def _client(port: int, request: bytes, callers: int, duration: float, out: Any) -> None:
    from grpclib.client import Channel
    from grpclib.const import Cardinality

    async def run() -> list[float]:
        channel = Channel("127.0.0.1", port, codec=RawCodec())
        latencies: list[float] = []
        deadline = time.perf_counter() + duration
        path = "/gitpod.v1.WorkspacesService/GetWorkspace"
        metadata = {"authorization": f"Bearer {TOKEN}"}

        async def caller() -> None:
            while (start := time.perf_counter()) < deadline:
                async with channel.request(
                    path, Cardinality.UNARY_UNARY, bytes, bytes, metadata=metadata
                ) as stream:
                    await stream.send_message(request, end=True)
                    await stream.recv_message()
                    await stream.recv_trailing_metadata()
                latencies.append(time.perf_counter() - start)

        await asyncio.gather(*(caller() for _ in range(callers)))
        channel.close()
        return latencies

    out.put(asyncio.run(run()))


def measure(port: int, wsid: str, callers: int, duration: float = DURATION) -> dict[str, float]:
    from simulator._proto.gitpod import v1 as pb

    request = bytes(pb.GetWorkspaceRequest(workspace_id=wsid))
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    per_process = max(1, callers // PROCESSES)
    procs = [
        ctx.Process(target=_client, args=(port, request, per_process, duration, queue))
        for _ in range(min(PROCESSES, callers))
    ]
    for p in procs:
        p.start()
    latencies: list[float] = []
    for _ in procs:
        latencies += queue.get(timeout=duration + 60)
    for p in procs:
        p.join(timeout=30)
    return {
        "rps": len(latencies) / duration,
        "p50_ms": percentile(latencies, 50) * 1000,
        "p99_ms": percentile(latencies, 99) * 1000,
    }


def run(duration: float = DURATION) -> list[dict[str, Any]]:
    results = []
    for callers in (1, 8, 64):
        with server("bare") as (port, wsid, _):
            bare = measure(port, wsid, callers, duration)
        with server("sim") as (port, wsid, _):
            sim = measure(port, wsid, callers, duration)
        results.append({"callers": callers, "bare": bare, "sim": sim})
    return results


if __name__ == "__main__":
    sys.path.insert(0, str(__import__("pathlib").Path(__file__).parent))
    for row in run():
        bare, sim = row["bare"], row["sim"]
        ratio = sim["rps"] / bare["rps"]
        print(
            f"{row['callers']:>3} callers: sim {sim['rps']:7.0f} rps (p50 {sim['p50_ms']:.2f} ms,"
            f" p99 {sim['p99_ms']:.2f} ms) / bare {bare['rps']:7.0f} rps = {ratio:.2f}"
        )
