"""The contract suite as a pytest test: ``pytest --pyargs simulator.contract``.

In process by default; ``--gitpod-target HOST:PORT --gitpod-token T [--gitpod-token2 T]
[--gitpod-admin-token T]`` judges a running server instead (start it with ``--clock autojump``
so streams progress). ``--gitpod-examples`` and ``--gitpod-steps`` change the CI budget.
"""

from __future__ import annotations

import warnings

import pytest

from simulator.contract.options import (
    CI_EXAMPLES,
    CI_STEPS,
    LAST_RUN,
    clock_report,
    contract_settings,
    in_process,
    remote,
    remote_control_note,
    run_contract,
)
from simulator.contract.target import RemoteOptions


def _option(config: pytest.Config, name: str) -> object:
    try:
        return config.getoption(name)
    except ValueError:  # the gitpod_sim plugin is disabled: in-process defaults
        return None


def test_contract(request: pytest.FixtureRequest) -> None:
    """Random call sequences by two users (plus clock and faults where possible) keep the
    API's contract; a failure prints the shrunk sequence as code."""
    config = request.config
    examples = _option(config, "gitpod_examples")
    steps = _option(config, "gitpod_steps")
    settings = contract_settings(
        examples if isinstance(examples, int) else CI_EXAMPLES,
        steps if isinstance(steps, int) else CI_STEPS,
    )
    target = _option(config, "gitpod_target")
    if isinstance(target, str) and target:
        options = RemoteOptions.parse(
            target,
            _str(_option(config, "gitpod_token")),
            _str(_option(config, "gitpod_token2")),
            _str(_option(config, "gitpod_admin_token")),
            session_per_example=bool(_option(config, "gitpod_session_per_example")),
        )
        note = remote_control_note(options)
        if note:
            warnings.warn(note, stacklevel=1)
        try:
            report = run_contract(remote(options), settings)
        finally:
            _report(request)
    else:
        try:
            report = run_contract(in_process(), settings)
        finally:
            _report(request)
    assert report.steps > 0


def _report(request: pytest.FixtureRequest) -> None:
    """The run's size and speed (and the target's clock), at the end of pytest's output."""
    if not LAST_RUN:
        return
    line = f"{LAST_RUN[0].describe()}; target clock: {clock_report()}"
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    request.node.user_properties.append(("contract", line))
    if reporter is not None:
        request.config.add_cleanup(lambda: reporter.write_line(line))


def _str(value: object) -> str | None:
    return value if isinstance(value, str) else None
