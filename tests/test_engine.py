"""Tests for simulator.core.engine: the phase engine driven directly on simulated time.

Every test that uses the ``sim``/``make_sim`` fixtures also has its whole observer stream checked at
teardown: each (previous -> current) phase pair is legal by `transitions.is_legal`,
each change reports the status it replaced, status versions strictly increase per instance,
simulated time never goes backwards, nothing follows STOPPED, and ``check_invariants()`` holds.

Default phase durations (BEHAVIOUR.md): IMAGEBUILD 60 s, PENDING 2 s, CREATING 10 s,
INITIALIZING 15 s, STOPPING 5 s. So a first start is RUNNING at 87 s, a start without a build at
27 s.
"""

from __future__ import annotations

import random
import re
import uuid
from collections import Counter
from collections.abc import Callable, Iterator

import pytest
from engine_helpers import START, assert_valid_stream, secs, t

from simulator.core import ids
from simulator.core.engine import INTERRUPTED_MESSAGE, Engine
from simulator.core.errors import (
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    SimError,
)
from simulator.core.model import (
    BuildLogLine,
    EngineEvent,
    Instance,
    StatusChange,
    User,
    Workspace,
)
from simulator.core.plan import (
    DEFAULT_DURATIONS,
    BuildPolicy,
    Fixed,
    LifecyclePlan,
    LogNormal,
    Timeouts,
    Uniform,
)
from simulator.core.simtime import HOUR, MINUTE, SECOND
from simulator.core.transitions import LEGAL_TRANSITIONS, Phase

REPO = "https://github.com/gitpod-io/gitpod"
REPO_KEY = "github.com/gitpod-io/gitpod"
OTHER_REPO = "https://github.com/gitpod-io/website"
NO_BUILD = LifecyclePlan(build_policy=BuildPolicy.NEVER)
UNKNOWN_WS = "gitpodio-gitpod-isq6xj458lj"
PAGE_SIZE_ERROR = "invalid pagination page size (must be 0 < x < 100)"

IB, PE, CR, IN, RU, IR, SG, SD = (
    Phase.IMAGEBUILD,
    Phase.PENDING,
    Phase.CREATING,
    Phase.INITIALIZING,
    Phase.RUNNING,
    Phase.INTERRUPTED,
    Phase.STOPPING,
    Phase.STOPPED,
)


# ------------------------------------------------------------------------------------- harness


class Sim:
    """An engine with two users (alice, bob) and a recorded observer stream."""

    def __init__(self, seed: int = 1, plan: LifecyclePlan | None = None) -> None:
        self.events: list[EngineEvent] = []
        self.engine = Engine(seed=seed, plan=plan, observer=self.events.append, follow_builds=True)
        self.alice = self.engine.add_user("alice")
        self.bob = self.engine.add_user("bob")

    def create(self, url: str = REPO, user: User | None = None) -> tuple[Workspace, Instance]:
        ws = self.engine.create_workspace(user or self.alice, context_url=url)
        return ws, self.latest(ws)

    def latest(self, ws: Workspace) -> Instance:
        inst = self.engine.latest_instance(ws)
        assert inst is not None
        return inst

    def to(self, seconds: float) -> list[StatusChange]:
        return self.engine.advance_to(t(seconds))

    def stop(self, ws: Workspace) -> None:
        self.engine.stop_workspace(self.alice, ws.id)

    def changes(self, instance_id: str | None = None) -> list[StatusChange]:
        return [
            e
            for e in self.events
            if isinstance(e, StatusChange) and (instance_id is None or e.instance_id == instance_id)
        ]

    def path(self, instance_id: str) -> list[tuple[float, Phase]]:
        """Every status change of the instance as (seconds since start, phase)."""
        return [(secs(c.at), c.status.phase) for c in self.changes(instance_id)]

    def logs(self, instance_id: str) -> list[tuple[float, str]]:
        return [
            (secs(e.at), e.line)
            for e in self.events
            if isinstance(e, BuildLogLine) and e.instance_id == instance_id
        ]

    def ids_listed(self, user: User | None = None, page_size: int = 100) -> list[str]:
        return [ws.id for ws, _ in self.engine.list_workspaces(user or self.alice, page_size).items]

    def validate(self) -> None:
        assert_valid_stream(self.events)
        self.engine.check_invariants()


MakeSim = Callable[..., Sim]


@pytest.fixture
def make_sim() -> Iterator[MakeSim]:
    made: list[Sim] = []

    def make(seed: int = 1, plan: LifecyclePlan | None = None) -> Sim:
        sim = Sim(seed, plan)
        made.append(sim)
        return sim

    yield make
    for sim in made:
        sim.validate()


@pytest.fixture
def sim(make_sim: MakeSim) -> Sim:
    return make_sim()


@pytest.fixture
def nb(make_sim: MakeSim) -> Sim:
    """A simulator that never builds images (faster, simpler timelines)."""
    return make_sim(plan=NO_BUILD)


BUILD_PATH = [(0, IB), (60, PE), (62, CR), (72, IN), (87, RU)]
NO_BUILD_PATH = [(0, PE), (2, CR), (12, IN), (27, RU)]


def shifted(path: list[tuple[float, Phase]], by: float) -> list[tuple[float, Phase]]:
    return [(s + by, p) for s, p in path]


# ------------------------------------------------------------------------------- phase order


def test_first_start_of_a_repository_builds_the_image(sim: Sim) -> None:
    ws, inst = sim.create()
    assert inst.phase is IB
    assert inst.created_at == t(0)
    sim.to(100)
    assert sim.path(inst.id) == BUILD_PATH
    assert [c.cause for c in sim.changes(inst.id)] == ["start", "step", "step", "step", "step"]
    assert sim.changes(inst.id)[0].previous is None
    assert REPO_KEY in sim.engine.image_cache
    assert inst.running_at == t(87)
    assert ws.context.kind == "git"


def test_second_start_of_a_built_repository_skips_the_build(sim: Sim) -> None:
    first, _ = sim.create()
    sim.to(100)
    # another spelling of the same repository shares its image
    _, b = sim.create("git@github.com:gitpod-io/gitpod.git")
    sim.to(200)
    assert sim.path(b.id) == shifted(NO_BUILD_PATH, 100)
    assert b.build is None
    # and a restart of the first workspace skips it too
    sim.stop(first)
    sim.to(300)
    c = sim.engine.start_workspace(sim.alice, first.id)
    sim.to(400)
    assert sim.path(c.id) == shifted(NO_BUILD_PATH, 300)


def test_other_repository_still_builds_after_one_is_cached(sim: Sim) -> None:
    sim.create()
    sim.to(100)
    _, inst = sim.create(OTHER_REPO)
    assert inst.phase is IB
    sim.to(300)
    assert sim.path(inst.id) == shifted(BUILD_PATH, 100)
    assert sim.engine.image_cache == {REPO_KEY, "github.com/gitpod-io/website"}


def test_start_from_a_registered_prebuild_skips_the_build(sim: Sim) -> None:
    sim.engine.add_prebuild("pb-1", REPO, "a" * 40)
    ws = sim.engine.create_workspace(sim.alice, prebuild_id="pb-1")
    inst = sim.latest(ws)
    sim.to(100)
    assert sim.path(inst.id) == NO_BUILD_PATH
    assert inst.build is None
    assert ws.context.kind == "prebuild"
    assert ws.context.prebuild_id == "pb-1"
    assert ws.context.commit == "a" * 40
    assert ws.context.normalized_url == REPO


