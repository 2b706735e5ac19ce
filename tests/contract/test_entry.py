"""The storage contract of entering, leaving and moderation (``storage.entry.Entry``), on
every backend, through the ``Store`` interface only."""

from __future__ import annotations

import pytest

from protocol import (
    CloisonError,
    ErrorCode,
    EventKind,
    InvitationState,
    MemberAction,
    MessageId,
    Privacy,
    RequestState,
    Role,
    SphereId,
    UserId,
    UserKind,
)
from server.governance import decisions
from storage import (
    AuditAction,
    Draft,
    MemberChange,
    MembershipState,
    MutedError,
    NotFoundError,
    SphereRecord,
    Store,
    UserRecord,
)

NOW_MS = 1_700_000_000_000
WEEK_MS = 7 * 86_400_000


async def user(store: Store, name: str) -> UserRecord:
    return await store.create_user(name, UserKind.HUMAN, is_admin=False, now_ms=NOW_MS)


async def sphere_with(
    store: Store, privacy: Privacy = Privacy.PRIVATE
) -> tuple[SphereRecord, UserRecord]:
    owner = await user(store, "owner")
    return await store.create_sphere("team", privacy, owner.user_id, now_ms=NOW_MS), owner


async def add(store: Store, sphere: SphereRecord, owner: UserRecord, role: Role) -> UserRecord:
    member = await user(store, f"{role.value}-member")
    await store.change_member(
        sphere.sphere_id,
        owner.user_id,
        member.user_id,
        lambda _: MemberChange(role, MemberAction.ADDED),
        now_ms=NOW_MS,
    )
    return member


def allow(_: object) -> None:
    return None


def post(author: UserId, message_id: str, ts_ms: int = NOW_MS) -> Draft:
    return Draft(EventKind.POST, MessageId(message_id), author, ts_ms, body="hi")


async def actions(store: Store, sphere_id: SphereId) -> list[AuditAction]:
    """The sphere's audit actions, oldest first, after its creation."""
    entries = await store.list_sphere_audit(sphere_id, before=None, limit=100)
    return [e.action for e in reversed(entries) if e.action is not AuditAction.SPHERE_CREATED]


async def invite(
    store: Store, sphere: SphereRecord, inviter: UserRecord, invitee: UserRecord, role: Role
) -> str:
    invitation = await store.invite(
        sphere.sphere_id,
        inviter.user_id,
        invitee.user_id,
        role,
        decisions.deciding_invite(role),
        expires_ms=NOW_MS + WEEK_MS,
        now_ms=NOW_MS,
    )
    return invitation.invitation_id


async def test_an_invitation_is_accepted_once_with_its_own_role(store: Store) -> None:
    sphere, owner = await sphere_with(store)
    guest = await user(store, "guest")
    invitation = await store.invite(
        sphere.sphere_id,
        owner.user_id,
        guest.user_id,
        Role.PUBLISHER,
        allow,
        expires_ms=NOW_MS + WEEK_MS,
        now_ms=NOW_MS,
    )
    assert len(invitation.invitation_id) >= 32
    assert (invitation.sphere_name, invitation.inviter_name, invitation.invitee_name) == (
        "team",
        "owner",
        "guest",
    )
    assert (invitation.role, invitation.state) == (Role.PUBLISHER, InvitationState.PENDING)
    mine = await store.list_invitations(invitee_id=guest.user_id, now_ms=NOW_MS, limit=10)
    theirs = await store.list_invitations(sphere_id=sphere.sphere_id, now_ms=NOW_MS, limit=10)
    assert mine == theirs == [invitation]

    seen: list[Role] = []

    def accept(state: MembershipState, role: Role) -> MemberChange:
        seen.append(role)
        return decisions.decide_accept(state, role)

    after, event = await store.answer_invitation(
        invitation.invitation_id, guest.user_id, accept, now_ms=NOW_MS + 1
    )
    assert seen == [Role.PUBLISHER]
    assert event is not None and after.offset == event.offset
    assert (event.member_id, event.role, event.action) == (
        guest.user_id,
        Role.PUBLISHER,
        MemberAction.ACCEPTED,
    )
    assert await store.get_role(sphere.sphere_id, guest.user_id) is Role.PUBLISHER
    with pytest.raises(CloisonError) as reused:
        await store.answer_invitation(
            invitation.invitation_id, guest.user_id, accept, now_ms=NOW_MS + 2
        )
    assert reused.value.code is ErrorCode.CONFLICT
    assert await store.list_invitations(invitee_id=guest.user_id, now_ms=NOW_MS, limit=10) == []
    assert await actions(store, sphere.sphere_id) == [
        AuditAction.INVITED,
        AuditAction.INVITATION_ACCEPTED,
    ]


