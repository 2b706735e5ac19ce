"""The shared (Redis) rate limit keeps one bucket per class and user."""

from __future__ import annotations

import asyncio
import secrets

import pytest

from server.ratelimit import RateClass, RedisWriteLimiter
from server.redisclient import RedisGuard, redis_client
from tests.services import REDIS_URL, TIMEOUT_S, require_shared_redis

pytestmark = pytest.mark.redis


async def test_classes_have_their_own_buckets_shared_by_every_limiter() -> None:
    require_shared_redis()
    prefix = f"test:{secrets.token_hex(4)}:"
    redis = redis_client(REDIS_URL, cluster=False)
    try:
        async with asyncio.timeout(TIMEOUT_S):

            def limiter(cls: RateClass) -> RedisWriteLimiter:
                return RedisWriteLimiter(
                    RedisGuard(redis), prefix=prefix, rate_per_s=0.001, burst=2, cls=cls
                )

            post, membership = limiter(RateClass.POST), limiter(RateClass.MEMBERSHIP)
            other_node_post = limiter(RateClass.POST)
            assert [await post.take("u1") for _ in range(2)] == [0.0, 0.0]
            assert await other_node_post.take("u1") > 100  # the same bucket, seen elsewhere
            assert await membership.take("u1") == 0.0  # another class: another bucket
            assert await post.take("u2") == 0.0  # another user: another bucket
            keys = sorted(k.decode() for k in await redis.keys(prefix + "*"))
            assert keys == [
                f"{prefix}rate:membership:u1",
                f"{prefix}rate:post:u1",
                f"{prefix}rate:post:u2",
            ]
    finally:
        keys = await redis.keys(prefix + "*")
        if keys:
            await redis.delete(*keys)
        await redis.aclose()
