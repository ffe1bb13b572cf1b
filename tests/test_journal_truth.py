"""The journal tells the truth: every call of both services (every method of WorkspacesService and
of the control plane, SimulatorService) is journaled with the status code a grpcio client
received, whatever ended it: an answer, a malformed request, a missing or wrong credential, an
engine error, an injected fault (before or after the call ran), a stream fault, a client cancel, a
passed deadline, a reset under an open stream or under a latency fault. Google's grpcio client
against a ``gitpod-sim serve`` process; methods come from the proto's own descriptors, so a new
method cannot be forgotten. Nothing here imports the simulator's own code."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import grpc
import pytest
from google.protobuf import duration_pb2, message_factory
from server_process import ServerProcess

ADMIN = "adm-truth"
ALICE = "tok-a"
BOB = "tok-b"
REPO = "https://github.com/gitpod-io/truth"
API = "gitpod.v1.WorkspacesService"
CONTROL = "gitpod.simulator.v1.SimulatorService"
T = 10.0
FOLLOW = f"/{CONTROL}/FollowJournal"
"""A follow that ran is not journaled (it would journal itself); a refused one is."""
READS = {f"/{CONTROL}/ReadJournal", f"/{CONTROL}/GetClock", f"/{CONTROL}/WaitFor"}
"""Reads answered OK are not journaled (a reader reading "until empty" must get there); refused
ones are, with the code that was sent."""
RAN = {"OK", "CANCELLED", "DEADLINE_EXCEEDED"}
"""How the follows in this test that got past the boundary ended."""


def journaled(path: str, code: str) -> bool:
    """Whether the call should be in the journal."""
    if path in READS:
        return code != "OK"
    if path == FOLLOW:
        return code not in RAN
    return True


def seconds(n: float) -> duration_pb2.Duration:
    d = duration_pb2.Duration()
    d.FromMicroseconds(round(n * 1e6))
    return d


@dataclass
class Client:
    """Calls any method by name with a grpcio channel; remembers each call's path and the
    status code the client saw."""

    channel: grpc.Channel
    pb: SimpleNamespace
    made: list[tuple[str, str]] = field(default_factory=list)

    def methods(self) -> dict[str, Any]:
        out = {}
        for module, service in ((self.pb.ws, API), (self.pb.sim, CONTROL)):
            desc = module.DESCRIPTOR.services_by_name[service.rsplit(".", 1)[1]]
            for method in desc.methods:
                out[f"/{service}/{method.name}"] = method
        return out

    def path(self, name: str) -> str:
        service = CONTROL if name in {m.name for m in self._control()} else API
        return f"/{service}/{name}"

    def _control(self) -> Any:
        return self.pb.sim.DESCRIPTOR.services_by_name["SimulatorService"].methods

    def request(self, name: str, /, **fields: Any) -> Any:
        method = self.methods()[self.path(name)]
        return message_factory.GetMessageClass(method.input_type)(**fields)

    def _token(self, path: str, token: str | None) -> tuple[tuple[str, str], ...]:
        if token is None:
            token = ADMIN if path.startswith(f"/{CONTROL}/") else ALICE
        return (("authorization", f"Bearer {token}"),) if token else ()

    def unary(
        self, name: str, request: Any = None, /, *, token: str | None = None, timeout: float = T,
        raw: bytes | None = None, **fields: Any,
    ) -> Any:  # fmt: skip
        """Call; answers the reply (parsed) or the ``grpc.RpcError``."""
        path = self.path(name)
        method = self.methods()[path]
        data = raw if raw is not None else (request or self.request(name, **fields))
        call = self.channel.unary_unary(
            path,
            request_serializer=_serialize,
            response_deserializer=message_factory.GetMessageClass(method.output_type).FromString,
        )
        try:
            reply = call(data, metadata=self._token(path, token), timeout=timeout)
        except grpc.RpcError as exc:
            self.made.append((path, exc.code().name))  # type: ignore[attr-defined]
            return exc
        self.made.append((path, "OK"))
        return reply

    def unary_cancelled(self, name: str, after: float, /, **fields: Any) -> None:
        """Start a unary call and cancel it after ``after`` seconds of real time."""
        path = self.path(name)
        call = self.channel.unary_unary(path, request_serializer=_serialize)
        future = call.future(self.request(name, **fields), metadata=self._token(path, None),
                             timeout=T)  # fmt: skip
        time.sleep(after)
        assert future.cancel(), "the call ended before it could be cancelled"
        self.made.append((path, "CANCELLED"))

    def stream(
        self, name: str, /, *, token: str | None = None, timeout: float = T,
        raw: bytes | None = None, take: int | None = None,
        between: Callable[[], Any] | None = None, **fields: Any,
    ) -> list[Any]:  # fmt: skip
        """A server stream: read ``take`` messages then cancel (None: to the end); ``between``
        runs after the first message."""
        path = self.path(name)
        method = self.methods()[path]
        data = raw if raw is not None else self.request(name, **fields)
        call = self.channel.unary_stream(
            path,
            request_serializer=_serialize,
            response_deserializer=message_factory.GetMessageClass(method.output_type).FromString,
        )
        it = call(data, metadata=self._token(path, token), timeout=timeout)
        got: list[Any] = []
        try:
            for message in it:
                got.append(message)
                if len(got) == 1 and between is not None:
                    between()
                if take is not None and len(got) >= take:
                    it.cancel()
                    self.made.append((path, "CANCELLED"))
                    return got
                assert len(got) < 1000, "the stream did not end"
        except grpc.RpcError as exc:
            self.made.append((path, exc.code().name))  # type: ignore[attr-defined]
            return got
        self.made.append((path, "OK"))
        return got

    def fault(self, **spec: Any) -> None:
        """Add a fault aimed at every call (a control call, recorded like any other)."""
        sim = self.pb.sim
        target = sim.FaultTarget(any=True)
        reply = self.unary("AddFault", spec=sim.FaultSpec(target=target, count=1, **spec))
        assert not isinstance(reply, grpc.RpcError), reply


def _serialize(message: Any) -> bytes:
    return message if isinstance(message, bytes) else message.SerializeToString()  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    proc = ServerProcess("--clock", "manual", "--seed", "5", "--admin-token", ADMIN,
                         "--user", f"alice={ALICE}", "--user", f"bob={BOB}")  # fmt: skip
    try:
        yield proc
    finally:
        assert proc.stop() == 0, proc.stderr()
        proc.close()


@pytest.fixture
def client(grpcio_pb: SimpleNamespace, server: ServerProcess) -> Iterator[Client]:
    channel = grpc.insecure_channel(server.address)
    try:
        yield Client(channel, grpcio_pb)
    finally:
        channel.close()


def _every_method_the_plain_ways(c: Client) -> None:
    """Each method: malformed bytes, no token, the other service's token, an empty request."""
    for path, method in c.methods().items():
        name = method.name
        other = ALICE if path.startswith(f"/{CONTROL}/") else ADMIN
        streaming = method.server_streaming
        call = c.stream if streaming else c.unary
        call(name, raw=b"\x0a\xff\xff\xff")  # a length running past the end
        call(name, token="")
        call(name, token=other)
        if name in ("Reset", "FollowJournal", "CreateSession"):
            continue  # below, on purpose
        call(name, timeout=2.0)


