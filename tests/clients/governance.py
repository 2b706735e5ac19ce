"""Helpers shared by the SDK governance tests: SDK clients and small sphere set-ups."""

from __future__ import annotations

from clients import Client
from clients._reconnect import Backoff
from protocol import Privacy, SphereId
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
