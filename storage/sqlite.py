"""The SQLite backend: ``SqliteStore``, on aiosqlite, in WAL mode.

Theory of operation
-------------------
Directory writes go through one aiosqlite writer connection; two aiosqlite reader connections
serve the reads, which WAL lets run beside the writer and beside each other. Each connection
owns a thread, so no SQLite call runs on the event loop.

Appends are committed in groups, by a connection of their own on a thread of their own.
``append`` queues its draft and awaits a future; the writer task takes everything queued (at
most ``MAX_BATCH_APPENDS``) and hands the whole group to that thread, which writes it in one
``BEGIN IMMEDIATE ... COMMIT``: one fsync and one thread hop make the whole group durable,
whatever its size. (A hop per statement would cost, under load, a wait for the interpreter
lock each.) Inside, one SELECT reads the counters of the spheres involved, one the
idempotency keys already stored, one ``executemany`` inserts the new rows and one moves the
counters. Offsets are assigned here, from the counters read inside the transaction, so
another process writing the same file (the admin CLI) cannot make them collide. Edits and
deletes are rare and cost a few statements each.

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

Needs SQLite 3.35 or later (``RETURNING``).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import json
import logging
import os
import secrets
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

import aiosqlite

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
    MemberChange,
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
    ROLE_RANK_SQL,
    Key,
    Outcome,
    WriterStats,
    check_draft,
    check_limit,
    draft_key,
    event_row,
    member_event,
    sphere_event,
    to_message,
    to_sphere,
)
from storage.sessions_sql import SqlAccounts, SqlRunner

logger = logging.getLogger(__name__)

# Bounds the duration and memory of one transaction; far above what piles up during one commit.
MAX_BATCH_APPENDS = 1000
# Backpressure: beyond this many queued drafts, an append fails at once (retryable).
MAX_QUEUED_APPENDS = 10_000
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

_EVENT_COLUMNS = EVENT_COLUMNS
_SPHERE_COLUMNS = "sphere_id, name, privacy, epoch, last_offset, created_ms"
_SPHERE_ACCESS = f"""
    SELECT {", ".join("s." + c.strip() for c in _SPHERE_COLUMNS.split(","))}, m.role
    FROM spheres s LEFT JOIN members m ON m.sphere_id = s.sphere_id AND m.user_id = ?
    WHERE s.sphere_id = ?
"""

_SELECT_COUNTERS = (
    "SELECT sphere_id, last_offset FROM spheres WHERE sphere_id IN (SELECT value FROM json_each(?))"
)
# CROSS JOIN keeps the short key list as the outer loop: one index probe per key.
_SELECT_BY_KEYS = f"""
    SELECT {", ".join("e." + c for c in _EVENT_COLUMNS.split(", "))}
    FROM json_each(?) AS k CROSS JOIN events AS e
    WHERE e.sphere_id = json_extract(k.value, '$[0]')
      AND e.author_id = json_extract(k.value, '$[1]')
      AND e.message_id = json_extract(k.value, '$[2]')
"""
# The group's (sphere_id, author_id) pairs that are members: each append's authorisation.
_SELECT_MEMBERSHIPS = """
    SELECT m.sphere_id, m.user_id FROM json_each(?) AS k CROSS JOIN members AS m
    WHERE m.sphere_id = json_extract(k.value, '$[0]') AND m.user_id = json_extract(k.value, '$[1]')
"""
_INSERT_EVENT = """
    INSERT INTO events (sphere_id, stream_offset, kind, message_id, author_id, ts_ms, body, target)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?)
"""
_UPDATE_COUNTER = "UPDATE spheres SET last_offset = ? WHERE sphere_id = ?"
_SELECT_TARGET = "SELECT kind, deleted FROM events WHERE sphere_id = ? AND stream_offset = ?"
_EDIT_POST = "UPDATE events SET body = ?, edited_ms = ? WHERE sphere_id = ? AND stream_offset = ?"
_DELETE_POST = (
    "UPDATE events SET body = NULL, deleted = 1 WHERE sphere_id = ? AND stream_offset = ?"
)
# INDEXED BY here and below: without statistics the planner prefers the primary key, which
# would scan the whole sphere; these statements must stay O(result) however the data grows.
_ERASE_EDITS = """
    UPDATE events INDEXED BY events_edits SET body = NULL
    WHERE sphere_id = ? AND target = ? AND kind = 'edit'
