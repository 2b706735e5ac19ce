"""Organisations in the web client, in headless Chromium against a real server process: a
member's internal portal (join a free sphere, ask to join one on approval, withdraw), the
directory and its search, and a manager's pages: policies (a refused value shown under its
field), members (promote, remove, add by user id), the audit log, and "Manage" on a private
sphere, which its members see happen.
"""

from __future__ import annotations

import contextlib
import re

import pytest

from tests.browser.conftest import SignIn
from tests.support import Client, ServerProcess, User

with contextlib.suppress(ImportError):
    from playwright.async_api import Page, expect

pytestmark = pytest.mark.browser

NOTICES = "#messages li.notice .msg-body"
# The organisation every user of a fresh server belongs to (migration 0011).
ORG_NAME = "Default"


async def admin_user(server: ServerProcess) -> User:
    """The server's administrator, a manager of the default organisation."""
    client = await Client.connect(server.ws_url, server.admin_token)
    assert client.welcome is not None
    user = User(server, client.welcome.user_id, client.welcome.name, server.admin_token)
    await client.ws.close()
    return user


async def open_sphere(owner: User, name: str, join_policy: str) -> str:
    reply = await owner.api(
        "POST",
        "/spheres",
        json={"name": name, "privacy": "open", "listed": True, "join_policy": join_policy},
    )
    assert reply.status_code == 201, reply.text
    return str(reply.json()["sphere"]["sphere_id"])


async def open_portal(page: Page, title: str = "spheres") -> object:
    await page.get_by_role("button", name="Organisation portal").click()
    dialog = page.get_by_role("dialog", name=f"{ORG_NAME}: spheres")
    await expect(dialog).to_be_visible()
    if title != "spheres":
        await dialog.get_by_role("button", name=title.capitalize()).click()
    return page.get_by_role("dialog", name=f"{ORG_NAME}: {title}")


async def test_a_member_joins_and_asks_to_join_from_the_portal(
    server: ServerProcess, sign_in: SignIn
) -> None:
    alice, bob = await server.new_user("alice"), await server.new_user("bob")
    square = await open_sphere(alice, "town-square", "free")
    await open_sphere(alice, "design", "approval")
    hidden = await alice.create_sphere("alice-only")
    markup = "<img src=x onerror=alert(1)>"
    await open_sphere(alice, markup, "free")

    b = await sign_in(bob)
    await expect(b.locator("#org-name")).to_have_text(ORG_NAME)
    await expect(b.locator("#org-switch")).to_be_hidden()  # one organisation: no switcher
    portal = await open_portal(b)
    await expect(portal.locator("li .panel-item-name")).to_contain_text(["design", "town-square"])
    await expect(portal.locator(f'li[data-sphere-id="{hidden}"]')).to_have_count(0)
    await expect(portal.get_by_text(markup, exact=True)).to_have_count(1)  # text, not markup
    await expect(portal.locator("img")).to_have_count(0)
    await expect(portal.get_by_role("button", name="Manage town-square")).to_have_count(0)

    # A free sphere: Join, and the page opens it.
    await portal.get_by_role("button", name="Join town-square").click()
    await expect(portal).to_be_hidden()
    await expect(b.get_by_role("heading", name="town-square")).to_be_visible()
    assert b.url.endswith(f"#/{square}")

    # An approval sphere: ask with a note; the request stays pending across visits.
    portal = await open_portal(b)
    await expect(portal.get_by_role("button", name="Open town-square")).to_be_visible()
    await portal.get_by_label("Note to design (optional)").fill("I draw")
    await portal.get_by_role("button", name="Ask to join design").click()
    await expect(portal.get_by_role("alert").first).to_have_text(
        "Request sent to the administrators of design."
    )
    await b.keyboard.press("Escape")
    portal = await open_portal(b)
    design = portal.locator("li", has=b.locator(".panel-item-name", has_text="design"))
    await expect(design).to_contain_text("request pending")

    # The sphere's administrator sees it in its queue.
    a = await sign_in(alice)
    await a.get_by_role("link", name=re.compile("^design")).click()
    await a.get_by_role("button", name="Tools").click()
    await a.get_by_role("button", name="Join requests").click()
    await expect(a.get_by_role("dialog", name="Join requests")).to_contain_text("bob: I draw")

    # Bob withdraws it.
    await design.get_by_role("button", name="Withdraw the request to join design").click()
    await expect(design.get_by_role("button", name="Ask to join design")).to_be_visible()

    # The directory, searched by the beginning of a name.
    await portal.get_by_role("button", name="Directory").click()
    directory = b.get_by_role("dialog", name=f"{ORG_NAME}: directory")
    await expect(directory.locator("li .panel-item-name")).to_contain_text(["alice", "bob"])
    await directory.get_by_label("Search by name").fill("ali")
    await expect(directory.locator("li .panel-item-name")).to_have_text(["alice"])


