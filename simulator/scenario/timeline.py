"""A Gantt-style picture of a run: every instance's phases against simulated time.

Hand-written SVG (no plotting dependency, and byte-identical for the same journal): one row per
instance, a bar per phase, diamonds where a condition arrived (failure, timeout, stop request,
interruption), an "API calls" lane with a tick per RPC (red when it failed) and a "faults &
notes" lane. Scenarios mix seconds with hours, so the time axis is compressed: the gap between
two consecutive instants is drawn by the logarithm of its length, and the axis says so.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from html import escape
from pathlib import Path

from simulator.core.simtime import SimTime, parse_instant
from simulator.scenario.runner import Outcome, fmt_duration, request_ids

PHASE_COLOURS = {
    "IMAGEBUILD": "#8e6bd1",
    "PENDING": "#f2c14e",
    "CREATING": "#f29e4c",
    "INITIALIZING": "#4cb5f2",
    "RUNNING": "#3fb950",
    "INTERRUPTED": "#e5534b",
    "STOPPING": "#8b949e",
    "STOPPED": "#30363d",
}
LABEL_W = 300
ROW_H = 22
TOP = 70
MIN_LABEL_GAP = 56


@dataclass(slots=True)
class _Row:
    instance_id: str
    workspace_id: str
    label: str
    segments: list[tuple[str, SimTime, SimTime | None]] = field(default_factory=list)
    marks: list[tuple[SimTime, str]] = field(default_factory=list)


class _Axis:
    """Simulated instant -> x, by the logarithm of each gap between consecutive instants."""

    def __init__(self, instants: list[SimTime], x0: float) -> None:
        self.points = sorted(set(instants))
        self.xs: list[float] = []
        x = x0
        for i, t in enumerate(self.points):
            if i:
                gap = (t - self.points[i - 1]) / 1_000_000
                x += 6 + 16 * math.log2(1 + gap)
            self.xs.append(x)

    @property
    def end(self) -> float:
        return self.xs[-1] if self.xs else 0.0

    def x(self, t: SimTime) -> float:
        import bisect

        i = bisect.bisect_left(self.points, t)
        if i < len(self.points) and self.points[i] == t:
            return self.xs[i]
        if i == 0:
            return self.xs[0]
        if i >= len(self.points):
            return self.xs[-1]
        t0, t1 = self.points[i - 1], self.points[i]
        return self.xs[i - 1] + (self.xs[i] - self.xs[i - 1]) * (t - t0) / (t1 - t0)


def rows_of(outcome: Outcome) -> list[_Row]:
    """One row per instance in the order instances appeared, labelled with scenario names."""
    rows: dict[str, _Row] = {}
    per_workspace: dict[str, int] = {}
    for e in outcome.journal:
        if e["type"] != "transition":
            continue
        at = parse_instant(e["at"])
        row = rows.get(e["instance_id"])
        if row is None:
            wid = e["workspace_id"]
            per_workspace[wid] = per_workspace.get(wid, 0) + 1
            name = outcome.names.get(wid, wid)
            label = f"{name} #{per_workspace[wid]}"
            row = rows[e["instance_id"]] = _Row(e["instance_id"], wid, label)
        if e["from"] != e["to"]:
            if row.segments:
                phase, start, _ = row.segments[-1]
                row.segments[-1] = (phase, start, at)
            row.segments.append((e["to"], at, None))
        if e["cause"] not in ("start", "step"):
            row.marks.append((at, e["cause"]))
    return list(rows.values())


def render_svg(outcome: Outcome) -> str:
    rows = rows_of(outcome)
    rpcs = [e for e in outcome.journal if e["type"] == "rpc"]
    instants = [outcome.start, outcome.end]
    instants += [parse_instant(e["at"]) for e in outcome.journal]
    instants += [m.at for m in outcome.markers]
    axis = _Axis(instants, LABEL_W + 10)
    width = int(axis.end + 40)
    lanes = 2
    height = TOP + (len(rows) + lanes) * ROW_H + 60
    out: list[str] = [
        '<svg xmlns="http://www.w3.org/2000/svg" version="1.1"'
        f' width="{width}" height="{height}" viewBox="0 0 {width} {height}"'
        ' font-family="DejaVu Sans, Arial, sans-serif" font-size="12">',
        f"<title>gitpod-sim scenario {escape(outcome.scenario.name)}</title>",
        f'<rect x="0" y="0" width="{width}" height="{height}" fill="#ffffff"/>',
        f'<text x="10" y="22" font-size="16" font-weight="bold">'
        f"{escape(outcome.scenario.name)}: {escape(outcome.scenario.title)}</text>",
        f'<text x="10" y="42" fill="#57606a">simulated {fmt_duration(outcome.simulated)},'
        f" seed {outcome.scenario.seed}, {'passed' if outcome.ok else 'FAILED'};"
        " time axis compressed: each gap drawn by the logarithm of its length</text>",
    ]
    # legend
    x = LABEL_W + 10
    for phase, colour in PHASE_COLOURS.items():
        out.append(f'<rect x="{x}" y="50" width="10" height="10" fill="{colour}"/>')
        out.append(f'<text x="{x + 14}" y="59" font-size="10">{phase}</text>')
        x += 24 + 7 * len(phase)
    # time axis
    y_axis = TOP + (len(rows) + lanes) * ROW_H + 8
    out.append(
        f'<line x1="{LABEL_W + 10}" y1="{y_axis}" x2="{axis.end:.1f}" y2="{y_axis}"'
        ' stroke="#57606a"/>'
    )
    last_label = -1e9
    for t, tx in zip(axis.points, axis.xs, strict=True):
        out.append(
            f'<line x1="{tx:.1f}" y1="{TOP}" x2="{tx:.1f}" y2="{y_axis + 4}"'
            ' stroke="#d0d7de" stroke-width="0.5"/>'
        )
        if tx - last_label >= MIN_LABEL_GAP:
            out.append(
                f'<text x="{tx:.1f}" y="{y_axis + 18}" font-size="10" text-anchor="middle">'
                f"+{fmt_duration(t - outcome.start)}</text>"
            )
            last_label = tx
    # lanes: API calls, faults and notes
    y = TOP
    out.append(f'<text x="10" y="{y + 15}" fill="#57606a">API calls ({len(rpcs)})</text>')
    for e in rpcs:
        tx = axis.x(parse_instant(e["at"]))
        colour = "#3fb950" if e["code"] == "OK" else "#e5534b"
        tip = f"{e['at']} {e['method']} by {e['caller']}: {e['code']} {e['message']}".strip()
        out.append(
            f'<line x1="{tx:.1f}" y1="{y + 4}" x2="{tx:.1f}" y2="{y + ROW_H - 4}"'
            f' stroke="{colour}" stroke-width="2"><title>{escape(tip)}</title></line>'
        )
    y += ROW_H
    out.append(f'<text x="10" y="{y + 15}" fill="#57606a">faults &amp; notes</text>')
    for m in outcome.markers:
        tx = axis.x(m.at)
        colour = "#e5534b" if m.kind == "fault" else "#0969da"
        out.append(
            f'<path d="M{tx:.1f},{y + 4} l5,12 l-10,0 z" fill="{colour}">'
            f"<title>{escape(m.kind)}: {escape(m.text)}</title></path>"
        )
    y += ROW_H
    for row in rows:
        out.append(
            f'<text x="10" y="{y + 15}"><tspan font-weight="bold">{escape(row.label)}</tspan>'
            f' <tspan fill="#57606a" font-size="9">{escape(row.instance_id)}</tspan></text>'
        )
        for phase, start, end in row.segments:
            x0 = axis.x(start)
            x1 = axis.x(end) if end is not None else (x0 + 8 if phase == "STOPPED" else axis.end)
            colour = PHASE_COLOURS.get(phase, "#cccccc")
            until = "" if end is None else f" until +{fmt_duration(end - outcome.start)}"
            tip = f"{row.label} {phase} from +{fmt_duration(start - outcome.start)}{until}"
            out.append(
                f'<rect x="{x0:.1f}" y="{y + 3}" width="{max(x1 - x0, 1.0):.1f}"'
                f' height="{ROW_H - 6}" fill="{colour}"><title>{escape(tip)}</title></rect>'
            )
        for at, cause in row.marks:
            tx = axis.x(at)
            out.append(
                f'<path d="M{tx:.1f},{y + 2} l4,9 l-4,9 l-4,-9 z" fill="#1f2328"'
                f' stroke="#ffffff" stroke-width="0.5"><title>{escape(cause)} at +'
                f"{fmt_duration(at - outcome.start)}</title></path>"
            )
        for e in rpcs:
            ids = request_ids(e["request"])
            if ids.get("instance_id") == row.instance_id or (
                "instance_id" not in ids and ids.get("workspace_id") == row.workspace_id
            ):
                tx = axis.x(parse_instant(e["at"]))
                out.append(
                    f'<circle cx="{tx:.1f}" cy="{y + ROW_H / 2:.1f}" r="2" fill="#ffffff"'
                    f' stroke="#1f2328" stroke-width="0.5"><title>{escape(e["method"])}'
                    f" {escape(e['code'])}</title></circle>"
                )
        y += ROW_H
    out.append("</svg>")
    return "\n".join(out) + "\n"


def render_html(outcome: Outcome) -> str:
    """The SVG inside a small XHTML page (well-formed XML, so it parses like the SVG does)."""
    title = escape(f"gitpod-sim scenario {outcome.scenario.name}")
    return (
        '<html xmlns="http://www.w3.org/1999/xhtml">\n'
        f'<head><meta charset="utf-8"/><title>{title}</title></head>\n'
        f"<body>\n<h1>{escape(outcome.scenario.name)}</h1>\n"
        f"<p>{escape(outcome.scenario.description or outcome.scenario.title)}</p>\n"
        f"{render_svg(outcome)}</body>\n</html>\n"
    )


def write_timeline(outcome: Outcome, path: str | Path) -> None:
    p = Path(path)
    text = render_html(outcome) if p.suffix.lower() in (".html", ".htm") else render_svg(outcome)
    p.write_text(text, encoding="utf-8")


def instance_ids(outcome: Outcome) -> list[str]:
    return [row.instance_id for row in rows_of(outcome)]


__all__ = ["instance_ids", "render_html", "render_svg", "rows_of", "write_timeline"]