async def test_invitations_refused_before_anything_is_written(store: Store) -> None:
    sphere, owner = await sphere_with(store)
    member = await add(store, sphere, owner, Role.MEMBER)
    guest = await user(store, "guest")
    cases = [
        (member, guest, Role.ADMIN, ErrorCode.FORBIDDEN),  # a raised role
        (owner, member, Role.MEMBER, ErrorCode.CONFLICT),  # a member already
    ]
    for inviter, invitee, role, code in cases:
        with pytest.raises(CloisonError) as refused:
            await invite(store, sphere, inviter, invitee, role)
        assert refused.value.code is code
    with pytest.raises(NotFoundError):  # unknown user, told to who may invite
        await store.invite(
            sphere.sphere_id,
            owner.user_id,
            UserId("u_nobody"),
            Role.MEMBER,
            allow,
            expires_ms=NOW_MS + WEEK_MS,
            now_ms=NOW_MS,
        )
    with pytest.raises(NotFoundError):  # no such sphere
        await store.invite(
            SphereId("s_nothing"),
            owner.user_id,
            guest.user_id,
            Role.MEMBER,
            allow,
            expires_ms=NOW_MS + WEEK_MS,
            now_ms=NOW_MS,
        )
    assert await store.list_invitations(sphere_id=sphere.sphere_id, now_ms=NOW_MS, limit=10) == []
    assert await actions(store, sphere.sphere_id) == []


async def test_a_new_invitation_replaces_the_pending_one(store: Store) -> None:
    sphere, owner = await sphere_with(store)
    guest = await user(store, "guest")
    first = await invite(store, sphere, owner, guest, Role.VISITOR)
    second = await invite(store, sphere, owner, guest, Role.MEMBER)
    pending = await store.list_invitations(invitee_id=guest.user_id, now_ms=NOW_MS, limit=10)
    assert [i.invitation_id for i in pending] == [second]
    with pytest.raises(CloisonError) as replaced:
        await store.answer_invitation(first, guest.user_id, decisions.decide_accept, now_ms=NOW_MS)
    assert replaced.value.code is ErrorCode.CONFLICT


async def test_an_invitation_is_answered_by_its_invitee_alone(store: Store) -> None:
    sphere, owner = await sphere_with(store)
    guest, other = await user(store, "guest"), await user(store, "other")
    invitation_id = await invite(store, sphere, owner, guest, Role.MEMBER)
    for invitation, who in ((invitation_id, other), (invitation_id + "x", guest)):
        with pytest.raises(NotFoundError):
            await store.answer_invitation(
                invitation, who.user_id, decisions.decide_accept, now_ms=NOW_MS
            )
    await store.answer_invitation(invitation_id, guest.user_id, None, now_ms=NOW_MS)
    with pytest.raises(CloisonError) as declined:
        await store.answer_invitation(
            invitation_id, guest.user_id, decisions.decide_accept, now_ms=NOW_MS
        )
    assert declined.value.code is ErrorCode.CONFLICT
    assert await store.get_role(sphere.sphere_id, guest.user_id) is None
    assert (await actions(store, sphere.sphere_id))[-1] is AuditAction.INVITATION_DECLINED


async def test_an_expired_invitation_is_neither_listed_nor_usable(store: Store) -> None:
    sphere, owner = await sphere_with(store)
    guest = await user(store, "guest")
    invitation_id = await invite(store, sphere, owner, guest, Role.MEMBER)
    later = NOW_MS + WEEK_MS
    assert await store.list_invitations(invitee_id=guest.user_id, now_ms=later, limit=10) == []
    with pytest.raises(CloisonError) as expired:
        await store.answer_invitation(
            invitation_id, guest.user_id, decisions.decide_accept, now_ms=later
        )
    assert (expired.value.code, str(expired.value)) == (
        ErrorCode.CONFLICT,
        "this invitation has expired",
    )


