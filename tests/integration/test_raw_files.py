"""The raw-file checks of ``tests.raw_files`` find a canary that is there, in every kind of
file they read, and stop finding it once the bytes are gone; so their absence answers mean
something."""

from __future__ import annotations

import secrets
import sqlite3
from pathlib import Path

import asyncpg
import pytest

from tests.raw_files import (
    assert_absent_postgres,
    assert_absent_sqlite,
    assert_absent_text,
    assert_present_postgres,
    assert_present_sqlite,
    postgres_files,
    postgres_holding,
    sqlite_holding,
)
from tests.services import CLUSTER_TIMEOUT_S, TIMEOUT_S, own_postgres

pytestmark = pytest.mark.postgres


def test_sqlite_canary_found_in_the_wal_then_gone(tmp_path: Path) -> None:
    canary = secrets.token_hex(16).encode()
    db = sqlite3.connect(tmp_path / "cloison.sqlite3", isolation_level=None)
    try:
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, body TEXT)")
        db.execute("INSERT INTO t (body) VALUES (?)", (canary.decode(),))
        assert [p.name for p in sqlite_holding(tmp_path, canary)] == ["cloison.sqlite3-wal"]
        # Without secure_delete and a checkpoint, an erased row lingers in the files.
        db.execute("UPDATE t SET body = NULL")
        assert_present_sqlite(tmp_path, canary)
        db.execute("PRAGMA secure_delete = ON")
        db.execute("INSERT INTO t (body) VALUES (?)", (canary.decode(),))
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        assert [p.name for p in sqlite_holding(tmp_path, canary)] == ["cloison.sqlite3"]
        db.execute("DELETE FROM t")
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        assert_absent_sqlite(tmp_path, canary)
    finally:
        db.close()
    with pytest.raises(AssertionError, match="no SQLite database"):
        assert_absent_sqlite(tmp_path / "elsewhere", canary)


def test_text_check_finds_a_logged_canary(tmp_path: Path) -> None:
    canary = secrets.token_hex(16).encode()
    lines = ["INFO started\n", f"DEBUG body={canary.decode()}\n"]
    with pytest.raises(AssertionError):
        assert_absent_text(lines, canary)
    assert_absent_text(lines[:1], canary)
    log = tmp_path / "server.log"
    log.write_text("".join(lines))
    with pytest.raises(AssertionError):
        assert_absent_text(log, canary)


async def test_postgres_canary_in_table_index_and_toast_until_rewritten() -> None:
    short = secrets.token_hex(16).encode()
    toasted = secrets.token_hex(16).encode()
    # 8 kB of random hex: stored out of line (TOAST), uncompressed, in chunks of ~2 kB.
    long = toasted + secrets.token_hex(4096).encode()
    async with own_postgres() as pg:
        db = await asyncpg.connect(pg.dsn, timeout=CLUSTER_TIMEOUT_S)
        try:
            await db.execute(
                "CREATE SCHEMA raw; CREATE TABLE raw.t (key TEXT PRIMARY KEY, body TEXT);"
                "CREATE TABLE raw.other (body TEXT)",
                timeout=TIMEOUT_S,
            )
            await db.execute(
                "INSERT INTO raw.t VALUES ($1, 'k'), ('long', $2)", short.decode(), long.decode()
            )
            files = await postgres_files(pg.dsn, "raw", ["t"])
            kinds = {p.parent.name for p in files}
            assert len(kinds) == 1 and kinds != {"global"}  # the database's own directory
            # The table, its primary key index, its TOAST table and TOAST index.
            assert len({p.name.split("_")[0] for p in files}) == 4, files
            inline = await postgres_holding(pg.dsn, "raw", short, ["t"])
            assert len(inline) == 2, inline  # the heap and the primary key's index
            toast = await postgres_holding(pg.dsn, "raw", toasted, ["t"])
            assert len(toast) == 1 and toast[0] not in inline, toast  # the TOAST table
            await assert_absent_postgres(pg.dsn, "raw", short, ["other"])

            # A delete leaves dead tuples (and index entries) in the files; a rewrite does not.
            await db.execute("DELETE FROM raw.t", timeout=TIMEOUT_S)
            await assert_present_postgres(pg.dsn, "raw", short)
            await assert_present_postgres(pg.dsn, "raw", toasted)
            await db.execute("VACUUM FULL raw.t", timeout=CLUSTER_TIMEOUT_S)
            await assert_absent_postgres(pg.dsn, "raw", short)
            await assert_absent_postgres(pg.dsn, "raw", toasted)
        finally:
            await db.close(timeout=TIMEOUT_S)
