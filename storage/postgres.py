"""The PostgreSQL backend: ``PostgresStore``, on an asyncpg connection pool.

Theory of operation
-------------------
Several processes (gateway nodes, the admin CLI) may each open a store on one database;
PostgreSQL is the sequencer they share. Every statement runs on a connection borrowed from the
store's pool. A connection that lost its server is replaced on the next borrow, so the store
works again as soon as the database does; meanwhile every borrow and every statement has a
timeout, so an unreachable database turns into ``StoreError`` within seconds.

The statements, row logic and group-commit planning this backend shares with SQLite live in
``storage.sql``; this module keeps PostgreSQL's own part: the pool, transactions, locks, array
parameters, error translation.

Appends are committed in groups (``storage.sql.queue``): one writer task per store takes
everything queued and writes it in one transaction on one connection. The round trips of a
group do not grow with its size: BEGIN; lock the counter rows of the spheres involved; read the
idempotency keys already stored, the memberships, the posts the drafts name and the floors of
the members that reply, react, pin or are mentioned, one statement each with array parameters;
plan offsets, edits, deletes and conversation state in Python (``storage.sql.plan``); one
``INSERT ... SELECT FROM unnest(...)`` of the new rows; one UPDATE each of changed posts,
erased edit bodies and counters; one pipelined ``executemany`` each of the reactions, pins,
mentions, thread summaries and audit entries the group changes; COMMIT.

Why offsets stay gapless and unique across processes: an append to a sphere holds the sphere's
counter row lock (``FOR NO KEY UPDATE``, taken in sphere_id order so that two groups cannot
deadlock) until it commits, and reads keys and targets only once it holds it. Under READ
COMMITTED each statement sees what was committed before it started, so a group sees everything
the previous holder of the lock wrote. The unique index on (sphere_id, author_id, message_id)
backs this up: should a key be stored behind the lock's back, the group fails with a unique
violation and is retried, and the retry finds the key. Serialization failures and deadlocks are
retried likewise, ``MAX_ATTEMPTS`` tries in all.

A domain error (unknown sphere, target gone) fails its own draft only: it is found before that
draft writes anything. Any other failure before COMMIT is sent rolls the group back and fails
all its drafts with ``StoreError`` (nothing was written); the writer goes on with the next
group. Futures are resolved after COMMIT only, so nothing is acknowledged before it is durable.
A failure once COMMIT was sent, other than an error the server answered with (which means it
rolled back), leaves the outcome unknown: the connection broke, timed out or the backend was
terminated, and the commit may or may not have landed. Then each new draft of the group fails
with ``OutcomeUnknownError``; a retry with the same message_id returns the stored event if
there is one. A connection lost once the COMMIT was answered (while the pool resets it) fails
nothing: the group is stored. A failed group is logged once per streak of failures, not once
per group.

Directory writes and reads borrow a pool connection each and run beside the writer.

Erased rows leave dead tuples in the relation files; ``compact`` rewrites the tables
(``storage.sql.erasure``), and ``scrub`` has nothing to do at once.

Needs PostgreSQL 12 or later (``plan_cache_mode``).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import re
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from typing import Any, Self

import asyncpg

from protocol import Message, SphereId
from storage.base import (
    CHANGE_UNKNOWN_MESSAGE,
    AppendResult,
    Draft,
    NotFoundError,
    OutcomeUnknownError,
    StoreError,
)
from storage.commit import CommitInDoubtError, in_doubt, rolled_back
from storage.erasure import CompactionReport, ErasureStats
from storage.migrations import load_migrations, pending_migrations
from storage.rows import (
    EVENT_COLUMNS,
    NO_AUTHOR,
    POST_COLUMNS,
    Key,
    Outcome,
    check_draft,
    to_message,
)
from storage.sql.accounts import SqlRunner
from storage.sql.conversations import conversation_writes
from storage.sql.dialect import POSTGRES
from storage.sql.erasure import compact_postgres
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

# Tries of a group that lost a race with another process (deadlock, serialization, key).
MAX_ATTEMPTS = 5
# Opening one connection (TCP and authentication); a dead server fails well within it.
CONNECT_TIMEOUT_S = 5.0
# Borrowing a pool connection, opening one if needed.
ACQUIRE_TIMEOUT_S = 5.0
# One statement, lock waits included; a group of MAX_BATCH_APPENDS takes milliseconds.
COMMAND_TIMEOUT_S = 5.0
# How long aclose() lets reads and directory writes in flight finish before cutting them off.
CLOSE_TIMEOUT_S = 10.0
# Lower case, so that it needs no quoting in search_path and DDL; 63 bytes is PostgreSQL's limit.
_SCHEMA_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")
# Serialises the migrations of every Cloison on the cluster (they take milliseconds).
_MIGRATION_LOCK = "cloison.migrations"
# Everything asyncpg raises when the database or the connection fails: server errors (a
# terminated backend is AdminShutdownError, a cancelled statement QueryCanceledError), a lost
# or closed connection (ConnectionDoesNotExistError, InterfaceError), the driver's own
# internal errors on a connection that broke underneath it, socket errors and timeouts.
_BACKEND_ERRORS = (
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    OSError,
    TimeoutError,
)
# After these the session is in doubt (a statement still running, or no server): it is closed,
# which makes the server roll back, rather than sent a ROLLBACK that would wait for it.
_IN_DOUBT_ERRORS = (
    TimeoutError,
    OSError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    asyncpg.OperatorInterventionError,  # the backend was cancelled, terminated or shut down
)
# A group that fails with these lost a race with another process: it is retried whole.
_RACE_ERRORS = (
    asyncpg.UniqueViolationError,
    asyncpg.SerializationError,
    asyncpg.DeadlockDetectedError,
)

# The group commit's own statements: array parameters and unnest(), PostgreSQL's dialect.
_Q = queries(POSTGRES)
_LOCK_COUNTERS = """
    SELECT s.sphere_id, s.last_offset, s.org_id, o.policies, o.suspended_ms
    FROM spheres AS s LEFT JOIN organisations AS o ON o.org_id = s.org_id
    WHERE s.sphere_id = ANY($1::text[])
    ORDER BY s.sphere_id FOR NO KEY UPDATE OF s
