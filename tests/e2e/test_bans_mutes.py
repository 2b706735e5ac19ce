"""Bans keep a user out on every path; mutes keep a member reading but silent, refused up front
and where the write commits, whichever gateway the mute came through."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import aiosqlite
import pytest

from protocol import (
    AcceptInvitation,
    Ack,
    AddMember,
    Ban,
    BanList,
    Delete,
    Edit,
    ErrorReply,
    Frame,
    History,
    HistoryPage,
    InvitationInfo,
    Invite,
    Join,
    ListBans,
    Message,
    Mute,
    Ok,
    Publish,
    RequestJoin,
    SphereInfo,
    Subscribe,
    Subscribed,
    Typing,
    Unban,
    Unmute,
    Unsubscribed,
)
from tests.e2e.test_cluster import connect, gateways
from tests.services import REDIS_URL, require_shared_redis
from tests.support import Client, ServerProcess


def code(reply: Frame) -> str:
    assert isinstance(reply, ErrorReply), reply
    return reply.code


def muted(reply: Frame) -> bool:
    return (
        isinstance(reply, ErrorReply)
        and reply.code == "forbidden"
        and (reply.message.startswith("you are muted in this sphere until "))
    )


async def answers(client: Client, count: int) -> list[Frame]:
    """The next ``count`` replies (frames with a ref), in the order they came."""
    replies: list[Frame] = []
    async with asyncio.timeout(10):
        while len(replies) < count:
            frame = await client.recv()
            if getattr(frame, "ref", None) is not None:
                replies.append(frame)
    return replies


async def set_in_store(server: ServerProcess, sql: str, *args: object) -> None:
    """Change the store behind the server's back (what no request of this test can do)."""
    async with aiosqlite.connect(server.data_dir / "cloison.sqlite3") as db:
        await db.execute(sql, args)
        await db.commit()


async def test_a_ban_keeps_out_on_every_path(server: ServerProcess) -> None:
    owner = await server.new_user("owner")
    member = await server.new_user("member")
    sphere_id = await owner.create_sphere("club", privacy="open")
    await set_in_store(
        server, "UPDATE spheres SET join_policy = 'free' WHERE sphere_id = ?", sphere_id
    )
    await owner.add(sphere_id, member)
    o, m = await owner.connect(), await member.connect()
    old = await o.request(Invite(sphere_id=sphere_id, user_id=member.user_id, ref="i"))
    assert code(old) == "conflict"  # a member is not invited
    await m.request(Subscribe(sphere_id=sphere_id, ref="s"))
    await o.request(Subscribe(sphere_id=sphere_id, ref="s"))
    reply = await owner.api(
        "PUT", f"/spheres/{sphere_id}/bans/{member.user_id}", json={"reason": "spam"}
    )
    assert reply.status_code == 200, reply.text
    assert (await m.expect(Unsubscribed)).reason == "access_revoked"
    event = await m.expect(Message, member_id=member.user_id)
    assert (event.action, event.role, event.author_id) == ("banned", None, owner.user_id)
    # Every way back is refused with "banned": join, ask, be added, be invited.
    for attempt in (
        Join(sphere_id=sphere_id, ref="j"),
        RequestJoin(sphere_id=sphere_id, ref="r"),
        Subscribe(sphere_id=sphere_id, ref="s2"),
        Publish(sphere_id=sphere_id, message_id="x", body="x", ref="p"),
    ):
        refused = await m.request(attempt)
        assert code(refused) == "forbidden" and "banned" in refused.message, attempt  # type: ignore[attr-defined]
    for attempt in (
        AddMember(sphere_id=sphere_id, user_id=member.user_id, ref="a"),
        Invite(sphere_id=sphere_id, user_id=member.user_id, ref="i2"),
    ):
        refused = await o.request(attempt)
        assert code(refused) == "forbidden" and "banned" in refused.message, attempt  # type: ignore[attr-defined]
    bans = await o.request(ListBans(sphere_id=sphere_id, ref="l"))
    assert isinstance(bans, BanList)
    assert [(b.user_id, b.name, b.banned_by, b.reason) for b in bans.bans] == [
        (member.user_id, "member", owner.user_id, "spam")
    ]
    assert isinstance(
        await o.request(Unban(sphere_id=sphere_id, user_id=member.user_id, ref="u")), Ok
    )
    lifted = await o.expect(Message, member_id=member.user_id, action="unbanned")
    assert lifted.role is None
    assert (await m.request(Join(sphere_id=sphere_id, ref="j2"))).sphere.role == "member"  # type: ignore[attr-defined]
    again = await owner.api("DELETE", f"/spheres/{sphere_id}/bans/{member.user_id}")
    assert again.status_code == 404


