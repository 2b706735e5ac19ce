"""What ``Client.events()`` yields, the client's own notices, and the bounded inbox.

Everything that happens in a sphere arrives as a ``Message`` in the sphere's order; its
``kind`` (``EventKind``) says what it is:

- ``post`` (a reply has ``reply_to``), ``edit``, ``delete``;
- ``react``/``unreact``: ``author_id`` added or withdrew ``emoji`` on the post at ``target``;
- ``pin``/``unpin``: the post at ``target`` was pinned or unpinned;
- ``member``: ``member_id`` now has ``role`` (None: no longer a member) because of ``action``
  (``MemberAction``): ``joined``, ``left``, ``added``, ``removed``, ``role_changed``,
  ``accepted`` (an invitation), ``admitted`` (a join request), ``banned``, ``unbanned``,
  ``muted`` (until ``until_ms``), ``unmuted``, ``deleted`` (the member's account was deleted:
  the posts it wrote lose their ``author_id``, None from then on, and with the event's
  ``deleted`` true they are erased too; forget the author of the posts you hold, drop their
  bodies if erased); ``MemberAction.ends_membership`` tells which take the member out (keep a
  member list current with it);
- ``sphere``: the settings after a change (type, listing, join policy, history, charter
  version: a higher ``charter_version`` than the one accepted means the new charter must be
  accepted before reading on: the sphere's subscription then ends with ``Unsubscribed``,
  reason ``charter``, and ``subscribe`` after ``accept_charter`` resumes where it stopped).

``Unsubscribed`` says why a subscription ended: ``access_revoked`` (removed, banned, type
changed), ``deleted`` (the sphere is gone) or ``charter``.

``EventKind`` and ``MemberAction`` are importable from here (and from ``clients``).
"""

from __future__ import annotations

import asyncio
import collections
from dataclasses import dataclass
from typing import Self

from clients.errors import RequestError
from protocol import (
    EventKind,
    MemberAction,
    Message,
    Presence,
    Replayed,
    SphereId,
    StreamPosition,
    Subscribed,
    Unsubscribed,
    UserTyping,
    Welcome,
)

__all__ = [
    "Connected",
    "Disconnected",
    "Event",
    "EventKind",
    "EventStream",
    "MemberAction",
    "PositionLost",
    "SubscriptionFailed",
]


@dataclass(frozen=True, slots=True)
class Connected:
    """A connection is authenticated; subscriptions are being restored if ``reconnected``."""

    welcome: Welcome
    reconnected: bool


@dataclass(frozen=True, slots=True)
class Disconnected:
    """The connection ended; the client reconnects after ``retry_in_s`` seconds."""

    close_code: int | None
    reason: str
    retry_in_s: float


@dataclass(frozen=True, slots=True)
class PositionLost:
    """The server could not resume the sphere after ``lost`` (its history was recreated or
    the position is unknown to it). The subscription restarted at ``position``: messages in
    between were not delivered; reload them with ``history`` if they matter."""

    sphere_id: SphereId
    lost: StreamPosition
    position: StreamPosition


@dataclass(frozen=True, slots=True)
class SubscriptionFailed:
    """A sphere could not be resubscribed (after a reconnect or to catch up); it is no longer
    followed. ``error`` says why (for example ``not_found`` once the user was removed)."""

    sphere_id: SphereId
    error: RequestError


# What ``events()`` yields: the server's event frames plus the client's own notices.
# ``Subscribed`` arrives each time a subscription (re)starts, with who is online then.
Event = (
    Message
    | Presence
    | UserTyping
    | Subscribed
    | Replayed
    | Unsubscribed
    | PositionLost
    | SubscriptionFailed
    | Connected
    | Disconnected
)


# ---------------------------------------------------------------------------------------------
# The inbox


class _Inbox:
    """A bounded FIFO of events between the reader and the application.

    ``offer`` refuses when full (the caller decides what a refusal means); ``force`` is for
    the notices that must not be lost (``PositionLost``, ``Unsubscribed``,
    ``SubscriptionFailed``): each ends or restarts a subscription, so at any time there are
    at most as many as the spheres followed, plus one per epoch change.
    """

    def __init__(self, max_events: int) -> None:
        self._events: collections.deque[Event] = collections.deque()
        self._max_events = max_events
        self._low_water = max_events // 2
        self._ready = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()
        self._closed = False
        self._failure: BaseException | None = None

    def offer(self, event: Event) -> bool:
        if self._closed:
            return True
        if len(self._events) >= self._max_events:
            self._room.clear()
            return False
        self._events.append(event)
        self._ready.set()
        return True

    def force(self, event: Event) -> None:
        if not self._closed:
            self._events.append(event)
            self._ready.set()

    def close(self, failure: BaseException | None = None) -> None:
        """No more events: ``get`` drains what is queued, then ends (or raises ``failure``)."""
        self._closed = True
        self._failure = failure
        self._ready.set()
        self._room.set()

    async def get(self) -> Event | None:
        """The next event, or None once closed and drained."""
        while not self._events:
            if self._closed:
                if self._failure is not None:
                    raise self._failure
                return None
            self._ready.clear()
            await self._ready.wait()
        event = self._events.popleft()
        if len(self._events) <= self._low_water:
            self._room.set()
        return event

    async def wait_room(self) -> None:
        """Return once the inbox is at most half full."""
        await self._room.wait()


class EventStream:
    """``async for event in client.events()``: ends when the client closes, raises
    ``ConnectionTerminatedError`` after a terminal close. Only one consumer should iterate."""

    def __init__(self, inbox: _Inbox) -> None:
        self._inbox = inbox

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> Event:
        event = await self._inbox.get()
        if event is None:
            raise StopAsyncIteration
        return event
