"""The simulated clock: where "now" comes from, in one of three modes.

A deliberately tiny surface, after trio's MockClock: read :meth:`SimClock.now`, move it with
:meth:`SimClock.jump_to`, switch with :meth:`SimClock.set_mode`. The clock never fires events
itself; :mod:`simulator.server.driver` decides *when* to move it and the engine does what is due.

- ``manual``: time moves only when a caller says so.
- ``realtime``: simulated time runs at ``speed`` times the wall clock from the last anchor.
- ``autojump``: like manual, but the driver jumps it ahead whenever clients wait on streams
  (BEHAVIOUR.md, "The simulated clock").
"""

from __future__ import annotations

import enum
import math
import time
from collections.abc import Callable

from simulator.core.simtime import SECOND, SimTime

DEFAULT_AUTOJUMP_GRACE = 0.020
"""Seconds of real quiet before autojump jumps to a timeout."""


class ClockMode(enum.Enum):
    MANUAL = "manual"
    REALTIME = "realtime"
    AUTOJUMP = "autojump"


class SimClock:
    def __init__(
        self,
        start: SimTime,
        mode: ClockMode = ClockMode.MANUAL,
        speed: float = 1.0,
        autojump_grace: float = DEFAULT_AUTOJUMP_GRACE,
        wall: Callable[[], float] = time.monotonic,
    ) -> None:
        self._wall = wall
        self._anchor_sim = start
        self._anchor_wall = wall()
        self.mode = mode
        self.speed = _check_speed(speed)
        if not autojump_grace >= 0 or math.isinf(autojump_grace):
            raise ValueError(
                f"autojump grace must be a finite number of seconds >= 0, got {autojump_grace}"
            )
        self.autojump_grace = autojump_grace

    def now(self) -> SimTime:
        if self.mode is ClockMode.REALTIME:
            elapsed = self._wall() - self._anchor_wall
            return self._anchor_sim + int(elapsed * self.speed * SECOND)
        return self._anchor_sim

    def jump_to(self, t: SimTime) -> None:
        """Stand at ``t`` (never backwards); realtime goes on running from there."""
        now = self.now()
        if t < now:
            raise ValueError(f"the clock cannot go backwards (to {t} from {now})")
        self._anchor_sim = t
        self._anchor_wall = self._wall()

    def reset(self, t: SimTime) -> None:
        """Stand at ``t``, even in the past: only for a reset or an import of the whole state."""
        self._anchor_sim = t
        self._anchor_wall = self._wall()

    def set_mode(self, mode: ClockMode, speed: float | None = None) -> None:
        now = self.now()
        self.mode = mode
        if speed is not None:
            self.speed = _check_speed(speed)
        self._anchor_sim = now
        self._anchor_wall = self._wall()

    def wall_delay_until(self, t: SimTime) -> float:
        """Realtime: seconds of wall time until the clock reads ``t`` (0 when already there)."""
        return max(0.0, (t - self.now()) / SECOND / self.speed)


def _check_speed(speed: float) -> float:
    if not (speed > 0 and math.isfinite(speed)):
        raise ValueError(f"speed must be a finite number > 0, got {speed}")
    return float(speed)
