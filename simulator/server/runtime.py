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
import base64
import contextlib
import datetime as dt
import functools
import json
import logging
import math
import os
import secrets
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from grpclib.server import Server

from simulator.core import limits
from simulator.core.coverage import CoverageReport
from simulator.core.engine import Engine
from simulator.core.errors import InvalidArgument
from simulator.core.faults import Effect, Fault, Target
from simulator.core.model import (
    EngineEvent,
    Instance,
    Prebuild,
    StatusChange,
    User,
    Wake,
    Workspace,
)
from simulator.core.plan import LifecyclePlan, ScopedPlan
from simulator.core.simtime import (
    DEFAULT_START,
    SECOND,
    Duration,
    SimTime,
    from_datetime,
    parse_duration,
    parse_instant,
    to_datetime,
)
from simulator.core.transitions import Phase
from simulator.server.activity import Activity
from simulator.server.broadcast import Closed, Hub
from simulator.server.clock import DEFAULT_AUTOJUMP_GRACE, ClockMode, SimClock
from simulator.server.codec import SimCodec
from simulator.server.connections import ConnectionGuard
from simulator.server.control import ControlService
from simulator.server.coverage_feed import CoverageFeed
from simulator.server.driver import ClockDriver
from simulator.server.h2_guard import GuardedServer
from simulator.server.journal import DEFAULT_MAX_ENTRIES, Journal
from simulator.server.limits import DEFAULT_LIMITS, Limits
from simulator.server.service import WorkspacesService

if TYPE_CHECKING:
    from grpclib.client import Channel

    from simulator.server.connect_gateway import ConnectGateway

log = logging.getLogger("gitpod_sim.engine")
_T = TypeVar("_T")
SHUTDOWN_MESSAGE = "gitpod-sim is shutting down"
RESET_MESSAGE = "the simulator was reset"
IMPORT_MESSAGE = "the simulator's state was replaced by an import"
DEFAULT_SESSION = "default"
"""The session a call without the ``x-gitpod-sim-session`` key is for (see ``host.py``)."""

DurationLike = float | str | dt.timedelta
"""A number of seconds, a text such as ``90s``, ``5m``, ``1h30m``, or a timedelta."""


PARSED_DURATIONS_KEPT = 256
_PARSED: dict[str, Duration] = {}
"""Duration texts already parsed and checked (a test says ``advance("1m")`` again and again)."""


