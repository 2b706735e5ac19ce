"""Redis carries message bodies in flight only: no key under the server's prefix holds one.

Two gateways share one PostgreSQL and the shared Redis under a prefix of their own, and run a
working day with canaries in every text (``privacy_scenario.workday``). Meanwhile:

- a reader scans every key under the prefix, over and over (``SCAN``, then a read by type of
  each key's whole value), and records every key family it meets and any canary in a key name
  or value; a last scan runs after the day;
- ``MONITOR`` records every command Redis executes: a command that carries a canary must be a
  ``PUBLISH`` to a sphere channel, which Redis hands to the subscribers present and keeps
  nowhere.

With a replica, Redis also keeps what it propagates: a third test shows a body in the
primary's replication backlog (read by resuming from its oldest byte, as a replica would) until
later traffic overwrites it, and in no append-only file.

Positive controls: the canaries are seen in flight (so ``MONITOR`` is read and the canaries
travel), the scanner finds a canary planted in a key under the prefix of each type the server
uses, and it meets both families of keys the server keeps (rate-limit buckets, presence).
"""

from __future__ import annotations

import asyncio
import re
import secrets
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import redis.asyncio as aioredis

from tests.conftest import skip_or_fail
from tests.e2e.conftest import FAST
from tests.e2e.privacy_scenario import Canaries, workday
from tests.services import (
    POSTGRES_URL,
    REDIS_URL,
    TIMEOUT_S,
    RedisServer,
    free_port,
    postgres_schema,
    require_shared_redis,
)
from tests.support import ServerProcess, eventually, started

pytestmark = [pytest.mark.redis]

# The keys the server keeps, after its prefix (server/ratelimit.py, server/presence.py).
FAMILIES = {
    "rate": re.compile(r"rate:[a-z_]+:u_[\w-]+"),
    "presence": re.compile(r"presence:\{s_[\w-]+\}"),
    "presence_nodes": re.compile(r"presence:\{s_[\w-]+\}:u_[\w-]+"),
}


async def value_of(client: aioredis.Redis, key: bytes) -> bytes:
    """A key's whole value, read by its type (DUMP may compress strings: no search in it)."""
    kind = (await client.type(key)).decode()
    if kind == "string":
        return await client.get(key) or b""
    if kind == "hash":
        pairs = await client.hgetall(key)
        return b" ".join(k + b"=" + v for k, v in pairs.items())
    if kind == "zset":
        members = await client.zrange(key, 0, -1, withscores=True)
        return b" ".join(m + b"=" + str(s).encode() for m, s in members)
    if kind == "set":
        return b" ".join(await client.smembers(key))
    if kind == "list":
        return b" ".join(await client.lrange(key, 0, -1))
    if kind == "stream":
        entries = await client.xrange(key)
        return b" ".join(repr(entry).encode() for entry in entries)
    if kind == "none":
        return b""  # expired between SCAN and the read
    raise AssertionError(f"{key!r}: a key of type {kind} the scanner cannot read")


