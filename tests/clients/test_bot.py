"""The bot framework and the example bots, against a real server."""

from __future__ import annotations

import asyncio
import logging
import re
import signal
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path

import pytest

from clients import Bot, Client
from clients.examples.reminder_bot import MAX_PENDING_PER_USER, parse_delay
from protocol import Message, Presence, Privacy
from tests.clients import TIMEOUT_S, next_event, serving
from tests.support import ServerProcess

pytestmark = pytest.mark.e2e

README = Path(__file__).resolve().parents[2] / "clients" / "README.md"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    with serving(tmp_path) as proc:
        yield proc


async def ask(client: Client, sphere_id: str, text: str, bot_id: str) -> str:
    """Post ``text`` and return the bot's next post in the sphere."""
    await client.publish(sphere_id, text)
    while True:  # the bot's own membership events come from it too
        reply = await next_event(client, Message, sphere_id=sphere_id, author_id=bot_id)
        if reply.kind == "post":
            return reply.body or ""


@asynccontextmanager
async def running(bot: Bot) -> AsyncIterator[Bot]:
    serving_task = asyncio.create_task(bot.serve())
    try:
        async with asyncio.timeout(TIMEOUT_S):
            await bot.wait_ready()
        yield bot
    finally:
        await bot.stop()
        async with asyncio.timeout(TIMEOUT_S):
            await serving_task


async def test_commands_mentions_messages_and_help(
    server: ServerProcess, caplog: pytest.LogCaptureFixture
) -> None:
    alice = await server.new_user("alice")
    helper = await server.new_user("helper", bot=True)
    sphere_id = await alice.create_sphere("team")
    await alice.add(sphere_id, helper)
    bot = Bot(server.ws_url, helper.token, rescan_interval_s=None)

    @bot.command("add", help="A B: add two numbers")
    async def add(message: Message, args: str) -> None:
        a, b = (int(n) for n in args.split())
        await bot.reply(message, str(a + b))

    @bot.command("boom")
    async def boom(message: Message, args: str) -> None:
        raise RuntimeError("a bug in a handler")

    @bot.on_mention
    async def mentioned(message: Message) -> None:
        await bot.reply(message, "you called?")

    @bot.on_message
    async def heard(message: Message) -> None:
        # Were the bot to handle its own posts, this would answer itself forever.
        await bot.reply(message, f"heard: {message.body}")

    async with running(bot), Client(server.ws_url, alice.token) as a:
        await a.subscribe(sphere_id)
        assert await ask(a, sphere_id, "/add 2 3", helper.user_id) == "5"
        assert await ask(a, sphere_id, "!ADD 4 5", helper.user_id) == "9"
        with caplog.at_level(logging.ERROR, logger="clients.bot"):
            await a.publish(sphere_id, "/boom")
            assert await ask(a, sphere_id, "/add 1 1", helper.user_id) == "2"
        assert "a bug in a handler" in caplog.text
        assert await ask(a, sphere_id, "hey @Helper, there?", helper.user_id) == "you called?"
        assert await ask(a, sphere_id, f"ping {helper.user_id}", helper.user_id) == "you called?"
        assert await ask(a, sphere_id, "an email@helper.org", helper.user_id) == (
            "heard: an email@helper.org"
        )
        help_text = await ask(a, sphere_id, "/help", helper.user_id)
        assert help_text.splitlines() == [
            "Commands:",
            "/add A B: add two numbers",
            "/boom",
            "/help: list the commands",
        ]
        assert await ask(a, sphere_id, "/add 0 0", helper.user_id) == "0"
        page = await a.history_page(sphere_id)
        assert not any((m.body or "").startswith("heard: heard") for m in page.messages)


async def test_join_and_rescan_find_new_spheres(server: ServerProcess) -> None:
    alice = await server.new_user("alice")
    helper = await server.new_user("helper", bot=True)
    bot = Bot(server.ws_url, helper.token, rescan_interval_s=0.2)

    @bot.command("echo")
    async def echo(message: Message, args: str) -> None:
        await bot.reply(message, args)

    async with running(bot), Client(server.ws_url, alice.token) as a:
        assert bot.client.subscriptions == []
        lobby = await a.create_sphere("lobby", Privacy.OPEN)
        await a.subscribe(lobby.sphere_id)
        await bot.join(lobby.sphere_id)
        assert await ask(a, lobby.sphere_id, "/echo open", helper.user_id) == "open"

        private = await a.create_sphere("private")
        await a.subscribe(private.sphere_id)
        await a.add_member(private.sphere_id, helper.user_id)
        await next_event(a, Presence, user_id=helper.user_id, online=True)  # found by the rescan
        assert await ask(a, private.sphere_id, "/echo sealed", helper.user_id) == "sealed"


