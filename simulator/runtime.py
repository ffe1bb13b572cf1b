"""The in-process simulator: engine + clock + hub + gRPC service, and ways to serve them.

This is the Python API that tests, the pytest plugin and the scenarios build on::

    sim = Simulator(seed=1, users={"alice": "alice-token"})
    async with sim.channel() as channel:          # in memory, no sockets
        stub = WorkspacesServiceStub(channel, metadata={"authorization": "Bearer alice-token"})
        ws = await stub.create_and_start_workspace(
            CreateAndStartWorkspaceRequest(context_url="https://github.com/gitpod-io/gitpod"))
        sim.advance("2m")                          # simulated time; no real waiting

Everything here is single-threaded asyncio; engine calls never await, so every RPC is atomic.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from typing import TypeVar

import anyio
from grpclib.client import Channel
from grpclib.server import Server
from grpclib.testing import ChannelFor

from simulator.activity import Activity
from simulator.broadcast import Hub
from simulator.clock import DEFAULT_AUTOJUMP_GRACE, ClockMode, SimClock
from simulator.codec import SimCodec
from simulator.driver import ClockDriver
from simulator.engine import Engine
from simulator.model import EngineEvent, Instance, Prebuild, StatusChange, User, Workspace
from simulator.plan import LifecyclePlan
from simulator.service import WorkspacesService
from simulator.simtime import (
    DEFAULT_START,
    SECOND,
    Duration,
    SimTime,
    from_datetime,
    parse_duration,
    parse_instant,
    to_datetime,
)
from simulator.transitions import Phase

log = logging.getLogger("gitpod_sim.engine")
_T = TypeVar("_T")
SHUTDOWN_MESSAGE = "gitpod-sim is shutting down"

DurationLike = float | str | dt.timedelta
"""A number of seconds, a text such as ``90s``, ``5m``, ``1h30m``, or a timedelta."""


def to_duration(value: DurationLike) -> Duration:
    """A public-API duration in the engine's unit (microseconds)."""
    if isinstance(value, bool):
        raise TypeError("a duration cannot be a bool")
    if isinstance(value, int | float):
        duration = round(value * SECOND)
    elif isinstance(value, str):
        duration = parse_duration(value)
    elif isinstance(value, dt.timedelta):
        duration = (value.days * 86_400 + value.seconds) * SECOND + value.microseconds
    else:
        raise TypeError(f"not a duration: {value!r}")
    if duration < 0:
        raise ValueError(f"duration must be >= 0, got {value!r}")
    return duration


