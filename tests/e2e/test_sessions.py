"""Sessions on one node: listing, revoking and closing sessions, disabling users, profiles, the
rules on who may issue a credential, the audit log, the per-user connection cap and expiry.

Revocation across nodes, and the race of revoking while sockets authenticate, are in
``test_cluster_sessions.py``.
"""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
from websockets.exceptions import ConnectionClosed

from protocol import Auth, ErrorReply, Ping, Pong, UserId, Welcome
from server.auth import issue_token
from storage import TokenKind, open_store
from tests.e2e.conftest import start_server
from tests.support import Client, ServerProcess, User, pair

# Generous: the watcher polls every 0.5 s; the machine is shared and loaded.
CLOSE_BOUND_S = 5.0


async def closed_with(client: Client, timeout_s: float = CLOSE_BOUND_S) -> tuple[int, str]:
    """Read until the server closes the connection; return the close code and reason."""
    try:
        async with asyncio.timeout(timeout_s):
            while True:
                await client.ws.recv()
    except ConnectionClosed as closed:
        assert closed.rcvd is not None
        return closed.rcvd.code, closed.rcvd.reason
    raise AssertionError("unreachable")


def cli(server: ServerProcess, *args: str) -> subprocess.CompletedProcess[str]:
    """``cloison ARGS`` against the server's store; the exit status is the caller's to check."""
    where = ["--store-url", server.store_url] if server.store_url else []
    return subprocess.run(
        [sys.executable, "-m", "server", *args, "--data-dir", str(server.data_dir), *where],
        capture_output=True,
        text=True,
        timeout=60,
    )


def token_id(user: User) -> str:
    return user.token.split("_")[1]


async def admin_api(server: ServerProcess, method: str, path: str, **kw: Any) -> httpx.Response:
    async with server.http(server.admin_token) as http:
        return await http.request(method, "/api/v1" + path, **kw)


async def test_list_issue_rotate_and_revoke_own_tokens(server: ServerProcess) -> None:
    alice = await server.new_user("alice")
    listed = await alice.api("GET", "/me/tokens")
    assert listed.status_code == 200
    (first,) = listed.json()["tokens"]
    assert first["token_id"] == token_id(alice) and first["current"] is True
    assert first["kind"] == "session"
    # Issued by the administrator at enrolment: shown to the user.
    assert first["issued_by_name"] == "admin"

    made = await alice.api("POST", "/me/tokens", json={"kind": "api", "label": "laptop script"})
    assert made.status_code == 201, made.text
    api_token = made.json()["token"]
    assert made.json()["token_kind"] == "api"
    as_script = User(server, alice.user_id, "alice", api_token)
    tokens = (await as_script.api("GET", "/me/tokens")).json()["tokens"]
    assert [(t["label"], t["current"], t["issued_by"]) for t in tokens] == [
        ("laptop script", True, alice.user_id),
        (None, False, first["issued_by"]),
    ]

    # Rotation: a new session token, and the current one revoked in the same call.
    rotated = await alice.api("POST", "/me/tokens", json={"revoke_current": True})
    assert rotated.status_code == 201
    assert (await alice.api("GET", "/me")).status_code == 401
    alice = User(server, alice.user_id, "alice", rotated.json()["token"])

    # Another user's token is not found, whatever its id.
    bob = await server.new_user("bob")
    reply = await alice.api("DELETE", f"/me/tokens/{token_id(bob)}")
    assert reply.status_code == 404 and reply.json()["code"] == "not_found"
    assert (await bob.api("GET", "/me")).status_code == 200

    live = await as_script.connect()
    assert (await alice.api("DELETE", f"/me/tokens/{api_token.split('_')[1]}")).status_code == 200
    assert await closed_with(live) == (4500, "token revoked")
    assert (await alice.api("DELETE", f"/me/tokens/{api_token.split('_')[1]}")).status_code == 404


