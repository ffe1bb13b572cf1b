"""gitpod-sim: an in-memory, deterministic simulator of Gitpod's gitpod.v1.WorkspacesService.

The public Python API::

    from simulator import Simulator, ClockMode, LifecyclePlan

See ARCHITECTURE.md for the layers and README.md for examples.
"""

from simulator.clock import ClockMode
from simulator.errors import SimError
from simulator.plan import BuildPolicy, Fixed, LifecyclePlan, LogNormal, Timeouts, Uniform
from simulator.runtime import Simulator, bound_port, to_duration
from simulator.transitions import Phase

__all__ = [
    "BuildPolicy",
    "ClockMode",
    "Fixed",
    "LifecyclePlan",
    "LogNormal",
    "Phase",
    "SimError",
    "Simulator",
    "Timeouts",
    "Uniform",
    "bound_port",
    "to_duration",
]
