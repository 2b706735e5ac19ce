"""Conversations and moderation over real sockets and HTTP: replies and threads, reactions,
pins, mentions, reports and the audit of a moderator's deletion, and their live order."""

from __future__ import annotations

import json

import pytest

from protocol import (
    Ack,
    AuditList,
    Delete,
    ErrorReply,
    Frame,
    GetThread,
    History,
    HistoryPage,
    ListAudit,
    ListMentions,
    ListPins,
    ListReports,
    ListThreads,
    MentionList,
    Message,
    Ok,
    Pin,
    Publish,
    React,
    ReactionCount,
    Replayed,
    Report,
    ReportList,
    StreamPosition,
    Subscribe,
    Subscribed,
    ThreadList,
    ThreadPage,
    Unpin,
    Unreact,
)
from tests.support import Client, ServerProcess, pair

# A sphere made by ``pair`` holds two events already: its creation and bob's addition.
PAIRED = 2


async def ack(client: Client, frame: Frame) -> Ack:
    reply = await client.request(frame)
    assert isinstance(reply, Ack), reply
    return reply


async def post(client: Client, sphere_id: str, body: str, reply_to: int | None = None) -> Ack:
    ref = client.ref()
    frame = Publish(
        sphere_id=sphere_id, message_id=f"post-{ref}", body=body, reply_to=reply_to, ref=ref
    )
    return await ack(client, frame)


async def error(client: Client, frame: Frame) -> ErrorReply:
    reply = await client.request(frame)
    assert isinstance(reply, ErrorReply), reply
    return reply


async def audit(client: Client, sphere_id: str) -> list[tuple[str, str | None, int | None]]:
    reply = await client.request(ListAudit(sphere_id=sphere_id, ref=client.ref()))
    assert isinstance(reply, AuditList), reply
    return [(e.action, e.target_id, e.offset) for e in reversed(reply.entries)]


async def test_replies_make_threads_listed_by_their_latest_reply(server: ServerProcess) -> None:
    alice, bob, sphere_id = await pair(server)
    a, b = await alice.connect(), await bob.connect()
    first = await post(a, sphere_id, "first")  # 3
    second = await post(a, sphere_id, "second")  # 4
    await b.request(Subscribe(sphere_id=sphere_id, ref="s"))
    reply = await post(b, sphere_id, "re first", first.offset)  # 5
    live = await b.expect(Message, offset=reply.offset)
    assert (live.reply_to, live.body) == (first.offset, "re first")
    await post(a, sphere_id, "re second", second.offset)  # 6
    # Over HTTP, a reply to the reply joins the same (flat) thread.
    created = await bob.api(
        "POST",
        f"/spheres/{sphere_id}/messages",
        json={"message_id": "h1", "body": "re re", "reply_to": reply.offset},
    )
    assert created.status_code == 201, created.text
    last = created.json()["offset"]

    page = await a.request(GetThread(sphere_id=sphere_id, root=first.offset, ref="t"))
    assert isinstance(page, ThreadPage), page
    assert page.root.offset == first.offset
    assert [(m.offset, m.reply_to) for m in page.replies] == [
        (reply.offset, first.offset),
        (last, reply.offset),
    ]
    paged = await bob.api(
        "GET", f"/spheres/{sphere_id}/messages/{last}/thread", params={"after": reply.offset}
    )
    assert paged.status_code == 200, paged.text
    assert paged.json()["root"]["offset"] == first.offset
    assert [m["offset"] for m in paged.json()["replies"]] == [last]

    threads = await a.request(ListThreads(sphere_id=sphere_id, limit=1, ref="l"))
    assert isinstance(threads, ThreadList), threads
    assert [(t.root.offset, t.replies, t.last_offset) for t in threads.threads] == [
        (first.offset, 2, last)
    ]
    rest = await bob.api(
        "GET", f"/spheres/{sphere_id}/threads", params={"after": threads.next, "limit": 5}
    )
    assert [t["root"]["offset"] for t in rest.json()["threads"]] == [second.offset]
    assert rest.json().get("next") is None
    history = await a.request(History(sphere_id=sphere_id, ref="h"))
    assert isinstance(history, HistoryPage)
    assert {m.offset: m.reply_to for m in history.messages}[last] == reply.offset


