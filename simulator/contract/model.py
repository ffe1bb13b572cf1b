"""The expected-answer model: what the contract suite knows must be true of the target.

It holds only what the calls made so far imply (who owns which workspace, which instances exist,
what each idempotency token answered, the last status seen of each instance), says which answer a
call must get (:meth:`Model.access_code`), and checks every new observation against it and against
the published transition table. It makes no calls: the rules (:mod:`simulator.contract.machine`)
and the post-step checks (:mod:`simulator.contract.checks`) do, and feed it what they saw. A broken
rule raises :class:`ContractViolation`, so a failure reads as a statement about the API, not about
the harness.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

from grpclib.const import Status

from simulator._proto.gitpod import v1 as pb
from simulator._proto.gitpod.v1 import WorkspaceInstanceStatusPhase as Phase
from simulator.core.transitions import INITIAL_PHASES, LEGAL_TRANSITIONS, is_legal
from simulator.core.transitions import Phase as CorePhase


class ContractViolation(AssertionError):
    """The target broke a rule of the API's contract."""


def require(condition: bool, message: str) -> None:
    """Raise :class:`ContractViolation` with ``message`` unless ``condition`` holds."""
    if not condition:
        raise ContractViolation(message)


def _reachable() -> dict[Phase, frozenset[Phase]]:
    """phase -> every phase a later status may have (the table's transitive closure)."""
    out: dict[Phase, frozenset[Phase]] = {}
    for start in LEGAL_TRANSITIONS:
        seen = {start}
        todo = [start]
        while todo:
            for nxt in LEGAL_TRANSITIONS[todo.pop()]:
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        out[Phase(start)] = frozenset(Phase(p) for p in seen)
    return out


REACHABLE = _reachable()


def describe(status: pb.WorkspaceInstanceStatus) -> str:
    return f"{status.phase.name} (status_version {status.status_version})"


_COMPARED = tuple(f.name for f in fields(pb.WorkspaceInstanceStatus) if f.name != "admission")
"""Every field of a status but its admission (which follows the workspace's sharing)."""


def _same_but_admission(a: pb.WorkspaceInstanceStatus, b: pb.WorkspaceInstanceStatus) -> bool:
    """The two statuses agree on every field but admission (field by field: no encoding)."""
    return a is b or all(getattr(a, name) == getattr(b, name) for name in _COMPARED)


def check_sequence(instance_id: str, statuses: list[pb.WorkspaceInstanceStatus]) -> None:
    """A listen stream's statuses: legal direct transitions, versions strictly increasing,
    nothing after STOPPED."""
    previous: pb.WorkspaceInstanceStatus | None = None
    for status in statuses:
        require(
            status.phase is not Phase.UNSPECIFIED,
            f"instance {instance_id}: a stream reported PHASE_UNSPECIFIED",
        )
        if previous is not None:
            require(
                previous.phase is not Phase.STOPPED,
                f"instance {instance_id}: the stream went on after STOPPED with {describe(status)}"
                " (it must end right after STOPPED)",
            )
            require(
                is_legal(CorePhase(previous.phase), CorePhase(status.phase)),
                f"instance {instance_id}: illegal transition {previous.phase.name} -> "
                f"{status.phase.name} (not in the published transition table)",
            )
            require(
                status.status_version > previous.status_version,
                f"instance {instance_id}: status_version did not increase: {describe(previous)}"
                f" then {describe(status)}",
            )
        previous = status


class Causality:
    """The client's own order of events: one counter, ticked at every send and every receipt.

    An observation is (sent, received): the counter just before its request left and just after
    its answer (or stream message) was taken. ``a.received < b.sent`` is the only "happened
    before" the suite relies on; two calls in flight at the same time are never compared.
    """

    __slots__ = ("seq",)

    def __init__(self) -> None:
        self.seq = 0

    def tick(self) -> int:
        self.seq += 1
        return self.seq


@dataclass(slots=True)
class Seen:
    """One status of an instance as the client received it."""

    received: int
    status: pb.WorkspaceInstanceStatus
    where: str


