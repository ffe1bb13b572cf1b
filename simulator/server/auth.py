"""Who is calling: the ``authorization`` metadata -> a user (BEHAVIOUR.md, "Callers")."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from simulator.core.errors import Unauthenticated
from simulator.core.model import User


def bearer_token(metadata: Any) -> str:
    """The token in ``authorization``: ``Bearer <token>`` or a bare ``<token>``.

    Raises Unauthenticated with upstream's messages when the header is missing or repeated.
    """
    if not metadata:
        raise Unauthenticated("no credentials provided")
    values = metadata.getall("authorization", [])
    if not values:
        raise Unauthenticated("no authorization header specified")
    if len(values) > 1:
        raise Unauthenticated(
            "more than one authorization header specified, exactly one is required"
        )
    value = str(values[0]).strip()
    scheme, _, rest = value.partition(" ")
    token = rest.strip() if scheme.lower() == "bearer" else value
    if not token:
        raise Unauthenticated("empty authorization token")
    return token


def user_for(token: str, lookup: Callable[[str], User | None]) -> User:
    """The user whose token ``token`` is (from :func:`bearer_token`)."""
    user = lookup(token)
    if user is None:
        raise Unauthenticated("invalid credentials: unknown token")
    return user