"""
_EVENTS_AFTER = f"""
    SELECT {_EVENT_COLUMNS} FROM events
    WHERE sphere_id = ? AND stream_offset > ? ORDER BY stream_offset LIMIT ?
"""
_POSTS_PAGE = f"""
    SELECT {_EVENT_COLUMNS} FROM events INDEXED BY events_history
    WHERE sphere_id = ? AND kind NOT IN ('edit', 'delete')
      AND stream_offset > ? AND stream_offset <= ?
    ORDER BY stream_offset {{direction}} LIMIT ?
"""
_INSERT_FULL_EVENT = f"""
    INSERT INTO events ({_EVENT_COLUMNS}) VALUES ({", ".join("?" * 15)})
"""
# Everything a membership change is decided on, in one statement of its transaction.
_MEMBERSHIP_STATE = """
    SELECT (SELECT role FROM members WHERE sphere_id = ?1 AND user_id = ?2),
           (SELECT role FROM members WHERE sphere_id = ?1 AND user_id = ?3),
           (SELECT count(*) FROM members WHERE sphere_id = ?1 AND role = 'owner'),
           (SELECT name FROM users WHERE user_id = ?3)
"""
_SPHERE_MEMBERS = f"""
    SELECT {", ".join("s." + c for c in _SPHERE_COLUMNS.split(", "))}, m.user_id, m.role
    FROM spheres AS s LEFT JOIN members AS m ON m.sphere_id = s.sphere_id
    WHERE s.sphere_id = ?
"""
_HEADS = """
    SELECT sphere_id, last_offset, epoch FROM spheres
    WHERE sphere_id IN (SELECT value FROM json_each(?))
"""
_POSTS_OLDEST_FIRST = _POSTS_PAGE.format(direction="ASC")
_POSTS_NEWEST_FIRST = _POSTS_PAGE.format(direction="DESC")
_USER_SPHERES = f"""
    SELECT {", ".join("s." + c for c in _SPHERE_COLUMNS.split(", "))}, m.role, m.read_offset, (
        SELECT count(*) FROM events AS e
        WHERE e.sphere_id = m.sphere_id AND e.kind = 'post' AND e.stream_offset > m.read_offset
          AND e.deleted = 0 AND e.author_id <> m.user_id
    )
    FROM members AS m JOIN spheres AS s ON s.sphere_id = m.sphere_id
    WHERE m.user_id = ? {{after}}
    ORDER BY s.name, s.sphere_id LIMIT ?
"""
_SPHERES_AFTER = "AND (s.name > ? OR (s.name = ? AND s.sphere_id > ?))"
_MEMBERS = f"""
    SELECT m.user_id, u.name, u.kind, m.role
    FROM members AS m JOIN users AS u ON u.user_id = m.user_id
    WHERE m.sphere_id = ? {{after}}
    ORDER BY {ROLE_RANK_SQL} DESC, u.name, m.user_id LIMIT ?
"""
_MEMBERS_AFTER = (
    f"AND ({ROLE_RANK_SQL} < ? OR ({ROLE_RANK_SQL} = ? AND (u.name, m.user_id) > (?, ?)))"
)
# Must repeat the WHERE of the partial index spheres_discoverable for the planner to use it.
_DISCOVERABLE = f"""
    SELECT {_SPHERE_COLUMNS} FROM spheres WHERE privacy IN ('open', 'public')
    ORDER BY created_ms DESC, rowid DESC LIMIT ?
"""
_SET_READ_MARKER = """
    UPDATE members SET read_offset = max(read_offset, min(?, (
        SELECT last_offset FROM spheres WHERE sphere_id = members.sphere_id
    )))
    WHERE sphere_id = ? AND user_id = ?
    RETURNING read_offset
