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

``Client`` here is the public face; its machinery is a straight line of four layers, one
module each: ``_requests.py`` (the state; requests, the write outbox, resends) under
``_subscriptions.py`` (cursors on the wire, routing of decoded frames) under
``_connection.py`` (the connection task) under ``_governance.py`` (invitations, moderation,
charters, the audit log, reports, replies, reactions, pins, threads and mentions).
``errors.py``, ``events.py`` and ``history.py`` hold the types it hands out; all are
importable from here as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from typing import Self

from clients._governance import GovernanceLayer
from clients._reconnect import Cursor
from clients._requests import DEFAULT_MAX_EVENTS, Encoding, ws_url
from clients.errors import (
    BadRequestError,
    CharterRequiredError,
    ClientClosedError,
    ClientError,
    ConflictError,
    ConnectionLostError,
    ConnectionTerminatedError,
    ForbiddenError,
    LegalHoldError,
    NotFoundError,
    RequestError,
    _ConnectionLost,
)
from clients.events import (
    Connected,
    Disconnected,
    Event,
    EventKind,
    EventStream,
    MemberAction,
    PositionLost,
    SubscriptionFailed,
)
from clients.history import HistoryIterator
from protocol import (
    Ack,
    AddMember,
    CreateSphere,
    Delete,
    Edit,
    ErrorCode,
    History,
    HistoryMode,
    HistoryPage,
    Join,
    JoinPolicy,
    Leave,
    Limits,
    ListMembers,
    ListSpheres,
    MarkRead,
    MemberInfo,
    MemberList,
    MessageId,
    Ok,
    Ping,
    Pong,
    Privacy,
    Publish,
    RemoveMember,
    Role,
    SetRole,
    SphereId,
    SphereInfo,
    SphereList,
    SphereSummary,
    StreamPosition,
    Subscribed,
    Typing,
    Unsubscribe,
    Unsubscribed,
    UpdateSphere,
    UserId,
    Welcome,
)

__all__ = [
    "DEFAULT_MAX_EVENTS",
    "DEFAULT_PAGE_SIZE",
    "BadRequestError",
    "CharterRequiredError",
    "Client",
    "ClientClosedError",
    "ClientError",
    "ConflictError",
    "Connected",
    "ConnectionLostError",
    "ConnectionTerminatedError",
    "Disconnected",
    "Encoding",
    "Event",
    "EventKind",
    "EventStream",
    "ForbiddenError",
    "HistoryIterator",
    "LegalHoldError",
    "MemberAction",
    "NotFoundError",
    "PositionLost",
    "RequestError",
    "SubscriptionFailed",
    "new_message_id",
    "ws_url",
]


# Why: history pages are capped by the server (200); 50 is its own default.
DEFAULT_PAGE_SIZE = 50


def new_message_id() -> MessageId:
    """A fresh idempotency key for a write (a random UUID, 32 hex characters)."""
    return MessageId(uuid.uuid4().hex)


class Client(GovernanceLayer):
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
                already (or followed it until a new charter had to be accepted), else start
                from now (use ``history`` for earlier messages).

        Returns:
            The ``subscribed`` reply (with who is online).

        Raises:
            RequestError: ``not_found``, ``forbidden``, ``unrecoverable_position``, or
                ``charter_required`` (``CharterRequiredError``: ``accept_charter`` first).
        """
        sid = SphereId(sphere_id)
        known = sid in self._cursors
        cursor = self._cursors.get(sid) or self._set_aside.pop(sid, None) or Cursor(sid)
        self._cursors[sid] = cursor
        start = since if since is not None else cursor.position
        try:
            return await self._subscribe(cursor, start)
        except RequestError as exc:
            if not known:
                self._cursors.pop(sid, None)
                if exc.code is ErrorCode.CHARTER_REQUIRED:
                    self._set_aside[sid] = cursor
            raise

    async def unsubscribe(self, sphere_id: SphereId | str) -> None:
        """Stop following a sphere (the cursor is forgotten)."""
        sid = SphereId(sphere_id)
        self._cursors.pop(sid, None)
        self._set_aside.pop(sid, None)
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

    async def create_sphere(
        self,
        name: str,
        privacy: Privacy = Privacy.PRIVATE,
        *,
        listed: bool | None = None,
        join_policy: JoinPolicy | None = None,
        history: HistoryMode | None = None,
    ) -> SphereSummary:
        """Create a sphere owned by the user; settings left out take the server's defaults
        for its type. Not resent after a lost connection (a resend would create a second
        sphere): raises ``ConnectionLostError`` instead."""
        reply = await self._request(
            lambda ref: CreateSphere(
                name=name,
                privacy=privacy,
                listed=listed,
                join_policy=join_policy,
                history=history,
                ref=ref,
            ),
            SphereInfo,
            retry=False,
        )
        return reply.sphere

    async def update_sphere(
        self,
        sphere_id: SphereId | str,
        *,
        name: str | None = None,
        privacy: Privacy | None = None,
        listed: bool | None = None,
        join_policy: JoinPolicy | None = None,
        history: HistoryMode | None = None,
        retention_days: int | None = None,
    ) -> SphereSummary:
        """Change the settings given (the others stay). The type and history need the owner;
        the history may only be narrowed once others have joined. ``retention_days``: how
        long messages are kept (at most the server's period; 0: the server's default)."""
        sid = SphereId(sphere_id)
        reply = await self._request(
            lambda ref: UpdateSphere(
                sphere_id=sid,
                name=name,
                privacy=privacy,
                listed=listed,
                join_policy=join_policy,
                history=history,
                retention_days=retention_days,
                ref=ref,
            ),
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
        self._set_aside.pop(sid, None)
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
