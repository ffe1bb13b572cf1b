"""Declarative scenarios: lifecycle stories in ``scenarios/*.toml`` that run as tests, as demos
and as seed data. See :mod:`.schema` for the format and :mod:`.runner` for how one is played."""

from __future__ import annotations

from simulator.scenario.runner import Difference, Outcome, Runner
from simulator.scenario.schema import Scenario, ScenarioError, load, loads

__all__ = ["Difference", "Outcome", "Runner", "Scenario", "ScenarioError", "load", "loads"]
