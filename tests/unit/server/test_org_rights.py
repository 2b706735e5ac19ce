"""The organisation rights table and the decisions built on it: pure functions of the rows a
transaction read; and what global spheres are in the sphere rights table."""

from __future__ import annotations

import dataclasses

import pytest

from protocol import (
    CloisonError,
    ErrorCode,
    HistoryMode,
    MemberAction,
    OrgId,
    OrgPolicySet,
    OrgQuotaSet,
    OrgRole,
    Privacy,
    Role,
    SphereId,
)
from server import access
from server.access import Right, Standing, standing_allows
from server.access.org_rights import (
    ORG_RIGHTS,
    OrgGranted,
    OrgRight,
    OrgStanding,
    check_sphere_quota,
    check_sphere_type,
    decide_appointment,
    decide_global_join,
    decide_org_add,
    decide_org_departure,
    decide_org_remove,
    deciding_org_role,
    org_allowed,
    org_standing_allows,
)
from server.config import Config
from server.governance.org_policies import policy_view, raw_policies
from storage import (
    MembershipState,
    OrgMemberState,
    OrgPolicies,
    OrgQuotas,
    OrgRecord,
    SphereRecord,
    policies_from,
)

ORG = OrgRecord(OrgId("o_1"), "Acme", 0)


def member_state(
    target: OrgRole | None, *, managers: int = 1, members: int = 3, quota: int | None = None
) -> OrgMemberState:
    org = dataclasses.replace(ORG, policies=OrgPolicies(quotas=OrgQuotas(members=quota)))
    return OrgMemberState(org, target, managers, members, target_exists=True)


def code(fn: object, *args: object) -> ErrorCode:
    with pytest.raises(CloisonError) as raised:
        fn(*args)  # type: ignore[operator]
    return raised.value.code


def test_a_stranger_holds_nothing_and_managers_everything() -> None:
    for right in OrgRight:
        assert not org_standing_allows(right, OrgStanding.STRANGER)
        assert org_standing_allows(right, OrgStanding.MANAGER)
    held = {r for r in OrgRight if org_standing_allows(r, OrgStanding.MEMBER)}
    assert held == {
        OrgRight.SEE_ORG,
        OrgRight.LIST_DIRECTORY,
        OrgRight.CREATE_SPHERE,
        OrgRight.LIST_ORG_SPHERES,
    }
    assert set(ORG_RIGHTS) == set(OrgRight)


def test_the_directory_follows_its_policy_for_members_only() -> None:
    off = OrgPolicies(directory=False)
    assert not org_allowed(OrgRight.LIST_DIRECTORY, OrgRole.MEMBER, off)
    assert org_allowed(OrgRight.LIST_DIRECTORY, OrgRole.MANAGER, off)
    assert org_allowed(OrgRight.LIST_DIRECTORY, OrgRole.MEMBER, OrgPolicies())


def test_adding_respects_the_members_quota() -> None:
    assert decide_org_add(member_state(None))
    assert not decide_org_add(member_state(OrgRole.MEMBER))  # a member already: no change
    assert decide_org_add(member_state(None, members=2, quota=3))
    assert code(decide_org_add, member_state(None, members=3, quota=3)) is ErrorCode.QUOTA_EXCEEDED


def test_the_last_manager_stays() -> None:
    assert code(decide_org_remove, member_state(OrgRole.MANAGER)) is ErrorCode.CONFLICT
    assert decide_org_remove(member_state(OrgRole.MANAGER, managers=2))
    assert decide_org_remove(member_state(OrgRole.MEMBER))
    assert code(decide_org_remove, member_state(None)) is ErrorCode.NOT_FOUND
    demote = deciding_org_role(OrgRole.MEMBER)
    assert code(demote, member_state(OrgRole.MANAGER)) is ErrorCode.CONFLICT
    assert demote(member_state(OrgRole.MANAGER, managers=2))
    assert not demote(member_state(OrgRole.MEMBER))  # the same role: no change
    assert deciding_org_role(OrgRole.MANAGER)(member_state(OrgRole.MEMBER))


