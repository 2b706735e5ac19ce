"""Bad input, limits and hostile clients: each gets its documented code; others are unharmed."""

from __future__ import annotations

import asyncio

import pytest
import websockets
from websockets.exceptions import ConnectionClosed, InvalidStatus

from protocol import (
    Ack,
    Auth,
    ErrorReply,
    Message,
    Ping,
    Pong,
    Publish,
    StreamPosition,
    Subscribe,
    Subscribed,
)
from tests.e2e.conftest import start_server
from tests.support import Client, ServerProcess


async def closed_with(client: Client, timeout_s: float = 10.0) -> int:
    """Read until the server closes the connection; return the close code."""
    try:
        async with asyncio.timeout(timeout_s):
            while True:
                await client.ws.recv()
    except ConnectionClosed as closed:
        assert closed.rcvd is not None
        return closed.rcvd.code
    raise AssertionError("unreachable")


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        ('{"type":"warp"}', "unknown frame type"),
        ('{"type":"publish","sphere_id":"s","body":"b","ref":"r"}', "message_id: missing"),
        ('{"type":"ping","ref":"r","extra":1}', "unexpected field"),
        ('{"type":"history","sphere_id":7,"ref":"r"}', "sphere_id: expected a string"),
        ('{"type":"history","sphere_id":"s","limit":1000,"ref":"r"}', "limit: must be between"),
        ("not json", "not valid JSON"),
        ("[]", "expected a map"),
    ],
)
async def test_bad_frames_get_bad_frame_and_the_connection_survives(
    server: ServerProcess, raw: str, fragment: str
) -> None:
    user = await server.new_user()
    client = await user.connect()
    await client.send_raw(raw)
    reply = await client.recv()
    assert isinstance(reply, ErrorReply) and reply.code == "bad_frame"
    assert fragment in reply.message
    assert "Traceback" not in reply.message
    assert isinstance(await client.request(Ping(ref="after")), Pong)


async def test_msgpack_bad_frames(server: ServerProcess) -> None:
    user = await server.new_user()
    client = await user.connect("msgpack")
    for raw in (b"\xc1", b"\x93\x01\x02\x03", "text is not msgpack", b"\xd4\x01\x00"):
        await client.send_raw(raw)
        reply = await client.recv()
        assert isinstance(reply, ErrorReply) and reply.code == "bad_frame", reply
    assert isinstance(await client.request(Ping(ref="after")), Pong)


async def test_oversize_body_and_frame(server: ServerProcess) -> None:
    user = await server.new_user()
    sphere_id = await user.create_sphere()
    client = await user.connect()
    big = "x" * (16 * 1024 + 1)
    reply = await client.request(Publish(sphere_id=sphere_id, message_id="m", body=big, ref="p"))
    assert isinstance(reply, ErrorReply) and reply.code == "too_large"
    multibyte = "é" * (8 * 1024 + 1)  # 16 KiB + 2 bytes in UTF-8
    reply = await client.request(
        Publish(sphere_id=sphere_id, message_id="m", body=multibyte, ref="q")
    )
    assert isinstance(reply, ErrorReply) and reply.code == "too_large"
    await client.send_raw("x" * (64 * 1024 + 1))
    assert await closed_with(client) == 1009
    # Nothing half-written: the sphere holds only its creation.
    page = await user.api("GET", f"/spheres/{sphere_id}/messages")
    assert [m["kind"] for m in page.json()["messages"]] == ["member"]


async def test_publish_rate_limit(tmp_path) -> None:
    server = start_server(tmp_path, "--publish-rate-per-s", "2", "--publish-burst", "5")
    try:
        user = await server.new_user()
        sphere_id = await user.create_sphere()
        client = await user.connect()
        replies = []
        for n in range(8):
            replies.append(
                await client.request(
                    Publish(sphere_id=sphere_id, message_id=f"m{n}", body="x", ref=str(n))
                )
            )
        # The burst (creating the sphere spent a sphere_admin token, not a post one).
        assert sum(isinstance(r, Ack) for r in replies) == 5
        limited = [r for r in replies if isinstance(r, ErrorReply)]
        assert limited and all(r.code == "rate_limited" and r.retryable for r in limited)
        assert all(r.retry_after_ms and r.retry_after_ms > 0 for r in limited)
        await asyncio.sleep(limited[-1].retry_after_ms / 1000 + 0.05)
        again = await client.request(
            Publish(sphere_id=sphere_id, message_id="late", body="x", ref="z")
        )
        assert isinstance(again, Ack) and again.offset == 7  # the creation, the 5 of the burst
    finally:
        server.stop()


