"""Redis under load: killed, paused, restarted, and cutting off a slow subscriber.

Three gateways on one PostgreSQL store and one Redis of the test's own. The writer is on the
first gateway, readers on the others, so every delivery crosses Redis pub/sub; when pub/sub
fails, the gateways must repair their readers from the store.
"""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import pytest

from tests.hostile.conftest import LONG, scale
from tests.hostile.driver import WriteLoad, Writer
from tests.hostile.scenario import assert_clean, cast, gateways, run
from tests.services import POSTGRES_URL, own_redis, postgres_schema

pytestmark = [pytest.mark.redis, pytest.mark.postgres, pytest.mark.slow]

OUTAGE_S = 3.0  # long enough for every gateway to notice, short enough for CI
PACE_S = 0.02  # per writer task: about 400 writes/s in all, so the load spans the outage


@pytest.mark.parametrize("how", ["kill-9", "sigstop", "restart"])
async def test_redis_fault_under_load(tmp_path: Path, how: str) -> None:
    count = scale(2000, 100_000)
    async with (
        own_redis() as redis,
        postgres_schema() as schema,
        gateways(
            tmp_path, 3, store_url=f"{POSTGRES_URL}?schema={schema}", redis_url=redis.url
        ) as nodes,
    ):
        crew = await cast(nodes)
        healed_at: list[int] = []  # acks when the fault healed: the load must outlast it

        async def fault(writer: Writer) -> None:
            await writer.wait_acked(count // 4)
            assert redis.process is not None
            if how == "sigstop":
                redis.process.send_signal(signal.SIGSTOP)
                await asyncio.sleep(OUTAGE_S)
                healed_at.append(writer.acked)
                redis.process.send_signal(signal.SIGCONT)
                return
            if how == "kill-9":
                await redis.kill()
            else:
                redis.process.terminate()
                await redis.process.wait()
                redis.process = None
            await asyncio.sleep(OUTAGE_S)
            healed_at.append(writer.acked)
            await redis.start()

        verdict = await run(
            f"redis-{how}",
            crew,
            WriteLoad(count, concurrency=8, retries=5, pace_s=0 if LONG else PACE_S),
            fault,
            timeout_s=scale(120, 900),
            reader_homes=(1, 2),
            writer_urls=[crew.urls[:1]],
        )
        assert_clean(verdict)
        assert verdict.settled_ok > count // 2
        assert healed_at[0] < count, "the load ended before the fault healed"
