"""The web client signs in with a password and with single sign-on against a real provider.

Headless Chromium drives the page: e-mail and password, the session refreshed before its
access token expires with the socket left alone, sign-out ending the session on the server;
then "Sign in with Acme" through oidc-provider's own login and consent pages and back. No
token is ever in a URL or in localStorage. Requests may go to the server and, for single
sign-on, to the provider on loopback; anything else is aborted and fails the test (the
provider's development pages import a web font).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import FAST
from tests.signin.helpers import enrol, org_with_domains, store_url
from tests.signin.provider import SECRET, OidcProvider, client, free_port, require_node
from tests.support import ServerProcess, eventually

with contextlib.suppress(ImportError):  # the conftest skips or fails first
    from playwright.async_api import Browser, BrowserContext, Page, Route, expect

from tests.browser.conftest import ACTION_TIMEOUT_MS

pytestmark = pytest.mark.browser

PASSWORD = "correct horse battery"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    """A server whose access tokens last 62 s: the page refreshes them after about 2 s."""
    port = free_port()
    proc = ServerProcess(
        tmp_path / "data",
        extra_args=[*FAST, "--public-url", f"http://127.0.0.1:{port}", "--access-ttl-s", "62"],
        port=port,
    )
    proc.data_dir.mkdir()
    proc.create_admin()
    proc.start()
    yield proc
    proc.stop()


async def _page(browser: Browser, allowed: tuple[str, ...], foreign: list[str]) -> Page:
    ctx: BrowserContext = await browser.new_context()

    async def only_loopback(route: Route) -> None:
        if route.request.url.startswith(allowed):
            await route.continue_()
        else:
            foreign.append(route.request.url)
            await route.abort()

    await ctx.route("**/*", only_loopback)
    page = await ctx.new_page()
    page.set_default_timeout(ACTION_TIMEOUT_MS)
    return page


async def _no_token_at_rest(page: Page) -> None:
    assert "clo_" not in page.url and "clr_" not in page.url
    assert await page.evaluate("localStorage.length") == 0
    stored = await page.evaluate("sessionStorage.getItem('cloison.session')")
    assert stored is not None and "clr_" in stored


async def test_password_sign_in_refresh_and_sign_out(
    server: ServerProcess, browser: Browser
) -> None:
    enrol(server, "Ada", "ada@example.org", PASSWORD)
    foreign: list[str] = []
    page = await _page(browser, (server.http_url + "/", server.ws_url), foreign)
    await page.goto(server.http_url)
    await expect(page.get_by_label("E-mail")).to_be_focused()
    await page.get_by_label("E-mail").fill("ada@example.org")
    await page.get_by_label("Password").fill("not the password")
    await page.get_by_role("button", name="Sign in with password").click()
    await expect(page.get_by_role("alert")).to_contain_text("Wrong e-mail or password")
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_label("Password").press("Enter")
    await expect(page.locator("#connection")).to_have_attribute("data-state", "online")
    await expect(page.locator("#me-name")).to_have_text("Ada")
    await _no_token_at_rest(page)
    first = await page.evaluate("JSON.parse(sessionStorage.getItem('cloison.session'))")

    # A minute before the access token expires, the page refreshes: a new pair, same session,
    # and the socket stays as it was.
    async def refreshed() -> bool:
        now = await page.evaluate("JSON.parse(sessionStorage.getItem('cloison.session'))")
        return bool(now["access_token"] != first["access_token"])

    await eventually(refreshed)  # the page's CSP allows no string evaluation to wait with
    second = await page.evaluate("JSON.parse(sessionStorage.getItem('cloison.session'))")
    assert second["session_id"] == first["session_id"]
    assert second["refresh_token"] != first["refresh_token"]
    await expect(page.locator("#connection")).to_have_attribute("data-state", "online")

    await page.get_by_role("button", name="Sign out").click()
    await expect(page.get_by_label("E-mail")).to_be_visible()
    assert await page.evaluate("sessionStorage.length") == 0
    async with server.http() as http:
        reply = await http.post(
            "/api/v1/auth/refresh", json={"refresh_token": second["refresh_token"]}
        )
        assert reply.status_code == 401  # signing out ended the session on the server
    assert foreign == []


async def test_single_sign_on_through_the_provider(server: ServerProcess, browser: Browser) -> None:
    require_node()
    callback = f"{server.http_url}/api/v1/auth/oidc/callback"
    provider = OidcProvider(
        [client("cloison", callback)],
        accounts={"bea": {"email": "bea@acme.test", "email_verified": True, "name": "Bea"}},
    ).start()
    try:
        await org_with_domains(store_url(server), "acme", [])
        async with server.http(server.admin_token) as http:
            reply = await http.put(
                "/api/v1/admin/orgs/acme/sso",
                json={
                    "issuer": provider.issuer,
                    "client_id": "cloison",
                    "client_secret": SECRET,
                    "email_domains": ["acme.test"],
                    "provision": True,
                },
            )
            assert reply.status_code == 200, reply.text
        foreign: list[str] = []
        allowed = (server.http_url + "/", server.ws_url, provider.issuer + "/")
        page = await _page(browser, allowed, foreign)
        await page.goto(server.http_url)
        await page.get_by_role("button", name="Sign in with Acme").click()
        # oidc-provider's own development pages: its login form, then its consent.
        await page.locator("input[name=login]").fill("bea")
        await page.locator("input[name=password]").fill("any password")
        await page.get_by_role("button", name="Sign-in").click()
        await page.get_by_role("button", name="Continue").click()
        await expect(page.locator("#connection")).to_have_attribute("data-state", "online")
        await expect(page.locator("#me-name")).to_have_text("Bea")
        assert page.url == server.http_url + "/"
        await _no_token_at_rest(page)
        # The one-time code is spent: its cookie is gone and cannot be exchanged again.
        cookies = await page.context.cookies()
        assert [c for c in cookies if c["name"] == "cloison_signin"] == []
        assert all(url.startswith("https://fonts.") for url in foreign), foreign
    finally:
        provider.stop()
