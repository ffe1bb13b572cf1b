"""Fidelity to BEHAVIOUR.md (issue 18), each test written from the spec's wording.

Through the wire only: Google's grpcio client (stubs generated at test time from ``proto/``, see
grpcio_stubs.py) against a ``gitpod-sim serve`` process on a manual clock, steered through its
control plane (Reset, Advance, SetPlan, AddFault, SetAdmission). Nothing here imports the
simulator's own code.
"""

from __future__ import annotations

from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import grpc
import pytest
from google.protobuf import duration_pb2
from server_process import ServerProcess

ADMIN = "adm-fidelity"
ALICE = (("authorization", "Bearer tok-a"),)
BOB = (("authorization", "Bearer tok-b"),)
ADMIN_MD = (("authorization", f"Bearer {ADMIN}"),)
TIMEOUT = 10.0
REPO = "https://github.com/acme/app"


def seconds(n: float) -> duration_pb2.Duration:
    d = duration_pb2.Duration()
    d.FromMicroseconds(round(n * 1e6))
    return d


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    proc = ServerProcess("--clock", "manual", "--seed", "18", "--user", "alice=tok-a",
                         "--user", "bob=tok-b", "--admin-token", ADMIN)  # fmt: skip
    try:
        yield proc
    finally:
        assert proc.stop() == 0
        proc.close()


class Client:
    """The API (as alice or bob) and the control plane of the served simulator."""

    def __init__(self, pb: SimpleNamespace, channel: grpc.Channel) -> None:
        self.ws = pb.ws
        self.spb = pb.sim
        self.phase = pb.ws.WorkspaceInstanceStatus
        self.api = pb.grpc.WorkspacesServiceStub(channel)
        self.ctl = pb.sim_grpc.SimulatorServiceStub(channel)

    def control(self, method: str, **fields: Any) -> Any:
        request = getattr(self.spb, f"{method}Request")(**fields)
        return getattr(self.ctl, method)(request, metadata=ADMIN_MD, timeout=TIMEOUT)

    def advance(self, by: float) -> Any:
        return self.control("Advance", by=seconds(by))

    def now(self) -> float:
        return float(self.control("GetClock").clock.now.ToMicroseconds()) / 1e6

    def plan(self, **fields: Any) -> None:
        plan = self.spb.LifecyclePlan(**fields)
        self.control("SetPlan", scope=self.spb.PlanScope(**{"global": True}), plan=plan)

    def no_builds(self) -> None:
        self.plan(build_policy=self.spb.BUILD_POLICY_NEVER)

    def fault(self, **spec: Any) -> None:
        target = spec.pop("target", self.spb.FaultTarget(next_start=True))
        self.control("AddFault", spec=self.spb.FaultSpec(target=target, count=1, **spec))

    def share(self, workspace_id: str, shared: bool) -> None:
        level = self.ws.ADMISSION_LEVEL_EVERYONE if shared else self.ws.ADMISSION_LEVEL_OWNER_ONLY
        self.control("SetAdmission", workspace_id=workspace_id, admission=level)

    def create(self, context_url: str = REPO) -> str:
        request = self.ws.CreateAndStartWorkspaceRequest(context_url=context_url)
        response = self.api.CreateAndStartWorkspace(request, metadata=ALICE, timeout=TIMEOUT)
        return str(response.workspace_id)

    def listed(self, workspace_id: str) -> Any:
        """The item alice's ListWorkspaces gives for ``workspace_id``."""
        response = self.api.ListWorkspaces(
            self.ws.ListWorkspacesRequest(), metadata=ALICE, timeout=TIMEOUT
        )
        items = [i for i in response.result if i.result.workspace_id == workspace_id]
        assert len(items) == 1, f"{workspace_id} listed {len(items)} times"
        return items[0]

    def latest(self, workspace_id: str) -> Any:
        """The latest instance of alice's workspace, as ListWorkspaces answers it."""
        return self.listed(workspace_id).last_active_instances

    def listen(self, instance_id: str, metadata: Any = ALICE) -> Any:
        request = self.ws.ListenToWorkspaceInstanceRequest(instance_id=instance_id)
        return self.api.ListenToWorkspaceInstance(request, metadata=metadata, timeout=TIMEOUT)

    def build_log(self, instance_id: str) -> list[str]:
        request = self.ws.ListenToImageBuildLogsRequest(instance_id=instance_id)
        stream = self.api.ListenToImageBuildLogs(request, metadata=ALICE, timeout=TIMEOUT)
        return [message.line for message in stream]

    def build_log_so_far(self, instance_id: str) -> list[str]:
        """The lines a build has written (its stream follows a running build: cut it short)."""
        request = self.ws.ListenToImageBuildLogsRequest(instance_id=instance_id)
        stream = self.api.ListenToImageBuildLogs(request, metadata=ALICE, timeout=0.5)
        lines = []
        with pytest.raises(grpc.RpcError) as excinfo:
            for message in stream:
                lines.append(message.line)
        assert _code(excinfo) == grpc.StatusCode.DEADLINE_EXCEEDED
        return lines

    def stop(self, workspace_id: str) -> None:
        """StopWorkspace, the clock moved past STOPPING while its stream waits."""
        request = self.ws.StopWorkspaceRequest(workspace_id=workspace_id)
        stream = self.api.StopWorkspace(request, metadata=ALICE, timeout=TIMEOUT)
        next(stream)
        self.advance(10)
        assert len(list(stream)) == 1  # STOPPED

    def running(self, context_url: str = REPO) -> str:
        """A workspace whose instance is RUNNING (no image build)."""
        workspace_id = self.create(context_url)
        self.advance(30)
        assert self.latest(workspace_id).status.phase == self.phase.PHASE_RUNNING
        return workspace_id

    def phase_name(self, status: Any) -> str:
        return str(self.phase.Phase.Name(status.phase)).removeprefix("PHASE_")


