"""Sessions (issue 15): many isolated worlds, each with its own clock, on one server.

A session is chosen per call by the ``x-gitpod-sim-session`` metadata key; no key is the session
``default``. Everything a world holds (engine, seed, clock, users and tokens, plans, faults,
journal, paging cursors, idempotency records) is the session's own. Codes and messages are exact.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import gc
import json
import weakref
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from grpc_helpers import ALICE, REPO, active_instance_id, collect, create, drive, settle
from grpclib.client import Channel
from grpclib.const import Status
from grpclib.exceptions import GRPCError

from simulator import Phase, SimServer, Simulator, bound_port
from simulator._proto.gitpod import v1 as pb
from simulator._proto.gitpod.simulator import v1 as spb
from simulator.core.errors import NotFound
from simulator.core.faults import RpcError, RpcLatency, Target, TargetKind
from simulator.core.plan import Fixed, LifecyclePlan
from simulator.core.simtime import SECOND
from simulator.server.host import SESSION_KEY, check_session_name, session_of

ADMIN = "admin-secret"
LIST = "/gitpod.v1.WorkspacesService/ListWorkspaces"
USERS = {"alice": ALICE}


def new_host(**kwargs: Any) -> SimServer:
    return SimServer(Simulator(seed=5, users=USERS, admin_token=ADMIN), **kwargs)


def api(channel: Channel, session: str | None, token: str = ALICE) -> pb.WorkspacesServiceStub:
    metadata = {"authorization": f"Bearer {token}"}
    if session is not None:
        metadata[SESSION_KEY] = session
    return pb.WorkspacesServiceStub(channel, metadata=metadata)


def ctl(channel: Channel, session: str | None = None) -> spb.SimulatorServiceStub:
    metadata = {"authorization": f"Bearer {ADMIN}"}
    if session is not None:
        metadata[SESSION_KEY] = session
    return spb.SimulatorServiceStub(channel, metadata=metadata)


async def expect(code: Status, awaitable: Any, message: str | None = None) -> GRPCError:
    with pytest.raises(GRPCError) as info:
        await awaitable
    assert info.value.status is code, (info.value.status, info.value.message)
    if message is not None:
        assert info.value.message == message
    return info.value


@pytest.fixture
def host() -> SimServer:
    return new_host()


@pytest.fixture
async def channel(host: SimServer) -> AsyncIterator[Channel]:
    async with host.channel() as ch:
        yield ch


# ------------------------------------------------------------------ names and routing


def test_session_names() -> None:
    for good in ("a", "A-1.b_c", "x" * 64, "default"):
        assert check_session_name(good) == good
    for bad in ("", "x" * 65, "a b", "ä", "a/b", "a:b"):
        with pytest.raises(Exception) as info:
            check_session_name(bad)
        assert getattr(info.value, "code", None) == "INVALID_ARGUMENT"
        assert "expected 1-64 characters of [A-Za-z0-9._-]" in str(info.value)
    assert session_of(None) == "default"
    assert session_of({}) == "default"
    assert session_of({SESSION_KEY: "t1"}) == "t1"


async def test_no_key_is_the_default_session(host: SimServer, channel: Channel) -> None:
    ws = await create(api(channel, None))
    assert ws in host.default.engine.workspaces
    got = await api(channel, "default").get_workspace(pb.GetWorkspaceRequest(workspace_id=ws))
    assert got.result.workspace_id == ws


async def test_unknown_and_invalid_sessions(channel: Channel) -> None:
    request = pb.ListWorkspacesRequest()
    await expect(
        Status.NOT_FOUND,
        api(channel, "nope").list_workspaces(request),
        'session "nope" does not exist',
    )
    await expect(
        Status.NOT_FOUND, ctl(channel, "nope").get_clock(spb.GetClockRequest()),
        'session "nope" does not exist',
    )  # fmt: skip
    error = await expect(Status.INVALID_ARGUMENT, api(channel, "a b").list_workspaces(request))
    assert error.message == (
        "invalid session name 'a b': expected 1-64 characters of [A-Za-z0-9._-]"
    )


# ------------------------------------------------------------------ the control plane


async def test_create_list_delete(host: SimServer, channel: Channel) -> None:
    admin = ctl(channel)
    created = await admin.create_session(
        spb.CreateSessionRequest(
            name="t1",
            seed=9,
            clock_mode=spb.ClockMode.AUTOJUMP,
            speed=2.0,
            autojump_grace=dt.timedelta(milliseconds=5),
            start_time=dt.datetime(2024, 1, 2, tzinfo=dt.UTC),
            users=[spb.SessionUser(user_id="bob", token="tok-bob"), spb.SessionUser("carol")],
        )
    )
    session = created.session
    assert (session.name, session.seed, session.users, session.workspaces) == ("t1", 9, 2, 0)
    assert session.clock.mode == spb.ClockMode.AUTOJUMP
    assert session.clock.speed == 2.0
    assert session.clock.autojump_grace == dt.timedelta(milliseconds=5)
    assert session.clock.now == dt.datetime(2024, 1, 2, tzinfo=dt.UTC)
    tokens = {u.user_id: u.token for u in created.users}
    assert tokens["bob"] == "tok-bob"
    assert (
        tokens["carol"]
        == Simulator(seed=9, users={"bob": "tok-bob", "carol": None}).users["carol"].token
    )  # drawn from the session's seed, as a server started with it would
    assert host.session("t1").users["carol"].token == tokens["carol"]

    await expect(
        Status.ALREADY_EXISTS,
        admin.create_session(spb.CreateSessionRequest(name="t1")),
        'session "t1" already exists',
    )
    await expect(
        Status.ALREADY_EXISTS,
        admin.create_session(spb.CreateSessionRequest(name="default")),
        'session "default" already exists',
    )
    await expect(
        Status.INVALID_ARGUMENT, admin.create_session(spb.CreateSessionRequest(name="")),
        "invalid session name '': expected 1-64 characters of [A-Za-z0-9._-]",
    )  # fmt: skip
    await expect(
        Status.INVALID_ARGUMENT,
        admin.create_session(
            spb.CreateSessionRequest(name="t2", users=[spb.SessionUser("eve", ADMIN)])
        ),
        "user 'eve': the admin token cannot be a user's",
    )
    assert "t2" not in host
    two_with_one_token = [spb.SessionUser("eve", "same"), spb.SessionUser("mallory", "same")]
    await expect(
        Status.INVALID_ARGUMENT,
        admin.create_session(spb.CreateSessionRequest(name="t3", users=two_with_one_token)),
        "user 'mallory': another user has the same token",
    )
    assert "t3" not in host

    await create(api(channel, "t1", "tok-bob"))
    listed = await admin.list_sessions(spb.ListSessionsRequest())
    assert [s.name for s in listed.sessions] == ["default", "t1"]
    assert listed.max_sessions == 1000
    t1 = listed.sessions[1]
    assert (t1.users, t1.workspaces, t1.open_streams) == (2, 1, 0)
    assert t1.last_activity is not None

    # the key on a session-management call does not matter: they are the server's
    await ctl(channel, "t1").delete_session(spb.DeleteSessionRequest(name="t1"))
    assert "t1" not in host
    await expect(
        Status.NOT_FOUND,
        admin.delete_session(spb.DeleteSessionRequest(name="t1")),
        'session "t1" does not exist',
    )
    await expect(
        Status.FAILED_PRECONDITION,
        admin.delete_session(spb.DeleteSessionRequest(name="default")),
        'the session "default" cannot be deleted (Reset empties it)',
    )
    await expect(
        Status.NOT_FOUND,
        api(channel, "t1", "tok-bob").list_workspaces(pb.ListWorkspacesRequest()),
        'session "t1" does not exist',
    )
    # the session-management calls are journaled in the default session
    journal = await admin.read_journal(spb.ReadJournalRequest())
    methods = [e.rpc.method.rsplit("/", 1)[-1] for e in journal.entries if e.rpc]
    assert methods[:2] == ["CreateSession", "CreateSession"]
    assert {e.session for e in journal.entries} == {"default"}


async def test_session_calls_need_the_admin_token(channel: Channel) -> None:
    stub = spb.SimulatorServiceStub(channel, metadata={"authorization": f"Bearer {ALICE}"})
    await expect(
        Status.PERMISSION_DENIED,
        stub.create_session(spb.CreateSessionRequest(name="x")),
        "gitpod.simulator.v1.SimulatorService needs the admin token; an API token cannot use it",
    )


async def test_a_lone_simulator_hosts_no_sessions() -> None:
    sim = Simulator(admin_token=ADMIN)
    async with sim.channel() as channel:
        await expect(
            Status.FAILED_PRECONDITION,
            ctl(channel).create_session(spb.CreateSessionRequest(name="x")),
            "this server hosts one world and no sessions (gitpod-sim serve and"
            " simulator.server.host.SimServer host sessions)",
        )


async def test_max_sessions(channel: Channel, host: SimServer) -> None:
    host.max_sessions = 2
    admin = ctl(channel)
    for name in ("a", "b"):
        await admin.create_session(spb.CreateSessionRequest(name=name))
    await expect(
        Status.RESOURCE_EXHAUSTED,
        admin.create_session(spb.CreateSessionRequest(name="c")),
        "the server holds 2 sessions, its limit (serve --max-sessions 2); delete one first",
    )
    await admin.delete_session(spb.DeleteSessionRequest(name="a"))
    await admin.create_session(spb.CreateSessionRequest(name="c"))
    assert len(host) == 2


async def test_idle_ttl_deletes_only_idle_sessions() -> None:
    now = [0.0]
    host = SimServer(
        Simulator(admin_token=ADMIN, wall=lambda: now[0]),
        session_idle_ttl=60,
        wall=lambda: now[0],
    )
    for name in ("used", "idle", "listening"):
        host.create_session(name, users={f"u-{name}": f"tok-{name}"})
    async with host.channel() as channel:
        ws = await create(api(channel, "listening", "tok-listening"))
        inst = await active_instance_id(api(channel, "listening", "tok-listening"), ws)
        stream = api(channel, "listening", "tok-listening").listen_to_workspace_instance(
            pb.ListenToWorkspaceInstanceRequest(instance_id=inst)
        )
        listener = asyncio.ensure_future(collect(stream))
        await settle(lambda: host.session("listening").hub.subscription_count() == 1)
        now[0] = 50.0
        await api(channel, "used", "tok-used").list_workspaces(pb.ListWorkspacesRequest())
        now[0] = 100.0
        assert host.expire_idle() == ["idle"]  # "used" was called 50 s ago; one listens
        assert "idle" not in host and "used" in host
        now[0] = 200.0
        assert host.expire_idle() == ["used"]
        assert "listening" in host
        listener.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await listener


# ------------------------------------------------------------------ isolation


async def _two(host: SimServer) -> tuple[Simulator, Simulator]:
    return (host.create_session("a", seed=3, users=USERS),
            host.create_session("b", seed=3, users=USERS))  # fmt: skip


async def test_the_same_token_in_two_sessions_is_two_users(host: SimServer) -> None:
    a, b = await _two(host)
    async with host.channel() as channel:
        ws = await create(api(channel, "a"))
        await expect(
            Status.NOT_FOUND,
            api(channel, "b").get_workspace(pb.GetWorkspaceRequest(workspace_id=ws)),
            "workspace does not exist",
        )
        listed = await api(channel, "b").list_workspaces(pb.ListWorkspacesRequest())
        assert list(listed.result) == []
        # same seed: the same first id, but in its own world
        assert await create(api(channel, "b")) == ws
        assert len(a.engine.workspaces) == len(b.engine.workspaces) == 1
        assert ws not in host.default.engine.workspaces


async def test_faults_plans_clock_journal_are_per_session(host: SimServer) -> None:
    a, b = await _two(host)
    a.add_fault(RpcError(LIST, "UNAVAILABLE", "down in a"), Target(TargetKind.ANY))
    a.set_plan(LifecyclePlan(durations={Phase.PENDING: Fixed(99 * SECOND)}))
    a.advance("1h")
    async with host.channel() as channel:
        await expect(
            Status.UNAVAILABLE,
            api(channel, "a").list_workspaces(pb.ListWorkspacesRequest()),
            "down in a",
        )
        await api(channel, "b").list_workspaces(pb.ListWorkspacesRequest())
        await api(channel, None).list_workspaces(pb.ListWorkspacesRequest())
        assert b.faults() == [] and host.default.faults() == []
        assert len(a.plans()) == 1 and b.plans() == []
        assert b.now() == host.default.now() == a.now() - 3600 * SECOND
        journal_a = await ctl(channel, "a").read_journal(spb.ReadJournalRequest())
        journal_b = await ctl(channel, "b").read_journal(spb.ReadJournalRequest())
        assert [(e.rpc.code, e.session) for e in journal_a.entries] == [("UNAVAILABLE", "a")]
        assert [(e.rpc.code, e.session) for e in journal_b.entries] == [("OK", "b")]
        # the clock through the control plane: each key its own
        clock_b = await ctl(channel, "b").advance(spb.AdvanceRequest(by=dt.timedelta(minutes=5)))
        assert b.now() == host.default.now() + 300 * SECOND
        assert (
            clock_b.clock.now
            != (await ctl(channel, "a").get_clock(spb.GetClockRequest())).clock.now
        )


async def test_reset_and_import_touch_one_session(host: SimServer) -> None:
    a, b = await _two(host)
    async with host.channel() as channel:
        ws_a = await create(api(channel, "a"))
        ws_b = await create(api(channel, "b"))
        inst_b = await active_instance_id(api(channel, "b"), ws_b)
        stream = api(channel, "b").listen_to_workspace_instance(
            pb.ListenToWorkspaceInstanceRequest(instance_id=inst_b)
        )
        listener = asyncio.ensure_future(collect(stream))
        await settle(lambda: b.hub.subscription_count() == 1)
        exported = await ctl(channel, "b").export_state(spb.ExportStateRequest())
        await ctl(channel, "a").reset(spb.ResetRequest(seed=4))
        assert a.engine.workspaces == {} and a.seed == 4
        assert ws_b in b.engine.workspaces and b.seed == 3
        assert b.hub.subscription_count() == 1 and not listener.done()
        await ctl(channel, "a").import_state(spb.ImportStateRequest(state_json=exported.state_json))
        assert list(a.engine.workspaces) == [ws_b] == [ws_a]  # same seed, same id
        assert not listener.done()
        listener.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await listener


async def test_paging_and_idempotency_records_are_per_session(host: SimServer) -> None:
    a, b = await _two(host)
    async with host.channel() as channel:
        for _ in range(3):
            await create(api(channel, "a"))
        page = await api(channel, "a").list_workspaces(
            pb.ListWorkspacesRequest(pagination=pb.Pagination(page_size=1))
        )
        assert page.next_page_token
        await expect(
            Status.INVALID_ARGUMENT,
            api(channel, "b").list_workspaces(
                pb.ListWorkspacesRequest(
                    pagination=pb.Pagination(page_size=1, page_token=page.next_page_token)
                )
            ),
        )
        request = pb.CreateAndStartWorkspaceRequest(context_url=REPO, idempotency_token="k1")
        first_a = await api(channel, "a").create_and_start_workspace(request)
        again_a = await api(channel, "a").create_and_start_workspace(request)
        first_b = await api(channel, "b").create_and_start_workspace(request)
        assert again_a.workspace_id == first_a.workspace_id
        assert first_b.workspace_id in b.engine.workspaces
        assert len(b.engine.workspaces) == 1 and len(a.engine.workspaces) == 4


# ------------------------------------------------------------------ seed equivalence


async def _play(channel: Channel, sim: Simulator, session: str | None) -> list[bytes]:
    """One scripted run: every answer's bytes, the lifecycle's stream included."""
    stub = api(channel, session)
    out: list[bytes] = []
    created = await stub.create_and_start_workspace(
        pb.CreateAndStartWorkspaceRequest(context_url=REPO)
    )
    out.append(bytes(created))
    active = await stub.get_active_workspace_instance(
        pb.GetActiveWorkspaceInstanceRequest(workspace_id=created.workspace_id)
    )
    out.append(bytes(active))
    stream = stub.listen_to_workspace_instance(
        pb.ListenToWorkspaceInstanceRequest(instance_id=active.instance.instance_id)
    )
    ran = await drive(sim, collect(stream))
    out += [bytes(m) for m in ran]
    out.append(bytes(await stub.get_owner_token(
        pb.GetOwnerTokenRequest(workspace_id=created.workspace_id))))  # fmt: skip
    out.append(bytes(await stub.list_workspaces(pb.ListWorkspacesRequest())))
    return out


async def test_a_session_answers_what_a_fresh_server_with_its_seed_would() -> None:
    plan = LifecyclePlan(durations={Phase.PENDING: Fixed(3 * SECOND)})
    alone = Simulator(seed=11, users={"alice": ALICE, "bob": None}, plan=plan)
    async with alone.channel() as channel:
        expected = await _play(channel, alone, None)
    host = new_host()
    noise = host.create_session("noise", seed=11, users={"alice": ALICE, "bob": None})
    session = host.create_session("s", seed=11, users={"alice": ALICE, "bob": None}, plan=plan)
    assert session.users["bob"].token == alone.users["bob"].token
    async with host.channel() as channel:
        await create(api(channel, "noise"))  # other sessions' calls change nothing here
        await create(api(channel, None))
        noise.advance("1h")
        assert await _play(channel, session, "s") == expected


# ------------------------------------------------------------------ clocks of their own


async def test_a_stuck_session_does_not_stall_another_sessions_autojump(host: SimServer) -> None:
    stuck = host.create_session("stuck", clock="autojump", users=USERS)
    fast = host.create_session("fast", clock="autojump", users=USERS)
    # a call in "stuck" that stays in progress (an hour of real latency): in one world it would
    # hold autojump for everyone
    stuck.add_fault(RpcLatency(LIST, 3600 * SECOND, simulated=False), Target(TargetKind.ANY))
    async with host.channel() as channel:
        hung = asyncio.ensure_future(
            api(channel, "stuck").list_workspaces(pb.ListWorkspacesRequest())
        )
        await settle(lambda: stuck.activity.busy == 1)
        stub = api(channel, "fast")
        ws = await create(stub)
        inst = await active_instance_id(stub, ws)
        messages = await asyncio.wait_for(
            collect(stub.listen_to_workspace_instance(
                pb.ListenToWorkspaceInstanceRequest(instance_id=inst))),
            timeout=60,
        )  # fmt: skip
        phases = [m.instance_status.phase for m in messages]
        # the whole lifecycle, up to the inactivity timeout's stop, on its own clock
        assert pb.WorkspaceInstanceStatusPhase.RUNNING in phases
        assert phases[-1] == pb.WorkspaceInstanceStatusPhase.STOPPED
        assert fast.phase_of(inst) is Phase.STOPPED
        assert stuck.activity.busy == 1 and not hung.done()
        hung.cancel()


async def test_sessions_have_their_own_clock_modes(host: SimServer) -> None:
    manual = host.create_session("manual", users=USERS)
    auto = host.create_session("auto", clock="autojump", users=USERS)
    async with host.channel() as channel:
        assert manual._driver_task is None  # an idle manual session holds no task
        assert auto._driver_task is not None
        stub = api(channel, "auto")
        inst = await active_instance_id(stub, await create(stub))
        await asyncio.wait_for(
            collect(stub.listen_to_workspace_instance(
                pb.ListenToWorkspaceInstanceRequest(instance_id=inst))),
            timeout=60,
        )  # fmt: skip
        assert manual.now() == host.default.now()
        assert auto.now() > manual.now()
        await ctl(channel, "manual").set_clock(spb.SetClockRequest(mode=spb.ClockMode.AUTOJUMP))
        assert manual._driver_task is not None


# ------------------------------------------------------------------ deletion


async def test_delete_ends_streams_with_aborted(host: SimServer) -> None:
    doomed = host.create_session("doomed", users=USERS)
    async with host.channel() as channel:
        stub = api(channel, "doomed")
        inst = await active_instance_id(stub, await create(stub))
        listener = asyncio.ensure_future(collect(stub.listen_to_workspace_instance(
            pb.ListenToWorkspaceInstanceRequest(instance_id=inst))))  # fmt: skip
        follower = asyncio.ensure_future(
            collect(ctl(channel, "doomed").follow_journal(spb.FollowJournalRequest()))
        )
        await settle(lambda: doomed.hub.subscription_count() == 1 and doomed.journal.followed)
        other = await create(api(channel, None))
        await ctl(channel).delete_session(spb.DeleteSessionRequest(name="doomed"))
        for task in (listener, follower):
            await expect(Status.ABORTED, task, 'session "doomed" was deleted')
        assert other in host.default.engine.workspaces


async def test_deleted_sessions_are_freed(host: SimServer) -> None:
    def rss() -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * 4096

    async def churn(n: int) -> list[weakref.ref[Simulator]]:
        refs = []
        for i in range(n):
            sim = host.create_session(f"s{i}", seed=i, users=USERS)
            sim.add_user("bob")
            refs.append(weakref.ref(sim))
            host.delete_session(f"s{i}")
        return refs

    async with host.running():
        await churn(1000)  # warm the allocator
        gc.collect()
        before = rss()
        refs = await churn(1000)
        del refs[1:-1]
        gc.collect()
        await asyncio.sleep(0)
        assert all(r() is None for r in refs)
        assert len(host) == 0
        # a gross bound (1000 leaked sessions would be about 25 MiB); the figure is measured
        # in benchmarks/bench_sessions.py
        assert rss() - before < 12 * 1024 * 1024


# ------------------------------------------------------------------ both ports


async def test_both_ports_route_by_the_session_key(host: SimServer) -> None:
    host.create_session("tcp", seed=1, users={"carol": "tok-carol"})
    async with host.serve("127.0.0.1", 0) as server, host.serve_http("127.0.0.1", 0) as gateway:
        channel = Channel("127.0.0.1", bound_port(server))
        try:
            ws = await create(api(channel, "tcp", "tok-carol"))
            await expect(
                Status.UNAUTHENTICATED,
                api(channel, None, "tok-carol").get_workspace(
                    pb.GetWorkspaceRequest(workspace_id=ws)
                ),
            )
            await expect(
                Status.NOT_FOUND,
                api(channel, "gone").list_workspaces(pb.ListWorkspacesRequest()),
                'session "gone" does not exist',
            )
        finally:
            channel.close()
        url = f"http://127.0.0.1:{gateway.port}/gitpod.v1.WorkspacesService/GetWorkspace"
        body = json.dumps({"workspaceId": ws})
        async with aiohttp.ClientSession() as http:
            headers = {"Authorization": "Bearer tok-carol", "Content-Type": "application/json"}
            async with http.post(
                url, data=body, headers={**headers, "X-Gitpod-Sim-Session": "tcp"}
            ) as r:
                assert r.status == 200
                assert (await r.json())["result"]["workspaceId"] == ws
            async with http.post(
                url, data=body, headers={**headers, "X-Gitpod-Sim-Session": "gone"}
            ) as r:
                assert r.status == 404
                assert (await r.json())["message"] == 'session "gone" does not exist'
            async with http.post(url, data=body, headers=headers) as r:
                assert r.status == 401


def test_pause_goes_to_the_streams_session(host: SimServer) -> None:
    other = host.create_session("other")
    assert host._pause_for([(":path", "/x")]) is host.default.activity
    assert host._pause_for([(SESSION_KEY, "other")]) is other.activity
    assert host._pause_for([(SESSION_KEY, "default")]) is host.default.activity
    assert host._pause_for([(SESSION_KEY, "missing")]) is None


def test_session_lookup_from_python(host: SimServer) -> None:
    with pytest.raises(NotFound):
        host.session("nope")
    assert host.session() is host.default


# ------------------------------------------------------------------ the CLI


def test_ctl_session_commands_against_serve() -> None:
    from click.testing import CliRunner
    from server_process import ServerProcess

    from simulator.ctl import ctl as ctl_command

    server = ServerProcess("--clock", "manual", "--admin-token", ADMIN, "--max-sessions", "1")
    try:
        base = ["--target", server.address, "--admin-token", ADMIN]

        def run(*args: str) -> Any:
            return CliRunner().invoke(ctl_command, [*base, *args])

        made = run("session", "create", "t1", "--seed", "4", "--clock", "autojump",
                   "--user", "alice=tok-a", "--user", "bob")  # fmt: skip
        assert made.exit_code == 0, made.output
        lines = made.output.splitlines()
        assert lines[0] == "session t1 seed 4"
        assert lines[1] == "alice tok-a"
        standalone = Simulator(seed=4, users={"alice": "tok-a", "bob": None})
        assert lines[2] == f"bob {standalone.users['bob'].token}"  # drawn from the seed
        full = run("session", "create", "t2")
        assert full.exit_code == 1
        assert full.output.strip() == (
            "error: RESOURCE_EXHAUSTED: the server holds 1 sessions, its limit"
            " (serve --max-sessions 1); delete one first"
        )
        clock = run("--session", "t1", "clock")
        assert "mode     autojump" in clock.output
        assert "mode     manual" in run("clock").output
        moved = run("--session", "t1", "mode", "manual")
        assert moved.exit_code == 0, moved.output
        run("--session", "t1", "advance", "1h")
        assert "now      2022-06-01T01:00:00Z" in run("--session", "t1", "clock").output
        assert "now      2022-06-01T00:00:00Z" in run("clock").output
        listed = run("session", "list", "--json")
        rows = [json.loads(line) for line in listed.output.splitlines()]
        assert [(r["name"], r["users"], r["clock"]) for r in rows] == [
            ("default", 1, "manual"), ("t1", 2, "manual"),
        ]  # fmt: skip
        missing = run("--session", "nope", "clock")
        assert missing.exit_code == 1
        assert missing.output.strip() == 'error: NOT_FOUND: session "nope" does not exist'
        gone = run("session", "delete", "t1")
        assert gone.output.strip() == "session t1 deleted"
        assert [r["name"] for r in map(json.loads, run("session", "list", "--json")
                                       .output.splitlines())] == ["default"]  # fmt: skip
    finally:
        assert server.stop() == 0, server.stderr()
        server.close()


# ------------------------------------------------------------------ the pytest fixture

pytest_plugins = ["pytester"]

SESSION_TESTS = """
import datetime as dt
import pytest
from simulator._proto.gitpod import v1 as pb
from simulator._proto.gitpod.simulator import v1 as spb

