"""Shared fixtures: a fresh simulator per test, served over grpclib's in-memory channel."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from types import SimpleNamespace

import pytest
from grpc_helpers import ALICE, BOB, stub_for
from grpcio_stubs import grpcio_stubs
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


@pytest.fixture(scope="session")
def grpcio_pb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimpleNamespace]:
    """grpcio stubs for both services, generated once per session (see grpcio_stubs.py)."""
    with grpcio_stubs(tmp_path_factory.mktemp("grpcio_stubs")) as namespace:
        yield namespace
