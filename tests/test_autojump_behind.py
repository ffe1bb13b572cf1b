"""Autojump moves past a listener that is behind (issue 17): the rule in ``activity.py``.

A stream with news queued, or writing it, holds no step; it still counts as I/O before a
timeout; blocked on its client it holds nothing; it gets every message, in order, later; the
hub's per-stream bound still ends one whose client takes nothing. Servers listen on 127.0.0.1,
port 0; every wait is on a condition, bounded by real time.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from collections.abc import AsyncIterator, Callable

import pytest
from grpc_helpers import ALICE, BOB, active_instance_id, collect, create, settle, stub_for
from grpclib.client import Channel
from grpclib.const import Status
from h2_attacker import Attacker, frame, grpc_headers

from simulator import Phase, Simulator
from simulator._proto.gitpod import v1 as pb
from simulator.core.model import EngineEvent, StatusChange
from simulator.server import driver
from simulator.server.activity import FOLLOWER, Activity
from simulator.server.broadcast import MAX_QUEUED, Hub, Subscription
from simulator.server.convert import listen_payload
from simulator.server.limits import Limits
from simulator.server.runtime import bound_port

LISTEN = "/gitpod.v1.WorkspacesService/ListenToWorkspaceInstance"
NO_STALL_LIMIT = Limits(stall_timeout=0)
"""A client that reads nothing is ended only by the hub's bound, however slow the machine."""
LIFECYCLE = [
    Phase.IMAGEBUILD,
    Phase.PENDING,
    Phase.CREATING,
    Phase.INITIALIZING,
    Phase.RUNNING,
    Phase.RUNNING,  # the inactivity timeout's condition
    Phase.STOPPING,
    Phase.STOPPED,
]


async def until(condition: Callable[[], bool], seconds: float = 10.0) -> None:
    """Let the loop run (socket I/O included) until ``condition`` holds, at most ``seconds``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while not condition():
        assert loop.time() < deadline, "condition not reached in time"
        await asyncio.sleep(0)


def listen(stub: pb.WorkspacesServiceStub, iid: str) -> object:
    return stub.listen_to_workspace_instance(pb.ListenToWorkspaceInstanceRequest(instance_id=iid))


def messages(data: bytes) -> list[pb.ListenToWorkspaceInstanceResponse]:
    """The gRPC messages of a stream's DATA, decoded."""
    out, view = [], memoryview(data)
    while view:
        _, size = struct.unpack(">?I", view[:5])
        out.append(pb.ListenToWorkspaceInstanceResponse.parse(bytes(view[5 : 5 + size])))
        view = view[5 + size :]
    return out


def subscription(sim: Simulator, iid: str) -> Subscription:
    (sub,) = [s for s in sim.hub._status.get(iid, ()) if s.user_id is not None]
    return sub


# ---------------------------------------------------------------------- the rule, as counts


def test_the_rule_as_the_activity_counts_it() -> None:
    activity = Activity(wall=lambda: 0.0)
    kicks: list[int] = []
    activity.on_change = lambda: kicks.append(1)
    activity.call_started()  # a listen call: holds the clock until it follows
    assert not activity.may_jump
    activity.wait_started()  # parked: the clock may move
    assert activity.may_jump and activity.may_time_out and len(kicks) == 1
    activity.news(False)  # behind: steps go on, a timeout waits (it counts as I/O)
    assert activity.may_jump and not activity.may_time_out
    activity.call_started()  # a unary call still holds the clock for everything
    assert not activity.may_jump
    activity.call_ended()
    assert activity.may_jump and not activity.may_time_out
    activity.caught_up(False)
    assert activity.may_jump and activity.may_time_out and activity.busy == 0
    activity.news(True)  # its end is among its news (STOPPED): it no longer follows
    assert not activity.may_jump and not activity.may_time_out and activity.busy == 1
    activity.left(True)
    activity.call_ended()
    assert activity.busy == activity.sending == activity.final == activity.waiting == 0


def test_a_stream_behind_and_blocked_on_its_client_is_not_io() -> None:
    activity = Activity(wall=lambda: 0.0)
    hub = Hub(activity)
    sub = hub.subscribe_status("i")
    activity.call_started()
    activity.call_started()  # another listener, parked
    activity.wait_started()
    activity.wait_started()
    activity.news(False)
    sub.following = sub.sending = True  # what next() and the hub's push did
    token = FOLLOWER.set(sub)
    try:
        activity.pause()  # its writes wait on the client's flow control: not I/O
        assert activity.sending == 0 and activity.busy == 0 and activity.may_time_out
        activity.resume()
        assert activity.sending == 1 and activity.busy == 1 and not activity.may_time_out
    finally:
        FOLLOWER.reset(token)


