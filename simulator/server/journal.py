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


_REQUEST_TYPES: dict[str, type[betterproto2.Message]] = {}
"""method -> its request's message type, as first journalled (a fact of the API, the same in
every world): an entry keeps its request's bytes, not the type, and decodes through this."""


# Entries compare and hash by value as frozen dataclasses would, but are not frozen: a frozen
# dataclass's __init__ sets every field through object.__setattr__ (2.2 us for an RpcEntry
# against 0.3 us, and one is made per call). Nothing changes an entry once it is written.
@dataclass(slots=True, unsafe_hash=True)
class RpcEntry:
    """One RPC, as it ended. Six slots (an object of seven costs what one of eight does): most
    entries are never read, and a server keeps up to 100,000 of them, so what can be derived
    when read is not kept."""

    seq: int
    at: SimTime
    method: str
    caller: str
    kept: bytes | str | tuple[str, str] | None
    """The request: encoded (decoded, summarised, through ``_REQUEST_TYPES[method]``, only when
    read); its clipped summary when too large to keep encoded, with its idempotency token when
    it had one (``(summary, token)``); None when the caller was never known."""
    outcome: str | tuple[str, str]
    """The status code it ended with, and the error message when there was one (``(code,
    message)``)."""

    @property
    def code(self) -> str:
        outcome = self.outcome
        return outcome if isinstance(outcome, str) else outcome[0]

    @property
    def message(self) -> str:
        outcome = self.outcome
        return "" if isinstance(outcome, str) else outcome[1]

    @property
    def request(self) -> str:
        kept = self.kept
        if kept is None:
            return "-"
        if isinstance(kept, bytes):
            return summarize(self._decoded(kept))
        return kept if isinstance(kept, str) else kept[0]

    @property
    def idempotency_token(self) -> str:
        """The request's idempotency token (empty when it has none)."""
        kept = self.kept
        if isinstance(kept, bytes):
            return _token_of(self._decoded(kept))
        return kept[1] if isinstance(kept, tuple) else ""

    def _decoded(self, data: bytes) -> betterproto2.Message:
        return _REQUEST_TYPES[self.method].FromString(data)

    @property
    def size(self) -> int:
        kept = self.kept
        if kept is None:
            held = 0
        elif isinstance(kept, tuple):
            held = len(kept[0]) + len(kept[1])
        else:
            held = len(kept)
        return ENTRY_BYTES + held + len(self.message)

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


@dataclass(slots=True, unsafe_hash=True)
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


def _token_of(request: object) -> str:
    """A request's idempotency token as the journal shows it (empty when it has none)."""
    return str(getattr(request, "idempotency_token", ""))[:MESSAGE_LIMIT]


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
        kept: bytes | str | tuple[str, str] | None = None
        if caller != UNKNOWN_CALLER and isinstance(request, betterproto2.Message):
            kind = type(request)
            if _REQUEST_TYPES.get(method) is not kind:
                _REQUEST_TYPES[method] = kind
            data = getattr(request, WIRE_BYTES, None) or bytes(request)
            if len(data) > REQUEST_BYTES_KEPT or (b"@" in data and b"://" in data):
                summary = summarize(request)
                token = _token_of(request)
                kept = (summary, token) if token else summary
            else:
                kept = data
        if len(message) > MESSAGE_LIMIT:
            message = message[: MESSAGE_LIMIT - 1] + "…"
        outcome = (code, message) if message else code
        self._append(RpcEntry(self._next_seq, at, method, caller, kept, outcome))

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
