"""Idempotency records: what the first call with a caller's token answered, so a retry answers
the same and a different request with a reused token is refused.

Kept per (caller, method, token); never expire (a simulator's lifetime is a test's), but one caller
may hold at most ``limit`` (a call with a new token past it is RESOURCE_EXHAUSTED, before it does
anything). Saved with the engine state, so a retry after an import still answers the first call's
result.
"""

from __future__ import annotations

from typing import Any

from simulator.core.errors import InvalidArgument
from simulator.core.quotas import DEFAULT_IDEMPOTENCY_RECORDS, idempotency_exhausted

Fingerprint = tuple[str, ...]
"""What identifies a request apart from its token (e.g. the context URL, the workspace id)."""


class IdempotencyRecords:
    """(caller id, method, token) -> (request fingerprint, the id the first call answered)."""

    __slots__ = ("_per_user", "_records", "limit")

    def __init__(self, limit: int = DEFAULT_IDEMPOTENCY_RECORDS) -> None:
        self.limit = limit
        """Records one caller may hold (the per-user quota)."""
        self._records: dict[tuple[str, str, str], tuple[Fingerprint, str]] = {}
        self._per_user: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._records)

    def replay(
        self, caller_id: str, method: str, token: str, fingerprint: Fingerprint
    ) -> str | None:
        """The first call's answer for this token, or None when there is none (or no token).

        The same token on a different request of the same method is INVALID_ARGUMENT; a new
        token from a caller at the quota is RESOURCE_EXHAUSTED (the call does nothing)."""
        if not token:
            return None
        seen = self._records.get((caller_id, method, token))
        if seen is None:
            held = self._per_user.get(caller_id, 0)
            if held >= self.limit:
                raise idempotency_exhausted(caller_id, held, self.limit)
            return None
        if seen[0] != fingerprint:
            raise InvalidArgument(
                f"idempotency_token {token!r} was already used for a different {method} request"
            )
        return seen[1]

    def record(
        self, caller_id: str, method: str, token: str, fingerprint: Fingerprint, result: str
    ) -> None:
        """Remember what a call with ``token`` answered (nothing without a token)."""
        if token:
            key = (caller_id, method, token)
            if key not in self._records:
                self._per_user[caller_id] = self._per_user.get(caller_id, 0) + 1
            self._records[key] = (fingerprint, result)

    def save(self) -> list[dict[str, Any]]:
        """JSON-ready records, in the order they were made."""
        return [
            {"key": list(key), "fingerprint": list(fp), "result": result}
            for key, (fp, result) in self._records.items()
        ]

    def restore(self, data: list[dict[str, Any]]) -> None:
        """Replace the records with ``data`` (from :meth:`save`)."""
        records: dict[tuple[str, str, str], tuple[Fingerprint, str]] = {}
        per_user: dict[str, int] = {}
        for record in data:
            user_id, method, token = record["key"]
            key = (str(user_id), str(method), str(token))
            if key not in records:
                per_user[key[0]] = per_user.get(key[0], 0) + 1
            records[key] = (tuple(record["fingerprint"]), str(record["result"]))
        self._records = records
        self._per_user = per_user
