"""ListWorkspaces paging: a listing frozen at its first page, so paging never repeats an item.

A page token names a frozen listing (the workspace ids in order, shared by every token of that
listing: ids, never copies of the workspaces) and an offset. Tokens come from their own seeded
stream, so issuing one never shifts an id. Each caller keeps at most ``limit`` tokens of their own
(the per-user quota): past it, *their* least recently used token is forgotten (then it answers
INVALID_ARGUMENT), never another caller's. Tokens are not saved with the state: one issued before
an import is INVALID_ARGUMENT after it; the stream's state is saved.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from simulator.core import ids
from simulator.core.errors import InvalidArgument
from simulator.core.quotas import DEFAULT_PAGE_TOKENS
from simulator.core.seeds import RandomStreams

DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 100


@dataclass(slots=True)
class Cursor:
    """A caller's listing, frozen at its first page."""

    user_id: str
    workspace_ids: tuple[str, ...]


class Cursors:
    """Issued page tokens -> (frozen listing, offset of the next page), kept per caller."""

    __slots__ = ("_by_user", "_cursors", "_streams", "limit")

    def __init__(self, streams: RandomStreams, limit: int = DEFAULT_PAGE_TOKENS) -> None:
        self._streams = streams
        """Tokens come from its ``pages`` stream (saved with the engine state), read at each
        draw: the stream is made on its first use."""
        self.limit = limit
        """Page tokens kept per caller (the per-user quota)."""
        self._cursors: dict[str, tuple[Cursor, int]] = {}
        self._by_user: dict[str, OrderedDict[str, None]] = {}
        """Each caller's tokens, least recently used first."""

    def __len__(self) -> int:
        return len(self._cursors)

    def held_by(self, user_id: str) -> int:
        """How many page tokens ``user_id`` holds."""
        return len(self._by_user.get(user_id, ()))

    def page(
        self, user_id: str, page_size: int, page_token: str, listing: tuple[str, ...] | None
    ) -> tuple[tuple[str, ...], str]:
        """(the ids on this page, the next page's token or ""). ``listing`` is the caller's
        listing now; it is used only for a first page (no token)."""
        if page_size < 0 or page_size > MAX_PAGE_SIZE:
            raise InvalidArgument("invalid pagination page size (must be 0 < x < 100)")
        size = page_size or DEFAULT_PAGE_SIZE
        mine = self._by_user.setdefault(user_id, OrderedDict())
        if page_token:
            entry = self._cursors.get(page_token)
            if entry is None or entry[0].user_id != user_id:
                if not mine:
                    del self._by_user[user_id]
                raise InvalidArgument(
                    "invalid page_token: not issued by this server for this caller, or expired"
                    f" (each caller keeps their {self.limit} most recently used page tokens)"
                )
            cursor, offset = entry
            mine.move_to_end(page_token)
        else:
            assert listing is not None
            cursor, offset = Cursor(user_id, listing), 0
        chosen = cursor.workspace_ids[offset : offset + size]
        next_token = ""
        if offset + size < len(cursor.workspace_ids):
            next_token = ids.page_token(self._streams.pages)
            self._cursors[next_token] = (cursor, offset + size)
            mine[next_token] = None
            while len(mine) > self.limit:
                forgotten, _ = mine.popitem(last=False)
                del self._cursors[forgotten]
        if not mine:
            del self._by_user[user_id]
        return chosen, next_token
