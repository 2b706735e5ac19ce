"""Organisation policies the write path and the entry rules enforce, on a real server: the
messages-per-day quota (``quota_exceeded``, naming it, over WebSocket and HTTP, the draft
stored nowhere) and the ``visitors`` policy (``forbidden``, naming it, alike for a user of
another organisation and for an id that names no user)."""

from __future__ import annotations

import dataclasses

from protocol import (
    Ack,
    AddMember,
    ErrorCode,
    ErrorReply,
    Frame,
    History,
    HistoryPage,
    Invite,
    MessageId,
    Ok,
    Publish,
    Role,
    SphereId,
    UserId,
)
from storage import DEFAULT_ORG
from tests.e2e import orgs
from tests.support import Client, ServerProcess


async def _ask(client: Client, frame: Frame) -> Frame:
    return await client.request(dataclasses.replace(frame, ref=client.ref()))  # type: ignore[type-var]


async def test_a_post_past_the_daily_quota_is_refused_and_not_stored(
    server: ServerProcess,
) -> None:
    orgs.set_policies(server, DEFAULT_ORG, quotas={"messages_per_day": 2})
    owner = await server.new_user("owner")
    sphere_id = SphereId(await owner.create_sphere("team"))
    client = await owner.connect()
    for n in range(2):
        ack = await _ask(
            client, Publish(sphere_id=sphere_id, message_id=MessageId(f"m{n}"), body="hi")
        )
        assert isinstance(ack, Ack), ack
    over = await _ask(client, Publish(sphere_id=sphere_id, message_id=MessageId("m2"), body="x"))
    assert isinstance(over, ErrorReply) and over.code == ErrorCode.QUOTA_EXCEEDED, over
    assert "messages_per_day" in over.message and not over.retryable
    http = await owner.api(
        "POST", f"/spheres/{sphere_id}/messages", json={"message_id": "m3", "body": "y"}
    )
    assert http.status_code == 403 and http.json()["code"] == "quota_exceeded", http.text
    page = await _ask(client, History(sphere_id=sphere_id, limit=10))
    assert isinstance(page, HistoryPage)
    assert [m.body for m in page.messages if m.kind == "post"] == ["hi", "hi"]
    assert [(posts, body_bytes) for _, posts, body_bytes in orgs.usage(server, DEFAULT_ORG)] == [
        (2, 4)
    ]
    await client.close()


async def test_visitors_from_outside_follow_the_policy(server: ServerProcess) -> None:
    owner = await server.new_user("owner")
    outside = await server.new_user("outside")
    orgs.create_org(server, "o_quota_other", "Other")
    orgs.move_to_org(server, [outside.user_id], "o_quota_other")
    sphere_id = SphereId(await owner.create_sphere("team"))
    client = await owner.connect()
    foreign, nobody = UserId(outside.user_id), UserId("u_quota_nobody")
    for frame in (
        Invite(sphere_id=sphere_id, user_id=foreign, role=Role.VISITOR),
        Invite(sphere_id=sphere_id, user_id=nobody, role=Role.VISITOR),
        AddMember(sphere_id=sphere_id, user_id=foreign, role=Role.VISITOR),
    ):
        refused = await _ask(client, frame)
        assert isinstance(refused, ErrorReply) and refused.code == ErrorCode.FORBIDDEN, refused
        assert "policy visitors" in refused.message
    orgs.set_policies(server, DEFAULT_ORG, visitors=True)
    as_member = await _ask(client, AddMember(sphere_id=sphere_id, user_id=foreign))
    assert isinstance(as_member, ErrorReply) and "only as visitors" in as_member.message
    added = await _ask(client, AddMember(sphere_id=sphere_id, user_id=foreign, role=Role.VISITOR))
    assert isinstance(added, Ok), added
    unknown = await _ask(client, Invite(sphere_id=sphere_id, user_id=nobody, role=Role.VISITOR))
    assert isinstance(unknown, ErrorReply) and unknown.code == ErrorCode.NOT_FOUND, unknown
    await client.close()
