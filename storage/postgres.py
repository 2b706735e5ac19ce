"""The PostgreSQL backend: ``PostgresStore``, on an asyncpg connection pool.

Theory of operation
-------------------
Several processes (gateway nodes, the admin CLI) may each open a store on one database;
PostgreSQL is the sequencer they share. Every statement runs on a connection borrowed from the
store's pool. A connection that lost its server is replaced on the next borrow, so the store
works again as soon as the database does; meanwhile every borrow and every statement has a
timeout, so an unreachable database turns into ``StoreError`` within seconds.

Appends are committed in groups, as in ``storage.sqlite``. ``append`` queues its draft and
awaits a future; one writer task per store takes everything queued (at most
``MAX_BATCH_APPENDS``) and writes it in one transaction on one connection. The round trips of a
group do not grow with its size: BEGIN; lock the counter rows of the spheres involved; read the
idempotency keys already stored, and the posts that edits and deletes target, one statement
each with array parameters; assign offsets and apply edits and deletes in Python; one
``INSERT ... SELECT FROM unnest(...)`` of the new rows; one UPDATE each of changed posts, erased
edit bodies and counters; COMMIT.

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
there is one. A failed group is logged once per streak of failures, not once per group.

Directory writes and reads borrow a pool connection each and run beside the writer.

Needs PostgreSQL 12 or later (``plan_cache_mode``).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import itertools
import logging
import re
import secrets
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

import asyncpg

from protocol import (
    EventKind,
    MemberAction,
    MemberInfo,
    Message,
    Privacy,
    Role,
    SphereId,
    SphereSummary,
    StreamPosition,
    UserId,
    UserKind,
)
from storage.base import (
    CHANGE_UNKNOWN_MESSAGE,
    AppendResult,
    CheckUpdate,
    DecideMember,
    Draft,
    MemberKey,
    MembershipState,
    NotFoundError,
    NotMemberError,
    OutcomeUnknownError,
    SphereKey,
    SphereRecord,
    StoreError,
    TargetGoneError,
)
from storage.commit import CommitInDoubtError, FailureLog, in_doubt, rolled_back
from storage.migrations import load_migrations, pending_migrations
from storage.rows import (
    EVENT_COLUMNS,
    POST_COLUMNS,
    ROLE_RANK_SQL,
    Key,
    Outcome,
    WriterStats,
    check_draft,
    check_limit,
    draft_key,
    event_row,
    member_event,
    server_message_id,
    sphere_event,
    to_message,
    to_sphere,
)
from storage.sessions_sql import SqlAccounts, SqlRunner

logger = logging.getLogger(__name__)

# Bounds the duration and memory of one transaction; far above what piles up during one commit.
MAX_BATCH_APPENDS = 1000
# Backpressure: beyond this many queued drafts, appenders wait for room instead of growing memory.
MAX_QUEUED_APPENDS = 10_000
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

_EVENT_COLUMNS = EVENT_COLUMNS
_SPHERE_COLUMNS = "sphere_id, name, privacy, epoch, last_offset, created_ms"
_SPHERE_ACCESS = f"""
    SELECT {", ".join("s." + c.strip() for c in _SPHERE_COLUMNS.split(","))}, m.role
    FROM spheres s LEFT JOIN members m ON m.sphere_id = s.sphere_id AND m.user_id = $1
    WHERE s.sphere_id = $2
"""

# NO KEY UPDATE: excludes other appenders to these spheres, not the foreign key checks of
# members being added. The locks are taken in the ORDER BY order: the same in every process.
_LOCK_COUNTERS = """
    SELECT sphere_id, last_offset FROM spheres WHERE sphere_id = ANY($1::text[])
    ORDER BY sphere_id FOR NO KEY UPDATE
"""
# One probe of an index per key, whatever the planner thinks of the table: LIMIT 1 (the keys
# are unique) keeps each subquery apart, where a join might hash the whole table instead.
_SELECT_BY_KEYS = f"""
    SELECT e.*
    FROM unnest($1::text[], $2::text[], $3::text[]) AS k (sphere_id, author_id, message_id)
    CROSS JOIN LATERAL (
        SELECT {_EVENT_COLUMNS} FROM events
        WHERE sphere_id = k.sphere_id AND author_id = k.author_id AND message_id = k.message_id
        LIMIT 1
    ) AS e
