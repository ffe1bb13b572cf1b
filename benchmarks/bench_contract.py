"""The contract suite's speed: steps per second in process and against a server per clock mode.

    python benchmarks/bench_contract.py [--runs N] [--repeat N] [--root DIR] [--in-process] [--json]

- In process (``run_contract(in_process())``, a fresh simulator per example on the in-memory
  channel): the CI budget (30 examples of up to 30 steps), best of ``--repeat``; steps per
  CPU-second of this process (the figure to compare: other work on the machine does not move it)
  and per wall second.
- Over TCP against a ``gitpod-sim serve`` process in each clock mode (manual, realtime
  ``--speed 50``, autojump), without and with the admin token: ``--runs`` runs of the CI budget
  in a row against the same process (the CI proof runs two), per run the wall time, steps per wall
  second, and the CPU seconds of both sides (this process and the server's, from /proc), whose
  sum is what a run costs the machine (client and server take turns: a run is about that long on
  a quiet machine).

``--root DIR`` measures another checkout's suite and server with this script (DIR/.venv, made
as the README says, runs it): run it once with and once without to compare, in the same moment.

Not part of CI: the figures depend on the machine.

Where the in-process steps go (``--in-process``: that figure only; sort the profile by
tottime, or sum tottime per package: betterproto2, h2, grpclib, hypothesis, the simulator)::

    python -m cProfile -o /tmp/contract.prof benchmarks/bench_contract.py --in-process --repeat 2

A figure the machine's load does not move (instructions; imports included, so compare two
checkouts the same way, each with its .pyc files written)::

    valgrind --tool=callgrind --callgrind-out-file=/dev/null \\
        python benchmarks/bench_contract.py --in-process --repeat 1
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from simulator.contract import (
    CI_EXAMPLES,
    CI_STEPS,
    RemoteOptions,
    contract_settings,
    in_process,
    remote,
    run_contract,
)

CLOCKS = {
    "manual": ("--clock", "manual"),
    "realtime x50": ("--clock", "realtime", "--speed", "50"),
    "autojump": ("--clock", "autojump"),
}
USERS = ("--user", "a=ta", "--user", "b=tb", "--admin-token", "adm")


def _settings() -> Any:
    return contract_settings(CI_EXAMPLES, CI_STEPS, shrink=False)


def in_process_rate(repeat: int) -> dict[str, float]:
    """The CI budget in process: the best run by CPU time."""
    best: dict[str, float] = {}
    for _ in range(repeat):
        cpu, wall = time.process_time(), time.perf_counter()
        report = run_contract(in_process(), _settings())
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        if not best or report.steps / cpu > best["steps_per_cpu_s"]:
            best = {
                "steps": report.steps,
                "cpu_s": cpu,
                "wall_s": wall,
                "steps_per_cpu_s": report.steps / cpu,
                "steps_per_s": report.steps / wall,
            }
    return best


class Server:
    """``gitpod-sim serve --port 0`` in a process of its own, listening."""

    def __init__(self, *args: str) -> None:
        script = Path(sys.executable).parent / "gitpod-sim"
        command = [str(script)] if script.exists() else [sys.executable, "-m", "simulator.cli"]
        self.proc = subprocess.Popen(
            [*command, "serve", "--port", "0", "--host", "127.0.0.1", "--quiet", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.startswith("listening on "):
                self.address = line.removeprefix("listening on ").strip()
                break
        else:
            raise RuntimeError("gitpod-sim serve exited before listening")

    def cpu_seconds(self) -> float:
        with open(f"/proc/{self.proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait(timeout=10)


def remote_runs(clock: str, admin: bool, runs: int) -> list[dict[str, float]]:
    """``runs`` CI budgets in a row against one server process."""
    server = Server(*CLOCKS[clock], *USERS)
    host, _, port = server.address.rpartition(":")
    options = RemoteOptions(host, int(port), "ta", "tb", "adm" if admin else None)
    out = []
    try:
        for _ in range(runs):
            served, cpu, wall = server.cpu_seconds(), time.process_time(), time.perf_counter()
            report = run_contract(remote(options), _settings())
            wall = time.perf_counter() - wall
            cpu = time.process_time() - cpu
            served = server.cpu_seconds() - served
            out.append({
                "steps": report.steps,
                "wall_s": wall,
                "steps_per_s": report.steps / wall,
                "client_cpu_s": cpu,
                "server_cpu_s": served,
                "steps_per_cpu_s": report.steps / (cpu + served),
            })  # fmt: skip
    finally:
        server.close()
    return out


def run(runs: int = 2, repeat: int = 3, over_tcp: bool = True) -> dict[str, Any]:
    result: dict[str, Any] = {"in_process": in_process_rate(repeat), "remote": []}
    for clock in CLOCKS if over_tcp else ():
        for admin in (False, True):
            measured = remote_runs(clock, admin, runs)
            result["remote"].append({
                "clock": clock,
                "control": admin,
                "runs": measured,
                "wall_s": statistics.median(r["wall_s"] for r in measured),
                "steps_per_s": statistics.median(r["steps_per_s"] for r in measured),
                "cpu_s": statistics.median(r["client_cpu_s"] + r["server_cpu_s"] for r in measured),
                "steps_per_cpu_s": statistics.median(r["steps_per_cpu_s"] for r in measured),
            })  # fmt: skip
    return result


def rows(result: dict[str, Any]) -> list[list[str]]:
    """Rows of benchmarks/run_all.py's table."""
    inproc = result["in_process"]
    out = [[
        "contract suite, in process, 30x30",
        f"{inproc['steps_per_cpu_s']:.0f} steps/CPU-s ({inproc['steps_per_s']:.0f} steps/s)",
        "-", "-", ">= 500 steps/s", "met" if inproc["steps_per_cpu_s"] >= 500 else "MISSED",
    ]]  # fmt: skip
    for row in result["remote"]:
        out.append([
            f"contract suite over TCP, {row['clock']}, {'admin' if row['control'] else 'API only'}",
            f"{row['wall_s']:.1f} s/run, {row['steps_per_s']:.0f} steps/s",
            f"client+server {row['cpu_s']:.1f} CPU-s", "-", "-", "-",
        ])  # fmt: skip
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=2, help="CI budgets per server process")
    parser.add_argument("--repeat", type=int, default=3, help="in-process runs (best of)")
    parser.add_argument("--json", action="store_true", help="one JSON line at the end")
    parser.add_argument("--root", help="measure the checkout in DIR instead of this one")
    parser.add_argument("--in-process", action="store_true", help="the in-process figure only")
    args = parser.parse_args()
    if args.root:
        argv = [a for a in sys.argv[1:] if a not in (args.root, "--root")]
        python = os.path.join(os.path.abspath(args.root), ".venv", "bin", "python")
        os.execv(python, [python, os.path.abspath(__file__), *argv])
    result = run(args.runs, args.repeat, over_tcp=not args.in_process)
    inproc = result["in_process"]
    print(
        f"in process: {inproc['steps']:.0f} steps, {inproc['cpu_s']:.2f} CPU-s,"
        f" {inproc['steps_per_cpu_s']:.0f} steps/CPU-s, {inproc['steps_per_s']:.0f} steps/s"
    )
    for row in result["remote"]:
        runs = ", ".join(
            f"{r['wall_s']:.1f} s ({r['steps_per_s']:.0f} steps/s, CPU {r['client_cpu_s']:.1f}"
            f"+{r['server_cpu_s']:.1f} s)"
            for r in row["runs"]
        )
        control = "admin token" if row["control"] else "API only"
        print(f"{row['clock']:>13}, {control:>11}: {runs}")
    if args.json:
        print(json.dumps(result))


if __name__ == "__main__":
    main()
