"""Sign-in across gateways (PostgreSQL + Redis): reuse of a refresh token on one gateway closes
the session's sockets on another; the sign-in limits are shared by every gateway."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.conftest import FAST
from tests.e2e.test_cluster import gateways
from tests.services import REDIS_URL, require_shared_redis
from tests.signin.helpers import CLOSE_BOUND_S, closed_within, enrol, sign_in
from tests.support import Client

pytestmark = [pytest.mark.redis, pytest.mark.postgres, pytest.mark.slow]

PASSWORD = "correct horse battery"


async def test_refresh_reuse_on_one_gateway_closes_the_socket_on_another(tmp_path: Path) -> None:
    require_shared_redis()
    async with gateways(tmp_path, 2, redis_url=REDIS_URL) as nodes:
        enrol(nodes[0], "ada", "ada@example.org", PASSWORD)
        first = await sign_in(nodes[0], "ada@example.org", PASSWORD)
        on_1 = await Client.connect(nodes[1].ws_url, first["access_token"])
        async with nodes[1].http() as http:
            rotated = await http.post(
                "/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]}
            )
            assert rotated.status_code == 200, rotated.text
        # The rotation ended nothing: the socket on node 1 is the session's, and it lives.
        async with nodes[0].http() as http:
            reused = await http.post(
                "/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]}
            )
            assert reused.status_code == 401
        code, reason, waited = await closed_within(on_1, CLOSE_BOUND_S)
        assert (code, reason) == (4500, "session ended")
        print(f"reuse on node 0 -> socket on node 1 closed after {waited:.3f} s")  # noqa: T201
        async with nodes[1].http(rotated.json()["access_token"]) as http:
            assert (await http.get("/api/v1/me")).status_code == 401


async def test_the_sign_in_limit_is_shared_by_the_gateways(tmp_path: Path) -> None:
    require_shared_redis()
    limits = [*FAST, "--signin-account-burst", "4", "--signin-account-per-min", "1"]
    async with gateways(tmp_path, 2, redis_url=REDIS_URL, limits=limits) as nodes:
        enrol(nodes[0], "bea", "bea@example.org", PASSWORD)
        statuses = []
        for attempt in range(6):
            async with nodes[attempt % 2].http() as http:
                reply = await http.post(
                    "/api/v1/auth/password",
                    json={"email": "bea@example.org", "password": "wrong password"},
                )
                statuses.append(reply.status_code)
        # Four attempts in all, whichever gateway took them.
        assert statuses == [401, 401, 401, 401, 429, 429]
