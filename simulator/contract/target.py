"""What the contract suite talks to: a simulator in this process, or any server over TCP.

A target gives the state machine authenticated stubs for two callers, says what its clock does,
and, when it can, gives control of time and faults.

- In process the control is the :class:`~simulator.Simulator` API and the clock is manual:
  nothing changes between steps unless a rule makes it (``still``), and after :meth:`settle`
  every stream has delivered what the server sent (``settled``).
- A remote target gets control only from the control plane (``gitpod.simulator.v1.
  SimulatorService``, with ``--gitpod-admin-token``). Its ``GetClock`` says which clock runs: a
  manual clock is ``still`` (time moves only by the suite's Advance calls); realtime (any speed)
  and autojump move on their own. Without the control plane the clock is judged from the
  timestamps the API answers (instance ``created_at``), which can show that time moves but
  never that it stands still, so the suite assumes it moves. Remote streams are never
  ``settled``: a claim that needs a stream to have caught up waits for it, bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import itertools
import secrets
import time
from collections.abc import Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass

from grpclib.client import Channel
from grpclib.const import Status
from grpclib.encoding.base import CodecBase
from grpclib.encoding.proto import ProtoCodec
from grpclib.exceptions import GRPCError

from simulator._proto.gitpod import v1 as pb
from simulator._proto.gitpod.simulator import v1 as spb
from simulator.core.errors import SimError
from simulator.server.runtime import Simulator

CONTROL_SERVICE = "gitpod.simulator.v1.SimulatorService"
CONTROL_PROBE = f"/{CONTROL_SERVICE}/GetClock"
"""A cheap call on the control plane; UNIMPLEMENTED means the server has none."""

IN_PROCESS_USERS = {"alice": "contract-alice", "bob": "contract-bob"}

STREAM_WAIT = 5.0
"""Seconds a remote stream may take to deliver what the suite already knows happened."""

SETTLE_ROUNDS = 200
"""The most loop rounds a remote settle runs (each one reads what the socket holds)."""

SimFactory = Callable[[], Simulator]


def default_simulator() -> Simulator:
    """The simulator the suite judges when no target is given: manual clock, two users."""
    return Simulator(seed=0, users=IN_PROCESS_USERS)


def stub(channel: Channel, token: str, session: str | None = None) -> pb.WorkspacesServiceStub:
    return pb.WorkspacesServiceStub(channel, metadata=_metadata(token, session))


def _metadata(token: str, session: str | None) -> dict[str, str]:
    metadata = {"authorization": f"Bearer {token}"}
    if session is not None:
        metadata[SESSION_KEY] = session
    return metadata


SESSION_KEY = "x-gitpod-sim-session"
_RUN = secrets.token_hex(3)
"""This run's part of the session names (--gitpod-session-per-example)."""
_examples = itertools.count(1)


def micros(value: dt.datetime | None) -> int | None:
    """A wire timestamp as microseconds since the epoch."""
    if value is None:
        return None
    delta = value - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


LISTING_CACHE = 4096
"""The most distinct listing items one example's client keeps decoded."""


class ListingCodec(CodecBase):
    """The suite's client codec: the channel's own for every message, except that the items of
    a ListWorkspaces answer are decoded once per distinct bytes.

    The listings after the steps repeat most items byte for byte (about three in four at the
    CI budget), and decoding them is the client's largest cost. The answer's own framing is
    read here (field 1, the page token; field 2, the items, each decoded by the channel's codec
    as a message of its own, as a decoder of the whole answer does); anything else, or
    anything malformed, is left to the channel's codec for the whole answer, so a bad answer
    fails as it did. Equal bytes decode to equal messages, which the checks only read, so an
    item seen before is answered as the message it decoded to then."""

    __content_subtype__ = "proto"

    def __init__(self, inner: CodecBase) -> None:
        self.inner = inner
        self.items: dict[bytes, pb.ListWorkspacesResponseWorkspaceAndInstance] = {}

    def encode(self, message: object, message_type: object) -> bytes:
        return self.inner.encode(message, message_type)

    def decode(self, data: bytes, message_type: object) -> object:
        if message_type is pb.ListWorkspacesResponse:
            answer = self._listing(data)
            if answer is not None:
                return answer
        return self.inner.decode(data, message_type)

    def _listing(self, data: bytes) -> pb.ListWorkspacesResponse | None:
        token = ""
        chunks: list[bytes] = []
        pos, end = 0, len(data)
        while pos < end:
            tag = data[pos]
            if tag not in (0x0A, 0x12):  # field 1 or 2, length-delimited, one-byte tag
                return None
            length, pos = _varint(data, pos + 1)
            if length < 0 or pos + length > end:
                return None
            chunk = data[pos : pos + length]
            pos += length
            if tag == 0x0A:
                try:
                    token = chunk.decode()
                except UnicodeDecodeError:
                    return None
            else:
                chunks.append(chunk)
        items = self.items
        result = []
        for chunk in chunks:
            item = items.get(chunk)
            if item is None:
                item = self.inner.decode(chunk, pb.ListWorkspacesResponseWorkspaceAndInstance)
                if len(items) >= LISTING_CACHE:
                    items.clear()
                items[chunk] = item
            result.append(item)
        return pb.ListWorkspacesResponse(next_page_token=token, result=result)


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    """A varint of at most 5 bytes at ``pos``: (value, position after it); -1 when malformed."""
    value = shift = 0
    for i in range(pos, min(pos + 5, len(data))):
        byte = data[i]
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, i + 1
        shift += 7
    return -1, pos