"""
_SELECT_BY_KEYS = f"""
    SELECT e.*
    FROM unnest($1::text[], $2::text[], $3::text[]) AS k (sphere_id, author_id, message_id)
    CROSS JOIN LATERAL (
        SELECT {EVENT_COLUMNS} FROM events
        WHERE sphere_id = k.sphere_id AND author_id = k.author_id AND message_id = k.message_id
        LIMIT 1
    ) AS e
"""
_SELECT_TARGETS = """
    SELECT e.*
    FROM unnest($1::text[], $2::bigint[]) AS t (sphere_id, stream_offset)
    CROSS JOIN LATERAL (
        SELECT sphere_id, stream_offset, kind, deleted, author_id, ts_ms, thread_root, pinned
        FROM events
        WHERE sphere_id = t.sphere_id AND stream_offset = t.stream_offset
        LIMIT 1
    ) AS e
"""
_SELECT_MEMBERSHIPS = """
    SELECT m.sphere_id, m.user_id, m.muted_until_ms
    FROM unnest($1::text[], $2::text[]) AS k (sphere_id, user_id)
    JOIN members AS m ON m.sphere_id = k.sphere_id AND m.user_id = k.user_id
"""
# The floors (first offset each may read) of the group's members that reply, react, pin or
# are mentioned.
_SELECT_FLOORS = """
    SELECT m.sphere_id, m.user_id, m.history_from
    FROM unnest($1::text[], $2::text[]) AS k (sphere_id, user_id)
    JOIN members AS m ON m.sphere_id = k.sphere_id AND m.user_id = k.user_id
"""
_INSERT_EVENTS = f"""
    INSERT INTO events ({POST_COLUMNS})
    SELECT * FROM unnest(
        $1::text[], $2::bigint[], $3::text[], $4::text[], $5::text[],
        $6::bigint[], $7::text[], $8::bigint[], $9::bigint[], $10::boolean[],
        $11::bigint[], $12::bigint[], $13::text[], $14::text[], $15::boolean[]
    )