def test_unknown_prebuild_is_not_found(sim: Sim) -> None:
    with pytest.raises(NotFound) as exc:
        sim.engine.create_workspace(sim.alice, prebuild_id="nope")
    assert exc.value.code == "NOT_FOUND"
    assert not sim.engine.workspaces


def test_create_needs_a_context_or_prebuild(sim: Sim) -> None:
    with pytest.raises(InvalidArgument) as exc:
        sim.engine.create_workspace(sim.alice)
    assert exc.value.code == "INVALID_ARGUMENT"
    assert exc.value.message == "either context_url or prebuild_id must be set"
    with pytest.raises(InvalidArgument):
        sim.engine.create_workspace(sim.alice, context_url="not a url at all")
    assert not sim.engine.workspaces
    assert not sim.events


def test_snapshot_context_skips_the_build(sim: Sim) -> None:
    ws, inst = sim.create("snapshot/abc123")
    sim.to(100)
    assert sim.path(inst.id) == NO_BUILD_PATH
    assert inst.build is None
    assert ws.context.kind == "snapshot"
    assert ws.context.snapshot_id == "abc123"
    colour, animal, _ = ws.id.split("-")
    assert colour in ids.COLOURS
    assert animal in ids.ANIMALS
    assert ids.is_workspace_id(ws.id)


def test_build_policy_always_builds_every_start(make_sim: MakeSim) -> None:
    sim = make_sim(plan=LifecyclePlan(build_policy=BuildPolicy.ALWAYS))
    sim.create()
    sim.to(100)
    _, b = sim.create()
    sim.to(300)
    assert sim.path(b.id) == shifted(BUILD_PATH, 100)


def test_build_policy_always_still_skips_prebuilds_and_snapshots(make_sim: MakeSim) -> None:
    sim = make_sim(plan=LifecyclePlan(build_policy=BuildPolicy.ALWAYS))
    sim.engine.add_prebuild("pb-1", REPO)
    from_prebuild = sim.engine.create_workspace(sim.alice, prebuild_id="pb-1")
    _, snapshot = sim.create("snapshot/abc123")
    assert sim.latest(from_prebuild).phase is PE
    assert snapshot.phase is PE
    assert sim.engine.image_cache == set()


def test_build_policy_never_builds(nb: Sim) -> None:
    _, inst = nb.create()
    nb.to(100)
    assert nb.path(inst.id) == NO_BUILD_PATH
    assert nb.engine.image_cache == set()


def test_two_starts_racing_before_the_first_build_ends_both_build(sim: Sim) -> None:
    _, a = sim.create()
    sim.to(30)
    _, b = sim.create()
    assert b.phase is IB
    sim.to(200)
    assert sim.path(a.id) == BUILD_PATH
    assert sim.path(b.id) == shifted(BUILD_PATH, 30)
    assert a.build is not None and b.build is not None
    assert a.build is not b.build
    _, c = sim.create()
    assert c.phase is PE


def test_abandoned_or_failed_build_caches_nothing(sim: Sim) -> None:
    ws, a = sim.create()
    sim.to(10)
    sim.stop(ws)
    sim.to(20)
    assert a.build is not None and a.build.finished and not a.build.failed
    assert len(a.build.lines) == 2  # an abandoned build keeps what it wrote, and writes no more
    assert [at for at, _ in sim.logs(a.id)] == [0, 7.5]
    assert sim.engine.image_cache == set()
    b = sim.engine.start_workspace(sim.alice, ws.id)
    assert b.phase is IB
    sim.engine.fail(b.id, "boom")
    assert sim.engine.image_cache == set()
    c = sim.engine.start_workspace(sim.alice, ws.id)
    assert c.phase is IB


def test_zero_duration_phase_still_reports_each_phase(make_sim: MakeSim) -> None:
    sim = make_sim(plan=NO_BUILD.with_durations(pending=0, creating=0))
    _, inst = sim.create()
    sim.to(0)
    sim.to(100)
    assert sim.path(inst.id) == [(0, PE), (0, CR), (0, IN), (15, RU)]


# ------------------------------------------------------------------ legality and invariants


def _random_operations(sim: Sim, rng: random.Random, steps: int) -> None:
    engine = sim.engine
    repos = [REPO, OTHER_REPO, "github.com/acme/tools", "snapshot/s1"]
    workspaces: list[Workspace] = []
    for _ in range(steps):
        op = rng.randrange(10)
        ws = rng.choice(workspaces) if workspaces else None
        active = engine.instances[ws.active_instance_id] if ws and ws.active_instance_id else None
        try:
            if op == 0 or ws is None:
                workspaces.append(engine.create_workspace(sim.alice, context_url=rng.choice(repos)))
            elif op == 1:
                engine.start_workspace(sim.alice, ws.id)
            elif op == 2:
                engine.stop_workspace(sim.alice, ws.id)
            elif op == 3 and active:
                engine.fail(active.id, "random failure")
            elif op == 4 and active:
                duration = rng.choice([None, 0, 30 * SECOND, 10 * MINUTE])
                engine.interrupt(active.id, duration)
            elif op == 5 and active:
                engine.recover(active.id)
            elif op == 6:
                engine.mark_active(ws.id)
            elif op == 7:
                engine.set_shared(ws.id, not ws.shared)
            elif op == 8:  # the newest workspace is the likeliest to be still starting
                engine.stop_workspace(sim.alice, workspaces[-1].id)
        except FailedPrecondition:
            pass
        pause = rng.choice([0, 2 * SECOND, 40 * SECOND, 5 * MINUTE])
        engine.advance_to(engine.now + rng.randint(0, pause))
        engine.check_invariants()
    engine.advance_to(engine.now + 3 * HOUR)


def test_random_operations_keep_every_transition_legal(make_sim: MakeSim) -> None:
    plan = LifecyclePlan(
        durations={
            IB: Uniform(10 * SECOND, 90 * SECOND),
            PE: Uniform(0, 5 * SECOND),
            CR: LogNormal(10 * SECOND, 0.5),
            IN: Uniform(SECOND, 30 * SECOND),
            SG: Uniform(SECOND, 10 * SECOND),
        },
        timeouts=Timeouts(inactivity=5 * MINUTE, interruption=2 * MINUTE),
    )
    observed: set[tuple[Phase | None, Phase]] = set()
    for seed in (1, 2, 3, 4):
        sim = make_sim(seed=seed, plan=plan)
        _random_operations(sim, random.Random(seed), 250)
        assert_valid_stream(sim.events)
        # after three quiet hours every instance has ended
        assert len(sim.engine.instances) > 30
        assert all(i.phase is SD for i in sim.engine.instances.values())
        assert all(ws.active_instance_id is None for ws in sim.engine.workspaces.values())
        assert len(sim.engine.scheduler) == 0
        observed |= {
            (c.previous.phase if c.previous else None, c.status.phase) for c in sim.changes()
        }
    legal = {(a, b) for a, targets in LEGAL_TRANSITIONS.items() for b in targets}
    legal |= {(None, IB), (None, PE)}
    assert observed == legal  # every legal transition was exercised, and nothing else


