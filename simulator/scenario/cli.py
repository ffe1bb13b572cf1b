"""``gitpod-sim scenario``: run, check and list scenarios; and the ``serve --scenario`` hook.

Schema problems of every file are reported before anything runs (exit 2); a run that observes a
difference exits 1 after printing an account of the first one.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import click

from simulator.core.coverage import CoverageReport
from simulator.scenario.runner import Outcome, Runner, fmt_duration
from simulator.scenario.schema import Scenario, ScenarioError, load

if TYPE_CHECKING:
    from simulator.server.runtime import Simulator


async def run_scenario(
    scenario: Scenario,
    *,
    target: str | None = None,
    admin_token: str | None = None,
    speed: float | None = None,
    on_update: Callable[[Runner], None] | None = None,
    session: str | None = None,
) -> Outcome:
    """Play ``scenario`` in process (manual clock) or against ``target`` (HOST:PORT)."""
    if target is None:
        if session is not None:
            raise click.UsageError("--session needs --target")
        from simulator.scenario.backends import LocalWorld

        local = LocalWorld(scenario.seed, scenario.start_time)
        async with local.open() as world:
            return await Runner(scenario, world, speed=speed, on_update=on_update).run()
    from simulator.scenario.backends import RemoteWorld

    if not admin_token:
        raise click.UsageError("--target needs --admin-token")
    remote = RemoteWorld(target, admin_token, scenario.seed, session)
    async with remote.open() as rworld:
        return await Runner(scenario, rworld, speed=speed, on_update=on_update).run()


def resolve_all(names: tuple[str, ...], every: bool = False) -> tuple[str, ...]:
    """Scenario names or files as files (``--all``: every available scenario); an unknown name
    is a usage error (exit 2)."""
    from simulator.scenario.library import available, resolve

    if every:
        if names:
            raise click.UsageError("give scenario names or --all, not both")
        return tuple(str(p) for p in available())
    if not names:
        raise click.UsageError("give scenario names or files (or --all)")
    try:
        return tuple(str(resolve(n)) for n in names)
    except LookupError as exc:
        raise click.UsageError(str(exc)) from None


def load_all(files: tuple[str, ...]) -> list[Scenario]:
    """Every file checked before any runs; all problems printed, then exit 2."""
    loaded: list[Scenario] = []
    problems: list[str] = []
    for f in files:
        try:
            loaded.append(load(f))
        except ScenarioError as exc:
            problems.extend(exc.problems)
    if problems:
        for p in problems:
            click.echo(f"error: {p}", err=True)
        sys.exit(2)
    return loaded


def _per_file(path: str, name: str, many: bool) -> str:
    if not many:
        return path
    p = Path(path)
    return str(p.with_name(f"{p.stem}-{name}{p.suffix}"))


@click.group("scenario")
def scenario() -> None:
    """Declarative lifecycle stories (scenarios/*.toml): run them, check them, list them."""


@scenario.command("run")
@click.argument("files", nargs=-1, metavar="[NAME|FILE]...")
@click.option("--all", "every", is_flag=True, help="Run every scenario `scenario list` shows.")
@click.option(
    "--target", default=None, help="HOST:PORT of a running gitpod-sim (default: in process)."
)
@click.option("--admin-token", default=None, help="The target's admin token (with --target).")
@click.option(
    "--session",
    default=None,
    help="Play in this session of --target (created for the run and deleted after it if it"
    " does not exist), so several scenarios can play at once on one server.",
)
@click.option(
    "--speed",
    default=None,
    type=click.FloatRange(min=0, min_open=True),
    help="Play at this pace for a demo (simulated seconds per real second); default: at once.",
)
@click.option(
    "--timeline",
    default=None,
    type=click.Path(dir_okay=False),
    help="Write a Gantt-style timeline (.svg or .html).",
)
@click.option(
    "--journal",
    "journal_file",
    default=None,
    type=click.Path(dir_okay=False),
    help="Write the run's journal (JSON Lines).",
)
@click.option("--live/--no-live", default=None, help="Live phase table (default: on a terminal).")
@click.option(
    "--coverage",
    "show_coverage",
    is_flag=True,
    help="Print what the scenarios together covered (the table, then every item never exercised).",
)
@click.option(
    "--coverage-json",
    default=None,
    type=click.Path(dir_okay=False),
    help="Write what the scenarios together covered as JSON (the README's format).",
)
def run(
    files: tuple[str, ...],
    every: bool,
    target: str | None,
    admin_token: str | None,
    speed: float | None,
    timeline: str | None,
    journal_file: str | None,
    live: bool | None,
    show_coverage: bool = False,
    coverage_json: str | None = None,
    session: str | None = None,
) -> None:
    """Run scenarios (by name, as `scenario list` shows, or FILE) and check every expectation;
    exit 1 at the first difference. ./scenarios/ wins over the shipped scenarios."""
    from simulator.scenario.timeline import write_timeline

    scenarios = load_all(resolve_all(files, every))
    show = sys.stdout.isatty() if live is None else live
    failed = 0
    covered: list[CoverageReport] = []
    for sc in scenarios:
        outcome = _play(sc, target, admin_token, speed, show, session)
        if outcome.coverage is not None:
            covered.append(outcome.coverage)
        many = len(scenarios) > 1
        if timeline is not None:
            write_timeline(outcome, _per_file(timeline, sc.name, many))
        if journal_file is not None:
            Path(_per_file(journal_file, sc.name, many)).write_text(
                outcome.journal_jsonl(), encoding="utf-8"
            )
        summary = (
            f"{sc.name}: {outcome.steps_run}/{len(sc.steps)} steps,"
            f" simulated {fmt_duration(outcome.simulated)}, wall {outcome.wall_seconds:.3f} s"
        )
        if outcome.ok:
            click.echo(f"PASS {summary}")
        else:
            failed += 1
            click.echo(f"FAIL {summary}")
            click.echo(outcome.failure)
    if show_coverage or coverage_json is not None:
        from simulator.coverage_report import print_report, write_json

        report = CoverageReport.merge_all(covered)
        if coverage_json is not None:
            write_json(report, coverage_json)
        if show_coverage:
            print_report(report, title=f"coverage of {len(covered)} scenario(s)")
    if failed:
        sys.exit(1)


def _play(
    sc: Scenario,
    target: str | None,
    admin_token: str | None,
    speed: float | None,
    show: bool,
    session: str | None = None,
) -> Outcome:
    from grpclib.exceptions import GRPCError

    async def go() -> Outcome:
        if not show:
            return await run_scenario(
                sc, target=target, admin_token=admin_token, speed=speed, session=session
            )
        from simulator.scenario.live import LiveView

        with LiveView() as view:
            return await run_scenario(
                sc,
                target=target,
                admin_token=admin_token,
                speed=speed,
                on_update=view.update,
                session=session,
            )

    try:
        return asyncio.run(go())
    except (OSError, GRPCError, ValueError) as exc:
        click.echo(f"error: {sc.path}: cannot run against {target}: {exc}", err=True)
        sys.exit(1)


@scenario.command("check")
@click.argument("files", nargs=-1, metavar="[NAME|FILE]...")
@click.option("--all", "every", is_flag=True, help="Check every scenario `scenario list` shows.")
def check(files: tuple[str, ...], every: bool) -> None:
    """Check scenarios (names or FILEs) against the schema without running them."""
    for sc in load_all(resolve_all(files, every)):
        click.echo(f"ok {sc.path}: {sc.name}, {len(sc.steps)} steps")


@scenario.command("list")
@click.option(
    "--dir",
    "directory",
    default=None,
    type=click.Path(file_okay=False),
    help="Only this folder (default: ./scenarios/, then the scenarios gitpod-sim ships).",
)
def list_(directory: str | None) -> None:
    """One line per scenario: name and title."""
    from simulator.scenario.library import available

    files = sorted(Path(directory).glob("*.toml")) if directory else available()
    if not files:
        click.echo(f"no scenarios in {directory}", err=True)
        sys.exit(1)
    rows = []
    for f in files:
        try:
            sc = load(f)
            rows.append((sc.name, sc.title))
        except ScenarioError as exc:
            rows.append((f.stem, f"(invalid: {exc.problems[0]})"))
    width = max(len(name) for name, _ in rows)
    for name, title in rows:
        click.echo(f"{name.ljust(width)}  {title}")


def seed_from_scenario(sim: Simulator, path: str) -> None:
    """``serve --scenario FILE``: the scenario's seed (unless --seed was given) and its setup."""
    from simulator.scenario.library import resolve
    from simulator.scenario.seed import SeedError, seed_simulator

    try:
        sc = load(resolve(path))
    except LookupError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except ScenarioError as exc:
        for p in exc.problems:
            click.echo(f"error: {p}", err=True)
        sys.exit(2)
    ctx = click.get_current_context(silent=True)
    explicit = False
    with contextlib.suppress(Exception):
        source = ctx.get_parameter_source("seed") if ctx is not None else None
        explicit = source is not None and source.name not in ("DEFAULT", "DEFAULT_MAP")
    if not explicit and sim.seed != sc.seed and not sim.engine.workspaces:
        sim.reset(seed=sc.seed)
    try:
        lines = seed_simulator(sim, sc)
    except SeedError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    click.echo(f"scenario {sc.name} loaded from {path}")
    for line in lines:
        click.echo(line)
