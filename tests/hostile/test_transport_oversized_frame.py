"""An oversized first frame gets its 1009 close frame, every time.

The server used to close at once with the frame's bytes still unread, so the kernel sent a
reset that often destroyed the close frame (the client saw 1006 in 3 of 5 tries). The
bounded protocol half-closes and discards input before closing (server/wire/closing.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import struct

from websockets.exceptions import ConnectionClosed

from tests.hostile._attack import (
    ATTACKER,
    OP_CLOSE,
    OP_TEXT,
    Probe,
    attacker_socket,
    client_frame,
    figure,
    running,
    upgrade_request,
)
from tests.support import TIMEOUT_S, Client

TRIES = 10
SIZES = (100_000, 4 << 20)  # just over the 64 KiB limit, and far over it


async def close_code_after_oversized_frame(url: str, size: int) -> int | None:
    client = await Client.connect(url, None, local_addr=(ATTACKER, 0))
    # The server's close can arrive while the frame is still being sent.
    with contextlib.suppress(ConnectionClosed):
        await asyncio.wait_for(client.ws.send("x" * size), TIMEOUT_S)
    try:
        await asyncio.wait_for(client.ws.recv(), TIMEOUT_S)
    except ConnectionClosed as closed:
        return closed.rcvd.code if closed.rcvd is not None else None
    raise AssertionError("the server answered an oversized frame")


async def test_oversized_first_frame_is_closed_with_1009_every_time(tmp_path) -> None:
    with running(tmp_path) as server:
        probe = await Probe.open(await server.new_user("healthy"))
        probing = asyncio.create_task(probe.run(3.0))
        codes = [
            await close_code_after_oversized_frame(server.ws_url, SIZES[n % len(SIZES)])
            for n in range(TRIES)
        ]
        await probing
        figure(f"oversized first frame: close codes {codes}; {probe.summary()}")
        assert codes == [1009] * TRIES
        probe.assert_healthy()


def raw_oversized_frame(port: int, size: int) -> tuple[int | None, str]:
    """Send one oversized frame whole, then read to the end: (close code, how it ended)."""
    sock = attacker_socket()
    sock.settimeout(TIMEOUT_S)
    try:
        sock.connect(("127.0.0.1", port))
        sock.sendall(upgrade_request(port))
        head = b""
        while b"\r\n\r\n" not in head:
            head += sock.recv(4096)
        data = head.split(b"\r\n\r\n", 1)[1]
        try:
            sock.sendall(client_frame(OP_TEXT, b"x" * size))
            while chunk := sock.recv(65536):
                data += chunk
            ending = "eof"
        except ConnectionResetError:
            ending = "reset"
        code = None
        if len(data) >= 4 and data[0] & 0x0F == OP_CLOSE:
            (code,) = struct.unpack("!H", data[2:4])
        return code, ending
    finally:
        sock.close()


async def test_oversized_frame_close_is_not_cut_by_a_reset(tmp_path) -> None:
    """The peer may finish sending its frame and read the close frame, then a clean EOF:
    the server never resets a socket whose input it has not read."""
    with running(tmp_path) as server:
        outcomes = [
            await asyncio.to_thread(raw_oversized_frame, server.port, SIZES[n % len(SIZES)])
            for n in range(TRIES)
        ]
        figure(f"oversized frame, raw peer that sends it whole: {outcomes}")
        assert outcomes == [(1009, "eof")] * TRIES
