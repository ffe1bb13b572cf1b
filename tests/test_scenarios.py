"""Scenarios: every story in scenarios/ passes through the runner (in process, and against a real
``gitpod-sim serve``), broken files are refused with their line, runs are byte-for-byte
reproducible, and the timeline is valid SVG/HTML naming every instance."""

from __future__ import annotations

import asyncio
import io
import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from click.testing import CliRunner
from server_process import ServerProcess

from simulator.cli import main
from simulator.scenario import ScenarioError, load
from simulator.scenario.backends import LocalWorld
from simulator.scenario.cli import run_scenario
from simulator.scenario.runner import Outcome, Runner
from simulator.scenario.timeline import instance_ids, render_html, render_svg

ROOT = Path(__file__).resolve().parent.parent
SCENARIOS = sorted((ROOT / "scenarios").glob("*.toml"))
FIXTURES = Path(__file__).resolve().parent / "scenario_fixtures"


def test_there_are_at_least_ten_scenarios() -> None:
    assert len(SCENARIOS) >= 10


@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: p.stem)
async def test_scenario_passes_in_process(path: Path) -> None:
    outcome = await run_scenario(load(path))
    assert outcome.ok, outcome.failure
    assert outcome.steps_run == len(outcome.scenario.steps)


@pytest.mark.parametrize(
    "name",
    [
        "01-first-start-image-build",
        "10-stop-in-each-phase",
        "12-two-users-isolated",
        "15-runtime-failures",
        "16-refused-calls",
    ],
)
def test_scenario_passes_against_a_served_simulator(name: str) -> None:
    server = ServerProcess("--clock", "manual", "--admin-token", "adm", "--quiet")
    try:
        result = CliRunner().invoke(
            main,
            [
                "scenario",
                "run",
                str(ROOT / "scenarios" / f"{name}.toml"),
                "--target",
                server.address,
                "--admin-token",
                "adm",
                "--no-live",
            ],
        )
        assert result.exit_code == 0, result.output
        assert result.output.startswith("PASS ")
    finally:
        server.close()


BROKEN = [
    ("unknown_key.toml", 12, "unknown key 'advnce' in [[steps]] #2; expected one of:"),
    ("wrong_type.toml", 3, "'seed' must be an integer, got string 'one'"),
    ("undefined_workspace.toml", 15, "names workspace 'ghost', which is not defined"),
    ("illegal_phases.toml", 16, "IMAGEBUILD -> CREATING breaks the lifecycle"),
    ("after_stopped.toml", 23, "workspace 'ws' is already STOPPED (expected at line 19)"),
    ("bad_fault.toml", 8, "unknown fault 'explode'"),
    ("bad_fault.toml", 11, "invalid duration 'soon'"),
    ("invalid_toml.toml", 5, "invalid TOML"),
]


@pytest.mark.parametrize(("name", "line", "fragment"), BROKEN)
def test_schema_rejects_broken_files_with_their_line(name: str, line: int, fragment: str) -> None:
    path = FIXTURES / name
    with pytest.raises(ScenarioError) as info:
        load(path)
    hits = [p for p in info.value.problems if p.startswith(f"{path}:{line}: ") and fragment in p]
    assert hits, info.value.problems


def test_cli_reports_schema_errors_before_running(tmp_path: Path) -> None:
    journal = tmp_path / "j.jsonl"
    result = CliRunner().invoke(
        main,
        [
            "scenario",
            "run",
            str(SCENARIOS[0]),
            str(FIXTURES / "unknown_key.toml"),
            "--journal",
            str(journal),
        ],
    )
    assert result.exit_code == 2
    assert "unknown_key.toml:12: unknown key 'advnce'" in result.output
    assert "PASS" not in result.output and not list(tmp_path.iterdir())


def test_cli_exits_non_zero_with_the_first_difference() -> None:
    path = FIXTURES / "wrong_expectation.toml"
    result = CliRunner().invoke(main, ["scenario", "run", str(path), "--no-live"])
    assert result.exit_code == 1
    assert "FAIL " in result.output
    assert f"{path}:18: step 2 (expect ws): phase of ws #1: expected 'INITIALIZING'," in (
        result.output
    )
    assert "observed 'RUNNING'" in result.output


async def _run(name: str) -> Outcome:
    outcome = await run_scenario(load(ROOT / "scenarios" / name))
    assert outcome.ok, outcome.failure
    return outcome


@pytest.mark.parametrize("name", ["10-stop-in-each-phase.toml", "11-idempotent-retry.toml"])
async def test_same_scenario_and_seed_give_identical_journal_and_timeline(name: str) -> None:
    first, second = await _run(name), await _run(name)
    assert first.journal_jsonl() == second.journal_jsonl()
    assert render_svg(first) == render_svg(second)
    assert render_html(first) == render_html(second)


