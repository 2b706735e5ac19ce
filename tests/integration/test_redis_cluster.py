"""RedisClusterBroker on a Redis Cluster of the test's own (3 primaries; 3 more as replicas
for the failover test).

Two broker instances stand for two gateway nodes: B subscribes, A publishes. The handler is
a small recorder, a real implementation of ``BrokerHandler``. Faults are real: a primary is
killed with SIGKILL and restarted from its nodes.conf, or fails over to its replica, or a
slot is handed to another primary.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

import pytest
from redis.crc import key_slot

from protocol import SphereId
from server.broker.redis_cluster import RedisClusterBroker, SlotMap, startup_nodes
from tests.contract.test_broker import Recorder
from tests.redis_cluster import ClusterNode, LocalRedisCluster, own_redis_cluster
from tests.services import TIMEOUT_S
from tests.support import eventually

# Killing a primary, the cluster marking it failed and healing after its restart take seconds.
RECOVERY_TIMEOUT_S = 45.0
SPHERES = 30  # enough for every shard to own several of them
FRAMES_PER_SPHERE = 40


@pytest.fixture
async def cluster() -> AsyncIterator[LocalRedisCluster]:
    async with own_redis_cluster() as started:
        yield started


@pytest.fixture
def prefix() -> str:
    return f"cloison-test-{secrets.token_hex(4)}:"


Node = tuple[RedisClusterBroker, Recorder]


@asynccontextmanager
async def two_nodes(cluster: LocalRedisCluster, prefix: str) -> AsyncIterator[tuple[Node, Node]]:
    """Two started brokers on the cluster (two gateway nodes), closed afterwards."""
    async with AsyncExitStack() as stack:
        nodes = []
        for _ in range(2):
            broker, handler = RedisClusterBroker(cluster.url, prefix=prefix), Recorder()
            stack.push_async_callback(broker.aclose)
            async with asyncio.timeout(TIMEOUT_S):
                await broker.start(handler)
            assert broker.healthy
            nodes.append((broker, handler))
        yield nodes[0], nodes[1]


@pytest.fixture
async def nodes(cluster: LocalRedisCluster, prefix: str) -> AsyncIterator[tuple[Node, Node]]:
    async with two_nodes(cluster, prefix) as started:
        yield started


async def spheres_by_owner(
    cluster: LocalRedisCluster, broker: RedisClusterBroker, count: int
) -> dict[SphereId, ClusterNode]:
    """``count`` spheres and the primary serving each, as Redis itself hashes the channel."""
    owners = {}
    for n in range(count):
        sphere_id = SphereId(f"sphere-{n}")
        owners[sphere_id] = await cluster.owner(await cluster.keyslot(broker.channel(sphere_id)))
    return owners


async def shard_channels(node: ClusterNode, prefix: str) -> set[bytes]:
    """The shard channels with subscribers on ``node`` (``PUBSUB SHARDCHANNELS``)."""
    return set(await node.command("PUBSUB", "SHARDCHANNELS", f"{prefix}*"))


async def shard_subscribers(node: ClusterNode, channels: list[bytes]) -> list[int]:
    """Subscriber count of each channel on ``node`` (``PUBSUB SHARDNUMSUB``)."""
    flat = await node.command("PUBSUB", "SHARDNUMSUB", *channels)
    return [int(count) for count in flat[1::2]]


def envelope(sphere_id: SphereId, n: int) -> bytes:
    return f"{sphere_id}#{n}".encode()


async def publish_round(
    broker: RedisClusterBroker, spheres: list[SphereId], numbers: range
) -> dict[SphereId, list[bytes]]:
    """Publish interleaved across spheres; returns what each sphere was sent, in order."""
    sent: dict[SphereId, list[bytes]] = {sphere_id: [] for sphere_id in spheres}
    for n in numbers:
        for sphere_id in spheres:
            await broker.publish(sphere_id, envelope(sphere_id, n))
            sent[sphere_id].append(envelope(sphere_id, n))
    return sent


@pytest.mark.redis
async def test_spheres_spread_over_every_shard_and_arrive_in_order(
    cluster: LocalRedisCluster,
    prefix: str,
    nodes: tuple[Node, Node],
) -> None:
    (a, _), (b, received) = nodes
    owners = await spheres_by_owner(cluster, b, SPHERES + 6)
    followed, left, never = list(owners)[:SPHERES], list(owners)[SPHERES:-3], list(owners)[-3:]
    assert {owners[s] for s in followed} == set(cluster.nodes), "spheres must cover all shards"

    async with asyncio.timeout(TIMEOUT_S):
        for sphere_id in followed + left:
            await b.subscribe(sphere_id)
        for sphere_id in left:
            await b.unsubscribe(sphere_id)

    # Each primary holds exactly the subscriptions of the spheres it serves, one each.
    for node in cluster.nodes:
        mine = [b.channel(s) for s in followed if owners[s] is node]
        assert mine, f"{node.address} serves none of the spheres"
        assert await shard_channels(node, prefix) == set(mine)
        assert await shard_subscribers(node, mine) == [1] * len(mine)

    # Published right after subscribe returned: the subscriptions were confirmed by then.
    sent = await publish_round(a, followed + left + never, range(FRAMES_PER_SPHERE))
    # Then a last frame to each followed sphere, so to every shard: once B has them all, it
    # has read everything published before on each of its links.
    markers = await publish_round(a, followed, range(FRAMES_PER_SPHERE, FRAMES_PER_SPHERE + 1))
    await received.until(lambda: all(received.frames[s][-1:] == markers[s] for s in followed))

    for sphere_id in followed:
        assert received.frames[sphere_id] == sent[sphere_id] + markers[sphere_id]
    assert not any(received.frames[s] for s in left + never)

    async def all_acknowledged() -> bool:  # counted when Redis answers, which has no event
        return a.published == len(sent) * FRAMES_PER_SPHERE + len(markers)

    await eventually(all_acknowledged)
    assert a.dropped == 0
    assert a.resets == b.resets == received.resets == 0
    assert a.healthy and b.healthy


@pytest.mark.redis
@pytest.mark.slow
async def test_a_killed_primary_makes_the_broker_unhealthy_then_it_resubscribes(
    cluster: LocalRedisCluster,
    prefix: str,
    nodes: tuple[Node, Node],
) -> None:
    (a, publisher_side), (b, received) = nodes
    owners = await spheres_by_owner(cluster, b, SPHERES)
    spheres = list(owners)
    victim = cluster.nodes[1]
    on_victim = [b.channel(s) for s in spheres if owners[s] is victim]
    assert on_victim
    async with asyncio.timeout(TIMEOUT_S):
        for sphere_id in spheres:
            await b.subscribe(sphere_id)

    await victim.kill()

    async def both_down() -> bool:
        return not a.healthy and not b.healthy

    await eventually(both_down)  # the brokers offer no event for losing their links
    async with asyncio.timeout(TIMEOUT_S):
        await publish_round(a, spheres, range(5))  # must neither raise nor block

    async def lost_frames_counted() -> bool:
        return a.dropped >= 5 * len(on_victim)

    await eventually(lost_frames_counted)
    await cluster.wait_down()
    assert not a.healthy and not b.healthy

    await cluster.restart(victim)
    await received.until(lambda: received.resets > 0, RECOVERY_TIMEOUT_S)
    await publisher_side.until(lambda: publisher_side.resets > 0, RECOVERY_TIMEOUT_S)
    assert b.healthy and a.healthy
    assert await shard_channels(victim, prefix) == set(on_victim)
    assert await shard_subscribers(victim, on_victim) == [1] * len(on_victim)

    before = {sphere_id: len(received.frames[sphere_id]) for sphere_id in spheres}
    sent = await publish_round(a, spheres, range(100, 100 + FRAMES_PER_SPHERE))
    await received.until(
        lambda: all(len(received.frames[s]) - before[s] >= FRAMES_PER_SPHERE for s in spheres)
    )
    for sphere_id in spheres:
        assert received.frames[sphere_id][before[sphere_id] :] == sent[sphere_id]
    # One recovery, one reset, however many reconnection attempts it took.
    assert received.resets == b.resets == 1
    assert publisher_side.resets == a.resets == 1


@pytest.mark.redis
async def test_a_slot_moved_to_another_primary_is_followed(
    cluster: LocalRedisCluster,
    prefix: str,
    nodes: tuple[Node, Node],
) -> None:
    (a, publisher_side), (b, received) = nodes
    owners = await spheres_by_owner(cluster, b, SPHERES)
    spheres = list(owners)
    moved = spheres[0]
    slot = await cluster.keyslot(b.channel(moved))
    target = next(node for node in cluster.nodes if node is not owners[moved])
    async with asyncio.timeout(TIMEOUT_S):
        for sphere_id in spheres:
            await b.subscribe(sphere_id)

    # Redis unsubscribes B from the moved channel by itself: B must notice and follow it.
    await cluster.move_slot(slot, target)
    await received.until(lambda: received.resets == 1)
    assert b.healthy
    assert b.channel(moved) in await shard_channels(target, prefix)
    assert b.channel(moved) not in await shard_channels(owners[moved], prefix)

    # A still routes by the old map: the MOVED reply is followed, nothing is dropped.
    sent = await publish_round(a, spheres, range(FRAMES_PER_SPHERE))
    await received.until(lambda: all(len(received.frames[s]) >= FRAMES_PER_SPHERE for s in spheres))
    for sphere_id in spheres:
        assert received.frames[sphere_id] == sent[sphere_id]
    assert a.dropped == 0
    await publisher_side.until(lambda: publisher_side.resets == 1)
    assert a.healthy and received.resets == 1


@pytest.mark.redis
@pytest.mark.slow
async def test_a_failover_to_a_replica_is_followed(prefix: str) -> None:
    async with own_redis_cluster(replicas=1) as cluster, two_nodes(cluster, prefix) as nodes:
        (a, publisher_side), (b, received) = nodes
        owners = await spheres_by_owner(cluster, b, SPHERES)
        spheres = list(owners)
        victim = owners[spheres[0]]
        slot = await cluster.keyslot(b.channel(spheres[0]))
        on_victim = {b.channel(s) for s in spheres if owners[s] is victim}
        async with asyncio.timeout(TIMEOUT_S):
            for sphere_id in spheres:
                await b.subscribe(sphere_id)

        await victim.kill()
        successor = await cluster.wait_failover(victim, slot)
        await received.until(lambda: received.resets > 0, RECOVERY_TIMEOUT_S)
        await publisher_side.until(lambda: publisher_side.resets > 0, RECOVERY_TIMEOUT_S)
        assert a.healthy and b.healthy
        assert await shard_channels(successor, prefix) == on_victim

        sent = await publish_round(a, spheres, range(FRAMES_PER_SPHERE))
        await received.until(
            lambda: all(len(received.frames[s]) >= FRAMES_PER_SPHERE for s in spheres)
        )
        for sphere_id in spheres:
            assert received.frames[sphere_id] == sent[sphere_id]
        assert received.resets == b.resets == 1
        assert publisher_side.resets == a.resets == 1


def test_channels_hash_on_the_sphere_id_alone() -> None:
    broker = RedisClusterBroker("redis://127.0.0.1:7000", prefix="any:")
    other = RedisClusterBroker("redis://127.0.0.1:7000", prefix="other:")
    sphere_id = SphereId("general")
    assert broker.channel(sphere_id) == b"any:sphere:{general}"
    assert key_slot(broker.channel(sphere_id)) == key_slot(other.channel(sphere_id))
    assert key_slot(broker.channel(sphere_id)) == key_slot(b"general")
    with pytest.raises(ValueError, match="one slot"):
        RedisClusterBroker("redis://127.0.0.1:7000", prefix="{cloison}:")


def test_startup_urls() -> None:
    seeds, options = startup_nodes("rediss://app:s%40cret@10.0.0.1:7000,10.0.0.2:7001/0")
    assert seeds == [("10.0.0.1", 7000), ("10.0.0.2", 7001)]
    assert options == {"tls": True, "username": "app", "password": "s@cret"}
    assert startup_nodes("redis://[::1]:7000")[0] == [("::1", 7000)]
    assert startup_nodes("redis://cache")[0] == [("cache", 6379)]
    with pytest.raises(ValueError, match="URL"):
        startup_nodes("http://cache:7000")


def test_slot_map_lookup() -> None:
    reply = [
        [5461, 10922, [b"", 7001, b"id1"]],
        [0, 5460, [b"10.0.0.1", 7000, b"id0"]],
        [10923, 16383, [b"?", 7002, b"id2"]],
    ]
    slots = SlotMap.from_cluster_slots(reply, ("10.0.0.9", 7001))
    assert slots.owner(0) == slots.owner(5460) == ("10.0.0.1", 7000)
    assert slots.owner(5461) == ("10.0.0.9", 7001)  # empty host: the address asked
    assert slots.owner(16383) is None  # unknown endpoint: not covered
    assert slots.primaries == {("10.0.0.1", 7000), ("10.0.0.9", 7001)}