def _the_lifecycle(c: Client) -> tuple[str, str]:
    """Every API method answering, and failing the engine's ways."""
    created = c.unary("CreateAndStartWorkspace", context_url=REPO)
    wid = created.workspace_id
    c.unary("CreateAndStartWorkspace", context_url="not a url")
    c.unary("GetWorkspace", workspace_id=wid)
    c.unary("GetWorkspace", workspace_id=wid, token=BOB)
    c.unary("ListWorkspaces")
    c.unary("ListWorkspaces", pagination=c.pb.pagination.Pagination(page_token="bogus"))
    c.unary("GetOwnerToken", workspace_id=wid)
    c.unary("GetOwnerToken", workspace_id=wid, token=BOB)
    iid = c.unary("GetActiveWorkspaceInstance", workspace_id=wid).instance.instance_id
    c.unary("GetActiveWorkspaceInstance", workspace_id="nope")
    c.unary("GetWorkspaceInstanceOwnerToken", instance_id=iid)
    c.unary("GetWorkspaceInstanceOwnerToken", instance_id=iid, token=BOB)
    c.stream("ListenToImageBuildLogs", instance_id=iid, timeout=0.5)
    c.stream("ListenToImageBuildLogs", instance_id=iid, take=1)
    c.stream("ListenToWorkspaceInstance", instance_id=iid, take=1)
    c.stream("ListenToWorkspaceInstance", instance_id=iid, timeout=0.5)
    c.stream("ListenToWorkspaceInstance", instance_id="nope")
    c.unary("Advance", by=seconds(600))
    c.unary("StartWorkspace", workspace_id=wid)
    c.stream("StopWorkspace", workspace_id=wid, between=lambda: c.unary("Advance", by=seconds(60)))
    c.stream("StopWorkspace", workspace_id=wid)
    c.stream("ListenToWorkspaceInstance", instance_id=iid)
    c.stream("ListenToImageBuildLogs", instance_id=iid)
    c.unary("StartWorkspace", workspace_id=wid)
    c.unary("StartWorkspace", workspace_id="nope")
    iid = c.unary("GetActiveWorkspaceInstance", workspace_id=wid).instance.instance_id
    return wid, iid


