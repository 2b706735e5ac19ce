"""The stores' erasure machinery, below the server: the ``scrub`` hook that batch jobs call
after erasing, and PostgreSQL's compaction with its bounds (a held lock, a stall too long,
another process compacting)."""

from __future__ import annotations

import asyncio
import secrets
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from protocol import EventKind, MessageId, Privacy, UserKind
from storage import Draft, StoreError
from storage.postgres import PostgresStore
from storage.sqlite import SqliteStore
from tests.raw_files import assert_absent_sqlite, assert_present_sqlite
from tests.services import POSTGRES_URL, TIMEOUT_S, postgres_schema

NOW_MS = 1_700_000_000_000


async def test_scrub_takes_an_erasing_batch_out_of_the_sqlite_files(tmp_path: Path) -> None:
    """A job erases with its own statements (here: another connection, as the admin CLI
    would), then calls ``scrub``: the old page images leave the write-ahead log."""
    store = await SqliteStore.open(tmp_path / "cloison.sqlite3")
    try:
        user = await store.create_user("a", UserKind.HUMAN, is_admin=False, now_ms=NOW_MS)
        sphere = await store.create_sphere("s", Privacy.PRIVATE, user.user_id, now_ms=NOW_MS)
        canary = secrets.token_hex(16)
        draft = Draft(EventKind.POST, MessageId("m"), user.user_id, NOW_MS, canary)
        await store.append(sphere.sphere_id, draft)
        job = sqlite3.connect(tmp_path / "cloison.sqlite3", isolation_level=None)
        try:
            job.execute("PRAGMA secure_delete = ON")
            job.execute("UPDATE events SET body = NULL WHERE body = ?", (canary,))
        finally:
            job.close()
        assert_present_sqlite(tmp_path, canary.encode())  # the log's older frames
        scrubs = store.erasure_stats.scrubs
        await store.scrub()
        assert_absent_sqlite(tmp_path, canary.encode())
        assert store.erasure_stats.scrubs == scrubs + 1
        await store.append(
            sphere.sphere_id, Draft(EventKind.POST, MessageId("n"), user.user_id, NOW_MS, "x")
        )
        report = await store.compact()  # SQLite: a scrub, no table to rewrite
        [log] = report.tables
        assert (log.table, log.skipped, log.bytes_after) == ("write-ahead log", "", 0)
        assert log.bytes_before > 0 and report.complete

        # Readers that pin the log: the compaction says so (the command exits 1).
        reader = sqlite3.connect(tmp_path / "cloison.sqlite3", isolation_level=None)
        try:
            reader.execute("BEGIN")
            reader.execute("SELECT count(*) FROM events").fetchone()
            await store.append(
                sphere.sphere_id, Draft(EventKind.POST, MessageId("o"), user.user_id, NOW_MS, "y")
            )
            pinned = await store.compact()
            assert [t.skipped for t in pinned.tables] == ["readers"] and not pinned.complete
        finally:
            reader.close()
    finally:
        await store.aclose()


@pytest.fixture
async def filled() -> AsyncIterator[tuple[PostgresStore, str]]:
    """A PostgreSQL store with 5,000 posts, in a schema of its own."""
    async with postgres_schema() as schema:
        store = await PostgresStore.open(POSTGRES_URL, schema=schema)
        try:
            user = await store.create_user("a", UserKind.HUMAN, is_admin=False, now_ms=NOW_MS)
            sphere = await store.create_sphere("s", Privacy.PRIVATE, user.user_id, now_ms=NOW_MS)
            await asyncio.gather(
                *(
                    store.append(
                        sphere.sphere_id,
                        Draft(EventKind.POST, MessageId(f"m{n}"), user.user_id, NOW_MS, "x" * 80),
                    )
                    for n in range(5000)
                )
            )
            yield store, schema
        finally:
            await store.aclose()


@pytest.mark.postgres
async def test_compaction_rewrites_every_table_within_its_bounds(
    filled: tuple[PostgresStore, str],
) -> None:
    store, schema = filled
    report = await store.compact()
    assert report.complete
    tables = {t.table: t for t in report.tables}
    assert {"events", "spheres", "users", "reports", "sphere_audit"} <= tables.keys()
    assert tables["events"].bytes_after > 0
    assert store.erasure_stats.compactions == 1

    # A rewrite longer than the bound is cancelled: the table is skipped, not half done.
    bounded = await store.compact(max_stall_s=0.005)
    assert {t.table: t.skipped for t in bounded.tables}["events"] == "too long"
    assert not bounded.complete and store.erasure_stats.compactions == 1
    assert store.erasure_stats.skipped_tables >= 1

    # A table whose lock another session holds is skipped after the lock timeout (2 s).
    db = await asyncpg.connect(POSTGRES_URL, timeout=TIMEOUT_S)
    try:
        async with db.transaction():
            await db.execute(f"LOCK TABLE {schema}.reports IN ACCESS SHARE MODE")
            locked = await store.compact()
        assert {t.table: t.skipped for t in locked.tables}["reports"] == "locked"
        assert [t.table for t in locked.tables if t.skipped] == ["reports"]
        assert store.erasure_stats.skipped_tables == 1

        # One compaction at a time per store: another process's is refused at once.
        key = f"cloison.compaction.{schema}"
        await db.execute("SELECT pg_advisory_lock(hashtextextended($1, 0))", key)
        with pytest.raises(StoreError, match="running elsewhere"):
            await store.compact()
    finally:
        await db.close(timeout=TIMEOUT_S)