def test_stopped_is_final(sim: Sim) -> None:
    ws, inst = sim.create()
    sim.to(100)
    sim.stop(ws)
    sim.to(200)
    assert inst.phase is SD
    assert inst.stopped_at == t(105)
    count = len(sim.events)
    sim.engine.advance_to(t(100 * 3600))
    assert len(sim.events) == count
    assert len(sim.engine.scheduler) == 0
    with pytest.raises(FailedPrecondition):
        sim.engine.fail(inst.id, "late")
    with pytest.raises(FailedPrecondition):
        sim.engine.interrupt(inst.id)
    with pytest.raises(FailedPrecondition):
        sim.engine.recover(inst.id)
    with pytest.raises(FailedPrecondition):
        sim.engine.mark_active(ws.id)
    with pytest.raises(FailedPrecondition) as exc:
        sim.engine.active_instance(sim.alice, ws.id)
    assert exc.value.code == "FAILED_PRECONDITION"
    assert len(sim.events) == count
    assert inst.phase is SD


def test_restart_after_stopped_makes_a_new_instance(sim: Sim) -> None:
    ws, first = sim.create()
    sim.to(100)
    assert sim.engine.owner_token(sim.alice, ws.id) == first.owner_token
    sim.stop(ws)
    sim.to(200)
    second = sim.engine.start_workspace(sim.alice, ws.id)
    assert second.id != first.id
    parsed = uuid.UUID(second.id)
    assert parsed.version == 4
    assert str(parsed) == second.id
    assert ws.latest_instance_id == second.id
    assert ws.active_instance_id == second.id
    assert first.phase is SD
    assert second.created_at == t(200)
    assert sim.engine.owner_token(sim.alice, ws.id) == second.owner_token
    assert second.owner_token != first.owner_token
    assert re.fullmatch(r"[0-9A-Za-z_.-]{32}", second.owner_token)
    assert second.status.url == first.status.url == f"https://{ws.id}.ws-eu53.gitpod.io"
    assert sim.engine.active_instance(sim.alice, ws.id) is second


@pytest.mark.parametrize(("seconds", "phase"), [(10, IB), (61, PE), (65, CR), (80, IN), (100, RU)])
def test_start_of_an_active_workspace_answers_the_active_instance(
    sim: Sim, seconds: float, phase: Phase
) -> None:
    ws, inst = sim.create()
    sim.to(seconds)
    assert inst.phase is phase
    count, instances = len(sim.events), len(sim.engine.instances)
    assert sim.engine.start_workspace(sim.alice, ws.id) is inst
    assert (len(sim.events), len(sim.engine.instances)) == (count, instances)
    assert ws.latest_instance_id == ws.active_instance_id == inst.id


def test_start_during_stopping_returns_the_stopping_instance(sim: Sim) -> None:
    ws, inst = sim.create()
    sim.to(100)
    sim.stop(ws)
    sim.to(102)
    count, instances = len(sim.events), len(sim.engine.instances)
    assert sim.engine.start_workspace(sim.alice, ws.id) is inst
    assert (len(sim.events), len(sim.engine.instances)) == (count, instances)
    sim.to(110)
    assert inst.phase is SD


# ----------------------------------------------------------------------------- status_version