async def test_close_all_sessions_except_the_current_one(server: ServerProcess) -> None:
    alice = await server.new_user("alice")
    others = []
    for n in range(3):
        made = await alice.api("POST", "/me/tokens", json={"label": f"device {n}"})
        others.append(User(server, alice.user_id, "alice", made.json()["token"]))
    sockets = [await other.connect() for other in others]
    mine = await alice.connect()
    reply = await alice.api("DELETE", "/me/tokens", params={"keep_current": "true"})
    assert reply.status_code == 200
    assert sorted(reply.json()["revoked"]) == sorted(token_id(o) for o in others)
    for socket in sockets:
        assert (await closed_with(socket))[0] == 4500
    assert isinstance(await mine.request(Ping(ref="p")), Pong)  # still served
    assert [t["current"] for t in (await alice.api("GET", "/me/tokens")).json()["tokens"]] == [True]
    # Without keep_current, the caller's own token goes too.
    reply = await alice.api("DELETE", "/me/tokens")
    assert reply.json()["revoked"] == [token_id(alice)]
    assert (await closed_with(mine))[0] == 4500


async def test_token_lists_are_paged(server: ServerProcess) -> None:
    alice = await server.new_user("alice")
    for n in range(4):
        assert (await alice.api("POST", "/me/tokens", json={"label": f"t{n}"})).status_code == 201
    seen: list[str] = []
    cursor = None
    for _ in range(5):
        params = {"limit": "2", **({"cursor": cursor} if cursor else {})}
        page = (await alice.api("GET", "/me/tokens", params=params)).json()
        seen += [t["token_id"] for t in page["tokens"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == 5 and len(set(seen)) == 5
    for bad in ({"limit": "0"}, {"limit": "101"}, {"limit": "x"}, {"cursor": "nope"}):
        reply = await alice.api("GET", "/me/tokens", params=bad)
        assert reply.status_code == 400 and reply.json()["code"] == "bad_frame", bad


async def test_disable_and_enable_a_user_over_http(server: ServerProcess) -> None:
    alice, bob, _ = await pair(server)
    live = await bob.connect()
    reply = await admin_api(server, "POST", f"/admin/users/{bob.user_id}/disable")
    assert reply.status_code == 200 and reply.json()["disabled"] is True
    assert await closed_with(live) == (4500, "user disabled")
    assert (await bob.api("GET", "/me")).status_code == 401
    refused = await Client.connect(server.ws_url, None)
    await refused.send(Auth(token=bob.token, protocol=1))
    assert isinstance(await refused.recv(), ErrorReply)
    assert (await closed_with(refused))[0] == 4500
    # Enabling restores the same tokens.
    reply = await admin_api(server, "POST", f"/admin/users/{bob.user_id}/enable")
    assert reply.json()["disabled"] is False
    assert (await bob.api("GET", "/me")).status_code == 200
    await bob.connect()
    # Only administrators; nobody disables themselves; an unknown user is not found.
    assert (await alice.api("POST", f"/admin/users/{bob.user_id}/disable")).status_code == 403
    admin_id = (await admin_api(server, "GET", "/me")).json()["user_id"]
    assert (await admin_api(server, "POST", f"/admin/users/{admin_id}/disable")).status_code == 409
    assert (await admin_api(server, "POST", "/admin/users/u_nobody/disable")).status_code == 404
    users = (await admin_api(server, "GET", "/admin/users", params={"limit": "100"})).json()
    assert {u["name"] for u in users["users"]} == {"admin", "alice", "bob"}


async def test_administrators_close_a_users_sessions(server: ServerProcess) -> None:
    alice = await server.new_user("alice")
    live = await alice.connect()
    listed = await admin_api(server, "GET", f"/admin/users/{alice.user_id}/tokens")
    assert [t["token_id"] for t in listed.json()["tokens"]] == [token_id(alice)]
    reply = await admin_api(server, "DELETE", f"/admin/users/{alice.user_id}/tokens")
    assert reply.json() == {"revoked": [token_id(alice)]}
    assert (await closed_with(live))[0] == 4500
    # A user cannot list someone else's tokens.
    bob = await server.new_user("bob")
    assert (await bob.api("GET", f"/admin/users/{alice.user_id}/tokens")).status_code == 403


async def test_no_silent_administrator_credentials(server: ServerProcess) -> None:
    alice, bob, sphere_id = await pair(server)
    newcomer = await server.new_user("newcomer")
    helper = await server.new_user("helper", bot=True)
    await alice.add(sphere_id, helper)
    # A human who belongs to a sphere: refused, and told how to get one.
    reply = await admin_api(server, "POST", "/admin/tokens", json={"user_id": bob.user_id})
    assert reply.status_code == 403
    assert "/api/v1/me/tokens" in reply.json()["message"]
    refused = cli(server, "token", "create", bob.user_id)
    assert refused.returncode == 1 and "only they can create tokens" in refused.stderr
    assert [t["token_id"] for t in (await bob.api("GET", "/me/tokens")).json()["tokens"]] == [
        token_id(bob)
    ]
    # A bot, and a human in no sphere yet: issued, audited, shown in their own list.
    for user in (helper, newcomer):
        reply = await admin_api(server, "POST", "/admin/tokens", json={"user_id": user.user_id})
        assert reply.status_code == 201, reply.text
    issued = cli(server, "token", "create", newcomer.user_id, "--label", "re-sent")
    assert issued.returncode == 0, issued.stderr
    tokens = (await newcomer.api("GET", "/me/tokens")).json()["tokens"]
    assert sorted((t["issued_by_name"] or t["issued_by"]) for t in tokens) == [
        "admin",
        "admin",
        "cli",
    ]
    assert (await helper.api("GET", "/me/tokens")).json()["tokens"][0]["kind"] == "api"
    audit = (await admin_api(server, "GET", "/admin/audit", params={"limit": "100"})).json()
    issues = [
        (e["action"], e["user_id"]) for e in audit["entries"] if e["action"] == "token_issued"
    ]
    assert issues.count(("token_issued", newcomer.user_id)) == 3  # enrolment, HTTP, CLI
    assert issues.count(("token_issued", helper.user_id)) == 2
    assert ("token_issued", bob.user_id) in issues  # bob's enrolment only
    assert issues.count(("token_issued", bob.user_id)) == 1
    listed = cli(server, "user", "audit", "--limit", "100")
    assert listed.returncode == 0 and "\tcli\ttoken_issued\t" + newcomer.user_id in listed.stdout
    # Ordinary users see no audit log and issue nothing for others.
    assert (await alice.api("GET", "/admin/audit")).status_code == 403
    reply = await alice.api("POST", "/admin/tokens", json={"user_id": newcomer.user_id})
    assert reply.status_code == 403


async def test_profiles_rename_and_validation(server: ServerProcess) -> None:
    alice = await server.new_user("alice")
    reply = await alice.api("PATCH", "/me", json={"name": "  Alice Martin  "})
    assert reply.status_code == 200 and reply.json()["name"] == "Alice Martin"
    assert (await alice.connect()).welcome.name == "Alice Martin"  # type: ignore[union-attr]
    for bad in ("", "   ", "x" * 101, "bad\nname", "tab\there", "rtl\u202eoverride", 7):
        reply = await alice.api("PATCH", "/me", json={"name": bad})
        assert reply.status_code == 400 and reply.json()["code"] == "bad_frame", bad
        reply = await admin_api(server, "POST", "/admin/users", json={"name": bad})
        assert reply.status_code == 400, bad
    assert (await alice.api("PATCH", "/me", json={"nom": "x"})).status_code == 400
    assert (await alice.api("GET", "/me")).json()["name"] == "Alice Martin"
    assert cli(server, "user", "create", "").returncode == 1
    assert cli(server, "user", "create", " \x07 ").returncode == 1
    renamed = cli(server, "user", "rename", alice.user_id, "Alice M.")
    assert renamed.returncode == 0, renamed.stderr
    assert (await alice.api("GET", "/me")).json()["name"] == "Alice M."


async def test_cli_revoke_disable_and_close_all_reach_live_sockets(server: ServerProcess) -> None:
    alice = await server.new_user("alice")
    bob = await server.new_user("bob")
    carol = await server.new_user("carol")
    a, b, c = await alice.connect(), await bob.connect(), await carol.connect()

    out = cli(server, "token", "list", alice.user_id)
    assert out.returncode == 0 and token_id(alice) in out.stdout and "issued by admin" in out.stdout
    started = time.monotonic()
    assert cli(server, "token", "revoke", alice.token).returncode == 0
    assert await closed_with(a) == (4500, "token revoked")
    assert cli(server, "token", "revoke", alice.token).returncode == 1  # already revoked

    assert cli(server, "user", "disable", bob.user_id).returncode == 0
    assert await closed_with(b) == (4500, "user disabled")
    listed = cli(server, "user", "list")
    assert re.search(rf"{bob.user_id}\thuman\tdisabled\tbob", listed.stdout), listed.stdout
    assert cli(server, "user", "enable", bob.user_id).returncode == 0
    await bob.connect()

    assert cli(server, "token", "revoke-all", carol.user_id).returncode == 0
    assert (await closed_with(c))[0] == 4500
    # Each of the three took one command start (about a second) plus at most one poll.
    assert time.monotonic() - started < 60
    assert cli(server, "user", "disable", "u_nobody").returncode == 1
    async with server.http() as http:
        metrics = (await http.get("/metrics")).text
    ended = re.search(r"^cloison_sessions_ended (\S+)$", metrics, re.MULTILINE)
    assert ended is not None and float(ended.group(1)) >= 3


async def test_per_user_connection_cap(tmp_path: Path) -> None:
    server = start_server(tmp_path, "--max-connections-per-user", "3")
    try:
        alice = await server.new_user("alice")
        bob = await server.new_user("bob")
        held = [await alice.connect() for _ in range(3)]
        extra = await Client.connect(server.ws_url, None)
        await extra.send(Auth(token=alice.token, protocol=1))
        code, reason = await closed_with(extra)
        assert code == 4003 and "at most 3" in reason
        await bob.connect()  # the cap is per user
        await held.pop().close()

        async def admitted() -> bool:
            probe = await Client.connect(server.ws_url, None)
            await probe.send(Auth(token=alice.token, protocol=1))
            try:
                return isinstance(await probe.recv(), Welcome)
            except ConnectionClosed:
                return False

        for _ in range(50):  # the server notices the close within moments
            if await admitted():
                break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError("a freed slot was never reused")
    finally:
        server.stop()


async def test_an_expiring_token_closes_its_live_socket(server: ServerProcess) -> None:
    alice = await server.new_user("alice")
    store = await open_store(f"sqlite:///{server.data_dir / 'cloison.sqlite3'}")
    try:
        now = time.time_ns() // 1_000_000
        short = await issue_token(
            store,
            UserId(alice.user_id),
            now_ms=now,
            ttl_ms=2_000,
            kind=TokenKind.SESSION,
            issued_by=alice.user_id,
        )
    finally:
        await store.aclose()
    live = await Client.connect(server.ws_url, short.token)
    code, reason = await closed_with(live, timeout_s=2 + CLOSE_BOUND_S)
    assert (code, reason) == (4500, "token expired")
    assert time.time_ns() // 1_000_000 >= short.expires_ms  # type: ignore[operator]
    refused = await Client.connect(server.ws_url, None)
    await refused.send(Auth(token=short.token, protocol=1))
    assert isinstance(await refused.recv(), ErrorReply)
