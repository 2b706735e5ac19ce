"""The publish queue both Redis brokers share: bounded, ordered, and honest about drops.

A publish never waits on the network: the frame joins a bounded FIFO that one publisher task
drains in batches. When the queue is full or Redis is unreachable, frames are dropped and
counted (pub/sub is at most once anyway), and the newest dropped frame of each channel is
kept and sent again: after a reconnect for frames lost to an outage, and as soon as the queue
has room again (half empty) for frames refused because it was full. Other nodes then see the
gap, even if the sphere stays quiet afterwards, and read whatever they missed from the store.
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
        self._lost_last: dict[bytes, bytes] = {}  # lost to an outage: re-sent on reconnect
        self._overflow_last: dict[bytes, bytes] = {}  # refused by a full queue: re-sent on room
        self.dropped = 0
        self.resent = 0  # dropped frames queued again (each channel's newest)

    def put(self, channel: bytes, envelope: bytes) -> None:
        if len(self._items) >= self._max_items:
            self.dropped += 1
            self._overflow_last[channel] = envelope
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
        self._requeue(lost)

    def _requeue(self, frames: dict[bytes, bytes]) -> None:
        for channel, envelope in frames.items():
            self.resent += 1
            self.put(channel, envelope)

    async def next_batch(self, max_items: int = PUBLISH_BATCH_MAX) -> list[Frame]:
        """The oldest frames (at most ``max_items``), once there are any."""
        if self._overflow_last and len(self._items) <= self._max_items // 2:
            overflowed, self._overflow_last = self._overflow_last, {}
            self._requeue(overflowed)
        while not self._items:
            self._ready.clear()
            await self._ready.wait()
        return [self._items.popleft() for _ in range(min(max_items, len(self._items)))]
