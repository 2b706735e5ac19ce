"""The storage contract of organisations, on every backend: the default organisation holds
new users and spheres, an organisation is created with its manager, membership is one row per
(organisation, user), policies round-trip whole, and every change is in the audit log."""

from __future__ import annotations

import pytest

from protocol import HistoryMode, OrgId, Privacy, UserId, UserKind
from storage import (
    DEFAULT_ORG,
    InvalidPolicyError,
    NotFoundError,
    OrgExistsError,
    OrgPolicies,
    OrgRole,
    Store,
    policies_from,
)

T0 = 1_700_000_000_000


async def test_users_and_spheres_start_in_the_default_organisation(store: Store) -> None:
    admin = await store.create_user("Ada", UserKind.HUMAN, is_admin=True, now_ms=T0)
    bea = await store.create_user("Bea", UserKind.HUMAN, is_admin=False, now_ms=T0)
    assert await store.org_role(DEFAULT_ORG, admin.user_id) is OrgRole.MANAGER
    assert await store.org_role(DEFAULT_ORG, bea.user_id) is OrgRole.MEMBER
    sphere = await store.create_sphere("Team", Privacy.PRIVATE, bea.user_id, now_ms=T0)
    assert sphere.org_id == DEFAULT_ORG
    stored = await store.get_sphere(sphere.sphere_id)
    assert stored is not None and stored.org_id == DEFAULT_ORG
    [membership] = await store.user_orgs(bea.user_id)
    assert membership.org.org_id == DEFAULT_ORG and membership.role is OrgRole.MEMBER


async def test_an_organisation_is_created_with_its_manager_and_audited(store: Store) -> None:
    ada = await store.create_user("Ada", UserKind.HUMAN, is_admin=False, now_ms=T0, org_id=None)
    assert await store.user_orgs(ada.user_id) == []
    org = await store.create_org("Acme", now_ms=T0, actor_id="op", manager_id=ada.user_id)
    assert org.org_id.startswith("o_") and not org.suspended
    assert await store.get_org(org.org_id) == org
    assert await store.org_role(org.org_id, ada.user_id) is OrgRole.MANAGER
    assert await store.org_role(DEFAULT_ORG, ada.user_id) is None
    with pytest.raises(OrgExistsError):
        await store.create_org("Again", now_ms=T0, actor_id="op", org_id=org.org_id)
    bea = await store.create_user(
        "Bea", UserKind.HUMAN, is_admin=False, now_ms=T0, org_id=org.org_id
    )
    assert await store.org_role(org.org_id, bea.user_id) is OrgRole.MEMBER
    assert not await store.add_org_member(
        org.org_id, bea.user_id, OrgRole.MEMBER, now_ms=T0, actor_id="op"
    )
    sphere = await store.create_sphere(
        "Acme team", Privacy.PRIVATE, bea.user_id, now_ms=T0, org_id=org.org_id
    )
    assert (await store.get_sphere(sphere.sphere_id)).org_id == org.org_id  # type: ignore[union-attr]
    entries = await store.list_org_audit(org.org_id, before=None, limit=10)
    assert [e.action for e in entries] == ["org_member_added", "org_created"]
    assert entries[0].target_id == ada.user_id and entries[0].detail == "manager"
    assert await store.list_org_audit(org.org_id, before=entries[0].seq, limit=10) == entries[1:]
    # bea joined at creation: create_user writes no org audit entry of its own.


async def test_unknown_organisations_and_users_are_refused(store: Store) -> None:
    with pytest.raises(NotFoundError):
        await store.create_user(
            "X", UserKind.HUMAN, is_admin=False, now_ms=T0, org_id=OrgId("nope")
        )
    ada = await store.create_user("Ada", UserKind.HUMAN, is_admin=False, now_ms=T0)
    with pytest.raises(NotFoundError):
        await store.add_org_member(
            OrgId("nope"), ada.user_id, OrgRole.MEMBER, now_ms=T0, actor_id="op"
        )
    with pytest.raises(NotFoundError):
        await store.create_org("Acme", now_ms=T0, actor_id="op", manager_id=UserId("u_nobody"))
    assert await store.get_org(OrgId("nope")) is None
    assert await store.org_role(OrgId("nope"), ada.user_id) is None


def test_policies_validate_and_round_trip() -> None:
    policies = policies_from(
        {
            "history": "full",
            "member_sphere_types": ["open", "private", "open"],
            "visitors": True,
            "email_domains": ["Example.org", "example.org"],
            "quotas": {"members": 10, "unknown": 3},
            "not_a_policy": 1,
        }
    )
    assert policies.history is HistoryMode.FULL
    assert policies.member_sphere_types == (Privacy.OPEN, Privacy.PRIVATE)
    assert policies.email_domains == ("example.org",)
    assert policies.quotas.members == 10 and policies.quotas.spheres is None
    assert OrgPolicies.from_json(policies.to_json()) == policies
    for bad in (
        {"visitors": "yes"},
        {"history": "forever"},
        {"quotas": {"members": 0}},
        {"quotas": {"members": True}},
        {"email_domains": ["not a domain"]},
        {"retention_days": -1},
        [],
    ):
        with pytest.raises(InvalidPolicyError):
            policies_from(bad)
