"""A sphere's archive: its settings, members, events from the exporter's floor of the history
promise up to where the ``export_info`` that planned it ends, and its audit log.

``server.privacy.handlers`` answers the request (``export_sphere``); over HTTP the route
streams ``sphere_archive`` of that answer.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import AsyncIterator
from dataclasses import replace

from protocol import (
    MAX_OFFSET,
    CloisonError,
    ErrorCode,
    ExportInfo,
    SphereId,
    UserId,
)
from server.access import SPHERE_NOT_FOUND
from server.privacy.archive import Row
from server.privacy.streaming import (
    FORMAT,
    PAGE_ROWS,
    SCHEMA_VERSION,
    ArchiveResponse,
    ExportSlots,
    Member,
    Pages,
    archive_headers,
    audit_detail,
    message_line,
    sphere_audit_line,
    stamp,
    start,
    stream_archive,
)
from storage import AuditAction, SphereAuditEntry, SphereRecord, Store, member_key


class SpherePlan:
    """The members of a sphere's archive, read page by page."""

    def __init__(self, store: Store, sphere: SphereRecord, floor: int) -> None:
        self._store = store
        self.sphere = sphere
        self.floor = floor

    async def settings(self) -> Pages:
        s = self.sphere
        yield [
            {
                "sphere_id": s.sphere_id,
                "name": s.name,
                "privacy": s.privacy.value,
                "epoch": s.epoch,
                "created_ms": s.created_ms,
                "listed": s.listed,
                "join_policy": s.join_policy.value,
                "history": s.history.value,
                "charter_version": s.charter_version,
            }
        ]

    async def members(self) -> Pages:
        after = None
        while page := await self._store.list_members(
            self.sphere.sphere_id, limit=PAGE_ROWS, after=after
        ):
            yield [
                {"user_id": m.user_id, "name": m.name, "kind": m.kind.value, "role": m.role.value}
                for m in page
            ]
            after = member_key(page[-1])

    async def events(self) -> Pages:
        """The history as its reader reads it, from their floor up to the head then."""
        after = max(self.floor - 1, 0)
        until = self.sphere.offset
        while after < until:
            page, _ = await self._store.history(
                self.sphere.sphere_id,
                before=min(until + 1, MAX_OFFSET),
                after=after,
                limit=PAGE_ROWS,
                floor=self.floor,
            )
            if not page:
                return
            yield page
            after = page[-1].offset

    async def audit(self) -> Pages:
        seq = 0
        while page := await self._store.sphere_audit_after(
            self.sphere.sphere_id, after=seq, limit=PAGE_ROWS
        ):
            yield [sphere_audit_line(entry) for entry in page]
            seq = page[-1].seq


async def sphere_archive(
    store: Store, slots: ExportSlots, info: ExportInfo, actor_id: UserId, *, now_ms: int
) -> ArchiveResponse:
    """The response streaming the archive ``info`` describes, audited in the sphere's log.

    Raises:
        CloisonError: ``not_found`` when the sphere was deleted since; ``unavailable`` when
            ``MAX_RUNNING_EXPORTS`` exports are running.
    """
    sphere = await store.get_sphere(SphereId(info.sphere_id))
    if sphere is None:
        raise CloisonError(SPHERE_NOT_FOUND, code=ErrorCode.NOT_FOUND)
    # The archive ends where ``info`` said, whatever was appended since.
    plan = SpherePlan(store, replace(sphere, offset=min(sphere.offset, info.until)), info.floor)
    counts = {
        "sphere.json": 1,
        "members.jsonl": info.members,
        "events.jsonl": info.events,
        "audit.jsonl": info.audit_entries + 1,  # with the entry of this export
    }

    async def audit() -> dict[str, int]:
        entry = SphereAuditEntry(
            sphere.sphere_id,
            now_ms,
            actor_id,
            AuditAction.SPHERE_EXPORTED,
            offset=info.until,
            detail=audit_detail(counts),
        )
        await store.record_sphere_audit(entry)
        return counts

    release = await start(slots, audit)
    members = [
        Member("sphere.json", plan.settings),
        Member("members.jsonl", plan.members),
        Member("events.jsonl", plan.events, message_line),
        Member("audit.jsonl", plan.audit),
    ]

    def manifest(written: dict[str, int]) -> Row:
        return {
            "format": FORMAT,
            "schema_version": SCHEMA_VERSION,
            "kind": "sphere",
            "sphere_id": sphere.sphere_id,
            "requested_by": actor_id,
            "floor": info.floor,
            "until": info.until,
            "truncated_before": info.truncated_before,
            "generated_ms": now_ms,
            "server_version": importlib.metadata.version("cloison"),
            "announced": counts,
            "counts": written,
        }

    chunks: AsyncIterator[bytes] = stream_archive(members, manifest, f"sphere {sphere.sphere_id}")
    filename = f"cloison-sphere-{sphere.sphere_id}-{stamp(now_ms)}.zip"
    return ArchiveResponse(chunks, archive_headers(filename, counts), release)