"""
# The highest offset any store can hold (a signed 64-bit column).
_MAX_OFFSET = 2**63 - 1


@dataclass(frozen=True, slots=True)
class _QueuedAppend:
    sphere_id: SphereId
    draft: Draft
    future: asyncio.Future[AppendResult]


class SqliteStore(SqlAccounts):
    """A ``storage.base.Store`` in one SQLite file.

    Open with ``await SqliteStore.open(path)``; release with ``aclose()`` (or ``async with``).
    """

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
        self._queue: asyncio.Queue[_QueuedAppend | None] = asyncio.Queue(MAX_QUEUED_APPENDS)
        # Serialises groups and directory writes on the writer connection.
        self._write_lock = asyncio.Lock()
        self._closing = False  # no new appends
        self._closed = False  # no more reads or writes
        self._commits = 0
        self._appends = 0
        self._failures = FailureLog(logger)
        self._writer_task = asyncio.create_task(self._run_writer(), name="sqlite-writer")

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
        """Commit the appends already queued, wait for a directory write in flight, close."""
        if self._closing:
            return
        self._closing = True
        try:
            await self._queue.put(None)
            await self._writer_task
        finally:
            # Appends that were queued behind the stop marker.
            while not self._queue.empty():
                item = self._queue.get_nowait()
                if item is not None and not item.future.done():
                    item.future.set_exception(StoreError("the store is closed"))
            async with self._write_lock:
                self._closed = True
                await self._groups.aclose()
                for connection in (self._writer, *self._readers):
                    await connection.close()

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
            ValueError: the draft's body or target does not fit its kind.
            NotFoundError: no such sphere.
            TargetGoneError: an edit/delete whose target is not a live post.
            StoreError: the database failed or the store is closed; nothing was written.
        """
        check_draft(draft)
        if self._closing:
            raise StoreError("the store is closed")
        if self._queue.full():
            raise StoreError("the store is overloaded; retry later")
        future: asyncio.Future[AppendResult] = asyncio.get_running_loop().create_future()
        # put_nowait: queued in the order appends start, never overtaken by a later caller.
        self._queue.put_nowait(_QueuedAppend(sphere_id, draft, future))
        return await future

    async def events_after(self, sphere_id: SphereId, after: int, limit: int) -> list[Message]:
        check_limit(limit)
        rows = await self._read(_EVENTS_AFTER, (sphere_id, after, limit))
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
            rows = await self._read(_POSTS_OLDEST_FIRST, (sphere_id, after, upper, limit + 1))
        else:
            rows = await self._read(_POSTS_NEWEST_FIRST, (sphere_id, 0, upper, limit + 1))
        has_more = len(rows) > limit
        posts = [to_message(row) for row in rows[:limit]]
        if after is None:
            posts.reverse()
        return posts, has_more

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

    async def get_event(self, sphere_id: SphereId, offset: int) -> Message | None:
        rows = await self._read(
            f"SELECT {_EVENT_COLUMNS} FROM events WHERE sphere_id = ? AND stream_offset = ?",
            (sphere_id, offset),
        )
        return to_message(rows[0]) if rows else None

    # -----------------------------------------------------------------------------------------
    # Directory (users and tokens: storage.sessions_sql)

    @asynccontextmanager
    async def _accounts_read(self) -> AsyncIterator[SqlRunner]:
        yield _Runner(self._read)

    @asynccontextmanager
    async def _accounts_write(self) -> AsyncIterator[SqlRunner]:
        async with self._transaction() as db:
            yield _Runner(lambda sql, args: db.execute_fetchall(sql, args))

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
            offset=0,
            created_ms=now_ms,
        )
        async with self._transaction() as db:
            rows = await db.execute_fetchall(
                "SELECT name FROM users WHERE user_id = ?", (owner_id,)
            )
            if not rows:
                raise NotFoundError(f"no user {owner_id}")
            joined = MemberChange(Role.OWNER, MemberAction.JOINED)
            event = member_event(sphere, owner_id, owner_id, next(iter(rows))[0], joined, now_ms)
            await db.execute(
                f"INSERT INTO spheres ({_SPHERE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)",
                (sphere.sphere_id, name, privacy, sphere.epoch, event.offset, now_ms),
            )
            await db.execute(
                "INSERT INTO members (sphere_id, user_id, role, joined_ms) VALUES (?, ?, ?, ?)",
                (sphere.sphere_id, owner_id, Role.OWNER, now_ms),
            )
            await db.execute(_INSERT_FULL_EVENT, event_row(event))
        return dataclasses.replace(sphere, offset=event.offset)

    async def get_sphere(self, sphere_id: SphereId) -> SphereRecord | None:
        rows = await self._read(
            f"SELECT {_SPHERE_COLUMNS} FROM spheres WHERE sphere_id = ?", (sphere_id,)
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
        async with self._transaction() as db:
            rows = await db.execute_fetchall(_SPHERE_ACCESS, (actor_id, sphere_id))
            if not rows:
                raise NotFoundError(f"no sphere {sphere_id}")
            row = tuple(next(iter(rows)))
            sphere = to_sphere(row[:6])
            check(sphere, Role(row[6]) if row[6] is not None else None)
            event = None
            if privacy is not None and privacy is not sphere.privacy:
                event = sphere_event(sphere, actor_id, privacy, now_ms)
                await db.execute(_INSERT_FULL_EVENT, event_row(event))
            updated = dataclasses.replace(
                sphere,
                name=name if name is not None else sphere.name,
                privacy=privacy if privacy is not None else sphere.privacy,
                offset=event.offset if event is not None else sphere.offset,
            )
            await db.execute(
                "UPDATE spheres SET name = ?, privacy = ?, last_offset = ? WHERE sphere_id = ?",
                (updated.name, updated.privacy, updated.offset, sphere_id),
            )
        return updated, event

    async def sphere_access(
        self, sphere_id: SphereId, user_id: UserId
    ) -> tuple[SphereRecord | None, Role | None]:
        rows = await self._read(_SPHERE_ACCESS, (user_id, sphere_id))
        if not rows:
            return None, None
        row = tuple(rows[0])
        return to_sphere(row[:6]), Role(row[6]) if row[6] is not None else None

    async def sphere_members(
        self, sphere_id: SphereId
    ) -> tuple[SphereRecord, dict[UserId, Role]] | None:
        rows = await self._read(_SPHERE_MEMBERS, (sphere_id,))
        if not rows:
            return None
        sphere = to_sphere(tuple(rows[0])[:6])
        return sphere, {UserId(row[6]): Role(row[7]) for row in rows if row[6] is not None}

    async def heads(self, sphere_ids: Sequence[SphereId]) -> dict[SphereId, StreamPosition]:
        rows = await self._read(_HEADS, (json.dumps(list(sphere_ids)),))
        return {SphereId(row[0]): StreamPosition(row[1], row[2]) for row in rows}

    async def get_role(self, sphere_id: SphereId, user_id: UserId) -> Role | None:
        rows = await self._read(
            "SELECT role FROM members WHERE sphere_id = ? AND user_id = ?", (sphere_id, user_id)
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

        The transaction holds SQLite's write lock from its first statement, so the rows
        ``decide`` sees are the rows it changes, and no group commit runs in between.
        """
        async with self._transaction() as db:
            rows = await db.execute_fetchall(
                f"SELECT {_SPHERE_COLUMNS} FROM spheres WHERE sphere_id = ?", (sphere_id,)
            )
            if not rows:
                raise NotFoundError(f"no sphere {sphere_id}")
            sphere = to_sphere(next(iter(rows)))
            state_rows = await db.execute_fetchall(
                _MEMBERSHIP_STATE, (sphere_id, actor_id, target_id)
            )
            actor_role, target_role, owners, target_name = next(iter(state_rows))
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
                    "DELETE FROM members WHERE sphere_id = ? AND user_id = ?",
                    (sphere_id, target_id),
                )
            else:
                await db.execute(
                    """
                    INSERT INTO members (sphere_id, user_id, role, joined_ms) VALUES (?, ?, ?, ?)
                    ON CONFLICT (sphere_id, user_id) DO UPDATE SET role = excluded.role
                    """,
                    (sphere_id, target_id, change.role, now_ms),
                )
            event = member_event(sphere, actor_id, target_id, target_name, change, now_ms)
            await db.execute(_INSERT_FULL_EVENT, event_row(event))
            await db.execute(_UPDATE_COUNTER, (event.offset, sphere_id))
        return event

    async def list_members(
        self, sphere_id: SphereId, *, limit: int | None = None, after: MemberKey | None = None
    ) -> list[MemberInfo]:
        """The sphere's members, most powerful role first, then by name and id; paged."""
        page = -1 if limit is None else limit  # LIMIT -1: no limit
        if after is None:
            rows = await self._read(_MEMBERS.format(after=""), (sphere_id, page))
        else:
            rank, name, user_id = after
            rows = await self._read(
                _MEMBERS.format(after=_MEMBERS_AFTER), (sphere_id, rank, rank, name, user_id, page)
            )
        return [MemberInfo(row[0], row[1], UserKind(row[2]), Role(row[3])) for row in rows]

    async def user_spheres(
        self, user_id: UserId, *, limit: int | None = None, after: SphereKey | None = None
    ) -> list[SphereSummary]:
        """The user's spheres by name and id, with role, read marker and unread post count.

        Unread posts are those after the read marker, not deleted, by someone else.
        """
        page = -1 if limit is None else limit  # LIMIT -1: no limit
        if after is None:
            rows = await self._read(_USER_SPHERES.format(after=""), (user_id, page))
        else:
            name, sphere_id = after
            sql = _USER_SPHERES.format(after=_SPHERES_AFTER)
            rows = await self._read(sql, (user_id, name, name, sphere_id, page))
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
        rows = await self._read(_DISCOVERABLE, (limit,))
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
        async with self._transaction() as db:
            rows = await db.execute_fetchall(_SET_READ_MARKER, (offset, sphere_id, user_id))
        row = next(iter(rows), None)
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
                async with self._write_lock:
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
        """Write ``batch`` in one transaction; on failure it is rolled back, every draft fails."""
        try:
            outcomes = await self._groups.write([(q.sphere_id, q.draft) for q in batch])
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


async def _require_user(db: aiosqlite.Connection, user_id: UserId) -> None:
    if not await db.execute_fetchall("SELECT 1 FROM users WHERE user_id = ?", (user_id,)):
        raise NotFoundError(f"no user {user_id}")


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


def _commit_in_doubt(exc: sqlite3.Error) -> bool:
    """Whether a failed COMMIT may have landed all the same (see the module's docstring)."""
    code: int = getattr(exc, "sqlite_errorcode", 0)
    return code & 0xFF == _SQLITE_IOERR and code != _SQLITE_IOERR_WRITE


def _insert_group(db: sqlite3.Connection, batch: list[tuple[SphereId, Draft]]) -> list[Outcome]:
    sphere_ids = list(dict.fromkeys(sphere_id for sphere_id, _ in batch))
    counters: dict[str, int] = {
        row[0]: row[1] for row in db.execute(_SELECT_COUNTERS, (json.dumps(sphere_ids),))
    }
    keys = [draft_key(sphere_id, draft) for sphere_id, draft in batch]
    stored: dict[Key, Message] = {
        (event.sphere_id, event.author_id, event.message_id): event
        for event in map(to_message, db.execute(_SELECT_BY_KEYS, (json.dumps(keys),)))
    }
    authors = list(dict.fromkeys((sphere_id, draft.author_id) for sphere_id, draft in batch))
    members = {(row[0], row[1]) for row in db.execute(_SELECT_MEMBERSHIPS, (json.dumps(authors),))}
    committed = dict(counters)
    rows: list[tuple[Any, ...]] = []
    outcomes: list[Outcome] = []
    for (sphere_id, draft), key in zip(batch, keys, strict=True):
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
        if draft.target is not None:
            # The target may be a post of this very group: write what precedes it first.
            if rows:
                db.executemany(_INSERT_EVENT, rows)
                rows = []
            try:
                _change_target(db, sphere_id, draft)
            except TargetGoneError as exc:
                outcomes.append(exc)
                continue
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
        rows.append(
            (
                sphere_id,
                event.offset,
                draft.kind,
                draft.message_id,
                draft.author_id,
                draft.ts_ms,
                draft.body,
                draft.target,
            )
        )
        outcomes.append(AppendResult(event, duplicate=False))
    if rows:
        db.executemany(_INSERT_EVENT, rows)
    moved = [
        (last, sphere_id) for sphere_id, last in counters.items() if last != committed[sphere_id]
    ]
    if moved:
        db.executemany(_UPDATE_COUNTER, moved)
    return outcomes


def _change_target(db: sqlite3.Connection, sphere_id: SphereId, draft: Draft) -> None:
    """Apply an edit or delete to the post it targets.

    Raises:
        TargetGoneError: the target is not a live post of the sphere.
    """
    target = draft.target
    rows = db.execute(_SELECT_TARGET, (sphere_id, target)).fetchall()
    if not rows or rows[0][0] != EventKind.POST or rows[0][1]:
        raise TargetGoneError(f"no live post at offset {target} of {sphere_id}")
    if draft.kind is EventKind.EDIT:
        db.execute(_EDIT_POST, (draft.body, draft.ts_ms, sphere_id, target))
    else:
        db.execute(_DELETE_POST, (sphere_id, target))
        db.execute(_ERASE_EDITS, (sphere_id, target))


@contextmanager
def _backend_errors(action: str) -> Iterator[None]:
    """Turn a database failure into StoreError (its cause kept for the logs)."""
    try:
        yield
    except sqlite3.Error as exc:
        raise StoreError(f"{action} failed: the database is unavailable") from exc
