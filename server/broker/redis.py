"""RedisBroker: fan-out between gateway processes over Redis pub/sub, one channel per sphere.

Theory of operation. One dedicated pub/sub connection carries this node's subscriptions; a
reader task hands each message to the hub. Publishing goes through a bounded queue drained by
one task that sends everything waiting in a single pipeline, so publishes leave in order and
cost one round trip per batch, not per message, and a slow Redis never blocks a writer.

Redis pub/sub is at most once, and silently so across a disconnect: a message published while
this node was not subscribed is simply gone. So every reconnect ends with
``handler.on_broker_reset()``, on which the hub reads what it may have missed from the store.
While Redis is down the node keeps serving: writes are stored and delivered to local
subscribers, and ``healthy`` is False (readiness and metrics report it).

A quiet pub/sub connection is asked for a PONG every ``PING_INTERVAL_S``; without an answer
within ``PONG_TIMEOUT_S`` it counts as lost, so a half-open link (a hung or partitioned Redis
that sent no FIN) is noticed within a few seconds rather than never. Every reconnect starts by
dropping the pool's idle connections: after a Redis restart they are all dead, and reusing
one would cost a second outage. A reconnect that fails fast (refused) is retried after
``RECONNECT_MIN_S``; one that fails slowly (a timeout) backs off, doubling up to
``RECONNECT_MAX_S``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

import redis.asyncio as aioredis
from redis.asyncio.client import PubSub
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from protocol import SphereId
from server.broker.base import BrokerHandler
from server.broker.outbox import Outbox

logger = logging.getLogger(__name__)

# Why: a command that takes longer than this means Redis is unreachable, not slow.
COMMAND_TIMEOUT_S = 5.0
RECONNECT_MIN_S = 0.1
RECONNECT_MAX_S = 5.0
# Why: a silent link is checked this often; a PING costs Redis next to nothing.
PING_INTERVAL_S = 1.0
# Why: a Redis that answers nothing for this long is hung or unreachable (a PONG takes µs).
PONG_TIMEOUT_S = 2.0
# Why: a failed connect faster than this did not wait on the network (refused): not a hang.
SLOW_FAILURE_S = 0.25
# Why: how long one read waits for a message before the loop checks the link's health.
READ_POLL_S = 0.5


class RedisBroker:
    def __init__(self, url: str, *, prefix: str = "cloison:") -> None:
        self._prefix = prefix.encode()
        # No hidden retries: a failure must reach this class, which resubscribes and resyncs.
        self._redis = aioredis.Redis.from_url(
            url,
            socket_timeout=COMMAND_TIMEOUT_S,
            socket_connect_timeout=COMMAND_TIMEOUT_S,
            retry=Retry(NoBackoff(), 0),
            health_check_interval=0,
        )
        self._handler: BrokerHandler | None = None
        self._channels: set[SphereId] = set()
        self._pubsub: PubSub | None = None
        self._outbox = Outbox()
        self._reconnect = asyncio.Event()
        self._wake = asyncio.Event()  # a subscription was added, or the connection was lost
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
        return self._prefix + b"sphere:" + sphere_id.encode()

    async def start(self, handler: BrokerHandler) -> None:
        self._handler = handler
        self._tasks = [
            asyncio.create_task(self._read_loop(), name="redis broker reader"),
            asyncio.create_task(self._publish_loop(), name="redis broker publisher"),
        ]

    async def subscribe(self, sphere_id: SphereId) -> None:
        self._channels.add(sphere_id)
        if self._pubsub is not None and self.healthy:
            try:
                async with asyncio.timeout(COMMAND_TIMEOUT_S):
                    await self._pubsub.subscribe(self.channel(sphere_id))
            except (RedisError, OSError, TimeoutError):
                self._lost("subscribe failed")
        self._wake.set()

    async def unsubscribe(self, sphere_id: SphereId) -> None:
        self._channels.discard(sphere_id)
        if self._pubsub is not None and self.healthy:
            try:
                async with asyncio.timeout(COMMAND_TIMEOUT_S):
                    await self._pubsub.unsubscribe(self.channel(sphere_id))
            except (RedisError, OSError, TimeoutError):
                self._lost("unsubscribe failed")

    async def publish(self, sphere_id: SphereId, envelope: bytes) -> None:
        self._outbox.put(self.channel(sphere_id), envelope)

    async def aclose(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._close_pubsub()
        await self._redis.aclose()
        self._handler = None

    # -- internals ---------------------------------------------------------------------------

    def _lost(self, why: str) -> None:
        if self.healthy:
            logger.warning("lost Redis (%s); serving from the store until it is back", why)
        self.healthy = False
        self._reconnect.set()
        self._wake.set()

    async def _close_pubsub(self) -> None:
        if self._pubsub is not None:
            with contextlib.suppress(RedisError, OSError):
                await self._pubsub.aclose()  # type: ignore[no-untyped-call,unused-ignore]
            self._pubsub = None

    async def _connect(self) -> None:
        """A fresh pub/sub connection subscribed to every channel this node follows."""
        await self._close_pubsub()
        # Idle pooled connections may be dead (Redis restarted): none must be reused.
        with contextlib.suppress(RedisError, OSError):
            await self._redis.connection_pool.disconnect(inuse_connections=False)
        # Confirmations and PONGs are kept: any reply proves the link alive.
        pubsub = self._redis.pubsub(ignore_subscribe_messages=False)
        async with asyncio.timeout(COMMAND_TIMEOUT_S):
            await pubsub.ping()
            if self._channels:
                await pubsub.subscribe(*(self.channel(s) for s in self._channels))
        self._pubsub = pubsub

    async def _read_loop(self) -> None:
        delay = RECONNECT_MIN_S
        first = True
        while True:
            started = time.monotonic()
            try:
                await self._connect()
            except (RedisError, OSError, TimeoutError) as exc:
                self._lost(f"connect failed: {exc}")
                await asyncio.sleep(delay)
                slow = time.monotonic() - started - delay >= SLOW_FAILURE_S
                delay = min(RECONNECT_MAX_S, delay * 2) if slow else RECONNECT_MIN_S
                continue
            delay = RECONNECT_MIN_S
            self.healthy = True
            self._reconnect.clear()
            if not first:
                logger.info("Redis is back; catching up from the store")
                self.resets += 1
                if self._handler is not None:
                    self._handler.on_broker_reset()
                self._outbox.requeue_lost()
            first = False
            await self._read_until_lost()

    async def _read_until_lost(self) -> None:
        pubsub = self._pubsub
        assert pubsub is not None
        prefix = self._prefix + b"sphere:"
        heard_at = time.monotonic()  # the last reply of any kind
        pinged_at: float | None = None  # a PING awaiting its PONG
        while not self._reconnect.is_set():
            try:
                if not pubsub.subscribed:
                    # get_message needs a subscription; wait for one or for a reconnect.
                    self._wake.clear()
                    await self._wake.wait()
                    heard_at, pinged_at = time.monotonic(), None
                    continue
                message = await pubsub.get_message(timeout=READ_POLL_S)
                now = time.monotonic()
                if message is not None:
                    heard_at, pinged_at = now, None
                elif pinged_at is not None and now - pinged_at >= PONG_TIMEOUT_S:
                    self._lost(f"no answer to PING in {PONG_TIMEOUT_S:g} s")
                    return
                elif pinged_at is None and now - heard_at >= PING_INTERVAL_S:
                    async with asyncio.timeout(COMMAND_TIMEOUT_S):
                        await pubsub.ping()  # only sends: the PONG arrives as a message
                    pinged_at = now
            except (RedisError, OSError, TimeoutError) as exc:
                self._lost(f"read failed: {exc}")
                return
            if message is None or message.get("type") != "message":
                continue
            channel: bytes = message["channel"]
            if self._handler is not None and channel.startswith(prefix):
                sphere_id = SphereId(channel[len(prefix) :].decode())
                self._handler.on_publication(sphere_id, message["data"])

    async def _publish_loop(self) -> None:
        while True:
            batch = await self._outbox.next_batch()
            if not self.healthy:
                self._outbox.drop(batch)
                continue
            try:
                async with asyncio.timeout(COMMAND_TIMEOUT_S):
                    async with self._redis.pipeline(transaction=False) as pipe:
                        for channel, envelope in batch:
                            pipe.publish(channel, envelope)
                        await pipe.execute()
                self.published += len(batch)
            except (RedisError, OSError, TimeoutError) as exc:
                # At most once: these frames are lost to other nodes, which repair from the
                # store when they notice the gap or reconnect.
                self._outbox.drop(batch)
                self._lost(f"publish failed: {exc}")
