"""A small Gitpod workspaces client with retries and reconnects (blocking grpcio).

What a client of Gitpod's public API has to get right, in about 150 lines:

- every call that changes something carries an idempotency token, made once per operation and
  sent again on each retry, so a retry after a lost answer replays the first answer instead of
  doing the work twice;
- UNAVAILABLE (a dropped connection, an overloaded server) is retried with a short backoff on a
  fresh channel: the old connection may be half dead;
- a ListenToWorkspaceInstance stream that breaks is opened again (the first message of a new
  stream is the current status, so nothing is missed that matters).

Messages come from a FileDescriptorSet (``gitpod-sim descriptors FILE`` writes one; so does
``buf build -o FILE``), so the client needs no generated code: only ``grpcio`` and ``protobuf``.

    python gitpod_tool.py --address 127.0.0.1:50051 --token T --descriptors api.binpb start URL
"""

from __future__ import annotations

import argparse
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

SERVICE = "gitpod.v1.WorkspacesService"
RETRIED = frozenset({grpc.StatusCode.UNAVAILABLE})
RUNNING = 5  # gitpod.v1.WorkspaceInstanceStatus.PHASE_RUNNING
STOPPED = 8  # PHASE_STOPPED


def load_messages(descriptor_set: Path) -> dict[str, Any]:
    """Message classes by full name, from a serialized FileDescriptorSet."""
    files = descriptor_pb2.FileDescriptorSet.FromString(descriptor_set.read_bytes()).file
    pool = descriptor_pool.DescriptorPool()
    for file in files:
        pool.Add(file)
    return message_factory.GetMessages(list(files), pool=pool)


class GitpodError(Exception):
    """A call failed for good (not retried, or out of retries)."""

    def __init__(self, method: str, error: grpc.RpcError) -> None:
        self.code = error.code()
        super().__init__(f"{method}: {self.code.name}: {error.details()}")


class Client:
    def __init__(
        self,
        address: str,
        token: str,
        descriptors: Path,
        *,
        retries: int = 4,
        backoff: float = 0.05,
        timeout: float = 10.0,
    ) -> None:
        self.address = address
        self.metadata = (("authorization", f"Bearer {token}"),)
        self.messages = load_messages(descriptors)
        self.retries = retries
        self.backoff = backoff
        self.timeout = timeout
        self.reconnects = 0
        self._channel = self._connect()

    def _connect(self) -> grpc.Channel:
        # A pool of its own: grpcio channels to one address share a connection otherwise, and
        # a reconnect has to get a new one.
        return grpc.insecure_channel(self.address, options=[("grpc.use_local_subchannel_pool", 1)])

    def reconnect(self) -> None:
        self._channel.close()
        self._channel = self._connect()
        self.reconnects += 1

    def close(self) -> None:
        self._channel.close()

    def _message(self, name: str, **fields: Any) -> Any:
        return self.messages[f"gitpod.v1.{name}"](**fields)

    def _method(self, name: str, streaming: bool) -> Callable[..., Any]:
        make = self._channel.unary_stream if streaming else self._channel.unary_unary
        return make(
            f"/{SERVICE}/{name}",
            request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=self.messages[f"gitpod.v1.{name}Response"].FromString,
        )

    def _retrying(self, name: str, request: Any, streaming: bool = False) -> Any:
        """The call, retried on UNAVAILABLE on a fresh channel (a stream is read to its end)."""
        for attempt in range(self.retries + 1):
            try:
                call = self._method(name, streaming)
                answer = call(request, metadata=self.metadata, timeout=self.timeout)
                return list(answer) if streaming else answer
            except grpc.RpcError as exc:
                if exc.code() not in RETRIED or attempt == self.retries:
                    raise GitpodError(name, exc) from None
                time.sleep(self.backoff * 2**attempt)
                self.reconnect()
        raise AssertionError("unreachable")

    # ------------------------------------------------------------------ commands

    def start(self, context_url: str) -> str:
        """Create and start a workspace; answers its id (once, however often it is retried)."""
        request = self._message(
            "CreateAndStartWorkspaceRequest",
            context_url=context_url,
            idempotency_token=uuid.uuid4().hex,
        )
        return str(self._retrying("CreateAndStartWorkspace", request).workspace_id)

    def stop(self, workspace_id: str) -> None:
        """Stop a workspace and wait until it is STOPPED."""
        request = self._message(
            "StopWorkspaceRequest", workspace_id=workspace_id, idempotency_token=uuid.uuid4().hex
        )
        self._retrying("StopWorkspace", request, streaming=True)

    def ls(self) -> list[str]:
        """Every workspace id, page by page."""
        ids: list[str] = []
        token = ""
        while True:
            pagination = self._message("Pagination", page_size=2, page_token=token)
            request = self._message("ListWorkspacesRequest", pagination=pagination)
            page = self._retrying("ListWorkspaces", request)
            ids += [item.result.workspace_id for item in page.result]
            token = page.next_page_token
            if not token:
                return ids

    def instance_id(self, workspace_id: str) -> str:
        request = self._message("GetActiveWorkspaceInstanceRequest", workspace_id=workspace_id)
        return str(self._retrying("GetActiveWorkspaceInstance", request).instance.instance_id)

    def phases(self, instance_id: str) -> Iterator[int]:
        """The instance's phases as they change, reconnecting when the stream breaks."""
        request = self._message("ListenToWorkspaceInstanceRequest", instance_id=instance_id)
        failures = 0
        while True:
            try:
                listen = self._method("ListenToWorkspaceInstance", streaming=True)
                for message in listen(request, metadata=self.metadata, timeout=self.timeout):
                    failures = 0
                    yield message.instance_status.phase
                return
            except grpc.RpcError as exc:
                failures += 1
                if exc.code() not in RETRIED or failures > self.retries:
                    raise GitpodError("ListenToWorkspaceInstance", exc) from None
                time.sleep(self.backoff)
                self.reconnect()

    def wait_running(self, workspace_id: str) -> None:
        """Until the workspace's instance is RUNNING (a failed start raises)."""
        for phase in self.phases(self.instance_id(workspace_id)):
            if phase == RUNNING:
                return  # leaving the loop closes the stream
            if phase == STOPPED:
                raise RuntimeError(f"workspace {workspace_id} stopped before it ran")
        raise RuntimeError(f"the stream of workspace {workspace_id} ended before RUNNING")


def main() -> None:
    parser = argparse.ArgumentParser(description="start, stop or list Gitpod workspaces")
    parser.add_argument("--address", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--descriptors", type=Path, required=True)
    sub = parser.add_subparsers(dest="command", required=True)
    start = sub.add_parser("start")
    start.add_argument("context_url")
    stop = sub.add_parser("stop")
    stop.add_argument("workspace_id")
    sub.add_parser("ls")
    args = parser.parse_args()
    client = Client(args.address, args.token, args.descriptors)
    try:
        if args.command == "start":
            workspace_id = client.start(args.context_url)
            client.wait_running(workspace_id)
            print(workspace_id)
        elif args.command == "stop":
            client.stop(args.workspace_id)
        else:
            print("\n".join(client.ls()))
    finally:
        client.close()


if __name__ == "__main__":
    main()
