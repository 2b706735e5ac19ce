"""Publish, deliver, order, idempotency, history, edits, resume: over real sockets."""

from __future__ import annotations

import asyncio

import pytest

from protocol import (
    Ack,
    Delete,
    Edit,
    ErrorReply,
    History,
    HistoryPage,
    ListSpheres,
    MarkRead,
    Message,
    Presence,
    Publish,
    Replayed,
    SphereList,
    StreamPosition,
    Subscribe,
    Subscribed,
    Typing,
    UserTyping,
)
from tests.support import Client, ServerProcess, User, pair

# A sphere made by ``pair`` holds two events already: its creation and bob's addition.
PAIRED = 2


async def subscribe(
    client: Client, sphere_id: str, since: StreamPosition | None = None
) -> Subscribed:
    reply = await client.request(Subscribe(sphere_id=sphere_id, since=since, ref=client.ref()))
    assert isinstance(reply, Subscribed), reply
    return reply


async def publish(client: Client, sphere_id: str, body: str, message_id: str) -> Ack:
    reply = await client.request(
        Publish(sphere_id=sphere_id, message_id=message_id, body=body, ref=client.ref())
    )
    assert isinstance(reply, Ack), reply
    return reply


async def collect(client: Client, sphere_id: str, count: int) -> list[Message]:
    got: list[Message] = []
    while len(got) < count:
        got.append(await client.expect(Message, sphere_id=sphere_id))
    return got


@pytest.mark.parametrize("encoding", ["json", "msgpack"])
async def test_publish_is_acked_and_delivered_to_members(
    server: ServerProcess, encoding: str
) -> None:
    alice, bob, sphere_id = await pair(server)
    a, b = await alice.connect(encoding), await bob.connect(encoding)
    sub = await subscribe(b, sphere_id)
    assert sub.position.offset == PAIRED
    ack = await publish(a, sphere_id, "hello", "m1")
    assert (ack.offset, ack.duplicate) == (3, False)
    got = await b.expect(Message)
    assert (got.offset, got.body, got.author_id, got.kind) == (3, "hello", alice.user_id, "post")
    assert got.ts_ms == ack.ts_ms
    await a.close()
    await b.close()


async def test_concurrent_publishers_give_one_gapless_order(server: ServerProcess) -> None:
    owner = await server.new_user("owner")
    sphere_id = await owner.create_sphere()
    publishers = [await server.new_user(f"p{i}") for i in range(3)]
    readers = [await server.new_user(f"r{i}") for i in range(2)]
    for user in publishers + readers:
        await owner.add(sphere_id, user)
    reader_clients = [
        await r.connect(enc) for r, enc in zip(readers, ["json", "msgpack"], strict=True)
    ]
    for c in reader_clients:
        base = (await subscribe(c, sphere_id)).position.offset  # 1 + 5 member events
    per_publisher = 60

    async def run(user: User, index: int) -> list[int]:
        client = await user.connect()
        frames = [
            Publish(sphere_id=sphere_id, message_id=f"{index}-{n}", body=f"{index}:{n}", ref=str(n))
            for n in range(per_publisher)
        ]
        for frame in frames:  # pipelined: no wait for acks in between
            await client.send(frame)
        acks = [await client.expect(Ack, ref=str(n)) for n in range(per_publisher)]
        await client.close()
        return [a.offset for a in acks]

    offsets = await asyncio.gather(*(run(u, i) for i, u in enumerate(publishers)))
    total = per_publisher * len(publishers)
    assert sorted(o for per in offsets for o in per) == list(range(base + 1, base + total + 1))
    for per in offsets:  # each sender's writes keep their order
        assert per == sorted(per)
    for client in reader_clients:
        got = await collect(client, sphere_id, total)
        assert [m.offset for m in got] == list(range(base + 1, base + total + 1))
        for index in range(len(publishers)):
            mine = [m.body for m in got if m.body.startswith(f"{index}:")]
            assert mine == [f"{index}:{n}" for n in range(per_publisher)]
        await client.close()


