"""Local fan-out: which connection on this node follows which sphere, and in what order.

Theory of operation. Each sphere with local subscribers has a ``SphereChannel``. A write
accepted by this node is delivered here first (``publish``), then handed to the broker with
this node's tag for the other nodes; frames from other nodes arrive through
``on_publication``, and a node skips its own. ``message`` frames carry the sphere's offset:
the channel delivers them strictly in offset order, drops offsets it has already delivered,
and holds an early arrival back; if the gap is still open after the hold (``server.gap_hold``:
adaptive, from the observed broker delay), it reads the missing range from the store (pub/sub
may lose or reorder; the store never does). Each frame is encoded once per codec, whatever the
number of recipients.

Gap repairs are counted honestly. ``cloison_gap_repairs_total`` counts events the store
supplied; when the live copy of one arrives afterwards (a reorder across nodes, not a loss),
``cloison_gap_repairs_unneeded_total`` counts it too, so the difference counts the events the
broker never delivered. A repair is logged after its delivery, only if the store supplied
something: at INFO for a catch-up after a broker reset or outage, at DEBUG otherwise.

Membership is applied in stream order. A channel holds the sphere's member map as of the
offset it has delivered (``server.channel``); a ``member`` event changes it as it is delivered,
live, by gap repair or by catch-up alike. A removal is delivered to the removed user's
subscriptions, then ends them (``access_revoked``); so nothing sequenced after the removal
reaches them from this node. Access decisions come from the map only while the node can show
it is current (``current_access``): broker healthy, no gap pending, no reset since the last
catch-up. Otherwise the caller reads the store.

Reconciliation bounds staleness when pub/sub fails silently (a paused Redis, a lost frame):
every ``reconcile_interval_s`` the hub reads the store heads of all its channels in one query
and catches up each channel that is behind. A repair or catch-up that fails (the store is
down) retries with backoff until it succeeds or the channel is gone.

A subscription is ``live`` once it has caught up. A resuming subscription first replays the
store after the client's offset, page by page, paced by the connection's queue; live frames
are skipped for it meanwhile and picked up by the next page, so it switches to live with no
gap and no duplicate (each subscription also remembers the last offset it was sent), then
gets ``replayed``. Typing and presence frames go to live subscriptions of current channels
only: they are hints, and a channel with a gap may not have applied a removal yet. Presence
counting lives in ``server.online``.

Not every subscriber is sent every event (``server.channel.withheld``): the history promise
keeps from a reader the changes of posts older than their floor, and a reader who may not list
the members is sent neither other members' events nor their presence and typing. Live
delivery, gap repair, catch-up and replay all pass through the same test; frames are still
encoded once per codec, only the recipients differ.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import replace

from protocol import (
    CloisonError,
    ConnId,
    ErrorCode,
    EventKind,
    Frame,
    Message,
    MsgpackCodec,
    OrgId,
    Presence,
    Privacy,
    ProtocolViolation,
    Replayed,
    SphereId,
    StreamPosition,
    Subscribed,
    UserId,
    UserTyping,
    Wire,
)
from server import access
from server.access import MapAccess
from server.broker import Broker
from server.channel import (
    REVOKED,
    SphereChannel,
    Subscription,
    apply,
    closes_sphere,
    ends,
    send_hint,
    withheld,
)
from server.connection import Connection
from server.gap_hold import GapHold
from server.metrics import Metrics
from server.online import OnlineCounter
from server.presence import PresenceDirectory
from server.subscriptions import Subscriptions
from server.tasks import TaskSupervisor
from storage import SphereRecord, Store

logger = logging.getLogger(__name__)

# Why: pages big enough to amortise a store read, small enough to pace by the client's queue.
REPLAY_PAGE = 256
# Why: bounds memory held for a sphere whose gap cannot be filled yet.
MAX_PENDING = 10_000
# Why: a failed store read is retried soon, then less often, so an outage costs little.
REPAIR_RETRY_MIN_S = 0.1
REPAIR_RETRY_MAX_S = 2.0
# Why: a subscriber waits this long at most for the channel to reach the store's position.
REACH_TIMEOUT_S = 5.0
# Why: a channel released while a subscriber waited for it is opened again; one that keeps
# failing to open is a store or broker failure, answered ``unavailable``.
CHANNEL_LOOKS = 3
# Why: the default staleness bound of a node whose broker fails silently (docs/operations.md).
DEFAULT_RECONCILE_INTERVAL_S = 2.0


class Hub:
    def __init__(
        self,
        store: Store,
        broker: Broker,
        presence: PresenceDirectory,
        tasks: TaskSupervisor,
        metrics: Metrics,
        *,
        node: str,
        reconcile_interval_s: float = DEFAULT_RECONCILE_INTERVAL_S,
    ) -> None:
        self._metrics = metrics
        self._reconcile_interval_s = reconcile_interval_s
        self._reconciler: asyncio.Task[None] | None = None
        self._resets = 0  # broker resets so far: a catch-up older than the last one proves nothing
        # Tags this node's broker envelopes, so it skips its own (delivered locally first).
        self._node = node.encode()
        self._store = store
        self._broker = broker
        self._tasks = tasks
        self._channels: dict[SphereId, SphereChannel] = {}
        self._online = OnlineCounter(presence, tasks, self._channels, self._relay)
        self._hold = GapHold()
        self._subs = Subscriptions(self._channels, self._online, tasks, broker)
        self._envelope_codec = MsgpackCodec(max_frame_bytes=1 << 24)

    # -- broker side -------------------------------------------------------------------------

    async def start(self) -> None:
        """Start reconciling this node's channels with the store; ``aclose()`` stops it."""
        self._reconciler = asyncio.create_task(self._reconcile(), name="hub reconciliation")

    async def aclose(self) -> None:
        if self._reconciler is not None:
            self._reconciler.cancel()
            await asyncio.gather(self._reconciler, return_exceptions=True)
            self._reconciler = None

    def on_publication(self, sphere_id: SphereId, envelope: bytes) -> None:
        node, sep, frame_bytes = envelope.partition(b"|")
        if not sep or node == self._node:
            return  # this node delivered its own frames already
        channel = self._channels.get(sphere_id)
        if channel is None:
            return
        try:
            frame = self._envelope_codec.decode_server(frame_bytes)
        except ProtocolViolation:
            logger.exception("dropping a malformed envelope", extra={"sphere_id": sphere_id})
            return
        if isinstance(frame, Message):
            self._hold.observe(time.time() - frame.ts_ms / 1000)
            self._arrive(channel, frame, frame_bytes)
        elif isinstance(frame, UserTyping):
            self._broadcast(channel, frame, skip_user=frame.user_id, wire=frame_bytes)
        elif isinstance(frame, Presence):
            self._broadcast(channel, frame, wire=frame_bytes)
        else:
            logger.warning("unexpected envelope type %s", frame.TYPE)

    def on_broker_reset(self) -> None:
        """The broker may have lost frames (it reconnected): catch every channel up."""
        self._resets += 1
        for channel in self._channels.values():
            channel.stale = True  # until a catch-up shows the map is current again
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

    # -- access from the member map -------------------------------------------------------

    def _current(self, channel: SphereChannel) -> bool:
        """Can this node show that the channel's member map is the store's, give or take
        what the broker is carrying right now?"""
        return (
            channel.delivered >= 0
            and self._broker.healthy
            and not channel.stale
            and not channel.pending
            and not channel.repairing
        )

    def current_access(self, sphere_id: SphereId, user_id: UserId) -> MapAccess | None:
        """The sphere's type, the user's role and floor from the member map, when the node can
        show the map is current (``server.access.CurrentAccess``).

        None means "ask the store": the user is not a member as far as this node knows, or
        there is no local channel, or it may be behind.
        """
        channel = self._channels.get(sphere_id)
        if channel is None or not self._current(channel):
            return None
        role = channel.members.get(user_id)
        if role is None or not channel.unmuted(user_id):
            return None
        floor = channel.floor_of(user_id, role)
        return MapAccess(channel.privacy, role, floor, charter=channel.charter_version > 0)

    async def reach(self, channel: SphereChannel, offset: int) -> None:
        """Wait until the channel has delivered ``offset`` (catching up from the store).

        Raises:
            CloisonError: ``unavailable`` when it does not within ``REACH_TIMEOUT_S``.
        """
        if channel.delivered >= offset:
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        channel.waiters.append((offset, future))
        self._schedule_repair(channel, catch_up=True)
        try:
            async with asyncio.timeout(REACH_TIMEOUT_S):
                await future
        except TimeoutError:
            raise CloisonError(
                "this server is catching up with the sphere; retry", code=ErrorCode.UNAVAILABLE
            ) from None
        finally:
            channel.waiters = [(o, f) for o, f in channel.waiters if f is not future]

    # -- ordered delivery --------------------------------------------------------------------

    def _arrive(self, channel: SphereChannel, event: Message, envelope: bytes | None) -> None:
        offset = event.offset
        if (channel.delivered < 0 or offset > channel.delivered + 1) and not closes_sphere(event):
            if offset > channel.delivered and len(channel.pending) < MAX_PENDING:
                channel.pending[offset] = event
            if channel.delivered >= 0:
                self._schedule_repair(channel)
            return
        if offset <= channel.delivered:
            if channel.store_supplied.claim(offset):
                self._metrics.gap_repairs_unneeded.inc()  # late, not lost
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
        # Only member events and changes of a post are for some readers and not others.
        selective = event.target is not None or event.kind is EventKind.MEMBER
        privacy = channel.privacy
        sent = 0
        for sub in channel.subs.values():
            if not sub.live or offset <= sub.last_offset:
                continue
            if selective and withheld(sub, event, privacy):
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
        if event.member_id is not None or event.privacy is not None:
            self._apply(channel, event)
        if channel.waiters:
            channel.wake()

    def _apply(self, channel: SphereChannel, event: Message) -> None:
        """A member or sphere event was delivered: change the map, end lost subscriptions."""
        joining = [
            sub
            for sub in channel.subs.values()
            if event.role is not None and sub.role is None and sub.conn.user_id == event.member_id
        ]
        ended = apply(channel, event)
        for sub in joining:  # a reader of a public sphere who joined counts as online now
            self._online.count_in(channel, sub.conn.user_id)
        for sub, reason in ended:  # counted out again, if their role made them count in
            self.unsubscribe(sub.conn, channel.sphere_id, reason=reason)

    def _schedule_repair(self, channel: SphereChannel, *, catch_up: bool = False) -> None:
        if catch_up:
            channel.catch_up = True
        if channel.repairing:
            return
        channel.repairing = True
        self._tasks.spawn(self._repair(channel), name=f"repair {channel.sphere_id}")

    async def _repair(self, channel: SphereChannel) -> None:
        """Fill a gap (or catch up) from the store, retrying with backoff until it succeeds."""
        retry_s = REPAIR_RETRY_MIN_S
        supplied = 0  # events only the store supplied, for the log line
        # A broker reset or outage may have lost frames: that catch-up is worth an INFO line.
        after_reset = channel.stale
        try:
            if not channel.catch_up:
                await asyncio.sleep(self._hold.seconds)
            while (channel.pending or channel.catch_up) and (
                self._channels.get(channel.sphere_id) is channel
            ):
                resets, healthy = self._resets, self._broker.healthy
                after_reset = after_reset or channel.stale or not healthy
                channel.catch_up = False
                first_missing = channel.delivered + 1
                if first_missing in channel.pending:
                    self._drain_pending(channel)
                    continue
                try:
                    events = await self._store.events_after(
                        channel.sphere_id, channel.delivered, REPLAY_PAGE
                    )
                except Exception:  # the repair's boundary: log, wait, try again
                    logger.warning(
                        "could not read the store to catch up; retrying in %.1f s",
                        retry_s,
                        exc_info=True,
                        extra={"sphere_id": channel.sphere_id},
                    )
                    channel.catch_up = True
                    await asyncio.sleep(retry_s)
                    retry_s = min(REPAIR_RETRY_MAX_S, retry_s * 2)
                    continue
                retry_s = REPAIR_RETRY_MIN_S
                if len(events) < REPLAY_PAGE and healthy and resets == self._resets:
                    # Everything the store held at this read, begun after the last reset, is
                    # delivered once this page is: nothing lost before it is still missing.
                    channel.stale = False
                if not events:
                    break  # the store has not caught up; the next arrival re-triggers repair
                channel.catch_up = len(events) == REPLAY_PAGE
                for event in events:
                    if event.offset != channel.delivered + 1:
                        continue
                    live = channel.pending.pop(event.offset, None)
                    if live is not None:
                        self._deliver(channel, live, None)  # the broker did bring this one
                        continue
                    self._deliver(channel, event, None)
                    channel.store_supplied.add(event.offset)
                    self._metrics.gap_repairs.inc()
                    supplied += 1
                self._drain_pending(channel)
        finally:
            channel.repairing = False
            if supplied:
                logger.log(
                    logging.INFO if after_reset else logging.DEBUG,
                    "delivered %d events from the store %s",
                    supplied,
                    "to catch up after broker trouble" if after_reset else "to fill a gap",
                    extra={"sphere_id": channel.sphere_id},
                )

    async def _reconcile(self) -> None:
        """Every interval: read the heads of all channels at once, catch up those behind."""
        while True:
            await asyncio.sleep(self._reconcile_interval_s)
            channels = [c for c in self._channels.values() if c.delivered >= 0]
            if not channels:
                continue
            resets, healthy = self._resets, self._broker.healthy
            try:
                heads = await self._store.heads([c.sphere_id for c in channels])
            except Exception:  # the loop's boundary: the next round tries again
                logger.warning("could not read the store heads to reconcile", exc_info=True)
                continue
            for channel in channels:
                head = heads.get(channel.sphere_id)
                if self._channels.get(channel.sphere_id) is not channel:
                    continue
                if head is None:  # deleted, its last event lost: end its subscriptions anyway
                    self._apply(channel, channel.gone())
                elif head.offset > channel.delivered:
                    self._schedule_repair(channel, catch_up=True)
                elif healthy and resets == self._resets and not channel.pending:
                    channel.stale = False

    def _broadcast(
        self,
        channel: SphereChannel,
        frame: Frame,
        *,
        skip_user: UserId | None = None,
        skip_conn: ConnId | None = None,
        wire: bytes | None = None,
    ) -> None:
        """``send_hint``, only while the channel is current: during a gap or after a broker
        reset a removal may not have been applied yet, and hints can be dropped."""
        if not self._current(channel):
            return
        wires: dict[str, Wire] = {self._envelope_codec.subprotocol: wire} if wire else {}
        send_hint(channel, frame, wires, skip_user=skip_user, skip_conn=skip_conn)

    # -- subscriptions -----------------------------------------------------------------------

    async def subscribe(
        self,
        conn: Connection,
        sphere: SphereRecord,
        *,
        since: int | None,
        ref: str | None,
        charter_accepted: int = 0,
    ) -> None:
        """Subscribe ``conn`` and send ``subscribed``, then (with ``since``) the replay and
        ``replayed``.

        The caller has read ``sphere`` (with its position) and checked in the store that the
        user may read it, and that ``since`` belongs to the sphere's current epoch and is not
        past its end. Here the channel first reaches that position, then its member map
        decides (again) and gives the subscription its role and floor: any change after that
        point reaches the subscription in stream order. ``charter_accepted`` is the charter
        version the caller's check found them to have accepted.

        Raises:
            CloisonError: ``not_found``/``forbidden`` if the map says the user may not read
                (access changed since the caller's check), ``charter_required`` if a charter
                was set since, ``unavailable`` if the channel cannot reach the store's
                position in time.
        """
        channel = await self._channel(sphere)
        await self.reach(channel, sphere.offset)
        user_id = conn.user_id
        role = channel.members.get(user_id)
        access.require_visible_privacy(channel.privacy, role)
        access.require(role is not None or channel.privacy is Privacy.PUBLIC, access.JOIN_TO_READ)
        if role is not None and channel.charter_version > charter_accepted:
            raise CloisonError(access.CHARTER_REQUIRED, code=ErrorCode.CHARTER_REQUIRED)
        sub = Subscription(conn, sphere.sphere_id, role)
        sub.floor = channel.floor_of(user_id, role)
        sub.charter_accepted = channel.charter_version if role is not None else 0
        sub.checked = channel.delivered
        previous = self.subscription(conn, sphere.sphere_id)
        self._subs.add(channel, sub)  # before removing the old one: the channel never empties
        if previous is not None:
            self._subs.remove(channel, previous)
        online = await self._online.online(sphere.sphere_id)
        if not sub.active:
            return  # replaced or revoked meanwhile
        online.update(channel.online)
        if since is None:
            sub.last_offset = channel.delivered
            sub.live = True
            conn.send(self._subscribed(channel, sub, online, ref))
            return
        sub.last_offset = since
        horizon = sphere.retained_from  # retention removed what lies below it: say so
        cut = horizon if since + 1 < horizon and sub.floor < horizon else None
        conn.send(replace(self._subscribed(channel, sub, online, ref), truncated_before=cut))
        await self._replay(channel, sub)

    def _subscribed(
        self, channel: SphereChannel, sub: Subscription, online: set[UserId], ref: str | None
    ) -> Subscribed:
        if not access.sees_members(channel.privacy, sub.role):
            online &= {sub.conn.user_id}  # who else is here is the member list again
        return Subscribed(
            sphere_id=channel.sphere_id,
            position=StreamPosition(max(channel.delivered, sub.last_offset), channel.epoch),
            online=sorted(online),
            ref=ref,
        )

    async def _replay(self, channel: SphereChannel, sub: Subscription) -> None:
        """Send the store's events after ``sub.last_offset``, then switch ``sub`` to live.

        An event that ends the subscriber's access (their removal) is the last one sent:
        the subscription ends right after it, though the store may hold more. Events below
        the reader's floor, and those ``withheld`` from them, are skipped; what was sequenced
        before the access check was passed ends nothing.
        """
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
                    if event.offset < sub.floor or withheld(sub, event, channel.privacy):
                        continue
                    conn.send(event)
                    reason = ends(sub, event) if event.offset > sub.checked else None
                    if reason is not None:
                        self.unsubscribe(conn, sub.sphere_id, reason=reason)
                        return
            if len(events) < REPLAY_PAGE and sub.last_offset >= channel.delivered:
                sub.live = True  # no await since the check: nothing delivered can be missed
                position = StreamPosition(sub.last_offset, channel.epoch)
                conn.send(Replayed(sphere_id=sub.sphere_id, position=position))
                return

    async def _channel(self, sphere: SphereRecord) -> SphereChannel:
        for _ in range(CHANNEL_LOOKS):
            channel = self._channels.get(sphere.sphere_id)
            if channel is None:
                return await self._open_channel(sphere)
            await channel.ready.wait()
            if self._channels.get(sphere.sphere_id) is channel:
                return channel
            # Set up and released (or failed) while we waited: look again.
        raise CloisonError("the sphere could not be followed; retry", code=ErrorCode.UNAVAILABLE)

    async def _open_channel(self, sphere: SphereRecord) -> SphereChannel:
        channel = SphereChannel(sphere.sphere_id, sphere.epoch, sphere.privacy)
        self._channels[sphere.sphere_id] = channel
        try:
            await self._broker.subscribe(sphere.sphere_id)
            # Read members and position only after subscribing, so nothing falls between;
            # in one read, so that the map is the membership at that very offset.
            current = await self._store.sphere_members(sphere.sphere_id)
            if current is None:
                raise CloisonError(access.SPHERE_NOT_FOUND, code=ErrorCode.NOT_FOUND)
            channel.muted = await self._store.sphere_mutes(sphere.sphere_id)
        except BaseException:
            del self._channels[sphere.sphere_id]
            channel.ready.set()
            self._subs.release_later(sphere.sphere_id)
            raise
        record, members = current
        channel.members = {user_id: role for user_id, (role, _) in members.items()}
        channel.floors = {user_id: floor for user_id, (_, floor) in members.items()}
        channel.privacy, channel.history = record.privacy, record.history
        channel.org_id = record.org_id
        channel.public_from, channel.charter_version = record.public_from, record.charter_version
        channel.delivered = record.offset
        self._drain_pending(channel)
        channel.ready.set()
        return channel

    def unsubscribe(self, conn: Connection, sphere_id: SphereId, *, reason: str | None) -> bool:
        """End a subscription; with a ``reason``, tell the client. False if there was none."""
        return self._subs.unsubscribe(conn, sphere_id, reason=reason)

    def end_org(self, org_id: OrgId) -> int:
        """End every subscription to the spheres of ``org_id`` (suspended), telling each
        client (``access_revoked``); returns how many ended. A new subscription is checked
        against the organisation's state in the store."""
        ended = 0
        for channel in list(self._channels.values()):
            if channel.org_id == org_id:
                for sub in list(channel.subs.values()):
                    ended += self.unsubscribe(sub.conn, channel.sphere_id, reason=REVOKED)
        return ended

    def drop_connection(self, conn: Connection) -> None:
        self._subs.drop_connection(conn)

    def subscription(self, conn: Connection, sphere_id: SphereId) -> Subscription | None:
        return self._subs.subscription(conn, sphere_id)
