"""The web client (clients/web) in headless Chromium against a real server process.

Each rendered event is an ``<li data-offset=N>`` in ``#messages`` (membership events with the
``notice`` class), so a test can read exactly which stream offsets the page shows, and in which
order.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from typing import Any

import pytest

from scripts.chromium import PHONE
from tests.browser.conftest import SignIn
from tests.support import ServerProcess, User, eventually

# Without Playwright, conftest skips (or fails) every test before these names are used.
with contextlib.suppress(ImportError):
    from playwright.async_api import Browser, Page, WebSocket, expect

pytestmark = pytest.mark.browser

POSTS = "#messages li[data-offset]:not(.notice)"
# Membership and sphere events, shown as one line each in the timeline.
NOTICES = "#messages li.notice"


async def post(user: User, sphere_id: str, body: str, message_id: str) -> int:
    reply = await user.api(
        "POST", f"/spheres/{sphere_id}/messages", json={"message_id": message_id, "body": body}
    )
    assert reply.status_code == 201, reply.text
    return int(reply.json()["offset"])


async def rendered_offsets(page: Page) -> list[int]:
    values = await page.locator(POSTS).evaluate_all("items => items.map(i => i.dataset.offset)")
    return [int(v) for v in values]


def body_of(page: Page, offset: int) -> Any:
    return page.locator(f'{POSTS}[data-offset="{offset}"] .msg-body')


def sphere_link(page: Page, sphere_id: str) -> Any:
    return page.locator(f'#sphere-list a[data-sphere-id="{sphere_id}"]')


async def pair(server: ServerProcess, privacy: str = "private") -> tuple[User, User, str]:
    alice, bob = await server.new_user("alice"), await server.new_user("bob")
    sphere_id = await alice.create_sphere("general", privacy)
    await alice.add(sphere_id, bob)
    return alice, bob, sphere_id


class FrameLog:
    """Every frame a page sends and receives on any of its WebSockets."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self.received: list[str] = []
        self.opened = 0

    def attach(self, page: Page) -> None:
        page.on("websocket", self._on_socket)

    def _on_socket(self, ws: WebSocket) -> None:
        self.opened += 1
        ws.on("framesent", lambda payload: self.sent.append(json.loads(payload)))
        ws.on("framereceived", lambda payload: self.received.append(str(payload)))


async def unread(user: User, sphere_id: str) -> int:
    reply = await user.api("GET", "/spheres")
    (sphere,) = [s for s in reply.json()["spheres"] if s["sphere_id"] == sphere_id]
    return int(sphere["unread"])


async def test_two_users_chat_in_real_time(server: ServerProcess, sign_in: SignIn) -> None:
    alice, bob, sphere_id = await pair(server)
    a = await sign_in(alice, sphere_id)
    b = await sign_in(bob, sphere_id)

    # Presence: each sees the other online.
    await expect(a.locator("#people li.online", has_text="bob")).to_be_visible()
    await expect(b.locator("#people li.online", has_text="alice")).to_be_visible()

    # Typing reaches the other side while alice composes.
    composer = a.get_by_label("Message general")
    await composer.press_sequentially("Hello Bob", delay=10)
    await expect(b.locator("#typing")).to_have_text("alice is typing…")
    await composer.press("Enter")
    await expect(b.locator(POSTS)).to_have_count(1)
    await expect(body_of(b, 3)).to_have_text("Hello Bob")  # after the 2 membership events
    await expect(b.locator("#typing")).to_have_text("")  # her message ends the notice
    await expect(b.locator(f"{POSTS} .msg-author")).to_have_text("alice")
    await expect(composer).to_have_value("")

    await b.get_by_label("Message general").fill("Hi Alice")
    await b.get_by_role("button", name="Send").click()
    await expect(body_of(a, 4)).to_have_text("Hi Alice")
    assert await rendered_offsets(a) == await rendered_offsets(b) == [3, 4]
    # Bob reads from his joining on (the default history promise): not the sphere's creation.
    await expect(b.locator(f"{NOTICES} .msg-body")).to_have_text(["alice added bob"])
    notices = a.locator(f"{NOTICES} .msg-body")
    await expect(notices).to_have_text(["alice created this sphere", "alice added bob"])
    # A new message is announced to screen readers on the receiving side.
    await expect(a.locator("#announcer")).to_contain_text("bob: Hi Alice")


