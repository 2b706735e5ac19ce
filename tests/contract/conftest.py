"""Fixtures of the storage contract suite: one ``backend`` per storage engine.

Each test of ``test_store.py`` runs once per backend and reaches it through the ``Store``
interface only. The few things the interface cannot do (read the schema version, plant a
fault) go through the ``Backend`` helper of each engine, so a new engine (``postgres``, behind
its marker) joins the suite by adding one class and one parameter.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Protocol

import aiosqlite
import pytest

from storage import Store
from storage.sqlite import SqliteStore

# Generous: a test's awaits finish in milliseconds; a hang must fail, not stall the suite.
TIMEOUT_S = 10.0


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


# PostgreSQL will join as pytest.param("postgres", marks=pytest.mark.postgres).
@pytest.fixture(params=["sqlite"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    if request.param == "sqlite":
        return SqliteBackend(tmp_path / "store.sqlite3")
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
