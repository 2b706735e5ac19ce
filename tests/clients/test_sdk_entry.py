"""The SDK's invitation, join-request, ban, mute, transfer and deletion methods against a real
server, and the membership events they put in the stream."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from clients import ConflictError, ForbiddenError, NotFoundError, RequestError
from protocol import (
    EventKind,
    InvitationState,
    JoinPolicy,
    MemberAction,
    Privacy,
    Role,
    SphereId,
)
from tests.clients import serving
from tests.clients.governance import next_message, owned, sdk
from tests.support import ServerProcess

pytestmark = pytest.mark.e2e


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    with serving(tmp_path) as proc:
        yield proc


async def test_invite_accept_and_the_accepted_event(server: ServerProcess) -> None:
    (alice,), sphere_id = await owned(server, "alice")
    bob = await server.new_user("bob")
    async with sdk(server, alice) as a, sdk(server, bob) as b:
        await a.subscribe(sphere_id)
        invitation = await a.invite(sphere_id, bob.user_id, Role.PUBLISHER)
        assert (invitation.invitee_id, invitation.role) == (bob.user_id, Role.PUBLISHER)
        assert invitation.state is InvitationState.PENDING
        assert [i.invitation_id for i in await a.invitations(sphere_id)] == [
            invitation.invitation_id
        ]
        (mine,) = await b.invitations()
        assert (mine.sphere_id, mine.inviter_id) == (sphere_id, alice.user_id)
        sphere = await b.accept_invitation(mine.invitation_id)
        assert (sphere.sphere_id, sphere.role) == (sphere_id, Role.PUBLISHER)
        event = await next_message(a, kind=EventKind.MEMBER, member_id=bob.user_id)
        assert (event.action, event.role) == (MemberAction.ACCEPTED, Role.PUBLISHER)
        with pytest.raises(RequestError):  # single use
            await b.accept_invitation(mine.invitation_id)
        assert await b.invitations() == []


async def test_decline_and_revoke(server: ServerProcess) -> None:
    (alice,), sphere_id = await owned(server, "alice")
    bob, carol = await server.new_user("bob"), await server.new_user("carol")
    async with sdk(server, alice) as a, sdk(server, bob) as b, sdk(server, carol) as c:
        await a.invite(sphere_id, bob.user_id)
        (for_bob,) = await b.invitations()
        await b.decline_invitation(for_bob.invitation_id)
        for_carol = await a.invite(sphere_id, carol.user_id)
        await a.revoke_invitation(for_carol.invitation_id)
        assert await c.invitations() == []
        with pytest.raises(RequestError):
            await c.accept_invitation(for_carol.invitation_id)
        with pytest.raises(NotFoundError):  # the sphere stays sealed to them
            await c.subscribe(sphere_id)


async def test_join_request_admitted_then_refused(server: ServerProcess) -> None:
    alice, bob, carol = [await server.new_user(n) for n in ("alice", "bob", "carol")]
    async with sdk(server, alice) as a, sdk(server, bob) as b, sdk(server, carol) as c:
        sphere = await a.create_sphere(
            "club", Privacy.OPEN, listed=True, join_policy=JoinPolicy.APPROVAL
        )
        sphere_id = sphere.sphere_id
        await a.subscribe(sphere_id)
        await b.request_join(sphere_id, "hello, may I?")
        await c.request_join(sphere_id)
        requests = await a.join_requests(sphere_id)
        assert {r.user_id: r.comment for r in requests} == {
            bob.user_id: "hello, may I?",
            carol.user_id: None,
        }
        await a.answer_request(sphere_id, bob.user_id, accept=True)
        event = await next_message(a, kind=EventKind.MEMBER, member_id=bob.user_id)
        assert (event.action, event.role) == (MemberAction.ADMITTED, Role.MEMBER)
        await a.answer_request(sphere_id, carol.user_id, accept=False)
        assert await a.join_requests(sphere_id) == []
        await b.subscribe(sphere_id)
        with pytest.raises(RequestError):
            await c.subscribe(sphere_id)


async def test_withdraw_request(server: ServerProcess) -> None:
    alice, bob = await server.new_user("alice"), await server.new_user("bob")
    async with sdk(server, alice) as a, sdk(server, bob) as b:
        sphere = await a.create_sphere("club", Privacy.OPEN, join_policy=JoinPolicy.APPROVAL)
        await b.request_join(sphere.sphere_id)
        await b.withdraw_request(sphere.sphere_id)
        assert await a.join_requests(sphere.sphere_id) == []


async def test_ban_keeps_out_until_unbanned(server: ServerProcess) -> None:
    (alice, bob), sphere_id = await owned(server, "alice", "bob", privacy=Privacy.OPEN)
    async with sdk(server, alice) as a, sdk(server, bob) as b:
        await a.subscribe(sphere_id)
        await a.ban(sphere_id, bob.user_id, "spam")
        event = await next_message(a, kind=EventKind.MEMBER, member_id=bob.user_id)
        assert (event.action, event.role) == (MemberAction.BANNED, None)
        assert event.action.ends_membership
        assert bob.user_id not in {m.user_id for m in await a.list_members(sphere_id)}
        (ban,) = await a.bans(sphere_id)
        assert (ban.user_id, ban.reason, ban.banned_by) == (bob.user_id, "spam", alice.user_id)
        with pytest.raises(RequestError):
            await b.join(sphere_id)
        with pytest.raises(RequestError):
            await a.invite(sphere_id, bob.user_id)
        await a.unban(sphere_id, bob.user_id)
        assert await a.bans(sphere_id) == []
        await b.join(sphere_id)


async def test_mute_stops_writing_until_unmuted(server: ServerProcess) -> None:
    (alice, bob), sphere_id = await owned(server, "alice", "bob")
    async with sdk(server, alice) as a, sdk(server, bob) as b:
        await a.subscribe(sphere_id)
        await a.mute(sphere_id, bob.user_id, 600)
        event = await next_message(a, kind=EventKind.MEMBER, member_id=bob.user_id)
        assert event.action is MemberAction.MUTED
        assert event.until_ms is not None and event.until_ms > event.ts_ms
        with pytest.raises(ForbiddenError):
            await b.publish(sphere_id, "let me speak")
        await b.subscribe(sphere_id)  # a muted member still reads
        await a.unmute(sphere_id, bob.user_id)
        await b.publish(sphere_id, "thanks")


async def test_transfer_ownership_then_delete_sphere(server: ServerProcess) -> None:
    (alice, bob), sphere_id = await owned(server, "alice", "bob")
    async with sdk(server, alice) as a, sdk(server, bob) as b:
        await a.transfer_ownership(sphere_id, bob.user_id)
        roles = {m.user_id: m.role for m in await b.list_members(sphere_id)}
        assert roles == {alice.user_id: Role.ADMIN, bob.user_id: Role.OWNER}
        with pytest.raises(ForbiddenError):
            await a.delete_sphere(sphere_id)
        await b.delete_sphere(sphere_id)
        with pytest.raises(NotFoundError):
            await b.subscribe(SphereId(sphere_id))
        assert sphere_id not in {s.sphere_id for s in await a.list_spheres()}


async def test_an_invitation_cannot_raise_a_role(server: ServerProcess) -> None:
    (_, bob), sphere_id = await owned(server, "alice", "bob")
    carol = await server.new_user("carol")
    async with sdk(server, bob) as b:
        with pytest.raises((ForbiddenError, ConflictError)):
            await b.invite(sphere_id, carol.user_id, Role.ADMIN)
