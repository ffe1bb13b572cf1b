"""A Go client (grpc-go) against a real ``gitpod-sim serve --clock manual``: a lifecycle steered
through the control plane, a fault (the README's Go example is part of this program), and the
status codes a Go client sees.

Built only from Debian's packages in GOPATH mode (``GO111MODULE=off``, ``/usr/share/gocode``):
golang-go, golang-google-grpc-dev, golang-google-protobuf-dev,
golang-github-golang-protobuf-1-5-dev, protoc-gen-go, protoc-gen-go-grpc and protobuf-compiler,
which ``.ci/run`` installs when missing. Stubs are generated from ``proto/`` at test time. Cost:
about 50 s for the first build on 2 cores (grpc-go itself), 3 s when Go's build cache has it, and
nothing when this program and the protos have not changed (the binary is cached by their digest).
"""

from __future__ import annotations

import fcntl
import hashlib
import itertools
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from server_process import ServerProcess
from user_env import README, ROOT, cache_root

PROGRAM = ROOT / "tests" / "go" / "lifecycle" / "main.go"
PROTOS = [
    ROOT / "proto" / "gitpod" / "v1" / "workspaces.proto",
    ROOT / "proto" / "gitpod" / "v1" / "pagination.proto",
    ROOT / "proto" / "gitpod" / "simulator" / "v1" / "simulator.proto",
]
GOCODE = Path("/usr/share/gocode")
NEEDS = {
    "go": "golang-go",
    "protoc": "protobuf-compiler",
    "protoc-gen-go": "protoc-gen-go",
    "protoc-gen-go-grpc": "protoc-gen-go-grpc",
}
LIBRARIES = {
    "src/google.golang.org/grpc": "golang-google-grpc-dev",
    "src/google.golang.org/protobuf": "golang-google-protobuf-dev",
    "src/github.com/golang/protobuf/proto": "golang-github-golang-protobuf-1-5-dev",
}


def _missing() -> list[str]:
    missing = [pkg for tool, pkg in NEEDS.items() if shutil.which(tool) is None]
    missing += [pkg for path, pkg in LIBRARIES.items() if not (GOCODE / path).is_dir()]
    return missing


@pytest.fixture(scope="module")
def go_client() -> Path:
    missing = _missing()
    if missing:
        pytest.skip(
            "the Go client test needs Debian's " + ", ".join(missing) + " (.ci/run installs "
            "them with apt-get; run it, or apt-get install them)"
        )
    go_version = subprocess.run(["go", "version"], capture_output=True, text=True).stdout
    digest = hashlib.sha256(go_version.encode())
    for path in [PROGRAM, *PROTOS]:
        digest.update(path.read_bytes())
    home = cache_root() / f"go-{digest.hexdigest()[:16]}"
    binary = home / "lifecycle"
    home.parent.mkdir(parents=True, exist_ok=True)
    with open(home.parent / "go.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if binary.exists():
            return binary
        for old in home.parent.glob("go-*"):
            shutil.rmtree(old, ignore_errors=True)
        gopath = home / "gopath"
        src = gopath / "src"
        (src / "gitpodsim-lifecycle").mkdir(parents=True)
        shutil.copy(PROGRAM, src / "gitpodsim-lifecycle" / "main.go")
        generate = subprocess.run(
            [
                "protoc",
                f"-I{ROOT / 'proto'}",
                "-I/usr/include",
                f"--go_out={src}",
                f"--go-grpc_out={src}",
                *map(str, PROTOS),
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert generate.returncode == 0, generate.stderr
        env = {
            **os.environ,
            "GO111MODULE": "off",
            "GOPATH": f"{gopath}{os.pathsep}{GOCODE}",
            "GOFLAGS": "",
        }
        build = subprocess.run(
            ["go", "build", "-o", str(binary), "."],
            cwd=src / "gitpodsim-lifecycle",
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert build.returncode == 0, build.stderr
    return binary


def test_go_client_lifecycle_fault_and_codes(go_client: Path) -> None:
    server = ServerProcess(
        "--clock", "manual", "--seed", "5", "--user", "alice=tok-a", "--admin-token", "adm"
    )
    try:
        result = subprocess.run(
            [str(go_client), server.address, "tok-a", "adm"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert server.stop() == 0, server.stderr()
    finally:
        server.close()
    assert result.returncode == 0, result.stderr
    *printed, last = result.stdout.splitlines()
    seen = json.loads(last)
    assert re.fullmatch(r"gitpodio-gitpod-[0-9a-z]{11}", seen["workspaceId"]), seen
    phases = ["IMAGEBUILD", "PENDING", "CREATING", "INITIALIZING", "RUNNING"]
    assert seen["streamed"] == [f"PHASE_{p}" for p in phases]
    assert seen["advanced"] == [
        f"PHASE_{a}->PHASE_{b} (step)" for a, b in itertools.pairwise(phases)
    ]
    assert seen["stopMessages"] == 2
    # The README's example: the image is cached now, so PENDING -> CREATING, where the fault hits.
    assert seen["faulted"] == [
        "PHASE_PENDING->PHASE_CREATING (step)",
        "PHASE_CREATING->PHASE_CREATING (failed)",
        "PHASE_CREATING->PHASE_STOPPED (failed)",
    ]
    assert [line.split(" ", 1)[1] for line in printed] == [
        "PHASE_PENDING -> PHASE_CREATING step",
        "PHASE_CREATING -> PHASE_CREATING failed",
        "PHASE_CREATING -> PHASE_STOPPED failed",
    ]
    errors = seen["errors"]
    assert errors["unknownWorkspace"] == "NotFound: workspace does not exist"
    assert errors["invalidId"].startswith("InvalidArgument: invalid workspace id 'not an id'")
    assert errors["noToken"].startswith("Unauthenticated: ")
    assert errors["adminOnApi"].startswith("PermissionDenied: ")
    assert errors["apiTokenOnControl"].startswith("PermissionDenied: ")
    assert errors["pageSize"].startswith("InvalidArgument: invalid pagination page size")
    assert errors["stopStopped"] == (
        f"FailedPrecondition: workspace {seen['workspaceId']} has no active instance to stop"
    )


def test_readme_go_example_is_this_programs_code() -> None:
    block = re.search(r"<!-- test: go -->\n```go\n(.*?)```", README.read_text(), flags=re.S)
    assert block, "README has no Go example marked <!-- test: go -->"
    region = re.search(r"\t// README:begin\n(.*?)\t// README:end\n", PROGRAM.read_text(), re.S)
    assert region
    dedented = "".join(line.removeprefix("\t") for line in region.group(1).splitlines(True))
    assert block.group(1) == dedented, "README's Go example differs from tests/go/lifecycle"
