"""Sphere types and their settings: listing, join policies, restricted spheres where staff post
and the member list stays hidden, and visitors who never learn it either."""

from __future__ import annotations

import asyncio

import pytest

from protocol import (
    Ack,
    CreateSphere,
    ErrorReply,
    History,
    HistoryPage,
    Join,
    ListMembers,
    ListSpheres,
    Message,
    Presence,
    Publish,
    SphereInfo,
    SphereList,
    Subscribe,
    Subscribed,
    Typing,
    UpdateSphere,
    UserTyping,
)
from tests.support import Client, ServerProcess

QUIET_S = 0.5  # how long "nothing arrives" is watched for


async def subscribed(client: Client, sphere_id: str) -> Subscribed:
    reply = await client.request(Subscribe(sphere_id=sphere_id, ref=client.ref()))
    assert isinstance(reply, Subscribed), reply
    return reply


async def test_settings_default_by_type_and_sealed_types_refuse_listing(
    server: ServerProcess,
) -> None:
    owner = await server.new_user("owner")
    o = await owner.connect()
    expected = {
        "private": (False, "invitation"),
        "restricted": (False, "invitation"),
        "open": (True, "free"),
        "public": (True, "free"),
    }
    for privacy, (listed, policy) in expected.items():
        made = await o.request(CreateSphere(name=privacy, privacy=privacy, ref=o.ref()))
        assert isinstance(made, SphereInfo), made
        summary = made.sphere
        assert (summary.listed, summary.join_policy, summary.history) == (
            listed,
            policy,
            "since_joining",
        )
        assert (summary.role, summary.history_from, summary.charter_accepted) == ("owner", 0, 0)
    for privacy in ("private", "restricted"):
        for extra in ({"listed": True}, {"join_policy": "free"}):
            reply = await owner.api(
                "POST", "/spheres", json={"name": "x", "privacy": privacy, **extra}
            )
            assert reply.status_code == 400 and reply.json()["code"] == "bad_frame", reply.text
    sealed = await owner.create_sphere("sealed")
    refused = await o.request(UpdateSphere(sphere_id=sealed, listed=True, ref="u"))
    assert isinstance(refused, ErrorReply) and refused.code == "conflict"


async def test_unlisted_spheres_are_reachable_by_id_only(server: ServerProcess) -> None:
    owner, user = await server.new_user("owner"), await server.new_user("user")
    listed = await owner.create_sphere("listed", privacy="open")
    made = await owner.api(
        "POST", "/spheres", json={"name": "hidden", "privacy": "public", "listed": False}
    )
    hidden = made.json()["sphere"]["sphere_id"]
    u = await user.connect()
    found = await u.request(ListSpheres(discover=True, ref="d"))
    assert isinstance(found, SphereList)
    assert [s.sphere_id for s in found.spheres] == [listed]
    await subscribed(u, hidden)  # public, unlisted: readable by whoever knows it
    joined = await u.request(Join(sphere_id=hidden, ref="j"))
    assert isinstance(joined, SphereInfo) and joined.sphere.role == "member"


async def test_approval_spheres_are_entered_on_request(server: ServerProcess) -> None:
    owner, user = await server.new_user("owner"), await server.new_user("user")
    made = await owner.api(
        "POST", "/spheres", json={"name": "club", "privacy": "open", "join_policy": "approval"}
    )
    sphere_id = made.json()["sphere"]["sphere_id"]
    u = await user.connect()
    refused = await u.request(Join(sphere_id=sphere_id, ref="j"))
    assert isinstance(refused, ErrorReply) and refused.code == "forbidden"
    assert "request_join" in refused.message
    by_http = await user.api("POST", f"/spheres/{sphere_id}/join")
    assert by_http.status_code == 403
    # Made free to join, it opens; made restricted, it is sealed again.
    opened = await owner.api("PATCH", f"/spheres/{sphere_id}", json={"join_policy": "free"})
    assert opened.status_code == 200 and opened.json()["sphere"]["join_policy"] == "free"
    assert isinstance(await u.request(Join(sphere_id=sphere_id, ref="j2")), SphereInfo)
    sealed = await owner.api("PATCH", f"/spheres/{sphere_id}", json={"privacy": "restricted"})
    body = sealed.json()["sphere"]
    assert (body["privacy"], body["listed"], body["join_policy"]) == (
        "restricted",
        False,
        "invitation",
    )


async def test_every_setting_change_is_a_sphere_event_with_all_settings(
    server: ServerProcess,
) -> None:
    owner, member = await server.new_user("owner"), await server.new_user("member")
    sphere_id = await owner.create_sphere("lobby", privacy="open")
    await owner.add(sphere_id, member)
    m = await member.connect()
    await subscribed(m, sphere_id)
    renamed = await owner.api("PATCH", f"/spheres/{sphere_id}", json={"name": "Hall"})
    assert renamed.status_code == 200
    event = await m.expect(Message, name="Hall")
    assert (event.name, event.privacy, event.listed, event.join_policy) == (
        "Hall",
        "open",
        True,
        "free",
    )
    assert (event.history, event.charter_version, event.author_id) == (
        "since_joining",
        0,
        owner.user_id,
    )
    unlisted = await owner.api("PATCH", f"/spheres/{sphere_id}", json={"listed": False})
    assert unlisted.status_code == 200
    assert (await m.expect(Message, listed=False)).kind == "sphere"
    same = await owner.api("PATCH", f"/spheres/{sphere_id}", json={"listed": False})
    assert same.status_code == 200
    with pytest.raises(TimeoutError):
        await m.expect(Message, timeout_s=QUIET_S)  # nothing changed: no event
    audit = await owner.api("GET", f"/spheres/{sphere_id}/audit")
    actions = [(e["action"], e["detail"]) for e in audit.json()["entries"]]
    assert ("settings_changed", "name") in actions
    assert ("settings_changed", "listed=false") in actions
    assert actions[-1][0] == "sphere_created"


