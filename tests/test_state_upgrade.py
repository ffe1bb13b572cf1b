"""A version-1 state document (before the image-build limit and the startup timer of its own)
still imports: its plans get the image_build default, and a CREATING or INITIALIZING instance's
phase timeout (the startup limit then) becomes its startup timer."""

from __future__ import annotations

import json
from typing import Any

import pytest
from engine_helpers import t

from simulator.core.engine import Engine
from simulator.core.errors import InvalidArgument
from simulator.core.plan import BuildPolicy, LifecyclePlan
from simulator.core.simtime import HOUR
from simulator.core.state import VERSION, export_state, import_state
from simulator.core.transitions import Phase

REPO = "https://github.com/gitpod-io/gitpod"


def _as_version_1(doc: dict[str, Any]) -> dict[str, Any]:
    old = json.loads(json.dumps(doc))
    old["version"] = 1
    for plan in old["plans"]:
        del plan["timeouts"]["image_build"]
    for inst in old["instances"]:
        if "startup" in inst["events"]:
            inst["events"]["phase_timeout"] = inst["events"].pop("startup")
    return old


def test_a_version_1_document_is_upgraded_on_import() -> None:
    plan = LifecyclePlan(build_policy=BuildPolicy.NEVER).with_durations(creating=3 * 3600)
    engine = Engine(seed=5, plan=plan)
    alice = engine.add_user("alice")
    ws = engine.create_workspace(alice, context_url=REPO)
    engine.advance_to(t(100))
    inst = engine.latest_instance(ws)
    assert inst is not None and inst.phase is Phase.CREATING
    doc = export_state(engine)
    assert doc["version"] == VERSION == 2
    old = _as_version_1(doc)
    assert "image_build" not in old["plans"][0]["timeouts"]

    restored = import_state(old)
    restored.check_invariants()
    again = restored.instances[inst.id]
    assert again.startup is not None and again.phase_timeout is None
    assert restored.plan.timeouts.image_build == 1 * HOUR
    changes = restored.advance_to(t(2 * 3600))
    timed = [c for c in changes if c.cause == "timeout:startup"]
    assert [c.at for c in timed] == [t(3600), t(3600)]
    assert export_state(restored)["version"] == 2


def test_an_unknown_version_is_still_refused() -> None:
    doc = export_state(Engine(seed=1))
    doc["version"] = 3
    with pytest.raises(InvalidArgument, match="state version 3 is not one this gitpod-sim reads"):
        import_state(doc)
