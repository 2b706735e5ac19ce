"""A throwaway Redis Cluster of the test's own: primaries (and replicas) on free loopback ports.

``own_redis_cluster()`` starts the ``redis-server`` processes in a temporary directory, joins
them with ``redis-cli --cluster create`` and waits until every node reports
``cluster_state:ok``. A node can be killed (SIGKILL, as a crash): a primary with a replica
fails over to it; one without comes back, with its slots, when restarted on the same port
from its ``nodes-<port>.conf``. A slot can also be handed to another primary. Everything is
killed and removed at teardown. Skips (or fails under ``CLOISON_REQUIRE_SERVICES=1``) when
``redis-server`` or ``redis-cli`` is missing.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError
from redis.maint_notifications import MaintNotificationsConfig

from tests.conftest import skip_or_fail
from tests.services import TIMEOUT_S, RedisServer, free_port

# Joining the cluster takes a second or two; a restarted node needs a few gossip rounds more.
CLUSTER_TIMEOUT_S = 30.0
# Why: short, so a killed primary is marked failed (and a restarted one cleared) in seconds,
# not the default 15 s.
NODE_TIMEOUT_MS = 1000


@dataclass(eq=False)  # nodes compare (and hash) by identity
class ClusterNode(RedisServer):
    """One ``redis-server --cluster-enabled yes`` process; its data lives in ``workdir``."""

    bus_port: int = 0

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def options(self) -> list[str]:
        return [
            "--cluster-enabled", "yes",
            "--cluster-port", str(self.bus_port),
            "--cluster-config-file", f"nodes-{self.port}.conf",
            "--cluster-node-timeout", str(NODE_TIMEOUT_MS),
        ]  # fmt: skip

    async def command(self, *args: str | bytes | int) -> Any:
        """Run one command on this node alone (no cluster routing) and return its reply."""
        client = aioredis.Redis(
            host="127.0.0.1",
            port=self.port,
            socket_timeout=TIMEOUT_S,
            maint_notifications_config=MaintNotificationsConfig(enabled=False),  # Redis 7 lacks it
        )
        try:
            return await client.execute_command(*args)  # type: ignore[no-untyped-call]
        finally:
            await client.aclose()

    async def info(self) -> dict[str, str]:
        """``CLUSTER INFO`` as a dict (empty if the node does not answer)."""
        try:
            info = await self.command("CLUSTER INFO")  # parsed into a dict by redis-py
        except (RedisError, OSError):
            return {}
        return {str(key): str(value) for key, value in info.items()}


@dataclass
class LocalRedisCluster:
    nodes: list[ClusterNode]
    replicas: int = 0  # per primary

    @property
    def running(self) -> list[ClusterNode]:
        return [node for node in self.nodes if node.process is not None]

    @property
    def url(self) -> str:
        """A startup URL naming every node, as a broker would be configured."""
        return "redis://" + ",".join(node.address for node in self.nodes)

    async def create(self) -> None:
        cli = shutil.which("redis-cli")
        assert cli is not None
        args = ["--cluster", "create", *(node.address for node in self.nodes)]
        args += ["--cluster-replicas", str(self.replicas), "--cluster-yes"]
        process = await asyncio.create_subprocess_exec(
            cli, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
        )
        try:
            async with asyncio.timeout(CLUSTER_TIMEOUT_S):
                output, _ = await process.communicate()
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
        text = output.decode(errors="replace")
        assert process.returncode == 0 and "[OK]" in text, f"cluster create failed:\n{text}"
        await self.wait_ok()

    async def wait_ok(self) -> None:
        """Until every running node says ``cluster_state:ok`` and serves all slots, and every
        replica is in sync with its primary (so that it can take over)."""
        async with asyncio.timeout(CLUSTER_TIMEOUT_S):
            # Polling other processes: cluster state converges by gossip, with nothing to await.
            while not all([await self._settled(node) for node in self.running]):  # noqa: ASYNC110
                await asyncio.sleep(0.05)

    async def _settled(self, node: ClusterNode) -> bool:
        info = await node.info()
        if not (
            info.get("cluster_state") == "ok"
            and info.get("cluster_slots_ok") == "16384"
            and info.get("cluster_known_nodes") == str(len(self.nodes))
        ):
            return False
        try:
            replication: dict[str, str] = await node.command("INFO", "replication")  # parsed
        except (RedisError, OSError):
            return False
        return replication["role"] == "master" or replication["master_link_status"] == "up"

    async def wait_failover(self, dead: ClusterNode, slot: int) -> ClusterNode:
        """Until a replica has taken over ``slot`` from the ``dead`` primary; returns it."""
        async with asyncio.timeout(CLUSTER_TIMEOUT_S):
            while (owner := await self.owner(slot)) is dead:  # noqa: ASYNC110 - as in wait_ok
                await asyncio.sleep(0.05)
        return owner

    async def wait_down(self) -> None:
        """Until the running nodes have marked a dead primary (without replica) as failed."""
        async with asyncio.timeout(CLUSTER_TIMEOUT_S):
            while True:  # polling other processes, as in wait_ok
                infos = [await node.info() for node in self.running]
                if all(info.get("cluster_state") == "fail" for info in infos):
                    return
                await asyncio.sleep(0.05)

    async def move_slot(self, slot: int, target: ClusterNode) -> None:
        """Give ``slot`` to ``target`` (a resharding of a slot without keys: nothing to MIGRATE)."""
        target_id = (await target.command("CLUSTER", "MYID")).decode()
        # The documented order: the new owner first, then the old one, then everybody else.
        source = await self.owner(slot)
        others = [node for node in self.nodes if node not in (target, source)]
        for node in [target, source, *others]:
            await node.command("CLUSTER", "SETSLOT", slot, "NODE", target_id)

    async def restart(self, node: ClusterNode) -> None:
        """Start ``node`` again on its port from its nodes.conf, and wait for a healthy cluster."""
        await node.start()
        await self.wait_ok()

    async def owner(self, slot: int) -> ClusterNode:
        """The node that serves ``slot``, per ``CLUSTER SLOTS`` on a running node."""
        ranges = await self.running[0].command("CLUSTER", "SLOTS")  # raw, unparsed rows
        for row in ranges:
            start, end, primary = int(row[0]), int(row[1]), row[2]
            if start <= slot <= end:
                port = int(primary[1])
                return next(node for node in self.nodes if node.port == port)
        raise AssertionError(f"slot {slot} is not served")

    async def keyslot(self, name: bytes) -> int:
        """The slot of ``name``, as Redis computes it (``CLUSTER KEYSLOT``)."""
        return int(await self.running[0].command("CLUSTER", "KEYSLOT", name))

    async def aclose(self) -> None:
        for node in self.nodes:
            await node.kill()


@asynccontextmanager
async def own_redis_cluster(
    primaries: int = 3, *, replicas: int = 0
) -> AsyncIterator[LocalRedisCluster]:
    """``primaries`` primaries with ``replicas`` replicas each, on free loopback ports; all
    killed and removed afterwards."""
    if shutil.which("redis-server") is None or shutil.which("redis-cli") is None:
        skip_or_fail("redis-server or redis-cli not found (needed for a Redis Cluster)")
    with tempfile.TemporaryDirectory(prefix="cloison-redis-cluster-") as workdir:
        ports: set[int] = set()
        while len(ports) < 2 * primaries * (1 + replicas):  # a client and a cluster bus port
            ports.add(free_port())
        ordered = sorted(ports)
        cluster = LocalRedisCluster(
            [
                ClusterNode(port, Path(workdir), bus_port=bus_port)
                for port, bus_port in zip(ordered[::2], ordered[1::2], strict=True)
            ],
            replicas,
        )
        try:
            for node in cluster.nodes:
                await node.start()
            await cluster.create()
            yield cluster
        finally:
            await cluster.aclose()
