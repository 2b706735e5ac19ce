"""An application that raises or returns with its WebSocket open: the peer gets a close frame.

uvicorn closes the TCP connection without one, so the peer sees 1006 and cannot tell a
server fault from a network cut; ``server.wire`` sends 1011 (raised) or 1000 (returned), then
lingers (docs/adr/0005-bounded-protocols-under-uvicorn.md). Served by the gateway's transport
with a test application (tests/hostile/echo_wire.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
import websockets
from websockets.exceptions import ConnectionClosed

from tests.hostile.echo_wire import RAISE_PATH, RETURN_PATH, EchoWireProcess
from tests.support import ServerProcess

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

REPLY_TIMEOUT_S = 10.0


@pytest.fixture
def echo(tmp_path: Path) -> Iterator[ServerProcess]:
    server = EchoWireProcess(tmp_path / "echo")
    server.start()
    yield server
    server.stop()


async def close_received(url: str) -> int | None:
    """The code of the close frame the server sends (None: the connection ended without one)."""
    async with asyncio.timeout(REPLY_TIMEOUT_S):
        async with websockets.connect(url) as ws:
            try:
                await ws.recv()
            except ConnectionClosed as closed:
                return closed.rcvd.code if closed.rcvd is not None else None
    raise AssertionError("the server sent a message")


@pytest.mark.parametrize(("path", "code"), [(RAISE_PATH, 1011), (RETURN_PATH, 1000)])
async def test_a_websocket_left_open_by_the_application_gets_a_close_frame(
    echo: ServerProcess, path: str, code: int
) -> None:
    base = echo.ws_url.removesuffix("/ws")
    for _ in range(20):  # each on a fresh connection: a lost frame would show as None
        assert await close_received(base + path) == code
    assert echo.proc is not None and echo.proc.poll() is None
    if path == RAISE_PATH:
        assert "ApplicationFault" in "".join(echo.log)  # logged by uvicorn, once per socket
