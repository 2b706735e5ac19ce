"""The embedded broker: fan-out inside one process, no other service needed."""

from __future__ import annotations

from protocol import SphereId
from server.broker.base import BrokerHandler


class MemoryBroker:
    def __init__(self) -> None:
        self._handler: BrokerHandler | None = None
        self._subscribed: set[SphereId] = set()

    async def start(self, handler: BrokerHandler) -> None:
        self._handler = handler

    async def subscribe(self, sphere_id: SphereId) -> None:
        self._subscribed.add(sphere_id)

    async def unsubscribe(self, sphere_id: SphereId) -> None:
        self._subscribed.discard(sphere_id)

    async def publish(self, sphere_id: SphereId, envelope: bytes) -> None:
        if self._handler is not None and sphere_id in self._subscribed:
            self._handler.on_publication(sphere_id, envelope)

    async def aclose(self) -> None:
        self._handler = None
        self._subscribed.clear()