async def test_restricted_spheres_staff_post_members_read(server: ServerProcess) -> None:
    owner, publisher, member = (
        await server.new_user("owner"),
        await server.new_user("publisher"),
        await server.new_user("member"),
    )
    sphere_id = await owner.create_sphere("news", privacy="restricted")
    await owner.add(sphere_id, publisher, role="publisher")
    await owner.add(sphere_id, member)
    p, m = await publisher.connect(), await member.connect()
    await subscribed(m, sphere_id)
    ack = await p.request(Publish(sphere_id=sphere_id, message_id="n1", body="news", ref="p"))
    assert isinstance(ack, Ack)
    assert (await m.expect(Message, offset=ack.offset)).body == "news"
    refused = await m.request(Publish(sphere_id=sphere_id, message_id="x", body="me", ref="x"))
    assert isinstance(refused, ErrorReply) and refused.code == "forbidden"
    by_http = await member.api(
        "POST", f"/spheres/{sphere_id}/messages", json={"message_id": "h", "body": "me"}
    )
    assert by_http.status_code == 403
    # Invisible to outsiders, like a private sphere.
    outsider = await server.new_user("outsider")
    hidden = await outsider.api("GET", f"/spheres/{sphere_id}/messages")
    assert hidden.status_code == 404


async def test_restricted_member_lists_stay_hidden_from_members(server: ServerProcess) -> None:
    owner, member, other = (
        await server.new_user("owner"),
        await server.new_user("member"),
        await server.new_user("other"),
    )
    sphere_id = await owner.create_sphere("news", privacy="restricted")
    o = await owner.connect()
    await subscribed(o, sphere_id)
    await owner.add(sphere_id, member)  # 2
    m = await member.connect()
    first = await subscribed(m, sphere_id)
    assert first.online == [member.user_id] or first.online == []  # never the owner
    await owner.add(sphere_id, other)  # 3: another member's event
    x = await other.connect()
    await subscribed(x, sphere_id)
    await x.send(Typing(sphere_id=sphere_id))
    await o.request(Publish(sphere_id=sphere_id, message_id="n", body="news", ref="p"))  # 4
    assert (await m.expect(Message, offset=4)).body == "news"
    assert (await o.expect(UserTyping)).user_id == other.user_id  # staff see who types
    assert (await o.expect(Presence, user_id=other.user_id)).online
    await asyncio.sleep(QUIET_S)
    leaks = [
        f
        for f in m.inbox
        if (isinstance(f, Message) and f.kind == "member" and f.member_id != member.user_id)
        or (isinstance(f, (Presence, UserTyping)) and f.user_id != member.user_id)
    ]
    assert leaks == []
    page = await m.request(History(sphere_id=sphere_id, after=0, ref="h"))
    assert isinstance(page, HistoryPage)
    assert [(e.offset, e.kind) for e in page.messages] == [(2, "member"), (4, "post")]
    by_http = await member.api("GET", f"/spheres/{sphere_id}/messages")
    assert [e["offset"] for e in by_http.json()["messages"]] == [2, 4]
    refused = await m.request(ListMembers(sphere_id=sphere_id, ref="l"))
    assert isinstance(refused, ErrorReply) and refused.code == "forbidden"
    assert (await member.api("GET", f"/spheres/{sphere_id}/members")).status_code == 403
    # The owner sees everyone, on every path.
    staff_page = await owner.api("GET", f"/spheres/{sphere_id}/messages")
    assert [e["offset"] for e in staff_page.json()["messages"]] == [1, 2, 3, 4]


async def test_visitors_never_learn_the_member_list(server: ServerProcess) -> None:
    owner, member, visitor = (
        await server.new_user("owner"),
        await server.new_user("member"),
        await server.new_user("visitor"),
    )
    sphere_id = await owner.create_sphere("project")
    await owner.add(sphere_id, visitor, role="visitor")  # 2
    v = await visitor.connect()
    await subscribed(v, sphere_id)
    await owner.add(sphere_id, member)  # 3
    m = await member.connect()
    await subscribed(m, sphere_id)
    ack = await v.request(Publish(sphere_id=sphere_id, message_id="v1", body="hi", ref="p"))
    assert isinstance(ack, Ack)  # visitors post
    await m.send(Typing(sphere_id=sphere_id))
    assert (await m.expect(Message, offset=ack.offset)).body == "hi"
    await v.expect(Message, offset=ack.offset)
    await asyncio.sleep(QUIET_S)
    assert not [
        f
        for f in v.inbox
        if (isinstance(f, Message) and f.kind == "member" and f.member_id != visitor.user_id)
        or (isinstance(f, (Presence, UserTyping)) and f.user_id != visitor.user_id)
    ]
    resumed = await v.request(History(sphere_id=sphere_id, after=0, ref="h"))
    assert isinstance(resumed, HistoryPage)
    assert [e.offset for e in resumed.messages] == [2, ack.offset]
    assert (await visitor.api("GET", f"/spheres/{sphere_id}/members")).status_code == 403
