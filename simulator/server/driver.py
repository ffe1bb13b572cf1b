"""The task that moves simulated time on its own in ``realtime`` and ``autojump`` modes.

In ``manual`` mode it sleeps until the mode changes. It never waits on real time to make a phase
pass except where the mode says so: realtime sleeps until the wall clock reaches the next event;
autojump sleeps only for the grace period before a timeout (and, before a timeout, until no
stream that is behind is still writing: ``activity.py`` states the rule). Steps that follow one
another are taken in one turn of the event loop, for at most ``BURST_SECONDS`` of real time: the
streams the first one woke hold nothing, and later send what piled up, in order, at once.
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING

from simulator.core.limits import LATEST_INSTANT
from simulator.server.clock import ClockMode
from simulator.server.deferred import deferred_module
from simulator.server.world import World

if TYPE_CHECKING:
    import anyio
    import anyio.lowlevel
else:  # loaded when the task first runs: a manual-clock world never runs it (deferred.py)
    anyio = deferred_module("anyio")


BURST_SECONDS = 0.05
"""How long autojump may go on taking steps in one turn of the event loop (see ``run``): a call
arriving meanwhile waits that long at most, and one jump more, to be seen. Fan-out to 1,000
instances (a step of theirs is about 7 ms of engine and hub work) needs about 30 ms to take all
four steps from a start to RUNNING in one turn; 20 ms took two or three."""


class ClockDriver:
    """Moves one world's clock; holds the world (a stable object), never its engine."""

    def __init__(self, world: World) -> None:
        self._sim = world
        # made by the task itself (an anyio.Event costs more than the rest of a world's set-up,
        # and a manual-clock session never runs the task); a kick before then is kept as a flag
        self._wake: anyio.Event | None = None
        self._kicked = False

    def kick(self, *, force: bool = False) -> None:
        """Something changed (schedule, activity): look again. In manual mode nothing moves on
        its own, so only a ``force`` (a mode change) wakes the task: RPCs stay cheap."""
        if force or self._sim.clock.mode is not ClockMode.MANUAL:
            if self._wake is None:
                self._kicked = True
            else:
                self._wake.set()

    async def _sleep(self, seconds: float | None) -> None:
        if self._wake is None:
            self._wake = anyio.Event()
            if self._kicked:
                self._kicked = False
                self._wake.set()
        with anyio.move_on_after(math.inf if seconds is None else seconds):
            await self._wake.wait()
        if self._wake.is_set():
            self._wake = anyio.Event()

    async def run(self) -> None:
        sim = self._sim
        clock = sim.clock
        activity = sim.activity
        wall = time.monotonic
        burst: float | None = None
        """While jumps follow one another in one turn: when that turn must end."""
        while True:
            mode = clock.mode
            engine = sim.engine  # read each turn: a reset or an import replaces it
            if mode is ClockMode.MANUAL:
                await self._sleep(None)
            elif mode is ClockMode.REALTIME:
                sim.sync()
                event = engine.next_event()
                if event is not None and event.at > LATEST_INSTANT:
                    event = None  # the realtime clock stops at LATEST_INSTANT
                await self._sleep(None if event is None else clock.wall_delay_until(event.at))
            else:
                event = engine.next_event()
                if event is not None and event.at > LATEST_INSTANT:
                    event = None  # past the end of simulated time: never due
                if event is None or not activity.may_jump:
                    burst = None
                    await self._sleep(None)
                    continue
                if event.kind.is_timeout:
                    if burst is not None:  # the streams this turn woke write first
                        burst = None
                        await anyio.lowlevel.checkpoint()
                        continue
                    if not activity.may_time_out:  # a stream behind is still writing: I/O
                        await self._sleep(None)  # kicked when the last one has caught up
                        continue
                    remaining = clock.autojump_grace - activity.quiet_for()
                    if remaining > 0:
                        await self._sleep(remaining)
                        continue
                # Steps that follow one another are taken in one turn of the loop: the streams
                # a jump woke are behind and hold nothing, and each then sends what piled up
                # at once (one wake-up, one socket write for several messages). For a bounded
                # real time: a call arriving meanwhile waits at most that long to be seen.
                now = wall()
                if burst is None:
                    burst = now + BURST_SECONDS
                elif now >= burst:
                    burst = None
                    await anyio.lowlevel.checkpoint()
                    continue
                sim.jump_to(event.at)
