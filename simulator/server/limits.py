"""The limits a shared server keeps so that no client can freeze, exhaust or crash it for others.

One frozen value, handed to the :class:`~simulator.server.runtime.Simulator` and read by the
transports (``h2_guard.py`` on the gRPC port, ``connect_gateway.py`` on the HTTP port) and the
connection accounting (``connections.py``); its per-user ``quotas`` go to every world's engine
(:mod:`simulator.core.quotas`). The defaults follow what trusted gRPC servers do:
grpc-go's and Envoy's 4 MiB maximum receive size, h2's 100 concurrent streams, Envoy's rule for
HTTP/2 rapid reset (CVE-2023-44487: close a connection whose streams are mostly reset within a
second of opening), and an idle timeout for connections with no open stream (Envoy's
``idle_timeout``, grpc-go's ``MaxConnectionIdle``), shortened for a simulator.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from simulator.core.quotas import Quotas

MIB = 1024 * 1024
DEFAULT_MAX_REQUEST_BYTES = 4 * MIB
DEFAULT_MAX_CONNECTIONS = 512
DEFAULT_IDLE_TIMEOUT = 300.0
DEFAULT_MAX_CONCURRENT_STREAMS = 100
DEFAULT_RAPID_RESET_STREAMS = 200
DEFAULT_JOURNAL_BYTES = 32 * MIB
DEFAULT_STALL_TIMEOUT = 5.0
PREMATURE_RESET_SECONDS = 1.0
"""A stream the client resets sooner than this after opening it counts as a premature reset."""


@dataclass(frozen=True, slots=True)
class Limits:
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES
    """Largest request message accepted, after decompression (both ports); larger ones end
    with RESOURCE_EXHAUSTED before they are read or decoded."""
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    """Client connections open at once, both ports together. At the cap a new connection
    closes the one idle the longest, or is refused when none is idle (kept well below the
    usual 1,024 file descriptors, so the server never runs out of them)."""
    idle_timeout: float = DEFAULT_IDLE_TIMEOUT
    """Seconds of real time a connection may stay open with no stream or request in progress
    (0: never closed for idling)."""
    max_concurrent_streams: int = DEFAULT_MAX_CONCURRENT_STREAMS
    """HTTP/2 streams one connection may have open (SETTINGS_MAX_CONCURRENT_STREAMS)."""
    rapid_reset_streams: int = DEFAULT_RAPID_RESET_STREAMS
    """A connection whose client has reset this many streams prematurely, and those are more
    than half of its streams, is closed with GOAWAY ENHANCE_YOUR_CALM (0: never)."""

    stall_timeout: float = DEFAULT_STALL_TIMEOUT
    """Seconds of real time a stream may take none of its messages (an HTTP/2 window of 0)
    before it ends with RESOURCE_EXHAUSTED (0: never). While blocked it does not hold the
    autojump clock, nor does a call whose request is still arriving."""
    journal_bytes: int = DEFAULT_JOURNAL_BYTES
    """What the journal may hold, about (besides ``--journal-size`` entries): the oldest go."""
    quotas: Quotas = field(default_factory=Quotas)
    """What one user may make each world keep (workspaces, page tokens, idempotency records)."""

    def __post_init__(self) -> None:
        for name in (
            "max_request_bytes", "max_connections", "max_concurrent_streams", "journal_bytes",
        ):  # fmt: skip
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.stall_timeout < 0:
            raise ValueError(f"stall_timeout must be >= 0 seconds, got {self.stall_timeout}")
        if self.idle_timeout < 0:
            raise ValueError(f"idle_timeout must be >= 0 seconds, got {self.idle_timeout}")
        if self.rapid_reset_streams < 0:
            raise ValueError(f"rapid_reset_streams must be >= 0, got {self.rapid_reset_streams}")


DEFAULT_LIMITS = Limits()
"""The defaults (one frozen value: every world without limits of its own shares it)."""


_SIZE = re.compile(r"(\d+)\s*(B|KiB|MiB|GiB|KB|MB|GB)?", re.IGNORECASE)
_UNITS = {
    "b": 1, "kib": 1024, "mib": MIB, "gib": 1024 * MIB, "kb": 1000, "mb": 10**6, "gb": 10**9,
}  # fmt: skip


def parse_size(text: str) -> int:
    """``4MiB``, ``512KiB``, ``1000000`` (bytes) -> a number of bytes."""
    match = _SIZE.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"not a size: {text!r} (expected e.g. 4MiB, 512KiB or a number of bytes)")
    number, unit = match.groups()
    return int(number) * _UNITS[(unit or "b").lower()]


def format_size(size: int) -> str:
    for unit, factor in (("GiB", 1024 * MIB), ("MiB", MIB), ("KiB", 1024)):
        if size >= factor and size % factor == 0:
            return f"{size // factor} {unit}"
    return f"{size} bytes"