async def test_retried_publish_returns_the_original_ack(server: ServerProcess) -> None:
    alice, bob, sphere_id = await pair(server)
    a, b = await alice.connect(), await bob.connect()
    await subscribe(b, sphere_id)
    first = await publish(a, sphere_id, "once", "key-1")
    again = await publish(a, sphere_id, "once", "key-1")
    assert (again.offset, again.ts_ms, again.duplicate) == (first.offset, first.ts_ms, True)
    after = await publish(a, sphere_id, "next", "key-2")
    assert after.offset == first.offset + 1
    got = await collect(b, sphere_id, 2)
    assert [m.message_id for m in got] == ["key-1", "key-2"]
    # The same key from another author is another message.
    theirs = await publish(b, sphere_id, "mine", "key-1")
    assert not theirs.duplicate and theirs.offset == after.offset + 1


async def test_history_pages_and_shows_edits_and_tombstones(server: ServerProcess) -> None:
    alice, bob, sphere_id = await pair(server)
    a = await alice.connect()
    for n in range(1, 8):  # posts at offsets 3..9
        await publish(a, sphere_id, f"m{n}", f"k{n}")
    edit = await a.request(
        Edit(sphere_id=sphere_id, message_id="e1", target=4, body="m2!", ref="e")
    )
    assert isinstance(edit, Ack) and edit.offset == 10
    gone = await a.request(Delete(sphere_id=sphere_id, message_id="d1", target=5, ref="d"))
    assert isinstance(gone, Ack) and gone.offset == 11

    page = await a.request(History(sphere_id=sphere_id, limit=3, ref="h1"))
    assert isinstance(page, HistoryPage)
    assert [m.offset for m in page.messages] == [7, 8, 9] and page.has_more
    page = await a.request(History(sphere_id=sphere_id, before=7, limit=3, ref="h2"))
    assert [m.offset for m in page.messages] == [4, 5, 6] and page.has_more
    edited, deleted = page.messages[0], page.messages[1]
    assert (edited.body, edited.edited_ms is not None) == ("m2!", True)
    assert (deleted.deleted, deleted.body) == (True, None)
    page = await a.request(History(sphere_id=sphere_id, before=4, limit=3, ref="h3"))
    # The membership events are history too: who created the sphere, who added bob.
    assert [(m.offset, m.kind) for m in page.messages] == [
        (1, "member"),
        (2, "member"),
        (3, "post"),
    ]
    assert not page.has_more
    creation, addition = page.messages[0], page.messages[1]
    assert (creation.member_id, creation.role, creation.action) == (
        alice.user_id,
        "owner",
        "joined",
    )
    assert (addition.author_id, addition.member_id, addition.member_name) == (
        alice.user_id,
        bob.user_id,
        "bob",
    )
    assert (addition.role, addition.action) == ("member", "added")
    page = await a.request(History(sphere_id=sphere_id, after=7, limit=10, ref="h4"))
    assert [m.offset for m in page.messages] == [8, 9] and not page.has_more

    # Only the author or an admin may change a message.
    b = await bob.connect()
    refused = await b.request(
        Edit(sphere_id=sphere_id, message_id="x", target=3, body="no", ref="x")
    )
    assert isinstance(refused, ErrorReply) and refused.code == "forbidden"
    missing = await a.request(
        Edit(sphere_id=sphere_id, message_id="y", target=5, body="no", ref="y")
    )
    assert isinstance(missing, ErrorReply) and missing.code == "not_found"


