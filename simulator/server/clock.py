"""The simulated clock: where "now" comes from, in one of three modes.

A deliberately tiny surface, after trio's MockClock: read :meth:`SimClock.now`, move it with
:meth:`SimClock.jump_to`, switch with :meth:`SimClock.set_mode` or :meth:`SimClock.configure`. The
clock never fires events itself; :mod:`simulator.server.driver` decides *when* to move it and the
engine does what is due.

- ``manual``: time moves only when a caller says so.
- ``realtime``: simulated time runs at ``speed`` times the wall clock from the last anchor.
- ``autojump``: like manual, but the driver jumps it ahead whenever clients wait on streams
  (BEHAVIOUR.md, "The simulated clock").

As in MockClock, ``mode``, ``speed`` and ``autojump_grace`` are properties whose setters check the
value (:mod:`simulator.core.limits`) and re-anchor, so nothing can write a value around the rules:
the clock always reads an instant within ``BEGINNING_OF_TIME .. LATEST_INSTANT``.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable

from simulator.core import limits
from simulator.core.limits import LATEST_INSTANT
from simulator.core.simtime import SECOND, SimTime

DEFAULT_AUTOJUMP_GRACE = 0.250
"""Seconds of real quiet before autojump jumps to a timeout. 250 ms: a client that saw RUNNING
and closes its stream gets there first on a loaded 2-core machine (20 ms lost that race in about
1 of 200 lifecycles; benchmarks/bench_autojump.py measures it)."""


class ClockMode(enum.Enum):
    MANUAL = "manual"
    REALTIME = "realtime"
    AUTOJUMP = "autojump"


class SimClock:
    __slots__ = ("_anchor_sim", "_anchor_wall", "_autojump_grace", "_mode", "_speed", "_wall")

    def __init__(
        self,
        start: SimTime,
        mode: ClockMode = ClockMode.MANUAL,
        speed: float = 1.0,
        autojump_grace: float = DEFAULT_AUTOJUMP_GRACE,
        wall: Callable[[], float] = time.monotonic,
    ) -> None:
        self._wall = wall
        self._anchor_sim = limits.instant("start_time", start)
        self._anchor_wall = wall()
        self._mode = _check_mode(mode)
        self._speed = limits.speed(speed)
        self._autojump_grace = limits.autojump_grace(autojump_grace)

    # ------------------------------------------------------------------ settings (checked)

    @property
    def mode(self) -> ClockMode:
        return self._mode

    @mode.setter
    def mode(self, mode: ClockMode) -> None:
        self.configure(mode=mode)

    @property
    def speed(self) -> float:
        """Realtime speed factor, within ``(0, MAX_SPEED]``."""
        return self._speed

    @speed.setter
    def speed(self, speed: float) -> None:
        self.configure(speed=speed)

    @property
    def autojump_grace(self) -> float:
        """Seconds of real quiet before autojump jumps to a timeout, within ``[0, 3600]``."""
        return self._autojump_grace

    @autojump_grace.setter
    def autojump_grace(self, seconds: float) -> None:
        self.configure(autojump_grace=seconds)

    def configure(
        self,
        *,
        mode: ClockMode | None = None,
        speed: float | None = None,
        autojump_grace: float | None = None,
    ) -> None:
        """Change any of the settings at once: all are checked before any changes, and time
        stays where it is (the clock re-anchors)."""
        new_mode = self._mode if mode is None else _check_mode(mode)
        new_speed = self._speed if speed is None else limits.speed(speed)
        new_grace = (
            self._autojump_grace
            if autojump_grace is None
            else limits.autojump_grace(autojump_grace)
        )
        now = self.now()
        self._mode, self._speed, self._autojump_grace = new_mode, new_speed, new_grace
        self._anchor_sim = now
        self._anchor_wall = self._wall()

    def set_mode(self, mode: ClockMode, speed: float | None = None) -> None:
        self.configure(mode=mode, speed=speed)

    # ------------------------------------------------------------------ time

    def now(self) -> SimTime:
        """The present; a realtime clock stops at LATEST_INSTANT rather than run off the range."""
        if self._mode is ClockMode.REALTIME:
            elapsed = self._wall() - self._anchor_wall
            return min(self._anchor_sim + int(elapsed * self._speed * SECOND), LATEST_INSTANT)
        return self._anchor_sim

    def jump_to(self, t: SimTime) -> None:
        """Stand at ``t`` (not backwards, nor past LATEST_INSTANT); realtime runs on from there.

        A realtime clock that has run past ``t`` since the caller read it (the caller decided
        to jump to an event due within the few microseconds, or the process was preempted)
        has reached ``t`` already and stays where it is; the other modes never move on their
        own, so there a ``t`` in the past is an error."""
        now = self.now()
        t = limits.instant("clock", t)
        if t < now:
            if self._mode is ClockMode.REALTIME:
                return
            raise ValueError(f"the clock cannot go backwards (to {t} from {now})")
        self._anchor_sim = t
        self._anchor_wall = self._wall()

    def reset(self, t: SimTime) -> None:
        """Stand at ``t``, even in the past: only for a reset or an import of the whole state."""
        self._anchor_sim = limits.instant("clock", t)
        self._anchor_wall = self._wall()

    def wall_delay_until(self, t: SimTime) -> float:
        """Realtime: seconds of wall time until the clock reads ``t`` (0 when already there)."""
        return max(0.0, (t - self.now()) / SECOND / self._speed)


def _check_mode(mode: object) -> ClockMode:
    if not isinstance(mode, ClockMode):
        raise limits.OutOfRange("clock mode", mode, "manual, realtime or autojump")
    return mode
