"""Autojump under load: how often a timeout fires before a client that saw RUNNING acts on it.

Issue 19's race: a client listens, sees RUNNING and closes its stream to go on (here: a stop).
Until the server has seen the stream close, the stream still counts as waiting, so autojump may
move time; the next event is the 30-minute inactivity timeout, which it takes once the grace
period of real quiet has passed. On a loaded machine the close can take longer than the grace:
the instance then times out "early", before the client's stop.

Each lifecycle: CreateAndStartWorkspace, ListenToWorkspaceInstance until RUNNING, close the
stream, StopWorkspace until STOPPED; by the blocking grpcio client of ``examples/grpcio_client``
(``--client grpcio``, the default: it closes a stream it leaves when grpcio gets to it, as the
issue's tool did) or an asyncio grpclib client (``--client grpclib``: closes it at once).
Load: ``--burners`` processes spinning on the CPU (plus whatever else the machine runs). Early
timeouts are read from the journal afterwards: every transition caused by a ``timeout:`` (none
is wanted by this client).

    python benchmarks/bench_autojump.py --runs 1000 --burners 2 --grace 20ms   # the old default
    python benchmarks/bench_autojump.py --runs 1000 --burners 2                # the default

``run_lifecycles`` is what ``tests/test_autojump_load.py`` runs in a bounded version.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import os
import subprocess
import sys
import time
from collections.abc import AsyncGenerator, Iterator
from pathlib import Path
from typing import Any, cast

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from grpclib.client import Channel  # noqa: E402

sys.path.insert(0, str(ROOT / "examples" / "grpcio_client"))
from gitpod_tool import Client, GitpodError  # noqa: E402

from simulator._proto.gitpod import v1 as pb  # noqa: E402
from simulator._proto.gitpod.simulator import v1 as spb  # noqa: E402

TOKEN = "tok-bench"
ADMIN = "adm-bench"
RUNNING = pb.WorkspaceInstanceStatusPhase.RUNNING


def _burn() -> None:  # pragma: no cover (runs in a child process)
    while True:
        pass


@contextlib.contextmanager
def burners(n: int) -> Iterator[None]:
    """``n`` processes spinning on the CPU until the block ends."""
    procs = [multiprocessing.Process(target=_burn, daemon=True) for _ in range(n)]
    for proc in procs:
        proc.start()
    try:
        yield
    finally:
        for proc in procs:
            proc.kill()
            proc.join(5)


@contextlib.contextmanager
def server(*extra: str) -> Iterator[int]:
    """``gitpod-sim serve --clock autojump`` on a free port; yields the port."""
    script = Path(sys.executable).parent / "gitpod-sim"
    cmd = [str(script)] if script.exists() else [sys.executable, "-m", "simulator.cli"]
    proc = subprocess.Popen(
        [*cmd, "serve", "--host", "127.0.0.1", "--port", "0", "--clock", "autojump",
         "--user", f"bench={TOKEN}", "--admin-token", ADMIN, "--quiet", *extra],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 30
        for line in proc.stdout:
            if line.startswith("listening on "):
                yield int(line.rsplit(":", 1)[1])
                break
            if time.monotonic() > deadline:
                raise RuntimeError("the server did not start")
        else:
            raise RuntimeError("the server exited before listening")
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


async def _lifecycle(api: pb.WorkspacesServiceStub, n: int) -> None:
    created = await api.create_and_start_workspace(
        pb.CreateAndStartWorkspaceRequest(context_url=f"https://github.com/bench/r{n % 50}")
    )
    active = await api.get_active_workspace_instance(
        pb.GetActiveWorkspaceInstanceRequest(workspace_id=created.workspace_id)
    )
    assert active.instance is not None
    stream = api.listen_to_workspace_instance(
        pb.ListenToWorkspaceInstanceRequest(instance_id=active.instance.instance_id)
    )
    async with contextlib.aclosing(cast(AsyncGenerator[Any, None], stream)) as it:
        async for message in it:
            if message.instance_status.phase is RUNNING:
                break  # the client acts on what it saw: closes the stream, then stops
    async for _ in api.stop_workspace(pb.StopWorkspaceRequest(workspace_id=created.workspace_id)):
        pass


DESCRIPTORS = ROOT / "simulator" / "_proto" / "descriptors.binpb"


def _grpcio_lifecycles(port: int, runs: int, timeout: float) -> None:
    client = Client(f"127.0.0.1:{port}", TOKEN, DESCRIPTORS, timeout=timeout)
    try:
        for n in range(runs):
            workspace_id = client.start(f"https://github.com/bench/r{n % 50}")
            try:
                client.wait_running(workspace_id)
            except RuntimeError:
                continue  # it timed out before RUNNING: counted from the journal
            try:
                client.stop(workspace_id)
            except GitpodError:
                continue  # it timed out first (FAILED_PRECONDITION): counted from the journal
    finally:
        client.close()


async def _count(
    port: int,
    runs: int,
    timeout: float,  # noqa: ASYNC109 (each RPC's deadline)
    kind: str = "grpcio",
) -> tuple[int, int, float]:
    channel = Channel("127.0.0.1", port)
    try:
        api = pb.WorkspacesServiceStub(
            channel, metadata={"authorization": f"Bearer {TOKEN}"}, timeout=timeout
        )
        started = time.perf_counter()
        if kind == "grpcio":
            await asyncio.to_thread(_grpcio_lifecycles, port, runs, timeout)
        else:
            for n in range(runs):
                await _lifecycle(api, n)
        took = time.perf_counter() - started
        ctl = spb.SimulatorServiceStub(channel, metadata={"authorization": f"Bearer {ADMIN}"})
        early, stops, cursor = 0, 0, 0
        while entries := (page := await ctl.read_journal(
            spb.ReadJournalRequest(from_seq=cursor)
        )).entries:  # fmt: skip
            cursor = page.next_seq
            for entry in entries:
                if entry.transition is not None:
                    early += entry.transition.cause.startswith("timeout:")
                    stops += entry.transition.cause == "stop"
        return early, stops, took
    finally:
        channel.close()


def run_lifecycles(
    runs: int,
    *,
    burner_count: int = 2,
    grace: str | None = None,
    timeout: float = 60.0,
    client: str = "grpcio",
) -> tuple[int, float]:
    """``runs`` lifecycles against a fresh autojump server under ``burner_count`` CPU burners;
    answers (early timeouts, seconds taken)."""
    extra = ("--autojump-grace", grace) if grace else ()
    with server(*extra) as port, burners(burner_count):
        early, _, took = asyncio.run(_count(port, runs, timeout, client))
    return early, took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--burners", type=int, default=2)
    parser.add_argument("--grace", default=None, help="--autojump-grace (default: the server's)")
    parser.add_argument("--client", choices=("grpcio", "grpclib"), default="grpcio")
    args = parser.parse_args()
    early, took = run_lifecycles(
        args.runs, burner_count=args.burners, grace=args.grace, client=args.client
    )
    grace = args.grace or "default"
    print(
        f"autojump grace {grace}, {args.client} client: {early} early timeouts in {args.runs}"
        " lifecycles"
        f" under {args.burners} burners ({took:.1f} s, {took / args.runs * 1000:.1f} ms each)"
    )


if __name__ == "__main__":
    main()