def test_timeline_files_are_valid_and_name_every_instance(tmp_path: Path) -> None:
    svg, html = tmp_path / "t.svg", tmp_path / "t.html"
    path = ROOT / "scenarios" / "10-stop-in-each-phase.toml"
    for out in (svg, html):
        result = CliRunner().invoke(
            main, ["scenario", "run", str(path), "--timeline", str(out), "--no-live"]
        )
        assert result.exit_code == 0, result.output
    outcome = asyncio.run(run_scenario(load(path)))
    ids = instance_ids(outcome)
    assert len(ids) == 7
    for out in (svg, html):
        root = ET.parse(out).getroot()
        text = " ".join(t for el in root.iter() for t in (el.text, el.tail) if t)
        for iid in ids:
            assert iid in text, (out.name, iid)
    assert ET.parse(svg).getroot().tag == "{http://www.w3.org/2000/svg}svg"
    assert ET.parse(html).getroot().tag == "{http://www.w3.org/1999/xhtml}html"


def test_scenario_list_shows_one_line_each() -> None:
    result = CliRunner().invoke(main, ["scenario", "list"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert len(lines) == len(SCENARIOS)
    assert any(line.startswith("paging-250 ") for line in lines)


async def test_speed_paces_with_sleeps_and_live_view_renders() -> None:
    from rich.console import Console

    from simulator.scenario.live import render

    sc = load(ROOT / "scenarios" / "08-interruption-timeout.toml")
    slept: list[float] = []
    frames: list[str] = []

    async def fake_sleep(seconds: float) -> None:
        slept.append(seconds)

    def draw(runner: Runner) -> None:
        console = Console(file=io.StringIO(), width=120)
        console.print(render(runner))
        assert isinstance(console.file, io.StringIO)
        frames.append(console.file.getvalue())

    world = LocalWorld(sc.seed, sc.start_time)
    async with world.open() as w:
        outcome = await Runner(sc, w, speed=60, on_update=draw, sleep=fake_sleep).run()
    assert outcome.ok, outcome.failure
    # 6m32s simulated at 60x is 6.53 s of pauses, but the 5-minute wait for the interruption
    # timeout (5 s) is capped at 3 s.
    assert sum(slept) == pytest.approx(392 / 60 - 2)
    assert max(slept) <= 3
    assert any("INTERRUPTED" in f for f in frames) and "STOPPED" in frames[-1]


def test_serve_loads_a_scenario_as_seed_data(tmp_path: Path) -> None:
    path = ROOT / "scenarios" / "12-two-users-isolated.toml"
    server = ServerProcess("--clock", "manual", "--admin-token", "adm", "--scenario", str(path))
    try:
        server.wait_for(lambda line: line.startswith("scenario workspace alices = "))
        server.wait_for(lambda line: line.startswith("scenario workspace bobs = "))
        state = tmp_path / "state.json"
        result = CliRunner().invoke(
            main,
            ["ctl", "--target", server.address, "--admin-token", "adm", "export", str(state)],
        )
        assert result.exit_code == 0, result.output
        text = state.read_text()
        assert "acme/secret-project" in text and "bob/dotfiles" in text
        # the scenario seeds the default session only: a new session starts empty
        ctl = ["ctl", "--target", server.address, "--admin-token", "adm"]
        made = CliRunner().invoke(main, [*ctl, "session", "create", "fresh", "--user", "x=y"])
        assert made.exit_code == 0, made.output
        fresh = tmp_path / "fresh.json"
        result = CliRunner().invoke(main, [*ctl, "--session", "fresh", "export", str(fresh)])
        assert result.exit_code == 0, result.output
        assert "acme/secret-project" not in fresh.read_text()
        assert json.loads(fresh.read_text())["workspaces"] == []
    finally:
        server.close()


def test_scenario_run_coverage_prints_and_writes_what_the_scenarios_cover(tmp_path: Path) -> None:
    import json

    out = tmp_path / "coverage.json"
    names = ("03-prebuild-start", "05-image-pull-failure")
    files = [str(ROOT / "scenarios" / f"{n}.toml") for n in names]
    result = CliRunner().invoke(
        main, ["scenario", "run", *files, "--no-live", "--coverage", "--coverage-json", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert "coverage of 2 scenario(s)" in result.output
    assert "never exercised (" in result.output
    data = json.loads(out.read_text())
    hit = {(t["from"], t["to"], t["trigger"]) for t in data["transitions"] if t["count"]}
    assert (None, "PENDING", "start") in hit  # the prebuild start
    assert ("CREATING", "STOPPED", "failed") in hit  # the image pull failure
    assert data["faults"]["fail-creating"] == 1


def test_call_and_fail_steps_are_checked() -> None:
    from simulator.scenario.schema import loads

    head = '[scenario]\ntitle = "t"\n[[users]]\nid = "a"\n'
    with pytest.raises(ScenarioError) as info:
        loads(head + '[[steps]]\ncall = "GetWorkspaces"\n[[steps]]\ncall = "GetWorkspace"\n'
              'workspace = "ghost"\n[[steps]]\ncall = "ListWorkspaces"\nadmin = true\n'
              'token = "x"\n[[steps]]\nfail = "ghost"\n', "s.toml")  # fmt: skip
    problems = "\n".join(info.value.problems)
    assert "s.toml:6: 'call' must name an RPC (ListWorkspaces, GetWorkspace," in problems
    assert "s.toml:9: step 2 (call GetWorkspace) names workspace 'ghost'" in problems
    assert "a call step takes 'admin' or 'token', not both" in problems
    assert "step 4 (fail ghost) names workspace 'ghost', which is not defined" in problems