"""
_SELECT_TARGETS = """
    SELECT e.*
    FROM unnest($1::text[], $2::bigint[]) AS t (sphere_id, stream_offset)
    CROSS JOIN LATERAL (
        SELECT sphere_id, stream_offset, kind, deleted FROM events
        WHERE sphere_id = t.sphere_id AND stream_offset = t.stream_offset
        LIMIT 1
    ) AS e
"""
# The group's (sphere_id, author_id) pairs that are members: each append's authorisation.
# Read after the counter locks: a membership change takes the same lock first.
_SELECT_MEMBERSHIPS = """
    SELECT m.sphere_id, m.user_id
    FROM unnest($1::text[], $2::text[]) AS k (sphere_id, user_id)
    JOIN members AS m ON m.sphere_id = k.sphere_id AND m.user_id = k.user_id
"""
_INSERT_EVENTS = f"""
    INSERT INTO events ({POST_COLUMNS})
    SELECT * FROM unnest(
        $1::text[], $2::bigint[], $3::text[], $4::text[], $5::text[],
        $6::bigint[], $7::text[], $8::bigint[], $9::bigint[], $10::boolean[]
    )
"""
_UPDATE_POSTS = """
    UPDATE events AS e
    SET body = u.body, edited_ms = coalesce(u.edited_ms, e.edited_ms), deleted = u.deleted
    FROM unnest($1::text[], $2::bigint[], $3::text[], $4::bigint[], $5::boolean[])
        AS u (sphere_id, stream_offset, body, edited_ms, deleted)
    WHERE e.sphere_id = u.sphere_id AND e.stream_offset = u.stream_offset
"""
_ERASE_EDITS = """
    UPDATE events AS e SET body = NULL
    FROM unnest($1::text[], $2::bigint[]) AS d (sphere_id, target)
    WHERE e.sphere_id = d.sphere_id AND e.target = d.target AND e.kind = 'edit'
"""
_UPDATE_COUNTERS = """
    UPDATE spheres AS s SET last_offset = u.last_offset
    FROM unnest($1::text[], $2::bigint[]) AS u (sphere_id, last_offset)
    WHERE s.sphere_id = u.sphere_id
"""
# One statement, so that the sphere, its owner and the owner's member event are written together
# or not at all. An unknown owner fails the members insert's foreign key.
_CREATE_SPHERE = f"""
    WITH sphere AS (
        INSERT INTO spheres ({_SPHERE_COLUMNS}) VALUES ($1, $2, $3, $4, 1, $5)
        RETURNING sphere_id
    ), member AS (
        INSERT INTO members (sphere_id, user_id, role, joined_ms)
        SELECT sphere_id, $6, $7, $5 FROM sphere
        RETURNING sphere_id, user_id
    )
    INSERT INTO events ({_EVENT_COLUMNS})
    SELECT m.sphere_id, 1, 'member', $8, m.user_id, $5, NULL, NULL, NULL, false,
           m.user_id, u.name, $7, $9, NULL
    FROM member AS m JOIN users AS u ON u.user_id = m.user_id
"""
_INSERT_FULL_EVENT = f"""
    INSERT INTO events ({_EVENT_COLUMNS})
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)
"""
# Locks the sphere's counter row as an append does: membership and privacy changes are
# sequenced with the sphere's appends, and groups read memberships only after it.
_LOCK_SPHERE = f"""
    SELECT {_SPHERE_COLUMNS} FROM spheres WHERE sphere_id = $1 FOR NO KEY UPDATE
"""
# Everything a membership change is decided on, in one statement, under the sphere's lock.
_MEMBERSHIP_STATE = """
    SELECT (SELECT role FROM members WHERE sphere_id = $1 AND user_id = $2),
           (SELECT role FROM members WHERE sphere_id = $1 AND user_id = $3),
           (SELECT count(*) FROM members WHERE sphere_id = $1 AND role = 'owner'),
           (SELECT name FROM users WHERE user_id = $3)
"""
_SPHERE_MEMBERS = f"""
    SELECT {", ".join("s." + c for c in _SPHERE_COLUMNS.split(", "))}, m.user_id, m.role
    FROM spheres AS s LEFT JOIN members AS m ON m.sphere_id = s.sphere_id
    WHERE s.sphere_id = $1
