"""The storage contract of private messages, on every backend: a direct conversation is a
sphere of type ``direct`` whose participants are all members from its first events on; its
context must hold every participant (an outsider is refused as an unknown id is); two people
have one conversation per context, a new one once either left; groups are new each time."""

from __future__ import annotations

import pytest

from protocol import (
    EventKind,
    HistoryMode,
    MemberAction,
    OrgId,
    Privacy,
    Role,
    SphereId,
    UserId,
    UserKind,
)
from server.access import decide_leave, deciding_add
from storage import DEFAULT_ORG, NotFoundError, OrgRole, Store, UserRecord

T0 = 1_700_000_000_000


async def _user(store: Store, name: str, org: OrgId | None = DEFAULT_ORG) -> UserRecord:
    return await store.create_user(name, UserKind.HUMAN, is_admin=False, now_ms=T0, org_id=org)


async def _leave(store: Store, sphere_id: SphereId, user_id: UserId) -> None:
    await store.change_member(sphere_id, user_id, user_id, decide_leave, now_ms=T0)


async def test_a_conversation_is_a_sphere_its_participants_are_members_of(store: Store) -> None:
    ada, bea, cy = [await _user(store, n) for n in ("Ada", "Bea", "Cy")]
    opening = await store.open_direct(
        ada.user_id,
        [bea.user_id, cy.user_id],
        org_id=DEFAULT_ORG,
        context_sphere_id=None,
        name="",
        now_ms=T0,
    )
    sphere = opening.sphere
    assert opening.created
    assert sphere.privacy is Privacy.DIRECT and not sphere.listed
    assert sphere.history is HistoryMode.FULL and sphere.org_id == DEFAULT_ORG
    assert sphere.offset == 3 and await store.is_direct(sphere.sphere_id)
    assert [(e.member_id, e.action, e.role) for e in opening.events] == [
        (ada.user_id, MemberAction.JOINED, Role.MEMBER),
        (bea.user_id, MemberAction.ADDED, Role.MEMBER),
        (cy.user_id, MemberAction.ADDED, Role.MEMBER),
    ]
    stored = await store.events_after(sphere.sphere_id, 0, 10)
    assert [e.kind for e in stored] == [EventKind.MEMBER] * 3
    members = await store.list_members(sphere.sphere_id)
    assert {(m.user_id, m.role) for m in members} == {
        (u.user_id, Role.MEMBER) for u in (ada, bea, cy)
    }
    for user in (ada, bea, cy):
        listed = [s.sphere_id for s in await store.user_spheres(user.user_id)]
        assert listed == [sphere.sphere_id]
    team = await store.create_sphere("Team", Privacy.PRIVATE, ada.user_id, now_ms=T0)
    shown = await store.with_participants(await store.user_spheres(ada.user_id), ada.user_id)
    by_id = {s.sphere_id: s for s in shown}
    assert by_id[team.sphere_id].participants is None
    others = by_id[sphere.sphere_id].participants
    assert [(p.user_id, p.name, p.role) for p in others or []] == [
        (bea.user_id, "Bea", Role.MEMBER),
        (cy.user_id, "Cy", Role.MEMBER),
    ]
    assert sphere.sphere_id not in [s.sphere_id for s in await store.discoverable_spheres(50)]
    # Group conversations are new each time.
    again = await store.open_direct(
        ada.user_id,
        [bea.user_id, cy.user_id],
        org_id=DEFAULT_ORG,
        context_sphere_id=None,
        name="",
        now_ms=T0,
    )
    assert again.sphere.sphere_id != sphere.sphere_id
    created = await store.list_sphere_audit(sphere.sphere_id, before=None, limit=10)
    assert [e.action.value for e in created] == ["sphere_created"]
    assert await store.is_direct(SphereId("s_nope")) is False


async def test_two_people_have_one_conversation_per_context(store: Store) -> None:
    ada, bea = await _user(store, "Ada"), await _user(store, "Bea")
    first = await store.open_direct(
        ada.user_id, [bea.user_id], org_id=DEFAULT_ORG, context_sphere_id=None, name="", now_ms=T0
    )
    back = await store.open_direct(
        bea.user_id, [ada.user_id], org_id=DEFAULT_ORG, context_sphere_id=None, name="x", now_ms=T0
    )
    assert back.sphere.sphere_id == first.sphere.sphere_id and not back.created
    team = await store.create_sphere("Team", Privacy.PRIVATE, ada.user_id, now_ms=T0)
    await store.add_org_member(DEFAULT_ORG, bea.user_id, OrgRole.MEMBER, now_ms=T0, actor_id="op")
    await store.change_member(
        team.sphere_id, ada.user_id, bea.user_id, deciding_add(Role.MEMBER), now_ms=T0
    )
    there = await store.open_direct(
        ada.user_id,
        [bea.user_id],
        org_id=None,
        context_sphere_id=team.sphere_id,
        name="",
        now_ms=T0,
    )
    assert there.created and there.sphere.sphere_id != first.sphere.sphere_id
    # Once one of them left, the pair starts a new conversation.
    await _leave(store, first.sphere.sphere_id, bea.user_id)
    anew = await store.open_direct(
        ada.user_id, [bea.user_id], org_id=DEFAULT_ORG, context_sphere_id=None, name="", now_ms=T0
    )
    assert anew.created and anew.sphere.sphere_id not in (
        first.sphere.sphere_id,
        there.sphere.sphere_id,
    )


