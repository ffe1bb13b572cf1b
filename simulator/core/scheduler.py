"""Future engine events, ordered by simulated time.

Events due at the same instant fire in the order they were scheduled (a global sequence number
breaks ties), so the order never depends on hashing, ids or the wall clock. Scheduling at an
instant already pending is O(1) (events wait in a list per instant; only distinct instants are
in the heap). Cancelling is O(1): the entry is marked dead and skipped when it reaches the front;
dead entries are compacted away when they outnumber the live ones, so nothing grows without bound.
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


_new_event = object.__new__


class Scheduler:
    """Events keyed by ``(at, seq)``: a bucket (a list, in ``seq`` order) per instant, and a
    min-heap of the instants.

    Many events share an instant (fixed durations, instances created together), so scheduling one
    at an instant already pending is an append and the heap holds only distinct instants. A new
    event always has the greatest ``seq`` so far (a state import re-creates them in ``seq``
    order), so appending keeps each bucket in order. Only the front bucket (the earliest instant)
    is consumed, from a read position (``_head``), so taking an event is O(1) too.
    """

    __slots__ = ("_buckets", "_dead", "_head", "_head_at", "_live", "_seq", "_times")

    def __init__(self) -> None:
        self._buckets: dict[SimTime, list[ScheduledEvent]] = {}
        self._times: list[SimTime] = []
        self._head_at: SimTime | None = None
        """The instant whose bucket is read from ``_head`` on (every other is read from 0)."""
        self._head = 0
        self._seq = 0
        self._live = 0
        self._dead = 0

    def __len__(self) -> int:
        """How many events are pending (cancelled ones do not count)."""
        return self._live

    def schedule(
        self, at: SimTime, kind: EventKind, instance_id: str, seq: int = 0
    ) -> ScheduledEvent:
        """A new event (``seq``: a saved one's schedule order, see :meth:`schedule_as`)."""
        if not seq:
            self._seq += 1
            seq = self._seq
        event = _new_event(ScheduledEvent)  # the dataclass's __init__ without its frame
        event.at = at
        event.seq = seq
        event.kind = kind
        event.instance_id = instance_id
        event.cancelled = False
        bucket = self._buckets.get(at)
        if bucket is None:
            self._buckets[at] = [event]
            heapq.heappush(self._times, at)
        else:
            bucket.append(event)
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
        """Re-create a saved event with its original schedule order (state import: in ``seq``
        order, into a scheduler that has scheduled nothing else)."""
        bucket = self._buckets.get(at)
        assert not bucket or bucket[-1].seq < seq, "events must be re-created in seq order"
        assert seq > 0, "schedule orders count from 1"
        return self.schedule(at, kind, instance_id, seq)

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
        times = self._times
        buckets = self._buckets
        while times:
            at = times[0]
            bucket = buckets[at]
            if at != self._head_at:
                self._move_head(at)
            i = self._head
            n = len(bucket)
            while i < n and bucket[i].cancelled:
                i += 1
                self._dead -= 1
            self._head = i
            if i < n:
                return bucket[i]
            del buckets[at]
            heapq.heappop(times)
            self._head_at = None
        return None

    def pop_due(self, until: SimTime) -> ScheduledEvent | None:
        """Remove and return the next event due at or before ``until``, or None."""
        times = self._times
        if times and times[0] == self._head_at:  # peek's work, inlined for the front bucket
            bucket = self._buckets[times[0]]
            i = self._head
            if i < len(bucket):
                front = bucket[i]
                if not front.cancelled:
                    if front.at > until:
                        return None
                    self._head = i + 1
                    front.cancelled = True  # fired: a later cancel() is a no-op
                    self._live -= 1
                    return front
        event = self.peek()
        if event is None or event.at > until:
            return None
        self._head += 1  # peek made its bucket the front one
        event.cancelled = True  # fired: a later cancel() is a no-op
        self._live -= 1
        return event

    def _move_head(self, at: SimTime) -> None:
        """Read ``at``'s bucket from its start; the old front bucket keeps only what is unread."""
        old = self._head_at
        if old is not None and self._head and old in self._buckets:
            self._buckets[old] = self._buckets[old][self._head :]
        self._head_at = at
        self._head = 0

    def _compact(self) -> None:
        self._move_head(-1)  # no bucket is partly read while rebuilding
        buckets: dict[SimTime, list[ScheduledEvent]] = {}
        for at, bucket in self._buckets.items():
            alive = [e for e in bucket if not e.cancelled]
            if alive:
                buckets[at] = alive
        self._buckets = buckets
        self._times = list(buckets)
        heapq.heapify(self._times)
        self._head_at = None
        self._dead = 0
