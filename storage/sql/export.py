"""``storage.export.Export`` in shared SQL: a user's rows, page by page.

Keysets start below every key (``''`` for text, ``-1`` for offsets), so the first page and
the next ones are one statement. ``author_id || ''`` keeps a window of ``authored_events`` on
the primary key's range of offsets: on the idempotency index instead, each window would read
every event of the author in the sphere.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, fields

from protocol import Message, SphereId, UserId
from storage.audit import SphereAuditEntry
from storage.base import AuditEntry
from storage.export import (
    AuthoredSpan,
    InvitationRecord,
    JoinRequestRecord,
    ReactionKey,
    ReactionRecord,
)
from storage.rows import EVENT_COLUMNS, check_limit, to_message
from storage.sql.accounts import SqlAccounts
from storage.sql.audit import insert_sphere_audit, sphere_audit_entry
from storage.sql.dialect import Dialect

_WRITINGS = "('post', 'edit', 'delete')"
# The kinds a history page leaves out (they show in the state of their post).
_NOT_IN_HISTORY = "('edit', 'delete', 'react', 'unreact', 'pin', 'unpin')"
_SPHERE_AUDIT = "seq, sphere_id, ts_ms, actor_id, action, target_id, stream_offset, detail"
_SERVER_AUDIT = "actor, action, user_id, ts_ms, token_id, detail, seq"
# A report's entry is about the post's author but names its reporter: it is the reporter's
# (and the moderators'), never the reported author's.
_BY_OR_ABOUT = "(actor_id = ? OR (target_id = ? AND action <> 'post_reported'))"

_TEMPLATES = {
    # One probe of the idempotency index (sphere_id, author_id, ...) per sphere.
    "authored_spheres": """
        SELECT s.sphere_id FROM spheres AS s
        WHERE s.sphere_id > ? AND EXISTS (
            SELECT 1 FROM events AS e WHERE e.sphere_id = s.sphere_id AND e.author_id = ?
        )
        ORDER BY s.sphere_id LIMIT ?
    """,
    # The author's events through the idempotency index (their offsets are in it), each kind
    # by its primary key: the work is the author's events, not the sphere's.
    "authored_span": f"""
        SELECT min(a.stream_offset), max(a.stream_offset),
               count(CASE WHEN e.kind IN {_WRITINGS} THEN 1 END),
               (SELECT count(*) FROM reactions WHERE sphere_id = ? AND user_id = ?)
        FROM events AS a
        JOIN events AS e ON e.sphere_id = a.sphere_id AND e.stream_offset = a.stream_offset
        WHERE a.sphere_id = ? AND a.author_id = ?
    """,
    "authored_events": f"""
        SELECT {EVENT_COLUMNS} FROM events
        WHERE sphere_id = ? AND stream_offset > ? AND stream_offset <= ?
          AND author_id || '' = ? AND kind IN {_WRITINGS}
        ORDER BY stream_offset LIMIT ?
    """,
    "user_reactions": """
        SELECT target, emoji, stream_offset FROM reactions
        WHERE sphere_id = ? AND user_id = ? AND (target, emoji) > (?, ?)
        ORDER BY target, emoji LIMIT ?
    """,
    "user_invitations": """
        SELECT invitation_id, sphere_id, inviter_id, invitee_id, role, created_ms, expires_ms,
               state
        FROM invitations WHERE (inviter_id = ? OR invitee_id = ?) AND invitation_id > ?
        ORDER BY invitation_id LIMIT ?
    """,
    "user_join_requests": """
        SELECT sphere_id, user_id, comment, created_ms, state FROM join_requests
        WHERE user_id = ? AND sphere_id > ? ORDER BY sphere_id LIMIT ?
    """,
    "user_audit": f"""
        SELECT {_SERVER_AUDIT} FROM audit_log
        WHERE (actor = ? OR user_id = ?) AND seq > ? ORDER BY seq LIMIT ?
    """,
    "user_sphere_audit": f"""
        SELECT {_SPHERE_AUDIT} FROM sphere_audit
        WHERE {_BY_OR_ABOUT} AND seq > ? ORDER BY seq LIMIT ?
    """,
    "sphere_audit_after": f"""
        SELECT {_SPHERE_AUDIT} FROM sphere_audit
        WHERE sphere_id = ? AND seq > ? ORDER BY seq LIMIT ?
    """,
    "count_user_rows": f"""
        SELECT
            (SELECT count(*) FROM invitations WHERE inviter_id = ? OR invitee_id = ?),
            (SELECT count(*) FROM join_requests WHERE user_id = ?),
            (SELECT count(*) FROM audit_log WHERE actor = ? OR user_id = ?),
            (SELECT count(*) FROM sphere_audit WHERE {_BY_OR_ABOUT})
    """,
    "count_history": f"""
        SELECT count(*) FROM events {{history_index}}
        WHERE sphere_id = ? AND kind NOT IN {_NOT_IN_HISTORY}
          AND stream_offset >= ? AND stream_offset <= ?
    """,
    "insert_audit": """
        INSERT INTO audit_log (actor, action, user_id, ts_ms, token_id, detail)
        VALUES (?, ?, ?, ?, ?, ?)
    """,
}


@dataclass(frozen=True, slots=True)
class ExportQueries:
    authored_spheres: str
    authored_span: str
    authored_events: str
    user_reactions: str
    user_invitations: str
    user_join_requests: str
    user_audit: str
    user_sphere_audit: str
    sphere_audit_after: str
    count_user_rows: str
    count_history: str
    insert_audit: str


@functools.cache
def export_queries(dialect: Dialect) -> ExportQueries:
    assert {f.name for f in fields(ExportQueries)} == set(_TEMPLATES)
    return ExportQueries(**{name: dialect.render(sql) for name, sql in _TEMPLATES.items()})


class SqlExport(SqlAccounts):
    """The reads of ``storage.export.Export``, over the engine's hooks."""

    @property
    def _x(self) -> ExportQueries:
        return export_queries(self._dialect)

    async def authored_spheres(
        self, user_id: UserId, *, after: SphereId | None, limit: int
    ) -> list[SphereId]:
        check_limit(limit)
        rows = await self._query(self._x.authored_spheres, after or "", user_id, limit)
        return [SphereId(row[0]) for row in rows]

    async def authored_span(self, sphere_id: SphereId, user_id: UserId) -> AuthoredSpan | None:
        rows = await self._query(self._x.authored_span, sphere_id, user_id, sphere_id, user_id)
        first, last, writings, reactions = rows[0]
        if first is None:
            return None
        return AuthoredSpan(sphere_id, first, last, writings, reactions)

    async def authored_events(
        self, sphere_id: SphereId, user_id: UserId, *, after: int, until: int, limit: int
    ) -> list[Message]:
        check_limit(limit)
        rows = await self._query(self._x.authored_events, sphere_id, after, until, user_id, limit)
        return [to_message(row) for row in rows]

    async def user_reactions(
        self, sphere_id: SphereId, user_id: UserId, *, after: ReactionKey | None, limit: int
    ) -> list[ReactionRecord]:
        check_limit(limit)
        target, emoji = after or (-1, "")
        rows = await self._query(self._x.user_reactions, sphere_id, user_id, target, emoji, limit)
        return [ReactionRecord(sphere_id, row[0], row[1], row[2]) for row in rows]

    async def user_invitations(
        self, user_id: UserId, *, after: str | None, limit: int
    ) -> list[InvitationRecord]:
        check_limit(limit)
        rows = await self._query(self._x.user_invitations, user_id, user_id, after or "", limit)
        return [
            InvitationRecord(
                invitation_id=row[0],
                sphere_id=SphereId(row[1]),
                inviter_id=UserId(row[2]),
                invitee_id=UserId(row[3]),
                role=row[4],
                created_ms=row[5],
                expires_ms=row[6],
                state=row[7],
            )
            for row in rows
        ]

    async def user_join_requests(
        self, user_id: UserId, *, after: SphereId | None, limit: int
    ) -> list[JoinRequestRecord]:
        check_limit(limit)
        rows = await self._query(self._x.user_join_requests, user_id, after or "", limit)
        return [
            JoinRequestRecord(SphereId(row[0]), UserId(row[1]), row[2], row[3], row[4])
            for row in rows
        ]

    async def user_audit(self, user_id: UserId, *, after: int, limit: int) -> list[AuditEntry]:
        check_limit(limit)
        rows = await self._query(self._x.user_audit, user_id, user_id, after, limit)
        return [
            AuditEntry(row[0], row[1], row[2], row[3], row[4], row[5], seq=row[6]) for row in rows
        ]

    async def user_sphere_audit(
        self, user_id: UserId, *, after: int, limit: int
    ) -> list[SphereAuditEntry]:
        check_limit(limit)
        rows = await self._query(self._x.user_sphere_audit, user_id, user_id, after, limit)
        return [sphere_audit_entry(row) for row in rows]

    async def sphere_audit_after(
        self, sphere_id: SphereId, *, after: int, limit: int
    ) -> list[SphereAuditEntry]:
        check_limit(limit)
        rows = await self._query(self._x.sphere_audit_after, sphere_id, after, limit)
        return [sphere_audit_entry(row) for row in rows]

    async def count_user_rows(self, user_id: UserId) -> dict[str, int]:
        rows = await self._query(self._x.count_user_rows, *[user_id] * 7)
        invitations, requests, server_audit, sphere_audit = rows[0]
        return {
            "invitations": invitations,
            "join_requests": requests,
            "server_audit": server_audit,
            "sphere_audit": sphere_audit,
        }

    async def count_history(self, sphere_id: SphereId, *, floor: int, until: int) -> int:
        rows = await self._query(self._x.count_history, sphere_id, floor, until)
        return int(rows[0][0])

    async def record_audit(self, entry: AuditEntry) -> None:
        async with self._writing() as db:
            await db.fetch(
                self._x.insert_audit,
                entry.actor,
                entry.action,
                entry.user_id,
                entry.ts_ms,
                entry.token_id,
                entry.detail,
            )

    async def record_sphere_audit(self, entry: SphereAuditEntry) -> None:
        async with self._writing() as db:
            await insert_sphere_audit(db, self._dialect, entry)
