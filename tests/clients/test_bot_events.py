"""Bot handlers for membership changes and other stream events, against a real server."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from clients import Bot
from protocol import EventKind, MemberAction, Message
from tests.clients import TIMEOUT_S, serving
from tests.clients.test_bot import running
from tests.support import ServerProcess

pytestmark = pytest.mark.e2e


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    with serving(tmp_path) as proc:
        yield proc


async def test_member_handlers_see_the_actions_they_name(server: ServerProcess) -> None:
    alice, bob = await server.new_user("alice"), await server.new_user("bob")
    helper = await server.new_user("helper", bot=True)
    sphere_id = await alice.create_sphere("team")
    await alice.add(sphere_id, helper)
    bot = Bot(server.ws_url, helper.token, rescan_interval_s=None)
    removed: asyncio.Queue[Message] = asyncio.Queue()
    every: list[MemberAction | None] = []

    @bot.on_member(MemberAction.REMOVED)
    async def on_removed(message: Message) -> None:
        await removed.put(message)

    @bot.on_member()
    async def on_any(message: Message) -> None:
        every.append(message.action)

    async with running(bot):
        await alice.add(sphere_id, bob)
        reply = await alice.api("DELETE", f"/spheres/{sphere_id}/members/{bob.user_id}")
        assert reply.status_code == 200, reply.text
        async with asyncio.timeout(TIMEOUT_S):
            gone = await removed.get()
        assert (gone.member_id, gone.role, gone.author_id) == (bob.user_id, None, alice.user_id)
        assert gone.action is not None and gone.action.ends_membership
        assert every[-2:] == [MemberAction.ADDED, MemberAction.REMOVED]


def test_event_handlers_name_kinds_other_than_posts() -> None:
    bot = Bot("ws://127.0.0.1:1/ws", "clo_x_y")
    with pytest.raises(ValueError, match="posts have their own handlers"):
        bot.on_event(EventKind.POST)
    with pytest.raises(ValueError, match="name the event kinds"):
        bot.on_event()
