"""Reading storage files raw: is a canary's byte string anywhere in them?

Erasure tests publish a canary, erase it, then call ``assert_absent_*``; each should first
call ``assert_present_*`` with the same canary before the erasure, so the check is shown able
to fail (a canary that was never written raw would pass any absence check).

- SQLite: the database file and its ``-wal`` and ``-shm`` files, read whole (missing ones are
  skipped: a checkpoint may truncate or remove them).
- PostgreSQL: every file of the relations of a schema (or of the tables named): each table,
  each of its indexes, its TOAST table and the TOAST index, every fork and segment, found with
  ``pg_relation_filepath`` under ``data_directory`` after a ``CHECKPOINT`` (so the shared
  buffers are on disk). That needs a superuser on a cluster whose data directory this process
  can read: the test's own (``tests.services.own_postgres``), never the shared one.
- Text: captured log lines or a log file.

A canary must be random (say ``secrets.token_hex(16)``) and short: PostgreSQL's TOAST cuts a
long value into chunks of about 2 kB, and may compress it. To test TOAST, embed the canary in
a long body of random hex (incompressible). The positive control catches a canary stored out
of sight.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from pathlib import Path

import asyncpg

from tests.services import TIMEOUT_S

SQLITE_DATABASE = "cloison.sqlite3"
# How many times a positive control looks before it fails (assert_present_postgres).
PRESENCE_LOOKS = 6

# Every relation of the schema's tables (or of the tables named): the table, its indexes,
# its TOAST table and that table's index.
_RELATIONS = """
    WITH tables AS (
        SELECT c.oid, c.reltoastrelid FROM pg_class AS c
        JOIN pg_namespace AS n ON n.oid = c.relnamespace
        WHERE n.nspname = $1 AND c.relkind IN ('r', 'm', 'p')
          AND ($2::text[] IS NULL OR c.relname = ANY($2::text[]))
    ), owners AS (
        SELECT oid FROM tables
        UNION SELECT reltoastrelid FROM tables WHERE reltoastrelid <> 0
    )
    SELECT oid FROM owners
    UNION SELECT indexrelid FROM pg_index WHERE indrelid IN (SELECT oid FROM owners)
"""


def sqlite_files(data_dir: Path | str, database: str = SQLITE_DATABASE) -> list[Path]:
    """The database file of ``data_dir`` and its WAL and SHM files, those that exist."""
    main = Path(data_dir) / database
    return [p for p in (main, Path(f"{main}-wal"), Path(f"{main}-shm")) if p.exists()]


def files_holding(files: Iterable[Path], canary: bytes) -> list[Path]:
    """The files among ``files`` whose bytes contain ``canary``."""
    assert canary, "an empty canary is in every file"
    return [path for path in files if canary in path.read_bytes()]


def sqlite_holding(
    data_dir: Path | str, canary: bytes, database: str = SQLITE_DATABASE
) -> list[Path]:
    """The SQLite files of ``data_dir`` (main, WAL, SHM) that contain ``canary``."""
    files = sqlite_files(data_dir, database)
    assert files, f"no SQLite database {database!r} in {data_dir}"
    return files_holding(files, canary)


def assert_absent_sqlite(
    data_dir: Path | str, canary: bytes, database: str = SQLITE_DATABASE
) -> None:
    """No byte of the main file, WAL or SHM of ``data_dir``'s database holds ``canary``."""
    found = sqlite_holding(data_dir, canary, database)
    assert not found, f"canary {canary!r} still in {[p.name for p in found]}"


def assert_present_sqlite(
    data_dir: Path | str, canary: bytes, database: str = SQLITE_DATABASE
) -> None:
    """The positive control: ``canary`` is in one of the database's files."""
    assert sqlite_holding(data_dir, canary, database), f"canary {canary!r} in no SQLite file"


async def postgres_files(dsn: str, schema: str, tables: Sequence[str] | None = None) -> list[Path]:
    """Every file (forks, segments) of the relations of ``schema``'s tables (or ``tables``),
    after a ``CHECKPOINT`` has written the shared buffers out; ``dsn`` names a superuser."""
    db = await asyncpg.connect(dsn, timeout=TIMEOUT_S)
    try:
        await db.execute("CHECKPOINT", timeout=TIMEOUT_S)
        data = Path(await db.fetchval("SHOW data_directory", timeout=TIMEOUT_S))
        oids = [row[0] for row in await db.fetch(_RELATIONS, schema, tables, timeout=TIMEOUT_S)]
        paths = await db.fetch(
            "SELECT pg_relation_filepath(oid) FROM unnest($1::oid[]) AS oid", oids
        )
    finally:
        await db.close(timeout=TIMEOUT_S)
    assert oids, f"no relation in schema {schema!r}"
    files: list[Path] = []
    for (relative,) in paths:
        base = data / relative
        # The main fork's first segment, later 1 GB segments (.1, .2 ...), other forks (_fsm...).
        files += sorted(p for p in base.parent.glob(base.name + "*") if _of(base.name, p.name))
    return files


def _of(relfile: str, name: str) -> bool:
    """Whether file ``name`` belongs to relation file ``relfile`` (not to ``relfile`` + digits)."""
    rest = name.removeprefix(relfile)
    return rest == "" or rest[0] in "._"


async def postgres_holding(
    dsn: str, schema: str, canary: bytes, tables: Sequence[str] | None = None
) -> list[Path]:
    """The relation files of ``schema`` (or of ``tables``) that contain ``canary``."""
    return files_holding(await postgres_files(dsn, schema, tables), canary)


async def assert_absent_postgres(
    dsn: str, schema: str, canary: bytes, tables: Sequence[str] | None = None
) -> None:
    """No relation file of ``schema``'s tables (or ``tables``) holds ``canary``."""
    found = await postgres_holding(dsn, schema, canary, tables)
    assert not found, f"canary {canary!r} still in {[str(p) for p in found]}"


async def assert_present_postgres(
    dsn: str, schema: str, canary: bytes, tables: Sequence[str] | None = None
) -> None:
    """The positive control: ``canary`` is in a relation file of ``schema`` (or ``tables``).

    Looked for again a few times: a compaction running meanwhile may be writing a relation's
    new file after the checkpoint, so one look can miss a row that is there.
    """
    for _ in range(PRESENCE_LOOKS - 1):
        if await postgres_holding(dsn, schema, canary, tables):
            return
        await asyncio.sleep(0.5)
    found = await postgres_holding(dsn, schema, canary, tables)
    assert found, f"canary {canary!r} in no relation file of {schema}"


def assert_absent_text(lines: Iterable[str] | Path, canary: bytes) -> None:
    """No captured line (``ServerProcess.log``), or no byte of a log file, holds ``canary``."""
    if isinstance(lines, Path):
        assert canary not in lines.read_bytes(), f"canary {canary!r} in {lines}"
        return
    text = canary.decode()
    found = [line for line in lines if text in line]
    assert not found, f"canary {canary!r} logged: {found[:3]}"
