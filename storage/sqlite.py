"""The SQLite backend: ``SqliteStore``, on aiosqlite, in WAL mode.

Theory of operation
-------------------
Directory writes go through one aiosqlite writer connection; two aiosqlite reader connections
serve the reads, which WAL lets run beside the writer and beside each other. Each connection
owns a thread, so no SQLite call runs on the event loop.

The statements, row logic and group-commit planning this backend shares with PostgreSQL live
in ``storage.sql``; this module keeps SQLite's own part: connections and their threads,
transactions, ``json_each`` list parameters, error translation.

Appends are committed in groups (``storage.sql.queue``), by a connection of their own on a
thread of their own. The writer task hands the whole group to that thread, which writes it in
one ``BEGIN IMMEDIATE ... COMMIT``: one fsync and one thread hop make the whole group durable,
whatever its size. (A hop per statement would cost, under load, a wait for the interpreter
lock each.) Inside, one SELECT each reads the counters of the spheres involved, the
idempotency keys already stored, the memberships, the posts that the group's drafts name and
the floors of the members that reply, react, pin or are mentioned; ``storage.sql.plan``
decides offsets, edits, deletes and what conversation events change; one ``executemany`` each
inserts the new rows, changes posts, erases edit bodies, moves the counters and writes
reactions, pins, mentions, thread summaries and audit entries. Offsets are assigned here,
from the counters read inside the transaction, so another process writing the same file (the
admin CLI) cannot make them collide.

A domain error (unknown sphere, target gone) fails its own draft only: it is found before that
draft writes anything. Any other failure rolls the group back and fails all its drafts with
``StoreError``; the writer goes on with the next group. Futures are resolved after COMMIT only,
so nothing is acknowledged before it is durable. A COMMIT that fails is a certain rollback
(SQLite undoes the transaction, or we do) when it failed before the commit frame was whole:
a full disk (``SQLITE_FULL``), a failed write to the log (``SQLITE_IOERR_WRITE``: the commit
frame is written last and checksummed), a read-only file. Any other I/O error (a failed
fsync above all) may leave the commit frame on disk although the write was reported failed,
so the group's new drafts fail with ``OutcomeUnknownError`` instead (see ``storage.commit``).

Directory writes (users, tokens, spheres, members, read markers) take the writer connection
under the same lock as a group, one transaction each, so the two writers never contend.

Erasure (``storage.sql.erasure``): ``secure_delete`` on every connection; a group that deletes
or edits posts is followed, before it is answered, by a checkpoint that truncates the log.

Needs SQLite 3.35 or later (``RETURNING``).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import os
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager, contextmanager
from typing import Any, Self

import aiosqlite

from protocol import Message, SphereId
from storage.base import (
    CHANGE_UNKNOWN_MESSAGE,
    AppendResult,
    Draft,
    OutcomeUnknownError,
    StoreError,
)
from storage.commit import CommitInDoubtError, in_doubt, rolled_back
from storage.erasure import CompactionReport, ErasureStats
from storage.migrations import load_migrations, pending_migrations
from storage.rows import EVENT_COLUMNS, NO_AUTHOR, Key, Outcome, check_draft, to_message
from storage.sql.accounts import SqlRunner
from storage.sql.conversations import conversation_writes
from storage.sql.dialect import SQLITE
from storage.sql.erasure import SCRUB_BUSY_MS, Scrubber, erases
from storage.sql.log import SqlStore
from storage.sql.plan import (
    group_authors,
    group_keys,
    plan_group,
    to_targets,
    wanted_floors,
    wanted_targets,
)
from storage.sql.queries import queries
from storage.sql.queue import AppendQueue, QueuedAppend
from storage.usage import OrgGate

logger = logging.getLogger(__name__)

# Reads run in parallel with each other (sqlite3 releases the GIL) and with the writer.
READER_CONNECTIONS = 2
# How long a write waits for another process (the admin CLI) to release the database lock.
BUSY_TIMEOUT_MS = 5_000
# Why: readiness answers within 2 s; a write lock held longer by another process (the admin
# CLI) would hold up writes as long.
WRITE_LOCK_PROBE_S = 1.0
# Page cache per connection (negative: KiB); keeps the hot indexes of busy spheres in memory.
CACHE_SIZE_KIB = 32 * 1024
# FULL: an acknowledged write survives power loss. NORMAL: it survives a process crash only.
SYNCHRONOUS_MODES = frozenset({"FULL", "NORMAL"})
MIN_SQLITE_VERSION = (3, 35, 0)
# The primary result code of an I/O error (extended codes keep it in their low byte).
_SQLITE_IOERR = 10
# A write to the log failed: the commit frame, written last and checksummed, is not whole, so
# the commit did not happen (seen with a read-only or immutable file, a failing disk).
_SQLITE_IOERR_WRITE = 10 | 3 << 8

_Q = queries(SQLITE)
# The group commit's own statements: list parameters as JSON arrays, SQLite's dialect.
_SELECT_COUNTERS = """
    SELECT s.sphere_id, s.last_offset, s.org_id, o.policies, o.suspended_ms
    FROM spheres AS s LEFT JOIN organisations AS o ON o.org_id = s.org_id
    WHERE s.sphere_id IN (SELECT value FROM json_each(?))
