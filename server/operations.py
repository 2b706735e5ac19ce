"""What each client request does, shared by the WebSocket gateway and the HTTP API.

``Operations.handle`` takes an authenticated caller and a validated frame and returns the
reply frame (or None when the reply is sent otherwise, as ``subscribe`` does). It raises
``CloisonError`` subclasses for every refusal; the transports turn them into error frames or
HTTP responses in one place each.
"""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, cast

from protocol import (
    MAX_LIST_LIMIT,
    Ack,
    AddMember,
    Auth,
    CloisonError,
    Codec,
    CreateSphere,
    Delete,
    Edit,
    ErrorCode,
    EventKind,
    Frame,
    History,
    HistoryPage,
    Join,
    JsonCodec,
    Leave,
    ListMembers,
    ListSpheres,
    MarkRead,
    MemberList,
    Message,
    Ok,
    Ping,
    Pong,
    ProtocolViolation,
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
from server import access, paging
from server.config import Config
from server.connection import Connection
from server.hub import Hub
from server.ratelimit import RateClass, RateLimiter, WriteLimiter
from storage import (
    DecideMember,
    Draft,
    MemberKey,
    NotMemberError,
    OutcomeUnknownError,
    SphereKey,
    SphereRecord,
    Store,
    UserRecord,
    member_key,
    sphere_key,
)

# Why: one page is what a chat client shows at once; the protocol caps it at 200.
DEFAULT_HISTORY_LIMIT = 50
# Why: typing notices are hints; one per user and sphere every 2 s is plenty.
TYPING_INTERVAL_S = 2.0
DISCOVER_LIMIT = MAX_LIST_LIMIT
# Why: a member or sphere list shows this many at once; more is a page away.
DEFAULT_LIST_LIMIT = 100


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

# The budget each client frame spends (one token per request, per user, before it runs; writes
# spend theirs in ``prepare_write`` once checked). Every client frame type has a row: a test
# fails for one without.
RATE_CLASSES: dict[type[Frame], RateClass] = {
    Auth: RateClass.FREE,  # answered by the gateway, once per connection
    Ping: RateClass.FREE,
    Unsubscribe: RateClass.FREE,
    Publish: RateClass.POST,
    Edit: RateClass.POST,
    Delete: RateClass.POST,
    Subscribe: RateClass.QUERY,
    History: RateClass.QUERY,
    ListSpheres: RateClass.QUERY,
    ListMembers: RateClass.QUERY,
    Typing: RateClass.TYPING,
    MarkRead: RateClass.READ_MARKER,
    CreateSphere: RateClass.SPHERE_ADMIN,
    UpdateSphere: RateClass.SPHERE_ADMIN,
    Join: RateClass.MEMBERSHIP,
    Leave: RateClass.MEMBERSHIP,
    AddMember: RateClass.MEMBERSHIP,
    RemoveMember: RateClass.MEMBERSHIP,
    SetRole: RateClass.MEMBERSHIP,
}


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
    def __init__(
        self,
        store: Store,
        hub: Hub,
        limits: Mapping[RateClass, WriteLimiter],
        config: Config,
    ) -> None:
        self._store = store
        self._hub = hub
        self._config = config
        self._limits = limits
        self._typing = RateLimiter(1 / TYPING_INTERVAL_S, 1)
        # A page must fit a connection's queue and a client's default frame limit (1 MiB).
        self._page_bytes = config.page_bytes
        self._http_codec = JsonCodec()  # what the HTTP API answers in
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
        await self._spend(caller, RATE_CLASSES[type(frame)])
        return await handler(caller, frame)

    # -- helpers -----------------------------------------------------------------------------

    def _codec(self, caller: Caller) -> Codec:
        """The encoding the caller's replies travel in."""
        return caller.conn.codec if caller.conn is not None else self._http_codec

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

    async def _spend(self, caller: Caller, cls: RateClass) -> None:
        """Take one token of ``cls`` from the caller's bucket, or raise ``rate_limited``."""
        limiter = self._limits.get(cls)
        if limiter is None:
            return  # RateClass.FREE
        wait_s = await limiter.take(caller.user.user_id)
        if wait_s:
            raise RateLimitedError(
                f"too many requests of class {cls}", retry_after_ms=max(1, math.ceil(wait_s * 1000))
            )

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
        except OutcomeUnknownError:
            # It may be stored: deliver it here if so, without waiting for the next write.
            self._hub.resync(sphere_id)
            raise
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
        await self._spend(caller, RateClass.POST)
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
        await self._spend(caller, RateClass.POST)
        return _prepared(caller, frame, EventKind.EDIT, body=frame.body, target=frame.target)

    async def _delete(self, caller: Caller, frame: Delete) -> PreparedWrite:
        await self._target(caller, frame.sphere_id, frame.target, moderate=True)
        await self._spend(caller, RateClass.POST)
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
        messages, trimmed = paging.fit_page(
            messages,
            newest=frame.after is None,
            budget=self._page_bytes,
            codec=self._codec(caller),
        )
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
        codec = self._codec(caller)
        if frame.discover:
            if frame.after is not None:
                raise ProtocolViolation("after: discover lists the newest spheres, unpaged")
            listed = await self._store.discoverable_spheres(frame.limit or DISCOVER_LIMIT)
            mine = await self._store.user_spheres(caller.user.user_id)
            by_id = {s.sphere_id: s for s in mine}
            spheres, _ = paging.fit(
                [by_id.get(s.sphere_id, s) for s in listed],
                budget=self._page_bytes,
                size=lambda s: paging.encoded_size(codec, SphereList(spheres=[s])),
            )
            return SphereList(spheres=spheres, ref=frame.ref)
        limit = frame.limit or DEFAULT_LIST_LIMIT
        after = paging.read_cursor(frame.after, paging.SPHERE_CURSOR) if frame.after else None
        page = await self._store.user_spheres(
            caller.user.user_id, limit=limit + 1, after=cast("SphereKey | None", after)
        )
        spheres, trimmed = paging.fit(
            page[:limit],
            budget=self._page_bytes,
            size=lambda s: paging.encoded_size(codec, SphereList(spheres=[s])),
        )
        more = trimmed or len(page) > limit
        cursor = paging.cursor(sphere_key(spheres[-1])) if more else None
        return SphereList(spheres=spheres, next=cursor, ref=frame.ref)

    async def _create_sphere(self, caller: Caller, frame: CreateSphere) -> Frame:
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
        codec = self._codec(caller)
        limit = frame.limit or DEFAULT_LIST_LIMIT
        after = paging.read_cursor(frame.after, paging.MEMBER_CURSOR) if frame.after else None
        page = await self._store.list_members(
            frame.sphere_id, limit=limit + 1, after=cast("MemberKey | None", after)
        )
        members, trimmed = paging.fit(
            page[:limit],
            budget=self._page_bytes,
            size=lambda m: paging.encoded_size(
                codec, MemberList(sphere_id=frame.sphere_id, members=[m])
            ),
        )
        more = trimmed or len(page) > limit
        cursor = paging.cursor(member_key(members[-1])) if more else None
        return MemberList(sphere_id=frame.sphere_id, members=members, next=cursor, ref=frame.ref)