async def test_edits_and_deletes_reach_the_other_user(
    server: ServerProcess, sign_in: SignIn
) -> None:
    alice, bob, sphere_id = await pair(server)
    await post(alice, sphere_id, "<b>not bold</b> first draft", "a1")
    a = await sign_in(alice, sphere_id)
    b = await sign_in(bob, sphere_id)
    # Bodies are text, never markup.
    await expect(body_of(b, 3)).to_have_text("<b>not bold</b> first draft")
    assert await b.locator("#messages b").count() == 0

    mine = a.locator(f'{POSTS}[data-offset="3"]')
    await mine.hover()
    await mine.get_by_role("button", name=re.compile("^Edit message")).click()
    composer = a.locator("#composer-input")
    await expect(composer).to_be_focused()
    await composer.fill("final text")
    await composer.press("Enter")
    await expect(body_of(b, 3)).to_have_text("final text")
    await expect(b.locator(f'{POSTS}[data-offset="3"] .msg-edited')).to_have_text("(edited)")

    await mine.hover()
    await mine.get_by_role("button", name=re.compile("^Delete message")).click()
    dialog = a.get_by_role("dialog", name="Delete this message?")
    await dialog.get_by_role("button", name="Delete").click()
    await expect(body_of(b, 3)).to_have_text("message deleted")
    await expect(body_of(a, 3)).to_have_text("message deleted")
    assert "final text" not in await b.locator("#messages").inner_text()
    assert await rendered_offsets(b) == [3]  # the edit and delete events are not posts


async def test_unread_badges(server: ServerProcess, sign_in: SignIn) -> None:
    alice, bob, general = await pair(server)
    side = await alice.create_sphere("side", "private")
    await alice.add(side, bob)
    await post(bob, side, "earlier", "b0")
    a = await sign_in(alice, general)
    badge = sphere_link(a, side).locator(".badge")
    await expect(badge).to_have_attribute("data-unread", "1")  # counted by the server
    await post(bob, side, "one more", "b1")
    await post(bob, side, "and another", "b2")
    await expect(badge).to_have_attribute("data-unread", "3")  # counted live
    await expect(badge).to_have_text("3 unread")
    await expect(a).to_have_title("(3) general · Cloison")

    await sphere_link(a, side).click()
    await expect(a.locator(POSTS)).to_have_count(3)
    await expect(sphere_link(a, side).locator(".badge")).to_be_hidden()
    await expect(a).to_have_title("side · Cloison")

    async def marked_read() -> bool:
        return await unread(alice, side) == 0

    await eventually(marked_read)  # the page moved the read marker on the server


async def test_outsider_never_sees_a_private_sphere(server: ServerProcess, sign_in: SignIn) -> None:
    alice, bob, secret = await pair(server)
    await post(alice, secret, "the secret plan", "s1")
    carol = await server.new_user("carol")
    lobby = await carol.create_sphere("lobby", "open")

    # Carol opens a link to the private sphere, as if it had been shared with her.
    frames = FrameLog()
    page = await sign_in(carol, secret, on_page=frames.attach)
    await expect(page.locator("#timeline-status")).to_contain_text("Sphere not found")
    await expect(page.locator("#sphere-list a")).to_have_count(1)
    await expect(sphere_link(page, lobby)).to_be_visible()
    assert await sphere_link(page, secret).count() == 0
    await expect(page.locator(POSTS)).to_have_count(0)
    await expect(page.locator("#composer-input")).to_be_disabled()

    # Even while messages are posted there, nothing of them reaches her page.
    await post(bob, secret, "more secrets", "s2")
    await sphere_link(page, lobby).click()
    await expect(page.locator("#sphere-title")).to_have_text("lobby")
    page_text = await page.content()
    assert "secret plan" not in page_text and "more secrets" not in page_text
    assert "general" not in page_text  # not even the sphere's name
    assert frames.received and not any("secret" in f or "general" in f for f in frames.received)


