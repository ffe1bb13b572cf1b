"""Deliberately broken simulators: each breaks one rule of the contract, only inside the tests.

Every factory builds a real :class:`Simulator` (keyword arguments: the clock, speed, admin token
it is served with) and then patches one method of that instance's engine or service (never the
classes), so nothing leaks into other tests. The contract suite must fail on every one of them,
in process and served over TCP (tests/test_contract.py); :func:`served` serves one from a thread
of its own. The last four break rules only the causal checks and the foreign workspaces of a
shared target see (:data:`CAUSAL_AND_FOREIGN`).
"""

from __future__ import annotations

import asyncio
import copy
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from simulator import Phase, Simulator
from simulator.contract.target import IN_PROCESS_USERS
from simulator.core import access
from simulator.core.engine import Page
from simulator.core.errors import NotFound
from simulator.core.idempotency import IdempotencyRecords
from simulator.core.model import Instance, InstanceStatus, StatusChange, User
from simulator.core.paging import Cursors
from simulator.core.simtime import SECOND
from simulator.server.boundary import Call
from simulator.server.broadcast import Delivery
from simulator.server.codec import Preencoded
from simulator.server.convert import listen_payload
from simulator.server.runtime import bound_port

Factory = Callable[..., Simulator]


def _fresh(**options: Any) -> Simulator:
    return Simulator(seed=0, users=IN_PROCESS_USERS, **options)


def skipped_phase(**options: Any) -> Simulator:
    """CREATING goes straight to RUNNING: INITIALIZING never happens."""
    sim = _fresh(**options)
    engine = sim.engine
    enter = engine._enter

    def _enter(inst: Instance, phase: Phase, cause: str, **kw: Any) -> None:
        enter(inst, Phase.RUNNING if phase is Phase.INITIALIZING else phase, cause, **kw)

    engine._enter = _enter  # type: ignore[method-assign]
    return sim


