"""Every value that enters the simulator, with its allowed range, checked in one place.

The command line, the control plane, scenarios, the Python API and imported state all pass what
they are given through these checks, so one rule holds everywhere: a value out of range is refused
with :class:`OutOfRange` (INVALID_ARGUMENT on the wire, a usage error on the command line) naming
the field, the value and the range, before anything changes.

The ranges are chosen so that nothing downstream can overflow or stall:

- Simulated time stays within the years 1..9999 (what a protobuf Timestamp and a Python datetime
  can hold). The clock never stands later than :data:`LATEST_INSTANT`, which leaves
  :data:`MAX_DURATION` of room, so every event the engine schedules (always at most one duration
  after the clock) is still a valid instant.
- A log-normal draw is ``exp(log(median) + sigma * z)`` with ``|z| < 12.2`` (the rejection bound of
  Python's ``normalvariate``); with ``sigma <= 20`` and ``median <= MAX_DURATION`` the exponent
  stays below 290, far from the float overflow at 709.
- Realtime speed at most :data:`MAX_SPEED`; build logs at most :data:`MAX_BUILD_LOG_LINES` lines.
"""

from __future__ import annotations

import datetime as dt
import math
import re

from simulator.core.errors import InvalidArgument
from simulator.core.simtime import (
    DAY,
    HOUR,
    SECOND,
    Duration,
    SimTime,
    format_instant,
    from_datetime,
)

BEGINNING_OF_TIME: SimTime = from_datetime(dt.datetime.min.replace(tzinfo=dt.UTC))
"""0001-01-01T00:00:00Z."""
END_OF_TIME: SimTime = from_datetime(dt.datetime.max.replace(tzinfo=dt.UTC))
"""9999-12-31T23:59:59.999999Z: the last instant a Timestamp (and a datetime) can hold."""
MAX_DURATION: Duration = 36_500 * DAY
"""About a century: the longest duration anything accepts (phases, timeouts, advances, faults)."""
LATEST_INSTANT: SimTime = from_datetime(dt.datetime(9899, 12, 31, 23, 59, 59, 999999, dt.UTC))
"""The latest instant the clock may stand at: room for one more MAX_DURATION after it."""
assert LATEST_INSTANT + MAX_DURATION <= END_OF_TIME

MAX_SPEED = 1e6
"""Realtime speed factor: within (0, MAX_SPEED]."""
MAX_AUTOJUMP_GRACE = 3600.0
"""Seconds of real quiet autojump waits before a timeout: within [0, MAX_AUTOJUMP_GRACE]."""
MAX_SIGMA = 20.0
MAX_BUILD_LOG_LINES = 10_000
MAX_COUNT = 1_000_000
"""Fault counts and stream message counts."""
MAX_NAME = 256
"""User ids, prebuild ids, tokens, clusters, plan and fault ids."""
MAX_TEXT = 1024
"""Fault messages and reasons, one log line."""
MAX_LOG_TAIL = 100
MAX_PATTERN = 1024
MAX_CONTEXT_URL = 4096
MAX_JOURNAL_SIZE = 10_000_000
MIN_SEED = -(2**63)
MAX_SEED = 2**63 - 1
"""Seeds are int64 on the control plane."""
MAX_STATE_INTERVAL: Duration = 1 * DAY


class OutOfRange(InvalidArgument, ValueError):
    """A value outside its documented range. Also a ValueError, so the Python API's callers who
    catch ValueError (as they did for plans and clocks) keep working."""

    def __init__(self, field: str, value: object, allowed: str) -> None:
        super().__init__(f"{field} {_show(value)} is out of range: {allowed}")
        self.field = field
        self.value = value
        self.allowed = allowed


