"""The Broker carries encoded frames between gateway processes, one channel per sphere.

Delivery through a broker is at most once: the store stays the source of truth, and the hub
repairs any gap from it. A broker never orders, stores or authorizes anything.
"""

from __future__ import annotations

from typing import Protocol

from protocol import SphereId


class BrokerHandler(Protocol):
    def on_publication(self, sphere_id: SphereId, envelope: bytes) -> None:
        """A frame arrived for a sphere this node subscribes to; must not block."""
        ...


class Broker(Protocol):
    async def start(self, handler: BrokerHandler) -> None: ...

    async def subscribe(self, sphere_id: SphereId) -> None:
        """Start receiving a sphere's channel (called when its first local member arrives)."""
        ...

    async def unsubscribe(self, sphere_id: SphereId) -> None:
        """Stop receiving a sphere's channel (called when its last local member leaves)."""
        ...

    async def publish(self, sphere_id: SphereId, envelope: bytes) -> None:
        """Send an encoded frame to every node subscribed to the sphere (at most once)."""
        ...

    async def aclose(self) -> None: ...
