"""Future engine events, ordered by simulated time.

Events due at the same instant fire in the order they were scheduled (a global sequence number
breaks ties), so the order never depends on hashing, ids or the wall clock. Cancelling is O(1):
the entry is marked dead and skipped when it reaches the top; dead entries are compacted away
when they outnumber the live ones, so the heap never grows without bound.
"""

from __future__ import annotations

import enum
import heapq
from dataclasses import dataclass, field

from simulator.core.simtime import SimTime
from simulator.core.transitions import Timer


class EventKind(enum.Enum):
    """What a scheduled event does when it fires. ``is_timeout`` matters to autojump."""

    STEP = "step"
    """The current phase's duration is over."""
    BUILD_LOG = "build-log"
    """The image build writes its next log line."""
    RECOVER = "recover"
    """A timed interruption ends."""
    PHASE_TIMEOUT = "phase-timeout"
    """A limit on the current phase (image build, initialization, interruption, stopping)."""
    STARTUP_TIMEOUT = "startup-timeout"
    """The startup limit, counted from entering PENDING."""
    INACTIVITY_TIMEOUT = "inactivity-timeout"
    LIFETIME_TIMEOUT = "lifetime-timeout"
    INTERRUPT = "interrupt"
    """An interrupt fault's scheduled effect."""
    WAKE = "wake"
    """A runtime timer (``instance_id`` holds its key); fires a Wake event."""

    @property
    def is_timeout(self) -> bool:
        """Events that happen only because nobody acted (autojump waits a grace period for them)."""
        return self in _TIMEOUTS


_TIMEOUTS = frozenset(
    {
        EventKind.PHASE_TIMEOUT,
        EventKind.STARTUP_TIMEOUT,
        EventKind.INACTIVITY_TIMEOUT,
        EventKind.LIFETIME_TIMEOUT,
    }
)


TIMER_EVENTS: dict[Timer, EventKind] = {
    Timer.STEP: EventKind.STEP,
    Timer.BUILD_LOG: EventKind.BUILD_LOG,
    Timer.PHASE_TIMEOUT: EventKind.PHASE_TIMEOUT,
    Timer.INACTIVITY: EventKind.INACTIVITY_TIMEOUT,
    Timer.LIFETIME: EventKind.LIFETIME_TIMEOUT,
    Timer.INTERRUPT: EventKind.INTERRUPT,
    Timer.RECOVER: EventKind.RECOVER,
    Timer.STARTUP: EventKind.STARTUP_TIMEOUT,
}
"""The event each instance timer schedules (every kind but WAKE, which belongs to no instance)."""


@dataclass(slots=True, eq=False)
class ScheduledEvent:
    """One pending event. Identity matters (it is the cancellation handle), so no value equality."""

    at: SimTime
    seq: int
    kind: EventKind
    instance_id: str
    cancelled: bool = field(default=False)


class Scheduler:
    """A min-heap of :class:`ScheduledEvent` keyed by ``(at, seq)``."""

    __slots__ = ("_dead", "_heap", "_live", "_seq")

    def __init__(self) -> None:
        self._heap: list[tuple[SimTime, int, ScheduledEvent]] = []
        self._seq = 0
        self._live = 0
        self._dead = 0

    def __len__(self) -> int:
        """How many events are pending (cancelled ones do not count)."""
        return self._live

    def schedule(self, at: SimTime, kind: EventKind, instance_id: str) -> ScheduledEvent:
        self._seq += 1
        event = ScheduledEvent(at, self._seq, kind, instance_id)
        heapq.heappush(self._heap, (at, self._seq, event))
        self._live += 1
        return event

    @property
    def counter(self) -> int:
        """The schedule order of the latest event (saved with the state, so ties keep order)."""
        return self._seq

    def restore(self, counter: int) -> None:
        """Go on numbering after ``counter`` (after :meth:`schedule_as` re-created the events)."""
        self._seq = counter

    def schedule_as(
        self, at: SimTime, seq: int, kind: EventKind, instance_id: str
    ) -> ScheduledEvent:
        """Re-create a saved event with its original schedule order (state import)."""
        event = ScheduledEvent(at, seq, kind, instance_id)
        heapq.heappush(self._heap, (at, seq, event))
        self._live += 1
        return event

    def cancel(self, event: ScheduledEvent | None) -> None:
        """Forget ``event``; cancelling None or an already fired/cancelled event is a no-op."""
        if event is None or event.cancelled:
            return
        event.cancelled = True
        self._live -= 1
        self._dead += 1
        if self._dead > 1024 and self._dead > self._live:
            self._compact()

    def peek(self) -> ScheduledEvent | None:
        """The next event to fire, without removing it."""
        heap = self._heap
        while heap and heap[0][2].cancelled:
            heapq.heappop(heap)
            self._dead -= 1
        return heap[0][2] if heap else None

    def pop_due(self, until: SimTime) -> ScheduledEvent | None:
        """Remove and return the next event due at or before ``until``, or None."""
        event = self.peek()
        if event is None or event.at > until:
            return None
        heapq.heappop(self._heap)
        event.cancelled = True  # fired: a later cancel() is a no-op
        self._live -= 1
        return event

    def _compact(self) -> None:
        self._heap = [entry for entry in self._heap if not entry[2].cancelled]
        heapq.heapify(self._heap)
        self._dead = 0
