"""Reading a sphere's audit log (administrators; the right is checked by the dispatcher)."""

from __future__ import annotations

from protocol import AuditList, AuditRecord, Frame, ListAudit
from server.access import Granted
from server.operations.context import Caller, Deps, Handler
from storage import SphereAuditEntry

# Why: an administrator reads the latest acts first; more is a page away.
DEFAULT_AUDIT_LIMIT = 50


def audit_record(entry: SphereAuditEntry) -> AuditRecord:
    return AuditRecord(
        seq=entry.seq,
        ts_ms=entry.ts_ms,
        actor_id=entry.actor_id,
        action=entry.action.value,
        target_id=entry.target_id,
        offset=entry.offset,
        detail=entry.detail,
    )


class AuditHandlers:
    def __init__(self, deps: Deps) -> None:
        self._store = deps.store

    def handlers(self) -> dict[type[Frame], Handler]:
        return {ListAudit: self._list_audit}

    async def _list_audit(self, caller: Caller, frame: ListAudit, grant: Granted | None) -> Frame:
        limit = frame.limit or DEFAULT_AUDIT_LIMIT
        entries = await self._store.list_sphere_audit(
            frame.sphere_id, before=frame.before, limit=limit + 1
        )
        return AuditList(
            sphere_id=frame.sphere_id,
            entries=[audit_record(e) for e in entries[:limit]],
            has_more=len(entries) > limit,
            ref=frame.ref,
        )