async def test_cross_origin_handshake_is_refused(server: ServerProcess) -> None:
    with pytest.raises(InvalidStatus) as refused:
        await websockets.connect(server.ws_url, origin="https://evil.example")  # type: ignore[arg-type]
    assert refused.value.response.status_code == 403
    same = f"http://127.0.0.1:{server.port}"
    ws = await websockets.connect(server.ws_url, origin=same)  # type: ignore[arg-type]
    await ws.close()


async def test_allowed_origin_list(tmp_path) -> None:
    server = start_server(tmp_path, "--allowed-origins", "https://chat.example.org")
    try:
        ws = await websockets.connect(server.ws_url, origin="https://chat.example.org")  # type: ignore[arg-type]
        await ws.close()
        for origin in ("https://chat.example.org.evil.com", "null", "http://chat.example.org"):
            with pytest.raises(InvalidStatus):
                await websockets.connect(server.ws_url, origin=origin)  # type: ignore[arg-type]
    finally:
        server.stop()


async def test_authentication_failures(server: ServerProcess) -> None:
    for token in ("clo_nope_nope", "garbage", "clo_" + "a" * 40):
        client = await Client.connect(server.ws_url, None)
        await client.send(Auth(token=token, protocol=1))
        reply = await client.recv()
        assert isinstance(reply, ErrorReply) and reply.code == "unauthorized"
        assert await closed_with(client) == 4500
    # Anything but auth first is refused.
    client = await Client.connect(server.ws_url, None)
    await client.send(Ping(ref="p"))
    reply = await client.recv()
    assert isinstance(reply, ErrorReply) and reply.code == "unauthorized"
    assert await closed_with(client) == 4500
    # A revoked token stops working.
    user = await server.new_user()
    token_id = user.token.split("_")[1]
    async with server.http(server.admin_token) as http:
        assert (await http.delete(f"/api/v1/admin/tokens/{token_id}")).status_code == 200
    client = await Client.connect(server.ws_url, None)
    await client.send(Auth(token=user.token, protocol=1))
    assert (await client.recv()).code == "unauthorized"  # type: ignore[attr-defined]
    # Wrong protocol version and unknown subprotocol.
    other = await server.new_user()
    client = await Client.connect(server.ws_url, None)
    await client.send(Auth(token=other.token, protocol=2))
    assert (await client.recv()).code == "unsupported_version"  # type: ignore[attr-defined]
    assert await closed_with(client) == 4501
    ws = await websockets.connect(server.ws_url, subprotocols=["cloison.v9.xml"])  # type: ignore[list-item]
    with pytest.raises(ConnectionClosed) as closed:
        await asyncio.wait_for(ws.recv(), 5)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4501


async def test_auth_and_idle_timeouts(tmp_path) -> None:
    server = start_server(tmp_path, "--auth-timeout-s", "0.5", "--idle-timeout-s", "1")
    try:
        silent = await Client.connect(server.ws_url, None)
        assert await closed_with(silent) == 4001
        user = await server.new_user()
        idle = await user.connect()
        assert await closed_with(idle) == 4002
        # A client that pings stays.
        busy = await user.connect()
        for _ in range(4):
            await asyncio.sleep(0.4)
            assert isinstance(await busy.request(Ping(ref=busy.ref())), Pong)
    finally:
        server.stop()


