"""The scale benchmark's reads use indexes, on both engines (``storage.org_bench``): seeded
small (200 organisations, 4,000 users), every statement that the sign-in, directory, sphere
listing and membership calls run is explained, and none reads a large table whole. No timing
is asserted here; the figures at size are in docs/benchmarks.md."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import asyncpg
import pytest

from storage.org_bench import (
    CALLS,
    populate,
    postgres_scans,
    record_statements,
    seed_postgres,
    seed_sqlite,
    sqlite_scans,
)
from storage.postgres import PostgresStore
from storage.sqlite import SqliteStore
from tests.services import POSTGRES_URL, postgres_schema

ORGS, USERS = 200, 4000


async def test_sqlite_reads_use_indexes(tmp_path: Path) -> None:
    path = tmp_path / "bench.sqlite3"
    await (await SqliteStore.open(path)).aclose()
    pop = populate(ORGS, USERS, seed=1, one_org="default")
    seed_sqlite(path, pop)
    store = await SqliteStore.open(path)
    try:
        statements = record_statements(store)
        for who in (pop.people[0], pop.people[-1]):
            for call in CALLS.values():
                await call(store, who)
    finally:
        await store.aclose()
    assert len(statements) >= len(CALLS)
    assert sqlite_scans(path, statements) == []
    # The check can fail: without the index user_orgs starts from, it reads org_members whole.
    db = sqlite3.connect(path)
    db.execute("DROP INDEX org_members_by_user")
    db.close()
    assert any("org_members" in line or "SCAN m" in line for line in sqlite_scans(path, statements))


@pytest.mark.postgres
async def test_postgres_reads_use_indexes() -> None:
    async with postgres_schema() as schema:
        await (await PostgresStore.open(POSTGRES_URL, schema=schema)).aclose()
        pop = populate(ORGS, USERS, seed=1)
        await seed_postgres(POSTGRES_URL, schema, pop)
        store = await PostgresStore.open(POSTGRES_URL, schema=schema)
        try:
            statements = record_statements(store)
            for who in (pop.people[0], pop.people[-1]):
                for call in CALLS.values():
                    await call(store, who)
            dialect = store._dialect
        finally:
            await store.aclose()
        assert len(statements) >= len(CALLS)
        assert await postgres_scans(POSTGRES_URL, schema, statements, dialect) == []
        db = await asyncpg.connect(POSTGRES_URL)
        try:
            await db.execute(f"DROP INDEX {schema}.org_members_by_user")
        finally:
            await db.close()
        scans = await postgres_scans(POSTGRES_URL, schema, statements, dialect)
        assert any("organisations" in line or "org_members" in line for line in scans), scans


def test_the_population_has_the_skew_it_claims() -> None:
    pop = populate(ORGS, USERS, seed=1)
    sizes: dict[str, int] = {}
    for org_id, *_ in pop.org_members:
        sizes[org_id] = sizes.get(org_id, 0) + 1
    assert len(pop.users) == USERS and len(pop.orgs) == ORGS
    ordered = sorted(sizes.values())
    assert ordered[len(ordered) // 2] <= 50 and ordered[-1] >= 300  # most small, one large
    assert len(pop.org_members) > USERS  # some belong to two