async def test_revoking_an_invitation(store: Store) -> None:
    sphere, owner = await sphere_with(store)
    member = await add(store, sphere, owner, Role.MEMBER)
    guest = await user(store, "guest")
    invitation_id = await invite(store, sphere, member, guest, Role.VISITOR)
    stranger = await user(store, "stranger")
    with pytest.raises(CloisonError) as refused:  # neither its inviter nor an administrator
        await store.revoke_invitation(
            invitation_id,
            stranger.user_id,
            decisions.checking_revoke(stranger.user_id),
            now_ms=NOW_MS,
        )
    assert refused.value.code is ErrorCode.NOT_FOUND  # the private sphere is hidden from them
    peer = await add(store, sphere, owner, Role.PUBLISHER)
    with pytest.raises(CloisonError) as forbidden:  # a member who is not its inviter
        await store.revoke_invitation(
            invitation_id, peer.user_id, decisions.checking_revoke(peer.user_id), now_ms=NOW_MS
        )
    assert forbidden.value.code is ErrorCode.FORBIDDEN
    with pytest.raises(NotFoundError):
        await store.revoke_invitation(
            "unknown", owner.user_id, decisions.checking_revoke(owner.user_id), now_ms=NOW_MS
        )
    await store.revoke_invitation(
        invitation_id, owner.user_id, decisions.checking_revoke(owner.user_id), now_ms=NOW_MS
    )
    with pytest.raises(CloisonError) as revoked:
        await store.answer_invitation(
            invitation_id, guest.user_id, decisions.decide_accept, now_ms=NOW_MS
        )
    assert revoked.value.code is ErrorCode.CONFLICT
    entries = await store.list_sphere_audit(sphere.sphere_id, before=None, limit=1)
    assert (entries[0].action, entries[0].actor_id, entries[0].target_id) == (
        AuditAction.INVITATION_REVOKED,
        owner.user_id,
        guest.user_id,
    )


async def test_invitations_are_paged_oldest_first(store: Store) -> None:
    sphere, owner = await sphere_with(store)
    ids = []
    for n in range(5):
        guest = await user(store, f"g{n}")
        ids.append(await invite(store, sphere, owner, guest, Role.MEMBER))
    first = await store.list_invitations(sphere_id=sphere.sphere_id, now_ms=NOW_MS, limit=3)
    last = first[-1]
    rest = await store.list_invitations(
        sphere_id=sphere.sphere_id,
        now_ms=NOW_MS,
        limit=3,
        after=(last.created_ms, last.invitation_id),
    )
    assert sorted(i.invitation_id for i in first + rest) == sorted(ids)
    assert len(rest) == 2


async def test_join_requests(store: Store) -> None:
    sphere, owner = await sphere_with(store, Privacy.OPEN)
    asker = await user(store, "asker")
    request = await store.request_join(
        sphere.sphere_id, asker.user_id, "let me in", allow, now_ms=NOW_MS
    )
    assert (request.name, request.state, request.comment) == (
        "asker",
        RequestState.PENDING,
        "let me in",
    )
    with pytest.raises(CloisonError) as again:
        await store.request_join(sphere.sphere_id, asker.user_id, None, allow, now_ms=NOW_MS)
    assert again.value.code is ErrorCode.CONFLICT
    assert await store.list_requests(sphere.sphere_id, limit=10) == [request]
    await store.withdraw_request(sphere.sphere_id, asker.user_id, now_ms=NOW_MS)
    with pytest.raises(NotFoundError):
        await store.withdraw_request(sphere.sphere_id, asker.user_id, now_ms=NOW_MS)
    assert await store.list_requests(sphere.sphere_id, limit=10) == []
    await store.request_join(sphere.sphere_id, asker.user_id, None, allow, now_ms=NOW_MS + 1)
    refused = await store.answer_request(
        sphere.sphere_id,
        owner.user_id,
        asker.user_id,
        decisions.deciding_answer(False),
        accept=False,
        now_ms=NOW_MS + 2,
    )
    assert refused is None
    with pytest.raises(NotFoundError):  # answered already
        await store.answer_request(
            sphere.sphere_id,
            owner.user_id,
            asker.user_id,
            decisions.deciding_answer(True),
            accept=True,
            now_ms=NOW_MS + 3,
        )
    await store.request_join(sphere.sphere_id, asker.user_id, None, allow, now_ms=NOW_MS + 4)
    admitted = await store.answer_request(
        sphere.sphere_id,
        owner.user_id,
        asker.user_id,
        decisions.deciding_answer(True),
        accept=True,
        now_ms=NOW_MS + 5,
    )
    assert admitted is not None
    assert (admitted.author_id, admitted.member_id, admitted.role, admitted.action) == (
        owner.user_id,
        asker.user_id,
        Role.MEMBER,
        MemberAction.ADMITTED,
    )
    assert await actions(store, sphere.sphere_id) == [
        AuditAction.JOIN_REQUESTED,
        AuditAction.REQUEST_WITHDRAWN,
        AuditAction.JOIN_REQUESTED,
        AuditAction.REQUEST_REFUSED,
        AuditAction.JOIN_REQUESTED,
        AuditAction.REQUEST_ACCEPTED,
    ]