async def test_edits_and_deletes_are_stream_events(server: ServerProcess) -> None:
    alice, bob, sphere_id = await pair(server)
    a, b = await alice.connect(), await bob.connect()
    await subscribe(b, sphere_id)
    await publish(a, sphere_id, "draft", "k1")
    await a.request(Edit(sphere_id=sphere_id, message_id="k2", target=3, body="final", ref="e"))
    await a.request(Delete(sphere_id=sphere_id, message_id="k3", target=3, ref="d"))
    got = await collect(b, sphere_id, 3)
    assert [(m.offset, m.kind, m.target) for m in got] == [
        (3, "post", None),
        (4, "edit", 3),
        (5, "delete", 3),
    ]
    assert got[1].body == "final"


async def test_resume_replays_exactly_what_was_missed(server: ServerProcess) -> None:
    alice, bob, sphere_id = await pair(server)
    a, b = await alice.connect(), await bob.connect()
    first = await subscribe(b, sphere_id)
    for n in range(5):
        await publish(a, sphere_id, f"m{n}", f"k{n}")
    seen = await collect(b, sphere_id, 5)
    await b.close()
    for n in range(5, 600):  # more than one replay page
        await a.send(Publish(sphere_id=sphere_id, message_id=f"k{n}", body=f"m{n}", ref=f"r{n}"))
    await a.expect(Ack, ref="r599")
    b = await bob.connect("msgpack")
    since = StreamPosition(seen[-1].offset, first.position.epoch)
    await subscribe(b, sphere_id, since)
    live = asyncio.create_task(publish(a, sphere_id, "live", "k-live"))
    got = await collect(b, sphere_id, 596)
    await live
    assert [m.offset for m in got] == list(range(8, 604))
    assert got[-1].body == "live"
    # The end of the replay is marked, before or after the live message.
    replayed = await b.expect(Replayed, sphere_id=sphere_id)
    assert replayed.position.epoch == first.position.epoch
    assert 603 <= replayed.position.offset + 1 <= 604
    with pytest.raises(TimeoutError):
        await b.expect(Message, timeout_s=0.3)


async def test_resume_after_server_restart(tmp_path) -> None:
    from tests.e2e.conftest import start_server

    server = start_server(tmp_path)
    try:
        alice, bob, sphere_id = await pair(server)
        a, b = await alice.connect(), await bob.connect()
        sub = await subscribe(b, sphere_id)
        for n in range(10):
            await publish(a, sphere_id, f"m{n}", f"k{n}")
        seen = await collect(b, sphere_id, 10)
        for n in range(10, 20):
            await publish(a, sphere_id, f"m{n}", f"k{n}")
        await b.close()
        await a.close()
    finally:
        port = server.port
        assert await server.wait_stopped() == 0
    server.extra_args += ["--port", str(port)]
    server.start()
    try:
        b = await bob.connect()
        await subscribe(b, sphere_id, StreamPosition(seen[-1].offset, sub.position.epoch))
        got = await collect(b, sphere_id, 10)
        assert [m.offset for m in got] == list(range(13, 23))
        a = await alice.connect()
        ack = await publish(a, sphere_id, "after", "k-after")
        assert ack.offset == 23
        assert (await b.expect(Message)).offset == 23
    finally:
        server.stop()


async def test_unrecoverable_positions(server: ServerProcess) -> None:
    alice, _, sphere_id = await pair(server)
    a = await alice.connect()
    sub = await subscribe(a, sphere_id)
    for since in (StreamPosition(0, "other-epoch"), StreamPosition(7, sub.position.epoch)):
        reply = await a.request(Subscribe(sphere_id=sphere_id, since=since, ref=a.ref()))
        assert isinstance(reply, ErrorReply) and reply.code == "unrecoverable_position"


