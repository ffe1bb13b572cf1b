"""Context patterns cannot hang the server (issue 11): RE2 matches in linear time and refuses
what it cannot match so (backreferences, lookaround), with its reason.

Before: Python's ``re`` took 16.7 s for ``(a+)+$`` against a 29-character URL, the whole server
frozen meanwhile, and each extra character doubled it.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from grpc_helpers import ALICE, stub_for
from grpclib.client import Channel
from grpclib.const import Status
from grpclib.exceptions import GRPCError

from simulator import Simulator
from simulator._proto.gitpod import v1 as pb
from simulator._proto.gitpod.simulator import v1 as spb
from simulator.core.errors import InvalidArgument
from simulator.core.patterns import compile_pattern
from simulator.scenario.schema import ScenarioError, load

ADMIN = "adm"
CATASTROPHIC = ("(a+)+$", "(a|aa)+$", "(a|a?)+b", "(.*a){20}")


@pytest.fixture
def sim() -> Simulator:
    return Simulator(seed=2, users={"alice": ALICE}, admin_token=ADMIN)


@pytest.fixture
async def channel(sim: Simulator) -> AsyncIterator[Channel]:
    async with sim.channel() as ch:
        yield ch


@pytest.fixture
def ctl(channel: Channel) -> spb.SimulatorServiceStub:
    return spb.SimulatorServiceStub(channel, metadata={"authorization": f"Bearer {ADMIN}"})


@pytest.mark.parametrize("pattern", CATASTROPHIC)
def test_catastrophic_patterns_match_in_linear_time(pattern: str) -> None:
    compiled = compile_pattern(pattern)
    url = "https://github.com/" + "a" * 4000 + "!"  # the longest context URL there is
    began = time.perf_counter()
    for _ in range(10):
        compiled.search(url)
    # Python's re would take longer than the universe has existed; RE2 takes microseconds. The
    # bound is loose so a loaded machine cannot fail it.
    assert time.perf_counter() - began < 2.0


async def test_a_catastrophic_plan_pattern_does_not_stall_a_start(
    sim: Simulator, channel: Channel, ctl: spb.SimulatorServiceStub
) -> None:
    await ctl.set_plan(
        spb.SetPlanRequest(
            scope=spb.PlanScope(context_pattern="(a+)+$"), plan=spb.LifecyclePlan(cluster="hang")
        )
    )
    await ctl.add_fault(
        spb.AddFaultRequest(
            spec=spb.FaultSpec(
                target=spb.FaultTarget(context_pattern="(a|aa)+$"),
                fail_creating=spb.FailCreating(),
            )
        )
    )
    api = stub_for(channel, ALICE)
    began = time.perf_counter()
    reply = await api.create_and_start_workspace(
        pb.CreateAndStartWorkspaceRequest(
            context_url="https://github.com/aaaaaaaaaaaaaaaaaaaaaaaaaaaaa/b!"
        )
    )
    assert time.perf_counter() - began < 5.0
    assert reply.workspace_id
    await ctl.get_clock(spb.GetClockRequest())


@pytest.mark.parametrize(
    ("pattern", "reason"),
    [
        ("github(?=\\.com)", "invalid perl operator: (?="),
        ("(a)\\1", "invalid escape sequence: \\1"),
        ("(unclosed", "missing ): (unclosed"),
        ("a{1000}{1000}", "bad repetition operator: {1000}{1000}"),
    ],
)
async def test_patterns_re2_cannot_compile_are_refused_with_the_reason(
    sim: Simulator, ctl: spb.SimulatorServiceStub, pattern: str, reason: str
) -> None:
    expected = (
        f"malformed context pattern {pattern!r}: {reason}"
        " (patterns use RE2 syntax: no backreferences or lookaround)"
    )
    with pytest.raises(GRPCError) as info:
        await ctl.set_plan(
            spb.SetPlanRequest(scope=spb.PlanScope(context_pattern=pattern), plan=None)
        )
    assert info.value.status is Status.INVALID_ARGUMENT
    assert info.value.message == expected
    with pytest.raises(GRPCError) as info:
        await ctl.add_fault(
            spb.AddFaultRequest(
                spec=spb.FaultSpec(
                    target=spb.FaultTarget(context_pattern=pattern),
                    fail_creating=spb.FailCreating(),
                )
            )
        )
    assert info.value.status is Status.INVALID_ARGUMENT
    assert info.value.message == expected
    assert sim.plans() == [] and sim.faults() == []


def test_a_pattern_longer_than_1024_characters_is_refused() -> None:
    with pytest.raises(InvalidArgument, match=r"pattern 'aaaa.* is out of range: 0\.\.1024"):
        compile_pattern("a" * 1025)


def test_scenarios_check_patterns_with_re2(tmp_path: Path) -> None:
    path = tmp_path / "lookahead.toml"
    path.write_text(
        '[scenario]\ntitle = "t"\n\n[[users]]\nname = "alice"\n\n'
        '[[plans]]\nscope = "context"\nmatch = "acme(?=/)"\n',
        encoding="utf-8",
    )
    with pytest.raises(ScenarioError) as info:
        load(path)
    assert "invalid perl operator: (?=" in str(info.value)
