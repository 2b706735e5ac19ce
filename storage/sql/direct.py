"""Private messages in shared SQL (``storage.direct.DirectConversations``).

Opening a conversation is one transaction: who is in the context is read on its rows, then
the sphere, its members, their ``member`` events and the ``sphere_created`` audit entry are
written together. The one-to-one conversation of two people in a context is their row of
``direct_pairs``; on PostgreSQL two first openings of the same pair can race, and the second
to commit finds the first's row (its insert waits on that key), rolls back and opens again,
finding the conversation.
"""

from __future__ import annotations

import dataclasses
import functools
import secrets
from collections.abc import Sequence
from dataclasses import dataclass

from protocol import (
    HistoryMode,
    JoinPolicy,
    MemberAction,
    MemberInfo,
    Message,
    OrgId,
    Privacy,
    Role,
    SphereId,
    SphereSummary,
    UserId,
    UserKind,
)
from storage.audit import AuditAction, SphereAuditEntry
from storage.base import MemberChange, NotFoundError, SphereRecord
from storage.direct import (
    ORG_NOT_FOUND,
    SPHERE_NOT_FOUND,
    DirectContext,
    DirectOpening,
    unknown_user,
)
from storage.rows import (
    SPHERE_COLUMNS,
    SPHERE_WIDTH,
    event_row,
    member_event,
    settings_detail,
    to_sphere,
)
from storage.settings import SphereSettings
from storage.sql.accounts import SqlRunner
from storage.sql.audit import insert_sphere_audit
from storage.sql.dialect import Dialect
from storage.sql.moderation import SqlModeration

_PAIR_KEY = "org_id = ? AND context_sphere_id = ? AND user_low = ? AND user_high = ?"
_TEMPLATES = {
    "context_sphere": "SELECT org_id, privacy FROM spheres WHERE sphere_id = ?",
    "org_exists": "SELECT 1 FROM organisations WHERE org_id = ?",
    "in_org": "SELECT user_id FROM org_members WHERE org_id = ? AND user_id {in_list}",
    "in_sphere": "SELECT user_id FROM members WHERE sphere_id = ? AND user_id {in_list}",
    "names": "SELECT user_id, name FROM users WHERE user_id {in_list}",
    # The pair's conversation, and how many of the two are still in it.
    "pair": f"""
        SELECT p.sphere_id, (
            SELECT count(*) FROM members AS m
            WHERE m.sphere_id = p.sphere_id AND m.user_id IN (p.user_low, p.user_high)
        )
        FROM direct_pairs AS p WHERE {_PAIR_KEY}
    """,
    "drop_pair": f"DELETE FROM direct_pairs WHERE {_PAIR_KEY}",
    "insert_pair": """
        INSERT INTO direct_pairs (org_id, context_sphere_id, user_low, user_high, sphere_id)
        VALUES (?, ?, ?, ?, ?)
        ON CONFLICT (org_id, context_sphere_id, user_low, user_high) DO NOTHING
        RETURNING sphere_id
    """,
    "insert_sphere": (
        f"INSERT INTO spheres ({SPHERE_COLUMNS}, context_sphere_id) "
        f"VALUES ({', '.join('?' * (SPHERE_WIDTH + 1))})"
    ),
    "insert_member": """
        INSERT INTO members (sphere_id, user_id, role, joined_ms, history_from)
        VALUES (?, ?, ?, ?, 0)
    """,
    "is_direct": "SELECT 1 FROM spheres WHERE sphere_id = ? AND privacy = 'direct'",
    "participants": """
        SELECT m.sphere_id, m.user_id, u.name, u.kind, m.role
        FROM members AS m JOIN users AS u ON u.user_id = m.user_id
        WHERE m.sphere_id {in_list} AND m.user_id <> ?
        ORDER BY m.sphere_id, u.name, m.user_id
    """,
}


@dataclass(frozen=True, slots=True)
class DirectQueries:
    context_sphere: str
    org_exists: str
    in_org: str
    in_sphere: str
    names: str
    pair: str
    drop_pair: str
    insert_pair: str
    insert_sphere: str
    insert_member: str
    is_direct: str
    participants: str