def _faults(c: Client, wid: str, iid: str) -> None:
    """Injected errors on every API method, an answer lost after the call ran, latency past the
    deadline (simulated and real), a client cancel while a call waits, a stream ended early."""
    sim = c.pb.sim
    arguments = {
        "ListWorkspaces": {},
        "GetWorkspace": {"workspace_id": wid},
        "GetOwnerToken": {"workspace_id": wid},
        "CreateAndStartWorkspace": {"context_url": REPO},
        "StartWorkspace": {"workspace_id": wid},
        "GetActiveWorkspaceInstance": {"workspace_id": wid},
        "GetWorkspaceInstanceOwnerToken": {"instance_id": iid},
        "ListenToWorkspaceInstance": {"instance_id": iid},
        "ListenToImageBuildLogs": {"instance_id": iid},
        "StopWorkspace": {"workspace_id": "nope"},
    }
    for name, fields in arguments.items():
        c.fault(rpc_error=sim.RpcError(method=name, code=14, message="injected"))
        (c.stream if name.startswith(("Listen", "Stop")) else c.unary)(name, **fields)
    c.fault(rpc_error=sim.RpcError(method="CreateAndStartWorkspace", code=4, after_effect=True))
    c.unary("CreateAndStartWorkspace", context_url="https://github.com/gitpod-io/lost")
    c.fault(rpc_error=sim.RpcError(method="GetOwnerToken", code=13, after_effect=True))
    c.unary("GetOwnerToken", workspace_id=wid)
    c.fault(rpc_latency=sim.RpcLatency(method="GetWorkspace", latency=seconds(3600),
                                        simulated=True))  # fmt: skip
    c.unary("GetWorkspace", workspace_id=wid, timeout=0.5)
    c.fault(rpc_latency=sim.RpcLatency(method="ListWorkspaces", latency=seconds(5)))
    c.unary("ListWorkspaces", timeout=0.5)
    c.fault(rpc_latency=sim.RpcLatency(method="GetActiveWorkspaceInstance", latency=seconds(5)))
    c.unary_cancelled("GetActiveWorkspaceInstance", 0.3, workspace_id=wid)
    c.fault(stream_end=sim.StreamEnd(after_messages=1, code=14, message="cut"))
    c.stream("ListenToWorkspaceInstance", instance_id=iid)
    c.unary("ClearFaults")


def _the_control_plane(c: Client, wid: str, iid: str) -> None:
    """Every control method answering, and refusing bad values."""
    sim, ws = c.pb.sim, c.pb.ws
    c.unary("GetClock")
    c.unary("SetClock", mode=sim.CLOCK_MODE_MANUAL)
    c.unary("SetClock", speed=1e308)
    c.unary("Advance", by=seconds(1))
    c.unary("Advance", by=seconds(-1))
    c.unary("Advance", to_next_event=True)
    plan = sim.LifecyclePlan(build_policy=sim.BUILD_POLICY_NEVER)
    scoped = c.unary("SetPlan", scope=sim.PlanScope(user_id="alice"), plan=plan)
    c.unary("SetPlan", scope=sim.PlanScope(context_pattern="(a"), plan=plan)
    c.unary("ListPlans")
    c.unary("DeletePlan", id=scoped.plan.id)
    c.unary("DeletePlan", id=scoped.plan.id)
    c.unary("MarkActive", workspace_id=wid)
    c.unary("MarkActive", workspace_id="nope")
    c.unary("SetAdmission", workspace_id=wid, admission=ws.ADMISSION_LEVEL_EVERYONE)
    c.unary("SetAdmission", workspace_id=wid)
    c.unary("AddPrebuild", prebuild_id="p1", context_url="github.com/a/b")
    c.unary("AddPrebuild", prebuild_id="p2", context_url="github.com/a/b", commit="xyz")
    c.unary("AddFault", spec=sim.FaultSpec(fail_creating=sim.FailCreating()))
    c.unary("AddFault", spec=sim.FaultSpec())
    c.unary("ListFaults")
    c.unary("ClearFaults")
    c.unary("FailInstance", instance_id=iid, reason="disk full")
    c.unary("FailInstance", instance_id="nope", reason="disk full")
    c.unary("ReadJournal", from_seq=1, limit=1)
    c.unary("WaitFor", c.request("WaitFor", instance_id=iid, listeners=5, timeout=seconds(0.2)))
    c.unary("WaitFor", instance_id="nope", listeners=1)
    c.unary("AddUser", user_id="carol", token="tok-c")
    c.unary("AddUser", user_id="dave", token="tok-c")
    exported = c.unary("ExportState").state_json
    c.unary("ImportState", state_json=exported)
    c.unary("ImportState", state_json="{")
    c.unary("ImportState", state_json=json.dumps({**json.loads(exported), "users": 3}))
    c.unary("GetCoverage")
    c.unary("ResetCoverage")
    c.unary("CreateSession", name="truth-1")
    c.unary("CreateSession", name="truth-1")
    c.unary("CreateSession", name="bad name!")
    c.unary("ListSessions")
    c.unary("DeleteSession", name="truth-1")
    c.unary("DeleteSession", name="truth-1")
    c.stream("FollowJournal", take=1, from_seq=1)
    c.stream("FollowJournal", timeout=0.5)


