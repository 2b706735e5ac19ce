"""Local fan-out: which connection on this node follows which sphere, and in what order.

Theory of operation. Each sphere with local subscribers has a ``SphereChannel``. A write
accepted by this node is delivered here first (``publish``), then handed to the broker with
this node's tag for the other nodes; frames from other nodes arrive through
``on_publication``, and a node skips its own. ``message`` frames carry the sphere's offset:
the channel delivers them strictly in offset order, drops offsets it has already delivered,
and holds an early arrival back while it reads the missing range from the store (pub/sub may
lose or reorder; the store never does). After a broker reconnect every channel catches up
from the store. Each frame is encoded once per codec, whatever the number of recipients.

Access changes travel on a control channel every node follows, so a member removed on one
node loses their subscriptions and cached role on all of them.

A subscription is ``live`` once it has caught up. A resuming subscription first replays the
store after the client's offset, page by page, paced by the connection's queue; live frames
are skipped for it meanwhile and picked up by the next page, so it switches to live with no
gap and no duplicate (each subscription also remembers the last offset it was sent).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from dataclasses import dataclass, field

import msgpack

from protocol import (
    ConnId,
    Frame,
    Message,
    MsgpackCodec,
    Presence,
    ProtocolViolation,
    Role,
    SphereId,
    StreamPosition,
    Subscribed,
    Unsubscribed,
    UserId,
    UserTyping,
    Wire,
)
from server.access import RoleCache
from server.broker import Broker
from server.connection import Connection
from server.metrics import Metrics
from server.presence import PresenceDirectory
from server.tasks import TaskSupervisor
from storage import SphereRecord, Store

logger = logging.getLogger(__name__)

# Why: pages big enough to amortise a store read, small enough to pace by the client's queue.
REPLAY_PAGE = 256
# Why: an out-of-order arrival usually fills within a scheduler tick; past this, read the store.
GAP_HOLD_S = 0.05
# Why: bounds memory held for a sphere whose gap cannot be filled yet.
MAX_PENDING = 10_000
# The broker channel on which nodes announce access changes; no sphere id looks like it.
CONTROL_CHANNEL = SphereId("~control")
# Why: a client that reconnects within this does not flap offline and online for others.
PRESENCE_GRACE_S = 1.0


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
    delivered: int = -1  # last offset delivered to live subscriptions; -1 while starting
    subs: dict[ConnId, Subscription] = field(default_factory=dict)
    pending: dict[int, Message] = field(default_factory=dict)
    online: Counter[UserId] = field(default_factory=Counter)
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    repairing: bool = False
    catch_up: bool = False  # read the store until it has nothing newer (after a broker reset)


class Hub:
    def __init__(
        self,
        store: Store,
        broker: Broker,
        presence: PresenceDirectory,
        tasks: TaskSupervisor,
        metrics: Metrics,
        roles: RoleCache,
        *,
        node: str,
    ) -> None:
        self._roles = roles
        self._metrics = metrics
        self._presence = presence
        self._departures: dict[tuple[SphereId, UserId], asyncio.TimerHandle] = {}
        # Tags this node's broker envelopes, so it skips its own (delivered locally first).
        self._node = node.encode()
        self._store = store
        self._broker = broker
        self._tasks = tasks
        self._channels: dict[SphereId, SphereChannel] = {}
        self._by_conn: dict[ConnId, dict[SphereId, Subscription]] = {}
        self._envelope_codec = MsgpackCodec(max_frame_bytes=1 << 24)

    # -- broker side -------------------------------------------------------------------------

    async def start(self) -> None:
        """Follow the control channel, on which nodes tell each other about access changes."""
        await self._broker.subscribe(CONTROL_CHANNEL)

    def on_publication(self, sphere_id: SphereId, envelope: bytes) -> None:
        node, sep, frame_bytes = envelope.partition(b"|")
        if not sep or node == self._node:
            return  # this node delivered its own frames already
        if sphere_id == CONTROL_CHANNEL:
            self._apply_control(frame_bytes)
            return
        channel = self._channels.get(sphere_id)
        if channel is None:
            return
        try:
            frame = self._envelope_codec.decode_server(frame_bytes)
        except ProtocolViolation:
            logger.exception("dropping a malformed envelope", extra={"sphere_id": sphere_id})
            return
        if isinstance(frame, Message):
            self._arrive(channel, frame, frame_bytes)
        elif isinstance(frame, UserTyping):
            self._broadcast(channel, frame, skip_user=frame.user_id, wire=frame_bytes)
        elif isinstance(frame, Presence):
            self._broadcast(channel, frame, wire=frame_bytes)
        else:
            logger.warning("unexpected envelope type %s", frame.TYPE)

    def on_broker_reset(self) -> None:
        """The broker may have lost frames (it reconnected): catch every channel up."""
        self._roles.clear()  # an access change may have been lost with them
        for channel in self._channels.values():
            if channel.delivered >= 0:
                self._schedule_repair(channel, catch_up=True)

    def resync(self, sphere_id: SphereId) -> None:
        """Read the sphere's stream from the store and deliver what this node has not."""
        channel = self._channels.get(sphere_id)
        if channel is not None and channel.delivered >= 0:
            self._schedule_repair(channel, catch_up=True)

    async def publish(self, event: Message) -> None:
        """Deliver a durable event on this node, then tell the other nodes through the broker."""
        frame_bytes = self._encode(event)
        channel = self._channels.get(event.sphere_id)
        if channel is not None:
            self._arrive(channel, event, frame_bytes)
        await self._tell_others(event.sphere_id, frame_bytes)

    async def typing(self, sphere_id: SphereId, user_id: UserId) -> None:
        await self._relay(UserTyping(sphere_id=sphere_id, user_id=user_id), skip_user=user_id)

    async def _relay(
        self, frame: UserTyping | Presence, *, skip_user: UserId | None = None
    ) -> None:
        """Deliver an ephemeral frame on this node, then tell the other nodes."""
        frame_bytes = self._encode(frame)
        channel = self._channels.get(frame.sphere_id)
        if channel is not None:
            self._broadcast(channel, frame, skip_user=skip_user, wire=frame_bytes)
        await self._tell_others(frame.sphere_id, frame_bytes)

    def _encode(self, frame: Frame) -> bytes:
        """A frame as carried between nodes: MessagePack, reused as-is for msgpack clients."""
        frame_bytes = self._envelope_codec.encode(frame)
        assert isinstance(frame_bytes, bytes)
        return frame_bytes

    async def _tell_others(self, channel: SphereId, payload: bytes) -> None:
        # The node tag lets every node skip what it published itself.
        await self._broker.publish(channel, self._node + b"|" + payload)

    # -- access changes ----------------------------------------------------------------------

    async def access_changed(
        self, sphere_id: SphereId, user_id: UserId | None, role: Role | None
    ) -> None:
        """Apply a membership change on every node: drop cached roles, end subscriptions
        that lost access, update the others.

        ``user_id`` None means the sphere stopped being public: non-member readers lose access.
        ``role`` None means the user is no longer a member.
        """
        self._apply_access(sphere_id, user_id, role)
        change = {"sphere_id": sphere_id, "user_id": user_id, "role": role}
        await self._tell_others(CONTROL_CHANNEL, msgpack.packb(change))

    def _apply_control(self, payload: bytes) -> None:
        try:
            change = msgpack.unpackb(payload)
            sphere_id = SphereId(change["sphere_id"])
            user_id = UserId(change["user_id"]) if change["user_id"] is not None else None
            role = Role(change["role"]) if change["role"] is not None else None
        except (ValueError, KeyError, TypeError):
            logger.exception("dropping a malformed control message")
            return
        self._apply_access(sphere_id, user_id, role)

    def _apply_access(self, sphere_id: SphereId, user_id: UserId | None, role: Role | None) -> None:
        self._roles.forget(sphere_id, user_id)
        if user_id is not None and role is not None:
            self.set_role(sphere_id, user_id, role)
        else:
            self.revoke(sphere_id, user_id)

    # -- ordered delivery --------------------------------------------------------------------

    def _arrive(self, channel: SphereChannel, event: Message, envelope: bytes | None) -> None:
        offset = event.offset
        if channel.delivered < 0 or offset > channel.delivered + 1:
            if offset > channel.delivered and len(channel.pending) < MAX_PENDING:
                channel.pending[offset] = event
            if channel.delivered >= 0:
                self._schedule_repair(channel)
            return
        if offset <= channel.delivered:
            return
        self._deliver(channel, event, envelope)
        self._drain_pending(channel)

    def _drain_pending(self, channel: SphereChannel) -> None:
        pending = channel.pending
        while pending:
            nxt = pending.pop(channel.delivered + 1, None)
            if nxt is None:
                for stale in [o for o in pending if o <= channel.delivered]:
                    del pending[stale]
                if pending:
                    self._schedule_repair(channel)
                return
            self._deliver(channel, nxt, None)

    def _deliver(self, channel: SphereChannel, event: Message, envelope: bytes | None) -> None:
        channel.delivered = event.offset
        wires: dict[str, Wire] = {}
        if envelope is not None:
            wires[self._envelope_codec.subprotocol] = envelope
        offset = event.offset
        sent = 0
        for sub in channel.subs.values():
            if not sub.live or offset <= sub.last_offset:
                continue
            codec = sub.conn.codec
            wire = wires.get(codec.subprotocol)
            if wire is None:
                wire = wires[codec.subprotocol] = codec.encode(event)
            sub.last_offset = offset
            sub.conn.enqueue(wire)
            sent += 1
        self._metrics.deliveries.inc(sent)
        self._metrics.fanout_latency.observe(max(0.0, time.time() - event.ts_ms / 1000))

    def _schedule_repair(self, channel: SphereChannel, *, catch_up: bool = False) -> None:
        if catch_up:
            channel.catch_up = True
        if channel.repairing:
            return
        channel.repairing = True
        self._tasks.spawn(self._repair(channel), name=f"repair {channel.sphere_id}")

    async def _repair(self, channel: SphereChannel) -> None:
        """Fill a gap (or, after a broker reset, catch up) from the store."""
        try:
            if not channel.catch_up:
                await asyncio.sleep(GAP_HOLD_S)
            while (channel.pending or channel.catch_up) and (
                self._channels.get(channel.sphere_id) is channel
            ):
                channel.catch_up = False
                first_missing = channel.delivered + 1
                if first_missing in channel.pending:
                    self._drain_pending(channel)
                    continue
                events = await self._store.events_after(
                    channel.sphere_id, channel.delivered, REPLAY_PAGE
                )
                if not events:
                    break  # the store has not caught up; the next arrival re-triggers repair
                channel.catch_up = len(events) == REPLAY_PAGE
                logger.info(
                    "repairing a gap of %d events",
                    len(events),
                    extra={"sphere_id": channel.sphere_id},
                )
                for event in events:
                    if event.offset == channel.delivered + 1:
                        self._deliver(channel, event, None)
                        self._metrics.gap_repairs.inc()
                self._drain_pending(channel)
        finally:
            channel.repairing = False

    def _broadcast(
        self,
        channel: SphereChannel,
        frame: Frame,
        *,
        skip_user: UserId | None = None,
        skip_conn: ConnId | None = None,
        wire: bytes | None = None,
    ) -> None:
        """Send an ephemeral frame to every subscription, encoded once per codec.

        Replaying subscriptions get it too: ephemeral frames have no offset to wait for.
        """
        wires: dict[str, Wire] = {}
        if wire is not None:
            wires[self._envelope_codec.subprotocol] = wire
        for sub in channel.subs.values():
            if sub.conn.user_id == skip_user or sub.conn.conn_id == skip_conn:
                continue
            codec = sub.conn.codec
            encoded = wires.get(codec.subprotocol)
            if encoded is None:
                encoded = wires[codec.subprotocol] = codec.encode(frame)
            sub.conn.enqueue(encoded)

    # -- subscriptions -----------------------------------------------------------------------

    async def subscribe(
        self,
        conn: Connection,
        sphere: SphereRecord,
        role: Role | None,
        *,
        since: int | None,
        ref: str | None,
    ) -> None:
        """Subscribe ``conn`` and send ``subscribed``, then (with ``since``) the replay.

        The caller has checked that the user may read the sphere and that ``since`` belongs
        to the sphere's current epoch and is not past its end.
        """
        channel = await self._channel(sphere)
        sub = Subscription(conn, sphere.sphere_id, role)
        previous = self.subscription(conn, sphere.sphere_id)
        self._add(channel, sub)  # before removing the old one, so the channel never empties
        if previous is not None:
            self._remove(channel, previous)
        online = await self._presence.online(sphere.sphere_id)
        if not sub.active:
            return  # replaced or revoked meanwhile
        online.update(channel.online)
        if since is None:
            sub.last_offset = channel.delivered
            sub.live = True
            conn.send(self._subscribed(channel, sub, online, ref))
            return
        sub.last_offset = since
        conn.send(self._subscribed(channel, sub, online, ref))
        await self._replay(channel, sub)

    def _subscribed(
        self, channel: SphereChannel, sub: Subscription, online: set[UserId], ref: str | None
    ) -> Frame:
        return Subscribed(
            sphere_id=channel.sphere_id,
            position=StreamPosition(max(channel.delivered, sub.last_offset), channel.epoch),
            online=sorted(online),
            ref=ref,
        )

    async def _replay(self, channel: SphereChannel, sub: Subscription) -> None:
        conn = sub.conn
        # Replay fills at most half the queue, leaving room for replies and presence.
        high_water = conn.queue_max_bytes // 2
        while sub.active and not conn.closing:
            events = await self._store.events_after(sub.sphere_id, sub.last_offset, REPLAY_PAGE)
            for event in events:
                if conn.queued_bytes > high_water:
                    await conn.wait_drained(high_water // 2)
                if not sub.active or conn.closing:
                    return
                if event.offset > sub.last_offset:
                    sub.last_offset = event.offset
                    conn.send(event)
            if len(events) < REPLAY_PAGE and sub.last_offset >= channel.delivered:
                sub.live = True  # no await since the check: nothing delivered can be missed
                return

    async def _channel(self, sphere: SphereRecord) -> SphereChannel:
        channel = self._channels.get(sphere.sphere_id)
        if channel is not None:
            await channel.ready.wait()
            return channel
        channel = SphereChannel(sphere.sphere_id, sphere.epoch)
        self._channels[sphere.sphere_id] = channel
        try:
            await self._broker.subscribe(sphere.sphere_id)
            # Read the position only after subscribing, so nothing falls between the two.
            current = await self._store.get_sphere(sphere.sphere_id)
        except BaseException:
            del self._channels[sphere.sphere_id]
            channel.ready.set()
            raise
        channel.delivered = current.offset if current is not None else sphere.offset
        self._drain_pending(channel)
        channel.ready.set()
        return channel

    def _add(self, channel: SphereChannel, sub: Subscription) -> None:
        old = channel.subs.get(sub.conn.conn_id)
        if old is not None:
            old.active = False  # replaced: its replay, if any, stops
        channel.subs[sub.conn.conn_id] = sub
        self._by_conn.setdefault(sub.conn.conn_id, {})[sub.sphere_id] = sub
        if sub.role is not None:
            self._count_in(channel, sub.conn.user_id)

    # -- presence ----------------------------------------------------------------------------

    def _count_in(self, channel: SphereChannel, user_id: UserId) -> None:
        channel.online[user_id] += 1
        if channel.online[user_id] > 1:
            return
        pending = self._departures.pop((channel.sphere_id, user_id), None)
        if pending is not None:
            pending.cancel()  # back within the grace period: nobody saw them leave
            return
        self._tasks.spawn(self._arrival(channel.sphere_id, user_id), name="presence arrival")

    def _count_out(self, channel: SphereChannel, user_id: UserId) -> None:
        channel.online[user_id] -= 1
        if channel.online[user_id] > 0:
            return
        del channel.online[user_id]
        key = (channel.sphere_id, user_id)
        # Coalesce: a reconnect within the grace period announces nothing.
        self._departures[key] = asyncio.get_running_loop().call_later(
            PRESENCE_GRACE_S,
            lambda: self._tasks.spawn(self._departure(*key), name="presence departure"),
        )

    async def _arrival(self, sphere_id: SphereId, user_id: UserId) -> None:
        if await self._presence.arrived(sphere_id, user_id):
            await self._relay(Presence(sphere_id=sphere_id, user_id=user_id, online=True))

    async def _departure(self, sphere_id: SphereId, user_id: UserId) -> None:
        self._departures.pop((sphere_id, user_id), None)
        channel = self._channels.get(sphere_id)
        if channel is not None and channel.online.get(user_id, 0) > 0:
            return
        if await self._presence.left(sphere_id, user_id):
            await self._relay(Presence(sphere_id=sphere_id, user_id=user_id, online=False))

    def _remove(self, channel: SphereChannel, sub: Subscription) -> None:
        sub.active = False
        conn_id = sub.conn.conn_id
        if channel.subs.get(conn_id) is sub:
            del channel.subs[conn_id]
            subs = self._by_conn.get(conn_id)
            if subs is not None:
                subs.pop(sub.sphere_id, None)
                if not subs:
                    del self._by_conn[conn_id]
        if sub.role is not None:
            self._count_out(channel, sub.conn.user_id)
        if not channel.subs:
            del self._channels[channel.sphere_id]
            self._tasks.spawn(self._release(channel.sphere_id), name="broker unsubscribe")

    async def _release(self, sphere_id: SphereId) -> None:
        # A subscriber may have come back since: then the new channel keeps the broker
        # subscription. Checked when the task runs, right before the broker call is made.
        if sphere_id not in self._channels:
            await self._broker.unsubscribe(sphere_id)

    def unsubscribe(self, conn: Connection, sphere_id: SphereId, *, reason: str | None) -> bool:
        """End a subscription; with a ``reason``, tell the client. False if there was none."""
        sub = self._by_conn.get(conn.conn_id, {}).get(sphere_id)
        channel = self._channels.get(sphere_id)
        if sub is None or channel is None:
            return False
        self._remove(channel, sub)
        if reason is not None:
            conn.send(Unsubscribed(sphere_id=sphere_id, reason=reason))
        return True

    def drop_connection(self, conn: Connection) -> None:
        for sphere_id in list(self._by_conn.get(conn.conn_id, {})):
            self.unsubscribe(conn, sphere_id, reason=None)

    def subscription(self, conn: Connection, sphere_id: SphereId) -> Subscription | None:
        return self._by_conn.get(conn.conn_id, {}).get(sphere_id)

    def revoke(self, sphere_id: SphereId, user_id: UserId | None) -> None:
        """End the subscriptions of a user who lost access (``None``: of every non-member)."""
        channel = self._channels.get(sphere_id)
        if channel is None:
            return
        for sub in list(channel.subs.values()):
            lost = sub.conn.user_id == user_id if user_id is not None else sub.role is None
            if lost:
                self.unsubscribe(sub.conn, sphere_id, reason="access_revoked")

    def set_role(self, sphere_id: SphereId, user_id: UserId, role: Role) -> None:
        """A user's role changed (or a public reader joined): update live subscriptions."""
        channel = self._channels.get(sphere_id)
        if channel is None:
            return
        for sub in channel.subs.values():
            if sub.conn.user_id != user_id:
                continue
            if sub.role is None:
                self._count_in(channel, user_id)
            sub.role = role
