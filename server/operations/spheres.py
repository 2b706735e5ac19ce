"""Requests on spheres and their members: list, create, update, join, leave, add, remove,
change roles, list members."""

from __future__ import annotations

import dataclasses
from typing import cast

from protocol import (
    MAX_LIST_LIMIT,
    AddMember,
    CreateSphere,
    Frame,
    Join,
    Leave,
    ListMembers,
    ListSpheres,
    MemberList,
    Ok,
    Privacy,
    ProtocolViolation,
    RemoveMember,
    SetRole,
    SphereId,
    SphereInfo,
    SphereList,
    SphereSummary,
    UpdateSphere,
    UserId,
)
from server import access, paging
from server.access import Granted
from server.access.org_rights import check_sphere_quota, check_sphere_type, decide_global_join
from server.operations.context import Caller, Deps, Handler, granted, now_ms, org_granted
from storage import (
    DecideMember,
    MemberKey,
    SphereKey,
    SphereRecord,
    member_key,
    sphere_key,
    summary_of,
)

DISCOVER_LIMIT = MAX_LIST_LIMIT
# Why: a member or sphere list shows this many at once; more is a page away.
DEFAULT_LIST_LIMIT = 100
# Why: a new global sphere takes in its organisation's members this many per transaction, so
# an organisation of 400,000 adds them in short transactions, publishing as it goes.
GLOBAL_FILL_BATCH = 200