"""
# CROSS JOIN keeps the short key list as the outer loop: one index probe per key.
_SELECT_BY_KEYS = f"""
    SELECT {", ".join("e." + c for c in EVENT_COLUMNS.split(", "))}
    FROM json_each(?) AS k CROSS JOIN events AS e
    WHERE e.sphere_id = json_extract(k.value, '$[0]')
      AND e.author_id = json_extract(k.value, '$[1]')
      AND e.message_id = json_extract(k.value, '$[2]')
"""
# The group's (sphere_id, author_id) pairs that are members: each append's authorisation.
_SELECT_MEMBERSHIPS = """
    SELECT m.sphere_id, m.user_id, m.muted_until_ms FROM json_each(?) AS k CROSS JOIN members AS m
    WHERE m.sphere_id = json_extract(k.value, '$[0]') AND m.user_id = json_extract(k.value, '$[1]')
"""
# The floors (first offset each may read) of the group's members that reply, react, pin or
# are mentioned.
_SELECT_FLOORS = """
    SELECT m.sphere_id, m.user_id, m.history_from FROM json_each(?) AS k CROSS JOIN members AS m
    WHERE m.sphere_id = json_extract(k.value, '$[0]') AND m.user_id = json_extract(k.value, '$[1]')
"""
_SELECT_TARGETS = """
    SELECT e.sphere_id, e.stream_offset, e.kind, e.deleted, e.author_id, e.ts_ms, e.thread_root,
           e.pinned
    FROM json_each(?) AS t CROSS JOIN events AS e
    WHERE e.sphere_id = json_extract(t.value, '$[0]')
      AND e.stream_offset = json_extract(t.value, '$[1]')
"""
_UPDATE_POST = """
    UPDATE events SET body = ?, edited_ms = coalesce(?, edited_ms), deleted = ?, mentions = ?
    WHERE sphere_id = ? AND stream_offset = ?
"""
# INDEXED BY: without statistics the planner prefers the primary key, which would scan the
# whole sphere; this statement must stay O(result) however the data grows.
_ERASE_EDITS = """
    UPDATE events INDEXED BY events_edits SET body = NULL, mentions = NULL
    WHERE sphere_id = ? AND target = ? AND kind = 'edit'