class Simulator:
    """One simulated Gitpod: state, clock and the WorkspacesService that serves it."""

    def __init__(
        self,
        *,
        seed: int = 0,
        clock: ClockMode | str = ClockMode.MANUAL,
        speed: float = 1.0,
        autojump_grace: DurationLike = DEFAULT_AUTOJUMP_GRACE,
        start_time: SimTime | str | dt.datetime = DEFAULT_START,
        plan: LifecyclePlan | None = None,
        users: Mapping[str, str | None] | Iterable[str] | None = None,
        wall: Callable[[], float] = time.monotonic,
    ) -> None:
        start = _to_instant(start_time)
        grace = to_duration(autojump_grace) / SECOND
        self.activity = Activity(wall)
        self.hub = Hub(self.activity)
        self.engine = Engine(seed=seed, start_time=start, plan=plan, observer=self._observe)
        self.clock = SimClock(start, ClockMode(clock), speed, grace, wall)
        self.driver = ClockDriver(self)
        self.activity.on_change = self.driver.kick
        self.service = WorkspacesService(self)
        self.codec = SimCodec()
        self._listeners: list[Callable[[EngineEvent], None]] = []
        self._driver_users = 0
        self._driver_scope: anyio.CancelScope | None = None
        if users is not None:
            items = users.items() if isinstance(users, Mapping) else ((u, None) for u in users)
            for name, token in items:
                self.engine.add_user(name, token)

    # ------------------------------------------------------------------ world

    @property
    def seed(self) -> int:
        return self.engine.seed

    def add_user(self, name: str, token: str | None = None) -> User:
        """A new caller; without a token one is drawn from the seed."""
        return self.engine.add_user(name, token)

    @property
    def users(self) -> dict[str, User]:
        return dict(self.engine.users)

    def add_prebuild(self, prebuild_id: str, context_url: str, commit: str = "") -> Prebuild:
        return self.engine.add_prebuild(prebuild_id, context_url, commit)

    def workspace(self, workspace_id: str) -> Workspace:
        return self.engine._workspace(workspace_id)

    def instance(self, instance_id: str) -> Instance:
        return self.engine._instance(instance_id)

    def phase_of(self, instance_id: str) -> Phase:
        return self.instance(instance_id).phase

    def add_listener(self, listener: Callable[[EngineEvent], None]) -> None:
        """Call ``listener`` with every engine event (status changes and build log lines)."""
        self._listeners.append(listener)

    # ------------------------------------------------------------------ steering the lifecycle

    def mark_active(self, workspace_id: str) -> Instance:
        self.sync()
        return self._kicked(self.engine.mark_active(workspace_id))

    def share(self, workspace_id: str, shared: bool = True) -> Workspace:
        self.sync()
        return self._kicked(self.engine.set_shared(workspace_id, shared))

    def fail(self, instance_id: str, reason: str, log_tail: list[str] | None = None) -> Instance:
        self.sync()
        return self._kicked(self.engine.fail(instance_id, reason, log_tail))

    def interrupt(self, instance_id: str, duration: DurationLike | None = None) -> Instance:
        self.sync()
        d = None if duration is None else to_duration(duration)
        return self._kicked(self.engine.interrupt(instance_id, d))

    def recover(self, instance_id: str) -> Instance:
        self.sync()
        return self._kicked(self.engine.recover(instance_id))

    # ------------------------------------------------------------------ time

    def now(self) -> SimTime:
        return self.clock.now()

    def now_datetime(self) -> dt.datetime:
        return to_datetime(self.clock.now())

    def sync(self) -> list[StatusChange]:
        """Fire what is due at the clock's present (realtime mode moves on its own)."""
        now = self.clock.now()
        if now > self.engine.now:
            return self.engine.advance_to(now)
        return []

    def jump_to(self, t: SimTime) -> list[StatusChange]:
        """Move the clock and the engine to ``t`` (any mode), firing what is due on the way."""
        changes = self.sync()
        self.clock.jump_to(t)
        changes += self.engine.advance_to(t)
        return changes

    def advance(self, delta: DurationLike) -> list[StatusChange]:
        """Move simulated time forward by ``delta``; answers the status changes that fired."""
        self.sync()
        return self.jump_to(self.engine.now + to_duration(delta))

    def advance_to_next(self) -> list[StatusChange]:
        """Jump to the next scheduled instant and fire everything due then (nothing if idle)."""
        self.sync()
        event = self.engine.next_event()
        return [] if event is None else self.jump_to(event.at)

    def run_until_idle(self, limit: DurationLike = "7d") -> list[StatusChange]:
        """Advance event by event until nothing is scheduled or ``limit`` of time has passed."""
        self.sync()
        until = self.engine.now + to_duration(limit)
        changes: list[StatusChange] = []
        while (event := self.engine.next_event()) is not None and event.at <= until:
            changes += self.jump_to(event.at)
        return changes

    def set_clock(self, mode: ClockMode | str, speed: float | None = None) -> None:
        self.sync()
        self.clock.set_mode(ClockMode(mode), speed)
        self.kick()

    def kick(self) -> None:
        """Wake the clock driver after anything that may change what is due next."""
        self.driver.kick()

    # ------------------------------------------------------------------ serving

    @asynccontextmanager
    async def running(self) -> AsyncIterator[Simulator]:
        """Run the clock driver (needed for realtime and autojump) while the block runs.

        Nested uses share one driver; leaving the outermost ends every open stream.
        """
        if self._driver_users:
            self._driver_users += 1
            try:
                yield self
            finally:
                self._driver_users -= 1
            return
        self._driver_users = 1
        self.hub.shutting_down = None
        # A plain task rather than an anyio task group: a fixture may enter this block in one
        # task and leave it in another (pytest-asyncio does), which a cancel scope forbids.
        task = asyncio.get_running_loop().create_task(self.driver.run(), name="gitpod-sim clock")
        try:
            yield self
        finally:
            self._driver_users = 0
            self.hub.close_all(SHUTDOWN_MESSAGE)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    @asynccontextmanager
    async def channel(self) -> AsyncIterator[Channel]:
        """A grpclib client channel connected to this simulator in memory (no sockets)."""
        async with self.running(), ChannelFor([self.service], codec=self.codec) as channel:
            try:
                yield channel
            finally:
                await self._end_streams()

    @asynccontextmanager
    async def serve(self, host: str = "127.0.0.1", port: int = 0) -> AsyncIterator[Server]:
        """Serve on a TCP port (0: a free one; read it from :func:`bound_port`)."""
        server = Server([self.service], codec=self.codec)
        async with self.running():
            await server.start(host, port)
            try:
                yield server
            finally:
                await self._end_streams()
                server.close()
                await server.wait_closed()

    async def _end_streams(self, rounds: int = 200) -> None:
        """End open streams with UNAVAILABLE and give their handlers a chance to say so."""
        self.hub.close_all(SHUTDOWN_MESSAGE)
        for _ in range(rounds):
            if self.activity.busy == 0 and self.activity.waiting == 0:
                break
            await asyncio.sleep(0)
        for _ in range(10):  # let the trailers just written reach the transport and the peer
            await asyncio.sleep(0)

    # ------------------------------------------------------------------ internals

    def _observe(self, event: EngineEvent) -> None:
        self.hub.publish(event)
        if isinstance(event, StatusChange):
            self.driver.kick()
            if log.isEnabledFor(logging.INFO):
                prev = event.previous.phase.name if event.previous is not None else "-"
                log.info(
                    "phase %s %s -> %s (%s) v=%d",
                    event.instance_id,
                    prev,
                    event.status.phase.name,
                    event.cause,
                    event.status.version,
                )
        for listener in self._listeners:
            listener(event)

    def _kicked(self, value: _T) -> _T:
        self.kick()
        return value


def bound_port(server: Server) -> int:
    """The port a started grpclib server listens on (useful after ``port=0``)."""
    listener = server._server
    sockets = getattr(listener, "sockets", None) or ()
    for sock in sockets:
        return int(sock.getsockname()[1])
    raise RuntimeError("server is not listening")


def _to_instant(value: SimTime | str | dt.datetime) -> SimTime:
    if isinstance(value, dt.datetime):
        return from_datetime(value)
    if isinstance(value, str):
        return parse_instant(value)
    return value