def repeated_status_version(**options: Any) -> Simulator:
    """Two changes in the same second share a status_version (no '+1')."""
    sim = _fresh(**options)
    engine = sim.engine

    publish = engine._publish

    def _publish(
        inst: Instance, previous: InstanceStatus | None, status: InstanceStatus, cause: str
    ) -> None:
        version = max(inst.status.version, (engine.now // SECOND) << 16)  # the bug: no +1
        publish(inst, previous, status._replace(version=version), cause)

    engine._publish = _publish  # type: ignore[method-assign]
    return sim


def stream_never_ends(**options: Any) -> Simulator:
    """ListenToWorkspaceInstance keeps waiting after STOPPED."""
    sim = _fresh(**options)
    service = sim.service

    async def listen(call: Call) -> None:
        stream = call.stream
        inst = sim.engine.instance_for(call.caller, call.request.instance_id)
        sub = sim.hub.subscribe_status(inst.id)
        try:
            await stream.send_message(Preencoded(sim.hub.current_payload(inst.id, inst.status)))
            while (item := await sub.next()) is not None:
                assert isinstance(item, Delivery)
                await stream.send_message(Preencoded(item.payload))
        finally:
            sub.cancel()

    service.listen_to_workspace_instance = listen  # type: ignore[method-assign]
    return sim


def cross_user_leak(**options: Any) -> Simulator:
    """Reads of another user's workspace succeed instead of answering NOT_FOUND."""
    sim = _fresh(**options)
    engine = sim.engine
    workspace_for = engine._workspace_for

    def _workspace_for(caller: User, workspace_id: str, *, owner_only: bool) -> Any:
        ws = engine.workspaces.get(workspace_id)
        if ws is not None and not owner_only:
            return ws
        return workspace_for(caller, workspace_id, owner_only=owner_only)

    engine._workspace_for = _workspace_for  # type: ignore[method-assign]
    return sim


def idempotency_ignored(**options: Any) -> Simulator:
    """Idempotency tokens are accepted and then ignored: every retry acts again."""

    class Forgetful(IdempotencyRecords):
        def replay(self, *args: Any) -> None:
            return None

    sim = _fresh(**options)
    sim.engine.idempotency = Forgetful()
    return sim


def page_repeats_an_item(**options: Any) -> Simulator:
    """Each next page starts one item early, so the last item of a page comes again."""

    class OneEarly(Cursors):
        def page(
            self, user_id: str, page_size: int, page_token: str, listing: tuple[str, ...] | None
        ) -> tuple[tuple[str, ...], str]:
            chosen, token = super().page(user_id, page_size, page_token, listing)
            if token:
                cursor, offset = self._cursors[token]
                self._cursors[token] = (cursor, offset - 1)
            return chosen, token

    sim = _fresh(**options)
    sim.engine.cursors = OneEarly(sim.engine.random)
    return sim


def wrong_code_when_inactive(**options: Any) -> Simulator:
    """GetActiveWorkspaceInstance on a workspace with no active instance answers NOT_FOUND."""
    sim = _fresh(**options)
    engine = sim.engine
    active = engine._active

    def _active(ws: Any) -> Instance:
        if ws.active_instance_id is None:
            raise NotFound(f"workspace {ws.id} has no active instance")
        return active(ws)

    engine._active = _active  # type: ignore[method-assign]
    return sim


def _previous_statuses(sim: Simulator) -> dict[str, InstanceStatus]:
    """instance id -> the status it had before its current one (kept up to date)."""
    previous: dict[str, InstanceStatus] = {}
    engine = sim.engine
    observe = engine.observer
    assert observe is not None

    def observer(event: Any) -> None:
        if type(event) is StatusChange and event.previous is not None:
            previous[event.instance_id] = event.previous
        observe(event)

    engine.observer = observer
    return previous


def stale_first_message(**options: Any) -> Simulator:
    """ListenToWorkspaceInstance starts with the status before the current one, then catches up:
    each message follows the one before it, but the first is older than what a unary call had
    already answered before the stream was opened."""
    sim = _fresh(**options)
    previous = _previous_statuses(sim)

    listen_now = sim.service.listen_to_workspace_instance

    async def listen(call: Call) -> None:
        inst = sim.engine.instance_for(call.caller, call.request.instance_id)
        older = previous.get(inst.id)
        if older is not None:
            await call.stream.send_message(Preencoded(listen_payload(older)))
        await listen_now(call)

    sim.service.listen_to_workspace_instance = listen  # type: ignore[method-assign]
    return sim


def listing_lags_a_change(**options: Any) -> Simulator:
    """ListWorkspaces shows each instance's status before its current one (a stale read
    replica): every listing is self-consistent, only older than what was answered before."""
    sim = _fresh(**options)
    previous = _previous_statuses(sim)
    engine = sim.engine
    list_workspaces = engine.list_workspaces

    def lagging(caller: User, page_size: int = 0, page_token: str = "") -> Any:
        page = list_workspaces(caller, page_size, page_token)
        items = []
        for ws, inst in page.items:
            if inst is not None and inst.id in previous:
                inst = copy.copy(inst)
                inst.status = previous[inst.id]
            items.append((ws, inst))
        page.items[:] = items
        return page

    engine.list_workspaces = lagging  # type: ignore[method-assign]
    return sim


def idempotency_shared_between_users(**options: Any) -> Simulator:
    """Idempotency records are kept per token, not per caller: one user's retry token answers
    what another user's call with the same token made."""

    class Shared(IdempotencyRecords):
        def replay(self, caller_id: str, *args: Any) -> str | None:
            return super().replay("everyone", *args)

        def record(self, caller_id: str, *args: Any) -> None:
            super().record("everyone", *args)

    sim = _fresh(**options)
    sim.engine.idempotency = Shared()
    return sim


def listing_leaks_a_third_user(**options: Any) -> Simulator:
    """ListWorkspaces also lists the workspaces of a third user (carol, not one of the suite's
    callers): the model never made them, so only the rule that every listed workspace, foreign
    or not, is the caller's own can see it."""
    sim = _fresh(**options)
    carol = sim.add_user("carol", "contract-carol")
    engine = sim.engine
    for repo in ("acme/one", "acme/two"):
        engine.create_workspace(carol, context_url=f"https://github.com/{repo}")
    list_workspaces = engine.list_workspaces

    def leaky(caller: User, page_size: int = 0, page_token: str = "") -> Any:
        if page_token or caller.id == carol.id:
            return list_workspaces(caller, page_size, page_token)
        owned = [*engine._by_owner.get(caller.id, ()), *engine._by_owner.get(carol.id, ())]
        chosen, token = engine.cursors.page(caller.id, page_size, "", access.listing(owned))
        items = [
            (engine.workspaces[w], engine.latest_instance(engine.workspaces[w])) for w in chosen
        ]
        return Page(items, token)

    engine.list_workspaces = leaky  # type: ignore[method-assign]
    return sim


@contextmanager
def served(sim: Simulator) -> Iterator[str]:
    """``sim`` served over TCP on 127.0.0.1 from a thread with its own event loop: the address."""
    ready = threading.Event()
    address: list[str] = []
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()

    async def main() -> None:
        async with sim.serve("127.0.0.1", 0) as server:
            address.append(f"127.0.0.1:{bound_port(server)}")
            ready.set()
            await stop.wait()

    thread = threading.Thread(target=loop.run_until_complete, args=(main(),), daemon=True)
    thread.start()
    try:
        if not ready.wait(20):
            raise RuntimeError("the broken simulator did not start serving")
        yield address[0]
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(20)
        loop.close()


BROKEN: dict[str, Factory] = {
    "skipped_phase": skipped_phase,
    "repeated_status_version": repeated_status_version,
    "stream_never_ends": stream_never_ends,
    "cross_user_leak": cross_user_leak,
    "idempotency_ignored": idempotency_ignored,
    "page_repeats_an_item": page_repeats_an_item,
    "wrong_code_when_inactive": wrong_code_when_inactive,
    "stale_first_message": stale_first_message,
    "listing_lags_a_change": listing_lags_a_change,
    "idempotency_shared_between_users": idempotency_shared_between_users,
    "listing_leaks_a_third_user": listing_leaks_a_third_user,
}

CAUSAL_AND_FOREIGN = (
    "stale_first_message",
    "listing_lags_a_change",
    "idempotency_shared_between_users",
    "listing_leaks_a_third_user",
)
