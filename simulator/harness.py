"""A simulator for any client: a server on 127.0.0.1 in a thread of its own, and a blocking
control-plane client for it.

What the pytest plugin's ``gitpod_target`` and ``gitpod_control`` fixtures hand a test that drives
a client it cannot import: a grpcio program, a subprocess in Go or TypeScript. The server runs its
own event loop in a background thread, so a blocking client in the test's thread (or a subprocess)
talks to it over TCP like to any server, and a test steers it with :class:`ControlClient` (each
call a real control-plane RPC, run on the server's loop) without sharing any state across threads.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import threading
from collections.abc import Coroutine, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, TypeVar

from grpclib.client import Channel

from simulator._proto.gitpod import v1 as pb
from simulator._proto.gitpod.simulator import v1 as spb
from simulator.core.faults import ParamType, kind_named, status_name, status_number
from simulator.core.simtime import parse_duration
from simulator.core.transitions import Phase
from simulator.server.runtime import Simulator, bound_port

T = TypeVar("T")
HOST = "127.0.0.1"
CALL_TIMEOUT = 30.0
"""Seconds a control call may take (a WaitFor gets its own timeout on top)."""


@dataclass(frozen=True, slots=True)
class Target:
    """Where a client finds the simulator: ``host``, ``port``, each user's API token, the
    control plane's admin token."""

    host: str
    port: int
    tokens: Mapping[str, str]
    """User id -> API token, in the order the users were made (the first is the default)."""
    admin_token: str
    users: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "users", tuple(self.tokens))

    @property
    def address(self) -> str:
        """``host:port``, as grpcio's ``insecure_channel`` and most clients take it."""
        return f"{self.host}:{self.port}"

    def token(self, user: str | None = None) -> str:
        """The API token of ``user`` (default: the first user)."""
        return self.tokens[user if user is not None else self.users[0]]

    def metadata(self, user: str | None = None) -> tuple[tuple[str, str], ...]:
        """``authorization`` metadata for ``user`` (grpcio's form: a tuple of pairs)."""
        return (("authorization", f"Bearer {self.token(user)}"),)

    def env(self, user: str | None = None) -> dict[str, str]:
        """The target as environment variables, for a subprocess: ``GITPOD_SIM_ADDRESS``,
        ``GITPOD_SIM_HOST``, ``GITPOD_SIM_PORT``, ``GITPOD_SIM_TOKEN`` (``user``'s, default the
        first), ``GITPOD_SIM_TOKEN_<USER>`` for each user, ``GITPOD_SIM_ADMIN_TOKEN``."""
        env = {
            "GITPOD_SIM_ADDRESS": self.address,
            "GITPOD_SIM_HOST": self.host,
            "GITPOD_SIM_PORT": str(self.port),
            "GITPOD_SIM_TOKEN": self.token(user),
            "GITPOD_SIM_ADMIN_TOKEN": self.admin_token,
        }
        for name, token in self.tokens.items():
            env[f"GITPOD_SIM_TOKEN_{name.upper().replace('-', '_')}"] = token
        return env


class ServerThread:
    """A :class:`Simulator` served on ``127.0.0.1`` (a free port) by an event loop in a thread.

    ``start()`` returns once the port accepts connections; ``stop()`` ends every stream and the
    loop. :meth:`run` runs a coroutine on the server's loop from any other thread.
    """

    def __init__(self, **simulator: Any) -> None:
        self._settings = simulator
        self._loop = asyncio.new_event_loop()
        self._ready: Future[int] = Future()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._main, name="gitpod-sim-server", daemon=True)
        self.sim: Simulator | None = None
        """The simulator (touch it only from the server's loop, e.g. through :meth:`run`)."""
        self.port = 0

    def start(self, timeout: float = 30.0) -> ServerThread:
        self._thread.start()
        self.port = self._ready.result(timeout)
        return self

    def _main(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._serve())
        except BaseException as exc:
            if not self._ready.done():
                self._ready.set_exception(exc)
            raise
        finally:
            self._loop.close()

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        self.sim = Simulator(**self._settings)
        async with self.sim.serve(HOST, 0) as server:
            self._ready.set_result(bound_port(server))
            await self._stop.wait()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = CALL_TIMEOUT) -> T:
        """Run ``coro`` on the server's loop and answer its result (from another thread)."""
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    async def arun(self, coro: Coroutine[Any, Any, T]) -> T:
        """:meth:`run` for a caller on another event loop: awaits without blocking that loop."""
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self._loop))

    def target(self) -> Target:
        assert self.sim is not None, "start() first"
        tokens = {user.id: user.token for user in self.sim.users.values()}
        return Target(HOST, self.port, tokens, self.sim.admin_token)

    def stop(self, timeout: float = 30.0) -> None:
        if self._stop is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout)