def to_duration(value: DurationLike, field: str = "duration") -> Duration:
    """A public-API duration in the engine's unit (microseconds), within ``limits.MAX_DURATION``
    (out of range: :class:`~simulator.core.limits.OutOfRange`, a ValueError)."""
    if isinstance(value, bool):
        raise TypeError("a duration cannot be a bool")
    if isinstance(value, int | float):
        if not (isinstance(value, int) or math.isfinite(value)) or abs(value) > 1e18:
            raise limits.OutOfRange(field, value, limits.DURATION_RANGE)
        duration = round(value * SECOND)
    elif isinstance(value, str):
        cached = _PARSED.get(value)
        if cached is not None:
            return cached  # checked when it was parsed
        duration = limits.duration(field, parse_duration(value))
        if len(_PARSED) < PARSED_DURATIONS_KEPT:
            _PARSED[value] = duration
        return duration
    elif isinstance(value, dt.timedelta):
        duration = (value.days * 86_400 + value.seconds) * SECOND + value.microseconds
    else:
        raise TypeError(f"not a duration: {value!r}")
    return limits.duration(field, duration)


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
        admin_token: str | None = None,
        journal_size: int = DEFAULT_MAX_ENTRIES,
        wall: Callable[[], float] = time.monotonic,
        server_limits: Limits | None = None,
        name: str = DEFAULT_SESSION,
    ) -> None:
        start = limits.instant("start_time", _to_instant(start_time))
        limits.seed(seed)
        limits.journal_size(journal_size)
        self.name = name
        """The session this world is on its server (``default`` for a server of its own)."""
        self._start_time = start
        self._initial_plan = plan
        grace = to_duration(autojump_grace, "autojump_grace") / SECOND
        self.activity = Activity(wall)
        self.hub = Hub(self.activity)
        self.server_limits = server_limits or DEFAULT_LIMITS
        self._contents = _Contents(
            Engine(
                seed=seed,
                start_time=start,
                plan=plan,
                observer=self._observe,
                quotas=self.server_limits.quotas,
            )
        )
        self.clock = SimClock(start, ClockMode(clock), speed, grace, wall)
        self.driver = ClockDriver(self)
        self.activity.on_change = self.driver.kick
        self.service = WorkspacesService(self)
        self.control = ControlService(self)
        self.coverage_feed = CoverageFeed(
            lambda: self.engine, (SHUTDOWN_MESSAGE, RESET_MESSAGE, IMPORT_MESSAGE)
        )
        self._admin_token = admin_token or None
        self.codec = SimCodec()
        self.journal = Journal(journal_size, self.server_limits.journal_bytes)
        self.connections = ConnectionGuard(self.server_limits)
        """Client connections of every port served (one cap, one idle timeout)."""
        self._listeners: list[Callable[[EngineEvent], None]] = []
        self._driver_users = 0
        self._driving = False
        self._driver_task: asyncio.Task[None] | None = None
        if users is not None:
            items = users.items() if isinstance(users, Mapping) else ((u, None) for u in users)
            for name, token in items:
                self.engine.add_user(name, token)

    # ------------------------------------------------------------------ world

    @property
    def engine(self) -> Engine:
        """The engine in place; a reset or an import replaces it (read it, do not keep it)."""
        return self._contents.engine

    @property
    def answers(self) -> dict[str, bytes]:
        return self._contents.answers

    @property
    def admin_token(self) -> str:
        """The control plane's credential: the one given, or drawn from the OS's randomness when
        first read (a world nobody steers never draws one)."""
        token = self._admin_token
        if token is None:
            token = self._admin_token = new_secret_token(ADMIN_TOKEN_PREFIX)
        return token

    @admin_token.setter
    def admin_token(self, token: str) -> None:
        self._admin_token = token

    def is_admin_token(self, token: str) -> bool:
        """``token`` is the admin token. One not drawn yet cannot have been sent, so none is
        drawn to answer (an API call does not need one)."""
        return self._admin_token is not None and token == self._admin_token

    def world_for(self, metadata: Mapping[str, Any] | None) -> Simulator:
        """A lone simulator is the only world its services serve."""
        return self

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
        """Move the clock and the engine to ``t`` (any mode), firing what is due on the way; ``t``
        past ``limits.LATEST_INSTANT`` is refused before anything moves."""
        limits.instant("time", t)
        changes = self.sync()
        self.clock.jump_to(t)
        # Realtime runs on between the caller's reading and this sync: the engine may be past t.
        changes += self.engine.advance_to(max(t, self.engine.now))
        return changes

    def advance(self, delta: DurationLike) -> list[StatusChange]:
        """Move simulated time forward by ``delta``; answers the status changes that fired."""
        self.sync()
        target = limits.advance_target("advance", self.engine.now, to_duration(delta, "advance"))
        return self.jump_to(target)

    def advance_to_next(self) -> list[StatusChange]:
        """Jump to the next scheduled instant and fire everything due then (nothing if idle)."""
        self.sync()
        event = self.engine.next_event()
        if event is None or event.at > limits.LATEST_INSTANT:
            return []  # what is due past the end of time never fires
        return self.jump_to(event.at)

    def run_until_idle(self, limit: DurationLike = "7d") -> list[StatusChange]:
        """Advance event by event until nothing is scheduled or ``limit`` of time has passed."""
        self.sync()
        until = min(self.engine.now + to_duration(limit, "limit"), limits.LATEST_INSTANT)
        changes: list[StatusChange] = []
        while (event := self.engine.next_event()) is not None and event.at <= until:
            changes += self.jump_to(event.at)
        return changes

    def set_clock(
        self,
        mode: ClockMode | str,
        speed: float | None = None,
        *,
        autojump_grace: DurationLike | None = None,
    ) -> None:
        """Switch the clock's mode (and speed, grace period); time stays where it is. Every value
        is checked before any changes."""
        grace = (
            None
            if autojump_grace is None
            else to_duration(autojump_grace, "autojump_grace") / SECOND
        )
        new_mode = ClockMode(mode)
        self.sync()
        self.clock.configure(mode=new_mode, speed=speed, autojump_grace=grace)
        self.driver.kick(force=True)
        self._drive()

    def clock_info(self) -> ClockInfo:
        """The clock and what is scheduled next."""
        self.sync()
        event = self.engine.next_event()
        return ClockInfo(
            now=self.clock.now(),
            mode=self.clock.mode,
            speed=self.clock.speed,
            autojump_grace=self.clock.autojump_grace,
            next_event_at=None if event is None else event.at,
            next_event_kind="" if event is None else event.kind.value,
            pending_events=len(self.engine.scheduler),
        )

    # ------------------------------------------------------------------ plans and faults

    def set_plan(
        self, plan: LifecyclePlan, *, scope: str = "global", value: str = ""
    ) -> ScopedPlan:
        """Set the plan for starts in a scope: ``global``, ``user`` (id) or ``context`` (regex)."""
        return self.engine.set_plan(scope, value, plan)

    def delete_plan(self, plan_id: str) -> None:
        self.engine.delete_plan(plan_id)

    def plans(self) -> list[ScopedPlan]:
        return list(self.engine.plans.scoped.values())

    def add_fault(
        self,
        effect: Effect,
        target: Target,
        *,
        count: int = 0,
        active_from: SimTime | None = None,
        active_until: SimTime | None = None,
        skip: int = 0,
    ) -> Fault:
        """Aim a fault (see :mod:`simulator.core.faults`); ``count`` 0 means unlimited; ``skip``
        lets that many matching calls, streams or starts pass first."""
        self.sync()
        fault = self.engine.add_fault(
            effect,
            target,
            count=count,
            active_from=active_from,
            active_until=active_until,
            skip=skip,
        )
        self.coverage_feed.track_fault(fault)
        self.kick()
        return fault

    def faults(self) -> list[Fault]:
        return list(self.engine.faults)

    def clear_faults(self, fault_ids: list[str] | None = None) -> int:
        """Clear the given faults (all when None); answers how many were cleared."""
        self.sync()
        return self._kicked(self.engine.clear_faults(fault_ids))

    # ------------------------------------------------------------------ coverage

    def coverage(self) -> CoverageReport:
        """Which behaviours this simulator has shown so far: every transition, phase, condition,
        (RPC, status code), stream ending, build log follow, fault kind and feature, with counts
        (see :mod:`simulator.core.coverage_catalogue`). Survives resets; :meth:`reset_coverage`
        starts it again."""
        return self.coverage_feed.report()

    def reset_coverage(self) -> None:
        """Count coverage from zero again (the world itself is untouched)."""
        self.coverage_feed.clear()

    # ------------------------------------------------------------------ state

    def reset(
        self, seed: int | None = None, *, drop_users: bool = False, clear_journal: bool = False
    ) -> None:
        """Empty the simulator without a restart (same or new seed); users stay unless dropped,
        and the plan given at construction applies again (plans set later are gone). The journal
        is kept unless ``clear_journal`` (its sequence numbers keep counting either way).

        Open streams end with ABORTED; the clock goes back to the start time in the same mode.
        """
        if seed is not None:
            limits.seed(seed)
        users = [] if drop_users else list(self.engine.users.values())
        engine = Engine(
            seed=self.engine.seed if seed is None else seed,
            start_time=self._start_time,
            plan=self._initial_plan,
            observer=self._observe,
        )
        for user in users:
            engine.add_user(user.id, user.token)
        self._install(engine, RESET_MESSAGE)
        if clear_journal:
            self.journal.clear()

    def export_state(self) -> dict[str, Any]:
        """The whole state as JSON-ready data (see :mod:`simulator.core.state`)."""
        from simulator.core import state  # loaded with the first export (start-up time)

        self.sync()
        data = state.export_state(self.engine)
        data["clock"] = {
            "mode": self.clock.mode.value,
            "speed": self.clock.speed,
            "autojump_grace": self.clock.autojump_grace,
        }
        return data

    def import_state(self, data: dict[str, Any]) -> None:
        """Replace the whole state with an exported one (open streams end with ABORTED)."""
        from simulator.core import state  # loaded with the first import (start-up time)

        settings = _clock_settings(data)  # checked before anything is replaced
        engine = state.import_state(data, observer=self._observe)
        for n, user in enumerate(data["users"]):
            if user["token"] == self.admin_token:
                raise InvalidArgument(f"$.users[{n}].token: the admin token cannot be a user's")
        self._install(engine, IMPORT_MESSAGE)
        self.clock.configure(**settings)
        self.driver.kick(force=True)
        self._drive()

    def save_state(self, path: str | os.PathLike[str]) -> None:
        """Write :meth:`export_state` to a file as a database would (unique temp file, fsync,
        rename: a crash or a concurrent save leaves the old file or the new one, never a mix)."""
        from simulator.server.state_file import write_atomically

        write_atomically(path, json.dumps(self.export_state()))

    def load_state(self, path: str | os.PathLike[str]) -> None:
        """Replace the state with a file's; an unreadable file (not UTF-8, not JSON, wrong shape)
        is INVALID_ARGUMENT with one line saying why, and nothing changes."""
        from simulator.server.state_file import StateFileError, read_state_file

        try:
            data = read_state_file(path)
        except StateFileError as exc:
            raise InvalidArgument(str(exc)) from None
        self.import_state(data)

    def _install(self, engine: Engine, reason: str) -> None:
        """Replace the world's contents in one step; the Simulator object stays the same."""
        self.hub.close_all(reason, code="ABORTED", final=False)
        engine.set_quotas(self.server_limits.quotas)
        old, self._contents = self._contents, _Contents(engine)
        _abort_waits(old, f"{reason} while the call waited on a latency fault; it did not run")
        self.coverage_feed.engine_replaced()
        self.clock.reset(engine.now)
        self.kick()

    # ------------------------------------------------------------------ for the service layer

    def record_rpc(
        self, method: str, caller: str, request: object, code: str, message: str
    ) -> None:
        """Journal a call with the code it ended with, and count it for coverage."""
        self.journal.record_rpc(self.engine.now, method, caller, request, code, message)
        self.coverage_feed.rpc(method, caller, request, code, message)

    async def sleep_simulated(self, delay: Duration) -> None:
        """Wait until ``delay`` of simulated time has passed (a stream-like wait for autojump)."""
        contents = self._contents
        key = contents.engine.schedule_wake(delay)
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        contents.wakes[key] = future
        self.kick()
        self.activity.wait_started()
        try:
            await future
        finally:
            self.activity.wait_ended()
            if contents.wakes.pop(key, None) is not None:
                contents.engine.cancel_wake(key)

    def kick(self) -> None:
        """Wake the clock driver after anything that may change what is due next (in manual
        mode nothing moves on its own: the driver ignores a kick, so none is made)."""
        if self.clock.mode is not ClockMode.MANUAL:
            self.driver.kick()

    # ------------------------------------------------------------------ serving

    def api_services(self) -> list[Any]:
        """The simulator's own gRPC services: what health and reflection describe."""
        return [self.service, self.control]

    def services(self) -> list[Any]:
        """Everything served on a port or channel: the API services, health and reflection."""
        from simulator.server.reflection import service_names

        apis = self.api_services()
        return [*apis, *standard_services(tuple(service_names(apis)))]

    def running(self) -> AbstractAsyncContextManager[Simulator]:
        """Run the clock driver (needed for realtime and autojump) while the block runs.

        Nested uses share one driver; leaving the outermost ends every open stream.
        """
        return _Running(self)

    def start_driving(self) -> None:
        """The world is served from now on: its clock moves on its own in realtime and autojump
        modes. The clock task starts only once the mode is one of those (a manual world, e.g.
        an idle session, holds no task)."""
        self._driving = True
        self.hub.shutting_down = None
        self._drive()

    async def stop_driving(self, reason: str, code: str = "UNAVAILABLE") -> None:
        """No longer served: end every open stream with ``code`` and stop the clock task."""
        self._driving = False
        self.hub.close_all(reason, code)
        task, self._driver_task = self._driver_task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def close(self, reason: str) -> None:
        """End the world for good (a deleted session): every open stream, journal follower and
        simulated sleep ends with ABORTED, the clock task is cancelled; nothing is kept running."""
        self._driving = False
        self.hub.close_all(reason, code="ABORTED")
        self.journal.close(reason, code="ABORTED")
        _abort_waits(self._contents, reason)
        task, self._driver_task = self._driver_task, None
        if task is not None:
            task.cancel()

    def _drive(self) -> None:
        # A plain task rather than an anyio task group: a fixture may enter ``running`` in one
        # task and leave it in another (pytest-asyncio does), which a cancel scope forbids.
        if self._driving and self._driver_task is None and self.clock.mode is not ClockMode.MANUAL:
            self._driver_task = asyncio.get_running_loop().create_task(
                self.driver.run(), name=f"gitpod-sim clock {self.name}"
            )

    def channel(self) -> AbstractAsyncContextManager[Channel]:
        """A grpclib client channel connected to this simulator in memory (no sockets)."""
        return _MemoryChannel(self)

    @asynccontextmanager
    async def serve(self, host: str = "127.0.0.1", port: int = 0) -> AsyncIterator[Server]:
        """Serve on a TCP port (0: a free one; read it from :func:`bound_port`)."""
        server = GuardedServer(
            self.services(),
            codec=self.codec,
            limits=self.server_limits,
            guard=self.connections,
            activity=self.activity,
        )
        async with self.running():
            await server.start(host, port)
            try:
                yield server
            finally:
                await self._end_streams()
                server.end_streams(SHUTDOWN_MESSAGE)  # what the hub does not end (any kind)
                server.close()
                await server.wait_closed()

    @asynccontextmanager
    async def serve_http(
        self, host: str = "127.0.0.1", port: int = 0, cors_origins: Iterable[str] = ()
    ) -> AsyncIterator[ConnectGateway]:
        """Serve Connect and gRPC-Web over HTTP/1.1 (0: a free port; read ``gateway.port``)."""
        from simulator.server.connect_gateway import ConnectGateway

        gateway = ConnectGateway(
            self.services(),
            self.codec,
            cors_origins,
            limits=self.server_limits,
            guard=self.connections,
        )
        async with self.running():
            await gateway.start(host, port)
            try:
                yield gateway
            finally:
                await self._end_streams()
                await gateway.close()

    async def _end_streams(
        self, rounds: int = 200, settled: Callable[[], bool] = lambda: False
    ) -> None:
        """End open streams with UNAVAILABLE and give their handlers a chance to say so.
        ``settled`` says when nothing is left to deliver (then no turn of the loop is waited)."""
        self.hub.close_all(SHUTDOWN_MESSAGE)
        for _ in range(rounds):
            if self.activity.busy == 0 and self.activity.waiting == 0:
                break
            await asyncio.sleep(0)
        if settled():
            return
        for _ in range(10):  # let the trailers just written reach the transport and the peer
            await asyncio.sleep(0)

    # ------------------------------------------------------------------ internals

    def _observe(self, event: EngineEvent) -> None:
        if type(event) is Wake:
            future = self._contents.wakes.pop(event.key, None)
            if future is not None and not future.done():
                future.set_result(None)
            return
        self.hub.publish(event)
        if type(event) is StatusChange:
            self.coverage_feed.counter.status_change(event)
            self.journal.record_transition(event)
            if self.clock.mode is not ClockMode.MANUAL:  # what the driver would check first
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


