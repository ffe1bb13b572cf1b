"""Fan-out of engine events to the streams that follow an instance.

Each status change is encoded at most once, when the first listener needs it, and the same bytes
go to every listener. A subscription is a queue owned by one stream handler; the handler removes
it in ``finally`` (also when the client goes away and grpclib cancels the handler), so nothing is
left behind.

A subscription also keeps its stream's standing with autojump (``activity.py`` states the rule):
once its handler first asks for the :meth:`Subscription.next` item the stream *follows*: parked
(``waiting``) while its queue is empty, *behind* (``sending``) while it has news to send. Being
behind does not hold the clock, so a stream that writes slowly gets its messages later, in order,
while time moves on for everyone else.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass, field

from simulator.core.model import BuildLogLine, EngineEvent, InstanceStatus, StatusChange
from simulator.core.transitions import Phase
from simulator.server.activity import FOLLOWER, Activity
from simulator.server.convert import listen_payload, log_payload

MAX_QUEUED = 1024
"""Messages one stream may have waiting for its client; past that it ends (memory stays flat)."""


@dataclass(slots=True, eq=False)
class Delivery:
    """One status change for a listener, with the encoded response every listener shares."""

    change: StatusChange
    payload: bytes


class Closed(Exception):
    """The hub ended the subscription abnormally (shutdown, reset); ``code`` is a Status name."""

    def __init__(self, reason: str, code: str = "UNAVAILABLE") -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code


@dataclass(slots=True, eq=False)
class Subscription:
    hub: Hub
    instance_id: str
    kind: str
    """``status`` or ``logs``."""
    queue: deque[Delivery | bytes] = field(default_factory=deque)
    waiter: asyncio.Future[None] | None = None
    """What :meth:`next` awaits while the queue is empty (a bare future: an asyncio.Event
    made, appended and removed one more object per message)."""
    closed: str | None = None
    """Why the hub closed it; "" means a normal end (a finished build)."""
    closed_code: str = "UNAVAILABLE"
    following: bool = False
    """Its handler has asked for an item: it no longer holds the clock (activity.py)."""
    waiting: bool = False
    """Parked in :meth:`next` until there is news."""
    sending: bool = False
    """Following with news to send (queued, being written, or its end): behind."""
    paused: bool = False
    """Behind and blocked on its client (``Activity.pause``): not even I/O."""
    ending: bool = False
    """Its end is among its news (STOPPED queued, or closed): it no longer follows."""
    taken: int = 0
    """Items its handler took since it last parked: all but the last are sent (the last may
    still be waiting on the client)."""
    user_id: str | None = None
    """Who follows (None: not revoked by admission changes, e.g. an in-process listener)."""
    revoked: bool = False

    def _wake(self) -> None:
        # Behind at once, not when its task next runs: until it has sent what it was just
        # given, a jump to a timeout must wait (it counts as I/O); steps need not.
        if self.waiting:
            self.waiting = False
            self.sending = True
            self.hub.activity.news(self.ending)
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _end_coming(self) -> None:
        """Its stream ends once it has sent what it has: it no longer follows."""
        if not self.ending:
            self.ending = True
            if self.sending and not self.paused:
                self.hub.activity.ends()

    def push(self, item: Delivery | bytes, final: bool = False) -> None:
        """Queue ``item`` (``final``: the stream ends after it, e.g. STOPPED)."""
        if self.revoked:
            return
        if len(self.queue) >= MAX_QUEUED:  # its client does not keep up: bounded, then ended
            self.queue.clear()
            how = "takes none of them" if self.taken <= 1 else "takes them slower than they come"
            self.close(
                f"the client is {MAX_QUEUED} messages behind and {how}", "RESOURCE_EXHAUSTED"
            )
            return
        self.queue.append(item)
        if final:
            self._end_coming()
        self._wake()

    def close(self, reason: str, code: str = "UNAVAILABLE") -> None:
        if self.closed is None:
            self.closed = reason
            self.closed_code = code
            self._end_coming()
            self._wake()

    async def next(self) -> Delivery | bytes | None:
        """The next item; None after a normal close; raises Closed on shutdown."""
        queue = self.queue
        if queue:
            if self.sending:
                self.taken += 1
                return queue.popleft()
            if not self.following:  # news before it first asked: it follows, behind
                self._follow()
                self.sending = True
                self.hub.activity.behind(self.ending)
                self.taken += 1
                return queue.popleft()
        elif not self.following:
            self._follow()
        while not queue:
            if self.closed is not None:
                if self.closed:
                    raise Closed(self.closed, self.closed_code)
                return None
            waiter = self.waiter = asyncio.get_running_loop().create_future()
            activity = self.hub.activity
            if self.sending:  # caught up
                self.sending = False
                self.taken = 0
                self.waiting = True
                activity.caught_up(self.ending)
                self.ending = False
            else:  # it held the clock until now
                self.waiting = True
                activity.wait_started()
            try:
                await waiter
            finally:
                self.waiter = None
                if self.waiting:  # cancelled while parked (client went away)
                    self.waiting = False
                    activity.wait_ended()
        self.taken += 1
        return queue.popleft()

    def _follow(self) -> None:
        self.following = True
        FOLLOWER.set(self)  # in the stream's own task: its pauses are a follower's

    def cancel(self) -> None:
        """Its handler is done with it (in ``finally``): it stops following."""
        if self.sending:
            self.sending = False
            self.hub.activity.left(self.ending)
        self.hub.unsubscribe(self)


class Hub:
    """Subscriptions by instance id, fed by the engine's observer."""

    def __init__(self, activity: Activity) -> None:
        self.activity = activity
        # Insertion-ordered dicts used as sets: listeners are woken in the order they joined,
        # so two runs with the same calls journal the same order (a set's order is by address).
        self._status: dict[str, dict[Subscription, None]] = {}
        self._logs: dict[str, dict[Subscription, None]] = {}
        self.shutting_down: str | None = None
        self._current: dict[str, tuple[int, bytes]] = {}

    def current_payload(self, instance_id: str, status: InstanceStatus) -> bytes:
        """The encoded current status, shared by every listener that joins while it is current."""
        cached = self._current.get(instance_id)
        if cached is not None and cached[0] == status.version:
            return cached[1]
        payload = listen_payload(status)
        self._current[instance_id] = (status.version, payload)
        return payload

    def subscribe_status(self, instance_id: str, user_id: str | None = None) -> Subscription:
        return self._add(self._status, instance_id, "status", user_id)

    def subscribe_logs(self, instance_id: str, user_id: str | None = None) -> Subscription:
        return self._add(self._logs, instance_id, "logs", user_id)

    def _add(
        self,
        table: dict[str, dict[Subscription, None]],
        instance_id: str,
        kind: str,
        user_id: str | None,
    ) -> Subscription:
        sub = Subscription(self, instance_id, kind, user_id=user_id)
        if self.shutting_down is not None:
            sub.close(self.shutting_down)
        table.setdefault(instance_id, {})[sub] = None
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        table = self._status if sub.kind == "status" else self._logs
        subs = table.get(sub.instance_id)
        if subs is not None:
            subs.pop(sub, None)
            if not subs:
                del table[sub.instance_id]
                if sub.kind == "status":
                    self._current.pop(sub.instance_id, None)

    def listener_count(self, instance_id: str) -> int:
        """Listen streams on the instance: status subscriptions of a user (StopWorkspace's own
        watch has none)."""
        return sum(1 for sub in self._status.get(instance_id, ()) if sub.user_id is not None)

    def subscription_count(self) -> int:
        return sum(len(s) for s in self._status.values()) + sum(len(s) for s in self._logs.values())

    def publish(self, event: EngineEvent) -> None:
        """The engine's observer: deliver ``event`` to whoever follows its instance."""
        if isinstance(event, StatusChange):
            previous = event.previous
            if (
                previous is not None
                and previous.admission_everyone
                and not event.status.admission_everyone
            ):
                self._revoke(event.instance_id, event.owner_id)
            subs = self._status.get(event.instance_id)
            if subs:
                payload = listen_payload(event.status)
                self._current[event.instance_id] = (event.status.version, payload)
                delivery = Delivery(event, payload)
                final = event.status.phase is Phase.STOPPED  # every status stream ends there
                for sub in subs:
                    sub.push(delivery, final)
            if (
                previous is not None
                and previous.phase is Phase.IMAGEBUILD
                and (event.status.phase is not Phase.IMAGEBUILD)
            ):
                for sub in self._logs.get(event.instance_id, ()):
                    sub.close("")  # the build is over: log streams end normally
        elif isinstance(event, BuildLogLine):
            subs = self._logs.get(event.instance_id)
            if subs:
                payload = log_payload(event.line)
                for sub in subs:
                    sub.push(payload)

    def _revoke(self, instance_id: str, owner_id: str) -> None:
        """Unshared: whoever else follows the instance may no longer read it, and is told what
        a unary call would answer them (NOT_FOUND), before the change that unshared it."""
        for table in (self._status, self._logs):
            for sub in table.get(instance_id, ()):
                if sub.user_id is not None and sub.user_id != owner_id and not sub.revoked:
                    sub.queue.clear()
                    sub.revoked = True
                    sub.closed = None  # a normal end must not win over the revocation
                    sub.close(f"workspace instance {instance_id} does not exist", "NOT_FOUND")

    def close_all(self, reason: str, code: str = "UNAVAILABLE", *, final: bool = True) -> None:
        """End every stream. ``final`` (shutdown): later subscriptions are closed at once too."""
        if final:
            self.shutting_down = reason
        for table in (self._status, self._logs):
            for subs in table.values():
                for sub in subs:
                    sub.close(reason, code)
        self._current.clear()
