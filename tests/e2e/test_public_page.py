"""The read-only page of a public sphere (``--public-pages``): readable without an account,
escaped, within the history promise, and no oracle of which other ids exist."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import start_server
from tests.support import ServerProcess, User


@pytest.fixture
def pages_server(tmp_path: Path) -> Iterator[ServerProcess]:
    proc = start_server(tmp_path, "--public-pages")
    yield proc
    proc.stop()


async def post(owner: User, sphere_id: str, message_id: str, body: str) -> int:
    reply = await owner.api(
        "POST", f"/spheres/{sphere_id}/messages", json={"message_id": message_id, "body": body}
    )
    assert reply.status_code == 201, reply.text
    return int(reply.json()["offset"])


async def test_a_public_sphere_is_read_without_an_account(pages_server: ServerProcess) -> None:
    owner = await pages_server.new_user("owner")
    sphere_id = await owner.create_sphere("Town <hall>", privacy="public")
    await post(owner, sphere_id, "m1", "Hello <script>alert(1)</script>\nsecond line")
    deleted = await post(owner, sphere_id, "m2", "a secret slip")
    reply = await owner.api(
        "DELETE", f"/spheres/{sphere_id}/messages/{deleted}", json={"message_id": "d1"}
    )
    assert reply.status_code == 200, reply.text
    async with httpx.AsyncClient(base_url=pages_server.http_url) as http:
        page = await http.get(f"/public/{sphere_id}")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in page.headers["content-security-policy"]
    assert page.headers["cache-control"] == "no-store"
    text = page.text
    assert "<h1>Town &lt;hall&gt;</h1>" in text
    assert "Hello &lt;script&gt;alert(1)&lt;/script&gt;<br>second line" in text
    assert "<script" not in text
    assert "a secret slip" not in text and "<em>deleted</em>" in text
    assert "<strong>owner</strong>" in text


async def test_other_spheres_answer_like_missing_ones(pages_server: ServerProcess) -> None:
    owner = await pages_server.new_user("owner")
    private = await owner.create_sphere("hidden")
    open_sphere = await owner.create_sphere("lobby", privacy="open")
    await post(owner, private, "m1", "members only")
    async with httpx.AsyncClient(base_url=pages_server.http_url) as http:
        answers = [await http.get(f"/public/{sid}") for sid in (private, open_sphere, "s_nope")]
    assert {a.status_code for a in answers} == {404}
    assert len({a.text for a in answers}) == 1
    assert all("members only" not in a.text for a in answers)


async def test_pages_are_off_unless_enabled(server: ServerProcess) -> None:
    owner = await server.new_user("owner")
    sphere_id = await owner.create_sphere("town", privacy="public")
    async with httpx.AsyncClient(base_url=server.http_url) as http:
        page = await http.get(f"/public/{sphere_id}")
    assert page.status_code == 404


async def test_a_crawler_is_slowed_down(pages_server: ServerProcess) -> None:
    owner = await pages_server.new_user("owner")
    sphere_id = await owner.create_sphere("town", privacy="public")
    async with httpx.AsyncClient(base_url=pages_server.http_url) as http:
        codes = [(await http.get(f"/public/{sphere_id}")).status_code for _ in range(40)]
    assert codes[0] == 200
    assert 429 in codes