@asynccontextmanager
async def bot_process(*argv: str) -> AsyncIterator[asyncio.subprocess.Process]:
    """A bot in a subprocess; stopped with SIGTERM, after which it must exit with 0."""
    proc = await asyncio.create_subprocess_exec(*argv, stderr=asyncio.subprocess.PIPE)
    try:
        yield proc
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(TIMEOUT_S):
            _, log = await proc.communicate()
    assert proc.returncode == 0, log.decode()
    assert b"ready in" in log


def example_bot(
    server: ServerProcess, module: str, token: str, *extra: str
) -> AbstractAsyncContextManager[asyncio.subprocess.Process]:
    """``python -m clients.examples.<module>`` against ``server``."""
    module = f"clients.examples.{module}"
    return bot_process(
        sys.executable, "-m", module, "--url", server.http_url, "--token", token, *extra
    )


async def test_echo_bot_example(server: ServerProcess) -> None:
    alice = await server.new_user("alice")
    echo = await server.new_user("echo-bot", bot=True)
    sphere_id = await alice.create_sphere("team")
    await alice.add(sphere_id, echo)
    async with Client(server.ws_url, alice.token) as a:
        await a.subscribe(sphere_id)
        async with example_bot(server, "echo_bot", echo.token):
            await next_event(a, Presence, user_id=echo.user_id, online=True)
            assert await ask(a, sphere_id, "/echo hello, world", echo.user_id) == "hello, world"
            assert "/echo TEXT: repeat TEXT" in await ask(a, sphere_id, "!help", echo.user_id)
            greeting = await ask(a, sphere_id, "@echo-bot are you there?", echo.user_id)
            assert greeting.startswith("Hello!")


async def test_reminder_bot_example(server: ServerProcess) -> None:
    alice = await server.new_user("alice")
    reminder = await server.new_user("reminder", bot=True)
    lobby = await alice.create_sphere("lobby", "open")  # the bot joins it by itself
    loop = asyncio.get_running_loop()
    async with Client(server.ws_url, alice.token) as a:
        await a.subscribe(lobby)
        async with example_bot(server, "reminder_bot", reminder.token, "--join", lobby):
            await next_event(a, Presence, user_id=reminder.user_id, online=True)
            asked_at = loop.time()
            ok = await ask(a, lobby, "/remind 1s stand up", reminder.user_id)
            assert ok == "OK, I will remind you in 1s."
            assert await ask(a, lobby, "/remind soon x", reminder.user_id) == (
                "Usage: /remind DELAY TEXT, for example /remind 10m tea"
            )
            fired = await next_event(a, Message, author_id=reminder.user_id)
            assert fired.body == "Reminder: stand up"
            assert loop.time() - asked_at >= 1.0
            for n in range(MAX_PENDING_PER_USER):
                await ask(a, lobby, f"/remind 1h later {n}", reminder.user_id)
            refused = await ask(a, lobby, "/remind 1h one too many", reminder.user_id)
            assert refused == "Too many pending reminders; try again later."


@pytest.fixture
def readme_bot() -> str:
    """The README's first example: the ten-line bot."""
    code = re.search(r"```python\n(.*?)```", README.read_text(), re.DOTALL)
    assert code is not None
    return code.group(1)


async def test_readme_bot_runs(server: ServerProcess, readme_bot: str) -> None:
    assert len([line for line in readme_bot.splitlines() if line.strip()]) <= 10
    alice = await server.new_user("alice")
    echo = await server.new_user("readme-bot", bot=True)
    sphere_id = await alice.create_sphere("team")
    await alice.add(sphere_id, echo)
    code = readme_bot.replace("ws://localhost:8000/ws", server.ws_url).replace(
        "clo_...", echo.token
    )
    async with Client(server.ws_url, alice.token) as a:
        await a.subscribe(sphere_id)
        async with bot_process(sys.executable, "-c", code):
            await next_event(a, Presence, user_id=echo.user_id, online=True)
            reply = await ask(a, sphere_id, "/echo from the README", echo.user_id)
            assert reply == "from the README"


def test_reminder_delays() -> None:
    assert parse_delay("10s") == 10
    assert parse_delay("1h30m") == 5400
    assert parse_delay("2d") == 172800
    for bad in ("", "10", "s", "0s", "10x", "1h 30m", "8d", "-5s"):
        assert parse_delay(bad) is None, bad
