"""Lifecycle plans: how long each phase takes, when a build is needed, the timeout limits.

A plan is plain data. The engine draws every random duration from its own seeded source, so the
same seed gives the same durations; a plan never touches randomness itself except through the
``random.Random`` it is handed.
"""

from __future__ import annotations

import enum
import math
import random
from dataclasses import dataclass, field, fields, replace

from simulator.core import limits
from simulator.core.limits import MAX_DURATION
from simulator.core.simtime import HOUR, MINUTE, SECOND, Duration
from simulator.core.transitions import Phase


@dataclass(frozen=True, slots=True)
class Fixed:
    """Always the same duration."""

    duration: Duration

    def __post_init__(self) -> None:
        limits.duration("duration", self.duration)

    def sample(self, rng: random.Random) -> Duration:
        return self.duration


@dataclass(frozen=True, slots=True)
class Uniform:
    """Uniformly between ``low`` and ``high`` (inclusive), to the microsecond."""

    low: Duration
    high: Duration

    def __post_init__(self) -> None:
        limits.duration("uniform low", self.low)
        limits.duration("uniform high", self.high)
        if not self.low <= self.high:
            raise ValueError(f"uniform needs 0 <= low <= high, got {self.low}us..{self.high}us")

    def sample(self, rng: random.Random) -> Duration:
        return rng.randint(self.low, self.high)


@dataclass(frozen=True, slots=True)
class LogNormal:
    """Log-normal around ``median`` with shape ``sigma``, capped at ``cap`` (default 100x median,
    at most MAX_DURATION).

    Real phase durations have a long right tail; the cap keeps one unlucky draw from stalling a run.
    ``sigma`` is at most ``limits.MAX_SIGMA``, so a draw can never overflow a float.
    """

    median: Duration
    sigma: float
    cap: Duration | None = None

    def __post_init__(self) -> None:
        limits.duration("lognormal median", self.median, minimum=1)
        limits.sigma(self.sigma, "lognormal sigma")
        if self.cap is not None:
            limits.duration("lognormal cap", self.cap)

    def sample(self, rng: random.Random) -> Duration:
        drawn = round(rng.lognormvariate(math.log(self.median), self.sigma))
        cap = self.cap if self.cap is not None else min(100 * self.median, MAX_DURATION)
        return max(0, min(drawn, cap))


Distribution = Fixed | Uniform | LogNormal


class BuildPolicy(enum.Enum):
    """When a start from a git context needs an image build (prebuilds and snapshots never do)."""

    FIRST_START = "first-start"
    """Until a build of the repository has succeeded (the spec's default)."""
    ALWAYS = "always"
    NEVER = "never"


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Upstream ws-manager's default limits. ``None`` disables a limit."""

    initialization: Duration | None = 30 * MINUTE
    """PENDING too long."""
    startup: Duration | None = 1 * HOUR
    """From entering PENDING (the pod's creation) to RUNNING too long: PENDING, CREATING and
    INITIALIZING together."""
    inactivity: Duration | None = 30 * MINUTE
    """RUNNING since the last activity (or since RUNNING when never marked active)."""
    max_lifetime: Duration | None = 36 * HOUR
    """From the instance's creation, while RUNNING or INTERRUPTED."""
    interruption: Duration | None = 5 * MINUTE
    """INTERRUPTED too long."""
    stopping: Duration | None = 1 * HOUR
    """STOPPING too long: forced to STOPPED."""
    image_build: Duration | None = 1 * HOUR
    """Still in IMAGEBUILD this long after the instance's creation: stopped (straight to
    STOPPED, nothing runs on the cluster yet)."""

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if value is not None:
                limits.duration(f"timeouts.{f.name}", value)


TIMEOUT_NAMES: tuple[str, ...] = tuple(f.name for f in fields(Timeouts))
"""The limits' names, in declaration order: what state files and the control plane carry."""

DEFAULT_DURATIONS: dict[Phase, Distribution] = {
    Phase.IMAGEBUILD: Fixed(60 * SECOND),
    Phase.PENDING: Fixed(2 * SECOND),
    Phase.CREATING: Fixed(10 * SECOND),
    Phase.INITIALIZING: Fixed(15 * SECOND),
    Phase.STOPPING: Fixed(5 * SECOND),
}
TIMED_PHASES: frozenset[Phase] = frozenset(DEFAULT_DURATIONS)
"""The phases that end on their own after a duration."""


@dataclass(frozen=True, slots=True)
class LifecyclePlan:
    """Everything that shapes one instance's life; captured by the instance when it starts."""

    durations: dict[Phase, Distribution] = field(default_factory=lambda: dict(DEFAULT_DURATIONS))
    build_policy: BuildPolicy = BuildPolicy.FIRST_START
    timeouts: Timeouts = field(default_factory=Timeouts)
    cluster: str = "eu53"
    build_log_lines: int = 8
    """How many image build log lines a build writes (spread over its duration)."""

    def __post_init__(self) -> None:
        unknown = set(self.durations) - TIMED_PHASES
        if unknown:
            names = ", ".join(sorted(p.name for p in unknown))
            raise ValueError(f"phases without a duration of their own: {names}")
        if (
            not self.cluster
            or len(self.cluster) > 63
            or not self.cluster.replace("-", "").isascii()
            or not self.cluster.replace("-", "").isalnum()
        ):
            raise limits.OutOfRange("cluster", self.cluster, "1..63 ASCII letters, digits and '-'")
        limits.build_log_lines(self.build_log_lines)

    def duration_of(self, phase: Phase, rng: random.Random) -> Duration:
        dist = self.durations.get(phase) or DEFAULT_DURATIONS[phase]
        return dist.duration if type(dist) is Fixed else dist.sample(rng)  # Fixed: no call

    def with_durations(self, **seconds: float) -> LifecyclePlan:
        """A copy with fixed durations given in seconds by phase name (``pending=1``)."""
        durations = dict(self.durations)
        for name, value in seconds.items():
            durations[Phase[name.upper()]] = Fixed(round(value * SECOND))
        return replace(self, durations=durations)


@dataclass(frozen=True, slots=True)
class ScopedPlan:
    """A plan and who it applies to: ``global``, a ``user`` id, or a ``context`` URL pattern."""

    id: str
    scope: str
    value: str
    plan: LifecyclePlan
