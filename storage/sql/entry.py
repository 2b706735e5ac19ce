"""Invitations and join requests in shared SQL (bans, mutes, transfers and deletion:
``storage.sql.moderation``).

``SqlEntry`` implements that part of ``storage.entry.Entry`` over the engine's hooks. Every
change is one transaction that first reads the sphere under ``lock_sphere`` (through the
directory's member-change path when it changes a membership), so the invitations, requests and
bans of a sphere change one after another, and each decision is made on the rows it changes.
"""

from __future__ import annotations

import functools
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any

from protocol import (
    CloisonError,
    ErrorCode,
    Invitation,
    InvitationState,
    JoinRequestInfo,
    Message,
    RequestState,
    Role,
    SphereId,
    UserId,
)
from storage.audit import AuditAction, SphereAuditEntry
from storage.base import (
    NO_SUCH_USER,
    DecideMember,
    MemberChange,
    MembershipState,
    NotFoundError,
    SphereRecord,
)
from storage.entry import CheckEntry, CheckRevoke, DecideAccept, EntryKey, SphereStanding
from storage.organisations import OrgRole
from storage.rows import SPHERE_WIDTH, check_limit, sphere_select, to_sphere
from storage.settings import MemberView
from storage.sql.accounts import SqlRunner
from storage.sql.audit import insert_sphere_audit
from storage.sql.dialect import Dialect
from storage.sql.directory import SqlDirectory

# Why 24 bytes (32 characters): an invitation id is the secret its invitee accepts with.
INVITATION_ID_BYTES = 24

# As every read of a sphere: a cleared charter reads as version 0 (storage.rows.sphere_select).
_S_COLUMNS = sphere_select("s")
_INVITATION = """
    SELECT i.invitation_id, i.sphere_id, s.name, i.inviter_id, coalesce(ui.name, ''),
           i.invitee_id, ue.name, i.role, i.created_ms, i.expires_ms, i.state
    FROM invitations AS i
    JOIN spheres AS s ON s.sphere_id = i.sphere_id
    JOIN users AS ue ON ue.user_id = i.invitee_id
    LEFT JOIN users AS ui ON ui.user_id = i.inviter_id
"""
_PENDING_PAGE = (
    _INVITATION
    + """
    WHERE i.{owner} = ? AND i.state = 'pending' AND i.expires_ms > CAST(? AS BIGINT) {after}
      AND NOT EXISTS (
          SELECT 1 FROM bans AS b WHERE b.sphere_id = i.sphere_id AND b.user_id = i.invitee_id
      )
    ORDER BY i.created_ms, i.invitation_id{collate} LIMIT ?
"""
)
_REQUESTS = """
    SELECT r.sphere_id, r.user_id, u.name, r.created_ms, r.state, r.comment
    FROM join_requests AS r JOIN users AS u ON u.user_id = r.user_id
    WHERE r.sphere_id = ? AND r.state = 'pending' {after}
    ORDER BY r.created_ms, r.user_id{collate} LIMIT ?
"""


def keyset_after(alias: str, time_column: str, id_column: str) -> str:
    """The keyset condition of a page after (time, id)."""
    return (
        f"AND ({alias}.{time_column} > ? OR ({alias}.{time_column} = ? "
        f"AND {alias}.{id_column}{{collate}} > ?))"
    )


_INVITATION_AFTER = keyset_after("i", "created_ms", "invitation_id")


