"""Node's @grpc/grpc-js (with @grpc/proto-loader reading proto/ at run time) against a real
``gitpod-sim serve --clock autojump`` process: create -> follow to RUNNING -> stop, and errors.

The packages are installed from the npm registry into tests/node by ``npm ci`` (from the
committed package-lock.json) the first time; the test skips only when node or npm is missing.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from server_process import ServerProcess

NODE_DIR = Path(__file__).parent / "node"
PROTO_DIR = Path(__file__).parent.parent / "proto"


@pytest.fixture(scope="module")
def node() -> str:
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.skip("node and npm are not installed")
    if not (NODE_DIR / "node_modules" / "@grpc" / "grpc-js").exists():
        result = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund"],
            cwd=NODE_DIR,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode == 0, f"npm ci failed:\n{result.stdout}\n{result.stderr}"
    return node


@pytest.fixture(scope="module")
def address() -> Iterator[str]:
    server = ServerProcess(
        "--clock", "autojump", "--autojump-grace", "2s", "--seed", "11", "--user", "alice=tok-a"
    )
    try:
        yield server.address
    finally:
        assert server.stop() == 0, server.stderr()
        server.close()


def test_grpc_js_lifecycle_and_errors(node: str, address: str) -> None:
    result = subprocess.run(
        [node, str(NODE_DIR / "lifecycle.js"), address, str(PROTO_DIR), "tok-a"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout)
    assert seen["workspaceId"].startswith("gitpodio-gitpod-")
    assert seen["phases"] == [
        "PHASE_IMAGEBUILD",
        "PHASE_PENDING",
        "PHASE_CREATING",
        "PHASE_INITIALIZING",
        "PHASE_RUNNING",
    ]
    versions = [int(v) for v in seen["statusVersions"]]  # int64 arrives as a decimal string
    assert versions == sorted(set(versions))
    assert seen["stopMessages"] == 2
    assert seen["description"] == "gitpod-io/gitpod"
    assert seen["notFound"] == {"code": 5, "details": "workspace does not exist"}
    assert seen["unauthenticated"] == {"code": 16}