@dataclass(slots=True)
class InstanceModel:
    id: str
    workspace_id: str
    owner: str
    """The caller label that owns it."""
    built: bool | None = None
    """Whether it started in IMAGEBUILD (None: not seen at its start)."""
    history: list[Seen] = field(default_factory=list)
    """Every status received (unary answers, listings, stream messages), in receipt order."""
    by_version: dict[int, pb.WorkspaceInstanceStatus] = field(default_factory=dict)
    owner_token: str | None = None
    created_at: int | None = None
    """Microseconds since the epoch, from the wire."""
    stopped_seen_at: int | None = None
    """The target's clock when STOPPED was first seen (targets whose clock is known only)."""

    @property
    def last(self) -> pb.WorkspaceInstanceStatus | None:
        """The newest status received so far (by status_version)."""
        best = self.best_before(None)
        return None if best is None else best.status

    def best_before(self, sent: int | None) -> Seen | None:
        """The newest status received before ``sent`` (None: ever)."""
        best: Seen | None = None
        for seen in self.history:
            if sent is not None and seen.received >= sent:
                continue
            if best is None or seen.status.status_version > best.status.status_version:
                best = seen
        return best

    @property
    def phase(self) -> Phase | None:
        last = self.last
        return None if last is None else last.phase

    @property
    def active(self) -> bool:
        last = self.last
        return last is not None and last.phase is not Phase.STOPPED


@dataclass(slots=True)
class WorkspaceModel:
    id: str
    owner: str
    context: str = ""
    """The context URL the create drew (without the example's prefix)."""
    shared: bool = False
    instances: list[str] = field(default_factory=list)
    """In start order; the last is the latest instance."""


