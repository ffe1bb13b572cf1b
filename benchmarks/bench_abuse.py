"""The attacks of issue 12 against a real ``gitpod-sim serve`` process, with the server's memory.

    python benchmarks/bench_abuse.py [--root CHECKOUT] [--only NAME,...]

Each attack gets a fresh server (``python -m simulator.cli serve`` from ``--root``, default this
checkout, so an older commit can be measured the same way) and reports the server's resident
memory (VmRSS) growth or peak (VmHWM) from /proc, and what the attacker observed. Loopback only;
every loop is bounded. Not run in CI: the figures go in the report and the README.

The raw attacks speak HTTP/2 through the h2 library (grpclib's client refuses to misbehave); the
honest clients next to them (the victim whose lifecycle must still move, the owner of a listing)
are grpclib clients with this checkout's generated code, which an older server speaks as well.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # the clients' generated code, from this checkout

from grpclib.client import Channel  # noqa: E402
from grpclib.exceptions import GRPCError, StreamTerminatedError  # noqa: E402

from simulator._proto.gitpod import v1 as pb  # noqa: E402
from simulator._proto.gitpod.simulator import v1 as spb  # noqa: E402

TOKEN_A, TOKEN_B, ADMIN = "tok-a", "tok-b", "adm"
MIB = 1024 * 1024
GET = "/gitpod.v1.WorkspacesService/GetWorkspace"
LISTEN = "/gitpod.v1.WorkspacesService/ListenToWorkspaceInstance"


class Server:
    def __init__(self, root: Path, *extra: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "simulator.cli", "serve", "--port", "0", "--quiet",
             "--clock", "autojump", "--admin-token", ADMIN,
             "--user", f"alice={TOKEN_A}", "--user", f"bob={TOKEN_B}", *extra],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=root,
            env={**os.environ, "PYTHONPATH": str(root)},
        )  # fmt: skip
        assert self.proc.stdout is not None
        self.port = self.http_port = 0
        for line in self.proc.stdout:
            if line.startswith("listening on "):
                self.port = int(line.rsplit(":", 1)[1])
                if "--http-port" not in extra:
                    break
            if line.startswith("connect and grpc-web on "):
                self.http_port = int(line.strip().rsplit(":", 1)[1])
                break
        threading.Thread(target=self._drain, daemon=True).start()
        time.sleep(0.5)

    def _drain(self) -> None:
        assert self.proc.stdout is not None
        for _ in self.proc.stdout:
            pass

    def status(self, key: str) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
        raise KeyError(key)

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait(10)

    def api(self, token: str) -> tuple[Channel, pb.WorkspacesServiceStub]:
        channel = Channel("127.0.0.1", self.port)
        return channel, pb.WorkspacesServiceStub(
            channel, metadata={"authorization": f"Bearer {token}"}
        )


class Raw:
    """A blocking HTTP/2 client from the h2 library: does what an attacker does."""

    def __init__(self, port: int, window: int | None = None) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        self.conn.initiate_connection()
        if window is not None:
            self.conn.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: window})
        self.closed = False
        self.ended: dict[int, dict[str, str]] = {}
        self.data: dict[int, int] = {}
        self.goaway: h2.events.ConnectionTerminated | None = None
        self.flush()

    def flush(self) -> None:
        data = self.conn.data_to_send()
        if data and not self.closed:
            try:
                self.sock.sendall(data)
            except OSError:
                self.closed = True

    def open(self, path: str, token: str | None, body: bytes | None, extra=(), end=True) -> int:  # type: ignore[no-untyped-def]
        sid = self.conn.get_next_available_stream_id()
        headers = [
            (":method", "POST"), (":scheme", "http"), (":path", path), (":authority", "x"),
            ("content-type", "application/grpc"), ("te", "trailers"),
        ]  # fmt: skip
        if token:
            headers.append(("authorization", f"Bearer {token}"))
        self.conn.send_headers(sid, [*headers, *extra], end_stream=body is None and end)
        self.flush()
        if body is not None:
            self.send(sid, struct.pack(">?I", False, len(body)) + body)
        return sid

    def send(self, sid: int, data: bytes) -> None:
        """Send ``data`` and end the stream, as the flow-control windows allow; stops when the
        server ends the stream first (e.g. it refused the message from its header)."""
        view, position = memoryview(data), 0
        stalls = 0
        while position < len(data) and not self.closed and sid not in self.ended:
            try:
                window = min(
                    self.conn.local_flow_control_window(sid), self.conn.max_outbound_frame_size
                )
            except h2.exceptions.StreamClosedError:
                return
            if window <= 0:
                stalls += 1
                if stalls > 50:
                    return
                self.pump(0.1)
                continue
            chunk = bytes(view[position : position + window])
            position += len(chunk)
            try:
                self.conn.send_data(sid, chunk, end_stream=position == len(data))
            except h2.exceptions.StreamClosedError:
                return
            self.flush()

    def pump(self, timeout: float, ack: bool = True) -> None:
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(65536)
        except TimeoutError:
            return
        except OSError:
            data = b""
        if not data:
            self.closed = True
            return
        try:
            events = self.conn.receive_data(data)
        except h2.exceptions.ProtocolError:
            self.closed = True
            return
        for ev in events:
            if isinstance(ev, h2.events.TrailersReceived | h2.events.ResponseReceived):
                headers = {bytes(k).decode() if isinstance(k, bytes) else k:
                           bytes(v).decode() if isinstance(v, bytes) else v
                           for k, v in ev.headers or []}  # fmt: skip
                if "grpc-status" in headers:
                    self.ended[ev.stream_id] = headers
            elif isinstance(ev, h2.events.DataReceived):
                self.data[ev.stream_id] = self.data.get(ev.stream_id, 0) + len(ev.data or b"")
                if ack:
                    self.conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            elif isinstance(ev, h2.events.ConnectionTerminated):
                self.goaway = ev
            elif isinstance(ev, h2.events.StreamReset):
                code = ev.error_code
                rst = {"rst": f"RST_STREAM {getattr(code, 'name', code)}"}
                self.ended.setdefault(ev.stream_id, rst)  # after trailers: they said it
        self.flush()

    def wait(self, sid: int, seconds: float = 5.0) -> dict[str, str] | None:
        end = time.monotonic() + seconds
        while sid not in self.ended and not self.closed and time.monotonic() < end:
            self.pump(0.2)
        return self.ended.get(sid)


def _string_field(number: int, text: str) -> bytes:
    data = text.encode()
    tag, length = bytearray([number << 3 | 2]), bytearray()
    n = len(data)
    while True:
        byte, n = n & 0x7F, n >> 7
        length.append(byte | (0x80 if n else 0))
        if not n:
            break
    return bytes(tag + length) + data


@contextmanager
def server(root: Path, *extra: str) -> Iterator[Server]:
    srv = Server(root, *extra)
    try:
        yield srv
    finally:
        srv.stop()


# ---------------------------------------------------------------------- attacks


def refused_calls(root: Path) -> str:
    """300 anonymous 1 MiB calls (UNAUTHENTICATED): what stays in memory afterwards."""
    with server(root) as srv:
        raw = Raw(srv.port)
        body = _string_field(1, "x" * MIB)
        before = srv.status("VmRSS")
        for _ in range(300):
            raw.wait(raw.open(GET, None, body), 10)
        time.sleep(0.5)
        grown = srv.status("VmRSS") - before
        return f"RSS +{grown / MIB:.1f} MiB after 300 x 1 MiB refused calls"


def oversized_calls(root: Path) -> str:
    """30 authenticated 6 MiB calls: refused before they are read, or read and kept?"""
    with server(root) as srv:
        body = _string_field(1, "x" * (6 * MIB))
        before = srv.status("VmRSS")
        codes = set()
        for _ in range(30):
            raw = Raw(srv.port)
            trailers = raw.wait(raw.open(GET, TOKEN_A, body), 10)
            codes.add(None if trailers is None else trailers.get("grpc-status"))
            raw.sock.close()
        time.sleep(0.5)
        grown = srv.status("VmRSS") - before
        statuses = sorted(map(str, codes))
        return f"RSS +{grown / MIB:.1f} MiB after 30 x 6 MiB calls; grpc-status {statuses}"


def rapid_reset(root: Path, *extra: str) -> str:
    """20,000 streams opened and reset at once on one connection, without a token."""
    with server(root, *extra) as srv:
        raw = Raw(srv.port)
        before = srv.status("VmRSS")
        sent = 0
        for _ in range(20_000):
            if raw.closed:
                break
            try:
                sid = raw.open(GET, None, None)
                raw.conn.reset_stream(sid)
            except h2.exceptions.ProtocolError:
                break
            raw.flush()
            sent += 1
            if sent % 200 == 0:
                raw.pump(0.001)
        time.sleep(1.0)
        grown = srv.status("VmRSS") - before
        how = "connection closed" if raw.closed or raw.goaway else "connection still open"
        if raw.goaway is not None:
            how += f" (GOAWAY {raw.goaway.error_code!r})"
        each = grown / max(sent, 1)
        return f"RSS +{grown / MIB:.1f} MiB after {sent} resets ({each:.0f} B each); {how}"


def gzip_bomb(root: Path) -> str:
    """A 0.9 MB gzip Connect envelope that inflates to about 900 MiB, on the HTTP port."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    zeros = b"\0" * MIB
    bomb = b"".join([*(packer.compress(zeros) for _ in range(900)), packer.flush()])
    with server(root, "--http-port", "0") as srv:
        before = srv.status("VmHWM")
        body = struct.pack(">BI", 1, len(bomb)) + bomb
        sock = socket.create_connection(("127.0.0.1", srv.http_port), timeout=60)
        request = (
            f"POST /gitpod.v1.WorkspacesService/ListenToWorkspaceInstance HTTP/1.1\r\n"
            f"Host: x\r\nContent-Type: application/connect+proto\r\n"
            f"Connect-Content-Encoding: gzip\r\nAuthorization: Bearer {TOKEN_A}\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        ).encode()
        sock.sendall(request + body)
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
        peak = srv.status("VmHWM") - before
        code = b"resource_exhausted" in reply
        return (
            f"{len(bomb) / 1e6:.2f} MB bomb: peak RSS +{peak / MIB:.0f} MiB;"
            f" {'resource_exhausted' if code else 'not refused as resource_exhausted'}"
        )


def idle_connections(root: Path) -> str:
    """1,000 idle TCP connections on the gRPC port, then one real client."""
    with server(root) as srv:
        socks = []
        for _ in range(1000):
            try:
                socks.append(socket.create_connection(("127.0.0.1", srv.port), timeout=2))
            except OSError:
                break
        time.sleep(0.5)
        start = time.monotonic()
        try:
            raw = Raw(srv.port)
            trailers = raw.wait(raw.open(GET, TOKEN_A, _string_field(1, "nope")), 5)
            served = trailers is not None
        except OSError:
            served = False
        took = time.monotonic() - start
        time.sleep(1.5)  # a connection closed to make room lingers 1 s after its GOAWAY
        alive = sum(map(_still_open, socks))
        for s in socks:
            s.close()
        return (
            f"{len(socks)} idle connections opened, {alive} still open;"
            f" new client {'served' if served else 'NOT served'} in {took * 1000:.0f} ms"
        )


def _still_open(sock: socket.socket) -> bool:
    """Whether the server still holds the connection (what it sent is read and dropped)."""
    sock.setblocking(False)
    try:
        for _ in range(100):
            if not sock.recv(65536):
                return False
    except BlockingIOError:
        return True
    except OSError:
        return False
    return True


def non_ascii_header(root: Path) -> str:
    """A healthy call and a call with a non-ASCII header value on one connection."""
    with server(root) as srv:
        raw = Raw(srv.port)  # h2 keeps header values as bytes: one can be UTF-8
        headers = [
            (b":method", b"POST"), (b":scheme", b"http"), (b":path", GET.encode()),
            (b":authority", b"x"), (b"content-type", b"application/grpc"), (b"te", b"trailers"),
            (b"authorization", f"Bearer {TOKEN_A}".encode()),
        ]  # fmt: skip
        healthy = raw.conn.get_next_available_stream_id()
        raw.conn.send_headers(healthy, headers)
        bad = raw.conn.get_next_available_stream_id()
        raw.conn.send_headers(bad, [*headers, (b"x-note", "café".encode())])
        body = struct.pack(">?I", False, 6) + _string_field(1, "nope")
        raw.conn.send_data(bad, body, end_stream=True)
        raw.conn.send_data(healthy, body, end_stream=True)
        raw.flush()
        raw.wait(healthy)
        raw.wait(bad, 1)
        outcome = {sid: raw.ended.get(sid, {}).get("grpc-status", "none") for sid in (healthy, bad)}
        state = "connection closed" if raw.closed else "connection open"
        return f"healthy stream grpc-status {outcome[healthy]}, bad stream {outcome[bad]}; {state}"


async def _to_running(srv: Server, token: str, limit: float = 15.0) -> str:
    """Seconds of real time a fresh workspace takes to reach RUNNING, watched (autojump)."""
    channel, api = srv.api(token)
    start = time.monotonic()
    try:
        async with asyncio.timeout(limit):
            created = await api.create_and_start_workspace(
                pb.CreateAndStartWorkspaceRequest(context_url="https://github.com/acme/victim")
            )
            active = await api.get_active_workspace_instance(
                pb.GetActiveWorkspaceInstanceRequest(workspace_id=created.workspace_id)
            )
            assert active.instance is not None
            request = pb.ListenToWorkspaceInstanceRequest(instance_id=active.instance.instance_id)
            async for update in api.listen_to_workspace_instance(request):
                status = update.instance_status
                if status and status.phase == pb.WorkspaceInstanceStatusPhase.RUNNING:
                    break
        return f"{(time.monotonic() - start) * 1000:.0f} ms"
    except TimeoutError:
        return f"not within {limit:g} s (clock frozen)"
    finally:
        channel.close()


def half_open(root: Path) -> str:
    """An unauthenticated stream that sends its headers and never its body, then another user's
    watched lifecycle (autojump): how long until it reaches RUNNING."""
    with server(root) as srv:
        raw = Raw(srv.port)
        raw.open(GET, None, None, end=False)
        time.sleep(0.2)
        took = asyncio.run(_to_running(srv, TOKEN_B))
        return f"another user's lifecycle RUNNING after {took}"


def non_reading(root: Path) -> str:
    """A listener with a 1-byte window that never reads, then another user's lifecycle."""
    with server(root) as srv:

        async def own_workspace() -> str:
            channel, api = srv.api(TOKEN_A)
            try:
                created = await api.create_and_start_workspace(
                    pb.CreateAndStartWorkspaceRequest(context_url="https://github.com/acme/stuck")
                )
                active = await api.get_active_workspace_instance(
                    pb.GetActiveWorkspaceInstanceRequest(workspace_id=created.workspace_id)
                )
                assert active.instance is not None
                return active.instance.instance_id
            finally:
                channel.close()

        iid = asyncio.run(own_workspace())
        raw = Raw(srv.port, window=1)
        raw.pump(0.2, ack=False)
        raw.open(LISTEN, TOKEN_A, _string_field(1, iid))
        time.sleep(0.2)
        took = asyncio.run(_to_running(srv, TOKEN_B))
        return f"another user's lifecycle RUNNING after {took}"


def over_stream_cap(root: Path) -> str:
    """100 half-open streams on one connection (the advertised cap), then one more."""
    with server(root) as srv:
        raw = Raw(srv.port)
        raw.pump(0.3)
        raw.conn.remote_settings = h2.settings.Settings(
            client=False, initial_values={h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: 1000}
        )
        held = [raw.open(GET, TOKEN_A, None, end=False) for _ in range(100)]
        extra = raw.open(GET, TOKEN_A, _string_field(1, "nope"))
        raw.wait(extra, 2)
        for sid in held[:5]:
            raw.conn.send_data(
                sid, struct.pack(">?I", False, 6) + _string_field(1, "nope"), end_stream=True
            )
        raw.flush()
        for sid in held[:5]:
            raw.wait(sid, 2)
        answered = sum(1 for sid in held[:5] if "grpc-status" in raw.ended.get(sid, {}))
        extra_end = raw.ended.get(extra, {})
        how = extra_end.get("rst") or extra_end.get("grpc-status") or "nothing"
        state = "connection closed" if raw.closed or raw.goaway else "connection open"
        return f"extra stream: {how}; {answered}/5 of the others answered afterwards; {state}"


def page_tokens(root: Path) -> str:
    """Alice starts a listing of 500 workspaces; bob opens 5,000 listings meanwhile. Alice's next
    page, and the memory 4,096 of her own abandoned first pages keep."""
    with server(root) as srv:

        async def attack() -> str:
            a_channel, alice = srv.api(TOKEN_A)
            b_channel, bob = srv.api(TOKEN_B)
            try:
                for batch in range(10):
                    await asyncio.gather(*(
                        alice.create_and_start_workspace(pb.CreateAndStartWorkspaceRequest(
                            context_url=f"https://github.com/acme/r{batch}x{n}"))
                        for n in range(50)
                    ))  # fmt: skip
                for n in range(2):
                    await bob.create_and_start_workspace(
                        pb.CreateAndStartWorkspaceRequest(context_url=f"https://github.com/b/r{n}")
                    )
                page = pb.Pagination(page_size=1)
                first = await alice.list_workspaces(pb.ListWorkspacesRequest(pagination=page))
                for _ in range(50):
                    await asyncio.gather(*(
                        bob.list_workspaces(pb.ListWorkspacesRequest(pagination=page))
                        for _ in range(100)
                    ))  # fmt: skip
                try:
                    token = first.next_page_token
                    await alice.list_workspaces(
                        pb.ListWorkspacesRequest(
                            pagination=pb.Pagination(page_size=1, page_token=token)
                        )
                    )
                    continued = "alice's next page served"
                except GRPCError as exc:
                    continued = f"alice's next page {exc.status.name}"
                before = srv.status("VmRSS")
                for _ in range(41):
                    await asyncio.gather(*(
                        alice.list_workspaces(pb.ListWorkspacesRequest(pagination=page))
                        for _ in range(100)
                    ))  # fmt: skip
                grown = srv.status("VmRSS") - before
                return f"{continued}; RSS +{grown / MIB:.1f} MiB for 4,100 abandoned listings"
            finally:
                a_channel.close()
                b_channel.close()

        return asyncio.run(attack())


def quotas(root: Path) -> str:
    """One user creates workspaces, each with a new idempotency token, 10,200 times."""
    with server(root) as srv:

        async def attack() -> str:
            channel, alice = srv.api(TOKEN_A)
            before = srv.status("VmRSS")
            codes: dict[str, int] = {}
            message = ""

            async def one(n: int) -> None:
                nonlocal message
                try:
                    request = pb.CreateAndStartWorkspaceRequest(
                        context_url="https://github.com/acme/q", idempotency_token=f"t{n}"
                    )
                    await alice.create_and_start_workspace(request)
                    codes["OK"] = codes.get("OK", 0) + 1
                except GRPCError as exc:
                    codes[exc.status.name] = codes.get(exc.status.name, 0) + 1
                    message = exc.message or ""

            try:
                for batch in range(102):
                    await asyncio.gather(*(one(batch * 100 + n) for n in range(100)))
            finally:
                channel.close()
            grown = srv.status("VmRSS") - before
            said = f'; "{message[:60]}..."' if message else ""
            return f"{codes}; RSS +{grown / MIB:.0f} MiB{said}"

        return asyncio.run(attack())


def unshare(root: Path) -> str:
    """Bob follows alice's shared workspace; alice's admin unshares it. Does bob's stream end?"""
    with server(root, "--clock", "realtime", "--speed", "10") as srv:

        async def attack() -> str:
            a_channel, alice = srv.api(TOKEN_A)
            b_channel, bob = srv.api(TOKEN_B)
            ctl = spb.SimulatorServiceStub(a_channel, metadata={"authorization": f"Bearer {ADMIN}"})
            try:
                created = await alice.create_and_start_workspace(
                    pb.CreateAndStartWorkspaceRequest(context_url="https://github.com/acme/shared")
                )
                wsid = created.workspace_id
                await ctl.set_admission(spb.SetAdmissionRequest(
                    workspace_id=wsid, admission=pb.AdmissionLevel.EVERYONE))  # fmt: skip
                active = await bob.get_active_workspace_instance(
                    pb.GetActiveWorkspaceInstanceRequest(workspace_id=wsid)
                )
                assert active.instance is not None
                request = pb.ListenToWorkspaceInstanceRequest(
                    instance_id=active.instance.instance_id
                )
                after: list[object] = []
                unshared = asyncio.Event()

                async def follow() -> str:
                    try:
                        async for update in bob.listen_to_workspace_instance(request):
                            if unshared.is_set():
                                after.append(update)
                    except GRPCError as exc:
                        return exc.status.name
                    return "OK"

                task = asyncio.ensure_future(follow())
                await asyncio.sleep(0.3)
                await ctl.set_admission(spb.SetAdmissionRequest(
                    workspace_id=wsid, admission=pb.AdmissionLevel.OWNER_ONLY))  # fmt: skip
                unshared.set()
                try:
                    ended = await asyncio.wait_for(task, 12)
                except TimeoutError:
                    ended = "still open after 12 s"
                return f"bob's stream after unsharing: {ended}, {len(after)} updates received after"
            finally:
                a_channel.close()
                b_channel.close()

        return asyncio.run(attack())


def sigterm_follow(root: Path) -> str:
    """A FollowJournal stream open when the server gets SIGTERM."""
    srv = Server(root)
    try:

        async def attack() -> str:
            channel = Channel("127.0.0.1", srv.port)
            ctl = spb.SimulatorServiceStub(channel, metadata={"authorization": f"Bearer {ADMIN}"})
            seen = asyncio.Event()

            async def follow() -> str:
                try:
                    async for _ in ctl.follow_journal(spb.FollowJournalRequest(from_seq=1)):
                        seen.set()
                except GRPCError as exc:
                    return f"{exc.status.name}: {exc.message}"
                except (StreamTerminatedError, ConnectionError) as exc:
                    return f"dropped ({type(exc).__name__})"
                return "OK"

            task = asyncio.ensure_future(follow())
            await stub_call(channel)
            await asyncio.wait_for(seen.wait(), 5)
            srv.proc.send_signal(signal.SIGTERM)
            try:
                return await asyncio.wait_for(task, 10)
            finally:
                channel.close()

        return f"FollowJournal at SIGTERM: {asyncio.run(attack())}"
    finally:
        srv.stop()


async def stub_call(channel: Channel) -> None:
    """One journaled call, so a follower has an entry to see."""
    api = pb.WorkspacesServiceStub(channel, metadata={"authorization": f"Bearer {TOKEN_A}"})
    await api.list_workspaces(pb.ListWorkspacesRequest())


def rapid_reset_never_closed(root: Path) -> str:
    """Six connections in turn, each 20,000 resets, none closed for it (``--rapid-reset-streams
    0``, a flag of this checkout): what reset streams keep once their connection is gone. RSS
    is a high-water mark (freed memory stays with the allocator): it grows with every round
    when something is kept, and levels off when nothing is."""
    with server(root, "--rapid-reset-streams", "0") as srv:
        before = srv.status("VmRSS")
        figures = []
        for _ in range(6):
            raw = Raw(srv.port)
            for sent in range(1, 20_001):
                sid = raw.open(GET, None, None)
                raw.conn.reset_stream(sid)
                raw.flush()
                if sent % 200 == 0:
                    raw.pump(0.001)
            time.sleep(1.0)
            raw.sock.close()
            time.sleep(1.0)
            figures.append(f"+{(srv.status('VmRSS') - before) / MIB:.0f}")
        return f"RSS after each of 6 x 20,000 resets (MiB): {' '.join(figures)}"


ATTACKS: dict[str, Callable[[Path], str]] = {
    "refused": refused_calls,
    "oversized": oversized_calls,
    "rapid-reset": rapid_reset,
    "rapid-reset-kept-open": rapid_reset_never_closed,
    "gzip-bomb": gzip_bomb,
    "idle": idle_connections,
    "non-ascii": non_ascii_header,
    "over-stream-cap": over_stream_cap,
    "half-open": half_open,
    "non-reading": non_reading,
    "page-tokens": page_tokens,
    "quotas": quotas,
    "unshare": unshare,
    "sigterm-follow": sigterm_follow,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=HERE.parent)
    parser.add_argument("--only", default="")
    args = parser.parse_args()
    names = [n for n in args.only.split(",") if n] or list(ATTACKS)
    for name in names:
        start = time.monotonic()
        result = ATTACKS[name](args.root.resolve())
        print(f"{name:12} {result}  [{time.monotonic() - start:.1f} s]", flush=True)


if __name__ == "__main__":
    main()