async def test_a_reply_needs_a_live_post(server: ServerProcess) -> None:
    alice, _, sphere_id = await pair(server)
    a = await alice.connect()
    gone = await post(a, sphere_id, "soon gone")
    await ack(a, Delete(sphere_id=sphere_id, message_id="d", target=gone.offset, ref="d"))
    for target in (gone.offset, 1, 999):
        refused = await error(
            a,
            Publish(
                sphere_id=sphere_id,
                message_id=f"r{target}",
                body="re",
                reply_to=target,
                ref=a.ref(),
            ),
        )
        assert refused.code == "not_found"
    missing = await a.request(GetThread(sphere_id=sphere_id, root=999, ref="t"))
    assert isinstance(missing, ErrorReply) and missing.code == "not_found"


async def test_members_of_a_restricted_sphere_reply_but_do_not_post(
    server: ServerProcess,
) -> None:
    owner = await server.new_user("owner")
    member = await server.new_user("member")
    sphere_id = await owner.create_sphere("news", privacy="restricted")
    await owner.add(sphere_id, member)
    o, m = await owner.connect(), await member.connect()
    notice = await post(o, sphere_id, "announcement")
    refused = await error(m, Publish(sphere_id=sphere_id, message_id="x", body="me", ref="p"))
    assert refused.code == "forbidden"
    await post(m, sphere_id, "thanks", notice.offset)
    await ack(
        m, React(sphere_id=sphere_id, message_id="r", target=notice.offset, emoji="+1", ref="r")
    )


async def test_reactions_add_and_remove_with_who_reacted(server: ServerProcess) -> None:
    alice, bob, sphere_id = await pair(server)
    a, b = await alice.connect(), await bob.connect("msgpack")
    target = (await post(a, sphere_id, "vote")).offset
    await ack(b, React(sphere_id=sphere_id, message_id="r1", target=target, emoji="+1", ref="1"))
    again = await ack(
        b, React(sphere_id=sphere_id, message_id="r2", target=target, emoji="+1", ref="2")
    )
    assert not again.duplicate  # a new event, which changes nothing
    retry = await ack(
        b, React(sphere_id=sphere_id, message_id="r1", target=target, emoji="+1", ref="3")
    )
    assert retry.duplicate
    over_http = await alice.api(
        "POST",
        f"/spheres/{sphere_id}/messages/{target}/reactions",
        json={"message_id": "r3", "emoji": "+1"},
    )
    assert over_http.status_code == 201, over_http.text
    await ack(a, React(sphere_id=sphere_id, message_id="r4", target=target, emoji="tada", ref="4"))
    page = await b.request(History(sphere_id=sphere_id, ref=b.ref()))
    assert isinstance(page, HistoryPage)
    reactions = {m.offset: m.reactions for m in page.messages}[target]
    assert reactions == [
        ReactionCount("+1", 2, [bob.user_id, alice.user_id]),
        ReactionCount("tada", 1, [alice.user_id]),
    ]
    # Bob joined at offset 2 (the history promise hides offset 1); reactions are not history.
    assert [m.offset for m in page.messages] == [2, target]

    removed = await alice.api(
        "POST",
        f"/spheres/{sphere_id}/messages/{target}/reactions/remove",
        json={"message_id": "u1", "emoji": "+1"},
    )
    assert removed.status_code == 200, removed.text
    await ack(
        b, Unreact(sphere_id=sphere_id, message_id="u2", target=target, emoji="nope", ref="5")
    )
    page = await b.request(History(sphere_id=sphere_id, ref=b.ref()))
    assert isinstance(page, HistoryPage)
    assert {m.offset: m.reactions for m in page.messages}[target] == [
        ReactionCount("+1", 1, [bob.user_id]),
        ReactionCount("tada", 1, [alice.user_id]),
    ]
    bad = await error(
        b, React(sphere_id=sphere_id, message_id="r9", target=target, emoji="a b", ref="6")
    )
    assert bad.code == "bad_frame"
    gone = await error(
        b, React(sphere_id=sphere_id, message_id="r8", target=999, emoji="+1", ref="7")
    )
    assert gone.code == "not_found"
    # Deleting the post clears its reactions.
    await ack(a, Delete(sphere_id=sphere_id, message_id="d", target=target, ref="8"))
    listed = await bob.api("GET", f"/spheres/{sphere_id}/messages")
    tombstone = {m["offset"]: m for m in listed.json()["messages"]}[target]
    assert tombstone["deleted"] and "reactions" not in tombstone


