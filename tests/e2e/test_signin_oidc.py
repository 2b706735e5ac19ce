"""Single sign-on over OpenID Connect against a real provider (oidc-provider on Node).

The provider runs on a loopback port with Cloison registered as a client; the test drives its
login and consent pages over HTTP, as a browser would. Checked: the whole code flow to a
session, a socket on the access token, refresh, revocation closing the socket; no token in any
URL; a refused state, a replayed code, a wrong nonce, a wrong audience, an e-mail domain or an
account the organisation does not allow.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import httpx
import pytest

from server.signin.oidc import Oidc, SignInRefused
from storage import SsoConfig, open_store
from tests.e2e.conftest import FAST
from tests.signin.helpers import closed_within, org_with_domains, store_url
from tests.signin.provider import (
    SECRET,
    OidcProvider,
    authorize,
    client,
    free_port,
    id_token_for,
    require_node,
)
from tests.support import Client, ServerProcess

ORG = "acme"


@dataclass
class Sso:
    server: ServerProcess
    provider: OidcProvider
    _seen: int = 0

    @property
    def callback(self) -> str:
        return f"{self.server.http_url}/api/v1/auth/oidc/callback"

    async def configure(self, **changes: object) -> None:
        body = {
            "issuer": self.provider.issuer,
            "client_id": "cloison",
            "client_secret": SECRET,
            "email_domains": ["acme.test"],
            "provision": True,
            **changes,
        }
        async with self.server.http(self.server.admin_token) as http:
            reply = await http.put(f"/api/v1/admin/orgs/{ORG}/sso", json=body)
        assert reply.status_code == 200, reply.text
        assert "client_secret" not in reply.json()

    async def start(self, http: httpx.AsyncClient) -> str:
        reply = await http.get(f"/api/v1/auth/oidc/{ORG}/start")
        assert reply.status_code == 302, reply.text
        return reply.headers["location"]

    async def refusal(self) -> str:
        """The server's last log line about a refused sign-on (it names the failed check)."""
        for _ in range(50):
            lines = [line for line in self.server.log if "single sign-on refused" in line]
            if len(lines) > self._seen:
                self._seen = len(lines)
                return lines[-1]
            await asyncio.sleep(0.05)
        raise AssertionError("no refusal logged")

    async def back(self, http: httpx.AsyncClient, location: str) -> httpx.Response:
        """Follow the provider's redirect to Cloison's callback."""
        assert location.startswith(self.callback), location
        return await http.get(location.removeprefix(self.server.http_url))


@pytest.fixture
async def sso(tmp_path: Path) -> AsyncIterator[Sso]:
    require_node()
    port = free_port()
    server = ServerProcess(
        tmp_path / "data",
        extra_args=[*FAST, "--public-url", f"http://127.0.0.1:{port}"],
        port=port,
    )
    server.data_dir.mkdir()
    server.create_admin()
    callback = f"http://127.0.0.1:{port}/api/v1/auth/oidc/callback"
    provider = OidcProvider(
        [client("cloison", callback), client("other-app", callback)],
        accounts={
            "ada": {"email": "Ada@acme.test", "email_verified": True, "name": "Ada"},
            "mallory": {"email": "mallory@evil.test", "email_verified": True, "name": "M"},
            "unverified": {"email": "u@acme.test", "email_verified": False},
        },
    ).start()
    server.start()
    try:
        await org_with_domains(store_url(server), ORG, [])
        setup = Sso(server, provider)
        await setup.configure()
        yield setup
    finally:
        server.stop()
        provider.stop()


async def test_code_flow_to_a_session_socket_refresh_and_revoke(sso: Sso) -> None:
    server = sso.server
    async with server.http() as http:
        providers = (await http.get("/api/v1/auth/providers")).json()["providers"]
        assert providers == [{"org_id": ORG, "name": "Acme"}]
        location = await sso.start(http)
        query = parse_qs(urlsplit(location).query)
        assert location.startswith(f"{sso.provider.issuer}/auth?")
        assert query["code_challenge_method"] == ["S256"]
        assert {"state", "nonce", "code_challenge"} <= query.keys()
        back = await authorize(location, "ada", redirect_prefix=sso.callback)
        callback = await sso.back(http, back)
        assert callback.status_code == 302
        assert callback.headers["location"] == "/"
        cookie = callback.headers["set-cookie"]
        assert "HttpOnly" in cookie
        assert "SameSite=strict" in cookie or "SameSite=Strict" in cookie
        assert "Path=/api/v1/auth/session" in cookie
        # Tokens never appear in a URL: neither the provider's redirect nor ours carry one.
        assert "clo_" not in back + callback.headers["location"]
        reply = await http.post("/api/v1/auth/session")
        assert reply.status_code == 200, reply.text
        tokens = reply.json()
        # The one-time code is used up (and the cookie cleared).
        http.cookies.set("cloison_signin", cookie.split(";")[0].partition("=")[2])
        assert (await http.post("/api/v1/auth/session")).status_code == 401

    async with server.http(tokens["access_token"]) as http:
        me = (await http.get("/api/v1/me")).json()
        assert me["name"] == "Ada"  # provisioned on this first sign-in
        sessions = (await http.get("/api/v1/me/sessions")).json()["sessions"]
        assert [s["method"] for s in sessions] == ["oidc"]
    socket = await Client.connect(server.ws_url, tokens["access_token"])
    assert socket.welcome is not None and socket.welcome.user_id == me["user_id"]

    async with server.http() as http:
        refreshed = await http.post(
            "/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]}
        )
        assert refreshed.status_code == 200, refreshed.text
        fresh = refreshed.json()
    async with server.http(fresh["access_token"]) as http:
        reply = await http.delete(f"/api/v1/me/sessions/{fresh['session_id']}")
        assert reply.status_code == 200
    assert (await closed_within(socket))[:2] == (4500, "session ended")

    # A second sign-in finds the same account by (organisation, subject).
    async with server.http() as http:
        back = await authorize(await sso.start(http), "ada", redirect_prefix=sso.callback)
        assert (await sso.back(http, back)).headers["location"] == "/"
        again = (await http.post("/api/v1/auth/session")).json()
    assert again["user_id"] == me["user_id"]


