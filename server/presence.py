"""Who is online in which sphere, across gateway processes.

A member is online in a sphere while one of their connections, on any node, is subscribed to
it. Each node counts its own subscriptions (in the hub) and tells a ``PresenceDirectory`` only
when a user's count on this node goes from 0 to 1 (``arrived``) or back to 0 (``left``); the
directory answers whether that changed the user's state across all nodes, so only real
changes are announced. ``MemoryPresence`` serves one process; ``RedisPresence`` shares the
state through Redis with an expiry, so a node that dies stops counting within
``PRESENCE_TTL_S`` without anyone cleaning up after it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import defaultdict
from typing import Protocol

from protocol import SphereId, UserId
from server.redisclient import RedisClient, RedisGuard, RedisUnavailableError

logger = logging.getLogger(__name__)

# Why: a node refreshes its entries every third of this, so one missed refresh is harmless
# and a crashed node's users drop out within a minute.
PRESENCE_TTL_S = 60.0
# Why: leaving cleanly at shutdown is worth this long at most; expiry covers the rest.
CLOSE_TIMEOUT_S = 2.0


class PresenceDirectory(Protocol):
    async def arrived(self, sphere_id: SphereId, user_id: UserId) -> bool:
        """This node now has the user in the sphere; True if they were offline everywhere."""
        ...

    async def left(self, sphere_id: SphereId, user_id: UserId) -> bool:
        """This node no longer has the user in the sphere; True if now offline everywhere."""
        ...

    async def online(self, sphere_id: SphereId) -> set[UserId]:
        """Every user online in the sphere, on any node."""
        ...

    async def aclose(self) -> None: ...


class MemoryPresence:
    def __init__(self) -> None:
        self._online: defaultdict[SphereId, set[UserId]] = defaultdict(set)

    async def arrived(self, sphere_id: SphereId, user_id: UserId) -> bool:
        users = self._online[sphere_id]
        before = len(users)
        users.add(user_id)
        return len(users) > before

    async def left(self, sphere_id: SphereId, user_id: UserId) -> bool:
        users = self._online.get(sphere_id)
        if users is None or user_id not in users:
            return False
        users.discard(user_id)
        if not users:
            del self._online[sphere_id]
        return True

    async def online(self, sphere_id: SphereId) -> set[UserId]:
        return set(self._online.get(sphere_id, ()))

    async def aclose(self) -> None:
        self._online.clear()


# KEYS: sphere set, user's node set. ARGV: user, node, expiry ms, now ms, ttl ms.
# Returns 1 when no other node had the user.
_ARRIVED = """
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', ARGV[4])
local others = redis.call('ZCARD', KEYS[2]) - (redis.call('ZSCORE', KEYS[2], ARGV[2]) and 1 or 0)
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[2])
redis.call('PEXPIRE', KEYS[2], ARGV[5])
redis.call('ZADD', KEYS[1], 'GT', ARGV[3], ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
if others == 0 then return 1 else return 0 end
"""
# Returns 1 when the user is now on no node.
_LEFT = """
redis.call('ZREM', KEYS[2], ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', ARGV[4])
if redis.call('ZCARD', KEYS[2]) == 0 then
  redis.call('ZREM', KEYS[1], ARGV[1])
  return 1
end
return 0
"""


class RedisPresence:
    """Presence shared through Redis: per sphere, a sorted set of users by expiry, and per
    (sphere, user) a sorted set of the nodes that have them, by expiry.

    Every command goes through the guard shared with the rate limit: while Redis is away,
    each call answers at once from what this node knows, and the outage is logged once.
    """

    def __init__(self, redis: RedisGuard, *, prefix: str, node: str) -> None:
        self._redis = redis
        self._prefix = prefix
        self._node = node
        self._here: set[tuple[SphereId, UserId]] = set()  # what this node must keep fresh
        self._arrived = self._redis.client.register_script(_ARRIVED)
        self._left = self._redis.client.register_script(_LEFT)
        self._refresher: asyncio.Task[None] | None = None

    def _keys(self, sphere_id: SphereId, user_id: UserId) -> list[str]:
        # The braces put both keys of a sphere in one Redis Cluster slot, as a script needs.
        base = f"{self._prefix}presence:{{{sphere_id}}}"
        return [base, f"{base}:{user_id}"]

    def _args(self, user_id: UserId) -> list[str | int]:
        now_ms = int(time.time() * 1000)
        ttl_ms = int(PRESENCE_TTL_S * 1000)
        return [user_id, self._node, now_ms + ttl_ms, now_ms, ttl_ms]

    async def arrived(self, sphere_id: SphereId, user_id: UserId) -> bool:
        self._here.add((sphere_id, user_id))
        self._start_refresher()
        keys, args = self._keys(sphere_id, user_id), self._args(user_id)
        try:
            first = await self._redis.run(lambda client: self._arrived(keys, args, client))
        except RedisUnavailableError:
            return True  # say what this node knows rather than nothing
        return bool(first)

    async def left(self, sphere_id: SphereId, user_id: UserId) -> bool:
        self._here.discard((sphere_id, user_id))
        keys, args = self._keys(sphere_id, user_id), self._args(user_id)
        try:
            last = await self._redis.run(lambda client: self._left(keys, args, client))
        except RedisUnavailableError:
            return True
        return bool(last)

    async def online(self, sphere_id: SphereId) -> set[UserId]:
        key = self._keys(sphere_id, UserId(""))[0]
        here = {user for sphere, user in self._here if sphere == sphere_id}
        now_ms = int(time.time() * 1000)
        try:
            users = await self._redis.run(lambda client: client.zrangebyscore(key, now_ms, "+inf"))
        except RedisUnavailableError:
            return here
        return here | {UserId(u.decode() if isinstance(u, bytes) else str(u)) for u in users}

    def _start_refresher(self) -> None:
        if self._refresher is None:
            self._refresher = asyncio.create_task(self._refresh_loop(), name="presence refresh")

    async def _refresh_loop(self) -> None:
        while True:
            await asyncio.sleep(PRESENCE_TTL_S / 3)
            with contextlib.suppress(RedisUnavailableError):  # the guard logs outages
                await self._redis.run(self._refresh)

    async def _refresh(self, client: RedisClient) -> None:
        """Push this node's entries' expiry forward (plain commands: nobody's state changes)."""
        expires_ms = int((time.time() + PRESENCE_TTL_S) * 1000)
        ttl_ms = int(PRESENCE_TTL_S * 1000)
        async with client.pipeline(transaction=False) as pipe:
            for sphere_id, user_id in list(self._here):
                sphere_key, user_key = self._keys(sphere_id, user_id)
                pipe.zadd(user_key, {self._node: expires_ms})
                pipe.pexpire(user_key, ttl_ms)
                pipe.zadd(sphere_key, {user_id: expires_ms}, gt=True)
                pipe.pexpire(sphere_key, ttl_ms)
            await pipe.execute()

    async def aclose(self) -> None:
        if self._refresher is not None:
            self._refresher.cancel()
            await asyncio.gather(self._refresher, return_exceptions=True)
        # Leave cleanly where Redis answers in time; expiry covers the rest.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(CLOSE_TIMEOUT_S):
                for sphere_id, user_id in list(self._here):
                    await self.left(sphere_id, user_id)
