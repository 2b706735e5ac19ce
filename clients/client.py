"""The asyncio SDK: a ``Client`` holds one user's connection and keeps it alive.

Theory of operation: ``connect()`` starts one background task that owns the WebSocket. It
connects, authenticates, then reads frames in order and never blocks on the application:

- replies go to the request that sent the same ``ref`` (a future per request);
- events (messages, presence, typing, subscription changes) go to a bounded inbox that the
  application drains with ``events()``.

Message delivery follows ``clients/_reconnect.py``: a ``Cursor`` per sphere remembers the last
message handed over, duplicates are dropped and a gap makes the client resubscribe from the
cursor. A full inbox is handled like a gap: the message is dropped and the sphere catches up
from its cursor once the application has drained half the inbox. Blocking the reader instead
would also hold back replies, and a handler that awaits a reply while the application is
behind would deadlock.

When the connection drops, or closes with a code that says so, the task waits a jittered
backoff and reconnects. Writes wait in an outbox until answered: a new connection first resends
them, oldest first and with the same ``message_id`` (the server stores each key once), then
lets other requests through, then resubscribes every sphere with ``since`` = its cursor. A
write answered with a retryable error (``rate_limited``, ``unavailable``, ``unknown``: the
server cannot tell whether it was stored, ``internal``) is resent the same way, with the same
``message_id``, so a write that did land is answered ``duplicate`` rather than stored twice. A
terminal close (4500 and up) stops the task: pending calls and the event iterator raise
``ConnectionTerminatedError``.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Self, TypeVar
from urllib.parse import urlsplit, urlunsplit

import websockets
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import (
    ConnectionClosed,
    InvalidHandshake,
    InvalidStatus,
    InvalidURI,
)
from websockets.typing import Subprotocol

from clients._reconnect import (
    MAX_UNLISTED_CLOSES,
    Backoff,
    Cursor,
    Verdict,
    is_listed,
    should_reconnect,
)
from protocol import (
    MAX_SERVER_FRAME_BYTES,
    PROTOCOL_VERSION,
    Ack,
    AddMember,
    Auth,
    Batch,
    ClientFrame,
    CloisonError,
    Codec,
    CreateSphere,
    Delete,
    Edit,
    ErrorCode,
    ErrorReply,
    Frame,
    History,
    HistoryPage,
    Join,
    JsonCodec,
    Leave,
    Limits,
    ListMembers,
    ListSpheres,
    MarkRead,
    MemberInfo,
    MemberList,
    Message,
    MessageId,
    MsgpackCodec,
    Ok,
    Ping,
    Pong,
    Presence,
    Privacy,
    ProtocolViolation,
    Publish,
    RemoveMember,
    Replayed,
    Role,
    SetRole,
    SphereId,
    SphereInfo,
    SphereList,
    SphereSummary,
    StreamPosition,
    Subscribe,
    Subscribed,
    Typing,
    Unsubscribe,
    Unsubscribed,
    UpdateSphere,
    UserId,
    UserTyping,
    Welcome,
)

logger = logging.getLogger(__name__)

Encoding = Literal["json", "msgpack"]
F = TypeVar("F", bound=Frame)

# Why: enough to absorb a burst of a few hundred messages while a handler runs, small enough
# that an application that stopped reading costs little memory (it catches up from its cursor).
DEFAULT_MAX_EVENTS = 1000
# Why: history pages are capped by the server (200); 50 is its own default.
DEFAULT_PAGE_SIZE = 50
# Why: the server drops idle connections after ``idle_timeout_ms``; pinging at a third of it
# leaves two chances before that (docs/protocol.md section 18).
PING_FRACTION = 3
# Why: a close handshake with a dead peer should not hold up a reconnect or a shutdown.
CLOSE_TIMEOUT_S = 2.0


# ---------------------------------------------------------------------------------------------
# Errors


class ClientError(Exception):
    """Base of the errors this SDK raises."""


class RequestError(ClientError, CloisonError):
    """The server answered a request with an ``error`` frame.

    ``code`` is the ``ErrorCode`` (``internal`` for a code this SDK does not know, whose wire
    value stays in ``wire_code``); ``retryable`` and ``retry_after_ms`` are the server's.
    """

    def __init__(self, reply: ErrorReply) -> None:
        try:
            code = ErrorCode(reply.code)
        except ValueError:
            code = ErrorCode.INTERNAL
        super().__init__(reply.message, code=code)
        self.wire_code = reply.code
        self.retryable = reply.retryable
        self.retry_after_ms = reply.retry_after_ms
        self.ref = reply.ref

    def __str__(self) -> str:
        return f"{self.wire_code}: {self.message}"


class ConnectionTerminatedError(ClientError):
    """The server ended the connection with a code that says not to reconnect (or the client
    gave up); a new token or a fixed client is needed before trying again."""

    def __init__(self, message: str, *, close_code: int | None = None) -> None:
        super().__init__(message)
        self.close_code = close_code


class ConnectionLostError(ClientError):
    """The connection dropped before the reply to a request that is not safe to resend;
    the request may or may not have taken effect."""


class ClientClosedError(ClientError):
    """The client was closed (``aclose``) before or while the call ran."""


class _ConnectionLost(Exception):
    """Internal: the connection a request went out on is gone."""


# ---------------------------------------------------------------------------------------------
# Events the client adds to the server's frames


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


class HistoryIterator:
    """``async for message in client.history(sphere_id)``: posts from newest to oldest,
    fetched one page at a time as the iteration goes back in time."""

    def __init__(
        self, client: Client, sphere_id: SphereId, before: int | None, page_size: int
    ) -> None:
        self._client = client
        self._sphere_id = sphere_id
        self._before = before
        self._page_size = page_size
        self._page: list[Message] = []
        self._more = True

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> Message:
        if not self._page:
            if not self._more:
                raise StopAsyncIteration
            page = await self._client.history_page(
                self._sphere_id, before=self._before, limit=self._page_size
            )
            self._page = list(page.messages)  # ascending; popped from the end
            self._more = page.has_more and bool(page.messages)
            if page.messages:
                self._before = page.messages[0].offset
            if not self._page:
                raise StopAsyncIteration
        return self._page.pop()


# ---------------------------------------------------------------------------------------------
# The client


@dataclass(frozen=True, slots=True)
class _Ending:
    """How one connection ended."""

    close_code: int | None
    reason: str
    uptime_s: float  # 0 when it never got past the handshake


class _SessionEnded(Exception):
    """Internal: the reader finished; ends the connection's task group."""