async def test_wrong_state_replayed_code_and_wrong_nonce_are_refused(sso: Sso) -> None:
    async with sso.server.http() as http:
        back = await authorize(await sso.start(http), "ada", redirect_prefix=sso.callback)
        parts = urlsplit(back)
        params = parse_qs(parts.query)
        code, state = params["code"][0], params["state"][0]

        # A state Cloison did not hand out.
        forged = urlunsplit(parts._replace(query=urlencode({"code": code, "state": "forged"})))
        refused = await sso.back(http, forged)
        assert refused.headers["location"] == "/#signin_error=unauthorized"
        assert "set-cookie" not in refused.headers
        assert "unknown, used or expired sign-in state" in await sso.refusal()

        assert (await sso.back(http, back)).headers["location"] == "/"
        http.cookies.clear()
        # The same answer again: its state was used up.
        replay = await sso.back(http, back)
        assert replay.headers["location"] == "/#signin_error=unauthorized"
        assert "set-cookie" not in replay.headers
        assert "unknown, used or expired sign-in state" in await sso.refusal()
        # The used code with a fresh state: the provider refuses it.
        fresh = parse_qs(urlsplit(await sso.start(http)).query)["state"][0]
        reused = urlunsplit(parts._replace(query=urlencode({"code": code, "state": fresh})))
        replay = await sso.back(http, reused)
        assert replay.headers["location"] == "/#signin_error=unauthorized"
        assert "set-cookie" not in replay.headers
        assert "the provider refused the code" in await sso.refusal()
        assert state != fresh

        # The provider is asked for another nonce than the one Cloison keeps.
        location = await sso.start(http)
        query = parse_qs(urlsplit(location).query)
        query["nonce"] = [secrets.token_urlsafe(16)]
        tampered = urlunsplit(urlsplit(location)._replace(query=urlencode(query, doseq=True)))
        back = await authorize(tampered, "ada", redirect_prefix=sso.callback)
        refused = await sso.back(http, back)
        assert refused.headers["location"] == "/#signin_error=unauthorized"
        assert "set-cookie" not in refused.headers
        assert "the ID token fails a check" in (line := await sso.refusal())
        assert "nonce" in line


async def test_an_id_token_for_another_audience_is_refused(sso: Sso) -> None:
    nonce = secrets.token_urlsafe(16)
    id_token = await id_token_for(sso.provider, "other-app", sso.callback, "ada", nonce)
    oidc = Oidc(None, None, public_url=sso.server.http_url)  # type: ignore[arg-type]
    try:
        ours = SsoConfig(ORG, sso.provider.issuer, "cloison", SECRET, (), True, 0)  # type: ignore[arg-type]
        with pytest.raises(SignInRefused, match="fails a check"):
            await oidc.verify_id_token(ours, id_token, nonce)
        # The control: the same token is good for the party it was issued to.
        theirs = SsoConfig(ORG, sso.provider.issuer, "other-app", SECRET, (), True, 0)  # type: ignore[arg-type]
        claims = await oidc.verify_id_token(theirs, id_token, nonce)
        assert claims["sub"] == "ada"
        with pytest.raises(SignInRefused, match="fails a check"):
            await oidc.verify_id_token(theirs, id_token, "another nonce")
        header, payload, signature = id_token.split(".")
        forged = f"{header}.{payload}.{signature[::-1]}"
        with pytest.raises(SignInRefused, match="signature"):
            await oidc.verify_id_token(theirs, forged, nonce)
    finally:
        await oidc.aclose()


async def test_the_organisation_decides_who_may_sign_in(sso: Sso) -> None:
    async def sign_in_as(login: str) -> str:
        async with sso.server.http() as http:
            back = await authorize(await sso.start(http), login, redirect_prefix=sso.callback)
            return (await sso.back(http, back)).headers["location"]

    assert await sign_in_as("mallory") == "/#signin_error=forbidden"  # not an allowed domain
    assert await sign_in_as("unverified") == "/#signin_error=forbidden"  # e-mail not verified
    await sso.configure(provision=False)
    assert await sign_in_as("ada") == "/#signin_error=forbidden"  # no account, no provisioning
    store = await open_store(store_url(sso.server))
    try:
        audit = await store.list_org_audit(ORG, before=None, limit=20)  # type: ignore[arg-type]
        assert [e.action for e in audit].count("sso_configured") == 2
    finally:
        await store.aclose()
