"""The phase engine: a pure, deterministic state machine of workspaces and instances.

No sockets, no asyncio, no wall clock, no global random. The engine holds the simulated time of
the last moment it processed (:attr:`Engine.now`); callers move it forward with
:meth:`Engine.advance_to`, and every command happens at ``now``. Every status change is reported,
in order, to the ``observer`` callback and returned from ``advance_*`` calls.

Costs: every command and event touches one workspace and one instance plus O(log n) heap work;
ListWorkspaces sorts only the caller's own workspaces. Nothing scans all workspaces.

Phase rules live in :mod:`simulator.core.transitions`; this module only applies them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from simulator.core import access, ids
from simulator.core.directory import Directory
from simulator.core.errors import (
    FailedPrecondition,
    InvalidArgument,
    NotFound,
)
from simulator.core.fault_book import FaultBook
from simulator.core.fault_effects import FaultEffects
from simulator.core.faults import (
    Effect,
    FailPhase,
    Fault,
    InterruptRunning,
    Target,
)
from simulator.core.idempotency import IdempotencyRecords
from simulator.core.image_builds import ImageBuilds
from simulator.core.model import (
    BuildLogLine,
    EngineEvent,
    Instance,
    InstanceStatus,
    Prebuild,
    StatusChange,
    User,
    Wake,
    Workspace,
)
from simulator.core.paging import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, Cursors
from simulator.core.plan import BuildPolicy, LifecyclePlan, ScopedPlan
from simulator.core.plan_scopes import PlanScopes
from simulator.core.quotas import Quotas
from simulator.core.scheduler import EventKind, ScheduledEvent, Scheduler
from simulator.core.seeds import RandomStreams
from simulator.core.simtime import (
    DEFAULT_START,
    SECOND,
    Duration,
    SimTime,
    exact,
    format_go_minutes,
)
from simulator.core.timers import InstanceTimers
from simulator.core.transitions import (
    AFTER_STEP,
    CANCEL_SLOTS,
    TIMEOUT_ACTIVITY,
    TIMERS,
    Phase,
    Timeout,
    Trigger,
    next_phase,
)
from simulator.core.wakes import Wakes

Observer = Callable[[EngineEvent], None]

INTERRUPTED_MESSAGE = "workspace is temporarily unavailable"
_INTERRUPTED = Phase.INTERRUPTED


_STATUS_FIELD = {name: i for i, name in enumerate(InstanceStatus._fields)}
_new_status = tuple.__new__
"""Builds a NamedTuple from a tuple without ``_make``'s iterator (a hot path)."""


