"""How the contract suite is configured: Hypothesis settings and the target to judge.

CI runs a fixed, derandomised budget so a run is repeatable and quick; the same options let a
team run longer searches, or point the suite at a server with ``--gitpod-target``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass

from hypothesis import HealthCheck, settings
from hypothesis import Phase as HypothesisPhase
from hypothesis.stateful import run_state_machine_as_test

from simulator.contract.machine import GitpodContract, RunStats
from simulator.contract.model import ContractViolation
from simulator.contract.target import (
    ClockWatch,
    InProcessTarget,
    RemoteOptions,
    RemoteTarget,
    SimFactory,
    Target,
    default_simulator,
)

CI_EXAMPLES = 30
"""Examples (call sequences) per run in CI."""
CI_STEPS = 30
"""Steps (calls) per example in CI."""


def contract_settings(
    examples: int = CI_EXAMPLES, steps: int = CI_STEPS, *, shrink: bool = True, seed: int = 0
) -> settings:
    """Deterministic settings: no deadline (steps run many calls), no example database.

    ``seed`` picks another deterministic search (derandomize ignores it, so it is mixed in via
    the number of examples' database key instead: different seeds use ``derandomize=False``).
    """
    phases = [HypothesisPhase.explicit, HypothesisPhase.generate]
    if shrink:
        phases.append(HypothesisPhase.shrink)
    return settings(
        max_examples=examples,
        stateful_step_count=steps,
        deadline=None,
        derandomize=seed == 0,
        database=None,
        phases=phases,
        print_blob=False,
        report_multiple_bugs=False,
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.filter_too_much,
            HealthCheck.data_too_large,
        ],
    )


def machine_for(
    factory: Callable[[], Target], name: str = "GitpodContract"
) -> type[GitpodContract]:
    """A :class:`GitpodContract` whose examples each judge a fresh target from ``factory``."""
    return type(name, (GitpodContract,), {"target_factory": staticmethod(factory)})


def in_process(
    factory: SimFactory = default_simulator, name: str = "GitpodContract"
) -> type[GitpodContract]:
    """The suite against simulators built by ``factory`` (the real one by default)."""
    if factory is default_simulator and name == "GitpodContract":
        return GitpodContract
    return machine_for(lambda: InProcessTarget(factory), name)


def remote(options: RemoteOptions) -> type[GitpodContract]:
    """The suite against a running server (API calls only until a control plane exists)."""
    watch = ClockWatch()
    left_building: set[str] = set()

    def target() -> Target:
        made = RemoteTarget(options)
        made.watch = watch  # one watch for the whole run: timestamps across examples
        made.left_building = left_building  # one build per repository and run left to finish
        LAST_TARGET[:] = [made]
        return made

    return machine_for(target, "RemoteGitpodContract")


@dataclass(frozen=True, slots=True)
class RunReport:
    """What one run did: examples, steps (rule calls) and wall time."""

    examples: int
    steps: int
    seconds: float

    @property
    def steps_per_second(self) -> float:
        return self.steps / self.seconds if self.seconds > 0 else 0.0

    def describe(self) -> str:
        return (
            f"contract: {self.examples} examples, {self.steps} steps in {self.seconds:.1f} s"
            f" ({self.steps_per_second:.0f} steps/s)"
        )


LAST_RUN: list[RunReport] = []
"""The report of the latest run in this process (also when it failed)."""
LAST_TARGET: list[Target] = []
"""The latest remote run's latest target (what it found of the clock)."""


def clock_report() -> str:
    """What the latest remote run found of its target's clock."""
    if not LAST_TARGET:
        return "in process, manual"
    made = LAST_TARGET[0]
    if made.control:
        return f"{made.clock_mode} (from the control plane)"
    return f"no control plane, {made.watch.describe()}"


def run_contract(machine: type[GitpodContract], config: settings | None = None) -> RunReport:
    """Run the state machine; raises (with Hypothesis' falsifying example) when it fails.
    Answers how many examples and steps ran, and how long it took."""
    steps, examples = RunStats.steps, RunStats.examples
    RunStats.violation = None
    started = time.monotonic()
    try:
        # A function, not the class: Hypothesis digests the factory's source, and CPython 3.11
        # finds a class's source with ast.parse, which fails ("AST constructor recursion depth
        # mismatch") while another thread parses too; a function's source needs no ast.
        def new_machine() -> GitpodContract:
            return machine()

        run_state_machine_as_test(new_machine, settings=config or contract_settings())  # type: ignore[arg-type]  # a factory, as its docs say
    except Exception as exc:
        if isinstance(exc, ContractViolation):
            raise
        held = _held_violation(exc)
        if held is not None:
            # Hypothesis wraps a failure it could not reproduce (a moving target) in a group.
            held.add_note(f"(Hypothesis reported: {str(exc).splitlines()[0]})")
            raise held from exc
        found = RunStats.violation
        if found is None:
            raise
        # A moving target did not fail again when Hypothesis replayed the example (timing):
        # the violation itself is the finding, with the steps that led to it.
        violation, log, name = found
        violation.add_note(
            f"(Hypothesis could not replay it: {type(exc).__name__}; the target's clock moves.)"
            f" The steps of the failing example of {name}, as run:"
        )
        for line in log:
            violation.add_note(f"  {line}")
        raise violation from exc
    finally:
        report = RunReport(
            RunStats.examples - examples, RunStats.steps - steps, time.monotonic() - started
        )
        LAST_RUN[:] = [report]
    return report


def _held_violation(exc: BaseException) -> ContractViolation | None:
    if isinstance(exc, ContractViolation):
        return exc
    for inner in getattr(exc, "exceptions", ()) or ():
        found = _held_violation(inner)
        if found is not None:
            return found
    return None


def remote_control_note(options: RemoteOptions) -> str:
    """Why the clock and fault rules cannot run against this target (probes it once)."""
    target = RemoteTarget(options)

    async def probe() -> str:
        async with AsyncExitStack() as stack:
            await target.open(stack)
        return target.control_note

    return asyncio.run(probe())
