"""Requests on organisations: the caller's organisations, one organisation and its policies,
its directory, members and roles, its audit log, its portal, and a manager's appointment in
one of its spheres.

The dispatcher checked the row's organisation right (``server.access.org_rights``) before any
handler here runs, and hands over what it found (``Caller.org``); the rules about particular
rows (the last manager, the members quota) are decided again inside the store's transaction.
Membership changes that reach into spheres publish the ``member`` events the store wrote, so
every node ends (or begins) the subscriptions they concern, as for any membership change.
"""

from __future__ import annotations

from typing import cast

from protocol import (
    AddOrgMember,
    CloisonError,
    ErrorCode,
    Frame,
    GetOrg,
    ListOrgAudit,
    ListOrgMembers,
    ListOrgs,
    ListOrgSpheres,
    ManageSphere,
    Message,
    Ok,
    OrgAuditList,
    OrgAuditRecord,
    OrgInfo,
    OrgList,
    OrgMember,
    OrgMemberList,
    OrgRole,
    OrgSphere,
    OrgSphereList,
    OrgSummary,
    RemoveOrgMember,
    SetOrgRole,
    SphereInfo,
    UpdateOrg,
)
from server import paging
from server.access import SPHERE_NOT_FOUND, Granted
from server.access.org_rights import (
    UNMANAGED_TYPES,
    OrgGranted,
    decide_appointment,
    decide_global_join,
    decide_org_add,
    decide_org_departure,
    decide_org_remove,
    deciding_org_role,
    org_not_found,
)
from server.governance.org_policies import policy_view, raw_policies
from server.operations.context import Caller, Deps, Handler, now_ms, org_granted
from server.operations.spheres import DEFAULT_LIST_LIMIT, SphereHandlers
from storage import DirectoryEntry, DirectoryKey, OrgRecord, PortalKey

# Why: a removal ends this many sphere memberships per transaction; a member of thousands of
# spheres is removed in many short transactions rather than one that holds locks for long.
ORG_REMOVAL_BATCH = 100
# Why: a member who keeps being added to spheres while being removed is a race, not a loop:
# after this many rounds the request gives up and says so.
ORG_REMOVAL_ROUNDS = 5
# Why: an administrator reads the latest acts first; more is a page away.
DEFAULT_ORG_AUDIT_LIMIT = 50
# The shape of the directory's and the portal's cursors: (name key, user_id), (name, sphere_id).
DIRECTORY_CURSOR = (str, str)


def _summary(org: OrgRecord, role: OrgRole) -> OrgSummary:
    return OrgSummary(org_id=org.org_id, name=org.name, role=role, suspended=org.suspended)


def _portal_key(sphere: OrgSphere) -> PortalKey:
    return (sphere.name, sphere.sphere_id)


