"""The wire contract cannot drift: ``buf lint`` of our own control-plane proto and ``buf breaking``
of ``proto/gitpod/v1`` against the spec's copy of Gitpod's proto (FILE rules: no field, number,
name or type of the published API may change). buf comes from npm (tests/npm_tools.py).

Cost: about 2 s (plus the one-time ``npm ci`` of tests/clients)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from npm_tools import buf

ROOT = Path(__file__).resolve().parent.parent
PROTO = ROOT / "proto"
# CI clones the project next to shared/; a worktree under /work/wt/ has it two levels up.
SPEC_DIRS = [ROOT.parent / "shared" / "spec", ROOT.parent.parent / "shared" / "spec"]


def test_buf_lint_control_plane_proto() -> None:
    result = subprocess.run(
        [buf(), "lint", "--path", "gitpod/simulator/v1"],
        cwd=PROTO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_buf_breaking_against_the_spec(tmp_path: Path) -> None:
    spec = next((d / "workspaces.proto.txt" for d in SPEC_DIRS if d.is_dir()), None)
    if spec is None or not spec.exists():
        pytest.skip(f"the spec copy is absent (looked in {', '.join(map(str, SPEC_DIRS))})")
    against = tmp_path / "spec"
    (against / "gitpod" / "v1").mkdir(parents=True)
    shutil.copy(spec, against / "gitpod" / "v1" / "workspaces.proto")
    # The spec has no copy of pagination.proto (two fields): it is taken as ours.
    shutil.copy(PROTO / "gitpod" / "v1" / "pagination.proto", against / "gitpod" / "v1")
    (against / "buf.yaml").write_text("version: v2\n")
    # Run from the older side: buf resolves paths against the working folder. Every file of the
    # spec side is compared (our new files, the control plane's, cannot break anything).
    result = subprocess.run(
        [buf(), "breaking", str(PROTO), "--against", "."],
        cwd=against,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_buf_breaking_notices_a_renumbered_field(tmp_path: Path) -> None:
    """The check above can fail: a copy of our proto with one field renumbered breaks it."""
    changed = tmp_path / "changed"
    shutil.copytree(PROTO, changed)
    path = changed / "gitpod" / "v1" / "workspaces.proto"
    text = path.read_text()
    assert "string workspace_id = 1;" in text
    path.write_text(text.replace("string workspace_id = 1;", "string workspace_id = 9;", 1))
    result = subprocess.run(
        [buf(), "breaking", str(changed), "--against", "."],
        cwd=PROTO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert 'field "1" with name "workspace_id"' in result.stdout + result.stderr
