"""Who may read what, over a world's tables: the access rules every query goes through.

Rules (upstream's): the owner sees their workspaces and instances; anyone sees a shared one; a
caller who may not see one gets NOT_FOUND with the same text as for one that does not exist (so
nothing says it exists); an owner-only call (GetOwnerToken, for one) on another
user's shared workspace is PERMISSION_DENIED. Listings hold only the caller's own workspaces,
active first, then by latest activity, newest first. Pure functions: the engine passes its tables.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from simulator.core import ids
from simulator.core.errors import (
    INSUFFICIENT_PERMISSION,
    WORKSPACE_NOT_FOUND,
    InvalidArgument,
    NotFound,
    PermissionDenied,
)
from simulator.core.model import Instance, User, Workspace
from simulator.core.transitions import MAY_RUN, Timer


def workspace_for(
    workspaces: Mapping[str, Workspace], caller: User, workspace_id: str, *, owner_only: bool
) -> Workspace:
    """The workspace ``workspace_id`` if ``caller`` may see it (and act on it: ``owner_only``)."""
    if not workspace_id:
        raise InvalidArgument("workspace_id is required")
    if not ids.is_workspace_id(workspace_id):
        raise InvalidArgument(
            f"invalid workspace id {workspace_id!r}: expected e.g. gitpodio-gitpod-isq6xj458lj"
        )
    ws = workspaces.get(workspace_id)
    if ws is None:
        raise NotFound(WORKSPACE_NOT_FOUND)
    if ws.owner_id != caller.id:
        if not ws.shared:
            raise NotFound(WORKSPACE_NOT_FOUND)
        if owner_only:
            raise PermissionDenied(INSUFFICIENT_PERMISSION)
    return ws


def instance_for(
    workspaces: Mapping[str, Workspace],
    instances: Mapping[str, Instance],
    caller: User,
    instance_id: str,
    *,
    owner_only: bool,
) -> Instance:
    """The instance ``instance_id`` if ``caller`` may see it (its workspace's rule)."""
    if not instance_id:
        raise InvalidArgument("instance_id is required")
    if not ids.is_instance_id(instance_id):
        raise InvalidArgument(f"invalid instance id {instance_id!r}: expected a UUID")
    inst = instances.get(instance_id)
    if inst is None:
        raise NotFound(f"workspace instance {instance_id} does not exist")
    if inst.owner_id != caller.id:
        ws = workspaces[inst.workspace_id]
        if not ws.shared:
            raise NotFound(f"workspace instance {instance_id} does not exist")
        if owner_only:
            raise PermissionDenied(INSUFFICIENT_PERMISSION)
    return inst


def listing(owned: Iterable[Workspace]) -> tuple[str, ...]:
    """A caller's ListWorkspaces order: active first, then latest activity, newest first."""
    ordered = sorted(
        owned, key=lambda ws: (ws.active_instance_id is None, -ws.last_activity_at, -ws.seq)
    )
    return tuple(ws.id for ws in ordered)


def check_invariants(
    workspaces: Mapping[str, Workspace],
    instances: Mapping[str, Instance],
    by_owner: Mapping[str, list[Workspace]],
) -> None:
    """Raise AssertionError when the tables break a rule (for tests; O(n))."""
    active: dict[str, list[str]] = {}
    for inst in instances.values():
        if inst.status.is_active:
            active.setdefault(inst.workspace_id, []).append(inst.id)
    for ws in workspaces.values():
        ids_ = active.get(ws.id, [])
        assert len(ids_) <= 1, f"{ws.id} has {len(ids_)} active instances"
        assert (ids_[0] if ids_ else None) == ws.active_instance_id, ws.id
        if ws.latest_instance_id is not None:
            assert instances[ws.latest_instance_id].workspace_id == ws.id
    for inst in instances.values():
        pending = {t for t in Timer if getattr(inst, t.value) is not None}
        stray = pending - MAY_RUN[inst.phase]
        assert not stray, f"{inst.id} in {inst.phase.name} has timers {stray}"
        assert all(not getattr(inst, t.value).cancelled for t in pending), inst.id
    for owner, owned in by_owner.items():
        assert all(ws.owner_id == owner for ws in owned)
