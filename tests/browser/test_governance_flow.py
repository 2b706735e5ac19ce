"""Sphere governance in the web client, in headless Chromium against a real server process:
create → invite → accept → post → reply → react → remove; a charter accepted before reading
(and again when it changes); pins, mentions, reports and threads. Every step is done through
the page, as a person would, with the keyboard or mouse.
"""

from __future__ import annotations

import contextlib
import re

import pytest

from tests.browser.conftest import SignIn
from tests.support import ServerProcess

with contextlib.suppress(ImportError):
    from playwright.async_api import Page, expect

pytestmark = pytest.mark.browser

POSTS = "#messages li[data-offset]:not(.notice)"
NOTICES = "#messages li.notice .msg-body"


def post_with(page: Page, text: str) -> object:
    return page.locator(POSTS, has=page.locator(".msg-body", has_text=text))


async def create_sphere(page: Page, name: str) -> str:
    """Create a private sphere with the "New sphere" panel; returns its id (from the route)."""
    await page.get_by_role("button", name="New sphere").click()
    panel = page.get_by_role("dialog", name="New sphere")
    await panel.get_by_label("Name").fill(name)
    await expect(panel.get_by_label("Type")).to_have_value("private")
    await panel.get_by_role("button", name="Create").click()
    await expect(panel).to_be_hidden()
    await expect(page.get_by_role("heading", name=name)).to_be_visible()
    await expect(page).to_have_url(re.compile(r"#/s_"))
    return page.url.rsplit("#/", 1)[1]


async def test_invite_accept_post_reply_react_remove(
    server: ServerProcess, sign_in: SignIn
) -> None:
    alice, bob = await server.new_user("alice"), await server.new_user("bob")
    a = await sign_in(alice)
    sphere_id = await create_sphere(a, "general")
    await expect(a.locator(NOTICES)).to_have_text(["alice created this sphere"])

    # Alice invites bob by user id, from the sphere's tools.
    await a.get_by_role("button", name="Tools").click()
    await a.get_by_role("button", name="Invite someone").click()
    invite = a.get_by_role("dialog", name="Invite to general")
    await invite.get_by_label("User id").fill(bob.user_id)
    await expect(invite.get_by_label("Role")).to_have_value("member")
    await invite.get_by_role("button", name="Invite").click()
    await expect(invite.get_by_role("alert")).to_contain_text("Invited bob as member")
    await a.keyboard.press("Escape")
    await expect(invite).to_be_hidden()

    # Bob sees the invitation, accepts it, and lands in the sphere.
    b = await sign_in(bob)
    invitations = b.get_by_role("button", name="Invitations (1)")
    await invitations.click()
    mine = b.get_by_role("dialog", name="Your invitations")
    await expect(mine).to_contain_text("general")
    await expect(mine).to_contain_text("from alice")
    await mine.get_by_role("button", name="Accept the invitation to general").click()
    await expect(mine).to_be_hidden()
    await expect(b.get_by_role("heading", name="general")).to_be_visible()
    assert b.url.endswith(f"#/{sphere_id}")
    await expect(b.get_by_role("button", name="Invitations", exact=True)).to_be_visible()
    await expect(a.locator(NOTICES).last).to_have_text("bob accepted an invitation")

    # Bob posts; alice replies to that post.
    composer = b.get_by_label("Message general")
    await composer.fill("Hello everyone")
    await composer.press("Enter")
    await expect(post_with(a, "Hello everyone")).to_have_count(1)
    hello = post_with(a, "Hello everyone")
    await hello.hover()
    await hello.get_by_role("button", name=re.compile("^Reply to message from bob")).click()
    await expect(a.locator("#replying")).to_contain_text("Replying to bob: Hello everyone")
    reply_box = a.get_by_label("Reply to bob")
    await expect(reply_box).to_be_focused()
    await reply_box.fill("Welcome, @bob")
    await reply_box.press("Enter")
    await expect(a.locator("#replying")).to_be_hidden()
    answer = post_with(b, "Welcome, @bob")
    # "@bob" was sent as a mention of bob's user id, and shows as his name, highlighted for him.
    await expect(answer.locator(".mention.mention-me")).to_have_text("@bob")
    await expect(answer.locator(".reply-context")).to_have_text(
        re.compile("In reply to bob: Hello everyone")
    )

    # The thread panel lists the post and its reply in order.
    await answer.locator(".reply-context").click()
    thread = b.get_by_role("dialog", name="Thread")
    await expect(thread.locator("li .msg-body")).to_have_text(["Hello everyone", "Welcome, @bob"])
    await b.keyboard.press("Escape")
    await expect(thread).to_be_hidden()

    # Bob reacts to the reply with the picker, by keyboard; alice sees who reacted.
    await answer.hover()
    await answer.get_by_role("button", name=re.compile("^React to message from alice")).click()
    picker = answer.get_by_role("group", name="Pick a reaction")
    await expect(picker.get_by_role("button", name="React with 👍")).to_be_focused()
    await b.keyboard.press("Enter")
    chip = post_with(a, "Welcome, @bob").locator(".reaction")
    await expect(chip).to_have_text("👍1")
    await expect(chip).to_have_attribute("title", "bob")
    await expect(post_with(b, "Welcome, @bob").locator(".reaction")).to_have_attribute(
        "aria-pressed", "true"
    )
    # Pressing one's own chip withdraws the reaction.
    await post_with(b, "Welcome, @bob").locator(".reaction").click()
    await expect(chip).to_have_count(0)

    # Alice removes bob from the people list; bob loses the sphere.
    await a.get_by_role("button", name="Remove bob").click()
    await expect(a.locator("#people")).not_to_contain_text("bob")
    await expect(b.locator("#timeline-status")).to_have_text(
        "You no longer have access to this sphere."
    )
    await expect(b.locator(f'#sphere-list a[data-sphere-id="{sphere_id}"]')).to_have_count(0)


