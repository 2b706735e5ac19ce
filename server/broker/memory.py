"""The embedded broker: one process, so no other node to tell.

The hub delivers every frame to this node's subscribers itself before it calls ``publish``;
with a single process there is nobody else to reach, so publishing does nothing.
"""

from __future__ import annotations

from protocol import SphereId
from server.broker.base import BrokerHandler


class MemoryBroker:
    healthy = True
    published = dropped = resent = resets = 0

    async def start(self, handler: BrokerHandler) -> None:
        return None

    async def subscribe(self, sphere_id: SphereId) -> None:
        return None

    async def unsubscribe(self, sphere_id: SphereId) -> None:
        return None

    async def publish(self, sphere_id: SphereId, envelope: bytes) -> None:
        return None

    async def aclose(self) -> None:
        return None
