"""Listen fan-out through a full lifecycle: 1,000 listeners on one instance, and one listener on
each of 1,000 instances. Delivered messages per second, against a bare grpclib server streaming
the same number of pre-encoded messages to as many streams (the stream ceiling).

Listeners live in 4 client processes (250 each), so the client is not the bottleneck. The
simulator starts in manual mode; once every listener has its first message, the control plane
switches the clock to autojump with no grace, so the lifecycles run out (to the inactivity timeout
and STOPPED) as fast as the listeners take them. The bare server waits for the same go signal.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import multiprocessing
import time
from typing import Any

from _servers import ADMIN, TOKEN, RawCodec
from common import server

LISTENERS = 1000
PROCESSES = 4
PER_CONNECTION = 50
REPEATS = 3
"""Each figure is the best of this many runs: one run lasts about a second, so a single one
swings by a third on a shared 2-core machine."""
MESSAGES = 8
"""A building instance's statuses: IMAGEBUILD, PENDING, CREATING, INITIALIZING, RUNNING,
RUNNING (timeout condition), STOPPING, STOPPED. The bare server streams as many."""


def _client(port: int, instance_ids: list[str], ready: Any, go: Any, out: Any) -> None:
    from grpclib.client import Channel
    from grpclib.const import Cardinality

    from simulator._proto.gitpod import v1 as pb

    async def run() -> tuple[int, float]:
        channels = [
            Channel("127.0.0.1", port, codec=RawCodec())
            for _ in range(max(1, len(instance_ids) // PER_CONNECTION))
        ]
        started = 0
        received = 0
        all_first = asyncio.Event()
        path = "/gitpod.v1.WorkspacesService/ListenToWorkspaceInstance"
        metadata = {"authorization": f"Bearer {TOKEN}"}

        async def listen(n: int, iid: str) -> None:
            nonlocal started, received
            request = bytes(pb.ListenToWorkspaceInstanceRequest(instance_id=iid))
            async with channels[n % len(channels)].request(
                path, Cardinality.UNARY_STREAM, bytes, bytes, metadata=metadata
            ) as stream:
                await stream.send_message(request, end=True)
                await stream.recv_message()
                started += 1
                if started == len(instance_ids):
                    all_first.set()
                while await stream.recv_message() is not None:
                    received += 1

        tasks = [asyncio.ensure_future(listen(n, i)) for n, i in enumerate(instance_ids)]
        await asyncio.wait_for(all_first.wait(), 120)
        ready.put(True)
        await asyncio.get_running_loop().run_in_executor(None, go.wait)
        await asyncio.wait_for(asyncio.gather(*tasks), 300)
        end = time.perf_counter()
        for channel in channels:
            channel.close()
        return received, end

    out.put(asyncio.run(run()))


async def _go(port: int, simulator: bool) -> None:
    from grpclib.client import Channel

    from simulator._proto.gitpod import v1 as pb
    from simulator._proto.gitpod.simulator import v1 as spb

    control = Channel("127.0.0.1", port)
    if simulator:
        stub = spb.SimulatorServiceStub(control, metadata={"authorization": f"Bearer {ADMIN}"})
        await stub.set_clock(
            spb.SetClockRequest(mode=spb.ClockMode.AUTOJUMP, autojump_grace=dt.timedelta(0))
        )
    else:
        api = pb.WorkspacesServiceStub(control, metadata={"authorization": f"Bearer {TOKEN}"})
        await api.get_workspace(pb.GetWorkspaceRequest(workspace_id="gitpodio-gitpod-aaaaaaaaaaa"))
    control.close()


def _measure(port: int, instance_ids: list[str], simulator: bool) -> dict[str, Any]:
    ctx = multiprocessing.get_context("spawn")
    ready, out, go = ctx.Queue(), ctx.Queue(), ctx.Event()
    share = len(instance_ids) // PROCESSES
    procs = [
        ctx.Process(
            target=_client, args=(port, instance_ids[i * share : (i + 1) * share], ready, go, out)
        )
        for i in range(PROCESSES)
    ]
    for p in procs:
        p.start()
    for _ in procs:
        ready.get(timeout=180)
    begin = time.perf_counter()
    go.set()
    asyncio.run(_go(port, simulator))
    results = [out.get(timeout=300) for _ in procs]
    for p in procs:
        p.join(timeout=30)
    count = sum(r[0] for r in results)
    seconds = max(r[1] for r in results) - begin
    return {"messages": count, "seconds": seconds, "rate": count / seconds}


async def _instance_ids(port: int) -> list[str]:
    from grpclib.client import Channel

    from simulator._proto.gitpod import v1 as pb

    channel = Channel("127.0.0.1", port)
    stub = pb.WorkspacesServiceStub(channel, metadata={"authorization": f"Bearer {TOKEN}"})
    ids: list[str] = []
    token = ""
    while True:
        page = await stub.list_workspaces(
            pb.ListWorkspacesRequest(pagination=pb.Pagination(page_size=100, page_token=token))
        )
        ids += [i.last_active_instances.instance_id for i in page.result if i.last_active_instances]
        token = page.next_page_token
        if not token:
            return ids


def run() -> list[dict[str, Any]]:
    results = []
    for name, instances in (("1 instance", 1), ("1000 instances", LISTENERS)):
        row: dict[str, Any] = {"name": f"{LISTENERS} listeners, {name}"}
        for kind in ("sim", "bare"):
            args = ("--workspaces", str(instances), "--messages", str(MESSAGES))
            runs = []
            for _ in range(REPEATS):  # a fresh server each time: a lifecycle runs only once
                with server(kind, *args) as (port, _, iid):
                    if kind == "sim" and instances > 1:
                        iids = asyncio.run(_instance_ids(port))
                    else:
                        iids = [iid] * LISTENERS
                    runs.append(_measure(port, iids, kind == "sim"))
            row[kind] = max(runs, key=lambda r: r["rate"])
        results.append(row)
    return results


if __name__ == "__main__":
    for row in run():
        sim, bare = row["sim"], row["bare"]
        print(
            f"{row['name']}: sim {sim['rate']:8.0f} msg/s ({sim['messages']} in"
            f" {sim['seconds']:.2f} s) / bare {bare['rate']:8.0f} msg/s = "
            f"{sim['rate'] / bare['rate']:.2f}"
        )
