"""Invitations over WebSocket and HTTP: single use, expiring, revocable, never raising a role,
answered by their invitee alone."""

from __future__ import annotations

import aiosqlite
import pytest

from protocol import (
    AcceptInvitation,
    Ban,
    DeclineInvitation,
    ErrorReply,
    Frame,
    InvitationInfo,
    InvitationList,
    Invite,
    ListInvitations,
    Message,
    Ok,
    RevokeInvitation,
    SphereInfo,
    Subscribe,
    Subscribed,
)
from tests.support import ServerProcess, User


def code(reply: Frame) -> str:
    assert isinstance(reply, ErrorReply), reply
    return reply.code


async def invite(inviter: User, sphere_id: str, invitee: User, role: str = "member") -> str:
    reply = await inviter.api(
        "POST",
        f"/spheres/{sphere_id}/invitations",
        json={"user_id": invitee.user_id, "role": role},
    )
    assert reply.status_code == 201, reply.text
    return str(reply.json()["invitation"]["invitation_id"])


async def age_invitations(server: ServerProcess, sphere_id: str) -> None:
    """Move the sphere's invitations into the past (the clock cannot be moved for a server)."""
    async with aiosqlite.connect(server.data_dir / "cloison.sqlite3") as db:
        await db.execute("UPDATE invitations SET expires_ms = 1 WHERE sphere_id = ?", (sphere_id,))
        await db.commit()


async def test_accepted_with_the_stored_role_once(server: ServerProcess) -> None:
    owner = await server.new_user("owner")
    guest = await server.new_user("guest")
    sphere_id = await owner.create_sphere("team")
    o = await owner.connect()
    await o.request(Subscribe(sphere_id=sphere_id, ref="s"))
    made = await o.request(
        Invite(sphere_id=sphere_id, user_id=guest.user_id, role="publisher", ref="i")
    )
    assert isinstance(made, InvitationInfo), made
    invitation = made.invitation
    assert (invitation.role, invitation.state, invitation.invitee_name) == (
        "publisher",
        "pending",
        "guest",
    )
    assert invitation.expires_ms - invitation.created_ms == 7 * 86_400_000
    g = await guest.connect()
    mine = await g.request(ListInvitations(ref="l"))
    assert isinstance(mine, InvitationList)
    assert [(i.invitation_id, i.sphere_name, i.inviter_name) for i in mine.invitations] == [
        (invitation.invitation_id, "team", "owner")
    ]
    # The role comes from the invitation, never from the request: a request carrying one is
    # refused as malformed.
    reply = await guest.api(
        "POST", f"/invitations/{invitation.invitation_id}/accept", json={"role": "owner"}
    )
    assert reply.status_code == 400 and reply.json()["code"] == "bad_frame", reply.text
    reply = await guest.api("POST", f"/invitations/{invitation.invitation_id}/accept")
    assert reply.status_code == 200, reply.text
    assert reply.json()["sphere"]["role"] == "publisher"
    event = await o.expect(Message, member_id=guest.user_id)
    assert (event.action, event.role, event.author_id) == ("accepted", "publisher", guest.user_id)
    again = await g.request(AcceptInvitation(invitation_id=invitation.invitation_id, ref="b"))
    assert code(again) == "conflict"
    assert isinstance(await g.request(Subscribe(sphere_id=sphere_id, ref="s")), Subscribed)


