"""What one in-process test costs: a Simulator, its in-memory channel, and a workspace through
create -> RUNNING -> stop -> STOPPED over that channel (manual clock, advanced by the test).

Median wall time of many rounds in one process (imports are paid once, as in a test session),
against the same calls' floor: a bare grpclib server on an in-memory channel answering the same
number of calls with pre-encoded bytes. Not part of CI::

    .venv/bin/python benchmarks/bench_in_process.py
    .venv/bin/python benchmarks/bench_in_process.py --split          # our share in parts (wall)
    .venv/bin/python benchmarks/bench_in_process.py --instructions   # the same under callgrind

``--split`` times variants of the round (``VARIANTS``), interleaved, and takes differences: the
stack's share is ``bare_like`` (the bare round on our calls' paths, with the caller's header
and our messages' bytes), and each part of ours is what one variant costs more than others
(``PARTS``). ``--instructions`` runs each variant under valgrind's callgrind twice, for two
numbers of rounds, and divides the difference of the instruction counts by the difference of
the rounds: start-up and imports cancel, and the figures do not depend on what else the machine
runs (about 6 minutes; wall times on a shared machine swing by 10-20%)."""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

ROUNDS = 200
CONTEXT_URL = "https://github.com/o/r"
TOKEN = "t"
METADATA = {"authorization": f"Bearer {TOKEN}"}
WS = "/gitpod.v1.WorkspacesService/"


async def _simulator_round() -> None:
    from simulator import Simulator
    from simulator._proto.gitpod import v1 as pb

    sim = Simulator(seed=1, users={"a": TOKEN})
    async with sim.channel() as channel:
        stub = pb.WorkspacesServiceStub(channel, metadata=METADATA)
        ws = await stub.create_and_start_workspace(
            pb.CreateAndStartWorkspaceRequest(context_url=CONTEXT_URL)
        )
        sim.advance("5m")
        running = await stub.get_workspace(pb.GetWorkspaceRequest(workspace_id=ws.workspace_id))
        assert running.result is not None
        async for _ in stub.stop_workspace(pb.StopWorkspaceRequest(workspace_id=ws.workspace_id)):
            sim.advance("1m")


class _Raw:
    """A pass-through codec: the client sends bytes and receives bytes (no message classes)."""

    __content_subtype__ = "proto"

    def encode(self, message: Any, message_type: Any) -> bytes:
        return bytes(message)

    def decode(self, data: bytes, message_type: Any) -> bytes:
        return data


def _field(number: int, text: str) -> bytes:
    data = text.encode()
    assert len(data) < 128
    return bytes([number << 3 | 2, len(data)]) + data


async def _raw_client_round() -> None:
    """The same round with a client that sends the requests' bytes and keeps the replies' bytes:
    our server and simulator, none of betterproto2's work on the client's side."""
    from grpclib.const import Cardinality

    from simulator import Simulator

    sim = Simulator(seed=1, users={"a": TOKEN})
    async with sim.channel() as channel:
        channel._codec = _Raw()  # type: ignore[assignment]  # the client's end only
        unary, stream = Cardinality.UNARY_UNARY, Cardinality.UNARY_STREAM
        async with channel.request(
            WS + "CreateAndStartWorkspace", unary, bytes, bytes, metadata=METADATA
        ) as s:
            await s.send_message(_field(2, CONTEXT_URL), end=True)
            reply = await s.recv_message()
        assert reply is not None and reply[0] == 0x0A
        workspace_id = reply[2 : 2 + reply[1]].decode()
        sim.advance("5m")
        async with channel.request(
            WS + "GetWorkspace", unary, bytes, bytes, metadata=METADATA
        ) as s:
            await s.send_message(_field(1, workspace_id), end=True)
            assert await s.recv_message()
        async with channel.request(
            WS + "StopWorkspace", stream, bytes, bytes, metadata=METADATA
        ) as s:
            await s.send_message(_field(2, workspace_id), end=True)
            while await s.recv_message() is not None:
                sim.advance("1m")


async def _python_api_round() -> None:
    """The same steps through the Python API, no channel: the world's own work (the engine, and
    the observer's hub, journal and coverage) for these calls."""
    from simulator import Simulator

    sim = Simulator(seed=1, users={"a": TOKEN})
    engine = sim.engine
    user = engine.users["a"]
    ws = engine.create_workspace(user, context_url=CONTEXT_URL)
    sim.advance("5m")
    engine.get_workspace(user, ws.id)
    engine.stop_workspace(user, ws.id)
    sim.advance("1m")
    sim.advance("1m")


async def _construct_round() -> None:
    from simulator import Simulator

    Simulator(seed=1, users={"a": TOKEN})


async def _channel_round() -> None:
    from simulator import Simulator

    async with Simulator(seed=1, users={"a": TOKEN}).channel():
        pass


_BARE: list[Any] = []


