"""What lifecycle faults do to instances: binding, stalling, interrupting, and undoing on clear.

The :class:`~simulator.core.fault_book.FaultBook` knows which faults exist and which ones hit a
call, a stream or a start; this part acts on an instance's timers when a fault binds to it or is
cleared. It holds the engine's tables by reference (never the engine), and the engine calls it at
``now``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from simulator.core.errors import FailedPrecondition, NotFound
from simulator.core.fault_book import FaultBook
from simulator.core.faults import (
    Effect,
    Family,
    Fault,
    InterruptRunning,
    StallPhase,
    Target,
    TargetKind,
    kind_of,
    validate_effect,
)
from simulator.core.model import Instance, User, Workspace
from simulator.core.plan import TIMED_PHASES
from simulator.core.scheduler import EventKind, ScheduledEvent, Scheduler
from simulator.core.simtime import SimTime
from simulator.core.transitions import Phase

ScheduleStep = Callable[[Instance, Phase], ScheduledEvent | None]


class FaultEffects:
    """Faults as they act on a world's instances (the engine's part for faults)."""

    __slots__ = ("_instances", "_scheduler", "_step", "_users", "_workspaces", "book")

    def __init__(
        self,
        book: FaultBook,
        scheduler: Scheduler,
        *,
        workspaces: Mapping[str, Workspace],
        instances: Mapping[str, Instance],
        users: Mapping[str, User],
        schedule_step: ScheduleStep,
    ) -> None:
        self.book = book
        """The faults held (a state import puts another book here)."""
        self._scheduler = scheduler
        self._workspaces = workspaces
        self._instances = instances
        self._users = users
        self._step = schedule_step

    def add(
        self,
        effect: Effect,
        target: Target,
        *,
        now: SimTime,
        count: int,
        active_from: SimTime | None,
        active_until: SimTime | None,
        skip: int,
    ) -> Fault:
        """Register a fault; one aimed at a workspace or instance binds to its active one now."""
        validate_effect(effect)
        if target.kind is TargetKind.USER and target.value not in self._users:
            raise NotFound(f"user {target.value!r} does not exist")
        if target.kind is TargetKind.WORKSPACE and target.value not in self._workspaces:
            raise NotFound(f"workspace {target.value!r} does not exist")
        if target.kind is TargetKind.INSTANCE:
            inst = self._instances.get(target.value)
            if inst is None:
                raise NotFound(f"workspace instance {target.value!r} does not exist")
            if kind_of(effect).family is Family.LIFECYCLE and not inst.status.is_active:
                raise FailedPrecondition(f"instance {target.value} is STOPPED")
        fault = self.book.add(
            effect,
            target,
            count=count,
            active_from=active_from,
            active_until=active_until,
            skip=skip,
            now=now,
        )
        if fault.is_lifecycle and fault.applies_at(now):
            current = self._active_target(target)
            if current is not None and not fault.passes():
                self.bind(fault, current, now, apply_now=True)
        return fault

    def clear(self, fault_ids: list[str] | None, now: SimTime) -> int:
        """Remove faults (all when ``fault_ids`` is None); stalled phases they caused go on."""
        book = self.book
        chosen = book.select(fault_ids)
        for fault in chosen:
            book.remove(fault)
            for instance_id in fault.instances:
                inst = self._instances[instance_id]
                if book.unbind(fault, inst):
                    self._resume(inst, fault, now)
        return len(chosen)

    def bind(self, fault: Fault, inst: Instance, now: SimTime, *, apply_now: bool) -> None:
        """Attach a lifecycle fault to an instance; ``apply_now`` acts on its current phase."""
        self.book.bind(fault, inst)
        if not apply_now:
            return
        effect = fault.effect
        if isinstance(effect, StallPhase) and inst.phase is effect.phase:
            self._scheduler.cancel(inst.step)
            inst.step = None
        elif isinstance(effect, InterruptRunning) and inst.phase is Phase.RUNNING:
            self.schedule_interrupt(inst, now)

    def schedule_interrupt(self, inst: Instance, now: SimTime) -> None:
        """Start the interruption a bound ``interrupt-running`` fault asks for (once)."""
        fault = self.book.bound(inst, InterruptRunning, None)
        if fault is None or inst.interrupt is not None:
            return
        effect = fault.effect
        assert isinstance(effect, InterruptRunning)
        inst.interrupt = self._scheduler.schedule(now + effect.after, EventKind.INTERRUPT, inst.id)

    def _active_target(self, target: Target) -> Instance | None:
        if target.kind is TargetKind.INSTANCE:
            inst = self._instances[target.value]
            return inst if inst.status.is_active else None
        if target.kind is TargetKind.WORKSPACE:
            ws = self._workspaces[target.value]
            return self._instances[ws.active_instance_id] if ws.active_instance_id else None
        return None

    def _resume(self, inst: Instance, cleared: Fault, now: SimTime) -> None:
        """Undo what a cleared fault was doing to an active instance."""
        if not inst.status.is_active:
            return
        phase = inst.phase
        bound = self.book.bound
        if (
            isinstance(cleared.effect, StallPhase)
            and inst.step is None
            and phase in TIMED_PHASES
            and phase is cleared.effect.phase
            and bound(inst, StallPhase, phase) is None
        ):
            if phase is Phase.IMAGEBUILD and inst.build is not None:
                inst.build.started_at, inst.build.duration = now, 0
            inst.step = self._step(inst, phase)
        elif (
            isinstance(cleared.effect, InterruptRunning)
            and inst.interrupt is not None
            and bound(inst, InterruptRunning, None) is None
        ):
            self._scheduler.cancel(inst.interrupt)
            inst.interrupt = None