class SphereHandlers:
    def __init__(self, deps: Deps) -> None:
        self._deps = deps
        self._store = deps.store
        self._hub = deps.hub

    def handlers(self) -> dict[type[Frame], Handler]:
        return {
            ListSpheres: self._list_spheres,
            CreateSphere: self._create_sphere,
            UpdateSphere: self._update_sphere,
            Join: self._join,
            Leave: self._leave,
            AddMember: self._add_member,
            RemoveMember: self._remove_member,
            SetRole: self._set_role,
            ListMembers: self._list_members,
        }

    async def summary(self, sphere: SphereRecord, caller: Caller) -> SphereSummary:
        """The sphere as the caller sees it (with their role and unread count if a member)."""
        user_id = caller.user.user_id
        for summary in await self._store.user_spheres(user_id):
            if summary.sphere_id == sphere.sphere_id:
                return (await self._store.with_participants([summary], user_id))[0]
        return summary_of(sphere)

    async def _list_spheres(
        self, caller: Caller, frame: ListSpheres, grant: Granted | None
    ) -> Frame:
        codec = self._deps.codec(caller)
        budget = self._deps.page_bytes
        if frame.discover:
            if frame.after is not None:
                raise ProtocolViolation("after: discover lists the newest spheres, unpaged")
            listed = await self._store.discoverable_spheres(frame.limit or DISCOVER_LIMIT)
            mine = await self._store.user_spheres(caller.user.user_id)
            by_id = {s.sphere_id: s for s in mine}
            spheres, _ = paging.fit(
                [by_id.get(s.sphere_id, s) for s in listed],
                budget=budget,
                size=lambda s: paging.encoded_size(codec, SphereList(spheres=[s])),
            )
            return SphereList(spheres=spheres, ref=frame.ref)
        limit = frame.limit or DEFAULT_LIST_LIMIT
        after = paging.read_cursor(frame.after, paging.SPHERE_CURSOR) if frame.after else None
        page = await self._store.user_spheres(
            caller.user.user_id, limit=limit + 1, after=cast("SphereKey | None", after)
        )
        page = await self._store.with_participants(page, caller.user.user_id)
        spheres, cursor = paging.fit_listing(
            page,
            limit,
            budget=budget,
            size=lambda s: paging.encoded_size(codec, SphereList(spheres=[s])),
            key=sphere_key,
        )
        return SphereList(spheres=spheres, next=cursor, ref=frame.ref)

    async def _create_sphere(
        self, caller: Caller, frame: CreateSphere, grant: Granted | None
    ) -> Frame:
        """A sphere of the organisation the dispatcher checked: of a type its policy lets the
        caller create, within its ``spheres`` quota, with its default retention and history
        unless the frame says otherwise. A global sphere then takes in every member."""
        org = org_granted(caller)
        policies = org.org.policies
        check_sphere_type(org, frame.privacy)
        if policies.quotas.spheres is not None:  # counted only when there is a limit
            check_sphere_quota(org, await self._store.count_org_spheres(org.org_id))
        settings = access.create_settings(
            frame.name,
            frame.privacy,
            frame.listed,
            frame.join_policy,
            frame.history or policies.history,
        )
        if policies.retention_days is not None:
            ceiling = self._deps.config.retention_days
            days = min(policies.retention_days, ceiling) if ceiling else policies.retention_days
            settings = dataclasses.replace(settings, retention_days=days)
        user_id = caller.user.user_id
        sphere = await self._store.create_sphere(
            frame.name,
            frame.privacy,
            user_id,
            now_ms=now_ms(),
            settings=settings,
            org_id=org.org_id,
        )
        if sphere.privacy is Privacy.GLOBAL:
            await self._fill_global(sphere.sphere_id, user_id)
            sphere = await self._store.get_sphere(sphere.sphere_id) or sphere
        return SphereInfo(sphere=await self.summary(sphere, caller), ref=frame.ref)

    async def _fill_global(self, sphere_id: SphereId, actor_id: UserId) -> None:
        """Add every member of the organisation, a batch per transaction, publishing each."""
        after: str | None = ""
        while after is not None:
            events, after = await self._store.fill_global_sphere(
                sphere_id,
                actor_id,
                decide_global_join,
                after=after,
                now_ms=now_ms(),
                limit=GLOBAL_FILL_BATCH,
            )
            for event in events:
                await self._hub.publish(event)

    async def _update_sphere(
        self, caller: Caller, frame: UpdateSphere, grant: Granted | None
    ) -> Frame:
        decide = access.deciding_settings(
            name=frame.name,
            privacy=frame.privacy,
            listed=frame.listed,
            join_policy=frame.join_policy,
            history=frame.history,
            retention_days=frame.retention_days,
            retention_ceiling_days=self._deps.config.retention_days,
        )
        updated, event = await self._store.update_sphere(
            frame.sphere_id, caller.user.user_id, decide, now_ms=now_ms()
        )
        if event is not None:
            await self._hub.publish(event)  # non-member readers lose access in stream order
        return SphereInfo(sphere=await self.summary(updated, caller), ref=frame.ref)

    async def change_member(
        self, caller: Caller, sphere_id: SphereId, target: UserId, decide: DecideMember
    ) -> None:
        """Make a membership change as ``decide`` rules on the rows of its transaction.

        The dispatcher's check first answered ``not_found`` alike for hidden and missing
        spheres; the rules are then checked again inside the store's transaction.
        """
        event = await self._store.change_member(
            sphere_id, caller.user.user_id, target, decide, now_ms=now_ms()
        )
        if event is not None:
            await self._hub.publish(event)

    async def _join(self, caller: Caller, frame: Join, grant: Granted | None) -> Frame:
        user_id = caller.user.user_id
        await self.change_member(caller, frame.sphere_id, user_id, access.decide_join)
        sphere, _ = await access.resolve(self._store, frame.sphere_id, user_id)
        return SphereInfo(sphere=await self.summary(sphere, caller), ref=frame.ref)

    async def _leave(self, caller: Caller, frame: Leave, grant: Granted | None) -> Frame:
        user_id = caller.user.user_id
        await self.change_member(caller, frame.sphere_id, user_id, access.decide_leave)
        if granted(grant).privacy is Privacy.DIRECT:
            # A conversation nobody is in is nobody's: its last participant takes it along.
            closed = await self._store.close_if_empty(frame.sphere_id, user_id, now_ms=now_ms())
            if closed is not None:
                await self._hub.publish(closed)
        return Ok(ref=frame.ref)

    async def _add_member(self, caller: Caller, frame: AddMember, grant: Granted | None) -> Frame:
        decide = access.deciding_add(frame.role)
        await self.change_member(caller, frame.sphere_id, frame.user_id, decide)
        return Ok(ref=frame.ref)

    async def _remove_member(
        self, caller: Caller, frame: RemoveMember, grant: Granted | None
    ) -> Frame:
        await self.change_member(caller, frame.sphere_id, frame.user_id, access.decide_remove)
        return Ok(ref=frame.ref)

    async def _set_role(self, caller: Caller, frame: SetRole, grant: Granted | None) -> Frame:
        decide = access.deciding_role(frame.role)
        await self.change_member(caller, frame.sphere_id, frame.user_id, decide)
        return Ok(ref=frame.ref)

    async def _list_members(
        self, caller: Caller, frame: ListMembers, grant: Granted | None
    ) -> Frame:
        codec = self._deps.codec(caller)
        limit = frame.limit or DEFAULT_LIST_LIMIT
        after = paging.read_cursor(frame.after, paging.MEMBER_CURSOR) if frame.after else None
        page = await self._store.list_members(
            frame.sphere_id, limit=limit + 1, after=cast("MemberKey | None", after)
        )
        members, cursor = paging.fit_listing(
            page,
            limit,
            budget=self._deps.page_bytes,
            size=lambda m: paging.encoded_size(
                codec, MemberList(sphere_id=frame.sphere_id, members=[m])
            ),
            key=member_key,
        )
        return MemberList(sphere_id=frame.sphere_id, members=members, next=cursor, ref=frame.ref)