@dataclass(slots=True, eq=False)
class _Write:
    """A write in the outbox: how to build its frame, and its reply once one comes."""

    make: Callable[[str], ClientFrame]
    reply: asyncio.Future[Frame]
    sent_on: ClientConnection | None = None


def _discard(reply: asyncio.Future[Frame]) -> None:
    """Settle a reply nobody awaits any more, so asyncio does not report it as lost."""
    if not reply.done():
        reply.cancel()
    elif not reply.cancelled():
        reply.exception()


def _expect(reply: Frame, kind: type[F]) -> F:
    if not isinstance(reply, kind):
        raise ProtocolViolation(f"expected {kind.TYPE}, got {reply.TYPE}")
    return reply


def new_message_id() -> MessageId:
    """A fresh idempotency key for a write (a random UUID, 32 hex characters)."""
    return MessageId(uuid.uuid4().hex)


def ws_url(url: str) -> str:
    """The WebSocket endpoint for ``url``: ``http(s)`` becomes ``ws(s)`` and a bare host
    gets the ``/ws`` path, so ``http://localhost:8000`` works as well as the full URL."""
    parts = urlsplit(url)
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme)
    path = parts.path if parts.path not in ("", "/") else "/ws"
    return urlunsplit((scheme, parts.netloc, path, parts.query, ""))


