"""A reader that stops reading is evicted by the server within ``send_timeout_s`` (8 s) of its
buffers filling, with the kernel's TCP_USER_TIMEOUT off.

Before, only the kernel dropped it (TCP_USER_TIMEOUT, 30 s), and with that option off it was
never closed: ``Connection.kill`` cancelled the writer but nothing aborted the socket.
"""

from __future__ import annotations

import asyncio
import time

from protocol import Ack, Auth, Publish, Subscribe, Subscribed, Welcome
from tests.hostile._attack import (
    Probe,
    duration,
    figure,
    raw_websocket,
    read_frames,
    running,
    server_side_open,
    text_frame,
    wait_released,
)

SEND_TIMEOUT_S = 8.0  # the default
BODY = "s" * 15_000
# Why: several MB, more than the kernel's loopback socket buffers and the transport's
# high-water mark hold, so the server's writes to the stalled reader block.
MESSAGES = 600


async def test_stalled_reader_is_evicted_without_tcp_user_timeout(tmp_path) -> None:
    rounds = int(duration(1, 3))
    with running(tmp_path, "--tcp-user-timeout-s", "0") as server:
        writer_user = await server.new_user("writer")
        reader_user = await server.new_user("stalled")
        sphere_id = await writer_user.create_sphere()
        await writer_user.add(sphere_id, reader_user)
        probe = await Probe.open(writer_user)
        publisher = await writer_user.connect()
        for round_ in range(rounds):
            reader, writer = await raw_websocket(server.port, rcvbuf_bytes=4096)
            writer.write(text_frame(Auth(token=reader_user.token, protocol=1)))
            assert isinstance((await read_frames(reader, 1))[0], Welcome)
            writer.write(text_frame(Subscribe(sphere_id=sphere_id, ref="s")))
            assert isinstance((await read_frames(reader, 1))[0], Subscribed)
            writer.transport.pause_reading()  # from here on, this client reads nothing
            sock = writer.get_extra_info("socket")
            stalled_at = time.monotonic()
            probing = asyncio.create_task(probe.run(SEND_TIMEOUT_S + 4))
            for n in range(MESSAGES):
                await publisher.send(
                    Publish(sphere_id=sphere_id, message_id=f"r{round_}m{n}", body=BODY, ref=str(n))
                )
                if n % 20 == 19:
                    await publisher.expect(Ack, ref=str(n), timeout_s=30)
            burst_end = time.monotonic()
            assert server_side_open(sock, server.port), "evicted before the burst ended"
            try:
                after_burst_s = await wait_released([sock], server.port, SEND_TIMEOUT_S + 6)
            except TimeoutError:
                raise AssertionError("".join(server.log[-30:])) from None
            evicted_s = time.monotonic() - stalled_at
            await probing
            writer.transport.abort()
            figure(
                f"stalled reader (TCP_USER_TIMEOUT off) evicted {evicted_s:.1f} s after it"
                f" stopped reading, {after_burst_s:.1f} s after a {burst_end - stalled_at:.1f} s"
                f" burst of {MESSAGES * len(BODY) >> 20} MB; {probe.summary()}"
            )
            assert after_burst_s < SEND_TIMEOUT_S + 2
        assert any("accepted nothing" in line for line in server.log)
        probe.assert_healthy()
