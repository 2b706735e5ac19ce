"""What the sign-in tests share: enrolling a user with a password, signing in, organisations
with policies, closing a socket within a bound."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import time
from typing import Any

import orjson
from websockets.exceptions import ConnectionClosed

from storage import open_store
from tests.support import Client, ServerProcess

# A session poll (0.5 s) and one read, on a machine shared by several test runs.
CLOSE_BOUND_S = 3.0


def enrol(server: ServerProcess, name: str, email: str, password: str | None) -> dict[str, str]:
    """``cloison user create NAME --email E [--password-stdin]``; its user id and token."""
    where = ["--store-url", server.store_url] if server.store_url else []
    args = ["user", "create", name, "--email", email]
    if password is not None:
        args.append("--password-stdin")
    out = subprocess.run(
        [sys.executable, "-m", "server", *args, "--data-dir", str(server.data_dir), *where],
        input=(password or "") + "\n",
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    found = dict(re.findall(r"^(user_id|token):\s+(\S+)$", out, re.M))
    assert set(found) == {"user_id", "token"}, out
    return found


async def sign_in(server: ServerProcess, email: str, password: str) -> dict[str, Any]:
    async with server.http() as http:
        reply = await http.post(
            "/api/v1/auth/password", json={"email": email, "password": password}
        )
    assert reply.status_code == 200, reply.text
    return dict(reply.json())


async def closed_within(client: Client, bound_s: float = CLOSE_BOUND_S) -> tuple[int, str, float]:
    """Wait for the server to close the socket: its close code, reason and the wait."""
    started = time.monotonic()
    try:
        async with asyncio.timeout(bound_s):
            while True:
                await client.ws.recv()
    except ConnectionClosed as closed:
        assert closed.rcvd is not None
        return closed.rcvd.code, closed.rcvd.reason, time.monotonic() - started
    raise AssertionError("unreachable")


async def org_with_domains(store_url: str, org_id: str, domains: list[str]) -> None:
    """An organisation whose ``email_domains`` policy opens self-registration to ``domains``.

    The policy is written to the row directly: setting policies is the organisations'
    governance, not sign-in's.
    """
    store = await open_store(store_url)
    try:
        await store.create_org(
            org_id.title(), now_ms=int(time.time() * 1000), actor_id="cli", org_id=org_id
        )  # type: ignore[arg-type]
        policies = orjson.dumps({"email_domains": domains}).decode()
        async with store._writing() as db:  # type: ignore[attr-defined]
            await db.fetch(
                "UPDATE organisations SET policies = ? WHERE org_id = ?", policies, org_id
            )
    finally:
        await store.aclose()


def store_url(server: ServerProcess) -> str:
    return server.store_url or f"sqlite:///{server.data_dir / 'cloison.sqlite3'}"