@pytest.fixture(scope="module")
def channel(server: ServerProcess) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(server.address) as channel:
        grpc.channel_ready_future(channel).result(timeout=TIMEOUT)
        yield channel


@pytest.fixture
def client(grpcio_pb: SimpleNamespace, channel: grpc.Channel) -> Client:
    """The client of a simulator reset to its seed: no workspaces, plans or faults."""
    c = Client(grpcio_pb, channel)
    c.control("Reset")
    return c


def _code(excinfo: pytest.ExceptionInfo[grpc.RpcError]) -> grpc.StatusCode:
    return excinfo.value.code()  # type: ignore[attr-defined,no-any-return]


# ------------------------------------------------------------------ admission (item 1)


def test_admission_of_a_stopped_instance_follows_unsharing(client: Client) -> None:
    """BEHAVIOUR.md: `admission` is EVERYONE for a shared workspace, otherwise OWNER_ONLY. It is
    computed from the workspace's sharing on every read, for every instance, a STOPPED one
    included. (Stopped while shared, then unshared.)"""
    client.no_builds()
    workspace_id = client.running()
    client.share(workspace_id, True)
    client.stop(workspace_id)
    before = client.latest(workspace_id).status
    assert before.phase == client.phase.PHASE_STOPPED
    assert before.admission == client.ws.ADMISSION_LEVEL_EVERYONE
    client.share(workspace_id, False)
    with pytest.raises(grpc.RpcError) as excinfo:
        client.api.GetWorkspace(
            client.ws.GetWorkspaceRequest(workspace_id=workspace_id), metadata=BOB, timeout=TIMEOUT
        )
    assert _code(excinfo) == grpc.StatusCode.NOT_FOUND
    after = client.latest(workspace_id).status
    assert after.admission == client.ws.ADMISSION_LEVEL_OWNER_ONLY
    # a read, not a status change: STOPPED is final
    assert after.status_version == before.status_version
    assert after.phase == client.phase.PHASE_STOPPED


def test_admission_of_a_stopped_instance_follows_sharing(client: Client) -> None:
    """BEHAVIOUR.md: admission is computed from the workspace's sharing on every read, a STOPPED
    instance included. (Shared after it stopped: the owner's listing and another user's listen
    stream both answer EVERYONE.)"""
    client.no_builds()
    workspace_id = client.running()
    client.stop(workspace_id)
    assert client.latest(workspace_id).status.admission == client.ws.ADMISSION_LEVEL_OWNER_ONLY
    client.share(workspace_id, True)
    instance = client.latest(workspace_id)
    assert instance.status.admission == client.ws.ADMISSION_LEVEL_EVERYONE
    seen = [m.instance_status for m in client.listen(instance.instance_id, metadata=BOB)]
    assert [(client.phase_name(s), s.admission) for s in seen] == [
        ("STOPPED", client.ws.ADMISSION_LEVEL_EVERYONE)
    ]


