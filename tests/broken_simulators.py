"""Deliberately broken simulators: each breaks one rule of the contract, only inside the tests.

Every factory builds a real :class:`Simulator` and then patches one method of that instance's
engine or service (never the classes), so nothing leaks into other tests. The contract suite must
fail on every one of them (tests/test_contract.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from simulator import Phase, Simulator
from simulator.contract.target import IN_PROCESS_USERS
from simulator.core.errors import NotFound
from simulator.core.idempotency import IdempotencyRecords
from simulator.core.model import Instance, InstanceStatus, StatusChange, User
from simulator.core.paging import Cursors
from simulator.core.simtime import SECOND
from simulator.server.boundary import Call
from simulator.server.broadcast import Delivery
from simulator.server.codec import Preencoded


def _fresh() -> Simulator:
    return Simulator(seed=0, users=IN_PROCESS_USERS)


def skipped_phase() -> Simulator:
    """CREATING goes straight to RUNNING: INITIALIZING never happens."""
    sim = _fresh()
    engine = sim.engine
    enter = engine._enter

    def _enter(inst: Instance, phase: Phase, cause: str, **kw: Any) -> None:
        enter(inst, Phase.RUNNING if phase is Phase.INITIALIZING else phase, cause, **kw)

    engine._enter = _enter  # type: ignore[method-assign]
    return sim


def repeated_status_version() -> Simulator:
    """Two changes in the same second share a status_version (no '+1')."""
    sim = _fresh()
    engine = sim.engine

    def _set_status(
        inst: Instance, status: InstanceStatus, cause: str, *, first: bool = False
    ) -> None:
        previous = None if first else inst.status
        version = max(inst.status.version, (engine.now // SECOND) << 16)  # the bug: no +1
        inst.status = status = status._replace(version=version)
        change = StatusChange(
            engine.now, inst.id, inst.workspace_id, inst.owner_id, previous, status, cause
        )
        if engine._fired is not None:
            engine._fired.append(change)
        if engine.observer is not None:
            engine.observer(change)

    engine._set_status = _set_status  # type: ignore[method-assign]
    return sim


def stream_never_ends() -> Simulator:
    """ListenToWorkspaceInstance keeps waiting after STOPPED."""
    sim = _fresh()
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


def cross_user_leak() -> Simulator:
    """Reads of another user's workspace succeed instead of answering NOT_FOUND."""
    sim = _fresh()
    engine = sim.engine
    workspace_for = engine._workspace_for

    def _workspace_for(caller: User, workspace_id: str, *, owner_only: bool) -> Any:
        ws = engine.workspaces.get(workspace_id)
        if ws is not None and not owner_only:
            return ws
        return workspace_for(caller, workspace_id, owner_only=owner_only)

    engine._workspace_for = _workspace_for  # type: ignore[method-assign]
    return sim


def idempotency_ignored() -> Simulator:
    """Idempotency tokens are accepted and then ignored: every retry acts again."""

    class Forgetful(IdempotencyRecords):
        def replay(self, *args: Any) -> None:
            return None

    sim = _fresh()
    sim.engine.idempotency = Forgetful()
    return sim


def page_repeats_an_item() -> Simulator:
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

    sim = _fresh()
    sim.engine.cursors = OneEarly(sim.engine.random)
    return sim


def wrong_code_when_inactive() -> Simulator:
    """GetActiveWorkspaceInstance on a workspace with no active instance answers NOT_FOUND."""
    sim = _fresh()
    engine = sim.engine
    active = engine._active

    def _active(ws: Any) -> Instance:
        if ws.active_instance_id is None:
            raise NotFound(f"workspace {ws.id} has no active instance")
        return active(ws)

    engine._active = _active  # type: ignore[method-assign]
    return sim


BROKEN: dict[str, Callable[[], Simulator]] = {
    "skipped_phase": skipped_phase,
    "repeated_status_version": repeated_status_version,
    "stream_never_ends": stream_never_ends,
    "cross_user_leak": cross_user_leak,
    "idempotency_ignored": idempotency_ignored,
    "page_repeats_an_item": page_repeats_an_item,
    "wrong_code_when_inactive": wrong_code_when_inactive,
}
