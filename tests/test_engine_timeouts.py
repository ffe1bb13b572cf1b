"""Tests for the engine's timeouts: limits, exact upstream texts, and what follows each.

Text: ``workspace timed out after <activity> (<HHhMMm>) took longer than <HHhMMm>``. A timeout is a
status change of its own in the current phase (``conditions.timeout`` set, cause
``timeout:<activity>``), then STOPPING at the same instant, then STOPPED after the STOPPING
duration (5 s by default); a STOPPING timeout forces STOPPED at once. Timeouts never set
``stopped_by_request`` nor ``failed``.

Default durations: PENDING 2 s, CREATING 10 s, INITIALIZING 15 s, STOPPING 5 s; image builds are
switched off here, so an instance is RUNNING 27 s after its start.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from engine_helpers import assert_valid_stream, secs, t

from simulator.core.engine import Engine, timeout_text
from simulator.core.errors import FailedPrecondition
from simulator.core.model import EngineEvent, Instance, StatusChange, Workspace
from simulator.core.plan import BuildPolicy, LifecyclePlan, Timeouts
from simulator.core.simtime import HOUR, MINUTE, SECOND
from simulator.core.transitions import Phase

REPO = "https://github.com/gitpod-io/gitpod"
NO_BUILD = LifecyclePlan(build_policy=BuildPolicy.NEVER)

PE, CR, IN, RU, IR, SG, SD = (
    Phase.PENDING,
    Phase.CREATING,
    Phase.INITIALIZING,
    Phase.RUNNING,
    Phase.INTERRUPTED,
    Phase.STOPPING,
    Phase.STOPPED,
)

Row = tuple[float, Phase, str, str]


class Sim:
    def __init__(self, plan: LifecyclePlan = NO_BUILD) -> None:
        self.events: list[EngineEvent] = []
        self.engine = Engine(seed=3, plan=plan, observer=self.events.append)
        self.alice = self.engine.add_user("alice")

    def create(self) -> tuple[Workspace, Instance]:
        ws = self.engine.create_workspace(self.alice, context_url=REPO)
        inst = self.engine.latest_instance(ws)
        assert inst is not None
        return ws, inst

    def to(self, seconds: float) -> None:
        self.engine.advance_to(t(seconds))

    def changes(self, inst_id: str) -> list[StatusChange]:
        return [e for e in self.events if isinstance(e, StatusChange) and e.instance_id == inst_id]

    def rows(self, inst: Instance) -> list[Row]:
        """(seconds, phase, timeout, cause) of every status change of ``inst``."""
        return [
            (secs(e.at), e.status.phase, e.status.timeout, e.cause)
            for e in self.events
            if isinstance(e, StatusChange) and e.instance_id == inst.id
        ]


@pytest.fixture
def make_sim() -> Iterator[type[Sim]]:
    made: list[Sim] = []

    class Tracked(Sim):
        def __init__(self, plan: LifecyclePlan = NO_BUILD) -> None:
            super().__init__(plan)
            made.append(self)

    yield Tracked
    for sim in made:
        assert_valid_stream(sim.events)
        sim.engine.check_invariants()


def timed_out(at: float, phase: Phase, text: str, activity: str, stop: float = 5) -> list[Row]:
    """The three changes a timeout makes: condition, STOPPING, STOPPED ``stop`` seconds later."""
    cause = f"timeout:{activity}"
    return [(at, phase, text, cause), (at, SG, text, cause), (at + stop, SD, text, "step")]


def assert_not_by_request(inst: Instance) -> None:
    assert inst.phase is SD
    assert inst.status.stopped_by_request is None
    assert inst.status.failed == ""


def test_timeout_text_format() -> None:
    assert (
        timeout_text("period of inactivity", 30 * MINUTE, 30 * MINUTE)
        == "workspace timed out after period of inactivity (00h30m) took longer than 00h30m"
    )
    assert (
        timeout_text("maximum lifetime", 36 * HOUR, 36 * HOUR)
        == "workspace timed out after maximum lifetime (36h00m) took longer than 36h00m"
    )


# ------------------------------------------------------------------------------------ startup


def test_pending_initialization_timeout_30m(make_sim: type[Sim]) -> None:
    sim = make_sim(NO_BUILD.with_durations(pending=2 * 3600))
    ws, inst = sim.create()
    sim.to(2 * 3600)
    text = "workspace timed out after initialization (00h30m) took longer than 00h30m"
    assert sim.rows(inst) == [
        (0, PE, "", "start"),
        *timed_out(1800, PE, text, "initialization"),
    ]
    assert_not_by_request(inst)
    assert ws.active_instance_id is None
    assert len(sim.engine.scheduler) == 0


def test_pending_timeout_counts_from_pending_not_from_the_build(make_sim: type[Sim]) -> None:
    sim = make_sim(LifecyclePlan().with_durations(pending=2 * 3600))
    _, inst = sim.create()  # IMAGEBUILD 0..60, PENDING from 60
    sim.to(3 * 3600)
    text = "workspace timed out after initialization (00h30m) took longer than 00h30m"
    assert sim.rows(inst)[-3:] == timed_out(60 + 1800, PE, text, "initialization")


def test_startup_timeout_1h_in_creating(make_sim: type[Sim]) -> None:
    sim = make_sim(NO_BUILD.with_durations(creating=2 * 3600))
    _, inst = sim.create()
    sim.to(3 * 3600)
    text = "workspace timed out after startup (01h00m) took longer than 01h00m"
    assert sim.rows(inst) == [
        (0, PE, "", "start"),
        (2, CR, "", "step"),
        *timed_out(3600, CR, text, "startup"),  # counted from PENDING, at 0
    ]
    assert_not_by_request(inst)


def test_startup_timeout_counts_the_time_in_pending(make_sim: type[Sim]) -> None:
    """BEHAVIOUR.md: the startup limits count from the instance's entry into PENDING, so time
    spent in PENDING counts toward the 1 h total startup (issue 18: PENDING 1,142 s, then a
    CREATING that never ends timed out 4,742 s after PENDING began)."""
    sim = make_sim(LifecyclePlan().with_durations(pending=1142, creating=3 * 3600))
    _, inst = sim.create()  # IMAGEBUILD 0..60, PENDING from 60
    sim.to(3 * 3600)
    text = "workspace timed out after startup (01h00m) took longer than 01h00m"
    assert sim.rows(inst)[-4:] == [
        (60 + 1142, CR, "", "step"),
        *timed_out(60 + 3600, CR, text, "startup"),
    ]


def test_startup_timeout_can_fire_in_pending(make_sim: type[Sim]) -> None:
    """The startup limit runs in PENDING too: with the initialization limit off, a PENDING
    that lasts longer than startup times out by startup."""
    plan = LifecyclePlan(build_policy=BuildPolicy.NEVER, timeouts=Timeouts(initialization=None))
    sim = make_sim(plan.with_durations(pending=2 * 3600))
    _, inst = sim.create()
    sim.to(3 * 3600)
    text = "workspace timed out after startup (01h00m) took longer than 01h00m"
    assert sim.rows(inst) == [(0, PE, "", "start"), *timed_out(3600, PE, text, "startup")]


def test_startup_timeout_spans_creating_and_initializing(make_sim: type[Sim]) -> None:
    sim = make_sim(NO_BUILD.with_durations(creating=50 * 60, initializing=2 * 3600))
    _, inst = sim.create()
    sim.to(3 * 3600)
    text = "workspace timed out after startup (01h00m) took longer than 01h00m"
    assert sim.rows(inst) == [
        (0, PE, "", "start"),
        (2, CR, "", "step"),
        (2 + 3000, IN, "", "step"),
        *timed_out(3600, IN, text, "startup"),
    ]
    assert_not_by_request(inst)


def test_startup_limits_are_configurable(make_sim: type[Sim]) -> None:
    plan = LifecyclePlan(
        build_policy=BuildPolicy.NEVER,
        timeouts=Timeouts(initialization=90 * SECOND, startup=10 * MINUTE),
    ).with_durations(creating=3600)
    sim = make_sim(plan)
    _, inst = sim.create()
    sim.to(3600)
    text = "workspace timed out after startup (00h10m) took longer than 00h10m"
    assert sim.rows(inst)[-3:] == timed_out(600, CR, text, "startup")
    sim2 = make_sim(plan.with_durations(pending=3600))
    _, inst2 = sim2.create()
    sim2.to(3600)
    text2 = "workspace timed out after initialization (00h02m) took longer than 00h02m"
    assert sim2.rows(inst2)[-3:] == timed_out(90, PE, text2, "initialization")


def test_normal_start_leaves_no_startup_timeout_behind(make_sim: type[Sim]) -> None:
    sim = make_sim(
        LifecyclePlan(build_policy=BuildPolicy.NEVER, timeouts=Timeouts(inactivity=None))
    )
    _, inst = sim.create()
    sim.to(35 * 3600)  # only the 36h lifetime is left
    assert inst.phase is RU
    assert inst.status.timeout == ""
    assert sim.rows(inst)[-1] == (27, RU, "", "step")


# ---------------------------------------------------------------------------------- inactivity


def test_inactivity_timeout_30m_after_running_when_never_marked(make_sim: type[Sim]) -> None:
    sim = make_sim()
    _, inst = sim.create()
    sim.to(27 + 1799)
    assert inst.phase is RU
    sim.to(3 * 3600)
    text = "workspace timed out after period of inactivity (00h30m) took longer than 00h30m"
    assert sim.rows(inst) == [
        (0, PE, "", "start"),
        (2, CR, "", "step"),
        (12, IN, "", "step"),
        (27, RU, "", "step"),
        *timed_out(27 + 1800, RU, text, "period of inactivity"),
    ]
    assert_not_by_request(inst)
    assert inst.status.first_user_activity is None


def test_mark_active_restarts_the_inactivity_timer(make_sim: type[Sim]) -> None:
    sim = make_sim()
    ws, inst = sim.create()
    sim.to(600)
    sim.engine.mark_active(ws.id)
    sim.to(1500)
    sim.engine.mark_active(ws.id)
    sim.to(1500 + 1799)
    assert inst.phase is RU
    sim.to(3 * 3600)
    text = "workspace timed out after period of inactivity (00h30m) took longer than 00h30m"
    assert sim.rows(inst)[-4:] == [
        (600, RU, "", "user-activity"),
        *timed_out(1500 + 1800, RU, text, "period of inactivity"),
    ]
    assert inst.status.first_user_activity == t(600)
    assert_not_by_request(inst)


def test_inactivity_limit_is_configurable(make_sim: type[Sim]) -> None:
    sim = make_sim(
        LifecyclePlan(build_policy=BuildPolicy.NEVER, timeouts=Timeouts(inactivity=90 * MINUTE))
    )
    _, inst = sim.create()
    sim.to(3 * 3600)
    text = "workspace timed out after period of inactivity (01h30m) took longer than 01h30m"
    assert sim.rows(inst)[-3:] == timed_out(27 + 5400, RU, text, "period of inactivity")


# ------------------------------------------------------------------------------------ lifetime


def test_max_lifetime_36h_despite_activity(make_sim: type[Sim]) -> None:
    sim = make_sim()
    ws, inst = sim.create()
    mark = 60
    while mark < 36 * 3600:
        sim.to(mark)
        sim.engine.mark_active(ws.id)
        mark += 20 * 60
    sim.to(37 * 3600)
    text = "workspace timed out after maximum lifetime (36h00m) took longer than 36h00m"
    rows = sim.rows(inst)
    assert rows[-4:] == [
        (60, RU, "", "user-activity"),  # the only status change the marks make
        *timed_out(36 * 3600, RU, text, "maximum lifetime"),
    ]
    assert len(rows) == 4 + 4
    assert_not_by_request(inst)


def test_max_lifetime_also_ends_an_interruption(make_sim: type[Sim]) -> None:
    sim = make_sim()
    ws, inst = sim.create()
    mark = 60
    while mark < 36 * 3600 - 5 * 60:
        sim.to(mark)
        sim.engine.mark_active(ws.id)
        mark += 20 * 60
    sim.to(36 * 3600 - 2 * 60)
    sim.engine.interrupt(inst.id)  # its own 5m limit would end at 36h03m
    sim.to(37 * 3600)
    text = "workspace timed out after maximum lifetime (36h00m) took longer than 36h00m"
    assert sim.rows(inst)[-4:] == [
        (36 * 3600 - 120, IR, "", "interrupted"),
        *timed_out(36 * 3600, IR, text, "maximum lifetime"),
    ]


def test_max_lifetime_already_over_when_running_times_out_at_once(make_sim: type[Sim]) -> None:
    """Regression: the lifetime timer used to be scheduled in the past, moving time backwards."""
    plan = LifecyclePlan(
        build_policy=BuildPolicy.NEVER, timeouts=Timeouts(startup=None)
    ).with_durations(creating=40 * 3600)
    sim = make_sim(plan)
    _, inst = sim.create()
    sim.to(41 * 3600)
    running_at = 2 + 40 * 3600 + 15
    text = "workspace timed out after maximum lifetime (40h00m) took longer than 36h00m"
    assert sim.rows(inst)[-4:] == [
        (running_at, RU, "", "step"),
        *timed_out(running_at, RU, text, "maximum lifetime"),
    ]
    assert_valid_stream(sim.events)


# -------------------------------------------------------------------------------- interruption


def test_interruption_timeout_5m(make_sim: type[Sim]) -> None:
    sim = make_sim()
    _, inst = sim.create()
    sim.to(100)
    sim.engine.interrupt(inst.id)  # no recovery planned
    sim.to(3600)
    text = "workspace timed out after workspace interruption (00h05m) took longer than 00h05m"
    assert sim.rows(inst)[-4:] == [
        (100, IR, "", "interrupted"),
        *timed_out(400, IR, text, "workspace interruption"),
    ]
    interrupted = [c.status for c in sim.changes(inst.id) if c.status.phase is IR]
    assert {s.message for s in interrupted} == {"workspace is temporarily unavailable"}
    assert inst.status.message == ""  # cleared on leaving INTERRUPTED
    assert_not_by_request(inst)


def test_interruption_longer_than_its_limit_never_recovers(make_sim: type[Sim]) -> None:
    sim = make_sim()
    _, inst = sim.create()
    sim.to(100)
    sim.engine.interrupt(inst.id, 10 * MINUTE)
    sim.to(3600)
    phases = [phase for _, phase, _, _ in sim.rows(inst)]
    assert phases[-4:] == [IR, IR, SG, SD]
    assert RU not in phases[-4:]
    assert inst.stopped_at == t(405)


def test_recovery_cancels_the_interruption_timeout(make_sim: type[Sim]) -> None:
    sim = make_sim()
    ws, inst = sim.create()
    sim.to(100)
    sim.engine.mark_active(ws.id)
    sim.engine.interrupt(inst.id, 4 * MINUTE)
    sim.to(1000)
    assert inst.phase is RU
    assert inst.status.timeout == ""
    sim.to(100 + 1799)
    assert inst.phase is RU
    sim.to(3600)
    # inactivity still counts from the last activity
    text = "workspace timed out after period of inactivity (00h30m) took longer than 00h30m"
    assert sim.rows(inst)[-3:] == timed_out(1900, RU, text, "period of inactivity")


# ------------------------------------------------------------------------------------ stopping


def test_stopping_timeout_1h_forces_stopped(make_sim: type[Sim]) -> None:
    sim = make_sim(NO_BUILD.with_durations(stopping=2 * 3600))
    ws, inst = sim.create()
    sim.to(100)
    sim.engine.stop_workspace(sim.alice, ws.id)
    sim.to(3 * 3600)
    text = "workspace timed out after stopping (01h00m) took longer than 01h00m"
    assert sim.rows(inst)[-4:] == [
        (100, RU, "", "stop-request"),
        (100, SG, "", "stop-request"),
        (3700, SG, text, "timeout:stopping"),
        (3700, SD, text, "timeout:stopping"),
    ]
    assert inst.status.stopped_by_request is True  # the request's mark stays
    assert inst.stopped_at == t(3700)
    assert len(sim.engine.scheduler) == 0


def test_stopping_after_a_timeout_can_time_out_too(make_sim: type[Sim]) -> None:
    """BEHAVIOUR.md: when a second timeout fires later (a STOPPING timeout after an inactivity
    timeout), `conditions.timeout` keeps the first text: it says why the instance stopped."""
    sim = make_sim(NO_BUILD.with_durations(stopping=2 * 3600))
    _, inst = sim.create()
    sim.to(5 * 3600)
    first = "workspace timed out after period of inactivity (00h30m) took longer than 00h30m"
    assert sim.rows(inst)[-3:] == [
        (1827, RU, first, "timeout:period of inactivity"),
        (1827, SG, first, "timeout:period of inactivity"),
        (1827 + 3600, SD, first, "timeout:stopping"),  # the phase changes, the text stays
    ]
    assert_not_by_request(inst)


def test_a_stopping_timeout_after_a_stop_request_sets_its_text(make_sim: type[Sim]) -> None:
    sim = make_sim(NO_BUILD.with_durations(stopping=2 * 3600))
    ws, inst = sim.create()
    sim.to(100)
    sim.engine.stop_workspace(sim.alice, ws.id)
    sim.to(5 * 3600)
    text = "workspace timed out after stopping (01h00m) took longer than 01h00m"
    assert sim.rows(inst)[-2:] == [
        (3700, SG, text, "timeout:stopping"),
        (3700, SD, text, "timeout:stopping"),
    ]


# ---------------------------------------------------------------------------------- image build


def test_an_image_build_still_running_after_1h_is_stopped(make_sim: type[Sim]) -> None:
    """BEHAVIOUR.md: an instance still in IMAGEBUILD 1 h after its creation is stopped, with no
    failed condition; it goes to STOPPED with its own timeout text."""
    sim = make_sim(LifecyclePlan().with_durations(imagebuild=2 * 3600))
    ws, inst = sim.create()
    sim.to(3 * 3600)
    text = "workspace timed out after image build (01h00m) took longer than 01h00m"
    assert sim.rows(inst) == [
        (0, Phase.IMAGEBUILD, "", "start"),
        (3600, Phase.IMAGEBUILD, text, "timeout:image build"),
        (3600, SD, text, "timeout:image build"),
    ]
    assert_not_by_request(inst)
    assert inst.status.message == ""
    assert inst.build is not None and inst.build.finished and not inst.build.failed
    assert not any(line.startswith("Successfully built") for line in inst.build.lines)
    assert inst.repository not in sim.engine.image_cache
    assert ws.active_instance_id is None and len(sim.engine.scheduler) == 0


def test_the_image_build_limit_is_configurable(make_sim: type[Sim]) -> None:
    plan = LifecyclePlan(timeouts=Timeouts(image_build=10 * MINUTE)).with_durations(imagebuild=3600)
    sim = make_sim(plan)
    _, inst = sim.create()
    sim.to(3600)
    text = "workspace timed out after image build (00h10m) took longer than 00h10m"
    assert sim.rows(inst)[-2:] == [
        (600, Phase.IMAGEBUILD, text, "timeout:image build"),
        (600, SD, text, "timeout:image build"),
    ]
    off = make_sim(
        LifecyclePlan(timeouts=Timeouts(image_build=None)).with_durations(imagebuild=3 * 3600)
    )
    _, built = off.create()
    off.to(2 * 3600)
    assert built.phase is Phase.IMAGEBUILD


# ---------------------------------------------------------------------- the interruption message


@pytest.mark.parametrize("how", ["recovered", "stopped", "failed", "timed out"])
def test_leaving_interrupted_clears_its_message(make_sim: type[Sim], how: str) -> None:
    """BEHAVIOUR.md: `message = "workspace is temporarily unavailable"` set by an interruption
    is cleared when the instance leaves INTERRUPTED, whichever way it leaves (a failure's own
    message replaces it)."""
    sim = make_sim()
    ws, inst = sim.create()
    sim.to(100)
    sim.engine.interrupt(inst.id)
    assert inst.status.message == "workspace is temporarily unavailable"
    if how == "recovered":
        sim.engine.recover(inst.id)
    elif how == "stopped":
        sim.engine.stop_workspace(sim.alice, ws.id)
    elif how == "failed":
        sim.engine.fail(inst.id, "node lost")
    sim.to(3600)
    after = [c.status for c in sim.changes(inst.id) if c.previous is not None
             and c.previous.phase is IR and c.status.phase is not IR]  # fmt: skip
    assert len(after) == 1
    expected = "node lost" if how == "failed" else ""
    assert after[0].message == expected
    assert inst.status.message == expected


# ----------------------------------------------------------------------------- no limits at all


def test_disabled_limits_never_fire(make_sim: type[Sim]) -> None:
    off = Timeouts(
        initialization=None,
        startup=None,
        inactivity=None,
        max_lifetime=None,
        interruption=None,
        stopping=None,
        image_build=None,
    )
    sim = make_sim(LifecyclePlan(build_policy=BuildPolicy.NEVER, timeouts=off))
    _, running = sim.create()
    _, interrupted = sim.create()
    sim.to(100)
    sim.engine.interrupt(interrupted.id)
    sim.to(100 * 3600)
    assert running.phase is RU
    assert interrupted.phase is IR
    assert running.status.timeout == interrupted.status.timeout == ""
    assert len(sim.engine.scheduler) == 0


def test_timeout_does_not_apply_to_stopped(make_sim: type[Sim]) -> None:
    sim = make_sim()
    ws, inst = sim.create()
    sim.to(100)
    sim.engine.stop_workspace(sim.alice, ws.id)
    sim.to(100 * 3600)
    assert inst.status.timeout == ""
    with pytest.raises(FailedPrecondition):
        sim.engine.mark_active(ws.id)
