"""The checks after every step: what must hold of the target whatever the last rule did.

The rules (:mod:`simulator.contract.machine`) check their own answers; these checks judge the
target as a whole after each step (every caller's listing, every open stream, the inactive rule),
so a bug shows on the step that caused it even when no rule looks at that part of the API.
They read and teach the expected-answer model (:mod:`simulator.contract.model`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable
from typing import Any, TypeVar

from grpclib.const import Status
from grpclib.exceptions import GRPCError

from simulator._proto.gitpod import v1 as pb
from simulator._proto.gitpod.v1 import WorkspaceInstanceStatusPhase as Phase
from simulator.contract.model import (
    ContractViolation,
    InstanceModel,
    Model,
    check_sequence,
    describe,
    require,
)
from simulator.contract.streams import StreamRecord, Streams
from simulator.contract.target import Target

_T = TypeVar("_T")

LIST_PAGES_LIMIT = 200
REFRESH_PAGE_SIZE = 3
"""The listing after every step pages in threes: paging is checked on every step, cheaply."""


def present(value: _T | None, what: str) -> _T:
    """A message field the API always sets; its absence is a violation."""
    require(value is not None, f"{what}: a required field of the answer is unset")
    assert value is not None
    return value


def micros(value: dt.datetime | None) -> int | None:
    """A wire timestamp as microseconds since the epoch."""
    if value is None:
        return None
    delta = value - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


async def checked_call(what: str, awaitable: Awaitable[_T], expect: Status | None) -> _T | None:
    """One unary call: its answer when OK was expected, else None after checking the code."""
    try:
        response = await awaitable
    except GRPCError as exc:
        require(
            expect is exc.status,
            f"{what} answered {exc.status.name} ({exc.message!r}), "
            f"expected {'OK' if expect is None else expect.name}",
        )
        return None
    require(expect is None, f"{what} answered OK, expected {expect.name if expect else ''}")
    return response


class PostStepChecks:
    """The whole-target checks, run after every step on the machine's event loop."""

    def __init__(self, target: Target, model: Model, streams: Streams) -> None:
        self.target = target
        self.exact = target.exact
        self.model = model
        self.streams = streams
        self.inactive_checked: set[str] = set()

    def stub(self, user: str) -> pb.WorkspacesServiceStub:
        return self.target.stubs[user]

    def now(self) -> int | None:
        return self.target.now() if self.exact else None

    async def after_step(self) -> None:
        """Every check that holds after any step: listings, the inactive rule, open streams."""
        await self.target.settle()
        for user in self.target.users:
            await self.refresh(user)
        if self.exact:
            await self.check_inactive()
        await self.target.settle()
        for record in self.streams:
            await self.check_stream(record)

    async def check_inactive(self) -> None:
        """Once per instance that reached STOPPED: its workspace now has no active instance."""
        for ws in self.model.workspaces.values():
            latest = self.model.latest(ws)
            if latest is None or latest.active or latest.id in self.inactive_checked:
                continue
            self.inactive_checked.add(latest.id)
            request = pb.GetActiveWorkspaceInstanceRequest(workspace_id=ws.id)
            what = f"GetActiveWorkspaceInstance({ws.id}) by its owner after {latest.id} stopped"
            await checked_call(
                what,
                self.stub(ws.owner).get_active_workspace_instance(request),
                Status.FAILED_PRECONDITION,
            )

    async def list_all(self, user: str, page_size: int) -> list[Any]:
        items: list[Any] = []
        token = ""
        for _ in range(LIST_PAGES_LIMIT):
            response = await self.stub(user).list_workspaces(
                pb.ListWorkspacesRequest(
                    pagination=pb.Pagination(page_size=page_size, page_token=token)
                )
            )
            items.extend(response.result)
            listed = [item.result.workspace_id for item in items]
            require(
                len(set(listed)) == len(listed),
                f"paging ListWorkspaces(page_size={page_size}) for {user} repeated "
                f"{sorted({w for w in listed if listed.count(w) > 1})}",
            )
            token = response.next_page_token
            if not token:
                return items
        raise ContractViolation(f"ListWorkspaces for {user} never reached an empty next_page_token")

    async def refresh(self, user: str) -> None:
        """List the caller's workspaces: exactly its own, once each, in order; learn statuses."""
        items = await self.list_all(user, REFRESH_PAGE_SIZE if self.exact else 100)
        self.check_listing(user, items, complete=True)

    def check_listing(self, user: str, items: list[Any], *, complete: bool) -> None:
        model = self.model
        seen: set[str] = set()
        preexisting = model.preexisting.get(user, set())
        for item in items:
            ws_pb = item.result
            require(ws_pb is not None, f"ListWorkspaces for {user}: an item without its workspace")
            wsid = ws_pb.workspace_id
            require(wsid not in seen, f"ListWorkspaces for {user} listed {wsid} twice")
            seen.add(wsid)
            if wsid in preexisting:
                continue
            ws = model.workspaces.get(wsid)
            require(
                ws is not None,
                f"ListWorkspaces for {user} listed {wsid}, which {user} never created"
                " (a leak, or a create that should have been de-duplicated)",
            )
            assert ws is not None
            require(
                ws.owner == user,
                f"ListWorkspaces for {user} listed {wsid}, which belongs to {ws.owner}",
            )
            model.learn_owner_id(user, ws_pb.owner_id)
            latest = model.latest(ws)
            inst_pb = item.last_active_instances
            if latest is None:
                continue
            require(
                inst_pb is not None and inst_pb.instance_id == latest.id,
                f"ListWorkspaces for {user}: {wsid} reports instance "
                f"{inst_pb.instance_id if inst_pb else None}, its latest is {latest.id}",
            )
            assert inst_pb is not None
            latest.created_at = micros(inst_pb.created_at)
            model.observe(latest, inst_pb.status, f"ListWorkspaces for {user}", self.now())
        if complete:
            mine = {ws.id for ws in model.owned_by(user)}
            missing = mine - seen
            require(not missing, f"ListWorkspaces for {user} left out {sorted(missing)}")
        self.check_order(user, [i for i in items if i.result.workspace_id not in preexisting])

    def check_order(self, user: str, items: list[Any]) -> None:
        """Active first; then latest activity, newest first (checked where the model knows)."""
        seen_inactive = False
        bounds: list[tuple[int, int] | None] = []
        for item in items:
            inst = item.last_active_instances
            active = inst is not None and inst.status.phase is not Phase.STOPPED
            require(
                not (active and seen_inactive),
                f"ListWorkspaces for {user}: {item.result.workspace_id} is active but listed after"
                " an inactive workspace (active ones come first)",
            )
            seen_inactive = seen_inactive or not active
            bounds.append(self.activity_bounds(item) if not active else None)
        # Among inactive workspaces the latest activity lies in [created, stopped-seen]:
        # a workspace whose whole window is later must not come after one whose window is earlier.
        for i, earlier in enumerate(bounds):
            for j in range(i + 1, len(bounds)):
                later = bounds[j]
                if earlier is None or later is None:
                    continue
                require(
                    earlier[1] >= later[0],
                    f"ListWorkspaces for {user}: {items[j].result.workspace_id} (activity after "
                    f"{later[0]}) listed after {items[i].result.workspace_id} (activity by "
                    f"{earlier[1]}); latest activity comes first",
                )

    def activity_bounds(self, item: Any) -> tuple[int, int] | None:
        inst = self.model.instances.get(item.last_active_instances.instance_id)
        if inst is None or inst.created_at is None or inst.stopped_seen_at is None:
            return None
        return inst.created_at, inst.stopped_seen_at

    async def check_stream(self, record: StreamRecord) -> None:
        inst = self.model.instances.get(record.instance_id)
        if record.expect_code is not None:
            await self.target.wait_briefly(lambda: record.done)
            require(
                record.done and record.error is not None,
                f"{record.label()}: expected {record.expect_code.name}, got "
                f"{len(record.messages)} messages and {'an end' if record.done else 'no end'}",
            )
            assert record.error is not None
            require(
                record.error.status is record.expect_code and not record.messages,
                f"{record.label()}: answered {record.error.status.name} "
                f"({record.error.message!r}) after {len(record.messages)} messages, expected "
                f"{record.expect_code.name}",
            )
            self.streams.remove(record)
            return
        require(
            record.error is None,
            f"{record.label()} failed: {record.error.status.name if record.error else ''} "
            f"({record.error.message if record.error else ''!r})",
        )
        if record.kind == "listen":
            self.check_listen(record, inst)
        elif record.kind == "logs":
            await self.check_logs(record, inst)
        else:
            await self.check_stop(record, inst)

    def check_listen(self, record: StreamRecord, inst: InstanceModel | None) -> None:
        statuses: list[pb.WorkspaceInstanceStatus] = record.messages
        check_sequence(record.instance_id, statuses)
        if record.expected_first is not None and statuses:
            first = statuses[0]
            require(
                first.phase is record.expected_first.phase
                and first.status_version == record.expected_first.status_version,
                f"{record.label()} started with {describe(first)}; the current status was "
                f"{describe(record.expected_first)}",
            )
        if inst is None or inst.last is None:
            return
        if statuses and self.exact:
            # Only a still clock orders the two: elsewhere the stream may have received a change
            # after the unary answer that the check compares it with was sent.
            last = statuses[-1]
            require(
                last.status_version <= inst.last.status_version,
                f"{record.label()} sent {describe(last)}, newer than the status the API answers"
                f" ({describe(inst.last)})",
            )
        if not self.exact:
            if record.done:
                require(
                    bool(statuses) and statuses[-1].phase is Phase.STOPPED,
                    f"{record.label()} ended before STOPPED",
                )
                self.streams.remove(record)
            return
        if inst.last.phase is Phase.STOPPED:
            require(
                record.done,
                f"{record.label()} is still open after its instance reached STOPPED"
                " (a listen stream ends right after STOPPED)",
            )
        require(bool(statuses), f"{record.label()} sent nothing, not even the current status")
        require(
            statuses[-1].status_version == inst.last.status_version,
            f"{record.label()} is at {describe(statuses[-1])} but the instance is at "
            f"{describe(inst.last)}: the stream missed a change",
        )
        if record.done:
            require(
                statuses[-1].phase is Phase.STOPPED,
                f"{record.label()} ended at {describe(statuses[-1])}, before STOPPED",
            )
            self.streams.remove(record)

    async def check_logs(self, record: StreamRecord, inst: InstanceModel | None) -> None:
        if inst is None:
            return
        if inst.built is False:
            await self.target.wait_briefly(lambda: record.done)
            require(
                not record.messages,
                f"{record.label()}: {len(record.messages)} build log lines for an instance that"
                " started without an image build",
            )
            require(record.done, f"{record.label()}: no build, but the stream did not end")
        if self.exact and inst.phase is not Phase.IMAGEBUILD:
            require(record.done, f"{record.label()}: the build is over but the stream goes on")
        if record.done:
            self.streams.remove(record)

    async def check_stop(self, record: StreamRecord, inst: InstanceModel | None) -> None:
        if inst is None:
            return
        count = len(record.messages)
        require(count <= 2, f"{record.label()}: {count} messages; at most STOPPING and STOPPED")
        if record.done:
            require(
                inst.phase is Phase.STOPPED or not self.exact,
                f"{record.label()} ended while the instance is {inst.phase}; it ends at STOPPED",
            )
            if record.expected_messages is not None:
                require(
                    count == record.expected_messages,
                    f"{record.label()}: {count} messages, expected {record.expected_messages}"
                    " (one per phase change after the request)",
                )
            self.streams.remove(record)
        elif self.exact and inst.phase is Phase.STOPPED:
            raise ContractViolation(
                f"{record.label()}: the instance is STOPPED, the stream goes on"
            )
