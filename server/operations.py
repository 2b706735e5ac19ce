"""What each client request does, shared by the WebSocket gateway and the HTTP API.

``Operations.handle`` takes an authenticated caller and a validated frame and returns the
reply frame (or None when the reply is sent otherwise, as ``subscribe`` does). It raises
``CloisonError`` subclasses for every refusal; the transports turn them into error frames or
HTTP responses in one place each.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from protocol import (
    Ack,
    AddMember,
    CloisonError,
    CreateSphere,
    Delete,
    Edit,
    ErrorCode,
    EventKind,
    Frame,
    History,
    HistoryPage,
    Join,
    Leave,
    ListMembers,
    ListSpheres,
    MarkRead,
    MemberList,
    Message,
    Ok,
    Ping,
    Pong,
    Publish,
    RateLimitedError,
    RemoveMember,
    Role,
    SetRole,
    SphereId,
    SphereInfo,
    SphereList,
    SphereSummary,
    Subscribe,
    Typing,
    Unsubscribe,
    Unsubscribed,
    UpdateSphere,
    UserId,
)
from server import access
from server.config import Config
from server.connection import Connection
from server.hub import Hub
from server.ratelimit import RateLimiter, WriteLimiter
from storage import DecideMember, Draft, NotMemberError, SphereRecord, Store, UserRecord

# Why: one page is what a chat client shows at once; the protocol caps it at 200.
DEFAULT_HISTORY_LIMIT = 50
# Why: typing notices are hints; one per user and sphere every 2 s is plenty.
TYPING_INTERVAL_S = 2.0
DISCOVER_LIMIT = 200
# Why: websockets and browsers accept 1 MiB messages by default; a page stays well below.
MAX_PAGE_BYTES = 512 * 1024
# Why: the bytes a message's fields other than its body take on the wire, at most.
MESSAGE_OVERHEAD_BYTES = 256


def _fit_page(messages: list[Message], *, newest: bool, budget: int) -> tuple[list[Message], bool]:
    """Keep the end of the page nearest the reader within ``budget`` bytes; True if trimmed.

    Paging back (``newest``) keeps the newest messages of the page, paging forward the
    oldest; at least one message is always kept.
    """
    ordered = list(reversed(messages)) if newest else messages
    kept: list[Message] = []
    used = 0
    for message in ordered:
        used += MESSAGE_OVERHEAD_BYTES + len((message.body or "").encode())
        if kept and used > budget:
            break
        kept.append(message)
    trimmed = len(kept) < len(messages)
    return (list(reversed(kept)) if newest else kept), trimmed


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(frozen=True, slots=True)
class Caller:
    user: UserRecord
    conn: Connection | None = None  # None for HTTP requests


@dataclass(frozen=True, slots=True)
class PreparedWrite:
    """A checked write, ready to append: what ``prepare_write`` hands to ``commit_write``."""

    sphere_id: SphereId
    draft: Draft
    ref: str | None


WRITES = (Publish, Edit, Delete)


def _prepared(
    caller: Caller,
    frame: Publish | Edit | Delete,
    kind: EventKind,
    *,
    body: str | None = None,
    target: int | None = None,
) -> PreparedWrite:
    draft = Draft(
        kind=kind,
        message_id=frame.message_id,
        author_id=caller.user.user_id,
        ts_ms=now_ms(),
        body=body,
        target=target,
    )
    return PreparedWrite(frame.sphere_id, draft, frame.ref)


Handler = Callable[[Caller, Any], Awaitable[Frame | None]]


class Operations:
    def __init__(self, store: Store, hub: Hub, writes: WriteLimiter, config: Config) -> None:
        self._store = store
        self._hub = hub
        self._config = config
        self._writes = writes
        self._typing = RateLimiter(1 / TYPING_INTERVAL_S, 1)
        # A page must fit a connection's queue and a client's default frame limit (1 MiB).
        self._page_bytes = min(config.queue_max_bytes // 2, MAX_PAGE_BYTES)
        self._handlers: dict[type[Frame], Handler] = {
            Ping: self._ping,
            Subscribe: self._subscribe,
            Unsubscribe: self._unsubscribe,
            History: self._history,
            Typing: self._typing_notice,
            MarkRead: self._mark_read,
            ListSpheres: self._list_spheres,
            CreateSphere: self._create_sphere,
            UpdateSphere: self._update_sphere,
            Join: self._join,
            Leave: self._leave,
            AddMember: self._add_member,
            RemoveMember: self._remove_member,
            SetRole: self._set_role,
            ListMembers: self._list_members,
        }

    async def handle(self, caller: Caller, frame: Frame) -> Frame | None:
        if isinstance(frame, WRITES):
            return await self.commit_write(await self.prepare_write(caller, frame))
        handler = self._handlers.get(type(frame))
        if handler is None:
            raise CloisonError(f"{frame.TYPE} is not a request", code=ErrorCode.BAD_FRAME)
        return await handler(caller, frame)

    # -- helpers -----------------------------------------------------------------------------

    def _connection(self, caller: Caller) -> Connection:
        if caller.conn is None:
            raise CloisonError("only available over a WebSocket", code=ErrorCode.BAD_FRAME)
        return caller.conn

    async def _member_role(self, caller: Caller, sphere_id: SphereId) -> Role:
        """The caller's role, which must exist.

        From this node's member map while the hub can show it is current; otherwise, and for
        anyone the map does not know as a member, from the store.
        """
        role = self._hub.current_role(sphere_id, caller.user.user_id)
        if role is not None:
            return role
        sphere, role = await access.resolve(self._store, sphere_id, caller.user.user_id)
        return access.require_member(sphere, role)

    async def _may_read(self, caller: Caller, sphere_id: SphereId) -> None:
        """Members read (the map answers when current); anyone else is checked in the store."""
        if self._hub.current_role(sphere_id, caller.user.user_id) is not None:
            return
        sphere, role = await access.resolve(self._store, sphere_id, caller.user.user_id)
        access.require(access.can_read(sphere, role), access.JOIN_TO_READ)

    async def _spend_write(self, caller: Caller) -> None:
        wait_s = await self._writes.take(caller.user.user_id)
        if wait_s:
            raise RateLimitedError("too many writes", retry_after_ms=max(1, int(wait_s * 1000)))

    def _check_body(self, body: str) -> None:
        size = len(body.encode())
        if size > self._config.max_message_bytes:
            raise CloisonError(
                f"body of {size} bytes exceeds {self._config.max_message_bytes}",
                code=ErrorCode.TOO_LARGE,
            )

    async def prepare_write(self, caller: Caller, frame: Publish | Edit | Delete) -> PreparedWrite:
        """Check a write (size, access, rate) and build its draft; nothing is stored yet.

        A connection prepares its writes one after another and starts their commits in the
        same order, so the store sequences each sender's writes in the order they were sent.
        """
        if isinstance(frame, Publish):
            return await self._publish(caller, frame)
        if isinstance(frame, Edit):
            return await self._edit(caller, frame)
        return await self._delete(caller, frame)

    async def commit_write(self, write: PreparedWrite) -> Ack:
        """Append a prepared write durably, hand it to fan-out, and build the ack."""
        sphere_id, ref = write.sphere_id, write.ref
        try:
            result = await self._store.append(sphere_id, write.draft)
        except NotMemberError:
            # The author lost membership before the write was sequenced (maybe through
            # another node): refused as access.py would have refused it up front.
            raise await access.refused_write(
                self._store, sphere_id, write.draft.author_id
            ) from None
        # A duplicate is published again too: if the first attempt committed but never
        # reached the broker (a crash in between), this heals it; nodes drop what they have.
        await self._hub.publish(result.event)
        event = result.event
        return Ack(
            sphere_id=sphere_id,
            message_id=event.message_id,
            offset=event.offset,
            ts_ms=event.ts_ms,
            duplicate=result.duplicate,
            ref=ref,
        )

    async def _summary(self, sphere: SphereRecord, caller: Caller) -> SphereSummary:
        for summary in await self._store.user_spheres(caller.user.user_id):
            if summary.sphere_id == sphere.sphere_id:
                return summary
        return SphereSummary(
            sphere_id=sphere.sphere_id,
            name=sphere.name,
            privacy=sphere.privacy,
            epoch=sphere.epoch,
            offset=sphere.offset,
        )

    # -- connection --------------------------------------------------------------------------

    async def _ping(self, caller: Caller, frame: Ping) -> Frame:
        return Pong(server_time_ms=now_ms(), ref=frame.ref)

    async def _subscribe(self, caller: Caller, frame: Subscribe) -> Frame | None:
        conn = self._connection(caller)
        sphere, role = await access.resolve(self._store, frame.sphere_id, caller.user.user_id)
        access.require(access.can_read(sphere, role), access.JOIN_TO_READ)
        since = frame.since
        if since is not None and (since.epoch != sphere.epoch or since.offset > sphere.offset):
            raise CloisonError(
                "that position is not in this sphere's stream; fetch history and subscribe "
                "without since",
                code=ErrorCode.UNRECOVERABLE_POSITION,
            )
        await self._hub.subscribe(
            conn, sphere, since=since.offset if since is not None else None, ref=frame.ref
        )
        return None

    async def _unsubscribe(self, caller: Caller, frame: Unsubscribe) -> Frame:
        conn = self._connection(caller)
        self._hub.unsubscribe(conn, frame.sphere_id, reason=None)
        return Unsubscribed(sphere_id=frame.sphere_id, reason="requested", ref=frame.ref)

    async def _typing_notice(self, caller: Caller, frame: Typing) -> Frame | None:
        await self._member_role(caller, frame.sphere_id)
        key = (caller.user.user_id, frame.sphere_id)
        if not self._typing.take(key, time.monotonic()):
            await self._hub.typing(frame.sphere_id, caller.user.user_id)
        return Ok(ref=frame.ref) if frame.ref is not None else None

    # -- messages ----------------------------------------------------------------------------

    async def _publish(self, caller: Caller, frame: Publish) -> PreparedWrite:
        self._check_body(frame.body)
        await self._member_role(caller, frame.sphere_id)
        await self._spend_write(caller)
        return _prepared(caller, frame, EventKind.POST, body=frame.body)

    async def _target(
        self, caller: Caller, sphere_id: SphereId, target: int, *, moderate: bool
    ) -> Message:
        """The post an edit or delete names, which the caller must be allowed to change.

        Only its author may edit a post; its author or a sphere admin may delete it. A post
        already deleted passes here: the store answers a retried delete with its original
        ack and anything else with ``not_found``.
        """
        role = await self._member_role(caller, sphere_id)
        event = await self._store.get_event(sphere_id, target)
        if event is None or event.kind is not EventKind.POST:
            raise CloisonError("no such message", code=ErrorCode.NOT_FOUND)
        own = event.author_id == caller.user.user_id
        if moderate:
            access.require(
                own or access.can_manage(role),
                "only the author or a sphere admin may delete this message",
            )
        else:
            access.require(own, "only the author may edit this message")
        return event

    async def _edit(self, caller: Caller, frame: Edit) -> PreparedWrite:
        self._check_body(frame.body)
        await self._target(caller, frame.sphere_id, frame.target, moderate=False)
        await self._spend_write(caller)
        return _prepared(caller, frame, EventKind.EDIT, body=frame.body, target=frame.target)

    async def _delete(self, caller: Caller, frame: Delete) -> PreparedWrite:
        await self._target(caller, frame.sphere_id, frame.target, moderate=True)
        await self._spend_write(caller)
        return _prepared(caller, frame, EventKind.DELETE, target=frame.target)

    async def _history(self, caller: Caller, frame: History) -> Frame:
        await self._may_read(caller, frame.sphere_id)
        if frame.before is not None and frame.after is not None:
            raise CloisonError("give before or after, not both", code=ErrorCode.BAD_FRAME)
        messages, has_more = await self._store.history(
            frame.sphere_id,
            before=frame.before,
            after=frame.after,
            limit=frame.limit or DEFAULT_HISTORY_LIMIT,
        )
        messages, trimmed = _fit_page(messages, newest=frame.after is None, budget=self._page_bytes)
        has_more = has_more or trimmed
        return HistoryPage(
            sphere_id=frame.sphere_id, messages=messages, has_more=has_more, ref=frame.ref
        )

    async def _mark_read(self, caller: Caller, frame: MarkRead) -> Frame:
        await self._member_role(caller, frame.sphere_id)
        await self._store.set_read_marker(frame.sphere_id, caller.user.user_id, frame.offset)
        return Ok(ref=frame.ref)

    # -- spheres and members -----------------------------------------------------------------

    async def _list_spheres(self, caller: Caller, frame: ListSpheres) -> Frame:
        mine = await self._store.user_spheres(caller.user.user_id)
        if not frame.discover:
            return SphereList(spheres=mine, ref=frame.ref)
        by_id = {s.sphere_id: s for s in mine}
        listed = await self._store.discoverable_spheres(DISCOVER_LIMIT)
        return SphereList(spheres=[by_id.get(s.sphere_id, s) for s in listed], ref=frame.ref)

    async def _create_sphere(self, caller: Caller, frame: CreateSphere) -> Frame:
        await self._spend_write(caller)
        sphere = await self._store.create_sphere(
            frame.name, frame.privacy, caller.user.user_id, now_ms=now_ms()
        )
        return SphereInfo(sphere=await self._summary(sphere, caller), ref=frame.ref)

    async def _update_sphere(self, caller: Caller, frame: UpdateSphere) -> Frame:
        await access.resolve(self._store, frame.sphere_id, caller.user.user_id)
        updated, event = await self._store.update_sphere(
            frame.sphere_id,
            caller.user.user_id,
            access.check_update(frame.privacy),
            name=frame.name,
            privacy=frame.privacy,
            now_ms=now_ms(),
        )
        if event is not None:
            await self._hub.publish(event)  # non-member readers lose access in stream order
        return SphereInfo(sphere=await self._summary(updated, caller), ref=frame.ref)

    async def _change_member(
        self, caller: Caller, sphere_id: SphereId, target: UserId, decide: DecideMember
    ) -> None:
        """Make a membership change as ``decide`` rules on the rows of its transaction.

        The visibility check first answers ``not_found`` alike for hidden and missing spheres;
        the rules are then checked again inside the store's transaction.
        """
        await access.resolve(self._store, sphere_id, caller.user.user_id)
        event = await self._store.change_member(
            sphere_id, caller.user.user_id, target, decide, now_ms=now_ms()
        )
        if event is not None:
            await self._hub.publish(event)

    async def _join(self, caller: Caller, frame: Join) -> Frame:
        user_id = caller.user.user_id
        await self._change_member(caller, frame.sphere_id, user_id, access.decide_join)
        sphere, _ = await access.resolve(self._store, frame.sphere_id, user_id)
        return SphereInfo(sphere=await self._summary(sphere, caller), ref=frame.ref)

    async def _leave(self, caller: Caller, frame: Leave) -> Frame:
        user_id = caller.user.user_id
        await self._change_member(caller, frame.sphere_id, user_id, access.decide_leave)
        return Ok(ref=frame.ref)

    async def _add_member(self, caller: Caller, frame: AddMember) -> Frame:
        decide = access.deciding_add(frame.role)
        await self._change_member(caller, frame.sphere_id, frame.user_id, decide)
        return Ok(ref=frame.ref)

    async def _remove_member(self, caller: Caller, frame: RemoveMember) -> Frame:
        decide = access.decide_remove
        await self._change_member(caller, frame.sphere_id, frame.user_id, decide)
        return Ok(ref=frame.ref)

    async def _set_role(self, caller: Caller, frame: SetRole) -> Frame:
        decide = access.deciding_role(frame.role)
        await self._change_member(caller, frame.sphere_id, frame.user_id, decide)
        return Ok(ref=frame.ref)

    async def _list_members(self, caller: Caller, frame: ListMembers) -> Frame:
        await self._member_role(caller, frame.sphere_id)
        members = await self._store.list_members(frame.sphere_id)
        return MemberList(sphere_id=frame.sphere_id, members=members, ref=frame.ref)