"""


class SqliteStore(SqlStore):
    """A ``storage.base.Store`` in one SQLite file.

    Open with ``await SqliteStore.open(path)``; release with ``aclose()`` (or ``async with``).
    """

    _dialect = SQLITE
    _q = _Q

    def __init__(
        self,
        writer: aiosqlite.Connection,
        readers: Sequence[aiosqlite.Connection],
        groups: _GroupWriter,
        *,
        path: str,
    ) -> None:
        """Use ``open()``: it configures and migrates the connections first."""
        self._path = path
        self._writer = writer
        self._groups = groups
        self._readers = tuple(readers)
        self._next_reader = itertools.cycle(self._readers)
        # Serialises groups and directory writes on the writer connection.
        self._write_lock = asyncio.Lock()
        self._closed = False  # no more reads or writes
        self._appends = AppendQueue(self._commit_batch, logger, name="sqlite-writer")
        self._scrubber = Scrubber(groups.checkpoint, self._write_lock, logger)

    @classmethod
    async def open(cls, path: str | os.PathLike[str], *, synchronous: str = "FULL") -> Self:
        """Open (creating if needed) the database at ``path`` and apply pending migrations.

        Args:
            path: the database file; its directory must exist.
            synchronous: ``"FULL"`` (an acknowledged write survives power loss) or
                ``"NORMAL"`` (it survives a crash of the process only; faster).

        Returns:
            The started store; call ``aclose()`` when done.

        Raises:
            ValueError: ``synchronous`` is neither FULL nor NORMAL.
            StoreError: the file cannot be opened or migrated, or its schema is newer than
                this code.
        """
        mode = synchronous.upper()
        if mode not in SYNCHRONOUS_MODES:
            raise ValueError(f"synchronous must be FULL or NORMAL, not {synchronous!r}")
        if sqlite3.sqlite_version_info < MIN_SQLITE_VERSION:
            raise StoreError(f"SQLite {sqlite3.sqlite_version} is too old; 3.35 or later needed")
        # Checked first because a failed aiosqlite.connect leaves its thread to stop on its own,
        # after the caller may have closed the event loop.
        directory = os.path.dirname(os.fspath(path)) or "."
        if not await asyncio.to_thread(os.path.isdir, directory):
            raise StoreError(f"the database directory {directory!r} does not exist")
        connections: list[aiosqlite.Connection] = []
        try:
            with _backend_errors("opening the database"):
                writer = await _connect(path, connections)
                journal = await writer.execute_fetchall("PRAGMA journal_mode = WAL")
                if next(iter(journal))[0] != "wal":
                    raise StoreError(f"cannot use WAL mode for {os.fspath(path)!r}")
                await writer.execute(f"PRAGMA synchronous = {mode}")
                await _migrate(writer)
                readers = [await _connect(path, connections) for _ in range(READER_CONNECTIONS)]
                for reader in readers:
                    await reader.execute("PRAGMA query_only = ON")
                groups = await _GroupWriter.open(path, mode)
        except BaseException:
            for connection in connections:
                await connection.close()
            raise
        return cls(writer, readers, groups, path=os.fspath(path))

    async def aclose(self) -> None:
        """Commit the appends already queued, wait for a directory write in flight, close."""
        if self._appends.closing:
            return
        try:
            await self._appends.aclose()
        finally:
            await self._scrubber.aclose()
            async with self._write_lock:
                self._closed = True
                await self._groups.aclose()
                for connection in (self._writer, *self._readers):
                    await connection.close()

    # -----------------------------------------------------------------------------------------
    # MessageLog (the reads: storage.sql.log)

    async def append(self, sphere_id: SphereId, draft: Draft) -> AppendResult:
        """Durably append ``draft`` to the sphere's stream (see ``storage.base.MessageLog``).

        Raises:
            ValueError: the draft's body or target does not fit its kind.
            NotFoundError: no such sphere.
            TargetGoneError: an edit/delete whose target is not a live post.
            StoreOverloadedError: too many appends wait for their commit already.
            OutcomeUnknownError: the commit failed with an I/O error that may have left it
                on disk (a retry then returns the event if it is stored).
            StoreError: the database failed or the store is closed; nothing was written.
        """
        check_draft(draft)
        return await self._appends.append(sphere_id, draft)

    async def check_writable(self) -> None:
        """Prove a write could commit now: the files are writable and the write lock free.

        Runs on a connection and thread of its own (``BEGIN IMMEDIATE; ROLLBACK``), so it
        never holds up the writers and a caller's timeout leaves nothing half done.

        Raises:
            StoreError: the file, its write-ahead log or its directory is read-only (a
                read-only mount, an immutable file), or the write lock cannot be taken
                within ``WRITE_LOCK_PROBE_S``.
        """
        if self._closed:
            raise StoreError("the store is closed")
        with _backend_errors("a readiness check"):
            unwritable = await asyncio.to_thread(_probe_writes, self._path)
        if unwritable is not None:
            raise StoreError(f"{unwritable} is not writable")

    # -----------------------------------------------------------------------------------------
    # Erasure (storage.erasure)

    async def scrub(self) -> None:
        await self._scrubber.scrub()

    async def compact(self, *, max_stall_s: float | None = None) -> CompactionReport:
        """A scrub: freed pages are zeroed already, the log is what keeps old bytes."""
        return await self._scrubber.compact(f"{self._path}-wal")

    @property
    def erasure_stats(self) -> ErasureStats:
        return self._scrubber.stats

    # -----------------------------------------------------------------------------------------
    # The hooks of storage.sql (the Directory is all there)

    @asynccontextmanager
    async def _reading(self) -> AsyncIterator[SqlRunner]:
        yield _Runner(self._read)

    @asynccontextmanager
    async def _writing(self) -> AsyncIterator[SqlRunner]:
        async with self._transaction() as db:
            yield _Runner(lambda sql, args: db.execute_fetchall(sql, args))

    async def _query(self, sql: str, *args: Any) -> list[Any]:
        return await self._read(sql, args)

    # -----------------------------------------------------------------------------------------
    # The writer

    async def _commit_batch(self, batch: list[QueuedAppend]) -> list[Outcome]:
        """Write ``batch`` in one transaction; on failure it is rolled back, every draft fails."""
        failures = self._appends.failures
        try:
            async with self._write_lock:
                outcomes = await self._groups.write([(q.sphere_id, q.draft) for q in batch])
                if erases(batch, outcomes):
                    await self._scrubber.scrub_locked()  # before the erasures are answered
        except CommitInDoubtError as doubt:
            failures.failed(len(batch), doubt.cause, unknown=True)
            return in_doubt(doubt.outcomes, doubt.cause)
        # The writer's boundary: this group fails, the next may not; FailureLog logs it.
        except Exception as exc:  # noqa: BLE001
            failures.failed(len(batch), exc)
            return rolled_back(len(batch), exc)
        self._appends.committed(len(batch))
        return outcomes

    # -----------------------------------------------------------------------------------------
    # Plumbing

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        """One directory write on the writer connection, between two groups of appends."""
        async with self._write_lock:
            if self._closed:
                raise StoreError("the store is closed")
            try:
                with _backend_errors("a write"):
                    await self._writer.execute("BEGIN IMMEDIATE")
                    yield self._writer
                    try:
                        await self._writer.commit()
                    except sqlite3.Error as exc:
                        if _commit_in_doubt(exc):
                            raise OutcomeUnknownError(CHANGE_UNKNOWN_MESSAGE) from exc
                        raise
            except BaseException:
                await _rollback(self._writer)
                raise

    async def _read(self, sql: str, parameters: Sequence[Any]) -> list[Any]:
        if self._closed:
            raise StoreError("the store is closed")
        with _backend_errors("a read"):
            return list(await next(self._next_reader).execute_fetchall(sql, parameters))


def _probe_writes(path: str) -> str | None:
    """The first of the database's files (and its directory) that cannot be written, if any;
    else take the write lock and release it at once, on a connection of its own.

    ``access`` answers for the mount and the inode flags too, so it holds even for root,
    whom file modes do not stop.

    Raises:
        sqlite3.Error: the write lock could not be taken (held by another process).
    """
    directory = os.path.dirname(path) or "."
    for candidate in (path, f"{path}-wal", f"{path}-shm", directory):
        if os.path.exists(candidate) and not os.access(candidate, os.W_OK):
            return "the database directory" if candidate == directory else repr(candidate)
    probe = sqlite3.connect(path, timeout=WRITE_LOCK_PROBE_S, isolation_level=None)
    try:
        probe.execute("BEGIN IMMEDIATE")
        probe.execute("ROLLBACK")
    finally:
        probe.close()
    return None


class _Runner:
    """``SqlRunner`` over a read or an open transaction."""

    def __init__(self, run: Callable[[str, Sequence[Any]], Awaitable[Iterable[Any]]]) -> None:
        self._run = run

    async def fetch(self, sql: str, *args: Any) -> list[Any]:
        return list(await self._run(sql, args))


async def _connect(
    path: str | os.PathLike[str], opened: list[aiosqlite.Connection]
) -> aiosqlite.Connection:
    """Open one configured connection and add it to ``opened`` (for cleanup on failure)."""
    # isolation_level=None: sqlite3 opens no transaction on its own; we BEGIN explicitly.
    connection = await aiosqlite.connect(os.fspath(path), isolation_level=None)
    opened.append(connection)
    await connection.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    await connection.execute(f"PRAGMA cache_size = -{CACHE_SIZE_KIB}")
    await connection.execute("PRAGMA foreign_keys = ON")
    await connection.execute("PRAGMA secure_delete = ON")  # erased content is zeroed
    return connection


async def _migrate(db: aiosqlite.Connection) -> None:
    """Apply the pending migrations and record them, all in one transaction."""
    migrations = load_migrations("sqlite")
    await db.execute("BEGIN IMMEDIATE")
    try:
        await db.execute(
            """
            CREATE TABLE IF NOT EXISTS schema_version (
                version    INTEGER PRIMARY KEY,
                name       TEXT NOT NULL,
                applied_ms INTEGER NOT NULL
            )
            """
        )
        rows = await db.execute_fetchall("SELECT coalesce(max(version), 0) FROM schema_version")
        for migration in pending_migrations(migrations, next(iter(rows))[0]):
            for statement in _statements(migration.sql):
                await db.execute(statement)
            await db.execute(
                "INSERT INTO schema_version (version, name, applied_ms) VALUES (?, ?, ?)",
                (migration.version, migration.name, time.time_ns() // 1_000_000),
            )
        await db.commit()
    except BaseException:
        await _rollback(db)
        raise


def _statements(script: str) -> list[str]:
    """Split an SQL script into statements (sqlite3 executes one at a time in a transaction).

    ``executescript`` would not do: it commits the open transaction first.
    """
    statements = []
    pending = ""
    for line in script.splitlines(keepends=True):
        pending += line
        if sqlite3.complete_statement(pending):
            statements.append(pending.strip())
            pending = ""
    if any(line.strip() and not line.lstrip().startswith("--") for line in pending.splitlines()):
        raise ValueError("the script ends inside a statement")
    return statements


async def _rollback(db: aiosqlite.Connection) -> None:
    """Roll back the open transaction, if any (``Connection.rollback`` checks)."""
    try:
        await db.rollback()
    except sqlite3.Error:
        logger.exception("rollback failed")


class _GroupWriter:
    """The connection and thread that commit groups of appends, one thread hop per group."""

    def __init__(self, executor: ThreadPoolExecutor, connection: sqlite3.Connection) -> None:
        self._executor = executor
        self._connection = connection

    @classmethod
    async def open(cls, path: str | os.PathLike[str], mode: str) -> _GroupWriter:
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-groups")

        def connect() -> sqlite3.Connection:
            # isolation_level=None: sqlite3 opens no transaction on its own; we BEGIN explicitly.
            connection = sqlite3.connect(os.fspath(path), isolation_level=None)
            for pragma in (
                f"busy_timeout = {BUSY_TIMEOUT_MS}",
                f"cache_size = -{CACHE_SIZE_KIB}",
                "foreign_keys = ON",
                "secure_delete = ON",  # erased content is zeroed, not left in free space
                f"synchronous = {mode}",  # per connection: this one makes appends durable
            ):
                connection.execute(f"PRAGMA {pragma}")
            return connection

        try:
            connection = await asyncio.get_running_loop().run_in_executor(executor, connect)
        except BaseException:
            executor.shutdown(wait=False)
            raise
        return cls(executor, connection)

    async def write(self, batch: list[tuple[SphereId, Draft]]) -> list[Outcome]:
        """Commit ``batch`` in one transaction on the group thread.

        Raises:
            sqlite3.Error: the transaction failed and was rolled back.
        """
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, _write_group, self._connection, batch)

    async def checkpoint(self) -> bool:
        """Checkpoint and truncate the write-ahead log; whether it completed."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, _checkpoint, self._connection)

    async def aclose(self) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self._connection.close)
        self._executor.shutdown(wait=True)


