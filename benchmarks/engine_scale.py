"""How the pure engine's cost grows with the number of workspaces.

Runs N workspaces through a full lifecycle (create -> RUNNING -> stop -> STOPPED) for N = 10,000
and 100,000, and prints status changes per CPU-second and the ratio between the two sizes
(1.0 means the cost grows linearly), then the same ratio with the collector off and that of
:func:`interpreter_floor` (the engine's data shape with no engine: what the interpreter itself
loses from 10k to 100k). ``--coverage`` instead measures what counting coverage costs:
each size runs with and without a :class:`CoverageCounter` fed every status change (as the
``Simulator`` feeds it), alternately, best of three, and prints the overhead. Not part of CI; run
it by hand::

    .venv/bin/python benchmarks/engine_scale.py [--coverage] [N ...]
"""

from __future__ import annotations

import sys
import time

from simulator.core.coverage import CoverageCounter
from simulator.core.engine import Engine
from simulator.core.model import EngineEvent, StatusChange
from simulator.core.simtime import MINUTE


def run(n: int, counter: CoverageCounter | None = None) -> tuple[int, float]:
    """(status changes, CPU seconds) for n full lifecycles, 100 users, 50 repositories."""
    changes = 0
    status_change = counter.status_change if counter is not None else None

    def count(event: EngineEvent) -> None:
        nonlocal changes
        if type(event) is StatusChange:
            changes += 1
            if status_change is not None:
                status_change(event)

    engine = Engine(seed=1, observer=count)
    users = [engine.add_user(f"user{i}") for i in range(100)]
    start = time.process_time()
    created = [
        engine.create_workspace(users[i % 100], context_url=f"https://github.com/org/r{i % 50}")
        for i in range(n)
    ]
    engine.advance_to(engine.now + 5 * MINUTE)
    for ws in created:
        engine.stop_workspace(engine.users[ws.owner_id], ws.id)
    engine.advance_to(engine.now + 5 * MINUTE)
    return changes, time.process_time() - start


class _Record:
    """An instance's footprint without the engine: 22 slots, as ``model.Instance``."""

    __slots__ = tuple(f"s{i}" for i in range(22))


class _Event:
    __slots__ = ("at", "cancelled", "instance_id", "kind", "seq")


def interpreter_floor(n: int) -> tuple[int, float]:
    """(changes, CPU seconds) of the same data shape with no engine: n records (22 slots) kept by
    id in a dict, each with a 10-field status tuple and an owner list entry, then 8 passes in
    creation order, each pass an event made and dropped per record, a new status tuple and a
    change tuple collected in a list, as the engine's steps do. What its rate loses from 10k to
    100k is the interpreter's and the memory's own (allocator, collector, caches), not the
    engine's; ``main`` prints both ratios side by side."""
    start = time.process_time()
    records: dict[str, _Record] = {}
    owners: dict[int, list[_Record]] = {}
    for i in range(n):
        record = _Record()
        key = f"{i:08x}-0000-4000-8000-000000000000"
        record.s0 = (0, 0, key, "eu53", False, "", "", "", None, None)
        record.s1 = key
        records[key] = record
        owners.setdefault(i % 100, []).append(record)
    changes = 0
    for phase in range(8):
        fired = []
        for key, record in records.items():
            event = _Event()
            event.at, event.seq, event.kind, event.instance_id = phase, changes, None, key
            old = record.s0
            status = (old[0] + 1, phase, *old[2:])
            fired.append((phase, key, old[2], None, old, status, "step"))
            record.s0 = status
            record.s2 = event
            record.s2 = None
            changes += 1
    return changes, time.process_time() - start


def coverage_overhead(sizes: list[int], rounds: int = 3) -> None:
    print(f"{'workspaces':>10} {'without cpu s':>14} {'with cpu s':>11} {'overhead':>9}")
    for n in sizes:
        without: list[float] = []
        with_: list[float] = []
        for _ in range(rounds):
            without.append(run(n)[1])
            counter = CoverageCounter()
            with_.append(run(n, counter)[1])
            counter.report()  # what reading it costs is not on the hot path
        a, b = min(without), min(with_)
        print(f"{n:>10} {a:>14.3f} {b:>11.3f} {100 * (b - a) / a:>8.1f}%")


def main() -> None:
    import gc

    gc.set_threshold(50_000, 20, 100)  # as `gitpod-sim serve` does
    args = sys.argv[1:]
    measure_coverage = "--coverage" in args
    sizes = [int(a) for a in args if a != "--coverage"] or [10_000, 100_000]
    if measure_coverage:
        coverage_overhead(sizes)
        return
    rates = []
    print(f"{'workspaces':>10} {'status changes':>15} {'cpu s':>8} {'changes/cpu-s':>14}")
    for n in sizes:
        changes, cpu = run(n)
        rates.append(changes / cpu)
        print(f"{n:>10} {changes:>15} {cpu:>8.2f} {rates[-1]:>14,.0f}")
    if len(rates) > 1:
        ratio = rates[-1] / rates[0]
        print(f"rate at {sizes[-1]:,} / rate at {sizes[0]:,}: {ratio:.2f} (1.0 = linear)")
        gc.disable()
        quiet = [changes / cpu for changes, cpu in (run(n) for n in sizes)]
        gc.enable()
        print(f"the same with the collector off: {quiet[-1] / quiet[0]:.2f}")
        floor = [changes / cpu for changes, cpu in (interpreter_floor(n) for n in sizes)]
        print(
            f"the interpreter's own, same data shape and no engine: {floor[-1] / floor[0]:.2f}"
            " (interpreter_floor)"
        )


if __name__ == "__main__":
    main()
