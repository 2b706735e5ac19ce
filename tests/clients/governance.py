"""Helpers shared by the SDK governance tests: SDK clients and small sphere set-ups."""

from __future__ import annotations

import asyncio
from typing import Any

from clients import Client
from clients._reconnect import Backoff
from protocol import Message, Privacy, SphereId
from tests.clients import TIMEOUT_S
from tests.support import ServerProcess, User

# Reconnect quickly in tests; the defaults are for real networks.
FAST_BACKOFF = Backoff(base_s=0.05, cap_s=0.5)


def sdk(server: ServerProcess, user: User) -> Client:
    return Client(server.ws_url, user.token, backoff=FAST_BACKOFF)


async def owned(
    server: ServerProcess, *names: str, privacy: Privacy = Privacy.PRIVATE
) -> tuple[list[User], SphereId]:
    """Users with ``names``; the first owns a sphere of ``privacy`` the others are members of."""
    users = [await server.new_user(name) for name in names]
    sphere_id = SphereId(await users[0].create_sphere("team", privacy))
    for user in users[1:]:
        await users[0].add(sphere_id, user)
    return users, sphere_id


async def next_message(client: Client, **match: Any) -> Message:
    """The next ``Message`` whose fields equal ``match`` (``kind`` included); earlier events
    are dropped."""
    async with asyncio.timeout(TIMEOUT_S):
        async for event in client.events():
            if isinstance(event, Message) and all(getattr(event, k) == v for k, v in match.items()):
                return event
    raise AssertionError("the event stream ended before the message")
