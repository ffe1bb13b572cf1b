"""The Connect / gRPC-Web port (``--http-port``) of a real ``gitpod-sim serve`` process.

Driven two ways that share no code with the server: plain HTTP POSTs with the standard library
(what ``curl`` sends), and the Connect project's own Python client (``connectrpc``) over the
Connect protocol (JSON and binary) and gRPC-Web. Binary messages are Google protobuf classes from
a descriptor set that ``grpc_tools.protoc`` builds from ``proto/`` at test time.
"""

from __future__ import annotations

import json
import re
import struct
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, json_format, message_factory
from server_process import ServerProcess

PROTO_DIR = Path(__file__).parent.parent / "proto"
API = "gitpod.v1.WorkspacesService"
TOKEN = "tok-a"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
ORIGIN = "http://app.example"
TIMEOUT = 10.0


@pytest.fixture(scope="module")
def base() -> Iterator[str]:
    server = ServerProcess(
        "--clock", "autojump", "--seed", "5", "--user", f"alice={TOKEN}",
        "--http-port", "0", "--cors-origin", ORIGIN,
    )  # fmt: skip
    try:
        line = server.wait_for(lambda s: s.startswith("connect and grpc-web on "))
        yield line.removeprefix("connect and grpc-web on ").strip()
    finally:
        assert server.stop() == 0, server.stderr()
        server.close()


@pytest.fixture(scope="module")
def pool(tmp_path_factory: pytest.TempPathFactory) -> Any:
    out = tmp_path_factory.mktemp("fds") / "api.binpb"
    protos = sorted(str(p.relative_to(PROTO_DIR)) for p in PROTO_DIR.rglob("*.proto"))
    subprocess.run(
        [sys.executable, "-m", "grpc_tools.protoc", f"-I{PROTO_DIR}",
         f"--descriptor_set_out={out}", "--include_imports", *protos],
        check=True, timeout=60,
    )  # fmt: skip
    pool = descriptor_pool.DescriptorPool()
    for file in descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes()).file:
        pool.Add(file)
    return pool


def _cls(pool: Any, name: str) -> Any:
    return message_factory.GetMessageClass(pool.FindMessageTypeByName(name))


def _post(url: str, body: bytes, content_type: str, headers: dict[str, str] | None = None) -> Any:
    """(status, headers, body) of a POST, errors included."""
    request = urllib.request.Request(
        url, data=body, method="POST", headers={"Content-Type": content_type, **(headers or {})}
    )
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers, exc.read()


def _json(base: str, method: str, payload: dict[str, Any], headers: Any = AUTH) -> Any:
    status, _, body = _post(
        f"{base}/{API}/{method}", json.dumps(payload).encode(), "application/json", headers
    )
    return status, json.loads(body)


def _frames(body: bytes) -> list[tuple[int, bytes]]:
    out, i = [], 0
    while i < len(body):
        flags, length = struct.unpack(">BI", body[i : i + 5])
        out.append((flags, body[i + 5 : i + 5 + length]))
        i += 5 + length
    return out


def _envelope(data: bytes, flags: int = 0) -> bytes:
    return struct.pack(">BI", flags, len(data)) + data


def _create(base: str, repo: str) -> tuple[str, str]:
    status, created = _json(base, "CreateAndStartWorkspace", {"contextUrl": repo})
    assert status == 200, created
    status, active = _json(
        base, "GetActiveWorkspaceInstance", {"workspaceId": created["workspaceId"]}
    )
    assert status == 200, active
    return created["workspaceId"], active["instance"]["instanceId"]


# ------------------------------------------------------------------ Connect unary, curl-style


def test_unary_json_is_canonical_proto3_json(base: str) -> None:
    workspace_id, _ = _create(base, "https://github.com/gitpod-io/gitpod")
    status, got = _json(base, "GetActiveWorkspaceInstance", {"workspaceId": workspace_id})
    assert status == 200
    inst = got["instance"]
    assert inst["status"]["phase"] == "PHASE_IMAGEBUILD"
    assert inst["status"]["admission"] == "ADMISSION_LEVEL_OWNER_ONLY"
    assert isinstance(inst["status"]["statusVersion"], str)  # int64 as a string
    assert inst["createdAt"] == "2022-06-01T00:00:00Z"
    # the canonical FieldMask form is a string of camelCase paths
    status, listed = _json(
        base, "ListWorkspaces", {"fieldMask": "result.workspaceId", "pagination": {"pageSize": 5}}
    )
    assert status == 200, listed
    assert {"result": {"workspaceId": workspace_id}} in listed["result"]