class _Shown(str):
    """A value already written for people (``90s``, an instant): shown without quotes."""

    __slots__ = ()

    def __repr__(self) -> str:
        return str(self)


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _finite(field: str, value: object, allowed: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise OutOfRange(field, value, f"expected a number, {allowed}")
    number = float(value) if isinstance(value, float) else value
    if isinstance(number, float) and not math.isfinite(number):
        raise OutOfRange(field, value, allowed)
    return float(number)


def _integer(field: str, value: object, allowed: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise OutOfRange(field, value, f"expected an integer, {allowed}")
    return value


# ---------------------------------------------------------------------------- time


def format_duration(d: Duration) -> str:
    """A duration for a message: whole days, hours or seconds where exact."""
    for unit, name in ((DAY, "d"), (HOUR, "h"), (SECOND, "s")):
        if d % unit == 0:
            return f"{d // unit}{name}"
    return f"{d}us"


def _instant_text(t: SimTime) -> str:
    return format_instant(t)


DURATION_RANGE = f"0 .. {format_duration(MAX_DURATION)} (about a century)"


def duration(field: str, value: object, *, minimum: Duration = 0) -> Duration:
    """A duration in microseconds within ``[minimum, MAX_DURATION]``."""
    allowed = (
        DURATION_RANGE
        if minimum == 0
        else f"{format_duration(minimum)} .. {format_duration(MAX_DURATION)}"
    )
    d = _integer(field, value, allowed)
    if not minimum <= d <= MAX_DURATION:
        raise OutOfRange(field, _duration_value(d), allowed)
    return d


def _duration_value(d: int) -> str:
    return _Shown(format_duration(d) if abs(d) < 10**30 else f"{d}us")


INSTANT_RANGE = f"{_instant_text(BEGINNING_OF_TIME)} .. {_instant_text(LATEST_INSTANT)}"


def instant(field: str, value: object) -> SimTime:
    """An instant the clock may stand at: within ``[BEGINNING_OF_TIME, LATEST_INSTANT]``."""
    t = _integer(field, value, INSTANT_RANGE)
    if not BEGINNING_OF_TIME <= t <= LATEST_INSTANT:
        raise OutOfRange(field, _instant_value(t), INSTANT_RANGE)
    return t


EVENT_INSTANT_RANGE = f"{_instant_text(BEGINNING_OF_TIME)} .. {_instant_text(END_OF_TIME)}"


def event_instant(field: str, value: object) -> SimTime:
    """An instant something may be scheduled at: up to END_OF_TIME (one duration past the clock)."""
    if type(value) is int and BEGINNING_OF_TIME <= value <= END_OF_TIME:
        return value  # the common case, checked cheaply (imports check every instant)
    t = _integer(field, value, EVENT_INSTANT_RANGE)
    if not BEGINNING_OF_TIME <= t <= END_OF_TIME:
        raise OutOfRange(field, _instant_value(t), EVENT_INSTANT_RANGE)
    return t


def _instant_value(t: int) -> str:
    if BEGINNING_OF_TIME <= t <= END_OF_TIME:
        return _Shown(_instant_text(t))
    return _Shown(f"{t}us since 1970")


def advance_target(field: str, now: SimTime, delta: Duration) -> SimTime:
    """Where advancing by ``delta`` from ``now`` lands; refused past LATEST_INSTANT."""
    d = duration(field, delta)
    target = now + d
    if target > LATEST_INSTANT:
        raise OutOfRange(
            field,
            _Shown(format_duration(d)),
            f"the clock would stand at {_instant_value(target)}, past the latest instant"
            f" {_instant_text(LATEST_INSTANT)} (at most {format_duration(LATEST_INSTANT - now)}"
            " from now)",
        )
    return target


# ---------------------------------------------------------------------------- clock


SPEED_RANGE = f"0 < speed <= {MAX_SPEED:.0f}"


def speed(value: object, field: str = "speed") -> float:
    s = _finite(field, value, SPEED_RANGE)
    if not 0 < s <= MAX_SPEED:
        raise OutOfRange(field, value, SPEED_RANGE)
    return s


GRACE_RANGE = f"0 .. {MAX_AUTOJUMP_GRACE:g} seconds"


def autojump_grace(value: object, field: str = "autojump_grace") -> float:
    """The autojump grace period in seconds."""
    g = _finite(field, value, GRACE_RANGE)
    if not 0 <= g <= MAX_AUTOJUMP_GRACE:
        raise OutOfRange(field, value, GRACE_RANGE)
    return g


# ---------------------------------------------------------------------------- numbers


SIGMA_RANGE = f"0 .. {MAX_SIGMA:g}"


def sigma(value: object, field: str = "sigma") -> float:
    s = _finite(field, value, SIGMA_RANGE)
    if not 0 <= s <= MAX_SIGMA:
        raise OutOfRange(field, value, SIGMA_RANGE)
    return s


def probability(value: object, field: str = "probability") -> float:
    p = _finite(field, value, "0 .. 1")
    if not 0 <= p <= 1:
        raise OutOfRange(field, value, "0 .. 1")
    return p


def count(field: str, value: object, *, minimum: int = 0, maximum: int = MAX_COUNT) -> int:
    allowed = f"{minimum} .. {maximum}"
    n = _integer(field, value, allowed)
    if not minimum <= n <= maximum:
        raise OutOfRange(field, n, allowed)
    return n


def build_log_lines(value: object, field: str = "build_log_lines") -> int:
    return count(field, value, minimum=1, maximum=MAX_BUILD_LOG_LINES)


def seed(value: object, field: str = "seed") -> int:
    return count(field, value, minimum=MIN_SEED, maximum=MAX_SEED)


def journal_size(value: object, field: str = "journal_size") -> int:
    return count(field, value, minimum=1, maximum=MAX_JOURNAL_SIZE)


# ---------------------------------------------------------------------------- text


def _is_control(c: str) -> bool:
    o = ord(c)
    return o < 0x20 or 0x7F <= o < 0xA0


_SPACE_OR_CONTROL = re.compile(r"[\s\x00-\x1f\x7f-\x9f]")
_TOKEN = re.compile(r"[!-~]+")


def name(field: str, value: object, *, maximum: int = MAX_NAME) -> str:
    """An id or name: 1..maximum characters, no whitespace, no control characters."""
    allowed = f"1..{maximum} characters without whitespace or control characters"
    if not isinstance(value, str):
        raise OutOfRange(field, value, f"expected a string of {allowed}")
    if not 0 < len(value) <= maximum or _SPACE_OR_CONTROL.search(value) is not None:
        raise OutOfRange(field, value, allowed)
    return value


TOKEN_RANGE = f"1..{MAX_NAME} visible ASCII characters (what an authorization header can carry)"


def token(field: str, value: object) -> str:
    """A bearer token: visible ASCII only, since it travels in gRPC metadata."""
    if not isinstance(value, str):
        raise OutOfRange(field, value, f"expected a string of {TOKEN_RANGE}")
    if not 0 < len(value) <= MAX_NAME or _TOKEN.fullmatch(value) is None:
        raise OutOfRange(field, value, TOKEN_RANGE)
    return value


def text(field: str, value: object, *, maximum: int = MAX_TEXT, empty: bool = True) -> str:
    """Free text (a message, a reason, a log line): at most ``maximum`` characters, no control
    characters other than tab."""
    allowed = f"{0 if empty else 1}..{maximum} characters without control characters"
    if not isinstance(value, str):
        raise OutOfRange(field, value, f"expected a string of {allowed}")
    if (
        len(value) > maximum
        or (not empty and not value)
        or any(_is_control(c) and c != "\t" for c in value)
    ):
        raise OutOfRange(field, value, allowed)
    return value


def context_url(field: str, value: object) -> str:
    """A context URL: at most MAX_CONTEXT_URL characters, no NUL, DEL or other control chars."""
    allowed = f"at most {MAX_CONTEXT_URL} characters without control characters (NUL, DEL, ...)"
    if not isinstance(value, str):
        raise OutOfRange(field, value, f"expected a string of {allowed}")
    if len(value) > MAX_CONTEXT_URL or any(_is_control(c) for c in value):
        raise OutOfRange(field, value, allowed)
    return value


__all__ = [
    "BEGINNING_OF_TIME",
    "END_OF_TIME",
    "LATEST_INSTANT",
    "MAX_AUTOJUMP_GRACE",
    "MAX_BUILD_LOG_LINES",
    "MAX_DURATION",
    "MAX_SIGMA",
    "MAX_SPEED",
    "OutOfRange",
]