def _write_group(db: sqlite3.Connection, batch: list[tuple[SphereId, Draft]]) -> list[Outcome]:
    """The body of one group commit; runs on the group thread, rolls back on any failure.

    Raises:
        CommitInDoubtError: COMMIT failed with an I/O error; the group may be stored.
        sqlite3.Error: the group was rolled back.
    """
    db.execute("BEGIN IMMEDIATE")
    try:
        outcomes = _insert_group(db, batch)
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise
    try:
        db.execute("COMMIT")
    except sqlite3.Error as exc:
        if db.in_transaction:
            with contextlib.suppress(sqlite3.Error):  # the original error says more
                db.execute("ROLLBACK")
        if _commit_in_doubt(exc):
            raise CommitInDoubtError(outcomes, exc) from exc
        raise
    return outcomes


def _checkpoint(db: sqlite3.Connection) -> bool:
    """``wal_checkpoint(TRUNCATE)``, waiting at most ``SCRUB_BUSY_MS`` for readers."""
    db.execute(f"PRAGMA busy_timeout = {SCRUB_BUSY_MS}")
    try:
        busy, _, _ = db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    except sqlite3.OperationalError:  # another process holds the write lock
        return False
    finally:
        db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    return bool(busy == 0)


def _commit_in_doubt(exc: sqlite3.Error) -> bool:
    """Whether a failed COMMIT may have landed all the same (see the module's docstring)."""
    code: int = getattr(exc, "sqlite_errorcode", 0)
    return code & 0xFF == _SQLITE_IOERR and code != _SQLITE_IOERR_WRITE