async def test_charter_is_accepted_before_reading(server: ServerProcess, sign_in: SignIn) -> None:
    alice, carol = await server.new_user("alice"), await server.new_user("carol")
    sphere_id = await alice.create_sphere("rules")
    await alice.add(sphere_id, carol)
    reply = await alice.api("PUT", f"/spheres/{sphere_id}/charter", json={"text": "Be kind."})
    assert reply.status_code == 200, reply.text

    c = await sign_in(carol, sphere_id)
    dialog = c.get_by_role("dialog", name="Charter of rules")
    await expect(dialog.get_by_label("Charter, version 1")).to_have_text("Be kind.")
    await expect(c.get_by_label("Message rules")).to_be_disabled()
    await dialog.get_by_role("button", name="Accept the charter").click()
    await expect(dialog).to_be_hidden()
    await expect(c.get_by_label("Message rules")).to_be_enabled()
    composer = c.get_by_label("Message rules")
    await composer.fill("I agree")
    await composer.press("Enter")
    await expect(post_with(c, "I agree")).to_have_count(1)
    charter = await carol.api("GET", f"/spheres/{sphere_id}/charter")
    assert charter.json()["accepted"] == 1

    # A new version is shown again; what is posted meanwhile arrives once it is accepted.
    reply = await alice.api("PUT", f"/spheres/{sphere_id}/charter", json={"text": "Be kinder."})
    assert reply.status_code == 200, reply.text
    await expect(dialog.get_by_label("Charter, version 2")).to_have_text("Be kinder.")
    await expect(composer).to_be_disabled()
    reply = await alice.api(
        "POST", f"/spheres/{sphere_id}/messages", json={"message_id": "m2", "body": "meanwhile"}
    )
    assert reply.status_code == 201, reply.text
    await dialog.get_by_role("button", name="Accept the charter").click()
    await expect(post_with(c, "meanwhile")).to_have_count(1)
    await expect(composer).to_be_enabled()


