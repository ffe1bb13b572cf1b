"""The npm packages of tests/clients (buf, Connect for Node, protoc-gen-es), installed there by
``npm ci`` from the committed package-lock.json, so every run gets the same versions.

Cost: ``npm ci`` about 10 s when the lock changed (npm's cache makes repeats cheap), nothing
otherwise (a digest of the lock is kept next to the installed packages)."""

from __future__ import annotations

import fcntl
import hashlib
import shutil
import subprocess
from pathlib import Path

import pytest

CLIENTS = Path(__file__).resolve().parent / "clients"
MODULES = CLIENTS / "node_modules"


def npm_clients() -> Path:
    """tests/clients with its packages installed (skips where node or npm is missing)."""
    npm = shutil.which("npm")
    if shutil.which("node") is None or npm is None:
        pytest.skip("node and npm are not installed (buf and the Connect client come from npm)")
    digest = hashlib.sha256((CLIENTS / "package-lock.json").read_bytes()).hexdigest()
    stamp = MODULES / ".gitpod-sim-lock-digest"
    with open(CLIENTS / ".npm.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not stamp.exists() or stamp.read_text() != digest:
            result = subprocess.run(
                [npm, "ci", "--no-audit", "--no-fund"],
                cwd=CLIENTS,
                capture_output=True,
                text=True,
                timeout=300,
            )
            assert result.returncode == 0, f"npm ci failed:\n{result.stdout}\n{result.stderr}"
            stamp.write_text(digest)
    return CLIENTS


def buf() -> str:
    """The buf binary that the @bufbuild/buf package ships."""
    return str(npm_clients() / "node_modules" / ".bin" / "buf")
