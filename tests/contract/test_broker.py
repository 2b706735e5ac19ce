"""One contract for every Broker: MemoryBroker, RedisBroker and RedisClusterBroker.

Two broker instances stand for two gateway nodes on one service: A publishes, B subscribes,
with a recording ``BrokerHandler`` behind each. Redis and the Redis Cluster are the test's own
(the outage tests kill them). MemoryBroker serves a single process, where the hub delivers
locally: it fans out to nobody, so the delivery clauses do not apply to it and it must instead
take every call without effect, stay healthy and count nothing.
"""

from __future__ import annotations

import asyncio
import secrets
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field

import pytest

from protocol import SphereId
from server.broker import Broker
from server.broker.memory import MemoryBroker
from server.broker.redis import RedisBroker
from server.broker.redis_cluster import RedisClusterBroker
from tests.redis_cluster import own_redis_cluster
from tests.services import own_redis
from tests.support import eventually

TIMEOUT_S = 10.0
RECOVERY_TIMEOUT_S = 45.0  # a restarted cluster takes seconds to agree it is healthy
PROBE_INTERVAL_S = 0.05  # between probe frames while a new subscription settles


class Recorder:
    """A real BrokerHandler: records what it is handed; tests await conditions on it."""

    def __init__(self) -> None:
        self.frames: defaultdict[SphereId, list[bytes]] = defaultdict(list)
        self.resets = 0
        self._changed = asyncio.Event()

    def on_publication(self, sphere_id: SphereId, envelope: bytes) -> None:
        self.frames[sphere_id].append(envelope)
        self._changed.set()

    def on_broker_reset(self) -> None:
        self.resets += 1
        self._changed.set()

    async def until(self, condition: Callable[[], bool], timeout_s: float = TIMEOUT_S) -> None:
        async with asyncio.timeout(timeout_s):
            while not condition():
                self._changed.clear()
                await self._changed.wait()


@dataclass
class Deployment:
    """Two nodes' brokers on one service, and how to take that service down and back."""

    name: str
    fans_out: bool
    a: Broker
    b: Broker
    a_handler: Recorder = field(default_factory=Recorder)
    b_handler: Recorder = field(default_factory=Recorder)
    outage: Callable[[], Awaitable[None]] | None = None
    recovery: Callable[[], Awaitable[None]] | None = None


@pytest.fixture(params=["memory", "redis", "redis-cluster"])
async def deployment(request: pytest.FixtureRequest) -> AsyncIterator[Deployment]:
    prefix = f"cloison-contract-{secrets.token_hex(4)}:"
    async with AsyncExitStack() as stack:
        if request.param == "memory":
            found = Deployment("memory", False, MemoryBroker(), MemoryBroker())
        elif request.param == "redis":
            redis = await stack.enter_async_context(own_redis())

            async def redis_down() -> None:
                await redis.kill()

            found = Deployment(
                "redis",
                True,
                RedisBroker(redis.url, prefix=prefix),
                RedisBroker(redis.url, prefix=prefix),
                outage=redis_down,
                recovery=redis.start,
            )
        else:
            cluster = await stack.enter_async_context(own_redis_cluster())

            async def cluster_down() -> None:
                for node in cluster.nodes:
                    await node.kill()

            async def cluster_up() -> None:
                for node in cluster.nodes:
                    await node.start()
                await cluster.wait_ok()

            found = Deployment(
                "redis-cluster",
                True,
                RedisClusterBroker(cluster.url, prefix=prefix),
                RedisClusterBroker(cluster.url, prefix=prefix),
                outage=cluster_down,
                recovery=cluster_up,
            )
        await found.a.start(found.a_handler)
        await found.b.start(found.b_handler)
        try:
            await eventually(healthy(found), TIMEOUT_S)
            yield found
        finally:
            await found.a.aclose()
            await found.b.aclose()


def healthy(found: Deployment, want: bool = True) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:  # the brokers offer no event for their health
        return found.a.healthy is want and found.b.healthy is want

    return check


def needs_fan_out(found: Deployment) -> None:
    if not found.fans_out:
        pytest.skip("MemoryBroker serves one process: the hub delivers locally, nobody else")


async def subscribe_live(found: Deployment, *spheres: SphereId) -> None:
    """B subscribes to ``spheres``; returns once a probe frame published by A arrives on each
    (a subscription takes effect on the service a moment after the call)."""
    for sphere_id in spheres:
        await found.b.subscribe(sphere_id)
    async with asyncio.timeout(TIMEOUT_S):
        for sphere_id in spheres:
            while not found.b_handler.frames[sphere_id]:
                await found.a.publish(sphere_id, b"probe")
                await asyncio.sleep(PROBE_INTERVAL_S)
    for sphere_id in spheres:
        found.b_handler.frames[sphere_id].clear()