async def test_server_restart_resumes_without_gap_or_duplicate(
    server: ServerProcess, sign_in: SignIn
) -> None:
    alice, bob, sphere_id = await pair(server)
    frames = FrameLog()
    page = await sign_in(alice, sphere_id, on_page=frames.attach)
    offsets = [await post(bob, sphere_id, f"m{n}", f"k{n}") for n in range(1, 6)]
    await expect(page.locator(POSTS)).to_have_count(5)

    await server.wait_stopped()  # SIGTERM: the server closes the page's socket with 1012
    await expect(page.locator("#connection")).to_have_attribute("data-state", "reconnecting")
    await expect(page.locator("#connection")).to_have_text("Reconnecting…")
    # Keep the page away while the restarted server takes writes, so they can only reach it
    # through the resume, not live.
    await page.context.set_offline(True)
    await asyncio.to_thread(server.start)
    offsets += [await post(bob, sphere_id, f"m{n}", f"k{n}") for n in range(6, 16)]
    edited, deleted = offsets[2], offsets[3]
    reply = await bob.api(
        "PUT", f"/spheres/{sphere_id}/messages/{edited}", json={"message_id": "e", "body": "m3!"}
    )
    assert reply.status_code == 200, reply.text
    reply = await bob.api(
        "DELETE", f"/spheres/{sphere_id}/messages/{deleted}", json={"message_id": "d"}
    )
    assert reply.status_code == 200, reply.text

    await page.context.set_offline(False)  # the page reconnects at once on "online"
    await expect(page.locator("#connection")).to_have_attribute("data-state", "online")
    await expect(page.locator(POSTS)).to_have_count(15)
    offsets += [await post(bob, sphere_id, f"m{n}", f"k{n}") for n in range(16, 21)]
    await expect(page.locator(POSTS)).to_have_count(20)

    assert await rendered_offsets(page) == offsets  # no gap, no duplicate, in order
    bodies = await page.locator(f"{POSTS} .msg-body").all_inner_texts()
    expected = [f"m{n}" for n in range(1, 21)]
    expected[2], expected[3] = "m3!", "message deleted"
    assert bodies == expected
    resumes = [f for f in frames.sent if f["type"] == "subscribe" and "since" in f]
    assert resumes and resumes[0]["since"]["offset"] == 7  # resumed from the last one seen


async def test_history_scroll_back_loads_older_messages_in_order(
    server: ServerProcess, sign_in: SignIn
) -> None:
    alice, bob, sphere_id = await pair(server)
    for n in range(1, 121):
        await post(bob, sphere_id, f"message {n}", f"k{n}")
    page = await sign_in(alice, sphere_id)
    await expect(page.locator(POSTS)).to_have_count(50)
    assert await rendered_offsets(page) == list(range(73, 123))  # after 2 membership events
    await expect(page.locator(f'{POSTS}[data-offset="122"]')).to_be_in_viewport()

    timeline = page.get_by_label("Messages", exact=True)
    await timeline.focus()
    await page.keyboard.press("Home")  # scrolling to the top asks for the page before
    await expect(page.locator(POSTS)).to_have_count(100)
    # The reader keeps their place: the message at the old top is still in view.
    await expect(page.locator(f'{POSTS}[data-offset="73"]')).to_be_in_viewport()
    await page.keyboard.press("Home")
    await expect(page.locator(POSTS)).to_have_count(120)
    await expect(page.locator("#timeline-status")).to_have_text(
        "This is the beginning of the sphere."
    )
    assert await rendered_offsets(page) == list(range(3, 123))
    await expect(page.locator(NOTICES)).to_have_count(2)
    bodies = await page.locator(f"{POSTS} .msg-body").all_inner_texts()
    assert bodies == [f"message {n}" for n in range(1, 121)]


