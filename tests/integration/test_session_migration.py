"""Migration 0003 on a database made by an older Cloison (schema version 1), on both engines:
bot tokens become ``api`` tokens, the others ``session`` tokens; expiries, revocations and users
are kept; no issuer is invented; the new tables start empty."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import asyncpg
import pytest

from protocol import UserId, UserKind
from storage import Store, TokenKind, TokenRecord, UserRecord
from storage.migrations import load_migrations
from storage.postgres import PostgresStore
from storage.sqlite import SqliteStore
from tests.services import POSTGRES_URL, TIMEOUT_S, postgres_schema

USERS = [("u_ada", "Ada", "human", 1), ("u_bot", "ci", "bot", 0)]
TOKENS = [
    ("t_ada", "u_ada", b"h1", 10, 99_999_999_999_999, 0),
    ("t_old", "u_ada", b"h2", 11, None, 1),
    ("t_bot", "u_bot", b"h3", 12, None, 0),
]


async def check_migrated(store: Store) -> None:
    assert await store.get_user(UserId("u_ada")) == UserRecord(
        UserId("u_ada"), "Ada", UserKind.HUMAN, True, 1
    )
    assert await store.get_token("t_ada") == TokenRecord(
        "t_ada", UserId("u_ada"), b"h1", 10, 99_999_999_999_999, kind=TokenKind.SESSION
    )
    revoked = await store.get_token("t_old")
    assert revoked is not None and revoked.revoked and revoked.issued_by is None
    bot = await store.get_token("t_bot")
    assert bot is not None and bot.kind is TokenKind.API
    assert await store.latest_session_change() == 0
    assert await store.list_audit(before=None, limit=10) == []


def _sqlite_version_1(path: Path) -> None:
    db = sqlite3.connect(path)
    try:
        db.executescript(load_migrations("sqlite")[0].sql)
        db.execute(
            "CREATE TABLE schema_version (version INTEGER PRIMARY KEY, name TEXT NOT NULL,"
            " applied_ms INTEGER NOT NULL)"
        )
        db.execute("INSERT INTO schema_version VALUES (1, 'init', 0)")
        db.executemany(
            "INSERT INTO users (user_id, name, kind, is_admin, created_ms) VALUES (?, ?, ?, ?, 1)",
            USERS,
        )
        db.executemany("INSERT INTO tokens VALUES (?, ?, ?, ?, ?, ?)", TOKENS)
        db.commit()
    finally:
        db.close()


async def test_sqlite_migrates_existing_tokens(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    await asyncio.to_thread(_sqlite_version_1, path)
    async with asyncio.timeout(TIMEOUT_S):
        store = await SqliteStore.open(path)
        try:
            await check_migrated(store)
        finally:
            await store.aclose()


@pytest.mark.postgres
async def test_postgres_migrates_existing_tokens() -> None:
    async with postgres_schema(POSTGRES_URL) as schema:
        async with asyncio.timeout(TIMEOUT_S):
            db = await asyncpg.connect(POSTGRES_URL, server_settings={"search_path": schema})
            try:
                await db.execute(f"CREATE SCHEMA {schema}")
                await db.execute(load_migrations("postgres")[0].sql)
                await db.execute(
                    "CREATE TABLE schema_version (version INTEGER PRIMARY KEY, name TEXT NOT NULL,"
                    " applied_ms BIGINT NOT NULL)"
                )
                await db.execute("INSERT INTO schema_version VALUES (1, 'init', 0)")
                await db.executemany(
                    "INSERT INTO users (user_id, name, kind, is_admin, created_ms)"
                    " VALUES ($1, $2, $3, $4::int::boolean, 1)",
                    USERS,
                )
                await db.executemany(
                    "INSERT INTO tokens VALUES ($1, $2, $3, $4, $5, $6::int::boolean)", TOKENS
                )
            finally:
                await db.close()
            store = await PostgresStore.open(POSTGRES_URL, schema=schema, max_size=2)
            try:
                await check_migrated(store)
            finally:
                await store.aclose()