async def test_slow_consumer_is_closed_and_resumes_without_loss(tmp_path) -> None:
    # The reader reads again only after the burst, which can outlast send_timeout_s on a
    # loaded machine; the socket-level eviction is tested in tests/hostile.
    server = start_server(tmp_path, "--queue-max-bytes", "262144", "--send-timeout-s", "60")
    try:
        writer_user = await server.new_user("writer")
        reader_user = await server.new_user("reader")
        sphere_id = await writer_user.create_sphere()
        await writer_user.add(sphere_id, reader_user)
        # A reader whose socket buffers stay small and that stops reading.
        slow = await Client.connect(server.ws_url, reader_user.token, max_queue=1)
        sub = await slow.request(Subscribe(sphere_id=sphere_id, ref="s"))
        assert isinstance(sub, Subscribed)
        healthy = await reader_user.connect()
        await healthy.request(Subscribe(sphere_id=sphere_id, ref="s"))
        healthy_seen: list[int] = []

        async def read_healthy(count: int) -> None:
            while len(healthy_seen) < count:
                healthy_seen.append((await healthy.expect(Message, timeout_s=30)).offset)

        writer = await writer_user.connect()
        body = "y" * 8000
        total = 1500  # 12 MB: far more than socket buffers and the 256 KiB queue hold
        reading = asyncio.create_task(read_healthy(total))
        for n in range(total):
            await writer.send(
                Publish(sphere_id=sphere_id, message_id=f"m{n}", body=body, ref=str(n))
            )
            if n % 10 == 9:
                await writer.expect(Ack, ref=str(n), timeout_s=30)
        await reading
        base = sub.position.offset  # the creation and the reader's addition
        assert healthy_seen == list(range(base + 1, base + total + 1))  # the slow one hurt no one
        seen: list[int] = []
        try:
            async with asyncio.timeout(30):
                while True:
                    frame = await slow.recv()
                    if isinstance(frame, Message):
                        seen.append(frame.offset)
        except ConnectionClosed as closed:
            assert closed.rcvd is not None and closed.rcvd.code == 4000
        assert seen == list(range(base + 1, base + len(seen) + 1))
        assert len(seen) < total
        resumed = await reader_user.connect()
        since = StreamPosition(seen[-1] if seen else base, sub.position.epoch)
        await resumed.request(Subscribe(sphere_id=sphere_id, since=since, ref="r"))
        rest = [await resumed.expect(Message) for _ in range(total - len(seen))]
        assert [m.offset for m in rest] == list(range(base + len(seen) + 1, base + total + 1))
    finally:
        server.stop()


async def test_graceful_shutdown_closes_with_1012_and_keeps_acked_writes(tmp_path) -> None:
    server = start_server(tmp_path)
    user = await server.new_user()
    sphere_id = await user.create_sphere()
    client = await user.connect()
    for n in range(200):
        await client.send(Publish(sphere_id=sphere_id, message_id=f"m{n}", body="x", ref=str(n)))
    stopping = asyncio.create_task(server.wait_stopped())
    acked: set[int] = set()
    code = None
    try:
        async with asyncio.timeout(20):
            while True:
                frame = await client.recv()
                if isinstance(frame, Ack):
                    acked.add(frame.offset)
    except ConnectionClosed as closed:
        code = closed.rcvd.code if closed.rcvd else None
    assert code == 1012
    assert await stopping == 0
    server.start()
    try:
        page = await user.api("GET", f"/spheres/{sphere_id}/messages", params={"limit": 200})
        stored = {m["offset"] for m in page.json()["messages"] if m["kind"] == "post"}
        assert acked <= stored
        assert stored == set(range(2, len(stored) + 2))  # after the sphere's creation
    finally:
        server.stop()


async def test_revoking_a_token_closes_its_live_connections(server: ServerProcess) -> None:
    user = await server.new_user()
    client = await user.connect()
    token_id = user.token.split("_")[1]
    async with server.http(server.admin_token) as http:
        assert (await http.delete(f"/api/v1/admin/tokens/{token_id}")).status_code == 200
    assert await closed_with(client) == 4500


async def test_admin_api_validates_its_input(server: ServerProcess) -> None:
    async with server.http(server.admin_token) as http:
        for body in ({"name": "x", "kind": []}, {"name": ""}, {"name": "x", "is_admin": 1}, [1]):
            reply = await http.post("/api/v1/admin/users", json=body)
            assert reply.status_code == 400, (body, reply.text)
            assert reply.json()["code"] == "bad_frame"
        reply = await http.post("/api/v1/admin/users", content=b"{nope")
        assert reply.status_code == 400
        reply = await http.post("/api/v1/admin/users", content=b"x" * 70_000)
        assert reply.status_code == 413
        assert reply.json()["code"] == "too_large"
