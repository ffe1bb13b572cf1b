"""Issue 19 item 3, the bounded version of ``benchmarks/bench_autojump.py``: a blocking grpcio
client that closes its listen stream at RUNNING and then stops the workspace, on an autojump
server with the default grace, while CPU burners load the machine: no timeout fires early.
(The 1,000-lifecycle figure, before and after the default changed, is the benchmark's.)"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_autojump import run_lifecycles  # noqa: E402

LIFECYCLES = 60


def test_the_default_grace_holds_under_load() -> None:
    early, took = run_lifecycles(LIFECYCLES, burner_count=2, timeout=30.0)
    assert early == 0, f"{early} of {LIFECYCLES} lifecycles timed out before the client's stop"
    assert took < 60
