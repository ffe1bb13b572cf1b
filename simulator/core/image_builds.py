"""Image builds: an instance's build log, written on the build's own clock, drawn only when read.

Rules:
- A build's text (``build_logs``, ``count`` lines) comes from a seed of its own, one draw of the
  world's ``logs`` stream when the build is prepared; the text is produced the first time someone
  reads it (most builds' never are), so the same seed always gives the same lines.
- The first line is written as the build begins (when the text has more than one line); line
  ``k`` of the rest at ``started_at + duration * k // count``; the last line reports success and
  is written only when the build succeeds (IMAGEBUILD -> PENDING), with every line before it,
  after which the repository's image is cached.
- A failed build writes its error tail after what it wrote; a stopped, stalled-then-abandoned or
  timed-out one writes nothing more. Clearing a stall writes the rest at once (duration 0).
- What was written is a function of the clock, so nothing is scheduled for it: only a build that
  someone follows (a log stream, or an engine that reports every build) gets BUILD_LOG events, one
  per line, and its lines reported to the observer at their instants.

The engine's part for builds: it holds the scheduler and the image cache, never the engine.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import TYPE_CHECKING

from simulator.core.build_logs import FAILED, FINISHED, RUNNING, Build, Clock, failure_tail
from simulator.core.scheduler import EventKind, Scheduler
from simulator.core.simtime import Duration, SimTime, exact

if TYPE_CHECKING:
    from simulator.core.model import Instance

WriteLine = Callable[["Instance", str], None]


class ImageBuilds:
    """Starts, advances and ends the image builds of a world's instances."""

    __slots__ = ("_clock", "_scheduler", "_write", "follow_all", "image_cache")

    def __init__(
        self, scheduler: Scheduler, write: WriteLine, clock: Clock, *, follow_all: bool = False
    ) -> None:
        self._scheduler = scheduler
        self._write = write
        """Reports a line to the observer (the engine's)."""
        self._clock = clock
        self.follow_all = follow_all
        """Follow every build from its start (an engine whose observer wants every line)."""
        self.image_cache: set[str] = set()
        """Repositories whose image was built (a first-start build policy skips them)."""

    def prepare(
        self, inst: Instance, logs: random.Random, lines: int, now: SimTime, duration: Duration
    ) -> None:
        """The build of an instance entering IMAGEBUILD: its seed, drawn now."""
        inst.build = Build(
            repository=inst.repository,
            count=lines,
            seed=exact(logs.getrandbits(60)),  # 32 B, where 64 bits take 48
            started_at=now,
            duration=duration,
            clock=self._clock,
        )

    def restore(
        self, lines: list[str], pending: list[str], started_at: SimTime, duration: int,
        finished: bool, failed: bool,
    ) -> Build:  # fmt: skip
        """A build from a state file: its text as saved, what it had written kept."""
        return Build(
            repository="",
            count=len(lines) + len(pending),
            seed=[*lines, *pending],
            started_at=started_at,
            duration=duration,
            clock=self._clock,
            written=len(lines),
            ended=FAILED if failed else FINISHED if finished else RUNNING,
        )

    def begin(self, inst: Instance, now: SimTime) -> None:
        """IMAGEBUILD was entered: the first line at once (never the success line)."""
        build = inst.build
        if build is None:
            return
        if build.count > 1:
            build.written = 1
        if self.follow_all:
            self.follow(inst, now)

    def follow(self, inst: Instance, now: SimTime) -> None:
        """Someone reads this build's lines as they come: report each at its instant from now
        on (what is written already, the reader has read)."""
        build = inst.build
        if build is None or build.finished:
            return
        if not build.followed:
            if self.follow_all:
                build.reported = 0
                self._report(inst, build, build.due(now))  # followed from the start
            else:
                build.reported = build.due(now)  # the reader read the backlog itself
        if inst.log is None:
            self._schedule_next(inst, now)

    def next_line(self, inst: Instance, now: SimTime) -> None:
        """A BUILD_LOG event: report the lines now due, schedule the next."""
        inst.log = None
        build = inst.build
        if build is None or build.finished or not build.followed:
            return
        self._report(inst, build, build.due(now))
        self._schedule_next(inst, now)

    def end(self, inst: Instance, now: SimTime, *, success: bool) -> None:
        """The instance left IMAGEBUILD: a success writes the rest and caches the image."""
        build = inst.build
        if build is None or build.finished:
            return
        self._finish(inst, build, build.count if success else build.due(now))
        if success:
            self.image_cache.add(inst.repository)

    def fail(self, inst: Instance, now: SimTime, reason: str, log_tail: list[str] | None) -> None:
        """The build failed: its error tail (the one given, or upstream's for ``reason``)."""
        build = inst.build
        if build is None:
            return
        self._finish(inst, build, build.due(now))
        build.tail = tuple(log_tail if log_tail is not None else failure_tail(reason))
        if build.followed:
            for line in build.tail:
                self._write(inst, line)
        build.ended = FAILED

    def _finish(self, inst: Instance, build: Build, written: int) -> None:
        """No more text lines than ``written`` (reported, when followed), and no more events."""
        if build.followed:
            self._report(inst, build, written)
        if inst.log is not None:
            self._scheduler.cancel(inst.log)
            inst.log = None
        build.written = written
        build.ended = FINISHED

    def _report(self, inst: Instance, build: Build, upto: int) -> None:
        if upto > build.reported:
            for line in build.text[build.reported : upto]:
                self._write(inst, line)
            build.reported = upto

    def _schedule_next(self, inst: Instance, now: SimTime) -> None:
        build = inst.build
        if build is None or not build.followed:
            return
        at = build.next_at(now)
        if at is not None:
            inst.log = self._scheduler.schedule(at, EventKind.BUILD_LOG, inst.id)
