"""Nothing of a sphere reaches someone who may not see it."""

from __future__ import annotations

import asyncio

import pytest

from protocol import (
    AddMember,
    ErrorReply,
    History,
    Join,
    ListMembers,
    ListSpheres,
    Message,
    Ok,
    Publish,
    SphereList,
    Subscribe,
    Subscribed,
    Typing,
    Unsubscribed,
    UpdateSphere,
)
from tests.support import ServerProcess


def probes(sphere_id: str) -> list:
    return [
        Subscribe(sphere_id=sphere_id, ref="1"),
        Publish(sphere_id=sphere_id, message_id="m", body="x", ref="2"),
        History(sphere_id=sphere_id, ref="3"),
        Typing(sphere_id=sphere_id, ref="4"),
        Join(sphere_id=sphere_id, ref="5"),
        ListMembers(sphere_id=sphere_id, ref="6"),
        UpdateSphere(sphere_id=sphere_id, name="mine", ref="7"),
        AddMember(sphere_id=sphere_id, user_id="u_x", ref="8"),
    ]


async def test_private_sphere_is_indistinguishable_from_none(server: ServerProcess) -> None:
    owner = await server.new_user("owner")
    outsider = await server.new_user("outsider")
    private_id = await owner.create_sphere("secret")
    o = await owner.connect()
    await o.request(Subscribe(sphere_id=private_id, ref="s"))
    x = await outsider.connect()
    for real, fake in zip(probes(private_id), probes("s_doesnotexist00"), strict=True):
        got_real = await x.request(real)
        got_fake = await x.request(fake)
        assert isinstance(got_real, ErrorReply), got_real
        assert (got_real.code, got_real.message) == (got_fake.code, got_fake.message)
        assert got_real.code == "not_found"
    # HTTP says the same.
    for path in (f"/spheres/{private_id}/messages", "/spheres/s_doesnotexist00/messages"):
        reply = await outsider.api("GET", path)
        assert reply.status_code == 404 and reply.json()["code"] == "not_found"
    listing = await x.request(ListSpheres(discover=True, ref="l"))
    assert isinstance(listing, SphereList) and listing.spheres == []
    # The outsider's connection saw nothing of the owner's activity.
    await o.request(Publish(sphere_id=private_id, message_id="m1", body="hush", ref="p"))
    await o.send(Typing(sphere_id=private_id))
    with pytest.raises(TimeoutError):
        await x.recv(timeout_s=0.5)


async def test_open_sphere_is_listed_and_joinable(server: ServerProcess) -> None:
    owner = await server.new_user("owner")
    visitor = await server.new_user("visitor")
    sphere_id = await owner.create_sphere("lobby", privacy="open")
    v = await visitor.connect()
    listing = await v.request(ListSpheres(discover=True, ref="l"))
    assert [s.sphere_id for s in listing.spheres] == [sphere_id]
    assert listing.spheres[0].role is None
    refused = await v.request(Subscribe(sphere_id=sphere_id, ref="s"))
    assert isinstance(refused, ErrorReply) and refused.code == "forbidden"
    joined = await v.request(Join(sphere_id=sphere_id, ref="j"))
    assert joined.sphere.role == "member"
    assert isinstance(await v.request(Subscribe(sphere_id=sphere_id, ref="s2")), Subscribed)


async def test_public_sphere_is_readable_but_not_writable_by_non_members(
    server: ServerProcess,
) -> None:
    owner = await server.new_user("owner")
    reader = await server.new_user("reader")
    sphere_id = await owner.create_sphere("news", privacy="public")
    o, r = await owner.connect(), await reader.connect()
    assert isinstance(await r.request(Subscribe(sphere_id=sphere_id, ref="s")), Subscribed)
    await o.request(Publish(sphere_id=sphere_id, message_id="m1", body="news", ref="p"))
    assert (await r.expect(Message)).body == "news"
    refused = await r.request(Publish(sphere_id=sphere_id, message_id="m2", body="me", ref="p2"))
    assert isinstance(refused, ErrorReply) and refused.code == "forbidden"
    # Closing the sphere cuts its non-member readers off at once.
    await o.request(UpdateSphere(sphere_id=sphere_id, privacy="private", ref="u"))
    cut = await r.expect(Unsubscribed)
    assert cut.reason == "access_revoked"
    change = await r.expect(Message)  # the change itself came first, in stream order
    assert (change.kind, change.privacy, change.author_id) == ("sphere", "private", owner.user_id)
    await o.request(Publish(sphere_id=sphere_id, message_id="m3", body="private now", ref="p3"))
    with pytest.raises(TimeoutError):
        await r.expect(Message, timeout_s=0.5)
    again = await r.request(Subscribe(sphere_id=sphere_id, ref="s3"))
    assert isinstance(again, ErrorReply) and again.code == "not_found"


