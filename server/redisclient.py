"""The Redis client that presence and the shared rate limit use: one server or a cluster.

The brokers keep connections of their own (pub/sub needs dedicated ones); this client is for
short commands and scripts, with tight timeouts because it sits on request paths.
"""

from __future__ import annotations

import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode, RedisCluster

from server.broker.redis_cluster import startup_nodes

RedisClient = aioredis.Redis | RedisCluster

# Why: these commands sit on the write and subscribe paths; past this, Redis counts as down.
COMMAND_TIMEOUT_S = 1.0


def redis_client(url: str, *, cluster: bool) -> RedisClient:
    """A client for ``url``; with ``cluster``, the URL lists seed nodes ``h1:p1,h2:p2``."""
    if not cluster:
        return aioredis.Redis.from_url(
            url, socket_timeout=COMMAND_TIMEOUT_S, socket_connect_timeout=COMMAND_TIMEOUT_S
        )
    seeds, options = startup_nodes(url)
    return RedisCluster(
        startup_nodes=[ClusterNode(host, port) for host, port in seeds],
        username=options.get("username"),
        password=options.get("password"),
        ssl=bool(options.get("tls")),
        socket_timeout=COMMAND_TIMEOUT_S,
        socket_connect_timeout=COMMAND_TIMEOUT_S,
    )
