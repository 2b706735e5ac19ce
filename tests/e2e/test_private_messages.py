"""Private messages against a real server: a direct conversation keeps every promise of a
sphere (order, resume, idempotency, erasure, retention, account deletion), and nobody but its
participants obtains a byte of it through any route or frame.

The last test is generated from the operation table (a sample request per row, the
permission matrix's) and from every route of the served API document (the administrators'
route tables included, whichever are mounted): it tries every one as a
sphere administrator of the conversation's context, an organisation manager and a server
administrator, and the operator's commands, and looks for a canary in every answer.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import io
import json
import re
import secrets
import time
import zipfile
from pathlib import Path
from typing import Any

import httpx

from protocol import (
    Ack,
    Delete,
    Edit,
    ErrorCode,
    ErrorReply,
    Frame,
    JsonCodec,
    ListSpheres,
    MemberAction,
    Message,
    MessageId,
    Privacy,
    Publish,
    Replayed,
    SphereId,
    SphereList,
    StreamPosition,
    Subscribe,
    Subscribed,
    UserId,
    UserKind,
    to_wire,
)
from server.operations import OPERATIONS
from storage import DEFAULT_ORG, OrgRole
from storage.sqlite import SqliteStore
from tests.e2e.conftest import start_server
from tests.e2e.matrix.samples import NO_INVITATION, SAMPLES, Context
from tests.e2e.matrix.wire import route_for
from tests.raw_files import SQLITE_DATABASE, assert_absent_sqlite, assert_present_sqlite
from tests.support import Client, ServerProcess, User, eventually

DAY_S = 86_400
_PARAM = re.compile(r"\{(\w+)\}")


def canary() -> str:
    return f"CANARY{secrets.token_hex(10)}"


async def open_direct(user: User, *others: User, **fields: Any) -> dict[str, Any]:
    reply = await user.api(
        "POST", "/direct", json={"user_ids": [o.user_id for o in others], **fields}
    )
    assert reply.status_code == 200, reply.text
    sphere: dict[str, Any] = reply.json()["sphere"]
    return sphere


async def post(client: Client, sphere_id: str, body: str, message_id: str = "") -> Ack:
    reply = await client.request(
        Publish(
            sphere_id=SphereId(sphere_id),
            message_id=MessageId(message_id or secrets.token_hex(8)),
            body=body,
            ref=client.ref(),
        )
    )
    assert isinstance(reply, Ack), reply
    return reply


async def listed(user: User, **query: Any) -> list[str]:
    reply = await user.api("GET", "/spheres", params=query)
    assert reply.status_code == 200, reply.text
    return [s["sphere_id"] for s in reply.json()["spheres"]]


async def test_a_conversation_opens_once_per_pair_and_only_its_participants_see_it(
    server: ServerProcess,
) -> None:
    ada, bea, cy = [await server.new_user(n) for n in ("ada", "bea", "cy")]
    sphere = await open_direct(ada, bea)
    sphere_id = sphere["sphere_id"]
    assert (sphere["privacy"], sphere["role"], sphere["history"]) == ("direct", "member", "full")
    assert sphere["listed"] is False
    assert [p["name"] for p in sphere["participants"]] == ["bea"]  # the others, by name
    # The same two people, either way round, naming themselves or not: the same one.
    assert (await open_direct(bea, ada))["sphere_id"] == sphere_id
    reply = await bea.api("POST", "/direct", json={"user_ids": [bea.user_id, ada.user_id]})
    assert reply.json()["sphere"]["sphere_id"] == sphere_id
    # A group is new each time.
    group = await open_direct(ada, bea, cy, name="trip")
    assert group["sphere_id"] != (await open_direct(ada, bea, cy))["sphere_id"]
    assert sphere_id in await listed(ada) and sphere_id in await listed(bea)
    page = (await cy.api("GET", "/spheres")).json()["spheres"]
    assert [sorted(p["name"] for p in s["participants"]) for s in page] == [["ada", "bea"]] * 2
    assert sphere_id not in await listed(cy) and group["sphere_id"] in await listed(cy)
    assert sphere_id not in await listed(ada, discover="true")
    members = await ada.api("GET", f"/spheres/{sphere_id}/members")
    assert {(m["user_id"], m["role"]) for m in members.json()["members"]} == {
        (ada.user_id, "member"),
        (bea.user_id, "member"),
    }
    # To anyone else it does not exist.
    hidden = await cy.api("GET", f"/spheres/{sphere_id}/messages")
    missing = await cy.api("GET", "/spheres/s_no_such_sphere/messages")
    assert hidden.status_code == missing.status_code == 404
    assert hidden.json() == missing.json()
    # Unknown ids are not_found; so are people the caller cannot see (contract tests).
    unknown = await ada.api("POST", "/direct", json={"user_ids": ["u_nobody"]})
    assert (unknown.status_code, unknown.json()["message"]) == (404, "no user u_nobody")
    alone = await ada.api("POST", "/direct", json={"user_ids": [ada.user_id]})
    assert (alone.status_code, alone.json()["code"]) == (400, "bad_frame")
    crowd = [f"u_{n}" for n in range(11)]
    too_many = await ada.api("POST", "/direct", json={"user_ids": crowd})
    assert (too_many.status_code, too_many.json()["code"]) == (400, "bad_frame")
    # Nobody administers it; it is made only by open_direct, and never becomes another type.
    made = await ada.api("POST", "/spheres", json={"name": "x", "privacy": "direct"})
    assert (made.status_code, made.json()["code"]) == (400, "bad_frame")
    own = await ada.create_sphere("mine")
    turned = await ada.api("PATCH", f"/spheres/{own}", json={"privacy": "direct"})
    assert (turned.status_code, turned.json()["code"]) == (400, "bad_frame")
    for method, path, body in (
        ("POST", f"/spheres/{sphere_id}/members", {"user_id": cy.user_id}),
        ("POST", f"/spheres/{sphere_id}/invitations", {"user_id": cy.user_id}),
        ("PUT", f"/spheres/{sphere_id}/members/{bea.user_id}", {"role": "admin"}),
        ("PUT", f"/spheres/{sphere_id}/bans/{bea.user_id}", {}),
        ("PATCH", f"/spheres/{sphere_id}", {"name": "renamed"}),
        ("GET", f"/spheres/{sphere_id}/audit", None),
        ("GET", f"/spheres/{sphere_id}/export", None),
        ("DELETE", f"/spheres/{sphere_id}", None),
    ):
        refused = await ada.api(method, path, json=body)
        assert (refused.status_code, refused.json()["code"]) == (403, "forbidden"), path
    first = await post(await ada.connect(), sphere_id, "hello")
    report = await bea.api(
        "POST", f"/spheres/{sphere_id}/messages/{first.offset}/reports", json={"reason": "spam"}
    )
    assert (report.status_code, report.json()["code"]) == (403, "forbidden")
    # A participant leaves; the pair's next opening is a new conversation.
    assert (await bea.api("POST", f"/spheres/{sphere_id}/leave")).status_code == 200
    anew = (await open_direct(ada, bea))["sphere_id"]
    assert anew != sphere_id
    # The last one to leave takes the conversation along: nothing of it is left.
    assert (await ada.api("POST", f"/spheres/{sphere_id}/leave")).status_code == 200
    assert sphere_id not in await listed(ada)
    async with server.http(server.admin_token) as admin:
        state = await admin.get(f"/api/v1/admin/spheres/{sphere_id}/retention")
        assert state.status_code == 404
    assert anew in await listed(ada)


async def test_messages_keep_their_order_resume_and_are_idempotent(server: ServerProcess) -> None:
    ada, bea = await server.new_user("ada"), await server.new_user("bea")
    sphere_id = (await open_direct(ada, bea))["sphere_id"]
    a = await ada.connect()
    b = await bea.connect()
    subscribed = await b.request(Subscribe(sphere_id=SphereId(sphere_id), ref="s"))
    assert isinstance(subscribed, Subscribed)
    sent = [await post(a, sphere_id, f"m{n}", f"id-{n}") for n in range(5)]
    assert [s.offset for s in sent] == sorted(s.offset for s in sent)
    got = [await b.expect(Message, body=f"m{n}") for n in range(5)]
    assert [m.offset for m in got] == [s.offset for s in sent]
    # The same message_id again: acknowledged as a duplicate, nothing new in the stream.
    again = await post(a, sphere_id, "m0 again", "id-0")
    assert (again.duplicate, again.offset) == (True, sent[0].offset)
    position = StreamPosition(got[-1].offset, subscribed.position.epoch)
    await b.close()
    later = [await post(a, sphere_id, f"later {n}") for n in range(3)]
    b = await bea.connect()
    await b.send(Subscribe(sphere_id=SphereId(sphere_id), since=position, ref="r"))
    replayed = [await b.expect(Message, body=f"later {n}") for n in range(3)]
    assert [m.offset for m in replayed] == [s.offset for s in later]
    done = await b.expect(Replayed)
    assert done.position.offset == later[-1].offset


async def test_edit_and_delete_erase_the_bytes(server: ServerProcess) -> None:
    ada, bea = await server.new_user("ada"), await server.new_user("bea")
    sphere_id = (await open_direct(ada, bea))["sphere_id"]
    a = await ada.connect()
    first, second, kept = canary(), canary(), canary()
    target = (await post(a, sphere_id, first)).offset
    await post(a, sphere_id, kept)
    edited = await a.request(
        Edit(
            sphere_id=SphereId(sphere_id),
            message_id=MessageId(secrets.token_hex(8)),
            target=target,
            body=second,
            ref="e",
        )
    )
    assert isinstance(edited, Ack), edited
    assert_present_sqlite(server.data_dir, second.encode())
    deleted = await a.request(
        Delete(
            sphere_id=SphereId(sphere_id),
            message_id=MessageId(secrets.token_hex(8)),
            target=target,
            ref="d",
        )
    )
    assert isinstance(deleted, Ack), deleted
    for gone in (first, second):
        assert_absent_sqlite(server.data_dir, gone.encode())
    assert_present_sqlite(server.data_dir, kept.encode())


async def test_retention_applies_to_conversations(tmp_path: Path) -> None:
    server = start_server(tmp_path, "--retention-days", "1", "--retention-interval-s", "3600")
    try:
        ada, bea = await server.new_user("ada"), await server.new_user("bea")
        sphere_id = (await open_direct(ada, bea))["sphere_id"]
        old = canary()
        await post(await ada.connect(), sphere_id, old)
        assert_present_sqlite(server.data_dir, old.encode())
        as_of = datetime.datetime.fromtimestamp(time.time() + 2 * DAY_S, datetime.UTC)
        out = server.cli("retention", "run", "--retention-days", "1", "--as-of", as_of.isoformat())
        assert "events removed" in out and old not in out
        assert_absent_sqlite(server.data_dir, old.encode())
        page = (await bea.api("GET", f"/spheres/{sphere_id}/messages")).json()
        assert old not in json.dumps(page) and page["truncated_before"] > 1
    finally:
        server.stop()


async def test_a_participant_deletes_their_account(server: ServerProcess) -> None:
    ada, bea = await server.new_user("ada"), await server.new_user("bea")
    sphere_id = (await open_direct(ada, bea))["sphere_id"]
    a = await ada.connect()
    said = canary()
    await post(await bea.connect(), sphere_id, said)
    assert (await a.request(Subscribe(sphere_id=SphereId(sphere_id), ref="s"))).TYPE
    reply = await bea.api("DELETE", "/me", json={"confirm": bea.user_id})
    assert reply.status_code == 202, reply.text
    event = await a.expect(Message, action=MemberAction.DELETED)
    assert (event.member_id, event.deleted) == (bea.user_id, True)

    async def erased() -> bool:
        page = (await ada.api("GET", f"/spheres/{sphere_id}/messages")).json()
        return said not in json.dumps(page)

    await eventually(erased)
    assert sphere_id in await listed(ada)
    # The last participant's account takes the conversation with it.
    reply = await ada.api("DELETE", "/me", json={"confirm": ada.user_id})
    assert reply.status_code == 202, reply.text
    async with server.http(server.admin_token) as admin:

        async def gone() -> bool:
            state = await admin.get(f"/api/v1/admin/users/{ada.user_id}/deletion")
            return bool(state.json().get("state") == "done")

        await eventually(gone)
        status = await admin.get(f"/api/v1/admin/spheres/{sphere_id}/retention")
        assert status.status_code == 404


# ---------------------------------------------------------------------------------------------
# Nobody else reads a byte: every route and frame, as everyone who administers something.


def _contents(reply: httpx.Response) -> str:
    """Everything a response carries, archives unpacked (their members are compressed)."""
    if reply.headers.get("content-type") == "application/zip" and reply.is_success:
        with zipfile.ZipFile(io.BytesIO(reply.content)) as archive:
            return "\n".join(archive.read(n).decode() for n in archive.namelist())
    return reply.text


def _unzipped(reply: httpx.Response) -> dict[str, str]:
    assert reply.status_code == 200, reply.text
    with zipfile.ZipFile(io.BytesIO(reply.content)) as archive:
        return {name: archive.read(name).decode() for name in archive.namelist()}


async def _frame_over_http(http: httpx.AsyncClient, frame: Frame) -> str | None:
    route = route_for(frame)
    if route is None:
        return None
    wire: dict[str, Any] = to_wire(frame)
    wire.pop("type")
    wire.pop("ref", None)
    path = _PARAM.sub(lambda m: str(wire.pop(m.group(1))), route.path)
    query = {
        name: str(wire.pop(name)).lower() if isinstance(wire.get(name), bool) else wire.pop(name)
        for name in (*route.query, *route.text_query)
        if name in wire
    }
    reply = await http.request(
        route.method, "/api/v1" + path, params=query or None, json=wire or None
    )
    return _contents(reply)


async def _manager(server: ServerProcess) -> User:
    """A manager of the default organisation who is not a server administrator."""
    store = await SqliteStore.open(server.data_dir / SQLITE_DATABASE)
    try:
        user = await store.create_user(
            "manager", UserKind.HUMAN, is_admin=False, now_ms=int(time.time() * 1000), org_id=None
        )
        await store.add_org_member(
            DEFAULT_ORG, user.user_id, OrgRole.MANAGER, now_ms=user.created_ms, actor_id="test"
        )
    finally:
        await store.aclose()
    async with server.http(server.admin_token) as admin:
        reply = await admin.post("/api/v1/admin/tokens", json={"user_id": user.user_id})
        assert reply.status_code == 201, reply.text
        token = reply.json()["token"]
    return User(server, user.user_id, user.name, token)


async def test_nobody_but_the_participants_obtains_a_byte(server: ServerProcess) -> None:
    ada, bea, owner = [await server.new_user(n) for n in ("ada", "bea", "owner")]
    team = await owner.create_sphere("team")  # the context: its owner administers it
    await owner.add(team, ada)
    await owner.add(team, bea)
    secret = canary()
    sphere = await open_direct(ada, bea, context_sphere_id=team, name=f"about {secret}")
    sphere_id = sphere["sphere_id"]
    a = await ada.connect()
    target = (await post(a, sphere_id, f"the {secret} itself")).offset
    await post(await bea.connect(), sphere_id, f"a reply {secret}")
    outside = canary()  # what ada wrote elsewhere: the admin export must hold it
    await post(a, team, outside)
    manager = await _manager(server)
    admin = User(server, "", "admin", server.admin_token)
    answers: list[str] = []
    for who in (owner, manager, admin):
        answers += await _every_frame(who, sphere_id, target, ada, bea)
        answers += await _every_route_that_reads(who, sphere_id, target, (ada, bea))
    async with httpx.AsyncClient(base_url=server.http_url) as anonymous:
        public = await anonymous.get(f"/public/{sphere_id}")
        assert public.status_code == 404
    for command in (
        ("user", "list"),
        ("user", "audit"),
        ("retention", "status"),
        ("retention", "status", "--sphere", sphere_id),
    ):
        answers.append(await asyncio.to_thread(server.cli, *command))
    leaks = [answer[:200] for answer in answers if secret in answer]
    assert not leaks, leaks
    # The positive control: the canary is there to be found, by a participant.
    assert secret in (await ada.api("GET", f"/spheres/{sphere_id}/messages")).text
    assert secret in (await ada.api("GET", "/spheres")).text  # the name, in her list
    # The server administrator's export of ada: her other posts, none of the conversation.
    async with server.http(server.admin_token) as http:
        theirs = _unzipped(await http.get(f"/api/v1/admin/users/{ada.user_id}/export"))
    manifest = json.loads(theirs["manifest.json"])
    assert (manifest["private_messages"], manifest["withheld_spheres"]) == ("excluded", 1)
    assert outside in theirs["messages.jsonl"] and secret not in json.dumps(theirs)
    # Her own export holds all of it.
    own = _unzipped(await ada.api("GET", "/me/export"))
    assert json.loads(own["manifest.json"])["private_messages"] == "included"
    assert secret in own["messages.jsonl"] and secret in own["memberships.jsonl"]


async def _every_frame(
    who: User, sphere_id: str, post_offset: int, ada: User, bea: User
) -> list[str]:
    """Every sample of every row of the operation table, over WebSocket and HTTP, about the
    conversation: each one that needs a right in it is answered as for a sphere that does not
    exist (``unsubscribe`` needs none: it only ever ends the caller's own subscription)."""
    client = await who.connect()
    context = Context(
        sphere_id=SphereId(sphere_id),
        privacy=Privacy.DIRECT,
        standing="outsider",
        caller_id=UserId(who.user_id),
        token=who.token,
        owner_id=UserId(ada.user_id),
        post=post_offset,
        own_post=post_offset,
        target_id=UserId(bea.user_id),
        stranger_id=UserId(bea.user_id),
        invitation_id=NO_INVITATION,
        charter_version=1,
        seq=0,
    )
    codec = JsonCodec()
    answers = []
    async with who.server.http(who.token) as http:
        for op in OPERATIONS:
            for sample in SAMPLES.get(op.frame, ()):
                if sample.handshake:
                    continue
                frame = sample.build(context)
                reply = await client.request(dataclasses.replace(frame, ref=client.ref()))  # type: ignore[type-var]
                if getattr(frame, "sphere_id", None) == sphere_id and op.rights_for(frame):
                    assert isinstance(reply, ErrorReply), (frame, reply)
                    assert reply.code == ErrorCode.NOT_FOUND, (frame, reply)
                answers.append(str(codec.encode(reply)))
                over_http = await _frame_over_http(http, frame)
                if over_http is not None:
                    answers.append(over_http)
        mine = await client.request(ListSpheres(ref="mine"))
        assert isinstance(mine, SphereList)
        assert sphere_id not in [s.sphere_id for s in mine.spheres]
    await client.close()
    return answers


async def _every_route_that_reads(
    who: User, sphere_id: str, post_offset: int, users: tuple[User, ...]
) -> list[str]:
    """Every route of the served API document that reads (``GET``; and the legal hold, which
    only says it is set), about the conversation, its posts and each participant: the
    operation table's routes and every administrators' route table, whatever adds to them."""
    async with who.server.http(who.token) as http:
        document = (await http.get("/api/v1/openapi.json")).json()
        answers = []
        for path, methods in document["paths"].items():
            for method in methods:
                if method != "get" and "legal-hold" not in path:
                    continue
                for user in users:
                    values = {
                        "sphere_id": sphere_id,
                        "user_id": user.user_id,
                        "target": str(post_offset),
                        "root": str(post_offset),
                        "org_id": DEFAULT_ORG,
                        "invitation_id": NO_INVITATION,
                    }
                    filled = _PARAM.sub(lambda m, v=values: v.get(m.group(1), sphere_id), path)
                    body = {"reason": "a court order"} if method == "put" else None
                    reply = await http.request(method.upper(), "/api/v1" + filled, json=body)
                    answers.append(_contents(reply))
        for outside_api in ("/metrics", "/healthz", "/readyz", f"/public/{sphere_id}"):
            answers.append(_contents(await http.get(outside_api)))
    return answers
