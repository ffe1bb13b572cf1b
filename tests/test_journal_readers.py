"""Issue 19 items 4 and 5: a journal for its readers (reads are not journaled, where it ends,
Reset can clear it, token/caller/session in each entry) and waiting without sleeping (WaitFor:
N listeners on an instance, or a phase, bounded by real time; it never moves the clock)."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from collections.abc import AsyncIterator

import pytest
from grpc_helpers import ALICE, REPO, collect, create, stub_for
from grpclib.client import Channel
from grpclib.const import Status
from grpclib.exceptions import GRPCError

from simulator import Phase, Simulator
from simulator._proto.gitpod import v1 as pb
from simulator._proto.gitpod.simulator import v1 as spb

ADMIN = "admin-secret"
RUNNING = pb.WorkspaceInstanceStatusPhase.RUNNING


@pytest.fixture
def sim() -> Simulator:
    return Simulator(seed=3, users={"alice": ALICE}, admin_token=ADMIN)


@pytest.fixture
async def channel(sim: Simulator) -> AsyncIterator[Channel]:
    async with sim.channel() as ch:
        yield ch


@pytest.fixture
def ctl(channel: Channel) -> spb.SimulatorServiceStub:
    return spb.SimulatorServiceStub(channel, metadata={"authorization": f"Bearer {ADMIN}"})


@pytest.fixture
def api(channel: Channel) -> pb.WorkspacesServiceStub:
    return stub_for(channel, ALICE)


async def read_all(ctl: spb.SimulatorServiceStub) -> list[spb.JournalEntry]:
    """Read until empty, as a reader does: it ends because reads are not journaled."""
    entries: list[spb.JournalEntry] = []
    cursor = 0
    for _ in range(100):
        page = await ctl.read_journal(spb.ReadJournalRequest(from_seq=cursor, limit=2))
        if not page.entries:
            return entries
        entries += page.entries
        cursor = page.next_seq
    raise AssertionError("reading the journal until empty never ended")


# ---------------------------------------------------------------------- the journal


async def test_reading_until_empty_ends_and_last_seq_says_where_the_journal_ends(
    sim: Simulator, ctl: spb.SimulatorServiceStub, api: pb.WorkspacesServiceStub
) -> None:
    empty = await ctl.read_journal(spb.ReadJournalRequest())
    assert (empty.entries, empty.last_seq, empty.next_seq) == ([], 0, 1)
    await create(api)
    await ctl.get_clock(spb.GetClockRequest())
    entries = await read_all(ctl)
    assert [e.seq for e in entries] == [1, 2]  # IMAGEBUILD, CreateAndStartWorkspace
    again = await read_all(ctl)
    assert [e.seq for e in again] == [1, 2]  # the reads above added nothing
    head = await ctl.read_journal(spb.ReadJournalRequest(from_seq=1, limit=1))
    assert [e.seq for e in head.entries] == [1] and head.last_seq == 2


async def test_a_refused_read_is_journaled(sim: Simulator, channel: Channel) -> None:
    intruder = spb.SimulatorServiceStub(channel, metadata={"authorization": "Bearer nope"})
    with pytest.raises(GRPCError) as info:
        await intruder.read_journal(spb.ReadJournalRequest())
    assert info.value.status is Status.UNAUTHENTICATED
    [entry] = [e.to_dict() for e in sim.journal]
    assert (entry["method"], entry["caller"], entry["code"]) == (
        "/gitpod.simulator.v1.SimulatorService/ReadJournal",
        "-",
        "UNAUTHENTICATED",
    )


async def test_each_entry_has_its_caller_idempotency_token_and_session(
    sim: Simulator, ctl: spb.SimulatorServiceStub, api: pb.WorkspacesServiceStub
) -> None:
    await api.create_and_start_workspace(
        pb.CreateAndStartWorkspaceRequest(context_url=REPO, idempotency_token="tok-42")
    )
    await api.list_workspaces(pb.ListWorkspacesRequest())
    rpcs = [e for e in await read_all(ctl) if e.rpc is not None]
    got = [(e.rpc.method.rsplit("/", 1)[1], e.rpc.caller, e.rpc.idempotency_token, e.session)
           for e in rpcs if e.rpc is not None]  # fmt: skip
    assert got == [
        ("CreateAndStartWorkspace", "alice", "tok-42", "default"),
        ("ListWorkspaces", "alice", "", "default"),
    ]
    lines = [json.loads(line) for line in sim.journal.to_jsonl().splitlines()]
    assert [(line.get("caller"), line.get("idempotency_token")) for line in lines] == [
        (None, None),  # the IMAGEBUILD transition
        ("alice", "tok-42"),
        ("alice", ""),
    ]


async def test_reset_keeps_the_journal_unless_asked_to_clear_it(
    sim: Simulator, ctl: spb.SimulatorServiceStub, api: pb.WorkspacesServiceStub
) -> None:
    await create(api)
    await ctl.reset(spb.ResetRequest())
    kept = await read_all(ctl)
    assert [e.seq for e in kept] == [1, 2, 3]
    assert kept[2].rpc is not None and kept[2].rpc.method.endswith("/Reset")
    await ctl.reset(spb.ResetRequest(clear_journal=True))
    cleared = await read_all(ctl)
    assert [e.seq for e in cleared] == [4]  # only the Reset itself; numbers went on
    assert cleared[0].rpc is not None and cleared[0].rpc.method.endswith("/Reset")
    page = await ctl.read_journal(spb.ReadJournalRequest())
    assert (page.first_seq, page.last_seq) == (4, 4)


# ---------------------------------------------------------------------- waiting


async def test_wait_for_listeners_then_advance_on_a_manual_clock(
    sim: Simulator, ctl: spb.SimulatorServiceStub, api: pb.WorkspacesServiceStub
) -> None:
    wsid = await create(api)
    iid = sim.workspace(wsid).latest_instance_id or ""
    listeners = [
        asyncio.ensure_future(
            collect(api.listen_to_workspace_instance(
                pb.ListenToWorkspaceInstanceRequest(instance_id=iid)))
        )
        for _ in range(2)
    ]  # fmt: skip
    before = sim.now
    seen = await ctl.wait_for(
        spb.WaitForRequest(workspace_id=wsid, listeners=2, timeout=dt.timedelta(seconds=10))
    )
    assert (seen.instance_id, seen.listeners) == (iid, 2)
    assert sim.now == before  # waiting never moves the clock
    sim.run_until_idle("2h")
    for task in listeners:
        statuses = await asyncio.wait_for(task, 10)
        assert statuses[-1].instance_status.phase == pb.WorkspaceInstanceStatusPhase.STOPPED


async def test_wait_for_a_phase_sees_one_the_instance_passed_through(
    sim: Simulator, ctl: spb.SimulatorServiceStub, api: pb.WorkspacesServiceStub
) -> None:
    wsid = await create(api)
    waiting = asyncio.ensure_future(
        ctl.wait_for(spb.WaitForRequest(workspace_id=wsid, phase=RUNNING))
    )
    await asyncio.sleep(0.01)
    assert not waiting.done()
    sim.run_until_idle("2h")  # through RUNNING to STOPPED (the inactivity timeout) at once
    seen = await asyncio.wait_for(waiting, 10)
    assert Phase(seen.phase.value) is Phase.STOPPED


async def test_wait_for_times_out_in_real_time_saying_what_it_saw(
    sim: Simulator, ctl: spb.SimulatorServiceStub, api: pb.WorkspacesServiceStub
) -> None:
    wsid = await create(api)
    iid = sim.workspace(wsid).latest_instance_id
    with pytest.raises(GRPCError) as info:
        await ctl.wait_for(
            spb.WaitForRequest(
                instance_id=iid or "", listeners=1, timeout=dt.timedelta(milliseconds=50)
            )
        )
    assert (info.value.status, info.value.message) == (
        Status.DEADLINE_EXCEEDED,
        f"waited 0.05 s for 1 listener(s) on instance {iid}; it has 0 listener(s) and is"
        " IMAGEBUILD",
    )
    with pytest.raises(GRPCError) as bad:
        await ctl.wait_for(spb.WaitForRequest(listeners=1))
    assert (bad.value.status, bad.value.message) == (
        Status.INVALID_ARGUMENT,
        "WaitFor needs an instance_id or a workspace_id",
    )
