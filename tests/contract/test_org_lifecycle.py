"""The storage contract of an organisation's lifecycle, on every backend: listing, suspension
with its audit entries and session changes, and the deletion job's steps, each idempotent."""

from __future__ import annotations

from protocol import OrgId, Privacy, UserId, UserKind
from storage import (
    DEFAULT_ORG,
    OPERATOR,
    AuditEntry,
    ChangeKind,
    DeletionMode,
    OrgAction,
    OrgDeletionState,
    OrgRole,
    Store,
)

T0 = 1_700_000_000_000


async def _org_with_people(store: Store, org_id: str = "acme") -> tuple[OrgId, list[str]]:
    org = await store.create_org("Acme", now_ms=T0, actor_id=OPERATOR, org_id=OrgId(org_id))
    people = []
    for name in ("Ada", "Bea", "Cyd"):
        user = await store.create_user(
            name, UserKind.HUMAN, is_admin=False, now_ms=T0, org_id=org.org_id
        )
        people.append(user.user_id)
    return org.org_id, people


async def test_organisations_are_listed_by_id_in_pages(store: Store) -> None:
    for org_id in ("b", "a", "c"):
        await store.create_org(org_id.upper(), now_ms=T0, actor_id=OPERATOR, org_id=OrgId(org_id))
    first = await store.list_orgs(after=None, limit=2)
    assert [o.org_id for o in first] == ["a", "b"]
    rest = await store.list_orgs(after=first[-1].org_id, limit=10)
    assert [o.org_id for o in rest] == ["c", DEFAULT_ORG]


async def test_suspension_is_audited_and_signalled_to_every_node(store: Store) -> None:
    org_id, people = await _org_with_people(store)
    ada = people[0]
    # Bea also belongs to a running organisation: she still signs in there.
    await store.add_org_member(DEFAULT_ORG, people[1], OrgRole.MEMBER, now_ms=T0, actor_id="op")
    seq = await store.latest_session_change()
    done = await store.set_org_suspended(org_id, True, now_ms=T0 + 1, actor_id="admin")
    assert done is not None
    org, changed = done
    assert changed and org.suspended_ms == T0 + 1
    again = await store.set_org_suspended(org_id, True, now_ms=T0 + 2, actor_id="admin")
    assert again is not None and not again[1] and again[0].suspended_ms == T0 + 1
    changes = await store.session_changes_after(seq, 100)
    assert {c.kind for c in changes} == {ChangeKind.ORG_SUSPENDED}
    assert {c.org_id for c in changes} == {org_id}
    assert sorted(c.user_id for c in changes) == sorted(["", ada, people[2]])
    audit = await store.list_org_audit(org_id, before=None, limit=10)
    assert audit[0].action == "org_suspended" and audit[0].actor_id == "admin"
    server = await store.list_audit(before=None, limit=10)
    assert server[0].action == "org_suspended" and server[0].detail == org_id

    resumed = await store.set_org_suspended(org_id, False, now_ms=T0 + 3, actor_id="admin")
    assert resumed is not None and resumed[1] and resumed[0].suspended_ms is None
    assert (await store.list_org_audit(org_id, before=None, limit=1))[0].action == "org_resumed"
    assert await store.set_org_suspended(OrgId("nope"), True, now_ms=T0, actor_id="a") is None


async def test_members_spheres_and_audit_are_read_in_pages(store: Store) -> None:
    org_id, people = await _org_with_people(store)
    members = await store.org_members_after(org_id, after=None, limit=2)
    assert [m.user_id for m in members] == sorted(people)[:2]
    assert members[0].role is OrgRole.MEMBER and members[0].name in ("Ada", "Bea", "Cyd")
    rest = await store.org_members_after(org_id, after=members[-1].user_id, limit=10)
    assert [m.user_id for m in rest] == sorted(people)[2:]
    open_ = await store.create_sphere("O", Privacy.OPEN, people[0], now_ms=T0, org_id=org_id)
    private = await store.create_sphere("P", Privacy.PRIVATE, people[0], now_ms=T0, org_id=org_id)
    both = await store.org_sphere_ids(org_id, after=None, limit=10)
    assert both == sorted([open_.sphere_id, private.sphere_id])
    only = await store.org_sphere_ids(org_id, after=None, limit=10, types=("open",))
    assert only == [private.sphere_id]
    assert await store.count_org_spheres(org_id) == 2
    assert await store.count_org_members(org_id) == 3
    audit = await store.org_audit_after(org_id, after=0, limit=100)
    assert audit[0].action == "org_created"
    assert [e.seq for e in audit] == sorted(e.seq for e in audit)