class _Contents:
    """What a reset or an import replaces, all at once: the engine and what derives from it."""

    __slots__ = ("answers", "engine", "wakes")

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.answers: dict[str, bytes] = {}
        """Encoded GetWorkspace answers (a workspace never changes after creation)."""
        self.wakes: dict[str, asyncio.Future[None]] = {}
        """Simulated sleeps (latency faults) waiting for their Wake event."""


class _Running:
    """What :meth:`Simulator.running` answers (a class, not a generator: every in-memory
    channel enters one)."""

    __slots__ = ("_outermost", "_sim")

    def __init__(self, sim: Simulator) -> None:
        self._sim = sim
        self._outermost = False

    async def __aenter__(self) -> Simulator:
        sim = self._sim
        if sim._driver_users:
            sim._driver_users += 1
        else:
            self._outermost = True
            sim._driver_users = 1
            sim.start_driving()
        return sim

    async def __aexit__(self, *exc_info: object) -> None:
        sim = self._sim
        if self._outermost:
            sim._driver_users = 0
            await sim.stop_driving(SHUTDOWN_MESSAGE)
        else:
            sim._driver_users -= 1


class _MemoryChannel:
    """What :meth:`Simulator.channel` answers: the world running, grpclib's in-memory client and
    server pair (``ChannelFor``) over its services; on leaving, open streams end with
    UNAVAILABLE first (a class, not a generator: one per test that uses a channel)."""

    __slots__ = ("_pair", "_running", "_sim")

    def __init__(self, sim: Simulator) -> None:
        self._sim = sim

    async def __aenter__(self) -> Channel:
        from grpclib.testing import ChannelFor  # the client side loads only when used

        sim = self._sim
        self._pair = pair = ChannelFor(sim.services(), codec=sim.codec)
        self._running = running = _Running(sim)
        await running.__aenter__()
        try:
            return await pair.__aenter__()
        except BaseException as exc:
            await running.__aexit__(type(exc), exc, exc.__traceback__)
            raise

    async def __aexit__(self, *exc_info: Any) -> None:
        try:
            try:
                await self._sim._end_streams(settled=self._settled)
            finally:
                await self._pair.__aexit__(*exc_info)
        finally:
            await self._running.__aexit__(*exc_info)

    def _settled(self) -> bool:
        return _pair_settled(self._pair)


