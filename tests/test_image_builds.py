"""Build logs are a function of the clock: nothing is scheduled for a build nobody follows, its
text is drawn only when read, and what a reader sees is what a followed build reports."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from simulator.core import state
from simulator.core.build_logs import Build
from simulator.core.engine import Engine
from simulator.core.model import BuildLogLine, EngineEvent
from simulator.core.plan import LifecyclePlan
from simulator.core.scheduler import EventKind
from simulator.core.simtime import SECOND

REPO = "https://github.com/gitpod-io/gitpod"


def _reference_instants(count: int, started: int, duration: int) -> list[int]:
    """When each text line but the last is written, as the event-per-line engine wrote them:
    the first at once, then each at started + duration * written // count, never in the past."""
    if count <= 1:
        return []
    at, out = started, [started]
    for written in range(1, count - 1):
        at = max(started + duration * written // count, at)
        out.append(at)
    return out


@given(
    count=st.integers(1, 40),
    duration=st.integers(0, 10**9),
    offsets=st.lists(st.integers(-10, 2 * 10**9), max_size=20),
)
def test_due_lines_are_the_event_schedule(count: int, duration: int, offsets: list[int]) -> None:
    started = 5_000_000
    build = Build("r", count, seed=1, started_at=started, duration=duration, clock=lambda: 0)
    build.written = 1 if count > 1 else 0
    instants = _reference_instants(count, started, duration)
    for off in [0, duration, duration - 1, *offsets]:
        now = started + off
        if now < started:
            continue
        expected = sum(1 for at in instants if at <= now) if duration else max(count - 1, 0)
        assert build.due(now) == expected, (now, instants)


def _engine(*, follow: bool, seed: int = 3) -> tuple[Engine, list[EngineEvent]]:
    events: list[EngineEvent] = []
    engine = Engine(seed=seed, observer=events.append, follow_builds=follow)
    engine.add_user("alice")
    return engine, events


def _logs(events: list[EngineEvent]) -> list[tuple[int, str]]:
    return [(e.at, e.line) for e in events if isinstance(e, BuildLogLine)]


def test_a_build_nobody_follows_schedules_nothing_for_its_log() -> None:
    quiet, quiet_events = _engine(follow=False)
    loud, loud_events = _engine(follow=True)
    for engine in (quiet, loud):
        engine.create_workspace(engine.users["alice"], context_url=REPO)
    (inst,) = quiet.instances.values()
    (twin,) = loud.instances.values()
    assert inst.id == twin.id
    kinds = {e.kind for e in [quiet.scheduler.peek()] if e is not None}
    assert kinds == {EventKind.STEP}  # not BUILD_LOG: the next event is the build's end
    seen: list[list[str]] = []
    for s in range(0, 61, 3):
        for engine in (quiet, loud):
            engine.advance_to(engine.now + (3 * SECOND if s else 0))
        assert inst.build is not None and twin.build is not None
        assert inst.build.lines == twin.build.lines
        seen.append(inst.build.lines)
    assert _logs(quiet_events) == []
    assert [line for _, line in _logs(loud_events)] == seen[-1]
    assert len(seen[-1]) == 8 and seen[-1][-1].startswith("Successfully built ")
    assert len({len(lines) for lines in seen}) > 3  # lines came over time, not at once


def test_following_mid_build_reports_the_later_lines_at_their_instants() -> None:
    quiet, quiet_events = _engine(follow=False)
    loud, loud_events = _engine(follow=True)
    for engine in (quiet, loud):
        engine.create_workspace(engine.users["alice"], context_url=REPO)
        engine.advance_to(engine.now + 20 * SECOND)
    (inst,) = quiet.instances.values()
    assert inst.build is not None
    already = len(inst.build.lines)
    assert 1 < already < 7
    quiet.follow_build(inst)
    quiet.follow_build(inst)  # a second reader schedules nothing twice
    assert sum(1 for e in [quiet.scheduler.peek()] if e and e.kind is EventKind.BUILD_LOG) == 1
    for engine in (quiet, loud):
        engine.advance_to(engine.now + 60 * SECOND)
    assert _logs(quiet_events) == _logs(loud_events)[already:]


def test_reading_a_build_draws_nothing_else() -> None:
    reader, _ = _engine(follow=False, seed=9)
    other, _ = _engine(follow=False, seed=9)
    texts: list[list[list[str]]] = [[], []]
    for n in range(5):
        for i, engine in enumerate((reader, other)):
            ws = engine.create_workspace(engine.users["alice"], context_url=f"{REPO}{n}")
            inst = engine.instances[ws.latest_instance_id or ""]
            assert inst.build is not None
            if engine is reader:
                inst.build.text  # noqa: B018 - drawn now, in the middle of the creations
            texts[i].append(inst.build.text)
    assert list(reader.instances) == list(other.instances)
    assert texts[0] == texts[1]
    assert len({tuple(t[1:]) for t in texts[0]}) == 5  # each build its own text


def test_a_saved_build_keeps_what_it_wrote_and_what_is_to_come() -> None:
    engine, _ = _engine(follow=False)
    engine.create_workspace(engine.users["alice"], context_url=REPO)
    engine.advance_to(engine.now + 25 * SECOND)
    (inst,) = engine.instances.values()
    assert inst.build is not None
    lines, pending = inst.build.lines, inst.build.pending
    copy = state.import_state(state.export_state(engine))
    restored = copy.instances[inst.id].build
    assert restored is not None
    assert (restored.lines, restored.pending) == (lines, pending)
    for e in (engine, copy):
        e.advance_to(e.now + 40 * SECOND)
    assert copy.instances[inst.id].build.lines == inst.build.lines  # type: ignore[union-attr]
    assert len(inst.build.lines) == LifecyclePlan().build_log_lines
