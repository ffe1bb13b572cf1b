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
        *proto_sources(),
    ]
    result = subprocess.run(cmd, cwd=PROTO_ROOT, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"protoc failed ({result.returncode}):\n{result.stderr}")


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        generate(Path(tmp))
        if TARGET.exists():
            shutil.rmtree(TARGET)
        shutil.copytree(tmp, TARGET)
    print(f"generated {TARGET.relative_to(ROOT)} from {', '.join(proto_sources())}")


if __name__ == "__main__":
    main()
