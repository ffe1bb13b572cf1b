"""Measurements that need a fresh process each; prints one JSON value.

python benchmarks/_probe.py in-process | workspace-memory N | journal-memory N | lifecycle N
"""

from __future__ import annotations

import asyncio
import gc
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def rss() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def in_process() -> float:
    """Median seconds for Simulator construction plus an in-memory channel."""
    from simulator import Simulator

    async def main() -> float:
        times = []
        for _ in range(50):
            begin = time.perf_counter()
            sim = Simulator(seed=1, users={"a": "t"})
            async with sim.channel():
                times.append(time.perf_counter() - begin)
        return sorted(times)[len(times) // 2]

    return asyncio.run(main())


def workspace_memory(n: int) -> float:
    """RSS bytes per workspace run to STOPPED (engine state only)."""
    from simulator.core.engine import Engine
    from simulator.core.simtime import MINUTE

    engine = Engine(seed=1)
    users = [engine.add_user(f"u{i}") for i in range(100)]
    gc.collect()
    before = rss()
    for i in range(n):
        user = users[i % 100]
        ws = engine.create_workspace(user, context_url=f"https://github.com/o/r{i % 50}")
        engine.stop_workspace(user, ws.id)
        engine.advance_to(engine.now + MINUTE)
    gc.collect()
    return (rss() - before) / n


def journal_memory(n: int) -> float:
    """RSS bytes per journal entry (an RPC with its request)."""
    from simulator._proto.gitpod import v1 as pb
    from simulator.server.journal import Journal

    journal = Journal(n)
    gc.collect()
    before = rss()
    for i in range(n):
        request = pb.GetWorkspaceRequest(workspace_id=f"gitpodio-gitpod-{i:011d}")
        journal.record_rpc(i, "/gitpod.v1.WorkspacesService/GetWorkspace", "alice", request, "OK")
    gc.collect()
    return (rss() - before) / n


def lifecycle(runs: int) -> float:
    """Median seconds of create -> RUNNING -> stop -> STOPPED over TCP (autojump, grpcio)."""
    import grpc

    sys.path.insert(0, str(ROOT / "tests"))
    from grpcio_stubs import grpcio_stubs

    with grpcio_stubs(Path(tempfile.mkdtemp())) as pb:
        command = [sys.executable, "-m", "simulator.cli", "serve", "--port", "0"]
        command += ["--clock", "autojump", "--quiet", "--user", "a=t"]
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None
        address = next(line for line in proc.stdout if line.startswith("listening on")).split()[-1]
        channel = grpc.insecure_channel(address)
        api = pb.grpc.WorkspacesServiceStub(channel)
        md = (("authorization", "t"),)
        running = pb.ws.WorkspaceInstanceStatus.PHASE_RUNNING
        times = []
        for i in range(runs):
            begin = time.perf_counter()
            request: Any = pb.ws.CreateAndStartWorkspaceRequest(context_url=f"github.com/o/r{i}")
            ws = api.CreateAndStartWorkspace(request, metadata=md)
            request = pb.ws.GetActiveWorkspaceInstanceRequest(workspace_id=ws.workspace_id)
            inst = api.GetActiveWorkspaceInstance(request, metadata=md).instance
            request = pb.ws.ListenToWorkspaceInstanceRequest(instance_id=inst.instance_id)
            for update in api.ListenToWorkspaceInstance(request, metadata=md):
                if update.instance_status.phase == running:
                    break
            request = pb.ws.StopWorkspaceRequest(workspace_id=ws.workspace_id)
            list(api.StopWorkspace(request, metadata=md))
            times.append(time.perf_counter() - begin)
        channel.close()
        proc.kill()
        proc.wait()
        return sorted(times)[len(times) // 2]


if __name__ == "__main__":
    name, *rest = sys.argv[1:]
    probes = {
        "in-process": in_process,
        "workspace-memory": workspace_memory,
        "journal-memory": journal_memory,
        "lifecycle": lifecycle,
    }
    print(json.dumps(probes[name](*(int(a) for a in rest))))