"""
_UPDATE_POSTS = """
    UPDATE events AS e
    SET body = u.body, edited_ms = coalesce(u.edited_ms, e.edited_ms), deleted = u.deleted,
        mentions = u.mentions
    FROM unnest($1::text[], $2::bigint[], $3::text[], $4::bigint[], $5::boolean[], $6::text[])
        AS u (sphere_id, stream_offset, body, edited_ms, deleted, mentions)
    WHERE e.sphere_id = u.sphere_id AND e.stream_offset = u.stream_offset
"""
_ERASE_EDITS = """
    UPDATE events AS e SET body = NULL, mentions = NULL
    FROM unnest($1::text[], $2::bigint[]) AS d (sphere_id, target)
    WHERE e.sphere_id = d.sphere_id AND e.target = d.target AND e.kind = 'edit'
"""
_UPDATE_COUNTERS = """
    UPDATE spheres AS s SET last_offset = u.last_offset
    FROM unnest($1::text[], $2::bigint[]) AS u (sphere_id, last_offset)
    WHERE s.sphere_id = u.sphere_id
"""
_CREATE_SCHEMA_VERSION = """
    CREATE TABLE IF NOT EXISTS schema_version (
        version    INTEGER PRIMARY KEY,
        name       TEXT NOT NULL,
        applied_ms BIGINT NOT NULL
    )
