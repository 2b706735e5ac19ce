"""Governing organisations in shared SQL (``storage.org_governance.OrgGovernance``).

A change of an organisation's membership first reads the organisation's row under the lock
that orders changes (``lock_sphere``'s, on the ``organisations`` row), so two managers
demoting each other at once run one after the other and the second sees one manager left.
Sphere memberships begin and end through the directory's member-change path
(``SqlDirectory._change_member_in``), and a sole owner's sphere passes to its next member as
the account deletion job passes it (``SqlAccountDeletions._promote``): one machinery for
every membership change.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

from protocol import (
    JoinPolicy,
    MemberAction,
    Message,
    OrgId,
    OrgRole,
    OrgSphere,
    Privacy,
    Role,
    SphereId,
    UserId,
    UserKind,
)
from storage.audit import AuditAction
from storage.base import (
    AuditEntry,
    DecideMember,
    MemberChange,
    MembershipState,
    NotFoundError,
    SphereRecord,
    TokenRecord,
    UserRecord,
)
from storage.org_governance import (
    DecideOrgMember,
    DirectoryEntry,
    DirectoryKey,
    OrgAccess,
    OrgChange,
    OrgMemberState,
    PortalKey,
)
from storage.organisations import DEFAULT_ORG, OrgAction, OrgAuditEntry, OrgRecord, policies_from
from storage.rows import check_limit
from storage.sql.accounts import SqlRunner
from storage.sql.deletion import SqlAccountDeletions, deletion_queries
from storage.sql.dialect import Dialect
from storage.sql.organisations import ORG_COLUMNS, SqlOrganisations, insert_org_audit, to_org

_O = ", ".join("o." + c for c in ORG_COLUMNS.split(", "))
_ORG_WIDTH = len(ORG_COLUMNS.split(", "))
# Above every character a name holds: the end of a prefix's range of names.
_PREFIX_END = "\U0010ffff"
_IN_ORG_SPHERES = """
    FROM members AS m JOIN spheres AS s ON s.sphere_id = m.sphere_id
    WHERE m.user_id = ? AND s.org_id = ?
"""
_DIRECTORY = """
    SELECT m.user_id, u.name, m.role, m.name_key
    FROM org_members AS m JOIN users AS u ON u.user_id = m.user_id
    WHERE m.org_id = ? {prefix} {after}
    ORDER BY m.name_key, m.user_id{collate} LIMIT ?
"""
_PREFIX = "AND m.name_key >= lower(?) AND m.name_key < lower(?) || ?"
# A later page of a prefix: the cursor (at or above the prefix) is the lower end of the range.
_BELOW_PREFIX = "AND m.name_key < lower(?) || ?"
# Row values, so that each page is one range of the index however deep it lies.
_DIRECTORY_AFTER = "AND (m.name_key, m.user_id{collate}) > (?, ?)"
_PORTAL = """
    SELECT s.sphere_id, s.name, s.privacy, s.listed, s.join_policy, m.role, EXISTS (
        SELECT 1 FROM join_requests AS r
        WHERE r.sphere_id = s.sphere_id AND r.user_id = ? AND r.state = 'pending'
    )
    FROM spheres AS s LEFT JOIN members AS m ON m.sphere_id = s.sphere_id AND m.user_id = ?
    WHERE s.org_id = ? AND NOT (s.privacy {in_list}) {portal} {after}
    ORDER BY s.name{collate}, s.sphere_id{collate} LIMIT ?