@functools.cache
def standard_services(names: tuple[str, ...]) -> tuple[Any, ...]:
    """Health and reflection (v1, v1alpha) for the API services ``names``. They keep no state
    of their own, so one set per process serves every world's channels and ports."""
    from simulator.server.health import HEALTH_SERVICE, health_service
    from simulator.server.reflection import reflection_services

    return (health_service(names), *reflection_services([*names, HEALTH_SERVICE]))


def _pair_settled(pair: Any) -> bool:
    """An in-memory channel (grpclib's ``ChannelFor``) has nothing left in flight: no HTTP/2
    stream open at either end (a server stream is released after its handler sent its trailers,
    a client stream once its caller is done with it) and no other task that may be about to
    open one. Then waiting turns of the loop for trailers to arrive would wait for nothing
    (eleven turns: a quarter of a bare call's cost)."""
    server, client = pair._server_protocol, pair._channel._protocol
    if server.processor.streams or (client is not None and client.processor.streams):
        return False
    current = asyncio.current_task()
    return all(task is current for task in asyncio.all_tasks())


def _abort_waits(contents: _Contents, reason: str) -> None:
    """End every call waiting on a simulated latency with ABORTED: it must not act on the world
    that replaced its own (the boundary answers the ``Closed``)."""
    for future in contents.wakes.values():
        if not future.done():
            future.set_exception(Closed(reason, code="ABORTED"))


