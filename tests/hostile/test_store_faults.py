"""The store under load: killed, locked, slowed and out of disk, on SQLite and PostgreSQL.

SQLite runs one gateway with its embedded file; PostgreSQL runs a cluster of the test's own
(its processes get killed) or a schema of its own on the shared server (for locks and slow
commits, which touch only that schema). After every fault, writes retried with the same
``message_id`` settle to one offset each: ``duplicate: true`` for those the store had kept.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg
import httpx
import pytest

from protocol import Ack, Publish
from tests.conftest import skip_or_fail
from tests.hostile.conftest import LONG, scale
from tests.hostile.driver import Wire, WriteLoad, Writer
from tests.hostile.history import History, Outcome
from tests.hostile.scenario import Cast, assert_clean, cast, gateways, restart, run
from tests.services import POSTGRES_URL, PostgresCluster, own_postgres, own_redis, postgres_schema
from tests.support import ServerProcess, eventually

pytestmark = [pytest.mark.slow]

PACE_S = 0.0 if LONG else 0.01  # per writer task: the bounded load spans the faults
LOCK_S = 2.0  # shorter than the stores' waits (SQLite busy_timeout 5 s, asyncpg 5 s)
LONG_LOCK_S = 7.0  # longer than those waits: writes must fail honestly, then recover


async def assert_retries_are_duplicates(
    node: ServerProcess, crew: Cast, history: History, sample: int = 300
) -> int:
    """Write acked message ids again: each answers ``duplicate: true`` at its first offset."""
    acked = [a for a in history.attempts.values() if a.outcome is Outcome.OK]
    chosen = acked[:: max(1, len(acked) // sample)]
    wire = await Wire.open(node.ws_url, crew.owner.token)
    try:
        for attempt in chosen:
            reply = await wire.request(
                lambda ref, message_id=attempt.message_id: Publish(
                    sphere_id=crew.sphere_id, message_id=message_id, body="again", ref=ref
                )
            )
            assert isinstance(reply, Ack), reply
            assert (reply.duplicate, reply.offset) == (True, attempt.offset), attempt
    finally:
        await wire.aclose()
    return len(chosen)


# -- SQLite ----------------------------------------------------------------------------------


async def test_sqlite_kill_9_under_load_then_retried_ids_are_duplicates(tmp_path: Path) -> None:
    count = scale(3000, 100_000)
    async with gateways(tmp_path, 1) as nodes:
        crew = await cast(nodes)
        history = History("sqlite-kill-9")
        killed_at: list[int] = []

        async def fault(writer: Writer) -> None:
            await writer.wait_acked(count // 3)
            nodes[0].stop(signal.SIGKILL)
            killed_at.append(writer.acked)
            await asyncio.to_thread(restart, nodes[0])

        verdict = await run(
            history.name,
            crew,
            WriteLoad(count, concurrency=16, retries=20, pace_s=PACE_S),
            fault,
            history=history,
            timeout_s=scale(120, 900),
        )
        assert_clean(verdict)
        assert killed_at[0] < count, "the load ended before the kill"
        assert verdict.settled_ok == count
        assert await assert_retries_are_duplicates(nodes[0], crew, history) > 0


HOLD_SQLITE_LOCK = """
import sqlite3, sys, time
db = sqlite3.connect(sys.argv[1], timeout=30, isolation_level=None)
db.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
db.execute("COMMIT")
"""


async def hold_sqlite_lock(path: Path, seconds: float) -> None:
    """Another process takes SQLite's write lock (BEGIN IMMEDIATE) for ``seconds``."""
    holder = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        HOLD_SQLITE_LOCK,
        str(path),
        str(seconds),
        stdout=asyncio.subprocess.PIPE,
    )
    assert holder.stdout is not None
    try:
        async with asyncio.timeout(30):
            assert await holder.stdout.readline() == b"locked\n"
            assert await holder.wait() == 0
    finally:
        if holder.returncode is None:
            holder.kill()
            await holder.wait()


