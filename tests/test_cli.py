"""The ``gitpod-sim`` command line, run as a real subprocess.

Every process gets a bounded wait; servers bind 127.0.0.1 with ``--port 0`` only. The gRPC calls
made here use grpcio's generic (stub-less) API with hand-encoded protobuf bytes, so this file needs
neither the server's code nor generated stubs.
"""

from __future__ import annotations

import re
import signal
import subprocess
import threading
import time
from collections.abc import Iterator

import grpc
import pytest
from server_process import LOCAL, ServerProcess, popen

RPC_TIMEOUT = 10.0
SERVICE = "/gitpod.v1.WorkspacesService/"


# --------------------------------------------------------------------------------------------
# Help and usage errors (all processes run concurrently to keep this fast)
# --------------------------------------------------------------------------------------------

HELP_CASES = {
    "main --help": ("--help",),
    "serve --help": ("serve", "--help"),
}

# name -> (extra serve args, text the error message must contain)
BAD_FLAGS = {
    "clock sometimes": (("--clock", "sometimes"), "--clock"),
    "speed 0": (("--speed", "0"), "--speed"),
    "speed abc": (("--speed", "abc"), "--speed"),
    "port 70000": (("--port", "70000"), "--port"),
    "autojump-grace forever": (("--autojump-grace", "forever"), "--autojump-grace"),
    "start-time yesterday": (("--start-time", "yesterday"), "--start-time"),
    "user without token": (("--user", "alice"), "--user"),
    "duplicate user": (("--user", "a=x", "--user", "a=y"), "--user"),
    # poisoned values (issue 11): refused before anything starts, naming the range
    "speed 1e308": (("--speed", "1e308"), "0 < speed <= 1000000"),
    "start-time at the end of time": (("--start-time", "9999-12-31T23:00Z"), "9899-"),
    "autojump-grace 2h": (("--autojump-grace", "2h"), "0 .. 3600 seconds"),
    "seed past int64": (("--seed", str(2**63)), "--seed"),
    "user token not ASCII": (("--user", "a=t\u00f6ken"), "visible ASCII"),
}