def _bare_service() -> Any:
    """Three unary calls and one short stream answered with pre-encoded bytes, no logic."""
    if _BARE:
        return _BARE[0]
    from grpclib.const import Cardinality, Handler

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

    _BARE.append(Bare())
    return _BARE[0]


_LIKE: list[Any] = []


def _bare_like_service() -> Any:
    """A bare service on our three methods' paths, answering the bytes ours answers (the same
    workspace, seed 1), with no logic: what the stack costs for exactly these calls (the
    paths' and the replies' sizes count in HPACK and HTTP/2)."""
    if _LIKE:
        return _LIKE[0]
    from grpclib.const import Cardinality, Handler

    from simulator import Simulator
    from simulator.server.wire import get_workspace_response_bytes, string_field_bytes

    sim = Simulator(seed=1, users={"a": TOKEN})
    ws = sim.engine.create_workspace(sim.engine.users["a"], context_url=CONTEXT_URL)
    created, got = string_field_bytes(ws.id), get_workspace_response_bytes(ws)

    class Like:
        async def create(self, stream: Any) -> None:
            await stream.recv_message()
            await stream.send_message(created)

        async def get(self, stream: Any) -> None:
            await stream.recv_message()
            await stream.send_message(got)

        async def stop(self, stream: Any) -> None:
            await stream.recv_message()
            for _ in range(2):
                await stream.send_message(b"")

        def __mapping__(self) -> dict[str, Handler]:
            unary, stream = Cardinality.UNARY_UNARY, Cardinality.UNARY_STREAM
            return {
                WS + "CreateAndStartWorkspace": Handler(self.create, unary, bytes, bytes),
                WS + "GetWorkspace": Handler(self.get, unary, bytes, bytes),
                WS + "StopWorkspace": Handler(self.stop, stream, bytes, bytes),
            }

    _LIKE.append((Like(), ws.id))
    return _LIKE[0]


async def _bare_like_round() -> None:
    """The bare round on our paths, with the caller's header, our requests' and replies' bytes."""
    from grpclib.const import Cardinality
    from grpclib.testing import ChannelFor

    service, workspace_id = _bare_like_service()
    unary, stream = Cardinality.UNARY_UNARY, Cardinality.UNARY_STREAM
    async with ChannelFor([service], codec=_Raw()) as channel:  # type: ignore[arg-type]
        async with channel.request(
            WS + "CreateAndStartWorkspace", unary, bytes, bytes, metadata=METADATA
        ) as s:
            await s.send_message(_field(2, CONTEXT_URL), end=True)
            await s.recv_message()
        async with channel.request(
            WS + "GetWorkspace", unary, bytes, bytes, metadata=METADATA
        ) as s:
            await s.send_message(_field(1, workspace_id), end=True)
            await s.recv_message()
        async with channel.request(
            WS + "StopWorkspace", stream, bytes, bytes, metadata=METADATA
        ) as s:
            await s.send_message(_field(2, workspace_id), end=True)
            while await s.recv_message() is not None:
                pass


async def _bare_round() -> None:
    """Two unary calls and one short stream through grpclib's in-memory channel, no logic."""
    from grpclib.const import Cardinality
    from grpclib.testing import ChannelFor

    async with ChannelFor([_bare_service()], codec=_Raw()) as channel:  # type: ignore[arg-type]
        for _ in range(2):
            async with channel.request("/b.B/U", Cardinality.UNARY_UNARY, bytes, bytes) as s:
                await s.send_message(b"", end=True)
                await s.recv_message()
        async with channel.request("/b.B/S", Cardinality.UNARY_STREAM, bytes, bytes) as s:
            await s.send_message(b"", end=True)
            while await s.recv_message() is not None:
                pass


async def _bare_channel_round() -> None:
    from grpclib.testing import ChannelFor

    async with ChannelFor([_bare_service()], codec=_Raw()):  # type: ignore[arg-type]
        pass


VARIANTS: dict[str, Callable[[], Awaitable[None]]] = {
    "round": _simulator_round,
    "raw_client": _raw_client_round,
    "python_api": _python_api_round,
    "construct": _construct_round,
    "channel": _channel_round,
    "bare": _bare_round,
    "bare_like": _bare_like_round,
    "bare_channel": _bare_channel_round,
}
NO_GC = "round_without_gc"
"""The round with the garbage collector off (what it costs is the difference): its own run
under callgrind; in wall time, the round less the collections timed in a run of rounds."""

PARTS: list[tuple[str, list[str], list[str]]] = [
    # (part, variants added, variants taken away)
    ("Simulator()", ["construct"], []),
    ("channel open+close, beyond bare's", ["channel"], ["construct", "bare_channel"]),
    ("the world's work (engine; hub, journal)", ["python_api"], ["construct"]),
    (
        "RPC layer (boundary, service, codec)",
        ["raw_client", "construct", "bare_channel"],
        ["channel", "python_api", "bare_like"],
    ),
    ("client's messages (betterproto2 stubs)", ["round"], ["raw_client"]),
]
"""Our share (the round less ``bare_like``), part by part; they add up to it. The stack's share
is ``bare_like``: the bare round, plus what our calls' own paths, the caller's
``authorization`` header and our messages' sizes cost grpclib, h2 and HPACK. The client's
betterproto2 messages are the test's own (any betterproto2 client pays them)."""


