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
        self._idle: dict[Guarded, float] = {}
        """Idle connections, longest idle first, with the loop time they became idle at."""
        self._timers: dict[Guarded, asyncio.TimerHandle] = {}
        """One idle-timeout timer per connection, armed when it became idle. A stream does not
        cancel it (a timer made and cancelled per call was a tenth of a sequential call's
        cost here): when it fires it looks whether the connection is still idle, and for how
        long, and closes it, waits for the rest, or lets it go (the next idle period arms one)."""
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
        count = self._open.get(conn)
        if count is None:
            return
        self._open[conn] = count + 1
        if not count:
            self._idle.pop(conn, None)

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
        self._idle.pop(conn, None)
        timer = self._timers.pop(conn, None)
        if timer is not None:
            timer.cancel()

    def _set_idle(self, conn: Guarded) -> None:
        loop = asyncio.get_running_loop()
        self._idle[conn] = loop.time()
        timeout = self.limits.idle_timeout
        if timeout > 0 and conn not in self._timers:
            self._timers[conn] = loop.call_later(timeout, self._check_idle, conn)

    def _check_idle(self, conn: Guarded) -> None:
        del self._timers[conn]
        since = self._idle.get(conn)
        if since is None:
            return  # busy: its next idle period arms the timer again
        timeout = self.limits.idle_timeout
        loop = asyncio.get_running_loop()
        remaining = since + timeout - loop.time()
        if remaining > 0:
            self._timers[conn] = loop.call_later(remaining, self._check_idle, conn)
        else:
            self._close(conn, f"idle for {timeout:g} s with no stream in progress")

    def _close(self, conn: Guarded, reason: str) -> None:
        self.closed_idle += 1
        self.release(conn)
        conn.close_idle(reason)
