"""Run every benchmark and print one table: figure, baseline, ratio, target, verdict.

    .venv/bin/python benchmarks/run_all.py            # about 7 minutes on 2 cores
    .venv/bin/python benchmarks/run_all.py --suite    # also times the test suite under -n 2

Not part of CI: the figures depend on the machine. Ratios against a baseline measured in the same
run are what to compare between machines. The targets are issue 17's (those it does not name, the
benchmark issue's).
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import bench_contract
import bench_fanout
import bench_in_process
import bench_misc
import bench_sessions
import bench_unary
import engine_scale
from common import ROOT, table


def _verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


def _suite() -> list[list[str]]:
    def timed(*args: str) -> float:
        begin = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-x", *args],
            cwd=ROOT,
            capture_output=True,
            env={**os.environ, "GITPOD_SIM_LOAD_SECONDS": "5"},
            check=True,
        )
        return time.perf_counter() - begin

    serial = timed("-p", "no:xdist")
    parallel = timed("-n", "2")
    return [
        ["test suite, 1 worker / 2 workers", f"{serial:.0f} s / {parallel:.0f} s", "",
         f"{serial / parallel:.2f}x", "> 1x (scales)", _verdict(parallel < serial)],
    ]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--suite", action="store_true", help="also time the suite under -n 2")
    args = parser.parse_args()
    rows = [["benchmark", "figure", "baseline", "ratio", "target", "verdict"]]

    for row in bench_unary.run():
        sim, bare = row["sim"], row["bare"]
        ratio = sim["rps"] / bare["rps"]
        rows.append([
            f"GetWorkspace, {row['callers']} callers",
            f"{sim['rps']:.0f} rps, p50 {sim['p50_ms']:.1f} ms, p99 {sim['p99_ms']:.1f} ms",
            f"bare grpclib {bare['rps']:.0f} rps", f"{ratio:.2f}",
            ">= 0.90" if row["callers"] > 1 else "-",  # issue 17: 64 callers too
            _verdict(ratio >= 0.9) if row["callers"] > 1 else "-",
        ])  # fmt: skip

    for row in bench_fanout.run():
        sim, bare = row["sim"], row["bare"]
        least = 0.6 if row["name"].endswith("1000 instances") else 0.5  # issue 17: 0.6 there
        ratio = sim["rate"] / bare["rate"]
        rows.append([
            f"fan-out, {row['name']}", f"{sim['rate']:.0f} msg/s",
            f"bare stream {bare['rate']:.0f} msg/s", f"{ratio:.2f}", f">= {least}",
            _verdict(ratio >= least),
        ])  # fmt: skip

    gc.set_threshold(50_000, 20, 100)
    rates = {}
    for n in (10_000, 100_000):
        changes, cpu = engine_scale.run(n)
        rates[n] = changes / cpu
    growth = rates[100_000] / rates[10_000]
    gc.disable()
    quiet = [changes / cpu for changes, cpu in (engine_scale.run(n) for n in (10_000, 100_000))]
    gc.enable()
    floor = [c / cpu for c, cpu in (engine_scale.interpreter_floor(n) for n in (10_000, 100_000))]
    rows.append([
        "engine, transitions per CPU-second",
        f"{rates[10_000]:,.0f} (10k), {rates[100_000]:,.0f} (100k)",
        "10k workspaces", f"{growth:.2f}", ">= 200,000/s, >= 0.95",
        _verdict(rates[10_000] >= 200_000 and growth >= 0.95),
    ])  # fmt: skip
    rows.append([
        "engine, 100k against 10k, collector off / interpreter floor",
        f"{quiet[1] / quiet[0]:.2f} / {floor[1] / floor[0]:.2f}",
        "the same data shape, no engine (engine_scale.interpreter_floor)", "-", "-", "-",
    ])  # fmt: skip

    start = bench_misc.startup()
    rows.append([
        "start-up, process to 'listening on'", f"{start['serve_ms']:.0f} ms",
        f"python -c pass {start['python_ms']:.0f} ms", "-", "<= 120 ms",
        _verdict(start["serve_ms"] <= 120),
    ])  # fmt: skip
    rows.append([
        "start-up, Simulator + in-memory channel", f"{start['in_process_ms']:.2f} ms", "-", "-",
        "<= 5 ms", _verdict(start["in_process_ms"] <= 5),
    ])  # fmt: skip

    mem = bench_misc.memory()
    for n, per in mem["per_workspace"].items():
        rows.append([
            f"memory per stopped workspace ({n:,})", f"{per:.0f} B", "-", "-", "<= 1024 B",
            _verdict(per <= 1024),
        ])  # fmt: skip
    per_entry = mem["per_journal_entry"]
    rows.append([
        "memory per journal entry", f"{per_entry:.0f} B", "-", "-", "<= 300 B",
        _verdict(per_entry <= 300),
    ])  # fmt: skip

    life = bench_misc.lifecycle()
    rows.append([
        "lifecycle over TCP, autojump, grpcio", f"{life['median_ms']:.1f} ms", "-", "-",
        "<= 40 ms", _verdict(life["median_ms"] <= 40),
    ])  # fmt: skip

    test = bench_in_process.run()
    rows.append([
        "in-process test: Simulator + channel + create -> RUNNING -> STOPPED",
        f"{test['sim_ms']:.2f} ms", f"bare grpclib, same calls {test['bare_ms']:.2f} ms",
        f"{test['bare_ms'] / test['sim_ms']:.2f}", "<= 1.0 ms", _verdict(test["sim_ms"] <= 1.0),
    ])  # fmt: skip

    sessions = subprocess.run(
        [sys.executable, os.path.join(os.path.dirname(__file__), "bench_sessions.py"), "--json"],
        capture_output=True, text=True, check=True, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    rows += bench_sessions.rows(json.loads(sessions.stdout.strip().splitlines()[-1]))

    contract = subprocess.run(
        [sys.executable, os.path.join(os.path.dirname(__file__), "bench_contract.py"), "--json"],
        capture_output=True, text=True, check=True, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    rows += bench_contract.rows(json.loads(contract.stdout.strip().splitlines()[-1]))

    if args.suite:
        rows += _suite()

    python = sys.version.split()[0]
    print(f"gitpod-sim benchmarks, {dt.date.today()}, {os.cpu_count()} cores, Python {python}")
    print(table(rows))


if __name__ == "__main__":
    main()
