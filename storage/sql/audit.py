"""The per-sphere audit log in shared SQL: ``insert_sphere_audit`` writes an entry inside the
caller's transaction; ``SqlSphereAudit`` reads them."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any

from protocol import SphereId, UserId
from storage.audit import AuditAction, SphereAuditEntry
from storage.rows import check_limit
from storage.sql.accounts import SqlAccounts, SqlRunner
from storage.sql.dialect import Dialect

_COLUMNS = "sphere_id, ts_ms, actor_id, action, target_id, stream_offset, detail"

_TEMPLATES = {
    "insert": f"INSERT INTO sphere_audit ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
    "newest": f"""
        SELECT seq, {_COLUMNS} FROM sphere_audit WHERE sphere_id = ?
        ORDER BY seq DESC LIMIT ?
    """,
    "before": f"""
        SELECT seq, {_COLUMNS} FROM sphere_audit WHERE sphere_id = ? AND seq < ?
        ORDER BY seq DESC LIMIT ?
    """,
    # delete_sphere: after the sphere's row (the trigger refuses it before).
    "delete_sphere": "DELETE FROM sphere_audit WHERE sphere_id = ?",
}


@dataclass(frozen=True, slots=True)
class AuditQueries:
    insert: str
    newest: str
    before: str
    delete_sphere: str


@functools.cache
def audit_queries(dialect: Dialect) -> AuditQueries:
    assert {f.name for f in fields(AuditQueries)} == set(_TEMPLATES)
    return AuditQueries(**{name: dialect.render(sql) for name, sql in _TEMPLATES.items()})


async def insert_sphere_audit(db: SqlRunner, dialect: Dialect, entry: SphereAuditEntry) -> None:
    """Write ``entry`` in the transaction ``db`` runs (the one of the act it records)."""
    await db.fetch(
        audit_queries(dialect).insert,
        entry.sphere_id,
        entry.ts_ms,
        entry.actor_id,
        entry.action.value,
        entry.target_id,
        entry.offset,
        entry.detail,
    )


def sphere_audit_entry(row: Sequence[Any]) -> SphereAuditEntry:
    """A row of ``sphere_audit`` (its columns in table order) as a record."""
    seq, sphere_id, ts_ms, actor_id, action, target_id, offset, detail = row
    return SphereAuditEntry(
        sphere_id=SphereId(sphere_id),
        ts_ms=ts_ms,
        actor_id=UserId(actor_id),
        action=AuditAction(action),
        target_id=UserId(target_id) if target_id is not None else None,
        offset=offset,
        detail=detail,
        seq=seq,
    )


class SqlSphereAudit(SqlAccounts):
    """``storage.audit.SphereAudit`` in shared SQL."""

    async def list_sphere_audit(
        self, sphere_id: SphereId, *, before: int | None, limit: int
    ) -> list[SphereAuditEntry]:
        check_limit(limit)
        q = audit_queries(self._dialect)
        if before is None:
            rows = await self._query(q.newest, sphere_id, limit)
        else:
            rows = await self._query(q.before, sphere_id, before, limit)
        return [sphere_audit_entry(row) for row in rows]
