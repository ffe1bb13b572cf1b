"""The contract suite passes on the real simulator and fails on every broken one.

Each broken simulator (tests/broken_simulators.py) is judged by the suite's own state machine
under the CI settings (derandomised, no shrinking, so each proof is quick and repeatable); one
run checks that the printed sequence is code that fails again when pasted.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable

import pytest
from broken_simulators import BROKEN
from server_process import ServerProcess, command

from simulator import Simulator
from simulator.contract import (
    CI_EXAMPLES,
    CI_STEPS,
    ContractViolation,
    contract_settings,
    in_process,
    run_contract,
)

pytest_plugins = ["pytester"]


def test_real_simulator_keeps_the_contract() -> None:
    started = time.monotonic()
    run_contract(in_process(), contract_settings(CI_EXAMPLES, CI_STEPS))
    assert time.monotonic() - started < 60


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_contract_suite_catches_broken_simulator(name: str) -> None:
    machine = in_process(BROKEN[name], f"Broken_{name}")
    with pytest.raises(ContractViolation):
        run_contract(machine, contract_settings(CI_EXAMPLES, CI_STEPS, shrink=False))


def test_failure_prints_a_pasteable_sequence() -> None:
    """Shrinking is Hypothesis' (slow on 2 cores): here only that the printed code reruns."""
    factory: Callable[[], Simulator] = BROKEN["cross_user_leak"]
    machine = in_process(factory, "LeakyContract")
    with pytest.raises(ContractViolation) as info:
        run_contract(machine, contract_settings(CI_EXAMPLES, CI_STEPS, shrink=False))
    notes = [n for n in getattr(info.value, "__notes__", []) if not n.startswith("Failing")]
    code = "\n".join(notes)
    assert code.startswith("state = LeakyContract()"), code
    assert code.rstrip().endswith("state.teardown()"), code
    with pytest.raises(ContractViolation):
        exec(code, {"LeakyContract": machine})  # pasted as is, it fails again


def test_contract_suite_runs_against_a_server_without_control_plane(
    pytester: pytest.Pytester,
) -> None:
    """--gitpod-target: API calls only (clock and fault rules skip), two users, autojump."""
    server = ServerProcess("--clock", "autojump", "--quiet", "--user", "a=ta", "--user", "b=tb")
    try:
        result = pytester.runpytest_subprocess(
            "--pyargs",
            "simulator.contract",
            "-p",
            "no:cacheprovider",
            "--gitpod-target",
            server.address,
            "--gitpod-token",
            "ta",
            "--gitpod-token2",
            "tb",
            "--gitpod-examples",
            "3",
            "--gitpod-steps",
            "12",
            "-W",
            "default",
        )
    finally:
        server.close()
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*clock and fault rules skipped*"])


def test_pyargs_runs_in_process_by_default(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest_subprocess(
        "--pyargs", "simulator.contract", "-p", "no:cacheprovider",
        "--gitpod-examples", "3", "--gitpod-steps", "10",
    )  # fmt: skip
    result.assert_outcomes(passed=1)


def test_contract_suite_steers_a_server_through_its_control_plane(
    pytester: pytest.Pytester,
) -> None:
    """--gitpod-admin-token: the clock and fault rules run remotely over SimulatorService."""
    server = ServerProcess(
        "--clock", "manual", "--quiet", "--user", "a=ta", "--user", "b=tb", "--admin-token", "adm"
    )
    try:
        result = pytester.runpytest_subprocess(
            "--pyargs", "simulator.contract", "-p", "no:cacheprovider",
            "--gitpod-target", server.address, "--gitpod-token", "ta", "--gitpod-token2", "tb",
            "--gitpod-admin-token", "adm", "--gitpod-examples", "3", "--gitpod-steps", "15",
            "-W", "default",
        )  # fmt: skip
        journal = subprocess.run(
            [*command("ctl", "--target", server.address, "--admin-token", "adm", "journal")],
            capture_output=True,
            text=True,
            timeout=30,
        ).stdout
    finally:
        server.close()
    result.assert_outcomes(passed=1)
    assert "clock and fault rules skipped" not in result.stdout.str()
    assert "SimulatorService/Advance" in journal or "SimulatorService/AddFault" in journal
