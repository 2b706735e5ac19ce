"""Every act of entering, leaving and moderation writes its entry in the sphere's audit log:
who, what, to whom; never a message body."""

from __future__ import annotations

from protocol import (
    AcceptInvitation,
    AnswerRequest,
    AuditList,
    Ban,
    DeclineInvitation,
    ErrorReply,
    Frame,
    InvitationInfo,
    Invite,
    ListAudit,
    Mute,
    Ok,
    Publish,
    RemoveMember,
    RequestJoin,
    RevokeInvitation,
    TransferOwnership,
    Unban,
    Unmute,
    WithdrawRequest,
)
from tests.e2e.test_join_requests import set_join_policy
from tests.support import ServerProcess

BODY = "a body the audit log must never hold"


async def test_each_act_is_audited(server: ServerProcess) -> None:
    owner = await server.new_user("owner")
    heir = await server.new_user("heir")
    guest = await server.new_user("guest")
    asker = await server.new_user("asker")
    sphere_id = await owner.create_sphere("club", privacy="open")
    await set_join_policy(server, sphere_id, "approval")
    await owner.add(sphere_id, heir)
    o, g, x = await owner.connect(), await guest.connect(), await asker.connect()
    await o.request(Publish(sphere_id=sphere_id, message_id="b", body=BODY, ref="p"))
    expected: list[tuple[str, str, str | None, str | None]] = [
        ("member_added", owner.user_id, heir.user_id, "member")
    ]

    async def act(
        frame: Frame, action: str, actor: str, target: str | None, detail: str | None = None
    ) -> Frame:
        client = {owner.user_id: o, guest.user_id: g, asker.user_id: x}[actor]
        reply = await client.request(frame)
        assert not isinstance(reply, ErrorReply), reply
        expected.append((action, actor, target, detail))
        return reply

    made = await act(
        Invite(sphere_id=sphere_id, user_id=guest.user_id, role="visitor", ref="i1"),
        "invited",
        owner.user_id,
        guest.user_id,
        "visitor",
    )
    assert isinstance(made, InvitationInfo)
    await act(
        RevokeInvitation(invitation_id=made.invitation.invitation_id, ref="r"),
        "invitation_revoked",
        owner.user_id,
        guest.user_id,
    )
    second = await act(
        Invite(sphere_id=sphere_id, user_id=guest.user_id, ref="i2"),
        "invited",
        owner.user_id,
        guest.user_id,
        "member",
    )
    assert isinstance(second, InvitationInfo)
    await act(
        DeclineInvitation(invitation_id=second.invitation.invitation_id, ref="d"),
        "invitation_declined",
        guest.user_id,
        guest.user_id,
    )
    third = await act(
        Invite(sphere_id=sphere_id, user_id=guest.user_id, ref="i3"),
        "invited",
        owner.user_id,
        guest.user_id,
        "member",
    )
    assert isinstance(third, InvitationInfo)
    await act(
        AcceptInvitation(invitation_id=third.invitation.invitation_id, ref="a"),
        "invitation_accepted",
        guest.user_id,
        guest.user_id,
        "member",
    )
    for accept in (False, True):
        await act(
            RequestJoin(sphere_id=sphere_id, comment="me", ref="q"),
            "join_requested",
            asker.user_id,
            asker.user_id,
        )
        if not accept:
            await act(
                WithdrawRequest(sphere_id=sphere_id, ref="w"),
                "request_withdrawn",
                asker.user_id,
                asker.user_id,
            )
            await act(
                RequestJoin(sphere_id=sphere_id, ref="q2"),
                "join_requested",
                asker.user_id,
                asker.user_id,
            )
        await act(
            AnswerRequest(sphere_id=sphere_id, user_id=asker.user_id, accept=accept, ref="ans"),
            "request_accepted" if accept else "request_refused",
            owner.user_id,
            asker.user_id,
        )
    mute = await o.request(Mute(sphere_id=sphere_id, user_id=asker.user_id, duration_s=60, ref="m"))
    assert isinstance(mute, Ok)
    audit = await o.request(ListAudit(sphere_id=sphere_id, limit=1, ref="l"))
    assert isinstance(audit, AuditList)
    until = audit.entries[0].detail
    assert until is not None and until.isdigit()
    expected.append(("muted", owner.user_id, asker.user_id, until))
    await act(
        Unmute(sphere_id=sphere_id, user_id=asker.user_id, ref="um"),
        "unmuted",
        owner.user_id,
        asker.user_id,
    )
    await act(
        Ban(sphere_id=sphere_id, user_id=asker.user_id, reason="spam", ref="b"),
        "banned",
        owner.user_id,
        asker.user_id,
        "spam",
    )
    await act(
        Unban(sphere_id=sphere_id, user_id=asker.user_id, ref="ub"),
        "unbanned",
        owner.user_id,
        asker.user_id,
    )
    await act(
        RemoveMember(sphere_id=sphere_id, user_id=guest.user_id, ref="rm"),
        "member_removed",
        owner.user_id,
        guest.user_id,
    )
    await act(
        TransferOwnership(sphere_id=sphere_id, user_id=heir.user_id, ref="t"),
        "ownership_transferred",
        owner.user_id,
        heir.user_id,
    )
    # The new owner reads the log over HTTP; the former one, now an administrator, still may.
    reply = await heir.api("GET", f"/spheres/{sphere_id}/audit", params={"limit": 100})
    assert reply.status_code == 200, reply.text
    entries = list(reversed(reply.json()["entries"]))
    got = [(e["action"], e["actor_id"], e.get("target_id"), e.get("detail")) for e in entries]
    assert [g for g in got if g[0] != "sphere_created"] == expected
    assert BODY not in reply.text
    as_admin = await o.request(ListAudit(sphere_id=sphere_id, limit=100, ref="l2"))
    assert isinstance(as_admin, AuditList) and len(as_admin.entries) == len(entries)
