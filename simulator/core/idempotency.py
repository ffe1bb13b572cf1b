"""Idempotency records: what the first call with a caller's token answered, so a retry answers
the same and a different request with a reused token is refused.

Kept per (caller, method, token); never expire (a simulator's lifetime is a test's). Saved with the
engine state, so a retry after an import still answers the first call's result.
"""

from __future__ import annotations

from typing import Any

from simulator.core.errors import InvalidArgument

Fingerprint = tuple[str, ...]
"""What identifies a request apart from its token (e.g. the context URL, the workspace id)."""


class IdempotencyRecords:
    """(caller id, method, token) -> (request fingerprint, the id the first call answered)."""

    __slots__ = ("_records",)

    def __init__(self) -> None:
        self._records: dict[tuple[str, str, str], tuple[Fingerprint, str]] = {}

    def __len__(self) -> int:
        return len(self._records)

    def replay(
        self, caller_id: str, method: str, token: str, fingerprint: Fingerprint
    ) -> str | None:
        """The first call's answer for this token, or None when there is none (or no token).

        The same token on a different request of the same method is INVALID_ARGUMENT."""
        if not token:
            return None
        seen = self._records.get((caller_id, method, token))
        if seen is None:
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
            self._records[(caller_id, method, token)] = (fingerprint, result)

    def save(self) -> list[dict[str, Any]]:
        """JSON-ready records, in the order they were made."""
        return [
            {"key": list(key), "fingerprint": list(fp), "result": result}
            for key, (fp, result) in self._records.items()
        ]

    def restore(self, data: list[dict[str, Any]]) -> None:
        """Replace the records with ``data`` (from :meth:`save`)."""
        records: dict[tuple[str, str, str], tuple[Fingerprint, str]] = {}
        for record in data:
            user_id, method, token = record["key"]
            records[(str(user_id), str(method), str(token))] = (
                tuple(record["fingerprint"]),
                str(record["result"]),
            )
        self._records = records
