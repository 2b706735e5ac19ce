"""Logs at debug level: no token secret, no message body, no traceback from bad input, no flood."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import websockets

from protocol import Ack, Auth, ErrorReply, Ping, Pong, Publish
from tests.e2e.conftest import start_server
from tests.support import TIMEOUT_S, Client, ServerProcess

# A handshake deadline short enough for a test to pass it, long enough for every client.
DEBUG_OPTIONS = ("--log-level", "debug", "--handshake-timeout-s", "2")


@pytest.fixture
def debug_server(tmp_path: Path) -> Iterator[ServerProcess]:
    proc = start_server(tmp_path, *DEBUG_OPTIONS)
    yield proc
    proc.stop()


async def unfinished_request(server: ServerProcess) -> None:
    """Headers that never end: the server resets the socket at its deadline, and says so at
    DEBUG (with ``DEBUG_OPTIONS``): a line that shows the server logs at debug level."""
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        writer.write(b"GET /healthz HTTP/1.1\r\n")
        await writer.drain()
        async with asyncio.timeout(TIMEOUT_S):
            with contextlib.suppress(ConnectionError):
                await reader.read()
    finally:
        writer.close()


async def lying_request(server: ServerProcess, token: str, declared: int, sent: bytes) -> bytes:
    """POST a body shorter than its Content-Length, then half-close: the server sees EOF."""
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        head = (
            f"POST /api/v1/spheres HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
            f"Authorization: Bearer {token}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {declared}\r\n\r\n"
        ).encode()
        writer.write(head + sent)
        await writer.drain()
        writer.write_eof()
        async with asyncio.timeout(TIMEOUT_S):
            return await reader.read()
    finally:
        writer.close()


def secret_of(token: str) -> str:
    return token.split("_", 2)[2]


async def test_debug_logs_hold_no_secret_body_or_traceback(debug_server: ServerProcess) -> None:
    server = debug_server
    user = await server.new_user("canary-user")
    canary = f"CANARY-{uuid.uuid4().hex}"
    sphere_id = await user.create_sphere("logs")

    for encoding in ("json", "msgpack"):
        client = await user.connect(encoding)
        reply = await client.request(
            Publish(sphere_id=sphere_id, message_id=uuid.uuid4().hex, body=canary, ref="p")
        )
        assert isinstance(reply, Ack), reply
        for raw in ('{"type":"warp","body":"' + canary + '"}', "not json " + canary):
            await client.send_raw(raw if encoding == "json" else raw.encode())
            assert isinstance(await client.recv(), ErrorReply)
        assert isinstance(await client.request(Ping(ref="after")), Pong)
        await client.close()

    # A refused token, over the socket and in a query string.
    forged = "clo_0123456789abcdef_" + "S3CRET" + uuid.uuid4().hex
    bad = await Client.connect(server.ws_url + "?token=" + forged, None)
    await bad.send(Auth(token=forged, protocol=1))
    assert isinstance(await bad.recv(), ErrorReply)

    # HTTP: a post over the API, and bodies shorter than their Content-Length.
    reply = await user.api(
        "POST",
        f"/spheres/{sphere_id}/messages",
        json={"message_id": uuid.uuid4().hex, "body": canary},
    )
    assert reply.status_code == 201
    for _ in range(3):
        answer = await lying_request(server, user.token, 5000, b'{"name": "' + canary.encode())
        assert b"Traceback" not in answer
    async with server.http(user.token) as http:
        assert (await http.get("/healthz")).status_code == 200  # the server is still fine
    await unfinished_request(server)

    await asyncio.sleep(0.5)  # let the log pump catch up with the last lines
    log = "".join(server.log)
    assert "DEBUG" in log, "the server did not run at debug level"
    for needle in (canary, secret_of(user.token), secret_of(forged), "S3CRET"):
        assert needle not in log, f"{needle[:12]}… leaked into the logs"
    assert "Traceback" not in log


async def test_a_flood_of_identical_warnings_is_bounded(tmp_path: Path) -> None:
    """Each malformed HTTP request makes uvicorn warn; a thousand make a few lines."""
    server = start_server(tmp_path)
    try:
        requests = 300
        for _ in range(requests):
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(b"GARBAGE / HTTP/1.1\r\n\r\n")
            await writer.drain()
            async with asyncio.timeout(TIMEOUT_S):
                await reader.read()
            writer.close()
        async with asyncio.timeout(TIMEOUT_S), websockets.connect(server.ws_url):
            pass  # the server still serves
        await asyncio.sleep(0.5)
    finally:
        server.stop()
    warnings = [line for line in server.log if "Invalid HTTP request" in line]
    assert 1 <= len(warnings) <= 25 < requests, len(warnings)
    # The startup line reads as docs/operations.md shows it (an absolute path: four slashes).
    store = f"store sqlite:///{(tmp_path / 'data' / 'cloison.sqlite3').resolve()}"
    assert any(
        line.startswith("INFO:     server.runner: listening on 127.0.0.1:") and store in line
        for line in server.log
    ), server.log[:3]
