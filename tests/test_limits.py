"""One validation layer (issue 11): each poisoned value is refused with INVALID_ARGUMENT naming the
field, the value and the range; the state is unchanged; the server answers OK afterwards.

Before this layer, each case here bricked the server: ``speed=1e308`` made every call UNKNOWN,
``sigma=1000`` killed the clock task on the next draw, advancing 10,000 years made GetClock,
ListWorkspaces and ReadJournal UNKNOWN for good.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from grpc_helpers import ALICE, REPO, create, stub_for
from grpclib.client import Channel
from grpclib.const import Status
from grpclib.exceptions import GRPCError

from simulator import Phase, Simulator
from simulator._proto.gitpod import v1 as pb
from simulator._proto.gitpod.simulator import v1 as spb
from simulator.core import limits
from simulator.core.errors import InvalidArgument
from simulator.core.limits import LATEST_INSTANT, MAX_DURATION, OutOfRange
from simulator.core.plan import Fixed, LifecyclePlan, LogNormal, Timeouts, Uniform
from simulator.core.simtime import DAY, HOUR, SECOND, parse_instant
from simulator.server.clock import ClockMode, SimClock

ADMIN = "admin-secret"
YEAR = dt.timedelta(days=365)


@pytest.fixture
def sim() -> Simulator:
    return Simulator(seed=5, users={"alice": ALICE}, admin_token=ADMIN)


@pytest.fixture
async def channel(sim: Simulator) -> AsyncIterator[Channel]:
    async with sim.channel() as ch:
        yield ch


@pytest.fixture
def ctl(channel: Channel) -> spb.SimulatorServiceStub:
    return spb.SimulatorServiceStub(channel, metadata={"authorization": f"Bearer {ADMIN}"})


def _lognormal(sigma: float) -> spb.SetPlanRequest:
    return spb.SetPlanRequest(
        plan=spb.LifecyclePlan(
            durations=[
                spb.PhaseDuration(
                    phase=Phase.PENDING,
                    duration=spb.Distribution(
                        lognormal=spb.LogNormalDistribution(
                            median=dt.timedelta(seconds=2), sigma=sigma
                        )
                    ),
                )
            ]
        )
    )


Call = Callable[[spb.SimulatorServiceStub], Awaitable[Any]]

POISONED: dict[str, tuple[Call, str]] = {
    "speed 1e308": (
        lambda c: c.set_clock(spb.SetClockRequest(mode=spb.ClockMode.REALTIME, speed=1e308)),
        "speed 1e+308 is out of range: 0 < speed <= 1000000",
    ),
    "speed inf": (
        lambda c: c.set_clock(spb.SetClockRequest(speed=math.inf)),
        "speed inf is out of range: 0 < speed <= 1000000",
    ),
    "speed nan": (
        lambda c: c.set_clock(spb.SetClockRequest(speed=math.nan)),
        "speed nan is out of range: 0 < speed <= 1000000",
    ),
    "autojump grace 2h": (
        lambda c: c.set_clock(spb.SetClockRequest(autojump_grace=dt.timedelta(hours=2))),
        "autojump_grace 7200.0 is out of range: 0 .. 3600 seconds",
    ),
    "sigma 1000": (
        lambda c: c.set_plan(_lognormal(1000)),
        "duration of PENDING: lognormal sigma 1000.0 is out of range: 0 .. 20",
    ),
    "sigma inf": (
        lambda c: c.set_plan(_lognormal(math.inf)),
        "duration of PENDING: lognormal sigma inf is out of range: 0 .. 20",
    ),
    "advance 10,000 years": (
        lambda c: c.advance(spb.AdvanceRequest(by=10_000 * YEAR)),
        "by 3650000d is out of range: 0 .. 36500d (about a century)",
    ),
    "run until idle for 10,000 years": (
        lambda c: c.advance(spb.AdvanceRequest(until_idle=10_000 * YEAR)),
        "until_idle 3650000d is out of range: 0 .. 36500d (about a century)",
    ),
    "build_log_lines 2 million": (
        lambda c: c.set_plan(spb.SetPlanRequest(plan=spb.LifecyclePlan(build_log_lines=2_000_000))),
        "build_log_lines 2000000 is out of range: 1 .. 10000",
    ),
    "a timeout of 200 years": (
        lambda c: c.set_plan(
            spb.SetPlanRequest(plan=spb.LifecyclePlan(timeouts=spb.Timeouts(startup=200 * YEAR)))
        ),
        "timeouts.startup 73000d is out of range: 0 .. 36500d (about a century)",
    ),
    "fault count 4 billion": (
        lambda c: c.add_fault(
            spb.AddFaultRequest(
                spec=spb.FaultSpec(count=4_000_000_000, stall_phase=spb.StallPhase(Phase.PENDING))
            )
        ),
        "count 4000000000 is out of range: 0 .. 1000000",
    ),
    "latency of 200 years": (
        lambda c: c.add_fault(
            spb.AddFaultRequest(
                spec=spb.FaultSpec(
                    rpc_latency=spb.RpcLatency(method="GetWorkspace", latency=200 * YEAR)
                )
            )
        ),
        "latency 73000d is out of range: 0 .. 36500d (about a century)",
    ),
    "fault message with NUL": (
        lambda c: c.add_fault(
            spb.AddFaultRequest(
                spec=spb.FaultSpec(
                    rpc_error=spb.RpcError(method="GetWorkspace", code=14, message="a\x00b")
                )
            )
        ),
        "message 'a\\x00b' is out of range: 0..1024 characters without control characters",
    ),
    "user id with NUL": (
        lambda c: c.add_user(spb.AddUserRequest(user_id="eve\x00", token="tok-eve")),
        "user id 'eve\\x00' is out of range:"
        " 1..256 characters without whitespace or control characters",
    ),
    "user token not ASCII": (
        lambda c: c.add_user(spb.AddUserRequest(user_id="eve", token="t\u00f6ken")),
        "token 'töken' is out of range:"
        " 1..256 visible ASCII characters (what an authorization header can carry)",
    ),
    "user token of 4 KiB": (
        lambda c: c.add_user(spb.AddUserRequest(user_id="eve", token="t" * 4096)),
        None,
    ),
    "prebuild id with DEL": (
        lambda c: c.add_prebuild(spb.AddPrebuildRequest(prebuild_id="pb\x7f", context_url=REPO)),
        "prebuild id 'pb\\x7f' is out of range:"
        " 1..256 characters without whitespace or control characters",
    ),
    "prebuild context with NUL": (
        lambda c: c.add_prebuild(
            spb.AddPrebuildRequest(prebuild_id="pb", context_url=REPO + "\x00")
        ),
        None,
    ),
    "a user scope with control characters": (
        lambda c: c.set_plan(
            spb.SetPlanRequest(scope=spb.PlanScope(user_id="a\x01"), plan=spb.LifecyclePlan())
        ),
        None,
    ),
}


def _state(sim: Simulator) -> str:
    return json.dumps(sim.export_state(), sort_keys=True)


async def _answers_ok(ctl: spb.SimulatorServiceStub, api: pb.WorkspacesServiceStub) -> None:
    await ctl.get_clock(spb.GetClockRequest())
    await ctl.read_journal(spb.ReadJournalRequest())
    await api.list_workspaces(pb.ListWorkspacesRequest())
    await ctl.advance(spb.AdvanceRequest(by=dt.timedelta(minutes=5)))


@pytest.mark.parametrize("name", list(POISONED))
async def test_poisoned_value_is_refused_and_changes_nothing(
    sim: Simulator, channel: Channel, ctl: spb.SimulatorServiceStub, name: str
) -> None:
    api = stub_for(channel, ALICE)
    await create(api)  # a workspace whose lifecycle would draw from a poisoned plan
    before = _state(sim)
    call, message = POISONED[name]
    with pytest.raises(GRPCError) as info:
        await call(ctl)
    assert info.value.status is Status.INVALID_ARGUMENT, info.value.message
    if message is not None:
        assert info.value.message == message
    assert _state(sim) == before
    await _answers_ok(ctl, api)


async def test_advancing_past_the_latest_instant_is_refused() -> None:
    start = LATEST_INSTANT - HOUR
    sim = Simulator(seed=1, users={"alice": ALICE}, admin_token=ADMIN, start_time=start)
    async with sim.channel() as channel:
        ctl = spb.SimulatorServiceStub(channel, metadata={"authorization": f"Bearer {ADMIN}"})
        api = stub_for(channel, ALICE)
        before = _state(sim)
        with pytest.raises(GRPCError) as info:
            await ctl.advance(spb.AdvanceRequest(by=dt.timedelta(hours=2)))
        assert info.value.status is Status.INVALID_ARGUMENT
        assert info.value.message == (
            "by 2h is out of range: the clock would stand at 9900-01-01T00:59:59.999999Z, past the"
            " latest instant 9899-12-31T23:59:59.999999Z (at most 1h from now)"
        )
        assert _state(sim) == before
        await ctl.get_clock(spb.GetClockRequest())
        await api.list_workspaces(pb.ListWorkspacesRequest())
        await ctl.read_journal(spb.ReadJournalRequest())
        # what is due past the latest instant never fires; running until idle stops there
        await create(api)
        await ctl.advance(spb.AdvanceRequest(until_idle=dt.timedelta(days=3650)))
        assert sim.now() <= LATEST_INSTANT
        await ctl.get_clock(spb.GetClockRequest())
        await ctl.read_journal(spb.ReadJournalRequest())


def test_the_start_time_must_leave_room_to_advance() -> None:
    with pytest.raises(OutOfRange, match=r"start_time 9999-12-31T23:00:00Z is out of range"):
        Simulator(start_time="9999-12-31T23:00:00Z")


def test_a_realtime_clock_stops_at_the_latest_instant() -> None:
    wall = [0.0]
    clock = SimClock(LATEST_INSTANT - SECOND, ClockMode.REALTIME, speed=1e6, wall=lambda: wall[0])
    wall[0] = 10**9
    assert clock.now() == LATEST_INSTANT


# ---------------------------------------------------------------------- the clock's own checks


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("speed", 1e308),
        ("speed", 0.0),
        ("speed", math.nan),
        ("autojump_grace", math.inf),
        ("autojump_grace", -1.0),
        ("autojump_grace", math.nan),
        ("mode", "realtime"),
    ],
)
def test_clock_settings_are_checked_by_their_setters(setting: str, value: object) -> None:
    """No caller (runtime, an import) can write a field around the checks (issue 10, item 6)."""
    clock = SimClock(0, ClockMode.MANUAL)
    before = (clock.mode, clock.speed, clock.autojump_grace, clock.now())
    with pytest.raises(OutOfRange):
        setattr(clock, setting, value)
    with pytest.raises(OutOfRange):
        clock.configure(**{"autojump_grace": 1.0, "speed": 2.0, setting: value})  # all or none
    assert (clock.mode, clock.speed, clock.autojump_grace, clock.now()) == before
    with pytest.raises(AttributeError):
        clock.rate = 3  # type: ignore[attr-defined]  # slots: no stray attributes


def test_clock_setters_keep_time_where_it_is() -> None:
    wall = [100.0]
    clock = SimClock(0, ClockMode.REALTIME, speed=2, wall=lambda: wall[0])
    wall[0] += 1
    clock.speed = 10
    assert clock.now() == 2 * SECOND
    wall[0] += 1
    assert clock.now() == 12 * SECOND
    clock.mode = ClockMode.MANUAL
    wall[0] += 1
    assert clock.now() == 12 * SECOND


def test_import_refuses_an_infinite_grace_and_keeps_the_state(sim: Simulator) -> None:
    sim.engine.create_workspace(sim.engine.users["alice"], context_url=REPO)
    data = sim.export_state()
    before = _state(sim)
    data["clock"]["autojump_grace"] = math.inf
    with pytest.raises(InvalidArgument) as info:
        sim.import_state(data)
    assert info.value.message == (
        "$.clock.autojump_grace: autojump_grace inf is out of range: 0 .. 3600 seconds"
    )
    assert _state(sim) == before
    assert sim.clock.autojump_grace == 0.250


# ---------------------------------------------------------------------- the layer itself


def test_limits_name_field_value_and_range() -> None:
    with pytest.raises(OutOfRange) as info:
        limits.speed(1e308, "--speed")
    assert str(info.value) == "--speed 1e+308 is out of range: 0 < speed <= 1000000"
    assert info.value.code == "INVALID_ARGUMENT"
    assert isinstance(info.value, ValueError)
    assert limits.duration("d", MAX_DURATION) == MAX_DURATION
    with pytest.raises(OutOfRange, match=r"^d 3153600000000001us is out of range: 0 \.\. 36500d"):
        limits.duration("d", MAX_DURATION + 1)
    with pytest.raises(OutOfRange, match="expected an integer"):
        limits.duration("d", 1.5)
    with pytest.raises(OutOfRange, match="expected an integer"):
        limits.duration("d", True)
    assert limits.instant("t", parse_instant("0001-01-01T00:00:00Z")) < 0
    with pytest.raises(OutOfRange):
        limits.instant("t", limits.BEGINNING_OF_TIME - 1)
    with pytest.raises(OutOfRange, match="expected a string"):
        limits.name("n", 5)
    assert limits.text("m", "tab\tok") == "tab\tok"
    with pytest.raises(OutOfRange):
        limits.context_url("u", "https://github.com/a/b\x7f")


def test_plans_check_their_own_values() -> None:
    for make in (
        lambda: Fixed(-1),
        lambda: Fixed(MAX_DURATION + 1),
        lambda: Uniform(0, MAX_DURATION + 1),
        lambda: LogNormal(SECOND, 1000.0),
        lambda: LogNormal(SECOND, math.inf),
        lambda: LogNormal(MAX_DURATION + 1, 1.0),
        lambda: LogNormal(SECOND, 1.0, cap=MAX_DURATION + 1),
        lambda: LifecyclePlan(build_log_lines=2_000_000),
        lambda: LifecyclePlan(cluster="eu\x0053"),
        lambda: Timeouts(startup=-1),
        lambda: Timeouts(max_lifetime=MAX_DURATION + DAY),
    ):
        with pytest.raises(OutOfRange):
            make()


def test_the_widest_lognormal_never_overflows() -> None:
    """sigma at its maximum and the longest median: draws stay finite and within the cap."""
    import random

    dist = LogNormal(MAX_DURATION, limits.MAX_SIGMA)
    rng = random.Random(0)
    for _ in range(20_000):
        assert 0 <= dist.sample(rng) <= MAX_DURATION


async def test_context_urls_with_nul_or_del_are_refused(sim: Simulator, channel: Channel) -> None:
    api = stub_for(channel, ALICE)
    for bad in (REPO + "\x00", REPO + "/tree/ma\x7fin", "snapshot/ab\x00c"):
        with pytest.raises(GRPCError) as info:
            await api.create_and_start_workspace(pb.CreateAndStartWorkspaceRequest(context_url=bad))
        assert info.value.status is Status.INVALID_ARGUMENT
        assert "control character" in (info.value.message or "")
    assert sim.engine.workspaces == {}
