"""The checks after every step: what must hold of the target whatever the last rule did.

The rules (:mod:`simulator.contract.machine`) check their own answers; these checks judge the
target as a whole after each step (every caller's listing, every open stream, the inactive rule),
so a bug shows on the step that caused it even when no rule looks at that part of the API.
They read and teach the expected-answer model (:mod:`simulator.contract.model`).

Listings hold more than the model's workspaces: everything else a caller owns on the target
(earlier examples, earlier runs, other clients) is *foreign*. A foreign item must keep the paging
rules (once per listing, page sizes, the order within one answer) and belong to the caller; the
model claims nothing else of it. Listings are paged in small pages and only until every workspace
the model expects has been seen: decoding a long foreign listing every step would dominate a run.
A caller is listed after a step that may have changed their listing (the rules mark them dirty: a
call on their workspaces, a clock or fault rule); on a still, settled target (in process) no one
else is, since the listing they would be answered is the one already checked.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any, TypeVar

from grpclib.const import Status
from grpclib.exceptions import GRPCError

from simulator._proto.gitpod import v1 as pb
from simulator._proto.gitpod.v1 import WorkspaceInstanceStatusPhase as Phase
from simulator.contract.model import (
    Causality,
    ContractViolation,
    InstanceModel,
    Model,
    check_sequence,
    describe,
    require,
)
from simulator.contract.streams import StreamRecord, Streams
from simulator.contract.target import STREAM_WAIT, Target, micros

_T = TypeVar("_T")

LIST_PAGES_LIMIT = 200
END_WAIT = 2.0
"""Seconds a listen stream may stay open once STOPPED is known (its end follows STOPPED)."""
REFRESH_PAGE_SIZE = 3
"""The listing after every step pages in threes: paging is checked on every step, cheaply."""

__all__ = ["LIST_PAGES_LIMIT", "PostStepChecks", "checked_call", "micros", "present"]


def present(value: _T | None, what: str) -> _T:
    """A message field the API always sets; its absence is a violation."""
    require(value is not None, f"{what}: a required field of the answer is unset")
    assert value is not None
    return value


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

    def __init__(
        self, target: Target, model: Model, streams: Streams, causality: Causality, marker: str
    ) -> None:
        self.target = target
        self.model = model
        self.streams = streams
        self.causality = causality
        self.marker = marker
        """The context URL prefix of this example's workspaces."""
        self.inactive_checked: set[str] = set()
        self.steps = 0
        self.dirty: set[str] = set()
        """Callers whose workspaces the current step may change (the rules say)."""
        self.listed: set[str] = set()
        """Callers whose listing was checked after a step (exact targets: nothing else changes
        it until a step marks them dirty)."""

    def stub(self, user: str) -> pb.WorkspacesServiceStub:
        return self.target.stubs[user]

    def now(self) -> int | None:
        return self.target.now()

    async def after_step(self) -> None:
        """Every check that holds after any step: listings, the inactive rule, open streams."""
        await self.target.settle()
        self.steps += 1
        users = self.target.users
        if not self.target.exact:
            # A remote listing costs the target time that grows with everything it holds: list
            # the callers whose workspaces the step may have changed (a still clock: the model
            # relies on knowing their statuses), and one more in turn, so paging is checked on
            # every step.
            turn = users[self.steps % len(users)]
            users = tuple(u for u in users if u in self.dirty or u == turn)
        else:
            # Still and settled (in process): a caller's listing changes only by a call of the
            # step on their workspaces or a clock or fault rule, and the rules mark those callers
            # dirty before they run. Anyone else would be answered the listing already checked
            # (the same items, statuses and order): it is listed again only once dirty.
            users = tuple(u for u in users if u in self.dirty or u not in self.listed)
        self.dirty.clear()
        for user in users:
            await self.refresh(user)
            self.listed.add(user)
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

    async def page(
        self, user: str, page_size: int, token: str
    ) -> tuple[pb.ListWorkspacesResponse, int, int]:
        """One ListWorkspaces page with the client's counter at its send and its receipt."""
        request = pb.ListWorkspacesRequest(
            pagination=pb.Pagination(page_size=page_size, page_token=token)
        )
        sent = self.causality.tick()
        response = await self.stub(user).list_workspaces(request)
        received = self.causality.tick()
        require(
            len(response.result) <= (page_size or 20),
            f"ListWorkspaces(page_size={page_size}) by {user} answered "
            f"{len(response.result)} items",
        )
        return response, sent, received

    async def refresh(self, user: str, page_size: int = REFRESH_PAGE_SIZE) -> None:
        """Page through the caller's listing until every workspace of the model's is seen (or
        the end): each item once, the caller's own, in order; learn statuses."""
        await self.listing(user, page_size, until_all_seen=True)

    async def listing(
        self,
        user: str,
        page_size: int,
        *,
        until_all_seen: bool,
        min_pages: int = 0,
        between: Any = None,
    ) -> None:
        """Page the caller's listing, checking every page. ``between`` (a coroutine function)
        runs after the first page when the listing goes on: what it changes is not claimed."""
        mine = {ws.id for ws in self.model.owned_by(user)}
        seen: list[str] = []
        ours: list[Any] = []
        token = ""
        changed = False
        for number in range(LIST_PAGES_LIMIT):
            response, sent, received = await self.page(user, page_size, token)
            for item in response.result:
                wsid = item.result.workspace_id if item.result is not None else ""
                require(
                    wsid not in seen,
                    f"paging ListWorkspaces(page_size={page_size}) for {user} repeated {wsid}",
                )
                seen.append(wsid)
            ours.extend(self.check_page(user, response.result, sent, received, first=number == 0))
            token = response.next_page_token
            if not token:
                break
            if until_all_seen and number + 1 >= min_pages and mine <= set(seen):
                break  # the rest is foreign: not worth decoding every step
            if between is not None and number == 0:
                await between()
                changed = True
        else:
            raise ContractViolation(
                f"ListWorkspaces(page_size={page_size}) for {user} never reached an empty"
                " next_page_token"
            )
        missing = mine - set(seen)
        require(
            not missing,
            f"paging ListWorkspaces(page_size={page_size}) for {user} left out {sorted(missing)}",
        )
        if self.target.still and not changed:
            self.check_order(user, ours, "across pages")

    def check_page(
        self, user: str, items: list[Any], sent: int, received: int, *, first: bool
    ) -> list[Any]:
        """One page: the model's items checked and learnt, foreign ones kept to the rules that
        hold of any workspace; the model's items are answered."""
        model = self.model
        ours: list[Any] = []
        foreign: list[Any] = []
        for item in items:
            ws_pb = item.result
            require(ws_pb is not None, f"ListWorkspaces for {user}: an item without its workspace")
            wsid = ws_pb.workspace_id
            ws = model.workspaces.get(wsid)
            if ws is None:
                context = ws_pb.context.context_url if ws_pb.context is not None else ""
                require(
                    not context.startswith(self.marker),
                    f"ListWorkspaces for {user} listed {wsid} ({context}), which no call of this"
                    " example answered (a leak, or a create that should have been de-duplicated)",
                )
                foreign.append(item)
                continue
            require(
                ws.owner == user,
                f"ListWorkspaces for {user} listed {wsid}, which belongs to {ws.owner}",
            )
            model.learn_owner_id(user, ws_pb.owner_id)
            ours.append(item)
            inst_pb = item.last_active_instances
            latest = model.latest(ws)
            if latest is None:
                if inst_pb is not None and inst_pb.instance_id:
                    # Its start was never seen (it stopped before the suite could ask): adopt.
                    latest = model.add_instance(ws, inst_pb.instance_id, None, exact=False)
                else:
                    continue
            require(
                inst_pb is not None and inst_pb.instance_id == latest.id,
                f"ListWorkspaces for {user}: {wsid} reports instance "
                f"{inst_pb.instance_id if inst_pb else None}, its latest is {latest.id}",
            )
            assert inst_pb is not None
            latest.created_at = micros(inst_pb.created_at)
            model.observe(
                latest,
                present(inst_pb.status, f"ListWorkspaces for {user}"),
                f"ListWorkspaces for {user}",
                sent,
                received,
                self.now(),
            )
        owner_id = model.owner_ids.get(user)
        for item in foreign:
            model.foreign.setdefault(user, set()).add(item.result.workspace_id)
            require(
                owner_id is None or item.result.owner_id == owner_id,
                f"ListWorkspaces for {user} listed {item.result.workspace_id}, owned by "
                f"{item.result.owner_id!r}; {user} is {owner_id!r} (only the caller's own)",
            )
        if first:
            # One answer is one instant: its order is the order of the statuses it shows.
            self.check_order(user, list(items), "in one page")
        return ours

    def check_order(self, user: str, items: list[Any], where: str) -> None:
        """Active first; then latest activity, newest first (checked where the model knows)."""
        seen_inactive = False
        bounds: list[tuple[int, int] | None] = []
        for item in items:
            inst = item.last_active_instances
            active = inst is not None and inst.status.phase is not Phase.STOPPED
            require(
                not (active and seen_inactive),
                f"ListWorkspaces for {user}: {item.result.workspace_id} is active but listed after"
                f" an inactive workspace ({where}; active ones come first)",
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
        if item.last_active_instances is None:
            return None
        inst = self.model.instances.get(item.last_active_instances.instance_id)
        if inst is None or inst.created_at is None or inst.stopped_seen_at is None:
            return None
        return inst.created_at, inst.stopped_seen_at

    async def check_stream(self, record: StreamRecord) -> None:
        inst = self.model.instances.get(record.instance_id)
        require(
            not record.terminated,
            f"{record.label()} was cut off without a gRPC status ({record.terminated})",
        )
        if record.expect_code is not None:
            await self.target.wait_briefly(lambda: record.done, STREAM_WAIT)
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
        if record.error is not None and record.error.status in record.allowed:
            require(
                not record.messages,
                f"{record.label()}: answered {record.error.status.name} after"
                f" {len(record.messages)} messages",
            )
            self.streams.remove(record)
            return
        require(
            record.error is None,
            f"{record.label()} failed: {record.error.status.name if record.error else ''} "
            f"({record.error.message if record.error else ''!r})",
        )
        if record.kind == "listen":
            await self.check_listen(record, inst)
        elif record.kind == "logs":
            await self.check_logs(record, inst)
        else:
            await self.check_stop(record, inst)

    async def check_listen(self, record: StreamRecord, inst: InstanceModel | None) -> None:
        statuses: list[pb.WorkspaceInstanceStatus] = record.messages
        known = inst.last if inst is not None else None
        if (statuses and statuses[-1].phase is Phase.STOPPED) or (
            known is not None and known.phase is Phase.STOPPED
        ):
            # STOPPED is known to have happened (on this stream, or answered by a call): the
            # stream owes it, and then its end, whatever the clock does.
            def ended() -> bool:
                return record.done and bool(statuses) and statuses[-1].phase is Phase.STOPPED

            await self.target.wait_briefly(ended, END_WAIT)
            require(
                record.done or not statuses or statuses[-1].phase is not Phase.STOPPED,
                f"{record.label()} is still open seconds after it sent STOPPED"
                " (a listen stream ends right after STOPPED)",
            )
            require(
                record.done,
                f"{record.label()} neither sent STOPPED nor ended within {END_WAIT:g} s of"
                f" the instance being answered STOPPED ({describe(known) if known else ''})",
            )
        if inst is not None and self.target.still and not self.target.settled:
            # A still clock: the stream owes what the model already saw; give it time to come.
            def caught_up() -> bool:
                last = inst.last
                if not statuses or last is None:
                    return bool(statuses)
                behind = statuses[-1].status_version < last.status_version
                return not behind and (record.done or last.phase is not Phase.STOPPED)

            await self.target.wait_briefly(caught_up)
        # Each message is judged once: what came before it was judged with it, and what a
        # status is checked against (what was received before the stream was opened, the
        # statuses of its version) does not change afterwards.
        start, count = record.checked, len(statuses)
        check_sequence(record.instance_id, statuses[max(start - 1, 0) : count])
        if record.expected_first is not None and statuses and start == 0:
            first = statuses[0]
            require(
                first.phase is record.expected_first.phase
                and first.status_version == record.expected_first.status_version,
                f"{record.label()} started with {describe(first)}; the current status was "
                f"{describe(record.expected_first)}",
            )
        if inst is None:
            record.checked = count
            return
        for status in statuses[start:count]:
            # Its first message is sent after the stream was opened: not older than anything
            # received before that; later messages follow the first (check_sequence).
            self.model.check_after(inst, status, record.label(), record.opened)
        record.checked = count
        last = inst.last
        if last is None:
            return
        if not self.target.still:
            if record.done:
                require(
                    bool(statuses) and statuses[-1].phase is Phase.STOPPED,
                    f"{record.label()} ended before STOPPED",
                )
                self.streams.remove(record)
            return
        if last.phase is Phase.STOPPED:
            require(
                record.done,
                f"{record.label()} is still open after its instance reached STOPPED"
                " (a listen stream ends right after STOPPED)",
            )
        require(bool(statuses), f"{record.label()} sent nothing, not even the current status")
        require(
            statuses[-1].status_version == last.status_version,
            f"{record.label()} is at {describe(statuses[-1])} but the instance is at "
            f"{describe(last)}: the stream missed a change",
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
            await self.target.wait_briefly(lambda: record.done, STREAM_WAIT)
            require(
                not record.messages,
                f"{record.label()}: {len(record.messages)} build log lines for an instance that"
                " started without an image build",
            )
            require(record.done, f"{record.label()}: no build, but the stream did not end")
        if self.target.still and inst.phase not in (Phase.IMAGEBUILD, None):
            await self.target.wait_briefly(lambda: record.done)
            require(record.done, f"{record.label()}: the build is over but the stream goes on")
        if record.done:
            self.streams.remove(record)

    async def check_stop(self, record: StreamRecord, inst: InstanceModel | None) -> None:
        if inst is None:
            return
        still = self.target.still
        if still and inst.phase is Phase.STOPPED:
            await self.target.wait_briefly(lambda: record.done)
        count = len(record.messages)
        require(count <= 2, f"{record.label()}: {count} messages; at most STOPPING and STOPPED")
        if record.done:
            require(
                inst.phase is Phase.STOPPED or not still,
                f"{record.label()} ended while the instance is {inst.phase}; it ends at STOPPED",
            )
            if record.expected_messages is not None:
                require(
                    count == record.expected_messages,
                    f"{record.label()}: {count} messages, expected {record.expected_messages}"
                    " (one per phase change after the request)",
                )
            self.streams.remove(record)
        elif still and inst.phase is Phase.STOPPED:
            raise ContractViolation(
                f"{record.label()}: the instance is STOPPED, the stream goes on"
            )
