"""Credentials come from the OS's randomness, never from the seed (issue 11): an API user who knows
the seed (0 by default in the Python API) cannot compute the admin token and export every token."""

from __future__ import annotations

import random

import pytest
from grpc_helpers import ALICE
from grpclib.const import Status
from grpclib.exceptions import GRPCError

from simulator import Simulator
from simulator._proto.gitpod.simulator import v1 as spb


def _seeded_admin_token(seed: int) -> str:
    """The admin token before issue 11: a function of the seed, computable offline."""
    rng = random.Random(f"gitpod-sim:{seed}:admin")
    return "gitpod_sim_admin_" + "".join(rng.choices("0123456789abcdefghijklmnopqrstuvwxyz", k=32))


async def test_the_guessed_admin_token_is_refused() -> None:
    sim = Simulator(seed=0, users={"alice": ALICE})
    assert sim.admin_token != _seeded_admin_token(0)
    assert Simulator(seed=0).admin_token != sim.admin_token
    async with sim.channel() as channel:
        for guess in (_seeded_admin_token(0), ALICE):
            ctl = spb.SimulatorServiceStub(channel, metadata={"authorization": f"Bearer {guess}"})
            with pytest.raises(GRPCError) as info:
                await ctl.export_state(spb.ExportStateRequest())
            assert info.value.status in (Status.UNAUTHENTICATED, Status.PERMISSION_DENIED)
        ctl = spb.SimulatorServiceStub(
            channel, metadata={"authorization": f"Bearer {sim.admin_token}"}
        )
        assert (await ctl.export_state(spb.ExportStateRequest())).state_json


def test_the_same_seed_still_gives_the_same_answers() -> None:
    runs = []
    for _ in range(2):
        sim = Simulator(seed=3, users={"alice": ALICE})
        ws = sim.engine.create_workspace(
            sim.engine.users["alice"], context_url="https://github.com/a/b"
        )
        sim.run_until_idle("1h")
        data = sim.export_state()
        runs.append((ws.id, data["instances"], data["rngs"]))
    assert runs[0] == runs[1]