async def test_keyboard_only_sending(server: ServerProcess, sign_in: SignIn) -> None:
    alice, _, sphere_id = await pair(server)
    await alice.create_sphere("another", "private")
    page = await sign_in(alice, keyboard=True)  # lands on the first sphere by name: "another"

    # Landmarks a screen reader jumps between.
    await expect(page.get_by_role("banner")).to_be_visible()
    await expect(page.get_by_role("navigation", name="Spheres")).to_be_visible()
    await expect(page.get_by_role("main", name="another")).to_be_visible()
    await expect(page.get_by_role("complementary", name="People")).to_be_visible()

    async def tab_to(selector: str) -> None:
        for _ in range(40):
            await page.keyboard.press("Tab")
            if await page.locator(selector).evaluate("e => e === document.activeElement"):
                return
        raise AssertionError(f"Tab never reached {selector}")

    await tab_to(f'#sphere-list a[data-sphere-id="{sphere_id}"]')
    await page.keyboard.press("Enter")
    await expect(page.locator("#sphere-title")).to_have_text("general")
    assert page.url.endswith(f"#/{sphere_id}")
    await tab_to("#composer-input")
    await page.keyboard.type("hello from the keyboard")
    await page.keyboard.press("Shift+Enter")
    await page.keyboard.type("second line")
    await page.keyboard.press("Enter")
    await expect(body_of(page, 3)).to_have_text("hello from the keyboard\nsecond line")
    await expect(page.locator("#composer-input")).to_be_focused()
    await expect(page.locator("#composer-input")).to_have_value("")


async def test_phone_layout_collapses_the_sphere_list(
    server: ServerProcess, sign_in: SignIn
) -> None:
    alice, _, sphere_id = await pair(server)
    other = await alice.create_sphere("zeta", "private")
    await post(alice, other, "in zeta", "z1")
    page = await sign_in(alice, sphere_id, viewport=PHONE)
    toggle = page.get_by_role("button", name="Spheres")
    await expect(page.get_by_role("navigation", name="Spheres")).to_be_hidden()
    await expect(toggle).to_have_attribute("aria-expanded", "false")
    width = await page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"]  # nothing forces sideways scrolling

    await toggle.click()
    await expect(toggle).to_have_attribute("aria-expanded", "true")
    await expect(sphere_link(page, sphere_id)).to_be_focused()  # focus moves into the drawer
    await page.keyboard.press("Tab")
    await expect(sphere_link(page, other)).to_be_focused()
    await page.keyboard.press("Enter")
    await expect(page.locator("#sphere-title")).to_have_text("zeta")
    await expect(page.get_by_role("navigation", name="Spheres")).to_be_hidden()
    await expect(body_of(page, 2)).to_have_text("in zeta")
    await expect(page.locator("#composer-input")).to_be_focused()


@pytest.mark.parametrize("server", [["--idle-timeout-s", "1.5"]], indirect=True)
async def test_idle_page_keeps_its_connection_with_pings(
    server: ServerProcess, sign_in: SignIn
) -> None:
    alice, _, sphere_id = await pair(server)
    frames = FrameLog()
    page = await sign_in(alice, sphere_id, on_page=frames.attach)
    await asyncio.sleep(4)  # more than twice the idle timeout, with nothing to do
    await expect(page.locator("#connection")).to_have_attribute("data-state", "online")
    assert frames.opened == 1  # never closed as idle (4002), so never reconnected
    assert sum(f["type"] == "ping" for f in frames.sent) >= 4


async def test_revoked_token_returns_to_sign_in(server: ServerProcess, sign_in: SignIn) -> None:
    alice, _, sphere_id = await pair(server)
    page = await sign_in(alice, sphere_id)
    token_id = alice.token.split("_")[1]
    async with server.http(server.admin_token) as admin:
        reply = await admin.delete(f"/api/v1/admin/tokens/{token_id}")
    assert reply.status_code == 200, reply.text

    # Close code 4500 is terminal: no reconnect loop, the token is forgotten.
    await expect(page.get_by_role("button", name="Sign in", exact=True)).to_be_visible()
    await expect(page.get_by_role("alert")).to_contain_text("not accepted")
    assert await page.evaluate("sessionStorage.length") == 0
    assert "clo_" not in page.url

    await page.get_by_label("Access token").fill("clo_0000_not-a-token")
    await page.get_by_role("button", name="Sign in", exact=True).click()
    await expect(page.get_by_role("alert")).to_contain_text("not accepted")
    await expect(page.get_by_label("Access token")).to_be_focused()


