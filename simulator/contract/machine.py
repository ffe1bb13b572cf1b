"""The contract suite's rules: a Hypothesis state machine whose rules are the API's calls.

Only the rules live here (what to call, with which drawn arguments, and what that call itself must
answer); the expected answers come from the model (:mod:`simulator.contract.model`) and what must
hold of the whole target after every step from :mod:`simulator.contract.checks`, so each part can
be read, and changed, on its own.

Hypothesis has no async stateful testing, so the machine owns an event loop (an
:class:`asyncio.Runner`) and runs every call to completion on it; streams it opens keep running as
tasks on that loop between steps (:mod:`simulator.contract.streams`). Each rule checks its own
answer and then the whole target (:meth:`PostStepChecks.after_step`), so the falsifying example
Hypothesis prints (``state = GitpodContract()`` followed by one line per call) fails on its own
when pasted into a test, with no invariant hooks needed.
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import AsyncExitStack
from typing import Any, ClassVar, TypeVar

from grpclib.const import Status
from grpclib.exceptions import GRPCError
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    multiple,
    precondition,
    rule,
)

from simulator._proto.gitpod import v1 as pb
from simulator._proto.gitpod.v1 import WorkspaceInstanceStatusPhase as Phase
from simulator._proto.google.protobuf import FieldMask
from simulator.contract.checks import PostStepChecks, checked_call, present
from simulator.contract.model import (
    REACHABLE,
    Causality,
    ContractViolation,
    InstanceModel,
    Model,
    WorkspaceModel,
    require,
)
from simulator.contract.streams import StreamRecord, Streams
from simulator.contract.target import InProcessTarget, Target, micros

_T = TypeVar("_T")

CONTEXTS = (
    "https://github.com/gitpod-io/gitpod",
    "github.com/gitpod-io/website/tree/main",
    "https://gitlab.com/acme/widgets",
    # Forms "Open in Gitpod" sends from a file or a release page (BEHAVIOUR.md: accepted).
    "https://github.com/gitpod-io/gitpod/blob/main/README.md",
    "https://github.com/gitpod-io/website/releases/tag/v1.0",
)
BAD_CONTEXT = "not a context url"
SHORT_SHA_CONTEXT = "https://github.com/gitpod-io/gitpod/commit/0123456"
"""A commit sha that is not 40 hex characters: a context parse error (INVALID_ARGUMENT)."""
TOKENS = ("", "", "k1", "k2")
MALFORMED_WORKSPACE = "Not/A-Workspace"
UNKNOWN_WORKSPACE = "gitpodio-gitpod-aaaaaaaaaaa"
MALFORMED_INSTANCE = "not-a-uuid"
UNKNOWN_INSTANCE = "00000000-0000-4000-8000-000000000000"
MASKS = (
    ("result.workspace_id",),
    ("result.owner_id", "last_active_instances.instance_id"),
    ("last_active_instances.status.phase", "result.context.context_url"),
)
ADVANCES = (1.0, 5.0, 30.0, 90.0, 600.0, 1900.0)
FAULTS = ("fail", "interrupt", "interrupt_forever", "recover", "mark_active", "share")
MASKED_PAGE = 5
"""The field-mask rule compares one page of five items with and without the mask."""
RULE_PAGES = 6
"""The ListWorkspaces rule pages to the end when that takes at most this many pages; beyond,
only until every workspace the model expects was seen (a long foreign listing costs time)."""

RUN = secrets.token_hex(3)
"""This process's run: with the example's number it makes the namespace ``<run>x<n>``."""
_EXAMPLES = itertools.count(1)

NS_KEY = "CONTRACT_NS"
"""The context URL prefix ``CONTRACT_NS=<run>x<n>/`` (upstream's ``KEY=VAL/`` prefix form, which
the API accepts and echoes) marks the workspaces of one example."""


class RunStats:
    """Steps and examples of this process's runs, for the steps/s report."""

    steps = 0
    examples = 0
    violation: tuple[ContractViolation, list[str], str] | None = None
    """The latest violation with the steps of its example (as the suite ran them), for when
    Hypothesis cannot make a moving target fail again and reports only its flakiness."""


ID_RPCS = (
    "GetWorkspace",
    "GetOwnerToken",
    "StartWorkspace",
    "GetActiveWorkspaceInstance",
    "StopWorkspace",
    "GetWorkspaceInstanceOwnerToken",
    "ListenToWorkspaceInstance",
    "ListenToImageBuildLogs",
)


