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

    __slots__ = (*STREAMS, "_seed")

    ids: random.Random
    tokens: random.Random
    durations: random.Random
    logs: random.Random
    pages: random.Random

    def __init__(self, seed: int) -> None:
        # Each stream is seeded on its first use (about 30 us apiece): a new world, e.g. a
        # session, pays only for the streams it draws from. The draws are the same either way.
        self._seed = seed

    def __getattr__(self, name: str) -> random.Random:
        """Called only for a stream not made yet (a set slot never comes here)."""
        if name not in STREAMS:
            raise AttributeError(name)
        stream = random.Random(f"gitpod-sim:{self._seed}:{name}")
        setattr(self, name, stream)
        return stream

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
