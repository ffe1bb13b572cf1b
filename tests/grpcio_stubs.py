"""Google protobuf + grpcio stubs generated from ``proto/`` at test time: a client that shares
no code with the server. Kept out of any top-level package on disk (STACK.md gotcha 10)."""

from __future__ import annotations

import importlib
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

PROTO_DIR = Path(__file__).resolve().parent.parent / "proto"


@contextmanager
def grpcio_stubs(out: Path) -> Iterator[SimpleNamespace]:
    """Generate into ``out``, import, and unload again afterwards."""
    import grpc_tools

    include = Path(grpc_tools.__file__).parent / "_proto"
    protos = sorted(str(p.relative_to(PROTO_DIR)) for p in PROTO_DIR.rglob("*.proto"))
    assert protos, f"no .proto files under {PROTO_DIR}"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            f"-I{PROTO_DIR}",
            f"-I{include}",
            f"--python_out={out}",
            f"--grpc_python_out={out}",
            *protos,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, f"protoc failed:\n{proc.stdout}\n{proc.stderr}"
    sys.path.insert(0, str(out))
    try:
        importlib.invalidate_caches()
        yield SimpleNamespace(
            ws=importlib.import_module("gitpod.v1.workspaces_pb2"),
            pagination=importlib.import_module("gitpod.v1.pagination_pb2"),
            grpc=importlib.import_module("gitpod.v1.workspaces_pb2_grpc"),
            sim=importlib.import_module("gitpod.simulator.v1.simulator_pb2"),
            sim_grpc=importlib.import_module("gitpod.simulator.v1.simulator_pb2_grpc"),
        )
    finally:
        while str(out) in sys.path:
            sys.path.remove(str(out))
        for name in [m for m in sys.modules if m == "gitpod" or m.startswith("gitpod.")]:
            del sys.modules[name]
