"""The seeded random streams of one engine: one independent stream per purpose, all from the seed.

Separate streams keep answers stable under unrelated change: issuing a page token never shifts an
instance id. Their states are saved with the
engine's, so an export and an import go on drawing exactly what the original would have.
"""

from __future__ import annotations

import random
from typing import Any

STREAMS = ("ids", "tokens", "durations", "logs", "pages")


class RandomStreams:
    """``ids`` (workspace and instance ids), ``tokens`` (generated user tokens; owner tokens come
    from each user's own key, :func:`ids.user_key`), ``durations``
    (phase durations), ``logs`` (build log text), ``pages`` (page tokens). The fault book keeps
    its own stream (the probability of RPC error faults)."""

    __slots__ = STREAMS

    def __init__(self, seed: int) -> None:
        self.ids = random.Random(f"gitpod-sim:{seed}:ids")
        self.tokens = random.Random(f"gitpod-sim:{seed}:tokens")
        self.durations = random.Random(f"gitpod-sim:{seed}:durations")
        self.logs = random.Random(f"gitpod-sim:{seed}:logs")
        self.pages = random.Random(f"gitpod-sim:{seed}:pages")

    def save(self) -> dict[str, list[Any]]:
        """Every stream's state, JSON-ready (keys as state files have always named them)."""
        out: dict[str, list[Any]] = {}
        for name in STREAMS:
            version, internal, gauss = getattr(self, name).getstate()
            out[f"_rng_{name}"] = [version, list(internal), gauss]
        return out

    def restore(self, data: dict[str, list[Any]]) -> None:
        """Put every stream in the state ``data`` (from :meth:`save`) says."""
        for name in STREAMS:
            version, internal, gauss = data[f"_rng_{name}"]
            getattr(self, name).setstate((version, tuple(internal), gauss))
