"""The storage contract of governing organisations, on every backend: the org check's one
read, policies changed and audited key by key, the directory by name prefix and page, roles,
global spheres that follow the organisation's membership, removal that ends every sphere
membership first, the portal, and a manager's visible appointment."""

from __future__ import annotations

import pytest

from protocol import MemberAction, OrgId, Privacy, Role, UserId, UserKind
from storage import (
    AuditAction,
    InvalidPolicyError,
    MemberChange,
    MembershipState,
    NotFoundError,
    OrgMemberState,
    OrgRole,
    Store,
)

T0 = 1_700_000_000_000


def yes(state: OrgMemberState) -> bool:
    return True


def new_member(state: OrgMemberState) -> bool:
    return state.target_role is None


def old_member(state: OrgMemberState) -> bool:
    return state.target_role is not None


def join_global(state: MembershipState) -> MemberChange | None:
    if state.target_role is not None or state.target_banned:
        return None
    return MemberChange(Role.MEMBER, MemberAction.ADDED, AuditAction.MEMBER_ADDED, "member")


def remove(state: MembershipState) -> MemberChange | None:
    if state.target_role is None:
        return None
    return MemberChange(None, MemberAction.REMOVED, AuditAction.MEMBER_REMOVED)


def appoint(state: MembershipState) -> MemberChange | None:
    if state.target_role in (Role.OWNER, Role.ADMIN):
        return None
    return MemberChange(Role.ADMIN, MemberAction.APPOINTED, AuditAction.MANAGER_APPOINTED)


async def org_with(store: Store, *names: str) -> tuple[OrgId, list[UserId]]:
    """A new organisation whose first user (of ``names``) is its manager."""
    users = [
        (await store.create_user(n, UserKind.HUMAN, is_admin=False, now_ms=T0, org_id=None)).user_id
        for n in names
    ]
    org = await store.create_org("Acme", now_ms=T0, actor_id="op", manager_id=users[0])
    for user_id in users[1:]:
        change = await store.enrol_org_member(
            org.org_id, users[0], user_id, OrgRole.MEMBER, new_member, join_global, now_ms=T0
        )
        assert change.changed
    return org.org_id, users


async def test_standing_is_one_read_alike_for_missing_and_foreign(store: Store) -> None:
    org_id, (ann, bob) = await org_with(store, "Ann", "Bob")
    outsider = await store.create_user("Out", UserKind.HUMAN, is_admin=False, now_ms=T0)
    standing = await store.org_access(org_id, ann)
    assert standing.org is not None and standing.role is OrgRole.MANAGER
    assert (await store.org_access(org_id, bob)).role is OrgRole.MEMBER
    foreign = await store.org_access(org_id, outsider.user_id)
    assert foreign.org is not None and foreign.role is None
    assert await store.org_access(OrgId("o_missing"), ann) == (
        await store.org_access(OrgId("o_missing"), outsider.user_id)
    )
    assert (await store.org_access(OrgId("o_missing"), ann)).org is None


async def test_policies_change_key_by_key_and_are_audited(store: Store) -> None:
    org_id, (ann,) = await org_with(store, "Ann")
    updated = await store.update_org(
        org_id,
        ann,
        name="Acme Ltd",
        policies={"directory": False, "visitors": False, "quotas": {"members": 5}},
        now_ms=T0 + 1,
    )
    assert updated.name == "Acme Ltd" and not updated.policies.directory
    assert updated.policies.quotas.members == 5
    assert await store.get_org(org_id) == updated
    entries = await store.list_org_audit(org_id, before=None, limit=10)
    changed = [(e.action, e.detail) for e in entries if e.ts_ms == T0 + 1]
    # visitors was false already: no entry; each entry names its key, never its value.
    assert sorted(changed, key=str) == sorted(
        [("org_renamed", None), ("policy_changed", "directory"), ("policy_changed", "quotas")],
        key=str,
    )
    same = await store.update_org(org_id, ann, name=None, policies={"directory": False}, now_ms=T0)
    assert same == updated
    with pytest.raises(InvalidPolicyError):
        await store.update_org(org_id, ann, name=None, policies={"directory": 1}, now_ms=T0)
    with pytest.raises(NotFoundError):
        await store.update_org(OrgId("o_missing"), ann, name="x", policies=None, now_ms=T0)