async def test_a_ban_removes_and_keeps_out(store: Store) -> None:
    sphere, owner = await sphere_with(store)
    member = await add(store, sphere, owner, Role.MEMBER)
    stranger = await user(store, "stranger")
    pending = await invite(store, sphere, owner, stranger, Role.MEMBER)
    for target in (member, stranger):
        event = await store.ban(
            sphere.sphere_id,
            owner.user_id,
            target.user_id,
            "spam",
            decisions.deciding_ban("spam"),
            now_ms=NOW_MS,
        )
        assert event is not None
        assert (event.member_id, event.role, event.action) == (
            target.user_id,
            None,
            MemberAction.BANNED,
        )
    again = await store.ban(
        sphere.sphere_id,
        owner.user_id,
        member.user_id,
        None,
        decisions.deciding_ban(None),
        now_ms=NOW_MS,
    )
    assert again is None
    assert await store.get_role(sphere.sphere_id, member.user_id) is None
    bans = await store.list_bans(sphere.sphere_id, limit=10)
    assert {(b.user_id, b.banned_by, b.reason) for b in bans} == {
        (member.user_id, owner.user_id, "spam"),
        (stranger.user_id, owner.user_id, "spam"),
    }
    standing = await store.sphere_standing(sphere.sphere_id, member.user_id)
    assert (standing.role, standing.banned) == (None, True)
    # Every way back in is refused: the old invitation, a new one, being added.
    with pytest.raises(CloisonError) as old:
        await store.answer_invitation(
            pending, stranger.user_id, decisions.decide_accept, now_ms=NOW_MS
        )
    assert old.value.code is ErrorCode.FORBIDDEN
    assert await store.list_invitations(sphere_id=sphere.sphere_id, now_ms=NOW_MS, limit=9) == []
    with pytest.raises(CloisonError) as new:
        await invite(store, sphere, owner, member, Role.MEMBER)
    assert new.value.code is ErrorCode.FORBIDDEN
    states: list[MembershipState] = []
    await store.change_member(
        sphere.sphere_id, owner.user_id, member.user_id, lambda s: states.append(s), now_ms=NOW_MS
    )
    assert states[0].target_banned
    unbanned = await store.unban(
        sphere.sphere_id, owner.user_id, member.user_id, decisions.decide_unban, now_ms=NOW_MS
    )
    assert unbanned is not None and unbanned.action is MemberAction.UNBANNED
    assert [b.user_id for b in await store.list_bans(sphere.sphere_id, limit=10)] == [
        stranger.user_id
    ]
    with pytest.raises(CloisonError) as not_banned:
        await store.unban(
            sphere.sphere_id, owner.user_id, member.user_id, decisions.decide_unban, now_ms=NOW_MS
        )
    assert not_banned.value.code is ErrorCode.NOT_FOUND
    assert (await actions(store, sphere.sphere_id))[1:] == [
        AuditAction.BANNED,
        AuditAction.BANNED,
        AuditAction.UNBANNED,
    ]


async def test_a_muted_author_is_refused_where_appends_commit(store: Store) -> None:
    sphere, owner = await sphere_with(store)
    member = await add(store, sphere, owner, Role.MEMBER)
    kept = await store.append(sphere.sphere_id, post(member.user_id, "before"))
    until = NOW_MS + 60_000
    muted = await store.set_muted(
        sphere.sphere_id,
        owner.user_id,
        member.user_id,
        decisions.deciding_mute(until),
        now_ms=NOW_MS,
    )
    assert muted is not None
    assert (muted.role, muted.action, muted.until_ms) == (Role.MEMBER, MemberAction.MUTED, until)
    replayed = await store.events_after(sphere.sphere_id, muted.offset - 1, 10)
    assert replayed == [muted]
    standing = await store.sphere_standing(sphere.sphere_id, member.user_id)
    assert standing.muted(NOW_MS) and not standing.muted(until)
    assert await store.sphere_mutes(sphere.sphere_id) == {member.user_id: until}
    with pytest.raises(MutedError) as refused:
        await store.append(sphere.sphere_id, post(member.user_id, "during", NOW_MS + 1))
    assert refused.value.code is ErrorCode.FORBIDDEN
    assert "muted" in str(refused.value)
    # Deleting one's own post does not speak; and a mute ends by itself.
    delete = Draft(
        EventKind.DELETE, MessageId("del"), member.user_id, NOW_MS + 2, target=kept.event.offset
    )
    await store.append(sphere.sphere_id, delete)
    await store.append(sphere.sphere_id, post(member.user_id, "after", until + 1))
    unmuted = await store.set_muted(
        sphere.sphere_id,
        owner.user_id,
        member.user_id,
        decisions.deciding_unmute(NOW_MS + 3),
        now_ms=NOW_MS + 3,
    )
    assert unmuted is not None and unmuted.action is MemberAction.UNMUTED
    lifted = (await store.sphere_standing(sphere.sphere_id, member.user_id)).member
    assert lifted is not None and lifted.muted_until_ms is None
    await store.append(sphere.sphere_id, post(member.user_id, "free", NOW_MS + 4))
    assert (await actions(store, sphere.sphere_id))[-2:] == [
        AuditAction.MUTED,
        AuditAction.UNMUTED,
    ]


