"""A hung Redis does not throttle writes: a gateway under steady load while Redis is stopped.

SIGSTOP keeps Redis's sockets open and silent, the hardest case: nothing fails, every call
just waits. The gateway must keep acknowledging writes at close to its healthy rate (the
shared rate limit and presence fall back to local state after one timeout), report the
broker unhealthy, and log the outage once rather than once per write.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import signal
import statistics
import time
from pathlib import Path

import httpx
import pytest

from protocol import Ack, Publish, Subscribe
from tests.e2e.conftest import FAST
from tests.services import own_redis
from tests.support import Client, ServerProcess, pair

pytestmark = [pytest.mark.redis, pytest.mark.slow]

WRITERS = 4
HEALTHY_S = 3.0
STOPPED_S = 6.0
# Honest margins for a loaded 2-core machine: the bar is "not throttled", not "unaffected".
MIN_RATE_RATIO = 0.5
MAX_P99_S = 1.5


def p99(latencies: list[float]) -> float:
    return statistics.quantiles(latencies, n=100)[98]


async def test_a_stopped_redis_does_not_throttle_writes(tmp_path: Path) -> None:
    async with own_redis() as redis:
        prefix = f"cloison-test-{secrets.token_hex(4)}:"
        node = ServerProcess(
            tmp_path / "data",
            extra_args=[*FAST, "--redis-url", redis.url, "--redis-prefix", prefix],
        )
        node.data_dir.mkdir()
        node.create_admin()
        node.start()
        try:
            owner, reader_user, sphere_id = await pair(node)
            reader = await Client.connect(node.ws_url, reader_user.token)
            await reader.request(Subscribe(sphere_id=sphere_id, ref="s"))
            writers = [await Client.connect(node.ws_url, owner.token) for _ in range(WRITERS)]
            acks: list[tuple[float, float]] = []  # (acked at, latency)
            going = True

            async def write(client: Client, tag: int) -> None:
                n = 0
                while going:
                    n += 1
                    started = time.monotonic()
                    reply = await client.request(
                        Publish(sphere_id=sphere_id, message_id=f"{tag}-{n}", body="x", ref=str(n))
                    )
                    assert isinstance(reply, Ack), reply
                    now = time.monotonic()
                    acks.append((now, now - started))

            async def drain_reader() -> None:
                with contextlib.suppress(TimeoutError):
                    while True:
                        await reader.recv(timeout_s=30)

            broker_states: list[bool] = []

            async def watch_readiness(http: httpx.AsyncClient) -> None:
                while True:
                    broker_states.append((await http.get("/readyz")).json()["broker"])
                    await asyncio.sleep(0.25)

            assert redis.process is not None
            async with httpx.AsyncClient(base_url=node.http_url, timeout=5) as http:
                tasks = [asyncio.create_task(write(w, i)) for i, w in enumerate(writers)]
                drainer = asyncio.create_task(drain_reader())
                await asyncio.sleep(HEALTHY_S)
                stopped_at = time.monotonic()
                redis.process.send_signal(signal.SIGSTOP)
                watcher = asyncio.create_task(watch_readiness(http))
                try:
                    await asyncio.sleep(STOPPED_S)
                finally:
                    redis.process.send_signal(signal.SIGCONT)
                resumed_at = time.monotonic()
                watcher.cancel()
                going = False
                async with asyncio.timeout(30):
                    await asyncio.gather(*tasks)
                drainer.cancel()
                await asyncio.gather(watcher, drainer, return_exceptions=True)
        finally:
            node.stop()

    healthy = [lat for at, lat in acks if stopped_at - HEALTHY_S + 0.5 <= at < stopped_at]
    stopped = [lat for at, lat in acks if stopped_at <= at < resumed_at]
    healthy_rate = len(healthy) / (HEALTHY_S - 0.5)
    stopped_rate = len(stopped) / (resumed_at - stopped_at)
    redis_lines = [
        line
        for line in node.log
        if "Redis" in line and line.startswith(("WARNING", "ERROR", "INFO"))
    ]
    print(  # noqa: T201 - the figures docs/reliability.md quotes (run with -s)
        f"Redis SIGSTOP {STOPPED_S:g} s, {WRITERS} writers: healthy {healthy_rate:.0f} acks/s "
        f"(p99 {p99(healthy) * 1000:.0f} ms), stopped {stopped_rate:.0f} acks/s "
        f"(p99 {p99(stopped) * 1000:.0f} ms, max {max(stopped) * 1000:.0f} ms); "
        f"{len(redis_lines)} Redis log lines for {len(acks)} writes"
    )
    assert stopped_rate >= MIN_RATE_RATIO * healthy_rate
    assert p99(stopped) < MAX_P99_S
    assert False in broker_states  # readiness said so while Redis hung
    # Once per state change (the shared state's guard and the broker, each down and back).
    assert len(redis_lines) <= 4, redis_lines
