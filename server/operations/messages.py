"""Requests on a sphere's stream: subscribe, history, typing, read markers, and the writes
(post, edit, delete) before they are committed."""

from __future__ import annotations

import time
from typing import Any

from protocol import (
    CloisonError,
    Delete,
    Edit,
    ErrorCode,
    EventKind,
    Frame,
    History,
    HistoryPage,
    MarkRead,
    Message,
    Ok,
    Ping,
    Pong,
    Publish,
    SphereId,
    Subscribe,
    Typing,
    Unsubscribe,
    Unsubscribed,
)
from server import paging
from server.access import Granted, Right, require_no_hold, require_right, sees_members
from server.operations.context import (
    Caller,
    Deps,
    Handler,
    PreparedWrite,
    WriteHandler,
    connection,
    granted,
    now_ms,
)
from server.ratelimit import RateLimiter
from storage import Draft, Store

# Why: one page is what a chat client shows at once; the protocol caps it at 200.
DEFAULT_HISTORY_LIMIT = 50
# Why: typing notices are hints; one per user and sphere every 2 s is plenty.
TYPING_INTERVAL_S = 2.0


def draft_of(
    caller: Caller,
    frame: Any,
    kind: EventKind,
    *,
    body: str | None = None,
    target: int | None = None,
    reply_to: int | None = None,
    emoji: str | None = None,
) -> PreparedWrite:
    """The draft of a checked write: the server sets its author and time, never the client
    (nor a post's mentions, which the store resolves from its body)."""
    draft = Draft(
        kind=kind,
        message_id=frame.message_id,
        author_id=caller.user.user_id,
        ts_ms=now_ms(),
        body=body,
        target=target,
        reply_to=reply_to,
        emoji=emoji,
    )
    return PreparedWrite(frame.sphere_id, draft, frame.ref)


