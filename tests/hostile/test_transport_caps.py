"""Per-address caps: on open sockets, and on sockets not yet past the ``auth`` frame.

Unbounded, 5,000 sockets from one address were all accepted. Over a cap, a new socket is
answered ``503`` before its upgrade; loopback (a local reverse proxy) is exempt by default.
"""

from __future__ import annotations

import asyncio

import pytest
from websockets.exceptions import InvalidStatus

from protocol import Ping, Pong
from tests.hostile._attack import ATTACKER, Probe, figure, running
from tests.support import Client

PER_ADDRESS = 12
UNAUTHENTICATED_PER_ADDRESS = 5


async def refused_status(url: str, source: str, token: str | None) -> int:
    with pytest.raises(InvalidStatus) as refused:
        await Client.connect(url, token, local_addr=(source, 0))
    return refused.value.response.status_code


async def test_unauthenticated_sockets_are_capped_per_address(tmp_path) -> None:
    with running(
        tmp_path, "--max-unauthenticated-per-address", str(UNAUTHENTICATED_PER_ADDRESS)
    ) as server:
        user = await server.new_user("healthy")
        probe = await Probe.open(user)
        # Upgraded, never authenticated: they count until their auth timeout.
        idle = [
            await Client.connect(server.ws_url, None, local_addr=(ATTACKER, 0))
            for _ in range(UNAUTHENTICATED_PER_ADDRESS)
        ]
        assert await refused_status(server.ws_url, ATTACKER, None) == 503
        # Nor can that address get in with a valid token while its cap is full.
        assert await refused_status(server.ws_url, ATTACKER, user.token) == 503
        # Another address, and loopback's own 127.0.0.1, are not affected.
        await Client.connect(server.ws_url, user.token, local_addr=("127.0.0.3", 0))
        await Client.connect(server.ws_url, user.token)
        await probe.run(0.5)
        # One closes: there is room for one again, and an authenticated one stops counting.
        await idle.pop().close()
        await asyncio.sleep(0.3)
        await Client.connect(server.ws_url, user.token, local_addr=(ATTACKER, 0))
        await Client.connect(server.ws_url, None, local_addr=(ATTACKER, 0))
        assert await refused_status(server.ws_url, ATTACKER, None) == 503
        probe.assert_healthy()
        async with server.http() as http:
            metrics = (await http.get("/metrics")).text
        assert "cloison_refused_sockets 3.0" in metrics
        assert "cloison_unauthenticated_sockets" in metrics


async def test_open_sockets_are_capped_per_address(tmp_path) -> None:
    with running(tmp_path, "--max-connections-per-address", str(PER_ADDRESS)) as server:
        user = await server.new_user("many")
        # Authenticated connections count toward the per-address cap too.
        for _ in range(PER_ADDRESS):
            await Client.connect(server.ws_url, user.token, local_addr=(ATTACKER, 0))
        assert await refused_status(server.ws_url, ATTACKER, user.token) == 503
        async with server.http() as http:
            reply = await http.get("/healthz")  # from 127.0.0.1: exempt
            assert reply.status_code == 200
        figure(f"per-address cap {PER_ADDRESS}: connection {PER_ADDRESS + 1} answered 503")


async def test_unauthenticated_sockets_are_capped_globally(tmp_path) -> None:
    with running(tmp_path, "--max-unauthenticated", "3") as server:
        user = await server.new_user("healthy")
        authenticated = await user.connect()  # authenticated sockets do not count
        idle = [await Client.connect(server.ws_url, None) for _ in range(3)]
        assert await refused_status(server.ws_url, "127.0.0.1", user.token) == 503
        assert len(idle) == 3
        reply = await authenticated.request(Ping(ref=authenticated.ref()))
        assert isinstance(reply, Pong)
