"""The control plane from Google's grpcio client against a `gitpod-sim serve` process, and the
`gitpod-sim ctl` command line. Nothing here imports the simulator's own code."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import grpc
import pytest
from google.protobuf import duration_pb2
from server_process import ServerProcess, command

ADMIN = "adm-token"
API = (("authorization", "Bearer tok-a"),)
ADMIN_MD = (("authorization", f"Bearer {ADMIN}"),)
TIMEOUT = 10.0


def seconds(n: float) -> duration_pb2.Duration:
    d = duration_pb2.Duration()
    d.FromMicroseconds(round(n * 1e6))
    return d


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    proc = ServerProcess("--clock", "manual", "--seed", "3", "--user", "alice=tok-a",
                         "--admin-token", ADMIN)  # fmt: skip
    try:
        yield proc
    finally:
        assert proc.stop() == 0
        proc.close()


@pytest.fixture(scope="module")
def stubs(grpcio_pb: SimpleNamespace, server: ServerProcess) -> Iterator[SimpleNamespace]:
    channel = grpc.insecure_channel(server.address)
    try:
        yield SimpleNamespace(
            api=grpcio_pb.grpc.WorkspacesServiceStub(channel),
            ctl=grpcio_pb.sim_grpc.SimulatorServiceStub(channel),
            pb=grpcio_pb.ws,
            spb=grpcio_pb.sim,
        )
    finally:
        channel.close()


def ctl(stubs: SimpleNamespace, method: str, **fields: Any) -> Any:
    request = getattr(stubs.spb, f"{method}Request")(**fields)
    return getattr(stubs.ctl, method)(request, metadata=ADMIN_MD, timeout=TIMEOUT)


def code_of(excinfo: pytest.ExceptionInfo[grpc.RpcError]) -> grpc.StatusCode:
    return excinfo.value.code()  # type: ignore[attr-defined,no-any-return]


def test_every_capability_through_grpcio(stubs: SimpleNamespace) -> None:
    spb, pb = stubs.spb, stubs.pb
    ctl(stubs, "Reset")
    # Plans: a user plan without image builds and a 1-second PENDING.
    plan = spb.LifecyclePlan(
        build_policy=spb.BUILD_POLICY_NEVER,
        durations=[spb.PhaseDuration(phase=pb.WorkspaceInstanceStatus.PHASE_PENDING,
                                     duration=spb.Distribution(fixed=seconds(1)))],
    )  # fmt: skip
    scoped = ctl(stubs, "SetPlan", scope=spb.PlanScope(user_id="alice"), plan=plan).plan
    assert scoped.scope.user_id == "alice"
    assert [p.id for p in ctl(stubs, "ListPlans").plans] == [scoped.id]
    # Faults: the next start fails in CREATING.
    fault = ctl(
        stubs, "AddFault", spec=spb.FaultSpec(count=1, fail_creating=spb.FailCreating())
    ).fault
    created = stubs.api.CreateAndStartWorkspace(
        pb.CreateAndStartWorkspaceRequest(context_url="https://github.com/acme/app"),
        metadata=API,
        timeout=TIMEOUT,
    )
    # Clock: the next event is PENDING's end, one second away.
    clock = ctl(stubs, "GetClock").clock
    assert clock.mode == spb.CLOCK_MODE_MANUAL and clock.next_event_kind == "step"
    assert clock.next_event_at.ToSeconds() - clock.now.ToSeconds() == 1
    advanced = ctl(stubs, "Advance", until_idle=seconds(3600))
    path = [(t.from_phase, t.to_phase, t.cause) for t in advanced.transitions]
    phase = pb.WorkspaceInstanceStatus
    assert path == [
        (phase.PHASE_PENDING, phase.PHASE_CREATING, "step"),
        (phase.PHASE_CREATING, phase.PHASE_CREATING, "failed"),
        (phase.PHASE_CREATING, phase.PHASE_STOPPED, "failed"),
    ]
    assert advanced.idle
    listed = ctl(stubs, "ListFaults").faults
    assert [(f.id, f.times_applied, f.exhausted) for f in listed] == [(fault.id, 1, True)]
    assert ctl(stubs, "ClearFaults").cleared == 1
    # Share, mark active, prebuilds.
    ctl(stubs, "SetAdmission", workspace_id=created.workspace_id,
        admission=pb.ADMISSION_LEVEL_EVERYONE)  # fmt: skip
    with pytest.raises(grpc.RpcError) as info:
        ctl(stubs, "MarkActive", workspace_id=created.workspace_id)
    assert code_of(info) == grpc.StatusCode.FAILED_PRECONDITION
    assert (
        len(ctl(stubs, "AddPrebuild", prebuild_id="p1", context_url="github.com/a/b").commit) == 40
    )
    # Journal: the create call and its transitions, in order.
    entries = ctl(stubs, "ReadJournal").entries
    kinds = [e.WhichOneof("entry") for e in entries]
    assert "rpc" in kinds and "transition" in kinds
    assert [e.seq for e in entries] == sorted(e.seq for e in entries)
    creates = [e for e in entries if e.rpc.method.endswith("/CreateAndStartWorkspace")]
    assert len(creates) == 1 and creates[0].rpc.caller == "alice" and creates[0].rpc.code == "OK"
    # Users at run time.
    added = ctl(stubs, "AddUser", user_id="bob", token="tok-b")
    assert (added.user_id, added.token) == ("bob", "tok-b")
    listed_by_bob = stubs.api.ListWorkspaces(
        pb.ListWorkspacesRequest(), metadata=(("authorization", "tok-b"),), timeout=TIMEOUT
    )
    assert list(listed_by_bob.result) == []
    # Clock modes.
    switched = ctl(stubs, "SetClock", mode=spb.CLOCK_MODE_AUTOJUMP, autojump_grace=seconds(0.05))
    assert switched.clock.mode == spb.CLOCK_MODE_AUTOJUMP
    assert switched.clock.autojump_grace.ToMilliseconds() == 50
    ctl(stubs, "SetClock", mode=spb.CLOCK_MODE_MANUAL)


def test_follow_journal_through_grpcio(stubs: SimpleNamespace) -> None:
    ctl(stubs, "Reset")
    start = ctl(stubs, "ReadJournal").next_seq
    stream = stubs.ctl.FollowJournal(
        stubs.spb.FollowJournalRequest(from_seq=start), metadata=ADMIN_MD, timeout=TIMEOUT
    )
    stubs.api.CreateAndStartWorkspace(
        stubs.pb.CreateAndStartWorkspaceRequest(context_url="https://github.com/o/follow"),
        metadata=API,
        timeout=TIMEOUT,
    )
    got = [next(stream) for _ in range(2)]  # the ReadJournal above is not journaled
    stream.cancel()
    assert [e.seq for e in got] == [start, start + 1]
    assert got[0].transition.cause == "start"
    assert got[1].rpc.method.endswith("/CreateAndStartWorkspace")


def test_tokens_are_kept_apart_through_grpcio(stubs: SimpleNamespace) -> None:
    with pytest.raises(grpc.RpcError) as info:
        stubs.ctl.GetClock(stubs.spb.GetClockRequest(), metadata=API, timeout=TIMEOUT)
    assert code_of(info) == grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(grpc.RpcError) as info:
        stubs.api.ListWorkspaces(
            stubs.pb.ListWorkspacesRequest(), metadata=ADMIN_MD, timeout=TIMEOUT
        )
    assert code_of(info) == grpc.StatusCode.PERMISSION_DENIED


@pytest.mark.parametrize(
    ("method", "fields", "code", "needle"),
    [
        ("Advance", {}, grpc.StatusCode.INVALID_ARGUMENT, "advance needs one of"),
        ("AddFault", {"spec": {"target": {"workspace_id": "gitpodio-gitpod-aaaaaaaaaaa"},
                               "fail_creating": {}}},
         grpc.StatusCode.NOT_FOUND, "does not exist"),
        ("AddFault", {"spec": {"target": {"context_pattern": "(x"}, "fail_creating": {}}},
         grpc.StatusCode.INVALID_ARGUMENT, "malformed context pattern"),
        ("AddFault", {"spec": {}}, grpc.StatusCode.INVALID_ARGUMENT, "unknown fault kind"),
        ("DeletePlan", {"id": "plan-404"}, grpc.StatusCode.NOT_FOUND, "plan 'plan-404'"),
        ("ImportState", {"state_json": "[]"}, grpc.StatusCode.INVALID_ARGUMENT, "not a gitpod-sim"),
    ],
)  # fmt: skip
def test_bad_control_requests_through_grpcio(
    stubs: SimpleNamespace, method: str, fields: dict[str, Any], code: grpc.StatusCode, needle: str
) -> None:
    from google.protobuf import json_format

    request = json_format.ParseDict(fields, getattr(stubs.spb, f"{method}Request")())
    with pytest.raises(grpc.RpcError) as info:
        getattr(stubs.ctl, method)(request, metadata=ADMIN_MD, timeout=TIMEOUT)
    assert code_of(info) == code
    assert needle in info.value.details()  # type: ignore[attr-defined]


def test_negative_duration_through_grpcio(stubs: SimpleNamespace) -> None:
    with pytest.raises(grpc.RpcError) as info:
        ctl(stubs, "Advance", by=seconds(-5))
    assert code_of(info) == grpc.StatusCode.INVALID_ARGUMENT
    assert "by must not be negative" in info.value.details()  # type: ignore[attr-defined]


def test_export_new_process_import_same_answers(grpcio_pb: SimpleNamespace, tmp_path: Path) -> None:
    """Export from one process, import into a fresh one: both answer the same from then on."""
    pb, spb = grpcio_pb.ws, grpcio_pb.sim

    def script(address: str) -> list[bytes]:
        with grpc.insecure_channel(address) as channel:
            api = grpcio_pb.grpc.WorkspacesServiceStub(channel)
            control = grpcio_pb.sim_grpc.SimulatorServiceStub(channel)
            out = []
            ws = api.CreateAndStartWorkspace(
                pb.CreateAndStartWorkspaceRequest(context_url="https://github.com/o/after"),
                metadata=API, timeout=TIMEOUT)  # fmt: skip
            out.append(ws.SerializeToString())
            advanced = control.Advance(spb.AdvanceRequest(until_idle=seconds(7200)),
                                       metadata=ADMIN_MD, timeout=TIMEOUT)  # fmt: skip
            out.append(b"".join(t.SerializeToString() for t in advanced.transitions))
            out.append(api.ListWorkspaces(pb.ListWorkspacesRequest(), metadata=API,
                                          timeout=TIMEOUT).SerializeToString())  # fmt: skip
            return out

    first = ServerProcess("--clock", "manual", "--seed", "21", "--user", "alice=tok-a",
                          "--admin-token", ADMIN)  # fmt: skip
    second = ServerProcess("--clock", "manual", "--seed", "99", "--admin-token", ADMIN)
    try:
        with grpc.insecure_channel(first.address) as channel:
            api = grpcio_pb.grpc.WorkspacesServiceStub(channel)
            control = grpcio_pb.sim_grpc.SimulatorServiceStub(channel)
            api.CreateAndStartWorkspace(
                pb.CreateAndStartWorkspaceRequest(context_url="https://github.com/o/before"),
                metadata=API, timeout=TIMEOUT)  # fmt: skip
            control.Advance(spb.AdvanceRequest(by=seconds(70)), metadata=ADMIN_MD, timeout=TIMEOUT)
            state = control.ExportState(
                spb.ExportStateRequest(), metadata=ADMIN_MD, timeout=TIMEOUT
            )
        with grpc.insecure_channel(second.address) as channel:
            control = grpcio_pb.sim_grpc.SimulatorServiceStub(channel)
            counts = control.ImportState(spb.ImportStateRequest(state_json=state.state_json),
                                         metadata=ADMIN_MD, timeout=TIMEOUT)  # fmt: skip
            assert (counts.users, counts.workspaces, counts.instances) == (1, 1, 1)
        assert script(second.address) == script(first.address)
    finally:
        for proc in (first, second):
            proc.stop()
            proc.close()


def test_serve_state_file_survives_a_restart(grpcio_pb: SimpleNamespace, tmp_path: Path) -> None:
    pb = grpcio_pb.ws
    state = tmp_path / "sim.json"
    args = (
        "--clock",
        "manual",
        "--user",
        "alice=tok-a",
        "--admin-token",
        ADMIN,
        "--state",
        str(state),
    )
    first = ServerProcess(*args)
    try:
        with grpc.insecure_channel(first.address) as channel:
            api = grpcio_pb.grpc.WorkspacesServiceStub(channel)
            created = api.CreateAndStartWorkspace(
                pb.CreateAndStartWorkspaceRequest(context_url="https://github.com/o/keep"),
                metadata=API, timeout=TIMEOUT)  # fmt: skip
            token = api.GetOwnerToken(pb.GetOwnerTokenRequest(workspace_id=created.workspace_id),
                                      metadata=API, timeout=TIMEOUT).token  # fmt: skip
        assert first.stop() == 0
        assert any(line == f"state written to {state}" for line in first.lines)
    finally:
        first.close()
    saved = json.loads(state.read_text())
    assert saved["format"] == "gitpod-sim-state" and len(saved["workspaces"]) == 1
    second = ServerProcess(*args)
    try:
        assert any(line == f"state loaded from {state}" for line in second.lines)
        with grpc.insecure_channel(second.address) as channel:
            api = grpcio_pb.grpc.WorkspacesServiceStub(channel)
            again = api.GetOwnerToken(pb.GetOwnerTokenRequest(workspace_id=created.workspace_id),
                                      metadata=API, timeout=TIMEOUT).token  # fmt: skip
        assert again == token
    finally:
        assert second.stop() == 0
        second.close()


# ---------------------------------------------------------------------- gitpod-sim ctl


def run_ctl(server: ServerProcess, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command("ctl", "--target", server.address, "--admin-token", ADMIN, *args),
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_ctl_commands(server: ServerProcess, tmp_path: Path) -> None:
    assert run_ctl(server, "reset").returncode == 0
    out = run_ctl(server, "clock")
    assert out.returncode == 0 and "mode     manual" in out.stdout
    fault = run_ctl(server, "fault", "fail-image-build", "--next-start", "--count", "1",
                    "--log-tail", "E: nope")  # fmt: skip
    assert fault.returncode == 0 and fault.stdout.startswith("fault-")
    listed = run_ctl(server, "faults")
    assert fault.stdout.strip() in listed.stdout and "failImageBuild" in listed.stdout
    assert (
        run_ctl(
            server, "plan", "set", "--duration", "pending=1s..2s", "--build", "always"
        ).returncode
        == 0
    )
    assert "plan-" in run_ctl(server, "plan", "list").stdout
    user = run_ctl(server, "user", "add", "carol=tok-c")
    assert user.stdout.strip() == "carol tok-c"
    advanced = run_ctl(server, "advance", "5m")
    assert advanced.returncode == 0 and advanced.stdout.strip().endswith("(idle)")
    assert run_ctl(server, "advance", "--next").returncode == 0
    journal = run_ctl(server, "journal", "--limit", "3")
    lines = [json.loads(line) for line in journal.stdout.splitlines()]
    assert len(lines) == 3 and all("seq" in line for line in lines)
    exported = tmp_path / "state.json"
    assert run_ctl(server, "export", str(exported)).returncode == 0
    imported = run_ctl(server, "import", str(exported))
    assert imported.returncode == 0 and imported.stdout.startswith("users ")
    assert run_ctl(server, "faults", "clear").stdout.strip() == "cleared 1"


def test_ctl_fault_takes_status_names_relative_instants_and_applies_once(
    server: ServerProcess,
) -> None:
    assert run_ctl(server, "reset").returncode == 0
    added = run_ctl(server, "fault", "rpc-error", "--method", "GetWorkspace", "--code",
                    "UNAVAILABLE", "--from", "+5m", "--until", "+1h", "--after-effect")  # fmt: skip
    assert added.returncode == 0, added.stderr
    by_number = run_ctl(server, "fault", "stream-end", "--code", "10", "--method", "StopWorkspace")
    assert by_number.returncode == 0, by_number.stderr
    specs = [
        json.loads(line.split(" ", 3)[3]) for line in run_ctl(server, "faults").stdout.splitlines()
    ]
    first, second = specs
    assert first["count"] == 1 and second["count"] == 1  # once unless told otherwise
    assert first["rpcError"]["code"] == 14 and first["rpcError"]["afterEffect"] is True
    start = dt.datetime.fromisoformat(first["activeFrom"].replace("Z", "+00:00"))
    end = dt.datetime.fromisoformat(first["activeUntil"].replace("Z", "+00:00"))
    assert end - start == dt.timedelta(minutes=55)
    assert second["streamEnd"]["code"] == 10
    assert second["streamEnd"]["method"] == "/gitpod.v1.WorkspacesService/StopWorkspace"
    assert run_ctl(server, "faults", "clear").stdout.strip() == "cleared 2"


@pytest.mark.parametrize(
    ("args", "code", "needle"),
    [
        (("advance", "--next", "5m"), 2, "give exactly one of"),
        (("advance", "soon"), 2, "invalid duration"),
        (("fault", "stall-phase", "--phase", "RUNNING"), 1, "INVALID_ARGUMENT: cannot stall"),
        (("mark-active", "gitpodio-gitpod-aaaaaaaaaaa"), 1, "NOT_FOUND"),
        (("fault", "explode"), 2, "Invalid value"),
        (
            ("fault", "rpc-error", "--method", "GetWorkspace", "--code", "NOPE"),
            2,
            "unknown gRPC status 'NOPE'",
        ),
        (
            ("fault", "rpc-error", "--method", "GetWorkspace", "--phase", "PENDING"),
            2,
            "--phase does not apply to rpc-error",
        ),
        (
            ("fault", "rpc-error", "--method", "GetWorkspace", "--from", "+soon"),
            2,
            "invalid duration",
        ),
    ],
)
def test_ctl_errors(server: ServerProcess, args: tuple[str, ...], code: int, needle: str) -> None:
    result = run_ctl(server, *args)
    assert result.returncode == code, result
    assert needle in result.stderr


def test_ctl_with_an_api_token_is_refused(server: ServerProcess) -> None:
    result = subprocess.run(
        command("ctl", "--target", server.address, "--admin-token", "tok-a", "clock"),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 1
    assert "PERMISSION_DENIED" in result.stderr


def test_ctl_wait_reset_clear_journal_and_connection_drop(
    stubs: SimpleNamespace, server: ServerProcess
) -> None:
    assert run_ctl(server, "reset", "--clear-journal").returncode == 0
    created = stubs.api.CreateAndStartWorkspace(
        stubs.pb.CreateAndStartWorkspaceRequest(context_url="https://github.com/o/wait"),
        metadata=API,
        timeout=TIMEOUT,
    )
    listen = stubs.api.ListenToWorkspaceInstance(
        stubs.pb.ListenToWorkspaceInstanceRequest(
            instance_id=stubs.api.GetActiveWorkspaceInstance(
                stubs.pb.GetActiveWorkspaceInstanceRequest(workspace_id=created.workspace_id),
                metadata=API,
                timeout=TIMEOUT,
            ).instance.instance_id
        ),
        metadata=API,
        timeout=TIMEOUT,
    )
    assert next(listen).instance_status.phase == stubs.pb.WorkspaceInstanceStatus.PHASE_IMAGEBUILD
    waited = run_ctl(server, "wait", "--workspace", created.workspace_id, "--listeners", "1")
    assert waited.returncode == 0, waited.stderr
    assert waited.stdout.strip().endswith("listeners=1 phase=IMAGEBUILD")
    listen.cancel()
    late = run_ctl(server, "wait", "--workspace", created.workspace_id, "--phase", "running",
                   "--timeout", "100ms")  # fmt: skip
    assert late.returncode == 1 and "error: DEADLINE_EXCEEDED: waited 0.1 s for phase RUNNING" in (
        late.stderr
    )
    dropped = run_ctl(server, "fault", "connection-drop", "--method", "GetWorkspace", "--goaway",
                      "--after-effect")  # fmt: skip
    assert dropped.returncode == 0, dropped.stderr
    listed = run_ctl(server, "faults")
    assert '"connectionDrop": {"method": "/gitpod.v1.WorkspacesService/GetWorkspace"' in (
        listed.stdout
    ), listed.stdout
    assert run_ctl(server, "faults", "clear").stdout.strip() == "cleared 1"