async def test_expired_reused_altered_and_foreign(server: ServerProcess) -> None:
    owner = await server.new_user("owner")
    guest = await server.new_user("guest")
    other = await server.new_user("other")
    sphere_id = await owner.create_sphere("team")
    invitation_id = await invite(owner, sphere_id, guest)
    g, x = await guest.connect(), await other.connect()
    # Another user, or an altered id: not found, exactly as an id that never existed.
    foreign = await x.request(AcceptInvitation(invitation_id=invitation_id, ref="f"))
    altered = await g.request(AcceptInvitation(invitation_id=invitation_id[:-1] + "A", ref="a"))
    unknown = await g.request(AcceptInvitation(invitation_id="nothing-here", ref="u"))
    assert [code(foreign), code(altered), code(unknown)] == ["not_found"] * 3
    assert foreign.message == altered.message == unknown.message  # type: ignore[attr-defined]
    over_http = await other.api("POST", f"/invitations/{invitation_id}/decline")
    assert over_http.status_code == 404
    await age_invitations(server, sphere_id)
    expired = await g.request(AcceptInvitation(invitation_id=invitation_id, ref="e"))
    assert code(expired) == "conflict" and "expired" in expired.message  # type: ignore[attr-defined]
    listed = await g.request(ListInvitations(ref="l"))
    assert isinstance(listed, InvitationList) and listed.invitations == []
    fresh = await invite(owner, sphere_id, guest)
    assert fresh != invitation_id
    assert isinstance(await g.request(AcceptInvitation(invitation_id=fresh, ref="ok")), SphereInfo)
    reused = await guest.api("POST", f"/invitations/{fresh}/accept")
    assert reused.status_code == 409 and reused.json()["code"] == "conflict"


async def test_no_invitation_raises_a_role(server: ServerProcess) -> None:
    owner = await server.new_user("owner")
    admin = await server.new_user("admin")
    member = await server.new_user("member")
    guest = await server.new_user("guest")
    sphere_id = await owner.create_sphere("team")
    await owner.add(sphere_id, admin, role="admin")
    await owner.add(sphere_id, member)
    a, m = await admin.connect(), await member.connect()
    for client, role in ((a, "admin"), (a, "owner"), (m, "publisher"), (m, "admin")):
        reply = await client.request(
            Invite(sphere_id=sphere_id, user_id=guest.user_id, role=role, ref="r")
        )
        assert code(reply) == "forbidden", (role, reply)
    for client, role in ((a, "publisher"), (m, "member"), (m, "visitor")):
        reply = await client.request(
            Invite(sphere_id=sphere_id, user_id=guest.user_id, role=role, ref="ok")
        )
        assert isinstance(reply, InvitationInfo), (role, reply)
    owners = await owner.api(
        "POST",
        f"/spheres/{sphere_id}/invitations",
        json={"user_id": guest.user_id, "role": "admin"},
    )
    assert owners.status_code == 201, owners.text
    # One pending invitation per invitee: the last one replaced the others.
    g = await guest.connect()
    listed = await g.request(ListInvitations(ref="l"))
    assert isinstance(listed, InvitationList)
    assert [i.role for i in listed.invitations] == ["admin"]


async def test_revoked_and_declined(server: ServerProcess) -> None:
    owner = await server.new_user("owner")
    member = await server.new_user("member")
    guest = await server.new_user("guest")
    sphere_id = await owner.create_sphere("team")
    await owner.add(sphere_id, member)
    m, g = await member.connect(), await guest.connect()
    made = await m.request(Invite(sphere_id=sphere_id, user_id=guest.user_id, ref="i"))
    assert isinstance(made, InvitationInfo)
    invitation_id = made.invitation.invitation_id
    # Only its inviter, or an administrator, revokes it.
    stranger = await server.new_user("stranger")
    s = await stranger.connect()
    for client in (g, s):  # they do not see the private sphere
        reply = await client.request(RevokeInvitation(invitation_id=invitation_id, ref="r"))
        assert code(reply) == "not_found"
    peer = await server.new_user("peer")  # a member, but neither its inviter nor an admin
    await owner.add(sphere_id, peer)
    p = await peer.connect()
    refused = await p.request(RevokeInvitation(invitation_id=invitation_id, ref="r"))
    assert code(refused) == "forbidden"
    assert isinstance(await m.request(RevokeInvitation(invitation_id=invitation_id, ref="r")), Ok)
    revoked = await g.request(AcceptInvitation(invitation_id=invitation_id, ref="a"))
    assert code(revoked) == "conflict"
    # An administrator revokes anyone's (over HTTP).
    second = await invite(member, sphere_id, guest)
    reply = await owner.api("DELETE", f"/invitations/{second}")
    assert reply.status_code == 200, reply.text
    third = await invite(owner, sphere_id, guest)
    assert isinstance(await g.request(DeclineInvitation(invitation_id=third, ref="d")), Ok)
    declined = await g.request(AcceptInvitation(invitation_id=third, ref="a2"))
    assert code(declined) == "conflict"
    members = await owner.api("GET", f"/spheres/{sphere_id}/members")
    assert guest.user_id not in {m["user_id"] for m in members.json()["members"]}


