"""An oversized first frame gets its 1009 close frame, every time.

The server used to close at once with the frame's bytes still unread, so the kernel sent a
reset that often destroyed the close frame (the client saw 1006 in 3 of 5 tries). The
bounded protocol half-closes and discards input before closing (server/wire/closing.py).
"""

from __future__ import annotations

import asyncio

from websockets.exceptions import ConnectionClosed

from tests.hostile._attack import ATTACKER, Probe, figure, running
from tests.support import TIMEOUT_S, Client

TRIES = 10
SIZES = (100_000, 4 << 20)  # just over the 64 KiB limit, and far over it


async def close_code_after_oversized_frame(url: str, size: int) -> int | None:
    client = await Client.connect(url, None, local_addr=(ATTACKER, 0))
    try:
        await asyncio.wait_for(client.ws.send("x" * size), TIMEOUT_S)
    except ConnectionClosed:
        pass  # the server's close can arrive while the frame is still being sent
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
