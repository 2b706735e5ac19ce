"""Bans, mutes, transfers of ownership and the deletion of spheres in shared SQL.

``SqlModeration`` implements that part of ``storage.entry.Entry`` over the engine's hooks, on
the directory's member-change path (``SqlDirectory._change_member_in``): each act is the
member change (its ``member`` event and audit entry) and the rows of the act (a ban, a mute's
end) in one transaction, under the sphere's lock.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, fields

from protocol import BanInfo, EventKind, Message, RequestState, Role, SphereId, UserId
from storage.base import DecideMember, SphereRecord
from storage.entry import CheckDelete, EntryKey
from storage.rows import check_limit, server_message_id
from storage.sql.accounts import SqlRunner
from storage.sql.audit import audit_queries
from storage.sql.dialect import Dialect
from storage.sql.entry import SqlEntry, keyset_after

# The server audit log's action for a deleted sphere (its own log goes with it).
SPHERE_DELETED = "sphere_deleted"

_BANS = """
    SELECT b.user_id, u.name, b.banned_by, b.ts_ms, b.reason
    FROM bans AS b JOIN users AS u ON u.user_id = b.user_id
    WHERE b.sphere_id = ? {after}
    ORDER BY b.ts_ms, b.user_id{collate} LIMIT ?
"""

_TEMPLATES = {
    # -- bans and mutes --------------------------------------------------------------------
    "mutes": """
        SELECT user_id, muted_until_ms FROM members
        WHERE sphere_id = ? AND muted_until_ms IS NOT NULL
    """,
    "insert_ban": """
        INSERT INTO bans (sphere_id, user_id, banned_by, ts_ms, reason) VALUES (?, ?, ?, ?, ?)
    """,
    "delete_ban": "DELETE FROM bans WHERE sphere_id = ? AND user_id = ?",
    "bans": _BANS.replace("{after}", ""),
    "bans_after": _BANS.replace("{after}", keyset_after("b", "ts_ms", "user_id")),
    # -- deletion: every row of the sphere, its own row last but the audit entries ---------
    "delete_events": "DELETE FROM events WHERE sphere_id = ?",
    "delete_members": "DELETE FROM members WHERE sphere_id = ?",
    "delete_invitations": "DELETE FROM invitations WHERE sphere_id = ?",
    "delete_requests": "DELETE FROM join_requests WHERE sphere_id = ?",
    "delete_bans": "DELETE FROM bans WHERE sphere_id = ?",
    "delete_sphere": "DELETE FROM spheres WHERE sphere_id = ?",
    "server_audit": """
        INSERT INTO audit_log (actor, action, user_id, ts_ms, token_id, detail)
        VALUES (?, ?, NULL, ?, NULL, ?)
    """,
}


@dataclass(frozen=True, slots=True)
class ModerationQueries:
    mutes: str
    insert_ban: str
    delete_ban: str
    bans: str
    bans_after: str
    delete_events: str
    delete_members: str
    delete_invitations: str
    delete_requests: str
    delete_bans: str
    delete_sphere: str
    server_audit: str

    @property
    def sphere_rows(self) -> tuple[str, ...]:
        """What ``delete_sphere`` runs, in order (the sphere's audit entries follow)."""
        return (
            self.delete_events,
            self.delete_members,
            self.delete_invitations,
            self.delete_requests,
            self.delete_bans,
            self.delete_sphere,
        )


@functools.cache
def moderation_queries(dialect: Dialect) -> ModerationQueries:
    assert {f.name for f in fields(ModerationQueries)} == set(_TEMPLATES)
    return ModerationQueries(**{name: dialect.render(sql) for name, sql in _TEMPLATES.items()})


class SqlModeration(SqlEntry):
    """Bans, mutes, transfers and deletion: the rest of ``storage.entry.Entry``."""

    @property
    def _m(self) -> ModerationQueries:
        return moderation_queries(self._dialect)

    async def sphere_mutes(self, sphere_id: SphereId) -> dict[UserId, int]:
        rows = await self._query(self._m.mutes, sphere_id)
        return {UserId(row[0]): row[1] for row in rows}

    # -- bans and mutes ------------------------------------------------------------------------

    async def ban(
        self,
        sphere_id: SphereId,
        actor_id: UserId,
        target_id: UserId,
        reason: str | None,
        decide: DecideMember,
        *,
        now_ms: int,
    ) -> Message | None:
        e = self._m
        async with self._writing() as db:
            event = await self._change_member_in(db, sphere_id, actor_id, target_id, decide, now_ms)
            if event is None:
                return None
            await db.fetch(e.insert_ban, sphere_id, target_id, actor_id, now_ms, reason)
            await db.fetch(self._e.end_request, RequestState.REFUSED.value, sphere_id, target_id)
        return event

    async def unban(
        self,
        sphere_id: SphereId,
        actor_id: UserId,
        target_id: UserId,
        decide: DecideMember,
        *,
        now_ms: int,
    ) -> Message | None:
        async with self._writing() as db:
            event = await self._change_member_in(db, sphere_id, actor_id, target_id, decide, now_ms)
            if event is not None:
                await db.fetch(self._m.delete_ban, sphere_id, target_id)
        return event

    async def list_bans(
        self, sphere_id: SphereId, *, limit: int, after: EntryKey | None = None
    ) -> list[BanInfo]:
        check_limit(limit)
        if after is None:
            rows = await self._query(self._m.bans, sphere_id, limit)
        else:
            ts_ms, user_id = after
            rows = await self._query(self._m.bans_after, sphere_id, ts_ms, ts_ms, user_id, limit)
        return [BanInfo(UserId(r[0]), r[1], UserId(r[2]), r[3], r[4]) for r in rows]

    async def set_muted(
        self,
        sphere_id: SphereId,
        actor_id: UserId,
        target_id: UserId,
        decide: DecideMember,
        *,
        now_ms: int,
    ) -> Message | None:
        async with self._writing() as db:
            event = await self._change_member_in(db, sphere_id, actor_id, target_id, decide, now_ms)
            if event is not None:
                await db.fetch(self._q.set_muted, event.until_ms, sphere_id, target_id)
        return event

    # -- ownership and deletion ----------------------------------------------------------------

    async def change_members(
        self,
        sphere_id: SphereId,
        actor_id: UserId,
        changes: Sequence[tuple[UserId, DecideMember]],
        *,
        now_ms: int,
    ) -> list[Message]:
        events = []
        async with self._writing() as db:
            for target_id, decide in changes:
                event = await self._change_member_in(
                    db, sphere_id, actor_id, target_id, decide, now_ms
                )
                if event is not None:
                    events.append(event)
        return events

    async def delete_sphere(
        self, sphere_id: SphereId, actor_id: UserId, check: CheckDelete, *, now_ms: int
    ) -> Message:
        async with self._writing() as db:
            sphere = await self._lock_sphere(db, sphere_id)
            roles = await db.fetch(self._q.get_role, sphere_id, actor_id)
            check(sphere, Role(roles[0][0]) if roles else None)
            event = await self._delete_sphere_in(db, sphere, actor_id, actor_id, now_ms)
        await self.scrub()  # the sphere's content leaves the files before the answer
        return event

    async def _delete_sphere_in(
        self,
        db: SqlRunner,
        sphere: SphereRecord,
        actor: str,
        author_id: UserId | None,
        now_ms: int,
    ) -> Message:
        """Delete ``sphere`` and every row of it inside ``db``'s transaction, with the server's
        audit entry; returns its closing ``sphere`` event (``deleted``), by ``author_id``."""
        e = self._m
        for sql in e.sphere_rows:
            await db.fetch(sql, sphere.sphere_id)
        await db.fetch(audit_queries(self._dialect).delete_sphere, sphere.sphere_id)
        await db.fetch(e.server_audit, actor, SPHERE_DELETED, now_ms, sphere.sphere_id)
        return Message(
            sphere_id=sphere.sphere_id,
            offset=sphere.offset + 1,
            kind=EventKind.SPHERE,
            message_id=server_message_id(),
            author_id=author_id,
            ts_ms=now_ms,
            deleted=True,
            privacy=sphere.privacy,
            name=sphere.name,
        )
