"""An organisation's lifecycle in shared SQL (``storage.lifecycle.OrgLifecycle``).

Suspension writes its audit entries and session changes in its own transaction; each step of
a deletion job is one transaction that finds its work in the rows (a sphere of the
organisation still there, a member after the job's cursor), as the account deletion job's
steps do (``storage.sql.deletion``), whose sphere deletion and account deletion request it
runs inside its own transactions.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any

from protocol import OrgId, UserId
from storage.base import OPERATOR, AuditEntry
from storage.deletion import DeletionMode
from storage.lifecycle import (
    OrgDeletionJob,
    OrgDeletionState,
    OrgMemberRow,
    SphereDeletionStep,
)
from storage.organisations import OrgAction, OrgAuditEntry, OrgRecord, OrgRole
from storage.rows import check_limit, to_sphere
from storage.sql.accounts import SqlRunner
from storage.sql.deletion import SqlAccountDeletions
from storage.sql.dialect import Dialect
from storage.sql.organisations import ORG_COLUMNS, insert_org_audit, to_org

_JOB_COLUMNS = (
    "org_id, requested_ms, requested_by, mode, state, done_ms, spheres_deleted, "
    "accounts_handed_over, members_scanned"
)
# A sphere that no legal hold keeps at the time given (``LegalHoldRecord.live``).
_NOT_HELD = "(hold_since_ms IS NULL OR (hold_until_ms IS NOT NULL AND hold_until_ms <= ?))"
# Members who can no longer sign in once the organisation is suspended: no organisation of
# theirs runs, and they are not server administrators (who resume organisations).
_STRANDED = """
    SELECT m.user_id FROM org_members AS m JOIN users AS u ON u.user_id = m.user_id
    WHERE m.org_id = ? AND u.is_admin = FALSE AND NOT EXISTS (
        SELECT 1 FROM org_members AS o JOIN organisations AS g ON g.org_id = o.org_id
        WHERE o.user_id = m.user_id AND g.suspended_ms IS NULL
    )
"""
# Members that belong to this organisation only and are not server administrators: their
# accounts go with it. Parameters: org, cursor, last user of the page, org.
_ONLY_HERE = """
    SELECT m.user_id FROM org_members AS m JOIN users AS u ON u.user_id = m.user_id
    WHERE m.org_id = ? AND m.user_id > ? AND m.user_id <= ? AND u.is_admin = FALSE
      AND NOT EXISTS (
        SELECT 1 FROM org_members AS o WHERE o.user_id = m.user_id AND o.org_id <> ?
      )
    ORDER BY m.user_id