"""
_HEADS = "SELECT sphere_id, last_offset, epoch FROM spheres WHERE sphere_id = ANY($1::text[])"
_EVENTS_AFTER = f"""
    SELECT {_EVENT_COLUMNS} FROM events
    WHERE sphere_id = $1 AND stream_offset > $2 ORDER BY stream_offset LIMIT $3
"""
# Served by events_history, so a page costs O(limit) however many edits lie between posts.
_POSTS_PAGE = f"""
    SELECT {_EVENT_COLUMNS} FROM events
    WHERE sphere_id = $1 AND kind NOT IN ('edit', 'delete')
      AND stream_offset > $2 AND stream_offset <= $3
    ORDER BY stream_offset {{direction}} LIMIT $4
"""
_POSTS_OLDEST_FIRST = _POSTS_PAGE.format(direction="ASC")
_POSTS_NEWEST_FIRST = _POSTS_PAGE.format(direction="DESC")
# COLLATE "C": names sort by code point whatever the database's locale, as in SQLite.
_USER_SPHERES = f"""
    SELECT {", ".join("s." + c for c in _SPHERE_COLUMNS.split(", "))}, m.role, m.read_offset, (
        SELECT count(*) FROM events AS e
        WHERE e.sphere_id = m.sphere_id AND e.kind = 'post' AND e.stream_offset > m.read_offset
          AND NOT e.deleted AND e.author_id <> m.user_id
    )
    FROM members AS m JOIN spheres AS s ON s.sphere_id = m.sphere_id
    WHERE m.user_id = $1 {{after}}
    ORDER BY s.name COLLATE "C", s.sphere_id COLLATE "C" LIMIT $2
"""
_SPHERES_AFTER = 'AND (s.name COLLATE "C" > $3 OR (s.name = $3 AND s.sphere_id COLLATE "C" > $4))'
_MEMBERS = f"""
    SELECT m.user_id, u.name, u.kind, m.role
    FROM members AS m JOIN users AS u ON u.user_id = m.user_id
    WHERE m.sphere_id = $1 {{after}}
    ORDER BY {ROLE_RANK_SQL} DESC, u.name COLLATE "C", m.user_id COLLATE "C" LIMIT $2
"""
_MEMBERS_AFTER = (
    f'AND ({ROLE_RANK_SQL} < $3 OR ({ROLE_RANK_SQL} = $3 AND (u.name COLLATE "C" > $4 '
    f'OR (u.name = $4 AND m.user_id COLLATE "C" > $5))))'
)
# Must repeat the WHERE of the partial index spheres_discoverable for the planner to use it.
_DISCOVERABLE = f"""
    SELECT {_SPHERE_COLUMNS} FROM spheres WHERE privacy IN ('open', 'public')
    ORDER BY created_ms DESC, created_seq DESC LIMIT $1
"""
_SET_READ_MARKER = """
    UPDATE members AS m SET read_offset = greatest(m.read_offset, least($1::bigint, s.last_offset))
    FROM spheres AS s
    WHERE m.sphere_id = $2 AND m.user_id = $3 AND s.sphere_id = m.sphere_id
    RETURNING m.read_offset
"""
_CREATE_SCHEMA_VERSION = """
    CREATE TABLE IF NOT EXISTS schema_version (
        version    INTEGER PRIMARY KEY,
        name       TEXT NOT NULL,
        applied_ms BIGINT NOT NULL
    )
