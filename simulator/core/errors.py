"""The engine's errors. Each names the gRPC status it maps to, so the adapter stays a lookup.

The engine knows nothing of gRPC; ``code`` is the status *name* (``"NOT_FOUND"``), turned into a
``grpclib.const.Status`` at the edge.
"""

from __future__ import annotations

from typing import ClassVar

MAX_MESSAGE = 1024
"""Messages echo what the caller sent; a 4 MiB id must not come back as a 4 MiB trailer."""


def clip(text: str, limit: int = MAX_MESSAGE) -> str:
    return text if len(text) <= limit else text[: limit - 12] + "… (clipped)"


class SimError(Exception):
    """Base class: a request the simulator refuses, with a message meant for the caller."""

    code: ClassVar[str] = "UNKNOWN"

    def __init__(self, message: str) -> None:
        message = clip(message)
        super().__init__(message)
        self.message = message


class InvalidArgument(SimError):
    code = "INVALID_ARGUMENT"


class NotFound(SimError):
    code = "NOT_FOUND"


class FailedPrecondition(SimError):
    code = "FAILED_PRECONDITION"


class PermissionDenied(SimError):
    code = "PERMISSION_DENIED"


class Unauthenticated(SimError):
    code = "UNAUTHENTICATED"


class AlreadyExists(SimError):
    code = "ALREADY_EXISTS"


class ResourceExhausted(SimError):
    code = "RESOURCE_EXHAUSTED"


# Upstream's wording, kept where the spec quotes it.
WORKSPACE_NOT_FOUND = "workspace does not exist"
INSUFFICIENT_PERMISSION = "insufficient permission to access workspace"
