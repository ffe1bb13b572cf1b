"""A fresh session on a server, from the client side: what the ``gitpod_session`` fixture, the
scenario runner (``scenario run --target ... --session NAME``) and any test harness that wants
one isolated world per test (the contract suite's hook: one example per session) build on.

::

    async with open_session(channel, admin_token, "test-42", seed=7, users={"alice": None}) as s:
        api = s.client("alice")      # every call carries x-gitpod-sim-session: test-42
        ...                          # the session is deleted on leaving the block
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from grpclib.client import Channel

from simulator._proto.gitpod import v1 as pb
from simulator._proto.gitpod.simulator import v1 as spb

SESSION_KEY = "x-gitpod-sim-session"
MAX_NAME = 64
_MODES = {
    "manual": spb.ClockMode.MANUAL,
    "realtime": spb.ClockMode.REALTIME,
    "autojump": spb.ClockMode.AUTOJUMP,
}


def session_name(*parts: str) -> str:
    """A valid session name made of ``parts`` (e.g. the xdist worker and the test's name):
    other characters become ``-``; a name over 64 characters keeps its start and a hash of the
    whole, so two long test names stay two sessions."""
    text = re.sub(r"[^A-Za-z0-9._-]+", "-", "-".join(p for p in parts if p)).strip("-") or "s"
    if len(text) <= MAX_NAME:
        return text
    digest = hashlib.sha256(text.encode()).hexdigest()[:12]
    return f"{text[: MAX_NAME - 13]}-{digest}"


@dataclass
class Session:
    """One session on a server, as a client uses it."""

    name: str
    seed: int
    tokens: dict[str, str]
    """User id -> token (drawn from the seed where none was given)."""
    channel: Channel
    admin_token: str
    sim: Any = None
    """The session's :class:`~simulator.Simulator` when the server runs in this process."""

    def client(self, user: str | None = None) -> pb.WorkspacesServiceStub:
        """A WorkspacesService stub of ``user`` (default: the first) in this session."""
        name = user if user is not None else next(iter(self.tokens))
        return pb.WorkspacesServiceStub(
            self.channel,
            metadata={"authorization": f"Bearer {self.tokens[name]}", SESSION_KEY: self.name},
        )

    def control(self) -> spb.SimulatorServiceStub:
        """The control plane of this session (clock, plans, faults, journal, state)."""
        return spb.SimulatorServiceStub(
            self.channel,
            metadata={"authorization": f"Bearer {self.admin_token}", SESSION_KEY: self.name},
        )


async def create_session(
    channel: Channel,
    admin_token: str,
    name: str,
    *,
    seed: int | None = None,
    clock: str = "manual",
    speed: float | None = None,
    autojump_grace: dt.timedelta | None = None,
    users: Mapping[str, str | None] | None = None,
) -> Session:
    """CreateSession on the server behind ``channel``; answers the session with its tokens."""
    admin = spb.SimulatorServiceStub(channel, metadata={"authorization": f"Bearer {admin_token}"})
    response = await admin.create_session(
        spb.CreateSessionRequest(
            name=name,
            seed=seed,
            clock_mode=_MODES[clock],
            speed=speed,
            autojump_grace=autojump_grace,
            users=[spb.SessionUser(user_id=u, token=t or "") for u, t in (users or {}).items()],
        )
    )
    assert response.session is not None
    tokens = {u.user_id: u.token for u in response.users}
    return Session(name, response.session.seed, tokens, channel, admin_token)


async def delete_session(channel: Channel, admin_token: str, name: str) -> None:
    admin = spb.SimulatorServiceStub(channel, metadata={"authorization": f"Bearer {admin_token}"})
    await admin.delete_session(spb.DeleteSessionRequest(name=name))


@asynccontextmanager
async def open_session(
    channel: Channel,
    admin_token: str,
    name: str,
    *,
    seed: int | None = None,
    clock: str = "manual",
    speed: float | None = None,
    autojump_grace: dt.timedelta | None = None,
    users: Mapping[str, str | None] | None = None,
) -> AsyncIterator[Session]:
    """A session for the block, deleted on leaving it (whatever happened inside)."""
    session = await create_session(
        channel,
        admin_token,
        name,
        seed=seed,
        clock=clock,
        speed=speed,
        autojump_grace=autojump_grace,
        users=users,
    )
    try:
        yield session
    finally:
        await delete_session(channel, admin_token, name)