@pytest.mark.parametrize("seconds", [LOCK_S, LONG_LOCK_S], ids=["short", "long"])
async def test_sqlite_write_lock_held_by_another_process(tmp_path: Path, seconds: float) -> None:
    """A short lock delays writes; a lock past busy_timeout fails them with a definite error
    (never stored) until it is released, and retries then succeed."""
    count = scale(1500, 30_000)
    async with gateways(tmp_path, 1) as nodes:
        crew = await cast(nodes)

        async def fault(writer: Writer) -> None:
            await writer.wait_acked(count // 4)
            await hold_sqlite_lock(nodes[0].data_dir / "cloison.sqlite3", seconds)

        verdict = await run(
            f"sqlite-locked-{seconds:g}s",
            crew,
            WriteLoad(count, concurrency=8, retries=30, pace_s=PACE_S),
            fault,
            timeout_s=scale(120, 900),
        )
        assert_clean(verdict)
        assert verdict.settled_ok == count


@asynccontextmanager
async def small_tmpfs(root: Path, size_mb: int) -> AsyncIterator[Path]:
    """A tmpfs of ``size_mb`` at ``root`` (needs root); unmounted afterwards."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        skip_or_fail("disk-full test needs root and mount(8) for a small tmpfs")
    await asyncio.to_thread(root.mkdir, parents=True)
    mounted = await asyncio.to_thread(
        subprocess.run,
        ["mount", "-t", "tmpfs", "-o", f"size={size_mb}m", "tmpfs", str(root)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        skip_or_fail(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield root
    finally:
        await asyncio.to_thread(subprocess.run, ["umount", "-l", str(root)], check=False)


async def grow_tmpfs(root: Path, size_mb: int) -> None:
    await asyncio.to_thread(
        subprocess.run, ["mount", "-o", f"remount,size={size_mb}m", str(root)], check=True
    )


async def test_sqlite_disk_full_fails_writes_honestly_then_recovers(tmp_path: Path) -> None:
    """The data directory on a 6 MB tmpfs fills up under 8 KB writes: writes fail (never
    stored, never acked), the server stays up, and once space is freed, retries succeed."""
    count = scale(1200, 10_000)
    async with small_tmpfs(tmp_path / "disk", 6) as disk, gateways(disk, 1) as nodes:
        crew = await cast(nodes)
        failures_seen: list[int] = []

        async def fault(writer: Writer) -> None:
            async with asyncio.timeout(120):
                while not writer.history.tries[Outcome.FAILED]:  # noqa: ASYNC110 - no event for it
                    await asyncio.sleep(0.05)
            failures_seen.append(writer.acked)
            await asyncio.sleep(1.0)  # writes keep failing while the disk stays full
            await grow_tmpfs(disk, 256)

        history = History("sqlite-disk-full")
        verdict = await run(
            history.name,
            crew,
            WriteLoad(count, concurrency=4, retries=50, pace_s=PACE_S, body_bytes=8000),
            fault,
            history=history,
            timeout_s=scale(120, 900),
        )
        assert failures_seen, "the disk never filled: nothing was tested"
        assert_clean(verdict)
        assert verdict.settled_ok == count
        assert nodes[0].proc is not None and nodes[0].proc.poll() is None


# -- PostgreSQL ------------------------------------------------------------------------------


async def client_backends(dsn: str) -> list[int]:
    db = await asyncpg.connect(dsn)
    try:
        rows = await db.fetch(
            "SELECT pid FROM pg_stat_activity WHERE backend_type = 'client backend'"
            " AND pid <> pg_backend_pid()"
        )
    finally:
        await db.close()
    return [int(row["pid"]) for row in rows]


@pytest.mark.postgres
@pytest.mark.parametrize("target", ["terminate", "backend", "postmaster"])
async def test_postgres_kill_9_under_load(tmp_path: Path, target: str) -> None:
    """pg_terminate_backend every connection of the gateway; kill -9 one backend serving it
    (PostgreSQL then resets every backend); or kill -9 the postmaster itself (then restarted):
    writes in flight are failed or unknown, retries land once each, nothing acked is lost."""
    count = scale(1500, 50_000)
    async with (
        own_postgres() as pg,
        gateways(tmp_path, 1, store_url=f"{pg.dsn}?schema=cloison") as nodes,
    ):
        crew = await cast(nodes)
        history = History(f"postgres-kill-9-{target}")

        async def fault(writer: Writer) -> None:
            await writer.wait_acked(count // 3)
            if target == "backend":
                pids = await client_backends(pg.dsn)
                assert pids
                os.kill(pids[0], signal.SIGKILL)
            else:
                await kill_postmaster(pg)
                await asyncio.sleep(1.0)
                await pg.start()

        verdict = await run(
            history.name,
            crew,
            WriteLoad(count, concurrency=8, retries=40, pace_s=PACE_S),
            fault,
            history=history,
            timeout_s=scale(180, 900),
        )
        assert_clean(verdict)
        assert verdict.settled_ok == count
        assert await assert_retries_are_duplicates(nodes[0], crew, history) > 0


async def kill_postmaster(pg: PostgresCluster) -> None:
    """SIGKILL the postmaster and its children, then wait for them to be gone."""
    pid_file = pg.root / "data" / "postmaster.pid"
    postmaster = int(pid_file.read_text().split()[0])
    pg.signal(signal.SIGKILL)
    async with asyncio.timeout(30):
        while Path(f"/proc/{postmaster}").exists():  # noqa: ASYNC110, ASYNC240 - another process
            await asyncio.sleep(0.05)


@pytest.mark.postgres
@pytest.mark.parametrize(
    ("how", "seconds"),
    [("lock-table", LOCK_S), ("lock-table", LONG_LOCK_S), ("slow-trigger", LOCK_S)],
    ids=["lock-short", "lock-long", "slow-trigger"],
)
async def test_postgres_locked_or_slow_commits(tmp_path: Path, how: str, seconds: float) -> None:
    """LOCK TABLE events (shorter, then longer than the store's command timeout), or a trigger
    that makes each insert statement sleep: writes wait or fail honestly, retries succeed."""
    count = scale(1500, 30_000)
    async with (
        postgres_schema() as schema,
        gateways(tmp_path, 1, store_url=f"{POSTGRES_URL}?schema={schema}") as nodes,
    ):
        crew = await cast(nodes)

        async def fault(writer: Writer) -> None:
            await writer.wait_acked(count // 4)
            db = await asyncpg.connect(POSTGRES_URL)
            try:
                if how == "lock-table":
                    async with db.transaction():
                        await db.execute(f"LOCK TABLE {schema}.events IN EXCLUSIVE MODE")
                        await asyncio.sleep(seconds)
                else:
                    await db.execute(SLOW_TRIGGER.format(schema=schema))
                    await asyncio.sleep(seconds)
                    await db.execute(f"DROP TRIGGER slow_insert ON {schema}.events")
            finally:
                await db.close()

        verdict = await run(
            f"postgres-{how}-{seconds:g}s",
            crew,
            WriteLoad(count, concurrency=8, retries=30, pace_s=PACE_S),
            fault,
            timeout_s=scale(120, 900),
        )
        assert_clean(verdict)
        assert verdict.settled_ok == count


SLOW_TRIGGER = """
CREATE FUNCTION {schema}.slow_insert() RETURNS trigger LANGUAGE plpgsql AS
$$ BEGIN PERFORM pg_sleep(0.3); RETURN NULL; END $$;
CREATE TRIGGER slow_insert AFTER INSERT ON {schema}.events
    FOR EACH STATEMENT EXECUTE FUNCTION {schema}.slow_insert();
"""


async def broker_back(node: ServerProcess) -> bool:
    async with httpx.AsyncClient(base_url=node.http_url, timeout=5) as http:
        return bool((await http.get("/readyz")).json()["broker"])


@pytest.mark.postgres
@pytest.mark.redis
async def test_catch_up_during_a_database_outage_is_retried(tmp_path: Path) -> None:
    """Redis comes back while PostgreSQL is down: the gateway's catch-up from the store fails
    at first and must be retried once the store is back, so the reader loses nothing even
    though no later write arrives to reveal the gap."""
    count = scale(1200, 20_000)
    async with (
        own_redis() as redis,
        own_postgres() as pg,
        gateways(tmp_path, 2, store_url=f"{pg.dsn}?schema=cloison", redis_url=redis.url) as nodes,
    ):
        crew = await cast(nodes)

        async def fault(writer: Writer) -> None:
            await writer.wait_acked(count // 2)
            await redis.kill()  # live delivery to the second gateway stops
            await writer.wait_acked(count)  # the rest is acked through the store meanwhile
            await pg.kill()
            await redis.start()
            await eventually(lambda: broker_back(nodes[1]), 30)
            await asyncio.sleep(1.0)  # the reset's catch-up has met a store that is down
            await pg.start()  # no write follows: only a retried catch-up brings the rest

        verdict = await run(
            "catch-up-during-db-outage",
            crew,
            WriteLoad(count, concurrency=8, retries=60, pace_s=PACE_S),
            fault,
            reader_homes=(1,),
            writer_urls=[crew.urls[:1]],
            timeout_s=scale(180, 900),
        )
        assert_clean(verdict)
        assert verdict.settled_ok == count