class GitpodContract(RuleBasedStateMachine):
    """The rules of gitpod.v1.WorkspacesService, as random call sequences by several users."""

    target_factory: ClassVar[Callable[[], Target]] = InProcessTarget
    """How each example gets a fresh target (a subclass binds another one)."""

    workspaces = Bundle("workspaces")

    def __init__(self) -> None:
        super().__init__()
        self.nonce = f"{RUN}x{next(_EXAMPLES)}"
        """This example's namespace: in every idempotency token and context URL it sends."""
        self.marker = f"{NS_KEY}={self.nonce}/"
        RunStats.examples += 1
        self.log: list[str] = []
        self.runner = asyncio.Runner()
        self.stack = AsyncExitStack()
        self.target = type(self).target_factory()
        self.still = self.target.still
        self.causality = Causality()
        self.model = Model(self.target.users)
        self.streams = Streams(self.causality)
        self.checks = PostStepChecks(
            self.target, self.model, self.streams, self.causality, self.marker
        )
        self.runner.run(self.target.open(self.stack))

    def teardown(self) -> None:
        try:
            self.runner.run(self._close())
        finally:
            self.runner.close()

    async def _close(self) -> None:
        await self.streams.close()
        if not isinstance(self.target, InProcessTarget):
            await self._tidy()
        await self.stack.aclose()

    async def _tidy(self) -> None:
        """A shared target outlives the example: stop what it left running, so the next
        examples' listings do not start with a growing list of active foreign workspaces.

        Without the control plane one image build per repository and run is left to finish:
        on a clock that moves only in real time a build outlasts an example, and a stopped
        build caches no image, so every later instance would build again and the run would
        never see a lifecycle past IMAGEBUILD (at ``--speed 50`` a build takes 1.2 s)."""
        tidy = Streams(self.causality)
        left = self.target.left_building
        for ws in self.model.workspaces.values():
            latest = self.model.latest(ws)
            if latest is None or latest.phase in (None, Phase.STOPPING, Phase.STOPPED):
                continue
            repository = _repository(ws.context)
            building = latest.phase is Phase.IMAGEBUILD and not self.target.control
            if building and repository not in left:
                left.add(repository)
                continue
            request = pb.StopWorkspaceRequest(workspace_id=ws.id)
            record = StreamRecord("stop", ws.owner, latest.id, ws.id)
            tidy.open(record, self.stub(ws.owner).stop_workspace(request), lambda m: m)
        # Judged already: only until each stop was taken (its first answer), best effort.
        await self.target.wait_briefly(lambda: all(r.done or r.messages for r in tidy), 2.0)
        await tidy.close()
        if self.target.control and self.still:
            await self._control(lambda: self.target.advance(3600))

    # ------------------------------------------------------------------ plumbing

    def _step(self, body: Coroutine[Any, Any, _T]) -> _T:
        """Run one rule's calls, let streams catch up, then check everything."""
        RunStats.steps += 1
        args = {k: v for k, v in inspect.getcoroutinelocals(body).items() if k != "self"}
        name = getattr(body, "__name__", "step").lstrip("_")
        shown = ", ".join(
            f"{k}={v.id if isinstance(v, WorkspaceModel) else v!r}" for k, v in args.items()
        )
        self.log.append(f"{name}({shown})")
        try:
            result = self.runner.run(self._then_check(body))
        except ContractViolation as exc:
            RunStats.violation = (exc, list(self.log), type(self).__name__)
            raise
        return result

    async def _then_check(self, body: Coroutine[Any, Any, _T]) -> _T:
        """A rule's calls and then the checks, in one run of the loop."""
        result = await body
        await self.checks.after_step()
        return result

    def stub(self, user: str) -> pb.WorkspacesServiceStub:
        return self.target.stubs[user]

    def now(self) -> int | None:
        return self.target.now()

    def token(self, token: str) -> str:
        """A drawn idempotency token in this example's namespace (``k1`` -> ``k1-<run>x<n>``)."""
        return f"{token}-{self.nonce}" if token else ""

    def context(self, context: str) -> str:
        """A drawn context URL marked as this example's (a bad one stays as drawn)."""
        return context if context == BAD_CONTEXT else f"{self.marker}{context}"

    async def call(self, what: str, awaitable: Awaitable[_T], expect: Status | None) -> _T | None:
        """One unary call: its answer when OK was expected, else None after checking the code."""
        return await checked_call(what, awaitable, expect)

    async def ask(self, awaitable: Awaitable[_T]) -> tuple[_T, int, int]:
        """A unary call with the client's counter at its send and its receipt."""
        sent = self.causality.tick()
        answer = await awaitable
        return answer, sent, self.causality.tick()

    def listen(
        self, user: str, inst: InstanceModel, expect: Status | None, expected_first: Any
    ) -> StreamRecord:
        record = StreamRecord(
            "listen", user, inst.id, inst.workspace_id, expect, expected_first=expected_first
        )
        request = pb.ListenToWorkspaceInstanceRequest(instance_id=inst.id)
        label = record.label()

        def heard(status: pb.WorkspaceInstanceStatus, received: int) -> None:
            if expect is None and status is not None:
                self.model.record(inst, status, label, received)

        self.streams.open(
            record,
            self.stub(user).listen_to_workspace_instance(request),
            lambda m: m.instance_status,
            heard,
        )
        return record

    # ------------------------------------------------------------------ rules: workspaces

    @rule(
        target=workspaces,
        user=st.sampled_from(("user1", "user2")),
        context=st.sampled_from((*CONTEXTS, BAD_CONTEXT, SHORT_SHA_CONTEXT)),
        token=st.sampled_from(TOKENS),
    )
    def create_and_start_workspace(self, user: str, context: str, token: str) -> Any:
        self.checks.dirty.add(self._user(user))
        return self._step(self._create(self._user(user), context, token))

    async def _create(self, user: str, context: str, token: str) -> Any:
        key = (user, "create", token)
        recorded = self.model.idempotency.get(key) if token else None
        expect = None
        bad = context in (BAD_CONTEXT, SHORT_SHA_CONTEXT)
        if bad or (recorded is not None and recorded[0] != context):
            expect = Status.INVALID_ARGUMENT
        what = f"CreateAndStartWorkspace({context!r}, token {token!r}) by {user}"
        request = pb.CreateAndStartWorkspaceRequest(
            context_url=self.context(context), idempotency_token=self.token(token)
        )
        response = await self.call(
            what, self.stub(user).create_and_start_workspace(request), expect
        )
        if response is None:
            return multiple()
        wsid = response.workspace_id
        if recorded is not None:
            require(
                wsid == recorded[1],
                f"{what} answered {wsid}; the same token and request first answered {recorded[1]}",
            )
            return wsid
        require(wsid not in self.model.workspaces, f"{what} answered existing workspace {wsid}")
        ws = WorkspaceModel(wsid, user, context)
        self.model.workspaces[wsid] = ws
        if token:
            self.model.idempotency[key] = (context, wsid)
        await self._adopt_started(user, ws)
        return wsid

    async def _adopt_started(self, user: str, ws: WorkspaceModel) -> None:
        """A create just started the workspace: find its instance and follow it from birth."""
        request = pb.GetActiveWorkspaceInstanceRequest(workspace_id=ws.id)
        what = f"GetActiveWorkspaceInstance({ws.id}) by {user} right after its create"
        try:
            response, sent, received = await self.ask(
                self.stub(user).get_active_workspace_instance(request)
            )
        except GRPCError as exc:
            # Only a moving clock may have stopped it already.
            require(
                not self.still and exc.status is Status.FAILED_PRECONDITION,
                f"{what} answered {exc.status.name} ({exc.message!r}), expected OK",
            )
            return
        got = present(response.instance, what)
        self.target.watch.saw(micros(got.created_at))
        self._adopt_instance(user, ws, got.instance_id, present(got.status, what), sent, received)

    def _adopt_instance(
        self,
        user: str,
        ws: WorkspaceModel,
        instance_id: str,
        status: Any,
        sent: int,
        received: int,
    ) -> InstanceModel:
        inst = self.model.add_instance(
            ws, instance_id, status if self.still else None, exact=self.still
        )
        if not self.still and status is not None and status.phase is Phase.IMAGEBUILD:
            inst.built = True
        self.model.observe(inst, status, "a new instance", sent, received, self.now())
        self.listen(user, inst, None, status if self.still else None)
        return inst

    @rule(
        user=st.sampled_from(("user1", "user2")),
        ws=workspaces,
        token=st.sampled_from(TOKENS),
    )
    def start_workspace(self, user: str, ws: str, token: str) -> None:
        self.checks.dirty.add(self.model.workspaces[ws].owner)
        self._step(self._start(self._user(user), self.model.workspaces[ws], token))

    async def _start(self, user: str, ws: WorkspaceModel, token: str) -> None:
        key = (user, "start", token)
        recorded = self.model.idempotency.get(key) if token else None
        expect = self.model.access_code(user, ws, owner_only=True)
        if expect is None and recorded is not None and recorded[0] != ws.id:
            expect = Status.INVALID_ARGUMENT
        what = f"StartWorkspace({ws.id}, token {token!r}) by {user}"
        request = pb.StartWorkspaceRequest(workspace_id=ws.id, idempotency_token=self.token(token))
        response = await self.call(what, self.stub(user).start_workspace(request), expect)
        if response is None:
            return
        await self._after_start(user, ws, what, response.instance_id, recorded)
        if token and recorded is None:
            self.model.idempotency[key] = (ws.id, response.instance_id)

    async def _after_start(
        self,
        user: str,
        ws: WorkspaceModel,
        what: str,
        instance_id: str,
        recorded: tuple[str, str] | None,
    ) -> None:
        if recorded is not None:
            require(
                instance_id == recorded[1],
                f"{what} answered {instance_id}; the same token first answered {recorded[1]}",
            )
            return
        latest = self.model.latest(ws)
        if latest is not None and instance_id == latest.id:
            require(
                latest.active or not self.still,
                f"{what} answered instance {instance_id}, which is STOPPED (a restart must make a"
                " new instance)",
            )
            return
        if latest is not None:
            require(
                not (self.still and latest.active),
                f"{what} made instance {instance_id} while {latest.id} is "
                f"{latest.phase.name if latest.phase else '?'}; it must answer the active one",
            )
        status = None
        sent = received = 0
        try:
            got, sent, received = await self.ask(
                self.stub(user).get_active_workspace_instance(
                    pb.GetActiveWorkspaceInstanceRequest(workspace_id=ws.id)
                )
            )
            active = present(got.instance, what)
            if active.instance_id == instance_id:
                status = present(active.status, what)
                self.target.watch.saw(micros(active.created_at))
        except GRPCError:
            require(not self.still, f"{what}: no active instance right after the start")
        if status is None:
            require(not self.still, f"{what}: the new instance is not the active one")
            self.model.add_instance(ws, instance_id, None, exact=self.still)
            return
        self._adopt_instance(ws.owner, ws, instance_id, status, sent, received)

    @rule(
        user=st.sampled_from(("user1", "user2")),
        ws=workspaces,
        token=st.sampled_from(TOKENS),
    )
    def stop_workspace(self, user: str, ws: str, token: str) -> None:
        self.checks.dirty.add(self.model.workspaces[ws].owner)
        self._step(self._stop(self._user(user), self.model.workspaces[ws], token))

    async def _stop(self, user: str, ws: WorkspaceModel, token: str) -> None:
        key = (user, "stop", token)
        recorded = self.model.idempotency.get(key) if token else None
        expect = self.model.access_code(user, ws, owner_only=True)
        latest = self.model.latest(ws)
        target_instance = latest
        expected_messages: int | None = None
        uncertain = key in self.model.uncertain
        if expect is None and recorded is not None:
            if recorded[0] != ws.id and not uncertain:
                expect = Status.INVALID_ARGUMENT
            elif recorded[0] == ws.id:
                target_instance = self.model.instances[recorded[1]]
        if expect is None and self.still:
            phase = target_instance.phase if target_instance is not None else None
            if recorded is None and (phase is None or phase is Phase.STOPPED):
                expect = Status.FAILED_PRECONDITION
            elif phase is Phase.STOPPED:
                expected_messages = 0
            elif phase is Phase.STOPPING:
                expected_messages = 1
            else:
                expected_messages = 2
        record = StreamRecord(
            "stop",
            user,
            target_instance.id if target_instance is not None and expect is None else "",
            ws.id,
            expect,
            expected_messages=expected_messages,
        )
        request = pb.StopWorkspaceRequest(workspace_id=ws.id, idempotency_token=self.token(token))
        self.streams.open(record, self.stub(user).stop_workspace(request), lambda m: m)
        await self.target.settle()
        if not self.still and expect is None:
            # Without a still clock the instance may have stopped on its own meanwhile.
            allowed = {Status.FAILED_PRECONDITION}
            if uncertain and recorded is not None and recorded[0] != ws.id:
                allowed.add(Status.INVALID_ARGUMENT)  # the first call's outcome is unknown
            record.allowed = frozenset(allowed)
            if not token or recorded is not None:
                return  # nothing to remember: no need to know the outcome now
            # A STOPPING instance answers nothing until STOPPED, a STOPPED one at once.
            stopping = target_instance is not None and target_instance.phase is Phase.STOPPING
            await self.target.wait_briefly(
                lambda: record.done or len(record.messages) > 0, 0.25 if stopping else 1.0
            )
            if record.error is not None and record.error.status is Status.FAILED_PRECONDITION:
                return
            if not record.done and not record.messages:
                self.model.uncertain.add(key)
        if token and recorded is None and expect is None and target_instance is not None:
            self.model.idempotency[key] = (ws.id, target_instance.id)

    # ------------------------------------------------------------------ rules: reads

    @rule(user=st.sampled_from(("user1", "user2")), ws=workspaces)
    def get_workspace(self, user: str, ws: str) -> None:
        self._step(self._get_workspace(self._user(user), self.model.workspaces[ws]))

    async def _get_workspace(self, user: str, ws: WorkspaceModel) -> None:
        expect = self.model.access_code(user, ws, owner_only=False)
        what = f"GetWorkspace({ws.id}) by {user}"
        response = await self.call(
            what, self.stub(user).get_workspace(pb.GetWorkspaceRequest(workspace_id=ws.id)), expect
        )
        if response is not None:
            result = present(response.result, what)
            require(result.workspace_id == ws.id, f"{what} answered another workspace")
            if ws.owner == user:
                self.model.learn_owner_id(user, result.owner_id)
            else:
                owner_id = self.model.owner_ids.get(ws.owner)
                require(
                    owner_id is None or result.owner_id == owner_id,
                    f"{what}: owner_id {result.owner_id!r}, expected {owner_id!r}",
                )

    @rule(user=st.sampled_from(("user1", "user2")), ws=workspaces)
    def get_active_workspace_instance(self, user: str, ws: str) -> None:
        self._step(self._get_active(self._user(user), self.model.workspaces[ws]))

    async def _get_active(self, user: str, ws: WorkspaceModel) -> None:
        expect = self.model.access_code(user, ws, owner_only=False)
        latest = self.model.latest(ws)
        if expect is None and self.still and (latest is None or not latest.active):
            expect = Status.FAILED_PRECONDITION
        what = f"GetActiveWorkspaceInstance({ws.id}) by {user}"
        request = pb.GetActiveWorkspaceInstanceRequest(workspace_id=ws.id)
        try:
            response, sent, received = await self.ask(
                self.stub(user).get_active_workspace_instance(request)
            )
        except GRPCError as exc:
            lenient = not self.still and exc.status is Status.FAILED_PRECONDITION
            require(
                exc.status is expect or (lenient and expect is None),
                f"{what} answered {exc.status.name} ({exc.message!r}), expected "
                f"{'OK' if expect is None else expect.name}",
            )
            return
        require(expect is None, f"{what} answered OK, expected {expect.name if expect else ''}")
        got = present(response.instance, what)
        status = present(got.status, what)
        require(
            latest is not None and got.instance_id == latest.id,
            f"{what} answered instance {got.instance_id}, the latest is "
            f"{latest.id if latest else None}",
        )
        assert latest is not None
        require(
            status.phase is not Phase.STOPPED,
            f"{what} answered a STOPPED instance as the active one",
        )
        self.model.observe(latest, status, what, sent, received, self.now())

    @rule(user=st.sampled_from(("user1", "user2")), ws=workspaces)
    def get_owner_token(self, user: str, ws: str) -> None:
        self._step(self._owner_token(self._user(user), self.model.workspaces[ws]))

    async def _owner_token(self, user: str, ws: WorkspaceModel) -> None:
        expect = self.model.access_code(user, ws, owner_only=True)
        what = f"GetOwnerToken({ws.id}) by {user}"
        request = pb.GetOwnerTokenRequest(workspace_id=ws.id)
        response = await self.call(what, self.stub(user).get_owner_token(request), expect)
        latest = self.model.latest(ws)
        if response is not None and latest is not None:
            self._learn_token(what, user, latest, response.token)

    @rule(user=st.sampled_from(("user1", "user2")), ws=workspaces, which=st.integers(0, 3))
    def get_workspace_instance_owner_token(self, user: str, ws: str, which: int) -> None:
        model_ws = self.model.workspaces[ws]
        self._step(self._instance_token(self._user(user), model_ws, which))

    async def _instance_token(self, user: str, ws: WorkspaceModel, which: int) -> None:
        inst = self.model.pick_instance(ws, which)
        if inst is None:
            return
        expect = self.model.access_code(user, ws, owner_only=True)
        what = f"GetWorkspaceInstanceOwnerToken({inst.id}) by {user}"
        request = pb.GetWorkspaceInstanceOwnerTokenRequest(instance_id=inst.id)
        response = await self.call(
            what, self.stub(user).get_workspace_instance_owner_token(request), expect
        )
        if response is not None:
            self._learn_token(what, user, inst, response.owner_token)

    def _learn_token(self, what: str, user: str, inst: InstanceModel, token: str) -> None:
        require(bool(token), f"{what} answered an empty owner token")
        owner = self.model.owner_tokens.get(token)
        require(
            owner is None or owner == inst.owner,
            f"{what} answered an owner token of {owner}'s workspace to {user}",
        )
        if inst.owner_token is None:
            for other in self.model.instances.values():
                require(
                    other.owner_token != token,
                    f"{what}: instance {inst.id} has the same owner token as {other.id}"
                    " (a new token per instance)",
                )
            inst.owner_token = token
        require(
            inst.owner_token == token,
            f"{what}: owner token of {inst.id} changed from {inst.owner_token!r} to {token!r}",
        )
        self.model.owner_tokens[token] = inst.owner

    # ------------------------------------------------------------------ rules: streams

    @rule(user=st.sampled_from(("user1", "user2")), ws=workspaces, which=st.integers(0, 3))
    def listen_to_workspace_instance(self, user: str, ws: str, which: int) -> None:
        self._step(self._listen(self._user(user), self.model.workspaces[ws], which))

    async def _listen(self, user: str, ws: WorkspaceModel, which: int) -> None:
        inst = self.model.pick_instance(ws, which)
        if inst is None:
            return
        expect = self.model.access_code(user, ws, owner_only=False)
        self.listen(user, inst, expect, inst.last if self.still and expect is None else None)
        await self.target.settle()

    @rule(user=st.sampled_from(("user1", "user2")), ws=workspaces, which=st.integers(0, 3))
    def listen_to_image_build_logs(self, user: str, ws: str, which: int) -> None:
        self._step(self._logs(self._user(user), self.model.workspaces[ws], which))

    async def _logs(self, user: str, ws: WorkspaceModel, which: int) -> None:
        inst = self.model.pick_instance(ws, which)
        if inst is None:
            return
        expect = self.model.access_code(user, ws, owner_only=False)
        record = StreamRecord("logs", user, inst.id, ws.id, expect)
        request = pb.ListenToImageBuildLogsRequest(instance_id=inst.id)
        self.streams.open(record, self.stub(user).listen_to_image_build_logs(request), lambda m: m)
        await self.target.settle()

    # ------------------------------------------------------------------ rules: listing

    @rule(
        user=st.sampled_from(("user1", "user2")),
        page_size=st.sampled_from((1, 2, 3, 0)),
        create_between=st.booleans(),
    )
    def list_workspaces(self, user: str, page_size: int, create_between: bool) -> None:
        if create_between:
            self.checks.dirty.add(self._user(user))
        self._step(self._list_paged(self._user(user), page_size, create_between))

    async def _list_paged(self, user: str, page_size: int, create_between: bool) -> None:
        """Page through the listing (optionally creating a workspace between pages)."""

        async def create() -> None:
            await self._create(user, CONTEXTS[0], "")

        await self.checks.listing(
            user,
            page_size,
            until_all_seen=True,
            min_pages=RULE_PAGES,
            between=create if create_between else None,
        )

    @rule(user=st.sampled_from(("user1", "user2")), mask=st.sampled_from(MASKS))
    def list_workspaces_masked(self, user: str, mask: tuple[str, ...]) -> None:
        self._step(self._list_masked(self._user(user), mask))

    async def _list_masked(self, user: str, mask: tuple[str, ...]) -> None:
        stub = self.stub(user)
        paging = pb.Pagination(page_size=MASKED_PAGE)
        full = await stub.list_workspaces(pb.ListWorkspacesRequest(pagination=paging))
        masked = await stub.list_workspaces(
            pb.ListWorkspacesRequest(pagination=paging, field_mask=FieldMask(paths=list(mask)))
        )
        what = f"ListWorkspaces with field_mask {list(mask)} by {user}"
        if self.still:
            require(
                len(masked.result) == len(full.result),
                f"{what}: {len(masked.result)} items, without it {len(full.result)}",
            )
            for whole, pruned in zip(full.result, masked.result, strict=True):
                expected = _prune(whole.to_dict(), mask)
                got = pruned.to_dict()
                require(got == expected, f"{what}: item {got} should be {expected}")
            return
        # A moving clock (or another client) may change the listing between the two calls:
        # each pruned item keeps only masked paths, and the model's items only what cannot
        # change (ids, owner, context; the instance only if the example started none since).
        stable = tuple(p for p in mask if not p.startswith("last_active_instances.status"))
        by_id = {w.result.workspace_id: w for w in full.result if w.result is not None}
        for pruned in masked.result:
            got = pruned.to_dict()
            require(
                _within(got, mask),
                f"{what}: item {got} holds more than the mask's paths",
            )
            wsid = pruned.result.workspace_id if pruned.result is not None else ""
            listed = by_id.get(wsid)
            if listed is None or wsid not in self.model.workspaces:
                continue
            expected = _prune(listed.to_dict(), stable)
            require(_prune(got, stable) == expected, f"{what}: item {got} should have {expected}")

    @rule(
        user=st.sampled_from(("user1", "user2")),
        kind=st.sampled_from(("size-101", "size-neg", "bogus-token", "foreign-token", "mask")),
    )
    def list_workspaces_invalid(self, user: str, kind: str) -> None:
        self._step(self._list_invalid(self._user(user), kind))

    async def _list_invalid(self, user: str, kind: str) -> None:
        request = pb.ListWorkspacesRequest()
        if kind == "size-101":
            request.pagination = pb.Pagination(page_size=101)
        elif kind == "size-neg":
            request.pagination = pb.Pagination(page_size=-1)
        elif kind == "bogus-token":
            request.pagination = pb.Pagination(page_token="bm90LWlzc3VlZA")
        elif kind == "mask":
            request.field_mask = FieldMask(paths=["result.no_such_field"])
        else:
            others = [u for u in self.target.users if u != user]
            if not others or len(self.model.owned_by(others[0])) < 2:
                return
            theirs = await self.stub(others[0]).list_workspaces(
                pb.ListWorkspacesRequest(pagination=pb.Pagination(page_size=1))
            )
            require(bool(theirs.next_page_token), "ListWorkspaces(page_size=1) gave no next page")
            request.pagination = pb.Pagination(page_size=1, page_token=theirs.next_page_token)
        what = f"ListWorkspaces({kind}) by {user}"
        await self.call(what, self.stub(user).list_workspaces(request), Status.INVALID_ARGUMENT)

    # ------------------------------------------------------------------ rules: ids

    @rule(
        user=st.sampled_from(("user1", "user2")),
        rpc=st.sampled_from(ID_RPCS),
        kind=st.sampled_from(("malformed", "unknown", "empty")),
    )
    def call_with_bad_id(self, user: str, rpc: str, kind: str) -> None:
        self._step(self._bad_id(self._user(user), rpc, kind))

    async def _bad_id(self, user: str, rpc: str, kind: str) -> None:
        expect = Status.NOT_FOUND if kind == "unknown" else Status.INVALID_ARGUMENT
        by_instance = rpc in (
            "GetWorkspaceInstanceOwnerToken",
            "ListenToWorkspaceInstance",
            "ListenToImageBuildLogs",
        )
        ident = {
            "malformed": MALFORMED_INSTANCE if by_instance else MALFORMED_WORKSPACE,
            "unknown": UNKNOWN_INSTANCE if by_instance else UNKNOWN_WORKSPACE,
            "empty": "",
        }[kind]
        s = self.stub(user)
        what = f"{rpc}({ident!r}) by {user}"
        if rpc == "GetWorkspace":
            await self.call(
                what, s.get_workspace(pb.GetWorkspaceRequest(workspace_id=ident)), expect
            )
        elif rpc == "GetOwnerToken":
            request_t = pb.GetOwnerTokenRequest(workspace_id=ident)
            await self.call(what, s.get_owner_token(request_t), expect)
        elif rpc == "StartWorkspace":
            request_s = pb.StartWorkspaceRequest(workspace_id=ident)
            await self.call(what, s.start_workspace(request_s), expect)
        elif rpc == "GetActiveWorkspaceInstance":
            request_a = pb.GetActiveWorkspaceInstanceRequest(workspace_id=ident)
            await self.call(what, s.get_active_workspace_instance(request_a), expect)
        elif rpc == "GetWorkspaceInstanceOwnerToken":
            request_o = pb.GetWorkspaceInstanceOwnerTokenRequest(instance_id=ident)
            await self.call(what, s.get_workspace_instance_owner_token(request_o), expect)
        else:
            record = StreamRecord(rpc, user, "", ident, expect)
            if rpc == "StopWorkspace":
                stream: AsyncIterator[Any] = s.stop_workspace(
                    pb.StopWorkspaceRequest(workspace_id=ident)
                )
            elif rpc == "ListenToWorkspaceInstance":
                stream = s.listen_to_workspace_instance(
                    pb.ListenToWorkspaceInstanceRequest(instance_id=ident)
                )
            else:
                stream = s.listen_to_image_build_logs(
                    pb.ListenToImageBuildLogsRequest(instance_id=ident)
                )
            self.streams.open(record, stream, lambda m: m)
            await self.target.settle()

    # ------------------------------------------------------------------ rules: idempotency races

    @rule(
        target=workspaces,
        user=st.sampled_from(("user1", "user2")),
        context=st.sampled_from(CONTEXTS),
        token=st.sampled_from(("k1", "k2", "k3")),
    )
    def concurrent_create(self, user: str, context: str, token: str) -> Any:
        self.checks.dirty.add(self._user(user))
        return self._step(self._concurrent_create(self._user(user), context, token))

    async def _concurrent_create(self, user: str, context: str, token: str) -> Any:
        key = (user, "create", token)
        recorded = self.model.idempotency.get(key)
        request = pb.CreateAndStartWorkspaceRequest(
            context_url=self.context(context), idempotency_token=self.token(token)
        )
        what = f"3 concurrent CreateAndStartWorkspace({context!r}, token {token!r}) by {user}"
        calls = [self.stub(user).create_and_start_workspace(request) for _ in range(3)]
        answers = await asyncio.gather(*calls, return_exceptions=True)
        if recorded is not None and recorded[0] != context:
            for answer in answers:
                require(
                    isinstance(answer, GRPCError) and answer.status is Status.INVALID_ARGUMENT,
                    f"{what}: token reused for another request answered {answer!r}",
                )
            return multiple()
        ids = set()
        for answer in answers:
            require(not isinstance(answer, BaseException), f"{what} failed: {answer!r}")
            ids.add(answer.workspace_id)  # type: ignore[union-attr]
        require(len(ids) == 1, f"{what} made {len(ids)} workspaces: {sorted(ids)}")
        wsid = ids.pop()
        if recorded is not None:
            require(wsid == recorded[1], f"{what} answered {wsid}, first answer {recorded[1]}")
            return wsid
        ws = WorkspaceModel(wsid, user, context)
        self.model.workspaces[wsid] = ws
        self.model.idempotency[key] = (context, wsid)
        await self._adopt_started(user, ws)
        return wsid

    @rule(user=st.sampled_from(("user1", "user2")), ws=workspaces, token=st.sampled_from(TOKENS))
    def concurrent_start(self, user: str, ws: str, token: str) -> None:
        self.checks.dirty.add(self.model.workspaces[ws].owner)
        self._step(self._concurrent_start(self._user(user), self.model.workspaces[ws], token))

    async def _concurrent_start(self, user: str, ws: WorkspaceModel, token: str) -> None:
        """Three concurrent starts: whatever the token, one instance at most comes of them."""
        expect = self.model.access_code(user, ws, owner_only=True)
        key = (user, "start", token)
        recorded = self.model.idempotency.get(key) if token else None
        if expect is None and recorded is not None and recorded[0] != ws.id:
            expect = Status.INVALID_ARGUMENT
        request = pb.StartWorkspaceRequest(workspace_id=ws.id, idempotency_token=self.token(token))
        what = f"3 concurrent StartWorkspace({ws.id}, token {token!r}) by {user}"
        calls = [self.stub(user).start_workspace(request) for _ in range(3)]
        answers = await asyncio.gather(*calls, return_exceptions=True)
        ids: set[str] = set()
        for answer in answers:
            if expect is not None:
                require(
                    isinstance(answer, GRPCError) and answer.status is expect,
                    f"{what} answered {answer!r}, expected {expect.name}",
                )
            else:
                require(not isinstance(answer, BaseException), f"{what} failed: {answer!r}")
                ids.add(answer.instance_id)  # type: ignore[union-attr]
        if expect is not None:
            return
        latest = self.model.latest(ws)
        if not self.still and not token and latest is not None and len(ids) == 2:
            # A moving clock may stop the active instance between two of the calls: the later
            # ones then start one new instance.
            ids.discard(latest.id)
        require(len(ids) == 1, f"{what} answered {len(ids)} instances: {sorted(ids)}")
        instance_id = ids.pop()
        await self._after_start(user, ws, what, instance_id, recorded)
        if token and recorded is None:
            self.model.idempotency[key] = (ws.id, instance_id)

    # ------------------------------------------------------------------ rules: clock and faults

    @precondition(lambda self: self.target.control)
    @rule(seconds=st.sampled_from(ADVANCES))
    def advance_clock(self, seconds: float) -> None:
        self._control_changes(None)
        self._step(self._control(lambda: self.target.advance(seconds)))

    @precondition(lambda self: self.target.control)
    @rule()
    def advance_to_next_event(self) -> None:
        self._control_changes(None)
        self._step(self._control(self.target.advance_to_next))

    @precondition(lambda self: self.target.control)
    @rule(kind=st.sampled_from(FAULTS), ws=workspaces)
    def inject_fault(self, kind: str, ws: str) -> None:
        model_ws = self.model.workspaces[ws]
        latest = self.model.latest(model_ws)
        if latest is not None:
            self._control_changes(model_ws)
            self._step(self._control(lambda: self._fault(kind, model_ws, latest)))

    async def _fault(self, kind: str, ws: WorkspaceModel, inst: InstanceModel) -> None:
        applied = self.target.fault(kind, ws.id, inst.id)
        if inspect.isawaitable(applied):
            applied = await applied
        if applied and kind == "share":
            ws.shared = True

    def _control_changes(self, ws: WorkspaceModel | None) -> None:
        """Mark the callers whose listings a clock rule (``ws`` None) or a fault on ``ws`` may
        change. Everyone's on a moving or shared target (the model relies on their statuses,
        and other workspaces move too); on an exact one (in process: the model knows every
        workspace) a fault changes only its workspace, so its owner's listing, and the clock
        only the listings of callers who have workspaces."""
        users = self.target.users
        if self.target.exact:
            if ws is not None:
                users = (ws.owner,)
            else:
                users = tuple(u for u in users if self.model.owned_by(u))
        self.checks.dirty.update(users)

    async def _control(self, action: Callable[[], object]) -> None:
        """A control-plane action, run on the machine's loop so streams see it at once (a remote
        target's actions are coroutines: calls of gitpod.simulator.v1.SimulatorService)."""
        result = action()
        if inspect.isawaitable(result):
            await result
        await self.target.settle()

    # ------------------------------------------------------------------ helpers

    def _user(self, user: str) -> str:
        """Map a drawn caller onto the target's callers (a one-token target has one)."""
        users = self.target.users
        return users[(int(user.removeprefix("user")) - 1) % len(users)]