"""
# The highest offset any store can hold (a signed 64-bit column).
_MAX_OFFSET = 2**63 - 1

# Positions in a new events row (a list in _EVENT_COLUMNS order) that edits and deletes change.
_BODY, _EDITED_MS, _DELETED = 6, 8, 9


@dataclass(frozen=True, slots=True)
class _QueuedAppend:
    sphere_id: SphereId
    draft: Draft
    future: asyncio.Future[AppendResult]


@dataclass(slots=True)
class _Target:
    """A post that edits and deletes of the group may change, in the state the group left it.

    ``row`` is its new events row when the group itself appends the post; otherwise the post is
    stored already, and ``body``/``edited_ms``/``changed`` say what to write back.
    """

    is_post: bool
    deleted: bool
    row: list[Any] | None = None
    body: str | None = None
    edited_ms: int | None = None
    changed: bool = False


class PostgresStore(SqlAccounts):
    """A ``storage.base.Store`` in a PostgreSQL database, shared with other processes.

    Open with ``await PostgresStore.open(dsn)``; release with ``aclose()`` (or ``async with``).
    """

    def __init__(self, pool: Any) -> None:
        """Use ``open()``: it creates the pool and migrates the schema first."""
        self._pool = pool
        self._queue: asyncio.Queue[_QueuedAppend | None] = asyncio.Queue(MAX_QUEUED_APPENDS)
        # Fair, so that appends enter a full queue in the order they started.
        self._enqueue_lock = asyncio.Lock()
        self._closing = False  # no new appends
        self._closed = False  # no more reads or writes
        self._commits = 0
        self._appends = 0
        self._failures = FailureLog(logger)
        self._writer_task = asyncio.create_task(self._run_writer(), name="postgres-writer")

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

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Commit the appends already queued, let reads and writes in flight end, close."""
        if self._closing:
            return
        self._closing = True
        try:
            async with self._enqueue_lock:  # behind the appends that started before
                await self._queue.put(None)
            await self._writer_task
        finally:
            # Only if the writer died: appends still queued.
            while not self._queue.empty():
                item = self._queue.get_nowait()
                if item is not None and not item.future.done():
                    item.future.set_exception(StoreError("the store is closed"))
            self._closed = True
            await _close_pool(self._pool)

    @property
    def writer_stats(self) -> WriterStats:
        return WriterStats(
            commits=self._commits,
            appends=self._appends,
            failed_groups=self._failures.failed_groups,
            unknown_groups=self._failures.unknown_groups,
        )

    # -----------------------------------------------------------------------------------------
    # MessageLog

    async def append(self, sphere_id: SphereId, draft: Draft) -> AppendResult:
        """Durably append ``draft`` to the sphere's stream (see ``storage.base.MessageLog``).

        Raises:
            ValueError: the draft's body or target does not fit its kind, or a text holds a
                NUL character (PostgreSQL text cannot).
            NotFoundError: no such sphere.
            TargetGoneError: an edit/delete whose target is not a live post.
            StoreError: the database failed or the store is closed; nothing was written, unless
                the connection was lost during the commit (a retry then returns the event).
        """
        check_draft(draft)
        # Checked here because such a text would fail the whole group, again at every retry.
        texts = (sphere_id, draft.message_id, draft.author_id, draft.body or "")
        if any("\x00" in text for text in texts):
            raise ValueError("a draft with a NUL character")
        if self._closing:
            raise StoreError("the store is closed")
        future: asyncio.Future[AppendResult] = asyncio.get_running_loop().create_future()
        async with self._enqueue_lock:
            await self._queue.put(_QueuedAppend(sphere_id, draft, future))
        return await future

    async def events_after(self, sphere_id: SphereId, after: int, limit: int) -> list[Message]:
        check_limit(limit)
        rows = await self._fetch(_EVENTS_AFTER, sphere_id, after, limit)
        return [to_message(row) for row in rows]

    async def history(
        self, sphere_id: SphereId, *, before: int | None, after: int | None, limit: int
    ) -> tuple[list[Message], bool]:
        """Posts only, ascending; see ``storage.base.MessageLog.history``.

        When both bounds are given, the page is the oldest posts strictly between them.
        """
        check_limit(limit)
        upper = _MAX_OFFSET if before is None else before - 1
        if after is not None:
            rows = await self._fetch(_POSTS_OLDEST_FIRST, sphere_id, after, upper, limit + 1)
        else:
            rows = await self._fetch(_POSTS_NEWEST_FIRST, sphere_id, 0, upper, limit + 1)
        has_more = len(rows) > limit
        posts = [to_message(row) for row in rows[:limit]]
        if after is None:
            posts.reverse()
        return posts, has_more

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

    async def get_event(self, sphere_id: SphereId, offset: int) -> Message | None:
        rows = await self._fetch(
            f"SELECT {_EVENT_COLUMNS} FROM events WHERE sphere_id = $1 AND stream_offset = $2",
            sphere_id,
            offset,
        )
        return to_message(rows[0]) if rows else None

    # -----------------------------------------------------------------------------------------
    # Directory (users and tokens: storage.sessions_sql)

    _CHANGES_LOCK = "SELECT pg_advisory_xact_lock(hashtextextended('cloison.session_changes', 0))"

    @asynccontextmanager
    async def _accounts_read(self) -> AsyncIterator[SqlRunner]:
        async with self._connection("a read") as db:
            yield _Runner(db)

    @asynccontextmanager
    async def _accounts_write(self) -> AsyncIterator[SqlRunner]:
        async with self._connection("a write") as db, db.transaction():
            yield _Runner(db)

    async def create_sphere(
        self, name: str, privacy: Privacy, owner_id: UserId, *, now_ms: int
    ) -> SphereRecord:
        """Create a sphere owned by ``owner_id``, with the owner's ``member`` event at offset 1.

        Raises:
            NotFoundError: no such user.
        """
        sphere = SphereRecord(
            sphere_id=SphereId("s_" + secrets.token_urlsafe(12)),
            name=name,
            privacy=privacy,
            epoch=secrets.token_hex(4),
            offset=1,
            created_ms=now_ms,
        )
        async with self._connection("a write") as db:
            try:
                await db.execute(
                    _CREATE_SPHERE,
                    sphere.sphere_id,
                    name,
                    privacy.value,
                    sphere.epoch,
                    now_ms,
                    owner_id,
                    Role.OWNER.value,
                    server_message_id(),
                    MemberAction.JOINED.value,
                )
            except asyncpg.ForeignKeyViolationError:
                raise NotFoundError(f"no user {owner_id}") from None
        return sphere

    async def get_sphere(self, sphere_id: SphereId) -> SphereRecord | None:
        rows = await self._fetch(
            f"SELECT {_SPHERE_COLUMNS} FROM spheres WHERE sphere_id = $1", sphere_id
        )
        return to_sphere(rows[0]) if rows else None

    async def update_sphere(
        self,
        sphere_id: SphereId,
        actor_id: UserId,
        check: CheckUpdate,
        *,
        name: str | None,
        privacy: Privacy | None,
        now_ms: int,
    ) -> tuple[SphereRecord, Message | None]:
        """Rename a sphere or change its privacy (see ``storage.base.Directory``)."""
        async with self._connection("a write") as db, db.transaction():
            row = await db.fetchrow(_LOCK_SPHERE, sphere_id)
            if row is None:
                raise NotFoundError(f"no sphere {sphere_id}")
            sphere = to_sphere(row)
            role = await db.fetchval(
                "SELECT role FROM members WHERE sphere_id = $1 AND user_id = $2",
                sphere_id,
                actor_id,
            )
            check(sphere, Role(role) if role is not None else None)
            event = None
            if privacy is not None and privacy is not sphere.privacy:
                event = sphere_event(sphere, actor_id, privacy, now_ms)
                await db.execute(_INSERT_FULL_EVENT, *event_row(event))
            updated = dataclasses.replace(
                sphere,
                name=name if name is not None else sphere.name,
                privacy=privacy if privacy is not None else sphere.privacy,
                offset=event.offset if event is not None else sphere.offset,
            )
            await db.execute(
                "UPDATE spheres SET name = $1, privacy = $2, last_offset = $3 WHERE sphere_id = $4",
                updated.name,
                updated.privacy.value,
                updated.offset,
                sphere_id,
            )
        return updated, event

    async def sphere_access(
        self, sphere_id: SphereId, user_id: UserId
    ) -> tuple[SphereRecord | None, Role | None]:
        rows = await self._fetch(_SPHERE_ACCESS, user_id, sphere_id)
        if not rows:
            return None, None
        row = tuple(rows[0])
        return to_sphere(row[:6]), Role(row[6]) if row[6] is not None else None

    async def sphere_members(
        self, sphere_id: SphereId
    ) -> tuple[SphereRecord, dict[UserId, Role]] | None:
        rows = await self._fetch(_SPHERE_MEMBERS, sphere_id)
        if not rows:
            return None
        sphere = to_sphere(tuple(rows[0])[:6])
        return sphere, {UserId(row[6]): Role(row[7]) for row in rows if row[6] is not None}

    async def heads(self, sphere_ids: Sequence[SphereId]) -> dict[SphereId, StreamPosition]:
        rows = await self._fetch(_HEADS, list(sphere_ids))
        return {SphereId(row[0]): StreamPosition(row[1], row[2]) for row in rows}

    async def get_role(self, sphere_id: SphereId, user_id: UserId) -> Role | None:
        rows = await self._fetch(
            "SELECT role FROM members WHERE sphere_id = $1 AND user_id = $2", sphere_id, user_id
        )
        return Role(rows[0][0]) if rows else None

    async def change_member(
        self,
        sphere_id: SphereId,
        actor_id: UserId,
        target_id: UserId,
        decide: DecideMember,
        *,
        now_ms: int,
    ) -> Message | None:
        """Change a membership as ``decide`` rules (see ``storage.base.Directory``).

        The sphere's counter row is locked first, as appends lock it: two changes of one
        sphere (say, the last two owners leaving at once) run one after the other, each
        deciding on what the other wrote, and no group commit of the sphere runs in between.
        """
        async with self._connection("a write") as db, db.transaction():
            row = await db.fetchrow(_LOCK_SPHERE, sphere_id)
            if row is None:
                raise NotFoundError(f"no sphere {sphere_id}")
            sphere = to_sphere(row)
            actor_role, target_role, owners, target_name = await db.fetchrow(
                _MEMBERSHIP_STATE, sphere_id, actor_id, target_id
            )
            change = decide(
                MembershipState(
                    sphere,
                    Role(actor_role) if actor_role is not None else None,
                    Role(target_role) if target_role is not None else None,
                    owners,
                )
            )
            if change is None:
                return None
            if target_name is None:  # after decide: only who may change members learns this
                raise NotFoundError(f"no user {target_id}")
            if change.role is None:
                await db.execute(
                    "DELETE FROM members WHERE sphere_id = $1 AND user_id = $2",
                    sphere_id,
                    target_id,
                )
            else:
                await db.execute(
                    """
                    INSERT INTO members (sphere_id, user_id, role, joined_ms)
                    VALUES ($1, $2, $3, $4)
                    ON CONFLICT (sphere_id, user_id) DO UPDATE SET role = excluded.role
                    """,
                    sphere_id,
                    target_id,
                    change.role.value,
                    now_ms,
                )
            event = member_event(sphere, actor_id, target_id, target_name, change, now_ms)
            await db.execute(_INSERT_FULL_EVENT, *event_row(event))
            await db.execute(
                "UPDATE spheres SET last_offset = $1 WHERE sphere_id = $2", event.offset, sphere_id
            )
        return event

    async def list_members(
        self, sphere_id: SphereId, *, limit: int | None = None, after: MemberKey | None = None
    ) -> list[MemberInfo]:
        """The sphere's members, most powerful role first, then by name and id; paged."""
        if after is None:
            rows = await self._fetch(_MEMBERS.format(after=""), sphere_id, limit)
        else:
            rank, name, user_id = after
            sql = _MEMBERS.format(after=_MEMBERS_AFTER)
            rows = await self._fetch(sql, sphere_id, limit, rank, name, user_id)
        return [MemberInfo(row[0], row[1], UserKind(row[2]), Role(row[3])) for row in rows]

    async def user_spheres(
        self, user_id: UserId, *, limit: int | None = None, after: SphereKey | None = None
    ) -> list[SphereSummary]:
        """The user's spheres by name and id, with role, read marker and unread post count.

        Unread posts are those after the read marker, not deleted, by someone else.
        """
        if after is None:
            rows = await self._fetch(_USER_SPHERES.format(after=""), user_id, limit)
        else:
            name, sphere_id = after
            sql = _USER_SPHERES.format(after=_SPHERES_AFTER)
            rows = await self._fetch(sql, user_id, limit, name, sphere_id)
        return [
            SphereSummary(
                sphere_id=row[0],
                name=row[1],
                privacy=Privacy(row[2]),
                epoch=row[3],
                offset=row[4],
                role=Role(row[6]),
                read_offset=row[7],
                unread=row[8],
            )
            for row in rows
        ]

    async def discoverable_spheres(self, limit: int) -> list[SphereSummary]:
        check_limit(limit)
        rows = await self._fetch(_DISCOVERABLE, limit)
        return [
            SphereSummary(row[0], row[1], Privacy(row[2]), epoch=row[3], offset=row[4])
            for row in rows
        ]

    async def set_read_marker(self, sphere_id: SphereId, user_id: UserId, offset: int) -> int:
        """Move the member's read marker to ``offset``, never back nor past the latest event.

        Returns:
            The marker now stored.

        Raises:
            NotFoundError: the user is not a member of the sphere (or either is unknown).
        """
        async with self._connection("a write") as db:
            row = await db.fetchrow(_SET_READ_MARKER, offset, sphere_id, user_id)
        if row is None:
            raise NotFoundError(f"{user_id} is not a member of {sphere_id}")
        marker: int = row[0]
        return marker

    # -----------------------------------------------------------------------------------------
    # The writer

    async def _run_writer(self) -> None:
        """Commit queued appends group by group until the stop marker (``None``) comes."""
        while True:
            batch: list[_QueuedAppend] = []
            item = await self._queue.get()
            while item is not None:
                batch.append(item)
                if len(batch) == MAX_BATCH_APPENDS or self._queue.empty():
                    break
                item = self._queue.get_nowait()
            if batch:
                outcomes = await self._commit_batch(batch)
                for queued, outcome in zip(batch, outcomes, strict=True):
                    if queued.future.done():  # its appender was cancelled; the write stands
                        continue
                    if isinstance(outcome, AppendResult):
                        queued.future.set_result(outcome)
                    else:
                        queued.future.set_exception(outcome)
            if item is None:
                return

    async def _commit_batch(self, batch: list[_QueuedAppend]) -> list[Outcome]:
        """Write ``batch`` in one transaction, retrying lost races; on failure fail every draft."""
        attempt = 1
        while True:
            try:
                outcomes = await self._attempt(batch)
            except _RACE_ERRORS as exc:
                if attempt < MAX_ATTEMPTS:
                    logger.info("retrying a group of %d appends after %r", len(batch), exc)
                    attempt += 1
                    continue
                self._failures.failed(len(batch), exc)
                return rolled_back(len(batch), exc)
            except CommitInDoubtError as doubt:
                self._failures.failed(len(batch), doubt.cause, unknown=True)
                return in_doubt(doubt.outcomes, doubt.cause)
            # The writer's boundary: this group fails, the next may not; FailureLog logs it.
            except Exception as exc:  # noqa: BLE001
                self._failures.failed(len(batch), exc)
                return rolled_back(len(batch), exc)
            self._failures.succeeded()
            self._commits += 1
            self._appends += len(batch)
            return outcomes

    async def _attempt(self, batch: list[_QueuedAppend]) -> list[Outcome]:
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

    async def _fetch(self, sql: str, *args: Any) -> list[Any]:
        async with self._connection("a read") as db:
            return list(await db.fetch(sql, *args))