# The page's own module against a scripted server: a fake WebSocket lets the test send what a
# real server never would (overlapping replays, a gap), and look at every frame the client sends.
MODULE_SCENARIO = """
async () => {
  const { CloisonClient } = await import("/cloison.js");
  const tick = () => new Promise((resolve) => setTimeout(resolve, 5));
  class FakeSocket {
    static OPEN = 1;
    static all = [];
    constructor() {
      this.readyState = 0;
      this.sent = [];
      FakeSocket.all.push(this);
      setTimeout(() => { this.readyState = 1; this.onopen?.(); }, 0);
    }
    send(data) { this.sent.push(JSON.parse(data)); }
    close(code = 1000) { this.readyState = 3; }
    deliver(...frames) {
      this.onmessage?.({ data: JSON.stringify({ type: "batch", frames }) });
    }
    drop(code) { this.readyState = 3; this.onclose?.({ code, reason: "" }); }
    last(type) { return this.sent.filter((f) => f.type === type).at(-1); }
  }
  Math.random = () => 0;  // no backoff wait in this test
  const welcome = { type: "welcome", user_id: "u1", name: "u", conn_id: "c", protocol: 1,
                    server_time_ms: 0, limits: { idle_timeout_ms: 90000 } };
  const post = (offset) => ({ type: "message", sphere_id: "s1", offset, kind: "post",
                              message_id: `m${offset}`, author_id: "u2", ts_ms: 0,
                              body: `b${offset}`, deleted: false });
  const subscribed = (ref, offset) => ({ type: "subscribed", sphere_id: "s1", ref,
                                         position: { offset, epoch: "e1" }, online: [] });
  const online = async () => {
    await tick();
    const ws = FakeSocket.all.at(-1);
    ws.deliver(welcome);
    await tick();
    return ws;
  };

  const client = new CloisonClient("ws://fake/ws", "tok", { WebSocket: FakeSocket });
  const delivered = [];
  const states = [];
  client.on("message", (m) => delivered.push(m.offset));
  client.on("state", (s) => states.push(s.state));
  const connected = client.connect();
  let ws = await online();
  await connected;
  const subscription = client.subscribe("s1");
  const first = ws.last("subscribe");
  ws.deliver(subscribed(first.ref, 3), post(4), post(5), post(5), post(4), post(6));
  await subscription;

  // A restart: resume from offset 6; the replay overlaps what was already delivered.
  ws.drop(1012);
  const publishing = client.publish("s1", "while away", "k-away");
  ws = await online();
  const resume = ws.last("subscribe");
  const resent = ws.last("publish");
  ws.deliver(subscribed(resume.ref, 8), post(5), post(6), post(7), post(8), post(9));
  ws.deliver({ type: "ack", sphere_id: "s1", message_id: "k-away", offset: 10, ts_ms: 0,
               duplicate: true, ref: resent.ref });
  const ack = await publishing;

  // A gap (10 missing): the client resubscribes from 9 instead of delivering past it.
  ws.deliver(post(11), post(12));
  await tick();
  const resync = ws.last("subscribe");
  ws.deliver(subscribed(resync.ref, 12), post(10), post(11), post(12));

  // 4500 is terminal: no new socket.
  const sockets = FakeSocket.all.length;
  ws.drop(4500);
  await tick();
  return {
    delivered, states, firstSince: first.since ?? null, resumeSince: resume.since,
    resyncSince: resync.since, resentId: resent.message_id, duplicate: ack.duplicate,
    auth: FakeSocket.all[0].sent[0], newSockets: FakeSocket.all.length - sockets,
    finalState: client.state,
  };
}
"""


async def test_client_module_delivers_each_offset_once(
    server: ServerProcess, browser: Browser
) -> None:
    context = await browser.new_context()
    try:
        page = await context.new_page()
        await page.goto(server.http_url)
        result = await page.evaluate(MODULE_SCENARIO)
    finally:
        await context.close()
    assert result["delivered"] == list(range(4, 13))  # each offset once, in order
    assert result["firstSince"] is None
    assert result["resumeSince"] == {"offset": 6, "epoch": "e1"}
    assert result["resyncSince"] == {"offset": 9, "epoch": "e1"}
    assert result["resentId"] == "k-away" and result["duplicate"] is True
    assert result["auth"] == {"type": "auth", "token": "tok", "protocol": 1}
    assert result["newSockets"] == 0 and result["finalState"] == "closed"
    assert result["states"] == ["connecting", "online", "reconnecting", "online", "closed"]