class ClockWatch:
    """What the API's timestamps say about the target's clock: (wall, simulated) pairs taken
    from the ``created_at`` of the instances the suite started."""

    def __init__(self) -> None:
        self.first: tuple[float, int] | None = None
        self.last: tuple[float, int] | None = None
        self.moved = False

    def saw(self, created_at: int | None) -> None:
        if created_at is None:
            return
        point = (time.monotonic(), created_at)
        if self.first is None:
            self.first = point
        elif created_at != self.first[1]:
            self.moved = True
        self.last = point

    def describe(self) -> str:
        if self.first is None or self.last is None or self.last[0] <= self.first[0]:
            return "too few timestamps to judge it"
        wall = self.last[0] - self.first[0]
        simulated = (self.last[1] - self.first[1]) / 1_000_000
        if not self.moved:
            return f"its timestamps stood still over {wall:.1f} s"
        return f"its timestamps moved {simulated:.0f} s in {wall:.1f} s of wall time"


class Target:
    """The base: stubs for each caller, and no control of time or faults."""

    settled = False
    """True when, after :meth:`settle`, every stream has delivered what the server sent."""
    still = False
    """True when nothing changes between steps unless a rule makes it (a manual clock)."""
    control = False
    """True when the clock and fault rules may run."""
    control_note = ""
    """Why control is missing (reported once, so a remote run says what it skipped)."""
    clock_mode = "unknown"
    """The target's clock as the suite found it (``manual``, ``realtime x50``, ``autojump``)."""

    def __init__(self, tokens: tuple[str, ...]) -> None:
        self.tokens = tokens
        self.stubs: dict[str, pb.WorkspacesServiceStub] = {}
        self.watch = ClockWatch()
        self.left_building: set[str] = set()
        """Repositories whose image build an example left running at its end (one per run:
        the run's targets share the set)."""

    @property
    def exact(self) -> bool:
        """Still and settled: every claim the model knows may be made at once (in process)."""
        return self.still and self.settled

    @property
    def users(self) -> tuple[str, ...]:
        """Caller labels the rules draw from (``user1``, ``user2``, ...)."""
        return tuple(f"user{i + 1}" for i in range(len(self.tokens)))

    async def open(self, stack: AsyncExitStack) -> None:
        raise NotImplementedError

    async def settle(self) -> None:
        """Let streams deliver what the last step caused."""
        await asyncio.sleep(0)

    async def wait_briefly(self, done: Callable[[], bool], seconds: float = 1.0) -> None:
        """Give a remote stream a bounded moment of real time to reach ``done``."""
        deadline = time.monotonic() + seconds
        for _ in range(int(seconds / 0.002) + 1):
            if done() or time.monotonic() >= deadline:
                return
            await asyncio.sleep(0.002)

    def now(self) -> int | None:
        """The target's clock in microseconds, when the suite knows it without asking."""
        return None

    # Control: only targets with ``control`` implement these.
    def advance(self, seconds: float) -> None:
        raise NotImplementedError

    def advance_to_next(self) -> None:
        raise NotImplementedError

    def fault(self, kind: str, workspace_id: str, instance_id: str) -> bool:
        """Apply a fault; False when it does not apply in the instance's present phase."""
        raise NotImplementedError


