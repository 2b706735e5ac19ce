"""A WebSocket ping flood from peers that read nothing, before any token: memory stays bounded.

uvicorn answers every ping with a pong written to the transport whatever the peer reads; the
server's write buffer used to grow without limit (one client: 47 -> 1,220 MB in 44 s). The
bounded protocol stops reading a peer whose write buffer is full and aborts it after
``send_timeout_s`` (server/wire/websocket.py). The attackers reconnect when dropped, so the
flood lasts the whole run.
"""

from __future__ import annotations

import asyncio
import contextlib

from tests.hostile._attack import (
    OP_PING,
    Probe,
    RssWatch,
    client_frame,
    duration,
    figure,
    pid_of,
    raw_websocket,
    running,
)

ATTACKERS = 3
# Why: one read's worth of pongs per attacker over the write buffer's high-water mark, plus
# allocator slack; unbounded, the same flood grew the server by about 1 GB.
RSS_GROWTH_MAX_MB = 40.0
PINGS_PER_WRITE = 10_000  # 60 KB of empty masked pings per write


async def flood(port: int, stop: asyncio.Event, counts: dict[str, int]) -> None:
    """Send pings and never read; reconnect when the server drops the socket."""
    burst = client_frame(OP_PING) * PINGS_PER_WRITE
    while not stop.is_set():
        try:
            _, writer = await raw_websocket(port)
        except (OSError, TimeoutError, AssertionError):
            await asyncio.sleep(0.1)
            continue
        counts["connections"] += 1
        try:
            while not stop.is_set():
                writer.write(burst)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(writer.drain(), 0.5)
                if writer.transport.get_write_buffer_size() > 1 << 20:
                    await asyncio.sleep(0.2)  # the server stopped reading: keep it full
                counts["bursts"] += 1
        except OSError:
            counts["dropped"] += 1
        finally:
            writer.transport.abort()


async def test_ping_flood_without_reading_keeps_memory_bounded(tmp_path) -> None:
    seconds = duration(15, 60)
    with running(tmp_path, "--ping-interval-s", "0", "--tcp-user-timeout-s", "0") as server:
        user = await server.new_user("healthy")
        probe = await Probe.open(user)
        await probe.run(1.0)  # warm up: the baseline RSS includes a served client
        probe.rtts_s.clear()
        stop = asyncio.Event()
        counts = {"connections": 0, "bursts": 0, "dropped": 0}
        async with RssWatch(pid_of(server)).watching() as rss:
            attackers = [
                asyncio.create_task(flood(server.port, stop, counts)) for _ in range(ATTACKERS)
            ]
            await probe.run(seconds)
            stop.set()
            await asyncio.gather(*attackers)
        figure(
            f"ping flood {seconds:.0f} s x{ATTACKERS}: RSS {rss.start_mb:.1f} -> peak"
            f" {rss.peak_mb:.1f} MB (+{rss.growth_mb:.1f}); {counts}; {probe.summary()}"
        )
        assert rss.growth_mb < RSS_GROWTH_MAX_MB
        # Each attacker was dropped (after send_timeout_s, 8 s) and came back at least once.
        assert counts["dropped"] >= ATTACKERS
        probe.assert_healthy()
