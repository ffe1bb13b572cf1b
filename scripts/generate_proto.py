"""Regenerate ``simulator/_proto`` from ``proto/`` with betterproto2's compiler.

Why a script: the generated code is committed, and ``tests/test_generated_code.py`` runs this
same function into a temporary folder to prove the committed files are what the sources give.

Run it from the project's venv (the compiler plugin ``protoc-gen-python_betterproto2`` must be on
PATH, which it is when the venv's ``bin`` is)::

    python scripts/generate_proto.py
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "proto"
TARGET = ROOT / "simulator" / "_proto"
# Async grpclib client and server stubs; the default is a sync grpcio client and no server.
PLUGIN_OPTIONS = "client_generation=async,server_generation=async"
# Every proto under proto/ and what it imports, plus the standard health and reflection protos,
# as one serialized FileDescriptorSet: what server reflection describes and what the health,
# reflection and Connect modules build their messages from, so clients need no .proto files.
DESCRIPTOR_SET = "descriptors.binpb"
# grpclib bundles the standard protos only as generated modules. Their descriptors are read in a
# child process: importing them here would register their symbols in Google's default pool, where
# they clash with grpcio's own health and reflection modules (same symbols, other file names).
STANDARD_MODULES = (
    "grpclib.health.v1.health_pb2",
    "grpclib.reflection.v1.reflection_pb2",
    "grpclib.reflection.v1alpha.reflection_pb2",
)
_STANDARD_SCRIPT = """
import importlib, sys
from google.protobuf import descriptor_pb2
out = descriptor_pb2.FileDescriptorSet()
for name in sys.argv[1:]:
    importlib.import_module(name).DESCRIPTOR.CopyToProto(out.file.add())
sys.stdout.buffer.write(out.SerializeToString())
"""


def proto_sources() -> list[str]:
    """Every .proto under proto/, relative to it, in a stable order."""
    return sorted(p.relative_to(PROTO_ROOT).as_posix() for p in PROTO_ROOT.rglob("*.proto"))


def generate(out_dir: Path) -> None:
    """Write the generated package into ``out_dir`` (which must exist and be empty)."""
    bin_dir = Path(sys.executable).parent
    env = dict(os.environ)
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    cmd = [
        sys.executable,
        "-m",
        "grpc_tools.protoc",
        f"-I{PROTO_ROOT}",
        f"--python_betterproto2_out={out_dir}",
        f"--python_betterproto2_opt={PLUGIN_OPTIONS}",
        f"--descriptor_set_out={out_dir / DESCRIPTOR_SET}",
        "--include_imports",
        *proto_sources(),
    ]
    result = subprocess.run(cmd, cwd=PROTO_ROOT, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"protoc failed ({result.returncode}):\n{result.stderr}")
    standard = subprocess.run(
        [sys.executable, "-c", _STANDARD_SCRIPT, *STANDARD_MODULES], capture_output=True
    )
    if standard.returncode != 0:
        raise RuntimeError(f"reading standard descriptors failed:\n{standard.stderr.decode()}")
    # Serialized FileDescriptorSets concatenate into one (``file`` is a repeated field).
    with (out_dir / DESCRIPTOR_SET).open("ab") as f:
        f.write(standard.stdout)


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        generate(Path(tmp))
        if TARGET.exists():
            shutil.rmtree(TARGET)
        shutil.copytree(tmp, TARGET)
    print(f"generated {TARGET.relative_to(ROOT)} from {', '.join(proto_sources())}")


if __name__ == "__main__":
    main()
