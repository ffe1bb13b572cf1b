"""The one RPC boundary: every grpclib handler of every service goes through :func:`handler`.

In the manner of grpclib's own ``request_handler``, one wrapper owns what every call shares, in
this order: activity accounting (autojump's input) -> receive the request -> choose the world from
the metadata -> admit the caller (an API token or the admin token) -> bring the engine up to the
clock -> RPC faults aimed at the method -> the method itself -> map an engine error to the
``GRPCError`` it names -> journal the call with the status code actually sent. The gRPC port and
the Connect/gRPC-Web gateway run these same handlers, so both ports behave alike.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from types import CoroutineType
from typing import Any

from grpclib.const import Cardinality, Handler, Status
from grpclib.exceptions import GRPCError
from grpclib.server import Stream

from simulator.core.errors import InvalidArgument, PermissionDenied, SimError, Unauthenticated
from simulator.core.fault_book import CallFaults
from simulator.core.faults import ConnectionDrop, Fault, RpcError
from simulator.core.model import User
from simulator.core.simtime import SECOND
from simulator.server.activity import Activity
from simulator.server.auth import bearer_token, user_for
from simulator.server.broadcast import Closed
from simulator.server.deferred import _UNSET, Deferred
from simulator.server.stream_faults import (
    ConnectionDropped,
    FaultyStream,
    LostAnswer,
    drop_connection,
    lost_answer,
)
from simulator.server.world import SteeredWorld, Worlds

API_SERVICE = "gitpod.v1.WorkspacesService"
CONTROL_SERVICE = "gitpod.simulator.v1.SimulatorService"
ADMIN = "admin"
log = logging.getLogger("gitpod_sim.rpc")

REPLACED_WHILE_WAITING = (
    "the simulator was reset or its state replaced while the call waited on a latency fault;"
    " it did not run"
)

RawHandler = Callable[[Stream[Any, Any]], Awaitable[None]]


@dataclass(slots=True)
class Call:
    """One call as a method sees it: the world it is for, who called, what they asked."""

    world: SteeredWorld
    stream: Stream[Any, Any]
    user: User | None
    """The API caller (None on the control plane, where the caller is the admin)."""
    request: Any

    @property
    def caller(self) -> User:
        assert self.user is not None, "an API method runs only for an authenticated user"
        return self.user


Admit = Callable[[SteeredWorld, Any], "User | None"]
"""Check the caller's credentials in ``world``; answers the API user (None: the admin)."""


def admit_api_user(world: SteeredWorld, metadata: Any) -> User:
    """An API token of a user of this world; the admin token is refused here."""
    token = bearer_token(metadata)  # read once: the header is parsed per call
    if world.is_admin_token(token):
        raise PermissionDenied(
            f"the admin token is for {CONTROL_SERVICE} only; call {API_SERVICE} with an API token"
        )
    return user_for(token, world.engine.user_by_token)


def admit_admin(world: SteeredWorld, metadata: Any) -> None:
    """The world's admin token; an API token is refused with PERMISSION_DENIED."""
    token = bearer_token(metadata)
    if world.is_admin_token(token):
        return
    if world.engine.user_by_token(token) is not None:
        raise PermissionDenied(
            f"{CONTROL_SERVICE} needs the admin token; an API token cannot use it"
        )
    raise Unauthenticated("invalid credentials: unknown admin token")


@dataclass(frozen=True, slots=True)
class Rules:
    """What the boundary does around the methods of one kind (data, not another wrapper)."""

    admit: Admit
    faults: bool
    """RPC faults (latency, error) aimed at the method apply."""
    activity: bool
    """The call counts for autojump (busy while handled, I/O resets the grace period)."""
    journal: bool
    quiet_ok: bool = False
    """A call that answers OK is not journaled (reads: see CONTROL_READ); a refused one is."""
    quiet_ran: bool = False
    """A call is journaled only when it was refused before its method ran (FollowJournal)."""


