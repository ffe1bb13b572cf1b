"""A property-based contract suite for gitpod.v1.WorkspacesService, for any implementation.

Run it against the in-process simulator with ``pytest --pyargs simulator.contract``, or against a
running server with ``--gitpod-target HOST:PORT --gitpod-token T [--gitpod-token2 T]``. From
Python::

    from simulator.contract import in_process, run_contract
    run_contract(in_process())
"""

from simulator.contract.machine import GitpodContract
from simulator.contract.model import ContractViolation
from simulator.contract.options import (
    CI_EXAMPLES,
    CI_STEPS,
    contract_settings,
    in_process,
    machine_for,
    remote,
    run_contract,
)
from simulator.contract.target import InProcessTarget, RemoteOptions, RemoteTarget, Target

__all__ = [
    "CI_EXAMPLES",
    "CI_STEPS",
    "ContractViolation",
    "GitpodContract",
    "InProcessTarget",
    "RemoteOptions",
    "RemoteTarget",
    "Target",
    "contract_settings",
    "in_process",
    "machine_for",
    "remote",
    "run_contract",
]
