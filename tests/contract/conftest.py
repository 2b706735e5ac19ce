"""Fixtures of the storage contract suite: one ``backend`` per storage engine.

Each test of ``test_store.py`` runs once per backend and reaches it through the ``Store``
interface only. The few things the interface cannot do (read the schema version, plant a
fault) go through the ``Backend`` helper of each engine, so a new engine joins the suite by
adding one class and one parameter.

PostgreSQL tests use the server at ``CLOISON_TEST_POSTGRES_URL`` (default: the local one, trust
authentication), each in a fresh schema of its own that is dropped afterwards.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Protocol

import aiosqlite
import asyncpg
import pytest

from storage import Store
from storage.postgres import PostgresStore
from storage.sqlite import SqliteStore
from tests.services import POSTGRES_URL, TIMEOUT_S, postgres_schema


class Backend(Protocol):
    """One storage engine, with a database of its own for the running test."""

    async def open(self) -> Store:
        """Open (creating or migrating) the test's database; the caller closes the store."""
        ...

    async def schema_versions(self) -> list[int]:
        """The migration versions recorded in the database, ascending."""
        ...

    async def record_schema_version(self, version: int) -> None:
        """Record ``version`` as applied, as a newer Cloison would have done."""
        ...

    async def fail_posts_with_body(self, body: str) -> None:
        """Make the database itself refuse to store a post with this body."""
        ...


class SqliteBackend:
    def __init__(self, path: Path) -> None:
        self.path = path

    async def open(self) -> Store:
        return await SqliteStore.open(self.path)

    async def schema_versions(self) -> list[int]:
        async with aiosqlite.connect(self.path) as db:
            rows = await db.execute_fetchall("SELECT version FROM schema_version ORDER BY 1")
        return [row[0] for row in rows]

    async def record_schema_version(self, version: int) -> None:
        async with aiosqlite.connect(self.path) as db:
            await db.execute(
                "INSERT INTO schema_version (version, name, applied_ms) VALUES (?, 'future', 0)",
                (version,),
            )
            await db.commit()

    async def fail_posts_with_body(self, body: str) -> None:
        # A trigger, not a mock: the failure comes from SQLite, inside the group's transaction.
        literal = "'" + body.replace("'", "''") + "'"  # DDL takes no bound parameters
        async with aiosqlite.connect(self.path) as db:
            await db.execute(
                f"""
                CREATE TRIGGER refuse_posts BEFORE INSERT ON events WHEN NEW.body = {literal}
                BEGIN SELECT RAISE(ABORT, 'refused by the test'); END
                """
            )
            await db.commit()


class PostgresBackend:
    def __init__(self, dsn: str, schema: str) -> None:
        self.dsn = dsn
        self.schema = schema

    async def open(self) -> Store:
        return await PostgresStore.open(self.dsn, schema=self.schema, max_size=4)

    async def schema_versions(self) -> list[int]:
        async with _connect(self.dsn) as db:
            rows = await db.fetch(f"SELECT version FROM {self.schema}.schema_version ORDER BY 1")
        return [row[0] for row in rows]

    async def record_schema_version(self, version: int) -> None:
        async with _connect(self.dsn) as db:
            await db.execute(
                f"INSERT INTO {self.schema}.schema_version (version, name, applied_ms)"
                " VALUES ($1, 'future', 0)",
                version,
            )

    async def fail_posts_with_body(self, body: str) -> None:
        # A trigger, not a mock: the failure comes from PostgreSQL, inside the group's transaction.
        literal = "'" + body.replace("'", "''") + "'"  # DDL takes no bound parameters
        async with _connect(self.dsn) as db:
            await db.execute(
                f"""
                CREATE FUNCTION {self.schema}.refuse_posts() RETURNS trigger
                LANGUAGE plpgsql AS $$
                BEGIN
                    IF NEW.body = {literal} THEN RAISE EXCEPTION 'refused by the test'; END IF;
                    RETURN NEW;
                END $$;
                CREATE TRIGGER refuse_posts BEFORE INSERT ON {self.schema}.events
                    FOR EACH ROW EXECUTE FUNCTION {self.schema}.refuse_posts();
                """
            )


@asynccontextmanager
async def _connect(dsn: str) -> AsyncIterator[asyncpg.Connection]:
    async with asyncio.timeout(TIMEOUT_S):
        db = await asyncpg.connect(dsn)
    try:
        yield db
    finally:
        async with asyncio.timeout(TIMEOUT_S):
            await db.close()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    if request.param == "sqlite":
        yield SqliteBackend(tmp_path / "store.sqlite3")
    elif request.param == "postgres":
        async with postgres_schema(POSTGRES_URL) as schema:
            yield PostgresBackend(POSTGRES_URL, schema)
    else:
        raise AssertionError(f"unknown backend {request.param}")


@pytest.fixture
async def store(backend: Backend) -> AsyncIterator[Store]:
    async with asyncio.timeout(TIMEOUT_S):
        opened = await backend.open()
    try:
        yield opened
    finally:
        async with asyncio.timeout(TIMEOUT_S):
            await opened.aclose()
