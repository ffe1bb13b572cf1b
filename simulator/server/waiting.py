"""Waiting without sleeping: until N listeners are open on an instance, or it reaches a phase.

For a test on a manual clock that must know its client is listening before it advances, and for
one that waits for a phase another party moves the world to. The wait is bounded by real time
(a condition that never holds answers DEADLINE_EXCEEDED, saying what it saw); it never moves the
clock and does not count for autojump (only the world's own calls and streams do). A phase is
seen even when the instance only passed through it while the call waited (the journal's
transitions are read from where the wait began).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from simulator.core.errors import FailedPrecondition, InvalidArgument, NotFound, SimError
from simulator.core.model import Instance
from simulator.core.transitions import Phase
from simulator.server.journal import TransitionEntry
from simulator.server.world import World

DEFAULT_TIMEOUT = 10.0
MAX_TIMEOUT = 300.0
POLL = 0.002
"""Seconds between looks at the listener count (a subscription has no event of its own)."""


class DeadlineExceeded(SimError):
    code = "DEADLINE_EXCEEDED"


@dataclass(frozen=True, slots=True)
class Seen:
    instance_id: str
    listeners: int
    phase: Phase


def _instance(world: World, instance_id: str, workspace_id: str) -> Instance:
    engine = world.engine
    if instance_id:
        inst = engine.instances.get(instance_id)
        if inst is None:
            raise NotFound(f"instance {instance_id} not found")
        return inst
    if not workspace_id:
        raise InvalidArgument("WaitFor needs an instance_id or a workspace_id")
    ws = engine.workspaces.get(workspace_id)
    if ws is None:
        raise NotFound(f"workspace {workspace_id} not found")
    inst_id = ws.active_instance_id or ws.latest_instance_id
    if inst_id is None:
        raise FailedPrecondition(f"workspace {workspace_id} has no instance yet")
    return engine.instances[inst_id]


def listener_count(world: World, instance_id: str) -> int:
    """ListenToWorkspaceInstance streams open on the instance (StopWorkspace's own watch of the
    instance is not one: it carries no user)."""
    return world.hub.listener_count(instance_id)


async def wait_for(
    world: World,
    *,
    instance_id: str = "",
    workspace_id: str = "",
    listeners: int = 0,
    phase: Phase | None = None,
    timeout: float = DEFAULT_TIMEOUT,  # noqa: ASYNC109 (the bound is part of the request)
) -> Seen:
    """Return once at least ``listeners`` listen streams are open on the instance and it is in
    ``phase`` (or entered it since the wait began); both conditions when both are given."""
    if not 0 < timeout <= MAX_TIMEOUT:
        raise InvalidArgument(f"timeout must be within (0, {MAX_TIMEOUT:g}] seconds, got {timeout}")
    if listeners < 0:
        raise InvalidArgument(f"listeners must be >= 0, got {listeners}")
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    cursor = world.journal.next_seq
    reached = False
    while True:
        world.sync()
        inst = _instance(world, instance_id, workspace_id)
        if phase is not None and not reached:
            reached = inst.phase is phase
            for entry in world.journal.read(cursor, 10_000):
                cursor = entry.seq + 1
                if (
                    isinstance(entry, TransitionEntry)
                    and entry.change.instance_id == inst.id
                    and entry.change.status.phase is phase
                ):
                    reached = True
        count = listener_count(world, inst.id)
        if count >= listeners and (phase is None or reached):
            return Seen(inst.id, count, inst.phase)
        remaining = deadline - loop.time()
        if remaining <= 0:
            wanted = []
            if listeners:
                wanted.append(f"{listeners} listener(s)")
            if phase is not None:
                wanted.append(f"phase {phase.name}")
            raise DeadlineExceeded(
                f"waited {timeout:g} s for {' and '.join(wanted) or 'nothing'} on instance"
                f" {inst.id}; it has {count} listener(s) and is {inst.phase.name}"
            )
        await asyncio.sleep(min(POLL, remaining))
