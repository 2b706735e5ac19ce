"""The web client loads a history that JSON makes six times larger than it is stored."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from protocol import Ack, Publish
from tests.browser.conftest import SignIn
from tests.browser.test_web_client import POSTS, FrameLog
from tests.support import ServerProcess

with contextlib.suppress(ImportError):
    from playwright.async_api import expect

pytestmark = pytest.mark.browser

BODY_CHARS = 16 * 1024 - 8  # the default max_message_bytes, less the marker
POSTS_SENT = 24  # ~2.3 MiB of JSON: more than one frame unless pages count encoded bytes


async def test_history_full_of_control_characters_loads(
    server: ServerProcess, sign_in: SignIn
) -> None:
    alice = await server.new_user("alice")
    sphere_id = await alice.create_sphere("noisy")
    noise = "".join(chr(1 + (i % 31)) for i in range(BODY_CHARS))
    writer = await alice.connect("msgpack")  # in JSON, such a body is larger than a frame
    last = 0
    for n in range(POSTS_SENT):
        body = f"post {n:02d} {noise}"
        ack = await writer.request(
            Publish(sphere_id=sphere_id, message_id=f"c{n}", body=body, ref=str(n))
        )
        assert isinstance(ack, Ack), ack
        last = ack.offset
    await writer.close()
    frames = FrameLog()
    page = await sign_in(alice, sphere_id, on_page=frames.attach)
    await expect(page.locator(f'{POSTS}[data-offset="{last}"]')).to_have_count(1)
    await asyncio.sleep(2)  # a connection closed by an oversized page would reconnect by now
    assert frames.opened == 1
    await expect(page.locator("#connection")).to_have_attribute("data-state", "online")