"""


class PostgresStore(SqlStore):
    """A ``storage.base.Store`` in a PostgreSQL database, shared with other processes.

    Open with ``await PostgresStore.open(dsn)``; release with ``aclose()`` (or ``async with``).
    """

    _dialect = POSTGRES
    _q = _Q
    _CHANGES_LOCK = "SELECT pg_advisory_xact_lock(hashtextextended('cloison.session_changes', 0))"

    def __init__(self, pool: Any) -> None:
        """Use ``open()``: it creates the pool and migrates the schema first."""
        self._pool = pool
        self._closed = False  # no more reads or writes
        self._appends = AppendQueue(self._commit_batch, logger, name="postgres-writer")
        self._erasure = ErasureStats()

    @classmethod
    async def open(
        cls, dsn: str, *, schema: str | None = None, min_size: int = 1, max_size: int = 10
    ) -> Self:
        """Connect to the database at ``dsn`` and apply pending migrations.

        Args:
            dsn: a libpq connection URI, ``postgresql://user@host:port/database``.
            schema: put every table in this schema (created if missing) instead of the
                connection's default; lower-case letters, digits and ``_``.
            min_size: connections the pool keeps open.
            max_size: connections the pool opens at most (the writer uses one at a time).

        Returns:
            The started store; call ``aclose()`` when done.

        Raises:
            ValueError: ``schema`` is not a plain lower-case identifier.
            StoreError: the database cannot be reached or migrated, or its schema is newer
                than this code.
        """
        if schema is not None and not _SCHEMA_NAME.fullmatch(schema):
            raise ValueError(f"schema must match {_SCHEMA_NAME.pattern}, not {schema!r}")
        with _backend_errors("connecting to the database"):
            pool = await asyncpg.create_pool(
                dsn,
                min_size=min_size,
                max_size=max_size,
                timeout=CONNECT_TIMEOUT_S,
                command_timeout=COMMAND_TIMEOUT_S,
                server_settings=_server_settings(schema),
            )
        try:
            with _backend_errors("migrating the database"):
                async with pool.acquire(timeout=ACQUIRE_TIMEOUT_S) as db:
                    await _migrate(db, schema)
        except BaseException:
            await _close_pool(pool)
            raise
        return cls(pool)

    async def aclose(self) -> None:
        """Commit the appends already queued, let reads and writes in flight end, close."""
        if self._appends.closing:
            return
        try:
            await self._appends.aclose()
        finally:
            self._closed = True
            await _close_pool(self._pool)

    # -----------------------------------------------------------------------------------------
    # MessageLog (the reads: storage.sql.log)

    async def append(self, sphere_id: SphereId, draft: Draft) -> AppendResult:
        """Durably append ``draft`` to the sphere's stream (see ``storage.base.MessageLog``).

        Raises:
            ValueError: the draft's body or target does not fit its kind, or a text holds a
                NUL character (PostgreSQL text cannot).
            NotFoundError: no such sphere.
            TargetGoneError: an edit/delete whose target is not a live post.
            StoreOverloadedError: too many appends wait for their commit already.
            OutcomeUnknownError: the connection was lost during the commit (a retry then
                returns the event if it is stored).
            StoreError: the database failed or the store is closed; nothing was written.
        """
        check_draft(draft)
        # Checked here because such a text would fail the whole group, again at every retry.
        texts = (sphere_id, draft.message_id, draft.author_id, draft.body or "")
        if any("\x00" in text for text in texts):
            raise ValueError("a draft with a NUL character")
        return await self._appends.append(sphere_id, draft)

    async def check_writable(self) -> None:
        """Prove a write could commit now: the database answers and takes writes.

        Raises:
            StoreError: the database is unreachable, in recovery (a standby), or its
                transactions are read-only (``default_transaction_read_only``).
        """
        async with self._connection("a readiness check") as db:
            recovery, read_only = await db.fetchrow(
                "SELECT pg_is_in_recovery(), current_setting('transaction_read_only') = 'on'"
            )
        if recovery:
            raise StoreError("the database is in recovery (a standby): it takes no writes")
        if read_only:
            raise StoreError("the database's transactions are read-only")

    # -----------------------------------------------------------------------------------------
    # Erasure (storage.erasure)

    async def scrub(self) -> None:
        """Nothing at once: dead tuples keep the bytes until ``compact`` rewrites the table."""

    async def compact(self, *, max_stall_s: float | None = None) -> CompactionReport:
        async with self._connection("a compaction") as db:
            return await compact_postgres(db, self._erasure, max_stall_s)

    @property
    def erasure_stats(self) -> ErasureStats:
        return self._erasure

    # -----------------------------------------------------------------------------------------
    # The hooks of storage.sql (the Directory is all there)

    @asynccontextmanager
    async def _reading(self) -> AsyncIterator[SqlRunner]:
        async with self._connection("a read") as db:
            yield _Runner(db)

    @asynccontextmanager
    async def _writing(self) -> AsyncIterator[SqlRunner]:
        async with self._connection("a write") as db, db.transaction():
            yield _Runner(db)

    async def _query(self, sql: str, *args: Any) -> list[Any]:
        async with self._connection("a read") as db:
            return list(await db.fetch(sql, *args))

    # -----------------------------------------------------------------------------------------
    # The writer

    async def _commit_batch(self, batch: list[QueuedAppend]) -> list[Outcome]:
        """Write ``batch`` in one transaction, retrying lost races; on failure fail every draft."""
        failures = self._appends.failures
        attempt = 1
        while True:
            try:
                outcomes = await self._attempt(batch)
            except _RACE_ERRORS as exc:
                if attempt < MAX_ATTEMPTS:
                    logger.info("retrying a group of %d appends after %r", len(batch), exc)
                    attempt += 1
                    continue
                failures.failed(len(batch), exc)
                return rolled_back(len(batch), exc)
            except CommitInDoubtError as doubt:
                failures.failed(len(batch), doubt.cause, unknown=True)
                return in_doubt(doubt.outcomes, doubt.cause)
            # The writer's boundary: this group fails, the next may not; FailureLog logs it.
            except Exception as exc:  # noqa: BLE001
                failures.failed(len(batch), exc)
                return rolled_back(len(batch), exc)
            self._appends.committed(len(batch))
            return outcomes

    async def _attempt(self, batch: list[QueuedAppend]) -> list[Outcome]:
        """One try at ``batch``: BEGIN, ``_write_batch``, COMMIT, on one pool connection.

        A statement the server refused is followed by ROLLBACK; a session in doubt is closed
        instead (see ``_IN_DOUBT_ERRORS``).

        Raises:
            CommitInDoubtError: COMMIT was sent and no answer of the server's came back.
        """
        async with _borrowed(self._pool) as db:
            try:
                transaction = db.transaction()
                await transaction.start()
                try:
                    outcomes = await _write_batch(db, batch)
                except _IN_DOUBT_ERRORS:
                    raise
                except BaseException:
                    await transaction.rollback()
                    raise
                try:
                    await transaction.commit()
                except _IN_DOUBT_ERRORS as exc:
                    # An error the server sent in answer to COMMIT means it rolled back; a
                    # broken, timed-out or terminated session leaves the outcome open.
                    raise CommitInDoubtError(outcomes, exc) from exc
            except (*_IN_DOUBT_ERRORS, CommitInDoubtError):
                _terminate(db)
                raise
            return outcomes

    # -----------------------------------------------------------------------------------------
    # Plumbing

    @asynccontextmanager
    async def _connection(self, action: str) -> AsyncIterator[Any]:
        """A pool connection for one operation; database failures raise StoreError.

        Directory writes (``action`` "a write") are single statements, each its own
        transaction: one whose session is cut while it runs may have committed, and raises
        ``OutcomeUnknownError`` instead.
        """
        if self._closed:
            raise StoreError("the store is closed")
        with _backend_errors(action):
            async with _borrowed(self._pool) as db:
                try:
                    yield db
                except _IN_DOUBT_ERRORS as exc:
                    _terminate(db)
                    # A client-side state error means the statement was never sent.
                    if action == "a write" and not isinstance(exc, asyncpg.InternalClientError):
                        raise OutcomeUnknownError(CHANGE_UNKNOWN_MESSAGE) from exc
                    raise


class _Runner:
    """``SqlRunner`` on a pool connection: ``?`` placeholders become ``$1``, ``$2``, ...

    (``storage.sql.queries`` statements are numbered already, and pass unchanged.)
    """

    def __init__(self, db: Any) -> None:
        self._db = db

    async def fetch(self, sql: str, *args: Any) -> list[Any]:
        try:
            return list(await self._db.fetch(_numbered(sql), *args))
        except asyncpg.ForeignKeyViolationError as exc:
            raise NotFoundError("a referenced user does not exist") from exc


# The statements of storage.sql.accounts, numbered once each (they are a few dozen constants).
_numbered = functools.lru_cache(maxsize=256)(POSTGRES.placeholders)


async def _write_batch(db: Any, batch: Sequence[QueuedAppend]) -> list[Outcome]:
    """Append ``batch`` inside the open transaction of ``db``, in a bounded number of statements.

    Returns:
        One outcome per draft: its result, or the domain error that failed it alone.
    """
    drafts = [(queued.sphere_id, queued.draft) for queued in batch]
    sphere_ids = sorted({sphere_id for sphere_id, _ in drafts})
    spheres = await db.fetch(_LOCK_COUNTERS, sphere_ids)
    counters: dict[str, int] = {row[0]: row[1] for row in spheres}
    gate = OrgGate.of((row[0], *row[2:]) for row in spheres)
    if orgs := gate.counted():
        await db.fetch(_Q.lock_orgs, orgs)  # the groups of an organisation count in turn
        gate.load(await db.fetch(_Q.org_usage, orgs))
    stored: dict[Key, Message] = {
        (event.sphere_id, event.author_id or NO_AUTHOR, event.message_id): event
        for event in map(
            to_message, await db.fetch(_SELECT_BY_KEYS, *_columns(group_keys(drafts), 3))
        )
    }
    authors = group_authors(drafts)
    memberships = await db.fetch(_SELECT_MEMBERSHIPS, *_columns(authors, 2))
    members = {(row[0], row[1]) for row in memberships}
    muted = {(row[0], row[1]): row[2] for row in memberships if row[2] is not None}
    wanted = wanted_targets(drafts, counters)
    targets = to_targets(await db.fetch(_SELECT_TARGETS, *_columns(wanted, 2)) if wanted else [])
    pairs = wanted_floors(drafts)
    floors = {
        (row[0], row[1]): row[2]
        for row in (await db.fetch(_SELECT_FLOORS, *_columns(pairs, 2)) if pairs else [])
    }
    plan = plan_group(drafts, counters, stored, members, targets, floors, muted, gate)
    if plan.rows:
        await db.execute(_INSERT_EVENTS, *_columns(plan.rows, len(plan.rows[0])))
        if deltas := gate.deltas():
            await db.executemany(_Q.add_usage, deltas)
    if plan.changed:
        await db.execute(_UPDATE_POSTS, *_columns(plan.changed, 6))
    if plan.erased:
        await db.execute(_ERASE_EDITS, *_columns(plan.erased, 2))
    if plan.moved:
        await db.execute(_UPDATE_COUNTERS, *_columns(plan.moved, 2))
    for sql, rows in conversation_writes(plan, POSTGRES):
        await db.executemany(sql, rows)
    return plan.outcomes


@asynccontextmanager
async def _borrowed(pool: Any) -> AsyncIterator[Any]:
    """A pool connection, released afterwards; a failure of the release itself is not raised.

    The release resets the session (a round trip): a session that dies then has already
    answered everything asked of it, COMMIT included, so what ran on it stands, and asyncpg
    closes the connection. Raising then would report a committed write as failed.
    """
    db = await pool.acquire(timeout=ACQUIRE_TIMEOUT_S)
    try:
        yield db
    finally:
        try:
            await pool.release(db)
        except _BACKEND_ERRORS as exc:
            logger.info("a connection was lost while it went back to the pool: %r", exc)


def _terminate(db: Any) -> None:
    """Close a session in doubt; one whose connection is already gone needs nothing more."""
    with contextlib.suppress(asyncpg.InterfaceError):  # already released: lost, and closed
        db.terminate()


def _columns(rows: Sequence[Sequence[Any]], width: int) -> list[list[Any]]:
    """Transpose ``rows`` into one list per column: the array parameters of an unnest()."""
    return [[row[n] for row in rows] for n in range(width)]


def _server_settings(schema: str | None) -> dict[str, str]:
    """Session settings of every pool connection.

    Sent at startup, so that they survive the RESET ALL of each release to the pool and apply
    to every reconnection.
    """
    # A plan cached while a table was small (a seq scan) would stay in use as it grows: every
    # statement here is cheap to plan, and its plan must follow the table and array sizes.
    settings = {"plan_cache_mode": "force_custom_plan"}
    if schema is not None:
        settings["search_path"] = schema
    return settings


async def _migrate(db: Any, schema: str | None) -> None:
    """Apply the pending migrations and record them, all in one transaction."""
    migrations = load_migrations("postgres")
    async with db.transaction():
        # Two processes opening a new database at once: the second waits, then finds it done.
        await db.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", _MIGRATION_LOCK)
        if schema is not None:
            await db.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
        await db.execute(_CREATE_SCHEMA_VERSION)
        current = await db.fetchval("SELECT coalesce(max(version), 0) FROM schema_version")
        for migration in pending_migrations(migrations, current):
            await db.execute(migration.sql)
            await db.execute(
                "INSERT INTO schema_version (version, name, applied_ms) VALUES ($1, $2, $3)",
                migration.version,
                migration.name,
                time.time_ns() // 1_000_000,
            )


async def _close_pool(pool: Any) -> None:
    """Close ``pool`` once its connections are released; cut them off after CLOSE_TIMEOUT_S."""
    try:
        async with asyncio.timeout(CLOSE_TIMEOUT_S):
            await pool.close()  # terminates the connections itself when interrupted
    except TimeoutError:
        logger.warning("closed the database pool with operations still running")


@contextmanager
def _backend_errors(action: str) -> Iterator[None]:
    """Turn a database failure into StoreError (its cause kept for the logs)."""
    try:
        yield
    except _BACKEND_ERRORS as exc:
        raise StoreError(f"{action} failed: the database is unavailable") from exc
