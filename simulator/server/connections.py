"""Client connections of both ports: a cap on how many are open, and an idle timeout.

Why: without them, idle sockets opened up to the file-descriptor limit locked every new client
out. A connection is idle while it has no stream (gRPC) or request (HTTP) in progress; after
``idle_timeout`` seconds of real time like that it is closed (a gRPC client reconnects on its
next call). At the cap, a new connection closes the connection idle the longest instead of
being refused, so idle sockets can never keep a working client out.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

from simulator.server.limits import Limits


class Guarded(Protocol):
    """What the guard needs of a connection (an HTTP/2 protocol or an HTTP/1.1 handler)."""

    def close_idle(self, reason: str) -> None:
        """Close the connection politely (HTTP/2: GOAWAY first)."""


class ConnectionGuard:
    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self._open: dict[Guarded, int] = {}
        """Open connections -> streams or requests in progress."""
        self._idle: dict[Guarded, asyncio.TimerHandle | None] = {}
        """Idle connections, longest idle first, with their idle-timeout timer."""
        self.refused = 0
        self.closed_idle = 0

    def __len__(self) -> int:
        return len(self._open)

    def admit(self, conn: Guarded) -> bool:
        """A new connection: False when it must be closed at once (at the cap, none idle)."""
        if len(self._open) >= self.limits.max_connections:
            if not self._idle:
                self.refused += 1
                return False
            oldest = next(iter(self._idle))
            self._close(oldest, "too many connections: closing the one idle the longest")
        self._open[conn] = 0
        self._set_idle(conn)
        return True

    def stream_started(self, conn: Guarded) -> None:
        if conn not in self._open:
            return
        self._open[conn] += 1
        timer = self._idle.pop(conn, None)
        if timer is not None:
            timer.cancel()

    def stream_ended(self, conn: Guarded) -> None:
        count = self._open.get(conn)
        if count is None:
            return
        self._open[conn] = count = max(0, count - 1)
        if count == 0:
            self._set_idle(conn)

    def release(self, conn: Guarded) -> None:
        """The connection is gone."""
        self._open.pop(conn, None)
        timer = self._idle.pop(conn, None)
        if timer is not None:
            timer.cancel()

    def _set_idle(self, conn: Guarded) -> None:
        timeout = self.limits.idle_timeout
        timer = None
        if timeout > 0:
            loop = asyncio.get_running_loop()
            reason = f"idle for {timeout:g} s with no stream in progress"
            timer = loop.call_later(timeout, self._close, conn, reason)
        self._idle[conn] = timer

    def _close(self, conn: Guarded, reason: str) -> None:
        self.closed_idle += 1
        self.release(conn)
        conn.close_idle(reason)
