"""Who is talking to the simulator right now: the input of autojump's rule.

The rule. Autojump may move time to the next *step* while at least one stream follows the
simulator and no call holds the clock:

- a call holds the clock while it is being handled: every unary call, and a stream until it
  starts following (its request read, the caller admitted, the current state sent);
- a stream *follows* once it waits on the hub (:class:`~simulator.server.broadcast.Subscription`)
  for news: parked with nothing to send (``waiting``), or *behind*: it has news queued (status
  changes, log lines) or is writing them (``sending``). A stream that is behind does not hold the
  clock: time moves on, and it gets every message, in order, later (up to the hub's per-stream
  bound, ``MAX_QUEUED``, past which it ends with RESOURCE_EXHAUSTED);
- a stream whose end is among its news (STOPPED queued, or the hub closed it: a finished build,
  a revocation, the bound, shutdown) no longer follows: it neither holds the clock nor lets it
  move (``final`` of the streams behind);
- a call blocked on its client (its request still arriving, its writes waiting on the client's
  flow control or a full socket: :meth:`Activity.pause`) neither holds the clock nor follows,
  whatever it was doing.

A jump to a *timeout* (``EventKind.is_timeout``) needs more: no stream is writing (a stream that
is behind and not blocked on its client counts as I/O), and then ``grace`` seconds of real time
without any message in or out. So a client that has just been sent RUNNING, and acts on it, is not
overtaken by the inactivity timeout while its messages are still on their way; a client that
takes nothing holds neither steps nor timeouts.

Only *when* the clock may move depends on this; what the engine does at each instant does not.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextvars import ContextVar
from typing import Protocol


class Follower(Protocol):
    """A following stream as :meth:`Activity.pause` sees it (a hub subscription)."""

    sending: bool
    paused: bool
    ending: bool


FOLLOWER: ContextVar[Follower | None] = ContextVar("gitpod_sim_follower", default=None)
"""The subscription the current task's stream follows (set by the stream's own task when it
starts following): a pause during its writes is the pause of a stream that is behind."""


class Activity:
    __slots__ = ("_wall", "busy", "calls", "final", "last_io", "on_change", "sending", "waiting")

    def __init__(self, wall: Callable[[], float] = time.monotonic) -> None:
        self._wall = wall
        self.busy = 0
        self.calls = 0
        """Calls received since start (tests use it to know a request has arrived)."""
        """Calls being handled and not blocked on their client, streams included while they
        are not parked (``sending`` of them are behind: they do not hold the clock)."""
        self.sending = 0
        """Streams behind and not blocked on their client (part of ``busy``): they hold no
        step, and count as I/O before a timeout."""
        self.final = 0
        """Of ``sending``, the streams whose end is among their news: they do not follow."""
        self.waiting = 0
        """Streams parked until the simulator has something to send them."""
        self.last_io = wall()
        self.on_change: Callable[[], None] = lambda: None

    # on_change (the clock driver's kick) only when the change may let autojump move: nothing
    # holds the clock and a stream follows, or (for a timeout) the last stream that was behind
    # has caught up. Otherwise the driver, looking again, would find it may not jump and sleep
    # on (a fan-out to 1,000 streams kicked it 1,000 times per step).

    def call_started(self) -> None:
        self.calls += 1
        self.busy += 1
        self.last_io = self._wall()

    def call_ended(self) -> None:
        self.busy -= 1
        self.last_io = self._wall()
        if self.may_jump:
            self.on_change()

    def wait_started(self) -> None:
        """A call that held the clock parks until there is news (or until simulated time
        passes: a latency fault)."""
        self.busy -= 1
        self.waiting += 1
        if self.may_jump:  # final <= sending and a stream now waits: busy == sending decides
            self.on_change()

    def wait_ended(self) -> None:
        """A parked call holds the clock again (it ends, or its simulated wait is over)."""
        self.waiting -= 1
        self.busy += 1

    def behind(self, final: bool) -> None:
        """A stream that held the clock starts following with news already queued (``final``:
        its end among them)."""
        self.sending += 1
        self.final += final
        if self.may_jump:
            self.on_change()

    def news(self, final: bool) -> None:
        """A parked stream has news: it is behind (holds nothing; counts as I/O)."""
        self.waiting -= 1
        self.busy += 1
        self.sending += 1
        self.final += final

    def ends(self) -> None:
        """A stream behind (not blocked on its client) learns that its end is among its news."""
        self.final += 1

    def caught_up(self, final: bool) -> None:
        """A stream that was behind has sent everything and parks."""
        self.sending -= 1
        self.final -= final
        self.busy -= 1
        self.waiting += 1
        if not self.sending and not self.busy:
            self.on_change()  # a timeout may be next

    def left(self, final: bool) -> None:
        """A stream that was behind stops following (it ends): a call being handled again
        until the boundary ends it, at once."""
        self.sending -= 1
        self.final -= final

    def pause(self) -> None:
        """A call being handled is blocked on its client (its request still arriving, or it
        takes none of its messages): it does not hold the clock for everyone meanwhile, nor, if
        it is a stream that is behind, count as I/O or as following."""
        self.busy -= 1
        follower = FOLLOWER.get()
        if follower is not None and follower.sending and not follower.paused:
            follower.paused = True
            self.sending -= 1
            self.final -= follower.ending
        if self.may_jump:
            self.on_change()

    def resume(self) -> None:
        self.busy += 1
        follower = FOLLOWER.get()
        if follower is not None and follower.paused:
            follower.paused = False
            self.sending += 1
            self.final += follower.ending

    def io(self) -> None:
        """A message was received or sent."""
        self.last_io = self._wall()

    @property
    def may_jump(self) -> bool:
        """Time may move to the next step: a stream follows and no call holds the clock."""
        return self.busy == self.sending and self.waiting + self.sending > self.final

    @property
    def may_time_out(self) -> bool:
        """Time may move to a timeout once ``grace`` has passed since the last I/O: as
        :attr:`may_jump`, and no stream is behind (writing is I/O)."""
        return self.busy == 0 and self.sending == 0 and self.waiting > 0

    def quiet_for(self) -> float:
        """Seconds of real time since the last message in or out."""
        return self._wall() - self.last_io
