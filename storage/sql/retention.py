"""Retention and legal hold in shared SQL (``storage.retention.Retention``).

``expire_events`` is one short transaction per batch: it reads the sphere's row under
``lock_sphere`` (so it is ordered with the sphere's appends and with a hold being set), reads
the oldest ``limit`` events by primary key, and removes the expired prefix of them with a
handful of range deletes. Two nodes running it at once remove the same rows once: the second
finds them gone, and the horizon only moves forward (``greatest``).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any

from protocol import Message, SphereId, UserId
from storage.audit import AuditAction, SphereAuditEntry
from storage.base import LegalHoldRecord, NotFoundError, SphereRecord
from storage.retention import ExpiryBatch, RetentionRun, RetentionStatus
from storage.rows import check_limit, event_row, sphere_event, sphere_select, to_sphere
from storage.sql.accounts import SqlAccounts, SqlRunner
from storage.sql.audit import insert_sphere_audit
from storage.sql.dialect import Dialect

_STATUS = """
    SELECT s.sphere_id, s.name, s.retention_days, s.retained_from, s.last_offset,
        (SELECT e.ts_ms FROM events AS e WHERE e.sphere_id = s.sphere_id AND e.kind = 'post'
         ORDER BY e.stream_offset LIMIT 1),
        s.retention_run_ms, s.hold_since_ms, s.hold_until_ms, s.hold_reason, s.hold_by
    FROM spheres AS s
"""
_RUN_COLUMNS = "node, started_ms, finished_ms, spheres, deleted"

_TEMPLATES = {
    "spheres": f"""
        SELECT {sphere_select()} FROM spheres
        WHERE sphere_id > ? AND (retention_days IS NOT NULL OR ? <> 0)
        ORDER BY sphere_id LIMIT ?
    """,
    # The oldest events still held, by primary key: the batch's candidates.
    "oldest": """
        SELECT stream_offset, ts_ms FROM events WHERE sphere_id = ? AND stream_offset >= ?
        ORDER BY stream_offset LIMIT ?
    """,
    "delete_events": "DELETE FROM events WHERE sphere_id = ? AND stream_offset < ?",
    # Edits above the horizon of posts below it keep their place in the stream, not their body.
    "erase_edits": """
        UPDATE events SET body = NULL, mentions = NULL
        WHERE sphere_id = ? AND kind = 'edit' AND target < ? AND body IS NOT NULL
    """,
    "delete_reactions": "DELETE FROM reactions WHERE sphere_id = ? AND target < ?",
    "delete_mentions": "DELETE FROM mentions WHERE sphere_id = ? AND stream_offset < ?",
    "delete_threads": "DELETE FROM thread_summaries WHERE sphere_id = ? AND root < ?",
    "delete_reports": "DELETE FROM reports WHERE sphere_id = ? AND target < ?",
    "move_horizon": """
        UPDATE spheres SET retained_from = {greatest}(retained_from, CAST(? AS BIGINT))
        WHERE sphere_id = ?
    """,
    "ran": "UPDATE spheres SET retention_run_ms = ? WHERE sphere_id = ? RETURNING retained_from",
    "record_run": f"""
        INSERT INTO retention_runs ({_RUN_COLUMNS}) VALUES (?, ?, ?, ?, ?)
        ON CONFLICT (node) DO UPDATE SET started_ms = excluded.started_ms,
            finished_ms = excluded.finished_ms, spheres = excluded.spheres,
            deleted = excluded.deleted
    """,
    "runs": f"SELECT {_RUN_COLUMNS} FROM retention_runs ORDER BY finished_ms DESC",
    "status_one": _STATUS + " WHERE s.sphere_id = ?",
    "status_page": _STATUS + " WHERE s.sphere_id > ? ORDER BY s.sphere_id LIMIT ?",
    "set_hold": """
        UPDATE spheres SET hold_since_ms = ?, hold_until_ms = ?, hold_reason = ?, hold_by = ?,
            last_offset = ?
        WHERE sphere_id = ?
    """,
    "server_audit": """
        INSERT INTO audit_log (actor, action, user_id, ts_ms, token_id, detail)
        VALUES (?, ?, NULL, ?, NULL, ?)
    """,
}


@dataclass(frozen=True, slots=True)
class RetentionQueries:
    spheres: str
    oldest: str
    delete_events: str
    erase_edits: str
    delete_reactions: str
    delete_mentions: str
    delete_threads: str
    delete_reports: str
    move_horizon: str
    ran: str
    record_run: str
    runs: str
    status_one: str
    status_page: str
    set_hold: str
    server_audit: str

    @property
    def below_horizon(self) -> tuple[str, ...]:
        """What a batch runs, each with (sphere_id, the new horizon)."""
        return (
            self.delete_events,
            self.erase_edits,
            self.delete_reactions,
            self.delete_mentions,
            self.delete_threads,
            self.delete_reports,
        )


@functools.cache
def retention_queries(dialect: Dialect) -> RetentionQueries:
    assert {f.name for f in fields(RetentionQueries)} == set(_TEMPLATES)
    return RetentionQueries(**{name: dialect.render(sql) for name, sql in _TEMPLATES.items()})


def expired_prefix(rows: Sequence[Sequence[Any]], before_ms: int) -> int | None:
    """The offset below which ``rows`` (offset, ts_ms; ascending) are expired: the first one
    not older than ``before_ms``, or past the last; None when the first is not expired."""
    for offset, ts_ms in rows:
        if ts_ms >= before_ms:
            return None if offset == rows[0][0] else int(offset)
    return int(rows[-1][0]) + 1 if rows else None


def _hold(row: Sequence[Any]) -> LegalHoldRecord | None:
    since_ms, until_ms, reason, set_by = row
    if since_ms is None:
        return None
    return LegalHoldRecord(since_ms, until_ms, reason or "", set_by or "")


def _status(row: Sequence[Any]) -> RetentionStatus:
    return RetentionStatus(
        sphere_id=SphereId(row[0]),
        name=row[1],
        retention_days=row[2],
        retained_from=row[3],
        offset=row[4],
        oldest_ms=row[5],
        run_ms=row[6],
        hold=_hold(row[7:11]),
    )


def _hold_detail(sphere_id: SphereId, hold: LegalHoldRecord | None) -> str:
    """The server audit's detail of a hold: the sphere, until when, and why."""
    if hold is None:
        return f"sphere={sphere_id}"
    until = "released" if hold.until_ms is None else str(hold.until_ms)
    return f"sphere={sphere_id},until={until},reason={hold.reason}"