async def test_an_old_invitation_is_refused_to_a_banned_user(server: ServerProcess) -> None:
    owner = await server.new_user("owner")
    guest = await server.new_user("guest")
    sphere_id = await owner.create_sphere("team")
    o = await owner.connect()
    made = await o.request(Invite(sphere_id=sphere_id, user_id=guest.user_id, ref="i"))
    assert isinstance(made, InvitationInfo)
    assert isinstance(await o.request(Ban(sphere_id=sphere_id, user_id=guest.user_id, ref="b")), Ok)
    g = await guest.connect()
    refused = await g.request(
        AcceptInvitation(invitation_id=made.invitation.invitation_id, ref="a")
    )
    assert code(refused) == "forbidden"
    # The banned user of a private sphere still sees nothing of it.
    hidden = await g.request(Subscribe(sphere_id=sphere_id, ref="s"))
    assert code(hidden) == "not_found"


async def test_who_may_ban_whom(server: ServerProcess) -> None:
    owner = await server.new_user("owner")
    admin = await server.new_user("admin")
    other_admin = await server.new_user("other")
    member = await server.new_user("member")
    sphere_id = await owner.create_sphere("team")
    for user, role in ((admin, "admin"), (other_admin, "admin"), (member, "member")):
        await owner.add(sphere_id, user, role=role)
    a, m, o = await admin.connect(), await member.connect(), await owner.connect()
    for target in (other_admin, owner):
        assert code(await a.request(Ban(sphere_id=sphere_id, user_id=target.user_id, ref="b"))) == (
            "forbidden"
        )
    assert code(await m.request(Ban(sphere_id=sphere_id, user_id=admin.user_id, ref="m"))) == (
        "forbidden"
    )
    last = await o.request(Ban(sphere_id=sphere_id, user_id=owner.user_id, ref="self"))
    assert code(last) == "conflict"
    stranger = await server.new_user("stranger")
    assert isinstance(
        await a.request(Ban(sphere_id=sphere_id, user_id=stranger.user_id, ref="s")), Ok
    )
    assert isinstance(
        await a.request(Ban(sphere_id=sphere_id, user_id=stranger.user_id, ref="t")), Ok
    )
    nobody = await a.request(Ban(sphere_id=sphere_id, user_id="u_nobody", ref="n"))
    assert code(nobody) == "not_found"


async def test_a_muted_member_reads_but_does_not_speak(server: ServerProcess) -> None:
    owner = await server.new_user("owner")
    member = await server.new_user("member")
    sphere_id = await owner.create_sphere("team")
    await owner.add(sphere_id, member)
    o, m = await owner.connect(), await member.connect()
    await m.request(Subscribe(sphere_id=sphere_id, ref="s"))
    mine = await m.request(Publish(sphere_id=sphere_id, message_id="m1", body="hi", ref="p"))
    assert isinstance(mine, Ack)
    before_ms = int(time.time() * 1000)
    done = await o.request(
        Mute(sphere_id=sphere_id, user_id=member.user_id, duration_s=600, ref="mu")
    )
    assert isinstance(done, Ok), done
    event = await m.expect(Message, action="muted")
    assert (event.member_id, event.role) == (member.user_id, "member")
    assert before_ms + 600_000 <= event.until_ms <= int(time.time() * 1000) + 600_000
    for attempt in (
        Publish(sphere_id=sphere_id, message_id="m2", body="x", ref="p2"),
        Edit(sphere_id=sphere_id, message_id="e1", target=mine.offset, body="y", ref="e"),
        Typing(sphere_id=sphere_id, ref="t"),
    ):
        assert muted(await m.request(attempt)), attempt
    over_http = await member.api(
        "POST", f"/spheres/{sphere_id}/messages", json={"message_id": "m3", "body": "z"}
    )
    assert over_http.status_code == 403 and "muted" in over_http.json()["message"]
    # Reading, and deleting one's own post, are not speaking.
    page = await m.request(History(sphere_id=sphere_id, ref="h"))
    assert isinstance(page, HistoryPage)
    gone = await m.request(
        Delete(sphere_id=sphere_id, message_id="d1", target=mine.offset, ref="d")
    )
    assert isinstance(gone, Ack)
    again = await owner.api("DELETE", f"/spheres/{sphere_id}/mutes/{member.user_id}")
    assert again.status_code == 200, again.text
    assert (await m.expect(Message, action="unmuted")).member_id == member.user_id
    free = await m.request(Publish(sphere_id=sphere_id, message_id="m4", body="back", ref="p4"))
    assert isinstance(free, Ack)