def address_of(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or 6379


class Scan:
    """What the scans of one prefix met."""

    def __init__(self, client: aioredis.Redis, prefix: str, canaries: Canaries) -> None:
        self.client, self.prefix, self.canaries = client, prefix, canaries
        self.families: set[str] = set()
        self.strangers: set[str] = set()  # keys in no known family
        self.unbounded: set[str] = set()  # keys without an expiry
        self.longest_ms: dict[str, int] = {}  # the longest time to live seen, per family
        self.leaks: set[str] = set()  # "<key>: <canary names>"
        self.rounds = 0

    async def once(self) -> None:
        async for key in self.client.scan_iter(match=f"{self.prefix}*", count=1000):
            name = key.decode()[len(self.prefix) :]
            value = await value_of(self.client, key)
            found = self.canaries.found_in(key + b" " + value)
            if found:
                self.leaks.add(f"{name}: {', '.join(sorted(found))}")
            family = next((f for f, shape in FAMILIES.items() if shape.fullmatch(name)), None)
            if family is None:
                self.strangers.add(name)
            else:
                self.families.add(family)
            ttl_ms = await self.client.pttl(key)
            if ttl_ms == -1:
                self.unbounded.add(name)
            elif family is not None:
                self.longest_ms[family] = max(self.longest_ms.get(family, 0), ttl_ms)
        self.rounds += 1

    async def until(self, done: asyncio.Event) -> None:
        while not done.is_set():
            await self.once()
            await asyncio.sleep(0.02)  # another process writes: there is nothing to await


async def monitored(url: str, lines: list[str], ready: asyncio.Event) -> None:
    """Append every line of ``MONITOR`` to ``lines``, as Redis writes it (until cancelled).

    Read raw: one line per command, ``+<time> [<db> <client>] "<COMMAND>" "<arg>" ...``, each
    argument quoted and escaped by Redis, so no client library's parser can lose one.
    """
    host, port = address_of(url)
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(b"MONITOR\r\n")
        async with asyncio.timeout(TIMEOUT_S):
            assert await reader.readline() == b"+OK\r\n"
        ready.set()
        while line := await reader.readline():
            lines.append(line.decode("utf-8", "replace"))
    finally:
        writer.close()


@pytest.fixture
async def redis_client() -> AsyncIterator[aioredis.Redis]:
    require_shared_redis()
    async with aioredis.Redis.from_url(REDIS_URL, socket_timeout=TIMEOUT_S) as client:
        yield client


async def test_the_scanner_finds_a_canary_in_every_kind_of_key(
    redis_client: aioredis.Redis,
) -> None:
    prefix = f"cloison-redis-{secrets.token_hex(4)}:"
    planted = Canaries()
    value = planted.new("body")
    try:
        await redis_client.hset(f"{prefix}rate:post:u_x", mapping={"t": value})
        await redis_client.zadd(f"{prefix}presence:{{s_x}}", {value: 1})
        await redis_client.set(f"{prefix}{value}", b"")
        scan = Scan(redis_client, prefix, planted)
        await scan.once()
    finally:
        await redis_client.delete(
            f"{prefix}rate:post:u_x", f"{prefix}presence:{{s_x}}", f"{prefix}{value}"
        )
    assert len(scan.leaks) == 3, scan.leaks
    assert scan.strangers == {value}
    assert scan.unbounded == {"rate:post:u_x", "presence:{s_x}", value}


@pytest.mark.postgres
async def test_redis_holds_no_body_beyond_pub_sub(
    tmp_path: Path, redis_client: aioredis.Redis
) -> None:
    canaries = Canaries()
    async with postgres_schema() as schema:
        prefix = f"cloison-redis-{schema}:"
        nodes = [
            ServerProcess(
                tmp_path / f"node{i}",
                [*FAST, "--redis-url", REDIS_URL, "--redis-prefix", prefix],
                store_url=f"{POSTGRES_URL}?schema={schema}",
            )
            for i in range(2)
        ]
        for node in nodes:
            node.data_dir.mkdir()
        scan = Scan(redis_client, prefix, canaries)
        commands: list[str] = []
        ready, done = asyncio.Event(), asyncio.Event()
        monitor = asyncio.create_task(monitored(REDIS_URL, commands, ready))
        try:
            async with asyncio.timeout(TIMEOUT_S):
                await ready.wait()
            with started(nodes):
                scanner = asyncio.create_task(scan.until(done))
                try:
                    await workday(nodes, canaries)
                finally:
                    done.set()
                    await scanner
                await scan.once()
        finally:
            if monitor.done():
                monitor.result()  # MONITOR ended early: say why
            monitor.cancel()
            await asyncio.gather(monitor, return_exceptions=True)

    assert scan.leaks == set()
    assert scan.strangers == set()
    assert scan.unbounded == set()
    assert scan.families >= {"rate", "presence", "presence_nodes"}, scan.families
    # Buckets live burst / rate + 1 s (2 s with the test's limits), presence 60 s.
    assert scan.longest_ms["rate"] <= 2_000
    assert max(scan.longest_ms["presence"], scan.longest_ms["presence_nodes"]) <= 60_000
    carrying = [line for line in commands if canaries.found_in(line)]
    assert carrying, "no canary was seen in flight: MONITOR saw nothing of the day"
    channel = re.compile(rf'^\+[\d.]+ \[[^\]]*\] "PUBLISH" "{re.escape(prefix)}sphere:s_[\w-]+" ')
    assert [line for line in carrying if not channel.match(line)] == []
    in_flight = {name for line in carrying for name in canaries.found_in(line)}
    bodies = {name for name in canaries.planted if name.startswith(("body", "edit"))}
    assert bodies <= in_flight, bodies - in_flight


# What Redis itself keeps of a PUBLISH when it has a replica, and when it writes an
# append-only file: the residue an operator of Redis must know about.


@dataclass(eq=False)
class Primary(RedisServer):
    """A Redis with an append-only file (fsynced at every write) and a small backlog."""

    def options(self) -> list[str]:
        # The smallest backlog Redis allows, so that a little traffic overwrites it.
        return ["--appendonly", "yes", "--appendfsync", "always", "--repl-backlog-size", "16kb"]


@dataclass(eq=False)
class Replica(RedisServer):
    primary_port: int = 0

    def options(self) -> list[str]:
        return ["--replicaof", "127.0.0.1", str(self.primary_port)]


async def backlog(port: int) -> bytes:
    """The primary's replication backlog, read as a replica resuming from its oldest byte."""
    async with aioredis.Redis(port=port, socket_timeout=TIMEOUT_S) as client:
        info = await client.info("replication")
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        first = info["repl_backlog_first_byte_offset"]
        writer.write(f"PSYNC {info['master_replid']} {first}\r\n".encode())
        async with asyncio.timeout(TIMEOUT_S):
            answer = await reader.readline()
            assert answer.startswith(b"+CONTINUE"), answer
            return await reader.readexactly(info["repl_backlog_histlen"])
    finally:
        writer.close()


async def test_with_a_replica_bodies_pass_through_the_backlog_and_no_file(
    tmp_path: Path,
) -> None:
    if shutil.which("redis-server") is None:
        skip_or_fail("redis-server not found")
    (tmp_path / "primary").mkdir()
    (tmp_path / "replica").mkdir()
    primary = Primary(free_port(), tmp_path / "primary")
    replica = Replica(free_port(), tmp_path / "replica", primary_port=primary.port)
    await primary.start()
    try:
        await replica.start()
        async with aioredis.Redis(port=replica.port, socket_timeout=TIMEOUT_S) as client:

            async def linked() -> bool:
                return (await client.info("replication"))["master_link_status"] == "up"

            await eventually(linked)
        prefix = f"cloison-backlog-{secrets.token_hex(4)}:"
        server = ServerProcess(
            tmp_path / "node", [*FAST, "--redis-url", primary.url, "--redis-prefix", prefix]
        )
        server.data_dir.mkdir()
        server.create_admin()
        server.start()
        canaries = Canaries()
        try:
            owner = await server.new_user("owner")
            sphere_id = await owner.create_sphere()
            body = canaries.new("body")
            reply = await owner.api(
                "POST", f"/spheres/{sphere_id}/messages", json={"message_id": "m", "body": body}
            )
            assert reply.status_code == 201, reply.text
            async with aioredis.Redis(port=primary.port, socket_timeout=TIMEOUT_S) as client:

                async def published() -> bool:
                    return body.encode() in await backlog(primary.port)

                await eventually(published)  # the body waits in the primary's backlog
                await client.publish("filler", b"x" * 64 * 1024)  # four times the backlog
                assert body.encode() not in await backlog(primary.port)
        finally:
            server.stop()
        files = b"".join(p.read_bytes() for p in tmp_path.joinpath("primary").rglob("*.aof"))
        assert prefix.encode() in files  # the rate and presence keys are in the file
        assert canaries.found_in(files) == []
    finally:
        await replica.kill()
        await primary.kill()