@functools.cache
def direct_queries(dialect: Dialect) -> DirectQueries:
    assert {f.name for f in dataclasses.fields(DirectQueries)} == set(_TEMPLATES)
    return DirectQueries(**{name: dialect.render(sql) for name, sql in _TEMPLATES.items()})


class _PairTaken(Exception):
    """Another transaction opened the same pair's conversation first: roll back, look again."""


def direct_settings(name: str) -> SphereSettings:
    """A direct conversation's settings: never listed, entered only when opened, and every
    participant reads the whole of it."""
    return SphereSettings(name, Privacy.DIRECT, False, JoinPolicy.INVITATION, HistoryMode.FULL)


def _sphere_row(sphere: SphereRecord, context_sphere_id: SphereId | None) -> tuple[object, ...]:
    """The values of ``insert_sphere``: ``SPHERE_COLUMNS``, then ``context_sphere_id``."""
    return (
        sphere.sphere_id,
        sphere.name,
        sphere.privacy.value,
        sphere.epoch,
        sphere.offset,
        sphere.created_ms,
        int(sphere.listed),
        sphere.join_policy.value,
        sphere.history.value,
        sphere.charter_version,
        sphere.public_from,
        sphere.retention_days,
        sphere.retained_from,
        None,  # no legal hold: hold_since_ms, hold_until_ms, hold_reason, hold_by
        None,
        None,
        None,
        sphere.org_id,
        context_sphere_id,
    )


