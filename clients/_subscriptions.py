"""Client's subscription layer: resume by cursor, catch up, route what the reader decodes."""

from __future__ import annotations

import asyncio
import logging

from clients._reconnect import Cursor, Verdict
from clients._requests import RequestLayer
from clients.errors import ClientError, RequestError
from clients.events import PositionLost, SubscriptionFailed
from protocol import (
    ErrorCode,
    ErrorReply,
    Frame,
    Message,
    Presence,
    Replayed,
    StreamPosition,
    Subscribe,
    Subscribed,
    Unsubscribed,
    UserTyping,
)

logger = logging.getLogger("clients.client")  # one logger name for the SDK client

# The ``unsubscribed`` reason for a member who must accept a new charter version.
CHARTER_REASON = "charter"


class SubscriptionLayer(RequestLayer):
    """Subscriptions on the wire, and the dispatch of what the reader decodes."""

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
                if exc.code is ErrorCode.CHARTER_REQUIRED:
                    self._set_aside[cursor.sphere_id] = cursor
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
        elif isinstance(frame, Unsubscribed) and frame.reason != "requested":
            self._on_unsubscribed(frame)
        ref = getattr(frame, "ref", None)
        reply = None
        if ref is not None:
            reply = self._pending.pop(ref, None) or self._write_replies.pop(ref, None)
        if reply is not None and not reply.done():
            reply.set_result(frame)
        elif isinstance(frame, ErrorReply):  # to a frame sent without ref, such as typing
            logger.debug("unmatched error from the server: %s %s", frame.code, frame.message)

    def _on_unsubscribed(self, frame: Unsubscribed) -> None:
        """The server ended a subscription: access revoked, sphere deleted, or a new charter
        to accept (then the cursor is kept, so ``subscribe`` resumes where it stopped)."""
        cursor = self._cursors.pop(frame.sphere_id, None)
        if cursor is None:
            return
        if frame.reason == CHARTER_REASON:
            self._set_aside[frame.sphere_id] = cursor
        self._inbox.force(frame)

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
