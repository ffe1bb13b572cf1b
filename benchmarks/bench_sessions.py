"""Sessions (issue 15): what one more world on a server costs.

    python benchmarks/bench_sessions.py [--json]

- CreateSession + a first call (ListWorkspaces in the new session), in process (the in-memory
  channel) and over TCP (127.0.0.1), both through the control plane as a client sees it; and
  ``SimServer.create_session`` from Python, the plugin's path.
- Resident memory per idle session, and per session holding one stopped workspace (VmRSS growth
  over 2,000 sessions, after a warm-up round, divided by the count).
- A watched autojump lifecycle (create, listen to STOPPED through the inactivity timeout) alone,
  and again while 999 other sessions each hold an open listen stream: the ratio is what counts.

Not part of CI: the figures depend on the machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import statistics
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

from grpclib.client import Channel

from simulator import SimServer, Simulator
from simulator._proto.gitpod import v1 as pb
from simulator._proto.gitpod.simulator import v1 as spb
from simulator.server.host import SESSION_KEY

ADMIN = "bench-admin"
TOKEN = "bench-alice"
REPO = "https://github.com/gitpod-io/empty"


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


def api(channel: Channel, session: str | None) -> pb.WorkspacesServiceStub:
    metadata = {"authorization": f"Bearer {TOKEN}"}
    if session is not None:
        metadata[SESSION_KEY] = session
    return pb.WorkspacesServiceStub(channel, metadata=metadata)


def new_host() -> SimServer:
    return SimServer(
        Simulator(seed=1, users={"alice": TOKEN}, admin_token=ADMIN), max_sessions=10_000
    )


@contextlib.asynccontextmanager
async def tcp_channel(host: SimServer) -> AsyncIterator[Channel]:
    from simulator import bound_port

    async with host.serve("127.0.0.1", 0) as server:
        channel = Channel("127.0.0.1", bound_port(server))
        try:
            yield channel
        finally:
            channel.close()


async def create_and_call(channel: Channel, rounds: int) -> float:
    """Median seconds of CreateSession (control plane) + the session's first ListWorkspaces."""
    control = spb.SimulatorServiceStub(channel, metadata={"authorization": f"Bearer {ADMIN}"})
    user = spb.SessionUser(user_id="alice", token=TOKEN)
    times = []
    for i in range(rounds):
        name = f"b{i}"
        begin = time.perf_counter()
        await control.create_session(spb.CreateSessionRequest(name=name, seed=i, users=[user]))
        await api(channel, name).list_workspaces(pb.ListWorkspacesRequest())
        times.append(time.perf_counter() - begin)
        await control.delete_session(spb.DeleteSessionRequest(name=name))
    return statistics.median(times[rounds // 10 :])


async def python_create_and_call(rounds: int) -> float:
    host = new_host()
    times = []
    async with host.running(), host.channel() as channel:
        for i in range(rounds):
            name = f"p{i}"
            begin = time.perf_counter()
            host.create_session(name, seed=i, users={"alice": TOKEN})
            await api(channel, name).list_workspaces(pb.ListWorkspacesRequest())
            times.append(time.perf_counter() - begin)
            host.delete_session(name)
    return statistics.median(times[rounds // 10 :])


async def memory(n: int) -> dict[str, float]:
    """VmRSS growth per session while ``n`` idle sessions, then ``n`` more with one stopped
    workspace each, are held (nothing is deleted in between: freed memory would be reused and
    hide the cost)."""
    host = new_host()
    out: dict[str, float] = {}
    async with host.running(), host.channel() as channel:
        await api(channel, None).list_workspaces(pb.ListWorkspacesRequest())  # warm the path
        for label, with_workspace in (("idle", False), ("one stopped workspace", True)):
            gc.collect()
            before = rss()
            for i in range(n):
                name = f"{label[:3]}-{i}"
                sim = host.create_session(name, seed=i, users={"alice": TOKEN})
                if with_workspace:
                    stub = api(channel, name)
                    ws = await stub.create_and_start_workspace(
                        pb.CreateAndStartWorkspaceRequest(context_url=REPO)
                    )
                    stream = stub.stop_workspace(
                        pb.StopWorkspaceRequest(workspace_id=ws.workspace_id)
                    )
                    await stream.__anext__()  # the first status; the rest is let go
                    await stream.aclose()
                    sim.advance("1h")
            gc.collect()
            out[label] = (rss() - before) / n
    return out


async def watched_lifecycle(channel: Channel, session: str | None) -> float:
    stub = api(channel, session)
    begin = time.perf_counter()
    ws = await stub.create_and_start_workspace(pb.CreateAndStartWorkspaceRequest(context_url=REPO))
    active = await stub.get_active_workspace_instance(
        pb.GetActiveWorkspaceInstanceRequest(workspace_id=ws.workspace_id)
    )
    stream = stub.listen_to_workspace_instance(
        pb.ListenToWorkspaceInstanceRequest(instance_id=active.instance.instance_id)
    )
    async with contextlib.aclosing(stream) as it:
        async for message in it:
            if message.instance_status.phase == pb.WorkspaceInstanceStatusPhase.STOPPED:
                break
    return time.perf_counter() - begin


async def lifecycle_with_neighbours(others: int, rounds: int) -> tuple[float, float]:
    host = new_host()
    async with host.running(), host.channel() as channel:
        host.create_session("me", clock="autojump", users={"alice": TOKEN})
        alone = [await watched_lifecycle(channel, "me") for _ in range(rounds)]
        # 999 sessions, each with a running workspace and a listener that holds its stream open
        # (on channels of 50 streams each: a connection takes at most 100 streams at once)
        streams: list[Any] = []
        channels = contextlib.AsyncExitStack()
        await channels.__aenter__()
        for i in range(others):
            name = f"n{i}"
            host.create_session(name, clock="manual", users={"alice": TOKEN})
            if i % 50 == 0:
                crowd = await channels.enter_async_context(host.channel())
            stub = api(crowd, name)
            ws = await stub.create_and_start_workspace(
                pb.CreateAndStartWorkspaceRequest(context_url=REPO)
            )
            active = await stub.get_active_workspace_instance(
                pb.GetActiveWorkspaceInstanceRequest(workspace_id=ws.workspace_id)
            )
            stream = stub.listen_to_workspace_instance(
                pb.ListenToWorkspaceInstanceRequest(instance_id=active.instance.instance_id)
            )
            await stream.__anext__()
            streams.append(stream)
        crowded = [await watched_lifecycle(channel, "me") for _ in range(rounds)]
        for stream in streams:
            await stream.aclose()
        await channels.aclose()
    return statistics.median(alone), statistics.median(crowded)


def run(rounds: int = 200, sessions: int = 1000, others: int = 999) -> dict[str, float]:
    async def main() -> dict[str, float]:
        host = new_host()
        async with host.running(), host.channel() as channel:
            in_process = await create_and_call(channel, rounds)
        host = new_host()
        async with host.running(), tcp_channel(host) as channel:
            over_tcp = await create_and_call(channel, rounds)
        python = await python_create_and_call(rounds)
        mem = await memory(sessions)
        alone, crowded = await lifecycle_with_neighbours(others, 20)
        return {
            "create_call_in_process_ms": in_process * 1000,
            "create_call_tcp_ms": over_tcp * 1000,
            "create_call_python_ms": python * 1000,
            "rss_idle_kib": mem["idle"] / 1024,
            "rss_stopped_kib": mem["one stopped workspace"] / 1024,
            "lifecycle_alone_ms": alone * 1000,
            "lifecycle_crowded_ms": crowded * 1000,
            "crowded_ratio": crowded / alone,
        }

    return asyncio.run(main())


def rows(figures: dict[str, float]) -> list[list[str]]:
    f = figures
    return [
        ["CreateSession + first call, in process", f"{f['create_call_in_process_ms']:.2f} ms",
         f"python API {f['create_call_python_ms']:.2f} ms", "-", "<= 1 ms",
         "met" if f["create_call_in_process_ms"] <= 1 else "MISSED"],
        ["CreateSession + first call, over TCP", f"{f['create_call_tcp_ms']:.2f} ms",
         "-", "-", "-", "-"],
        ["RSS per idle session", f"{f['rss_idle_kib']:.1f} KiB", "-", "-", "<= 64 KiB",
         "met" if f["rss_idle_kib"] <= 64 else "MISSED"],
        ["RSS per session, one stopped workspace", f"{f['rss_stopped_kib']:.1f} KiB", "-", "-",
         "-", "-"],
        ["autojump lifecycle, 999 other sessions streaming", f"{f['lifecycle_crowded_ms']:.1f} ms",
         f"alone {f['lifecycle_alone_ms']:.1f} ms", f"{f['crowded_ratio']:.2f}", "<= 1.2",
         "met" if f["crowded_ratio"] <= 1.2 else "MISSED"],
    ]  # fmt: skip


if __name__ == "__main__":
    figures = run()
    if "--json" in sys.argv:  # for run_all.py
        print(json.dumps(figures))
        sys.exit(0)
    width = [48, 12, 24, 6, 10, 7]
    for row in rows(figures):
        print("  ".join(cell.ljust(w) for cell, w in zip(row, width, strict=True)))
