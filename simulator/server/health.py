"""The standard health service (``grpc.health.v1.Health``), for probes and load balancers.

Why so little: the simulator is in memory and has nothing that can fail, so every served service
(and the server itself, ``""``) is SERVING while the server runs. Messages come from the private
descriptor pool, never from Google's default one (see reflection.py for why).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

from grpclib.const import Cardinality, Handler, Status
from grpclib.exceptions import GRPCError
from grpclib.server import Stream

from simulator.server.deferred import LazyHandler
from simulator.server.reflection import deferred_message_class

HEALTH_SERVICE = "grpc.health.v1.Health"
SERVING = 1
SERVICE_UNKNOWN = 3


class Health:
    """Check and Watch over raw grpclib streams (no state: one serves every world)."""

    def __init__(self, names: Iterable[str]) -> None:
        self._names = {"", *names}
        self._request = deferred_message_class("grpc.health.v1.HealthCheckRequest")
        self._response = deferred_message_class("grpc.health.v1.HealthCheckResponse")
        self._mapping: dict[str, Handler] | None = None

    def __mapping__(self) -> dict[str, Handler]:
        if self._mapping is None:
            self._mapping = self._build_mapping()
        return self._mapping

    def _build_mapping(self) -> dict[str, Handler]:
        prefix = f"/{HEALTH_SERVICE}"
        return {
            f"{prefix}/Check": LazyHandler(
                self._check, Cardinality.UNARY_UNARY, self._request, self._response
            ),
            f"{prefix}/Watch": LazyHandler(
                self._watch, Cardinality.UNARY_STREAM, self._request, self._response
            ),
        }

    async def _check(self, stream: Stream[Any, Any]) -> None:
        request = await stream.recv_message()
        if request is None or request.service not in self._names:
            raise GRPCError(Status.NOT_FOUND, "unknown service")
        await stream.send_message(self._response.get()(status=SERVING))

    async def _watch(self, stream: Stream[Any, Any]) -> None:
        """The status once; statuses never change, so then wait for the client to leave (its
        deadline or cancel ends the wait, as does the server closing)."""
        request = await stream.recv_message()
        known = request is not None and request.service in self._names
        response = self._response.get()
        await stream.send_message(response(status=SERVING if known else SERVICE_UNKNOWN))
        await asyncio.get_running_loop().create_future()  # never set: only a cancel ends it


def health_service(names: Iterable[str]) -> Health:
    """A Health service that reports SERVING for each of ``names`` and for the server."""
    return Health(names)
