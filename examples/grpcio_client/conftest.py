"""The client's tests run against gitpod-sim through its pytest plugin (``pip install
gitpod-sim[contract]``): ``gitpod_target`` and ``gitpod_control`` come from there. The client
reads its messages from the FileDescriptorSet that ``gitpod-sim descriptors`` writes."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from gitpod_tool import Client


@pytest.fixture(scope="session")
def descriptors(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("api") / "gitpod.binpb"
    subprocess.run(
        [sys.executable, "-m", "simulator.cli", "descriptors", str(path)],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return path


@pytest.fixture
def client(gitpod_target, descriptors: Path) -> Iterator[Client]:  # type: ignore[no-untyped-def]
    tool = Client(gitpod_target.address, gitpod_target.token("alice"), descriptors)
    try:
        yield tool
    finally:
        tool.close()
