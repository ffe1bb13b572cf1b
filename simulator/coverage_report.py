"""Showing a coverage report: the terminal table, one self-contained HTML page, the JSON file.

Used by ``gitpod-sim ctl coverage``, ``gitpod-sim serve --coverage``, ``scenario run --coverage``
and the pytest plugin's ``--gitpod-coverage``. Every view names every item never exercised; none
relies on colour (counts and the words "never" and "UNEXPECTED" carry the meaning).
"""

from __future__ import annotations

import html
import json
import os
from pathlib import Path

from rich.console import Console
from rich.table import Table

from simulator.core.coverage import CoverageReport, GroupTotal, label
from simulator.core.coverage_catalogue import GROUPS

TITLES = {
    "transitions": "transitions (from, to, trigger)",
    "phases": "phases entered",
    "conditions": "conditions",
    "rpcs": "RPC status codes",
    "streams": "stream endings",
    "build_logs": "build logs",
    "faults": "fault kinds fired",
    "features": "paging, replays, shared reads",
}


def _percent(total: GroupTotal) -> str:
    return f"{total.percent:.0f}%"


def summary_table(report: CoverageReport, title: str = "gitpod-sim coverage") -> Table:
    """Covered / total per group, and the whole."""
    table = Table(title=title, title_justify="left")
    table.add_column("group")
    table.add_column("covered", justify="right")
    table.add_column("total", justify="right")
    table.add_column("%", justify="right")
    table.add_column("unexpected", justify="right")
    totals = report.totals()
    for group in (*GROUPS, "all"):
        t = totals[group]
        table.add_row(
            TITLES.get(group, group),
            str(t.hit),
            str(t.of),
            _percent(t),
            str(t.unexpected) if t.unexpected else "",
            end_section=group == GROUPS[-1],
        )
    return table


def print_report(
    report: CoverageReport, console: Console | None = None, *, title: str = "gitpod-sim coverage"
) -> None:
    """The table, then every item never exercised, then anything unexpected."""
    console = console or Console(highlight=False)
    console.print(summary_table(report, title))
    missed = report.missed()
    if missed:
        console.print(f"never exercised ({len(missed)}):")
        current = ""
        for group, item in missed:
            if group != current:
                console.print(f"  {TITLES[group]}:")
                current = group
            console.print(f"    {item}", markup=False)
    else:
        console.print("every item was exercised")
    for group, item, count in report.unexpected():
        console.print(f"UNEXPECTED {TITLES[group]}: {item} x{count}", markup=False)


def summary_line(report: CoverageReport) -> str:
    """One line: transitions and RPC pairs covered, and the whole."""
    totals = report.totals()
    parts = [
        f"{name} {totals[group].hit}/{totals[group].of} ({_percent(totals[group])})"
        for group, name in (("transitions", "transitions"), ("rpcs", "RPC codes"), ("all", "all"))
    ]
    unexpected = totals["all"].unexpected
    return ", ".join(parts) + (f", {unexpected} UNEXPECTED" if unexpected else "")


def write_json(report: CoverageReport, path: str | os.PathLike[str]) -> None:
    """The stable JSON format, written atomically."""
    target = Path(path)
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_text(json.dumps(report.to_json(), indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, target)


def read_json(path: str | os.PathLike[str]) -> CoverageReport:
    return CoverageReport.from_json(json.loads(Path(path).read_text(encoding="utf-8")))


_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; max-width: 70em; color: #111; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; }
th, td { border: 1px solid #999; padding: 0.2em 0.6em; text-align: left; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
tr.never td { background: #fde8e8; }
tr.unexpected td { background: #fff3c4; font-weight: bold; }
caption { text-align: left; font-weight: bold; padding: 0.3em 0; }
"""


def to_html(report: CoverageReport, title: str = "gitpod-sim coverage") -> str:
    """One self-contained page: inline style, no script, no external resource."""
    esc = html.escape
    totals = report.totals()
    out = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        f"<title>{esc(title)}</title>",
        f"<style>{_STYLE}</style>",
        "</head>",
        "<body>",
        f"<h1>{esc(title)}</h1>",
        "<table>",
        "<caption>Covered per group</caption>",
        "<tr><th>group</th><th>covered</th><th>total</th><th>%</th><th>unexpected</th></tr>",
    ]
    for group in (*GROUPS, "all"):
        t = totals[group]
        out.append(
            f'<tr><td>{esc(TITLES.get(group, group))}</td><td class="n">{t.hit}</td>'
            f'<td class="n">{t.of}</td><td class="n">{_percent(t)}</td>'
            f'<td class="n">{t.unexpected or ""}</td></tr>'
        )
    out.append("</table>")
    missed = report.missed()
    out.append(f"<h2>Never exercised ({len(missed)})</h2>")
    if missed:
        out.append("<ul>")
        out.extend(
            f"<li>{esc(TITLES[group])}: <code>{esc(item)}</code></li>" for group, item in missed
        )
        out.append("</ul>")
    else:
        out.append("<p>Every item was exercised.</p>")
    for group in GROUPS:
        out.append(f'<table id="{group}">')
        out.append(f"<caption>{esc(TITLES[group])}</caption>")
        out.append("<tr><th>item</th><th>count</th><th>status</th></tr>")
        for item, count, expected in report.items(group):
            injected = group == "rpcs" and item in report.injected
            if not expected:
                css = "injected" if injected else "unexpected"
                status = "injected by a fault" if injected else "UNEXPECTED"
            elif count == 0:
                css, status = "never", "never"
            else:
                css, status = "hit", "covered"
            out.append(
                f'<tr class="{css}"><td><code>{esc(label(group, item))}</code></td>'
                f'<td class="n">{count}</td><td>{status}</td></tr>'
            )
        out.append("</table>")
    out += ["</body>", "</html>", ""]
    return "\n".join(out)
