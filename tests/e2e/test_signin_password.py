"""Password sign-in and sessions against a real server (SQLite): docs/protocol.md, "Signing in".

Sign-in opens a session (access + refresh token); the socket belongs to the session; refresh
rotates; a used refresh token presented again ends the session and closes its sockets; wrong
password and unknown e-mail are one answer; attempts are limited per account and per address;
self-registration only for a domain an organisation opens.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from protocol import Ping, Pong
from tests.e2e.conftest import start_server
from tests.signin.helpers import closed_within, enrol, org_with_domains, sign_in, store_url
from tests.support import Client, ServerProcess

PASSWORD = "correct horse battery"


@pytest.fixture
def short_access(tmp_path: Path) -> Iterator[ServerProcess]:
    """Access tokens of 2 s, to see one expire under a live socket."""
    proc = start_server(tmp_path, "--access-ttl-s", "2")
    yield proc
    proc.stop()


async def test_sign_in_socket_refresh_and_reuse_ends_the_session(
    short_access: ServerProcess,
) -> None:
    server = short_access
    ada = enrol(server, "ada", "Ada@Example.org", PASSWORD)
    # The e-mail is compared in lower case.
    first = await sign_in(server, "ada@EXAMPLE.org", PASSWORD)
    assert first["user_id"] == ada["user_id"]
    assert first["refresh_expires_ms"] - first["access_expires_ms"] > 29 * 86_400_000
    async with server.http(first["access_token"]) as http:
        assert (await http.get("/api/v1/me")).json()["name"] == "ada"
    socket = await Client.connect(server.ws_url, first["access_token"])

    # The access token expires (2 s here); the socket belongs to the session and stays.
    await asyncio.sleep(2.5)
    async with server.http(first["access_token"]) as http:
        assert (await http.get("/api/v1/me")).status_code == 401
    assert isinstance(await socket.request(Ping(ref="p1")), Pong)

    async with server.http() as http:
        reply = await http.post(
            "/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]}
        )
        assert reply.status_code == 200, reply.text
        second = reply.json()
        assert second["session_id"] == first["session_id"]
        assert second["refresh_token"] != first["refresh_token"]
        async with server.http(second["access_token"]) as fresh:
            assert (await fresh.get("/api/v1/me")).status_code == 200

        # The first refresh token again: someone else has it. The whole session ends.
        again = await http.post(
            "/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]}
        )
        assert again.status_code == 401
        assert again.json()["code"] == "unauthorized"
        code, reason, waited = await closed_within(socket)
        assert (code, reason) == (4500, "session ended")
        print(f"reuse closed the session's socket in {waited * 1000:.0f} ms")  # noqa: T201
        async with server.http(second["access_token"]) as fresh:
            assert (await fresh.get("/api/v1/me")).status_code == 401
        latest = await http.post(
            "/api/v1/auth/refresh", json={"refresh_token": second["refresh_token"]}
        )
        assert latest.status_code == 401


async def test_sessions_listed_and_sign_out_closes_the_socket(server: ServerProcess) -> None:
    enrol(server, "bea", "bea@example.org", PASSWORD)
    laptop = await sign_in(server, "bea@example.org", PASSWORD)
    phone = await sign_in(server, "bea@example.org", PASSWORD)
    on_phone = await Client.connect(server.ws_url, phone["access_token"])
    async with server.http(laptop["access_token"]) as http:
        listed = (await http.get("/api/v1/me/sessions")).json()["sessions"]
        current = {s["session_id"]: s["current"] for s in listed}
        assert current == {phone["session_id"]: False, laptop["session_id"]: True}
        assert listed[0]["address"] == "127.0.0.0/24"  # truncated, never the full address
        assert listed[0]["method"] == "password"
        assert listed[0]["device"].startswith("python-httpx")
        # Tokens are listed apart (the enrolment token); access tokens are not among them.
        tokens = (await http.get("/api/v1/me/tokens")).json()["tokens"]
        assert [t["kind"] for t in tokens] == ["session"]
        ended = await http.delete(f"/api/v1/me/sessions/{phone['session_id']}")
        assert ended.status_code == 200, ended.text
    assert (await closed_within(on_phone))[:2] == (4500, "session ended")
    async with server.http(phone["access_token"]) as http:
        assert (await http.get("/api/v1/me")).status_code == 401
    enrol(server, "cid", "cid@example.org", PASSWORD)
    theirs = await sign_in(server, "cid@example.org", PASSWORD)
    async with server.http(laptop["access_token"]) as http:
        # Somebody else's session is not found, like one that does not exist.
        other = await http.delete(f"/api/v1/me/sessions/{theirs['session_id']}")
        assert other.status_code == 404
        none = await http.delete("/api/v1/me/sessions/s_nothing")
        assert none.status_code == 404
        assert other.json() == none.json()
        # Sign out: the current session.
        assert (await http.delete(f"/api/v1/me/sessions/{laptop['session_id']}")).status_code == 200
        assert (await http.get("/api/v1/me")).status_code == 401


async def test_wrong_password_and_unknown_email_are_one_answer(server: ServerProcess) -> None:
    enrol(server, "cy", "cy@example.org", PASSWORD)
    enrol(server, "dee", "dee@example.org", None)  # no password: SSO or enrolment only
    answers: dict[str, list[float]] = {"wrong": [], "unknown": [], "none": []}
    bodies = set()
    async with server.http() as http:
        for _ in range(5):
            for kind, email in (
                ("wrong", "cy@example.org"),
                ("unknown", "nobody@example.org"),
                ("none", "dee@example.org"),
            ):
                started = time.perf_counter()
                reply = await http.post(
                    "/api/v1/auth/password", json={"email": email, "password": "not it at all"}
                )
                answers[kind].append(time.perf_counter() - started)
                assert reply.status_code == 401
                bodies.add(reply.text)
    assert len(bodies) == 1, bodies
    medians = {kind: statistics.median(times) * 1000 for kind, times in answers.items()}
    print("median answer (ms):", {k: round(v, 1) for k, v in medians.items()})  # noqa: T201
    # Each costs one argon2id verification (about 20 ms): an unknown account is no cheaper.
    assert medians["unknown"] > 0.5 * medians["wrong"]
    assert medians["none"] > 0.5 * medians["wrong"]


@pytest.mark.parametrize(
    "server_args",
    [("--signin-account-burst", "3", "--signin-address-burst", "8")],
)
async def test_attempts_are_limited_per_account_and_per_address(
    tmp_path: Path, server_args: tuple[str, ...]
) -> None:
    server = start_server(tmp_path, *server_args)
    try:
        enrol(server, "eve", "eve@example.org", PASSWORD)
        async with server.http() as http:

            async def attempt(email: str, password: str = "wrong password") -> tuple[int, dict]:
                reply = await http.post(
                    "/api/v1/auth/password", json={"email": email, "password": password}
                )
                return reply.status_code, reply.json()

            assert [(await attempt("eve@example.org"))[0] for _ in range(3)] == [401] * 3
            status, body = await attempt("eve@example.org", PASSWORD)  # even the right one
            assert status == 429
            assert body["code"] == "rate_limited"
            assert body["retry_after_ms"] > 0
            # An unknown account is counted the same way: no oracle in the limit either.
            assert [(await attempt("ghost@example.org"))[0] for _ in range(4)] == [
                401,
                401,
                401,
                429,
            ]
            # Per address: 8 attempts in all from here, whatever the accounts.
            status, body = await attempt("fay@example.org")
            assert status == 429
            assert "address" in body["message"]
    finally:
        server.stop()


async def test_registration_only_for_a_domain_an_organisation_opens(
    server: ServerProcess,
) -> None:
    await org_with_domains(store_url(server), "acme", ["acme.test"])
    async with server.http() as http:
        refused = await http.post(
            "/api/v1/auth/register",
            json={"email": "zed@elsewhere.test", "name": "Zed", "password": PASSWORD},
        )
        assert refused.status_code == 403
        assert refused.json()["code"] == "forbidden"
        weak = await http.post(
            "/api/v1/auth/register",
            json={"email": "zed@acme.test", "name": "Zed", "password": "short"},
        )
        assert weak.status_code == 400
        made = await http.post(
            "/api/v1/auth/register",
            json={"email": "Zed@Acme.test", "name": "Zed", "password": PASSWORD},
        )
        assert made.status_code == 201, made.text
        again = await http.post(
            "/api/v1/auth/register",
            json={"email": "zed@acme.test", "name": "Zed 2", "password": PASSWORD},
        )
        assert again.status_code == 409
    tokens = await sign_in(server, "zed@acme.test", PASSWORD)
    async with server.http(tokens["access_token"]) as http:
        assert (await http.get("/api/v1/me")).json()["name"] == "Zed"
    async with server.http(server.admin_token) as http:
        audit = (await http.get("/api/v1/admin/audit")).json()["entries"]
        assert any(e["action"] == "user_created" and e["detail"] == "registered" for e in audit)


async def test_password_set_with_enrolment_token_then_changed(server: ServerProcess) -> None:
    enrolled = enrol(server, "gil", "gil@example.org", None)
    async with server.http(enrolled["token"]) as http:
        first = await http.put("/api/v1/me/password", json={"password": PASSWORD})
        assert first.status_code == 200, first.text
        # Now one is set: changing it needs the current one.
        bare = await http.put("/api/v1/me/password", json={"password": "another passphrase"})
        assert bare.status_code == 401
    laptop = await sign_in(server, "gil@example.org", PASSWORD)
    phone = await sign_in(server, "gil@example.org", PASSWORD)
    on_phone = await Client.connect(server.ws_url, phone["access_token"])
    async with server.http(laptop["access_token"]) as http:
        changed = await http.put(
            "/api/v1/me/password",
            json={"password": "another passphrase", "current_password": PASSWORD},
        )
        assert changed.json() == {"password_set": True, "sessions_ended": 1}
        assert (await http.get("/api/v1/me")).status_code == 200  # this session stays
    assert (await closed_within(on_phone))[:2] == (4500, "session ended")
    async with server.http() as http:
        old = await http.post(
            "/api/v1/auth/password", json={"email": "gil@example.org", "password": PASSWORD}
        )
        assert old.status_code == 401
    await sign_in(server, "gil@example.org", "another passphrase")


async def test_the_hash_is_argon2id_with_owasp_parameters(server: ServerProcess) -> None:
    import sqlite3

    enrol(server, "hal", "hal@example.org", PASSWORD)
    with sqlite3.connect(server.data_dir / "cloison.sqlite3") as db:
        (stored,) = db.execute(
            "SELECT password_hash FROM credentials WHERE email_key = 'hal@example.org'"
        ).fetchone()
    assert stored.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
    assert PASSWORD not in stored
