"""The live terminal view: each followed instance's phase while a scenario plays (rich).

Why rich: a table redrawn in place is what a demo audience can follow; rich's ``Live`` does that
on a terminal and degrades to nothing when output is piped, so tests and CI never draw it.
"""

from __future__ import annotations

from types import TracebackType

from rich.console import Console
from rich.live import Live
from rich.table import Table
from rich.text import Text

from simulator.scenario.runner import Runner, fmt_duration
from simulator.scenario.timeline import PHASE_COLOURS

MAX_ROWS = 30
"""Rows drawn at most (a paging story follows 250 workspaces without listening to them)."""


def render(runner: Runner) -> Table:
    """The table for the runner's present state."""
    sc = runner.sc
    step = runner.step
    caption = (
        f"step {step.index}/{len(sc.steps)}: {step.action} {step.subject}" if step else "setup"
    )
    table = Table(
        title=f"{sc.name} — simulated +{fmt_duration(runner.now - runner.start)}",
        caption=runner.note or caption,
        expand=False,
    )
    for column in ("instance", "phase", "since", "conditions"):
        table.add_column(column)
    for obs in runner.observed[-MAX_ROWS:]:
        last = obs.last
        phase, since = runner.phase_now.get(obs.instance_id, ("?", runner.start))
        colour = PHASE_COLOURS.get(phase, "#cccccc")
        conditions = []
        if last is not None:
            if last.failed:
                conditions.append(f"failed: {last.failed}")
            if last.timeout:
                conditions.append(f"timeout: {last.timeout}")
            if last.stopped_by_request:
                conditions.append("stopped by request")
        table.add_row(
            obs.label,
            Text(phase, style=f"bold {colour}"),
            f"+{fmt_duration(since - runner.start)}",
            "; ".join(conditions),
        )
    others = len(runner.phase_now) - len(runner.observed)
    if others > 0:
        table.add_row(f"(+{others} not followed)", "", "", "")
    return table


class LiveView:
    """A ``Live`` display refreshed by the runner after each step and event."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console()
        self._live: Live | None = None

    def __enter__(self) -> LiveView:
        self._live = Live(console=self.console, auto_refresh=False, transient=False)
        self._live.__enter__()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._live is not None:
            self._live.__exit__(kind, value, tb)
            self._live = None
            self.console.line()

    def update(self, runner: Runner) -> None:
        if self._live is not None:
            self._live.update(render(runner), refresh=True)