class SqlRetention(SqlAccounts):
    """``storage.retention.Retention`` in shared SQL."""

    @property
    def _r(self) -> RetentionQueries:
        return retention_queries(self._dialect)

    async def retention_spheres(
        self, *, everyone: bool, after: SphereId | None, limit: int
    ) -> list[SphereRecord]:
        check_limit(limit)
        rows = await self._query(self._r.spheres, after or "", int(everyone), limit)
        return [to_sphere(row) for row in rows]

    async def expire_events(
        self, sphere_id: SphereId, *, before_ms: int, now_ms: int, limit: int
    ) -> ExpiryBatch:
        check_limit(limit)
        r = self._r
        async with self._writing() as db:
            rows = await db.fetch(self._q.lock_sphere, sphere_id)
            if not rows:
                raise NotFoundError(f"no sphere {sphere_id}")
            sphere = to_sphere(rows[0])
            if sphere.held(now_ms):
                return ExpiryBatch(0, sphere.retained_from, more=False, held=True)
            oldest = await db.fetch(r.oldest, sphere_id, sphere.retained_from, limit)
            horizon = expired_prefix(oldest, before_ms)
            if horizon is None:
                return ExpiryBatch(0, sphere.retained_from, more=False)
            deleted = sum(1 for offset, _ in oldest if offset < horizon)
            for sql in r.below_horizon:
                await db.fetch(sql, sphere_id, horizon)
            await db.fetch(r.move_horizon, horizon, sphere_id)
        # All ``limit`` read were expired: the next batch may find more.
        return ExpiryBatch(deleted, max(horizon, sphere.retained_from), more=deleted == limit)

    async def finish_retention(
        self, sphere_id: SphereId, *, now_ms: int, deleted: int, actor_id: str
    ) -> None:
        async with self._writing() as db:
            rows = await db.fetch(self._r.ran, now_ms, sphere_id)
            if rows and deleted:
                entry = SphereAuditEntry(
                    sphere_id,
                    now_ms,
                    UserId(actor_id),
                    AuditAction.RETENTION_APPLIED,
                    detail=f"removed={deleted},retained_from={rows[0][0]}",
                )
                await insert_sphere_audit(db, self._dialect, entry)

    async def record_retention_run(self, run: RetentionRun) -> None:
        async with self._writing() as db:
            await db.fetch(
                self._r.record_run,
                run.node,
                run.started_ms,
                run.finished_ms,
                run.spheres,
                run.deleted,
            )

    async def retention_runs(self) -> list[RetentionRun]:
        rows = await self._query(self._r.runs)
        return [RetentionRun(*row) for row in rows]

    async def retention_status(
        self, *, sphere_id: SphereId | None = None, after: SphereId | None = None, limit: int
    ) -> list[RetentionStatus]:
        check_limit(limit)
        if sphere_id is not None:
            rows = await self._query(self._r.status_one, sphere_id)
        else:
            rows = await self._query(self._r.status_page, after or "", limit)
        return [_status(row) for row in rows]

    async def set_legal_hold(
        self,
        sphere_id: SphereId,
        actor_id: UserId,
        *,
        until_ms: int | None,
        reason: str,
        now_ms: int,
    ) -> tuple[SphereRecord, Message]:
        hold = LegalHoldRecord(now_ms, until_ms, reason, actor_id)
        async with self._writing() as db:
            sphere = await self._locked(db, sphere_id)
            if sphere.hold is not None and sphere.hold.live(now_ms):
                hold = dataclasses.replace(hold, since_ms=sphere.hold.since_ms)
            changed = await self._write_hold(db, sphere, hold, actor_id, now_ms)
        return changed

    async def release_legal_hold(
        self, sphere_id: SphereId, actor_id: UserId, *, now_ms: int
    ) -> tuple[SphereRecord, Message | None]:
        async with self._writing() as db:
            sphere = await self._locked(db, sphere_id)
            if sphere.hold is None:
                return sphere, None
            updated, event = await self._write_hold(db, sphere, None, actor_id, now_ms)
        return updated, event

    async def _locked(self, db: SqlRunner, sphere_id: SphereId) -> SphereRecord:
        rows = await db.fetch(self._q.lock_sphere, sphere_id)
        if not rows:
            raise NotFoundError(f"no sphere {sphere_id}")
        return to_sphere(rows[0])

    async def _write_hold(
        self,
        db: SqlRunner,
        sphere: SphereRecord,
        hold: LegalHoldRecord | None,
        actor_id: UserId,
        now_ms: int,
    ) -> tuple[SphereRecord, Message]:
        """The hold's columns, its ``sphere`` event and both audit entries."""
        updated = dataclasses.replace(sphere, hold=hold, offset=sphere.offset + 1)
        event = sphere_event(updated, actor_id, now_ms)
        await db.fetch(self._q.insert_event, *event_row(event))
        columns = (None, None, None, None) if hold is None else dataclasses.astuple(hold)
        await db.fetch(self._r.set_hold, *columns, updated.offset, sphere.sphere_id)
        action = AuditAction.LEGAL_HOLD_RELEASED if hold is None else AuditAction.LEGAL_HOLD_SET
        until = None if hold is None else f"until={hold.until_ms or 'released'}"
        entry = SphereAuditEntry(
            sphere.sphere_id, now_ms, actor_id, action, None, event.offset, until
        )
        await insert_sphere_audit(db, self._dialect, entry)
        detail = _hold_detail(sphere.sphere_id, hold)
        await db.fetch(self._r.server_audit, actor_id, action.value, now_ms, detail)
        return updated, event
