"""The lifecycle table is whole and consistent: every phase says which timers it starts, keeps and
measures, and those agree with the plan's limits and durations (rules 10-13 of transitions.py)."""

from __future__ import annotations

from simulator.core.plan import TIMED_PHASES, TIMEOUT_NAMES, Timeouts
from simulator.core.scheduler import TIMER_EVENTS, EventKind
from simulator.core.transitions import (
    ACTIVE_PHASES,
    CANCELS,
    EVENT_TRIGGERED_TRANSITIONS,
    MAY_RUN,
    TIMEOUT_ACTIVITY,
    TIMER_TIMEOUT,
    TIMERS,
    Phase,
    Timeout,
    Timer,
    Trigger,
    next_phase,
)


def test_every_phase_has_timers_and_transitions() -> None:
    assert set(TIMERS) == set(EVENT_TRIGGERED_TRANSITIONS) == set(Phase) - {Phase.UNSPECIFIED}


def test_the_timeout_kinds_are_the_plans_limits() -> None:
    assert tuple(t.value for t in Timeout) == TIMEOUT_NAMES
    assert set(TIMEOUT_ACTIVITY) == set(Timeout)
    assert all(hasattr(Timeouts(), t.value) for t in Timeout)


def test_a_step_runs_exactly_in_the_phases_with_a_duration() -> None:
    for phase, timers in TIMERS.items():
        assert (Timer.STEP in timers.starts) == (phase in TIMED_PHASES), phase.name
        assert (Trigger.STEP_DONE in EVENT_TRIGGERED_TRANSITIONS[phase]) == (
            phase in TIMED_PHASES
        ), phase.name


def test_a_phase_with_a_phase_timeout_names_what_it_measures_and_can_time_out() -> None:
    for phase, timers in TIMERS.items():
        runs = Timer.PHASE_TIMEOUT in MAY_RUN[phase]
        assert runs == (timers.timeout is not None), phase.name
        if runs:
            assert Trigger.TIMED_OUT in EVENT_TRIGGERED_TRANSITIONS[phase], phase.name


def test_the_own_timeouts_run_only_where_a_timeout_applies() -> None:
    for timer in TIMER_TIMEOUT:
        for phase in (p for p, timers in MAY_RUN.items() if timer in timers):
            assert Trigger.TIMED_OUT in EVENT_TRIGGERED_TRANSITIONS[phase], (timer, phase)
    assert {p for p, timers in MAY_RUN.items() if Timer.INACTIVITY in timers} == {Phase.RUNNING}
    assert {p for p, timers in MAY_RUN.items() if Timer.LIFETIME in timers} == {
        Phase.RUNNING,
        Phase.INTERRUPTED,
    }


def test_startup_counts_from_pending_through_initializing() -> None:
    """BEHAVIOUR.md: the startup limits count from the instance's entry into PENDING."""
    assert TIMER_TIMEOUT[Timer.STARTUP] is Timeout.STARTUP
    assert Timer.STARTUP in TIMERS[Phase.PENDING].starts
    assert Timer.STARTUP in TIMERS[Phase.CREATING].keeps
    assert Timer.STARTUP in TIMERS[Phase.INITIALIZING].keeps
    assert Timer.STARTUP not in CANCELS[Phase.CREATING]
    assert Timer.STARTUP not in CANCELS[Phase.INITIALIZING]
    assert Timer.STARTUP in CANCELS[Phase.RUNNING]
    assert TIMERS[Phase.PENDING].timeout is Timeout.INITIALIZATION


def test_an_image_build_times_out_straight_to_stopped() -> None:
    assert TIMERS[Phase.IMAGEBUILD].timeout is Timeout.IMAGE_BUILD
    assert Timer.PHASE_TIMEOUT in TIMERS[Phase.IMAGEBUILD].starts
    assert next_phase(Phase.IMAGEBUILD, Trigger.TIMED_OUT) is Phase.STOPPED


def test_stopped_leaves_nothing_pending() -> None:
    assert MAY_RUN[Phase.STOPPED] == frozenset()
    assert not TIMERS[Phase.STOPPED].starts
    stopping_can_hold = MAY_RUN[Phase.STOPPING]
    assert set(CANCELS[Phase.STOPPED]) >= stopping_can_hold


def test_entering_cancels_everything_a_phase_before_can_leave_that_it_does_not_keep() -> None:
    for phase, timers in TIMERS.items():
        before = set().union(
            *(MAY_RUN[p] for p, t in EVENT_TRIGGERED_TRANSITIONS.items() if phase in t.values())
        )
        assert set(CANCELS[phase]) == before - timers.keeps, phase.name
        assert MAY_RUN[phase] <= set(timers.starts) | timers.during | timers.keeps


def test_every_timer_has_an_event_kind() -> None:
    assert set(TIMER_EVENTS) == set(Timer)
    assert set(TIMER_EVENTS.values()) == set(EventKind) - {EventKind.WAKE}
    assert {TIMER_EVENTS[t] for t in TIMER_TIMEOUT} | {EventKind.PHASE_TIMEOUT} == {
        k for k in EventKind if k.is_timeout
    }


def test_active_phases_are_the_ones_with_somewhere_to_go() -> None:
    assert {p for p, t in EVENT_TRIGGERED_TRANSITIONS.items() if t} == ACTIVE_PHASES