async def test_deletion_removes_spheres_members_and_the_organisation(store: Store) -> None:
    org_id, people = await _org_with_people(store)
    ada, bea, cyd = people
    await store.add_org_member(DEFAULT_ORG, bea, OrgRole.MEMBER, now_ms=T0, actor_id="op")
    sphere = await store.create_sphere("Team", Privacy.PRIVATE, ada, now_ms=T0, org_id=org_id)
    requested = await store.request_org_deletion(
        org_id, requested_by="admin", mode=DeletionMode.ERASE, now_ms=T0 + 1
    )
    assert requested is not None and requested[1]
    job = requested[0]
    assert job.state is OrgDeletionState.PENDING and job.requested_by == "admin"
    org = await store.get_org(org_id)
    assert org is not None and org.suspended  # nobody signs in while it goes
    again = await store.request_org_deletion(
        org_id, requested_by="other", mode=DeletionMode.ERASE, now_ms=T0 + 2
    )
    assert again is not None and not again[1] and again[0].requested_by == "admin"
    assert await store.open_org_deletions(10) == [org_id]
    claimed = await store.claim_org_deletion(org_id, owner="n1", now_ms=T0, lease_ms=1000)
    assert claimed is not None
    assert await store.claim_org_deletion(org_id, owner="n2", now_ms=T0, lease_ms=1000) is None

    step = await store.delete_org_sphere(org_id, now_ms=T0 + 3)
    assert step.event is not None and step.event.deleted and not step.held
    assert await store.get_sphere(sphere.sphere_id) is None
    step = await store.delete_org_sphere(org_id, now_ms=T0 + 3)
    assert step.event is None and not step.held

    assert not await store.remove_org(org_id)  # the members were not looked at yet
    assert not await store.hand_over_org_members(org_id, 2, now_ms=T0 + 4)
    assert await store.hand_over_org_members(org_id, 2, now_ms=T0 + 4)
    assert await store.hand_over_org_members(org_id, 2, now_ms=T0 + 4)  # nothing more
    # Ada and Cyd belonged to it only: their accounts go; Bea stays, in the default one.
    assert await store.get_account_deletion(ada) is not None
    assert await store.get_account_deletion(cyd) is not None
    assert await store.get_account_deletion(bea) is None
    job = await store.get_org_deletion(org_id)  # type: ignore[assignment]
    assert job is not None and job.accounts_handed_over == 2 and job.spheres_deleted == 1

    assert await store.remove_org(org_id)
    assert await store.get_org(org_id) is None
    assert await store.org_role(DEFAULT_ORG, bea) is OrgRole.MEMBER
    assert [m.org.org_id for m in await store.user_orgs(bea)] == [DEFAULT_ORG]
    assert await store.org_audit_after(org_id, after=0, limit=10) == []
    audit = AuditEntry("admin", OrgAction.DELETED, None, T0 + 5, detail=org_id)
    await store.finish_org_deletion(org_id, now_ms=T0 + 5, audit=audit)
    await store.finish_org_deletion(org_id, now_ms=T0 + 6, audit=audit)  # once
    done = await store.get_org_deletion(org_id)
    assert done is not None and done.state is OrgDeletionState.DONE and done.done_ms == T0 + 5
    entries = [
        e for e in await store.list_audit(before=None, limit=50) if e.action == OrgAction.DELETED
    ]
    assert len(entries) == 1
    assert await store.open_org_deletions(10) == []


async def test_a_sphere_under_legal_hold_holds_the_deletion(store: Store) -> None:
    org_id, people = await _org_with_people(store)
    sphere = await store.create_sphere("T", Privacy.PRIVATE, people[0], now_ms=T0, org_id=org_id)
    await store.set_legal_hold(
        sphere.sphere_id, UserId("admin"), until_ms=None, reason="case", now_ms=T0
    )
    await store.request_org_deletion(
        org_id, requested_by="admin", mode=DeletionMode.ERASE, now_ms=T0 + 1
    )
    step = await store.delete_org_sphere(org_id, now_ms=T0 + 2)
    assert step.event is None and step.held
    assert await store.get_sphere(sphere.sphere_id) is not None
    await store.hand_over_org_members(org_id, 10, now_ms=T0 + 2)
    assert not await store.remove_org(org_id)