@pytest.fixture(scope="module")
def finished() -> dict[str, tuple[int, str, str]]:
    """Run every help and bad-flag command at once; name -> (exit code, stdout, stderr)."""
    procs: dict[str, subprocess.Popen[str]] = {}
    for name, args in HELP_CASES.items():
        procs[name] = popen(*args)
    for name, (args, _) in BAD_FLAGS.items():
        # a listening address of its own goes first so that a flag wrongly accepted binds
        # 127.0.0.1:0 (a later --port overrides it), and is then caught by the timeout
        procs[name] = popen("serve", *LOCAL, *args)
    results: dict[str, tuple[int, str, str]] = {}
    deadline = time.monotonic() + 45
    for name, proc in procs.items():
        try:
            out, err = proc.communicate(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate(timeout=5)
            results[name] = (-999, out, err)  # it did not exit: reported by the test
            continue
        results[name] = (proc.returncode, out, err)
    return results


@pytest.mark.parametrize("name", list(HELP_CASES))
def test_help_exits_0(finished: dict[str, tuple[int, str, str]], name: str) -> None:
    rc, out, err = finished[name]
    assert rc == 0, (out, err)
    assert "Usage:" in out


def test_serve_help_lists_options(finished: dict[str, tuple[int, str, str]]) -> None:
    _, out, _ = finished["serve --help"]
    for option in ("--host", "--port", "--seed", "--clock", "--speed", "--user", "--start-time"):
        assert option in out


def test_main_help_lists_serve(finished: dict[str, tuple[int, str, str]]) -> None:
    _, out, _ = finished["main --help"]
    assert "serve" in out


@pytest.mark.parametrize("name", list(BAD_FLAGS))
def test_bad_flag_exits_2(finished: dict[str, tuple[int, str, str]], name: str) -> None:
    rc, out, err = finished[name]
    assert rc != -999, f"the server did not reject {BAD_FLAGS[name][0]} (still running)"
    assert rc == 2, (rc, out, err)
    assert "listening on" not in out
    assert "Error" in err, err
    assert BAD_FLAGS[name][1] in err, err


# --------------------------------------------------------------------------------------------
# Running servers
# --------------------------------------------------------------------------------------------


@pytest.fixture
def servers() -> Iterator[list[ServerProcess]]:
    """Servers started by a test; any still running at teardown are killed."""
    started: list[ServerProcess] = []
    yield started
    for server in started:
        server.close()


# --------------------------------------------------------------------------------------------
# Minimal protobuf wire encoding for the generic grpcio calls
# --------------------------------------------------------------------------------------------


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _string_field(number: int, value: str) -> bytes:
    data = value.encode()
    return _varint(number << 3 | 2) + _varint(len(data)) + data


def _fields(data: bytes) -> dict[int, list[int | bytes]]:
    """Decode one message level: field number -> values (ints for varints, else bytes)."""
    fields: dict[int, list[int | bytes]] = {}
    i = 0

    def varint() -> int:
        nonlocal i
        shift = result = 0
        while True:
            byte = data[i]
            i += 1
            result |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                return result

    while i < len(data):
        key = varint()
        number, wire = key >> 3, key & 7
        value: int | bytes
        if wire == 0:
            value = varint()
        elif wire == 2:
            size = varint()
            value, i = data[i : i + size], i + size
        elif wire == 1:
            value, i = data[i : i + 8], i + 8
        elif wire == 5:
            value, i = data[i : i + 4], i + 4
        else:
            raise AssertionError(f"unexpected wire type {wire}")
        fields.setdefault(number, []).append(value)
    return fields


def _one(fields: dict[int, list[int | bytes]], number: int, default: int | bytes = b"") -> object:
    return fields.get(number, [default])[-1]


PHASE_IMAGEBUILD = 1


def _create_and_get_instance(channel: grpc.Channel, metadata: tuple[tuple[str, str], ...]) -> str:
    create = channel.unary_unary(SERVICE + "CreateAndStartWorkspace")
    reply = create(
        _string_field(2, "https://github.com/gitpod-io/gitpod"),
        metadata=metadata,
        timeout=RPC_TIMEOUT,
    )
    workspace_id = _one(_fields(reply), 1)
    assert isinstance(workspace_id, bytes)
    assert workspace_id.startswith(b"gitpodio-gitpod-")
    active = channel.unary_unary(SERVICE + "GetActiveWorkspaceInstance")
    reply = active(_string_field(1, workspace_id.decode()), metadata=metadata, timeout=RPC_TIMEOUT)
    instance = _one(_fields(reply), 1)
    assert isinstance(instance, bytes)
    instance_id = _one(_fields(instance), 1)
    assert isinstance(instance_id, bytes) and instance_id
    return instance_id.decode()


# --------------------------------------------------------------------------------------------
# Serving tests
# --------------------------------------------------------------------------------------------


def test_no_user_prints_developer_token_then_sigint_stops(servers: list[ServerProcess]) -> None:
    server = ServerProcess("--clock", "manual")
    servers.append(server)
    listening = server.lines.index(f"listening on {server.address}")
    token_lines = [n for n, line in enumerate(server.lines) if line.startswith("user developer ")]
    assert token_lines and token_lines[0] < listening, server.lines
    match = re.fullmatch(r"user developer token (\S+)", server.lines[token_lines[0]])
    assert match, server.lines[token_lines[0]]
    token = match.group(1)

    with grpc.insecure_channel(server.address) as channel:
        list_workspaces = channel.unary_unary(SERVICE + "ListWorkspaces")
        reply = list_workspaces(
            b"", metadata=(("authorization", f"Bearer {token}"),), timeout=RPC_TIMEOUT
        )
        assert _fields(reply).get(2) is None  # no workspaces yet

    assert server.stop(signal.SIGINT) == 0, server.stderr()
    assert "shutting down" in server.lines


def test_rpc_log_lines_on_stdout(servers: list[ServerProcess]) -> None:
    server = ServerProcess("--clock", "manual", "--user", "alice=tok-a")
    servers.append(server)
    with grpc.insecure_channel(server.address) as channel:
        _create_and_get_instance(channel, (("authorization", "Bearer tok-a"),))
    server.wait_for(lambda line: "CreateAndStartWorkspace" in line)
    server.wait_for(lambda line: "GetActiveWorkspaceInstance" in line)
    server.wait_for(lambda line: "IMAGEBUILD" in line)  # the phase change of the new instance
    assert server.stop(signal.SIGTERM) == 0, server.stderr()


def test_sigterm_ends_open_listen_stream(servers: list[ServerProcess]) -> None:
    server = ServerProcess("--clock", "manual", "--seed", "7", "--user", "alice=tok-a")
    servers.append(server)
    metadata = (("authorization", "Bearer tok-a"),)
    with grpc.insecure_channel(server.address) as channel:
        instance_id = _create_and_get_instance(channel, metadata)
        listen = channel.unary_stream(SERVICE + "ListenToWorkspaceInstance")
        call = listen(_string_field(1, instance_id), metadata=metadata, timeout=RPC_TIMEOUT)
        first = next(call)
        status = _one(_fields(first), 1)
        assert isinstance(status, bytes)
        assert _one(_fields(status), 2, 0) == PHASE_IMAGEBUILD

        # The manual clock never moves: the stream stays open until the server goes away.
        result: list[object] = []

        def drain() -> None:
            try:
                result.append(("end", list(call)))
            except grpc.RpcError as exc:
                result.append(("error", exc.code()))  # type: ignore[attr-defined]

        reader = threading.Thread(target=drain, daemon=True)
        reader.start()
        reader.join(timeout=0.2)
        assert reader.is_alive(), f"the stream ended before the signal: {result}"

        signalled = time.monotonic()
        rc = server.stop(signal.SIGTERM)
        reader.join(timeout=5)
        assert not reader.is_alive(), "the client's stream hung after the server was stopped"
        ended_after = time.monotonic() - signalled
        call.cancel()
    assert rc == 0, server.stderr()
    assert ended_after < 5
    kind, detail = result[0]  # type: ignore[misc]
    if kind == "error":
        assert detail == grpc.StatusCode.UNAVAILABLE, detail
    else:
        assert detail == [], detail  # a clean end of stream with no further message
    assert "shutting down" in server.lines


# --------------------------------------------------------------------------------------------
# Unguessable credentials (issue 11)
# --------------------------------------------------------------------------------------------


def _seeded_admin_token(seed: int) -> str:
    """What the admin token used to be without --admin-token: a function of the seed."""
    import random

    rng = random.Random(f"gitpod-sim:{seed}:admin")
    return "gitpod_sim_admin_" + "".join(rng.choices("0123456789abcdefghijklmnopqrstuvwxyz", k=32))


def _printed(server: ServerProcess, prefix: str) -> str:
    lines = [line for line in server.lines if line.startswith(prefix)]
    assert len(lines) == 1, server.lines
    return lines[0].removeprefix(prefix)


def test_default_credentials_cannot_be_guessed_and_the_seed_replays(
    servers: list[ServerProcess],
) -> None:
    first = ServerProcess("--clock", "manual", "--user", "alice=tok-a")
    second = ServerProcess("--clock", "manual")
    servers += [first, second]
    seed = _printed(first, "seed ")
    assert re.fullmatch(r"[0-9]+", seed), seed
    assert _printed(first, "seed ") != _printed(second, "seed ")  # 1 in 2**63 to collide
    admin = _printed(first, "admin token ")
    assert admin != _printed(second, "admin token ")
    assert re.fullmatch(r"gitpod_sim_admin_[0-9a-z]{32}", admin)
    developer = _printed(second, "user developer token ")
    assert re.fullmatch(r"gitpod_sim_user_[0-9a-z]{32}", developer)

    export = "/gitpod.simulator.v1.SimulatorService/ExportState"
    with grpc.insecure_channel(first.address) as channel:
        call = channel.unary_unary(export)
        for guess in (_seeded_admin_token(0), _seeded_admin_token(int(seed))):
            with pytest.raises(grpc.RpcError) as info:
                call(b"", metadata=(("authorization", f"Bearer {guess}"),), timeout=RPC_TIMEOUT)
            assert info.value.code() is grpc.StatusCode.UNAUTHENTICATED  # type: ignore[attr-defined]
        assert call(b"", metadata=(("authorization", f"Bearer {admin}"),), timeout=RPC_TIMEOUT)
        first_instance = _create_and_get_instance(channel, (("authorization", "Bearer tok-a"),))

    # the printed seed passed back gives the same answers
    replay = ServerProcess("--clock", "manual", "--user", "alice=tok-a", "--seed", seed)
    servers.append(replay)
    assert not [line for line in replay.lines if line.startswith("seed ")]
    with grpc.insecure_channel(replay.address) as channel:
        assert _create_and_get_instance(channel, (("authorization", "Bearer tok-a"),)) == (
            first_instance
        )