API = Rules(admit_api_user, faults=True, activity=True, journal=True)
CONTROL = Rules(admit_admin, faults=False, activity=False, journal=True)
CONTROL_FOLLOW = Rules(admit_admin, faults=False, activity=False, journal=True, quiet_ran=True)
"""FollowJournal: a follow that ran is not journaled (it would journal itself), a refused one (a
wrong token, a malformed request) is; never counted for autojump."""
CONTROL_READ = Rules(admit_admin, faults=False, activity=False, journal=True, quiet_ok=True)
"""ReadJournal, GetClock and WaitFor: reads that change nothing. Answered OK they are not
journaled (reading the journal until it is empty would never end); refused (a wrong token, a
wait that timed out) they are. Never counted for autojump."""


async def apply_rpc_faults(
    world: SteeredWorld, faults: list[Fault], stream: Stream[Any, Any]
) -> RpcError | ConnectionDrop | None:
    """Latency first, then an injected error or a dropped connection: the effects of the faults
    that hit this call (decided in the core). Answers what to do after the call ran (the answer
    lost: a status, or the connection dropped)."""
    decided = CallFaults.of(faults)
    engine = world.engine
    for latency in decided.latencies:
        if latency.simulated:
            await world.sleep_simulated(latency.latency)  # a reset ends it with Closed
        else:
            await asyncio.sleep(latency.latency / SECOND)
        if world.engine is not engine:  # nothing outlives a reset or an import
            raise Closed(REPLACED_WHILE_WAITING, code="ABORTED")
        world.sync()
    before = decided.before
    if isinstance(before, ConnectionDrop):
        raise drop_connection(stream, before, ran=False)
    if before is not None:
        raise GRPCError(Status[before.code], before.message)
    return decided.after


def _cancelled(ran: bool) -> str:
    """The journal's note on a call the client abandoned: did the call run before it left?"""
    return "cancelled by the client " + ("after the call ran" if ran else "before the call ran")


def _journal_message(exc: GRPCError) -> str:
    """An error after the call ran (an answer-lost fault) says so in the journal."""
    message = exc.message or ""
    if isinstance(exc, ConnectionDropped):
        return message
    return f"{message} (after the call ran)" if isinstance(exc, LostAnswer) else message


DEADLINE_SLACK = 0.25
"""Seconds before its deadline within which a client going away is its deadline passing: the
client's clock started first, so its deadline ends the call a network latency before ours."""


def _sent_code(stream: Stream[Any, Any]) -> str:
    """What the client saw of a cancelled handler: DEADLINE_EXCEEDED once (about) the deadline
    passed, else CANCELLED."""
    deadline = getattr(stream, "deadline", None)
    if deadline is not None and deadline.time_remaining() <= DEADLINE_SLACK:
        return "DEADLINE_EXCEEDED"
    return "CANCELLED"


@dataclass(frozen=True, slots=True)
class Method:
    """One RPC as the boundary serves it, the same in every world (made once per process): its
    path, the name of the service's method that serves it (read from the service at each call,
    so a method patched on one service instance is the one that runs), the rules around it, and
    its message classes (loaded on first use)."""

    path: str
    attr: str
    rules: Rules
    streaming: bool
    """Server-streaming: the method sends its own messages through ``call.stream``."""
    request: Deferred[Any]
    reply: Deferred[Any]
    cardinality: Cardinality

    @classmethod
    def of(
        cls,
        path: str,
        attr: str,
        rules: Rules,
        request: Deferred[Any],
        reply: Deferred[Any],
        *,
        streaming: bool = False,
    ) -> Method:
        cardinality = Cardinality.UNARY_STREAM if streaming else Cardinality.UNARY_UNARY
        return cls(path, attr, rules, streaming, request, reply, cardinality)


def mapping(worlds: Worlds, service: object, methods: Iterable[Method]) -> dict[str, Handler]:
    """The grpclib mapping of ``service``'s ``methods``: one :class:`BoundaryHandler` each."""
    return {method.path: BoundaryHandler(worlds, service, method) for method in methods}


