"""RedisClusterBroker: fan-out between gateway processes over Redis Cluster sharded pub/sub.

Theory of operation. Each sphere has one shard channel, ``<prefix>sphere:{<sphere_id>}``:
the hash tag is the sphere id, so spheres spread over all slots (a tag in the prefix would pin
them all to one slot, so the prefix may not contain braces). Redis 7 keeps a shard channel on
the primary that owns its slot, so ``SPUBLISH`` goes to that primary and ``SSUBSCRIBE`` must
be sent there too; only that shard handles the frame, not every node as with ``PUBLISH``.

The broker keeps its own copy of the slot map (``CLUSTER SLOTS``) and one *shard link* per
primary (both in ``server.broker.redis_shards``): a plain RESP2 connection in pub/sub mode,
with a reader task that hands ``smessage`` frames to the hub, and a keepalive PING that
unmasks a silent (half-open) connection. This module is the supervisor and the publisher.
Commands on a link are matched to their confirmations in order, so ``subscribe`` returns
only once Redis has confirmed the ``SSUBSCRIBE``: the hub reads the sphere's position after
it, and nothing published in between can be missed. Publishing goes through a bounded queue
drained by one task; each batch is split by owning primary and sent as one pipeline per
primary, concurrently, and the next batch waits for the previous one, so a sphere's frames
(one slot, so one primary) leave in order. A frame refused with ``MOVED`` is sent once more,
to the primary the redirect names, since other nodes may already listen there.

Any sign that the map or a link is no longer right ends the same way: a link that fails or
stops answering, an error reply (``MOVED`` after a failover or resharding, ``CLUSTERDOWN``),
an ``SUNSUBSCRIBE`` that Redis sends by itself when a slot leaves its primary, or a refused
``SPUBLISH``. ``healthy`` turns False and one supervisor task rebuilds everything: a fresh
slot map, new links to every primary (each must report ``cluster_state:ok``), and the
subscriptions this node holds. Only when all of it is confirmed does ``healthy`` turn True,
followed by exactly one ``handler.on_broker_reset()``, however many attempts the recovery
took: frames published while a link was down are gone (pub/sub is at most once), and the hub
catches up from the store. Rebuilding every link, not just the broken one, keeps one rule
for every fault; the price is one reconnect per primary, rare and cheap. While unhealthy the
node keeps serving from the store, and publishing carries on to primaries not known dead.

Why not redis-py's ``ClusterPubSub``: measured with redis-py 8.1 on a 3-primary cluster, it
reads one shard at a time (``get_sharded_message`` round-robins over per-node connections,
so a blocking read on one shard starves the others and a timed read adds up to one timeout
per shard of latency), and it reconnects and resubscribes by itself inside a read, so the
moment frames may have been lost, and the moment the subscriptions are whole again, are not
observable; this broker needs both to call ``on_broker_reset`` correctly.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.crc import key_slot
from redis.exceptions import MovedError

from protocol import SphereId
from server.broker.base import BrokerHandler
from server.broker.outbox import Outbox
from server.broker.redis import COMMAND_TIMEOUT_S, RECONNECT_MAX_S, RECONNECT_MIN_S
from server.broker.redis_shards import (
    FAULTS,
    NO_MAINT_NOTIFICATIONS,
    Address,
    ClusterNotReadyError,
    ShardLink,
    ShardLostError,
    SlotMap,
    connection,
    describe,
    startup_nodes,
)

__all__ = ["RedisClusterBroker", "SlotMap", "startup_nodes"]

logger = logging.getLogger(__name__)

# Why: a whole rebuild is a handful of round trips per primary; longer means a primary hangs.
REBUILD_TIMEOUT_S = 3 * COMMAND_TIMEOUT_S


class RedisClusterBroker:
    """``Broker`` over a Redis Cluster, given a seed URL (``redis[s]://h1:p1,h2:p2``, see
    ``startup_nodes``) or ``(host, port)`` seeds."""

    def __init__(
        self, url_or_startup_nodes: str | Sequence[Address], *, prefix: str = "cloison:"
    ) -> None:
        if "{" in prefix or "}" in prefix:
            raise ValueError("a brace in the prefix would hash every sphere to one slot")
        if isinstance(url_or_startup_nodes, str):
            self._seeds, self._options = startup_nodes(url_or_startup_nodes)
        else:
            self._seeds, self._options = list(url_or_startup_nodes), {}
        if not self._seeds:
            raise ValueError("no startup node")
        self._prefix = prefix.encode() + b"sphere:{"
        self._handler: BrokerHandler | None = None
        self._spheres: set[SphereId] = set()  # what this node wants, whatever the links hold
        self._map: SlotMap | None = None
        self._links: dict[Address, ShardLink] = {}
        self._publishers: dict[Address, aioredis.Redis] = {}
        self._dead: set[Address] = set()  # publishing there fails fast until the next rebuild
        self._outbox = Outbox()
        self._rebuild = asyncio.Event()
        self._first_attempt = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.healthy = False
        self.published = 0
        self.resets = 0

    @property
    def dropped(self) -> int:
        return self._outbox.dropped

    @property
    def resent(self) -> int:
        return self._outbox.resent

    def channel(self, sphere_id: SphereId) -> bytes:
        return self._prefix + sphere_id.encode() + b"}"

    async def start(self, handler: BrokerHandler) -> None:
        """Start, after one attempt to reach the cluster; if it failed, retries go on behind."""
        self._handler = handler
        self._rebuild.set()
        self._tasks = [
            asyncio.create_task(self._supervise(), name="redis cluster broker supervisor"),
            asyncio.create_task(self._publish_loop(), name="redis cluster broker publisher"),
        ]
        await self._first_attempt.wait()

    async def subscribe(self, sphere_id: SphereId) -> None:
        self._spheres.add(sphere_id)
        if self.healthy:  # otherwise the rebuild in progress subscribes it
            await self._on_link(sphere_id, subscribe=True)

    async def unsubscribe(self, sphere_id: SphereId) -> None:
        self._spheres.discard(sphere_id)
        if self.healthy:
            await self._on_link(sphere_id, subscribe=False)

    async def publish(self, sphere_id: SphereId, envelope: bytes) -> None:
        self._outbox.put(self.channel(sphere_id), envelope)

    async def aclose(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._close_links()
        for client in self._publishers.values():
            await client.aclose()
        self._publishers.clear()
        self._handler = None
        self.healthy = False

    # -- subscriptions -----------------------------------------------------------------------

    async def _on_link(self, sphere_id: SphereId, *, subscribe: bool) -> None:
        channel = self.channel(sphere_id)
        owner = self._map.owner(key_slot(channel)) if self._map is not None else None
        link = self._links.get(owner) if owner is not None else None
        if link is None:
            self._fault(f"no link to the primary of {sphere_id!r}")
            return
        try:
            async with asyncio.timeout(COMMAND_TIMEOUT_S):
                if subscribe:
                    await link.ssubscribe([channel])
                else:
                    await link.sunsubscribe([channel])
        except (*FAULTS, ShardLostError) as exc:
            # A link closed by a rebuild has been dealt with; the rebuild restores the sphere.
            link.fail(f"{'' if subscribe else 'un'}subscribe failed: {describe(exc)}")

    def _on_message(self, channel: bytes, envelope: bytes) -> None:
        if self._handler is not None and channel.startswith(self._prefix) and channel[-1:] == b"}":
            sphere_id = SphereId(channel[len(self._prefix) : -1].decode())
            self._handler.on_publication(sphere_id, envelope)

    def _on_lost(self, link: ShardLink, why: str) -> None:
        self._dead.add(link.address)
        self._fault(f"shard {link.address[0]}:{link.address[1]}: {why}")

    def _fault(self, why: str) -> None:
        if self.healthy:
            logger.warning("lost the Redis Cluster (%s); serving from the store meanwhile", why)
        self.healthy = False
        self._rebuild.set()

    # -- recovery ----------------------------------------------------------------------------

    async def _supervise(self) -> None:
        """Rebuild whenever asked; a recovery ends with one reset, however many attempts."""
        delay = RECONNECT_MIN_S
        attempt = 0
        while True:
            await self._rebuild.wait()
            self._rebuild.clear()
            attempt += 1
            failure: str | None = None
            try:
                async with asyncio.timeout(REBUILD_TIMEOUT_S):
                    await self._rebuild_links()
            except (*FAULTS, ShardLostError, ClusterNotReadyError) as exc:
                failure = describe(exc)
            finally:
                self._first_attempt.set()
            if failure is None and self._rebuild.is_set():
                failure = "a fault during the rebuild"  # its result is already stale
            if failure is not None:
                logger.debug("Redis Cluster not usable yet: %s", failure)
                await asyncio.sleep(delay)  # backoff between attempts, not coordination
                delay = min(RECONNECT_MAX_S, delay * 2)
                self._rebuild.set()
                continue
            delay = RECONNECT_MIN_S
            self.healthy = True  # no await since the last check: the links are whole
            if attempt > 1:  # the first attempt, in start(), recovers nothing
                logger.info("Redis Cluster is back; catching up from the store")
                self.resets += 1
                if self._handler is not None:
                    self._handler.on_broker_reset()
                self._outbox.requeue_lost()

    async def _rebuild_links(self) -> None:
        """Fresh slot map, a fresh link to every primary, every wanted sphere subscribed."""
        await self._close_links()
        slot_map = await self._fetch_slot_map()
        self._map = slot_map

        async def open_link(address: Address) -> None:
            link = await ShardLink.open(
                address, self._options, on_message=self._on_message, on_lost=self._on_lost
            )
            self._links[address] = link  # owned from here: closed by the next rebuild or aclose

        # All attempts end before this returns, so no late link can join the next rebuild's.
        results = await asyncio.gather(
            *(open_link(address) for address in slot_map.primaries), return_exceptions=True
        )
        for result in results:
            if isinstance(result, BaseException):
                raise result
        self._dead.clear()
        # Spheres come and go while this awaits: repeat until the links hold exactly them.
        while changes := self._pending_changes(slot_map):
            await asyncio.gather(*changes)

    def _pending_changes(self, slot_map: SlotMap) -> list[asyncio.Future[None]]:
        wanted: dict[Address, set[bytes]] = {address: set() for address in self._links}
        for sphere_id in self._spheres:
            channel = self.channel(sphere_id)
            owner = slot_map.owner(key_slot(channel))
            if owner is None or owner not in wanted:
                raise ClusterNotReadyError(f"no primary serves the slot of {sphere_id!r}")
            wanted[owner].add(channel)
        changes: list[asyncio.Future[None]] = []
        for address, link in self._links.items():
            if added := wanted[address] - link.channels:
                changes.append(asyncio.ensure_future(link.ssubscribe(added)))
            if removed := link.channels - wanted[address]:
                changes.append(asyncio.ensure_future(link.sunsubscribe(removed)))
        return changes

    async def _fetch_slot_map(self) -> SlotMap:
        known = self._map.primaries if self._map is not None else set()
        candidates = [*known, *(seed for seed in self._seeds if seed not in known)]
        candidates.sort(key=lambda address: address in self._dead)  # the living first
        last_error: BaseException = ClusterNotReadyError("no startup node answered")
        for address in candidates:
            conn = connection(address, self._options, socket_timeout=COMMAND_TIMEOUT_S)
            try:
                async with asyncio.timeout(COMMAND_TIMEOUT_S):
                    await conn.connect()  # type: ignore[no-untyped-call]
                    await conn.send_command("CLUSTER", "SLOTS", check_health=False)
                    reply = await conn.read_response()
            except FAULTS as exc:
                last_error = exc
                continue
            finally:
                await conn.disconnect(nowait=True)
            slot_map = SlotMap.from_cluster_slots(reply, address)
            if slot_map.ranges:
                return slot_map
        raise last_error

    async def _close_links(self) -> None:
        links, self._links = self._links, {}
        for link in links.values():
            await link.aclose()

    # -- publishing --------------------------------------------------------------------------

    async def _publish_loop(self) -> None:
        routed_by: SlotMap | None = None
        while True:
            batch = await self._outbox.next_batch()
            if self._map is not routed_by and self._map is not None:
                routed_by = self._map
                for gone in self._publishers.keys() - routed_by.primaries:
                    await self._publishers.pop(gone).aclose()  # not a primary any more
            by_primary: dict[Address, list[tuple[bytes, bytes]]] = {}
            for channel, envelope in batch:
                owner = self._map.owner(key_slot(channel)) if self._map is not None else None
                if owner is None or owner in self._dead:
                    self._outbox.drop([(channel, envelope)])
                    continue
                by_primary.setdefault(owner, []).append((channel, envelope))
            # One pipeline per primary, concurrently; a sphere's frames all go to one of them.
            await asyncio.gather(
                *(self._publish_to(owner, frames) for owner, frames in by_primary.items())
            )

    async def _publish_to(
        self, address: Address, frames: list[tuple[bytes, bytes]], *, redirected: bool = False
    ) -> None:
        client = self._publishers.get(address)
        if client is None:
            client = self._publishers[address] = aioredis.Redis(
                host=address[0],
                port=address[1],
                username=self._options.get("username"),
                password=self._options.get("password"),
                ssl=bool(self._options.get("tls")),
                socket_timeout=COMMAND_TIMEOUT_S,
                socket_connect_timeout=COMMAND_TIMEOUT_S,
                retry=Retry(NoBackoff(), 0),  # a failure must reach us: we resync
                health_check_interval=0,
                maint_notifications_config=NO_MAINT_NOTIFICATIONS,
            )
        try:
            async with asyncio.timeout(COMMAND_TIMEOUT_S):
                async with client.pipeline(transaction=False) as pipe:
                    for channel, envelope in frames:
                        pipe.spublish(channel, envelope)
                    results = await pipe.execute(raise_on_error=False)
        except FAULTS as exc:
            # At most once: these frames are lost to other nodes, which repair from the store.
            self._outbox.drop(frames)
            self._dead.add(address)
            # Its pooled connections may be dead (the primary restarted): none is reused.
            if self._publishers.get(address) is client:
                del self._publishers[address]
                with contextlib.suppress(*FAULTS):
                    await client.aclose()
            self._fault(f"publish to {address[0]}:{address[1]} failed: {describe(exc)}")
            return
        refused: Exception | None = None
        moved: dict[Address, list[tuple[bytes, bytes]]] = {}
        for frame, result in zip(frames, results, strict=True):
            if not isinstance(result, Exception):
                self.published += 1
                continue
            refused = refused or result
            if isinstance(result, MovedError) and not redirected:
                moved.setdefault((result.host or address[0], result.port), []).append(frame)
            else:
                self._outbox.drop([frame])
        if refused is None:
            return
        # MOVED: the slot map is stale (failover, resharding); CLUSTERDOWN: the cluster is down.
        self._fault(f"publish refused by {address[0]}:{address[1]}: {describe(refused)}")
        # The redirect names the new owner: try it once (a slot's frames stay in order there)
        # rather than drop frames that nodes already subscribed there would miss.
        for target, redirected_frames in moved.items():
            if target in self._dead:
                self._outbox.drop(redirected_frames)
            else:
                await self._publish_to(target, redirected_frames, redirected=True)