async def test_pins_reports_mentions_and_threads(server: ServerProcess, sign_in: SignIn) -> None:
    alice, bob = await server.new_user("alice"), await server.new_user("bob")
    sphere_id = await alice.create_sphere("general")
    await alice.add(sphere_id, bob)
    a = await sign_in(alice, sphere_id)
    b = await sign_in(bob, sphere_id)
    composer = a.get_by_label("Message general")
    await composer.fill("Read this, @bob")
    await composer.press("Enter")
    await expect(post_with(b, "Read this, @bob")).to_have_count(1)
    await b.get_by_label("Message general").fill("Done")
    await b.get_by_label("Message general").press("Enter")

    # Alice (the owner) pins her post; bob sees it marked and listed.
    mine = post_with(a, "Read this, @bob")
    await mine.hover()
    await mine.get_by_role("button", name=re.compile("^Pin message from alice")).click()
    await expect(post_with(b, "Read this, @bob").locator(".msg-pinned")).to_have_text("pinned")
    await expect(b.locator(NOTICES).last).to_have_text("alice pinned a message")
    theirs = post_with(b, "Read this, @bob")
    await theirs.hover()
    await expect(theirs.get_by_role("button", name=re.compile("^Pin"))).to_have_count(0)
    await b.get_by_role("button", name="Tools").click()
    await b.get_by_role("button", name="Pinned messages").click()
    pins = b.get_by_role("dialog", name="Pinned messages")
    await expect(pins.locator("li .msg-body")).to_have_text(["Read this, @bob"])
    await b.keyboard.press("Escape")

    # Bob finds the mention, and reports the post; alice reads the report.
    await b.get_by_role("button", name="Mentions").click()
    mentions = b.get_by_role("dialog", name="Mentions")
    await expect(mentions).to_contain_text("general: alice: Read this, @bob")
    await b.keyboard.press("Escape")
    await theirs.hover()
    await theirs.get_by_role("button", name=re.compile("^Report message from alice")).click()
    report = b.get_by_role("dialog", name="Report this message")
    await report.get_by_label("Reason").select_option("abusive")
    await report.get_by_label("Comment (optional)").fill("not nice")
    await report.get_by_role("button", name="Report").click()
    await expect(report.get_by_role("status")).to_have_text(
        "Reported to the sphere's administrators."
    )
    await b.keyboard.press("Escape")
    await a.get_by_role("button", name="Tools").click()
    await a.get_by_role("button", name="Reports").click()
    await expect(a.get_by_role("dialog", name="Reports")).to_contain_text("abusive by bob")
    await a.keyboard.press("Escape")

    # A reply from the thread panel; the sphere's threads list it.
    done = post_with(a, "Done")
    await done.hover()
    await done.get_by_role("button", name=re.compile("^Reply to message from bob")).click()
    await a.get_by_label("Reply to bob").fill("Thanks")
    await a.get_by_label("Reply to bob").press("Enter")
    await post_with(b, "Thanks").locator(".reply-context").click()
    thread = b.get_by_role("dialog", name="Thread")
    await thread.get_by_label("Reply in this thread").fill("You are welcome")
    await thread.get_by_role("button", name="Reply", exact=True).click()
    await expect(thread.locator("li .msg-body")).to_have_text(["Done", "Thanks", "You are welcome"])
    await b.keyboard.press("Escape")
    await a.get_by_role("button", name="Tools").click()
    await a.get_by_role("button", name="Threads").click()
    await expect(a.get_by_role("dialog", name="Threads")).to_contain_text("bob: Done 2 replies")


async def test_a_reader_joins_a_public_sphere_from_its_page(
    server: ServerProcess, sign_in: SignIn
) -> None:
    alice, bob = await server.new_user("alice"), await server.new_user("bob")
    sphere_id = await alice.create_sphere("town", "public")
    b = await sign_in(bob, sphere_id)
    await expect(b.locator("#composer-input")).to_be_disabled()
    await b.get_by_role("button", name="Tools").click()
    await b.get_by_role("button", name="Join this sphere").click()
    await expect(b.get_by_label("Message town")).to_be_enabled()
    await expect(
        b.locator(f'#sphere-list a[data-sphere-id="{sphere_id}"] .sphere-name')
    ).to_have_text("town")
