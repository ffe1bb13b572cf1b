"""The wheel as a user installs it (tests/user_env.py: built from this checkout, installed with
the README's install line in a fresh venv outside the checkout): the package, not the checkout,
is what runs; the scenarios ship as package data and ``./scenarios`` still wins; the
``[contract]`` extra brings what the contract suite needs; one version everywhere.

Cost: the user venv (shared with test_readme.py), then about 10 s.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from user_env import ROOT, user_env, user_venv

from simulator._version import __version__

pytestmark = pytest.mark.timeout(600)  # the first test may build the user venv


@pytest.fixture(scope="module")
def venv() -> Path:
    return user_venv()


def run(venv: Path, cwd: Path, *cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        cmd, cwd=cwd, env=user_env(venv), capture_output=True, text=True, timeout=120
    )


def test_the_installed_package_runs_not_the_checkout(venv: Path, tmp_path: Path) -> None:
    where = run(venv, tmp_path, "python", "-c", "import simulator; print(simulator.__file__)")
    assert where.returncode == 0, where.stderr
    installed = Path(where.stdout.strip())
    assert installed.is_relative_to(venv), installed
    assert not installed.is_relative_to(ROOT)
    shipped = sorted(p.name for p in (installed.parent / "scenario" / "shipped").glob("*.toml"))
    assert shipped == sorted(p.name for p in (ROOT / "scenarios").glob("*.toml"))
    version = run(venv, tmp_path, "gitpod-sim", "--version")
    assert version.stdout.strip() == f"gitpod-sim {__version__}"
    meta = run(
        venv,
        tmp_path,
        "python",
        "-c",
        "import importlib.metadata as m; print(m.version('gitpod-sim'))",
    )
    assert meta.stdout.strip() == __version__
    schema = run(venv, tmp_path, "gitpod-sim", "descriptors", "schema.binpb")
    assert schema.returncode == 0, schema.stderr
    assert (tmp_path / "schema.binpb").read_bytes() == (
        ROOT / "simulator" / "_proto" / "descriptors.binpb"
    ).read_bytes()


def test_shipped_scenarios_list_and_run_from_any_folder(venv: Path, tmp_path: Path) -> None:
    listed = run(venv, tmp_path, "gitpod-sim", "scenario", "list")
    assert listed.returncode == 0, listed.stderr
    names = [line.split()[0] for line in listed.stdout.splitlines()]
    assert len(names) == len(list((ROOT / "scenarios").glob("*.toml")))
    assert "stop-in-each-phase" in names
    ran = run(
        venv,
        tmp_path,
        "gitpod-sim",
        "scenario",
        "run",
        "stop-in-each-phase",
        "04-image-build-failure",
    )
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert ran.stdout.startswith("PASS stop-in-each-phase"), ran.stdout
    assert "PASS image-build-failure" in ran.stdout
    unknown = run(venv, tmp_path, "gitpod-sim", "scenario", "run", "no-such-scenario")
    assert unknown.returncode == 2
    assert "no scenario file or name 'no-such-scenario'" in unknown.stderr


def test_local_scenarios_win_over_shipped_ones(venv: Path, tmp_path: Path) -> None:
    local = tmp_path / "scenarios"
    local.mkdir()
    original = (ROOT / "scenarios" / "10-stop-in-each-phase.toml").read_text()
    assert 'name = "stop-in-each-phase"' in original
    (local / "10-stop-in-each-phase.toml").write_text(
        original.replace('name = "stop-in-each-phase"', 'name = "my-stops"', 1)
    )
    listed = run(venv, tmp_path, "gitpod-sim", "scenario", "list")
    names = [line.split()[0] for line in listed.stdout.splitlines()]
    assert names[0] == "my-stops", names
    assert "stop-in-each-phase" not in names  # the local file of that name replaces it
    assert len(names) == len(list((ROOT / "scenarios").glob("*.toml")))
    ran = run(venv, tmp_path, "gitpod-sim", "scenario", "run", "10-stop-in-each-phase")
    assert ran.stdout.startswith("PASS my-stops"), ran.stdout + ran.stderr


def test_contract_extra_runs_the_contract_suite(venv: Path, tmp_path: Path) -> None:
    result = run(
        venv, tmp_path, "pytest", "-q", "-p", "no:cacheprovider", "--pyargs",
        "simulator.contract", "--gitpod-examples", "3", "--gitpod-steps", "10",
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout
