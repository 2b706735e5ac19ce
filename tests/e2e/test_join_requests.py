"""Join requests over WebSocket and HTTP: asked for spheres whose join policy is ``approval``,
withdrawn by their author, answered by administrators."""

from __future__ import annotations

import aiosqlite

from protocol import (
    AnswerRequest,
    ErrorReply,
    Frame,
    Join,
    JoinRequestList,
    ListRequests,
    Message,
    Ok,
    RequestJoin,
    Subscribe,
    Subscribed,
    WithdrawRequest,
)
from tests.support import ServerProcess


def code(reply: Frame) -> str:
    assert isinstance(reply, ErrorReply), reply
    return reply.code


async def set_join_policy(server: ServerProcess, sphere_id: str, policy: str) -> None:
    """The sphere's join policy, set in the store (the settings request is not this test's)."""
    async with aiosqlite.connect(server.data_dir / "cloison.sqlite3") as db:
        await db.execute(
            "UPDATE spheres SET join_policy = ? WHERE sphere_id = ?", (policy, sphere_id)
        )
        await db.commit()


async def test_asked_listed_and_admitted(server: ServerProcess) -> None:
    owner = await server.new_user("owner")
    admin = await server.new_user("admin")
    asker = await server.new_user("asker")
    sphere_id = await owner.create_sphere("club", privacy="open")
    await owner.add(sphere_id, admin, role="admin")
    await set_join_policy(server, sphere_id, "approval")
    o, x = await owner.connect(), await asker.connect()
    await o.request(Subscribe(sphere_id=sphere_id, ref="s"))
    asked = await x.request(RequestJoin(sphere_id=sphere_id, comment="I work here", ref="r"))
    assert isinstance(asked, Ok), asked
    twice = await x.request(RequestJoin(sphere_id=sphere_id, ref="r2"))
    assert code(twice) == "conflict"
    listed = await admin.api("GET", f"/spheres/{sphere_id}/requests")
    assert listed.status_code == 200, listed.text
    requests = listed.json()["requests"]
    assert [(r["user_id"], r["name"], r["comment"], r["state"]) for r in requests] == [
        (asker.user_id, "asker", "I work here", "pending")
    ]
    # Only administrators list or answer.
    refused = await x.request(ListRequests(sphere_id=sphere_id, ref="l"))
    assert code(refused) == "forbidden"
    self_admit = await x.request(
        AnswerRequest(sphere_id=sphere_id, user_id=asker.user_id, accept=True, ref="a")
    )
    assert code(self_admit) == "forbidden"
    reply = await admin.api(
        "POST", f"/spheres/{sphere_id}/requests/{asker.user_id}", json={"accept": True}
    )
    assert reply.status_code == 200, reply.text
    event = await o.expect(Message, member_id=asker.user_id)
    assert (event.action, event.role, event.author_id) == ("admitted", "member", admin.user_id)
    assert isinstance(await x.request(Subscribe(sphere_id=sphere_id, ref="s")), Subscribed)
    empty = await o.request(ListRequests(sphere_id=sphere_id, ref="l2"))
    assert isinstance(empty, JoinRequestList) and empty.requests == []
    answered = await o.request(
        AnswerRequest(sphere_id=sphere_id, user_id=asker.user_id, accept=True, ref="a2")
    )
    assert code(answered) == "not_found"


async def test_withdrawn_and_refused(server: ServerProcess) -> None:
    owner = await server.new_user("owner")
    asker = await server.new_user("asker")
    sphere_id = await owner.create_sphere("club", privacy="public")
    await set_join_policy(server, sphere_id, "approval")
    x = await asker.connect()
    assert isinstance(await x.request(RequestJoin(sphere_id=sphere_id, ref="r")), Ok)
    withdrawn = await asker.api("POST", f"/spheres/{sphere_id}/requests/withdraw")
    assert withdrawn.status_code == 200, withdrawn.text
    again = await x.request(WithdrawRequest(sphere_id=sphere_id, ref="w"))
    assert code(again) == "not_found"
    asked = await asker.api("POST", f"/spheres/{sphere_id}/requests", json={"comment": "please"})
    assert asked.status_code == 201, asked.text
    o = await owner.connect()
    no = AnswerRequest(sphere_id=sphere_id, user_id=asker.user_id, accept=False, ref="n")
    assert isinstance(await o.request(no), Ok)
    members = await owner.api("GET", f"/spheres/{sphere_id}/members")
    assert asker.user_id not in {m["user_id"] for m in members.json()["members"]}
    # A refusal is not a ban: the user may ask again.
    assert isinstance(await x.request(RequestJoin(sphere_id=sphere_id, ref="r3")), Ok)


async def test_the_join_policy_decides(server: ServerProcess) -> None:
    owner = await server.new_user("owner")
    asker = await server.new_user("asker")
    member = await server.new_user("member")
    free = await owner.create_sphere("free", privacy="open")
    await set_join_policy(server, free, "free")
    closed = await owner.create_sphere("closed", privacy="open")
    await set_join_policy(server, closed, "invitation")
    private = await owner.create_sphere("private")
    await owner.add(private, member)
    x = await asker.connect()
    told = await x.request(RequestJoin(sphere_id=free, ref="f"))
    assert code(told) == "conflict" and "join" in told.message  # type: ignore[attr-defined]
    assert code(await x.request(RequestJoin(sphere_id=closed, ref="c"))) == "forbidden"
    hidden = await x.request(RequestJoin(sphere_id=private, ref="p"))
    ghost = await x.request(RequestJoin(sphere_id="s_doesnotexist00", ref="g"))
    assert (code(hidden), hidden.message) == (code(ghost), ghost.message)  # type: ignore[attr-defined]
    m = await member.connect()
    assert code(await m.request(RequestJoin(sphere_id=private, ref="m"))) == "conflict"
    assert code(await x.request(RequestJoin(sphere_id=free, comment="x" * 501, ref="l"))) == (
        "bad_frame"
    )
    assert isinstance(await x.request(Join(sphere_id=free, ref="j")), Frame)
