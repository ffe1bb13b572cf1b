"""ListWorkspaces paging: a listing frozen at its first page, so paging never repeats an item.

A page token names a frozen listing and an offset. Tokens come from their own seeded stream, so
issuing one never shifts an id. At most :data:`MAX_CURSORS` tokens are kept; the oldest used is
forgotten first (then it answers INVALID_ARGUMENT). Tokens are not saved with the state: one issued
before an import is INVALID_ARGUMENT after it; the stream's state is saved.
"""

from __future__ import annotations

import random
from collections import OrderedDict
from dataclasses import dataclass

from simulator.core import ids
from simulator.core.errors import InvalidArgument

DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 100
MAX_CURSORS = 4096
"""Page tokens kept at once; the oldest is forgotten first (then answers INVALID_ARGUMENT)."""


@dataclass(slots=True)
class Cursor:
    """A caller's listing, frozen at its first page."""

    user_id: str
    workspace_ids: tuple[str, ...]


class Cursors:
    """Issued page tokens -> (frozen listing, offset of the next page)."""

    __slots__ = ("_cursors", "limit", "rng")

    def __init__(self, rng: random.Random, limit: int = MAX_CURSORS) -> None:
        self.rng = rng
        """The seeded stream tokens come from (saved with the engine state)."""
        self.limit = limit
        self._cursors: OrderedDict[str, tuple[Cursor, int]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._cursors)

    def page(
        self, user_id: str, page_size: int, page_token: str, listing: tuple[str, ...] | None
    ) -> tuple[tuple[str, ...], str]:
        """(the ids on this page, the next page's token or ""). ``listing`` is the caller's
        listing now; it is used only for a first page (no token)."""
        if page_size < 0 or page_size > MAX_PAGE_SIZE:
            raise InvalidArgument("invalid pagination page size (must be 0 < x < 100)")
        size = page_size or DEFAULT_PAGE_SIZE
        if page_token:
            entry = self._cursors.get(page_token)
            if entry is None or entry[0].user_id != user_id:
                raise InvalidArgument(
                    "invalid page_token: not issued by this server for this caller (or expired)"
                )
            cursor, offset = entry
            self._cursors.move_to_end(page_token)
        else:
            assert listing is not None
            cursor, offset = Cursor(user_id, listing), 0
        chosen = cursor.workspace_ids[offset : offset + size]
        next_token = ""
        if offset + size < len(cursor.workspace_ids):
            next_token = ids.page_token(self.rng)
            self._cursors[next_token] = (cursor, offset + size)
            while len(self._cursors) > self.limit:
                self._cursors.popitem(last=False)
        return chosen, next_token