def test_sphere_types_and_quota_for_members_and_managers() -> None:
    policies = OrgPolicies(member_sphere_types=(Privacy.PRIVATE,), quotas=OrgQuotas(spheres=2))
    org = dataclasses.replace(ORG, policies=policies)
    member, manager = OrgGranted(org, OrgRole.MEMBER), OrgGranted(org, OrgRole.MANAGER)
    check_sphere_type(member, Privacy.PRIVATE)
    check_sphere_type(manager, Privacy.PUBLIC)
    with pytest.raises(CloisonError) as refused:
        check_sphere_type(member, Privacy.PUBLIC)
    assert refused.value.code is ErrorCode.FORBIDDEN
    assert "member_sphere_types" in refused.value.message
    check_sphere_quota(member, 1)
    assert code(check_sphere_quota, manager, 2) is ErrorCode.QUOTA_EXCEEDED


def sphere_state(target: Role | None, *, banned: bool = False) -> MembershipState:
    sphere = SphereRecord(SphereId("s_1"), "s", Privacy.GLOBAL, "e", 1, 0)
    return MembershipState(sphere, None, target, 1, target_banned=banned)


def test_the_sphere_changes_an_organisation_makes() -> None:
    join = decide_global_join(sphere_state(None))
    assert join is not None and (join.role, join.action) == (Role.MEMBER, MemberAction.ADDED)
    assert decide_global_join(sphere_state(None, banned=True)) is None
    assert decide_global_join(sphere_state(Role.MEMBER)) is None
    left = decide_org_departure(sphere_state(Role.OWNER))
    assert left is not None and (left.role, left.action) == (None, MemberAction.REMOVED)
    assert decide_org_departure(sphere_state(None)) is None
    appointed = decide_appointment(sphere_state(Role.MEMBER))
    assert appointed is not None
    assert (appointed.role, appointed.action) == (Role.ADMIN, MemberAction.APPOINTED)
    assert decide_appointment(sphere_state(Role.OWNER)) is None
    assert code(decide_appointment, sphere_state(None, banned=True)) is ErrorCode.FORBIDDEN


def test_global_spheres_are_sealed_and_never_left() -> None:
    for standing in Standing:
        assert not standing_allows(Right.LEAVE, Privacy.GLOBAL, standing)
    for right in Right:
        assert not standing_allows(right, Privacy.GLOBAL, Standing.OUTSIDER)
    assert standing_allows(Right.POST, Privacy.GLOBAL, Standing.MEMBER)
    assert standing_allows(Right.LEAVE, Privacy.PRIVATE, Standing.MEMBER)
    settings = access.create_settings("all", Privacy.GLOBAL, None, None, None)
    assert (settings.listed, settings.join_policy.value) == (False, "invitation")


def test_members_see_the_policies_that_concern_them() -> None:
    policies = OrgPolicies(email_domains=("acme.example",), quotas=OrgQuotas(members=5))
    config = Config()
    everything = policy_view(policies, config, manager=True)
    assert everything.email_domains == ["acme.example"]
    assert everything.quotas == OrgQuotaSet(
        members=5, spheres=0, messages_per_day=0, storage_bytes=0
    )
    assert everything.retention_days == 0  # the server's default
    assert everything.erasure == config.account_deletion
    theirs = policy_view(policies, config, manager=False)
    assert theirs.email_domains is None and theirs.quotas is None
    assert theirs.directory is True and theirs.member_sphere_types == ["open", "private"]


def test_a_policy_change_reads_as_the_store_validates_it() -> None:
    patch = OrgPolicySet(
        retention_days=0,
        history=HistoryMode.FULL,
        member_sphere_types=[Privacy.GLOBAL],
        quotas=OrgQuotaSet(spheres=0, members=9),
    )
    raw = raw_policies(patch)
    assert raw == {
        "retention_days": None,
        "history": "full",
        "member_sphere_types": ["global"],
        "quotas": {"spheres": None, "members": 9},
    }
    base = OrgPolicies(retention_days=30, quotas=OrgQuotas(spheres=4, storage_bytes=7))
    after = policies_from(raw, base)
    assert after.retention_days is None and after.history is HistoryMode.FULL
    assert after.quotas == OrgQuotas(members=9, spheres=None, storage_bytes=7)
    assert raw_policies(OrgPolicySet()) == {}
