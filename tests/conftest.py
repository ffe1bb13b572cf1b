"""Shared fixtures: a fresh simulator per test, served over grpclib's in-memory channel."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from grpc_helpers import ALICE, BOB, stub_for
from grpclib.client import Channel

from simulator import Simulator
from simulator._proto.gitpod import v1 as pb


@pytest.fixture
def sim() -> Simulator:
    return Simulator(seed=1, users={"alice": ALICE, "bob": BOB})


@pytest.fixture
async def channel(sim: Simulator) -> AsyncIterator[Channel]:
    async with sim.channel() as ch:
        yield ch


@pytest.fixture
def alice(channel: Channel) -> pb.WorkspacesServiceStub:
    return stub_for(channel, ALICE)


@pytest.fixture
def bob(channel: Channel) -> pb.WorkspacesServiceStub:
    return stub_for(channel, BOB)
