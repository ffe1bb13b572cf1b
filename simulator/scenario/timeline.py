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
ROW_H = 22
MIN_WIDTH = 720
MARGIN = 10
MIN_LABEL_GAP = 56
LEGEND_ROW_H = 16


def text_width(text: str, size: float, bold: bool = False) -> float:
    """An upper estimate of ``text``'s width in DejaVu Sans (the font the SVG asks for first) at
    ``size`` px: SVG has no text metrics, so the layout reserves room by this estimate (a test
    renders the picture with rsvg-convert and checks that the real text fits)."""
    width = 0.0
    for c in text:
        if c.isupper() or c.isdigit() or c in "#%&@MW":
            width += 0.72
        elif c in " .,:;'|!il":
            width += 0.34
        elif c in "()[]{}-/+":
            width += 0.42
        else:
            width += 0.62
    return width * size * (1.1 if bold else 1.0)


def wrap(text: str, size: float, width: float, bold: bool = False) -> list[str]:
    """``text`` in lines of at most ``width`` px (words are never split)."""
    lines: list[str] = []
    current = ""
    for word in text.split():
        candidate = f"{current} {word}" if current else word
        if current and text_width(candidate, size, bold) > width:
            lines.append(current)
            current = word
        else:
            current = candidate
    return [*lines, current] if current else lines


@dataclass(slots=True)
class _Row:
    instance_id: str
    workspace_id: str
    label: str
    segments: list[tuple[str, SimTime, SimTime | None]] = field(default_factory=list)
    marks: list[tuple[SimTime, str]] = field(default_factory=list)


class _Axis:
    """Simulated instant -> x, by the logarithm of each gap between consecutive instants."""

    def __init__(self, instants: list[SimTime], x0: float, min_length: float = 0.0) -> None:
        self.points = sorted(set(instants))
        steps = [0.0]
        for prev, t in zip(self.points, self.points[1:], strict=False):
            steps.append(6 + 16 * math.log2(1 + (t - prev) / 1_000_000))
        total = sum(steps)
        scale = min_length / total if total and total < min_length else 1.0  # fill the width
        self.xs: list[float] = []
        x = x0
        for step in steps:
            x += step * scale
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


# What every mark means, in the legend: (shape, colour, text).
MARK_LEGEND = (
    ("diamond", "#1f2328", "condition (failure, timeout, stop request, interruption)"),
    ("dot", "#ffffff", "API call about this instance"),
    ("tick", "#3fb950", "API call, OK"),
    ("tick", "#e5534b", "API call, failed"),
    ("triangle", "#e5534b", "fault"),
    ("triangle", "#0969da", "note"),
)


def _shape(kind: str, x: float, y: float, colour: str, tip: str = "", k: float = 1.0) -> str:
    """A mark centred on (x, y) at scale ``k``: the same shape in the picture and its legend."""
    title = f"<title>{escape(tip)}</title>" if tip else ""
    if kind == "diamond":
        return (
            f'<path d="M{x:.1f},{y - 9 * k:.1f} l{4 * k:g},{9 * k:g} l{-4 * k:g},{9 * k:g}'
            f' l{-4 * k:g},{-9 * k:g} z" fill="{colour}" stroke="#ffffff" stroke-width="0.5">'
            f"{title}</path>"
        )
    if kind == "dot":
        return (
            f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{2 * k:g}" fill="{colour}" stroke="#1f2328"'
            f' stroke-width="0.5">{title}</circle>'
        )
    if kind == "tick":
        return (
            f'<line x1="{x:.1f}" y1="{y - 7 * k:.1f}" x2="{x:.1f}" y2="{y + 7 * k:.1f}"'
            f' stroke="{colour}" stroke-width="2">{title}</line>'
        )
    if kind == "swatch":
        return f'<rect x="{x - 5:.1f}" y="{y - 5:.1f}" width="10" height="10" fill="{colour}"/>'
    return (
        f'<path d="M{x:.1f},{y - 6 * k:.1f} l{5 * k:g},{12 * k:g} l{-10 * k:g},0 z"'
        f' fill="{colour}">{title}</path>'
    )


def _legend(width: float, y: float) -> tuple[list[str], float]:
    """Every phase colour and every mark with what it means, flowed into lines that fit
    ``width``; answers the SVG elements and the legend's height."""
    items = [("swatch", colour, phase) for phase, colour in PHASE_COLOURS.items()]
    items += list(MARK_LEGEND)
    out: list[str] = []
    x, line = float(MARGIN), 0
    for kind, colour, text in items:
        w = 16 + text_width(text, 10) + 14
        if x > MARGIN and x + w > width - MARGIN:
            x, line = float(MARGIN), line + 1
        cy = y + LEGEND_ROW_H * line - 4
        out.append(_shape(kind, x + 5, cy, colour, k=0.6 if kind == "diamond" else 0.8))
        out.append(f'<text x="{x + 16:.1f}" y="{cy + 4:.1f}" font-size="10">{escape(text)}</text>')
        x += w
    return out, (line + 1) * LEGEND_ROW_H