class InProcessTarget(Target):
    """A fresh :class:`Simulator` per example, over grpclib's in-memory channel (no sockets)."""

    settled = True
    still = True
    control = True
    clock_mode = "manual (in process)"

    def __init__(self, factory: SimFactory = default_simulator) -> None:
        self.sim = factory()
        users = list(self.sim.users.values())
        if len(users) < 2:
            raise ValueError("the contract suite needs a simulator with at least two users")
        super().__init__(tuple(u.token for u in users[:2]))

    async def open(self, stack: AsyncExitStack) -> None:
        channel = await stack.enter_async_context(self.sim.channel())
        # The in-memory channel's two ends share the simulator's codec: the client's own wraps it.
        channel._codec = ListingCodec(channel._codec)
        self.stubs = {
            label: stub(channel, tok) for label, tok in zip(self.users, self.tokens, strict=True)
        }

    async def settle(self) -> None:
        """Run the loop until, when this task runs again, no callback is ready and no call is
        in progress (bounded). The in-memory channel does no I/O and a manual clock sets no
        timer: nothing can run after such a round that the step caused."""
        loop = asyncio.get_running_loop()
        activity = self.sim.activity
        for _ in range(5000):
            await asyncio.sleep(0)
            if not getattr(loop, "_ready", None) and activity.busy == 0:
                return

    async def wait_briefly(self, done: Callable[[], bool], seconds: float = 1.0) -> None:
        await self.settle()

    def now(self) -> int | None:
        return self.sim.now()

    def advance(self, seconds: float) -> None:
        self.sim.advance(seconds)

    def advance_to_next(self) -> None:
        self.sim.advance_to_next()

    def fault(self, kind: str, workspace_id: str, instance_id: str) -> bool:
        sim = self.sim
        try:
            if kind == "fail":
                sim.fail(instance_id, "contract: injected failure")
            elif kind == "interrupt":
                sim.interrupt(instance_id, "1m")
            elif kind == "interrupt_forever":
                sim.interrupt(instance_id, None)
            elif kind == "recover":
                sim.recover(instance_id)
            elif kind == "mark_active":
                sim.mark_active(workspace_id)
            elif kind == "share":
                sim.share(workspace_id)
            else:
                raise ValueError(f"unknown fault {kind!r}")
        except SimError:
            return False
        return True


@dataclass(frozen=True, slots=True)
class RemoteOptions:
    """``--gitpod-target HOST:PORT --gitpod-token T [--gitpod-token2 T] [--gitpod-admin-token T]``.

    Without an admin token (or a control plane that accepts it) only API calls run."""

    host: str
    port: int
    token: str
    token2: str | None = None
    admin_token: str | None = None
    session_per_example: bool = False
    """Run each example in a session of its own (gitpod-sim's sessions), made with the default
    session's clock and the two tokens, deleted after the example."""

    @classmethod
    def parse(
        cls,
        target: str,
        token: str | None,
        token2: str | None,
        admin: str | None,
        *,
        session_per_example: bool = False,
    ) -> RemoteOptions:
        host, sep, port = target.rpartition(":")
        if not sep or not host or not port.isdigit():
            raise ValueError(f"--gitpod-target must be HOST:PORT, got {target!r}")
        if not token:
            raise ValueError("--gitpod-target needs --gitpod-token")
        if session_per_example and not admin:
            raise ValueError("--gitpod-session-per-example needs --gitpod-admin-token")
        return cls(
            host.strip("[]"), int(port), token, token2 or None, admin or None, session_per_example
        )