def _duration(value: str | float | dt.timedelta) -> dt.timedelta:
    if isinstance(value, dt.timedelta):
        return value
    if isinstance(value, (int, float)):
        return dt.timedelta(seconds=value)
    return dt.timedelta(microseconds=parse_duration(value))


class ControlClient:
    """The control plane of a :class:`Target` (gitpod.simulator.v1.SimulatorService), blocking.

    Every method is one RPC over TCP with the admin token. :meth:`call` reaches any method by
    its name; the others are the common ones in short. For an ``async def`` test, :meth:`acall`
    awaits without blocking the test's loop (needed while a client on that loop must act, e.g.
    open the stream a :meth:`wait_for` waits for)."""

    def __init__(self, server: ServerThread, target: Target) -> None:
        self._server = server
        self.target = target
        self._channel: Channel | None = None

    def _stub(self) -> spb.SimulatorServiceStub:
        if self._channel is None:  # made on the server's loop, where it is used
            self._channel = Channel(self.target.host, self.target.port)
        metadata = {"authorization": f"Bearer {self.target.admin_token}"}
        return spb.SimulatorServiceStub(self._channel, metadata=metadata)

    async def _call(self, method: str, request: Any, timeout: float) -> Any:  # noqa: ASYNC109
        name = "".join("_" + c.lower() if c.isupper() else c for c in method).lstrip("_")
        return await getattr(self._stub(), name)(request, timeout=timeout)

    def call(self, method: str, request: Any, timeout: float = CALL_TIMEOUT) -> Any:
        """Any control method by its proto name (``"ReadJournal"``) with its request message."""
        return self._server.run(self._call(method, request, timeout), timeout + 5)

    async def acall(
        self,
        method: str,
        request: Any,
        timeout: float = CALL_TIMEOUT,  # noqa: ASYNC109
    ) -> Any:
        """:meth:`call` from an ``async def`` test."""
        return await self._server.arun(self._call(method, request, timeout))

    def close(self) -> None:
        if self._channel is not None:
            channel, self._channel = self._channel, None
            self._server.run(_close(channel))

    # -------------------------------------------------------------- in short

    def clock(self) -> spb.Clock:
        response: spb.GetClockResponse = self.call("GetClock", spb.GetClockRequest())
        assert response.clock is not None
        return response.clock

    def set_clock(self, mode: str) -> spb.Clock:
        """``manual``, ``realtime`` or ``autojump``."""
        request = spb.SetClockRequest(mode=spb.ClockMode[mode.upper()])
        response: spb.SetClockResponse = self.call("SetClock", request)
        assert response.clock is not None
        return response.clock

    def advance(
        self, by: str | float | dt.timedelta | None = None, *, until_idle: str | None = None
    ) -> list[spb.Transition]:
        """Move simulated time ``by`` a duration (``"5m"``, seconds, a timedelta), to the next
        event (no argument), or ``until_idle`` (at most that much); answers the transitions."""
        if until_idle is not None:
            request = spb.AdvanceRequest(until_idle=_duration(until_idle))
        elif by is not None:
            request = spb.AdvanceRequest(by=_duration(by))
        else:
            request = spb.AdvanceRequest(to_next_event=True)
        return list(self.call("Advance", request).transitions)

    def fault(
        self,
        kind: str,
        *,
        count: int = 1,
        skip: int = 0,
        user: str = "",
        **params: Any,
    ) -> spb.Fault:
        """Add a fault by its registry name (``"connection-drop"``, ``"rpc-error"``...) with its
        parameters (``method="GetWorkspace"``, ``code="UNAVAILABLE"``, ``latency="2s"``...);
        ``count`` 1 by default (0: unlimited), ``skip`` the first N, aimed at ``user`` or any."""
        fault_kind = kind_named(kind)
        fields: dict[str, Any] = {}
        for default in fault_kind.params:  # a status's default: the wire's 0 would mean OK
            if default.type is ParamType.CODE and default.name not in params:
                params[default.name] = default.default
        for name, value in params.items():
            param = fault_kind.param(name)
            if param is None:
                raise TypeError(f"a {kind} fault has no parameter {name!r}")
            if param.type is ParamType.CODE:
                value = status_number(status_name(value))
            elif param.type in (ParamType.DURATION, ParamType.OPTIONAL_DURATION):
                value = _duration(value)
            elif param.type is ParamType.PHASE:
                value = pb.WorkspaceInstanceStatusPhase(Phase[str(value).upper()].value)
            fields[name] = value
        message_class = getattr(spb, fault_kind.proto_field.title().replace("_", ""))
        target = spb.FaultTarget(user_id=user) if user else None
        if target is None and fault_kind.default_target.value == "next-start":
            target = spb.FaultTarget(next_start=True)
        spec = spb.FaultSpec(target=target, count=count, skip=skip)
        setattr(spec, fault_kind.proto_field, message_class(**fields))
        response: spb.AddFaultResponse = self.call("AddFault", spb.AddFaultRequest(spec=spec))
        assert response.fault is not None
        return response.fault

    def clear_faults(self) -> int:
        return int(self.call("ClearFaults", spb.ClearFaultsRequest()).cleared)

    def wait_for(
        self,
        *,
        instance_id: str = "",
        workspace_id: str = "",
        listeners: int = 0,
        phase: str | Phase | None = None,
        timeout: float = 10.0,
    ) -> spb.WaitForResponse:
        """Block (real time, the clock untouched) until the instance has ``listeners`` listen
        streams and/or is in ``phase``; DEADLINE_EXCEEDED (a ``GRPCError``) after ``timeout``."""
        request = self._wait_request(instance_id, workspace_id, listeners, phase, timeout)
        response: spb.WaitForResponse = self.call("WaitFor", request, timeout + 5)
        return response

    async def await_for(
        self,
        *,
        instance_id: str = "",
        workspace_id: str = "",
        listeners: int = 0,
        phase: str | Phase | None = None,
        timeout: float = 10.0,  # noqa: ASYNC109 (WaitFor's own bound, sent in the request)
    ) -> spb.WaitForResponse:
        """:meth:`wait_for` from an ``async def`` test (the test's loop keeps running)."""
        request = self._wait_request(instance_id, workspace_id, listeners, phase, timeout)
        response: spb.WaitForResponse = await self.acall("WaitFor", request, timeout + 5)
        return response

    @staticmethod
    def _wait_request(
        instance_id: str,
        workspace_id: str,
        listeners: int,
        phase: str | Phase | None,
        timeout: float,
    ) -> spb.WaitForRequest:
        if isinstance(phase, str):
            phase = Phase[phase.upper()]
        return spb.WaitForRequest(
            instance_id=instance_id,
            workspace_id=workspace_id,
            listeners=listeners,
            phase=pb.WorkspaceInstanceStatusPhase(phase.value if phase else 0),
            timeout=dt.timedelta(seconds=timeout),
        )

    def journal(self, from_seq: int = 0, limit: int = 1000) -> spb.ReadJournalResponse:
        response: spb.ReadJournalResponse = self.call(
            "ReadJournal", spb.ReadJournalRequest(from_seq=from_seq, limit=limit)
        )
        return response

    def rpcs(self, method: str | None = None, from_seq: int = 0) -> list[spb.RpcRecord]:
        """The journaled calls (of ``method``, by its short name, when given), oldest first."""
        out: list[spb.RpcRecord] = []
        cursor = from_seq
        while entries := (page := self.journal(cursor)).entries:
            cursor = page.next_seq
            for entry in entries:
                rpc = entry.rpc
                if rpc is not None and (method is None or rpc.method.endswith("/" + method)):
                    out.append(rpc)
        return out

    def reset(self, *, clear_journal: bool = True, seed: int | None = None) -> None:
        """Empty the world (users kept); the journal too unless ``clear_journal=False``."""
        self.call("Reset", spb.ResetRequest(seed=seed, clear_journal=clear_journal))


async def _close(channel: Channel) -> None:
    channel.close()
