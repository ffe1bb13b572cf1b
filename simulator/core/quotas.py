"""Per-user quotas: what one caller may make the server keep, so no user can exhaust it for others.

Each quota counts one user's own things in one world (a session), never anyone else's. Reaching
the workspace or idempotency quota is RESOURCE_EXHAUSTED with a message naming the limit and the
``serve`` flag that sets it; page tokens past the quota forget the caller's own least recently
used one (a token is a convenience, and a client that abandons listings must not lock itself
out). An import may bring more than a quota allows: quotas refuse only new things.
"""

from __future__ import annotations

from dataclasses import dataclass

from simulator.core.errors import ResourceExhausted

DEFAULT_WORKSPACES = 10_000
DEFAULT_PAGE_TOKENS = 256
DEFAULT_IDEMPOTENCY_RECORDS = 10_000


@dataclass(frozen=True, slots=True)
class Quotas:
    workspaces: int = DEFAULT_WORKSPACES
    """Workspaces one user may have (``serve --max-workspaces-per-user``)."""
    page_tokens: int = DEFAULT_PAGE_TOKENS
    """ListWorkspaces page tokens kept per user; past it the user's least recently used one is
    forgotten (``serve --max-page-tokens-per-user``)."""
    idempotency_records: int = DEFAULT_IDEMPOTENCY_RECORDS
    """Idempotency records one user may hold (``serve --max-idempotency-records-per-user``)."""

    def __post_init__(self) -> None:
        for name in ("workspaces", "page_tokens", "idempotency_records"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"quota {name} must be an integer >= 1, got {value!r}")

    def check_workspaces(self, user_id: str, count: int) -> None:
        """RESOURCE_EXHAUSTED when ``user_id`` already has as many workspaces as allowed."""
        if count >= self.workspaces:
            raise ResourceExhausted(
                f"workspace quota reached: user {user_id!r} has {count} workspaces, the most one"
                f" user may have (serve --max-workspaces-per-user {self.workspaces})"
            )


def idempotency_exhausted(user_id: str, count: int, limit: int) -> ResourceExhausted:
    return ResourceExhausted(
        f"idempotency quota reached: user {user_id!r} holds {count} idempotency records, the most"
        f" one user may hold (serve --max-idempotency-records-per-user {limit});"
        " a call without idempotency_token is still served"
    )