_TEMPLATES = {
    # The sphere, the user's membership, ban, and place in the sphere's organisation (and
    # whether that is suspended): one statement, found or not, for the same answer time.
    "standing": f"""
        SELECT {_S_COLUMNS}, m.role, m.history_from, m.charter_accepted, m.muted_until_ms,
               EXISTS (SELECT 1 FROM bans AS b WHERE b.sphere_id = s.sphere_id AND b.user_id = ?),
               om.role, o.suspended_ms
        FROM spheres AS s
        LEFT JOIN members AS m ON m.sphere_id = s.sphere_id AND m.user_id = ?
        LEFT JOIN org_members AS om ON om.org_id = s.org_id AND om.user_id = ?
        LEFT JOIN organisations AS o ON o.org_id = s.org_id
        WHERE s.sphere_id = ?
    """,
    # -- invitations -----------------------------------------------------------------------
    "insert_invitation": """
        INSERT INTO invitations (invitation_id, sphere_id, inviter_id, invitee_id, role,
                                 created_ms, expires_ms, state)
        VALUES (?, ?, ?, ?, ?, ?, ?, 'pending')
    """,
    "get_invitation": _INVITATION + " WHERE i.invitation_id = ?",
    "invitation_state": """
        SELECT sphere_id, inviter_id, invitee_id, role, expires_ms, state
        FROM invitations WHERE invitation_id = ?
    """,
    "end_invitation": """
        UPDATE invitations SET state = ? WHERE invitation_id = ? AND state = 'pending'
    """,
    "revoke_pending": """
        UPDATE invitations SET state = 'revoked'
        WHERE sphere_id = ? AND invitee_id = ? AND state = 'pending'
    """,
    "invitee_pending": _PENDING_PAGE.replace("{owner}", "invitee_id").replace("{after}", ""),
    "invitee_pending_after": _PENDING_PAGE.replace("{owner}", "invitee_id").replace(
        "{after}", _INVITATION_AFTER
    ),
    "sphere_pending": _PENDING_PAGE.replace("{owner}", "sphere_id").replace("{after}", ""),
    "sphere_pending_after": _PENDING_PAGE.replace("{owner}", "sphere_id").replace(
        "{after}", _INVITATION_AFTER
    ),
    # -- join requests ---------------------------------------------------------------------
    "request_state": "SELECT state FROM join_requests WHERE sphere_id = ? AND user_id = ?",
    "upsert_request": """
        INSERT INTO join_requests (sphere_id, user_id, comment, created_ms, state)
        VALUES (?, ?, ?, ?, 'pending')
        ON CONFLICT (sphere_id, user_id) DO UPDATE
        SET comment = excluded.comment, created_ms = excluded.created_ms, state = 'pending'
    """,
    "end_request": """
        UPDATE join_requests SET state = ?
        WHERE sphere_id = ? AND user_id = ? AND state = 'pending'
        RETURNING user_id
    """,
    "requests": _REQUESTS.replace("{after}", ""),
    "requests_after": _REQUESTS.replace("{after}", keyset_after("r", "created_ms", "user_id")),
}


@dataclass(frozen=True, slots=True)
class EntryQueries:
    standing: str
    insert_invitation: str
    get_invitation: str
    invitation_state: str
    end_invitation: str
    revoke_pending: str
    invitee_pending: str
    invitee_pending_after: str
    sphere_pending: str
    sphere_pending_after: str
    request_state: str
    upsert_request: str
    end_request: str
    requests: str
    requests_after: str


@functools.cache
def entry_queries(dialect: Dialect) -> EntryQueries:
    assert {f.name for f in fields(EntryQueries)} == set(_TEMPLATES)
    return EntryQueries(**{name: dialect.render(sql) for name, sql in _TEMPLATES.items()})


def _invitation(row: Sequence[Any]) -> Invitation:
    (
        invitation_id,
        sphere_id,
        sphere_name,
        inviter_id,
        inviter_name,
        invitee_id,
        invitee_name,
        role,
        created_ms,
        expires_ms,
        state,
    ) = row
    return Invitation(
        invitation_id=invitation_id,
        sphere_id=SphereId(sphere_id),
        sphere_name=sphere_name,
        inviter_id=UserId(inviter_id),
        inviter_name=inviter_name,
        invitee_id=UserId(invitee_id),
        invitee_name=invitee_name,
        role=Role(role),
        created_ms=created_ms,
        expires_ms=expires_ms,
        state=InvitationState(state),
    )


def _request(row: Sequence[Any]) -> JoinRequestInfo:
    sphere_id, user_id, name, created_ms, state, comment = row
    return JoinRequestInfo(
        SphereId(sphere_id), UserId(user_id), name, created_ms, RequestState(state), comment
    )


def _ended(state: str, expires_ms: int, now_ms: int) -> CloisonError | None:
    """Why an invitation can no longer be used, or None while it can."""
    if state != InvitationState.PENDING:
        return CloisonError(f"this invitation was {state} already", code=ErrorCode.CONFLICT)
    if expires_ms <= now_ms:
        return CloisonError("this invitation has expired", code=ErrorCode.CONFLICT)
    return None


