"""The wall-clock rows that swing most, measured in two checkouts in turn.

    .venv/bin/python benchmarks/interleaved.py OTHER_CHECKOUT [ROUNDS]

Each round runs ``bench_unary.run()``, ``bench_fanout.run()`` and ``bench_misc.lifecycle()`` in
this checkout's venv and then in OTHER_CHECKOUT's (``OTHER/.venv``, made as the README says),
alternating which goes first, and prints each round's ratios and, at the end, each row sorted:
single runs of these rows swing by a tenth to a third on a 2-core machine, so a difference
smaller than that needs the spread of several rounds taken in the same minutes. Not part of CI.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent.parent

CODE = r"""
import json, sys
sys.path.insert(0, "benchmarks")
if __name__ == "__main__":
    import bench_fanout, bench_misc, bench_unary
    out = {}
    for row in bench_unary.run():
        out[f"GetWorkspace {row['callers']} callers"] = row["sim"]["rps"] / row["bare"]["rps"]
        if row["callers"] == 64:
            out["GetWorkspace 64 callers, simulator rps"] = row["sim"]["rps"]
    for row in bench_fanout.run():
        out["fan-out " + row["name"]] = row["sim"]["rate"] / row["bare"]["rate"]
    out["lifecycle over TCP ms"] = bench_misc.lifecycle()["median_ms"]
    print("JSON" + json.dumps(out))
"""


def _round(root: Path) -> dict[str, Any]:
    done = subprocess.run(
        [str(root / ".venv" / "bin" / "python"), "-c", CODE],
        cwd=root, capture_output=True, text=True, check=True,
    )  # fmt: skip
    line = [x for x in done.stdout.splitlines() if x.startswith("JSON")][-1]
    return dict(json.loads(line[4:]))


def main() -> None:
    other = Path(sys.argv[1]).resolve()
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    trees = {"this": HERE, other.name: other}
    results: dict[str, list[dict[str, Any]]] = {name: [] for name in trees}
    for n in range(rounds):
        order = list(trees.items()) if n % 2 == 0 else list(reversed(trees.items()))
        for name, root in order:
            figures = _round(root)
            results[name].append(figures)
            print(n, name, {k: round(v, 2) for k, v in figures.items()}, flush=True)
    for name, runs in results.items():
        print(name, {k: sorted(round(r[k], 2) for r in runs) for k in runs[0]})


if __name__ == "__main__":
    main()