@dataclass(frozen=True, slots=True)
class ClockInfo:
    now: SimTime
    mode: ClockMode
    speed: float
    autojump_grace: float
    """Seconds of real quiet before autojump jumps to a timeout."""
    next_event_at: SimTime | None
    next_event_kind: str
    pending_events: int


ADMIN_TOKEN_PREFIX = "gitpod_sim_admin_"


def new_secret_token(prefix: str) -> str:
    """A credential nobody can compute: 32 characters (160 bits) from the operating system's
    randomness. Never from the seed: the seed decides answers, and answers can be observed (an
    admin token drawn from seed 0 could be computed offline and read every user's token)."""
    # one read of the OS's randomness (a choice per character cost 0.4 ms a world)
    return prefix + base64.b32encode(secrets.token_bytes(20)).decode().lower()


def new_seed() -> int:
    """A seed for a run that was given none: random, and printed so the run can be replayed."""
    return secrets.randbelow(limits.MAX_SEED + 1)


def bound_port(server: Server) -> int:
    """The port a started grpclib server listens on (useful after ``port=0``)."""
    listener = server._server
    sockets = getattr(listener, "sockets", None) or ()
    for sock in sockets:
        return int(sock.getsockname()[1])
    raise RuntimeError("server is not listening")


def _clock_settings(data: object) -> dict[str, Any]:
    """The ``clock`` section of a state document, checked: what :meth:`SimClock.configure` takes."""
    clock = data.get("clock") if isinstance(data, dict) else None
    if clock is None:
        return {}
    if not isinstance(clock, dict):
        raise InvalidArgument("$.clock: expected an object with mode, speed, autojump_grace")
    settings: dict[str, Any] = {}
    try:
        if "mode" in clock:
            modes = [m.value for m in ClockMode]
            if clock["mode"] not in modes:
                raise limits.OutOfRange("mode", clock["mode"], " or ".join(modes))
            settings["mode"] = ClockMode(clock["mode"])
        if "speed" in clock:
            settings["speed"] = limits.speed(clock["speed"])
        if "autojump_grace" in clock:
            settings["autojump_grace"] = limits.autojump_grace(clock["autojump_grace"])
    except limits.OutOfRange as exc:
        raise InvalidArgument(f"$.clock.{exc.field}: {exc.message}") from None
    return settings


def _to_instant(value: SimTime | str | dt.datetime) -> SimTime:
    if isinstance(value, dt.datetime):
        return from_datetime(value)
    if isinstance(value, str):
        return parse_instant(value)
    return value
