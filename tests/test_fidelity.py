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
