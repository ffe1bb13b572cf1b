"""Start-up, memory, and one full lifecycle over TCP with grpcio; each from a fresh process
(benchmarks/_probe.py), so imports and allocations are not shared."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from typing import Any

from common import HERE, ROOT

PY = sys.executable
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


def _probe(*args: str) -> Any:
    out = subprocess.run(
        [PY, str(HERE / "_probe.py"), *args], capture_output=True, text=True, env=ENV, timeout=900
    )
    if out.returncode != 0:
        raise RuntimeError(out.stderr)
    return json.loads(out.stdout.strip().splitlines()[-1])


def startup(runs: int = 5) -> dict[str, float]:
    """Process start to 'listening on' (median), against starting a bare Python.

    With bytecode, as an installed wheel has it (pip compiles at install): a shell with
    PYTHONDONTWRITEBYTECODE=1 and a checkout would otherwise measure compiling every module from
    source on every start. The bytecode goes to a cache of its own (PYTHONPYCACHEPREFIX), written
    by one start before the timed ones.

    Where the time goes, with the same bytecode cache (``-X importtime`` writes to stderr; run each
    once first to write the bytecode)::

        export PYTHONPYCACHEPREFIX=/tmp/pyc PYTHONPATH=.
        python -X importtime benchmarks/serve_until_listening.py 2> importtime.txt
        python -X importtime -c "import asyncio, grpclib.server, click"  # the stack's own floor

    Figures that do not move with the machine's load (other agents share it): instructions, not
    time: ``valgrind --tool=callgrind --callgrind-out-file=/dev/null python
    benchmarks/serve_until_listening.py`` ("Collected"), against the same for ``-c pass`` and the
    floor above."""
    import tempfile

    cli = [PY, "-m", "simulator.cli", "serve", "--port", "0", "--clock", "manual", "--quiet"]
    cache = tempfile.mkdtemp(prefix="gitpod-sim-pycache-")
    env = {k: v for k, v in ENV.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = cache
    serve, bare = [], []
    for round_ in range(runs + 1):
        begin = time.perf_counter()
        proc = subprocess.Popen(cli, stdout=subprocess.PIPE, text=True, env=env)
        assert proc.stdout is not None
        next(line for line in proc.stdout if line.startswith("listening on"))
        took = time.perf_counter() - begin
        proc.kill()
        proc.wait()
        if round_ == 0:
            continue  # wrote the bytecode
        serve.append(took)
        begin = time.perf_counter()
        subprocess.run([PY, "-c", "pass"], env=env, check=True)
        bare.append(time.perf_counter() - begin)
    return {
        "serve_ms": statistics.median(serve) * 1000,
        "python_ms": statistics.median(bare) * 1000,
        "in_process_ms": _probe("in-process") * 1000,
    }


def memory(sizes: tuple[int, ...] = (10_000, 100_000), entries: int = 100_000) -> dict[str, Any]:
    return {
        "per_workspace": {n: _probe("workspace-memory", str(n)) for n in sizes},
        "per_journal_entry": _probe("journal-memory", str(entries)),
    }


def lifecycle(runs: int = 20) -> dict[str, float]:
    return {"median_ms": _probe("lifecycle", str(runs)) * 1000}


if __name__ == "__main__":
    print(startup())
    print(memory())
    print(lifecycle())
