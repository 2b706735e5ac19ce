"""The publish queue both Redis brokers share: bounded, ordered, and honest about drops.

A publish never waits on the network: the frame joins a bounded FIFO that one publisher task
drains in batches. When the queue is full or Redis is unreachable, frames are dropped and
counted (pub/sub is at most once anyway), and the newest dropped frame of each channel is
kept: sent again once Redis is back, it shows the other nodes a gap, and they read whatever
they missed from the store.
"""

from __future__ import annotations

import asyncio
from collections import deque

# Why: a queue this long is seconds of traffic; beyond it Redis is not keeping up, and
# dropping (nodes repair from the store) beats holding memory without bound.
PUBLISH_QUEUE_MAX = 100_000
# Why: one pipeline of this many PUBLISH commands is a few hundred KiB at most.
PUBLISH_BATCH_MAX = 512

Frame = tuple[bytes, bytes]  # (channel, envelope)


class Outbox:
    def __init__(self, max_items: int = PUBLISH_QUEUE_MAX) -> None:
        self._items: deque[Frame] = deque()
        self._max_items = max_items
        self._ready = asyncio.Event()
        self._lost_last: dict[bytes, bytes] = {}
        self.dropped = 0

    def put(self, channel: bytes, envelope: bytes) -> None:
        if len(self._items) >= self._max_items:
            self.drop([(channel, envelope)])
            return
        self._items.append((channel, envelope))
        self._ready.set()

    def drop(self, frames: list[Frame]) -> None:
        """Count frames that will not reach Redis, remembering each channel's newest."""
        self.dropped += len(frames)
        for channel, envelope in frames:
            self._lost_last[channel] = envelope

    def requeue_lost(self) -> None:
        """After a recovery: queue each channel's newest dropped frame again."""
        lost, self._lost_last = self._lost_last, {}
        for channel, envelope in lost.items():
            self.put(channel, envelope)

    async def next_batch(self, max_items: int = PUBLISH_BATCH_MAX) -> list[Frame]:
        """The oldest frames (at most ``max_items``), once there are any."""
        while not self._items:
            self._ready.clear()
            await self._ready.wait()
        return [self._items.popleft() for _ in range(min(max_items, len(self._items)))]
