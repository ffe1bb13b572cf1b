"""The engine's state: users, prebuilds, workspaces, instances and their statuses.

Plain slotted dataclasses: cheap enough to hold 100,000 workspaces, and free of protobuf so the
engine stays a pure state machine. :mod:`simulator.server.convert` turns them into wire messages.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, NamedTuple

from simulator.core import ids
from simulator.core.simtime import SimTime
from simulator.core.transitions import ACTIVE_PHASES, Phase

if TYPE_CHECKING:
    from simulator.core.build_logs import Build
    from simulator.core.context_urls import ParsedContext
    from simulator.core.plan import LifecyclePlan
    from simulator.core.scheduler import ScheduledEvent


@dataclass(frozen=True, slots=True)
class User:
    """A caller of the API. ``id`` is also the workspace owner id."""

    id: str
    token: str


@dataclass(frozen=True, slots=True)
class Prebuild:
    """A finished prebuild that CreateAndStartWorkspace can start from (the API cannot make one)."""

    id: str
    context: ParsedContext
    commit: str


@dataclass(frozen=True, slots=True)
class WorkspaceContext:
    """Where a workspace came from, as the API reports it."""

    context_url: str
    kind: str
    """``git``, ``prebuild`` or ``snapshot``: which member of the ``details`` oneof is set."""
    normalized_url: str = ""
    commit: str = ""
    prebuild_id: str = ""
    snapshot_id: str = ""
    repository: str = ""
    """``host/owner/repo``, the image cache key; empty for snapshots."""


@dataclass(slots=True, eq=False)
class Workspace:
    id: str
    owner_id: str
    context: WorkspaceContext
    description: str
    created_at: SimTime
    seq: int
    """Creation order, the last tie-breaker of ListWorkspaces."""
    shared: bool = False
    latest_instance_id: str | None = None
    active_instance_id: str | None = None
    last_activity_at: SimTime = 0
    """The greatest of creation and the latest instance's created, running and stopped times."""


INSTANCE_URL = re.compile(
    r"https://(?P<workspace_id>[^./]+)\.ws-(?P<cluster>[A-Za-z0-9-]{1,63})\.gitpod\.io"
)
"""An instance URL (``InstanceStatus.url``), with the parts a status keeps."""


class InstanceStatus(NamedTuple):
    """One immutable status of an instance; every change makes a new one with a greater version.

    A NamedTuple rather than a frozen dataclass: ``_replace`` is several times faster than
    ``dataclasses.replace``, and a status is built for every transition.
    """

    version: int
    phase: Phase
    workspace_id: str
    cluster: str
    """The URL's parts, not the URL: both strings are shared (the workspace's id, the plan's
    cluster), where a URL would be a string of its own per instance (96 B of a stopped one's
    1 KB)."""
    admission_everyone: bool = False
    failed: str = ""
    timeout: str = ""
    message: str = ""
    first_user_activity: SimTime | None = None
    stopped_by_request: bool | None = None

    @property
    def url(self) -> str:
        """As upstream forms it: ``https://<workspace id>.ws-<cluster>.gitpod.io``."""
        return f"https://{self.workspace_id}.ws-{self.cluster}.gitpod.io"

    @property
    def is_active(self) -> bool:
        return self.phase in ACTIVE_PHASES


@dataclass(slots=True, eq=False)
class Instance:
    """One start of a workspace. 22 slots, 208 B: every stopped instance is kept, so what the
    status already holds (the workspace id) or one slot can say (the owner's key, then the
    token derived from it) is not kept twice."""

    id: str
    owner_id: str
    created_at: SimTime
    status: InstanceStatus
    plan: LifecyclePlan
    repository: str
    phase_started_at: SimTime
    running_at: SimTime | None = None
    stopped_at: SimTime | None = None
    last_activity: SimTime | None = None
    timeout_ref: SimTime = 0
    """When the activity that the pending phase timeout measures began."""
    build: Build | None = None
    # Pending events; each is cancelled when the phase it belongs to ends.
    step: ScheduledEvent | None = field(default=None, repr=False)
    phase_timeout: ScheduledEvent | None = field(default=None, repr=False)
    inactivity: ScheduledEvent | None = field(default=None, repr=False)
    lifetime: ScheduledEvent | None = field(default=None, repr=False)
    recover: ScheduledEvent | None = field(default=None, repr=False)
    log: ScheduledEvent | None = field(default=None, repr=False)
    interrupt: ScheduledEvent | None = field(default=None, repr=False)
    startup: ScheduledEvent | None = field(default=None, repr=False)
    faults: tuple[str, ...] = field(default=(), repr=False)
    """Ids of the lifecycle faults bound to this instance and not yet spent."""
    owner_secret: bytes | str = field(default=b"", repr=False)
    """The owner's key (:func:`ids.user_key`) until the owner token is first read; then the
    token derived from it (or the one restored from a state file). Most are never read."""

    @property
    def owner_token(self) -> str:
        """Derived on first read: a pure function of the owner's key and the instance id."""
        secret = self.owner_secret
        if isinstance(secret, bytes):
            secret = self.owner_secret = ids.owner_token(secret, self.id)
        return secret

    @property
    def workspace_id(self) -> str:
        return self.status[2]

    @property
    def phase(self) -> Phase:
        return self.status.phase


class StatusChange(NamedTuple):
    """What the engine reports for every status change, in order (a NamedTuple: one is made for
    every transition, and tuples are the cheapest immutable records Python has)."""

    at: SimTime
    instance_id: str
    workspace_id: str
    owner_id: str
    previous: InstanceStatus | None
    status: InstanceStatus
    cause: str
    """Why it changed: ``start``, ``step``, ``stop-request``, ``failed``, ``timeout:<activity>``,
    ``interrupted``, ``recovered``, ``user-activity``, ``admission``."""

    @property
    def phase_changed(self) -> bool:
        return self.previous is None or self.previous.phase != self.status.phase


@dataclass(frozen=True, slots=True)
class BuildLogLine:
    """An image build wrote a line."""

    at: SimTime
    instance_id: str
    line: str


@dataclass(frozen=True, slots=True)
class Wake:
    """A timer the runtime asked for (e.g. a simulated RPC latency) is due."""

    at: SimTime
    key: str


EngineEvent = StatusChange | BuildLogLine | Wake
