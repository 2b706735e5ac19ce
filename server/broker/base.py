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

    def on_broker_reset(self) -> None:
        """Frames may have been lost (the broker reconnected); must not block."""
        ...


class Broker(Protocol):
    @property
    def healthy(self) -> bool:
        """False while the broker cannot reach its service."""
        ...

    @property
    def published(self) -> int:
        """Frames handed to the service."""
        ...

    @property
    def dropped(self) -> int:
        """Frames lost to other nodes (service down or too slow)."""
        ...

    @property
    def resent(self) -> int:
        """Dropped frames sent again (each channel's newest), so other nodes see the gap."""
        ...

    @property
    def resets(self) -> int:
        """Reconnects after which the hub caught up from the store."""
        ...

    async def start(self, handler: BrokerHandler) -> None: ...

    async def subscribe(self, sphere_id: SphereId) -> None:
        """Start receiving a sphere's channel (called when its first local member arrives)."""
        ...

    async def unsubscribe(self, sphere_id: SphereId) -> None:
        """Stop receiving a sphere's channel (called when its last local member leaves)."""
        ...

    async def publish(self, sphere_id: SphereId, envelope: bytes) -> None:
        """Send an encoded frame to the other nodes subscribed to the sphere (at most once).

        Never blocks on the network and never raises for an unreachable service: the frame
        is then lost to other nodes, which catch up from the store.
        """
        ...

    async def aclose(self) -> None: ...