async def test_pins_need_a_publisher_and_are_audited(server: ServerProcess) -> None:
    alice, bob, sphere_id = await pair(server)
    a, b = await alice.connect(), await bob.connect()
    one = (await post(b, sphere_id, "one")).offset
    two = (await post(a, sphere_id, "two")).offset
    refused = await error(b, Pin(sphere_id=sphere_id, message_id="p0", target=one, ref="0"))
    assert refused.code == "forbidden"
    await ack(a, Pin(sphere_id=sphere_id, message_id="p1", target=two, ref="1"))
    pinned = await alice.api(
        "POST", f"/spheres/{sphere_id}/messages/{one}/pin", json={"message_id": "p2"}
    )
    assert pinned.status_code == 200, pinned.text
    pins = await b.request(ListPins(sphere_id=sphere_id, ref="l"))
    assert isinstance(pins, HistoryPage), pins
    assert [(m.offset, m.pinned) for m in pins.messages] == [(one, True), (two, True)]
    await ack(a, Unpin(sphere_id=sphere_id, message_id="p3", target=two, ref="3"))
    listed = await bob.api("GET", f"/spheres/{sphere_id}/pins")
    assert [m["offset"] for m in listed.json()["messages"]] == [one]
    unpinned = await alice.api(
        "POST", f"/spheres/{sphere_id}/messages/{one}/unpin", json={"message_id": "p4"}
    )
    assert unpinned.status_code == 200
    assert await audit(a, sphere_id) == [
        ("sphere_created", None, None),
        ("member_added", bob.user_id, None),
        ("message_pinned", alice.user_id, two),
        ("message_pinned", bob.user_id, one),
        ("message_unpinned", alice.user_id, two),
        ("message_unpinned", bob.user_id, one),
    ]


async def test_mentions_are_the_servers_and_only_where_the_reader_may_read(
    server: ServerProcess,
) -> None:
    alice, bob, sphere_id = await pair(server)
    carol = await server.new_user("carol")  # not a member
    a, b, c = await alice.connect(), await bob.connect(), await carol.connect()
    other = await alice.create_sphere("other")
    await alice.add(other, bob)
    body = f"<@{bob.user_id}> and <@{carol.user_id}>, see this"
    first = await post(a, sphere_id, body)
    second = await post(a, other, f"<@{bob.user_id}> again")
    await post(a, sphere_id, "nobody")
    # A client cannot claim mentions: the field is the server's.
    raw = {
        "type": "publish",
        "sphere_id": sphere_id,
        "message_id": "claim",
        "body": "hi",
        "mentions": [carol.user_id],
        "ref": "claim",
    }
    await a.send_raw(json.dumps(raw))
    claimed = await a.expect(ErrorReply, ref="claim")
    assert claimed.code == "bad_frame"

    mine = await b.request(ListMentions(limit=1, ref="m"))
    assert isinstance(mine, MentionList), mine
    assert [(m.sphere_id, m.offset) for m in mine.messages] == [(other, second.offset)]
    assert mine.messages[0].mentions == [bob.user_id]
    rest = await bob.api("GET", "/mentions", params={"after": mine.next})
    assert rest.status_code == 200, rest.text
    assert [(m["sphere_id"], m["offset"]) for m in rest.json()["messages"]] == [
        (sphere_id, first.offset)
    ]
    assert rest.json()["messages"][0]["mentions"] == [bob.user_id]
    none = await c.request(ListMentions(ref="c"))
    assert isinstance(none, MentionList) and none.messages == []
    # Removed from a sphere, bob no longer finds its mentions; a deleted post neither.
    removed = await alice.api("DELETE", f"/spheres/{other}/members/{bob.user_id}")
    assert removed.status_code == 200
    await ack(a, Delete(sphere_id=sphere_id, message_id="d", target=first.offset, ref="d"))
    after = await b.request(ListMentions(ref="m2"))
    assert isinstance(after, MentionList) and after.messages == []