"""
# What a member of the organisation finds in its portal.
_PORTAL_ONLY = "AND ((s.listed <> 0 AND s.privacy IN ('open', 'public')) OR s.privacy = 'global')"
_PORTAL_AFTER = "AND (s.name{collate}, s.sphere_id{collate}) > (?, ?)"

_TEMPLATES = {
    "standing": f"""
        SELECT {_O}, m.role FROM organisations AS o
        LEFT JOIN org_members AS m ON m.org_id = o.org_id AND m.user_id = ?
        WHERE o.org_id = ?
    """,
    "member_state": f"""
        SELECT {_O},
            (SELECT role FROM org_members WHERE org_id = o.org_id AND user_id = ?),
            (SELECT count(*) FROM org_members WHERE org_id = o.org_id AND role = 'manager'),
            EXISTS (SELECT 1 FROM users WHERE user_id = ?)
        FROM organisations AS o WHERE o.org_id = ?
    """,
    # Counted only as far as the members quota needs: an organisation of 400,000 members
    # without a quota counts none of them on every addition.
    "count_members": """
        SELECT count(*) FROM (SELECT 1 FROM org_members WHERE org_id = ? LIMIT ?) AS m
    """,
    "get_org": f"SELECT {ORG_COLUMNS} FROM organisations WHERE org_id = ?",
    "lock_org": "SELECT org_id FROM organisations WHERE org_id = ? {lock_sphere}",
    "update_org": "UPDATE organisations SET name = ?, policies = ? WHERE org_id = ?",
    "insert_member": """
        INSERT INTO org_members (org_id, user_id, role, joined_ms) VALUES (?, ?, ?, ?)
    """,
    "set_role": "UPDATE org_members SET role = ? WHERE org_id = ? AND user_id = ?",
    "delete_member": "DELETE FROM org_members WHERE org_id = ? AND user_id = ?",
    "global_spheres": """
        SELECT sphere_id FROM spheres WHERE org_id = ? AND privacy = 'global' ORDER BY sphere_id
    """,
    "memberships": "SELECT m.sphere_id, m.role "
    + _IN_ORG_SPHERES
    + " ORDER BY m.sphere_id LIMIT ?",
    "any_membership": "SELECT 1 " + _IN_ORG_SPHERES + " LIMIT 1",
    "directory": _DIRECTORY.replace("{prefix}", "").replace("{after}", ""),
    "directory_after": _DIRECTORY.replace("{prefix}", "").replace("{after}", _DIRECTORY_AFTER),
    "directory_prefix": _DIRECTORY.replace("{prefix}", _PREFIX).replace("{after}", ""),
    "directory_prefix_after": _DIRECTORY.replace("{prefix}", _BELOW_PREFIX).replace(
        "{after}", _DIRECTORY_AFTER
    ),
    "portal_all": _PORTAL.replace("{portal}", "").replace("{after}", ""),
    "portal_all_after": _PORTAL.replace("{portal}", "").replace("{after}", _PORTAL_AFTER),
    "portal": _PORTAL.replace("{portal}", _PORTAL_ONLY).replace("{after}", ""),
    "portal_after": _PORTAL.replace("{portal}", _PORTAL_ONLY).replace("{after}", _PORTAL_AFTER),
    "count_spheres": "SELECT count(*) FROM spheres WHERE org_id = ?",
    # Members of the sphere's organisation not in the sphere yet, by user_id (the primary
    # key's order, so each batch goes on from the last without reading the earlier ones).
    "not_in_sphere": """
        SELECT om.user_id FROM spheres AS s
        JOIN org_members AS om ON om.org_id = s.org_id
        WHERE s.sphere_id = ? AND om.user_id > ? AND NOT EXISTS (
            SELECT 1 FROM members AS m WHERE m.sphere_id = s.sphere_id AND m.user_id = om.user_id
        )
        ORDER BY om.user_id LIMIT ?
    """,
}


@dataclass(frozen=True, slots=True)
class OrgQueries:
    standing: str
    member_state: str
    count_members: str
    get_org: str
    lock_org: str
    update_org: str
    insert_member: str
    set_role: str
    delete_member: str
    global_spheres: str
    memberships: str
    any_membership: str
    directory: str
    directory_after: str
    directory_prefix: str
    directory_prefix_after: str
    portal_all: str
    portal_all_after: str
    portal: str
    portal_after: str
    count_spheres: str
    not_in_sphere: str


@functools.cache
def org_queries(dialect: Dialect) -> OrgQueries:
    assert {f.name for f in fields(OrgQueries)} == set(_TEMPLATES)
    return OrgQueries(**{name: dialect.render(sql) for name, sql in _TEMPLATES.items()})


def _changed_policies(before: OrgRecord, after: Any) -> list[str]:
    """The keys of the policies whose value differs, in their declared order."""
    return [
        f.name
        for f in fields(before.policies)
        if getattr(before.policies, f.name) != getattr(after, f.name)
    ]


def join_global(state: MembershipState) -> MemberChange | None:
    """A member of the organisation enters one of its global spheres (not where banned): the
    rule that keeps a global sphere's members its organisation's."""
    if state.target_role is not None or state.target_banned:
        return None
    return MemberChange(Role.MEMBER, MemberAction.ADDED, AuditAction.MEMBER_ADDED, "member")


class SqlOrgGovernance(SqlAccountDeletions, SqlOrganisations):
    """``storage.org_governance.OrgGovernance`` over the engine's hooks."""

    @property
    def _g(self) -> OrgQueries:
        return org_queries(self._dialect)

    async def create_user(
        self,
        name: str,
        kind: UserKind,
        *,
        is_admin: bool,
        now_ms: int,
        audit: AuditEntry | None = None,
        first_token: TokenRecord | None = None,
        token_audit: AuditEntry | None = None,
        org_id: OrgId | None = DEFAULT_ORG,
    ) -> UserRecord:
        """``storage.base.Directory.create_user``; a user created into an organisation then
        enters its global spheres (one transaction more; their ``member`` events reach live
        subscribers with the sphere's next event)."""
        user = await super().create_user(
            name,
            kind,
            is_admin=is_admin,
            now_ms=now_ms,
            audit=audit,
            first_token=first_token,
            token_audit=token_audit,
            org_id=org_id,
        )
        if org_id is not None:
            await self._enter_global_spheres(org_id, user.user_id, user.user_id, now_ms)
        return user

    async def add_org_member(
        self,
        org_id: OrgId,
        user_id: UserId,
        role: OrgRole,
        *,
        now_ms: int,
        actor_id: str,
    ) -> bool:
        """``storage.organisations.Organisations.add_org_member``; the new member then enters
        the organisation's global spheres, as with ``create_user``."""
        added = await super().add_org_member(
            org_id, user_id, role, now_ms=now_ms, actor_id=actor_id
        )
        if added:
            await self._enter_global_spheres(org_id, user_id, UserId(actor_id), now_ms)
        return added

    async def _enter_global_spheres(
        self, org_id: OrgId, user_id: UserId, actor_id: UserId, now_ms: int
    ) -> None:
        async with self._writing() as db:
            for row in await db.fetch(self._g.global_spheres, org_id):
                await self._change_member_in(db, row[0], actor_id, user_id, join_global, now_ms)

    async def org_access(self, org_id: OrgId, user_id: UserId) -> OrgAccess:
        rows = await self._query(self._g.standing, user_id, org_id)
        if not rows:
            return OrgAccess(None, None)
        row = tuple(rows[0])
        role = row[_ORG_WIDTH]
        return OrgAccess(to_org(row[:_ORG_WIDTH]), OrgRole(role) if role is not None else None)

    async def org_member_state(self, org_id: OrgId, user_id: UserId) -> OrgMemberState | None:
        async with self._reading() as db:
            rows = await db.fetch(self._g.member_state, user_id, user_id, org_id)
            return await self._member_state(db, rows[0]) if rows else None

    async def _locked_state(self, db: SqlRunner, org_id: OrgId, user_id: UserId) -> OrgMemberState:
        if not await db.fetch(self._g.lock_org, org_id):
            raise NotFoundError(f"no organisation {org_id}")
        rows = await db.fetch(self._g.member_state, user_id, user_id, org_id)
        return await self._member_state(db, rows[0])

    async def _member_state(self, db: SqlRunner, row: Sequence[Any]) -> OrgMemberState:
        values = tuple(row)
        org = to_org(values[:_ORG_WIDTH])
        role, managers, exists = values[_ORG_WIDTH:]
        quota = org.policies.quotas.members
        counted = await db.fetch(self._g.count_members, org.org_id, quota or 0)
        return OrgMemberState(
            org=org,
            target_role=OrgRole(role) if role is not None else None,
            managers=int(managers),
            members=int(counted[0][0]),
            target_exists=bool(exists),
        )

    async def update_org(
        self,
        org_id: OrgId,
        actor_id: UserId,
        *,
        name: str | None,
        policies: Mapping[str, Any] | None,
        now_ms: int,
    ) -> OrgRecord:
        g = self._g
        async with self._writing() as db:
            if not await db.fetch(g.lock_org, org_id):
                raise NotFoundError(f"no organisation {org_id}")
            before = to_org((await db.fetch(g.get_org, org_id))[0])
            after_policies = (
                policies_from(dict(policies), before.policies)
                if policies is not None
                else before.policies
            )
            after = dataclasses.replace(
                before, name=name if name is not None else before.name, policies=after_policies
            )
            if after == before:
                return before
            await db.fetch(g.update_org, after.name, after.policies.to_json(), org_id)
            audits: list[tuple[str, str | None]] = []
            if after.name != before.name:
                audits.append((OrgAction.RENAMED, None))
            audits += [
                (OrgAction.POLICY_CHANGED, key) for key in _changed_policies(before, after_policies)
            ]
            for action, detail in audits:
                entry = OrgAuditEntry(org_id, now_ms, actor_id, action, None, detail)
                await insert_org_audit(db, entry)
        return after

    async def enrol_org_member(
        self,
        org_id: OrgId,
        actor_id: UserId,
        user_id: UserId,
        role: OrgRole,
        decide: DecideOrgMember,
        join: DecideMember,
        *,
        now_ms: int,
    ) -> OrgChange:
        g = self._g
        async with self._writing() as db:
            state = await self._locked_state(db, org_id, user_id)
            if not decide(state):
                return OrgChange(False, [])
            if not state.target_exists:  # after decide: only who may add members learns this
                raise NotFoundError(f"no user {user_id}")
            await db.fetch(g.insert_member, org_id, user_id, role.value, now_ms)
            entry = OrgAuditEntry(
                org_id, now_ms, actor_id, OrgAction.MEMBER_ADDED, user_id, role.value
            )
            await insert_org_audit(db, entry)
            events = []
            for row in await db.fetch(g.global_spheres, org_id):
                event = await self._change_member_in(db, row[0], actor_id, user_id, join, now_ms)
                if event is not None:
                    events.append(event)
        return OrgChange(True, events)

    async def set_org_role(
        self,
        org_id: OrgId,
        actor_id: UserId,
        user_id: UserId,
        role: OrgRole,
        decide: DecideOrgMember,
        *,
        now_ms: int,
    ) -> bool:
        async with self._writing() as db:
            state = await self._locked_state(db, org_id, user_id)
            if not decide(state):
                return False
            await db.fetch(self._g.set_role, role.value, org_id, user_id)
            entry = OrgAuditEntry(
                org_id, now_ms, actor_id, OrgAction.ROLE_CHANGED, user_id, role.value
            )
            await insert_org_audit(db, entry)
        return True

    async def end_org_memberships(
        self,
        org_id: OrgId,
        actor_id: UserId,
        user_id: UserId,
        decide: DecideMember,
        *,
        now_ms: int,
        limit: int,
    ) -> list[Message]:
        check_limit(limit)
        d = deletion_queries(self._dialect)
        events: list[Message] = []
        async with self._writing() as db:
            for sphere_id, role in await db.fetch(self._g.memberships, user_id, org_id, limit):
                sphere = await self._lock_sphere(db, sphere_id)
                if role == Role.OWNER.value and (await db.fetch(d.owners, sphere_id))[0][0] == 1:
                    # A sphere keeps an owner while it has members: the next one takes it.
                    successor = await db.fetch(d.successor, sphere_id, user_id)
                    if successor:
                        events.append(
                            await self._promote(db, sphere, successor[0], actor_id, now_ms)
                        )
                event = await self._change_member_in(
                    db, sphere_id, actor_id, user_id, decide, now_ms
                )
                if event is not None:
                    events.append(event)
        return events

    async def remove_org_membership(
        self,
        org_id: OrgId,
        actor_id: UserId,
        user_id: UserId,
        decide: DecideOrgMember,
        *,
        now_ms: int,
    ) -> bool | None:
        g = self._g
        async with self._writing() as db:
            state = await self._locked_state(db, org_id, user_id)
            if not decide(state):
                return False
            if await db.fetch(g.any_membership, user_id, org_id):
                return None
            await db.fetch(g.delete_member, org_id, user_id)
            entry = OrgAuditEntry(org_id, now_ms, actor_id, OrgAction.MEMBER_REMOVED, user_id)
            await insert_org_audit(db, entry)
        return True

    async def list_org_members(
        self,
        org_id: OrgId,
        *,
        query: str | None,
        limit: int,
        after: DirectoryKey | None = None,
    ) -> list[DirectoryEntry]:
        check_limit(limit)
        g = self._g
        cursor: tuple[str, ...] = after if after is not None else ()
        prefix: tuple[str, ...] = ()
        if query:
            prefix = (query, _PREFIX_END) if cursor else (query, query, _PREFIX_END)
        sql = {
            (False, False): g.directory,
            (False, True): g.directory_after,
            (True, False): g.directory_prefix,
            (True, True): g.directory_prefix_after,
        }[(bool(prefix), bool(cursor))]
        rows = await self._query(sql, org_id, *prefix, *cursor, limit)
        return [DirectoryEntry(UserId(r[0]), r[1], OrgRole(r[2]), r[3]) for r in rows]

    async def list_org_spheres(
        self,
        org_id: OrgId,
        user_id: UserId,
        *,
        every: bool,
        limit: int,
        after: PortalKey | None = None,
        hidden: Sequence[Privacy] = (),
    ) -> list[OrgSphere]:
        check_limit(limit)
        g = self._g
        left_out = self._dialect.list_arg([p.value for p in hidden])
        if after is None:
            sql = g.portal_all if every else g.portal
            rows = await self._query(sql, user_id, user_id, org_id, left_out, limit)
        else:
            sql = g.portal_all_after if every else g.portal_after
            name, sphere_id = after
            rows = await self._query(
                sql, user_id, user_id, org_id, left_out, name, sphere_id, limit
            )
        return [_portal_sphere(row) for row in rows]

    async def count_org_spheres(self, org_id: OrgId) -> int:
        rows = await self._query(self._g.count_spheres, org_id)
        return int(rows[0][0])

    async def fill_global_sphere(
        self,
        sphere_id: SphereId,
        actor_id: UserId,
        decide: DecideMember,
        *,
        after: str,
        now_ms: int,
        limit: int,
    ) -> tuple[list[Message], str | None]:
        check_limit(limit)
        events: list[Message] = []
        async with self._writing() as db:
            rows = await db.fetch(self._g.not_in_sphere, sphere_id, after, limit)
            for row in rows:
                event = await self._change_member_in(
                    db, sphere_id, actor_id, UserId(row[0]), decide, now_ms
                )
                if event is not None:
                    events.append(event)
        return events, (rows[-1][0] if len(rows) == limit else None)

    async def appoint_manager(
        self,
        org_id: OrgId,
        sphere_id: SphereId,
        manager_id: UserId,
        decide: DecideMember,
        *,
        now_ms: int,
    ) -> tuple[SphereRecord, Message | None]:
        async with self._writing() as db:
            sphere = await self._lock_sphere(db, sphere_id)
            if sphere.org_id != org_id:
                raise NotFoundError(f"no sphere {sphere_id}")
            event = await self._change_member_in(
                db, sphere_id, manager_id, manager_id, decide, now_ms
            )
            if event is None:
                return sphere, None
            entry = OrgAuditEntry(org_id, now_ms, manager_id, OrgAction.SPHERE_MANAGED, sphere_id)
            await insert_org_audit(db, entry)
        return dataclasses.replace(sphere, offset=event.offset), event


def _portal_sphere(row: Sequence[Any]) -> OrgSphere:
    sphere_id, name, privacy, listed, join_policy, role, requested = row
    return OrgSphere(
        sphere_id=SphereId(sphere_id),
        name=name,
        privacy=Privacy(privacy),
        listed=bool(listed),
        join_policy=JoinPolicy(join_policy),
        role=Role(role) if role is not None else None,
        requested=bool(requested),
    )