async def drain_probes(found: Deployment, sphere_id: SphereId) -> None:
    """Wait for a marker frame: every probe published before it has arrived too (one channel
    keeps its order), and can then be dropped from the record."""
    await found.a.publish(sphere_id, b"marker")
    await found.b_handler.until(lambda: b"marker" in found.b_handler.frames[sphere_id])
    found.b_handler.frames[sphere_id].clear()


async def test_frames_arrive_once_each_in_order_per_channel(deployment: Deployment) -> None:
    needs_fan_out(deployment)
    sphere_id = SphereId("s_order")
    await subscribe_live(deployment, sphere_id)
    await drain_probes(deployment, sphere_id)
    sent = [f"frame-{n}".encode() for n in range(200)]
    for frame in sent:
        await deployment.a.publish(sphere_id, frame)
    got = deployment.b_handler.frames[sphere_id]
    await deployment.b_handler.until(lambda: len(got) >= len(sent))
    assert got == sent
    assert not deployment.a_handler.frames[sphere_id]  # A never subscribed


async def test_nothing_arrives_after_unsubscribe(deployment: Deployment) -> None:
    needs_fan_out(deployment)
    gone, kept = SphereId("s_gone"), SphereId("s_kept")
    await subscribe_live(deployment, gone, kept)
    await deployment.b.unsubscribe(gone)
    for n in range(20):
        await deployment.a.publish(gone, f"late-{n}".encode())
    await drain_probes(deployment, kept)  # the marker went later, on another channel
    await asyncio.sleep(0.2)  # and one more moment for any straggler
    assert not [f for f in deployment.b_handler.frames[gone] if f.startswith(b"late")]


async def test_many_channels_keep_their_own_order(deployment: Deployment) -> None:
    needs_fan_out(deployment)
    spheres = [SphereId(f"s_many_{n}") for n in range(60)]
    await subscribe_live(deployment, *spheres)
    per_sphere = 15
    for n in range(per_sphere):
        for sphere_id in spheres:
            await deployment.a.publish(sphere_id, f"{sphere_id}:{n}".encode())
    frames = deployment.b_handler.frames
    await deployment.b_handler.until(
        lambda: all(len([f for f in frames[s] if b":" in f]) >= per_sphere for s in spheres)
    )
    for sphere_id in spheres:
        mine = [f for f in frames[sphere_id] if b":" in f]
        assert mine == [f"{sphere_id}:{n}".encode() for n in range(per_sphere)]


async def test_counters_count_what_was_published(deployment: Deployment) -> None:
    sphere_id = SphereId("s_count")
    before = deployment.a.published
    for n in range(25):
        await deployment.a.publish(sphere_id, f"c{n}".encode())
    if not deployment.fans_out:
        assert (deployment.a.published, deployment.a.dropped, deployment.a.resets) == (0, 0, 0)
        assert deployment.a.healthy and deployment.b.healthy
        return

    async def all_published() -> bool:
        return deployment.a.published >= before + 25

    await eventually(all_published, TIMEOUT_S)
    assert deployment.a.dropped == 0 and deployment.a.resets == 0


async def test_an_outage_never_raises_then_reconnects_and_resets(deployment: Deployment) -> None:
    needs_fan_out(deployment)
    assert deployment.outage is not None and deployment.recovery is not None
    sphere_id = SphereId("s_outage")
    await subscribe_live(deployment, sphere_id)
    await deployment.outage()
    async with asyncio.timeout(2.0):  # publish must neither raise nor block
        for n in range(50):
            await deployment.a.publish(sphere_id, f"lost-{n}".encode())
    # The subscriber learns of the outage from its connection, the publisher at the latest
    # when it tries to use the service.
    await eventually(healthy(deployment, want=False), TIMEOUT_S)

    async def counted_as_dropped() -> bool:
        return deployment.a.dropped >= 1

    await eventually(counted_as_dropped, TIMEOUT_S)
    await deployment.recovery()
    await deployment.b_handler.until(lambda: deployment.b_handler.resets > 0, RECOVERY_TIMEOUT_S)
    await eventually(healthy(deployment), RECOVERY_TIMEOUT_S)
    assert deployment.b.resets > 0
    # B resubscribed by itself: frames published now arrive again.
    async with asyncio.timeout(RECOVERY_TIMEOUT_S):
        while b"again" not in deployment.b_handler.frames[sphere_id]:
            await deployment.a.publish(sphere_id, b"again")
            await asyncio.sleep(PROBE_INTERVAL_S)