def test_admission_of_an_older_instance_follows_sharing(client: Client) -> None:
    """BEHAVIOUR.md: admission is computed on every read, for every instance: an older STOPPED
    instance of a restarted workspace answers the sharing of now."""
    client.no_builds()
    workspace_id = client.running()
    first = client.latest(workspace_id).instance_id
    client.stop(workspace_id)
    client.api.StartWorkspace(
        client.ws.StartWorkspaceRequest(workspace_id=workspace_id), metadata=ALICE, timeout=TIMEOUT
    )
    client.share(workspace_id, True)
    (old,) = [m.instance_status for m in client.listen(first)]
    assert old.phase == client.phase.PHASE_STOPPED
    assert old.admission == client.ws.ADMISSION_LEVEL_EVERYONE
    active = client.api.GetActiveWorkspaceInstance(
        client.ws.GetActiveWorkspaceInstanceRequest(workspace_id=workspace_id),
        metadata=ALICE,
        timeout=TIMEOUT,
    ).instance
    assert active.instance_id != first
    assert active.status.admission == client.ws.ADMISSION_LEVEL_EVERYONE


# ------------------------------------------------------------------ image build logs (item 4)


def test_a_failed_image_build_prints_no_success_line(client: Client) -> None:
    """BEHAVIOUR.md: a failed image build sets `failed` during IMAGEBUILD; a finished, failed or
    abandoned build replays the lines it produced and ends. (Issue 18: a failed build must not
    print a success line.)"""
    client.fault(fail_image_build=client.spb.FailImageBuild(reason="npm ERR! missing script"))
    workspace_id = client.create()
    client.advance(600)
    instance = client.latest(workspace_id)
    assert instance.status.phase == client.phase.PHASE_STOPPED
    assert instance.status.conditions.failed == "npm ERR! missing script"
    lines = client.build_log(instance.instance_id)
    assert lines[0].startswith("Building workspace image for ")
    assert lines[-2:] == ["ERROR: npm ERR! missing script", "Build failed."]
    assert not [line for line in lines if line.startswith("Successfully built")], lines


def test_an_abandoned_image_build_prints_no_success_line(client: Client) -> None:
    """BEHAVIOUR.md: a stop in IMAGEBUILD..INITIALIZING marks, then STOPPING, STOPPED; an
    abandoned build replays the lines it produced and ends: none of them says it succeeded."""
    client.fault(stall_phase=client.spb.StallPhase(phase=client.phase.PHASE_IMAGEBUILD))
    workspace_id = client.create()
    client.advance(600)  # every line the build had to write, but it never ends
    assert client.latest(workspace_id).status.phase == client.phase.PHASE_IMAGEBUILD
    client.stop(workspace_id)
    lines = client.build_log(client.latest(workspace_id).instance_id)
    assert len(lines) > 1
    assert not [line for line in lines if line.startswith("Successfully built")], lines


def test_a_successful_image_build_ends_with_its_success_line(client: Client) -> None:
    """BEHAVIOUR.md: image build lines are generated from the seed; a finished build replays
    them: the last one reports the success, and only once the build is over."""
    workspace_id = client.create()
    instance_id = client.latest(workspace_id).instance_id
    client.advance(59)  # the build takes 60 s
    assert client.latest(workspace_id).status.phase == client.phase.PHASE_IMAGEBUILD
    so_far = client.build_log_so_far(instance_id)
    assert len(so_far) > 1
    assert not [line for line in so_far if line.startswith("Successfully built")], so_far
    client.advance(1)
    assert client.latest(workspace_id).status.phase == client.phase.PHASE_PENDING
    lines = client.build_log(instance_id)
    assert lines[-1].startswith("Successfully built ")
    assert sum(line.startswith("Successfully built") for line in lines) == 1


# ------------------------------------------------------------ timeouts (item 3, spec additions)


def _transitions(client: Client, advanced: Any, since: float) -> list[tuple[float, str, str, str]]:
    """(seconds after ``since``, from, to, cause) of an Advance answer's transitions."""
    name = client.phase.Phase.Name
    return [
        (
            t.at.ToMicroseconds() / 1e6 - since,
            name(t.from_phase).removeprefix("PHASE_"),
            name(t.to_phase).removeprefix("PHASE_"),
            t.cause,
        )
        for t in advanced.transitions
    ]


def test_the_startup_limit_counts_from_entering_pending(client: Client) -> None:
    """BEHAVIOUR.md: the startup limits count from the instance's entry into PENDING, so time
    spent in PENDING counts toward the 1 h total startup as well as the 30 min initialization
    limit. (PENDING held 1,142 s, then CREATING stalled: the timeout at 3,600 s, not 4,742 s.)"""
    pending = client.spb.PhaseDuration(
        phase=client.phase.PHASE_PENDING, duration=client.spb.Distribution(fixed=seconds(1142))
    )
    client.plan(build_policy=client.spb.BUILD_POLICY_NEVER, durations=[pending])
    client.fault(stall_phase=client.spb.StallPhase(phase=client.phase.PHASE_CREATING))
    start = client.now()
    workspace_id = client.create()
    rows = _transitions(client, client.advance(3 * 3600), start)
    assert rows == [
        (1142, "PENDING", "CREATING", "step"),
        (3600, "CREATING", "CREATING", "timeout:startup"),
        (3600, "CREATING", "STOPPING", "timeout:startup"),
        (3605, "STOPPING", "STOPPED", "step"),
    ]
    status = client.latest(workspace_id).status
    assert status.conditions.timeout == (
        "workspace timed out after startup (01h00m) took longer than 01h00m"
    )