class SqlEntry(SqlDirectory):
    """Invitations, join requests and the standing of a user: ``storage.entry.Entry`` in part."""

    @property
    def _e(self) -> EntryQueries:
        return entry_queries(self._dialect)

    async def _audit(
        self,
        db: SqlRunner,
        sphere_id: SphereId,
        actor_id: UserId,
        action: AuditAction,
        target_id: UserId | None,
        now_ms: int,
        detail: str | None = None,
    ) -> None:
        entry = SphereAuditEntry(sphere_id, now_ms, actor_id, action, target_id, None, detail)
        await insert_sphere_audit(db, self._dialect, entry)

    async def sphere_standing(self, sphere_id: SphereId, user_id: UserId) -> SphereStanding:
        rows = await self._query(self._e.standing, user_id, user_id, user_id, sphere_id)
        if not rows:
            return SphereStanding(None, None)
        row = tuple(rows[0])
        role, history_from, accepted, muted_until_ms, banned, org_role, suspended_ms = row[
            SPHERE_WIDTH:
        ]
        member = (
            MemberView(Role(role), history_from, accepted, muted_until_ms)
            if role is not None
            else None
        )
        return SphereStanding(
            to_sphere(row[:SPHERE_WIDTH]),
            member,
            bool(banned),
            OrgRole(org_role) if org_role is not None else None,
            suspended_ms is not None,
        )

    # -- invitations ---------------------------------------------------------------------------

    async def invite(
        self,
        sphere_id: SphereId,
        inviter_id: UserId,
        invitee_id: UserId,
        role: Role,
        check: CheckEntry,
        *,
        expires_ms: int,
        now_ms: int,
    ) -> Invitation:
        e = self._e
        invitation_id = secrets.token_urlsafe(INVITATION_ID_BYTES)
        async with self._writing() as db:
            sphere = await self._lock_sphere(db, sphere_id)
            state, invitee_name = await self._membership_state(db, sphere, inviter_id, invitee_id)
            check(state)
            if invitee_name is None:  # after check: only who may invite learns this
                raise NotFoundError(NO_SUCH_USER)
            await db.fetch(e.revoke_pending, sphere_id, invitee_id)
            await db.fetch(
                e.insert_invitation,
                invitation_id,
                sphere_id,
                inviter_id,
                invitee_id,
                role.value,
                now_ms,
                expires_ms,
            )
            await self._audit(
                db, sphere_id, inviter_id, AuditAction.INVITED, invitee_id, now_ms, role.value
            )
            rows = await db.fetch(e.get_invitation, invitation_id)
        return _invitation(rows[0])

    async def revoke_invitation(
        self, invitation_id: str, actor_id: UserId, check: CheckRevoke, *, now_ms: int
    ) -> None:
        e = self._e
        async with self._writing() as db:
            rows = await db.fetch(e.invitation_state, invitation_id)
            if not rows:
                raise NotFoundError("no such invitation")
            sphere_id, inviter_id, invitee_id, _, _, _ = rows[0]
            sphere = await self._lock_sphere(db, sphere_id)
            state, _ = await self._membership_state(db, sphere, actor_id, actor_id)
            check(state, UserId(inviter_id))
            # Read again under the sphere's lock: the state the revocation decides on.
            _, _, _, _, expires_ms, state = (await db.fetch(e.invitation_state, invitation_id))[0]
            if (ended := _ended(state, expires_ms, now_ms)) is not None:
                raise ended
            await db.fetch(e.end_invitation, InvitationState.REVOKED.value, invitation_id)
            await self._audit(
                db, sphere_id, actor_id, AuditAction.INVITATION_REVOKED, invitee_id, now_ms
            )

    async def answer_invitation(
        self,
        invitation_id: str,
        invitee_id: UserId,
        decide: DecideAccept | None,
        *,
        now_ms: int,
    ) -> tuple[SphereRecord, Message | None]:
        e = self._e
        async with self._writing() as db:
            rows = await db.fetch(e.invitation_state, invitation_id)
            if not rows or rows[0][2] != invitee_id:
                raise NotFoundError("no such invitation")  # another's invitation: unknown
            sphere_id = SphereId(rows[0][0])
            await self._lock_sphere(db, sphere_id)
            _, _, _, role, expires_ms, state = (await db.fetch(e.invitation_state, invitation_id))[
                0
            ]
            if (ended := _ended(state, expires_ms, now_ms)) is not None:
                raise ended
            event = None
            if decide is None:
                await db.fetch(e.end_invitation, InvitationState.DECLINED.value, invitation_id)
                await self._audit(
                    db, sphere_id, invitee_id, AuditAction.INVITATION_DECLINED, invitee_id, now_ms
                )
            else:
                await db.fetch(e.end_invitation, InvitationState.ACCEPTED.value, invitation_id)
                carried = Role(role)

                def accepting(member: MembershipState) -> MemberChange | None:
                    return decide(member, carried)

                event = await self._change_member_in(
                    db, sphere_id, invitee_id, invitee_id, accepting, now_ms
                )
            sphere = await self._lock_sphere(db, sphere_id)
        return sphere, event

    async def list_invitations(
        self,
        *,
        sphere_id: SphereId | None = None,
        invitee_id: UserId | None = None,
        now_ms: int,
        limit: int,
        after: EntryKey | None = None,
    ) -> list[Invitation]:
        check_limit(limit)
        e = self._e
        if (sphere_id is None) == (invitee_id is None):
            raise ValueError("list the invitations of a sphere or of an invitee, not both")
        owner = sphere_id if sphere_id is not None else invitee_id
        if after is None:
            sql = e.sphere_pending if sphere_id is not None else e.invitee_pending
            rows = await self._query(sql, owner, now_ms, limit)
        else:
            sql = e.sphere_pending_after if sphere_id is not None else e.invitee_pending_after
            created_ms, last_id = after
            rows = await self._query(sql, owner, now_ms, created_ms, created_ms, last_id, limit)
        return [_invitation(row) for row in rows]

    # -- join requests -------------------------------------------------------------------------

    async def request_join(
        self,
        sphere_id: SphereId,
        user_id: UserId,
        comment: str | None,
        check: CheckEntry,
        *,
        now_ms: int,
    ) -> JoinRequestInfo:
        e = self._e
        async with self._writing() as db:
            sphere = await self._lock_sphere(db, sphere_id)
            state, name = await self._membership_state(db, sphere, user_id, user_id)
            check(state)
            if name is None:
                raise NotFoundError(f"no user {user_id}")
            current = await db.fetch(e.request_state, sphere_id, user_id)
            if current and current[0][0] == RequestState.PENDING:
                raise CloisonError(
                    "you have asked to join already; wait for an answer or withdraw it",
                    code=ErrorCode.CONFLICT,
                )
            await db.fetch(e.upsert_request, sphere_id, user_id, comment, now_ms)
            await self._audit(db, sphere_id, user_id, AuditAction.JOIN_REQUESTED, user_id, now_ms)
        return JoinRequestInfo(sphere_id, user_id, name, now_ms, RequestState.PENDING, comment)

    async def withdraw_request(self, sphere_id: SphereId, user_id: UserId, *, now_ms: int) -> None:
        async with self._writing() as db:
            await self._lock_sphere(db, sphere_id)
            ended = await db.fetch(
                self._e.end_request, RequestState.WITHDRAWN.value, sphere_id, user_id
            )
            if not ended:
                raise NotFoundError("you have no pending request to join this sphere")
            await self._audit(
                db, sphere_id, user_id, AuditAction.REQUEST_WITHDRAWN, user_id, now_ms
            )

    async def list_requests(
        self, sphere_id: SphereId, *, limit: int, after: EntryKey | None = None
    ) -> list[JoinRequestInfo]:
        check_limit(limit)
        if after is None:
            rows = await self._query(self._e.requests, sphere_id, limit)
        else:
            created_ms, user_id = after
            rows = await self._query(
                self._e.requests_after, sphere_id, created_ms, created_ms, user_id, limit
            )
        return [_request(row) for row in rows]

    async def answer_request(
        self,
        sphere_id: SphereId,
        actor_id: UserId,
        user_id: UserId,
        decide: DecideMember,
        *,
        accept: bool,
        now_ms: int,
    ) -> Message | None:
        e = self._e
        answer = RequestState.ACCEPTED if accept else RequestState.REFUSED
        async with self._writing() as db:
            await self._lock_sphere(db, sphere_id)
            pending = await db.fetch(e.end_request, answer.value, sphere_id, user_id)

            def answering(state: MembershipState) -> MemberChange | None:
                change = decide(state)  # the actor's right first: nobody else learns more
                if not pending:
                    raise NotFoundError("no pending request of this user")
                return change

            event = await self._change_member_in(
                db, sphere_id, actor_id, user_id, answering, now_ms
            )
            if event is None and not accept:
                await self._audit(
                    db, sphere_id, actor_id, AuditAction.REQUEST_REFUSED, user_id, now_ms
                )
        return event
