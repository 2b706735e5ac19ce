"""What each engine does so that erased content leaves its files (``storage.erasure``).

An erasure (a message deleted, with its edits; the text an edit replaced; a sphere deleted; an
account or expired messages) is immediate at the SQL level: the rows are updated or deleted in
the erasing transaction. The bytes are another matter; each engine keeps old versions a while.

SQLite. Every writing connection runs with ``secure_delete = ON``, so a page that SQLite
rewrites or frees is overwritten with zeros rather than left holding the old cell. The old
page images remain in the write-ahead log until it is checkpointed and reset: after an
erasing commit, and before its callers are answered, the store runs
``wal_checkpoint(TRUNCATE)`` (copies every frame to the main file, then truncates the log to
zero bytes). The checkpoint must wait for readers of old frames; it waits at most
``SCRUB_BUSY_MS``. If it cannot complete then, the write is acknowledged all the same, the
store marks a scrub pending (``ErasureStats.scrub_pending``) and retries every
``SCRUB_RETRY_S`` until one completes. ``Scrubber`` holds that state.

PostgreSQL. An UPDATE or DELETE leaves the old tuple in its page until VACUUM; a plain VACUUM
marks the space free but may leave the bytes in the page's free hole. ``compact_postgres``
rewrites every table of the store's schema into new files (``VACUUM (FULL)``: heap, TOAST,
every index) and drops the old ones; erased content leaves the relation files then. Each table
is locked exclusively while it is rewritten, so appends wait (see docs/privacy.md for the
figures); a lock that cannot be had within ``COMPACT_LOCK_TIMEOUT_S`` skips the table, rather
than queue every reader behind the compaction, and a caller may bound the rewrite itself
(``max_stall_s``: the scheduled compaction does, below the appends' statement timeout). An
advisory lock keeps two processes from compacting at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from protocol import EventKind
from storage.base import AppendResult, StoreError
from storage.erasure import CompactedTable, CompactionReport, ErasureStats
from storage.rows import Outcome
from storage.sql.queue import QueuedAppend

# How long an erasing commit waits for readers before the scrub goes to the background: a
# read statement holds its snapshot for milliseconds.
SCRUB_BUSY_MS = 100
# Interval of the background retries of a scrub that readers kept from completing.
SCRUB_RETRY_S = 1.0
# A compaction waits this long for each table's lock; past it the table is skipped.
COMPACT_LOCK_TIMEOUT_S = 2.0
# One table's rewrite; far above what 100,000 events take (docs/privacy.md, "Erasure").
COMPACT_TABLE_TIMEOUT_S = 600.0
_COMPACTION_LOCK = "cloison.compaction."
_TABLES = """
    SELECT c.relname, pg_total_relation_size(c.oid) FROM pg_class AS c
    WHERE c.relnamespace = current_schema()::regnamespace AND c.relkind = 'r'
    ORDER BY c.relname