async def test_removed_member_stops_receiving_at_once(server: ServerProcess) -> None:
    owner = await server.new_user("owner")
    member = await server.new_user("member")
    sphere_id = await owner.create_sphere()
    await owner.add(sphere_id, member)
    o, m = await owner.connect(), await member.connect()
    await m.request(Subscribe(sphere_id=sphere_id, ref="s"))
    reply = await owner.api("DELETE", f"/spheres/{sphere_id}/members/{member.user_id}")
    assert reply.status_code == 200, reply.text
    assert (await m.expect(Unsubscribed)).reason == "access_revoked"
    removal = await m.expect(Message)  # the removal itself came first, in stream order
    assert (removal.kind, removal.member_id, removal.role) == ("member", member.user_id, None)
    assert removal.action == "removed"
    await o.request(Publish(sphere_id=sphere_id, message_id="after", body="bye", ref="p"))
    with pytest.raises(TimeoutError):
        await m.expect(Message, timeout_s=0.5)
    refused = await m.request(Publish(sphere_id=sphere_id, message_id="x", body="x", ref="x"))
    assert isinstance(refused, ErrorReply) and refused.code == "not_found"


async def test_roles_are_enforced(server: ServerProcess) -> None:
    owner = await server.new_user("owner")
    admin = await server.new_user("admin")
    member = await server.new_user("member")
    sphere_id = await owner.create_sphere()
    await owner.add(sphere_id, admin, role="admin")
    await owner.add(sphere_id, member)
    m = await member.connect()
    reply = await m.request(AddMember(sphere_id=sphere_id, user_id=owner.user_id, ref="a"))
    assert isinstance(reply, ErrorReply) and reply.code == "forbidden"
    ad = await admin.connect()
    reply = await ad.request(
        AddMember(sphere_id=sphere_id, user_id=member.user_id, role="owner", ref="b")
    )
    assert isinstance(reply, ErrorReply) and reply.code == "forbidden"
    reply = await admin.api("DELETE", f"/spheres/{sphere_id}/members/{owner.user_id}")
    assert reply.status_code == 403
    reply = await owner.api("POST", f"/spheres/{sphere_id}/leave")
    assert reply.status_code == 409 and reply.json()["code"] == "conflict"
    reply = await member.api("POST", f"/spheres/{sphere_id}/leave")
    assert reply.status_code == 200
    assert isinstance(await ad.request(ListMembers(sphere_id=sphere_id, ref="c")), object)


async def test_http_api_follows_the_same_rules(server: ServerProcess) -> None:
    owner = await server.new_user("owner")
    bot = await server.new_user("bot", bot=True)
    sphere_id = await owner.create_sphere()
    await owner.add(sphere_id, bot)
    posted = await bot.api(
        "POST", f"/spheres/{sphere_id}/messages", json={"message_id": "b1", "body": "beep"}
    )
    # Offsets 1 and 2: the owner's creation of the sphere and the bot's addition.
    assert posted.status_code == 201 and posted.json()["offset"] == 3
    again = await bot.api(
        "POST", f"/spheres/{sphere_id}/messages", json={"message_id": "b1", "body": "beep"}
    )
    assert again.status_code == 200 and again.json()["duplicate"] is True
    page = await owner.api("GET", f"/spheres/{sphere_id}/messages", params={"limit": 10})
    assert [(m["kind"], m.get("body")) for m in page.json()["messages"]] == [
        ("member", None),
        ("member", None),
        ("post", "beep"),
    ]
    bad = await bot.api("POST", f"/spheres/{sphere_id}/messages", json={"body": "no key"})
    assert bad.status_code == 400 and bad.json()["code"] == "bad_frame"
    anonymous = await server.http().__aenter__()
    try:
        reply = await anonymous.get(f"/api/v1/spheres/{sphere_id}/messages")
        assert reply.status_code == 401 and reply.json()["code"] == "unauthorized"
        reply = await anonymous.post(
            f"/api/v1/spheres/{sphere_id}/messages", json={"message_id": "a", "body": "x"}
        )
        assert reply.status_code == 401
    finally:
        await anonymous.aclose()
    not_admin = await owner.api("POST", "/admin/users", json={"name": "x"})
    assert not_admin.status_code == 403


async def test_typing_and_presence_stay_inside(server: ServerProcess) -> None:
    owner = await server.new_user("owner")
    member = await server.new_user("member")
    outsider = await server.new_user("outsider")
    sphere_id = await owner.create_sphere()
    await owner.add(sphere_id, member)
    x = await outsider.connect()
    o, m = await owner.connect(), await member.connect()
    await o.request(Subscribe(sphere_id=sphere_id, ref="s"))
    await m.request(Subscribe(sphere_id=sphere_id, ref="s"))
    await m.send(Typing(sphere_id=sphere_id))
    await asyncio.sleep(0.2)
    reply = await x.request(Typing(sphere_id=sphere_id, ref="t"))
    assert isinstance(reply, ErrorReply) and reply.code == "not_found"
    with pytest.raises(TimeoutError):
        await x.recv(timeout_s=0.5)
    ok = await m.request(Typing(sphere_id=sphere_id, ref="t2"))
    assert isinstance(ok, Ok)
