"""Charters: set by publishers, accepted by members before they read, shown again when they
change, over the WebSocket protocol and the HTTP API."""

from __future__ import annotations

from protocol import (
    AcceptCharter,
    CharterInfo,
    ErrorReply,
    GetCharter,
    History,
    HistoryPage,
    Message,
    SetCharter,
    Subscribe,
    Subscribed,
    Unsubscribed,
)
from tests.support import ServerProcess


async def test_members_accept_the_charter_before_reading(server: ServerProcess) -> None:
    owner, publisher, member = (
        await server.new_user("owner"),
        await server.new_user("publisher"),
        await server.new_user("member"),
    )
    sphere_id = await owner.create_sphere("team")
    await owner.add(sphere_id, publisher, role="publisher")
    await owner.add(sphere_id, member)
    p, m = await publisher.connect(), await member.connect()
    for client in (p, m):
        assert isinstance(await client.request(Subscribe(sphere_id=sphere_id, ref="s")), Subscribed)

    refused = await m.request(SetCharter(sphere_id=sphere_id, text="mine", ref="x"))
    assert isinstance(refused, ErrorReply) and refused.code == "forbidden"
    made = await p.request(SetCharter(sphere_id=sphere_id, text="Be kind.", ref="c"))
    assert isinstance(made, CharterInfo)
    assert (made.version, made.text, made.accepted) == (1, "Be kind.", 1)

    # The member receives the change, then loses the subscription; the setter keeps theirs.
    change = await m.expect(Message, charter_version=1)
    assert (change.kind, change.author_id) == ("sphere", publisher.user_id)
    assert (await m.expect(Unsubscribed)).reason == "charter"
    await p.expect(Message, charter_version=1)
    assert not [f for f in p.inbox if isinstance(f, Unsubscribed)]

    # Every read is refused until they accept, on both protocols.
    for frame in (Subscribe(sphere_id=sphere_id, ref="s2"), History(sphere_id=sphere_id, ref="h")):
        reply = await m.request(frame)
        assert isinstance(reply, ErrorReply) and reply.code == "charter_required", reply
    page = await member.api("GET", f"/spheres/{sphere_id}/messages")
    assert page.status_code == 403 and page.json()["code"] == "charter_required"

    shown = await m.request(GetCharter(sphere_id=sphere_id, ref="g"))
    assert isinstance(shown, CharterInfo)
    assert (shown.version, shown.text, shown.accepted) == (1, "Be kind.", 0)
    stale = await m.request(AcceptCharter(sphere_id=sphere_id, version=2, ref="a0"))
    assert isinstance(stale, ErrorReply) and stale.code == "conflict"
    accepted = await member.api("POST", f"/spheres/{sphere_id}/charter/accept", json={"version": 1})
    assert accepted.status_code == 200 and accepted.json()["accepted"] == 1
    assert isinstance(await m.request(Subscribe(sphere_id=sphere_id, ref="s3")), Subscribed)
    assert isinstance(await m.request(History(sphere_id=sphere_id, ref="h2")), HistoryPage)
    listing = await member.api("GET", "/spheres")
    [summary] = listing.json()["spheres"]
    assert (summary["charter_version"], summary["charter_accepted"]) == (1, 1)

    # A new version is shown again.
    await p.request(SetCharter(sphere_id=sphere_id, text="Be kinder.", ref="c2"))
    assert (await m.expect(Unsubscribed)).reason == "charter"
    page = await member.api("GET", f"/spheres/{sphere_id}/messages")
    assert page.json()["code"] == "charter_required"

    # Cleared, it asks nothing of anyone; the version still counts on underneath.
    cleared = await publisher.api("PUT", f"/spheres/{sphere_id}/charter", json={"text": ""})
    assert cleared.status_code == 200
    assert (cleared.json()["version"], cleared.json()["text"]) == (0, "")
    assert (await member.api("GET", f"/spheres/{sphere_id}/messages")).status_code == 200
    none = await m.request(AcceptCharter(sphere_id=sphere_id, version=1, ref="a1"))
    assert isinstance(none, ErrorReply) and none.code == "conflict"
    again = await p.request(SetCharter(sphere_id=sphere_id, text="Third.", ref="c3"))
    assert isinstance(again, CharterInfo) and again.version == 4

    audit = await owner.api("GET", f"/spheres/{sphere_id}/audit")
    details = [e["detail"] for e in audit.json()["entries"] if e["action"] == "charter_changed"]
    assert details == ["4", "0", "2", "1"]


async def test_who_may_read_the_charter(server: ServerProcess) -> None:
    owner, outsider = await server.new_user("owner"), await server.new_user("outsider")
    private_id = await owner.create_sphere("team")
    public_id = await owner.create_sphere("news", privacy="public")
    for sphere_id in (private_id, public_id):
        reply = await owner.api("PUT", f"/spheres/{sphere_id}/charter", json={"text": "Rules."})
        assert reply.status_code == 200, reply.text
    x = await outsider.connect()
    hidden = await x.request(GetCharter(sphere_id=private_id, ref="g1"))
    assert isinstance(hidden, ErrorReply) and hidden.code == "not_found"
    shown = await x.request(GetCharter(sphere_id=public_id, ref="g2"))
    assert isinstance(shown, CharterInfo) and (shown.version, shown.accepted) == (1, None)
    # An outside reader of a public sphere is not a member: nothing to accept, nothing asked.
    assert isinstance(await x.request(Subscribe(sphere_id=public_id, ref="s")), Subscribed)
    refused = await x.request(AcceptCharter(sphere_id=public_id, version=1, ref="a"))
    assert isinstance(refused, ErrorReply) and refused.code == "forbidden"
    # A newcomer accepts before reading: joining ends the outside reader's subscription.
    joined = await outsider.api("POST", f"/spheres/{public_id}/join")
    assert joined.status_code == 200 and joined.json()["sphere"]["charter_accepted"] == 0
    assert (await x.expect(Unsubscribed)).reason == "charter"
    page = await outsider.api("GET", f"/spheres/{public_id}/messages")
    assert page.json()["code"] == "charter_required"