def test_an_image_build_still_running_after_1h_goes_to_stopped(client: Client) -> None:
    """BEHAVIOUR.md: an instance still in IMAGEBUILD 1 h after its creation is stopped (with no
    failed condition); it goes to STOPPED with `conditions.timeout = "workspace timed out after
    image build (01h00m) took longer than 01h00m"`."""
    client.fault(stall_phase=client.spb.StallPhase(phase=client.phase.PHASE_IMAGEBUILD))
    start = client.now()
    workspace_id = client.create()
    instance_id = client.latest(workspace_id).instance_id
    listen = client.listen(instance_id)
    rows = _transitions(client, client.advance(2 * 3600), start)
    assert rows == [
        (3600, "IMAGEBUILD", "IMAGEBUILD", "timeout:image build"),
        (3600, "IMAGEBUILD", "STOPPED", "timeout:image build"),
    ]
    seen = [m.instance_status for m in listen]  # the stream ends after STOPPED
    assert [client.phase_name(s) for s in seen] == ["IMAGEBUILD", "IMAGEBUILD", "STOPPED"]
    text = "workspace timed out after image build (01h00m) took longer than 01h00m"
    final = seen[-1]
    assert final.conditions.timeout == text
    assert final.conditions.failed == ""
    assert not final.conditions.stopped_by_request
    assert client.latest(workspace_id).status.conditions.timeout == text


def test_a_second_timeout_keeps_the_first_text(client: Client) -> None:
    """BEHAVIOUR.md: when a second timeout fires later (a STOPPING timeout after an inactivity
    timeout), `conditions.timeout` keeps the first text: it says why the instance stopped."""
    client.no_builds()
    client.fault(stall_phase=client.spb.StallPhase(phase=client.phase.PHASE_STOPPING))
    start = client.now()
    workspace_id = client.create()
    rows = _transitions(client, client.advance(3 * 3600), start)
    assert [row[1:] for row in rows[-3:]] == [
        ("RUNNING", "RUNNING", "timeout:period of inactivity"),
        ("RUNNING", "STOPPING", "timeout:period of inactivity"),
        ("STOPPING", "STOPPED", "timeout:stopping"),
    ]
    assert rows[-1][0] - rows[-2][0] == 3600  # the stopping limit did fire
    status = client.latest(workspace_id).status
    assert status.phase == client.phase.PHASE_STOPPED
    assert status.conditions.timeout == (
        "workspace timed out after period of inactivity (00h30m) took longer than 00h30m"
    )


@pytest.mark.parametrize("leaves_by", ["recovery", "stop", "interruption timeout"])
def test_the_interruption_message_is_cleared_on_leaving_interrupted(
    client: Client, leaves_by: str
) -> None:
    """BEHAVIOUR.md: `message = "workspace is temporarily unavailable"` set by an interruption
    is cleared when the instance leaves INTERRUPTED, whichever way it leaves."""
    client.no_builds()
    workspace_id = client.running()
    listen = client.listen(client.latest(workspace_id).instance_id)
    duration = seconds(60) if leaves_by == "recovery" else None
    client.fault(
        target=client.spb.FaultTarget(workspace_id=workspace_id),
        interrupt=client.spb.Interrupt(after=seconds(0), duration=duration),
    )
    client.advance(1)
    if leaves_by == "stop":
        client.stop(workspace_id)
    else:
        client.advance(600)  # recovers after 60 s, or times out after 5 min
        if leaves_by == "recovery":
            client.stop(workspace_id)
    seen = [(client.phase_name(m.instance_status), m.instance_status.message) for m in listen]
    unavailable = "workspace is temporarily unavailable"
    assert [message for phase, message in seen if phase == "INTERRUPTED"]
    assert all(message == unavailable for phase, message in seen if phase == "INTERRUPTED")
    left = next(i for i, (phase, _) in enumerate(seen) if i and seen[i - 1][0] == "INTERRUPTED"
                and phase != "INTERRUPTED")  # fmt: skip
    assert all(message == "" for _, message in seen[left:]), seen
    assert seen[-1][0] == "STOPPED"
