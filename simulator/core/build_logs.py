"""An image build's log: its text, generated from a seed so the same seed writes the same lines,
and :class:`Build`, which lines of it are written at an instant (the rules are in
:mod:`simulator.core.image_builds`, which starts, advances and ends builds)."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

from simulator.core.simtime import SimTime

Clock = Callable[[], SimTime]

_BASES = (
    "gitpod/workspace-full:2022-05-25-08-50-33",
    "gitpod/workspace-base:2022-05-20-09-21-26",
    "gitpod/workspace-python:2022-05-31-11-03-44",
    "gitpod/workspace-node:2022-05-27-18-20-38",
)
_STEPS = (
    "RUN sudo apt-get update && sudo apt-get install -y {pkg} && sudo rm -rf /var/lib/apt/lists/*",
    "RUN pip install --no-cache-dir {pkg}",
    "RUN npm install -g {pkg}",
    "RUN brew install {pkg}",
    "ENV PATH=/home/gitpod/.{pkg}/bin:$PATH",
    "COPY --chown=gitpod:gitpod .gitpod/{pkg}.sh /home/gitpod/",
)
_PACKAGES = (
    "postgresql-14",
    "redis-server",
    "ripgrep",
    "shellcheck",
    "golangci-lint",
    "poetry",
    "pnpm",
    "terraform",
    "kubectl",
    "protobuf-compiler",
    "yarn",
    "jq",
    "httpie",
    "tmux",
)


def _hex(rng: random.Random, n: int) -> str:
    return f"{rng.getrandbits(4 * n):0{n}x}"


def build_log(rng: random.Random, repository: str, count: int) -> list[str]:
    """``count`` lines of a Docker-style build for ``repository``; the last one reports success
    (the engine writes it only when the build succeeds)."""
    steps = max(1, count - 3)
    lines = [_header(repository)]
    lines.append(f"Step 1/{steps + 1} : FROM {rng.choice(_BASES)}")
    for i in range(2, steps + 2):
        template = rng.choice(_STEPS)
        lines.append(f"Step {i}/{steps + 1} : {template.format(pkg=rng.choice(_PACKAGES))}")
        lines.append(f" ---> {_hex(rng, 12)}")
    lines.append(f"Successfully built {_hex(rng, 12)}")
    # Keep exactly ``count`` lines: the header and the success line always, steps as room allows.
    if len(lines) > count:
        lines = [*lines[: count - 1], lines[-1]]
    return lines


def failure_tail(reason: str) -> list[str]:
    """What a failed build prints last, when the caller gave no log tail of its own."""
    return [f"ERROR: {reason}", "Build failed."]


RUNNING, FINISHED, FAILED = 0, 1, 2
"""A build's ``ended``: still writing on the clock, finished (abandoned or successful), failed."""


@dataclass(slots=True, eq=False)
class Build:
    """An image build's log: what is written follows the clock until the build is finished.

    Ten slots (every stopped instance that built keeps one): what two flags or a flag and a
    counter can say in one slot shares it."""

    repository: str
    count: int
    """Lines in the text (the last one reports success)."""
    seed: int | list[str]
    """The text's own seed; once the text is drawn (or restored from a state file), the text."""
    started_at: SimTime
    duration: int
    clock: Clock = field(repr=False)
    """The world's simulated time (what is written depends on it)."""
    written: int = 0
    """Text lines written for certain: all of them that count once the build is finished."""
    ended: int = RUNNING
    """RUNNING, FINISHED or FAILED (a failed build is finished too)."""
    tail: tuple[str, ...] = ()
    """Lines written after the text (a failure's error tail)."""
    reported: int = -1
    """Text lines the observer was told of; -1 while nobody follows the build (someone reads
    the lines as they come: BUILD_LOG events report them to the observer)."""

    @property
    def finished(self) -> bool:
        return self.ended != RUNNING

    @property
    def failed(self) -> bool:
        return self.ended == FAILED

    @property
    def followed(self) -> bool:
        return self.reported >= 0

    @property
    def known_text(self) -> list[str] | None:
        """The text if drawn (or restored) already."""
        seed = self.seed
        return None if isinstance(seed, int) else seed

    @property
    def text(self) -> list[str]:
        """The whole text, drawn from the build's seed the first time it is needed."""
        seed = self.seed
        if isinstance(seed, int):
            seed = self.seed = build_log(random.Random(seed), self.repository, self.count)
        return seed

    def due(self, now: SimTime) -> int:
        """How many text lines are written at ``now``."""
        if self.finished or self.count <= 1:
            return self.written
        if self.duration <= 0:
            on_clock = self.count - 1
        elif now < self.started_at:
            on_clock = 0
        else:  # the largest k with started_at + duration * k // count <= now, plus line 0
            on_clock = min(
                self.count - 1, 1 + ((now - self.started_at + 1) * self.count - 1) // self.duration
            )
        return max(self.written, on_clock)

    def next_at(self, now: SimTime) -> SimTime | None:
        """When the next text line is written on the clock (None: none before the build ends)."""
        if self.finished or self.duration <= 0:
            return None
        k = self.due(now)
        if k >= self.count - 1:
            return None
        return max(self.started_at + self.duration * k // self.count, now)

    @property
    def lines(self) -> list[str]:
        """The lines written so far (a new list)."""
        n = self.due(self.clock())
        if n == 1 and not self.tail and self.known_text is None:
            return [_header(self.repository)]  # line 0 needs no draw
        return [*self.text[:n], *self.tail]

    @property
    def pending(self) -> list[str]:
        """The text lines not written yet."""
        return self.text[self.due(self.clock()) :]


def _header(repository: str) -> str:
    return f"Building workspace image for {repository or 'snapshot'}"