class MessageHandlers:
    def __init__(self, deps: Deps) -> None:
        self._deps = deps
        self._store = deps.store
        self._hub = deps.hub
        self._typing = RateLimiter(1 / TYPING_INTERVAL_S, 1)

    def handlers(self) -> dict[type[Frame], Handler]:
        return {
            Ping: self._ping,
            Subscribe: self._subscribe,
            Unsubscribe: self._unsubscribe,
            History: self._history,
            Typing: self._typing_notice,
            MarkRead: self._mark_read,
        }

    def writes(self) -> dict[type[Frame], WriteHandler]:
        return {Publish: self._publish, Edit: self._edit, Delete: self._delete}

    # -- connection --------------------------------------------------------------------------

    async def _ping(self, caller: Caller, frame: Ping, grant: Granted | None) -> Frame:
        return Pong(server_time_ms=now_ms(), ref=frame.ref)

    async def _subscribe(
        self, caller: Caller, frame: Subscribe, grant: Granted | None
    ) -> Frame | None:
        conn = connection(caller)
        sphere = granted(grant).sphere or await self._store.get_sphere(frame.sphere_id)
        if sphere is None:  # deleted since the check
            raise CloisonError("sphere not found", code=ErrorCode.NOT_FOUND)
        since = frame.since
        if since is not None and (since.epoch != sphere.epoch or since.offset > sphere.offset):
            raise CloisonError(
                "that position is not in this sphere's stream; fetch history and subscribe "
                "without since",
                code=ErrorCode.UNRECOVERABLE_POSITION,
            )
        await self._hub.subscribe(
            conn,
            sphere,
            since=since.offset if since is not None else None,
            ref=frame.ref,
            charter_accepted=granted(grant).charter_accepted,
        )
        return None

    async def _unsubscribe(
        self, caller: Caller, frame: Unsubscribe, grant: Granted | None
    ) -> Frame:
        conn = connection(caller)
        self._hub.unsubscribe(conn, frame.sphere_id, reason=None)
        return Unsubscribed(sphere_id=frame.sphere_id, reason="requested", ref=frame.ref)

    async def _typing_notice(
        self, caller: Caller, frame: Typing, grant: Granted | None
    ) -> Frame | None:
        key = (caller.user.user_id, frame.sphere_id)
        if not self._typing.take(key, time.monotonic()):
            await self._hub.typing(frame.sphere_id, caller.user.user_id)
        return Ok(ref=frame.ref) if frame.ref is not None else None

    # -- reads -------------------------------------------------------------------------------

    async def _history(self, caller: Caller, frame: History, grant: Granted | None) -> Frame:
        if frame.before is not None and frame.after is not None:
            raise CloisonError("give before or after, not both", code=ErrorCode.BAD_FRAME)
        grant = granted(grant)
        messages, has_more = await self._store.history(
            frame.sphere_id,
            before=frame.before,
            after=frame.after,
            limit=frame.limit or DEFAULT_HISTORY_LIMIT,
            floor=grant.floor,
            own_member_events=(
                None if sees_members(grant.privacy, grant.role) else caller.user.user_id
            ),
        )
        messages, trimmed = paging.fit_page(
            messages,
            newest=frame.after is None,
            budget=self._deps.page_bytes,
            codec=self._deps.codec(caller),
        )
        has_more = has_more or trimmed
        truncated = None
        # Only a page that reaches the oldest end of what the reader may read can meet the
        # retention horizon: then it says so, rather than look like the beginning.
        if frame.after is not None or not has_more:
            sphere = grant.sphere or await self._store.get_sphere(frame.sphere_id)
            start = frame.after + 1 if frame.after is not None else 0
            if sphere is not None and sphere.retained_from > max(grant.floor, start, 1):
                truncated = sphere.retained_from
        return HistoryPage(
            sphere_id=frame.sphere_id,
            messages=messages,
            has_more=has_more,
            truncated_before=truncated,
            ref=frame.ref,
        )

    async def _mark_read(self, caller: Caller, frame: MarkRead, grant: Granted | None) -> Frame:
        await self._store.set_read_marker(frame.sphere_id, caller.user.user_id, frame.offset)
        return Ok(ref=frame.ref)

    # -- writes ------------------------------------------------------------------------------

    async def _publish(self, caller: Caller, frame: Publish, grant: Granted) -> PreparedWrite:
        # A reply's post must be live and readable by its author: the store checks it when
        # the reply is sequenced (``not_found`` otherwise).
        return draft_of(caller, frame, EventKind.POST, body=frame.body, reply_to=frame.reply_to)

    async def target_post(
        self, caller: Caller, sphere_id: SphereId, target: int, grant: Granted, *, moderate: bool
    ) -> Message:
        """The post an edit or delete names, which the caller must be allowed to change.

        Only its author may edit a post; its author or a holder of ``delete_any`` may delete
        it. A post already deleted passes here: the store answers a retried delete with its
        original ack and anything else with ``not_found``. A post older than the caller's
        floor is, for them, not there.
        """
        event = await self._store.get_event(sphere_id, target) if target >= grant.floor else None
        if event is None or event.kind is not EventKind.POST:
            raise CloisonError("no such message", code=ErrorCode.NOT_FOUND)
        if event.author_id != caller.user.user_id:
            if not moderate:
                raise CloisonError(
                    "only the author may edit this message", code=ErrorCode.FORBIDDEN
                )
            require_right(
                Right.DELETE_ANY,
                grant.privacy,
                grant.role,
                message="only the author or a sphere admin may delete this message",
            )
        return event

    async def _edit(self, caller: Caller, frame: Edit, grant: Granted) -> PreparedWrite:
        await self.target_post(caller, frame.sphere_id, frame.target, grant, moderate=False)
        return draft_of(caller, frame, EventKind.EDIT, body=frame.body, target=frame.target)

    async def _delete(self, caller: Caller, frame: Delete, grant: Granted) -> PreparedWrite:
        await self.target_post(caller, frame.sphere_id, frame.target, grant, moderate=True)
        await refuse_under_hold(self._store, frame.sphere_id)
        return draft_of(caller, frame, EventKind.DELETE, target=frame.target)


async def refuse_under_hold(store: Store, sphere_id: SphereId) -> None:
    """Refuse a deletion in a sphere under a live legal hold (``legal_hold``), read from the
    store: a hold is set outside the sphere's channel and holds from its commit on."""
    sphere = await store.get_sphere(sphere_id)
    if sphere is not None:
        require_no_hold(sphere, now_ms())