async def test_everyone_must_be_in_the_context(store: Store) -> None:
    ada, bea = await _user(store, "Ada"), await _user(store, "Bea")
    stranger = await _user(store, "Stranger", org=None)
    with pytest.raises(NotFoundError) as outside:
        await store.open_direct(
            ada.user_id,
            [stranger.user_id],
            org_id=DEFAULT_ORG,
            context_sphere_id=None,
            name="",
            now_ms=T0,
        )
    with pytest.raises(NotFoundError) as unknown:
        await store.open_direct(
            ada.user_id,
            [UserId("u_nobody")],
            org_id=DEFAULT_ORG,
            context_sphere_id=None,
            name="",
            now_ms=T0,
        )
    assert str(outside.value) == f"no user {stranger.user_id}"
    assert str(unknown.value) == "no user u_nobody"
    with pytest.raises(NotFoundError, match="organisation not found"):
        await store.open_direct(
            stranger.user_id,
            [ada.user_id],
            org_id=DEFAULT_ORG,
            context_sphere_id=None,
            name="",
            now_ms=T0,
        )
    # A sphere as context: every participant must be a member of it (a visitor counts).
    team = await store.create_sphere("Team", Privacy.PRIVATE, ada.user_id, now_ms=T0)
    with pytest.raises(NotFoundError, match=f"no user {bea.user_id}"):
        await store.open_direct(
            ada.user_id,
            [bea.user_id],
            org_id=None,
            context_sphere_id=team.sphere_id,
            name="",
            now_ms=T0,
        )
    with pytest.raises(NotFoundError, match="sphere not found"):
        await store.open_direct(
            bea.user_id,
            [ada.user_id],
            org_id=None,
            context_sphere_id=team.sphere_id,
            name="",
            now_ms=T0,
        )
    conversation = await store.open_direct(
        ada.user_id, [bea.user_id], org_id=DEFAULT_ORG, context_sphere_id=None, name="", now_ms=T0
    )
    with pytest.raises(NotFoundError, match="sphere not found"):
        await store.open_direct(
            ada.user_id,
            [bea.user_id],
            org_id=None,
            context_sphere_id=conversation.sphere.sphere_id,
            name="",
            now_ms=T0,
        )
    await store.change_member(
        team.sphere_id, ada.user_id, stranger.user_id, deciding_add(Role.VISITOR), now_ms=T0
    )
    visiting = await store.open_direct(
        stranger.user_id,
        [ada.user_id],
        org_id=None,
        context_sphere_id=team.sphere_id,
        name="",
        now_ms=T0,
    )
    assert visiting.created and visiting.sphere.org_id == DEFAULT_ORG


async def test_a_conversation_its_last_participant_leaves_is_deleted(store: Store) -> None:
    ada, bea = await _user(store, "Ada"), await _user(store, "Bea")
    opening = await store.open_direct(
        ada.user_id, [bea.user_id], org_id=DEFAULT_ORG, context_sphere_id=None, name="", now_ms=T0
    )
    sphere_id = opening.sphere.sphere_id
    await _leave(store, sphere_id, ada.user_id)
    assert await store.close_if_empty(sphere_id, ada.user_id, now_ms=T0) is None  # bea is in
    await _leave(store, sphere_id, bea.user_id)
    closed = await store.close_if_empty(sphere_id, bea.user_id, now_ms=T0)
    assert closed is not None and closed.deleted and closed.privacy is Privacy.DIRECT
    assert await store.get_sphere(sphere_id) is None
    assert await store.close_if_empty(sphere_id, bea.user_id, now_ms=T0) is None
    # Any other sphere is never closed this way, members or not.
    team = await store.create_sphere("Team", Privacy.PRIVATE, ada.user_id, now_ms=T0)
    assert await store.close_if_empty(team.sphere_id, ada.user_id, now_ms=T0) is None
