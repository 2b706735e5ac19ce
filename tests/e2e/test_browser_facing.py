"""What a browser sees over real HTTP: Origin checks, security headers, only the page's files."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
import websockets
from websockets.exceptions import InvalidStatus

from tests.e2e.conftest import start_server
from tests.support import TIMEOUT_S, ServerProcess


async def handshake(server: ServerProcess, origin: str, host: str | None = None) -> int:
    """The HTTP status of a WebSocket handshake sent with ``Origin`` (and ``Host``)."""
    headers = {"Host": host} if host else {}
    try:
        async with asyncio.timeout(TIMEOUT_S):
            ws = await websockets.connect(
                server.ws_url,
                origin=origin,  # type: ignore[arg-type]
                additional_headers=headers,
            )
    except InvalidStatus as refused:
        return refused.response.status_code
    await ws.close()
    return 101


@pytest.fixture
def public_server(tmp_path: Path) -> Iterator[ServerProcess]:
    proc = start_server(
        tmp_path,
        "--public-url",
        "https://chat.example.org",
        "--allowed-origins",
        "https://app.example.org/",
    )
    yield proc
    proc.stop()


async def test_origin_rules_over_a_real_handshake(public_server: ServerProcess) -> None:
    server = public_server
    own = f"127.0.0.1:{server.port}"
    assert await handshake(server, f"http://{own}") == 101  # same origin, loopback
    assert await handshake(server, f"http://{own}/") == 101  # a trailing slash is ignored
    assert await handshake(server, f"https://{own}") == 403  # the scheme differs (ws)
    assert await handshake(server, "https://chat.example.org") == 101  # --public-url
    assert await handshake(server, "https://app.example.org") == 101  # configured with a /
    assert await handshake(server, "https://app.example.org/") == 101
    # DNS rebinding: the attacker's name resolves to this server; Host and Origin agree.
    rebound = f"rebind.attacker.example:{server.port}"
    assert await handshake(server, f"http://{rebound}", host=rebound) == 403
    assert await handshake(server, "null") == 403


async def test_api_and_page_headers(server: ServerProcess) -> None:
    user = await server.new_user()
    async with server.http(user.token) as http:
        for path in ("/api/v1/me", "/api/v1/spheres", "/api/v1/nowhere", "/healthz", "/metrics"):
            answer = await http.get(path)
            assert answer.headers["x-content-type-options"] == "nosniff", path
            assert answer.headers["cache-control"] == "no-store", path
        answer = await http.get("/api/v1/spheres/s_none/members")
        assert answer.status_code == 404 and answer.headers["cache-control"] == "no-store"
        page = await http.get("/")
        assert page.status_code == 200 and "text/html" in page.headers["content-type"]
        policy = page.headers["content-security-policy"]
        assert "form-action 'none'" in policy and "frame-ancestors 'none'" in policy
        assert page.headers["x-content-type-options"] == "nosniff"
        for asset in ("/app.js", "/cloison.js", "/style.css", "/index.html"):
            assert (await http.get(asset)).status_code == 200, asset
        for hidden in ("/README.md", "/readme.md", "/../README.md", "/web/README.md", "/.git"):
            assert (await http.get(hidden)).status_code == 404, hidden
