"""Replies are sized in the bytes they take on the wire, in the reader's encoding."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from protocol import (
    MAX_SERVER_FRAME_BYTES,
    Ack,
    ErrorReply,
    History,
    HistoryPage,
    ListMembers,
    ListSpheres,
    MemberList,
    Publish,
    SphereId,
    SphereList,
)
from tests.e2e.conftest import start_server
from tests.support import TIMEOUT_S, Client, ServerProcess, User

# Why: the default --max-message-bytes; a body of control characters is six times that in JSON.
BODY_BYTES = 16 * 1024
POSTS = 24  # ~400 KiB stored, ~2.3 MiB as JSON: far past one frame unless pages count bytes


async def post_control_characters(user: User, sphere_id: SphereId) -> list[str]:
    client = await user.connect("msgpack")
    bodies = []
    for n in range(POSTS):
        body = f"{n:04d}" + "".join(chr(1 + (i % 31)) for i in range(BODY_BYTES - 4))
        bodies.append(body)
        reply = await client.request(
            Publish(sphere_id=sphere_id, message_id=uuid.uuid4().hex, body=body, ref=f"p{n}")
        )
        assert isinstance(reply, Ack), reply
    await client.close()
    return bodies


async def read_all(client: Client, sphere_id: SphereId) -> tuple[list[str], int]:
    """Page back through the whole sphere; returns the bodies and the largest frame seen."""
    bodies: list[str] = []
    largest = 0
    before: int | None = None
    for n in range(POSTS + 1):
        await client.send(History(sphere_id=sphere_id, before=before, limit=200, ref=f"h{n}"))
        async with asyncio.timeout(TIMEOUT_S):
            raw = await client.ws.recv()
        largest = max(largest, len(raw))
        page = client.codec.decode_server(raw)
        assert isinstance(page, HistoryPage), page
        bodies[:0] = [m.body or "" for m in page.messages if m.kind == "post"]
        if not page.has_more:
            return bodies, largest
        before = page.messages[0].offset
    raise AssertionError("paging did not end")


@pytest.mark.parametrize("encoding", ["json", "msgpack"])
async def test_history_of_control_characters_loads(server: ServerProcess, encoding: str) -> None:
    user = await server.new_user()
    sphere_id = SphereId(await user.create_sphere())
    sent = await post_control_characters(user, sphere_id)
    client = await user.connect(encoding)
    bodies, largest = await read_all(client, sphere_id)
    assert bodies == sent
    assert largest <= MAX_SERVER_FRAME_BYTES // 2, largest  # the page budget, in wire bytes
    # Over HTTP (JSON) too.
    answer = await user.api("GET", f"/spheres/{sphere_id}/messages", params={"limit": 200})
    assert answer.status_code == 200
    assert len(answer.content) <= MAX_SERVER_FRAME_BYTES // 2
    page = answer.json()
    assert page["has_more"] and page["messages"][-1]["body"] == sent[-1]


@pytest.fixture
def roomy_server(tmp_path: Path) -> Iterator[ServerProcess]:
    proc = start_server(tmp_path, "--membership-burst", "1000", "--sphere-admin-burst", "1000")
    yield proc
    proc.stop()


@pytest.mark.parametrize("encoding", ["json", "msgpack"])
async def test_members_and_spheres_are_paged(roomy_server: ServerProcess, encoding: str) -> None:
    owner = await roomy_server.new_user("owner")
    sphere_id = SphereId(await owner.create_sphere("big"))
    for n in range(11):
        await owner.add(sphere_id, await roomy_server.new_user(f"m{n % 4}"))
    for n in range(6):
        await owner.create_sphere(f"s{n % 2}")
    client = await owner.connect(encoding)

    members: list[str] = []
    after: str | None = None
    for n in range(10):
        page = await client.request(
            ListMembers(sphere_id=sphere_id, limit=5, after=after, ref=f"m{n}")
        )
        assert isinstance(page, MemberList), page
        assert len(page.members) <= 5
        members += [m.user_id for m in page.members]
        if page.next is None:
            break
        after = page.next
    assert len(members) == len(set(members)) == 12 and n == 2

    spheres: list[str] = []
    after = None
    for n in range(10):
        listed = await client.request(ListSpheres(limit=4, after=after, ref=f"s{n}"))
        assert isinstance(listed, SphereList), listed
        spheres += [s.sphere_id for s in listed.spheres]
        if listed.next is None:
            break
        after = listed.next
    assert len(spheres) == len(set(spheres)) == 7 and n == 1

    bad = await client.request(ListMembers(sphere_id=sphere_id, after="not-a-cursor", ref="x"))
    assert isinstance(bad, ErrorReply) and bad.code == "bad_frame", bad

    # The same pages over HTTP.
    answer = await owner.api("GET", f"/spheres/{sphere_id}/members", params={"limit": 5})
    first = answer.json()
    assert answer.status_code == 200 and len(first["members"]) == 5 and first["next"]
    answer = await owner.api(
        "GET", f"/spheres/{sphere_id}/members", params={"limit": 10, "after": first["next"]}
    )
    rest = answer.json()
    assert [m["user_id"] for m in first["members"] + rest["members"]] == members
    assert "next" not in rest
    answer = await owner.api("GET", "/spheres", params={"limit": 200, "after": "bm90IGEgY3Vyc29y"})
    assert answer.status_code == 400 and answer.json()["code"] == "bad_frame"
