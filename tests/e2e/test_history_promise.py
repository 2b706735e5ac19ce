"""The history promise on every path: a newcomer never reads what was sequenced before they
joined (unless the sphere shows its whole history), live, in history, on resume, over HTTP,
through edits and deletes of older posts, and across type changes."""

from __future__ import annotations

from pathlib import Path

import pytest

from protocol import (
    Ack,
    Delete,
    Edit,
    ErrorReply,
    History,
    HistoryPage,
    ListSpheres,
    Message,
    Publish,
    Replayed,
    SphereInfo,
    SphereList,
    StreamPosition,
    Subscribe,
    Subscribed,
    UpdateSphere,
)
from tests.e2e.test_cluster import connect, gateways
from tests.services import own_redis
from tests.support import Client, ServerProcess, User

QUIET_S = 0.5  # how long "nothing arrives" is watched for


async def post(client: Client, sphere_id: str, body: str) -> int:
    ack = await client.request(
        Publish(sphere_id=sphere_id, message_id=body, body=body, ref=client.ref())
    )
    assert isinstance(ack, Ack), ack
    return ack.offset


async def offsets_by_http(user: User, sphere_id: str, **params: int) -> list[int]:
    reply = await user.api("GET", f"/spheres/{sphere_id}/messages", params=params)
    assert reply.status_code == 200, reply.text
    return [m["offset"] for m in reply.json()["messages"]]


async def offsets_by_ws(client: Client, sphere_id: str, **bounds: int) -> list[int]:
    page = await client.request(History(sphere_id=sphere_id, ref=client.ref(), **bounds))
    assert isinstance(page, HistoryPage), page
    return [m.offset for m in page.messages]


async def replay(client: Client, sphere_id: str, epoch: str, since: int) -> list[Message]:
    """Subscribe with ``since`` and collect the replay up to ``replayed``."""
    ref = client.ref()
    reply = await client.request(
        Subscribe(sphere_id=sphere_id, since=StreamPosition(since, epoch), ref=ref)
    )
    assert isinstance(reply, Subscribed), reply
    events: list[Message] = []
    while True:
        frame = await client.recv()
        if isinstance(frame, Replayed):
            return events
        if isinstance(frame, Message):
            events.append(frame)


async def epoch_of(user: User, sphere_id: str) -> str:
    reply = await user.api("GET", "/spheres")
    return next(s["epoch"] for s in reply.json()["spheres"] if s["sphere_id"] == sphere_id)


async def test_edits_and_deletes_of_older_posts_never_reach_a_newcomer(
    server: ServerProcess,
) -> None:
    alice, bob = await server.new_user("alice"), await server.new_user("bob")
    sphere_id = await alice.create_sphere("team")
    a = await alice.connect()
    old = await post(a, sphere_id, "before bob")  # 2
    await alice.add(sphere_id, bob, role="admin")  # 3
    b = await bob.connect()
    assert isinstance(await b.request(Subscribe(sphere_id=sphere_id, ref="s")), Subscribed)
    edited = await a.request(
        Edit(sphere_id=sphere_id, message_id="e", target=old, body="still hidden", ref="e")
    )
    assert isinstance(edited, Ack) and edited.offset == 4
    deleted = await a.request(Delete(sphere_id=sphere_id, message_id="d", target=old, ref="d"))
    assert isinstance(deleted, Ack) and deleted.offset == 5
    after = await post(a, sphere_id, "after bob")  # 6

    # Live: only what follows the joining.
    live = await b.expect(Message, offset=after)
    assert live.body == "after bob"
    assert not [f for f in b.inbox if isinstance(f, Message) and f.offset in (old, 4, 5)]
    # History, both directions, both protocols.
    assert await offsets_by_ws(b, sphere_id) == [3, 6]
    assert await offsets_by_ws(b, sphere_id, after=0) == [3, 6]
    assert await offsets_by_ws(b, sphere_id, before=3) == []
    assert await offsets_by_http(bob, sphere_id) == [3, 6]
    assert await offsets_by_http(bob, sphere_id, after=0, limit=10) == [3, 6]
    assert await offsets_by_http(alice, sphere_id) == [1, 2, 3, 6]
    # Resume from before the joining: the replay starts at it.
    resumed = await replay(b, sphere_id, await epoch_of(bob, sphere_id), 0)
    assert [e.offset for e in resumed] == [3, 6]
    # The older post is not there for Bob to change, though he may delete others' posts.
    for frame in (
        Delete(sphere_id=sphere_id, message_id="bd", target=old, ref="bd"),
        Edit(sphere_id=sphere_id, message_id="be", target=old, body="x", ref="be"),
    ):
        refused = await b.request(frame)
        assert isinstance(refused, ErrorReply) and refused.code == "not_found", refused
    gone = await bob.api("DELETE", f"/spheres/{sphere_id}/messages/{old}", json={"message_id": "h"})
    assert gone.status_code == 404 and gone.json()["code"] == "not_found"


