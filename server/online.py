"""Who is online in each sphere on this node, and when to tell the others.

A member counts in a sphere once per subscription that holds a role (a non-member reading a
public sphere does not count). The first subscription of a user on this node records the
arrival in the shared ``PresenceDirectory`` and, if it is the first on any node, announces
``presence`` online; the last one leaving does the same for offline, after a grace period so
that a client reconnecting at once does not flap offline and online for everyone else.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping

from protocol import Presence, SphereId, UserId
from server.channel import SphereChannel
from server.presence import PresenceDirectory
from server.tasks import TaskSupervisor

# Why: a client that reconnects within this does not flap offline and online for others.
PRESENCE_GRACE_S = 1.0


class OnlineCounter:
    """Counts members in and out of the hub's channels and announces arrivals and departures.

    ``channels`` is the hub's own map (read, never changed here); ``announce`` delivers a
    ``presence`` frame on this node and tells the other nodes.
    """

    def __init__(
        self,
        directory: PresenceDirectory,
        tasks: TaskSupervisor,
        channels: Mapping[SphereId, SphereChannel],
        announce: Callable[[Presence], Awaitable[None]],
    ) -> None:
        self._directory = directory
        self._tasks = tasks
        self._channels = channels
        self._announce = announce
        self._departures: dict[tuple[SphereId, UserId], asyncio.TimerHandle] = {}

    async def online(self, sphere_id: SphereId) -> set[UserId]:
        """The sphere's members online on any node, as the directory knows them."""
        return await self._directory.online(sphere_id)

    def count_in(self, channel: SphereChannel, user_id: UserId) -> None:
        channel.online[user_id] += 1
        if channel.online[user_id] > 1:
            return
        pending = self._departures.pop((channel.sphere_id, user_id), None)
        if pending is not None:
            pending.cancel()  # back within the grace period: nobody saw them leave
            return
        self._tasks.spawn(self._arrival(channel.sphere_id, user_id), name="presence arrival")

    def count_out(self, channel: SphereChannel, user_id: UserId) -> None:
        channel.online[user_id] -= 1
        if channel.online[user_id] > 0:
            return
        del channel.online[user_id]
        key = (channel.sphere_id, user_id)
        # Coalesce: a reconnect within the grace period announces nothing.
        self._departures[key] = asyncio.get_running_loop().call_later(
            PRESENCE_GRACE_S,
            lambda: self._tasks.spawn(self._departure(*key), name="presence departure"),
        )

    async def _arrival(self, sphere_id: SphereId, user_id: UserId) -> None:
        if await self._directory.arrived(sphere_id, user_id):
            await self._announce(Presence(sphere_id=sphere_id, user_id=user_id, online=True))

    async def _departure(self, sphere_id: SphereId, user_id: UserId) -> None:
        self._departures.pop((sphere_id, user_id), None)
        channel = self._channels.get(sphere_id)
        if channel is not None and channel.online.get(user_id, 0) > 0:
            return
        if await self._directory.left(sphere_id, user_id):
            await self._announce(Presence(sphere_id=sphere_id, user_id=user_id, online=False))