class OrgHandlers:
    def __init__(self, deps: Deps, spheres: SphereHandlers) -> None:
        self._deps = deps
        self._store = deps.store
        self._hub = deps.hub
        self._spheres = spheres

    def handlers(self) -> dict[type[Frame], Handler]:
        return {
            ListOrgs: self._list_orgs,
            GetOrg: self._get_org,
            UpdateOrg: self._update_org,
            ListOrgMembers: self._list_members,
            AddOrgMember: self._add_member,
            RemoveOrgMember: self._remove_member,
            SetOrgRole: self._set_role,
            ListOrgAudit: self._list_audit,
            ListOrgSpheres: self._list_spheres,
            ManageSphere: self._manage_sphere,
        }

    async def _publish(self, events: list[Message]) -> None:
        for event in events:
            await self._hub.publish(event)

    def _info(self, org: OrgRecord, granted: OrgGranted, ref: str | None) -> OrgInfo:
        policies = policy_view(org.policies, self._deps.config, manager=granted.manager)
        return OrgInfo(org=_summary(org, granted.role), policies=policies, ref=ref)

    async def _list_orgs(self, caller: Caller, frame: ListOrgs, grant: Granted | None) -> Frame:
        memberships = await self._store.user_orgs(caller.user.user_id)
        return OrgList(orgs=[_summary(m.org, m.role) for m in memberships], ref=frame.ref)

    async def _get_org(self, caller: Caller, frame: GetOrg, grant: Granted | None) -> Frame:
        granted = org_granted(caller)
        return self._info(granted.org, granted, frame.ref)

    async def _update_org(self, caller: Caller, frame: UpdateOrg, grant: Granted | None) -> Frame:
        granted = org_granted(caller)
        org = await self._store.update_org(
            granted.org_id,
            caller.user.user_id,
            name=frame.name,
            policies=raw_policies(frame.policies) if frame.policies is not None else None,
            now_ms=now_ms(),
        )
        return self._info(org, granted, frame.ref)

    async def _list_members(
        self, caller: Caller, frame: ListOrgMembers, grant: Granted | None
    ) -> Frame:
        granted = org_granted(caller)
        codec = self._deps.codec(caller)
        limit = frame.limit or DEFAULT_LIST_LIMIT
        after = paging.read_cursor(frame.after, DIRECTORY_CURSOR) if frame.after else None
        page = await self._store.list_org_members(
            granted.org_id,
            query=frame.query,
            limit=limit + 1,
            after=cast("DirectoryKey | None", after),
        )

        def entry(member: DirectoryEntry) -> OrgMember:
            return OrgMember(user_id=member.user_id, name=member.name, role=member.role)

        entries, cursor = paging.fit_listing(
            page,
            limit,
            budget=self._deps.page_bytes,
            size=lambda m: paging.encoded_size(
                codec, OrgMemberList(org_id=granted.org_id, members=[entry(m)])
            ),
            key=lambda m: m.key,
        )
        return OrgMemberList(
            org_id=granted.org_id,
            members=[entry(m) for m in entries],
            next=cursor,
            ref=frame.ref,
        )

    async def _add_member(
        self, caller: Caller, frame: AddOrgMember, grant: Granted | None
    ) -> Frame:
        granted = org_granted(caller)
        change = await self._store.enrol_org_member(
            granted.org_id,
            caller.user.user_id,
            frame.user_id,
            frame.role,
            decide_org_add,
            decide_global_join,
            now_ms=now_ms(),
        )
        await self._publish(change.events)
        return Ok(ref=frame.ref)

    async def _remove_member(
        self, caller: Caller, frame: RemoveOrgMember, grant: Granted | None
    ) -> Frame:
        """End every membership of the user in the organisation's spheres (each a ``member``
        event, published as its batch commits), then their membership of the organisation."""
        granted = org_granted(caller)
        actor_id, target = caller.user.user_id, frame.user_id
        state = await self._store.org_member_state(granted.org_id, target)
        if state is None:
            raise org_not_found()
        decide_org_remove(state)  # refused before any sphere membership ends
        for _ in range(ORG_REMOVAL_ROUNDS):
            while events := await self._store.end_org_memberships(
                granted.org_id,
                actor_id,
                target,
                decide_org_departure,
                now_ms=now_ms(),
                limit=ORG_REMOVAL_BATCH,
            ):
                await self._publish(events)
            removed = await self._store.remove_org_membership(
                granted.org_id, actor_id, target, decide_org_remove, now_ms=now_ms()
            )
            if removed is not None:
                return Ok(ref=frame.ref)
        raise CloisonError(
            "the member was added to spheres while being removed; try again",
            code=ErrorCode.CONFLICT,
        )

    async def _set_role(self, caller: Caller, frame: SetOrgRole, grant: Granted | None) -> Frame:
        granted = org_granted(caller)
        await self._store.set_org_role(
            granted.org_id,
            caller.user.user_id,
            frame.user_id,
            frame.role,
            deciding_org_role(frame.role),
            now_ms=now_ms(),
        )
        return Ok(ref=frame.ref)

    async def _list_audit(
        self, caller: Caller, frame: ListOrgAudit, grant: Granted | None
    ) -> Frame:
        granted = org_granted(caller)
        limit = frame.limit or DEFAULT_ORG_AUDIT_LIMIT
        entries = await self._store.list_org_audit(
            granted.org_id, before=frame.before, limit=limit + 1
        )
        return OrgAuditList(
            org_id=granted.org_id,
            entries=[
                OrgAuditRecord(
                    seq=e.seq,
                    ts_ms=e.ts_ms,
                    actor_id=e.actor_id,
                    action=e.action,
                    target_id=e.target_id,
                    detail=e.detail,
                )
                for e in entries[:limit]
            ],
            has_more=len(entries) > limit,
            ref=frame.ref,
        )

    async def _list_spheres(
        self, caller: Caller, frame: ListOrgSpheres, grant: Granted | None
    ) -> Frame:
        granted = org_granted(caller)
        codec = self._deps.codec(caller)
        limit = frame.limit or DEFAULT_LIST_LIMIT
        after = paging.read_cursor(frame.after, paging.SPHERE_CURSOR) if frame.after else None
        page = await self._store.list_org_spheres(
            granted.org_id,
            caller.user.user_id,
            every=granted.manager,
            limit=limit + 1,
            after=cast("PortalKey | None", after),
            hidden=sorted(UNMANAGED_TYPES),
        )
        spheres, cursor = paging.fit_listing(
            page,
            limit,
            budget=self._deps.page_bytes,
            size=lambda s: paging.encoded_size(
                codec, OrgSphereList(org_id=granted.org_id, spheres=[s])
            ),
            key=_portal_key,
        )
        return OrgSphereList(org_id=granted.org_id, spheres=spheres, next=cursor, ref=frame.ref)

    async def _manage_sphere(
        self, caller: Caller, frame: ManageSphere, grant: Granted | None
    ) -> Frame:
        granted = org_granted(caller)
        sphere = await self._store.get_sphere(frame.sphere_id)
        if sphere is None or sphere.org_id != granted.org_id or sphere.privacy in UNMANAGED_TYPES:
            raise CloisonError(SPHERE_NOT_FOUND, code=ErrorCode.NOT_FOUND)
        after, event = await self._store.appoint_manager(
            granted.org_id,
            frame.sphere_id,
            caller.user.user_id,
            decide_appointment,
            now_ms=now_ms(),
        )
        if event is not None:
            await self._hub.publish(event)
        return SphereInfo(sphere=await self._spheres.summary(after, caller), ref=frame.ref)
