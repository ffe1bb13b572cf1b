"""The journal: every RPC and every transition, stamped with simulated time, in order.

Bounded in entries and in bytes (the oldest entries go first) so a long-running server keeps
flat memory whatever its callers send; sequence numbers keep counting, so a reader can tell what
it missed (a clear empties it and keeps counting too). An RPC is journaled when it ends, with the
status code it ended with, its caller and its idempotency token. Reads of the journal and the
clock are not journaled (see ``boundary.CONTROL_READ``), so reading until empty ends. A call refused
before its caller was known (no or a wrong token, an oversized message) keeps a short line and
nothing of its request; a large request is kept as its clipped summary, not its bytes.
"""

from __future__ import annotations

import asyncio
import json
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from simulator.core.context_urls import strip_credentials
from simulator.core.model import StatusChange
from simulator.core.simtime import SimTime, format_instant
from simulator.server.broadcast import Closed
from simulator.server.codec import WIRE_BYTES
from simulator.server.deferred import deferred_module

if TYPE_CHECKING:
    import betterproto2
else:  # loaded with the first request (start-up time: see deferred.py)
    betterproto2 = deferred_module("betterproto2")

DEFAULT_MAX_ENTRIES = 100_000
DEFAULT_MAX_BYTES = 32 * 1024 * 1024
REQUEST_SUMMARY_LIMIT = 200
MESSAGE_LIMIT = 300
REQUEST_BYTES_KEPT = 512
"""A request up to this size is kept encoded (summarised when read); a larger one at once
as its clipped summary, so one entry never holds more than a few hundred bytes of it."""
ENTRY_BYTES = 220
"""What an entry costs besides its texts (measured: benchmarks/bench_misc.py)."""
UNKNOWN_CALLER = "-"


@dataclass(frozen=True, slots=True)
class RpcEntry:
    seq: int
    at: SimTime
    method: str
    caller: str
    request_type: type[betterproto2.Message] | None
    request_bytes: bytes
    """The request, encoded: a third of the memory of the message object, and summarised only
    when read (most entries never are)."""
    code: str
    message: str
    summary: str = ""
    """The clipped summary, for a request too large to keep encoded."""
    idempotency_token: str = ""
    """The request's idempotency token (empty when it has none)."""

    @property
    def request(self) -> str:
        if self.summary:
            return self.summary
        if self.request_type is None:
            return "-"
        return summarize(self.request_type.FromString(self.request_bytes))

    @property
    def size(self) -> int:
        return (
            ENTRY_BYTES
            + len(self.request_bytes)
            + len(self.summary)
            + len(self.message)
            + len(self.idempotency_token)
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "at": format_instant(self.at),
            "type": "rpc",
            "method": self.method,
            "caller": self.caller,
            "idempotency_token": self.idempotency_token,
            "request": self.request,
            "code": self.code,
            "message": self.message,
        }


@dataclass(frozen=True, slots=True)
class TransitionEntry:
    seq: int
    at: SimTime
    change: StatusChange
    size = ENTRY_BYTES

    def to_dict(self) -> dict[str, Any]:
        change = self.change
        return {
            "seq": self.seq,
            "at": format_instant(self.at),
            "type": "transition",
            "instance_id": change.instance_id,
            "workspace_id": change.workspace_id,
            "owner_id": change.owner_id,
            "from": change.previous.phase.name if change.previous is not None else None,
            "to": change.status.phase.name,
            "status_version": change.status.version,
            "cause": change.cause,
        }


Entry = RpcEntry | TransitionEntry


def summarize(request: object) -> str:
    """A request in short, for the journal (the message's repr without credentials, cut)."""
    text = strip_credentials(repr(request))
    if len(text) > REQUEST_SUMMARY_LIMIT:
        text = text[: REQUEST_SUMMARY_LIMIT - 1] + "…"
    return text


class Journal:
    def __init__(
        self, max_entries: int = DEFAULT_MAX_ENTRIES, max_bytes: int = DEFAULT_MAX_BYTES
    ) -> None:
        if max_entries < 1:
            raise ValueError("the journal must keep at least one entry")
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.bytes = 0
        """What the kept entries cost, about (``RpcEntry.size``)."""
        self._entries: deque[Entry] = deque()
        self._next_seq = 1
        self._new: asyncio.Event | None = None
        self._closed: Closed | None = None

    @property
    def next_seq(self) -> int:
        return self._next_seq

    @property
    def last_seq(self) -> int:
        """The newest sequence number written so far (0: none yet), even when cleared."""
        return self._next_seq - 1

    @property
    def first_seq(self) -> int:
        """The oldest sequence number still kept (``next_seq`` when empty)."""
        return self._entries[0].seq if self._entries else self._next_seq

    def __len__(self) -> int:
        return len(self._entries)

    def record_rpc(
        self, at: SimTime, method: str, caller: str, request: object, code: str, message: str = ""
    ) -> None:
        kind: type[betterproto2.Message] | None = None
        data, summary, token = b"", "", ""
        if caller != UNKNOWN_CALLER and isinstance(request, betterproto2.Message):
            token = str(getattr(request, "idempotency_token", ""))[:MESSAGE_LIMIT]
            kind = type(request)
            data = getattr(request, WIRE_BYTES, None) or bytes(request)
            if len(data) > REQUEST_BYTES_KEPT or (b"@" in data and b"://" in data):
                data, summary = b"", summarize(request)
        if len(message) > MESSAGE_LIMIT:
            message = message[: MESSAGE_LIMIT - 1] + "…"
        self._append(
            RpcEntry(self._next_seq, at, method, caller, kind, data, code, message, summary, token)
        )

    def record_transition(self, change: StatusChange) -> None:
        self._append(TransitionEntry(self._next_seq, change.at, change))

    def _append(self, entry: Entry) -> None:
        entries = self._entries
        entries.append(entry)
        self.bytes += entry.size
        while len(entries) > self.max_entries or (self.bytes > self.max_bytes and len(entries) > 1):
            self.bytes -= entries.popleft().size
        self._next_seq += 1
        if self._new is not None:
            self._new.set()
            self._new = None

    def clear(self) -> None:
        """Forget every entry; sequence numbers go on from where they were."""
        self._entries.clear()
        self.bytes = 0

    def read(self, from_seq: int = 0, limit: int = 1000) -> list[Entry]:
        """Entries with ``seq >= from_seq``, oldest first, at most ``limit``."""
        if not self._entries:
            return []
        start = max(from_seq, self.first_seq) - self.first_seq
        out: list[Entry] = []
        for i in range(start, min(start + limit, len(self._entries))):
            out.append(self._entries[i])
        return out

    def __iter__(self) -> Iterator[Entry]:
        return iter(list(self._entries))

    @property
    def followed(self) -> bool:
        """Someone waits in :meth:`wait_for_more` (tests use it to know a follower is in)."""
        return self._new is not None

    async def wait_for_more(self) -> None:
        """Return once an entry has been added after this call started (raises
        :class:`~simulator.server.broadcast.Closed` once the journal is closed)."""
        if self._closed is not None:
            raise self._closed
        if self._new is None:
            self._new = asyncio.Event()
        await self._new.wait()
        if self._closed is not None:
            raise self._closed

    def close(self, reason: str, code: str = "UNAVAILABLE") -> None:
        """End every follower with ``code`` (a deleted session's journal)."""
        self._closed = Closed(reason, code)
        if self._new is not None:
            self._new.set()
            self._new = None

    def to_jsonl(self) -> str:
        """Every kept entry as JSON Lines."""
        return "".join(json.dumps(e.to_dict(), ensure_ascii=False) + "\n" for e in self._entries)
