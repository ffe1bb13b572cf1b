"""The three clock modes: manual never moves alone, realtime follows speed, autojump jumps."""

from __future__ import annotations

import asyncio

import pytest
from grpc_helpers import ALICE, active_instance_id, collect, create, settle, stub_for

from simulator import ClockMode, Phase, Simulator
from simulator._proto.gitpod import v1 as pb
from simulator.core.simtime import DEFAULT_START, MINUTE, SECOND
from simulator.server.clock import SimClock


class FakeWall:
    """A wall clock the test moves by hand."""

    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def listen(stub: pb.WorkspacesServiceStub, iid: str) -> object:
    return stub.listen_to_workspace_instance(pb.ListenToWorkspaceInstanceRequest(instance_id=iid))


# ---------------------------------------------------------------------- the clock itself


def test_manual_clock_reads_only_what_it_was_told() -> None:
    wall = FakeWall()
    clock = SimClock(DEFAULT_START, ClockMode.MANUAL, wall=wall)
    wall.t += 3600
    assert clock.now() == DEFAULT_START
    clock.jump_to(DEFAULT_START + 5 * SECOND)
    assert clock.now() == DEFAULT_START + 5 * SECOND
    with pytest.raises(ValueError, match="backwards"):
        clock.jump_to(DEFAULT_START)


def test_realtime_clock_follows_speed() -> None:
    wall = FakeWall()
    clock = SimClock(DEFAULT_START, ClockMode.REALTIME, speed=60, wall=wall)
    wall.t += 1.5
    assert clock.now() == DEFAULT_START + 90 * SECOND
    assert clock.wall_delay_until(DEFAULT_START + 150 * SECOND) == pytest.approx(1.0)
    clock.set_mode(ClockMode.REALTIME, speed=2)
    wall.t += 1
    assert clock.now() == DEFAULT_START + 92 * SECOND
    clock.set_mode(ClockMode.MANUAL)
    wall.t += 100
    assert clock.now() == DEFAULT_START + 92 * SECOND


def test_realtime_clock_that_ran_past_a_jump_target_stays_where_it_is() -> None:
    wall = FakeWall()
    clock = SimClock(DEFAULT_START, ClockMode.REALTIME, speed=50, wall=wall)
    wall.t += 1.0
    clock.jump_to(DEFAULT_START + 10 * SECOND)  # passed 40 s ago: reached, not an error
    assert clock.now() == DEFAULT_START + 50 * SECOND


class TickingWall(FakeWall):
    """A wall clock that moves a little every time it is read (a loaded machine, exaggerated)."""

    def __call__(self) -> float:
        self.t += 0.5
        return self.t


async def test_realtime_advance_races_the_clock_without_failing() -> None:
    """Found by the contract suite over TCP (realtime x50 with the control plane, under load):
    Advance read the next event, realtime ran past it before the jump, and the clock refused
    to go backwards (UNKNOWN to the client). Every read here moves the clock 25 s."""
    wall = TickingWall()
    sim = Simulator(seed=3, users={"alice": ALICE}, clock="realtime", speed=50, wall=wall)
    async with sim.channel() as channel:
        stub = stub_for(channel, ALICE)
        wsid = await create(stub)
        iid = await active_instance_id(stub, wsid)
        for _ in range(3):
            sim.advance_to_next()
            sim.advance(1)
            assert sim.engine.now <= sim.clock.now()
        assert sim.phase_of(iid) is not Phase.IMAGEBUILD


@pytest.mark.parametrize("speed", [0, -1, float("inf"), float("nan"), 1e308, 1_000_001])
def test_bad_speed_is_refused(speed: float) -> None:
    with pytest.raises(ValueError, match=r"out of range: 0 < speed <= 1000000"):
        SimClock(DEFAULT_START, ClockMode.REALTIME, speed=speed)


def test_unknown_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="sometimes"):
        Simulator(clock="sometimes")


# ---------------------------------------------------------------------- through the API


async def test_manual_mode_never_moves_on_its_own(sim: Simulator) -> None:
    async with sim.channel() as channel:
        stub = stub_for(channel, ALICE)
        wsid = await create(stub)
        iid = await active_instance_id(stub, wsid)
        task = asyncio.ensure_future(collect(listen(stub, iid)))
        before = sim.now()
        for _ in range(500):
            await asyncio.sleep(0)
        assert sim.now() == before
        assert sim.phase_of(iid) is Phase.IMAGEBUILD
        assert sim.activity.waiting == 1 and sim.engine.next_event() is not None
        task.cancel()


async def test_realtime_mode_runs_the_lifecycle_as_the_wall_clock_moves() -> None:
    wall = FakeWall()
    sim = Simulator(seed=3, users={"alice": ALICE}, clock="realtime", speed=60, wall=wall)
    async with sim.channel() as channel:
        stub = stub_for(channel, ALICE)
        wsid = await create(stub)
        iid = await active_instance_id(stub, wsid)
        task = asyncio.ensure_future(collect(listen(stub, iid)))
        await settle(lambda: sim.activity.waiting == 1)
        wall.t += 1.0  # one wall second at speed 60: the minute-long build is over
        sim.kick()
        await settle(lambda: sim.phase_of(iid) is Phase.PENDING)
        assert sim.engine.now == DEFAULT_START + MINUTE
        wall.t += 0.5  # 30 s more: PENDING (2 s), CREATING (10 s), INITIALIZING (15 s) pass
        sim.kick()
        await settle(lambda: sim.phase_of(iid) is Phase.RUNNING)
        # A call brings the engine up to the clock's present by itself.
        wall.t += (30 * 60 + 2) / 60  # 30m2s simulated: the inactivity timeout has passed
        response = await stub.get_active_workspace_instance(
            pb.GetActiveWorkspaceInstanceRequest(workspace_id=wsid)
        )
        assert response.instance.status.phase == Phase.STOPPING
        assert response.instance.status.conditions.timeout == (
            "workspace timed out after period of inactivity (00h30m) took longer than 00h30m"
        )
        task.cancel()