async def test_members_and_banned_users_are_not_invited(server: ServerProcess) -> None:
    owner = await server.new_user("owner")
    member = await server.new_user("member")
    banned = await server.new_user("banned")
    sphere_id = await owner.create_sphere("team")
    await owner.add(sphere_id, member)
    o = await owner.connect()
    old = await o.request(Invite(sphere_id=sphere_id, user_id=banned.user_id, ref="old"))
    assert isinstance(old, InvitationInfo)
    assert isinstance(
        await o.request(Ban(sphere_id=sphere_id, user_id=banned.user_id, ref="b")), Ok
    )
    member_again = await o.request(Invite(sphere_id=sphere_id, user_id=member.user_id, ref="m"))
    assert code(member_again) == "conflict"
    banned_again = await o.request(Invite(sphere_id=sphere_id, user_id=banned.user_id, ref="x"))
    assert code(banned_again) == "forbidden"
    b = await banned.connect()
    stale = await b.request(AcceptInvitation(invitation_id=old.invitation.invitation_id, ref="a"))
    assert code(stale) == "forbidden" and "banned" in stale.message  # type: ignore[attr-defined]
    # An unknown user is no member of the organisation: refused as someone from outside
    # would be (who exists elsewhere is not told), and only to who may invite.
    nobody = await o.request(Invite(sphere_id=sphere_id, user_id="u_nobody", ref="n"))
    assert code(nobody) == "forbidden" and "policy visitors" in nobody.message  # type: ignore[attr-defined]
    outsider = await server.new_user("outsider")
    x = await outsider.connect()
    hidden = await x.request(Invite(sphere_id=sphere_id, user_id="u_nobody", ref="h"))
    assert code(hidden) == "not_found" and hidden.message == "sphere not found"  # type: ignore[attr-defined]


async def test_listing_for_administrators_and_for_the_invitee(server: ServerProcess) -> None:
    owner = await server.new_user("owner")
    admin = await server.new_user("admin")
    member = await server.new_user("member")
    sphere_id = await owner.create_sphere("team")
    await owner.add(sphere_id, admin, role="admin")
    await owner.add(sphere_id, member)
    guests = [await server.new_user(f"guest{n}") for n in range(3)]
    made = [await invite(member if n else admin, sphere_id, g) for n, g in enumerate(guests)]
    reply = await admin.api("GET", f"/spheres/{sphere_id}/invitations", params={"limit": 2})
    assert reply.status_code == 200, reply.text
    page = reply.json()
    assert len(page["invitations"]) == 2 and page["next"]
    rest = await admin.api(
        "GET", f"/spheres/{sphere_id}/invitations", params={"after": page["next"]}
    )
    ids = [i["invitation_id"] for i in page["invitations"] + rest.json()["invitations"]]
    assert sorted(ids) == sorted(made)
    m = await member.connect()
    refused = await m.request(ListInvitations(sphere_id=sphere_id, ref="l"))
    assert code(refused) == "forbidden"
    own = await guests[0].api("GET", "/invitations")
    assert [i["invitation_id"] for i in own.json()["invitations"]] == [made[0]]
    nothing = await member.api("GET", "/invitations")
    assert nothing.json()["invitations"] == []


@pytest.mark.parametrize("encoding", ["msgpack"])
async def test_invitations_travel_in_msgpack(server: ServerProcess, encoding: str) -> None:
    owner = await server.new_user("owner")
    guest = await server.new_user("guest")
    sphere_id = await owner.create_sphere("team")
    o = await owner.connect(encoding)
    made = await o.request(Invite(sphere_id=sphere_id, user_id=guest.user_id, ref="i"))
    assert isinstance(made, InvitationInfo)
    g = await guest.connect(encoding)
    joined = await g.request(AcceptInvitation(invitation_id=made.invitation.invitation_id, ref="a"))
    assert isinstance(joined, SphereInfo) and joined.sphere.role == "member"
