"""A sphere as one node follows it: its subscriptions and its members, as of one offset.

``SphereChannel.members`` is the sphere's member map as of ``delivered``: loaded with the
position in one read when the channel is created, then changed by each ``member`` event as the
hub delivers it, in stream order. So the map is exactly the store's membership at the offset
this node has delivered, on every node, whatever reached it live, by gap repair or by catch-up.
``apply`` is that step, pure: it says which subscriptions a delivered event ends, the hub ends
them.

The channel also holds what each reader may be sent. The history promise gives each
subscription a floor (``storage.rows.read_floor``): an event that changes a post below it (an
edit, a delete, a reaction, a pin) is not theirs to see, nor is the post. A reader who may not
list the members (a visitor; an ordinary member of a restricted sphere; an outsider reading a
public sphere) is not sent the member events of others. A new charter ends the subscriptions
of the members who have not accepted it (all but its setter), after its ``sphere`` event.
``withheld`` is that per-recipient test; only member events and events with a ``target``
need it, so every other event goes to every subscription.

Mutes are kept beside the map (``muted``: read with it, then changed by the ``muted`` and
``unmuted`` events delivered): a muted member's requests are checked on the store's rows. A
``sphere`` event with ``deleted`` true is the sphere's last: it ends every subscription
(``closes_sphere``), with the reason ``deleted``.

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
    Frame,
    HistoryMode,
    MemberAction,
    Message,
    MessageId,
    OrgId,
    Privacy,
    Role,
    SphereId,
    UserId,
    Wire,
)
from server.access import sees_members
from server.connection import Connection
from storage import joined_from, public_from_after, read_floor

REVOKED = "access_revoked"
CHARTER = "charter"  # a new charter the member has not accepted
DELETED = "deleted"  # the sphere was deleted

# Why: the live copy of a repaired event arrives within moments; older runs are not waited for.
STORE_SUPPLIED_RUNS_MAX = 64


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
    floor: int = 0  # the first offset its reader may read (the history promise)
    charter_accepted: int = 0  # the charter version its reader had accepted (members)
    checked: int = 0  # the offset its access was checked at; a replay up to it ends nothing


@dataclass(slots=True, eq=False)
class SphereChannel:
    sphere_id: SphereId
    epoch: str
    privacy: Privacy = Privacy.PRIVATE
    org_id: OrgId | None = None  # known once the channel is open
    history: HistoryMode = HistoryMode.SINCE_JOINING
    public_from: int = 0
    charter_version: int = 0
    delivered: int = -1  # last offset delivered to live subscriptions; -1 while starting
    members: dict[UserId, Role] = field(default_factory=dict)  # as of ``delivered``
    floors: dict[UserId, int] = field(default_factory=dict)  # each member's history_from
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

    def floor_of(self, user_id: UserId, role: Role | None) -> int:
        """The first offset ``user_id`` (a member when ``role`` is set) may read."""
        member_from = self.floors.get(user_id, 0) if role is not None else None
        return read_floor(self.privacy, self.public_from, member_from)


def closes_sphere(event: Message) -> bool:
    """Is ``event`` the last of a deleted sphere?"""
    return event.kind is EventKind.SPHERE and event.deleted


def apply(channel: SphereChannel, event: Message) -> list[tuple[Subscription, str]]:
    """Apply a delivered ``member`` or ``sphere`` event to the channel's state.

    Returns:
        The subscriptions that lost access with it, each with the reason (the hub ends them,
        after the event itself was delivered to them). Role changes and floors update the
        subscriptions in place.
    """
    if closes_sphere(event):
        channel.members.clear()
        return [(sub, DELETED) for sub in channel.subs.values()]
    if event.kind is EventKind.MEMBER and event.member_id is not None:
        user_id = event.member_id
        if event.until_ms is not None and event.role is not None:  # muted, or back muted
            channel.muted[user_id] = event.until_ms
        elif event.action is MemberAction.UNMUTED or event.role is None:
            channel.muted.pop(user_id, None)
        if event.role is None:
            channel.members.pop(user_id, None)
            channel.floors.pop(user_id, None)
            return [(sub, REVOKED) for sub in channel.subs.values() if sub.conn.user_id == user_id]
        if user_id not in channel.members:
            channel.floors[user_id] = joined_from(channel.history, event.offset)
        channel.members[user_id] = event.role
        ended = []
        for sub in channel.subs.values():
            if sub.conn.user_id != user_id:
                continue
            if sub.role is None and channel.charter_version > sub.charter_accepted:
                ended.append((sub, CHARTER))  # an outside reader who joined accepts it first
            sub.role = event.role
            sub.floor = channel.floor_of(user_id, event.role)
        return ended
    if event.kind is not EventKind.SPHERE or event.privacy is None:
        return []
    history = event.history or channel.history
    channel.public_from = public_from_after(
        (channel.privacy, channel.history, channel.public_from),
        event.privacy,
        history,
        event.offset,
    )
    channel.privacy, channel.history = event.privacy, history
    if event.charter_version is not None:
        channel.charter_version = event.charter_version
    ended = []
    for sub in channel.subs.values():
        reason = ends(sub, event)
        if reason is not None:
            ended.append((sub, reason))
            continue
        sub.floor = channel.floor_of(sub.conn.user_id, sub.role)
        if sub.role is not None and event.author_id == sub.conn.user_id:
            sub.charter_accepted = channel.charter_version  # its setter accepted it
    return ended


def ends(sub: Subscription, event: Message) -> str | None:
    """Does ``event``, sent to ``sub``, end its access (sent first, then the end)? The reason.

    A removal ends its member's subscriptions; a sphere that stops being public, those of its
    outside readers; a new charter, those of the members who have not accepted it.
    """
    user_id = sub.conn.user_id
    if closes_sphere(event):
        return DELETED
    if event.kind is EventKind.MEMBER:
        return REVOKED if event.member_id == user_id and event.role is None else None
    if event.kind is not EventKind.SPHERE:
        return None
    if sub.role is None:
        return REVOKED if event.privacy is not Privacy.PUBLIC else None
    version = event.charter_version or 0
    if version > sub.charter_accepted and event.author_id != user_id:
        return CHARTER
    return None


def withheld(sub: Subscription, event: Message, privacy: Privacy) -> bool:
    """Is ``event`` kept from ``sub``: it changes a post older than the reader's floor, or it
    is another member's change and the reader may not learn who the members are?"""
    if event.target is not None:
        return event.target < sub.floor
    if event.kind is EventKind.MEMBER:
        return event.member_id != sub.conn.user_id and not sees_members(privacy, sub.role)
    return False


def send_hint(
    channel: SphereChannel,
    frame: Frame,
    wires: dict[str, Wire],
    *,
    skip_user: UserId | None,
    skip_conn: ConnId | None,
) -> None:
    """Send a presence or typing frame to the live subscriptions that may learn who the
    members are (and to its subject), encoded once per codec (``wires`` caches them)."""
    about = getattr(frame, "user_id", None)
    privacy = channel.privacy
    for sub in channel.subs.values():
        user_id = sub.conn.user_id
        if not sub.live or user_id == skip_user or sub.conn.conn_id == skip_conn:
            continue
        if user_id != about and not sees_members(privacy, sub.role):
            continue
        codec = sub.conn.codec
        encoded = wires.get(codec.subprotocol)
        if encoded is None:
            encoded = wires[codec.subprotocol] = codec.encode(frame)
        sub.conn.enqueue(encoded)