def _repository(context: str) -> str:
    """``host/owner/repo`` of a drawn context URL (what an image is built for)."""
    return "/".join(context.removeprefix("https://").split("/")[:3])


def _prune(data: dict[str, Any], paths: tuple[str, ...]) -> dict[str, Any]:
    """``data`` (a message's to_dict(), camelCase keys) reduced to ``paths`` (snake_case)."""
    out: dict[str, Any] = {}
    for path in paths:
        keys = [_camel(part) for part in path.split(".")]
        src: Any = data
        for key in keys:
            if not isinstance(src, dict) or key not in src:
                src = None
                break
            src = src[key]
        if src is None:
            continue
        dst = out
        for key in keys[:-1]:
            dst = dst.setdefault(key, {})
        dst[keys[-1]] = src
    return out


def _within(data: dict[str, Any], paths: tuple[str, ...]) -> bool:
    """Every leaf of ``data`` (camelCase keys) lies on or under one of ``paths``."""
    allowed = [[_camel(part) for part in path.split(".")] for path in paths]

    def ok(node: Any, prefix: list[str]) -> bool:
        if any(prefix[: len(a)] == a for a in allowed):
            return True
        if not isinstance(node, dict) or not node:
            return False
        return all(ok(value, [*prefix, key]) for key, value in node.items())

    return ok(data, [])


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


# Cheap sanity: every phase the machine may observe is in the reachability table.
assert set(REACHABLE) >= {p for p in Phase if p is not Phase.UNSPECIFIED}