async def test_leaving_and_joining_again_does_not_shed_a_mute(server: ServerProcess) -> None:
    owner = await server.new_user("owner")
    member = await server.new_user("member")
    sphere_id = await owner.create_sphere("lobby", privacy="open")
    o, m = await owner.connect(), await member.connect()
    assert isinstance(await m.request(Join(sphere_id=sphere_id, ref="j1")), SphereInfo)
    done = await o.request(
        Mute(sphere_id=sphere_id, user_id=member.user_id, duration_s=600, ref="mu")
    )
    assert isinstance(done, Ok), done
    left = await member.api("POST", f"/spheres/{sphere_id}/leave")
    assert left.status_code == 200, left.text
    await o.request(Subscribe(sphere_id=sphere_id, ref="s"))
    assert isinstance(await m.request(Join(sphere_id=sphere_id, ref="j2")), SphereInfo)
    back = await o.expect(Message, action="joined", member_id=member.user_id)
    assert back.until_ms is not None and back.until_ms > int(time.time() * 1000)
    # Refused up front (the member map follows the joining event) and over HTTP alike.
    assert muted(await m.request(Typing(sphere_id=sphere_id, ref="t")))
    assert muted(await m.request(Publish(sphere_id=sphere_id, message_id="m1", body="x", ref="p")))
    over_http = await member.api(
        "POST", f"/spheres/{sphere_id}/messages", json={"message_id": "m2", "body": "y"}
    )
    assert over_http.status_code == 403 and "muted" in over_http.json()["message"]
    # Once lifted, the mute is gone for good: leaving and coming back starts unmuted.
    lifted = await owner.api("DELETE", f"/spheres/{sphere_id}/mutes/{member.user_id}")
    assert lifted.status_code == 200, lifted.text
    await member.api("POST", f"/spheres/{sphere_id}/leave")
    assert isinstance(await m.request(Join(sphere_id=sphere_id, ref="j3")), SphereInfo)
    free = await m.request(Publish(sphere_id=sphere_id, message_id="m3", body="z", ref="p3"))
    assert isinstance(free, Ack), free


async def test_who_may_mute_whom(server: ServerProcess) -> None:
    owner = await server.new_user("owner")
    admin = await server.new_user("admin")
    member = await server.new_user("member")
    sphere_id = await owner.create_sphere("team")
    await owner.add(sphere_id, admin, role="admin")
    await owner.add(sphere_id, member)
    a, m = await admin.connect(), await member.connect()
    refused = await a.request(
        Mute(sphere_id=sphere_id, user_id=owner.user_id, duration_s=60, ref="a")
    )
    assert code(refused) == "forbidden"
    peer = await m.request(Mute(sphere_id=sphere_id, user_id=admin.user_id, duration_s=60, ref="m"))
    assert code(peer) == "forbidden"
    stranger = await server.new_user("stranger")
    outside = await a.request(
        Mute(sphere_id=sphere_id, user_id=stranger.user_id, duration_s=60, ref="s")
    )
    assert code(outside) == "not_found"
    short = await a.request(
        Mute(sphere_id=sphere_id, user_id=member.user_id, duration_s=5, ref="x")
    )
    assert code(short) == "bad_frame"
    # Lifting a mute nobody set changes nothing.
    assert isinstance(
        await a.request(Unmute(sphere_id=sphere_id, user_id=member.user_id, ref="u")), Ok
    )


