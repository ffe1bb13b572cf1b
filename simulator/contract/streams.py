"""The server streams the contract suite keeps open between steps.

Streams outlive the rule that opened them (a listener follows an instance for many steps), so they
live apart from the rules: each is a task on the machine's event loop that collects what arrives,
and the post-step checks (:mod:`simulator.contract.checks`) judge what it collected.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, cast

from grpclib.const import Status
from grpclib.exceptions import GRPCError, StreamTerminatedError

from simulator._proto.gitpod import v1 as pb
from simulator.contract.model import Causality

STREAM_LIMIT = 500
"""A stream that sends more than this is cut off (the checks then see a runaway stream)."""


@dataclass(eq=False)
class StreamRecord:
    """A server stream the machine opened; its task collects messages between steps."""

    kind: str
    """``listen``, ``logs`` or ``stop``."""
    user: str
    instance_id: str
    workspace_id: str
    expect_code: Status | None = None
    expected_first: pb.WorkspaceInstanceStatus | None = None
    expected_messages: int | None = None
    allowed: frozenset[Status] = frozenset()
    """Codes the stream may also end with at once (what a moving clock makes possible)."""
    messages: list[Any] = field(default_factory=list)
    received: list[int] = field(default_factory=list)
    """The client's counter when each message was taken (see :class:`Causality`)."""
    opened: int = 0
    """The client's counter just before the request was sent."""
    error: GRPCError | None = None
    terminated: str = ""
    """Set when the HTTP/2 stream was reset or the connection lost without a gRPC status."""
    done: bool = False
    checked: int = 0
    """How many of ``messages`` the post-step checks have judged (each is judged once)."""
    task: asyncio.Task[None] | None = None

    def label(self) -> str:
        return f"{self.kind} stream of {self.user} on {self.instance_id or self.workspace_id}"


class Streams:
    """Every stream an example opened and has not yet judged finished."""

    def __init__(self, causality: Causality) -> None:
        self.records: list[StreamRecord] = []
        self.causality = causality
        self.tasks: list[asyncio.Task[None]] = []
        """Every stream task opened, judged or not: :meth:`close` ends them all."""

    def __iter__(self) -> Any:
        return iter(list(self.records))

    def remove(self, record: StreamRecord) -> None:
        self.records.remove(record)

    def open(
        self,
        record: StreamRecord,
        stream: AsyncIterator[Any],
        keep: Callable[[Any], Any],
        heard: Callable[[Any, int], None] | None = None,
    ) -> None:
        """Collect ``keep(message)`` of every message of ``stream`` into ``record``, with the
        counter at its receipt; ``heard(kept, received)`` is told of each one as it comes."""
        tick = self.causality.tick
        record.opened = tick()

        async def consume() -> None:
            try:
                async with contextlib.aclosing(cast(AsyncGenerator[Any, None], stream)) as it:
                    async for message in it:
                        kept = keep(message)
                        received = tick()
                        record.messages.append(kept)
                        record.received.append(received)
                        if heard is not None:
                            heard(kept, received)
                        if len(record.messages) > STREAM_LIMIT:
                            return
            except GRPCError as exc:
                record.error = exc
            except (StreamTerminatedError, ConnectionError) as exc:
                record.terminated = f"{type(exc).__name__}: {exc}"
            finally:
                record.done = True

        record.task = asyncio.get_running_loop().create_task(consume())
        self.tasks.append(record.task)
        self.records.append(record)

    async def close(self) -> None:
        """Cancel every stream still running and wait for their tasks."""
        tasks, self.tasks = self.tasks, []
        for task in tasks:
            if not task.done():
                task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
