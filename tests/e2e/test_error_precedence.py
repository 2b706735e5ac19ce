"""Which error wins when a request is wrong in several ways at once (docs/protocol.md §6)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from protocol import Ack, ErrorReply, History, Publish, SphereId
from tests.e2e.conftest import start_server
from tests.e2e.test_limits import closed_with
from tests.support import ServerProcess

BIG_BODY = "x" * (16 * 1024 + 1)  # over the default max_message_bytes, under max_frame_bytes
NOWHERE = SphereId("s_does_not_exist")


@pytest.fixture
def tight_server(tmp_path: Path) -> Iterator[ServerProcess]:
    limits = ["--publish-burst", "1", "--publish-rate-per-s", "0.001"]
    proc = start_server(tmp_path, *limits, "--query-burst", "1", "--query-rate-per-s", "0.001")
    yield proc
    proc.stop()


def code(reply: object) -> str:
    assert isinstance(reply, ErrorReply), reply
    return reply.code


async def test_websocket_precedence(tight_server: ServerProcess) -> None:
    user = await tight_server.new_user()
    mine = SphereId(await user.create_sphere())
    client = await user.connect()
    # Malformed beats everything: the frame is not decoded any further.
    await client.send_raw(
        '{"type":"publish","sphere_id":"s_does_not_exist","body":"' + BIG_BODY + '","ref":"m"}'
    )
    assert code(await client.recv()) == "bad_frame"

    def publish(sphere_id: SphereId, body: str, ref: str) -> Publish:
        return Publish(sphere_id=sphere_id, message_id=uuid.uuid4().hex, body=body, ref=ref)

    # A write: too_large, then access, then the rate limit (a refused write costs nothing).
    assert code(await client.request(publish(NOWHERE, BIG_BODY, "a"))) == "too_large"
    assert code(await client.request(publish(NOWHERE, "hi", "b"))) == "not_found"
    assert isinstance(await client.request(publish(mine, "hi", "c")), Ack)  # the only token
    assert code(await client.request(publish(NOWHERE, "hi", "d"))) == "not_found"
    assert code(await client.request(publish(mine, BIG_BODY, "e"))) == "too_large"
    assert code(await client.request(publish(mine, "hi", "f"))) == "rate_limited"
    # Other requests spend their class's token first, then are checked.
    assert code(await client.request(History(sphere_id=NOWHERE, ref="g"))) == "not_found"
    assert code(await client.request(History(sphere_id=mine, ref="h"))) == "rate_limited"
    assert code(await client.request(History(sphere_id=NOWHERE, ref="i"))) == "rate_limited"
    # A message over max_frame_bytes closes the connection, whatever it holds.
    await client.send_raw("x" * (64 * 1024 + 1))
    assert await closed_with(client) == 1009


async def test_http_precedence(server: ServerProcess) -> None:
    user = await server.new_user()
    sphere_id = await user.create_sphere()
    oversize = b"{" + b" " * (64 * 1024) + b"}"
    async with server.http("clo_0123456789abcdef_nope") as http:
        answer = await http.post(f"/api/v1/spheres/{sphere_id}/messages", content=oversize)
        assert answer.status_code == 401  # authentication comes first
    async with server.http(user.token) as http:
        answer = await http.post(f"/api/v1/spheres/{NOWHERE}/messages", content=oversize)
        assert answer.status_code == 413  # then the body's size
        answer = await http.post(f"/api/v1/spheres/{NOWHERE}/messages", content=b"{not json")
        assert answer.status_code == 400  # then its syntax and fields
        answer = await http.post(
            f"/api/v1/spheres/{NOWHERE}/messages", json={"message_id": "m", "body": BIG_BODY}
        )
        assert answer.status_code == 413  # then the body of the message, then access
        # A delete names its own message_id: without a body it is incomplete.
        answer = await http.delete(f"/api/v1/spheres/{sphere_id}/messages/1")
        assert answer.status_code == 400 and answer.json()["code"] == "bad_frame"
        assert "message_id: missing" in answer.json()["message"]
        # Removing a member needs no body.
        answer = await http.delete(f"/api/v1/spheres/{sphere_id}/members/{user.user_id}")
        assert answer.status_code == 409  # the last owner cannot be removed