async def test_a_manager_sets_policies_promotes_reads_the_audit_and_manages_a_sphere(
    server: ServerProcess, sign_in: SignIn
) -> None:
    admin = await admin_user(server)
    alice, bob = await server.new_user("alice"), await server.new_user("bob")
    carol = await server.new_user("carol")
    secret = await bob.create_sphere("secret")
    b = await sign_in(bob, secret)
    await expect(b.locator(NOTICES)).to_have_text(["bob created this sphere"])
    m = await sign_in(admin)

    # Policies: a refused e-mail domain is shown under its field; a good one is saved.
    policies = await open_portal(m, "policies")
    domains = policies.get_by_label(re.compile("^E-mail domains"))
    await domains.fill("not a domain")
    await policies.get_by_label("Members see the directory of members").uncheck()
    await policies.get_by_role("button", name="Save the policies").click()
    await expect(domains).to_have_attribute("aria-invalid", "true")
    await expect(policies.locator("#error-email_domains")).to_contain_text("not a domain")
    await expect(domains).to_be_focused()
    await domains.fill("example.org")
    await policies.get_by_role("button", name="Save the policies").click()
    await expect(policies.get_by_role("alert").first).to_have_text("Policies saved.")
    await expect(domains).not_to_have_attribute("aria-invalid", "true")

    # With the directory off, a member's portal has no Directory page; the manager's has.
    portal = await open_portal(b)
    await expect(portal.get_by_role("button", name="Spheres")).to_be_visible()
    await expect(portal.get_by_role("button", name="Directory")).to_have_count(0)
    await b.keyboard.press("Escape")

    # Members: promote alice; remove carol, then add her back by user id.
    await policies.get_by_role("button", name="Members").click()
    members = m.get_by_role("dialog", name=f"{ORG_NAME}: members")
    await members.get_by_label("Organisation role of alice").select_option("manager")
    await expect(members.get_by_role("alert").first).to_have_text("alice is now a manager.")
    await members.get_by_role("button", name="Remove carol from the organisation").click()
    confirm = m.get_by_role("dialog", name="Remove carol?")
    await confirm.get_by_role("button", name="Remove from the organisation").click()
    members = m.get_by_role("dialog", name=f"{ORG_NAME}: members")
    await expect(members.locator('li[data-user-id="' + carol.user_id + '"]')).to_have_count(0)
    await members.get_by_label("User id").fill(carol.user_id)
    await members.get_by_role("button", name="Add to the organisation").click()
    await expect(members.get_by_role("alert").first).to_have_text("Added carol as member.")
    await expect(members.get_by_label("Organisation role of carol")).to_have_value("member")

    # The audit log has every act, newest first, with names.
    await members.get_by_role("button", name="Audit log").click()
    audit = m.get_by_role("dialog", name=f"{ORG_NAME}: audit log")
    rows = audit.locator("tbody tr")
    await expect(rows.first).to_contain_text("carol")
    await expect(audit).to_contain_text("alice")
    await expect(audit).to_contain_text("email_domains")

    # Manage the private sphere: confirmed first, then bob sees the appointment.
    await audit.get_by_role("button", name="Spheres").click()
    portal = m.get_by_role("dialog", name=f"{ORG_NAME}: spheres")
    await portal.get_by_role("button", name="Manage secret").click()
    ask = m.get_by_role("dialog", name="Manage secret?")
    await expect(ask).to_contain_text("Its members will see it")
    await ask.get_by_role("button", name="Manage this sphere").click()
    await expect(ask).to_be_hidden()
    await expect(m.get_by_role("heading", name="secret")).to_be_visible()
    appointed = f"{admin.name} became an administrator, appointed as a manager of the organisation"
    await expect(b.locator(NOTICES).last).to_have_text(appointed)
    await expect(m.locator(NOTICES).last).to_have_text(appointed)
    await expect(b.locator("#people")).to_contain_text("admin")

    # Alice, now a manager, has the managers' pages too.
    a = await sign_in(alice)
    portal = await open_portal(a)
    await expect(portal.get_by_role("button", name="Members")).to_be_visible()
    await expect(portal.get_by_role("button", name="Manage secret")).to_be_visible()


async def test_the_switcher_chooses_the_organisation_of_the_pages_and_new_spheres(
    server: ServerProcess, sign_in: SignIn
) -> None:
    bob = await server.new_user("bob")
    async with server.http(server.admin_token) as http:
        made = await http.post(
            "/api/v1/admin/orgs", json={"name": "Acme", "org_id": "acme", "manager_id": bob.user_id}
        )
        assert made.status_code == 201, made.text

    b = await sign_in(bob)
    switcher = b.get_by_label("Organisation", exact=True)
    await expect(switcher.locator("option")).to_have_text(["Acme", "Default"])
    await switcher.select_option(label="Acme")
    # Bob manages Acme: its pages are the managers' ones.
    await b.get_by_role("button", name="Organisation portal").click()
    portal = b.get_by_role("dialog", name="Acme: spheres")
    await expect(portal.get_by_role("button", name="Policies")).to_be_visible()
    await b.keyboard.press("Escape")

    # A new sphere goes to the organisation chosen, and shows in its portal only.
    await b.get_by_role("button", name="New sphere").click()
    create = b.get_by_role("dialog", name="New sphere")
    await create.get_by_label("Name").fill("acme-news")
    await create.get_by_label("Type").select_option("open")
    await create.get_by_role("button", name="Create").click()
    await expect(b.get_by_role("heading", name="acme-news")).to_be_visible()
    await b.get_by_role("button", name="Organisation portal").click()
    await expect(portal.get_by_role("button", name="Open acme-news")).to_be_visible()
    await b.keyboard.press("Escape")

    # Default, where bob is a member: no managers' pages, and not acme-news.
    await switcher.select_option(label="Default")
    await b.get_by_role("button", name="Organisation portal").click()
    default = b.get_by_role("dialog", name=f"{ORG_NAME}: spheres")
    await expect(default.get_by_role("button", name="Spheres")).to_be_visible()
    await expect(default.get_by_role("button", name="Policies")).to_have_count(0)
    await expect(default).not_to_contain_text("acme-news")

    # The choice is kept across a reload of the tab.
    await b.reload()
    await expect(b.locator("#connection")).to_have_attribute("data-state", "online")
    await expect(switcher).to_have_value("default")
