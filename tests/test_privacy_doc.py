"""docs/privacy.md lists every table and column the server stores, on both engines.

The schema is read from a database each engine has just built from ``storage/migrations/``,
not from the SQL files, so a column added by any means fails here until the privacy document
says what it holds; and a line for a column that no longer exists fails too.
"""

from __future__ import annotations

import dataclasses
import re
import sqlite3
import typing
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from protocol import SERVER_FRAMES
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


def carried_fields(frames: tuple[type, ...]) -> set[tuple[str, str]]:
    """(class, field) for every field of every dataclass a server frame can carry."""
    seen: set[type] = set()
    found: set[tuple[str, str]] = set()
    pending = list(frames)
    while pending:
        cls = pending.pop()
        if cls in seen or not dataclasses.is_dataclass(cls):
            continue
        seen.add(cls)
        for name, hint in typing.get_type_hints(cls).items():
            if name == "TYPE":
                continue
            found.add((cls.__name__, name))
            pending += [t for t in _types_in(hint) if dataclasses.is_dataclass(t)]
    return found


def _types_in(hint: object) -> list[type]:
    args = typing.get_args(hint)
    if not args:
        return [hint] if isinstance(hint, type) else []
    return [t for arg in args for t in _types_in(arg)]


def test_read_markers_travel_only_in_the_callers_own_summary() -> None:
    fields = carried_fields(SERVER_FRAMES)
    markers = {(cls, name) for cls, name in fields if re.search(r"(^|_)(un)?read(_|$)", name)}
    # The caller's read marker, and how many posts follow it.
    assert markers == {("SphereSummary", "read_offset"), ("SphereSummary", "unread")}
    # The walk does reach nested types: a member entry carries names and roles, no marker.
    assert {("MemberInfo", "name"), ("MemberInfo", "role")} <= fields


def test_every_test_the_document_cites_exists() -> None:
    root = Path(__file__).resolve().parent.parent
    cited = set(re.findall(r"`(tests/[\w/]+\.py)(?:::(\w+))?", PRIVACY))
    assert len(cited) >= 10
    missing = []
    for path, name in sorted(cited):
        source = root / path
        if not source.exists():
            missing.append(path)
        elif name and not re.search(rf"def {name}\b", source.read_text("utf-8")):
            missing.append(f"{path}::{name}")
    assert missing == []