class SqlDirect(SqlModeration):
    @property
    def _dq(self) -> DirectQueries:
        return direct_queries(self._dialect)

    async def open_direct(
        self,
        creator_id: UserId,
        others: Sequence[UserId],
        *,
        org_id: OrgId | None,
        context_sphere_id: SphereId | None,
        name: str,
        now_ms: int,
    ) -> DirectOpening:
        assert others
        assert creator_id not in others
        assert len(set(others)) == len(others)
        for _ in range(2):
            try:
                async with self._writing() as db:
                    return await self._open_in(
                        db, creator_id, others, org_id, context_sphere_id, name, now_ms
                    )
            except _PairTaken:
                continue
        raise AssertionError("a pair's conversation was taken twice")  # it cannot be: see above

    async def _open_in(
        self,
        db: SqlRunner,
        creator_id: UserId,
        others: Sequence[UserId],
        org_id: OrgId | None,
        context_sphere_id: SphereId | None,
        name: str,
        now_ms: int,
    ) -> DirectOpening:
        context = await self._context(db, creator_id, org_id, context_sphere_id)
        await self._check_participants(db, context, others)
        pair_key: tuple[str, str, str, str] | None = None
        if len(others) == 1:
            low, high = sorted((creator_id, others[0]))
            pair_key = (context.org_id, context.sphere_id or "", low, high)
            found = await db.fetch(self._dq.pair, *pair_key)
            if found and found[0][1] == 2:
                rows = await db.fetch(self._q.get_sphere, found[0][0])
                return DirectOpening(to_sphere(rows[0]), ())
            if found:  # one of them left it: the pair starts a new conversation
                await db.fetch(self._dq.drop_pair, *pair_key)
        opening = await self._create(db, creator_id, others, context, name, now_ms)
        if pair_key is not None:
            taken = await db.fetch(self._dq.insert_pair, *pair_key, opening.sphere.sphere_id)
            if not taken:
                raise _PairTaken
        return opening

    async def _context(
        self,
        db: SqlRunner,
        creator_id: UserId,
        org_id: OrgId | None,
        context_sphere_id: SphereId | None,
    ) -> DirectContext:
        """The context, which the creator must be in (else: as if it did not exist)."""
        dq, arg = self._dq, self._dialect.list_arg([creator_id])
        if context_sphere_id is not None:
            rows = await db.fetch(dq.context_sphere, context_sphere_id)
            inside = rows and await db.fetch(dq.in_sphere, context_sphere_id, arg)
            if not rows or not inside:
                raise NotFoundError(SPHERE_NOT_FOUND)
            if rows[0][1] == Privacy.DIRECT.value:
                # A conversation is not a context: its participants open their own.
                raise NotFoundError(SPHERE_NOT_FOUND)
            return DirectContext(OrgId(rows[0][0]), context_sphere_id)
        assert org_id is not None
        if not await db.fetch(dq.in_org, org_id, arg):
            raise NotFoundError(ORG_NOT_FOUND)
        return DirectContext(org_id)

    async def _check_participants(
        self, db: SqlRunner, context: DirectContext, others: Sequence[UserId]
    ) -> None:
        arg = self._dialect.list_arg(list(others))
        if context.sphere_id is not None:
            rows = await db.fetch(self._dq.in_sphere, context.sphere_id, arg)
        else:
            rows = await db.fetch(self._dq.in_org, context.org_id, arg)
        inside = {row[0] for row in rows}
        for user_id in others:
            if user_id not in inside:
                raise NotFoundError(unknown_user(user_id))

    async def _create(
        self,
        db: SqlRunner,
        creator_id: UserId,
        others: Sequence[UserId],
        context: DirectContext,
        name: str,
        now_ms: int,
    ) -> DirectOpening:
        settings = direct_settings(name)
        sphere = SphereRecord(
            sphere_id=SphereId("s_" + secrets.token_urlsafe(12)),
            name=name,
            privacy=Privacy.DIRECT,
            epoch=secrets.token_hex(4),
            offset=0,
            created_ms=now_ms,
            listed=False,
            join_policy=settings.join_policy,
            history=settings.history,
            org_id=context.org_id,
        )
        rows = await db.fetch(self._dq.names, self._dialect.list_arg([creator_id, *others]))
        names: dict[str, str] = {row[0]: row[1] for row in rows}
        events = []
        joined = MemberChange(Role.MEMBER, MemberAction.JOINED)
        added = MemberChange(Role.MEMBER, MemberAction.ADDED)
        for user_id in (creator_id, *others):
            change = joined if user_id == creator_id else added
            event = member_event(sphere, creator_id, user_id, names[user_id], change, now_ms)
            events.append(event)
            sphere = dataclasses.replace(sphere, offset=event.offset)
        dq = self._dq
        await db.fetch(dq.insert_sphere, *_sphere_row(sphere, context.sphere_id))
        for event in events:
            assert event.member_id is not None
            await db.fetch(
                dq.insert_member, sphere.sphere_id, event.member_id, Role.MEMBER.value, now_ms
            )
            await db.fetch(self._q.insert_event, *event_row(event))
        created = SphereAuditEntry(
            sphere.sphere_id,
            now_ms,
            creator_id,
            AuditAction.SPHERE_CREATED,
            detail=settings_detail(settings),
        )
        await insert_sphere_audit(db, self._dialect, created)
        return DirectOpening(sphere, tuple(events))

    async def close_if_empty(
        self, sphere_id: SphereId, actor_id: UserId, *, now_ms: int
    ) -> Message | None:
        async with self._writing() as db:
            locked = await db.fetch(self._q.lock_sphere, sphere_id)
            if not locked:
                return None
            sphere = to_sphere(locked[0])
            left = await db.fetch(self._q.count_members, sphere_id)
            if sphere.privacy is not Privacy.DIRECT or left[0][0] or sphere.held(now_ms):
                return None
            event = await self._delete_sphere_in(db, sphere, actor_id, actor_id, now_ms)
        await self.scrub()  # its content leaves the files before the answer, as a deletion's
        return event

    async def with_participants(
        self, summaries: Sequence[SphereSummary], reader: UserId
    ) -> list[SphereSummary]:
        direct = [s.sphere_id for s in summaries if s.privacy is Privacy.DIRECT]
        if not direct:
            return list(summaries)
        rows = await self._query(self._dq.participants, self._dialect.list_arg(direct), reader)
        found: dict[str, list[MemberInfo]] = {sphere_id: [] for sphere_id in direct}
        for sphere_id, user_id, name, kind, role in rows:
            found[sphere_id].append(MemberInfo(user_id, name, UserKind(kind), Role(role)))
        return [
            dataclasses.replace(s, participants=found[s.sphere_id]) if s.sphere_id in found else s
            for s in summaries
        ]

    async def is_direct(self, sphere_id: SphereId) -> bool:
        return bool(await self._query(self._dq.is_direct, sphere_id))