def _run_rounds(name: str, rounds: int) -> None:
    """Warm every variant up (imports, first-use caches), then ``rounds`` rounds of ``name``."""

    async def main() -> None:
        for variant in VARIANTS.values():
            await variant()
        if name == NO_GC:
            gc.disable()
        run = VARIANTS["round" if name == NO_GC else name]
        for _ in range(rounds):
            await run()

    asyncio.run(main())


def wall_split(rounds: int = ROUNDS, names: list[str] | None = None) -> dict[str, float]:
    """Median ms of each variant (default: all), interleaved round by round; with all, also the
    garbage collector's mean ms a round, timed by ``gc.callbacks`` over rounds run one after the
    other as a test session runs them (interleaved, a collection frees other variants' garbage
    too; with the collector off for some rounds only, the next ones would pay for theirs)."""

    async def main() -> dict[str, float]:
        times: dict[str, list[float]] = {name: [] for name in names or VARIANTS}
        for variant in VARIANTS.values():
            await variant()
        for _ in range(rounds):
            for name in times:
                begin = time.perf_counter()
                await VARIANTS[name]()
                times[name].append(time.perf_counter() - begin)
        figures = {name: statistics.median(t) * 1000 for name, t in times.items()}
        if names is None:
            collecting = [0.0, 0.0]  # started at, total

            def on_collect(phase: str, info: dict[str, int]) -> None:
                if phase == "start":
                    collecting[0] = time.perf_counter()
                else:
                    collecting[1] += time.perf_counter() - collecting[0]

            gc.callbacks.append(on_collect)
            try:
                for _ in range(rounds):
                    await _simulator_round()
            finally:
                gc.callbacks.remove(on_collect)
            figures[NO_GC] = figures["round"] - collecting[1] / rounds * 1000
        return figures

    return asyncio.run(main())


def instruction_split(low: int = 10, high: int = 60) -> dict[str, float]:
    """Instructions (millions) per round of each variant, under callgrind (see the module doc)."""
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        sys.exit("--instructions needs valgrind (apt-get install valgrind)")
    figures = {}
    for name in [*VARIANTS, NO_GC]:
        counts = []
        for rounds in (low, high):
            done = subprocess.run(
                [
                    valgrind,
                    "--tool=callgrind",
                    "--callgrind-out-file=/dev/null",
                    sys.executable,
                    os.path.abspath(__file__),
                    "--variant",
                    name,
                    "--rounds",
                    str(rounds),
                ],
                capture_output=True,
                text=True,
                check=True,
            )
            line = next(line for line in done.stderr.splitlines() if "Collected" in line)
            counts.append(int(line.split()[-1]))
        figures[name] = (counts[1] - counts[0]) / (high - low) / 1e6
    return figures


def _print_split(figures: dict[str, float], unit: str) -> None:
    bare, like, ours = figures["bare"], figures["bare_like"], figures["round"]
    rows = [
        ("bare grpclib round (two unary calls, a stream)", bare),
        ("  + our paths, header and message sizes", like - bare),
        ("the stack for our calls (bare_like)", like),
        ("our round", ours),
        ("our share (round - bare_like)", ours - like),
    ]
    for part, plus, minus in PARTS:
        rows.append(("  " + part, sum(figures[n] for n in plus) - sum(figures[n] for n in minus)))
    rows.append(("garbage collector (inside the parts)", ours - figures[NO_GC]))
    for label, value in rows:
        print(f"{label:48s} {value:8.3f} {unit}")
    print("variants: " + ", ".join(f"{name} {value:.3f}" for name, value in figures.items()))


def run(rounds: int = ROUNDS) -> dict[str, float]:
    figures = wall_split(rounds, ["round", "bare"])
    return {"sim_ms": figures["round"], "bare_ms": figures["bare"]}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--split", action="store_true", help="our share in parts (wall time)")
    parser.add_argument("--instructions", action="store_true", help="the split under callgrind")
    parser.add_argument("--variant", choices=[*VARIANTS, NO_GC], help=argparse.SUPPRESS)
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    args = parser.parse_args()
    if args.variant:
        _run_rounds(args.variant, args.rounds)
    elif args.instructions:
        _print_split(instruction_split(), "M instructions")
    else:
        figures = wall_split(args.rounds, None if args.split else ["round", "bare"])
        sim, bare = figures["round"], figures["bare"]
        print(
            f"in-process test (Simulator + channel + create -> RUNNING -> STOPPED): {sim:.2f} ms;"
            f" bare grpclib, same calls: {bare:.2f} ms; ratio {bare / sim:.2f}"
        )
        if args.split:
            _print_split(figures, "ms")