@pytest.mark.parametrize(
    ("method", "payload", "headers", "code", "http"),
    [
        ("GetWorkspace", {"workspaceId": "gitpodio-gitpod-zzzzzzzzzzz"}, AUTH, "not_found", 404),
        ("GetWorkspace", {"workspaceId": "Not A Workspace!"}, AUTH, "invalid_argument", 400),
        ("ListWorkspaces", {}, {}, "unauthenticated", 401),
        ("ListWorkspaces", {}, {"Authorization": "Bearer nobody"}, "unauthenticated", 401),
        ("ListWorkspaces", {"pagination": {"pageSize": 101}}, AUTH, "invalid_argument", 400),
        ("GetActiveWorkspaceInstance", {"workspaceId": 7}, AUTH, "invalid_argument", 400),
        ("NoSuchMethod", {}, AUTH, "unimplemented", 501),
    ],
)
def test_unary_errors_in_connect_json_form(
    base: str, method: str, payload: Any, headers: Any, code: str, http: int
) -> None:
    status, error = _json(base, method, payload, headers)
    assert (status, error["code"]) == (http, code), error
    assert error.get("message") or code == "unimplemented"


def test_failed_precondition(base: str) -> None:
    status, error = _json(base, "StopWorkspace", {"workspaceId": "gitpodio-gitpod-zzzzzzzzzzz"})
    assert status == 501 and error["code"] == "unimplemented"  # a stream, asked as unary
    workspace_id, _ = _create(base, "https://github.com/gitpod-io/empty")
    status, error = _json(base, "GetOwnerToken", {"workspaceId": workspace_id})
    assert status == 200 and len(error["token"]) == 32


def test_unsupported_content_type_is_415(base: str) -> None:
    status, headers, _ = _post(f"{base}/{API}/ListWorkspaces", b"{}", "text/plain", AUTH)
    assert status == 415
    assert "application/json" in headers["Accept-Post"]


def test_unary_binary_proto(base: str, pool: Any) -> None:
    request = _cls(pool, "gitpod.v1.CreateAndStartWorkspaceRequest")(
        context_url="https://github.com/gitpod-io/website"
    )
    status, headers, body = _post(
        f"{base}/{API}/CreateAndStartWorkspace",
        request.SerializeToString(),
        "application/proto",
        AUTH,
    )
    assert status == 200 and headers["Content-Type"] == "application/proto"
    reply = _cls(pool, "gitpod.v1.CreateAndStartWorkspaceResponse").FromString(body)
    assert reply.workspace_id.startswith("gitpodio-website-")


# ------------------------------------------------------------------ Connect server streaming


def _stream(base: str, method: str, payload: dict[str, Any]) -> tuple[list[Any], dict[str, Any]]:
    status, headers, body = _post(
        f"{base}/{API}/{method}",
        _envelope(json.dumps(payload).encode()),
        "application/connect+json",
        AUTH,
    )
    assert status == 200 and headers["Content-Type"] == "application/connect+json"
    frames = _frames(body)
    assert frames[-1][0] == 0x02, "the last frame ends the stream"
    assert all(flags == 0 for flags, _ in frames[:-1])
    return [json.loads(data) for _, data in frames[:-1]], json.loads(frames[-1][1])


def test_stream_lifecycle_json(base: str) -> None:
    _, instance_id = _create(base, "https://github.com/gitpod-io/gitpod-stream")
    # autojump moves time while a stream waits: the build log follows the build to its end
    logs, end = _stream(base, "ListenToImageBuildLogs", {"instanceId": instance_id})
    assert end == {}
    assert logs and all(isinstance(m["line"], str) for m in logs)
    # then on through RUNNING to the inactivity timeout (nobody marks it active) and STOPPED
    statuses, end = _stream(base, "ListenToWorkspaceInstance", {"instanceId": instance_id})
    assert end == {}
    phases = [m["instanceStatus"]["phase"] for m in statuses]
    assert phases[0] == "PHASE_PENDING" and "PHASE_RUNNING" in phases
    assert phases[-1] == "PHASE_STOPPED"
    assert "inactivity" in statuses[-1]["instanceStatus"]["conditions"]["timeout"]


def test_stream_error_is_an_end_stream_message(base: str) -> None:
    messages, end = _stream(
        base, "ListenToWorkspaceInstance", {"instanceId": "00000000-0000-4000-8000-000000000000"}
    )
    assert messages == []
    assert end["error"]["code"] == "not_found"


def test_stop_stream(base: str) -> None:
    workspace_id, _ = _create(base, "https://github.com/gitpod-io/stop-me")
    messages, end = _stream(base, "StopWorkspace", {"workspaceId": workspace_id})
    assert (messages, end) == ([{}, {}], {})
    messages, end = _stream(base, "StopWorkspace", {"workspaceId": workspace_id})
    assert end["error"]["code"] == "failed_precondition"


# ------------------------------------------------------------------ gRPC-Web


def test_grpc_web_unary_and_error(base: str, pool: Any) -> None:
    request = _cls(pool, "gitpod.v1.GetWorkspaceRequest")(
        workspace_id="gitpodio-gitpod-zzzzzzzzzzz"
    )
    status, headers, body = _post(
        f"{base}/{API}/GetWorkspace",
        _envelope(request.SerializeToString()),
        "application/grpc-web+proto",
        {**AUTH, "X-Grpc-Web": "1"},
    )
    assert status == 200 and headers["Content-Type"] == "application/grpc-web+proto"
    (flags, trailer), *_ = _frames(body)
    assert flags == 0x80
    lines = dict(line.split(":", 1) for line in trailer.decode().split("\r\n") if line)
    assert lines["grpc-status"] == "5"
    assert "workspace does not exist" in lines["grpc-message"]


