"""Helpers for tests that talk to a simulator through a grpclib client."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

from grpclib.client import Channel

from simulator._proto.gitpod import v1 as pb

ALICE = "tok-alice"
BOB = "tok-bob"
REPO = "https://github.com/gitpod-io/gitpod"


def stub_for(channel: Channel, token: str | None) -> pb.WorkspacesServiceStub:
    metadata = {"authorization": f"Bearer {token}"} if token is not None else None
    return pb.WorkspacesServiceStub(channel, metadata=metadata)


async def collect(stream: Any, limit: int = 1000) -> list[Any]:
    """Every message of a server stream (bounded), closing it properly."""
    out: list[Any] = []
    async with contextlib.aclosing(stream) as it:
        async for message in it:
            out.append(message)
            assert len(out) <= limit, "stream did not end"
    return out


async def settle(condition: Callable[[], bool], rounds: int = 2000) -> None:
    """Let the event loop run (no real waiting) until ``condition`` holds."""
    for _ in range(rounds):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition not reached after letting the loop run")


async def create(stub: pb.WorkspacesServiceStub, context_url: str = REPO) -> str:
    response = await stub.create_and_start_workspace(
        pb.CreateAndStartWorkspaceRequest(context_url=context_url)
    )
    return str(response.workspace_id)


async def active_instance_id(stub: pb.WorkspacesServiceStub, workspace_id: str) -> str:
    response = await stub.get_active_workspace_instance(
        pb.GetActiveWorkspaceInstanceRequest(workspace_id=workspace_id)
    )
    return str(response.instance.instance_id)


async def drive(sim: Any, awaitable: Any, new_calls: int = 1, steps: int = 10_000) -> Any:
    """Await ``awaitable`` (e.g. draining a stream) in manual mode, moving simulated time one
    event at a time whenever autojump's rule would (a stream follows and no call holds the
    clock; for a timeout, also no stream still writing), applied by hand so the test decides when
    time moves. Time moves only after the server has received the ``new_calls`` calls that
    ``awaitable`` makes."""
    expected = sim.activity.calls + new_calls
    task = asyncio.ensure_future(awaitable)

    def may_move() -> bool:
        activity, event = sim.activity, sim.engine.next_event()
        if event is None:
            if activity.may_time_out:
                raise AssertionError("a stream waits but nothing is scheduled")
            return False  # a stream that is behind is still writing
        return bool(activity.may_time_out if event.kind.is_timeout else activity.may_jump)

    try:
        await settle(lambda: task.done() or sim.activity.calls >= expected)
        for _ in range(steps):
            await settle(lambda: task.done() or may_move())
            if task.done():
                return task.result()
            sim.advance_to_next()
        raise AssertionError("still running after the step limit")
    finally:
        if not task.done():
            task.cancel()
