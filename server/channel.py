"""A sphere as one node follows it: its subscriptions and its members, as of one offset.

``SphereChannel.members`` is the sphere's member map as of ``delivered``: loaded with the
position in one read when the channel is created, then changed by each ``member`` event as the
hub delivers it, in stream order. So the map is exactly the store's membership at the offset
this node has delivered, on every node, whatever reached it live, by gap repair or by catch-up.
``apply`` is that step, pure: it says which subscriptions a delivered event ends, the hub ends
them. Mutes are kept beside the map (``muted``: read with it, then changed by the ``muted``
and ``unmuted`` events delivered): a muted member's requests are checked on the store's rows.
A ``sphere`` event with ``deleted`` true is the sphere's last: it ends every subscription
(``closes_sphere``).

``StoreSupplied`` remembers which offsets the store had to supply (gap repair, catch-up): when
the live copy of one of them arrives afterwards, the repair was not needed (a reorder across
nodes, not a loss). It keeps runs of consecutive offsets, a bounded number, so each check is
O(1).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field

from protocol import (
    ConnId,
    EventKind,
    MemberAction,
    Message,
    MessageId,
    Privacy,
    Role,
    SphereId,
    UserId,
)
from server.connection import Connection

# Why: the live copy of a repaired event arrives within moments; older runs are not waited for.
STORE_SUPPLIED_RUNS_MAX = 64
# The ``unsubscribed`` reason of subscriptions ended by the sphere's deletion.
DELETED = "deleted"


@dataclass(slots=True)
class StoreSupplied:
    """The offsets a channel delivered from the store and not (yet) seen live, as runs."""

    runs: list[list[int]] = field(default_factory=list)  # [first, last], oldest first

    def add(self, offset: int) -> None:
        """``offset`` was delivered from the store (offsets come in increasing order)."""
        if self.runs and self.runs[-1][1] == offset - 1:
            self.runs[-1][1] = offset
            return
        self.runs.append([offset, offset])
        if len(self.runs) > STORE_SUPPLIED_RUNS_MAX:
            del self.runs[0]

    def claim(self, offset: int) -> bool:
        """Its live copy arrived: True (once) if the store had supplied ``offset``."""
        for i in range(len(self.runs) - 1, -1, -1):
            first, last = self.runs[i]
            if offset > last:
                return False  # runs are in increasing order: no older one holds it
            if offset < first:
                continue
            if first == last:
                del self.runs[i]
            elif offset == first:
                self.runs[i][0] = offset + 1
            elif offset == last:
                self.runs[i][1] = offset - 1
            else:
                self.runs[i][1] = offset - 1
                self.runs.insert(i + 1, [offset + 1, last])
                if len(self.runs) > STORE_SUPPLIED_RUNS_MAX:
                    del self.runs[0]
            return True
        return False


@dataclass(slots=True, eq=False)
class Subscription:
    conn: Connection
    sphere_id: SphereId
    role: Role | None  # None: a non-member reading a public sphere
    last_offset: int = 0  # the last offset sent to this subscription
    live: bool = False
    active: bool = True


@dataclass(slots=True, eq=False)
class SphereChannel:
    sphere_id: SphereId
    epoch: str
    privacy: Privacy = Privacy.PRIVATE
    delivered: int = -1  # last offset delivered to live subscriptions; -1 while starting
    members: dict[UserId, Role] = field(default_factory=dict)  # as of ``delivered``
    muted: dict[UserId, int] = field(default_factory=dict)  # members' mutes: until when (ms)
    subs: dict[ConnId, Subscription] = field(default_factory=dict)
    pending: dict[int, Message] = field(default_factory=dict)
    online: Counter[UserId] = field(default_factory=Counter)
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    repairing: bool = False
    catch_up: bool = False  # read the store until it has nothing newer
    # A broker reset (or an outbox overflow) may have lost frames: the member map may be behind
    # the store until a catch-up or a reconciliation has shown otherwise.
    stale: bool = False
    store_supplied: StoreSupplied = field(default_factory=StoreSupplied)
    # Callers waiting until ``delivered`` reaches an offset (``Hub.reach``).
    waiters: list[tuple[int, asyncio.Future[None]]] = field(default_factory=list)

    def wake(self) -> None:
        """Resolve the waiters whose offset has been delivered."""
        still = []
        for offset, future in self.waiters:
            if offset <= self.delivered:
                if not future.done():
                    future.set_result(None)
            else:
                still.append((offset, future))
        self.waiters = still

    def gone(self) -> Message:
        """The last event of a sphere the store no longer holds, when the broker lost the real
        one: applied, never sent (subscribers are told by their ``unsubscribed``)."""
        return Message(
            sphere_id=self.sphere_id,
            offset=self.delivered + 1,
            kind=EventKind.SPHERE,
            message_id=MessageId("~deleted"),
            author_id=UserId(""),
            ts_ms=time.time_ns() // 1_000_000,
            deleted=True,
            privacy=self.privacy,
        )

    def unmuted(self, user_id: UserId) -> bool:
        """No mute of ``user_id`` known here is running."""
        return self.muted.get(user_id, 0) <= time.time_ns() // 1_000_000


def closes_sphere(event: Message) -> bool:
    """Is ``event`` the last of a deleted sphere?"""
    return event.kind is EventKind.SPHERE and event.deleted


def end_reason(event: Message, revoked: str) -> str:
    """The ``unsubscribed`` reason of a subscription that ``event`` ends."""
    return DELETED if closes_sphere(event) else revoked


def apply(channel: SphereChannel, event: Message) -> list[Subscription]:
    """Apply a delivered ``member`` or ``sphere`` event to the channel's state.

    Returns:
        The subscriptions that lost access with it (the hub ends them, after the event itself
        was delivered to them). Role changes update the subscriptions in place.
    """
    if closes_sphere(event):
        channel.members.clear()
        return list(channel.subs.values())
    if event.kind is EventKind.MEMBER and event.member_id is not None:
        user_id = event.member_id
        if event.action is MemberAction.MUTED and event.until_ms is not None:
            channel.muted[user_id] = event.until_ms
        elif event.action is MemberAction.UNMUTED or event.role is None:
            channel.muted.pop(user_id, None)
        if event.role is None:
            channel.members.pop(user_id, None)
            return [sub for sub in channel.subs.values() if sub.conn.user_id == user_id]
        channel.members[user_id] = event.role
        return []
    if event.kind is EventKind.SPHERE and event.privacy is not None:
        channel.privacy = event.privacy
        if event.privacy is not Privacy.PUBLIC:
            return [sub for sub in channel.subs.values() if sub.role is None]
    return []


def ends(sub: Subscription, event: Message) -> bool:
    """Does ``event``, replayed to ``sub``, end its access (sent first, then the end)?"""
    if closes_sphere(event):
        return True
    if event.kind is EventKind.MEMBER:
        return event.member_id == sub.conn.user_id and event.role is None
    if event.kind is EventKind.SPHERE:
        return sub.role is None and event.privacy is not Privacy.PUBLIC
    return False
