"""Shared by the benchmarks: start a benchmark server process, time things, print tables."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


@contextmanager
def server(kind: str, *extra: str) -> Iterator[tuple[int, str, str]]:
    """A ``_servers.py`` process: yields (port, workspace id, instance id)."""
    proc = subprocess.Popen(
        [sys.executable, str(HERE / "_servers.py"), kind, *extra],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        assert proc.stdout is not None
        port, wsid, iid = proc.stdout.readline().split()
        yield int(port), wsid, iid
    finally:
        proc.kill()
        proc.wait(timeout=10)


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[index]


def table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for n, row in enumerate(rows):
        lines.append("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)))
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)