async def test_a_mute_made_before_the_gateway_followed_the_sphere(server: ServerProcess) -> None:
    """The member map a gateway loads knows the mutes already running: typing, which no
    commit checks, is refused too."""
    owner = await server.new_user("owner")
    member = await server.new_user("member")
    sphere_id = await owner.create_sphere("team")
    await owner.add(sphere_id, member)
    reply = await owner.api(
        "PUT", f"/spheres/{sphere_id}/mutes/{member.user_id}", json={"duration_s": 600}
    )
    assert reply.status_code == 200, reply.text
    m = await member.connect()
    assert isinstance(await m.request(Subscribe(sphere_id=sphere_id, ref="s")), Subscribed)
    assert muted(await m.request(Typing(sphere_id=sphere_id, ref="t")))
    assert muted(await m.request(Publish(sphere_id=sphere_id, message_id="p", body="x", ref="p")))


async def test_a_mute_is_checked_where_the_write_commits(server: ServerProcess) -> None:
    """A mute this gateway has not heard of (written to the store behind its back, so no event
    told its member map) passes the up-front check on the map, and is refused at commit."""
    owner = await server.new_user("owner")
    member = await server.new_user("member")
    sphere_id = await owner.create_sphere("team")
    await owner.add(sphere_id, member)
    m = await member.connect()
    assert isinstance(await m.request(Subscribe(sphere_id=sphere_id, ref="s")), Subscribed)
    assert isinstance(
        await m.request(Publish(sphere_id=sphere_id, message_id="m0", body="hi", ref="p0")), Ack
    )
    until_ms = int(time.time() * 1000) + 600_000
    await set_in_store(
        server,
        "UPDATE members SET muted_until_ms = ? WHERE sphere_id = ? AND user_id = ?",
        until_ms,
        sphere_id,
        member.user_id,
    )
    assert muted(await m.request(Publish(sphere_id=sphere_id, message_id="m1", body="x", ref="p")))


@pytest.mark.redis
@pytest.mark.postgres
async def test_a_mute_through_one_gateway_silences_on_the_other(tmp_path: Path) -> None:
    require_shared_redis()
    async with gateways(tmp_path, 2, redis_url=REDIS_URL) as nodes:
        owner = await nodes[0].new_user("owner")
        member = await nodes[0].new_user("member")
        sphere_id = await owner.create_sphere("team")
        await owner.add(sphere_id, member)
        o = await connect(owner, nodes[0])
        m = await connect(member, nodes[1])
        writes = await connect(member, nodes[1])
        assert isinstance(await m.request(Subscribe(sphere_id=sphere_id, ref="s")), Subscribed)
        first = await writes.request(
            Publish(sphere_id=sphere_id, message_id="w0", body="a", ref="w0")
        )
        assert isinstance(first, Ack)
        await m.expect(Message, offset=first.offset)  # node 1's member map is live
        done = await o.request(
            Mute(sphere_id=sphere_id, user_id=member.user_id, duration_s=600, ref="mu")
        )
        assert isinstance(done, Ok), done
        # At once, whatever node 1 has heard: its map, or the store where writes commit.
        burst = [
            Publish(sphere_id=sphere_id, message_id=f"w{n}", body="b", ref=f"w{n}")
            for n in range(1, 6)
        ]
        for frame in burst:  # pipelined: none waits for the one before
            await writes.send(frame)
        replies = await answers(writes, len(burst))
        assert all(muted(reply) for reply in replies), replies
        assert (await m.expect(Message, action="muted")).member_id == member.user_id
        typed = await writes.request(Typing(sphere_id=sphere_id, ref="t"))
        assert muted(typed)
        unmuted = await o.request(Unmute(sphere_id=sphere_id, user_id=member.user_id, ref="u"))
        assert isinstance(unmuted, Ok)
        after = await writes.request(
            Publish(sphere_id=sphere_id, message_id="w9", body="c", ref="w9")
        )
        assert isinstance(after, Ack), after