@pytest.mark.parametrize("n", range(4))
async def test_own_world(n, gitpod_session):
    api = gitpod_session.client("alice")
    ids = []
    for _ in range(n + 1):
        made = await api.create_and_start_workspace(
            pb.CreateAndStartWorkspaceRequest(context_url="https://github.com/a/b"))
        ids.append(made.workspace_id)
    listed = await api.list_workspaces(pb.ListWorkspacesRequest())
    assert len(listed.result) == n + 1          # nobody else's workspaces
    by = dt.timedelta(minutes=n + 1)
    moved = await gitpod_session.control().advance(spb.AdvanceRequest(by=by))
    assert moved.clock.now.minute == n + 1       # its own clock
    assert gitpod_session.name.startswith(("gw0-", "gw1-", "main-"))
"""


def test_gitpod_session_under_xdist_against_one_server(pytester: pytest.Pytester) -> None:
    pytest.importorskip("xdist")
    from server_process import ServerProcess

    pytester.makeini(
        "[pytest]\nasyncio_mode = auto\nasyncio_default_fixture_loop_scope = function\n"
    )
    pytester.makepyfile(test_sessions_user=SESSION_TESTS)
    server = ServerProcess("--clock", "manual", "--admin-token", ADMIN)
    try:
        result = pytester.runpytest_subprocess(
            "-p", "no:cacheprovider", "-n", "2", "-s",
            f"--gitpod-target={server.address}", f"--gitpod-admin-token={ADMIN}",
        )  # fmt: skip
        result.assert_outcomes(passed=4)
        channel_host, _, port = server.address.rpartition(":")

        async def remaining() -> list[str]:
            channel = Channel(channel_host, int(port))
            try:
                listed = await ctl(channel).list_sessions(spb.ListSessionsRequest())
                return [s.name for s in listed.sessions]
            finally:
                channel.close()

        assert asyncio.run(remaining()) == ["default"]  # every test's session was deleted
    finally:
        assert server.stop() == 0, server.stderr()
        server.close()


def test_gitpod_session_in_process(pytester: pytest.Pytester) -> None:
    pytester.makeini(
        "[pytest]\nasyncio_mode = auto\nasyncio_default_fixture_loop_scope = function\n"
    )
    pytester.makepyfile(
        test_sessions_user=SESSION_TESTS
        + """