async def test_a_transfer_is_two_member_events_in_one_transaction(store: Store) -> None:
    sphere, owner = await sphere_with(store)
    member = await add(store, sphere, owner, Role.MEMBER)
    events = await store.change_members(
        sphere.sphere_id,
        owner.user_id,
        [
            (member.user_id, decisions.decide_new_owner),
            (owner.user_id, decisions.decide_former_owner),
        ],
        now_ms=NOW_MS,
    )
    assert [(e.member_id, e.role) for e in events] == [
        (member.user_id, Role.OWNER),
        (owner.user_id, Role.ADMIN),
    ]
    assert events[1].offset == events[0].offset + 1
    assert await store.get_role(sphere.sphere_id, owner.user_id) is Role.ADMIN
    visitor = await add(store, sphere, member, Role.VISITOR)
    with pytest.raises(CloisonError):
        await store.change_members(
            sphere.sphere_id,
            member.user_id,
            [
                (visitor.user_id, decisions.decide_new_owner),
                (member.user_id, decisions.decide_former_owner),
            ],
            now_ms=NOW_MS,
        )
    assert await store.get_role(sphere.sphere_id, member.user_id) is Role.OWNER
    assert (await actions(store, sphere.sphere_id))[0] is AuditAction.OWNERSHIP_TRANSFERRED


async def test_deleting_a_sphere_deletes_every_row_of_it(store: Store) -> None:
    sphere, owner = await sphere_with(store, Privacy.OPEN)
    member = await add(store, sphere, owner, Role.MEMBER)
    kept, _ = await sphere_with(store)
    await store.append(sphere.sphere_id, post(member.user_id, "m1"))
    await store.set_read_marker(sphere.sphere_id, member.user_id, 2)
    await invite(store, sphere, owner, await user(store, "guest"), Role.MEMBER)
    await store.request_join(
        sphere.sphere_id, (await user(store, "asker")).user_id, None, allow, now_ms=NOW_MS
    )
    banned = await user(store, "banned")
    await store.ban(
        sphere.sphere_id,
        owner.user_id,
        banned.user_id,
        None,
        decisions.deciding_ban(None),
        now_ms=NOW_MS,
    )
    with pytest.raises(CloisonError) as refused:
        await store.delete_sphere(
            sphere.sphere_id, member.user_id, decisions.check_delete, now_ms=NOW_MS
        )
    assert refused.value.code is ErrorCode.FORBIDDEN
    head = await store.get_sphere(sphere.sphere_id)
    assert head is not None
    last = await store.delete_sphere(
        sphere.sphere_id, owner.user_id, decisions.check_delete, now_ms=NOW_MS
    )
    assert (last.kind, last.deleted, last.offset) == (EventKind.SPHERE, True, head.offset + 1)
    assert await store.get_sphere(sphere.sphere_id) is None
    assert await store.events_after(sphere.sphere_id, 0, 100) == []
    assert await store.list_members(sphere.sphere_id) == []
    assert await store.list_bans(sphere.sphere_id, limit=10) == []
    assert await store.list_requests(sphere.sphere_id, limit=10) == []
    assert await store.list_invitations(sphere_id=sphere.sphere_id, now_ms=NOW_MS, limit=10) == []
    assert await store.list_sphere_audit(sphere.sphere_id, before=None, limit=10) == []
    assert [s.sphere_id for s in await store.user_spheres(member.user_id)] == []
    assert (await store.sphere_standing(sphere.sphere_id, owner.user_id)).sphere is None
    with pytest.raises(NotFoundError):
        await store.append(sphere.sphere_id, post(owner.user_id, "late"))
    with pytest.raises(NotFoundError):
        await store.delete_sphere(
            sphere.sphere_id, owner.user_id, decisions.check_delete, now_ms=NOW_MS
        )
    assert await store.get_sphere(kept.sphere_id) is not None
    server_log = await store.list_audit(before=None, limit=10)
    assert (server_log[0].actor, server_log[0].action, server_log[0].detail) == (
        owner.user_id,
        "sphere_deleted",
        sphere.sphere_id,
    )
