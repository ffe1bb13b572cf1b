"""`SimServer`: one server hosting many worlds (sessions), each with its own clock.

A session is a whole :class:`~simulator.server.runtime.Simulator` (engine, seed, clock, users and
tokens, plans, faults, journal, paging cursors, idempotency records), chosen per call by the
``x-gitpod-sim-session`` metadata key (the same HTTP header on the Connect / gRPC-Web port). No
key means the session ``default``: the Simulator the server was built around, so a client that
never names a session sees exactly the one-world server it always did::

    server = SimServer(Simulator(seed=1, users={"alice": "alice-token"}))
    server.create_session("test-a", seed=7, clock="autojump", users={"bob": "bob-token"})
    async with server.serve("127.0.0.1", 0) as grpc_server:
        ...  # calls with metadata x-gitpod-sim-session: test-a reach the second world

The host owns what worlds share: the ports, the connection guard, the admin token, the limits
(``max_sessions``, ``session_idle_ttl``). What a session costs while idle is its engine and its
journal objects: a manual-clock session holds no task (its clock task starts only once its mode
can move time on its own), and one sweeper task serves every session's idle TTL.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import re
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from grpclib.server import Server

from simulator.core.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
)
from simulator.core.plan import LifecyclePlan
from simulator.core.simtime import DEFAULT_START, SimTime
from simulator.server.activity import Activity
from simulator.server.clock import DEFAULT_AUTOJUMP_GRACE, ClockMode
from simulator.server.control import ControlService
from simulator.server.h2_guard import GuardedServer
from simulator.server.runtime import (
    DEFAULT_SESSION,
    SHUTDOWN_MESSAGE,
    DurationLike,
    Simulator,
    new_seed,
    standard_services,
)
from simulator.server.service import WorkspacesService

if TYPE_CHECKING:
    from grpclib.client import Channel

    from simulator.server.connect_gateway import ConnectGateway

log = logging.getLogger("gitpod_sim.sessions")
SESSION_KEY = "x-gitpod-sim-session"
"""The metadata key (HTTP header) that names the session a call is for."""
DEFAULT_MAX_SESSIONS = 1000
_NAME = re.compile(r"[A-Za-z0-9._-]{1,64}")


def check_session_name(name: str) -> str:
    """A session name: 1-64 characters of ``[A-Za-z0-9._-]`` (else INVALID_ARGUMENT)."""
    if not isinstance(name, str) or _NAME.fullmatch(name) is None:
        shown = repr(name[:80]) if isinstance(name, str) else type(name).__name__
        raise InvalidArgument(
            f"invalid session name {shown}: expected 1-64 characters of [A-Za-z0-9._-]"
        )
    return name


def session_of(metadata: Mapping[str, Any] | None) -> str:
    """The session a call's metadata names (``default`` without the key)."""
    value = None if metadata is None else metadata.get(SESSION_KEY)
    return DEFAULT_SESSION if value is None else check_session_name(value)


@dataclass(slots=True)
class _Session:
    sim: Simulator
    last_used: float
    """Wall time (the host's clock) of the last call that named the session."""


