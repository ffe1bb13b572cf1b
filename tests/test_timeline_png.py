"""The timeline picture as people see it: rendered to PNG by rsvg-convert (Debian's librsvg2-bin,
which .ci/run installs when missing), then checked on the pixels: every piece of text (title,
legend, labels, axis) lies inside the picture, row labels end before the first bar, and the legend
names every phase colour and every mark. Short and long runs, and a long title and names.

How: the SVG is rendered twice, as it is and with only its text (every shape removed), so the
ink of the text-only picture is where the real font put the text. Cost: about 3 s.
"""

from __future__ import annotations

import asyncio
import shutil
import struct
import subprocess
import xml.etree.ElementTree as ET
import zlib
from pathlib import Path

import pytest

from simulator.scenario import load
from simulator.scenario.cli import run_scenario
from simulator.scenario.runner import Outcome
from simulator.scenario.timeline import MARK_LEGEND, PHASE_COLOURS, ROW_H, render_svg

ROOT = Path(__file__).resolve().parent.parent
SVG = "{http://www.w3.org/2000/svg}"
SHAPES = {f"{SVG}rect", f"{SVG}line", f"{SVG}path", f"{SVG}circle"}


def read_png(data: bytes) -> tuple[int, int, list[bytes]]:
    """Width, height and rows of RGBA (or RGB) pixels of a non-interlaced 8-bit PNG."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, header = 8, b"", b""
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            header = body
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    width, height, depth, colour = struct.unpack(">IIBB", header[:10])
    assert depth == 8 and colour in (2, 6), (depth, colour)
    bpp = 4 if colour == 6 else 3
    raw, stride, rows, prev = zlib.decompress(idat), width * bpp, [], bytearray(width * bpp)
    for y in range(height):
        kind, line = (
            raw[y * (stride + 1)],
            bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)]),
        )
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b, c = prev[i], prev[i - bpp] if i >= bpp else 0
            if kind == 1:
                line[i] = (line[i] + a) & 255
            elif kind == 2:
                line[i] = (line[i] + b) & 255
            elif kind == 3:
                line[i] = (line[i] + (a + b) // 2) & 255
            elif kind == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append(bytes(line))
        prev = line
    return width, height, [bytes(r[i] for i in range(0, stride, bpp)) for r in rows]  # red only


def ink_columns(rows: list[bytes], y0: int, y1: int) -> list[int]:
    """x of every column with a non-white pixel between rows y0 and y1."""
    return sorted({x for row in rows[max(y0, 0) : y1] for x, red in enumerate(row) if red < 200})


@pytest.fixture(scope="module")
def rsvg() -> str:
    path = shutil.which("rsvg-convert")
    if path is None:
        pytest.skip("rsvg-convert is not installed (Debian's librsvg2-bin; .ci/run installs it)")
    return path


def render_png(rsvg: str, svg: str) -> tuple[int, int, list[bytes]]:
    result = subprocess.run(
        [rsvg, "-f", "png"], input=svg.encode(), capture_output=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return read_png(result.stdout)


def text_only(svg: str) -> str:
    root = ET.fromstring(svg)
    background = next(iter(root.iter(f"{SVG}rect")))
    for parent in list(root.iter()):
        for child in list(parent):
            if child.tag in SHAPES and child is not background:
                parent.remove(child)
    return ET.tostring(root, encoding="unicode")


async def outcome_of(path: Path) -> Outcome:
    outcome = await run_scenario(load(path))
    assert outcome.ok, outcome.failure
    return outcome


def long_names(tmp_path: Path) -> Path:
    """04-image-build-failure with a very long title and workspace name."""
    text = (ROOT / "scenarios" / "04-image-build-failure.toml").read_text()
    long_title = "A very long title " + "that goes on and on " * 8 + "until it ends"
    text = text.replace('"broken"', '"a-workspace-with-a-rather-long-scenario-name"')
    start = text.index("title = ")
    end = text.index("\n", start)
    path = tmp_path / "long.toml"
    path.write_text(text[:start] + f'title = "{long_title}"' + text[end:])
    return path


@pytest.mark.parametrize(
    "case", ["04-image-build-failure", "10-stop-in-each-phase", "12-two-users-isolated", "long"]
)
def test_timeline_png_text_fits_and_labels_clear_the_bars(
    rsvg: str, case: str, tmp_path: Path
) -> None:
    path = long_names(tmp_path) if case == "long" else ROOT / "scenarios" / f"{case}.toml"
    svg = render_svg(asyncio.run(outcome_of(path)))
    root = ET.fromstring(svg)
    width, height = int(root.get("width", "0")), int(root.get("height", "0"))
    full_w, full_h, _ = render_png(rsvg, svg)
    assert (full_w, full_h) == (width, height)
    w, h, rows = render_png(rsvg, text_only(svg))
    ink = ink_columns(rows, 0, h)
    assert ink and ink[0] >= 2 and ink[-1] <= w - 3, f"text runs off the picture: {ink[-3:]} of {w}"
    assert not ink_columns(rows, h - 2, h), "text runs off the bottom"

    bars = [r for r in root.iter(f"{SVG}rect") if r.find(f"{SVG}title") is not None]
    assert bars
    first_bar = min(float(r.get("x", "0")) for r in bars)
    band_top = int(min(float(r.get("y", "0")) for r in bars)) - 2 * ROW_H
    band_bottom = int(max(float(r.get("y", "0")) for r in bars)) + ROW_H
    labels = ink_columns(rows, band_top, band_bottom)
    assert labels[-1] < first_bar - 2, (
        f"a row label reaches x={labels[-1]}, bars start at {first_bar}"
    )

    texts = [t.text or "" for t in root.iter(f"{SVG}text")]
    for name in [*PHASE_COLOURS, *(text for _, _, text in MARK_LEGEND)]:
        assert name in texts, f"the legend does not name {name}"
    if case == "long":
        title_lines = [t for t in root.iter(f"{SVG}text") if t.get("font-size") == "16"]
        assert len(title_lines) > 1, "a long title wraps"