def _next_version(previous: int, now: SimTime) -> int:
    """Upstream's status_version: (unix_seconds << 16) | counter, strictly increasing per
    instance."""
    version = previous + 1
    floor = (now // SECOND) << 16
    return (version if version > floor else floor) // 1  # simtime.exact, inlined (per change)


MAX_CONTEXT_URL = 4096
MAX_TOKEN = 256


def _limit(field: str, value: str, limit: int) -> None:
    if len(value) > limit:
        raise InvalidArgument(f"{field} is too long: {len(value)} characters (at most {limit})")


def timeout_text(activity: str, took: Duration, limit: Duration) -> str:
    """Upstream's ``conditions.timeout`` text."""
    return (
        f"workspace timed out after {activity} ({format_go_minutes(took)}) "
        f"took longer than {format_go_minutes(limit)}"
    )


@dataclass(frozen=True, slots=True)
class Page:
    items: list[tuple[Workspace, Instance | None]]
    next_page_token: str


@dataclass(frozen=True, slots=True)
class StopResult:
    """What a StopWorkspace did: the instance it stops and its phase before the request."""

    instance: Instance
    phase_before: Phase


class Engine:
    """Workspaces, instances and their lifecycles on simulated time."""

    def __init__(
        self,
        *,
        seed: int = 0,
        start_time: SimTime = DEFAULT_START,
        plan: LifecyclePlan | None = None,
        observer: Observer | None = None,
        quotas: Quotas | None = None,
        follow_builds: bool = False,
    ) -> None:
        """``follow_builds``: report every build's log lines to the observer as they are written
        (otherwise only those of builds someone follows, :meth:`follow_build`)."""
        self.seed = seed
        self.now: SimTime = start_time
        self.observer: Observer | None = observer
        self.random = RandomStreams(seed)
        self.scheduler = Scheduler()
        # The parts with a job (and a state) of their own; each saves and restores itself.
        self.plans = PlanScopes(plan or LifecyclePlan())
        self.idempotency = IdempotencyRecords()
        self.cursors = Cursors(self.random)
        self.wakes = Wakes(self.scheduler)
        self.directory = Directory(seed, self.random)
        self.users = self.directory.users
        self.prebuilds = self.directory.prebuilds
        self.workspaces: dict[str, Workspace] = {}
        self.instances: dict[str, Instance] = {}
        self._by_owner: dict[str, list[Workspace]] = {}
        self.builds = ImageBuilds(
            self.scheduler, self._write_log, lambda: self.now, follow_all=follow_builds
        )
        self.image_cache = self.builds.image_cache
        self.workspace_seq = 0
        """How many workspaces were ever created (each one's ``seq``)."""
        self._fired: list[StatusChange] | None = None
        self.faults = FaultBook(seed)
        self.fault_effects = FaultEffects(
            self.faults,
            self.scheduler,
            workspaces=self.workspaces,
            instances=self.instances,
            users=self.users,
            schedule_step=lambda inst, phase: self.timers.step(inst, phase, self.now),
        )
        self.timers = InstanceTimers(self.scheduler, self.random, self.builds, self.fault_effects)
        self.quotas: Quotas = quotas or Quotas()
        self.set_quotas(self.quotas)

    def set_quotas(self, quotas: Quotas) -> None:
        """What one user may make this world keep (workspaces, page tokens, idempotency)."""
        self.quotas = quotas
        self.cursors.limit = quotas.page_tokens
        self.idempotency.limit = quotas.idempotency_records

    @property
    def plan(self) -> LifecyclePlan:
        """The global plan (what an instance gets when no scoped plan matches)."""
        return self.plans.default

    # ------------------------------------------------------------------ users and world

    def add_user(self, user_id: str, token: str | None = None) -> User:
        """Register a caller. Without a token, one is generated from the seed."""
        return self.directory.add_user(user_id, token)

    def restore_workspace(self, ws: Workspace) -> None:
        """Put a saved workspace back (state import), indexed by its owner as if just created."""
        self.workspaces[ws.id] = ws
        self._by_owner.setdefault(ws.owner_id, []).append(ws)

    def user_by_token(self, token: str) -> User | None:
        return self.directory.user_by_token(token)

    def add_prebuild(self, prebuild_id: str, context_url: str, commit: str = "") -> Prebuild:
        """Register a finished prebuild (the API has no call that makes one)."""
        return self.directory.add_prebuild(prebuild_id, context_url, commit)

    # ------------------------------------------------------------------ commands

    def create_workspace(
        self,
        caller: User,
        *,
        context_url: str | None = None,
        prebuild_id: str | None = None,
        idempotency_token: str = "",
    ) -> Workspace:
        """CreateAndStartWorkspace: a new workspace and its first instance, started now."""
        if context_url is None and prebuild_id is None:
            raise InvalidArgument("either context_url or prebuild_id must be set")
        if (
            len(context_url or "") > MAX_CONTEXT_URL
            or len(prebuild_id or "") > MAX_TOKEN
            or len(idempotency_token) > MAX_TOKEN
        ):  # the check, once per create; _limit names the field that is too long
            _limit("context_url", context_url or "", MAX_CONTEXT_URL)
            _limit("prebuild_id", prebuild_id or "", MAX_TOKEN)
            _limit("idempotency_token", idempotency_token, MAX_TOKEN)
        fingerprint = (
            ("context", context_url) if context_url is not None else ("prebuild", prebuild_id or "")
        )
        replayed = self.idempotency.replay(
            caller.id, "CreateAndStartWorkspace", idempotency_token, fingerprint
        )
        if replayed is not None:
            return self.workspaces[replayed]
        self.quotas.check_workspaces(caller.id, len(self._by_owner.get(caller.id, ())))
        context, parsed, description = self.directory.context_for(context_url, prebuild_id)
        workspace_id = ids.workspace_id(self.random.ids, parsed.owner, parsed.repo)
        while workspace_id in self.workspaces:
            workspace_id = ids.workspace_id(self.random.ids, parsed.owner, parsed.repo)
        self.workspace_seq += 1
        ws = Workspace(
            id=workspace_id,
            owner_id=caller.id,
            context=context,
            description=description,
            created_at=self.now,
            seq=self.workspace_seq,
            last_activity_at=self.now,
        )
        self.workspaces[ws.id] = ws
        self._by_owner.setdefault(caller.id, []).append(ws)
        self._start_instance(ws)
        self.idempotency.record(
            caller.id, "CreateAndStartWorkspace", idempotency_token, fingerprint, ws.id
        )
        return ws

    def start_workspace(
        self, caller: User, workspace_id: str, idempotency_token: str = ""
    ) -> Instance:
        """StartWorkspace: the active instance if there is one, otherwise a new instance."""
        _limit("idempotency_token", idempotency_token, MAX_TOKEN)
        ws = self._workspace_for(caller, workspace_id, owner_only=True)
        fingerprint = (workspace_id,)
        replayed = self.idempotency.replay(
            caller.id, "StartWorkspace", idempotency_token, fingerprint
        )
        if replayed is not None:
            return self.instances[replayed]
        if ws.active_instance_id is not None:
            inst = self.instances[ws.active_instance_id]
        else:
            inst = self._start_instance(ws)
        self.idempotency.record(
            caller.id, "StartWorkspace", idempotency_token, fingerprint, inst.id
        )
        return inst

    def stop_workspace(
        self, caller: User, workspace_id: str, idempotency_token: str = ""
    ) -> StopResult:
        """StopWorkspace: mark the active instance stopped-by-request and move it to STOPPING.

        A repeat with the same idempotency token stops nothing and answers the first call's
        instance, whatever its phase now.
        """
        _limit("idempotency_token", idempotency_token, MAX_TOKEN)
        ws = self._workspace_for(caller, workspace_id, owner_only=True)
        fingerprint = (workspace_id,)
        replayed = self.idempotency.replay(
            caller.id, "StopWorkspace", idempotency_token, fingerprint
        )
        if replayed is not None:
            inst = self.instances[replayed]
            return StopResult(inst, inst.phase)
        if ws.active_instance_id is None:
            raise FailedPrecondition(f"workspace {workspace_id} has no active instance to stop")
        inst = self.instances[ws.active_instance_id]
        before = inst.phase
        if before is not Phase.STOPPING:
            self._condition_then(
                inst, Trigger.STOP_REQUESTED, "stop-request", stopped_by_request=True
            )
        self.idempotency.record(caller.id, "StopWorkspace", idempotency_token, fingerprint, inst.id)
        return StopResult(inst, before)

    def mark_active(self, workspace_id: str) -> Instance:
        """A user was active in the workspace: sets first_user_activity, restarts inactivity."""
        ws = self._workspace(workspace_id)
        inst = self._active(ws)
        if inst.phase is not Phase.RUNNING:
            raise FailedPrecondition(
                f"workspace {workspace_id} is {inst.phase.name}, activity counts only while RUNNING"
            )
        inst.last_activity = self.now  # not the list order: that is creation/running/stopped
        if inst.status.first_user_activity is None:
            self._set_status(inst, "user-activity", first_user_activity=self.now)
        self.timers.inactivity(inst, self.now)
        return inst

    def set_shared(self, workspace_id: str, shared: bool) -> Workspace:
        """Share (admission EVERYONE) or unshare a workspace; its active instance reports it."""
        ws = self._workspace(workspace_id)
        ws.shared = shared
        if ws.active_instance_id is not None:
            inst = self.instances[ws.active_instance_id]
            if inst.status.admission_everyone != shared:
                self._set_status(inst, "admission", admission_everyone=shared)
        return ws

    def fail(self, instance_id: str, reason: str, log_tail: list[str] | None = None) -> Instance:
        """Fail an active instance now (image build, image pull, content init, runtime)."""
        inst = self._instance(instance_id)
        if not inst.status.is_active:
            raise FailedPrecondition(f"instance {instance_id} is STOPPED and cannot fail")
        if inst.phase is Phase.STOPPING:
            raise FailedPrecondition(f"instance {instance_id} is already STOPPING")
        if inst.phase is Phase.IMAGEBUILD:
            self.builds.fail(inst, self.now, reason, log_tail)
        message = (
            f"Workspace cannot be started: {reason}"
            if inst.phase in (Phase.IMAGEBUILD, Phase.PENDING)
            else reason
        )
        self._condition_then(inst, Trigger.FAILED, "failed", failed=reason, message=message)
        return inst

    def interrupt(self, instance_id: str, duration: Duration | None = None) -> Instance:
        """Interrupt a RUNNING instance; it recovers after ``duration`` (None: only by timeout)."""
        inst = self._instance(instance_id)
        if inst.phase is not Phase.RUNNING:
            raise FailedPrecondition(
                f"instance {instance_id} is {inst.phase.name}; "
                "only a RUNNING instance can be interrupted"
            )
        if duration is not None and duration < 0:
            raise InvalidArgument("interruption duration must be >= 0")
        self._enter(inst, Phase.INTERRUPTED, "interrupted", message=INTERRUPTED_MESSAGE)
        if duration is not None:
            inst.recover = self.scheduler.schedule(self.now + duration, EventKind.RECOVER, inst.id)
        return inst

    def recover(self, instance_id: str) -> Instance:
        """End an interruption now."""
        inst = self._instance(instance_id)
        if inst.phase is not Phase.INTERRUPTED:
            raise FailedPrecondition(
                f"instance {instance_id} is {inst.phase.name}, not INTERRUPTED"
            )
        self._enter(inst, Phase.RUNNING, "recovered", message="")
        return inst

    # ------------------------------------------------------------------ plans

    def set_plan(self, scope: str, value: str, plan: LifecyclePlan) -> ScopedPlan:
        """Set the plan of a scope (``global``, ``user`` id, ``context`` pattern), replacing it."""
        return self.plans.set(scope, value, plan, user_exists=self.users.__contains__)

    def delete_plan(self, plan_id: str) -> None:
        self.plans.delete(plan_id)

    def plan_for(self, ws: Workspace) -> LifecyclePlan:
        """The most specific plan: newest matching context pattern, then user, then global."""
        return self.plans.plan_for(ws.context.normalized_url or ws.context.context_url, ws.owner_id)

    # ------------------------------------------------------------------ faults

    def add_fault(
        self,
        effect: Effect,
        target: Target,
        *,
        count: int = 0,
        active_from: SimTime | None = None,
        active_until: SimTime | None = None,
        skip: int = 0,
    ) -> Fault:
        """Register a fault; one aimed at a workspace or instance binds to its active one now."""
        return self.fault_effects.add(
            effect,
            target,
            now=self.now,
            count=count,
            active_from=active_from,
            active_until=active_until,
            skip=skip,
        )

    def clear_faults(self, fault_ids: list[str] | None = None) -> int:
        """Remove faults (all when ``fault_ids`` is None); stalled phases they caused go on."""
        return self.fault_effects.clear(fault_ids, self.now)

    def replace_faults(self, book: FaultBook) -> None:
        """Hold ``book`` instead (a state import)."""
        self.faults = self.fault_effects.book = book

    def take_rpc_faults(self, method: str, user_id: str = "") -> list[Fault]:
        """The RPC faults that hit this call of ``method`` (a full path), consuming them."""
        return self.faults.take_rpc(method, self.now, user_id)

    def take_stream_faults(
        self, method: str, user_id: str = "", inst: Instance | None = None
    ) -> list[Fault]:
        """The stream faults that hit a new stream of ``method`` about ``inst``, consuming them."""
        return self.faults.take_stream(
            method,
            self.now,
            user_id=user_id,
            workspace_id=inst.workspace_id if inst is not None else "",
            instance_id=inst.id if inst is not None else "",
        )

    def follow_build(self, inst: Instance) -> None:
        """Someone reads ``inst``'s build log as it is written: report its next lines to the
        observer at their instants (a build nobody follows schedules nothing for its log)."""
        self.builds.follow(inst, self.now)

    # ------------------------------------------------------------------ runtime timers

    def schedule_wake(self, delay: Duration) -> str:
        """A timer that fires a :class:`Wake` event ``delay`` from now; answers its key."""
        return self.wakes.schedule(self.now + delay)

    def cancel_wake(self, key: str) -> None:
        self.wakes.cancel(key)

    # ------------------------------------------------------------------ time

    def next_event(self) -> ScheduledEvent | None:
        return self.scheduler.peek()

    def advance_to(self, t: SimTime) -> list[StatusChange]:
        """Fire every event due at or before ``t`` in order, then stand at ``t``."""
        if t < self.now:
            raise ValueError(f"time cannot go backwards ({t} < {self.now})")
        fired: list[StatusChange] = []
        self._fired = fired
        try:
            while (event := self.scheduler.pop_due(t)) is not None:
                assert event.at >= self.now, f"{event} was scheduled in the past"
                self.now = event.at // 1  # simtime.exact inlined (per event): 32 B, not 48
                self._fire(event)
            self.now = exact(t)
        finally:
            self._fired = None
        return fired

    def advance_to_next(self) -> list[StatusChange]:
        """Jump to the next scheduled instant and fire everything due then (nothing if idle)."""
        event = self.scheduler.peek()
        if event is None:
            return []
        return self.advance_to(event.at)

    # ------------------------------------------------------------------ queries (access-checked)

    def get_workspace(self, caller: User, workspace_id: str) -> Workspace:
        return self._workspace_for(caller, workspace_id, owner_only=False)

    def owner_token(self, caller: User, workspace_id: str) -> str:
        """GetOwnerToken: the latest instance's owner token, for the owner only."""
        ws = self._workspace_for(caller, workspace_id, owner_only=True)
        if ws.latest_instance_id is None:
            raise FailedPrecondition(f"workspace {workspace_id} has never been started")
        return self.instances[ws.latest_instance_id].owner_token

    def active_instance(self, caller: User, workspace_id: str) -> Instance:
        ws = self._workspace_for(caller, workspace_id, owner_only=False)
        return self._active(ws)

    def instance_for(self, caller: User, instance_id: str, *, owner_only: bool = False) -> Instance:
        """An instance the caller may see (owner, or anyone when shared and not owner_only)."""
        return access.instance_for(
            self.workspaces, self.instances, caller, instance_id, owner_only=owner_only
        )

    def list_workspaces(self, caller: User, page_size: int = 0, page_token: str = "") -> Page:
        """ListWorkspaces: active first, then latest activity, newest first; stable paging."""
        listing = None if page_token else access.listing(self._by_owner.get(caller.id, ()))
        chosen, next_token = self.cursors.page(caller.id, page_size, page_token, listing)
        items: list[tuple[Workspace, Instance | None]] = []
        for wsid in chosen:
            ws = self.workspaces[wsid]
            latest = self.instances[ws.latest_instance_id] if ws.latest_instance_id else None
            items.append((ws, latest))
        return Page(items, next_token)

    def latest_instance(self, ws: Workspace) -> Instance | None:
        return self.instances[ws.latest_instance_id] if ws.latest_instance_id else None

    def check_invariants(self) -> None:
        """Raise AssertionError when the state breaks a rule (for tests; O(n))."""
        access.check_invariants(self.workspaces, self.instances, self._by_owner)

    # ------------------------------------------------------------------ internals: lookups

    def _workspace(self, workspace_id: str) -> Workspace:
        """Unchecked lookup (in-process API and control plane)."""
        ws = self.workspaces.get(workspace_id)
        if ws is None:
            raise NotFound(f"workspace {workspace_id!r} does not exist")
        return ws

    def _instance(self, instance_id: str) -> Instance:
        inst = self.instances.get(instance_id)
        if inst is None:
            raise NotFound(f"workspace instance {instance_id!r} does not exist")
        return inst

    def _workspace_for(self, caller: User, workspace_id: str, *, owner_only: bool) -> Workspace:
        return access.workspace_for(self.workspaces, caller, workspace_id, owner_only=owner_only)

    def _active(self, ws: Workspace) -> Instance:
        if ws.active_instance_id is None:
            raise FailedPrecondition(f"workspace {ws.id} has no active instance")
        return self.instances[ws.active_instance_id]

    # ------------------------------------------------------------------ internals: lifecycle

    def _start_instance(self, ws: Workspace) -> Instance:
        plan = self.plan_for(ws)
        repository = ws.context.repository
        if ws.context.kind != "git" or plan.build_policy is BuildPolicy.NEVER:
            needs_build = False  # a prebuild's image is built; a snapshot brings its own
        elif plan.build_policy is BuildPolicy.ALWAYS:
            needs_build = True
        else:
            needs_build = repository not in self.image_cache
        instance_id = ids.instance_id(self.random.ids)
        while instance_id in self.instances:
            instance_id = ids.instance_id(self.random.ids)
        phase = Phase.IMAGEBUILD if needs_build else Phase.PENDING
        status = InstanceStatus(
            version=0,
            phase=Phase.UNSPECIFIED,
            workspace_id=ws.id,
            cluster=plan.cluster,
            admission_everyone=ws.shared,
        )
        inst = Instance(
            id=instance_id,
            owner_id=ws.owner_id,
            owner_secret=self.directory.owner_key(ws.owner_id),
            created_at=self.now,
            status=status,
            plan=plan,
            repository=repository,
            phase_started_at=self.now,
        )
        self.instances[inst.id] = inst
        ws.latest_instance_id = inst.id
        ws.active_instance_id = inst.id
        self._touch(ws, self.now)
        for fault in self.faults.for_start(ws, self.now):
            self.fault_effects.bind(fault, inst, self.now, apply_now=False)
        self._enter(inst, phase, "start", first=True)
        return inst

    def _condition_then(
        self, inst: Instance, trigger: Trigger, cause: str, **conditions: object
    ) -> None:
        """Rule 4: publish the condition in the current phase, then change phase at once."""
        target = next_phase(inst.phase, trigger)
        if target is None:
            raise FailedPrecondition(f"{trigger.value} does not apply in {inst.phase.name}")
        self._set_status(inst, cause, **conditions)
        self._enter(inst, target, cause)

    def _enter(
        self,
        inst: Instance,
        phase: Phase,
        cause: str,
        *,
        first: bool = False,
        message: str | None = None,
    ) -> None:
        """Move ``inst`` into ``phase`` now; ``transitions.TIMERS`` says which timers go, come."""
        sched = self.scheduler
        now = self.now
        for slot in CANCEL_SLOTS[phase]:  # rule 10: what the phase does not keep goes
            event = getattr(inst, slot)
            if event is not None:
                sched.cancel(event)
                setattr(inst, slot, None)
        inst.phase_started_at = now
        old = inst.status
        if (
            old[1] is _INTERRUPTED
            and message is None
            and phase is not _INTERRUPTED
            and old.message == INTERRUPTED_MESSAGE
        ):
            message = ""  # rule 14: leaving INTERRUPTED, whichever way, clears its message
        build = inst.build
        if build is not None and not build.ended and phase is not Phase.IMAGEBUILD:  # .finished
            self.builds.end(inst, now, success=phase is Phase.PENDING)  # rule 13
        if phase is Phase.RUNNING:
            if inst.running_at is None:
                inst.running_at = now
                self._touch(self.workspaces[old[2]], now)  # the status's workspace id
        elif phase is Phase.STOPPED:
            inst.stopped_at = now
            ws = self.workspaces[old[2]]
            ws.active_instance_id = None
            self._touch(ws, now)
        for start in self.timers.starters[phase]:
            start(inst, now)
        status = _new_status(
            InstanceStatus,
            (
                _next_version(old[0], now),
                phase,
                old[2],
                old[3],
                old[4],
                old[5],
                old[6],
                old[7] if message is None else message,
                old[8],
                old[9],
            ),
        )
        self._publish(inst, None if first else old, status, cause)
        if phase is Phase.IMAGEBUILD:
            self.builds.begin(inst, self.now)

    def _write_log(self, inst: Instance, line: str) -> None:
        if self.observer is not None:
            self.observer(BuildLogLine(self.now, inst.id, line))

    def _touch(self, ws: Workspace, at: SimTime) -> None:
        if at > ws.last_activity_at:
            ws.last_activity_at = at

    def _set_status(self, inst: Instance, cause: str, **changes: object) -> None:
        """A change within the phase (a condition, admission, first activity): the fields named,
        and a new version. Set by index: ``_replace`` builds a dict and maps it over the fields."""
        previous = inst.status
        fields: list[object] = list(previous)
        fields[0] = _next_version(previous[0], self.now)
        for name, value in changes.items():
            fields[_STATUS_FIELD[name]] = value
        self._publish(inst, previous, _new_status(InstanceStatus, fields), cause)

    def _publish(
        self, inst: Instance, previous: InstanceStatus | None, status: InstanceStatus, cause: str
    ) -> None:
        """``status`` (its version set) is the instance's now: report the change."""
        inst.status = status
        change = _new_status(
            StatusChange,
            (self.now, inst.id, status[2], inst.owner_id, previous, status, cause),
        )
        if self._fired is not None:
            self._fired.append(change)
        if self.observer is not None:
            self.observer(change)

    def _fire(self, event: ScheduledEvent) -> None:
        kind = event.kind
        if kind is EventKind.WAKE:
            self.wakes.fired(event.instance_id)
            if self.observer is not None:
                self.observer(Wake(self.now, event.instance_id))
            return
        inst = self.instances[event.instance_id]
        if kind is EventKind.STEP:
            inst.step = None
            failure = self.faults.bound(inst, FailPhase, inst.phase) if inst.faults else None
            if failure is not None:
                effect = failure.effect
                assert isinstance(effect, FailPhase)
                self.faults.unbind(failure, inst)
                self.fail(inst.id, effect.reason, list(effect.log_tail) or None)
                return
            target = AFTER_STEP.get(inst.status[1])
            if target is not None:
                self._enter(inst, target, "step")
        elif kind is EventKind.BUILD_LOG:
            self.builds.next_line(inst, self.now)
        elif kind is EventKind.INTERRUPT:
            inst.interrupt = None
            fault = self.faults.bound(inst, InterruptRunning, None)
            if fault is not None and inst.phase is Phase.RUNNING:
                self.faults.unbind(fault, inst)
                effect = fault.effect
                assert isinstance(effect, InterruptRunning)
                self.interrupt(inst.id, effect.duration)
        elif kind is EventKind.RECOVER:
            inst.recover = None
            if inst.phase is Phase.INTERRUPTED:
                self._enter(inst, Phase.RUNNING, "recovered", message="")
        elif kind is EventKind.PHASE_TIMEOUT:
            inst.phase_timeout = None
            timeout = TIMERS[inst.phase].timeout
            assert timeout is not None, f"a phase timeout fired in {inst.phase.name}"
            self._time_out(inst, timeout, self.now - inst.timeout_ref)
        elif kind is EventKind.STARTUP_TIMEOUT:
            inst.startup = None
            # Scheduled on entering PENDING, ``limit`` ahead: it fires when that much has passed.
            self._time_out(inst, Timeout.STARTUP, inst.plan.timeouts.startup or 0)
        elif kind is EventKind.INACTIVITY_TIMEOUT:
            inst.inactivity = None
            since = inst.last_activity if inst.last_activity is not None else inst.running_at
            assert since is not None
            self._time_out(inst, Timeout.INACTIVITY, self.now - since)
        elif kind is EventKind.LIFETIME_TIMEOUT:
            inst.lifetime = None
            self._time_out(inst, Timeout.MAX_LIFETIME, self.now - inst.created_at)

    def _time_out(self, inst: Instance, timeout: Timeout, took: Duration) -> None:
        limit: Duration = getattr(inst.plan.timeouts, timeout.value) or 0
        activity = TIMEOUT_ACTIVITY[timeout]
        cause = f"timeout:{activity}"
        if inst.status.timeout:  # rule 7: the first timeout's text says why it stopped
            target = next_phase(inst.phase, Trigger.TIMED_OUT)
            assert target is not None, f"a timeout fired in {inst.phase.name}"
            self._enter(inst, target, cause)
            return
        text = timeout_text(activity, took, limit)
        self._condition_then(inst, Trigger.TIMED_OUT, cause, timeout=text)


__all__ = [
    "DEFAULT_PAGE_SIZE",
    "MAX_PAGE_SIZE",
    "Engine",
    "Page",
    "StopResult",
    "timeout_text",
]
