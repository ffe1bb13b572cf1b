"""The scheduler fires events in (instant, schedule order), whatever mix of scheduling,
cancelling and firing came before: checked against a plain sorted list."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.core.scheduler import EventKind, ScheduledEvent, Scheduler

ops = st.lists(
    st.one_of(
        st.tuples(st.just("schedule"), st.integers(0, 30)),
        st.tuples(st.just("cancel"), st.integers(0, 10**6)),
        st.tuples(st.just("pop"), st.integers(0, 30)),
    ),
    max_size=300,
)


@settings(max_examples=300)
@given(ops)
def test_events_fire_in_instant_then_schedule_order(steps: list[tuple[str, int]]) -> None:
    sched = Scheduler()
    pending: list[ScheduledEvent] = []  # the reference: every live event
    now = 0
    for op, n in steps:
        if op == "schedule":
            pending.append(sched.schedule(now + n, EventKind.STEP, f"i{len(pending)}"))
        elif op == "cancel" and pending:
            victim = pending.pop(n % len(pending))
            sched.cancel(victim)
            sched.cancel(victim)  # twice is a no-op
        elif op == "pop":
            until = now + n
            fired = []
            while (event := sched.pop_due(until)) is not None:
                fired.append(event)
            due = sorted((e for e in pending if e.at <= until), key=lambda e: (e.at, e.seq))
            assert fired == due
            pending = [e for e in pending if e.at > until]
            now = until
        assert len(sched) == len(pending)
        nxt = sched.peek()
        first = min(pending, key=lambda e: (e.at, e.seq)) if pending else None
        assert nxt is first


def test_cancelled_events_are_compacted_away() -> None:
    sched = Scheduler()
    events = [sched.schedule(i % 7, EventKind.STEP, "x") for i in range(5000)]
    for event in events[:4000]:
        sched.cancel(event)
    assert len(sched) == 1000
    assert sum(len(b) for b in sched._buckets.values()) < 3000  # compacted, not 5000
    order = [sched.pop_due(10) for _ in range(1000)]
    assert [(e.at, e.seq) for e in order if e] == sorted((e.at, e.seq) for e in events[4000:])
    assert sched.pop_due(10) is None and sched.peek() is None


def test_compaction_while_the_front_instant_is_half_read() -> None:
    sched = Scheduler()
    events = [sched.schedule(i % 3, EventKind.STEP, "x") for i in range(6000)]
    first = [sched.pop_due(0) for _ in range(500)]  # half of instant 0's bucket is read
    assert [e.seq for e in first if e] == [e.seq for e in events if e.at == 0][:500]
    survivors = set(range(0, 6000, 5))
    for n, event in enumerate(events):
        if n not in survivors:
            sched.cancel(event)  # compacts more than once on the way
    rest = []
    while (event := sched.pop_due(5)) is not None:
        rest.append(event)
    fired = {e.seq for e in first if e}
    expected = sorted(
        ((e.at, e.seq) for n, e in enumerate(events) if n in survivors and e.seq not in fired)
    )
    assert [(e.at, e.seq) for e in rest] == expected
    assert len(sched) == 0