async def test_live_changes_of_older_posts_are_withheld_per_recipient(
    server: ServerProcess,
) -> None:
    alice, bob, carol = [await server.new_user(n) for n in ("alice", "bob", "carol")]
    sphere_id = await alice.create_sphere("team")
    a = await alice.connect()
    await alice.add(sphere_id, bob)  # 2
    first = await post(a, sphere_id, "bob sees this")  # 3
    await alice.add(sphere_id, carol)  # 4
    b, c = await bob.connect(), await carol.connect()
    for client in (b, c):
        assert isinstance(await client.request(Subscribe(sphere_id=sphere_id, ref="s")), Subscribed)
    await a.request(
        Edit(sphere_id=sphere_id, message_id="e", target=first, body="edited", ref="e")
    )  # 5
    marker = await post(a, sphere_id, "both see this")  # 6
    assert (await b.expect(Message, offset=5)).body == "edited"
    await b.expect(Message, offset=marker)
    await c.expect(Message, offset=marker)
    assert not [f for f in c.inbox if isinstance(f, Message) and f.offset == 5]
    assert await offsets_by_ws(c, sphere_id) == [4, 6]
    assert await offsets_by_ws(b, sphere_id) == [2, 3, 4, 6]


async def test_full_history_shows_everything_and_unread_counts_follow_the_floor(
    server: ServerProcess,
) -> None:
    alice, bob, carol = [await server.new_user(n) for n in ("alice", "bob", "carol")]
    a = await alice.connect()
    made = await a.request(
        ListSpheres(ref="l")  # nothing yet
    )
    assert isinstance(made, SphereList) and made.spheres == []
    whole = await alice.api("POST", "/spheres", json={"name": "archive", "history": "full"})
    assert whole.status_code == 201 and whole.json()["sphere"]["history"] == "full"
    whole_id = whole.json()["sphere"]["sphere_id"]
    since_id = await alice.create_sphere("fresh")
    for sphere_id in (whole_id, since_id):
        await post(a, sphere_id, f"old-{sphere_id}")  # 2
        await alice.add(sphere_id, bob)  # 3
        await post(a, sphere_id, f"new-{sphere_id}")  # 4
    await alice.add(whole_id, carol)
    assert await offsets_by_http(bob, whole_id) == [1, 2, 3, 4, 5]
    assert await offsets_by_http(bob, since_id) == [3, 4]
    listing = await bob.api("GET", "/spheres")
    by_id = {s["sphere_id"]: s for s in listing.json()["spheres"]}
    assert (by_id[whole_id]["unread"], by_id[whole_id]["history_from"]) == (2, 0)
    assert (by_id[since_id]["unread"], by_id[since_id]["history_from"]) == (1, 3)


async def test_the_history_mode_is_frozen_once_others_join(server: ServerProcess) -> None:
    alice, bob = await server.new_user("alice"), await server.new_user("bob")
    sphere_id = await alice.create_sphere("team")
    a = await alice.connect()
    # Alone, the owner may change it either way.
    widened = await a.request(UpdateSphere(sphere_id=sphere_id, history="full", ref="w"))
    assert isinstance(widened, SphereInfo) and widened.sphere.history == "full"
    narrowed = await alice.api("PATCH", f"/spheres/{sphere_id}", json={"history": "since_joining"})
    assert narrowed.status_code == 200 and narrowed.json()["sphere"]["history"] == "since_joining"
    back = await a.request(UpdateSphere(sphere_id=sphere_id, history="full", ref="w2"))
    assert isinstance(back, SphereInfo) and back.sphere.history == "full"
    await alice.add(sphere_id, bob)
    # Narrowing is always allowed; widening afterwards never.
    assert isinstance(
        await a.request(UpdateSphere(sphere_id=sphere_id, history="since_joining", ref="n")),
        SphereInfo,
    )
    refused = await a.request(UpdateSphere(sphere_id=sphere_id, history="full", ref="w3"))
    assert isinstance(refused, ErrorReply) and refused.code == "conflict"
    by_http = await alice.api("PATCH", f"/spheres/{sphere_id}", json={"history": "full"})
    assert by_http.status_code == 409 and by_http.json()["code"] == "conflict"
    # Only the owner holds it; an admin is refused.
    await alice.api("PUT", f"/spheres/{sphere_id}/members/{bob.user_id}", json={"role": "admin"})
    as_admin = await bob.api("PATCH", f"/spheres/{sphere_id}", json={"history": "since_joining"})
    assert as_admin.status_code == 403
    audit = await alice.api("GET", f"/spheres/{sphere_id}/audit")
    assert [e["detail"] for e in audit.json()["entries"] if e["action"] == "history_changed"] == [
        "since_joining",
        "full",
        "since_joining",
        "full",
    ]