class _Runner:
    """``SqlRunner`` on a pool connection: ``?`` placeholders become ``$1``, ``$2``, ..."""

    def __init__(self, db: Any) -> None:
        self._db = db

    async def fetch(self, sql: str, *args: Any) -> list[Any]:
        try:
            return list(await self._db.fetch(_numbered(sql), *args))
        except asyncpg.ForeignKeyViolationError as exc:
            raise NotFoundError("a referenced user does not exist") from exc


@functools.lru_cache(maxsize=128)
def _numbered(sql: str) -> str:
    count = itertools.count(1)
    return re.sub(r"\?", lambda _: f"${next(count)}", sql)


async def _write_batch(db: Any, batch: Sequence[_QueuedAppend]) -> list[Outcome]:
    """Append ``batch`` inside the open transaction of ``db``, in a bounded number of statements.

    Returns:
        One outcome per draft: its result, or the domain error that failed it alone.
    """
    sphere_ids = sorted({queued.sphere_id for queued in batch})
    counters: dict[str, int] = {
        row[0]: row[1] for row in await db.fetch(_LOCK_COUNTERS, sphere_ids)
    }
    keys = [draft_key(queued.sphere_id, queued.draft) for queued in batch]
    stored: dict[Key, Message] = {
        (event.sphere_id, event.author_id, event.message_id): event
        for event in map(to_message, await db.fetch(_SELECT_BY_KEYS, *_columns(keys, 3)))
    }
    authors = sorted({(queued.sphere_id, queued.draft.author_id) for queued in batch})
    members = {
        (row[0], row[1]) for row in await db.fetch(_SELECT_MEMBERSHIPS, *_columns(authors, 2))
    }
    targets = await _fetch_targets(db, batch, counters)
    committed = dict(counters)
    rows: list[list[Any]] = []
    edit_rows: dict[tuple[str, int], list[list[Any]]] = {}  # new edit rows by their target
    erased: list[tuple[str, int]] = []  # stored posts deleted: erase their stored edits' bodies
    outcomes: list[Outcome] = []
    for queued, key in zip(batch, keys, strict=True):
        sphere_id, draft = queued.sphere_id, queued.draft
        last = counters.get(sphere_id)
        if last is None:
            outcomes.append(NotFoundError(f"no sphere {sphere_id}"))
            continue
        if (event := stored.get(key)) is not None:
            outcomes.append(AppendResult(event, duplicate=True))
            continue
        if (sphere_id, draft.author_id) not in members:
            outcomes.append(NotMemberError(f"{draft.author_id} is not a member of {sphere_id}"))
            continue
        row = [
            sphere_id,
            last + 1,
            draft.kind.value,
            draft.message_id,
            draft.author_id,
            draft.ts_ms,
            draft.body,
            draft.target,
            None,
            False,
        ]
        if draft.target is not None:
            target_key = (sphere_id, draft.target)
            target = targets.get(target_key)
            if target is None or not target.is_post or target.deleted:
                outcomes.append(
                    TargetGoneError(f"no live post at offset {draft.target} of {sphere_id}")
                )
                continue
            if draft.kind is EventKind.EDIT:
                _edit(target, draft)
                edit_rows.setdefault(target_key, []).append(row)
            else:
                _delete(target)
                for edit_row in edit_rows.pop(target_key, []):
                    edit_row[_BODY] = None
                if target.row is None:
                    erased.append(target_key)
        elif draft.kind is EventKind.POST:
            targets[(sphere_id, last + 1)] = _Target(is_post=True, deleted=False, row=row)
        event = Message(
            sphere_id=sphere_id,
            offset=last + 1,
            kind=draft.kind,
            message_id=draft.message_id,
            author_id=draft.author_id,
            ts_ms=draft.ts_ms,
            body=draft.body,
            target=draft.target,
        )
        counters[sphere_id] = event.offset
        stored[key] = event
        rows.append(row)
        outcomes.append(AppendResult(event, duplicate=False))
    if rows:
        await db.execute(_INSERT_EVENTS, *_columns(rows, len(rows[0])))
    changed = [
        (sphere_id, offset, target.body, target.edited_ms, target.deleted)
        for (sphere_id, offset), target in targets.items()
        if target.changed
    ]
    if changed:
        await db.execute(_UPDATE_POSTS, *_columns(changed, 5))
    if erased:
        await db.execute(_ERASE_EDITS, *_columns(erased, 2))
    moved = [
        (sphere_id, last) for sphere_id, last in counters.items() if last != committed[sphere_id]
    ]
    if moved:
        await db.execute(_UPDATE_COUNTERS, *_columns(moved, 2))
    return outcomes


async def _fetch_targets(
    db: Any, batch: Sequence[_QueuedAppend], counters: dict[str, int]
) -> dict[tuple[str, int], _Target]:
    """The stored events that the group's edits and deletes name, by (sphere_id, offset)."""
    wanted = [
        (queued.sphere_id, queued.draft.target)
        for queued in batch
        # Beyond the counter it cannot be stored (nor out of the column's range).
        if queued.draft.target is not None
        and 0 < queued.draft.target <= counters.get(queued.sphere_id, 0)
    ]
    if not wanted:
        return {}
    rows = await db.fetch(_SELECT_TARGETS, *_columns(wanted, 2))
    return {
        (row[0], row[1]): _Target(is_post=row[2] == EventKind.POST, deleted=row[3]) for row in rows
    }


def _edit(target: _Target, draft: Draft) -> None:
    if target.row is not None:
        target.row[_BODY] = draft.body
        target.row[_EDITED_MS] = draft.ts_ms
    else:
        target.body, target.edited_ms, target.changed = draft.body, draft.ts_ms, True


def _delete(target: _Target) -> None:
    target.deleted = True
    if target.row is not None:
        target.row[_BODY] = None
        target.row[_DELETED] = True
    else:
        target.body, target.changed = None, True


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
