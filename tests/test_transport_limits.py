"""Transport limits, each tested as the attack it stops (issue 12).

Servers listen on 127.0.0.1, port 0; every loop is bounded; limits are set small so the attacks
stay small. Memory is asserted only with gross bounds (figures: benchmarks/bench_abuse.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import struct
import tracemalloc
import zlib
from collections.abc import AsyncIterator

import aiohttp
import h2.settings
import pytest
from grpc_helpers import ALICE, BOB, REPO, active_instance_id, collect, create, settle, stub_for
from grpclib.client import Channel
from grpclib.const import Status
from grpclib.exceptions import GRPCError
from h2.errors import ErrorCodes
from h2_attacker import Attacker, frame, grpc_headers

from simulator import Simulator
from simulator._proto.gitpod import v1 as pb
from simulator._proto.gitpod.simulator import v1 as spb
from simulator.core import ids
from simulator.core.quotas import Quotas
from simulator.server.limits import Limits, parse_size
from simulator.server.runtime import bound_port

ADMIN = "adm"
KIB = 1024
HEALTH_CHECK = "/grpc.health.v1.Health/Check"
GET_WORKSPACE = "/gitpod.v1.WorkspacesService/GetWorkspace"
LISTEN = "/gitpod.v1.WorkspacesService/ListenToWorkspaceInstance"


def _sim(**limits: float) -> Simulator:
    return Simulator(
        seed=3,
        clock="autojump",
        users={"alice": ALICE, "bob": BOB},
        admin_token=ADMIN,
        server_limits=Limits(**limits),  # type: ignore[arg-type]
    )


@contextlib.asynccontextmanager
async def _grpc(sim: Simulator) -> AsyncIterator[int]:
    async with sim.serve("127.0.0.1", 0) as server:
        yield bound_port(server)


async def _healthy(port: int) -> None:
    """A fresh client on a fresh connection is served."""
    channel = Channel("127.0.0.1", port)
    try:
        api = stub_for(channel, ALICE)
        reply = await asyncio.wait_for(api.list_workspaces(pb.ListWorkspacesRequest()), 5)
        assert reply.result == []
    finally:
        channel.close()


# ---------------------------------------------------------------------- request size


async def test_an_oversized_request_is_refused_before_it_is_read() -> None:
    sim = _sim(max_request_bytes=64 * KIB)
    async with _grpc(sim) as port:
        channel = Channel("127.0.0.1", port)
        try:
            api = stub_for(channel, ALICE)
            with pytest.raises(GRPCError) as err:
                await api.get_workspace(pb.GetWorkspaceRequest(workspace_id="x" * 200_000))
            assert err.value.status is Status.RESOURCE_EXHAUSTED
            assert err.value.message == (
                "request message is 200004 bytes, over the limit of 64 KiB"
                " (serve --max-request-size)"
            )
            # The same connection goes on serving, and a request just under the limit is read.
            with pytest.raises(GRPCError) as err:
                await api.get_workspace(pb.GetWorkspaceRequest(workspace_id="x" * 60_000))
            assert err.value.status is Status.INVALID_ARGUMENT
            assert (err.value.message or "").startswith("invalid workspace id")
        finally:
            channel.close()


async def test_a_request_over_the_default_4_mib_is_refused() -> None:
    sim = _sim()
    async with _grpc(sim) as port:
        channel = Channel("127.0.0.1", port)
        try:
            with pytest.raises(GRPCError) as err:
                await stub_for(channel, None).get_workspace(
                    pb.GetWorkspaceRequest(workspace_id="x" * (4 * 1024 * 1024 + 1))
                )
            assert err.value.status is Status.RESOURCE_EXHAUSTED
            assert "over the limit of 4 MiB" in (err.value.message or "")
        finally:
            channel.close()
        await _healthy(port)


async def test_a_compressed_request_is_unimplemented_not_inflated() -> None:
    sim = _sim()
    async with _grpc(sim) as port:
        attacker = await Attacker.connect(port)
        bomb = gzip.compress(b"\0" * (8 * 1024 * 1024))
        body = struct.pack(">?I", True, len(bomb)) + bomb
        headers = [*grpc_headers(HEALTH_CHECK), (b"grpc-encoding", b"gzip")]
        stream = attacker.open(headers, body)
        await attacker.flush()
        result = await attacker.until(stream)
        assert result.grpc_status == Status.UNIMPLEMENTED.value
        attacker.close()


async def test_many_oversized_calls_keep_nothing() -> None:
    sim = _sim(max_request_bytes=16 * KIB)
    payload = pb.GetWorkspaceRequest(workspace_id="y" * (256 * KIB))
    async with _grpc(sim) as port:
        channel = Channel("127.0.0.1", port)
        api = stub_for(channel, None)
        try:
            await _refused(api, payload)  # warm up
            tracemalloc.start()
            try:
                baseline = tracemalloc.get_traced_memory()[0]
                for _ in range(40):
                    await _refused(api, payload)
                grown = tracemalloc.get_traced_memory()[0] - baseline
            finally:
                tracemalloc.stop()
        finally:
            channel.close()
    # 40 x 256 KiB = 10 MiB was sent; a server that kept it would grow by that much.
    assert grown < 2 * 1024 * 1024, grown


async def _refused(api: pb.WorkspacesServiceStub, request: pb.GetWorkspaceRequest) -> None:
    with pytest.raises(GRPCError) as err:
        await api.get_workspace(request)
    assert err.value.status is Status.RESOURCE_EXHAUSTED


# ---------------------------------------------------------------------- the HTTP port


@contextlib.asynccontextmanager
async def _http(sim: Simulator) -> AsyncIterator[str]:
    async with sim.serve_http("127.0.0.1", 0) as gateway:
        yield f"http://127.0.0.1:{gateway.port}"


def _bomb(size: int) -> bytes:
    """``size`` zero bytes, gzip-compressed (about a thousandth of the size)."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    chunk = b"\0" * (1024 * 1024)
    out = [packer.compress(chunk) for _ in range(size // len(chunk))]
    return b"".join([*out, packer.flush()])


async def test_a_gzip_bomb_on_the_http_port_is_refused() -> None:
    sim = _sim(max_request_bytes=1024 * KIB)
    bomb = _bomb(64 * 1024 * 1024)
    assert len(bomb) < 100 * KIB
    async with _http(sim) as base, aiohttp.ClientSession() as http:
        url = f"{base}/gitpod.v1.WorkspacesService/ListenToWorkspaceInstance"
        tracemalloc.start()
        try:
            # A compressed Connect envelope (Connect-Content-Encoding: gzip) ...
            body = struct.pack(">BI", 1, len(bomb)) + bomb
            headers = {
                "Content-Type": "application/connect+proto",
                "Connect-Content-Encoding": "gzip",
                "Authorization": f"Bearer {ALICE}",
            }
            async with http.post(url, data=body, headers=headers) as reply:
                raw = await reply.read()
            flags, length = struct.unpack(">BI", raw[:5])
            end = json.loads(raw[5 : 5 + length])
            assert flags == 2
            assert end["error"]["code"] == "resource_exhausted"
            assert "decompresses to over the limit of 1 MiB" in end["error"]["message"]
            # ... and a compressed HTTP body (Content-Encoding: gzip).
            headers = {
                "Content-Type": "application/proto",
                "Content-Encoding": "gzip",
                "Authorization": f"Bearer {ALICE}",
            }
            unary = f"{base}/gitpod.v1.WorkspacesService/GetWorkspace"
            async with http.post(unary, data=bomb, headers=headers) as reply:
                error = await reply.json()
            assert reply.status == 429
            assert error["code"] == "resource_exhausted"
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert peak < 24 * 1024 * 1024, f"peak {peak} bytes for a 64 MiB bomb"


async def test_an_oversized_body_on_the_http_port_is_resource_exhausted() -> None:
    sim = _sim(max_request_bytes=64 * KIB)
    async with _http(sim) as base, aiohttp.ClientSession() as http:
        body = json.dumps({"workspaceId": "z" * 100_000})
        headers = {"Content-Type": "application/json", "Authorization": f"Bearer {ALICE}"}
        url = f"{base}/gitpod.v1.WorkspacesService/GetWorkspace"
        async with http.post(url, data=body, headers=headers) as reply:
            error = await reply.json()
        assert reply.status == 429
        assert error == {
            "code": "resource_exhausted",
            "message": "request body is over the limit of 64 KiB (serve --max-request-size)",
        }


# ---------------------------------------------------------------------- HTTP/2 hygiene


async def test_rapid_reset_keeps_nothing_per_stream() -> None:
    sim = _sim(rapid_reset_streams=0)  # never closed for it: what a reset leaves behind shows
    async with sim.serve("127.0.0.1", 0) as server:
        port = bound_port(server)
        attacker = await Attacker.connect(port)
        tracemalloc.start()
        try:
            baseline = 0
            for round_ in range(6):
                for _ in range(500):
                    stream = attacker.open(grpc_headers(GET_WORKSPACE))
                    attacker.conn.reset_stream(stream)
                    attacker.streams.pop(stream)
                await attacker.flush()
                await asyncio.sleep(0.05)  # let the server take them in
                if round_ == 0:
                    baseline = tracemalloc.get_traced_memory()[0]
            grown = tracemalloc.get_traced_memory()[0] - baseline
        finally:
            tracemalloc.stop()
        assert not attacker.closed
        protocols = list(server._protocols)  # type: ignore[attr-defined]
        assert [len(p.processor.streams) for p in protocols] == [0]
        attacker.close()
        # Nor is a reset stream's request task kept (with its stream and frames) once it is
        # done, also after the connection is gone: grpclib dropped them only now and then.
        handlers = list(server._handlers)  # type: ignore[attr-defined]
        await settle(lambda: all(not h._tasks and not h._cancelled for h in handlers))
    # 2,500 reset streams at the 8 KB each plain grpclib kept would be 20 MB.
    assert grown < 2 * 1024 * 1024, grown


async def test_a_connection_that_resets_streams_abusively_is_closed() -> None:
    sim = _sim(rapid_reset_streams=100)
    async with _grpc(sim) as port:
        attacker = await Attacker.connect(port)
        for _ in range(400):
            if attacker.closed:
                break
            stream = attacker.open(grpc_headers(GET_WORKSPACE))
            attacker.conn.reset_stream(stream)
            await attacker.flush()
        assert await attacker.until_closed()
        assert attacker.goaway is not None
        assert attacker.goaway.error_code == ErrorCodes.ENHANCE_YOUR_CALM
        await _healthy(port)


async def test_idle_connections_are_closed_and_new_clients_still_served() -> None:
    sim = _sim(max_connections=4, idle_timeout=0.3)
    async with _grpc(sim) as port, _http(sim) as base:
        http_port = int(base.rsplit(":", 1)[1])
        idle = [await asyncio.open_connection("127.0.0.1", p) for p in (port, port, http_port)]
        idle.append(await asyncio.open_connection("127.0.0.1", port))
        # At the cap, a new client is served: the connection idle the longest makes room.
        await _healthy(port)
        # The idle ones are closed by the idle timeout (bounded wait, real time).
        for reader, writer in idle:
            with contextlib.suppress(ConnectionError):
                while await asyncio.wait_for(reader.read(4096), 5):
                    pass
            writer.close()
        assert len(sim.connections) == 0
        await _healthy(port)
        async with aiohttp.ClientSession() as http:
            url = f"{base}/grpc.health.v1.Health/Check"
            async with http.post(url, data="{}", headers={"Content-Type": "application/json"}) as r:
                assert (await r.json()) == {"status": "SERVING"}


async def test_at_the_cap_with_every_connection_busy_a_new_one_is_refused() -> None:
    sim = _sim(max_connections=1, idle_timeout=0)
    async with _grpc(sim) as port:
        busy = await Attacker.connect(port)
        busy.open(grpc_headers(HEALTH_CHECK), end=False)  # half-open: headers, no body
        await busy.flush()
        await asyncio.sleep(0.05)
        refused = await Attacker.connect(port)
        assert await refused.until_closed()
        assert refused.goaway is not None
        assert b"--max-connections 1" in (refused.goaway.additional_data or b"")
        busy.close()


async def test_a_non_ascii_header_fails_only_its_own_stream() -> None:
    sim = _sim()
    async with _grpc(sim) as port:
        attacker = await Attacker.connect(port)
        healthy = attacker.open(grpc_headers(HEALTH_CHECK), end=False)  # body later
        await attacker.flush()
        bad_headers = [*grpc_headers(HEALTH_CHECK), (b"x-note", "café".encode())]
        bad = attacker.open(bad_headers, frame(b""))
        attacker.conn.send_data(healthy, frame(b""), end_stream=True)
        await attacker.flush()
        result = await attacker.until(bad)
        assert result.grpc_status == Status.INVALID_ARGUMENT.value
        assert "header 'x-note' has a value that is not ASCII" in result.headers["grpc-message"]
        result = await attacker.until(healthy)
        assert result.grpc_status == Status.OK.value
        again = attacker.open(grpc_headers(HEALTH_CHECK), frame(b""))
        await attacker.flush()
        assert (await attacker.until(again)).grpc_status == Status.OK.value
        assert not attacker.closed
        attacker.close()


async def test_a_stream_over_the_concurrent_stream_cap_is_refused_alone() -> None:
    sim = _sim(max_concurrent_streams=2)
    async with _grpc(sim) as port:
        attacker = await Attacker.connect(port)
        await attacker.pump(0.5)  # the server's SETTINGS (the cap)
        # An attacker ignores the cap it was told: make the client's own check let it through.
        attacker.conn.remote_settings = h2.settings.Settings(
            client=False, initial_values={h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: 100}
        )
        held = [attacker.open(grpc_headers(HEALTH_CHECK), end=False) for _ in range(2)]
        extra = attacker.open(grpc_headers(HEALTH_CHECK), frame(b""))
        await attacker.flush()
        result = await attacker.until(extra)
        assert result.reset and result.error_code == ErrorCodes.REFUSED_STREAM
        for stream_id in held:  # the streams under the cap go on, on the same connection
            attacker.conn.send_data(stream_id, frame(b""), end_stream=True)
        await attacker.flush()
        for stream_id in held:
            assert (await attacker.until(stream_id)).grpc_status == Status.OK.value
        again = attacker.open(grpc_headers(HEALTH_CHECK), frame(b""))
        await attacker.flush()
        assert (await attacker.until(again)).grpc_status == Status.OK.value
        assert not attacker.closed and attacker.goaway is None
        attacker.close()


async def test_an_unknown_frame_type_is_ignored() -> None:
    sim = _sim()
    async with _grpc(sim) as port:
        attacker = await Attacker.connect(port)
        attacker.writer.write(struct.pack(">I", 4)[1:] + bytes([0xEE, 0]) + b"\0\0\0\0" + b"ping")
        stream = attacker.open(grpc_headers(HEALTH_CHECK), frame(b""))
        await attacker.flush()
        assert (await attacker.until(stream)).grpc_status == Status.OK.value
        attacker.close()


# ---------------------------------------------------------------------- shutdown


async def test_every_stream_kind_ends_with_unavailable_at_shutdown() -> None:
    sim = _sim()
    outcomes: dict[str, Status | None] = {}
    async with sim.serve("127.0.0.1", 0) as server:
        port = bound_port(server)
        channel = Channel("127.0.0.1", port)
        api = stub_for(channel, ALICE)
        wsid = await create(api, REPO)
        inst = await api.get_active_workspace_instance(
            pb.GetActiveWorkspaceInstanceRequest(workspace_id=wsid)
        )
        assert inst.instance is not None
        ctl = spb.SimulatorServiceStub(channel, metadata={"authorization": f"Bearer {ADMIN}"})
        await ctl.set_clock(spb.SetClockRequest(mode=spb.ClockMode.MANUAL))

        async def follow(name: str, stream: AsyncIterator[object]) -> None:
            try:
                async for _ in stream:
                    pass
                outcomes[name] = Status.OK
            except GRPCError as exc:
                outcomes[name] = exc.status
            except Exception:
                outcomes[name] = None  # a dropped connection

        listen = pb.ListenToWorkspaceInstanceRequest(instance_id=inst.instance.instance_id)
        journal = ctl.follow_journal(spb.FollowJournalRequest())
        tasks = [
            asyncio.ensure_future(follow("journal", journal)),
            asyncio.ensure_future(follow("listen", api.listen_to_workspace_instance(listen))),
        ]
        # Both streams are in: the journal has its follower, the listener its subscription.
        await settle(
            lambda: sim.journal.followed and sim.hub.subscription_count() == 1, rounds=100_000
        )
    await asyncio.wait_for(asyncio.gather(*tasks), 5)
    channel.close()
    assert outcomes == {"journal": Status.UNAVAILABLE, "listen": Status.UNAVAILABLE}


async def test_follow_journal_on_the_http_port_ends_with_unavailable_at_shutdown() -> None:
    sim = _sim()
    body = struct.pack(">BI", 0, 0)
    headers = {"Content-Type": "application/connect+proto", "Authorization": f"Bearer {ADMIN}"}
    async with aiohttp.ClientSession() as http:
        async with sim.serve_http("127.0.0.1", 0) as gateway:
            base = f"http://127.0.0.1:{gateway.port}"
            url = f"{base}/gitpod.simulator.v1.SimulatorService/FollowJournal"

            async def follow() -> bytes:
                async with http.post(url, data=body, headers=headers) as reply:
                    return await reply.read()

            task = asyncio.ensure_future(follow())
            # The stream is open and waits for journal entries.
            await settle(lambda: sim.journal.followed, rounds=100_000)
        raw = await asyncio.wait_for(task, 5)
    envelopes = []
    while raw:
        flags, length = struct.unpack(">BI", raw[:5])
        envelopes.append((flags, raw[5 : 5 + length]))
        raw = raw[5 + length :]
    flags, last = envelopes[-1]
    assert flags == 2
    assert json.loads(last)["error"] == {
        "code": "unavailable",
        "message": "gitpod-sim is shutting down",
    }


def test_sizes_parse_as_documented() -> None:
    assert parse_size("4MiB") == 4 * 1024 * 1024
    assert parse_size("512 KiB") == 512 * 1024
    assert parse_size("1000") == 1000
    with pytest.raises(ValueError, match="not a size"):
        parse_size("lots")


async def test_serve_flags_set_the_limits_and_sigterm_ends_follow_journal() -> None:
    from server_process import ServerProcess

    server = ServerProcess(
        "--clock", "autojump", "--user", f"alice={ALICE}", "--admin-token", ADMIN,
        "--max-request-size", "1KiB", "--idle-timeout", "0", "--max-workspaces-per-user", "1",
    )  # fmt: skip
    try:
        host, port = server.address.rsplit(":", 1)
        channel = Channel(host, int(port))
        with pytest.raises(GRPCError) as err:
            await stub_for(channel, ALICE).get_workspace(
                pb.GetWorkspaceRequest(workspace_id="w" * 2000)
            )
        assert err.value.status is Status.RESOURCE_EXHAUSTED
        assert "over the limit of 1 KiB (serve --max-request-size)" in (err.value.message or "")
        await create(stub_for(channel, ALICE), REPO)
        with pytest.raises(GRPCError) as err:
            await create(stub_for(channel, ALICE), REPO)
        assert err.value.status is Status.RESOURCE_EXHAUSTED
        assert "(serve --max-workspaces-per-user 1)" in (err.value.message or "")
        ctl = spb.SimulatorServiceStub(channel, metadata={"authorization": f"Bearer {ADMIN}"})
        seen: list[object] = []

        async def follow() -> None:
            async for entry in ctl.follow_journal(spb.FollowJournalRequest(from_seq=1)):
                seen.append(entry)

        task = asyncio.ensure_future(follow())
        for _ in range(200):  # the stream is open once the journal's first entry arrived
            if seen:
                break
            await asyncio.sleep(0.02)
        assert seen
        assert await asyncio.to_thread(server.stop) == 0
        with pytest.raises(GRPCError) as err:
            await asyncio.wait_for(task, 10)
        assert err.value.status is Status.UNAVAILABLE
        assert err.value.message == "gitpod-sim is shutting down"
        channel.close()
    finally:
        server.close()


# ---------------------------------------------------------------------- the journal


async def test_refused_calls_keep_nothing_but_a_short_journal_line() -> None:
    sim = _sim()
    request = pb.GetWorkspaceRequest(workspace_id="r" * (64 * KIB))
    async with sim.channel() as channel:
        anonymous = stub_for(channel, "not-a-token")
        for _ in range(50):
            with pytest.raises(GRPCError) as err:
                await anonymous.get_workspace(request)
            assert err.value.status is Status.UNAUTHENTICATED
        with pytest.raises(GRPCError):
            await stub_for(channel, ALICE).get_workspace(request)
    entries = [e for e in sim.journal if getattr(e, "method", "").endswith("GetWorkspace")]
    assert len(entries) == 51
    assert {e.request for e in entries[:50]} == {"-"}  # type: ignore[union-attr]
    assert sim.journal.bytes < 51 * 1024, sim.journal.bytes
    kept = entries[-1].request  # type: ignore[union-attr]
    assert len(kept) == 200 and kept.endswith("…")  # a large request: its clipped summary


def test_the_journal_is_bounded_in_bytes_as_well_as_entries() -> None:
    from simulator.server.journal import Journal

    journal = Journal(max_entries=10_000, max_bytes=50_000)
    long_message = "m" * 10_000
    for i in range(1000):
        journal.record_rpc(i, GET_WORKSPACE, "alice", None, "NOT_FOUND", long_message)
    assert journal.bytes <= 50_000
    assert 50 < len(journal) < 1000
    assert journal.next_seq == 1001  # numbering goes on: a reader can tell what it missed
    newest = journal.read(1000, 1)[0]
    assert len(newest.message) == 300  # type: ignore[union-attr]


# ---------------------------------------------------------------------- the autojump clock


async def test_half_open_and_non_reading_streams_do_not_hold_the_clock() -> None:
    """One anonymous stream that never sends its body and one listener that takes nothing
    (a 1-byte window): another user's watched lifecycle still reaches RUNNING at once."""
    sim = _sim()
    async with _grpc(sim) as port:
        channel = Channel("127.0.0.1", port)
        try:
            bob = stub_for(channel, BOB)
            bob_ws = await create(bob, REPO)
            bob_inst = await bob.get_active_workspace_instance(
                pb.GetActiveWorkspaceInstanceRequest(workspace_id=bob_ws)
            )
            assert bob_inst.instance is not None
            half_open = await Attacker.connect(port)
            half_open.open(grpc_headers(GET_WORKSPACE), end=False)  # headers, never a body
            await half_open.flush()
            stuck = await Attacker.connect(port, window=1)
            listen = pb.ListenToWorkspaceInstanceRequest(instance_id=bob_inst.instance.instance_id)
            stuck.open(grpc_headers(LISTEN, BOB), frame(bytes(listen)))
            await stuck.flush()
            # The non-reading listener is in: the server holds its subscription.
            await settle(lambda: sim.hub.subscription_count() == 1, rounds=100_000)

            alice = stub_for(channel, ALICE)
            loop = asyncio.get_running_loop()
            start = loop.time()
            wsid = await create(alice, "https://github.com/gitpod-io/website")
            inst = await alice.get_active_workspace_instance(
                pb.GetActiveWorkspaceInstanceRequest(workspace_id=wsid)
            )
            assert inst.instance is not None
            request = pb.ListenToWorkspaceInstanceRequest(instance_id=inst.instance.instance_id)
            phases = []
            async with contextlib.aclosing(alice.listen_to_workspace_instance(request)) as updates:
                async for update in updates:
                    assert update.instance_status is not None
                    phases.append(update.instance_status.phase)
                    if update.instance_status.phase == pb.WorkspaceInstanceStatusPhase.RUNNING:
                        break
            took = loop.time() - start
            assert phases[-1] == pb.WorkspaceInstanceStatusPhase.RUNNING
            assert took < 2.0, f"RUNNING after {took:.2f} s of real time"  # about 0.05 s idle
            half_open.close()
            stuck.close()
        finally:
            channel.close()


async def test_a_listener_that_takes_nothing_is_ended_with_resource_exhausted() -> None:
    sim = _sim(stall_timeout=0.2)
    async with _grpc(sim) as port:
        channel = Channel("127.0.0.1", port)
        try:
            bob = stub_for(channel, BOB)
            wsid = await create(bob, REPO)
            inst = await bob.get_active_workspace_instance(
                pb.GetActiveWorkspaceInstanceRequest(workspace_id=wsid)
            )
            assert inst.instance is not None
            stuck = await Attacker.connect(port, window=1, ack=False)
            listen = pb.ListenToWorkspaceInstanceRequest(instance_id=inst.instance.instance_id)
            stream = stuck.open(grpc_headers(LISTEN, BOB), frame(bytes(listen)))
            await stuck.flush()
            result = await stuck.until(stream)
            assert result.grpc_status == Status.RESOURCE_EXHAUSTED.value
            assert "the client took no message for 0.2 s (serve --stall-timeout)" in (
                result.headers["grpc-message"].replace("%20", " ")
            )
            stuck.close()
        finally:
            channel.close()
    assert sim.activity.busy == 0


# ---------------------------------------------------------------------- revoked access


async def test_unsharing_ends_another_users_listen_stream() -> None:
    sim = _sim()
    async with _grpc(sim) as port:
        channel = Channel("127.0.0.1", port)
        try:
            alice, bob = stub_for(channel, ALICE), stub_for(channel, BOB)
            ctl = spb.SimulatorServiceStub(channel, metadata={"authorization": f"Bearer {ADMIN}"})
            await ctl.set_clock(spb.SetClockRequest(mode=spb.ClockMode.MANUAL))
            wsid = await create(alice, REPO)
            sim.share(wsid)
            inst = await bob.get_active_workspace_instance(
                pb.GetActiveWorkspaceInstanceRequest(workspace_id=wsid)
            )
            assert inst.instance is not None
            request = pb.ListenToWorkspaceInstanceRequest(instance_id=inst.instance.instance_id)
            seen: list[object] = []

            async def watch(api: pb.WorkspacesServiceStub) -> Status:
                try:
                    async for update in api.listen_to_workspace_instance(request):
                        seen.append(update)
                except GRPCError as exc:
                    assert exc.message == (
                        f"workspace instance {inst.instance.instance_id} does not exist"  # type: ignore[union-attr]
                    )
                    return exc.status
                return Status.OK

            viewer = asyncio.ensure_future(watch(bob))
            owner = asyncio.ensure_future(watch(alice))
            for _ in range(200):
                if len(seen) >= 2:
                    break
                await asyncio.sleep(0.01)
            sim.share(wsid, False)  # the viewer may no longer read: their stream ends
            assert await asyncio.wait_for(viewer, 5) is Status.NOT_FOUND
            assert not owner.done()  # the owner's goes on
            sim.run_until_idle("10m")
            sim.engine.stop_workspace(sim.engine.users["alice"], wsid)
            sim.run_until_idle()
            assert await asyncio.wait_for(owner, 5) is Status.OK
        finally:
            channel.close()


async def test_stopping_and_resetting_end_every_viewers_streams() -> None:
    """A viewer of a shared workspace may read it stopped (their streams end as the owner's do:
    the listen stream after STOPPED, the log stream with the build); a reset ends every stream,
    the owner's too, with ABORTED (the instance no longer exists)."""
    sim = _quota_sim()  # a manual clock
    async with sim.channel() as channel:
        alice, bob = stub_for(channel, ALICE), stub_for(channel, BOB)

        async def ends(stream: object) -> tuple[Status, str]:
            try:
                await collect(stream)
            except GRPCError as exc:
                return exc.status, exc.message or ""
            return Status.OK, ""

        wsid = await create(alice, REPO)  # the first of its repository: an image build
        sim.share(wsid)
        iid = await active_instance_id(bob, wsid)
        tasks = [
            asyncio.ensure_future(ends(api.listen_to_workspace_instance(
                pb.ListenToWorkspaceInstanceRequest(instance_id=iid))))
            for api in (bob, alice)
        ] + [
            asyncio.ensure_future(ends(bob.listen_to_image_build_logs(
                pb.ListenToImageBuildLogsRequest(instance_id=iid))))
        ]  # fmt: skip
        await settle(lambda: sim.activity.waiting == 3)
        sim.engine.stop_workspace(sim.engine.users["alice"], wsid)
        sim.run_until_idle()
        assert [await asyncio.wait_for(t, 5) for t in tasks] == [(Status.OK, "")] * 3
        # A new instance, then a reset while everyone follows it.
        await alice.start_workspace(pb.StartWorkspaceRequest(workspace_id=wsid))
        iid = await active_instance_id(bob, wsid)
        tasks = [
            asyncio.ensure_future(ends(api.listen_to_workspace_instance(
                pb.ListenToWorkspaceInstanceRequest(instance_id=iid))))
            for api in (bob, alice)
        ]  # fmt: skip
        await settle(lambda: sim.activity.waiting == 2)
        sim.reset()
        ended = [await asyncio.wait_for(t, 5) for t in tasks]
        assert ended == [(Status.ABORTED, "the simulator was reset")] * 2
        with pytest.raises(GRPCError) as err:  # and what a unary call answers now
            await bob.get_active_workspace_instance(
                pb.GetActiveWorkspaceInstanceRequest(workspace_id=wsid)
            )
        assert err.value.status is Status.NOT_FOUND


async def test_credentials_in_a_context_url_are_never_stored_or_echoed() -> None:
    sim = _sim()
    async with sim.channel() as channel:
        alice, bob = stub_for(channel, ALICE), stub_for(channel, BOB)
        wsid = await create(alice, "https://alice:hunter2@github.com/gitpod-io/gitpod")
        sim.share(wsid)
        for api in (alice, bob):  # the owner, and a viewer of the shared workspace
            ws = (await api.get_workspace(pb.GetWorkspaceRequest(workspace_id=wsid))).result
            assert ws is not None and ws.context is not None
            assert ws.context.context_url == "https://github.com/gitpod-io/gitpod"
        with pytest.raises(GRPCError) as err:
            await create(alice, "https://alice:hunter2@github.com/only-owner")
        assert "hunter2" not in (err.value.message or "")
    assert "hunter2" not in sim.journal.to_jsonl()


# ---------------------------------------------------------------------- secrets per user


async def test_two_users_owner_tokens_are_independent() -> None:
    """The attack: alice reads her own owner tokens to predict bob's. They came from one seeded
    stream that all users drew from in turn; now each user's come from a key of their own."""
    sim = _sim()
    tokens_stream = sim.engine.random.tokens.getstate()
    async with sim.channel() as channel:
        alice, bob = stub_for(channel, ALICE), stub_for(channel, BOB)
        mine = []
        for n in range(4):
            wsid = await create(alice, f"{REPO}/tree/b{n}")
            mine.append(await alice.get_owner_token(pb.GetOwnerTokenRequest(workspace_id=wsid)))
        theirs_ws = await create(bob, REPO)
        theirs = (await bob.get_owner_token(pb.GetOwnerTokenRequest(workspace_id=theirs_ws))).token
    assert sim.engine.random.tokens.getstate() == tokens_stream  # no stream shared by users
    bob_instance = sim.engine.workspaces[theirs_ws].latest_instance_id
    assert bob_instance is not None
    # Bob's token is his key's (seed and user), not what alice's own stream gives next.
    assert theirs == ids.owner_token(ids.user_key(3, "bob"), bob_instance)
    assert theirs != ids.owner_token(ids.user_key(3, "alice"), bob_instance)
    assert len({t.token for t in mine} | {theirs}) == 5
    # Still one world per seed: the same calls give the same tokens.
    again = _sim()
    user = again.engine.users["bob"]
    ws = again.engine.create_workspace(user, context_url=REPO)
    assert again.engine.owner_token(user, ws.id) == ids.owner_token(
        ids.user_key(3, "bob"), again.engine.instances[ws.latest_instance_id or ""].id
    )


# ---------------------------------------------------------------------- per-user quotas


def _quota_sim(**quotas: int) -> Simulator:
    return Simulator(
        seed=3,
        users={"alice": ALICE, "bob": BOB},
        admin_token=ADMIN,
        server_limits=Limits(quotas=Quotas(**quotas)),
    )


async def test_a_user_at_the_workspace_quota_is_refused_and_others_are_not() -> None:
    sim = _quota_sim(workspaces=3)
    async with sim.channel() as channel:
        alice, bob = stub_for(channel, ALICE), stub_for(channel, BOB)
        for n in range(3):
            await create(alice, f"{REPO}/tree/b{n}")
        with pytest.raises(GRPCError) as err:
            await create(alice, REPO)
        assert err.value.status is Status.RESOURCE_EXHAUSTED
        assert err.value.message == (
            "workspace quota reached: user 'alice' has 3 workspaces, the most one user may have"
            " (serve --max-workspaces-per-user 3)"
        )
        await create(bob, REPO)  # a quota is per user
    assert len(sim.engine.workspaces) == 4
    sim.reset()  # a reset keeps the server's quotas
    assert sim.engine.quotas.workspaces == 3


async def test_a_user_at_the_idempotency_quota_is_refused_before_anything_is_done() -> None:
    sim = _quota_sim(idempotency_records=2)
    async with sim.channel() as channel:
        alice, bob = stub_for(channel, ALICE), stub_for(channel, BOB)

        async def create_with(api: pb.WorkspacesServiceStub, token: str) -> str:
            request = pb.CreateAndStartWorkspaceRequest(context_url=REPO, idempotency_token=token)
            return str((await api.create_and_start_workspace(request)).workspace_id)

        first = await create_with(alice, "t1")
        await create_with(alice, "t2")
        with pytest.raises(GRPCError) as err:
            await create_with(alice, "t3")
        assert err.value.status is Status.RESOURCE_EXHAUSTED
        assert "(serve --max-idempotency-records-per-user 2)" in (err.value.message or "")
        assert len(sim.engine.workspaces) == 2  # the refused call created nothing
        assert await create_with(alice, "t1") == first  # a retry still replays
        await create(alice, REPO)  # a call without a token is still served
        await create_with(bob, "t3")  # and bob holds his own records


async def test_one_user_cannot_evict_anothers_page_tokens() -> None:
    """The attack: bob opens listing after listing to push alice's page token out mid-listing."""
    sim = _quota_sim(page_tokens=2)
    async with sim.channel() as channel:
        alice, bob = stub_for(channel, ALICE), stub_for(channel, BOB)
        for n in range(3):
            await create(alice, f"{REPO}/tree/a{n}")
            await create(bob, f"{REPO}/tree/b{n}")

        def first_page() -> pb.ListWorkspacesRequest:
            return pb.ListWorkspacesRequest(pagination=pb.Pagination(page_size=1))

        def next_page(token: str) -> pb.ListWorkspacesRequest:
            return pb.ListWorkspacesRequest(pagination=pb.Pagination(page_size=1, page_token=token))

        page = await alice.list_workspaces(first_page())
        seen = [page.result[0].result.workspace_id]  # type: ignore[union-attr]
        bobs = [(await bob.list_workspaces(first_page())).next_page_token for _ in range(50)]
        while page.next_page_token:
            page = await alice.list_workspaces(next_page(page.next_page_token))
            seen.append(page.result[0].result.workspace_id)  # type: ignore[union-attr]
        assert sorted(seen) == sorted(
            ws.id for ws in sim.engine.workspaces.values() if ws.owner_id == "alice"
        )
        # Bob's own oldest tokens went (he keeps 2), with a message that says why.
        with pytest.raises(GRPCError) as err:
            await bob.list_workspaces(next_page(bobs[0]))
        assert err.value.status is Status.INVALID_ARGUMENT
        assert "each caller keeps their 2 most recently used page tokens" in (
            err.value.message or ""
        )
        await bob.list_workspaces(next_page(bobs[-1]))
    assert sim.engine.cursors.held_by("bob") == 2
