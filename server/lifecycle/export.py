"""Everything an organisation owns, as one zip archive streamed as it is written: its
portability right (docs/privacy.md, "Organisation export").

The archive holds ``organisation.json`` (its record and policies), ``members.jsonl``,
``audit.jsonl`` (its audit log), and per sphere ``spheres/<sphere_id>/`` with the members
a sphere's own archive holds (``server.privacy.sphere_export.SpherePlan``: settings, members,
its whole history, its audit log). Private conversations (spheres of type ``direct``) are left
out unless the organisation's policy ``export_private_messages`` is true; the manifest says
which, and how many were left out.

The export is planned, then streamed, like every export (``server.privacy.streaming``): the
plan counts each member and is audited in the organisation's log, the server's, and in each
exported sphere's own log (its members see that its history left in an export).
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson

from protocol import Privacy, SphereId, UserId
from server.privacy.archive import Row
from server.privacy.sphere_export import SpherePlan
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
    count_lines,
    message_line,
    stamp,
    start,
    stream_archive,
)
from storage import (
    AuditAction,
    AuditEntry,
    OrgAction,
    OrgAuditEntry,
    OrgRecord,
    SphereAuditEntry,
    SphereRecord,
    Store,
)

DIRECT = Privacy.DIRECT.value  # private conversations


class OrgExport:
    def __init__(self, store: Store, org: OrgRecord, *, actor: str, now_ms: int) -> None:
        self._store = store
        self._org = org
        self._actor = actor
        self._now_ms = now_ms
        self._private = org.policies.export_private_messages
        self._spheres: list[SphereRecord] = []
        self._left_out = 0
        self.counts: dict[str, int] = {}

    @property
    def filename(self) -> str:
        return f"cloison-organisation-{self._org.org_id}-{stamp(self._now_ms)}.zip"

    async def plan(self) -> dict[str, int]:
        """Fix the spheres and where each ends, count what the archive holds, audit it."""
        store, org_id = self._store, self._org.org_id
        skip = () if self._private else (DIRECT,)
        after: str | None = None
        while page := await store.org_sphere_ids(org_id, after=after, limit=PAGE_ROWS, types=skip):
            for sphere_id in page:
                sphere = await store.get_sphere(SphereId(sphere_id))
                if sphere is not None:
                    self._spheres.append(sphere)
            after = page[-1]
        self._left_out = await store.count_org_spheres(org_id) - len(self._spheres)
        counts = {
            "organisation.json": 1,
            "members.jsonl": await count_lines(self._members()),
            "audit.jsonl": await count_lines(self._audit()) + 1,  # with this export's entry
        }
        for sphere in self._spheres:
            plan = SpherePlan(store, sphere, 0)
            prefix = _prefix(sphere)
            counts[prefix + "sphere.json"] = 1
            counts[prefix + "members.jsonl"] = await count_lines(plan.members())
            counts[prefix + "events.jsonl"] = await store.count_history(
                sphere.sphere_id, floor=0, until=sphere.offset
            )
            counts[prefix + "audit.jsonl"] = await count_lines(plan.audit()) + 1
        self.counts = counts
        summary = {
            "spheres": len(self._spheres),
            "members": counts["members.jsonl"],
            "events": sum(n for name, n in counts.items() if name.endswith("/events.jsonl")),
            "left_out": self._left_out,
        }
        detail = audit_detail(summary)
        for sphere in self._spheres:
            entry = SphereAuditEntry(
                sphere.sphere_id,
                self._now_ms,
                UserId(self._actor),
                AuditAction.SPHERE_EXPORTED,
                offset=sphere.offset,
                detail=f"organisation export of {org_id}",
            )
            await store.record_sphere_audit(entry)
        await store.record_org_audit(
            OrgAuditEntry(
                org_id, self._now_ms, self._actor, OrgAction.EXPORTED.value, detail=detail
            ),
            AuditEntry(self._actor, OrgAction.EXPORTED.value, None, self._now_ms, detail=org_id),
        )
        return counts

    def chunks(self) -> AsyncIterator[bytes]:
        members = [
            Member("organisation.json", self._organisation),
            Member("members.jsonl", self._members),
            Member("audit.jsonl", self._audit),
        ]
        for sphere in self._spheres:
            plan = SpherePlan(self._store, sphere, 0)
            prefix = _prefix(sphere)
            members += [
                Member(prefix + "sphere.json", plan.settings),
                Member(prefix + "members.jsonl", plan.members),
                Member(prefix + "events.jsonl", plan.events, message_line),
                Member(prefix + "audit.jsonl", plan.audit),
            ]
        return stream_archive(members, self._manifest, f"organisation {self._org.org_id}")

    def _manifest(self, written: dict[str, int]) -> Row:
        return {
            "format": FORMAT,
            "schema_version": SCHEMA_VERSION,
            "kind": "organisation",
            "org_id": self._org.org_id,
            "requested_by": self._actor,
            "generated_ms": self._now_ms,
            "server_version": importlib.metadata.version("cloison"),
            # Whether private conversations are in it, by the policy, and how many are not.
            "private_messages": "included" if self._private else "excluded",
            "spheres": len(self._spheres),
            "spheres_left_out": self._left_out,
            "announced": self.counts,
            "counts": written,
        }

    async def _organisation(self) -> Pages:
        org = self._org
        policies: dict[str, Any] = orjson.loads(org.policies.to_json())
        yield [
            {
                "org_id": org.org_id,
                "name": org.name,
                "created_ms": org.created_ms,
                "suspended_ms": org.suspended_ms,
                "policies": policies,
            }
        ]

    async def _members(self) -> Pages:
        after = None
        while page := await self._store.org_members_after(
            self._org.org_id, after=after, limit=PAGE_ROWS
        ):
            yield [
                {
                    "user_id": m.user_id,
                    "name": m.name,
                    "kind": m.kind,
                    "role": m.role.value,
                    "joined_ms": m.joined_ms,
                }
                for m in page
            ]
            after = page[-1].user_id

    async def _audit(self) -> Pages:
        seq = 0
        while page := await self._store.org_audit_after(
            self._org.org_id, after=seq, limit=PAGE_ROWS
        ):
            yield [
                {
                    "seq": e.seq,
                    "ts_ms": e.ts_ms,
                    "actor_id": e.actor_id,
                    "action": e.action,
                    "target_id": e.target_id,
                    "detail": e.detail,
                }
                for e in page
            ]
            seq = page[-1].seq


def _prefix(sphere: SphereRecord) -> str:
    return f"spheres/{sphere.sphere_id}/"


async def org_archive(
    store: Store, slots: ExportSlots, org: OrgRecord, actor: str, *, now_ms: int
) -> ArchiveResponse:
    """The response streaming ``org``'s archive, planned and audited first.

    Raises:
        CloisonError: ``unavailable`` when ``MAX_RUNNING_EXPORTS`` exports are running.
    """
    export = OrgExport(store, org, actor=actor, now_ms=now_ms)
    release: Callable[[], None] = await start(slots, export.plan)
    return ArchiveResponse(
        export.chunks(), archive_headers(export.filename, export.counts), release
    )