async def test_autojump_streams_a_whole_lifecycle_without_waiting() -> None:
    sim = Simulator(seed=4, users={"alice": ALICE}, clock="autojump", autojump_grace="1h")
    async with sim.channel() as channel:
        stub = stub_for(channel, ALICE)
        wsid = await create(stub)
        iid = await active_instance_id(stub, wsid)
        at: dict[int, int] = {}
        sim.add_listener(
            lambda e: at.setdefault(e.status.version, e.at) if hasattr(e, "status") else None
        )
        seen: list[tuple[Phase, int]] = []
        stream = listen(stub, iid)
        async for message in stream:  # type: ignore[attr-defined]
            status = message.instance_status
            seen.append((status.phase, at.get(status.status_version, DEFAULT_START)))
            if status.phase == Phase.RUNNING:
                break
        await stream.aclose()  # type: ignore[attr-defined]
        offsets = [(phase, (t - DEFAULT_START) // SECOND) for phase, t in seen]
        assert offsets == [
            (Phase.IMAGEBUILD, 0),
            (Phase.PENDING, 60),
            (Phase.CREATING, 62),
            (Phase.INITIALIZING, 72),
            (Phase.RUNNING, 87),
        ]
        # The client acts within the grace period: its stop wins over the inactivity timeout.
        stops = await collect(stub.stop_workspace(pb.StopWorkspaceRequest(workspace_id=wsid)))
        assert len(stops) == 2
        status = sim.instance(iid).status
        assert status.stopped_by_request is True and status.timeout == ""
        assert (sim.now() - DEFAULT_START) // SECOND == 92


async def test_autojump_jumps_to_a_timeout_after_the_grace_period() -> None:
    sim = Simulator(seed=4, users={"alice": ALICE}, clock="autojump", autojump_grace=0)
    async with sim.channel() as channel:
        stub = stub_for(channel, ALICE)
        wsid = await create(stub)
        iid = await active_instance_id(stub, wsid)
        messages = await collect(listen(stub, iid))
    phases = [m.instance_status.phase for m in messages]
    assert phases == [
        Phase.IMAGEBUILD,
        Phase.PENDING,
        Phase.CREATING,
        Phase.INITIALIZING,
        Phase.RUNNING,
        Phase.RUNNING,  # the timeout condition, published in RUNNING first
        Phase.STOPPING,
        Phase.STOPPED,
    ]
    assert messages[-1].instance_status.conditions.timeout == (
        "workspace timed out after period of inactivity (00h30m) took longer than 00h30m"
    )
    assert messages[-1].instance_status.conditions.stopped_by_request is None


async def test_autojump_does_not_move_without_a_waiting_stream() -> None:
    sim = Simulator(seed=4, users={"alice": ALICE}, clock="autojump")
    async with sim.channel() as channel:
        stub = stub_for(channel, ALICE)
        wsid = await create(stub)
        for _ in range(200):
            await asyncio.sleep(0)
        assert sim.now() == DEFAULT_START
        response = await stub.get_active_workspace_instance(
            pb.GetActiveWorkspaceInstanceRequest(workspace_id=wsid)
        )
        assert response.instance.status.phase == Phase.IMAGEBUILD


async def test_switching_mode_while_a_stream_waits(sim: Simulator) -> None:
    async with sim.channel() as channel:
        stub = stub_for(channel, ALICE)
        wsid = await create(stub)
        iid = await active_instance_id(stub, wsid)
        task = asyncio.ensure_future(collect(listen(stub, iid)))
        await settle(lambda: sim.activity.waiting == 1)
        sim.set_clock("autojump")
        sim.clock.autojump_grace = 0.0
        messages = await task
        assert messages[-1].instance_status.phase == Phase.STOPPED
        assert sim.clock.mode is ClockMode.AUTOJUMP


def test_advance_api(sim: Simulator) -> None:
    user = sim.engine.users["alice"]
    ws = sim.engine.create_workspace(user, context_url="https://github.com/a/b")
    assert sim.advance("59s") == []
    changes = sim.advance(1.0)
    assert [c.status.phase for c in changes] == [Phase.PENDING]
    assert [c.status.phase for c in sim.advance_to_next()] == [Phase.CREATING]
    with pytest.raises(ValueError, match="invalid duration"):
        sim.advance("soon")
    with pytest.raises(ValueError, match=r"advance -1s is out of range: 0 \.\. 36500d"):
        sim.advance(-1)
    assert sim.workspace(ws.id).active_instance_id is not None


async def test_autojump_keeps_working_after_a_reset() -> None:
    """The driver must follow the engine that a reset (or an import) puts in place."""
    sim = Simulator(seed=4, users={"alice": ALICE}, clock="autojump", autojump_grace=0)
    async with sim.channel() as channel:
        stub = stub_for(channel, ALICE)
        await create(stub)
        sim.reset()
        wsid = await create(stub)
        iid = await active_instance_id(stub, wsid)
        messages = await asyncio.wait_for(collect(listen(stub, iid)), 10)
    assert [m.instance_status.phase for m in messages][-1] == Phase.STOPPED