class Client:
    """One authenticated connection to a Cloison server, reconnecting and resuming by itself.

    Use it as an async context manager (or call ``connect()`` then ``aclose()``)::

        async with Client("ws://localhost:8000/ws", token) as client:
            await client.subscribe(sphere_id)
            await client.publish(sphere_id, "hello")
            async for event in client.events():
                ...

    Args:
        url: The server's ``/ws`` URL (``http://host:port`` is accepted too).
        token: A user's or bot's token, ``clo_<token_id>_<secret>``.
        encoding: ``"json"`` or ``"msgpack"``.
        reconnect: Reconnect after a drop or a reconnect close code; when False the first
            loss is final (calls raise ``ConnectionTerminatedError``).
        backoff: Delays between reconnect attempts.
        connect_timeout_s: Bound on one connect + authenticate attempt, and on ``connect()``.
        request_timeout_s: Bound on a request, resends included.
        write_timeout_s: Bound on ``publish``/``edit``/``delete``, resends across reconnects
            included.
        max_events: Capacity of the event inbox (see the module docstring).
    """

    def __init__(
        self,
        url: str,
        token: str,
        *,
        encoding: Encoding = "json",
        reconnect: bool = True,
        backoff: Backoff | None = None,
        connect_timeout_s: float = 10.0,
        request_timeout_s: float = 10.0,
        write_timeout_s: float = 60.0,
        max_events: int = DEFAULT_MAX_EVENTS,
    ) -> None:
        if encoding not in ("json", "msgpack"):
            raise ValueError(f"unknown encoding {encoding!r}")
        self.url = ws_url(url)
        self._token = token
        self._codec: Codec = JsonCodec() if encoding == "json" else MsgpackCodec()
        self._reconnect = reconnect
        self._backoff = backoff or Backoff()
        self._connect_timeout_s = connect_timeout_s
        self._request_timeout_s = request_timeout_s
        self._write_timeout_s = write_timeout_s
        self._inbox = _Inbox(max_events)
        self._cursors: dict[SphereId, Cursor] = {}
        self._pending: dict[str, asyncio.Future[Frame]] = {}  # by ref, for requests
        self._write_replies: dict[str, asyncio.Future[Frame]] = {}  # by ref, for writes
        self._outbox: dict[int, _Write] = {}  # unanswered writes, in first-sent order
        self._write_seq = 0
        self._refs = 0
        self._ws: ClientConnection | None = None
        self._welcome: Welcome | None = None
        self._last_send = 0.0
        # Set while requests may go out (connected), and for good once they must fail.
        self._gate = asyncio.Event()
        self._resync_due = asyncio.Event()
        self._runner: asyncio.Task[None] | None = None
        self._connected_once = False
        self._failure: ClientError | None = None
        self._closed = False

    # -- lifecycle ------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        await self.connect()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def connect(self) -> None:
        """Connect and authenticate; return once the first connection is ready.

        Connection failures that may heal (refused, timed out, a reconnect close code) are
        retried with backoff until ``connect_timeout_s`` has passed. Call ``aclose`` after.

        Raises:
            ConnectionTerminatedError: The server refused the token or the protocol.
            TimeoutError: No connection could be made in time.
        """
        if self._runner is not None:
            raise RuntimeError("connect() was already called")
        self._runner = asyncio.create_task(self._run(), name=f"cloison client {self.url}")
        try:
            async with asyncio.timeout(self._connect_timeout_s):
                await self._gate.wait()
        except TimeoutError:
            await self.aclose()
            raise TimeoutError(f"could not connect to {self.url}") from None
        if self._failure is not None:
            failure = self._failure
            await self.aclose()
            raise failure

    async def aclose(self) -> None:
        """Close the connection and stop reconnecting. Pending calls raise
        ``ClientClosedError``; ``events()`` ends after the events already queued."""
        if self._closed:
            return
        self._closed = True
        self._gate.set()
        self._inbox.close()
        self._fail_pending(ClientClosedError("the client is closed"), writes=True)
        if self._runner is not None:
            self._runner.cancel()
            await asyncio.wait({self._runner})  # unlike await, lets our own cancellation through

    @property
    def connected(self) -> bool:
        """True while a connection is authenticated."""
        return self._ws is not None

    @property
    def welcome(self) -> Welcome:
        """The latest ``welcome``: the user's id and name, and the server's limits."""
        if self._welcome is None:
            raise RuntimeError("not connected yet")
        return self._welcome

    @property
    def user_id(self) -> UserId:
        return self.welcome.user_id

    @property
    def name(self) -> str:
        return self.welcome.name

    @property
    def limits(self) -> Limits:
        return self.welcome.limits

    def position(self, sphere_id: SphereId | str) -> StreamPosition | None:
        """The position of the last message of ``sphere_id`` delivered to the application
        (None when not subscribed or not known yet). Persist it to resume across restarts."""
        cursor = self._cursors.get(SphereId(sphere_id))
        return cursor.position if cursor else None

    @property
    def subscriptions(self) -> list[SphereId]:
        """The spheres this client follows (and resubscribes after a reconnect)."""
        return list(self._cursors)

    def events(self) -> EventStream:
        """The event stream: ``Message``, ``Presence``, ``UserTyping``, ``Subscribed``,
        ``Replayed`` (a resumed subscription has caught up), ``Unsubscribed`` (access
        revoked), ``PositionLost``, ``SubscriptionFailed``, ``Connected`` and ``Disconnected``.

        Messages arrive once each and in offset order per sphere, across reconnects; they
        include membership events (``kind`` ``member``: who joined, left, was added or
        removed, or changed role) and privacy changes (``kind`` ``sphere``).
        Presence, typing, ``Subscribed`` and connection notices are best effort: they are
        dropped when the inbox is full.
        """
        return EventStream(self._inbox)

    # -- subscriptions --------------------------------------------------------------------

    async def subscribe(
        self, sphere_id: SphereId | str, since: StreamPosition | None = None
    ) -> Subscribed:
        """Follow a sphere's messages; they arrive through ``events()``.

        Args:
            sphere_id: The sphere.
            since: Replay what came after this position first (for example one saved from
                ``position()``). Default: the client's own cursor if it follows the sphere
                already, else start from now (use ``history`` for earlier messages).

        Returns:
            The ``subscribed`` reply (with who is online).

        Raises:
            RequestError: ``not_found``, ``forbidden`` or ``unrecoverable_position``.
        """
        sid = SphereId(sphere_id)
        known = sid in self._cursors
        cursor = self._cursors.setdefault(sid, Cursor(sid))
        start = since if since is not None else cursor.position
        try:
            return await self._subscribe(cursor, start)
        except RequestError:
            if not known:
                self._cursors.pop(sid, None)
            raise

    async def unsubscribe(self, sphere_id: SphereId | str) -> None:
        """Stop following a sphere (the cursor is forgotten)."""
        sid = SphereId(sphere_id)
        self._cursors.pop(sid, None)
        await self._request(lambda ref: Unsubscribe(sphere_id=sid, ref=ref), Unsubscribed)

    # -- writes ---------------------------------------------------------------------------

    async def publish(
        self, sphere_id: SphereId | str, body: str, *, message_id: str | None = None
    ) -> Ack:
        """Post a message; resent with the same ``message_id`` until acknowledged.

        Args:
            sphere_id: The sphere.
            body: The text.
            message_id: The idempotency key; a fresh one by default. Reuse a key to make a
                retry of your own safe.

        Returns:
            The ``ack``: the message's offset. ``duplicate`` is true when the key was already
            stored (an earlier attempt got through); the offset is then the stored one.

        Raises:
            RequestError: A non-retryable refusal (``forbidden``, ``too_large``...).
            TimeoutError: No ack within ``write_timeout_s``.
        """
        sid, mid = SphereId(sphere_id), MessageId(message_id or new_message_id())
        return await self._write(
            lambda ref: Publish(sphere_id=sid, message_id=mid, body=body, ref=ref)
        )

    async def edit(
        self, sphere_id: SphereId | str, target: int, body: str, *, message_id: str | None = None
    ) -> Ack:
        """Replace the body of the post at offset ``target``; resent like ``publish``."""
        sid, mid = SphereId(sphere_id), MessageId(message_id or new_message_id())
        return await self._write(
            lambda ref: Edit(sphere_id=sid, message_id=mid, target=target, body=body, ref=ref)
        )

    async def delete(
        self, sphere_id: SphereId | str, target: int, *, message_id: str | None = None
    ) -> Ack:
        """Delete the post at offset ``target``; resent like ``publish``."""
        sid, mid = SphereId(sphere_id), MessageId(message_id or new_message_id())
        return await self._write(
            lambda ref: Delete(sphere_id=sid, message_id=mid, target=target, ref=ref)
        )

    # -- reads ----------------------------------------------------------------------------

    async def history_page(
        self,
        sphere_id: SphereId | str,
        *,
        before: int | None = None,
        after: int | None = None,
        limit: int | None = None,
    ) -> HistoryPage:
        """One page of posts in ascending order: the newest below ``before`` (or the newest
        of all), or the oldest above ``after``."""
        sid = SphereId(sphere_id)
        if limit is not None:
            limit = min(limit, self.limits.history_limit_max)
        return await self._request(
            lambda ref: History(sphere_id=sid, before=before, after=after, limit=limit, ref=ref),
            HistoryPage,
        )

    def history(
        self,
        sphere_id: SphereId | str,
        *,
        before: int | None = None,
        page_size: int = DEFAULT_PAGE_SIZE,
    ) -> HistoryIterator:
        """Iterate a sphere's posts going back in time, newest first, one page per request.

        Args:
            sphere_id: The sphere.
            before: Start below this offset (default: from the newest post).
            page_size: Posts per request.

        Returns:
            An async iterator of ``Message``; stop iterating whenever you have enough.
        """
        return HistoryIterator(self, SphereId(sphere_id), before, page_size)

    async def list_spheres(self, *, discover: bool = False) -> list[SphereSummary]:
        """The user's spheres with unread counts, every page; with ``discover``, the newest
        open and public ones."""
        spheres: list[SphereSummary] = []
        after: str | None = None
        while True:

            def page(ref: str, after: str | None = after) -> ListSpheres:
                return ListSpheres(discover=discover, after=after, ref=ref)

            reply = await self._request(page, SphereList)
            spheres += reply.spheres
            if reply.next is None:
                return spheres
            after = reply.next

    async def list_members(self, sphere_id: SphereId | str) -> list[MemberInfo]:
        """Every member of the sphere, most powerful role first (fetched page by page)."""
        sid = SphereId(sphere_id)
        members: list[MemberInfo] = []
        after: str | None = None
        while True:

            def page(ref: str, after: str | None = after) -> ListMembers:
                return ListMembers(sphere_id=sid, after=after, ref=ref)

            reply = await self._request(page, MemberList)
            members += reply.members
            if reply.next is None:
                return members
            after = reply.next

    async def ping(self) -> Pong:
        """Round trip to the server (also what keeps an idle connection open)."""
        return await self._request(lambda ref: Ping(ref=ref), Pong)

    # -- presence, typing, read markers ---------------------------------------------------

    async def typing(self, sphere_id: SphereId | str) -> None:
        """Tell the sphere the user is typing. Best effort: nothing is sent while
        disconnected, and the server forwards at most one notice per 2 s."""
        if self._ws is not None:
            # Typing notices are ephemeral: a lost one needs no resend.
            with contextlib.suppress(_ConnectionLost):
                await self._send(Typing(sphere_id=SphereId(sphere_id)))

    async def mark_read(self, sphere_id: SphereId | str, offset: int) -> None:
        """Move the read marker to ``offset`` (it never moves back)."""
        sid = SphereId(sphere_id)
        await self._request(lambda ref: MarkRead(sphere_id=sid, offset=offset, ref=ref), Ok)

    # -- sphere management ----------------------------------------------------------------

    async def create_sphere(self, name: str, privacy: Privacy = Privacy.PRIVATE) -> SphereSummary:
        """Create a sphere owned by the user. Not resent after a lost connection (a resend
        would create a second sphere): raises ``ConnectionLostError`` instead."""
        reply = await self._request(
            lambda ref: CreateSphere(name=name, privacy=privacy, ref=ref), SphereInfo, retry=False
        )
        return reply.sphere

    async def update_sphere(
        self, sphere_id: SphereId | str, *, name: str | None = None, privacy: Privacy | None = None
    ) -> SphereSummary:
        sid = SphereId(sphere_id)
        reply = await self._request(
            lambda ref: UpdateSphere(sphere_id=sid, name=name, privacy=privacy, ref=ref),
            SphereInfo,
        )
        return reply.sphere

    async def join(self, sphere_id: SphereId | str) -> SphereSummary:
        """Become a member of an open or public sphere (``subscribe`` to follow it)."""
        sid = SphereId(sphere_id)
        reply = await self._request(lambda ref: Join(sphere_id=sid, ref=ref), SphereInfo)
        return reply.sphere

    async def leave(self, sphere_id: SphereId | str) -> None:
        """Leave a sphere and stop following it. Not resent after a lost connection."""
        sid = SphereId(sphere_id)
        self._cursors.pop(sid, None)
        await self._request(lambda ref: Leave(sphere_id=sid, ref=ref), Ok, retry=False)

    async def add_member(
        self, sphere_id: SphereId | str, user_id: UserId | str, role: Role = Role.MEMBER
    ) -> None:
        sid, uid = SphereId(sphere_id), UserId(user_id)
        await self._request(
            lambda ref: AddMember(sphere_id=sid, user_id=uid, role=role, ref=ref), Ok
        )

    async def remove_member(self, sphere_id: SphereId | str, user_id: UserId | str) -> None:
        sid, uid = SphereId(sphere_id), UserId(user_id)
        await self._request(
            lambda ref: RemoveMember(sphere_id=sid, user_id=uid, ref=ref), Ok, retry=False
        )

    async def set_role(self, sphere_id: SphereId | str, user_id: UserId | str, role: Role) -> None:
        sid, uid = SphereId(sphere_id), UserId(user_id)
        await self._request(lambda ref: SetRole(sphere_id=sid, user_id=uid, role=role, ref=ref), Ok)

    # -- requests -------------------------------------------------------------------------

    async def _write(self, make: Callable[[str], ClientFrame]) -> Ack:
        """Send a write through the outbox and return its ack, resending it (same content,
        new ``ref``) after a retryable error."""
        attempt = 0
        async with asyncio.timeout(self._write_timeout_s):
            while True:
                self._raise_if_ended()
                reply = await self._outboxed(make)
                if isinstance(reply, ErrorReply):
                    await self._retry_after(RequestError(reply), attempt)
                    attempt += 1
                    continue
                return _expect(reply, Ack)

    async def _outboxed(self, make: Callable[[str], ClientFrame]) -> Frame:
        """Send a write now if connected, else when a connection opens, and return the reply.

        The write stays in the outbox until answered: a new connection resends what the
        outbox holds in first-sent order, before any other request, so pipelined writes keep
        their order across a reconnect.
        """
        write = _Write(make, asyncio.get_running_loop().create_future())
        self._write_seq += 1
        seq = self._write_seq
        self._outbox[seq] = write
        try:
            if self._gate.is_set() and self._ws is not None:
                await self._send_write(write, self._ws)
            return await write.reply
        finally:
            del self._outbox[seq]
            _discard(write.reply)

    async def _send_write(self, write: _Write, ws: ClientConnection) -> None:
        write.sent_on = ws
        ref = self._next_ref()
        self._write_replies[ref] = write.reply
        with contextlib.suppress(_ConnectionLost):  # the next connection resends it
            await self._send(write.make(ref))

    async def _flush_outbox(self, ws: ClientConnection) -> None:
        """Resend, oldest first, the writes not yet sent on ``ws`` (including any queued
        meanwhile), then let other requests go out."""
        while self._ws is ws:
            unsent = [
                w for w in self._outbox.values() if w.sent_on is not ws and not w.reply.done()
            ]
            if not unsent:
                self._gate.set()
                return
            for write in unsent:
                if self._ws is ws and not write.reply.done():
                    await self._send_write(write, ws)

    async def _request(
        self,
        make: Callable[[str], ClientFrame],
        reply_type: type[F],
        *,
        retry: bool = True,
    ) -> F:
        """Send ``make(ref)`` and return its reply. With ``retry``, resend it (new ``ref``,
        same content) after a lost connection or a retryable error."""
        attempt = 0
        async with asyncio.timeout(self._request_timeout_s):
            while True:
                try:
                    reply = await self._attempt(make)
                except _ConnectionLost:
                    if not retry:
                        raise ConnectionLostError(
                            "the connection dropped before the reply"
                        ) from None
                    continue
                if isinstance(reply, ErrorReply):
                    error = RequestError(reply)
                    if not retry:
                        raise error
                    await self._retry_after(error, attempt)
                    attempt += 1
                    continue
                return _expect(reply, reply_type)

    async def _retry_after(self, error: RequestError, attempt: int) -> None:
        """Wait before resending after ``error``; raise it if resending cannot help."""
        if not error.retryable:
            raise error
        if error.retry_after_ms is not None:
            await asyncio.sleep(error.retry_after_ms / 1000)
        else:
            await asyncio.sleep(self._backoff.delay_s(attempt))

    async def _attempt(self, make: Callable[[str], ClientFrame]) -> Frame:
        """One send and the reply to it; raises ``_ConnectionLost`` if the connection goes."""
        await self._gate.wait()
        self._raise_if_ended()
        ref = self._next_ref()
        reply: asyncio.Future[Frame] = asyncio.get_running_loop().create_future()
        self._pending[ref] = reply
        try:
            await self._send(make(ref))
            return await reply
        finally:
            self._pending.pop(ref, None)
            _discard(reply)

    def _next_ref(self) -> str:
        self._refs += 1
        return str(self._refs)

    async def _send(self, frame: ClientFrame) -> None:
        ws = self._ws
        if ws is None:
            raise _ConnectionLost
        try:
            await ws.send(self._codec.encode(frame))
        except ConnectionClosed:
            self._went_down(ws)
            raise _ConnectionLost from None
        self._last_send = asyncio.get_running_loop().time()

    def _raise_if_ended(self) -> None:
        if self._failure is not None:
            raise self._failure
        if self._closed:
            raise ClientClosedError("the client is closed")

    def _fail_pending(self, error: BaseException, *, writes: bool) -> None:
        """Fail the requests waiting for a reply, and with ``writes`` the outbox too."""
        replies = list(self._pending.values())
        self._pending.clear()
        self._write_replies.clear()  # a write's reply can only come on the connection it used
        if writes:
            replies += [write.reply for write in self._outbox.values()]
        for reply in replies:
            if not reply.done():
                reply.set_exception(error)

    # -- subscriptions, internally ----------------------------------------------------------

    async def _subscribe(self, cursor: Cursor, since: StreamPosition | None) -> Subscribed:
        def make(ref: str) -> Subscribe:
            # The reader updates the cursor from the reply carrying this ref (see _on_subscribed).
            cursor.subscribe_ref = ref
            cursor.fresh = since is None
            if since is not None:
                cursor.position = since
            return Subscribe(sphere_id=cursor.sphere_id, since=since, ref=ref)

        try:
            return await self._request(make, Subscribed)
        finally:
            if cursor.subscribe_ref is not None and cursor.subscribe_ref not in self._pending:
                cursor.subscribe_ref = None  # refused or abandoned: stop waiting for it

    async def _resume(self, cursor: Cursor) -> None:
        """Resubscribe ``cursor``'s sphere from its position, falling back to a fresh
        subscription (reported as ``PositionLost``) when the server refuses the position."""
        if self._cursors.get(cursor.sphere_id) is not cursor:
            return
        try:
            try:
                await self._subscribe(cursor, cursor.position)
            except RequestError as exc:
                if exc.code is not ErrorCode.UNRECOVERABLE_POSITION or cursor.position is None:
                    raise
                cursor.lost, cursor.position = cursor.position, None
                await self._subscribe(cursor, None)
        except RequestError as exc:
            logger.warning("cannot resubscribe to %s: %s", cursor.sphere_id, exc)
            if self._cursors.get(cursor.sphere_id) is cursor:
                del self._cursors[cursor.sphere_id]
                self._inbox.force(SubscriptionFailed(cursor.sphere_id, exc))
        except (ClientError, TimeoutError):
            pass  # the connection went (the next one resumes it again) or the client ended

    async def _resume_all(self) -> None:
        async with asyncio.TaskGroup() as group:
            for cursor in list(self._cursors.values()):
                cursor.lagging = False
                group.create_task(self._resume(cursor))

    async def _resync_lagging(self) -> None:
        """Catch up spheres whose messages were dropped, once the inbox has room."""
        while True:
            await self._resync_due.wait()
            await self._inbox.wait_room()
            self._resync_due.clear()
            for cursor in list(self._cursors.values()):
                if cursor.lagging and cursor.subscribe_ref is None:
                    cursor.lagging = False
                    await self._resume(cursor)

    # -- the reader -------------------------------------------------------------------------

    def _dispatch(self, frame: Frame) -> None:
        if isinstance(frame, Message):
            self._on_message(frame)
            return
        if isinstance(frame, Presence | UserTyping | Replayed):
            if frame.sphere_id in self._cursors:
                self._inbox.offer(frame)
            return
        if isinstance(frame, Subscribed):
            self._on_subscribed(frame)
        elif (
            isinstance(frame, Unsubscribed)
            and frame.reason != "requested"
            and self._cursors.pop(frame.sphere_id, None) is not None
        ):
            self._inbox.force(frame)  # access revoked: the sphere is no longer followed
        ref = getattr(frame, "ref", None)
        reply = None
        if ref is not None:
            reply = self._pending.pop(ref, None) or self._write_replies.pop(ref, None)
        if reply is not None and not reply.done():
            reply.set_result(frame)
        elif isinstance(frame, ErrorReply):  # to a frame sent without ref, such as typing
            logger.debug("unmatched error from the server: %s %s", frame.code, frame.message)

    def _on_message(self, message: Message) -> None:
        cursor = self._cursors.get(message.sphere_id)
        if cursor is None:
            return
        verdict = cursor.classify(message.offset)
        if verdict is Verdict.DELIVER and self._inbox.offer(message):
            cursor.advance(message.offset)
        elif verdict is Verdict.DELIVER or (
            verdict is Verdict.GAP and cursor.subscribe_ref is None
        ):
            # A gap while a resubscribe is in flight is the old subscription's tail: the
            # resubscribe covers it. Otherwise catch up from the cursor.
            cursor.lagging = True
            self._resync_due.set()

    def _on_subscribed(self, reply: Subscribed) -> None:
        cursor = self._cursors.get(reply.sphere_id)
        if cursor is None or reply.ref is None or reply.ref != cursor.subscribe_ref:
            return  # not followed any more, or superseded by a later subscribe
        cursor.subscribe_ref = None
        if cursor.fresh:
            cursor.fresh = False
            cursor.position = reply.position
            if cursor.lost is not None:
                self._inbox.force(PositionLost(reply.sphere_id, cursor.lost, reply.position))
                cursor.lost = None
        # Before any replayed message, so the application sees who is online first.
        self._inbox.offer(reply)

    async def _read(self, ws: ClientConnection, first: list[Frame]) -> None:
        for frame in first:
            self._dispatch(frame)
        try:
            async for data in ws:
                try:
                    frame = self._codec.decode_server(data)
                except ProtocolViolation as exc:
                    logger.warning("ignored an undecodable frame from the server: %s", exc)
                    continue
                for inner in frame.frames if isinstance(frame, Batch) else (frame,):
                    self._dispatch(inner)
        except ConnectionClosed:
            pass

    async def _keepalive(self, idle_timeout_ms: int) -> None:
        interval_s = idle_timeout_ms / 1000 / PING_FRACTION
        loop = asyncio.get_running_loop()
        while True:
            idle_s = loop.time() - self._last_send
            if idle_s < interval_s:
                await asyncio.sleep(interval_s - idle_s)
                continue
            try:
                await self._send(Ping())
            except _ConnectionLost:
                return

    # -- the connection task ----------------------------------------------------------------

    async def _run(self) -> None:
        """Connect, serve, and reconnect after a jittered backoff, until closed or ended."""
        attempt = 0
        unlisted = 0
        try:
            while True:
                ending = await self._connect_and_serve()
                if ending.uptime_s >= self._backoff.reset_after_s:
                    attempt = unlisted = 0
                unlisted = 0 if is_listed(ending.close_code) else unlisted + 1
                detail = f"close {ending.close_code}: {ending.reason or 'no reason'}"
                if not should_reconnect(ending.close_code):
                    raise ConnectionTerminatedError(detail, close_code=ending.close_code)
                if not self._reconnect or unlisted >= MAX_UNLISTED_CLOSES:
                    raise ConnectionTerminatedError(
                        f"gave up reconnecting after {detail}", close_code=ending.close_code
                    )
                delay_s = self._backoff.delay_s(attempt)
                attempt += 1
                logger.info("connection ended (%s); reconnecting in %.2f s", detail, delay_s)
                self._inbox.offer(Disconnected(ending.close_code, ending.reason, delay_s))
                await asyncio.sleep(delay_s)
        except ClientError as exc:
            self._end(exc)
        except Exception as exc:  # a bug: end the client loudly rather than hang its callers
            logger.exception("the client's connection task failed")
            self._end(ClientError(f"internal client error: {exc!r}"))

    def _end(self, failure: ClientError) -> None:
        logger.warning("connection to %s terminated: %s", self.url, failure)
        self._failure = failure
        self._gate.set()
        self._fail_pending(failure, writes=True)
        self._inbox.close(failure)

    async def _connect_and_serve(self) -> _Ending:
        try:
            async with asyncio.timeout(self._connect_timeout_s):
                ws = await websockets.connect(
                    self.url,
                    subprotocols=[Subprotocol(self._codec.subprotocol)],
                    compression=None,  # the server does not negotiate permessage-deflate
                    max_size=MAX_SERVER_FRAME_BYTES,
                    close_timeout=CLOSE_TIMEOUT_S,
                )
        except InvalidStatus as exc:
            status = exc.response.status_code
            if 400 <= status < 500:  # refused outright (origin, path): retrying cannot help
                raise ConnectionTerminatedError(f"handshake refused with HTTP {status}") from None
            return _Ending(None, f"handshake failed with HTTP {status}", 0.0)
        except InvalidURI as exc:
            raise ConnectionTerminatedError(f"invalid URL: {exc}") from None
        except (OSError, TimeoutError, InvalidHandshake, EOFError) as exc:
            return _Ending(None, f"cannot connect: {exc or type(exc).__name__}", 0.0)
        try:
            return await self._serve(ws)
        finally:
            self._went_down(ws)
            await ws.close()

    async def _handshake(self, ws: ClientConnection) -> tuple[Welcome, list[Frame]]:
        """Send ``auth`` and read the answer: ``welcome`` (plus any frames batched with it)."""
        async with asyncio.timeout(self._connect_timeout_s):
            await ws.send(
                self._codec.encode(Auth(token=self._token, protocol=PROTOCOL_VERSION, ref="auth"))
            )
            frame = self._codec.decode_server(await ws.recv())
        frames: list[Frame] = list(frame.frames) if isinstance(frame, Batch) else [frame]
        first = frames.pop(0) if frames else frame
        if isinstance(first, ErrorReply):
            with_code = RequestError(first)
            if first.retryable:  # the server could not check the token right now
                raise _ConnectionLost(str(with_code))
            async with asyncio.timeout(CLOSE_TIMEOUT_S):
                await ws.wait_closed()  # to report the close code the server chose
            raise ConnectionTerminatedError(
                f"authentication refused: {with_code}", close_code=ws.close_code
            )
        if not isinstance(first, Welcome):
            raise ProtocolViolation(f"expected welcome, got {first.TYPE}")
        return first, frames

    async def _serve(self, ws: ClientConnection) -> _Ending:
        loop = asyncio.get_running_loop()
        try:
            welcome, first = await self._handshake(ws)
        except (ConnectionClosed, _ConnectionLost, TimeoutError, ProtocolViolation) as exc:
            return _Ending(ws.close_code, f"handshake failed: {exc or type(exc).__name__}", 0.0)
        started = self._last_send = loop.time()
        self._ws, self._welcome = ws, welcome
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self._keepalive(welcome.limits.idle_timeout_ms))
                group.create_task(self._reopen(ws, welcome))
                group.create_task(self._resync_lagging())
                await self._read(ws, first)
                raise _SessionEnded
        except* _SessionEnded:
            pass
        return _Ending(ws.close_code, ws.close_reason or "", loop.time() - started)

    async def _reopen(self, ws: ClientConnection, welcome: Welcome) -> None:
        """Make a new connection usable: writes first (in order), then other requests,
        then every sphere's subscription."""
        await self._flush_outbox(ws)
        self._inbox.offer(Connected(welcome, reconnected=self._connected_once))
        self._connected_once = True
        await self._resume_all()

    def _went_down(self, ws: ClientConnection) -> None:
        """Forget ``ws`` as the current connection; its requests fail over to the next one."""
        if self._ws is not ws:
            return
        self._ws = None
        if not (self._closed or self._failure):
            self._gate.clear()
        self._fail_pending(_ConnectionLost(), writes=False)