class SimServer:
    """A server of many sessions: routes every call to the world its session key names."""

    def __init__(
        self,
        default: Simulator | None = None,
        *,
        max_sessions: int = DEFAULT_MAX_SESSIONS,
        session_idle_ttl: float | None = None,
        wall: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_sessions < 0:
            raise ValueError("max_sessions must not be negative")
        if session_idle_ttl is not None and session_idle_ttl <= 0:
            raise ValueError("session_idle_ttl must be longer than 0")
        self.default = default if default is not None else Simulator()
        self.max_sessions = max_sessions
        """Sessions the server holds besides ``default``; one more is RESOURCE_EXHAUSTED."""
        self.session_idle_ttl = session_idle_ttl
        """Seconds (real time) after which a session nobody called, with no open stream, is
        deleted; None: never."""
        self._wall = wall
        self._sessions: dict[str, _Session] = {}
        self.admin_token = self.default.admin_token
        self.codec = self.default.codec
        self.server_limits = self.default.server_limits
        self.connections = self.default.connections
        self.service = WorkspacesService(self)
        self.control = ControlService(self, sessions=self)
        self._running = 0
        self._sweeper: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------ routing

    def world_for(self, metadata: Mapping[str, Any] | None) -> Simulator:
        """The world the call's session key names; NOT_FOUND for a session that does not exist,
        INVALID_ARGUMENT for a name that cannot be one."""
        value = None if metadata is None else metadata.get(SESSION_KEY)
        if value is None or value == DEFAULT_SESSION:
            return self.default
        session = self._sessions.get(value)
        if session is None:
            check_session_name(value)
            raise NotFound(f'session "{value}" does not exist')
        session.last_used = self._wall()
        return session.sim

    def session(self, name: str = DEFAULT_SESSION) -> Simulator:
        """The world of session ``name`` (NOT_FOUND if there is none)."""
        if check_session_name(name) == DEFAULT_SESSION:
            return self.default
        session = self._sessions.get(name)
        if session is None:
            raise NotFound(f'session "{name}" does not exist')
        return session.sim

    def admin_world(self) -> Simulator:
        """The world the session-management calls are journaled in (``default``)."""
        return self.default

    def _pause_for(self, headers: list[tuple[str, str]]) -> Activity | None:
        """Whose autojump accounting a gRPC stream's blocking on its client goes to."""
        for key, value in headers:
            if key == SESSION_KEY:
                if value == DEFAULT_SESSION:
                    return self.default.activity
                session = self._sessions.get(value)
                return None if session is None else session.sim.activity
        return self.default.activity

    # ------------------------------------------------------------------ sessions

    def create_session(
        self,
        name: str,
        *,
        seed: int | None = None,
        clock: ClockMode | str = ClockMode.MANUAL,
        speed: float = 1.0,
        autojump_grace: DurationLike = DEFAULT_AUTOJUMP_GRACE,
        start_time: SimTime | str | dt.datetime = DEFAULT_START,
        users: Mapping[str, str | None] | Iterable[str] | None = None,
        plan: LifecyclePlan | None = None,
    ) -> Simulator:
        """A new session, the same world a fresh server started with these settings would be
        (``seed`` None: a random one). ALREADY_EXISTS for a name in use, RESOURCE_EXHAUSTED
        once ``max_sessions`` are held."""
        check_session_name(name)
        if name == DEFAULT_SESSION or name in self._sessions:
            raise AlreadyExists(f'session "{name}" already exists')
        if len(self._sessions) >= self.max_sessions:
            raise ResourceExhausted(
                f"the server holds {len(self._sessions)} sessions, its limit"
                f" (serve --max-sessions {self.max_sessions}); delete one first"
            )
        if users is not None and isinstance(users, Mapping):
            for user_id, token in users.items():
                if token == self.admin_token:
                    raise InvalidArgument(f"user {user_id!r}: the admin token cannot be a user's")
        sim = Simulator(
            seed=new_seed() if seed is None else seed,
            clock=clock,
            speed=speed,
            autojump_grace=autojump_grace,
            start_time=start_time,
            plan=plan,
            users=users,
            admin_token=self.admin_token,
            journal_size=self.default.journal.max_entries,
            wall=self._wall,
            server_limits=self.server_limits,
            name=name,
        )
        self._sessions[name] = _Session(sim, self._wall())
        if self._running:
            sim.start_driving()
        log.info("session %s created (seed %d, %s clock)", name, sim.seed, sim.clock.mode.value)
        return sim

    def delete_session(self, name: str, *, reason: str | None = None) -> None:
        """End the session: its open streams end with ABORTED, everything it held is let go.
        NOT_FOUND if there is none; ``default`` cannot be deleted (Reset empties it)."""
        check_session_name(name)
        if name == DEFAULT_SESSION:
            raise FailedPrecondition('the session "default" cannot be deleted (Reset empties it)')
        session = self._sessions.pop(name, None)
        if session is None:
            raise NotFound(f'session "{name}" does not exist')
        session.sim.close(reason or f'session "{name}" was deleted')
        log.info("session %s deleted", name)

    def sessions(self) -> list[tuple[Simulator, float]]:
        """Every session (``default`` first, then by name) with its last activity as Unix
        seconds."""
        now_wall, now_unix = self._wall(), time.time()

        def unix(at: float) -> float:
            return now_unix - max(0.0, now_wall - at)

        out = [(self.default, unix(self.default.activity.last_io))]
        for name in sorted(self._sessions):
            session = self._sessions[name]
            out.append((session.sim, unix(self._last_activity(session))))
        return out

    def __len__(self) -> int:
        """Sessions held besides ``default``."""
        return len(self._sessions)

    def __contains__(self, name: object) -> bool:
        return name == DEFAULT_SESSION or name in self._sessions

    def _last_activity(self, session: _Session) -> float:
        return max(session.last_used, session.sim.activity.last_io)

    def expire_idle(self) -> list[str]:
        """Delete every session idle for ``session_idle_ttl`` (no call, no open stream, no call
        in progress); answers their names. The sweeper calls it; tests may too."""
        ttl = self.session_idle_ttl
        if ttl is None:
            return []
        now = self._wall()
        expired = []
        for name, session in list(self._sessions.items()):
            activity = session.sim.activity
            if activity.busy or activity.waiting or session.sim.hub.subscription_count():
                continue
            if now - self._last_activity(session) >= ttl:
                expired.append(name)
                self.delete_session(name, reason=f'session "{name}" expired after {ttl:g} s idle')
        return expired

    async def _sweep(self, ttl: float) -> None:
        every = min(max(ttl / 4, 0.05), 60.0)
        while True:
            await asyncio.sleep(every)
            self.expire_idle()

    # ------------------------------------------------------------------ serving

    def api_services(self) -> list[Any]:
        return [self.service, self.control]

    def services(self) -> list[Any]:
        """Everything served on a port or channel: the API services, health and reflection."""
        from simulator.server.reflection import service_names

        apis = self.api_services()
        return [*apis, *standard_services(tuple(service_names(apis)))]

    def _worlds(self) -> list[Simulator]:
        return [self.default, *(s.sim for s in self._sessions.values())]

    @asynccontextmanager
    async def running(self) -> AsyncIterator[SimServer]:
        """Serve every session's clock (and the idle sweeper) while the block runs; leaving the
        outermost use ends every open stream."""
        self._running += 1
        if self._running > 1:
            try:
                yield self
            finally:
                self._running -= 1
            return
        for sim in self._worlds():
            sim.start_driving()
        if self.session_idle_ttl is not None:
            self._sweeper = asyncio.get_running_loop().create_task(
                self._sweep(self.session_idle_ttl), name="gitpod-sim session sweeper"
            )
        try:
            yield self
        finally:
            self._running = 0
            sweeper, self._sweeper = self._sweeper, None
            if sweeper is not None:
                sweeper.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await sweeper
            for sim in self._worlds():
                await sim.stop_driving(SHUTDOWN_MESSAGE)

    @asynccontextmanager
    async def channel(self, session: str | None = None) -> AsyncIterator[Channel]:
        """A grpclib client channel to this server in memory (no sockets). With ``session``,
        every call on it carries the session key (stubs need no metadata of their own)."""
        from grpclib.testing import ChannelFor  # the client side loads only when used

        async with self.running(), ChannelFor(self.services(), codec=self.codec) as channel:
            if session is not None:
                _name_calls(channel, check_session_name(session))
            try:
                yield channel
            finally:
                await self._end_streams()

    @asynccontextmanager
    async def serve(self, host: str = "127.0.0.1", port: int = 0) -> AsyncIterator[Server]:
        """Serve every session on a TCP port (0: a free one; read it from ``bound_port``)."""
        server = GuardedServer(
            self.services(),
            codec=self.codec,
            limits=self.server_limits,
            guard=self.connections,
            activity=self._pause_for,
        )
        async with self.running():
            await server.start(host, port)
            try:
                yield server
            finally:
                await self._end_streams()
                server.end_streams(SHUTDOWN_MESSAGE)
                server.close()
                await server.wait_closed()

    @asynccontextmanager
    async def serve_http(
        self, host: str = "127.0.0.1", port: int = 0, cors_origins: Iterable[str] = ()
    ) -> AsyncIterator[ConnectGateway]:
        """Serve Connect and gRPC-Web over HTTP/1.1 for every session (the same header)."""
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

    async def _end_streams(self, rounds: int = 200) -> None:
        worlds = self._worlds()
        for sim in worlds:
            sim.hub.close_all(SHUTDOWN_MESSAGE)
        for _ in range(rounds):
            if all(s.activity.busy == 0 and s.activity.waiting == 0 for s in worlds):
                break
            await asyncio.sleep(0)
        for _ in range(10):
            await asyncio.sleep(0)


def _name_calls(channel: Channel, session: str) -> None:
    """Make every call on ``channel`` carry the session key (grpclib's SendRequest event)."""
    from grpclib.events import SendRequest, listen

    async def add_key(event: SendRequest) -> None:
        event.metadata[SESSION_KEY] = session

    listen(channel, SendRequest, add_key)
