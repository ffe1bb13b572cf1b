"""Starting an instance's timers: what ``transitions.TIMERS`` says entering a phase starts.

Rules:
- A step lasts what the instance's plan draws from the ``durations`` stream; a phase stalled by a
  bound ``stall-phase`` fault gets no step (only a timeout, a stop or clearing the fault ends it).
- Entering IMAGEBUILD prepares the build (its log's seed) with the step's duration, stalled or not.
- A limit the plan does not set starts nothing. The phase limit remembers when it started (the
  ``took`` of its timeout text); startup counts from entering PENDING and is kept until RUNNING.
- Lifetime counts from creation, inactivity from the latest activity (else from RUNNING); neither
  is ever scheduled in the past: one already over ends at once. A pending lifetime is kept.

Holds the scheduler, the random streams, the builds and the fault effects, never the engine.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

from simulator.core.fault_effects import FaultEffects
from simulator.core.faults import StallPhase
from simulator.core.image_builds import ImageBuilds
from simulator.core.model import Instance
from simulator.core.scheduler import EventKind, ScheduledEvent, Scheduler
from simulator.core.seeds import RandomStreams
from simulator.core.simtime import Duration, SimTime
from simulator.core.transitions import TIMERS, Phase, PhaseTimers, Timer

Starter = Callable[[Instance, SimTime], None]
"""Starts one timer of a phase being entered."""


class InstanceTimers:
    """Schedules the timers a phase starts on entry, and the steps and inactivity restarts."""

    __slots__ = ("_builds", "_effects", "_random", "_scheduler", "starters")

    def __init__(
        self,
        scheduler: Scheduler,
        random: RandomStreams,
        builds: ImageBuilds,
        effects: FaultEffects,
    ) -> None:
        self._scheduler = scheduler
        self._random = random
        self._builds = builds
        self._effects = effects
        """Its ``book`` is the world's current fault book (an import replaces it)."""
        self.starters: dict[Phase, tuple[Starter, ...]] = {
            phase: self._compile(phase, rule) for phase, rule in TIMERS.items()
        }
        """phase -> what entering it calls, in the table's order, each with ``(inst, now)``."""

    def _compile(self, phase: Phase, rule: PhaseTimers) -> tuple[Starter, ...]:
        """One row of ``transitions.TIMERS`` as the calls it makes (read once, not per entry)."""
        starters: list[Starter] = []
        for timer in rule.starts:
            if timer is Timer.STEP:
                step = self._start_build if phase is Phase.IMAGEBUILD else self._start_step
                starters.append(functools.partial(step, phase))
            elif timer is Timer.PHASE_TIMEOUT:
                assert rule.timeout is not None, f"{phase.name} starts a phase timeout of no kind"
                starters.append(functools.partial(self._start_phase_timeout, rule.timeout.value))
            elif timer is Timer.STARTUP:
                starters.append(self._start_startup)
            elif timer is Timer.INACTIVITY:
                starters.append(self.inactivity)
            elif timer is Timer.LIFETIME:
                starters.append(self._start_lifetime)
            elif timer is Timer.INTERRUPT:
                starters.append(self._effects.schedule_interrupt)
            else:
                raise AssertionError(f"{phase.name} cannot start {timer.name} on entry")
        return tuple(starters)

    def _start_build(self, phase: Phase, inst: Instance, now: SimTime) -> None:
        """IMAGEBUILD's step: the build's duration, whether or not a fault stalls it."""
        plan = inst.plan
        duration = plan.duration_of(phase, self._random.durations)
        if not inst.faults or self._effects.book.bound(inst, StallPhase, phase) is None:
            inst.step = self._scheduler.schedule(now + duration, EventKind.STEP, inst.id)
        self._builds.prepare(inst, self._random.logs, plan.build_log_lines, now, duration)

    def _start_step(self, phase: Phase, inst: Instance, now: SimTime) -> None:
        inst.step = self.step(inst, phase, now)

    def _start_phase_timeout(self, limit_name: str, inst: Instance, now: SimTime) -> None:
        limit: Duration | None = getattr(inst.plan.timeouts, limit_name)
        if limit is not None:
            inst.timeout_ref = now
            inst.phase_timeout = self._scheduler.schedule(
                now + limit, EventKind.PHASE_TIMEOUT, inst.id
            )

    def _start_startup(self, inst: Instance, now: SimTime) -> None:
        limit = inst.plan.timeouts.startup
        if limit is not None:
            inst.startup = self._scheduler.schedule(now + limit, EventKind.STARTUP_TIMEOUT, inst.id)

    def _start_lifetime(self, inst: Instance, now: SimTime) -> None:
        limit = inst.plan.timeouts.max_lifetime
        if inst.lifetime is None and limit is not None:
            at = max(inst.created_at + limit, now)
            inst.lifetime = self._scheduler.schedule(at, EventKind.LIFETIME_TIMEOUT, inst.id)

    def step(self, inst: Instance, phase: Phase, now: SimTime) -> ScheduledEvent | None:
        """The end of ``phase``'s step, or None when a fault stalls it."""
        if inst.faults and self._effects.book.bound(inst, StallPhase, phase) is not None:
            return None
        duration = inst.plan.duration_of(phase, self._random.durations)
        return self._scheduler.schedule(now + duration, EventKind.STEP, inst.id)

    def inactivity(self, inst: Instance, now: SimTime) -> None:
        """(Re)start the inactivity limit from the latest activity."""
        self._scheduler.cancel(inst.inactivity)
        inst.inactivity = None
        limit = inst.plan.timeouts.inactivity
        if limit is not None:
            since = inst.last_activity if inst.last_activity is not None else inst.running_at
            assert since is not None
            at = max(since + limit, now)
            inst.inactivity = self._scheduler.schedule(at, EventKind.INACTIVITY_TIMEOUT, inst.id)
