"""Redis that goes away, hangs or comes back: presence, the rate limit and the broker cope.

Each test runs a redis-server of its own (``tests.services.own_redis``) and kills, stops
(SIGSTOP: a hung Redis whose socket stays open) or restarts it.
"""

from __future__ import annotations

import asyncio
import secrets
import signal
import time
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from protocol import SphereId
from server.broker.redis import PING_INTERVAL_S, PONG_TIMEOUT_S, READ_POLL_S, RedisBroker
from server.ratelimit import RedisWriteLimiter
from server.redisclient import BACKOFF_MAX_S, COMMAND_TIMEOUT_S, RedisGuard, redis_client
from tests.services import TIMEOUT_S, RedisServer, own_redis

pytestmark = [pytest.mark.redis]

# Whatever the machine's load, a restarted Redis must be in use again well within this.
RECOVERY_BOUND_S = 1.0
# A half-open pub/sub link is noticed within one quiet interval, one PONG timeout and one
# read poll; the rest is margin for a loaded machine.
HALF_OPEN_BOUND_S = PING_INTERVAL_S + PONG_TIMEOUT_S + READ_POLL_S + 1.5


class Recorder:
    """A BrokerHandler that remembers what the broker told it."""

    def __init__(self) -> None:
        self.frames: list[tuple[SphereId, bytes]] = []
        self.resets = 0
        self.reset = asyncio.Event()

    def on_publication(self, sphere_id: SphereId, envelope: bytes) -> None:
        self.frames.append((sphere_id, envelope))

    def on_broker_reset(self) -> None:
        self.resets += 1
        self.reset.set()


@pytest.fixture
async def redis() -> AsyncIterator[RedisServer]:
    async with own_redis() as server:
        yield server


@pytest.fixture
async def guard(redis: RedisServer) -> AsyncIterator[RedisGuard]:
    guard = RedisGuard(redis_client(redis.url, cluster=False))
    try:
        yield guard
    finally:
        await guard.aclose()
        await guard.client.aclose()


@pytest.fixture
async def broker(redis: RedisServer) -> AsyncIterator[tuple[RedisBroker, Recorder]]:
    broker = RedisBroker(redis.url, prefix=f"test-{secrets.token_hex(4)}:")
    recorder = Recorder()
    await broker.start(recorder)
    await broker.subscribe(SphereId("s_one"))
    await until(lambda: broker.healthy)
    try:
        yield broker, recorder
    finally:
        await broker.aclose()


async def until(check: object, timeout_s: float = TIMEOUT_S, step_s: float = 0.01) -> float:
    """Poll ``check()`` (state in this process's tasks, which signal nothing) until true.

    Returns:
        The monotonic time at which it was first seen true.
    """
    assert callable(check)
    async with asyncio.timeout(timeout_s):
        while not check():  # noqa: ASYNC110 - the broker offers no event for its health
            await asyncio.sleep(step_s)
    return time.monotonic()


def limiter(guard: RedisGuard) -> RedisWriteLimiter:
    return RedisWriteLimiter(guard, prefix="test-rate:", rate_per_s=1e6, burst=1_000_000)


async def shared_take(guard: RedisGuard, writes: RedisWriteLimiter) -> bool:
    """One write through the limiter; True if Redis answered it (not the local fallback)."""
    failures = guard.failures
    skipped = guard.skipped
    await writes.take("u")
    return guard.failures == failures and guard.skipped == skipped


async def test_a_restart_costs_no_second_outage(
    redis: RedisServer, guard: RedisGuard, broker: tuple[RedisBroker, Recorder]
) -> None:
    pubsub, recorder = broker
    writes = limiter(guard)
    async with asyncio.timeout(TIMEOUT_S * 3):
        # Fill the pool with connections that the restart will leave dead.
        await asyncio.gather(*(writes.take("u") for _ in range(8)))
        assert guard.healthy
        await redis.kill()
        slowest_s = 0.0
        for _ in range(20):  # writes during the outage are answered locally, at once
            started = time.monotonic()
            assert not await shared_take(guard, writes)
            slowest_s = max(slowest_s, time.monotonic() - started)
            await asyncio.sleep(0.05)
        assert slowest_s < COMMAND_TIMEOUT_S
        assert not guard.healthy and guard.outages == 1
        await until(lambda: not pubsub.healthy)

        await redis.start()
        back = time.monotonic()
        while not await shared_take(guard, writes):  # noqa: ASYNC110 - Redis is another process
            await asyncio.sleep(0.02)
        limiter_recovery_s = time.monotonic() - back
        broker_recovery_s = await until(lambda: pubsub.healthy) - back
        # No second outage: everything keeps working on the first try from here on.
        for _ in range(20):
            assert await shared_take(guard, writes)
            await asyncio.sleep(0.02)
        assert pubsub.healthy and pubsub.resets == 1 and recorder.resets == 1
        assert guard.outages == 1
    print(  # noqa: T201 - the figure docs/reliability.md quotes (run with -s)
        f"recovery after a Redis restart: rate limit {limiter_recovery_s * 1000:.0f} ms, "
        f"broker {broker_recovery_s * 1000:.0f} ms; slowest write while down "
        f"{slowest_s * 1000:.1f} ms"
    )
    assert limiter_recovery_s < RECOVERY_BOUND_S
    assert broker_recovery_s < RECOVERY_BOUND_S


