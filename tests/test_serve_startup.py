"""What ``gitpod-sim serve`` says at start-up: its version, and ``listening on`` only once every
port accepts connections; a port that cannot be bound is named by its flag, before that line."""

from __future__ import annotations

import socket
import subprocess
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
from server_process import LOCAL, ServerProcess, command, popen

from simulator._version import __version__

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A port on 127.0.0.1 that a listening socket holds for the test."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def _connects(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except OSError:
        return False
    return True


def test_every_port_accepts_when_listening_is_printed() -> None:
    server = ServerProcess("--clock", "manual", "--http-port", "0")
    try:
        # "listening on" is the last start-up line: the HTTP port's line is already there.
        http = next(line for line in server.lines if line.startswith("connect and grpc-web on "))
        http_port = int(http.rsplit(":", 1)[1])
        grpc_port = int(server.address.rsplit(":", 1)[1])
        assert _connects(http_port), "the HTTP port refused a connection after 'listening on'"
        assert _connects(grpc_port)
        assert server.lines[0] == f"gitpod-sim {__version__}"
        assert server.stop() == 0, server.stderr()
    finally:
        server.close()


@pytest.mark.parametrize("flag", ["--port", "--http-port"])
def test_busy_port_is_named_by_its_flag(busy_port: int, flag: str) -> None:
    args = [*LOCAL, "--http-port", "0", "--clock", "manual"]
    args[args.index(flag) + 1] = str(busy_port)
    proc = popen("serve", *args)
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 1, (out, err)
    assert "listening on" not in out
    assert f"error: cannot listen on 127.0.0.1:{busy_port} ({flag}): " in err, err
    assert "in use" in err, err


def test_one_version_everywhere() -> None:
    out = subprocess.run(
        command("--version"), capture_output=True, text=True, timeout=20, check=True
    ).stdout
    assert out.strip() == f"gitpod-sim {__version__}"
    from importlib.metadata import version

    assert version("gitpod-sim") == __version__
    changelog = (ROOT / "CHANGELOG.md").read_text()
    assert f"## {__version__}" in changelog, "CHANGELOG.md has no section for this version"
    assert "dynamic" in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