async def test_the_directory_pages_by_name_and_searches_a_prefix(store: Store) -> None:
    org_id, users = await org_with(store, "Zoé", "anna", "Anne", "Bob", "ANTON", "Émile")
    everyone = await store.list_org_members(org_id, query=None, limit=10)
    assert [e.name for e in everyone] == ["anna", "Anne", "ANTON", "Bob", "Zoé", "Émile"]
    first = await store.list_org_members(org_id, query=None, limit=2)
    rest = await store.list_org_members(org_id, query=None, limit=10, after=first[-1].key)
    assert first + rest == everyone
    found = await store.list_org_members(org_id, query="AN", limit=10)
    assert [e.name for e in found] == ["anna", "Anne", "ANTON"]
    page = await store.list_org_members(org_id, query="an", limit=1, after=found[0].key)
    assert [e.name for e in page] == ["Anne"]
    assert await store.list_org_members(org_id, query="q", limit=10) == []
    assert {e.role for e in everyone if e.user_id == users[0]} == {OrgRole.MANAGER}


async def test_roles_and_the_member_state(store: Store) -> None:
    org_id, (ann, bob) = await org_with(store, "Ann", "Bob")
    state = await store.org_member_state(org_id, bob)
    assert state is not None
    # Members are counted only as far as a quota needs.
    assert (state.target_role, state.managers, state.members) == (OrgRole.MEMBER, 1, 0)
    await store.update_org(org_id, ann, name=None, policies={"quotas": {"members": 2}}, now_ms=T0)
    state = await store.org_member_state(org_id, bob)
    assert state is not None and state.members == 2
    assert await store.set_org_role(org_id, ann, bob, OrgRole.MANAGER, yes, now_ms=T0)
    state = await store.org_member_state(org_id, bob)
    assert state is not None and state.managers == 2
    assert await store.org_member_state(OrgId("o_missing"), bob) is None
    entries = await store.list_org_audit(org_id, before=None, limit=1)
    assert (entries[0].action, entries[0].target_id, entries[0].detail) == (
        "org_role_changed",
        bob,
        "manager",
    )
    ghost = await store.org_member_state(org_id, UserId("u_nobody"))
    assert ghost is not None and not ghost.target_exists
    with pytest.raises(NotFoundError):
        await store.enrol_org_member(
            org_id, ann, UserId("u_nobody"), OrgRole.MEMBER, yes, join_global, now_ms=T0
        )


async def test_global_spheres_follow_the_organisation(store: Store) -> None:
    org_id, (ann, bob, cat) = await org_with(store, "Ann", "Bob", "Cat")
    sphere = await store.create_sphere("All", Privacy.GLOBAL, ann, now_ms=T0, org_id=org_id)
    events, cursor = await store.fill_global_sphere(
        sphere.sphere_id, ann, join_global, after="", now_ms=T0, limit=1
    )
    while cursor is not None:
        more, cursor = await store.fill_global_sphere(
            sphere.sphere_id, ann, join_global, after=cursor, now_ms=T0, limit=1
        )
        events += more
    assert sorted(e.member_id for e in events if e.member_id) == sorted([bob, cat])
    assert {e.action for e in events} == {MemberAction.ADDED}
    dan = await store.create_user("Dan", UserKind.HUMAN, is_admin=False, now_ms=T0, org_id=None)
    change = await store.enrol_org_member(
        org_id, ann, dan.user_id, OrgRole.MEMBER, new_member, join_global, now_ms=T0
    )
    assert [(e.sphere_id, e.member_id) for e in change.events] == [(sphere.sphere_id, dan.user_id)]
    assert await store.get_role(sphere.sphere_id, dan.user_id) is Role.MEMBER
    eve = await store.create_user("Eve", UserKind.HUMAN, is_admin=False, now_ms=T0, org_id=org_id)
    assert await store.get_role(sphere.sphere_id, eve.user_id) is Role.MEMBER
    again = await store.enrol_org_member(
        org_id, ann, dan.user_id, OrgRole.MEMBER, new_member, join_global, now_ms=T0
    )
    assert again.changed is False and again.events == []


