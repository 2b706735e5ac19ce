"""``cloison chat`` driven through pipes and through a pseudo-terminal, against a real server."""

from __future__ import annotations

import asyncio
import os
import pty
import re
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from clients import Client
from protocol import Message, UserTyping
from tests.clients import TIMEOUT_S, next_event, read_until, serving
from tests.support import ServerProcess, User

pytestmark = pytest.mark.e2e

CHAT = [sys.executable, "-m", "clients.chat"]


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    with serving(tmp_path) as proc:
        yield proc


@asynccontextmanager
async def chat(server: ServerProcess, user: User) -> AsyncIterator[asyncio.subprocess.Process]:
    """The chat as ``user`` on pipes; the token travels in the environment."""
    proc = await asyncio.create_subprocess_exec(
        *CHAT,
        "--url",
        server.ws_url,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        env={**os.environ, "CLOISON_TOKEN": user.token},
    )
    try:
        yield proc
    finally:
        if proc.returncode is None:
            proc.kill()
        async with asyncio.timeout(TIMEOUT_S):
            await proc.wait()


async def type_line(proc: asyncio.subprocess.Process, line: str) -> None:
    assert proc.stdin is not None
    proc.stdin.write(line.encode() + b"\n")
    async with asyncio.timeout(TIMEOUT_S):
        await proc.stdin.drain()


async def post(user: User, sphere_id: str, body: str, message_id: str) -> None:
    reply = await user.api(
        "POST", f"/spheres/{sphere_id}/messages", json={"body": body, "message_id": message_id}
    )
    assert reply.status_code == 201, reply.text


async def test_list_open_scroll_back_send_and_follow(server: ServerProcess) -> None:
    alice, bob = await server.new_user("alice"), await server.new_user("bob")
    alpha = await alice.create_sphere("alpha")
    beta = await alice.create_sphere("beta")
    for sphere_id in (alpha, beta):
        await alice.add(sphere_id, bob)
    for n in range(1, 31):
        await post(bob, alpha, f"old {n}", f"old-{n}")

    async with chat(server, alice) as proc, Client(server.ws_url, bob.token) as b:
        out = proc.stdout
        assert out is not None
        await read_until(out, r"Connected as alice")
        listing = await read_until(out, r"2\. beta")
        assert any(re.search(r"1\. alpha\s+\(30 unread\)", line) for line in listing)

        await type_line(proc, "/join 1")  # offsets 1 and 2: alpha's creation, bob's addition
        opened = await read_until(out, r"#32 .*bob: old 30")
        shown = [int(m.group(1)) for m in map(re.compile(r"^#(\d+) ").match, opened) if m]
        assert shown == list(range(13, 33))
        await type_line(proc, "/history 10")
        earlier = await read_until(out, r"#12 .*old 10")
        assert "-- 10 earlier messages --" in earlier[0]
        await type_line(proc, "/history")
        members = await read_until(out, r"#2 .*\* alice added bob$")
        assert "-- 2 earlier messages --" in members[0]
        assert re.search(r"#1 .*\* alice joined as owner$", members[1])
        await type_line(proc, "/history")
        await read_until(out, r"-- no earlier messages --")

        await b.subscribe(alpha)
        await read_until(out, r"\* bob is online")
        await type_line(proc, "hello from the terminal")
        sent = await next_event(b, Message, author_id=alice.user_id)
        assert sent.body == "hello from the terminal"
        await read_until(out, r"#33 .*alice: hello from the terminal")

        await b.publish(alpha, "hi \x1b[31malice\x1b[0m")
        live = await read_until(out, r"#34 .*bob: hi")
        assert "\x1b" not in live[-1]  # escape sequences from others never reach the screen
        await b.typing(alpha)
        await read_until(out, r"\* bob is typing")
        await b.publish(beta, "elsewhere")
        await read_until(out, r"\[beta\] #3 .*bob: elsewhere")

        await type_line(proc, "/spheres")
        listing = await read_until(out, r"2\. beta")
        assert re.search(r"\*\s+1\. alpha\s*$", listing[-2])  # open, and read up to date
        assert re.search(r"2\. beta\s+\(1 unread\)", listing[-1])
        await type_line(proc, "/quit")
        async with asyncio.timeout(TIMEOUT_S):
            assert await proc.wait() == 0


async def test_terminal_session_sends_typing_and_messages(server: ServerProcess) -> None:
    """Through a pseudo-terminal: cbreak mode, keystrokes echoed, typing notices sent."""
    alice, bob = await server.new_user("alice"), await server.new_user("bob")
    sphere_id = await alice.create_sphere("room")
    await alice.add(sphere_id, bob)
    master, slave = pty.openpty()
    loop = asyncio.get_running_loop()
    screen = asyncio.StreamReader()
    transport, _ = await loop.connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(screen), os.fdopen(master, "rb", 0)
    )
    proc = await asyncio.create_subprocess_exec(
        *CHAT,
        "--url",
        server.ws_url,
        "--token",
        alice.token,
        stdin=slave,
        stdout=slave,
        stderr=slave,
    )
    os.close(slave)
    try:
        async with Client(server.ws_url, bob.token) as b:
            await b.subscribe(sphere_id)
            await read_until(screen, r"1\. room")
            os.write(master, b"/join 1\r")
            await read_until(screen, r"-- room --")
            os.write(master, "héllo".encode())
            await next_event(b, UserTyping, user_id=alice.user_id)
            os.write(master, b"\x7f\x7fo!\x1b[D\r")  # two backspaces, more text, a cursor key
            sent = await next_event(b, Message, author_id=alice.user_id)
            assert sent.body == "hélo!"
            await read_until(screen, r"#3 .*alice: hélo!")
            os.write(master, b"\x04")  # Ctrl-D on an empty line
            async with asyncio.timeout(TIMEOUT_S):
                assert await proc.wait() == 0
    finally:
        if proc.returncode is None:
            proc.kill()
        async with asyncio.timeout(TIMEOUT_S):
            await proc.wait()
        transport.close()


async def test_refused_token_exits_with_an_error(server: ServerProcess) -> None:
    proc = await asyncio.create_subprocess_exec(
        *CHAT,
        "--url",
        server.ws_url,
        "--token",
        "clo_0000000000000000_wrong",
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(TIMEOUT_S):
        output, _ = await proc.communicate()
    assert proc.returncode == 1
    assert "authentication refused" in output.decode()


async def test_cloison_dispatcher_finds_the_chat_command() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "import sys; from server.cli import main; sys.exit(main(['chat', '--help']))",
        stdout=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(TIMEOUT_S):
        output, _ = await proc.communicate()
    assert proc.returncode == 0
    assert "--token" in output.decode()
