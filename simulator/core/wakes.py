"""Runtime timers: the host asks the engine to wake it at a simulated instant (e.g. when a
simulated RPC latency is over); each is a WAKE event on the engine's scheduler, named by a key.

Wakes belong to calls in flight, so they are not saved with the state; only the key counter is.
"""

from __future__ import annotations

from simulator.core.scheduler import EventKind, ScheduledEvent, Scheduler
from simulator.core.simtime import SimTime


class Wakes:
    """Pending wake timers by key."""

    __slots__ = ("_pending", "_scheduler", "seq")

    def __init__(self, scheduler: Scheduler) -> None:
        self._scheduler = scheduler
        self._pending: dict[str, ScheduledEvent] = {}
        self.seq = 0
        """How many wakes were ever scheduled (keys are ``wake-<seq>``)."""

    def schedule(self, at: SimTime) -> str:
        """A WAKE event at ``at``; answers its key."""
        self.seq += 1
        key = f"wake-{self.seq}"
        self._pending[key] = self._scheduler.schedule(at, EventKind.WAKE, key)
        return key

    def cancel(self, key: str) -> None:
        """Forget a wake (an unknown or already fired key is a no-op)."""
        self._scheduler.cancel(self._pending.pop(key, None))

    def fired(self, key: str) -> None:
        self._pending.pop(key, None)
