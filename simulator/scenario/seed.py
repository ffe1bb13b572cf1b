"""Seed data: a scenario's setup loaded into a simulator that is about to serve.

``gitpod-sim serve --scenario FILE`` calls :func:`seed_simulator` so a client developer starts from
a prepared world (users, plans, prebuilds, faults and workspaces) rather than an empty one. It
works on the engine directly (no server runs yet), so the setup's API calls are not journaled;
the transitions are.
"""

from __future__ import annotations

from simulator.core.errors import SimError
from simulator.core.faults import Target
from simulator.scenario.schema import Scenario
from simulator.server.runtime import Simulator


class SeedError(Exception):
    """The setup could not be applied (e.g. a user that exists with another token)."""


def seed_simulator(sim: Simulator, scenario: Scenario) -> list[str]:
    """Apply ``scenario``'s setup at the simulator's present; answers lines worth printing."""
    lines: list[str] = []
    start = sim.now()
    try:
        for u in scenario.users:
            existing = sim.engine.users.get(u.id)
            if existing is None:
                user = sim.add_user(u.id, u.token)
                lines.append(f"scenario user {user.id} token {user.token}")
            elif u.token is not None and existing.token != u.token:
                raise SeedError(f"user {u.id!r} exists with another token than the scenario's")
        for p in scenario.plans:
            sim.set_plan(p.plan, scope=p.scope, value=p.value)
        for pre in scenario.prebuilds:
            sim.add_prebuild(pre.id, pre.context, pre.commit)
        for f in scenario.faults:
            sim.add_fault(
                f.effect,
                Target.of(f.target, f.target_value),
                count=f.count,
                active_from=None if f.active_from is None else start + f.active_from,
                active_until=None if f.active_until is None else start + f.active_until,
                skip=f.skip,
            )
        for ws in scenario.workspaces:
            owner = sim.engine.users[ws.user]
            for name, context in ws.expand():
                if ws.prebuild:
                    created = sim.engine.create_workspace(owner, prebuild_id=ws.prebuild)
                else:
                    created = sim.engine.create_workspace(owner, context_url=context)
                if ws.count == 1 or name.endswith("-1"):
                    lines.append(f"scenario workspace {name} = {created.id} ({ws.user})")
            if ws.count > 1:
                lines.append(f"scenario workspaces {ws.name}-1..{ws.name}-{ws.count} created")
        sim.kick()
        if scenario.setup_advance:
            sim.jump_to(sim.now() + scenario.setup_advance)
    except SimError as exc:
        raise SeedError(f"{scenario.path}: {exc}") from None
    return lines