async def test_a_listener_that_is_behind_holds_no_step_but_holds_a_timeout(
    sim: Simulator,
) -> None:
    async with sim.channel() as channel:
        stub = stub_for(channel, ALICE)
        iid = await active_instance_id(stub, await create(stub))
        task = asyncio.ensure_future(collect(listen(stub, iid)))
        await settle(lambda: sim.activity.waiting == 1)
        activity = sim.activity
        sim.advance_to_next()  # PENDING reaches the hub; the stream has not sent it yet
        assert activity.sending == 1 and activity.waiting == 0
        assert activity.may_jump  # the next step may come at once
        assert not activity.may_time_out  # a timeout waits until it has written
        await settle(lambda: activity.sending == 0)
        assert activity.may_time_out and activity.waiting == 1
        task.cancel()


async def test_time_stands_still_once_the_only_stream_has_its_end_queued(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A build log stream that the build's end closes no longer follows: autojump, taking
    steps in one turn, stops at PENDING (nobody waits for news), not at RUNNING."""
    monkeypatch.setattr(driver, "BURST_SECONDS", 60.0)
    sim = Simulator(seed=4, users={"alice": ALICE}, clock="autojump", autojump_grace=0)
    async with sim.channel() as channel:
        stub = stub_for(channel, ALICE)
        iid = await active_instance_id(stub, await create(stub))
        request = pb.ListenToImageBuildLogsRequest(instance_id=iid)
        lines = await collect(stub.listen_to_image_build_logs(request))
        assert lines
        await settle(lambda: sim.activity.busy == 0)
        assert sim.phase_of(iid) is Phase.PENDING
        assert sim.engine.next_event() is not None  # CREATING is due, but nobody waits


# ---------------------------------------------------------------------- over TCP


@contextlib.asynccontextmanager
async def served(sim: Simulator) -> AsyncIterator[int]:
    async with sim.serve("127.0.0.1", 0) as server:
        yield bound_port(server)


async def test_autojump_moves_past_a_listener_whose_client_reads_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Alice's client reads nothing while Bob's follows his workspace to STOPPED; autojump
    takes steps while a stream is behind; then Alice's client reads every status, in order."""
    monkeypatch.setattr(driver, "BURST_SECONDS", 60.0)  # a busy machine ends no turn early
    sim = Simulator(seed=4, users={"alice": ALICE, "bob": BOB}, server_limits=NO_STALL_LIMIT)
    changes: dict[str, list[int]] = {}

    def record(event: EngineEvent) -> None:
        if isinstance(event, StatusChange):
            changes.setdefault(event.instance_id, []).append(event.status.version)

    sim.add_listener(record)
    jumps_while_behind = 0
    jump_to = sim.jump_to

    def counting_jump(t: int) -> list[StatusChange]:
        nonlocal jumps_while_behind
        jumps_while_behind += sim.activity.busy > 0  # never, when every stream held the clock
        return jump_to(t)

    monkeypatch.setattr(sim, "jump_to", counting_jump)
    async with served(sim) as port:
        channel = Channel("127.0.0.1", port)
        slow: Attacker | None = None
        try:
            alice, bob = stub_for(channel, ALICE), stub_for(channel, BOB)
            slow_iid = await active_instance_id(alice, await create(alice))
            fast_iid = await active_instance_id(bob, await create(bob))
            first = listen_payload(sim.instance(slow_iid).status)
            # a stream window of one message and a bit: the second waits for the client
            slow = await Attacker.connect(port, window=len(frame(first)) + 8)
            request = frame(bytes(pb.ListenToWorkspaceInstanceRequest(instance_id=slow_iid)))
            stream_id = slow.open(grpc_headers(LISTEN, ALICE), request)
            await slow.flush()
            while len(slow.streams[stream_id].data) < len(frame(first)):
                assert await slow.pump(), "the first status never came"
            fast = asyncio.ensure_future(collect(listen(bob, fast_iid)))
            await until(lambda: sim.activity.waiting == 2)  # both parked, the clock manual

            sim.set_clock("autojump")
            sim.clock.autojump_grace = 0.0
            seen = await asyncio.wait_for(fast, 30)  # Alice's client reads nothing meanwhile

            assert [m.instance_status.phase for m in seen] == LIFECYCLE
            assert sim.phase_of(slow_iid) is Phase.STOPPED
            behind = subscription(sim, slow_iid)
            assert len(behind.queue) >= len(LIFECYCLE) - 3  # still there: nothing dropped
            assert behind.paused  # blocked on its client: neither holding nor I/O
            assert jumps_while_behind > 0

            result = await slow.until(stream_id, seconds=10)  # now it reads everything
            assert result.ended and result.grpc_status == Status.OK.value
            got = messages(bytes(result.data))
            assert [m.instance_status.phase for m in got] == LIFECYCLE
            versions = [m.instance_status.status_version for m in got]
            assert versions == changes[slow_iid]  # every change since it began, in order
        finally:
            channel.close()
            if slow is not None:
                slow.close()
    assert sim.activity.busy == 0 and sim.activity.waiting == 0 and sim.activity.sending == 0
    assert sim.hub.subscription_count() == 0


async def test_a_timeout_waits_for_a_listener_still_writing() -> None:
    """Grace 0, one listener: the inactivity timeout comes only after the stream has written
    RUNNING (it counts as I/O), never while RUNNING is still queued."""
    sim = Simulator(seed=4, users={"alice": ALICE}, clock="autojump", autojump_grace=0)
    timed_out_while_writing = 0
    jump_to = sim.jump_to

    def checking_jump(t: int) -> list[StatusChange]:
        nonlocal timed_out_while_writing
        event = sim.engine.next_event()
        if event is not None and event.kind.is_timeout and sim.activity.sending:
            timed_out_while_writing += 1
        return jump_to(t)

    sim.jump_to = checking_jump  # type: ignore[method-assign]
    async with served(sim) as port:
        channel = Channel("127.0.0.1", port)
        try:
            stub = stub_for(channel, ALICE)
            iid = await active_instance_id(stub, await create(stub))
            seen = await asyncio.wait_for(collect(listen(stub, iid)), 30)
        finally:
            channel.close()
    assert [m.instance_status.phase for m in seen] == LIFECYCLE
    assert timed_out_while_writing == 0


# ---------------------------------------------------------------------- the bound


def test_the_bound_ends_a_stream_whose_client_takes_none() -> None:
    hub = Hub(Activity())
    sub = hub.subscribe_logs("i")
    for _ in range(MAX_QUEUED + 1):
        sub.push(b"line")
    assert not sub.queue and sub.closed_code == "RESOURCE_EXHAUSTED"
    assert sub.closed == f"the client is {MAX_QUEUED} messages behind and takes none of them"


async def test_the_bound_says_when_a_client_takes_messages_but_too_slowly() -> None:
    activity = Activity()
    hub = Hub(activity)
    sub = hub.subscribe_logs("i")
    activity.call_started()  # its call, as the boundary counts it
    for _ in range(3):
        sub.push(b"line")
    assert await sub.next() == b"line"  # the first is being written...
    assert await sub.next() == b"line"  # ... and was sent: the client takes some
    for _ in range(MAX_QUEUED):
        sub.push(b"line")
    assert sub.closed_code == "RESOURCE_EXHAUSTED"
    assert sub.closed == (
        f"the client is {MAX_QUEUED} messages behind and takes them slower than they come"
    )
    sub.cancel()
    activity.call_ended()
    assert activity.busy == 0 and activity.sending == 0 and activity.waiting == 0


async def test_a_listener_that_takes_nothing_ends_at_the_bound_over_tcp() -> None:
    """Over a thousand status changes of one instance (sharing it on and off) while its
    listener's client takes nothing: RESOURCE_EXHAUSTED, saying so; nothing is left."""
    sim = Simulator(seed=4, users={"alice": ALICE}, server_limits=NO_STALL_LIMIT)
    async with served(sim) as port:
        channel = Channel("127.0.0.1", port)
        stuck: Attacker | None = None
        try:
            alice = stub_for(channel, ALICE)
            wsid = await create(alice)
            iid = await active_instance_id(alice, wsid)
            stuck = await Attacker.connect(port, window=1)
            request = frame(bytes(pb.ListenToWorkspaceInstanceRequest(instance_id=iid)))
            stream_id = stuck.open(grpc_headers(LISTEN, ALICE), request)
            await stuck.flush()
            await until(lambda: sim.hub.listener_count(iid) == 1)
            for n in range(MAX_QUEUED + 1):
                sim.share(wsid, shared=n % 2 == 0)  # one status change each
            result = await stuck.until(stream_id, seconds=10)
            assert result.grpc_status == Status.RESOURCE_EXHAUSTED.value
            assert result.headers["grpc-message"].replace("%20", " ") == (
                f"the client is {MAX_QUEUED} messages behind and takes none of them"
            )
        finally:
            channel.close()
            if stuck is not None:
                stuck.close()
    assert sim.hub.subscription_count() == 0
    assert sim.activity.busy == 0 and sim.activity.waiting == 0 and sim.activity.sending == 0