async def test_reports_reach_administrators_and_the_audit_log(server: ServerProcess) -> None:
    alice, bob, sphere_id = await pair(server)
    a, b = await alice.connect(), await bob.connect()
    secret = "a body the audit must never show"
    target = (await post(a, sphere_id, secret)).offset
    made = await b.request(
        Report(sphere_id=sphere_id, target=target, reason="abusive", comment="rude", ref="r")
    )
    assert isinstance(made, Ok), made
    again = await bob.api(
        "POST", f"/spheres/{sphere_id}/messages/{target}/reports", json={"reason": "spam"}
    )
    assert again.status_code == 201, again.text  # one report per post and reporter: the first
    forbidden = await error(b, ListReports(sphere_id=sphere_id, ref="l"))
    assert forbidden.code == "forbidden"
    reports = await a.request(ListReports(sphere_id=sphere_id, ref="l"))
    assert isinstance(reports, ReportList), reports
    assert [(r.target, r.reporter_id, r.reason, r.comment) for r in reports.reports] == [
        (target, bob.user_id, "abusive", "rude")
    ]
    listed = await alice.api("GET", f"/spheres/{sphere_id}/reports")
    assert [r["report_id"] for r in listed.json()["reports"]] == [reports.reports[0].report_id]
    log = await alice.api("GET", f"/spheres/{sphere_id}/audit")
    assert secret not in log.text
    entries = [e for e in log.json()["entries"] if e["action"] == "post_reported"]
    assert [(e["actor_id"], e["target_id"], e["offset"], e["detail"]) for e in entries] == [
        (bob.user_id, alice.user_id, target, "abusive")
    ]
    gone = await error(b, Report(sphere_id=sphere_id, target=999, ref="g"))
    assert gone.code == "not_found"
    too_long = await bob.api(
        "POST",
        f"/spheres/{sphere_id}/messages/{target}/reports",
        json={"reason": "other", "comment": "x" * 501},
    )
    assert too_long.status_code == 400


async def test_a_moderators_deletion_is_audited(server: ServerProcess) -> None:
    alice, bob, sphere_id = await pair(server)
    a, b = await alice.connect(), await bob.connect()
    own = (await post(a, sphere_id, "mine")).offset
    theirs = (await post(b, sphere_id, "theirs")).offset
    await ack(a, Delete(sphere_id=sphere_id, message_id="d1", target=own, ref="1"))
    deleted = await alice.api(
        "DELETE", f"/spheres/{sphere_id}/messages/{theirs}", json={"message_id": "d2"}
    )
    assert deleted.status_code == 200, deleted.text
    assert await audit(a, sphere_id) == [
        ("sphere_created", None, None),
        ("member_added", bob.user_id, None),
        ("message_deleted", bob.user_id, theirs),
    ]


async def test_conversation_events_arrive_in_order_and_replay_like_posts(
    server: ServerProcess,
) -> None:
    alice, bob, sphere_id = await pair(server)
    a, b = await alice.connect(), await bob.connect()
    sub = await b.request(Subscribe(sphere_id=sphere_id, ref="s"))
    assert isinstance(sub, Subscribed) and sub.position.offset == PAIRED
    root = (await post(a, sphere_id, "root")).offset
    sent = [
        Publish(sphere_id=sphere_id, message_id="k1", body="re", reply_to=root, ref="1"),
        React(sphere_id=sphere_id, message_id="k2", target=root, emoji="+1", ref="2"),
        Pin(sphere_id=sphere_id, message_id="k3", target=root, ref="3"),
        Unreact(sphere_id=sphere_id, message_id="k4", target=root, emoji="+1", ref="4"),
        Unpin(sphere_id=sphere_id, message_id="k5", target=root, ref="5"),
    ]
    for frame in sent:  # pipelined: sequenced in send order
        await a.send(frame)
    acks = [await a.expect(Ack, ref=str(n)) for n in range(1, 6)]
    assert [x.offset for x in acks] == list(range(root + 1, root + 6))
    expected = [("post", None, None), ("post", None, root)] + [
        (kind, root, None) for kind in ("react", "pin", "unreact", "unpin")
    ]
    live = [await b.expect(Message) for _ in range(6)]
    assert [(m.kind, m.target, m.reply_to) for m in live] == expected
    assert [m.offset for m in live] == list(range(root, root + 6))
    assert live[2].emoji == "+1"
    await b.close()

    # A subscriber that saw only the root replays the rest, in the same order.
    again = await bob.connect("msgpack")
    since = StreamPosition(root, sub.position.epoch)
    resumed = await again.request(Subscribe(sphere_id=sphere_id, since=since, ref="r"))
    assert isinstance(resumed, Subscribed), resumed
    replay = [await again.expect(Message) for _ in range(5)]
    assert [(m.kind, m.target, m.reply_to) for m in replay] == expected[1:]
    assert [m.offset for m in replay] == list(range(root + 1, root + 6))
    await again.expect(Replayed, sphere_id=sphere_id)
    with pytest.raises(TimeoutError):
        await again.expect(Message, timeout_s=0.3)
