"""The committed generated code is exactly what the proto sources and the pinned compiler give."""

from __future__ import annotations

import filecmp
import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _load_generator() -> object:
    spec = importlib.util.spec_from_file_location(
        "generate_proto", ROOT / "scripts" / "generate_proto.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["generate_proto"] = module
    spec.loader.exec_module(module)
    return module


def _tree(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and "__pycache__" not in p.parts
    }


def test_regenerating_changes_nothing(tmp_path: Path) -> None:
    generator = _load_generator()
    generator.generate(tmp_path)  # type: ignore[attr-defined]
    committed = _tree(ROOT / "simulator" / "_proto")
    fresh = _tree(tmp_path)
    assert sorted(fresh) == sorted(committed), (
        "generated file set differs: run scripts/generate_proto.py"
    )
    changed = [name for name in fresh if fresh[name] != committed[name]]
    assert not changed, f"stale generated files {changed}: run scripts/generate_proto.py"


def test_proto_sources_match_the_published_contract() -> None:
    spec = ROOT.parent / "shared" / "spec" / "workspaces.proto.txt"
    ours = ROOT / "proto" / "gitpod" / "v1" / "workspaces.proto"
    if not spec.exists():  # the spec lives beside the checkout, not inside it
        import pytest

        pytest.skip("shared/spec is not beside this checkout")
    assert filecmp.cmp(spec, ours, shallow=False), "proto/ drifted from shared/spec"
