"""What the gRPC edge needs from a simulated world, as protocols: the narrow host interface.

The services, the RPC boundary and the clock driver depend on these protocols, never on
:class:`~simulator.server.runtime.Simulator`, so no module import circle remains and one server
can host many worlds (sessions). A world is a *stable* object: a reset or an import replaces what
it holds (engine, cached answers, pending wakes) in one step behind the same object, so a holder
that keeps the world can never keep a stale engine; holders must not keep ``world.engine``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from simulator.core.coverage import CoverageReport
from simulator.core.engine import Engine
from simulator.core.faults import Effect, Fault, Target
from simulator.core.model import Instance, Prebuild, StatusChange, User, Workspace
from simulator.core.plan import LifecyclePlan, ScopedPlan
from simulator.core.simtime import Duration, SimTime
from simulator.server.activity import Activity
from simulator.server.broadcast import Hub
from simulator.server.clock import ClockMode, SimClock
from simulator.server.coverage_feed import CoverageFeed
from simulator.server.journal import Journal


class World(Protocol):
    """One world as the API service, the RPC boundary and the clock driver see it."""

    @property
    def engine(self) -> Engine:
        """The engine now in place (read it per call: a reset or an import replaces it)."""
        ...

    @property
    def clock(self) -> SimClock: ...
    @property
    def hub(self) -> Hub: ...
    @property
    def journal(self) -> Journal: ...
    @property
    def activity(self) -> Activity: ...
    @property
    def admin_token(self) -> str: ...
    def is_admin_token(self, token: str) -> bool:
        """``token`` is the admin token (answered without drawing one)."""
        ...

    @property
    def coverage_feed(self) -> CoverageFeed: ...
    @property
    def answers(self) -> dict[str, bytes]:
        """Encoded answers that never change for the engine in place (dropped with it)."""
        ...

    def sync(self) -> list[StatusChange]:
        """Fire whatever the clock says is already due."""
        ...

    def record_rpc(
        self, method: str, caller: str, request: object, code: str, message: str
    ) -> None:
        """Journal a call with the status code it ended with (and count it for coverage)."""
        ...

    def jump_to(self, t: SimTime) -> list[StatusChange]: ...

    def kick(self) -> None:
        """Wake the clock driver after anything that may change what is due next."""
        ...

    async def sleep_simulated(self, delay: Duration) -> None:
        """Wait until ``delay`` of simulated time has passed (counts as a waiting stream)."""
        ...


class SteeredWorld(World, Protocol):
    """A world as the control plane steers it: time, plans, faults, users, state."""

    @property
    def seed(self) -> int: ...
    @property
    def name(self) -> str:
        """The session this world is on its server (``default`` for a server of its own)."""
        ...

    def clock_info(self) -> Any: ...
    def set_clock(
        self, mode: ClockMode | str, speed: float | None = None, *, autojump_grace: Any = None
    ) -> None: ...
    def advance(self, delta: Any) -> list[StatusChange]: ...
    def advance_to_next(self) -> list[StatusChange]: ...
    def run_until_idle(self, limit: Any = ...) -> list[StatusChange]: ...
    def set_plan(
        self, plan: LifecyclePlan, *, scope: str = ..., value: str = ...
    ) -> ScopedPlan: ...
    def plans(self) -> list[ScopedPlan]: ...
    def delete_plan(self, plan_id: str) -> None: ...
    def mark_active(self, workspace_id: str) -> Instance: ...
    def fail(self, instance_id: str, reason: str, log_tail: list[str] | None = ...) -> Instance: ...
    def share(self, workspace_id: str, shared: bool = ...) -> Workspace: ...
    def add_prebuild(self, prebuild_id: str, context_url: str, commit: str = ...) -> Prebuild: ...
    def add_fault(
        self,
        effect: Effect,
        target: Target,
        *,
        count: int = ...,
        active_from: SimTime | None = ...,
        active_until: SimTime | None = ...,
        skip: int = ...,
    ) -> Fault: ...
    def faults(self) -> list[Fault]: ...
    def clear_faults(self, fault_ids: list[str] | None = ...) -> int: ...
    def reset(
        self, seed: int | None = ..., *, drop_users: bool = ..., clear_journal: bool = ...
    ) -> None: ...
    def add_user(self, name: str, token: str | None = ...) -> User: ...
    def export_state(self) -> dict[str, Any]: ...
    def import_state(self, data: dict[str, Any]) -> None: ...
    def coverage(self) -> CoverageReport: ...
    def reset_coverage(self) -> None: ...


class Worlds(Protocol):
    """Which world a call is for, from its metadata (one world today; sessions: many)."""

    def world_for(self, metadata: Mapping[str, Any] | None) -> SteeredWorld:
        """The world the call names; raises a SimError (NOT_FOUND, INVALID_ARGUMENT) if none."""
        ...


class Sessions(Protocol):
    """A host of many worlds as the control plane manages it (``simulator.server.host``)."""

    @property
    def max_sessions(self) -> int: ...

    def admin_world(self) -> SteeredWorld:
        """The world the session-management calls are admitted and journaled in."""
        ...

    def create_session(
        self,
        name: str,
        *,
        seed: int | None = ...,
        clock: ClockMode | str = ...,
        speed: float = ...,
        autojump_grace: Any = ...,
        start_time: Any = ...,
        users: Mapping[str, str | None] | None = ...,
        plan: LifecyclePlan | None = ...,
    ) -> SteeredWorld: ...

    def delete_session(self, name: str, *, reason: str | None = ...) -> None: ...

    def sessions(self) -> Sequence[tuple[SteeredWorld, float]]:
        """Every session with its last activity (Unix seconds), ``default`` first."""
        ...