"""

_TEMPLATES = {
    "list_orgs": f"SELECT {ORG_COLUMNS} FROM organisations WHERE org_id > ? "
    "ORDER BY org_id LIMIT ?",
    "count_members": "SELECT count(*) FROM org_members WHERE org_id = ?",
    "count_spheres": "SELECT count(*) FROM spheres WHERE org_id = ?",
    "get_org": f"SELECT {ORG_COLUMNS} FROM organisations WHERE org_id = ?",
    "suspend": "UPDATE organisations SET suspended_ms = ? "
    "WHERE org_id = ? AND suspended_ms IS NULL RETURNING org_id",
    "resume": "UPDATE organisations SET suspended_ms = NULL "
    "WHERE org_id = ? AND suspended_ms IS NOT NULL RETURNING org_id",
    "stranded": _STRANDED,
    "insert_change": "INSERT INTO session_changes (kind, user_id, token_id, ts_ms, org_id) "
    "VALUES ('org_suspended', ?, NULL, ?, ?)",
    "server_audit": "INSERT INTO audit_log (actor, action, user_id, ts_ms, token_id, detail) "
    "VALUES (?, ?, ?, ?, ?, ?)",
    "members_after": """
        SELECT m.user_id, u.name, u.kind, m.role, m.joined_ms
        FROM org_members AS m JOIN users AS u ON u.user_id = m.user_id
        WHERE m.org_id = ? AND m.user_id > ? ORDER BY m.user_id LIMIT ?
    """,
    "spheres_after": "SELECT sphere_id FROM spheres WHERE org_id = ? AND sphere_id > ? "
    "AND privacy NOT IN (SELECT value FROM {list}) ORDER BY sphere_id LIMIT ?",
    "audit_after": "SELECT org_id, ts_ms, actor_id, action, target_id, detail, seq "
    "FROM org_audit WHERE org_id = ? AND seq > ? ORDER BY seq LIMIT ?",
    "job": f"SELECT {_JOB_COLUMNS} FROM org_deletions WHERE org_id = ?",
    "insert_job": """
        INSERT INTO org_deletions (org_id, requested_ms, requested_by, mode, state)
        VALUES (?, ?, ?, ?, 'pending')
    """,
    "open_jobs": "SELECT org_id FROM org_deletions WHERE state <> 'done' "
    "ORDER BY requested_ms, org_id LIMIT ?",
    "claim": """
        UPDATE org_deletions SET lease_owner = ?, lease_until_ms = ?
        WHERE org_id = ? AND state <> 'done'
          AND (lease_owner IS NULL OR lease_owner = ? OR lease_until_ms <= ?)
        RETURNING org_id
    """,
    "running": "SELECT requested_by, mode, member_cursor, members_scanned FROM org_deletions "
    "WHERE org_id = ? AND state <> 'done'",
    "next_sphere": f"SELECT sphere_id FROM spheres WHERE org_id = ? AND {_NOT_HELD} "
    "ORDER BY sphere_id LIMIT 1",
    "any_sphere": "SELECT 1 FROM spheres WHERE org_id = ? LIMIT 1",
    "count_deleted": "UPDATE org_deletions SET spheres_deleted = spheres_deleted + 1 "
    "WHERE org_id = ?",
    "member_page": "SELECT user_id FROM org_members WHERE org_id = ? AND user_id > ? "
    "ORDER BY user_id LIMIT ?",
    "only_here": _ONLY_HERE,
    "move_cursor": """
        UPDATE org_deletions SET member_cursor = ?, members_scanned = ?,
            accounts_handed_over = accounts_handed_over + ?
        WHERE org_id = ?
    """,
    "delete_members": "DELETE FROM org_members WHERE org_id = ?",
    "delete_org": "DELETE FROM organisations WHERE org_id = ?",
    "delete_audit": "DELETE FROM org_audit WHERE org_id = ?",
    "done": """
        UPDATE org_deletions
        SET state = 'done', done_ms = ?, lease_owner = NULL, lease_until_ms = NULL
        WHERE org_id = ? AND state <> 'done' RETURNING org_id
    """,
    "set_state": "UPDATE org_deletions SET state = ? WHERE org_id = ? AND state <> 'done'",
}
_LISTS = {"sqlite": "json_each(?)", "postgres": "unnest(?::text[]) AS t(value)"}


@dataclass(frozen=True, slots=True)
class LifecycleQueries:
    list_orgs: str
    count_members: str
    count_spheres: str
    get_org: str
    suspend: str
    resume: str
    stranded: str
    insert_change: str
    server_audit: str
    members_after: str
    spheres_after: str
    audit_after: str
    job: str
    insert_job: str
    open_jobs: str
    claim: str
    running: str
    next_sphere: str
    any_sphere: str
    count_deleted: str
    member_page: str
    only_here: str
    move_cursor: str
    delete_members: str
    delete_org: str
    delete_audit: str
    done: str
    set_state: str


@functools.cache
def lifecycle_queries(dialect: Dialect) -> LifecycleQueries:
    assert {f.name for f in fields(LifecycleQueries)} == set(_TEMPLATES)
    lists = _LISTS[dialect.name]
    return LifecycleQueries(
        **{name: dialect.render(sql.replace("{list}", lists)) for name, sql in _TEMPLATES.items()}
    )


def _job(row: Sequence[Any]) -> OrgDeletionJob:
    org_id, requested_ms, requested_by, mode, state, done_ms, spheres, accounts, scanned = row
    return OrgDeletionJob(
        org_id=OrgId(org_id),
        requested_ms=requested_ms,
        requested_by=requested_by,
        mode=DeletionMode(mode),
        state=OrgDeletionState(state),
        done_ms=done_ms,
        spheres_deleted=spheres,
        accounts_handed_over=accounts,
        members_scanned=bool(scanned),
    )


class SqlOrgLifecycle(SqlAccountDeletions):
    """``storage.lifecycle.OrgLifecycle`` over the engine's hooks."""

    @property
    def _l(self) -> LifecycleQueries:
        return lifecycle_queries(self._dialect)

    async def list_orgs(self, *, after: OrgId | None, limit: int) -> list[OrgRecord]:
        check_limit(limit)
        return [to_org(row) for row in await self._query(self._l.list_orgs, after or "", limit)]

    async def count_org_members(self, org_id: OrgId) -> int:
        return int((await self._query(self._l.count_members, org_id))[0][0])

    async def count_org_spheres(self, org_id: OrgId) -> int:
        return int((await self._query(self._l.count_spheres, org_id))[0][0])

    async def set_org_suspended(
        self, org_id: OrgId, suspended: bool, *, now_ms: int, actor_id: str
    ) -> tuple[OrgRecord, bool] | None:
        lq = self._l
        async with self._writing() as db:
            if suspended:
                changed = await self._suspend_in(db, org_id, actor_id, now_ms)
            else:
                changed = bool(await db.fetch(lq.resume, org_id))
                if changed:
                    await self._org_audit_in(db, org_id, actor_id, OrgAction.RESUMED, now_ms)
            rows = await db.fetch(lq.get_org, org_id)
        return (to_org(rows[0]), changed) if rows else None

    async def _suspend_in(self, db: SqlRunner, org_id: OrgId, actor_id: str, now_ms: int) -> bool:
        """Suspend the organisation in ``db``'s transaction, with its audit entries and the
        session changes that end what it held open on every node; False if it already was."""
        lq = self._l
        if not await db.fetch(lq.suspend, now_ms, org_id):
            return False
        await self._org_audit_in(db, org_id, actor_id, OrgAction.SUSPENDED, now_ms)
        if self._CHANGES_LOCK is not None:
            await db.fetch(self._CHANGES_LOCK)
        await db.fetch(lq.insert_change, "", now_ms, org_id)
        for row in await db.fetch(lq.stranded, org_id):
            await db.fetch(lq.insert_change, row[0], now_ms, org_id)
        return True

    async def _org_audit_in(
        self, db: SqlRunner, org_id: OrgId, actor_id: str, action: OrgAction, now_ms: int
    ) -> None:
        await insert_org_audit(db, OrgAuditEntry(org_id, now_ms, actor_id, action.value))
        await db.fetch(self._l.server_audit, actor_id, action.value, None, now_ms, None, org_id)

    async def org_members_after(
        self, org_id: OrgId, *, after: UserId | None, limit: int
    ) -> list[OrgMemberRow]:
        check_limit(limit)
        rows = await self._query(self._l.members_after, org_id, after or "", limit)
        return [
            OrgMemberRow(UserId(row[0]), row[1], row[2], OrgRole(row[3]), row[4]) for row in rows
        ]

    async def org_sphere_ids(
        self, org_id: OrgId, *, after: str | None, limit: int, types: tuple[str, ...] = ()
    ) -> list[str]:
        check_limit(limit)
        rows = await self._query(
            self._l.spheres_after, org_id, after or "", self._dialect.list_arg(list(types)), limit
        )
        return [str(row[0]) for row in rows]

    async def org_audit_after(
        self, org_id: OrgId, *, after: int, limit: int
    ) -> list[OrgAuditEntry]:
        check_limit(limit)
        rows = await self._query(self._l.audit_after, org_id, after, limit)
        return [OrgAuditEntry(OrgId(row[0]), *row[1:]) for row in rows]

    async def record_org_audit(self, entry: OrgAuditEntry, server: AuditEntry | None) -> None:
        async with self._writing() as db:
            await insert_org_audit(db, entry)
            if server is not None:
                await db.fetch(
                    self._l.server_audit,
                    server.actor,
                    server.action,
                    server.user_id,
                    server.ts_ms,
                    server.token_id,
                    server.detail,
                )

    # -- deletion ----------------------------------------------------------------------------

    async def request_org_deletion(
        self, org_id: OrgId, *, requested_by: str, mode: DeletionMode, now_ms: int
    ) -> tuple[OrgDeletionJob, bool] | None:
        lq = self._l
        async with self._writing() as db:
            rows = await db.fetch(lq.job, org_id)
            if rows:
                return _job(rows[0]), False
            if not await db.fetch(lq.get_org, org_id):
                return None
            await db.fetch(lq.insert_job, org_id, now_ms, requested_by, mode.value)
            await self._suspend_in(db, org_id, requested_by, now_ms)
            await self._org_audit_in(db, org_id, requested_by, OrgAction.DELETION_REQUESTED, now_ms)
            rows = await db.fetch(lq.job, org_id)
        return _job(rows[0]), True

    async def get_org_deletion(self, org_id: OrgId) -> OrgDeletionJob | None:
        rows = await self._query(self._l.job, org_id)
        return _job(rows[0]) if rows else None

    async def open_org_deletions(self, limit: int) -> list[OrgId]:
        check_limit(limit)
        return [OrgId(row[0]) for row in await self._query(self._l.open_jobs, limit)]

    async def claim_org_deletion(
        self, org_id: OrgId, *, owner: str, now_ms: int, lease_ms: int
    ) -> OrgDeletionJob | None:
        lq = self._l
        async with self._writing() as db:
            claimed = await db.fetch(lq.claim, owner, now_ms + lease_ms, org_id, owner, now_ms)
            rows = await db.fetch(lq.job, org_id) if claimed else []
        return _job(rows[0]) if rows else None

    async def delete_org_sphere(self, org_id: OrgId, *, now_ms: int) -> SphereDeletionStep:
        lq = self._l
        async with self._writing() as db:
            running = await db.fetch(lq.running, org_id)
            if not running:  # no job (or done): nothing of the organisation is deleted
                return SphereDeletionStep(None, held=False)
            rows = await db.fetch(lq.next_sphere, org_id, now_ms)
            if not rows:
                return SphereDeletionStep(None, held=bool(await db.fetch(lq.any_sphere, org_id)))
            locked = await db.fetch(self._q.lock_sphere, rows[0][0])
            sphere = to_sphere(locked[0])
            actor = running[0][0] or OPERATOR
            event = await self._delete_sphere_in(db, sphere, actor, None, now_ms)
            await db.fetch(lq.count_deleted, org_id)
        return SphereDeletionStep(event, held=False)

    async def hand_over_org_members(self, org_id: OrgId, limit: int, *, now_ms: int) -> bool:
        check_limit(limit)
        lq = self._l
        async with self._writing() as db:
            running = await db.fetch(lq.running, org_id)
            if not running or running[0][3]:
                return True
            requested_by, mode, cursor = running[0][0], DeletionMode(running[0][1]), running[0][2]
            page = [row[0] for row in await db.fetch(lq.member_page, org_id, cursor, limit)]
            handed = 0
            if page:
                for row in await db.fetch(lq.only_here, org_id, cursor, page[-1], org_id):
                    asked = await self._request_deletion_in(
                        db, UserId(row[0]), requested_by, mode, now_ms
                    )
                    handed += asked is not None and asked.created
            finished = len(page) < limit
            await db.fetch(lq.move_cursor, page[-1] if page else cursor, finished, handed, org_id)
        return finished

    async def remove_org(self, org_id: OrgId) -> bool:
        lq = self._l
        async with self._writing() as db:
            running = await db.fetch(lq.running, org_id)
            if not running or not running[0][3] or await db.fetch(lq.any_sphere, org_id):
                return False
            # The organisation's row first: its audit log may go only once it is gone.
            for sql in (lq.delete_members, lq.delete_org, lq.delete_audit):
                await db.fetch(sql, org_id)
        return True

    async def finish_org_deletion(self, org_id: OrgId, *, now_ms: int, audit: AuditEntry) -> None:
        lq = self._l
        async with self._writing() as db:
            if await db.fetch(lq.done, now_ms, org_id):
                await db.fetch(
                    lq.server_audit,
                    audit.actor,
                    audit.action,
                    audit.user_id,
                    audit.ts_ms,
                    audit.token_id,
                    audit.detail,
                )

    async def set_org_deletion_state(self, org_id: OrgId, state: OrgDeletionState) -> None:
        async with self._writing() as db:
            await db.fetch(self._l.set_state, state.value, org_id)
