"""Organisations in shared SQL (``storage.organisations.Organisations``).

Each change is one transaction of ``_writing()`` that also writes the ``org_audit`` entry.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from typing import Any

from protocol import CloisonError, ErrorCode, OrgId, UserId
from storage.base import NotFoundError
from storage.organisations import (
    OrgAction,
    OrgAuditEntry,
    OrgMembership,
    OrgPolicies,
    OrgRecord,
    OrgRole,
)
from storage.rows import check_limit
from storage.sql.accounts import SqlAccounts, SqlRunner

ORG_COLUMNS = "org_id, name, created_ms, suspended_ms, policies"
_O_COLUMNS = ", ".join("o." + c for c in ORG_COLUMNS.split(", "))
_AUDIT_COLUMNS = "org_id, ts_ms, actor_id, action, target_id, detail"
_INSERT_AUDIT = f"INSERT INTO org_audit ({_AUDIT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)"


class OrgExistsError(CloisonError):
    code = ErrorCode.CONFLICT


class SqlOrganisations(SqlAccounts):
    async def create_org(
        self,
        name: str,
        *,
        now_ms: int,
        actor_id: str,
        manager_id: UserId | None = None,
        org_id: OrgId | None = None,
    ) -> OrgRecord:
        org = OrgRecord(org_id or OrgId("o_" + secrets.token_urlsafe(9)), name, now_ms)
        async with self._writing() as db:
            created = await db.fetch(
                f"INSERT INTO organisations ({ORG_COLUMNS}) VALUES (?, ?, ?, NULL, ?) "
                "ON CONFLICT (org_id) DO NOTHING RETURNING org_id",
                org.org_id,
                org.name,
                now_ms,
                org.policies.to_json(),
            )
            if not created:
                raise OrgExistsError(f"the organisation {org.org_id} exists already")
            await insert_org_audit(
                db, OrgAuditEntry(org.org_id, now_ms, actor_id, OrgAction.CREATED)
            )
            if manager_id is not None:
                await _add_member(db, org.org_id, manager_id, OrgRole.MANAGER, now_ms, actor_id)
        return org

    async def get_org(self, org_id: OrgId) -> OrgRecord | None:
        rows = await self._query(
            self._dialect.render(f"SELECT {ORG_COLUMNS} FROM organisations WHERE org_id = ?"),
            org_id,
        )
        return to_org(rows[0]) if rows else None

    async def org_role(self, org_id: OrgId, user_id: UserId) -> OrgRole | None:
        rows = await self._query(
            self._dialect.render("SELECT role FROM org_members WHERE org_id = ? AND user_id = ?"),
            org_id,
            user_id,
        )
        return OrgRole(rows[0][0]) if rows else None

    async def user_orgs(self, user_id: UserId) -> list[OrgMembership]:
        rows = await self._query(
            self._dialect.render(
                f"SELECT {_O_COLUMNS}, m.role, m.joined_ms FROM org_members AS m "
                "JOIN organisations AS o ON o.org_id = m.org_id "
                "WHERE m.user_id = ? ORDER BY m.org_id"
            ),
            user_id,
        )
        return [OrgMembership(to_org(row[:5]), user_id, OrgRole(row[5]), row[6]) for row in rows]

    async def add_org_member(
        self,
        org_id: OrgId,
        user_id: UserId,
        role: OrgRole,
        *,
        now_ms: int,
        actor_id: str,
    ) -> bool:
        async with self._writing() as db:
            if not await db.fetch("SELECT 1 FROM organisations WHERE org_id = ?", org_id):
                raise NotFoundError(f"no organisation {org_id}")
            return await _add_member(db, org_id, user_id, role, now_ms, actor_id)

    async def list_org_audit(
        self, org_id: OrgId, *, before: int | None, limit: int
    ) -> list[OrgAuditEntry]:
        check_limit(limit)
        rows = await self._query(
            self._dialect.render(
                f"SELECT {_AUDIT_COLUMNS}, seq FROM org_audit WHERE org_id = ? AND seq < ? "
                "ORDER BY seq DESC LIMIT ?"
            ),
            org_id,
            2**62 if before is None else before,
            limit,
        )
        return [OrgAuditEntry(OrgId(row[0]), *row[1:]) for row in rows]


async def _add_member(
    db: SqlRunner, org_id: OrgId, user_id: UserId, role: OrgRole, now_ms: int, actor_id: str
) -> bool:
    """Insert the membership row and its audit entry; False if the user is a member already."""
    if not await db.fetch("SELECT 1 FROM users WHERE user_id = ?", user_id):
        raise NotFoundError(f"no user {user_id}")
    added = await db.fetch(
        "INSERT INTO org_members (org_id, user_id, role, joined_ms) VALUES (?, ?, ?, ?) "
        "ON CONFLICT (org_id, user_id) DO NOTHING RETURNING user_id",
        org_id,
        user_id,
        role.value,
        now_ms,
    )
    if added:
        entry = OrgAuditEntry(org_id, now_ms, actor_id, OrgAction.MEMBER_ADDED, user_id, role.value)
        await insert_org_audit(db, entry)
    return bool(added)


async def insert_org_audit(db: SqlRunner, entry: OrgAuditEntry) -> None:
    """Write one organisation audit entry in the caller's transaction."""
    await db.fetch(
        _INSERT_AUDIT,
        entry.org_id,
        entry.ts_ms,
        entry.actor_id,
        entry.action,
        entry.target_id,
        entry.detail,
    )


def to_org(row: Sequence[Any]) -> OrgRecord:
    org_id, name, created_ms, suspended_ms, policies = row
    return OrgRecord(OrgId(org_id), name, created_ms, suspended_ms, OrgPolicies.from_json(policies))
