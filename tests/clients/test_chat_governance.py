"""``cloison chat`` governance and conversation commands on pipes, against a real server:
invitations, mutes, bans, settings, the charter, replies, reactions, pins, threads, mentions
and reports, as the terminal shows them."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from clients import Client
from protocol import EventKind, SphereId
from tests.clients import TIMEOUT_S, read_until, serving
from tests.clients.governance import next_message
from tests.clients.test_chat import chat, type_line
from tests.support import ServerProcess

pytestmark = pytest.mark.e2e


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    with serving(tmp_path) as proc:
        yield proc


async def test_invitation_mute_and_ban(server: ServerProcess) -> None:
    alice, bob = await server.new_user("alice"), await server.new_user("bob")
    sphere_id = SphereId(await alice.create_sphere("team"))
    async with Client(server.ws_url, alice.token) as a, chat(server, bob) as proc:
        out = proc.stdout
        assert out is not None
        await read_until(out, r"You are in no sphere yet")
        await a.subscribe(sphere_id)
        await a.invite(sphere_id, bob.user_id)

        await type_line(proc, "/invites")
        await read_until(out, r"1\. team as member, from alice")
        await type_line(proc, "/accept 1")
        await read_until(out, r"you entered team as member")
        await read_until(out, r"-- team --")

        await a.mute(sphere_id, bob.user_id, 600)
        await read_until(out, r"\* alice muted bob until ")
        await type_line(proc, "let me talk")
        await read_until(out, r"^! forbidden")
        await a.unmute(sphere_id, bob.user_id)
        await read_until(out, r"\* alice unmuted bob")

        await type_line(proc, "/audit")
        await read_until(out, r"^! forbidden")

        await a.ban(sphere_id, bob.user_id, "enough")
        await read_until(out, r"you no longer have access")
        await type_line(proc, "/quit")
        async with asyncio.timeout(TIMEOUT_S):
            assert await proc.wait() == 0


async def test_reply_reaction_pin_thread_mention_and_report(server: ServerProcess) -> None:
    alice, bob = await server.new_user("alice"), await server.new_user("bob")
    sphere_id = SphereId(await alice.create_sphere("team"))
    await alice.add(sphere_id, bob)
    async with Client(server.ws_url, alice.token) as a, chat(server, bob) as proc:
        out = proc.stdout
        assert out is not None
        await read_until(out, r"1\. team")
        await type_line(proc, "/join 1")
        await read_until(out, r"-- team --")
        await a.subscribe(sphere_id)

        root = await a.publish(sphere_id, f"who is in, <@{bob.user_id}>?")
        await read_until(out, rf"#{root.offset} .*alice: who is in, @bob\?")
        await type_line(proc, f"/reply {root.offset} me, @alice")
        answer = await next_message(a, author_id=bob.user_id, kind=EventKind.POST)
        assert (answer.reply_to, answer.body) == (root.offset, f"me, <@{alice.user_id}>")
        await read_until(out, rf"bob \(re #{root.offset}\): me, @alice")

        await type_line(proc, f"/react {root.offset} 👍")
        reaction = await next_message(a, kind=EventKind.REACT)
        assert (reaction.target, reaction.emoji) == (root.offset, "👍")
        await read_until(out, rf"\* bob reacted 👍 to #{root.offset}")
        await type_line(proc, f"/pin {root.offset}")
        await read_until(out, r"^! forbidden")  # members do not pin

        await a.pin(sphere_id, root.offset)
        await read_until(out, rf"\* alice pinned #{root.offset}")
        await type_line(proc, "/pins")
        await read_until(out, r"-- 1 pinned --")
        await read_until(out, r"who is in, @bob\? \(pinned\) \[👍 1\]")

        await type_line(proc, f"/thread {root.offset}")
        await read_until(out, r"-- thread of #\d+: 1 replies --")
        await read_until(out, r"bob \(re #\d+\): me, @alice")
        await type_line(proc, "/threads")
        await read_until(out, rf"#{root.offset} alice: who is in, @bob\?  \(1 replies")
        await type_line(proc, "/mentions")
        await read_until(out, rf"\[team\] #{root.offset} .*alice: who is in")

        await type_line(proc, f"/report {root.offset} rude")
        await read_until(out, r"! /report OFFSET spam\|abusive\|other")
        await type_line(proc, f"/report {root.offset} abusive not nice")
        await read_until(out, rf"#{root.offset} reported to the administrators")
        (report,) = (await a.reports(sphere_id)).reports
        assert (report.target, report.comment) == (root.offset, "not nice")
        await type_line(proc, "/quit")
        async with asyncio.timeout(TIMEOUT_S):
            assert await proc.wait() == 0


async def test_owner_commands(server: ServerProcess) -> None:
    alice, bob = await server.new_user("alice"), await server.new_user("bob")
    sphere_id = SphereId(await alice.create_sphere("team"))
    await alice.add(sphere_id, bob)
    async with chat(server, alice) as proc:
        out = proc.stdout
        assert out is not None
        await read_until(out, r"1\. team")
        await type_line(proc, "/join 1")
        await read_until(out, r"-- team --")
        await type_line(proc, "/settings type open listed yes join approval")
        await read_until(out, r"settings: open, listed, join: approval")
        await type_line(proc, "/charter Be kind.")
        await read_until(out, r"charter set")
        await type_line(proc, "/charter")
        await read_until(out, r"^  Be kind\.")
        await type_line(proc, "/audit")
        await read_until(out, r"-- audit log, newest first --")
        await type_line(proc, "/members")
        await read_until(out, rf"bob \[{bob.user_id}\] member")
        await type_line(proc, "/mute bob ten")
        await read_until(out, r"! /mute USER MINUTES")
        await type_line(proc, "/transfer bob")
        await read_until(out, r"bob is now the owner")
        await type_line(proc, "/delete-sphere")
        await read_until(out, r"type /delete-sphere yes")
        await type_line(proc, "/quit")
        async with asyncio.timeout(TIMEOUT_S):
            assert await proc.wait() == 0
