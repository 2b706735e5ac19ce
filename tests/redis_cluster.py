"""A throwaway Redis Cluster of the test's own: N primaries on free loopback ports, no replicas.

``own_redis_cluster()`` starts the ``redis-server`` processes in a temporary directory, joins
them with ``redis-cli --cluster create`` and waits until every node reports
``cluster_state:ok``. A node can be killed (SIGKILL, as a crash) and restarted on the same
port from its ``nodes-<port>.conf``, after which it takes its slots back. Everything is
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

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from tests.conftest import skip_or_fail
from tests.services import TIMEOUT_S, free_port

# Joining the cluster takes a second or two; a restarted node needs a few gossip rounds more.
CLUSTER_TIMEOUT_S = 30.0
# Why: short, so a killed primary is marked failed (and a restarted one cleared) in seconds,
# not the default 15 s.
NODE_TIMEOUT_MS = 1000


@dataclass(eq=False)  # nodes compare (and hash) by identity
class ClusterNode:
    """One ``redis-server --cluster-enabled yes`` process; its data lives in ``workdir``."""

    port: int
    bus_port: int
    workdir: Path
    process: asyncio.subprocess.Process | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def client(self) -> aioredis.Redis:
        """A plain connection to this node alone (no cluster routing); the caller closes it."""
        return aioredis.Redis(host="127.0.0.1", port=self.port, socket_timeout=TIMEOUT_S)

    async def start(self) -> None:
        binary = shutil.which("redis-server")
        assert binary is not None
        args = ["--port", str(self.port), "--bind", "127.0.0.1"]
        args += ["--cluster-enabled", "yes", "--cluster-port", str(self.bus_port)]
        args += ["--cluster-config-file", f"nodes-{self.port}.conf"]
        args += ["--cluster-node-timeout", str(NODE_TIMEOUT_MS)]
        args += ["--save", "", "--appendonly", "no", "--dir", str(self.workdir)]
        self.process = await asyncio.create_subprocess_exec(
            binary, *args, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
        )
        async with asyncio.timeout(TIMEOUT_S):
            # Polling another process: it offers nothing to await until it listens.
            while True:
                try:
                    _, writer = await asyncio.open_connection("127.0.0.1", self.port)
                except OSError:
                    await asyncio.sleep(0.02)
                    continue
                writer.close()
                await writer.wait_closed()
                return

    async def kill(self) -> None:
        """Stop at once (SIGKILL), as a crash would."""
        if self.process is not None and self.process.returncode is None:
            self.process.kill()
            async with asyncio.timeout(TIMEOUT_S):
                await self.process.wait()
        self.process = None

    async def info(self) -> dict[str, str]:
        """``CLUSTER INFO`` as a dict (empty if the node does not answer)."""
        client = self.client()
        try:
            info = await client.execute_command("CLUSTER INFO")  # parsed by redis-py
        except (RedisError, OSError):
            return {}
        finally:
            await client.aclose()
        return {str(key): str(value) for key, value in info.items()}


@dataclass
class LocalRedisCluster:
    nodes: list[ClusterNode]

    @property
    def url(self) -> str:
        """A startup URL naming every node, as a broker would be configured."""
        return "redis://" + ",".join(node.address for node in self.nodes)

    async def create(self) -> None:
        cli = shutil.which("redis-cli")
        assert cli is not None
        args = ["--cluster", "create", *(node.address for node in self.nodes)]
        args += ["--cluster-replicas", "0", "--cluster-yes"]
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
        """Until every running node says ``cluster_state:ok`` and knows all slots."""
        async with asyncio.timeout(CLUSTER_TIMEOUT_S):
            # Polling other processes: cluster state converges by gossip, with nothing to await.
            while True:
                infos = [await node.info() for node in self.nodes]
                if all(
                    info.get("cluster_state") == "ok"
                    and info.get("cluster_slots_assigned") == "16384"
                    and info.get("cluster_slots_fail") == "0"
                    and info.get("cluster_slots_pfail") == "0"
                    for info in infos
                ):
                    return
                await asyncio.sleep(0.05)

    async def wait_down(self) -> None:
        """Until the running nodes have marked a dead primary as failed."""
        async with asyncio.timeout(CLUSTER_TIMEOUT_S):
            while True:  # polling other processes, as in wait_ok
                infos = [await node.info() for node in self.nodes if node.process is not None]
                if all(info.get("cluster_state") == "fail" for info in infos):
                    return
                await asyncio.sleep(0.05)

    async def move_slot(self, slot: int, target: ClusterNode) -> None:
        """Give ``slot`` to ``target`` (a resharding of a slot without keys: nothing to MIGRATE)."""
        target_client = target.client()
        try:
            target_id = (await target_client.execute_command("CLUSTER MYID")).decode()
        finally:
            await target_client.aclose()
        # The documented order: the new owner first, then the old one, then everybody else.
        source = await self.owner(slot)
        others = [node for node in self.nodes if node not in (target, source)]
        for node in [target, source, *others]:
            client = node.client()
            try:
                await client.execute_command("CLUSTER SETSLOT", slot, "NODE", target_id)
            finally:
                await client.aclose()

    async def restart(self, node: ClusterNode) -> None:
        """Start ``node`` again on its port from its nodes.conf, and wait for a healthy cluster."""
        await node.start()
        await self.wait_ok()

    async def owner(self, slot: int) -> ClusterNode:
        """The node that serves ``slot``, per ``CLUSTER SLOTS`` on a running node."""
        running = next(node for node in self.nodes if node.process is not None)
        client = running.client()
        try:
            ranges = await client.execute_command("CLUSTER", "SLOTS")  # raw, unparsed rows
        finally:
            await client.aclose()
        for row in ranges:
            start, end, primary = int(row[0]), int(row[1]), row[2]
            if start <= slot <= end:
                port = int(primary[1])
                return next(node for node in self.nodes if node.port == port)
        raise AssertionError(f"slot {slot} is not served")

    async def keyslot(self, name: bytes) -> int:
        """The slot of ``name``, as Redis computes it (``CLUSTER KEYSLOT``)."""
        client = self.nodes[0].client()
        try:
            return int(await client.execute_command("CLUSTER KEYSLOT", name))
        finally:
            await client.aclose()

    async def aclose(self) -> None:
        for node in self.nodes:
            await node.kill()


@asynccontextmanager
async def own_redis_cluster(primaries: int = 3) -> AsyncIterator[LocalRedisCluster]:
    """``primaries`` primaries, no replicas, on free loopback ports; all removed afterwards."""
    if shutil.which("redis-server") is None or shutil.which("redis-cli") is None:
        skip_or_fail("redis-server or redis-cli not found (needed for a Redis Cluster)")
    with tempfile.TemporaryDirectory(prefix="cloison-redis-cluster-") as workdir:
        ports: set[int] = set()
        while len(ports) < 2 * primaries:  # a client port and a cluster bus port each
            ports.add(free_port())
        ordered = sorted(ports)
        cluster = LocalRedisCluster(
            [
                ClusterNode(port, bus_port, Path(workdir))
                for port, bus_port in zip(ordered[::2], ordered[1::2], strict=True)
            ]
        )
        try:
            for node in cluster.nodes:
                await node.start()
            await cluster.create()
            yield cluster
        finally:
            await cluster.aclose()