"""


class CompactionRunningError(StoreError):
    """Another process is compacting the same store."""


# A delete erases a post's text and its edits'; an edit replaces the post's text (its edit
# row keeps only the new one), so the text it replaces is erased too.
_ERASING_KINDS = frozenset({EventKind.DELETE, EventKind.EDIT})


def erases(batch: Sequence[QueuedAppend], outcomes: Sequence[Outcome]) -> bool:
    """Whether a committed group erased content: a delete or an edit among its new events."""
    return any(
        queued.draft.kind in _ERASING_KINDS
        and isinstance(outcome, AppendResult)
        and not outcome.duplicate
        for queued, outcome in zip(batch, outcomes, strict=True)
    )


class Scrubber:
    """The SQLite store's checkpoints after erasures, and their retry while readers block.

    ``checkpoint`` runs ``wal_checkpoint(TRUNCATE)`` and answers whether it completed; it is
    called with ``lock`` (the store's write lock) held.
    """

    def __init__(
        self, checkpoint: Callable[[], Awaitable[bool]], lock: asyncio.Lock, log: logging.Logger
    ) -> None:
        self.stats = ErasureStats()
        self._checkpoint = checkpoint
        self._lock = lock
        self._log = log
        self._retry: asyncio.Task[None] | None = None
        self._closed = False

    async def scrub(self) -> bool:
        """Checkpoint now (taking the write lock); on failure, retry in the background.
        Whether it completed."""
        async with self._lock:
            return await self.scrub_locked()

    async def scrub_locked(self) -> bool:
        """Checkpoint now; the caller holds the write lock. Whether it completed."""
        if self._closed:
            return False
        started = time.monotonic()
        try:
            done = await self._checkpoint()
        # A failed checkpoint loses nothing: the erasure is committed, the retry goes on.
        except Exception:  # noqa: BLE001
            self._log.warning("a checkpoint after an erasure failed", exc_info=True)
            done = False
        if done:
            self.stats.scrub_pending = False
            self.stats.scrubs += 1
            self.stats.last_scrub_s = time.monotonic() - started
        else:
            if not self.stats.scrub_pending:
                self._log.info("readers hold the write-ahead log; the scrub will be retried")
            self.stats.scrub_pending = True
            if self._retry is None:
                self._retry = asyncio.create_task(self._retrying(), name="sqlite-scrub")
        return done

    async def compact(self, log: str) -> CompactionReport:
        """A scrub, reported as the rewrite of the write-ahead log at ``log``."""
        started = time.monotonic()
        before = await asyncio.to_thread(_size, log)
        done = await self.scrub()
        after = await asyncio.to_thread(_size, log)
        entry = CompactedTable(
            "write-ahead log",
            time.monotonic() - started,
            before,
            after,
            skipped="" if done else "readers",
        )
        return CompactionReport((entry,), entry.seconds)

    async def _retrying(self) -> None:
        try:
            while not self._closed:
                await asyncio.sleep(SCRUB_RETRY_S)
                async with self._lock:
                    if await self.scrub_locked():
                        return
        finally:
            self._retry = None

    async def aclose(self) -> None:
        """Stop retrying (closing the last connection checkpoints the log once more)."""
        self._closed = True
        if self._retry is not None:
            self._retry.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._retry


def _size(path: str) -> int:
    return os.path.getsize(path) if os.path.exists(path) else 0


async def compact_postgres(
    db: Any, stats: ErasureStats, max_stall_s: float | None
) -> CompactionReport:
    """Rewrite every table of ``db``'s current schema (``VACUUM (FULL)``), one at a time;
    each rewrite longer than ``max_stall_s`` is cancelled and its table skipped.

    ``db`` is an asyncpg connection outside any transaction, its ``search_path`` the store's.

    Raises:
        CompactionRunningError: another process holds the compaction lock.
        asyncpg.PostgresError: a rewrite failed (those done before it stand).
    """
    lock = "hashtextextended($1 || current_schema(), 0)"  # per schema: per store
    if not await db.fetchval(f"SELECT pg_try_advisory_lock({lock})", _COMPACTION_LOCK):
        raise CompactionRunningError("a compaction of this store is running elsewhere")
    started = time.monotonic()
    try:
        await db.execute(f"SET lock_timeout = '{int(COMPACT_LOCK_TIMEOUT_S * 1000)}ms'")
        bound = "0" if max_stall_s is None else f"{max(1, int(max_stall_s * 1000))}ms"
        tables = await db.fetch(_TABLES)
        done = [await _compact_table(db, name, size, bound) for name, size in tables]
    finally:
        await db.execute("RESET lock_timeout")
        await db.fetchval(f"SELECT pg_advisory_unlock({lock})", _COMPACTION_LOCK)
    report = CompactionReport(tuple(done), time.monotonic() - started)
    stats.skipped_tables = sum(1 for t in report.tables if t.skipped)
    if report.complete:
        stats.compactions += 1
        stats.last_compaction_s = report.seconds
    return report


async def _compact_table(db: Any, name: str, size: int, bound: str) -> CompactedTable:
    """``VACUUM (FULL)`` of one table, under ``statement_timeout = bound`` (``0``: none)."""
    import asyncpg  # the PostgreSQL driver loads only with the PostgreSQL store

    quoted = await db.fetchval("SELECT format('%I', $1::text)", name)
    started = time.monotonic()
    try:
        # VACUUM refuses to share its query string (an implicit transaction): SET, then run.
        await db.execute(f"SET statement_timeout = '{bound}'")
        try:
            await db.execute(f"VACUUM (FULL) {quoted}", timeout=COMPACT_TABLE_TIMEOUT_S)
        finally:
            await db.execute("RESET statement_timeout")
    except asyncpg.LockNotAvailableError:
        return CompactedTable(name, time.monotonic() - started, size, size, skipped="locked")
    except asyncpg.QueryCanceledError:  # statement_timeout: the bound on the stall
        return CompactedTable(name, time.monotonic() - started, size, size, skipped="too long")
    after = await db.fetchval("SELECT pg_total_relation_size($1::regclass)", quoted)
    return CompactedTable(name, time.monotonic() - started, size, after)
