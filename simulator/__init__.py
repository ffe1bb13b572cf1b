"""gitpod-sim: an in-memory, deterministic simulator of Gitpod's gitpod.v1.WorkspacesService.

The public Python API::

    from simulator import Simulator, ClockMode, LifecyclePlan

The names are loaded on first use (PEP 562), so ``import simulator.core.engine`` loads the pure
core only, not grpclib or asyncio. See ARCHITECTURE.md for the layers and README.md for examples.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from simulator.core.errors import SimError
    from simulator.core.plan import BuildPolicy, Fixed, LifecyclePlan, LogNormal, Timeouts, Uniform
    from simulator.core.transitions import Phase
    from simulator.server.clock import ClockMode
    from simulator.server.host import SESSION_KEY, SimServer
    from simulator.server.runtime import Simulator, bound_port, to_duration

_EXPORTS = {
    "BuildPolicy": "simulator.core.plan",
    "ClockMode": "simulator.server.clock",
    "Fixed": "simulator.core.plan",
    "LifecyclePlan": "simulator.core.plan",
    "LogNormal": "simulator.core.plan",
    "Phase": "simulator.core.transitions",
    "SESSION_KEY": "simulator.server.host",
    "SimError": "simulator.core.errors",
    "SimServer": "simulator.server.host",
    "Simulator": "simulator.server.runtime",
    "Timeouts": "simulator.core.plan",
    "Uniform": "simulator.core.plan",
    "bound_port": "simulator.server.runtime",
    "to_duration": "simulator.server.runtime",
}

__all__ = [
    "SESSION_KEY",
    "BuildPolicy",
    "ClockMode",
    "Fixed",
    "LifecyclePlan",
    "LogNormal",
    "Phase",
    "SimError",
    "SimServer",
    "Simulator",
    "Timeouts",
    "Uniform",
    "bound_port",
    "to_duration",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'simulator' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
