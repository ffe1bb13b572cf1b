"""Image builds: an instance's build log, written on the build's own clock.

Rules: a build's lines come from the seed (``build_logs``) and are spread evenly over its duration;
the first is written as the build begins; the last pending line reports success and is written
only when the build succeeds (IMAGEBUILD -> PENDING), with the rest, after which the repository's
image is cached; a failed build writes its error tail instead, and a stopped, stalled or timed-out
one writes nothing more. The engine's part for builds: it holds the scheduler and the image cache,
never the engine.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from simulator.core.build_logs import build_log, failure_tail
from simulator.core.model import Build, Instance
from simulator.core.scheduler import EventKind, Scheduler
from simulator.core.simtime import Duration, SimTime

WriteLine = Callable[[Instance, str], None]


class ImageBuilds:
    """Starts, advances and ends the image builds of a world's instances."""

    __slots__ = ("_scheduler", "_write", "image_cache")

    def __init__(self, scheduler: Scheduler, write: WriteLine) -> None:
        self._scheduler = scheduler
        self._write = write
        """Appends a line to the instance's log and reports it (the engine's observer)."""
        self.image_cache: set[str] = set()
        """Repositories whose image was built (a first-start build policy skips them)."""

    def prepare(
        self, inst: Instance, logs: random.Random, lines: int, now: SimTime, duration: Duration
    ) -> None:
        """The build of an instance entering IMAGEBUILD: its whole text, drawn now."""
        text = build_log(logs, inst.repository, lines)
        inst.build = Build(lines=[], pending=text, started_at=now, duration=duration)

    def begin(self, inst: Instance, now: SimTime) -> None:
        """IMAGEBUILD was entered: the first line at once (never the success line), then the
        next on the build's clock."""
        build = inst.build
        if build is None:
            return
        if len(build.pending) > 1:
            self._write(inst, build.pending.pop(0))
        self._schedule_next(inst, now)

    def next_line(self, inst: Instance, now: SimTime) -> None:
        """A BUILD_LOG event: write the line that is due, schedule the one after."""
        inst.log = None
        build = inst.build
        if build is not None and build.pending:
            self._write(inst, build.pending.pop(0))
            self._schedule_next(inst, now)

    def end(self, inst: Instance, *, success: bool) -> None:
        """The instance left IMAGEBUILD: a success writes the rest and caches the image."""
        build = inst.build
        if build is None or build.finished:
            return
        if success:
            for line in build.pending:
                self._write(inst, line)
            self.image_cache.add(inst.repository)
        build.pending = []
        build.finished = True
        self._scheduler.cancel(inst.log)
        inst.log = None

    def fail(self, inst: Instance, reason: str, log_tail: list[str] | None) -> None:
        """The build failed: its error tail (the one given, or upstream's for ``reason``)."""
        build = inst.build
        if build is None:
            return
        for line in log_tail if log_tail is not None else failure_tail(reason):
            self._write(inst, line)
        build.failed = True
        build.finished = True

    def _schedule_next(self, inst: Instance, now: SimTime) -> None:
        """The next line on the build's clock. The last pending line reports success: it is
        written only by :meth:`end` on success, never by a failed or stalled build."""
        build = inst.build
        if build is None or len(build.pending) <= 1:
            return
        written = len(build.lines)
        total = written + len(build.pending)
        at = build.started_at + build.duration * written // total
        inst.log = self._scheduler.schedule(max(at, now), EventKind.BUILD_LOG, inst.id)
