"""The shipped examples work as a user's project has them: each folder of ``examples/`` is
copied alone into an empty directory (no conftest, pytest configuration or tests/ of this
project) and its tests run there with pytest, the plugin coming from the installed package."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
FOLDERS = sorted(p.name for p in EXAMPLES.iterdir() if p.is_dir() and p.name != "__pycache__")


def test_there_are_examples() -> None:
    assert "grpcio_client" in FOLDERS


@pytest.mark.parametrize("folder", FOLDERS)
def test_example_passes_its_tests_in_a_project_of_its_own(folder: str, tmp_path: Path) -> None:
    project = tmp_path / folder
    shutil.copytree(EXAMPLES / folder, project, ignore=shutil.ignore_patterns("__pycache__"))
    (project / "pytest.ini").write_text("[pytest]\n", encoding="utf-8")  # its own rootdir
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "COV_"))}
    env["PYTHONPATH"] = ""  # nothing of this checkout but the installed package
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist"],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert " passed" in proc.stdout and "failed" not in proc.stdout
