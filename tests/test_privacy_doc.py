"""docs/privacy.md lists every table and column the server stores, on both engines.

The schema is read from a database each engine has just built from ``storage/migrations/``,
not from the SQL files, so a column added by any means fails here until the privacy document
says what it holds; and a line for a column that no longer exists fails too.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from storage import open_store
from tests.services import POSTGRES_URL, TIMEOUT_S, postgres_schema

PRIVACY = (Path(__file__).resolve().parent.parent / "docs" / "privacy.md").read_text("utf-8")
_NAME = re.compile(r"`([a-z_]+)`")
_ONLY = re.compile(r"\((SQLite|PostgreSQL) only\)")

Schema = dict[str, set[str]]


def documented(engine: str) -> Schema:
    """The tables and columns of "What the server stores" that ``engine`` holds."""
    match = re.search(r"^## What the server stores\n(.*?)(?=^## )", PRIVACY, re.M | re.S)
    assert match is not None, "docs/privacy.md has no section 'What the server stores'"
    schema: Schema = {}
    for line in match.group(1).splitlines():
        if not line.startswith("| `"):
            continue
        table_cell, columns_cell = (cell.strip() for cell in line.strip("|").split("|")[:2])
        only = _ONLY.search(table_cell)
        if only is not None and only.group(1) != engine:
            continue
        table = _NAME.match(table_cell)
        assert table is not None, line
        columns = schema.setdefault(table.group(1), set())
        for item in columns_cell.split(","):
            only = _ONLY.search(item)
            name = _NAME.search(item)
            assert name is not None, f"{table.group(1)}: {item!r} names no column"
            if only is None or only.group(1) == engine:
                columns.add(name.group(1))
    return schema


def differences(actual: Schema, listed: Schema) -> list[str]:
    found = [f"table {t} is not listed" for t in sorted(actual.keys() - listed.keys())]
    found += [f"table {t} does not exist" for t in sorted(listed.keys() - actual.keys())]
    for table in sorted(actual.keys() & listed.keys()):
        found += [f"{table}.{c} is not listed" for c in sorted(actual[table] - listed[table])]
        found += [f"{table}.{c} does not exist" for c in sorted(listed[table] - actual[table])]
    return found


async def sqlite_schema(tmp_path: Path) -> Schema:
    path = tmp_path / "cloison.sqlite3"
    store = await open_store(f"sqlite:///{path}")
    await store.aclose()
    with sqlite3.connect(path) as db:
        tables = [row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        return {t: {row[1] for row in db.execute(f"PRAGMA table_info({t})")} for t in tables}


@pytest.fixture
async def postgres_url() -> AsyncIterator[tuple[str, str]]:
    async with postgres_schema() as schema:
        yield f"{POSTGRES_URL}?schema={schema}", schema


async def test_every_sqlite_table_and_column_is_documented(tmp_path: Path) -> None:
    assert differences(await sqlite_schema(tmp_path), documented("SQLite")) == []


@pytest.mark.postgres
async def test_every_postgres_table_and_column_is_documented(
    postgres_url: tuple[str, str],
) -> None:
    url, schema = postgres_url
    store = await open_store(url)
    await store.aclose()
    db = await asyncpg.connect(POSTGRES_URL, timeout=TIMEOUT_S)
    try:
        rows = await db.fetch(
            "SELECT table_name, column_name FROM information_schema.columns "
            "WHERE table_schema = $1",
            schema,
        )
    finally:
        await db.close()
    actual: Schema = {}
    for table, column in rows:
        actual.setdefault(table, set()).add(column)
    assert differences(actual, documented("PostgreSQL")) == []


def test_the_check_sees_a_missing_column() -> None:
    listed = documented("SQLite")
    grown = {**listed, "users": listed["users"] | {"birthday"}, "secrets": {"x"}}
    assert differences(grown, listed) == [
        "table secrets is not listed",
        "users.birthday is not listed",
    ]
