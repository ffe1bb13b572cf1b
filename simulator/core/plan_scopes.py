"""Which lifecycle plan a new instance gets: the newest matching context pattern, then its owner's
plan, then the global one.

Plans are set per scope (``global``, a ``user`` id, a ``context`` URL pattern); setting a scope
again replaces its plan. An instance captures its plan when it starts, so a change never touches
instances already running.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from simulator.core.errors import InvalidArgument, NotFound
from simulator.core.patterns import compile_pattern
from simulator.core.plan import LifecyclePlan, ScopedPlan


class PlanScopes:
    """The global plan and the scoped plans, in the order they were set."""

    __slots__ = ("_seq", "default", "scoped")

    def __init__(self, plan: LifecyclePlan) -> None:
        self.default = plan
        """The global plan: what an instance gets when no scoped plan matches."""
        self.scoped: dict[str, ScopedPlan] = {}
        self._seq = 0

    def set(
        self, scope: str, value: str, plan: LifecyclePlan, *, user_exists: Callable[[str], bool]
    ) -> ScopedPlan:
        """Set the plan of a scope, replacing the one it had."""
        if scope == "global":
            value = ""
        elif scope == "user":
            if not user_exists(value):
                raise NotFound(f"user {value!r} does not exist")
        elif scope == "context":
            compile_pattern(value)
        else:
            raise InvalidArgument(f"unknown plan scope {scope!r}: expected global, user or context")
        for existing in self.scoped.values():
            if existing.scope == scope and existing.value == value:
                del self.scoped[existing.id]
                break
        self._seq += 1
        scoped = ScopedPlan(f"plan-{self._seq}", scope, value, plan)
        self.scoped[scoped.id] = scoped
        if scope == "global":
            self.default = plan
        return scoped

    def delete(self, plan_id: str) -> None:
        scoped = self.scoped.pop(plan_id, None)
        if scoped is None:
            raise NotFound(f"plan {plan_id!r} does not exist")
        if scoped.scope == "global":
            self.default = LifecyclePlan()

    def plan_for(self, url: str, owner_id: str) -> LifecyclePlan:
        """The most specific plan for a workspace at ``url`` owned by ``owner_id``."""
        user_plan: LifecyclePlan | None = None
        for scoped in reversed(self.scoped.values()):
            if scoped.scope == "context" and compile_pattern(scoped.value).search(url):
                return scoped.plan
            if scoped.scope == "user" and scoped.value == owner_id and user_plan is None:
                user_plan = scoped.plan
        return user_plan or self.default

    def save(self, plan_ref: Callable[[LifecyclePlan], int]) -> dict[str, Any]:
        """JSON-ready: the global plan and the scoped ones as references into a shared plan list."""
        return {
            "plan": plan_ref(self.default),
            "scoped_plans": [
                {"id": p.id, "scope": p.scope, "value": p.value, "plan": plan_ref(p.plan)}
                for p in self.scoped.values()
            ],
            "plan_seq": self._seq,
        }

    def restore(self, data: dict[str, Any], plans: list[LifecyclePlan]) -> None:
        """Replace the scoped plans with ``data`` (from :meth:`save`); ``plans`` resolves refs."""
        self.default = plans[data["plan"]]
        self.scoped = {
            s["id"]: ScopedPlan(s["id"], s["scope"], s["value"], plans[s["plan"]])
            for s in data["scoped_plans"]
        }
        self._seq = int(data["plan_seq"])
