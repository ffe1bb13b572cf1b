"""Simulated time: integer microseconds since the Unix epoch.

Why integers: simulated instants must compare and add exactly, so that the same seed and the same
calls give byte-identical timestamps; protobuf Timestamps reach the client with microsecond
precision through betterproto2 anyway.
"""

from __future__ import annotations

import datetime as dt
import re

SimTime = int
"""An instant: microseconds since 1970-01-01T00:00:00Z."""
Duration = int
"""A span of simulated time in microseconds."""

MICROSECOND: Duration = 1
MILLISECOND: Duration = 1_000
SECOND: Duration = 1_000_000
MINUTE: Duration = 60 * SECOND
HOUR: Duration = 60 * MINUTE
DAY: Duration = 24 * HOUR

EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
DEFAULT_START: SimTime = 1_654_041_600 * SECOND
"""2022-06-01T00:00:00Z, the era of the published API."""

_UNITS: dict[str, Duration] = {
    "us": MICROSECOND,
    "ms": MILLISECOND,
    "s": SECOND,
    "m": MINUTE,
    "h": HOUR,
    "d": DAY,
}
_TOO_LONG = 1e18
"""Seconds: past this a text is not a duration at all (and ``round`` of its float would fail)."""
_PART = re.compile(r"(\d+(?:\.\d+)?)(us|ms|s|m|h|d)")


def exact(value: int) -> int:
    """``value`` in an int of its exact size. CPython's arithmetic leaves a result a spare digit
    (a sum, a shift: 36 B, which its allocator rounds to 48), where a division by one makes a
    tight copy (32 B): for the instants and versions every stopped instance keeps."""
    return value // 1


def parse_duration(text: str) -> Duration:
    """Parse ``90s``, ``5m``, ``1h30m``, ``250ms``, ``1.5s`` or a bare number of seconds.

    Raises ValueError naming the input when it is not a non-negative duration (or is too large to
    be one: ranges are checked by :mod:`simulator.core.limits`).
    """
    s = text.strip().lower()
    if not s:
        raise ValueError("empty duration: expected e.g. 90s, 5m, 1h30m or 250ms")
    try:
        seconds = float(s)
    except ValueError:
        pass
    else:
        if not 0 <= seconds < _TOO_LONG:
            raise ValueError(f"invalid duration {text!r}: must be a finite number >= 0")
        return round(seconds * SECOND)
    pos = 0
    total = 0.0
    for match in _PART.finditer(s):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    if pos != len(s) or pos == 0:
        raise ValueError(
            f"invalid duration {text!r}: expected e.g. 90s, 5m, 1h30m or 250ms"
            " (units us, ms, s, m, h, d)"
        )
    if not total < _TOO_LONG * SECOND:
        raise ValueError(f"invalid duration {text!r}: far too long")
    return round(total)


def format_go_minutes(d: Duration) -> str:
    """Upstream ws-manager's timeout text: rounded to the minute, as ``%02dh%02dm`` (``00h30m``)."""
    minutes = (d + MINUTE // 2) // MINUTE
    return f"{minutes // 60:02d}h{minutes % 60:02d}m"


def to_datetime(t: SimTime) -> dt.datetime:
    """A timezone-aware UTC datetime (betterproto2 needs aware datetimes)."""
    return EPOCH + dt.timedelta(microseconds=t)


def from_datetime(value: dt.datetime) -> SimTime:
    """Inverse of :func:`to_datetime`; a naive datetime is taken as UTC."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    delta = value - EPOCH
    return (delta.days * 86_400 + delta.seconds) * SECOND + delta.microseconds


def parse_instant(text: str) -> SimTime:
    """Parse an ISO 8601 instant (``2022-06-01T00:00:00Z``); without an offset it is UTC."""
    s = text.strip()
    if s.endswith(("Z", "z")):
        s = s[:-1] + "+00:00"
    try:
        value = dt.datetime.fromisoformat(s)
    except ValueError as exc:
        raise ValueError(
            f"invalid instant {text!r}: expected ISO 8601, e.g. 2022-06-01T00:00:00Z"
        ) from exc
    return from_datetime(value)


def format_instant(t: SimTime) -> str:
    """ISO 8601 with a ``Z`` suffix, microseconds only when present."""
    value = to_datetime(t)
    text = value.isoformat(timespec="microseconds" if value.microsecond else "seconds")
    return text.replace("+00:00", "Z")