def render_svg(outcome: Outcome) -> str:
    rows = rows_of(outcome)
    rpcs = [e for e in outcome.journal if e["type"] == "rpc"]
    instants = [outcome.start, outcome.end]
    instants += [parse_instant(e["at"]) for e in outcome.journal]
    instants += [m.at for m in outcome.markers]
    # The label column is as wide as its longest label: labels never reach the bars.
    lane_labels = [f"API calls ({len(rpcs)})", "faults & notes"]
    label_w = max(
        [text_width(t, 12) for t in lane_labels]
        + [text_width(r.label, 12, bold=True) + 6 + text_width(r.instance_id, 9) for r in rows]
    )
    x0 = MARGIN + label_w + 14
    axis = _Axis(instants, x0, MIN_WIDTH - x0 - 40)
    width = int(axis.end + 40)
    title = f"{outcome.scenario.name}: {outcome.scenario.title}"
    title_lines = wrap(title, 16, width - 2 * MARGIN, bold=True)
    subtitle = (
        f"simulated {fmt_duration(outcome.simulated)}, seed {outcome.scenario.seed},"
        f" {'passed' if outcome.ok else 'FAILED'}; time axis compressed: each gap drawn by the"
        " logarithm of its length"
    )
    subtitle_lines = wrap(subtitle, 12, width - 2 * MARGIN)
    y_title = 22
    y_sub = y_title + 20 * (len(title_lines) - 1) + 20
    y_legend = y_sub + 16 * (len(subtitle_lines) - 1) + 20
    legend, legend_h = _legend(width, y_legend)
    top = y_legend + legend_h + 8
    lanes = 2
    height = int(top + (len(rows) + lanes) * ROW_H + 40)
    out: list[str] = [
        '<svg xmlns="http://www.w3.org/2000/svg" version="1.1"'
        f' width="{width}" height="{height}" viewBox="0 0 {width} {height}"'
        ' font-family="DejaVu Sans, Arial, sans-serif" font-size="12">',
        f"<title>gitpod-sim scenario {escape(outcome.scenario.name)}</title>",
        f'<rect x="0" y="0" width="{width}" height="{height}" fill="#ffffff"/>',
    ]
    for n, line in enumerate(title_lines):
        out.append(
            f'<text x="{MARGIN}" y="{y_title + 20 * n}" font-size="16" font-weight="bold">'
            f"{escape(line)}</text>"
        )
    for n, line in enumerate(subtitle_lines):
        out.append(f'<text x="{MARGIN}" y="{y_sub + 16 * n}" fill="#57606a">{escape(line)}</text>')
    out += legend
    # time axis
    y_axis = top + (len(rows) + lanes) * ROW_H + 8
    out.append(
        f'<line x1="{x0}" y1="{y_axis}" x2="{axis.end:.1f}" y2="{y_axis}" stroke="#57606a"/>'
    )
    last_label = -1e9
    for t, tx in zip(axis.points, axis.xs, strict=True):
        out.append(
            f'<line x1="{tx:.1f}" y1="{top}" x2="{tx:.1f}" y2="{y_axis + 4}"'
            ' stroke="#d0d7de" stroke-width="0.5"/>'
        )
        if tx - last_label >= MIN_LABEL_GAP:
            out.append(
                f'<text x="{tx:.1f}" y="{y_axis + 18}" font-size="10" text-anchor="middle">'
                f"+{fmt_duration(t - outcome.start)}</text>"
            )
            last_label = tx
    # lanes: API calls, faults and notes
    y = top
    out.append(f'<text x="{MARGIN}" y="{y + 15}" fill="#57606a">{escape(lane_labels[0])}</text>')
    for e in rpcs:
        tx = axis.x(parse_instant(e["at"]))
        colour = "#3fb950" if e["code"] == "OK" else "#e5534b"
        tip = f"{e['at']} {e['method']} by {e['caller']}: {e['code']} {e['message']}".strip()
        out.append(_shape("tick", tx, y + ROW_H / 2, colour, tip))
    y += ROW_H
    out.append(f'<text x="{MARGIN}" y="{y + 15}" fill="#57606a">faults &amp; notes</text>')
    for m in outcome.markers:
        colour = "#e5534b" if m.kind == "fault" else "#0969da"
        out.append(_shape("triangle", axis.x(m.at), y + 10, colour, f"{m.kind}: {m.text}"))
    y += ROW_H
    for row in rows:
        out.append(
            f'<text x="{MARGIN}" y="{y + 15}"><tspan font-weight="bold">{escape(row.label)}'
            f'</tspan> <tspan fill="#57606a" font-size="9">{escape(row.instance_id)}</tspan>'
            "</text>"
        )
        for phase, start, end in row.segments:
            bx0 = axis.x(start)
            bx1 = axis.x(end) if end is not None else (bx0 + 8 if phase == "STOPPED" else axis.end)
            colour = PHASE_COLOURS.get(phase, "#cccccc")
            until = "" if end is None else f" until +{fmt_duration(end - outcome.start)}"
            tip = f"{row.label} {phase} from +{fmt_duration(start - outcome.start)}{until}"
            out.append(
                f'<rect x="{bx0:.1f}" y="{y + 3}" width="{max(bx1 - bx0, 1.0):.1f}"'
                f' height="{ROW_H - 6}" fill="{colour}"><title>{escape(tip)}</title></rect>'
            )
        for at, cause in row.marks:
            tip = f"{cause} at +{fmt_duration(at - outcome.start)}"
            out.append(_shape("diamond", axis.x(at), y + ROW_H / 2 + 1, "#1f2328", tip))
        for e in rpcs:
            ids = request_ids(e["request"])
            if ids.get("instance_id") == row.instance_id or (
                "instance_id" not in ids and ids.get("workspace_id") == row.workspace_id
            ):
                tip = f"{e['method']} {e['code']}"
                out.append(
                    _shape("dot", axis.x(parse_instant(e["at"])), y + ROW_H / 2, "#ffffff", tip)
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