def test_grpc_web_text_stream(base: str, pool: Any) -> None:
    import base64

    workspace_id, _ = _create(base, "https://github.com/gitpod-io/web-text")
    request = _cls(pool, "gitpod.v1.StopWorkspaceRequest")(workspace_id=workspace_id)
    status, _, body = _post(
        f"{base}/{API}/StopWorkspace",
        base64.b64encode(_envelope(request.SerializeToString())),
        "application/grpc-web-text",
        AUTH,
    )
    assert status == 200
    # each frame may be its own padded base64 chunk
    chunks = re.findall(rb"[A-Za-z0-9+/]+={0,2}", body)
    raw = b"".join(base64.b64decode(chunk) for chunk in chunks)
    frames = _frames(raw)
    assert [flags for flags, _ in frames] == [0, 0, 0x80]
    assert b"grpc-status:0" in frames[-1][1]


# ------------------------------------------------------------------ CORS


def test_cors_preflight_and_response_headers(base: str) -> None:
    url = f"{base}/{API}/ListWorkspaces"
    preflight = urllib.request.Request(
        url,
        method="OPTIONS",
        headers={"Origin": ORIGIN, "Access-Control-Request-Method": "POST"},
    )
    with urllib.request.urlopen(preflight, timeout=TIMEOUT) as response:
        assert response.status == 204
        assert response.headers["Access-Control-Allow-Origin"] == ORIGIN
        assert "authorization" in response.headers["Access-Control-Allow-Headers"].lower()
    _, headers, _ = _post(url, b"{}", "application/json", {**AUTH, "Origin": ORIGIN})
    assert headers["Access-Control-Allow-Origin"] == ORIGIN
    _, headers, _ = _post(url, b"{}", "application/json", {**AUTH, "Origin": "http://evil.example"})
    assert "Access-Control-Allow-Origin" not in headers


# ------------------------------------------------------------------ the connectrpc client


class _GoogleCodec:
    """connectrpc's Codec protocol over Google protobuf messages (binary or JSON)."""

    def __init__(self, name: str) -> None:
        self._name = name

    def name(self) -> str:
        return self._name

    def encode(self, message: Any) -> bytes:
        if self._name == "json":
            return json_format.MessageToJson(message).encode()  # type: ignore[no-any-return]
        return message.SerializeToString()  # type: ignore[no-any-return]

    def decode(self, data: bytes | bytearray, message_class: type[Any]) -> Any:
        if self._name == "json":
            return json_format.Parse(bytes(data), message_class())
        return message_class.FromString(bytes(data))


@pytest.mark.parametrize(
    ("protocol", "codec"), [("CONNECT", "json"), ("CONNECT", "proto"), ("GRPC_WEB", "proto")]
)
def test_connectrpc_client(base: str, pool: Any, protocol: str, codec: str) -> None:
    from connectrpc.client import ConnectClientSync
    from connectrpc.code import Code
    from connectrpc.errors import ConnectError
    from connectrpc.method import IdempotencyLevel, MethodInfo, StreamType
    from connectrpc.protocol import ProtocolType

    def info(name: str, streaming: bool = False) -> Any:
        desc = pool.FindServiceByName(API).FindMethodByName(name)
        return MethodInfo(
            name=name,
            service_name=API,
            input=message_factory.GetMessageClass(desc.input_type),
            output=message_factory.GetMessageClass(desc.output_type),
            idempotency_level=IdempotencyLevel.UNKNOWN,
            stream_type=StreamType.SERVER_STREAM if streaming else StreamType.UNARY,
        )

    create, active = info("CreateAndStartWorkspace"), info("GetActiveWorkspaceInstance")
    listen, get = info("ListenToWorkspaceInstance", True), info("GetWorkspace")
    with ConnectClientSync(
        base, codec=_GoogleCodec(codec), protocol=ProtocolType[protocol], timeout_ms=10_000
    ) as client:
        created = client.execute_unary(
            request=create.input(context_url=f"https://github.com/gitpod-io/{protocol}-{codec}"),
            method=create,
            headers=AUTH,
        )
        instance = client.execute_unary(
            request=active.input(workspace_id=created.workspace_id), method=active, headers=AUTH
        ).instance
        phases = [
            m.instance_status.phase
            for m in client.execute_server_stream(
                request=listen.input(instance_id=instance.instance_id), method=listen, headers=AUTH
            )
        ]
        assert phases[0] == instance.status.phase
        assert phases[-1] == 8  # PHASE_STOPPED: autojump runs on to the inactivity timeout
        with pytest.raises(ConnectError) as excinfo:
            client.execute_unary(
                request=get.input(workspace_id="gitpodio-gitpod-zzzzzzzzzzz"),
                method=get,
                headers=AUTH,
            )
        assert excinfo.value.code == Code.NOT_FOUND