async def test_a_quiet_restart_is_not_an_outage(redis: RedisServer, guard: RedisGuard) -> None:
    # Redis restarts while nobody uses it: the pooled connections are dead, and the first
    # call after it must not pay for that.
    writes = limiter(guard)
    async with asyncio.timeout(TIMEOUT_S * 2):
        await asyncio.gather(*(writes.take("u") for _ in range(4)))
        await redis.kill()
        await redis.start()
        assert await shared_take(guard, writes)
        assert guard.healthy and guard.outages == 0


async def test_a_hung_redis_costs_one_timeout_then_none(
    redis: RedisServer, guard: RedisGuard
) -> None:
    writes = limiter(guard)
    assert redis.process is not None
    async with asyncio.timeout(TIMEOUT_S * 3):
        await writes.take("u")
        redis.process.send_signal(signal.SIGSTOP)
        try:
            started = time.monotonic()
            # Many writes at once all wait for the first timeout, not one after another.
            await asyncio.gather(*(writes.take(f"u{n}") for n in range(50)))
            first_s = time.monotonic() - started
            assert first_s < COMMAND_TIMEOUT_S + 0.5
            # Then writes skip Redis at once; probes (one per backoff) run beside them.
            latencies = []
            stop_at = time.monotonic() + 3.0
            while time.monotonic() < stop_at:
                started = time.monotonic()
                await writes.take("u")
                latencies.append(time.monotonic() - started)
            assert len(latencies) > 1000
            assert max(latencies) < COMMAND_TIMEOUT_S / 2
            assert guard.failures >= 2  # the calls in flight, then at least one probe
        finally:
            redis.process.send_signal(signal.SIGCONT)
        # Answered again: the next probe closes the guard.
        async with asyncio.timeout(BACKOFF_MAX_S + TIMEOUT_S):
            while not await shared_take(guard, writes):  # noqa: ASYNC110 - as above
                await asyncio.sleep(0.05)
        assert guard.outages == 1


async def test_a_half_open_pubsub_link_is_noticed(
    redis: RedisServer, broker: tuple[RedisBroker, Recorder]
) -> None:
    pubsub, recorder = broker
    assert redis.process is not None
    async with asyncio.timeout(TIMEOUT_S * 3):
        # A quiet but healthy link is not mistaken for a dead one: its PONGs come back.
        await asyncio.sleep(PING_INTERVAL_S + PONG_TIMEOUT_S + 1.0)  # time must pass, idle
        assert pubsub.healthy and recorder.resets == 0
        redis.process.send_signal(signal.SIGSTOP)  # the socket stays open: no error, no FIN
        stopped = time.monotonic()
        try:
            noticed_s = await until(lambda: not pubsub.healthy) - stopped
        finally:
            redis.process.send_signal(signal.SIGCONT)
        await asyncio.wait_for(recorder.reset.wait(), TIMEOUT_S)
        assert pubsub.healthy and recorder.resets == 1
    print(f"half-open pub/sub link noticed after {noticed_s:.2f} s")  # noqa: T201 - as above
    assert noticed_s < HALF_OPEN_BOUND_S


async def test_a_killed_pubsub_connection_resubscribes_and_resets(
    redis: RedisServer, broker: tuple[RedisBroker, Recorder]
) -> None:
    pubsub, recorder = broker
    admin = aioredis.Redis.from_url(redis.url)
    try:
        async with asyncio.timeout(TIMEOUT_S):
            killed = await admin.execute_command("CLIENT", "KILL", "TYPE", "pubsub")
            assert killed == 1
            await recorder.reset.wait()
            await until(lambda: pubsub.healthy)
            # Subscribed again: a frame published now reaches the handler.
            channel = pubsub.channel(SphereId("s_one"))
            await until_received(admin, channel, recorder)
    finally:
        await admin.aclose()
    assert recorder.resets == 1


async def until_received(admin: aioredis.Redis, channel: bytes, recorder: Recorder) -> None:
    while not recorder.frames:  # resubscribing completes in another task
        await admin.publish(channel, b"hello")
        await asyncio.sleep(0.05)
    assert recorder.frames[-1] == (SphereId("s_one"), b"hello")