def test_status_version_is_seconds_shifted_left_by_16_and_strictly_increasing(sim: Sim) -> None:
    ws, inst = sim.create()
    sim.to(87)
    sim.engine.mark_active(ws.id)  # same instant as RUNNING: counter + 1
    sim.to(100.5)
    sim.stop(ws)  # mark and STOPPING at the same instant
    sim.to(200)
    changes = sim.changes(inst.id)
    assert [(secs(c.at), c.status.phase) for c in changes] == [
        *BUILD_PATH,
        (87, RU),
        (100.5, RU),
        (100.5, SG),
        (105.5, SD),
    ]
    versions = [c.status.version for c in changes]
    assert versions[0] == (START // SECOND) << 16
    assert versions[1] == (t(60) // SECOND) << 16
    assert versions[4] >> 16 == t(87) // SECOND and versions[4] & 0xFFFF == 0
    assert versions[5] == versions[4] + 1  # mark_active in the same second
    assert versions[6] >> 16 == t(100.5) // SECOND and versions[6] & 0xFFFF == 0
    assert versions[7] == versions[6] + 1
    assert versions[8] >> 16 == t(105.5) // SECOND
    prev = 0
    for change in changes:
        assert change.status.version == max(prev + 1, (change.at // SECOND) << 16)
        prev = change.status.version


def test_each_instance_has_its_own_version_sequence(sim: Sim) -> None:
    ws, a = sim.create()
    sim.to(100)
    sim.stop(ws)
    sim.to(105)
    b = sim.engine.start_workspace(sim.alice, ws.id)  # same second as a's STOPPED
    assert b.status.version == (t(105) // SECOND) << 16
    assert a.status.version == (t(105) // SECOND) << 16


# ----------------------------------------------------------------------------------- stopping

STOP_CASES = [(IB, 10), (PE, 61), (CR, 65), (IN, 80), (RU, 100), (IR, 100)]


@pytest.mark.parametrize(("phase", "stop_at"), STOP_CASES, ids=[p.name for p, _ in STOP_CASES])
def test_stop_in_each_phase(sim: Sim, phase: Phase, stop_at: float) -> None:
    ws, inst = sim.create()
    if phase is IR:
        sim.to(95)
        sim.engine.interrupt(inst.id)
    sim.to(stop_at)
    assert inst.phase is phase
    seen = len(sim.changes(inst.id))
    assert inst.status.stopped_by_request is None
    result = sim.engine.stop_workspace(sim.alice, ws.id)
    assert result.instance is inst
    assert result.phase_before is phase
    fired = sim.to(stop_at + 60)
    after = sim.changes(inst.id)[seen:]
    assert [(secs(c.at), c.status.phase, c.status.stopped_by_request, c.cause) for c in after] == [
        (stop_at, phase, True, "stop-request"),
        (stop_at, SG, True, "stop-request"),
        (stop_at + 5, SD, True, "step"),
    ]
    assert fired == after[2:]
    assert all(c.status.failed == "" and c.status.timeout == "" for c in after)
    assert ws.active_instance_id is None
    assert inst.stopped_at == t(stop_at + 5)
    assert len(sim.engine.scheduler) == 0


def test_stop_of_a_stopping_instance_changes_nothing(sim: Sim) -> None:
    ws, inst = sim.create()
    sim.to(100)
    sim.stop(ws)
    sim.to(102)
    count = len(sim.events)
    version = inst.status.version
    result = sim.engine.stop_workspace(sim.alice, ws.id)
    assert result.instance is inst
    assert result.phase_before is SG
    assert len(sim.events) == count
    assert inst.status.version == version
    sim.to(200)
    assert sim.path(inst.id)[-3:] == [(100, RU), (100, SG), (105, SD)]


def test_stop_without_an_active_instance_is_failed_precondition(sim: Sim) -> None:
    ws, _ = sim.create()
    sim.to(100)
    sim.stop(ws)
    sim.to(200)
    count = len(sim.events)
    with pytest.raises(FailedPrecondition) as exc:
        sim.stop(ws)
    assert exc.value.code == "FAILED_PRECONDITION"
    assert len(sim.events) == count


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "not-an-id",
        "Gitpodio-gitpod-isq6xj458lj",
        "gitpodio-gitpod-isq6xj458lj\n",
        "g-gitpod-isq6xj458lj",
        "gitpodio-gitpod-isq6x",
        "gitpodio_gitpod_isq6xj458lj",
    ],
)
def test_malformed_workspace_id_is_invalid_argument(sim: Sim, bad: str) -> None:
    sim.create()
    calls: list[Callable[[], object]] = [
        lambda: sim.engine.stop_workspace(sim.alice, bad),
        lambda: sim.engine.start_workspace(sim.alice, bad),
        lambda: sim.engine.get_workspace(sim.alice, bad),
        lambda: sim.engine.owner_token(sim.alice, bad),
        lambda: sim.engine.active_instance(sim.alice, bad),
    ]
    for call in calls:
        with pytest.raises(InvalidArgument) as exc:
            call()
        assert exc.value.code == "INVALID_ARGUMENT"


def test_unknown_workspace_id_is_not_found(sim: Sim) -> None:
    calls: list[Callable[[], object]] = [
        lambda: sim.engine.stop_workspace(sim.alice, UNKNOWN_WS),
        lambda: sim.engine.start_workspace(sim.alice, UNKNOWN_WS),
        lambda: sim.engine.get_workspace(sim.alice, UNKNOWN_WS),
        lambda: sim.engine.owner_token(sim.alice, UNKNOWN_WS),
        lambda: sim.engine.active_instance(sim.alice, UNKNOWN_WS),
    ]
    for call in calls:
        with pytest.raises(NotFound) as exc:
            call()
        assert exc.value.code == "NOT_FOUND"
        assert exc.value.message == "workspace does not exist"
    for call in (
        lambda: sim.engine.mark_active(UNKNOWN_WS),
        lambda: sim.engine.set_shared(UNKNOWN_WS, True),
    ):
        with pytest.raises(NotFound):
            call()


def test_instance_ids_are_checked(sim: Sim) -> None:
    _, inst = sim.create()
    with pytest.raises(InvalidArgument):
        sim.engine.instance_for(sim.alice, "not-a-uuid")
    with pytest.raises(InvalidArgument):
        sim.engine.instance_for(sim.alice, inst.id.upper())
    with pytest.raises(InvalidArgument):
        sim.engine.instance_for(sim.alice, "")
    unknown = str(uuid.UUID(int=0, version=4))
    with pytest.raises(NotFound):
        sim.engine.instance_for(sim.alice, unknown)
    for call in (
        lambda: sim.engine.fail(unknown, "x"),
        lambda: sim.engine.interrupt(unknown),
        lambda: sim.engine.recover(unknown),
    ):
        with pytest.raises(NotFound):
            call()
    assert sim.engine.instance_for(sim.alice, inst.id) is inst


def test_foreign_workspace_is_not_found(sim: Sim) -> None:
    ws, inst = sim.create()
    sim.to(100)
    count = len(sim.events)
    calls: list[Callable[[], object]] = [
        lambda: sim.engine.stop_workspace(sim.bob, ws.id),
        lambda: sim.engine.start_workspace(sim.bob, ws.id),
        lambda: sim.engine.get_workspace(sim.bob, ws.id),
        lambda: sim.engine.owner_token(sim.bob, ws.id),
        lambda: sim.engine.active_instance(sim.bob, ws.id),
        lambda: sim.engine.instance_for(sim.bob, inst.id),
    ]
    for call in calls:
        with pytest.raises(NotFound) as exc:
            call()
        assert exc.value.code == "NOT_FOUND"
    assert len(sim.events) == count
    assert inst.phase is RU
    assert sim.ids_listed(sim.bob) == []


def test_shared_workspace_is_readable_but_owner_only_calls_are_denied(sim: Sim) -> None:
    ws, inst = sim.create()
    sim.to(100)
    sim.engine.set_shared(ws.id, True)
    assert sim.changes(inst.id)[-1].cause == "admission"
    assert sim.path(inst.id)[-1] == (100, RU)
    assert inst.status.admission_everyone is True
    sim.engine.set_shared(ws.id, True)  # no change, no status
    assert len(sim.changes(inst.id)) == 6
    assert sim.engine.get_workspace(sim.bob, ws.id) is ws
    assert sim.engine.active_instance(sim.bob, ws.id) is inst
    assert sim.engine.instance_for(sim.bob, inst.id) is inst
    count = len(sim.events)
    denied: list[Callable[[], object]] = [
        lambda: sim.engine.stop_workspace(sim.bob, ws.id),
        lambda: sim.engine.start_workspace(sim.bob, ws.id),
        lambda: sim.engine.owner_token(sim.bob, ws.id),
        lambda: sim.engine.instance_for(sim.bob, inst.id, owner_only=True),
    ]
    for call in denied:
        with pytest.raises(PermissionDenied) as exc:
            call()
        assert exc.value.code == "PERMISSION_DENIED"
        assert exc.value.message == "insufficient permission to access workspace"
    assert len(sim.events) == count
    assert inst.phase is RU
    assert sim.ids_listed(sim.bob) == []  # ListWorkspaces shows only one's own
    # a restart of a shared workspace is shared from its first status
    sim.stop(ws)
    sim.to(200)
    again = sim.engine.start_workspace(sim.alice, ws.id)
    assert sim.changes(again.id)[0].status.admission_everyone is True
    # unsharing hides it again
    sim.engine.set_shared(ws.id, False)
    assert again.status.admission_everyone is False
    with pytest.raises(NotFound):
        sim.engine.get_workspace(sim.bob, ws.id)


# ----------------------------------------------------------------------------------- failures


def _tail(sim: Sim, inst: Instance, since: int) -> list[tuple[float, Phase, str, str, object]]:
    return [
        (
            secs(c.at),
            c.status.phase,
            c.status.failed,
            c.status.message,
            c.status.stopped_by_request,
        )
        for c in sim.changes(inst.id)[since:]
    ]


def test_failure_during_image_build(sim: Sim) -> None:
    ws, inst = sim.create()
    sim.to(10)
    assert inst.build is not None
    written = list(inst.build.lines)
    assert len(written) == 2
    seen = len(sim.changes(inst.id))
    sim.engine.fail(inst.id, "exit code 1")
    sim.to(100)
    msg = "Workspace cannot be started: exit code 1"
    assert _tail(sim, inst, seen) == [
        (10, IB, "exit code 1", msg, None),
        (10, SD, "exit code 1", msg, None),
    ]
    assert [c.cause for c in sim.changes(inst.id)[seen:]] == ["failed", "failed"]
    assert inst.build.lines == [*written, "ERROR: exit code 1", "Build failed."]
    assert inst.build.failed and inst.build.finished
    assert sim.logs(inst.id)[-2:] == [(10, "ERROR: exit code 1"), (10, "Build failed.")]
    assert len(sim.logs(inst.id)) == 4  # nothing more was written after the failure
    assert sim.engine.image_cache == set()
    assert ws.active_instance_id is None


def test_failed_build_with_a_log_tail_of_its_own(sim: Sim) -> None:
    _, inst = sim.create()
    sim.to(20)
    sim.engine.fail(inst.id, "oops", log_tail=["npm ERR! 404", "exit 1"])
    assert inst.build is not None
    assert inst.build.lines[-2:] == ["npm ERR! 404", "exit 1"]
    assert len(inst.build.lines) == 5


def test_failure_in_pending_goes_straight_to_stopped(sim: Sim) -> None:
    _, inst = sim.create()
    sim.to(61)
    seen = len(sim.changes(inst.id))
    sim.engine.fail(inst.id, "no capacity")
    msg = "Workspace cannot be started: no capacity"
    assert _tail(sim, inst, seen) == [
        (61, PE, "no capacity", msg, None),
        (61, SD, "no capacity", msg, None),
    ]


def test_failure_in_creating_goes_straight_to_stopped(sim: Sim) -> None:
    ws, inst = sim.create()
    sim.to(65)
    seen = len(sim.changes(inst.id))
    sim.engine.fail(inst.id, "cannot pull image")
    sim.to(200)
    assert _tail(sim, inst, seen) == [
        (65, CR, "cannot pull image", "cannot pull image", None),
        (65, SD, "cannot pull image", "cannot pull image", None),
    ]
    assert inst.stopped_at == t(65)
    assert ws.active_instance_id is None


@pytest.mark.parametrize(("phase", "at"), [(IN, 80), (RU, 100), (IR, 100)])
def test_late_failure_goes_through_stopping(sim: Sim, phase: Phase, at: float) -> None:
    ws, inst = sim.create()
    if phase is IR:
        sim.to(90)
        sim.engine.interrupt(inst.id)
    sim.to(at)
    assert inst.phase is phase
    seen = len(sim.changes(inst.id))
    sim.engine.fail(inst.id, "content init failed")
    sim.to(at + 60)
    reason = "content init failed"
    assert _tail(sim, inst, seen) == [
        (at, phase, reason, reason, None),
        (at, SG, reason, reason, None),
        (at + 5, SD, reason, reason, None),
    ]
    assert all(c.status.timeout == "" for c in sim.changes(inst.id))
    # a failure sets nothing else; a new start begins clean
    again = sim.engine.start_workspace(sim.alice, ws.id)
    assert again.status.failed == "" and again.status.message == ""
    assert inst.status.failed == reason


def test_failure_of_a_stopping_or_stopped_instance_is_refused(sim: Sim) -> None:
    ws, inst = sim.create()
    sim.to(100)
    sim.stop(ws)
    with pytest.raises(FailedPrecondition):
        sim.engine.fail(inst.id, "late")
    sim.to(200)
    with pytest.raises(FailedPrecondition):
        sim.engine.fail(inst.id, "later")
    assert inst.status.failed == ""


# ------------------------------------------------------------------------------- interruption


@pytest.mark.parametrize("at", [10, 61, 65, 80])
def test_interrupt_only_from_running(sim: Sim, at: float) -> None:
    _, inst = sim.create()
    sim.to(at)
    phase = inst.phase
    with pytest.raises(FailedPrecondition) as exc:
        sim.engine.interrupt(inst.id)
    assert exc.value.code == "FAILED_PRECONDITION"
    assert inst.phase is phase


def test_interrupt_of_interrupted_or_stopping_is_refused(sim: Sim) -> None:
    ws, inst = sim.create()
    sim.to(100)
    sim.engine.interrupt(inst.id)
    with pytest.raises(FailedPrecondition):
        sim.engine.interrupt(inst.id)
    sim.stop(ws)
    with pytest.raises(FailedPrecondition):
        sim.engine.interrupt(inst.id)
    with pytest.raises(FailedPrecondition):
        sim.engine.recover(inst.id)


def test_interruption_recovers_after_its_duration(sim: Sim) -> None:
    _, inst = sim.create()
    sim.to(100)
    seen = len(sim.changes(inst.id))
    sim.engine.interrupt(inst.id, 2 * MINUTE)
    sim.to(1000)
    after = sim.changes(inst.id)[seen:]
    assert [(secs(c.at), c.status.phase, c.status.message, c.cause) for c in after] == [
        (100, IR, INTERRUPTED_MESSAGE, "interrupted"),
        (220, RU, "", "recovered"),
    ]
    assert INTERRUPTED_MESSAGE == "workspace is temporarily unavailable"
    assert inst.status.timeout == ""
    assert inst.running_at == t(87)  # a recovery is not a new start


def test_recover_ends_an_interruption_now(sim: Sim) -> None:
    _, inst = sim.create()
    sim.to(100)
    sim.engine.interrupt(inst.id, 10 * MINUTE)
    sim.to(130)
    sim.engine.recover(inst.id)
    assert sim.path(inst.id)[-2:] == [(100, IR), (130, RU)]
    count = len(sim.events)
    sim.to(1000)  # the timed recovery was cancelled
    assert len(sim.events) == count
    with pytest.raises(FailedPrecondition):
        sim.engine.recover(inst.id)


def test_interrupt_with_a_negative_duration_is_invalid(sim: Sim) -> None:
    _, inst = sim.create()
    sim.to(100)
    with pytest.raises(InvalidArgument):
        sim.engine.interrupt(inst.id, -1)
    assert inst.phase is RU


def test_first_user_activity_is_set_once(sim: Sim) -> None:
    ws, inst = sim.create()
    sim.to(65)
    with pytest.raises(FailedPrecondition):
        sim.engine.mark_active(ws.id)  # only while RUNNING
    sim.to(100)
    assert inst.status.first_user_activity is None
    seen = len(sim.changes(inst.id))
    assert sim.engine.mark_active(ws.id) is inst
    change = sim.changes(inst.id)[seen:]
    assert [(secs(c.at), c.status.phase, c.cause) for c in change] == [(100, RU, "user-activity")]
    assert inst.status.first_user_activity == t(100)
    sim.to(200)
    sim.engine.mark_active(ws.id)
    assert len(sim.changes(inst.id)) == seen + 1  # a second mark is no status change
    assert inst.status.first_user_activity == t(100)
    sim.stop(ws)
    sim.to(300)
    assert inst.phase is SD
    assert inst.status.first_user_activity == t(100)


# ----------------------------------------------------------------------------------- build logs


def test_build_log_lines_appear_over_the_build(sim: Sim) -> None:
    _, inst = sim.create()
    assert inst.build is not None
    counts = []
    for s in (0, 7, 7.5, 30, 52.4, 52.5, 59.9):
        sim.to(s)
        counts.append(len(inst.build.lines))
    assert counts == [1, 1, 2, 5, 7, 7, 7]  # the success line waits for the build's success
    assert not inst.build.finished
    sim.to(60)
    assert inst.phase is PE
    lines = inst.build.lines
    assert len(lines) == 8
    assert lines[0] == "Building workspace image for github.com/gitpod-io/gitpod"
    assert lines[1].startswith("Step 1/")
    assert re.fullmatch(r"Successfully built [0-9a-f]{12}", lines[-1])
    assert inst.build.finished and not inst.build.failed
    assert sim.logs(inst.id) == [
        (at, line) for at, line in zip([0, 7.5, 15, 22.5, 30, 37.5, 45, 60], lines, strict=True)
    ]
    assert REPO_KEY in sim.engine.image_cache
    # the first status comes before the first line
    first_log = next(i for i, e in enumerate(sim.events) if isinstance(e, BuildLogLine))
    assert isinstance(sim.events[first_log - 1], StatusChange)
    assert sim.events[first_log - 1].status.phase is IB


def test_build_log_line_count_follows_the_plan(make_sim: MakeSim) -> None:
    sim = make_sim(plan=LifecyclePlan(build_log_lines=3))
    _, inst = sim.create()
    sim.to(100)
    assert [at for at, _ in sim.logs(inst.id)] == [0, 20, 60]  # success when the build ends
    assert inst.build is not None and len(inst.build.lines) == 3
    with pytest.raises(ValueError):
        LifecyclePlan(build_log_lines=0)


def test_build_logs_are_seeded(make_sim: MakeSim) -> None:
    a, b, c = make_sim(seed=5), make_sim(seed=5), make_sim(seed=6)
    for s in (a, b, c):
        s.create()
        s.to(100)
    lines = [[e.line for e in s.events if isinstance(e, BuildLogLine)] for s in (a, b, c)]
    assert lines[0] == lines[1]
    assert lines[0] != lines[2]


def test_build_log_of_other_repository_names_it(sim: Sim) -> None:
    _, inst = sim.create(OTHER_REPO)
    assert inst.build is not None
    assert inst.build.lines == ["Building workspace image for github.com/gitpod-io/website"]


# ------------------------------------------------------------------------------ ListWorkspaces


def test_list_default_page_size_is_20(nb: Sim) -> None:
    for _ in range(25):
        nb.create()
    page = nb.engine.list_workspaces(nb.alice)
    assert len(page.items) == 20
    assert page.next_page_token
    rest = nb.engine.list_workspaces(nb.alice, page_token=page.next_page_token)
    assert len(rest.items) == 5
    assert rest.next_page_token == ""


def test_list_page_size_bounds(nb: Sim) -> None:
    for _ in range(150):
        nb.create()
    page = nb.engine.list_workspaces(nb.alice, page_size=100)
    assert len(page.items) == 100
    rest = nb.engine.list_workspaces(nb.alice, page_size=100, page_token=page.next_page_token)
    assert len(rest.items) == 50
    assert rest.next_page_token == ""
    for bad in (101, -1, 1000):
        with pytest.raises(InvalidArgument) as exc:
            nb.engine.list_workspaces(nb.alice, page_size=bad)
        assert exc.value.code == "INVALID_ARGUMENT"
        assert exc.value.message == PAGE_SIZE_ERROR


def test_list_of_nothing_is_empty(nb: Sim) -> None:
    page = nb.engine.list_workspaces(nb.alice)
    assert page.items == []
    assert page.next_page_token == ""


def test_list_exactly_one_page_has_no_next_token(nb: Sim) -> None:
    for _ in range(20):
        nb.create()
    assert nb.engine.list_workspaces(nb.alice).next_page_token == ""


def test_list_order_active_first_then_latest_activity(nb: Sim) -> None:
    w = []
    for s in range(4):
        nb.to(s)
        w.append(nb.create()[0])  # RUNNING at 27, 28, 29, 30
    nb.to(100)
    nb.stop(w[1])  # STOPPED at 105
    nb.to(200)
    nb.stop(w[3])  # STOPPED at 205
    nb.to(300)
    assert nb.ids_listed() == [w[2].id, w[0].id, w[3].id, w[1].id]
    restarted = nb.engine.start_workspace(nb.alice, w[1].id)  # latest activity 300
    assert nb.ids_listed() == [w[1].id, w[2].id, w[0].id, w[3].id]
    nb.to(400)
    nb.stop(w[2])
    nb.to(402)  # STOPPING is still active
    assert nb.ids_listed() == [w[1].id, w[2].id, w[0].id, w[3].id]
    nb.to(410)  # w2 STOPPED at 405: inactive, but newest among the inactive
    assert nb.ids_listed() == [w[1].id, w[0].id, w[2].id, w[3].id]
    nb.stop(w[1])
    nb.to(420)  # w1 STOPPED at 415
    assert nb.ids_listed() == [w[0].id, w[1].id, w[2].id, w[3].id]
    items = {ws.id: inst for ws, inst in nb.engine.list_workspaces(nb.alice).items}
    assert items[w[1].id] is restarted  # the latest instance, not the first
    assert restarted.phase is SD
    assert items[w[0].id] is not None and items[w[0].id].phase is RU


def test_list_ties_break_newest_first(nb: Sim) -> None:
    w = [nb.create()[0] for _ in range(3)]
    assert nb.ids_listed() == [w[2].id, w[1].id, w[0].id]
    nb.to(100)
    assert nb.ids_listed() == [w[2].id, w[1].id, w[0].id]


def test_list_items_carry_the_latest_instance(nb: Sim) -> None:
    ws, first = nb.create()
    nb.to(100)
    nb.stop(ws)
    nb.to(200)
    second = nb.engine.start_workspace(nb.alice, ws.id)
    [(listed, inst)] = nb.engine.list_workspaces(nb.alice).items
    assert listed is ws
    assert inst is second
    assert inst is not None and inst.id != first.id


def test_user_activity_does_not_reorder_the_list(nb: Sim) -> None:
    """Latest activity is creation and the latest instance's created/running/stopped times only
    (regression: mark_active used to bump it)."""
    sim = nb
    older, _ = sim.create()  # RUNNING at 27
    sim.to(1)
    newer, _ = sim.create()  # RUNNING at 28
    sim.to(100)
    sim.engine.mark_active(older.id)
    assert sim.ids_listed() == [newer.id, older.id]


def test_paging_returns_each_workspace_once_while_the_list_changes(nb: Sim) -> None:
    originals = []
    for i in range(250):
        nb.to(i)
        originals.append(nb.create()[0])
    nb.to(400)
    rng = random.Random(11)
    seen: list[str] = []
    pages = 0
    page = nb.engine.list_workspaces(nb.alice, page_size=17)
    while True:
        pages += 1
        seen += [ws.id for ws, _ in page.items]
        if not page.next_page_token:
            break
        # the list changes between pages: new workspaces, stops, restarts, time passes
        for _ in range(3):
            nb.create()
        for ws in rng.sample(originals, 5):
            if ws.active_instance_id is None:
                nb.engine.start_workspace(nb.alice, ws.id)
            else:
                nb.stop(ws)
        nb.engine.advance_to(nb.engine.now + 10 * SECOND)
        page = nb.engine.list_workspaces(nb.alice, page_size=17, page_token=page.next_page_token)
    counts = Counter(seen)
    assert all(n == 1 for n in counts.values()), "an item was repeated"
    assert {ws.id for ws in originals} <= set(counts)
    assert pages >= 15


def test_paging_250_with_default_page_size(nb: Sim) -> None:
    for _ in range(250):
        nb.create()
    sizes = []
    seen: list[str] = []
    token = ""
    while True:
        page = nb.engine.list_workspaces(nb.alice, page_token=token)
        sizes.append(len(page.items))
        seen += [ws.id for ws, _ in page.items]
        token = page.next_page_token
        if not token:
            break
    assert sizes == [20] * 12 + [10]
    assert sorted(seen) == sorted(nb.engine.workspaces)


def test_forged_or_foreign_page_token_is_invalid(nb: Sim) -> None:
    for _ in range(30):
        nb.create()
    page = nb.engine.list_workspaces(nb.alice)
    assert page.next_page_token
    with pytest.raises(InvalidArgument) as exc:
        nb.engine.list_workspaces(nb.alice, page_token="forged-token")
    assert exc.value.code == "INVALID_ARGUMENT"
    with pytest.raises(InvalidArgument):
        nb.engine.list_workspaces(nb.bob, page_token=page.next_page_token)
    # the real token still works for its owner
    assert len(nb.engine.list_workspaces(nb.alice, page_token=page.next_page_token).items) == 10


def test_list_shows_only_the_callers_workspaces(nb: Sim) -> None:
    mine = {nb.create()[0].id for _ in range(3)}
    theirs = {nb.create(user=nb.bob)[0].id for _ in range(2)}
    assert set(nb.ids_listed()) == mine
    assert set(nb.ids_listed(nb.bob)) == theirs


# ---------------------------------------------------------------------------------- idempotency


def test_same_token_same_request_answers_the_first_workspace(sim: Sim) -> None:
    ws = sim.engine.create_workspace(sim.alice, context_url=REPO, idempotency_token="k1")
    count = len(sim.events)
    again = sim.engine.create_workspace(sim.alice, context_url=REPO, idempotency_token="k1")
    assert again is ws
    assert len(sim.engine.workspaces) == 1
    assert len(sim.engine.instances) == 1
    assert len(sim.events) == count
    sim.to(100)  # even later, when the answer's instance has moved on
    assert sim.engine.create_workspace(sim.alice, context_url=REPO, idempotency_token="k1") is ws
    assert len(sim.engine.workspaces) == 1


def test_same_token_different_request_is_invalid(sim: Sim) -> None:
    sim.engine.create_workspace(sim.alice, context_url=REPO, idempotency_token="k1")
    with pytest.raises(InvalidArgument) as exc:
        sim.engine.create_workspace(sim.alice, context_url=OTHER_REPO, idempotency_token="k1")
    assert exc.value.code == "INVALID_ARGUMENT"
    sim.engine.add_prebuild("pb-1", REPO)
    with pytest.raises(InvalidArgument):
        sim.engine.create_workspace(sim.alice, prebuild_id="pb-1", idempotency_token="k1")
    assert len(sim.engine.workspaces) == 1


def test_idempotency_tokens_are_scoped_per_user_and_method(sim: Sim) -> None:
    mine = sim.engine.create_workspace(sim.alice, context_url=REPO, idempotency_token="k")
    theirs = sim.engine.create_workspace(sim.bob, context_url=REPO, idempotency_token="k")
    assert theirs is not mine
    assert theirs.owner_id == "bob"
    # the same token on other methods is a different scope
    first = sim.latest(mine)
    sim.to(100)
    assert sim.engine.stop_workspace(sim.alice, mine.id, idempotency_token="k").instance is first
    sim.to(200)
    started = sim.engine.start_workspace(sim.alice, mine.id, idempotency_token="k")
    assert started is not first
    assert sim.engine.active_instance(sim.alice, mine.id) is started


def test_empty_token_does_not_deduplicate(sim: Sim) -> None:
    a = sim.engine.create_workspace(sim.alice, context_url=REPO, idempotency_token="")
    b = sim.engine.create_workspace(sim.alice, context_url=REPO, idempotency_token="")
    assert a is not b
    assert len(sim.engine.workspaces) == 2


def test_failed_validation_records_nothing(sim: Sim) -> None:
    for _ in range(2):  # the same bad request fails again: it was not recorded
        with pytest.raises(InvalidArgument):
            sim.engine.create_workspace(sim.alice, context_url="::bad::", idempotency_token="k2")
    with pytest.raises(NotFound):
        sim.engine.create_workspace(sim.alice, prebuild_id="missing", idempotency_token="k2")
    ws = sim.engine.create_workspace(sim.alice, context_url=REPO, idempotency_token="k2")
    assert sim.engine.create_workspace(sim.alice, context_url=REPO, idempotency_token="k2") is ws
    assert len(sim.engine.workspaces) == 1
    # a stop that fails its precondition is not recorded either
    sim.to(100)
    sim.stop(ws)
    sim.to(200)
    with pytest.raises(FailedPrecondition):
        sim.engine.stop_workspace(sim.alice, ws.id, idempotency_token="s")
    inst = sim.engine.start_workspace(sim.alice, ws.id)
    result = sim.engine.stop_workspace(sim.alice, ws.id, idempotency_token="s")
    assert result.instance is inst
    assert result.phase_before is PE  # the image was cached by the first build


def test_start_and_stop_replays(sim: Sim) -> None:
    ws, first = sim.create()
    sim.to(100)
    stop = sim.engine.stop_workspace(sim.alice, ws.id, idempotency_token="s1")
    assert stop.instance is first
    sim.to(200)
    count = len(sim.events)
    replay = sim.engine.stop_workspace(sim.alice, ws.id, idempotency_token="s1")
    assert replay.instance is first  # no FAILED_PRECONDITION although nothing is active
    assert replay.phase_before is SD
    assert len(sim.events) == count
    started = sim.engine.start_workspace(sim.alice, ws.id, idempotency_token="g1")
    sim.to(300)
    sim.stop(ws)
    sim.to(400)
    instances = len(sim.engine.instances)
    assert sim.engine.start_workspace(sim.alice, ws.id, idempotency_token="g1") is started
    assert len(sim.engine.instances) == instances
    assert ws.active_instance_id is None


# -------------------------------------------------------------------------------- determinism


def _scripted_run(seed: int) -> dict[str, object]:
    events: list[EngineEvent] = []
    plan = LifecyclePlan(
        durations={
            PE: Uniform(SECOND, 5 * SECOND),
            CR: LogNormal(10 * SECOND, 0.6),
            IB: Uniform(30 * SECOND, 90 * SECOND),
        }
    )
    engine = Engine(seed=seed, plan=plan, observer=events.append)
    alice = engine.add_user("alice")
    bob = engine.add_user("bob")
    engine.add_prebuild("pb", OTHER_REPO)
    made = [
        engine.create_workspace(alice, context_url=REPO),
        engine.create_workspace(alice, context_url="snapshot/xyz"),
        engine.create_workspace(bob, prebuild_id="pb"),
        engine.create_workspace(bob, context_url="github.com/a/b/commit/" + "01234567" * 5),
    ]
    engine.advance_to(engine.now + 45 * SECOND)
    engine.stop_workspace(alice, made[1].id)
    engine.advance_to_next()
    engine.advance_to(engine.now + 2 * MINUTE)
    engine.mark_active(made[0].id)
    engine.interrupt(engine.instances[made[2].latest_instance_id or ""].id, MINUTE)
    engine.fail(engine.instances[made[3].latest_instance_id or ""].id, "boom")
    engine.start_workspace(alice, made[1].id)
    for _ in range(30):
        made.append(engine.create_workspace(alice, context_url=REPO))
    engine.advance_to(engine.now + HOUR)
    page = engine.list_workspaces(alice, page_size=5)
    return {
        "users": [alice.token, bob.token],
        "workspaces": [ws.id for ws in made],
        "commits": [ws.context.commit for ws in made],
        "instances": list(engine.instances),
        "owner_tokens": [i.owner_token for i in engine.instances.values()],
        "versions": [i.status.version for i in engine.instances.values()],
        "page": ([ws.id for ws, _ in page.items], page.next_page_token),
        "events": events,
        "now": engine.now,
    }


def test_same_seed_same_calls_give_identical_answers() -> None:
    a = _scripted_run(7)
    b = _scripted_run(7)
    assert a == b
    events = a["events"]
    assert isinstance(events, list) and len(events) > 100
    assert_valid_stream(events)


def test_different_seed_gives_different_ids() -> None:
    a = _scripted_run(7)
    b = _scripted_run(8)
    for key in ("users", "workspaces", "instances", "owner_tokens"):
        assert isinstance(a[key], list) and isinstance(b[key], list)
        assert not set(a[key]) & set(b[key]), key


def test_start_time_is_configurable_and_exact() -> None:
    events: list[EngineEvent] = []
    engine = Engine(seed=1, start_time=1_700_000_000 * SECOND, observer=events.append)
    user = engine.add_user("alice", token="tok")
    assert engine.user_by_token("tok") is user
    ws = engine.create_workspace(user, context_url=REPO)
    assert ws.created_at == 1_700_000_000 * SECOND
    assert events[0].at == 1_700_000_000 * SECOND


def test_advance_to_returns_status_changes_and_refuses_to_go_back(sim: Sim) -> None:
    _, inst = sim.create()
    fired = sim.to(61)
    assert [(secs(c.at), c.status.phase) for c in fired] == [(60, PE)]
    assert sim.engine.now == t(61)
    with pytest.raises(ValueError):
        sim.to(60)
    fired = sim.engine.advance_to_next()
    assert [(secs(c.at), c.status.phase) for c in fired] == [(62, CR)]
    assert sim.engine.now == t(62)
    assert sim.engine.next_event() is not None
    assert inst.phase is CR


def test_advance_to_next_when_idle_does_nothing(sim: Sim) -> None:
    assert sim.engine.advance_to_next() == []
    assert sim.engine.now == START
    assert sim.engine.next_event() is None


# ----------------------------------------------------------------------------------- durations


def test_uniform_draws_are_reproducible_and_bounded() -> None:
    dist = Uniform(2 * SECOND, 5 * SECOND)
    a = [dist.sample(r) for r in [random.Random(3)] for _ in range(2000)]
    b = [dist.sample(r) for r in [random.Random(3)] for _ in range(2000)]
    c = [dist.sample(r) for r in [random.Random(4)] for _ in range(2000)]
    assert a == b
    assert a != c
    assert all(2 * SECOND <= d <= 5 * SECOND for d in a)
    assert len(set(a)) > 1000
    assert Uniform(SECOND, SECOND).sample(random.Random(0)) == SECOND
    for low, high in ((5, 2), (-1, 2)):
        with pytest.raises(ValueError):
            Uniform(low, high)


def test_lognormal_draws_are_reproducible_and_capped() -> None:
    dist = LogNormal(10 * SECOND, 1.0)
    a = [dist.sample(r) for r in [random.Random(3)] for _ in range(2000)]
    b = [dist.sample(r) for r in [random.Random(3)] for _ in range(2000)]
    assert a == b
    assert all(0 <= d <= 1000 * SECOND for d in a)
    assert min(a) < 10 * SECOND < max(a)
    capped = LogNormal(10 * SECOND, 3.0, cap=20 * SECOND)
    drawn = [capped.sample(r) for r in [random.Random(1)] for _ in range(500)]
    assert max(drawn) == 20 * SECOND
    assert LogNormal(10 * SECOND, 0.0).sample(random.Random(0)) == 10 * SECOND
    for median, sigma in ((0, 1.0), (SECOND, -1.0), (SECOND, float("nan"))):
        with pytest.raises(ValueError):
            LogNormal(median, sigma)
    with pytest.raises(ValueError):
        Fixed(-1)


def test_with_durations_sets_fixed_seconds() -> None:
    base = LifecyclePlan()
    plan = base.with_durations(pending=1, creating=0.5)
    assert plan.durations[PE] == Fixed(SECOND)
    assert plan.durations[CR] == Fixed(500_000)
    assert plan.durations[IN] == DEFAULT_DURATIONS[IN]
    assert base.durations[PE] == Fixed(2 * SECOND)  # the original is untouched
    with pytest.raises(ValueError):
        base.with_durations(running=1)
    with pytest.raises(ValueError):
        LifecyclePlan(durations={RU: Fixed(SECOND)})


def test_engine_uses_with_durations(make_sim: MakeSim) -> None:
    sim = make_sim(plan=NO_BUILD.with_durations(pending=1))
    _, inst = sim.create()
    sim.to(100)
    assert sim.path(inst.id) == [(0, PE), (1, CR), (11, IN), (26, RU)]


def test_engine_duration_draws_are_seeded_and_bounded(make_sim: MakeSim) -> None:
    plan = LifecyclePlan(
        build_policy=BuildPolicy.NEVER, durations={PE: Uniform(SECOND, 9 * SECOND)}
    )

    def pending_durations(sim: Sim) -> list[int]:
        instances = [sim.create()[1] for _ in range(50)]
        sim.to(60)
        out = []
        for inst in instances:
            path = sim.changes(inst.id)
            out.append(path[1].at - path[0].at)
        return out

    a = pending_durations(make_sim(seed=3, plan=plan))
    b = pending_durations(make_sim(seed=3, plan=plan))
    c = pending_durations(make_sim(seed=4, plan=plan))
    assert a == b
    assert a != c
    assert all(SECOND <= d <= 9 * SECOND for d in a)
    assert len(set(a)) > 40


# --------------------------------------------------------------------------------------- scale

SCALE_WORKSPACES = 5_000


def test_scale_many_workspaces_run_and_stop() -> None:
    engine = Engine(seed=99, plan=NO_BUILD)
    users = [engine.add_user(f"user{i}") for i in range(10)]
    made = [
        engine.create_workspace(users[i % 10], context_url=f"github.com/org{i % 7}/repo{i % 13}")
        for i in range(SCALE_WORKSPACES)
    ]
    engine.advance_to(engine.now + MINUTE)
    phases = Counter(i.phase for i in engine.instances.values())
    assert phases == {RU: SCALE_WORKSPACES}
    listed = 0
    token = ""
    while True:
        page = engine.list_workspaces(users[3], page_size=100, page_token=token)
        listed += len(page.items)
        token = page.next_page_token
        if not token:
            break
    assert listed == SCALE_WORKSPACES // 10
    for ws in made:
        engine.stop_workspace(users[int(ws.owner_id[4:])], ws.id)
    engine.advance_to(engine.now + MINUTE)
    assert Counter(i.phase for i in engine.instances.values()) == {SD: SCALE_WORKSPACES}
    assert len(engine.instances) == len(engine.workspaces) == SCALE_WORKSPACES
    assert all(ws.active_instance_id is None for ws in engine.workspaces.values())
    assert len(engine.scheduler) == 0


def test_error_classes_name_their_grpc_codes() -> None:
    assert SimError("x").code == "UNKNOWN"
    assert {cls.code for cls in (InvalidArgument, NotFound, FailedPrecondition)} == {
        "INVALID_ARGUMENT",
        "NOT_FOUND",
        "FAILED_PRECONDITION",
    }
    assert PermissionDenied("x").message == "x"


def test_the_happy_path_is_the_chain_of_step_transitions() -> None:
    from simulator.core.transitions import HAPPY_PATH, Trigger, next_phase

    chain = [Phase.IMAGEBUILD]
    while (following := next_phase(chain[-1], Trigger.STEP_DONE)) is not None:
        chain.append(following)
        if following is Phase.RUNNING:  # RUNNING ends only by request, failure or timeout
            chain.append(next_phase(Phase.RUNNING, Trigger.STOP_REQUESTED))  # type: ignore[arg-type]
    assert tuple(chain) == HAPPY_PATH
    assert LEGAL_TRANSITIONS[Phase.STOPPED] == frozenset()


def test_workspaces_of_one_url_share_its_resolved_context() -> None:
    engine = Engine(seed=4)
    alice = engine.add_user("alice")
    a = engine.create_workspace(alice, context_url=REPO)
    b = engine.create_workspace(alice, context_url=REPO)
    c = engine.create_workspace(alice, context_url=OTHER_REPO)
    assert a.context is b.context  # resolved once: a pure function of the URL and the seed
    assert a.description is b.description == "gitpod-io/gitpod"  # one string kept by both
    assert c.context.repository == "github.com/gitpod-io/website"
    other_seed = Engine(seed=5)
    d = other_seed.create_workspace(other_seed.add_user("alice"), context_url=REPO)
    assert d.context.commit != a.context.commit  # the cache is the world's own
    with pytest.raises(InvalidArgument):
        engine.create_workspace(alice, context_url="not a url")