def _insert_group(db: sqlite3.Connection, batch: list[tuple[SphereId, Draft]]) -> list[Outcome]:
    sphere_ids = list(dict.fromkeys(sphere_id for sphere_id, _ in batch))
    spheres = db.execute(_SELECT_COUNTERS, (json.dumps(sphere_ids),)).fetchall()
    counters: dict[str, int] = {row[0]: row[1] for row in spheres}
    gate = OrgGate.of((row[0], *row[2:]) for row in spheres)
    if orgs := gate.counted():
        gate.load(db.execute(_Q.org_usage, (json.dumps(orgs),)))
    keys = json.dumps(group_keys(batch))
    stored: dict[Key, Message] = {
        (event.sphere_id, event.author_id or NO_AUTHOR, event.message_id): event
        for event in map(to_message, db.execute(_SELECT_BY_KEYS, (keys,)))
    }
    authors = json.dumps(group_authors(batch))
    memberships = db.execute(_SELECT_MEMBERSHIPS, (authors,)).fetchall()
    members = {(row[0], row[1]) for row in memberships}
    muted = {(row[0], row[1]): row[2] for row in memberships if row[2] is not None}
    wanted = wanted_targets(batch, counters)
    targets = to_targets(db.execute(_SELECT_TARGETS, (json.dumps(wanted),)) if wanted else [])
    pairs = wanted_floors(batch)
    floors = {
        (row[0], row[1]): row[2]
        for row in (db.execute(_SELECT_FLOORS, (json.dumps(pairs),)) if pairs else [])
    }
    plan = plan_group(batch, counters, stored, members, targets, floors, muted, gate)
    if plan.rows:
        db.executemany(_Q.insert_posts, plan.rows)
        db.executemany(_Q.add_usage, gate.deltas())
    if plan.changed:
        db.executemany(
            _UPDATE_POST,
            [
                (body, edited, deleted, mentions, sphere, offset)
                for sphere, offset, body, edited, deleted, mentions in plan.changed
            ],
        )
    if plan.erased:
        db.executemany(_ERASE_EDITS, plan.erased)
    if plan.moved:
        db.executemany(_Q.update_counter, [(last, sphere_id) for sphere_id, last in plan.moved])
    for sql, rows in conversation_writes(plan, SQLITE):
        db.executemany(sql, rows)
    return plan.outcomes


@contextmanager
def _backend_errors(action: str) -> Iterator[None]:
    """Turn a database failure into StoreError (its cause kept for the logs)."""
    try:
        yield
    except sqlite3.Error as exc:
        raise StoreError(f"{action} failed: the database is unavailable") from exc