async def test_removal_ends_every_sphere_membership_first(store: Store) -> None:
    org_id, (ann, bob, cat) = await org_with(store, "Ann", "Bob", "Cat")
    own = await store.create_sphere("Bob's", Privacy.PRIVATE, bob, now_ms=T0, org_id=org_id)
    await store.change_member(own.sphere_id, bob, cat, join_global, now_ms=T0)
    alone = await store.create_sphere("Solo", Privacy.OPEN, bob, now_ms=T0, org_id=org_id)
    elsewhere = await store.create_sphere("Default", Privacy.OPEN, bob, now_ms=T0)
    assert await store.remove_org_membership(org_id, ann, bob, yes, now_ms=T0) is None
    events = []
    while batch := await store.end_org_memberships(org_id, ann, bob, remove, now_ms=T0, limit=1):
        events += batch
    # Bob's sphere passes to Cat before Bob goes; the one he was alone in is kept, empty.
    assert [(e.sphere_id, e.member_id, e.action) for e in events] == sorted(
        [
            (own.sphere_id, cat, MemberAction.ROLE_CHANGED),
            (own.sphere_id, bob, MemberAction.REMOVED),
            (alone.sphere_id, bob, MemberAction.REMOVED),
        ],
        key=lambda t: (t[0], t[2] is MemberAction.REMOVED),
    )
    assert await store.get_role(own.sphere_id, cat) is Role.OWNER
    assert await store.get_sphere(alone.sphere_id) is not None
    assert await store.get_role(elsewhere.sphere_id, bob) is Role.OWNER  # another organisation
    assert await store.remove_org_membership(org_id, ann, bob, yes, now_ms=T0) is True
    assert await store.org_role(org_id, bob) is None
    assert await store.remove_org_membership(org_id, ann, bob, old_member, now_ms=T0) is False
    entries = await store.list_org_audit(org_id, before=None, limit=1)
    assert (entries[0].action, entries[0].target_id) == ("org_member_removed", bob)


async def test_the_portal_and_a_managers_view(store: Store) -> None:
    org_id, (ann, bob) = await org_with(store, "Ann", "Bob")
    listed = await store.create_sphere("B open", Privacy.OPEN, ann, now_ms=T0, org_id=org_id)
    hidden = await store.create_sphere("A private", Privacy.PRIVATE, ann, now_ms=T0, org_id=org_id)
    everyone = await store.create_sphere("C all", Privacy.GLOBAL, ann, now_ms=T0, org_id=org_id)
    await store.create_sphere("Elsewhere", Privacy.OPEN, ann, now_ms=T0)
    portal = await store.list_org_spheres(org_id, bob, every=False, limit=10)
    assert [s.sphere_id for s in portal] == [listed.sphere_id, everyone.sphere_id]
    assert all(s.role is None and not s.requested for s in portal)
    managed = await store.list_org_spheres(org_id, ann, every=True, limit=2)
    assert [s.sphere_id for s in managed] == [hidden.sphere_id, listed.sphere_id]
    assert managed[0].role is Role.OWNER and managed[0].privacy is Privacy.PRIVATE
    rest = await store.list_org_spheres(
        org_id, ann, every=True, limit=2, after=(managed[-1].name, managed[-1].sphere_id)
    )
    assert [s.sphere_id for s in rest] == [everyone.sphere_id]
    unsealed = await store.list_org_spheres(
        org_id, ann, every=True, limit=10, hidden=[Privacy.PRIVATE, Privacy.GLOBAL]
    )
    assert [s.sphere_id for s in unsealed] == [listed.sphere_id]
    assert await store.count_org_spheres(org_id) == 3


async def test_a_managers_appointment_is_an_event_and_audited(store: Store) -> None:
    org_id, (ann, bob) = await org_with(store, "Ann", "Bob")
    sphere = await store.create_sphere("Bob's", Privacy.PRIVATE, bob, now_ms=T0, org_id=org_id)
    after, event = await store.appoint_manager(org_id, sphere.sphere_id, ann, appoint, now_ms=T0)
    assert event is not None and event.action is MemberAction.APPOINTED
    assert (event.member_id, event.role, event.offset) == (ann, Role.ADMIN, after.offset)
    assert await store.get_role(sphere.sphere_id, ann) is Role.ADMIN
    _, again = await store.appoint_manager(org_id, sphere.sphere_id, ann, appoint, now_ms=T0)
    assert again is None
    entries = await store.list_org_audit(org_id, before=None, limit=1)
    assert (entries[0].action, entries[0].target_id) == ("sphere_managed", sphere.sphere_id)
    audit = await store.list_sphere_audit(sphere.sphere_id, before=None, limit=1)
    assert audit[0].action is AuditAction.MANAGER_APPOINTED
    other = await store.create_sphere("Default", Privacy.OPEN, bob, now_ms=T0)
    with pytest.raises(NotFoundError):
        await store.appoint_manager(org_id, other.sphere_id, ann, appoint, now_ms=T0)
