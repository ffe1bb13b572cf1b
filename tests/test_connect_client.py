"""A TypeScript-ecosystem client as Gitpod's dashboard used one: ``@connectrpc/connect`` with
``@connectrpc/connect-node`` over HTTP/1.1 (Connect protocol, JSON), code generated from proto/
by ``@bufbuild/protoc-gen-es`` through ``buf generate``, against a real ``gitpod-sim serve
--http-port 0 --clock autojump``: create, a server-streaming listen to RUNNING, a stop stream,
and Connect errors.

Cost: about 4 s (``buf generate`` 2 s, then node), plus the one-time ``npm ci`` of tests/clients.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from npm_tools import buf, npm_clients
from server_process import ServerProcess

PROTO = Path(__file__).resolve().parent.parent / "proto"


@pytest.fixture(scope="module")
def generated() -> Path:
    """tests/clients/gen: protoc-gen-es output for proto/ (regenerated when a proto changes)."""
    clients = npm_clients()
    gen = clients / "gen"
    digest = hashlib.sha256()
    for path in sorted(PROTO.rglob("*.proto")):
        digest.update(path.read_bytes())
    digest.update((clients / "buf.gen.yaml").read_bytes())
    stamp = gen / ".digest"
    buf_binary = buf()
    with open(clients / ".gen.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not stamp.exists() or stamp.read_text() != digest.hexdigest():
            shutil.rmtree(gen, ignore_errors=True)
            result = subprocess.run(
                [buf_binary, "generate", str(PROTO), "--template", "buf.gen.yaml"],
                cwd=clients,
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert result.returncode == 0, result.stdout + result.stderr
            stamp.write_text(digest.hexdigest())
    return gen


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    server = ServerProcess(
        "--clock", "autojump", "--autojump-grace", "2s", "--seed", "3",
        "--user", "alice=tok-a", "--http-port", "0", "--quiet",
    )  # fmt: skip
    try:
        line = server.wait_for(lambda s: s.startswith("connect and grpc-web on "))
        yield line.removeprefix("connect and grpc-web on ").strip()
        assert server.stop() == 0, server.stderr()
    finally:
        server.close()


def test_connect_node_client_lifecycle_stream_and_errors(generated: Path, base_url: str) -> None:
    result = subprocess.run(
        ["node", str(generated.parent / "lifecycle.mjs"), base_url, "tok-a", str(generated)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout)
    assert re.fullmatch(r"gitpodio-gitpod-[0-9a-z]{11}", seen["workspaceId"]), seen
    assert re.fullmatch(r"[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}", seen["instanceId"])
    assert seen["phases"] == ["IMAGEBUILD", "PENDING", "CREATING", "INITIALIZING", "RUNNING"]
    versions = [int(v) for v in seen["versions"]]
    assert versions == sorted(set(versions))
    assert seen["stopMessages"] == 2
    assert seen["description"] == "gitpod-io/gitpod"
    assert seen["notFound"] == {"code": "NotFound", "message": "workspace does not exist"}
    assert seen["invalidArgument"] == {
        "code": "InvalidArgument",
        "message": "invalid pagination page size (must be 0 < x < 100)",
    }
    assert seen["failedPrecondition"] == {
        "code": "FailedPrecondition",
        "message": f"workspace {seen['workspaceId']} has no active instance to stop",
    }
    assert seen["unauthenticated"]["code"] == "Unauthenticated"