async def test_presence_typing_and_read_markers(server: ServerProcess) -> None:
    alice, bob, sphere_id = await pair(server)
    a, b = await alice.connect(), await bob.connect()
    await subscribe(a, sphere_id)
    sub = await subscribe(b, sphere_id)
    assert sub.online == sorted([alice.user_id, bob.user_id])
    assert (await a.expect(Presence, user_id=bob.user_id)).online
    await b.send(Typing(sphere_id=sphere_id))
    typing = await a.expect(UserTyping)
    assert typing.user_id == bob.user_id
    await b.close()
    gone = await a.expect(Presence, online=False)
    assert gone.user_id == bob.user_id

    for n in range(4):
        await publish(a, sphere_id, f"m{n}", f"k{n}")
    b = await bob.connect()
    listing = await b.request(ListSpheres(ref="l1"))
    assert isinstance(listing, SphereList)
    (summary,) = listing.spheres
    assert (summary.unread, summary.read_offset, summary.offset) == (4, 0, 6)
    await b.request(MarkRead(sphere_id=sphere_id, offset=5, ref="m"))
    listing = await b.request(ListSpheres(ref="l2"))
    assert listing.spheres[0].unread == 1
    # Typing is never stored.
    page = await b.request(History(sphere_id=sphere_id, ref="h"))
    # Bob reads from his own joining on (history since joining): the creation is before it.
    assert [m.kind for m in page.messages] == ["member"] + ["post"] * 4


async def test_subscribing_again_keeps_live_delivery(server: ServerProcess) -> None:
    alice, bob, sphere_id = await pair(server)
    a, b = await alice.connect(), await bob.connect()
    await subscribe(b, sphere_id)
    await subscribe(b, sphere_id)
    await asyncio.sleep(0.1)  # let any background broker bookkeeping run
    await publish(a, sphere_id, "still here", "k1")
    assert (await b.expect(Message)).body == "still here"
    with pytest.raises(TimeoutError):
        await a.expect(Presence, timeout_s=0.3, online=False)  # no presence flap either


async def test_retried_delete_returns_the_original_ack(server: ServerProcess) -> None:
    alice, _bob, sphere_id = await pair(server)
    a = await alice.connect()
    await publish(a, sphere_id, "oops", "k1")
    first = await a.request(Delete(sphere_id=sphere_id, message_id="d1", target=3, ref="d"))
    again = await a.request(Delete(sphere_id=sphere_id, message_id="d1", target=3, ref="e"))
    assert isinstance(first, Ack)
    assert isinstance(again, Ack)
    assert (again.offset, again.duplicate) == (first.offset, True)
    other = await a.request(Delete(sphere_id=sphere_id, message_id="d2", target=3, ref="f"))
    assert isinstance(other, ErrorReply)
    assert other.code == "not_found"


async def test_only_authors_edit_and_admins_may_delete(server: ServerProcess) -> None:
    alice, bob, sphere_id = await pair(server)
    b = await bob.connect()
    await publish(b, sphere_id, "bob's", "k1")
    a = await alice.connect()  # alice owns the sphere
    refused = await a.request(
        Edit(sphere_id=sphere_id, message_id="e", target=3, body="x", ref="e")
    )
    assert isinstance(refused, ErrorReply)
    assert refused.code == "forbidden"
    removed = await a.request(Delete(sphere_id=sphere_id, message_id="d", target=3, ref="d"))
    assert isinstance(removed, Ack)


async def test_a_large_history_page_is_trimmed_to_fit(server: ServerProcess) -> None:
    alice, _, sphere_id = await pair(server)
    a = await alice.connect()
    body = "z" * 16_000
    for n in range(80):
        await a.send(Publish(sphere_id=sphere_id, message_id=f"k{n}", body=body, ref=f"r{n}"))
    await a.expect(Ack, ref="r79")
    page = await a.request(History(sphere_id=sphere_id, limit=200, ref="h"))
    assert isinstance(page, HistoryPage)
    assert page.has_more
    assert 10 < len(page.messages) < 80
    assert page.messages[-1].offset == PAIRED + 80  # the newest are kept when paging back
    older = await a.request(History(sphere_id=sphere_id, before=page.messages[0].offset, ref="o"))
    assert older.messages[-1].offset == page.messages[0].offset - 1
