"""The web client when an account is deleted: the ``deleted`` member event reaches the page,
which drops the account's posts (erase) or shows them as written by "deleted user"
(anonymise), live and after a reload."""

from __future__ import annotations

import contextlib

import pytest

from tests.browser.conftest import SignIn
from tests.browser.test_web_client import NOTICES, POSTS, body_of, pair, post
from tests.support import ServerProcess, eventually

with contextlib.suppress(ImportError):
    from playwright.async_api import expect

pytestmark = pytest.mark.browser


async def delete_account(server: ServerProcess, user_id: str) -> None:
    async with server.http(server.admin_token) as http:
        reply = await http.delete(f"/api/v1/admin/users/{user_id}")
        assert reply.status_code == 202, reply.text

        async def done() -> bool:
            job = await http.get(f"/api/v1/admin/users/{user_id}/deletion")
            return bool(job.json()["state"] == "done")

        await eventually(done)


def author_of(page: object, offset: int) -> object:
    return page.locator(f'{POSTS}[data-offset="{offset}"] .msg-author')  # type: ignore[attr-defined]


async def test_an_erased_account_s_posts_are_dropped(
    server: ServerProcess, sign_in: SignIn
) -> None:
    alice, bob, sphere_id = await pair(server)
    offset = await post(bob, sphere_id, "words of bob", "b1")
    page = await sign_in(alice, sphere_id)
    await expect(body_of(page, offset)).to_have_text("words of bob")
    await expect(author_of(page, offset)).to_have_text("bob")
    await delete_account(server, bob.user_id)
    await expect(page.locator(f"{NOTICES} .msg-body").last).to_have_text(
        "the account of bob was deleted"
    )
    await expect(body_of(page, offset)).to_have_text("message deleted")
    await expect(author_of(page, offset)).to_have_text("deleted user")
    await page.reload()
    await expect(body_of(page, offset)).to_have_text("message deleted")
    await expect(author_of(page, offset)).to_have_text("deleted user")
    assert "words of bob" not in await page.locator("#messages").inner_text()


@pytest.mark.parametrize("server", [("--account-deletion", "anonymise")], indirect=True)
async def test_an_anonymised_account_s_posts_stay_without_author(
    server: ServerProcess, sign_in: SignIn
) -> None:
    alice, bob, sphere_id = await pair(server)
    offset = await post(bob, sphere_id, "still worth reading", "b1")
    page = await sign_in(alice, sphere_id)
    await expect(author_of(page, offset)).to_have_text("bob")
    await delete_account(server, bob.user_id)
    await expect(author_of(page, offset)).to_have_text("deleted user")
    await expect(body_of(page, offset)).to_have_text("still worth reading")
    await page.reload()
    await expect(author_of(page, offset)).to_have_text("deleted user")
    await expect(body_of(page, offset)).to_have_text("still worth reading")