def _resets(c: Client, wid: str) -> None:
    """A reset under an open stream, and under a call waiting on a latency fault."""
    sim = c.pb.sim
    created = c.unary("CreateAndStartWorkspace", context_url="https://github.com/gitpod-io/r")
    iid = c.unary("GetActiveWorkspaceInstance", workspace_id=created.workspace_id)
    iid = iid.instance.instance_id
    c.stream("ListenToWorkspaceInstance", instance_id=iid, between=lambda: c.unary("Reset"))
    c.fault(rpc_latency=sim.RpcLatency(method="ListWorkspaces", latency=seconds(3600),
                                       simulated=True))  # fmt: skip
    path = c.path("ListWorkspaces")
    waiting = c.channel.unary_unary(path, request_serializer=_serialize)
    before = c.unary("GetClock").clock.pending_events
    future = waiting.future(c.request("ListWorkspaces"), metadata=c._token(path, None), timeout=T)
    for _ in range(2000):  # until the call is in: its latency is one more pending event
        if c.unary("GetClock").clock.pending_events > before:
            break
    else:
        pytest.fail("the delayed ListWorkspaces never reached the server")
    c.unary("Reset", drop_users=False)
    with pytest.raises(grpc.RpcError) as info:
        future.result(timeout=T)
    c.made.append((path, info.value.code().name))  # type: ignore[attr-defined]
    assert info.value.code() == grpc.StatusCode.ABORTED  # type: ignore[attr-defined]


def _journal(c: Client, start: int) -> list[Any]:
    """The RPC entries from ``start`` on (the read itself is journaled after it answered, if
    at all: never in its own answer)."""
    reply = c.unary("ReadJournal", from_seq=start, limit=100_000)
    assert not isinstance(reply, grpc.RpcError), reply
    assert len(reply.entries) < 100_000
    return [e.rpc for e in reply.entries if e.WhichOneof("entry") == "rpc"]


def _wait_for_journal(c: Client, start: int, calls: int) -> list[Any]:
    """The journal once it holds ``calls`` entries (a call the client cancelled is journaled
    when the server sees the cancel, a moment later)."""
    deadline = time.monotonic() + T
    while True:
        rpcs = _journal(c, start)
        if len(rpcs) >= calls or time.monotonic() > deadline:
            return rpcs
        time.sleep(0.05)


def test_the_journal_holds_every_call_with_the_code_the_client_got(client: Client) -> None:
    c = client
    c.unary("Reset", drop_users=False)
    c.made.clear()
    start = c.unary("ReadJournal", from_seq=1, limit=100_000).next_seq
    _every_method_the_plain_ways(c)
    wid, iid = _the_lifecycle(c)
    _faults(c, wid, iid)
    _the_control_plane(c, wid, iid)
    _resets(c, wid)

    # Every method of both services was called, and answered in many ways.
    assert {path for path, _ in c.made} == set(c.methods())
    codes = Counter(code for _, code in c.made)
    for code in ("OK", "INVALID_ARGUMENT", "UNAUTHENTICATED", "PERMISSION_DENIED", "NOT_FOUND",
                 "FAILED_PRECONDITION", "UNAVAILABLE", "INTERNAL", "DEADLINE_EXCEEDED",
                 "CANCELLED", "ABORTED", "ALREADY_EXISTS"):  # fmt: skip
        assert codes[code], (code, codes)
    assert "UNKNOWN" not in codes

    expected = [(p, code) for p, code in c.made if journaled(p, code)]
    rpcs = _wait_for_journal(c, start, len(expected))
    got = Counter((r.method, r.code) for r in rpcs)
    sent = Counter(expected)
    assert got == sent, {
        "journaled but not sent": got - sent,
        "sent but not journaled": sent - got,
    }
    # In the order the calls ended (each waited for its answer), cancels aside.
    settled = [(p, code) for p, code in expected if code not in ("CANCELLED", "DEADLINE_EXCEEDED")]
    in_order = [
        (r.method, r.code) for r in rpcs if r.code not in ("CANCELLED", "DEADLINE_EXCEEDED")
    ]
    assert in_order == settled