class BoundaryHandler(Handler):
    """One method's grpclib handler in one world: the mapping entry grpclib reads (its ``func``
    is the handler itself, its message classes the method's, resolved where read) and the raw
    handler it calls, in one tuple: (worlds, cardinality, service, method). Every world makes
    one per method of its services (35), so one object each rather than a closure, a bound
    method and a handler tuple (a world's set-up, and fewer objects for the garbage
    collector)."""

    __slots__ = ()

    def __new__(cls, worlds: Worlds, service: object, method: Method) -> BoundaryHandler:
        return tuple.__new__(cls, (worlds, method.cardinality, service, method))

    # read by grpclib on every call

    @property
    def func(self) -> RawHandler:
        return self.__call__

    @property
    def request_type(self) -> Any:
        deferred: Deferred[Any] = self[3].request
        value = deferred._value
        return deferred.get() if value is _UNSET else value

    @property
    def reply_type(self) -> Any:
        deferred: Deferred[Any] = self[3].reply
        value = deferred._value
        return deferred.get() if value is _UNSET else value

    def __repr__(self) -> str:
        return f"BoundaryHandler({self[3].path})"

    async def __call__(self, stream: Stream[Any, Any]) -> None:
        worlds, spec = self[0], self[3]
        path, rules, streaming = spec.path, spec.rules, spec.streaming
        method: Callable[[Call], Any] = getattr(self[2], spec.attr)
        admit, faults, counted, journaled = rules.admit, rules.faults, rules.activity, rules.journal
        quiet_ok, quiet_ran = rules.quiet_ok, rules.quiet_ran
        world: SteeredWorld | None = None
        activity: Activity | None = None
        caller, code, message, request, reply = "-", "OK", "", None, None
        lost: RpcError | ConnectionDrop | None = None
        ran = False
        try:
            try:
                world = worlds.world_for(stream.metadata)
                if counted:
                    activity = world.activity
                    activity.call_started()
                request = await stream.recv_message()
                if activity is not None:
                    activity.io()
                if request is None:
                    raise InvalidArgument("request message is missing")
                user = admit(world, stream.metadata)
                caller = ADMIN if user is None else user.id
                world.sync()
                if faults and (hits := world.engine.take_rpc_faults(path, caller)):
                    lost = await apply_rpc_faults(world, hits, stream)
                ran = True
                if streaming and lost is not None:
                    faulty = FaultyStream(stream, lost=lost)
                    await method(Call(world, faulty, user, request))  # type: ignore[arg-type]
                    faulty.raise_lost()  # the method sent nothing: the status still comes
                elif streaming:
                    await method(Call(world, stream, user, request))
                else:
                    reply = method(Call(world, stream, user, request))
                    if type(reply) is CoroutineType:  # an async method (WaitFor)
                        reply = await reply
                    world.kick()
                    if lost is not None:
                        raise lost_answer(stream, lost)
            except SimError as exc:
                code, message = exc.code, exc.message
                raise GRPCError(Status[exc.code], exc.message) from None
            except Closed as exc:
                code, message = exc.code, exc.reason
                raise GRPCError(Status[exc.code], exc.reason) from None
        except GRPCError as exc:
            code, message = exc.status.name, _journal_message(exc)
            raise
        except asyncio.CancelledError:
            code, message = _sent_code(stream), _cancelled(ran)
            raise
        except Exception:
            code, message = "UNKNOWN", "Internal Server Error"
            raise
        finally:
            if activity is not None:
                activity.call_ended()
            quiet = (quiet_ok and code == "OK") or (quiet_ran and ran)
            if journaled and world is not None and not quiet:
                world.record_rpc(path, caller, request, code, message)
            if log.isEnabledFor(logging.INFO):
                suffix = f": {message}" if message else ""
                log.info("rpc %s by %s -> %s%s", path.rsplit("/", 1)[-1], caller, code, suffix)
        if not streaming:
            await stream.send_message(reply)