@pytest.mark.gitpod_sim(seed=3, clock="autojump", users={"carol": "c"})
async def test_marker(gitpod_session):
    assert gitpod_session.seed == 3 and set(gitpod_session.tokens) == {"carol"}
    assert gitpod_session.sim.clock.mode.value == "autojump"
"""
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-n", "0")
    result.assert_outcomes(passed=5)


# ------------------------------------------------------------------ scenarios in sessions


def test_two_scenarios_play_at_once_in_two_sessions_of_one_server() -> None:
    import subprocess
    from pathlib import Path

    from server_process import ServerProcess, command

    root = Path(__file__).resolve().parent.parent / "scenarios"
    server = ServerProcess("--clock", "manual", "--admin-token", ADMIN, "--quiet")
    try:
        base = ["--target", server.address, "--admin-token", ADMIN, "--no-live"]
        runs = [
            subprocess.Popen(
                command("scenario", "run", str(root / f"{name}.toml"), *base, "--session", name),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for name in ("10-stop-in-each-phase", "12-two-users-isolated")
        ]
        for proc in runs:
            out, err = proc.communicate(timeout=120)
            assert proc.returncode == 0, out + err
            assert out.startswith("PASS "), out
        host, _, port = server.address.rpartition(":")

        async def state() -> tuple[list[str], int]:
            channel = Channel(host, int(port))
            try:
                listed = await ctl(channel).list_sessions(spb.ListSessionsRequest())
                return [s.name for s in listed.sessions], listed.sessions[0].workspaces
            finally:
                channel.close()

        # both sessions were made for the runs and deleted after; the default one saw nothing
        assert asyncio.run(state()) == (["default"], 0)
    finally:
        assert server.stop() == 0, server.stderr()
        server.close()


# ------------------------------------------------------------------ the contract suite, per session


def test_the_contract_suite_runs_one_example_per_session(pytester: pytest.Pytester) -> None:
    """--gitpod-session-per-example: each example gets a session of its own on the server (its
    own users, clock, workspaces), deleted after it; the default session sees none of it."""
    from server_process import ServerProcess

    server = ServerProcess("--clock", "autojump", "--admin-token", ADMIN, "--quiet")
    try:
        result = pytester.runpytest_subprocess(
            "--pyargs", "simulator.contract", "-p", "no:cacheprovider",
            "--gitpod-target", server.address, "--gitpod-token", "ta", "--gitpod-token2", "tb",
            "--gitpod-admin-token", ADMIN, "--gitpod-session-per-example",
            "--gitpod-examples", "4", "--gitpod-steps", "12",
        )  # fmt: skip
        result.assert_outcomes(passed=1)
        host, _, port = server.address.rpartition(":")

        async def state() -> tuple[list[str], int, int]:
            channel = Channel(host, int(port))
            try:
                listed = await ctl(channel).list_sessions(spb.ListSessionsRequest())
                journal = await ctl(channel).read_journal(spb.ReadJournalRequest())
                rpcs = [e.rpc.method for e in journal.entries if e.rpc is not None]
                made = [m for m in rpcs if m.endswith("/CreateSession")]
                default = listed.sessions[0].workspaces
                return [s.name for s in listed.sessions], default, len(made)
            finally:
                channel.close()

        names, default_workspaces, created = asyncio.run(state())
        assert names == ["default"]  # every example's session was deleted
        assert default_workspaces == 0  # nothing the suite did happened in the default session
        assert created >= 4  # one per example (and one for the control-plane probe)
    finally:
        assert server.stop() == 0, server.stderr()
        server.close()


def test_session_per_example_needs_the_admin_token(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest_subprocess(
        "--pyargs", "simulator.contract", "-p", "no:cacheprovider",
        "--gitpod-target", "127.0.0.1:1", "--gitpod-token", "ta", "--gitpod-session-per-example",
    )  # fmt: skip
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*--gitpod-session-per-example needs --gitpod-admin-token*"])
