"""Who is talking to the simulator right now: the input of autojump's rule.

Autojump may move time only while at least one stream waits for news and no call is being
handled (a stream that is busy sending counts as a call being handled); it jumps to a timeout
only after ``grace`` seconds of real time without any message in or out.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class Activity:
    __slots__ = ("_wall", "busy", "calls", "last_io", "on_change", "waiting")

    def __init__(self, wall: Callable[[], float] = time.monotonic) -> None:
        self._wall = wall
        self.busy = 0
        self.calls = 0
        """Calls received since start (tests use it to know a request has arrived)."""
        """Calls being handled, streams included while they are not waiting."""
        self.waiting = 0
        """Streams blocked until the simulator has something to send them."""
        self.last_io = wall()
        self.on_change: Callable[[], None] = lambda: None

    def call_started(self) -> None:
        self.calls += 1
        self.busy += 1
        self.last_io = self._wall()

    # on_change (the clock driver's kick) only when the change may let autojump move: no call
    # busy and a stream waiting. Otherwise the driver, looking again, would find it may not
    # jump and sleep on (a fan-out to 1,000 streams kicked it 1,000 times per step).

    def call_ended(self) -> None:
        self.busy -= 1
        self.last_io = self._wall()
        if not self.busy and self.waiting:
            self.on_change()

    def wait_started(self) -> None:
        self.busy -= 1
        self.waiting += 1
        if not self.busy:
            self.on_change()

    def wait_ended(self) -> None:
        self.waiting -= 1
        self.busy += 1

    def pause(self) -> None:
        """A call being handled is blocked on its client (its request still arriving, or it
        takes none of its messages): it does not hold the clock for everyone meanwhile."""
        self.busy -= 1
        if not self.busy and self.waiting:
            self.on_change()

    def resume(self) -> None:
        self.busy += 1

    def io(self) -> None:
        """A message was received or sent."""
        self.last_io = self._wall()

    @property
    def may_jump(self) -> bool:
        return self.waiting > 0 and self.busy == 0

    def quiet_for(self) -> float:
        """Seconds of real time since the last message in or out."""
        return self._wall() - self.last_io
