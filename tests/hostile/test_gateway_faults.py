"""Gateways under load: killed with clients failing over, paused past Redis's output-buffer
limit, and running on skewed clocks.

All on one PostgreSQL store; the Redis is the test's own wherever the test reconfigures it.
"""

from __future__ import annotations

import asyncio
import shutil
import signal
import time
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from tests.conftest import skip_or_fail
from tests.hostile.conftest import LONG, scale
from tests.hostile.driver import Wire, WriteLoad, Writer, read_stream
from tests.hostile.scenario import assert_clean, cast, gateways, run
from tests.services import POSTGRES_URL, own_redis, postgres_schema, require_shared_redis

pytestmark = [pytest.mark.redis, pytest.mark.postgres, pytest.mark.slow]

PACE_S = 0.0 if LONG else 0.02  # per writer task: the bounded load spans the faults


async def test_gateway_kill_9_clients_fail_over_and_resume(tmp_path: Path) -> None:
    """Kill -9 a reader's gateway, then the writer's: both fail over to the third and resume.
    Writes in flight at the kill are unknown; the writer retries them with the same id."""
    require_shared_redis()
    count = scale(1500, 50_000)
    async with (
        postgres_schema() as schema,
        gateways(
            tmp_path,
            3,
            store_url=f"{POSTGRES_URL}?schema={schema}",
            redis_url="redis://127.0.0.1:6379/0",
        ) as nodes,
    ):
        crew = await cast(nodes)
        killed_at: list[int] = []

        async def fault(writer: Writer) -> None:
            await writer.wait_acked(count // 4)
            nodes[1].stop(signal.SIGKILL)  # reader0's gateway
            killed_at.append(writer.acked)
            await writer.wait_acked(count // 2)
            nodes[0].stop(signal.SIGKILL)  # the writer's gateway, writes in flight
            killed_at.append(writer.acked)

        verdict = await run(
            "gateway-kill-9",
            crew,
            WriteLoad(count, concurrency=8, retries=5, pace_s=PACE_S),
            fault,
            reader_homes=(1, 2),
            history_url=crew.urls[2],
            timeout_s=scale(120, 900),
        )
        assert_clean(verdict)
        assert killed_at[1] < count, "the load ended before the writer's gateway was killed"
        assert verdict.settled_ok == count  # every write was retried to an answer


async def test_paused_gateway_cut_off_by_redis_repairs_from_the_store(tmp_path: Path) -> None:
    """SIGSTOP a gateway while the others publish past Redis's pub/sub output-buffer limit:
    Redis closes the paused node's subscriber connection. Once continued, that node must
    reconnect and repair its reader from the store."""
    count = scale(1200, 20_000)
    async with (
        own_redis() as own,
        postgres_schema() as schema,
        gateways(
            tmp_path, 2, store_url=f"{POSTGRES_URL}?schema={schema}", redis_url=own.url
        ) as nodes,
    ):
        admin = aioredis.from_url(own.url)
        await admin.config_set("client-output-buffer-limit", "pubsub 64kb 32kb 1")
        crew = await cast(nodes)
        before: set[str] = set()
        paused = nodes[1].proc
        assert paused is not None

        async def fault(writer: Writer) -> None:
            await writer.wait_acked(count // 6)
            before.update(await subscriber_ids(admin))
            paused.send_signal(signal.SIGSTOP)
            try:
                # 800 x 16 KB: past what the kernel's socket buffers absorb (a few MB), then
                # past the 64 KiB hard limit of Redis's own buffer for the sleeping node.
                await writer.wait_acked(count // 6 + 800)
                await asyncio.sleep(1.5)  # past the soft limit's 1 s as well
            finally:
                paused.send_signal(signal.SIGCONT)

        verdict = await run(
            "redis-output-buffer-cutoff",
            crew,
            WriteLoad(count, concurrency=4, retries=3, pace_s=PACE_S, body_bytes=16_000),
            fault,
            reader_homes=(1,),
            writer_urls=[crew.urls[:1]],
            timeout_s=scale(120, 900),
        )
        try:
            after = await subscriber_ids(admin)
        finally:
            await admin.aclose()
        # Redis 7.0 has no counter of these cuts: a subscriber connection that went away shows it.
        assert before - after, "Redis never cut the paused subscriber off: nothing was tested"
        assert_clean(verdict)


async def subscriber_ids(admin: aioredis.Redis) -> set[str]:
    """The ids of the connections Redis holds in pub/sub mode."""
    clients = await admin.client_list(_type="pubsub")
    return {str(client["id"]) for client in clients}


FAKETIME_LIBRARY = Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1")
SKEW_S = 2 * 3600  # far beyond any NTP drift: if timestamps ordered anything, it would show


def skewed(offset: str) -> dict[str, str]:
    """Environment that runs a process with its wall clock shifted by ``offset`` (libfaketime);
    monotonic clocks stay true, so timers and timeouts behave."""
    return {
        "LD_PRELOAD": str(FAKETIME_LIBRARY),
        "FAKETIME": offset,
        "FAKETIME_DONT_FAKE_MONOTONIC": "1",
        "FAKETIME_NO_CACHE": "1",
    }


async def test_clock_skew_between_gateways_never_orders_anything(tmp_path: Path) -> None:
    """Two gateways, one two hours ahead and one two hours behind, both taking writes: every
    reader sees one order, the offsets'; timestamps disagree with it and nothing cares."""
    require_shared_redis()
    if not FAKETIME_LIBRARY.is_file() or shutil.which("faketime") is None:  # noqa: ASYNC240
        skip_or_fail("libfaketime missing: apt-get install faketime")
    count = scale(400, 20_000)
    async with (
        postgres_schema() as schema,
        gateways(
            tmp_path,
            2,
            store_url=f"{POSTGRES_URL}?schema={schema}",
            redis_url="redis://127.0.0.1:6379/0",
            envs=[skewed("+2h"), skewed("-2h")],
        ) as nodes,
    ):
        crew = await cast(nodes)
        wall_ms = time.time() * 1000
        clocks = []
        for node in nodes:
            wire = await Wire.open(node.ws_url, crew.owner.token)
            clocks.append(wire.welcome.server_time_ms - wall_ms)
            await wire.aclose()
        assert clocks[0] > 0.9 * SKEW_S * 1000 and clocks[1] < -0.9 * SKEW_S * 1000, clocks

        async def fault(writer: Writer) -> None:
            return  # the skew is the fault

        verdict = await run(
            "clock-skew",
            crew,
            WriteLoad(count, concurrency=4, pace_s=PACE_S),
            fault,
            reader_homes=(0, 1),
            writer_urls=[crew.urls[:1], crew.urls[1:]],
            timeout_s=scale(120, 900),
        )
        assert_clean(verdict)
        assert verdict.settled_ok == 2 * count
        events = await read_stream(crew.urls[0], crew.owner.token, crew.sphere_id)
        stamps = [event.ts_ms for event in events]
        assert stamps != sorted(stamps), "timestamps agreed with offsets: no skew seen"
