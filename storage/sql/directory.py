"""Spheres, members, read markers and listings: the ``Directory`` part both engines share.

``SqlDirectory`` implements these methods once over the engine's hooks (see
``storage.sql.accounts.SqlAccounts``, which it extends with the users and tokens): each change
is one transaction of ``_writing()``, each read one ``_query``. A change of a sphere's members
or settings first reads the sphere's row with the dialect's ``lock_sphere``: on PostgreSQL the
counter row lock that appends take too, on SQLite nothing more than the write lock its
transaction holds from its first statement. Either way the rows a change decides on are the
rows it changes, and no group commit of the sphere runs in between.
"""

from __future__ import annotations

import dataclasses
import secrets

from protocol import (
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
from storage.base import (
    NO_SUCH_USER,
    DecideMember,
    DecideSettings,
    MemberChange,
    MemberKey,
    MembershipState,
    NotFoundError,
    SettingsState,
    SphereKey,
    SphereRecord,
)
from storage.organisations import DEFAULT_ORG, OrgRole
from storage.rows import (
    SPHERE_WIDTH,
    check_limit,
    event_row,
    joined_from,
    member_event,
    public_from_after,
    settings_detail,
    sphere_event,
    sphere_row,
    summary_of,
    to_sphere,
)
from storage.settings import MemberView, SphereSettings, default_settings
from storage.sql.accounts import SqlAccounts, SqlRunner
from storage.sql.audit import insert_sphere_audit
from storage.usage import org_policies


def _role(value: str | None) -> Role | None:
    return Role(value) if value is not None else None


def _org_role(value: str | None) -> OrgRole | None:
    return OrgRole(value) if value is not None else None


def _state_args(sphere: SphereRecord, actor_id: UserId, target_id: UserId) -> list[str]:
    """The parameters of ``membership_state``: (sphere, actor), then (sphere, target) for the
    target's role, the owner count and name, the ban and the mute; then the actor's and the
    target's place in the sphere's organisation, its policies and suspension."""
    sphere_id, org_id = sphere.sphere_id, sphere.org_id
    return [
        sphere_id,
        actor_id,
        *[sphere_id, target_id] * 4,
        org_id,
        actor_id,
        org_id,
        target_id,
        org_id,
        org_id,
    ]


class SqlDirectory(SqlAccounts):
    """``storage.base.Directory`` in shared SQL: an engine supplies the hooks and ``_q``."""

    async def create_sphere(
        self,
        name: str,
        privacy: Privacy,
        owner_id: UserId,
        *,
        now_ms: int,
        settings: SphereSettings | None = None,
        org_id: OrgId = DEFAULT_ORG,
    ) -> SphereRecord:
        """Create a sphere owned by ``owner_id``, with the owner's ``member`` event at offset 1
        and its ``sphere_created`` audit entry.

        Raises:
            NotFoundError: no such user.
        """
        chosen = settings or default_settings(name, privacy)
        sphere = SphereRecord(
            sphere_id=SphereId("s_" + secrets.token_urlsafe(12)),
            name=chosen.name,
            privacy=chosen.privacy,
            epoch=secrets.token_hex(4),
            offset=0,
            created_ms=now_ms,
            listed=chosen.listed,
            join_policy=chosen.join_policy,
            history=chosen.history,
            retention_days=chosen.retention_days,
            org_id=org_id,
        )
        q = self._q
        async with self._writing() as db:
            rows = await db.fetch(q.user_name, owner_id)
            if not rows:
                raise NotFoundError(f"no user {owner_id}")
            joined = MemberChange(Role.OWNER, MemberAction.JOINED)
            event = member_event(sphere, owner_id, owner_id, rows[0][0], joined, now_ms)
            await db.fetch(
                q.insert_sphere,
                *sphere_row(dataclasses.replace(sphere, offset=event.offset)),
            )
            await db.fetch(q.insert_member, sphere.sphere_id, owner_id, Role.OWNER.value, now_ms)
            await db.fetch(q.insert_event, *event_row(event))
            created = SphereAuditEntry(
                sphere.sphere_id,
                now_ms,
                owner_id,
                AuditAction.SPHERE_CREATED,
                detail=settings_detail(chosen),
            )
            await insert_sphere_audit(db, self._dialect, created)
        return dataclasses.replace(sphere, offset=event.offset)

    async def get_sphere(self, sphere_id: SphereId) -> SphereRecord | None:
        rows = await self._query(self._q.get_sphere, sphere_id)
        return to_sphere(rows[0]) if rows else None

    async def update_sphere(
        self, sphere_id: SphereId, actor_id: UserId, decide: DecideSettings, *, now_ms: int
    ) -> tuple[SphereRecord, Message | None]:
        """Change a sphere's settings (see ``storage.base.Directory``)."""
        q = self._q
        async with self._writing() as db:
            rows = await db.fetch(q.lock_sphere, sphere_id)
            if not rows:
                raise NotFoundError(f"no sphere {sphere_id}")
            sphere = to_sphere(rows[0])
            roles = await db.fetch(q.get_role, sphere_id, actor_id)
            members = await db.fetch(q.count_members, sphere_id)
            state = SettingsState(sphere, Role(roles[0][0]) if roles else None, members[0][0])
            change = decide(state)
            if change is None:
                return sphere, None
            after = change.settings
            offset = sphere.offset + 1
            updated = dataclasses.replace(
                sphere,
                name=after.name,
                privacy=after.privacy,
                listed=after.listed,
                join_policy=after.join_policy,
                history=after.history,
                retention_days=after.retention_days,
                public_from=public_from_after(
                    (sphere.privacy, sphere.history, sphere.public_from),
                    after.privacy,
                    after.history,
                    offset,
                ),
                offset=offset,
            )
            event = sphere_event(updated, actor_id, now_ms)
            await db.fetch(q.insert_event, *event_row(event))
            await db.fetch(
                q.update_sphere,
                updated.name,
                updated.privacy.value,
                int(updated.listed),
                updated.join_policy.value,
                updated.history.value,
                updated.public_from,
                updated.offset,
                updated.retention_days,
                sphere_id,
            )
            for action, detail in change.audits:
                entry = SphereAuditEntry(sphere_id, now_ms, actor_id, action, None, offset, detail)
                await insert_sphere_audit(db, self._dialect, entry)
        return updated, event

    async def sphere_view(
        self, sphere_id: SphereId, user_id: UserId
    ) -> tuple[SphereRecord | None, MemberView | None]:
        rows = await self._query(self._q.sphere_view, user_id, sphere_id)
        if not rows:
            return None, None
        row = tuple(rows[0])
        sphere = to_sphere(row[:SPHERE_WIDTH])
        role, history_from, accepted, muted_until_ms = row[SPHERE_WIDTH:]
        if role is None:
            return sphere, None
        return sphere, MemberView(Role(role), history_from, accepted, muted_until_ms)

    async def sphere_access(
        self, sphere_id: SphereId, user_id: UserId
    ) -> tuple[SphereRecord | None, Role | None]:
        rows = await self._query(self._q.sphere_access, user_id, sphere_id)
        if not rows:
            return None, None
        row = tuple(rows[0])
        return to_sphere(row[:SPHERE_WIDTH]), _role(row[SPHERE_WIDTH])

    async def sphere_members(
        self, sphere_id: SphereId
    ) -> tuple[SphereRecord, dict[UserId, tuple[Role, int]]] | None:
        rows = await self._query(self._q.sphere_members, sphere_id)
        if not rows:
            return None
        sphere = to_sphere(tuple(rows[0])[:SPHERE_WIDTH])
        return sphere, {
            UserId(row[SPHERE_WIDTH]): (Role(row[SPHERE_WIDTH + 1]), row[SPHERE_WIDTH + 2])
            for row in rows
            if row[SPHERE_WIDTH] is not None
        }

    async def get_role(self, sphere_id: SphereId, user_id: UserId) -> Role | None:
        rows = await self._query(self._q.get_role, sphere_id, user_id)
        return Role(rows[0][0]) if rows else None

    async def change_member(
        self,
        sphere_id: SphereId,
        actor_id: UserId,
        target_id: UserId,
        decide: DecideMember,
        *,
        now_ms: int,
    ) -> Message | None:
        """Change a membership as ``decide`` rules (see ``storage.base.Directory``).

        The sphere's row is read under ``lock_sphere`` first: two changes of one sphere (say,
        the last two owners leaving at once) run one after the other, each deciding on what
        the other wrote, and no group commit of the sphere runs in between.
        """
        async with self._writing() as db:
            return await self._change_member_in(db, sphere_id, actor_id, target_id, decide, now_ms)

    async def _change_member_in(
        self,
        db: SqlRunner,
        sphere_id: SphereId,
        actor_id: UserId,
        target_id: UserId,
        decide: DecideMember,
        now_ms: int,
    ) -> Message | None:
        """``change_member`` inside the caller's transaction ``db`` (which other changes of
        the same act share: an invitation used, a ban written)."""
        q = self._q
        sphere = await self._lock_sphere(db, sphere_id)
        state, target_name = await self._membership_state(db, sphere, actor_id, target_id)
        change = decide(state)
        if change is None:
            return None
        if target_name is None:  # after decide: only who may change members learns this
            raise NotFoundError(NO_SUCH_USER)
        entering = change.role is not None and state.target_role is None
        if entering:
            # Back before a mute made in an earlier membership ran out: muted again (the event
            # says until when, so every node's map knows).
            rows = await db.fetch(q.take_departed_mute, sphere_id, target_id)
            if rows and rows[0][0] > now_ms:
                change = dataclasses.replace(change, until_ms=rows[0][0])
        event = member_event(sphere, actor_id, target_id, target_name, change, now_ms)
        if change.role is None:
            muted_until = state.target_muted_until_ms
            if muted_until is not None and muted_until > now_ms:
                await db.fetch(q.keep_departed_mute, sphere_id, target_id, muted_until)
            await db.fetch(q.delete_member, sphere_id, target_id)
        else:
            # Kept by a role change; set only when the target becomes a member.
            history_from = joined_from(sphere.history, event.offset)
            await db.fetch(
                q.upsert_member, sphere_id, target_id, change.role.value, now_ms, history_from
            )
            if entering and change.until_ms is not None:
                await db.fetch(q.set_muted, change.until_ms, sphere_id, target_id)
        await db.fetch(q.insert_event, *event_row(event))
        await db.fetch(q.update_counter, event.offset, sphere_id)
        if change.audit is not None:
            entry = SphereAuditEntry(
                sphere_id, now_ms, actor_id, change.audit, target_id, None, change.detail
            )
            await insert_sphere_audit(db, self._dialect, entry)
        return event

    async def _lock_sphere(self, db: SqlRunner, sphere_id: SphereId) -> SphereRecord:
        """The sphere's row, read under ``lock_sphere`` (see the module's docstring).

        Raises:
            NotFoundError: no such sphere.
        """
        rows = await db.fetch(self._q.lock_sphere, sphere_id)
        if not rows:
            raise NotFoundError(f"no sphere {sphere_id}")
        return to_sphere(rows[0])

    async def _membership_state(
        self, db: SqlRunner, sphere: SphereRecord, actor_id: UserId, target_id: UserId
    ) -> tuple[MembershipState, str | None]:
        """What a change of ``target_id``'s membership is decided on, and their name (None:
        no such user)."""
        rows = await db.fetch(self._q.membership_state, *_state_args(sphere, actor_id, target_id))
        (
            actor_role,
            target_role,
            owners,
            target_name,
            banned,
            muted_until_ms,
            actor_org,
            target_org,
            policies,
            suspended_ms,
        ) = rows[0]
        state = MembershipState(
            sphere,
            _role(actor_role),
            _role(target_role),
            owners,
            bool(banned),
            muted_until_ms,
            actor_org_role=_org_role(actor_org),
            target_org_role=_org_role(target_org),
            org_visitors=policies is not None and org_policies(policies).visitors,
            org_suspended=suspended_ms is not None,
        )
        return state, target_name

    async def list_members(
        self, sphere_id: SphereId, *, limit: int | None = None, after: MemberKey | None = None
    ) -> list[MemberInfo]:
        """The sphere's members, most powerful role first, then by name and id; paged."""
        page = self._dialect.no_limit if limit is None else limit
        if after is None:
            rows = await self._query(self._q.members, sphere_id, page)
        else:
            rank, name, user_id = after
            rows = await self._query(
                self._q.members_after, sphere_id, rank, rank, name, name, user_id, page
            )
        return [MemberInfo(row[0], row[1], UserKind(row[2]), Role(row[3])) for row in rows]

    async def user_spheres(
        self, user_id: UserId, *, limit: int | None = None, after: SphereKey | None = None
    ) -> list[SphereSummary]:
        """The user's spheres by name and id, with role, read marker and unread post count.

        Unread posts are those after the read marker and from the member's floor on, not
        deleted, by someone else.
        """
        page = self._dialect.no_limit if limit is None else limit
        if after is None:
            rows = await self._query(self._q.user_spheres, user_id, page)
        else:
            name, sphere_id = after
            rows = await self._query(
                self._q.user_spheres_after, user_id, name, name, sphere_id, page
            )
        summaries = []
        for row in rows:
            role, read_offset, unread, floor, accepted, muted_until_ms = row[SPHERE_WIDTH:]
            summaries.append(
                dataclasses.replace(
                    summary_of(to_sphere(row[:SPHERE_WIDTH])),
                    role=Role(role),
                    read_offset=read_offset,
                    unread=unread,
                    history_from=floor,
                    charter_accepted=accepted,
                    muted_until_ms=muted_until_ms,
                )
            )
        return summaries

    async def discoverable_spheres(
        self, limit: int, *, user_id: UserId | None = None
    ) -> list[SphereSummary]:
        check_limit(limit)
        if user_id is None:
            rows = await self._query(self._q.discoverable, limit)
        else:
            rows = await self._query(self._q.discoverable_in_orgs, user_id, limit)
        return [summary_of(to_sphere(row)) for row in rows]

    async def set_read_marker(self, sphere_id: SphereId, user_id: UserId, offset: int) -> int:
        """Move the member's read marker to ``offset``, never back nor past the latest event.

        Returns:
            The marker now stored.

        Raises:
            NotFoundError: the user is not a member of the sphere (or either is unknown).
        """
        async with self._writing() as db:
            rows = await db.fetch(self._q.set_read_marker, offset, sphere_id, user_id)
        if not rows:
            raise NotFoundError(f"{user_id} is not a member of {sphere_id}")
        marker: int = rows[0][0]
        return marker