@dataclass(slots=True)
class Model:
    users: tuple[str, ...]
    workspaces: dict[str, WorkspaceModel] = field(default_factory=dict)
    instances: dict[str, InstanceModel] = field(default_factory=dict)
    owner_ids: dict[str, str] = field(default_factory=dict)
    """Caller label -> the owner_id the target reports for it (learnt from its workspaces)."""
    idempotency: dict[tuple[str, str, str], tuple[str, str]] = field(default_factory=dict)
    """(caller, rpc, token) -> (request fingerprint, answer id)."""
    uncertain: set[tuple[str, str, str]] = field(default_factory=set)
    """Idempotency keys whose first call's outcome the suite could not learn in time (a
    moving clock): the target may or may not hold a record for them."""
    owner_tokens: dict[str, str] = field(default_factory=dict)
    """Owner token -> the caller label it belongs to."""
    foreign: dict[str, set[str]] = field(default_factory=dict)
    """Workspaces each caller's listings showed that this example did not create (earlier
    examples, earlier runs, other clients): they must keep the paging rules, nothing else."""

    def owned_by(self, user: str) -> list[WorkspaceModel]:
        return [ws for ws in self.workspaces.values() if ws.owner == user]

    def latest(self, ws: WorkspaceModel) -> InstanceModel | None:
        return self.instances[ws.instances[-1]] if ws.instances else None

    def visible(self, user: str, ws: WorkspaceModel) -> bool:
        return ws.owner == user or ws.shared

    def access_code(self, user: str, ws: WorkspaceModel, owner_only: bool) -> Status | None:
        """The code the spec gives ``user`` for ``ws``: None (allowed) or the refusal."""
        if ws.owner == user:
            return None
        if not ws.shared:
            return Status.NOT_FOUND
        return Status.PERMISSION_DENIED if owner_only else None

    def pick_instance(self, ws: WorkspaceModel, which: int) -> InstanceModel | None:
        """One of the workspace's instances, chosen by a drawn index."""
        if not ws.instances:
            return None
        return self.instances[ws.instances[which % len(ws.instances)]]

    def learn_owner_id(self, user: str, owner_id: str) -> None:
        known = self.owner_ids.get(user)
        if known is None:
            require(
                owner_id not in self.owner_ids.values(),
                f"{user} was answered owner_id {owner_id!r}, which belongs to another caller",
            )
            self.owner_ids[user] = owner_id
        else:
            require(
                known == owner_id,
                f"{user}'s workspace reports owner_id {owner_id!r}, expected {known!r}",
            )

    def add_instance(
        self,
        ws: WorkspaceModel,
        instance_id: str,
        status: pb.WorkspaceInstanceStatus | None,
        *,
        exact: bool = True,
    ) -> InstanceModel:
        """A start answered a new instance. ``exact``: the last status seen of the older ones is
        still theirs (a still clock), so none of them may be active; elsewhere they may have
        stopped since they were last seen."""
        require(
            instance_id not in self.instances,
            f"workspace {ws.id}: a start answered instance {instance_id}, which already existed"
            " (a restart must make a new instance)",
        )
        for other in ws.instances:
            old = self.instances[other]
            require(
                not (exact and old.active),
                f"workspace {ws.id}: new instance {instance_id} while {other} is still "
                f"{old.phase.name if old.phase else '?'} (at most one active instance)",
            )
        inst = InstanceModel(instance_id, ws.id, ws.owner)
        self.instances[instance_id] = inst
        ws.instances.append(instance_id)
        if status is not None:
            require(
                CorePhase(status.phase) in INITIAL_PHASES,
                f"instance {instance_id} started in {status.phase.name}; a new instance starts"
                " in IMAGEBUILD or PENDING",
            )
            inst.built = status.phase is Phase.IMAGEBUILD
        return inst

    def check_after(
        self, inst: InstanceModel, status: pb.WorkspaceInstanceStatus, where: str, sent: int
    ) -> None:
        """A status whose request was sent at ``sent`` must not be older than any status of the
        instance received before that (the API serves one history per instance: monotonic
        reads), and one status_version names one status wherever it is seen."""
        require(
            status.phase is not Phase.UNSPECIFIED,
            f"{where}: instance {inst.id} reported PHASE_UNSPECIFIED",
        )
        same = inst.by_version.get(status.status_version)
        # Admission is read from the workspace, not a status change of a STOPPED one.
        require(
            same is None or _same_but_admission(same, status),
            f"{where}: instance {inst.id} answered {describe(status)}, but that status_version"
            f" was {describe(same) if same else ''} elsewhere (one version, one status)",
        )
        before = inst.best_before(sent)
        if before is None:
            return
        last = before.status
        require(
            status.status_version >= last.status_version,
            f"{where}: instance {inst.id} answered {describe(status)}, older than "
            f"{describe(last)} which {before.where} had answered before this call was sent",
        )
        if status.status_version == last.status_version:
            return
        require(
            last.phase is not Phase.STOPPED,
            f"{where}: instance {inst.id} changed after STOPPED (seen by {before.where}) to "
            f"{describe(status)} (STOPPED is final)",
        )
        require(
            status.phase in REACHABLE[last.phase],
            f"{where}: instance {inst.id} went from {last.phase.name} (seen by {before.where}) "
            f"to {status.phase.name}, which the transition table cannot reach",
        )

    def record(
        self, inst: InstanceModel, status: pb.WorkspaceInstanceStatus, where: str, received: int
    ) -> None:
        """Remember a status received at ``received`` (no check: see :meth:`check_after`)."""
        inst.history.append(Seen(received, status, where))
        inst.by_version.setdefault(status.status_version, status)

    def observe(
        self,
        inst: InstanceModel,
        status: pb.WorkspaceInstanceStatus,
        where: str,
        sent: int,
        received: int,
        now: int | None,
    ) -> None:
        """A unary answer or a listing item: checked against what came before it, then kept.
        Its admission follows the workspace's sharing now (a stream message may predate it)."""
        shared = self.workspaces[inst.workspace_id].shared
        admission = pb.AdmissionLevel.EVERYONE if shared else pb.AdmissionLevel.OWNER_ONLY
        require(
            status.admission == admission,
            f"{where}: instance {inst.id} ({status.phase.name}) reported {status.admission.name}"
            f", its workspace is {'shared' if shared else 'not shared'} (admission follows the"
            " workspace's sharing on every read, a STOPPED instance's too)",
        )
        self.check_after(inst, status, where, sent)
        self.record(inst, status, where, received)
        if status.phase is Phase.STOPPED and inst.stopped_seen_at is None:
            inst.stopped_seen_at = now
