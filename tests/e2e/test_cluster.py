"""Several gateway processes on one Redis and one PostgreSQL: one order, nothing lost.

Each test uses its own PostgreSQL schema and Redis channel prefix; tests that kill Redis or
PostgreSQL start their own instance of it on a free port.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import signal
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
from websockets.exceptions import ConnectionClosed

from protocol import (
    Ack,
    ErrorReply,
    Message,
    Presence,
    Publish,
    StreamPosition,
    Subscribe,
    Subscribed,
    Typing,
    UserTyping,
)
from tests.e2e.conftest import FAST
from tests.redis_cluster import own_redis_cluster
from tests.services import (
    POSTGRES_URL,
    own_postgres,
    own_redis,
    postgres_schema,
    require_shared_redis,
)
from tests.support import Client, ServerProcess, User, eventually, pair, started

pytestmark = [pytest.mark.redis, pytest.mark.postgres, pytest.mark.slow]


@asynccontextmanager
async def gateways(
    tmp_path: Path,
    count: int,
    *,
    redis_url: str,
    store_url: str | None = None,
    cluster: bool = False,
    limits: Sequence[str] = FAST,
) -> AsyncIterator[list[ServerProcess]]:
    """``count`` gateway processes sharing one store and one Redis (or Redis Cluster)."""
    async with postgres_schema() as schema:
        url = store_url or f"{POSTGRES_URL}?schema={schema}"
        prefix = f"cloison-test-{secrets.token_hex(4)}:"
        redis = ["--redis-cluster-url" if cluster else "--redis-url", redis_url]
        nodes = []
        for i in range(count):
            node = ServerProcess(
                tmp_path / f"node{i}",
                extra_args=[*limits, *redis, "--redis-prefix", prefix],
                store_url=url,
            )
            node.data_dir.mkdir()
            nodes.append(node)
        with started(nodes):
            yield nodes


async def connect(user: User, node: ServerProcess) -> Client:
    return await Client.connect(node.ws_url, user.token)


async def ready(node: ServerProcess) -> dict[str, object]:
    async with httpx.AsyncClient(base_url=node.http_url, timeout=5) as http:
        return dict((await http.get("/readyz")).json())


async def broker_down(node: ServerProcess) -> bool:
    return not (await ready(node))["broker"]


async def is_ready(node: ServerProcess) -> bool:
    return (await ready(node))["ready"] is True


async def collect(client: Client, count: int, timeout_s: float = 30) -> list[int]:
    offsets = []
    async with asyncio.timeout(timeout_s):
        while len(offsets) < count:
            offsets.append((await client.expect(Message, timeout_s=timeout_s)).offset)
    return offsets


async def test_three_gateways_deliver_one_order(tmp_path: Path) -> None:
    require_shared_redis()
    async with gateways(tmp_path, 3, redis_url="redis://127.0.0.1:6379/0") as nodes:
        owner = await nodes[0].new_user("owner")
        sphere_id = await owner.create_sphere()
        users = [await nodes[0].new_user(f"u{i}") for i in range(9)]
        for user in users:
            await owner.add(sphere_id, user)
        readers = [await connect(users[i], nodes[i % 3]) for i in range(6)]
        for reader in readers:
            sub = await reader.request(Subscribe(sphere_id=sphere_id, ref="s"))
            assert isinstance(sub, Subscribed)
        base = sub.position.offset  # the sphere's creation and the 9 additions
        per = 100

        async def publish_all(user: User, node: ServerProcess, tag: str) -> list[int]:
            client = await connect(user, node)
            for n in range(per):
                await client.send(
                    Publish(
                        sphere_id=sphere_id, message_id=f"{tag}{n}", body=f"{tag}:{n}", ref=str(n)
                    )
                )
            return [(await client.expect(Ack, ref=str(n))).offset for n in range(per)]

        acked = await asyncio.gather(
            *(publish_all(users[6 + i], nodes[i], f"p{i}") for i in range(3))
        )
        total = 3 * per
        expected = list(range(base + 1, base + total + 1))
        assert sorted(o for a in acked for o in a) == expected
        for reader in readers:
            assert await collect(reader, total) == expected


async def test_killed_gateway_clients_resume_on_another(tmp_path: Path) -> None:
    require_shared_redis()
    async with gateways(tmp_path, 3, redis_url="redis://127.0.0.1:6379/0") as nodes:
        owner, reader_user, sphere_id = await pair(nodes[0])
        reader = await connect(reader_user, nodes[2])
        sub = await reader.request(Subscribe(sphere_id=sphere_id, ref="s"))
        assert isinstance(sub, Subscribed)
        writer = await connect(owner, nodes[0])
        total = 400

        async def write() -> None:
            for n in range(total):
                await writer.send(
                    Publish(sphere_id=sphere_id, message_id=f"m{n}", body="x", ref=str(n))
                )
                await writer.expect(Ack, ref=str(n))
                await asyncio.sleep(0.002)

        writing = asyncio.create_task(write())
        seen = await collect(reader, 100)
        nodes[2].stop(signal.SIGKILL)
        # Drain what reached the socket before the kill; then resume elsewhere.
        with contextlib.suppress(ConnectionClosed, TimeoutError):  # it died with its gateway
            while True:
                frame = await reader.recv(timeout_s=2)
                if isinstance(frame, Message):
                    seen.append(frame.offset)
        resumed = await connect(reader_user, nodes[1])
        since = StreamPosition(seen[-1], sub.position.epoch)
        assert isinstance(
            await resumed.request(Subscribe(sphere_id=sphere_id, since=since, ref="r")), Subscribed
        )
        await writing
        seen += await collect(resumed, total - len(seen))
        base = sub.position.offset  # the sphere's creation and the reader's addition
        assert seen == list(range(base + 1, base + total + 1))  # no loss, duplicate, reorder


async def test_redis_restart_loses_nothing(tmp_path: Path) -> None:
    async with own_redis() as redis, gateways(tmp_path, 2, redis_url=redis.url) as nodes:
        owner, reader_user, sphere_id = await pair(nodes[0])
        reader = await connect(reader_user, nodes[1])
        await reader.request(Subscribe(sphere_id=sphere_id, ref="s"))
        writer = await connect(owner, nodes[0])

        async def publish(start: int, stop: int) -> None:
            for n in range(start, stop):
                ack = await writer.request(
                    Publish(sphere_id=sphere_id, message_id=f"m{n}", body="x", ref=str(n))
                )
                assert isinstance(ack, Ack), ack
                assert ack.offset == n + 3  # after the creation and the reader's addition

        await publish(0, 50)
        assert await collect(reader, 50) == list(range(3, 53))
        await redis.kill()
        await publish(50, 100)  # still acked: the store is the source of truth
        await eventually(lambda: broker_down(nodes[1]))
        state = await ready(nodes[1])
        assert state == {
            "ready": False,
            "store": True,
            "broker": False,
            "reasons": ["broker: Redis is unreachable"],
        }
        await redis.start()
        for node in nodes:
            await eventually(lambda node=node: is_ready(node))  # type: ignore[misc]
        await publish(100, 150)
        assert await collect(reader, 100) == list(range(53, 153))


async def test_database_outage_fails_writes_retryably_and_loses_nothing(tmp_path: Path) -> None:
    require_shared_redis()
    async with own_postgres() as pg:
        store_url = f"{pg.dsn}?schema=cloison"
        async with gateways(
            tmp_path, 2, redis_url="redis://127.0.0.1:6379/0", store_url=store_url
        ) as nodes:
            owner, reader_user, sphere_id = await pair(nodes[0])
            reader = await connect(reader_user, nodes[1])
            await reader.request(Subscribe(sphere_id=sphere_id, ref="s"))
            writer = await connect(owner, nodes[0])
            acked: list[int] = []
            for n in range(20):
                ack = await writer.request(
                    Publish(sphere_id=sphere_id, message_id=f"m{n}", body="x", ref=str(n))
                )
                assert isinstance(ack, Ack)
                acked.append(ack.offset)
            await pg.kill()
            failed = await writer.request(
                Publish(sphere_id=sphere_id, message_id="m20", body="x", ref="20"), timeout_s=30
            )
            assert isinstance(failed, ErrorReply)
            assert (failed.code, failed.retryable) == ("unavailable", True)
            assert not (await ready(nodes[0]))["store"]
            await pg.start()
            async with asyncio.timeout(30):
                while True:  # retry with the same key, as a client would
                    again = await writer.request(
                        Publish(sphere_id=sphere_id, message_id="m20", body="x", ref=writer.ref()),
                        timeout_s=30,
                    )
                    if isinstance(again, Ack):
                        break
                    assert again.retryable
                    await asyncio.sleep(0.2)
            acked.append(again.offset)
            assert acked == list(range(3, 24))  # after the creation and the reader's addition
            assert await collect(reader, 21) == acked


async def test_presence_and_typing_span_gateways(tmp_path: Path) -> None:
    require_shared_redis()
    async with gateways(tmp_path, 2, redis_url="redis://127.0.0.1:6379/0") as nodes:
        alice, bob, sphere_id = await pair(nodes[0])
        a = await connect(alice, nodes[0])
        await a.request(Subscribe(sphere_id=sphere_id, ref="s"))
        await a.expect(Presence, user_id=alice.user_id)  # her own arrival, recorded
        b1 = await connect(bob, nodes[1])
        sub = await b1.request(Subscribe(sphere_id=sphere_id, ref="s"))
        assert isinstance(sub, Subscribed)
        assert alice.user_id in sub.online  # learned from the other gateway
        assert (await a.expect(Presence, user_id=bob.user_id)).online
        await b1.send(Typing(sphere_id=sphere_id))
        assert (await a.expect(UserTyping)).user_id == bob.user_id
        # Bob on both gateways: leaving one of them is not going offline.
        b0 = await connect(bob, nodes[0])
        await b0.request(Subscribe(sphere_id=sphere_id, ref="s"))
        await b1.close()
        with pytest.raises(TimeoutError):
            await a.expect(Presence, timeout_s=2.5, user_id=bob.user_id)
        await b0.close()
        gone = await a.expect(Presence, timeout_s=5, user_id=bob.user_id)
        assert not gone.online


async def test_write_rate_limit_is_shared_by_gateways(tmp_path: Path) -> None:
    require_shared_redis()
    limits = ["--publish-rate-per-s", "0.5", "--publish-burst", "6"]
    async with gateways(tmp_path, 2, redis_url="redis://127.0.0.1:6379/0", limits=limits) as nodes:
        user = await nodes[0].new_user("writer")
        sphere_id = await user.create_sphere()  # a sphere_admin request, not a post
        clients = [await connect(user, node) for node in nodes]
        replies = []
        for n in range(8):  # alternating gateways: one bucket for both
            frame = Publish(sphere_id=sphere_id, message_id=f"m{n}", body="x", ref=str(n))
            replies.append(await clients[n % 2].request(frame))
        assert [isinstance(r, Ack) for r in replies] == [True] * 6 + [False] * 2
        assert all(r.code == "rate_limited" for r in replies[6:])  # type: ignore[attr-defined]


async def test_gateways_on_a_redis_cluster(tmp_path: Path) -> None:
    """Fan-out and presence through a three-primary Redis Cluster."""
    async with (
        own_redis_cluster() as cluster,
        gateways(tmp_path, 2, redis_url=cluster.url, cluster=True) as nodes,
    ):
        alice = await nodes[0].new_user("alice")
        bob = await nodes[0].new_user("bob")
        spheres = [await alice.create_sphere(f"s{i}") for i in range(6)]
        for sphere_id in spheres:
            await alice.add(sphere_id, bob)
        a = await connect(alice, nodes[0])
        b = await connect(bob, nodes[1])
        for sphere_id in spheres:
            await a.request(Subscribe(sphere_id=sphere_id, ref=a.ref()))
        for sphere_id in spheres:
            sub = await b.request(Subscribe(sphere_id=sphere_id, ref=b.ref()))
            assert isinstance(sub, Subscribed)
            assert alice.user_id in sub.online
        for n in range(10):
            for sphere_id in spheres:
                frame = Publish(sphere_id=sphere_id, message_id=f"m{n}", body="x", ref=a.ref())
                assert isinstance(await a.request(frame), Ack)
        got: dict[str, list[int]] = {s: [] for s in spheres}
        async with asyncio.timeout(30):
            while sum(len(v) for v in got.values()) < 60:
                message = await b.expect(Message)
                got[message.sphere_id].append(message.offset)
        # After each sphere's creation and bob's addition.
        assert all(offsets == list(range(3, 13)) for offsets in got.values())