async def test_a_type_change_never_exposes_withheld_history(server: ServerProcess) -> None:
    alice, bob, eve = [await server.new_user(n) for n in ("alice", "bob", "eve")]
    sphere_id = await alice.create_sphere("team")
    a = await alice.connect()
    secret = await post(a, sphere_id, "members only")  # 2
    made_public = await a.request(UpdateSphere(sphere_id=sphere_id, privacy="public", ref="u"))
    assert isinstance(made_public, SphereInfo)  # 3: outsiders read from here
    news = await post(a, sphere_id, "for everyone")  # 4
    # An outsider reads from the change on, on every path.
    assert await offsets_by_http(eve, sphere_id) == [3, news]
    e = await eve.connect()
    assert await offsets_by_ws(e, sphere_id, after=0) == [3, news]
    epoch = await epoch_of(alice, sphere_id)
    assert [m.offset for m in await replay(e, sphere_id, epoch, 0)] == [3, news]
    # A change of the older post does not reach them live.
    await a.request(Edit(sphere_id=sphere_id, message_id="e", target=secret, body="x", ref="e"))
    marker = await post(a, sphere_id, "marker")  # 6
    await e.expect(Message, offset=marker)
    assert not [f for f in e.inbox if isinstance(f, Message) and f.offset == 5]
    # Joining a public sphere shows a newcomer what an outsider sees, no more.
    joined = await bob.api("POST", f"/spheres/{sphere_id}/join")
    assert joined.status_code == 200 and joined.json()["sphere"]["history_from"] == 3
    assert await offsets_by_http(bob, sphere_id) == [3, news, marker, 7]
    # Sealed again, the member reads from their own joining.
    await a.request(UpdateSphere(sphere_id=sphere_id, privacy="private", ref="p"))
    assert await offsets_by_http(bob, sphere_id) == [7, 8]
    gone = await eve.api("GET", f"/spheres/{sphere_id}/messages")
    assert gone.status_code == 404
    with pytest.raises(TimeoutError):
        await e.expect(Message, offset=999, timeout_s=QUIET_S)


async def test_rejoining_resets_the_floor(server: ServerProcess) -> None:
    alice, bob = await server.new_user("alice"), await server.new_user("bob")
    sphere_id = await alice.create_sphere("lobby", privacy="open")
    a = await alice.connect()
    assert (await bob.api("POST", f"/spheres/{sphere_id}/join")).status_code == 200  # 2
    await post(a, sphere_id, "while bob is in")  # 3
    assert (await bob.api("POST", f"/spheres/{sphere_id}/leave")).status_code == 200  # 4
    await post(a, sphere_id, "while bob is out")  # 5
    again = await bob.api("POST", f"/spheres/{sphere_id}/join")  # 6
    assert again.json()["sphere"]["history_from"] == 6
    assert await offsets_by_http(bob, sphere_id) == [6]


@pytest.mark.redis
@pytest.mark.postgres
@pytest.mark.slow
async def test_the_promise_holds_across_gateways(tmp_path: Path) -> None:
    """Frames from another node pass the same per-recipient test as local ones."""
    async with own_redis() as redis, gateways(tmp_path, 2, redis_url=redis.url) as nodes:
        alice, bob = await nodes[0].new_user("alice"), await nodes[0].new_user("bob")
        sphere_id = await alice.create_sphere("team")
        a = await connect(alice, nodes[0])
        old = await post(a, sphere_id, "before bob")  # 2
        await alice.add(sphere_id, bob)  # 3
        b = await connect(bob, nodes[1])
        assert isinstance(await b.request(Subscribe(sphere_id=sphere_id, ref="s")), Subscribed)
        await a.request(Edit(sphere_id=sphere_id, message_id="e", target=old, body="x", ref="e"))
        await a.request(Delete(sphere_id=sphere_id, message_id="d", target=old, ref="d"))
        marker = await post(a, sphere_id, "after bob")  # 6
        await b.expect(Message, offset=marker)
        assert not [f for f in b.inbox if isinstance(f, Message) and f.offset in (4, 5)]
        assert [
            e.offset for e in await replay(b, sphere_id, await epoch_of(bob, sphere_id), 0)
        ] == [
            3,
            marker,
        ]
