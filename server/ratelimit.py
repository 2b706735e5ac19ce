"""Token buckets: per key in process, and the per-user limit of each rate class, local or in Redis.

A rate class groups the operations that share one budget (``post``: publish, edit, delete;
``membership``; ...). Each class has its own limiter per user; ``server/operations.py`` says
which class every client frame belongs to.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Hashable
from enum import StrEnum
from typing import Protocol

from server.config import Config
from server.redisclient import RedisGuard, RedisUnavailableError

logger = logging.getLogger(__name__)


class RateLimiter:
    """A token bucket per key: ``rate_per_s`` sustained, ``burst`` at most at once."""

    # Why: buckets of idle users are dropped once this many are held, to bound memory.
    MAX_KEYS = 100_000

    def __init__(self, rate_per_s: float, burst: int) -> None:
        self.rate_per_s = rate_per_s
        self.burst = float(burst)
        self._buckets: dict[Hashable, tuple[float, float]] = {}  # key -> (tokens, at_s)

    def take(self, key: Hashable, now_s: float) -> float:
        """Spend one token. Returns 0 when allowed, else the seconds until one is available."""
        tokens, at_s = self._buckets.get(key, (self.burst, now_s))
        tokens = min(self.burst, tokens + (now_s - at_s) * self.rate_per_s)
        if tokens < 1.0:
            self._buckets[key] = (tokens, now_s)
            return (1.0 - tokens) / self.rate_per_s
        if len(self._buckets) >= self.MAX_KEYS and key not in self._buckets:
            self._evict_full(now_s)
        self._buckets[key] = (tokens - 1.0, now_s)
        return 0.0

    def _evict_full(self, now_s: float) -> None:
        refill_s = self.burst / self.rate_per_s
        self._buckets = {
            k: (t, at) for k, (t, at) in self._buckets.items() if now_s - at < refill_s
        }


class RateClass(StrEnum):
    """The budgets a user's requests are counted against, each with its own bucket."""

    POST = "post"  # publish, edit, delete
    MEMBERSHIP = "membership"  # join, leave, add/remove members, set roles
    SPHERE_ADMIN = "sphere_admin"  # create and update spheres
    READ_MARKER = "read_marker"
    TYPING = "typing"
    QUERY = "query"  # reads: history, subscribe, lists
    FREE = "free"  # not limited: ping, unsubscribe, auth (cheap, answered without storage)


def class_limits(config: Config) -> dict[RateClass, tuple[float, int]]:
    """(sustained rate per second, burst) of each limited class, from the configuration."""
    return {
        RateClass.POST: (config.publish_rate_per_s, config.publish_burst),
        RateClass.MEMBERSHIP: (config.membership_rate_per_s, config.membership_burst),
        RateClass.SPHERE_ADMIN: (config.sphere_admin_rate_per_s, config.sphere_admin_burst),
        RateClass.READ_MARKER: (config.read_marker_rate_per_s, config.read_marker_burst),
        RateClass.TYPING: (config.typing_rate_per_s, config.typing_burst),
        RateClass.QUERY: (config.query_rate_per_s, config.query_burst),
    }


class WriteLimiter(Protocol):
    """One class's per-user rate limit, shared by every gateway that uses the same backend."""

    async def take(self, user_id: str) -> float:
        """Spend one write. Returns 0 when allowed, else the seconds until one is available."""
        ...

    async def aclose(self) -> None: ...


class LocalWriteLimiter:
    """Buckets in this process: exact for one gateway."""

    def __init__(self, rate_per_s: float, burst: int) -> None:
        self._buckets = RateLimiter(rate_per_s, burst)

    async def take(self, user_id: str) -> float:
        return self._buckets.take(user_id, time.monotonic())

    async def aclose(self) -> None:
        return None


# KEYS[1]: the bucket. ARGV: rate per s, burst, now in ms. Returns the wait in ms (0: allowed).
_TAKE = """
local rate, burst, now = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local state = redis.call('HMGET', KEYS[1], 't', 'at')
local tokens = tonumber(state[1]) or burst
local at = tonumber(state[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - at) * rate / 1000)
local wait = 0
if tokens < 1 then
  wait = math.ceil((1 - tokens) * 1000 / rate)
else
  tokens = tokens - 1
end
redis.call('HSET', KEYS[1], 't', tostring(tokens), 'at', now)
redis.call('PEXPIRE', KEYS[1], math.ceil(burst * 1000 / rate) + 1000)
return wait
"""


class RedisWriteLimiter:
    """One bucket per user and class in Redis, shared by all gateways; buckets expire once full.

    If Redis does not answer, the limit falls back to this process's own buckets rather than
    refusing or waving through every write. The guard (shared with presence) makes that
    fallback immediate while Redis is away, and logs the outage once, not once per write.
    """

    def __init__(
        self,
        redis: RedisGuard,
        *,
        prefix: str,
        rate_per_s: float,
        burst: int,
        cls: str = RateClass.POST,
    ) -> None:
        self._redis = redis
        self._prefix = f"{prefix}rate:{cls}:"
        self._rate_per_s = rate_per_s
        self._burst = burst
        self._script = self._redis.client.register_script(_TAKE)
        self._fallback = LocalWriteLimiter(rate_per_s, burst)

    async def take(self, user_id: str) -> float:
        now_ms = int(time.time() * 1000)
        keys, args = [f"{self._prefix}{user_id}"], [self._rate_per_s, self._burst, now_ms]
        try:
            wait_ms = await self._redis.run(lambda client: self._script(keys, args, client))
        except RedisUnavailableError:
            return await self._fallback.take(user_id)
        return int(wait_ms) / 1000

    async def aclose(self) -> None:
        return None  # the client belongs to the app
