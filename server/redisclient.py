"""The Redis client that presence and the shared rate limit use, behind a fail-fast guard.

The brokers keep connections of their own (pub/sub needs dedicated ones); this client is for
short commands and scripts on request paths, so it must never make a request wait on a Redis
that does not answer.

Theory of operation. Every command goes through ``RedisGuard.run``: one deadline for the
whole call (``COMMAND_TIMEOUT_S``), no retry hidden inside redis-py, and one visible retry on
a fresh connection when a pooled one turns out dead (Redis restarted while it sat idle), so a
restart costs no second outage. After a failure the guard is *open*: calls raise
``RedisUnavailableError`` at once, without touching the network, and callers use their local
fallback. A hung Redis (stopped, a black-holed link) therefore costs the calls in flight
when it hung one timeout, and no request after that: requests never queue behind each
other's timeouts. When the backoff has passed, the next call starts a probe (a PING) in the
background and is itself answered locally; the probe's success closes the guard. A probe
that fails fast (connection refused: Redis restarting) is repeated after ``BACKOFF_MIN_S``;
one that fails slowly (a timeout) doubles the backoff up to ``BACKOFF_MAX_S``. Going away and
coming back are logged once each and counted.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError, RedisError

from server.broker.redis_cluster import startup_nodes

logger = logging.getLogger(__name__)

RedisClient = aioredis.Redis | RedisCluster
T = TypeVar("T")

# Why: these commands sit on the write and subscribe paths; past this, Redis counts as down.
COMMAND_TIMEOUT_S = 1.0
# Why: a restarting Redis refuses connections for well under a second; probing this often
# costs nothing (a refused connect) and brings the shared state back within it.
BACKOFF_MIN_S = 0.5
# Why: a probe of a hung Redis holds a connection for COMMAND_TIMEOUT_S; one in 5 s is cheap.
BACKOFF_MAX_S = 5.0
# Why: a failure faster than this did not wait on the network (refused, reset): not a hang.
SLOW_FAILURE_S = 0.25


def redis_client(url: str, *, cluster: bool) -> RedisClient:
    """A client for ``url``; with ``cluster``, the URL lists seed nodes ``h1:p1,h2:p2``."""
    no_retry = Retry(NoBackoff(), 0)  # RedisGuard decides about retries, visibly
    if not cluster:
        return aioredis.Redis.from_url(
            url,
            socket_timeout=COMMAND_TIMEOUT_S,
            socket_connect_timeout=COMMAND_TIMEOUT_S,
            retry=no_retry,
            health_check_interval=0,
        )
    seeds, options = startup_nodes(url)
    return RedisCluster(
        startup_nodes=[ClusterNode(host, port) for host, port in seeds],
        username=options.get("username"),
        password=options.get("password"),
        ssl=bool(options.get("tls")),
        socket_timeout=COMMAND_TIMEOUT_S,
        socket_connect_timeout=COMMAND_TIMEOUT_S,
        retry=no_retry,
        cluster_error_retry_attempts=0,
    )


class RedisUnavailableError(Exception):
    """Redis failed or timed out, or the guard skips it for now: use the local fallback."""


class RedisGuard:
    """The circuit breaker shared by everything that sends short commands to Redis.

    ``client`` is the Redis client (for ``register_script``); send commands through ``run``.
    Call ``aclose()`` before closing the client: it ends a probe in flight.
    """

    def __init__(self, client: RedisClient) -> None:
        self.client = client
        self.healthy = True
        self.outages = 0  # times Redis went away
        self.failures = 0  # calls and probes that failed (timeouts, errors)
        self.skipped = 0  # calls answered locally at once while the guard was open
        self._backoff_s = BACKOFF_MIN_S
        self._probe_at = 0.0  # monotonic time of the next probe while open
        self._probe: asyncio.Task[None] | None = None  # owned here; ended by aclose()
        self._down_since = 0.0

    async def run(self, command: Callable[[RedisClient], Awaitable[T]]) -> T:
        """Run ``command(client)`` within ``COMMAND_TIMEOUT_S``.

        Raises:
            RedisUnavailableError: Redis failed, timed out, or is being skipped (at once).
        """
        if not self.healthy:
            if self._probe is None and time.monotonic() >= self._probe_at:
                self._probe = asyncio.create_task(self._run_probe(), name="redis probe")
            self.skipped += 1
            raise RedisUnavailableError("Redis is skipped until a probe gets an answer")
        started = time.monotonic()
        try:
            result = await self._attempt(command)
        except RedisUnavailableError as exc:
            self._failed(exc, probe=False, slow=time.monotonic() - started >= SLOW_FAILURE_S)
            raise
        self._succeeded()
        return result

    async def aclose(self) -> None:
        if self._probe is not None:
            self._probe.cancel()
            await asyncio.gather(self._probe, return_exceptions=True)

    async def _run_probe(self) -> None:
        started = time.monotonic()
        try:
            await self._attempt(lambda client: client.ping())
        except RedisUnavailableError as exc:
            self._failed(exc, probe=True, slow=time.monotonic() - started >= SLOW_FAILURE_S)
        else:
            self._succeeded()
        finally:
            self._probe = None

    async def _attempt(self, command: Callable[[RedisClient], Awaitable[T]]) -> T:
        try:
            async with asyncio.timeout(COMMAND_TIMEOUT_S):
                try:
                    return await command(self.client)
                except RedisConnectionError:
                    # A pooled connection may be dead from before a Redis restart: the rest of
                    # the pool too. Drop them and try once more on a fresh connection.
                    await self._drop_idle_connections()
                    return await command(self.client)
        except (RedisError, OSError, TimeoutError) as exc:
            await self._drop_idle_connections()
            raise RedisUnavailableError(f"{type(exc).__name__}: {exc}") from exc

    async def _drop_idle_connections(self) -> None:
        try:
            if isinstance(self.client, RedisCluster):
                for node in self.client.get_nodes():
                    await node.disconnect()
            else:
                await self.client.connection_pool.disconnect(inuse_connections=False)
        except (RedisError, OSError) as exc:
            logger.debug("dropping Redis connections failed: %r", exc)

    def _failed(self, exc: RedisUnavailableError, *, probe: bool, slow: bool) -> None:
        self.failures += 1
        now = time.monotonic()
        if self.healthy:
            self.healthy = False
            self.outages += 1
            self._down_since = now
            self._backoff_s = BACKOFF_MIN_S
            logger.warning(
                "Redis unavailable (%s); presence and the write rate limit are local until it "
                "answers again",
                exc,
            )
        elif probe:
            self._backoff_s = min(BACKOFF_MAX_S, self._backoff_s * 2) if slow else BACKOFF_MIN_S
        else:
            return  # a call that started before the guard opened: the schedule stands
        self._probe_at = now + self._backoff_s

    def _succeeded(self) -> None:
        if not self.healthy:
            self.healthy = True
            logger.warning(
                "Redis answers again after %.1f s; presence and the write rate limit are shared",
                time.monotonic() - self._down_since,
            )
