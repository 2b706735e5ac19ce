"""The publish queue of the Redis brokers: bounded, ordered, and drops that show as gaps."""

from __future__ import annotations

import asyncio

from server.broker.outbox import Outbox

TIMEOUT_S = 5.0


async def test_frames_leave_in_order_in_batches() -> None:
    outbox = Outbox(max_items=10)
    for n in range(5):
        outbox.put(b"a", b"%d" % n)
    async with asyncio.timeout(TIMEOUT_S):
        assert await outbox.next_batch(3) == [(b"a", b"0"), (b"a", b"1"), (b"a", b"2")]
        assert await outbox.next_batch(3) == [(b"a", b"3"), (b"a", b"4")]
    assert outbox.dropped == outbox.resent == 0


async def test_overflow_resends_each_channels_newest_dropped_frame_once_there_is_room() -> None:
    outbox = Outbox(max_items=4)
    for n in range(4):
        outbox.put(b"a", b"a%d" % n)
    for n in range(3):  # refused: the queue is full
        outbox.put(b"a", b"late-a%d" % n)
        outbox.put(b"b", b"late-b%d" % n)
    assert outbox.dropped == 6
    async with asyncio.timeout(TIMEOUT_S):
        assert await outbox.next_batch(4) == [(b"a", b"a%d" % n) for n in range(4)]
        # Room again: the newest refused frame of each channel goes out, so that other nodes
        # notice the gap even if nothing more is published there, and repair from the store.
        assert await outbox.next_batch(4) == [(b"a", b"late-a2"), (b"b", b"late-b2")]
    assert outbox.resent == 2


async def test_frames_lost_to_an_outage_are_resent_after_the_reconnect_only() -> None:
    outbox = Outbox(max_items=10)
    outbox.drop([(b"a", b"1"), (b"a", b"2"), (b"b", b"3")])
    outbox.put(b"a", b"4")
    async with asyncio.timeout(TIMEOUT_S):
        assert await outbox.next_batch() == [(b"a", b"4")]  # not before the reconnect
        outbox.requeue_lost()
        assert await outbox.next_batch() == [(b"a", b"2"), (b"b", b"3")]
    assert (outbox.dropped, outbox.resent) == (3, 2)