class RemoteTarget(Target):
    """A running server over TCP. Clock and faults through its control plane, when the admin
    token opens it; streams deliver on their own time, so stream claims wait (bounded)."""

    def __init__(self, options: RemoteOptions) -> None:
        tokens = (options.token,) if options.token2 is None else (options.token, options.token2)
        super().__init__(tokens)
        self.options = options
        self.control_note = (
            "no --gitpod-admin-token: clock and fault rules skipped; the clock is judged from"
            " timestamps and assumed to move"
        )
        self.control_stub: spb.SimulatorServiceStub | None = None
        self._now: int | None = None

    async def open(self, stack: AsyncExitStack) -> None:
        channel = Channel(self.options.host, self.options.port, codec=ListingCodec(ProtoCodec()))
        stack.callback(channel.close)
        session = None
        if self.options.session_per_example:
            assert self.options.admin_token is not None
            session = await self._new_session(channel, self.options.admin_token, stack)
        self.stubs = {
            label: stub(channel, tok, session)
            for label, tok in zip(self.users, self.tokens, strict=True)
        }
        if self.options.admin_token is not None:
            note = await probe_control_plane(channel, self.options.admin_token)
            if note:
                self.control_note = note
            else:
                self.control_note = ""
                self.control = True
                self.control_stub = spb.SimulatorServiceStub(
                    channel, metadata=_metadata(self.options.admin_token, session)
                )
                answer = await self.control_stub.get_clock(spb.GetClockRequest(), timeout=5)
                self._learn_clock(answer.clock)

    async def _new_session(self, channel: Channel, admin: str, stack: AsyncExitStack) -> str:
        """A session of this example's own, on the default session's clock; deleted at the
        example's end. Its name says the run and the example (``contract-RUN-N``)."""
        control = spb.SimulatorServiceStub(channel, metadata=_metadata(admin, None))
        clock = (await control.get_clock(spb.GetClockRequest(), timeout=5)).clock
        n = next(_examples)
        name = f"contract-{_RUN}-{n}"
        users = [
            spb.SessionUser(user_id=f"user{i}", token=token)
            for i, token in enumerate(self.tokens, start=1)
        ]
        request = spb.CreateSessionRequest(name=name, seed=n, users=users)
        if clock is not None:
            request.clock_mode = clock.mode
            if clock.mode is spb.ClockMode.REALTIME:
                request.speed = clock.speed
        await control.create_session(request, timeout=5)

        async def delete() -> None:
            with contextlib.suppress(GRPCError, OSError, TimeoutError):
                await control.delete_session(spb.DeleteSessionRequest(name=name), timeout=5)

        stack.push_async_callback(delete)
        return name

    def _learn_clock(self, clock: spb.Clock | None) -> None:
        if clock is None:
            return
        if clock.mode is spb.ClockMode.MANUAL:
            self.still = True
            self.clock_mode = "manual"
            self._now = micros(clock.now)
        else:
            self.still = False
            self._now = None
            if clock.mode is spb.ClockMode.REALTIME:
                self.clock_mode = f"realtime x{clock.speed:g}"
            else:
                self.clock_mode = "autojump"

    def now(self) -> int | None:
        return self._now if self.still else None

    async def settle(self) -> None:
        """Run whatever is ready, what the socket already holds included, until the loop is
        quiet twice running: no real-time wait (streams owe nothing here; a claim that needs
        one to have caught up waits for it, bounded)."""
        loop = asyncio.get_running_loop()
        quiet = 0
        for _ in range(SETTLE_ROUNDS):
            await asyncio.sleep(0)
            quiet = quiet + 1 if not getattr(loop, "_ready", None) else 0
            if quiet >= 2:
                return

    async def wait_briefly(self, done: Callable[[], bool], seconds: float = 1.0) -> None:
        await super().wait_briefly(done, max(seconds, STREAM_WAIT) if self.still else seconds)

    def _control(self) -> spb.SimulatorServiceStub:
        assert self.control_stub is not None, "the control plane is not open"
        return self.control_stub

    async def advance(self, seconds: float) -> None:  # type: ignore[override]
        by = dt.timedelta(seconds=seconds)
        answer = await self._control().advance(spb.AdvanceRequest(by=by))
        self._learn_clock(answer.clock)

    async def advance_to_next(self) -> None:  # type: ignore[override]
        answer = await self._control().advance(spb.AdvanceRequest(to_next_event=True))
        self._learn_clock(answer.clock)

    async def fault(self, kind: str, workspace_id: str, instance_id: str) -> bool:  # type: ignore[override]
        """The control plane's closest equivalent of each in-process fault; False when it has
        none (``recover``) or refuses it in the instance's present phase."""
        ctl = self._control()
        target = spb.FaultTarget(instance_id=instance_id)
        try:
            if kind == "fail":
                spec = spb.FaultSpec(
                    target=target, count=1, fail_initializing=spb.FailInitializing()
                )
            elif kind in ("interrupt", "interrupt_forever"):
                duration = dt.timedelta(minutes=1) if kind == "interrupt" else None
                spec = spb.FaultSpec(
                    target=target, count=1, interrupt=spb.Interrupt(duration=duration)
                )
            elif kind == "mark_active":
                await ctl.mark_active(spb.MarkActiveRequest(workspace_id=workspace_id))
                return True
            elif kind == "share":
                level = pb.AdmissionLevel.EVERYONE
                request = spb.SetAdmissionRequest(workspace_id=workspace_id, admission=level)
                await ctl.set_admission(request)
                return True
            else:
                return False
            await ctl.add_fault(spb.AddFaultRequest(spec=spec))
        except GRPCError:
            return False
        return True


async def probe_control_plane(channel: Channel, admin_token: str) -> str:
    """Why the control plane cannot be used, or "" when it answers the admin token."""
    ctl = spb.SimulatorServiceStub(channel, metadata={"authorization": f"Bearer {admin_token}"})
    try:
        await ctl.get_clock(spb.GetClockRequest(), timeout=5)
    except GRPCError as exc:
        if exc.status is Status.UNIMPLEMENTED:
            return (
                f"{CONTROL_SERVICE} is not implemented by the target: clock and fault rules skipped"
            )
        return f"{CONTROL_SERVICE} refused the admin token ({exc.status.name}): rules skipped"
    except (OSError, TimeoutError) as exc:
        return f"probing {CONTROL_SERVICE} failed ({exc!r}): clock and fault rules skipped"
    return ""
