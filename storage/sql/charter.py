"""Sphere charters in shared SQL (``storage.charter.Charters``): the text and version on the
sphere's row, each member's accepted version on their row."""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass, fields

from protocol import Message, Role, SphereId, UserId
from storage.audit import AuditAction, SphereAuditEntry
from storage.base import NotFoundError
from storage.charter import Charter, CharterNotCurrentError, CheckCharter
from storage.rows import event_row, sphere_event, to_sphere
from storage.sql.accounts import SqlAccounts
from storage.sql.audit import insert_sphere_audit
from storage.sql.dialect import Dialect

_TEMPLATES = {
    "get": "SELECT charter_version, charter_text FROM spheres WHERE sphere_id = ?",
    # A cleared charter keeps its version counting and reads as none (text NULL).
    "set": """
        UPDATE spheres SET charter_version = charter_version + 1, charter_text = ?,
            last_offset = last_offset + 1
        WHERE sphere_id = ?
        RETURNING charter_version
    """,
    "accept": """
        UPDATE members SET charter_accepted = ? WHERE sphere_id = ? AND user_id = ?
        RETURNING user_id
    """,
}


@dataclass(frozen=True, slots=True)
class CharterQueries:
    get: str
    set: str
    accept: str


@functools.cache
def charter_queries(dialect: Dialect) -> CharterQueries:
    assert {f.name for f in fields(CharterQueries)} == set(_TEMPLATES)
    return CharterQueries(**{name: dialect.render(sql) for name, sql in _TEMPLATES.items()})


def _charter(version: int, text: str | None) -> Charter:
    return Charter(version, text) if text else Charter(0, "")


class SqlCharters(SqlAccounts):
    """``storage.charter.Charters`` in shared SQL."""

    async def get_charter(self, sphere_id: SphereId) -> Charter | None:
        rows = await self._query(charter_queries(self._dialect).get, sphere_id)
        return _charter(*rows[0]) if rows else None

    async def set_charter(
        self, sphere_id: SphereId, actor_id: UserId, text: str, check: CheckCharter, *, now_ms: int
    ) -> Message:
        """Set the charter's next version, under the sphere's lock (see ``Charters``)."""
        q, cq = self._q, charter_queries(self._dialect)
        async with self._writing() as db:
            rows = await db.fetch(q.lock_sphere, sphere_id)
            if not rows:
                raise NotFoundError(f"no sphere {sphere_id}")
            sphere = to_sphere(rows[0])
            roles = await db.fetch(q.get_role, sphere_id, actor_id)
            check(sphere.privacy, Role(roles[0][0]) if roles else None)
            versions = await db.fetch(cq.set, text or None, sphere_id)
            version: int = versions[0][0]
            after = dataclasses.replace(
                sphere, offset=sphere.offset + 1, charter_version=version if text else 0
            )
            event = sphere_event(after, actor_id, now_ms)
            await db.fetch(q.insert_event, *event_row(event))
            if text:
                await db.fetch(cq.accept, version, sphere_id, actor_id)
            entry = SphereAuditEntry(
                sphere_id,
                now_ms,
                actor_id,
                AuditAction.CHARTER_CHANGED,
                None,
                event.offset,
                str(after.charter_version),
            )
            await insert_sphere_audit(db, self._dialect, entry)
        return event

    async def accept_charter(self, sphere_id: SphereId, user_id: UserId, version: int) -> None:
        cq = charter_queries(self._dialect)
        async with self._writing() as db:
            rows = await db.fetch(cq.get, sphere_id)
            if not rows:
                raise NotFoundError(f"no sphere {sphere_id}")
            current = _charter(*rows[0])
            if current.version == 0 or version != current.version:
                raise CharterNotCurrentError(
                    f"the charter's current version is {current.version}; read it again"
                    if current.version
                    else "this sphere has no charter to accept"
                )
            if not await db.fetch(cq.accept, version, sphere_id, user_id):
                raise NotFoundError(f"{user_id} is not a member of {sphere_id}")
