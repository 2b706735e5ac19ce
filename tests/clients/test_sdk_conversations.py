"""The SDK's replies, reactions, pins, threads, mentions and reports against a real server:
writes acknowledged and idempotent like posts, and their events in the stream."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from clients import ForbiddenError
from protocol import EventKind, ReportReason, Role
from tests.clients import serving
from tests.clients.governance import next_message, owned, sdk
from tests.support import ServerProcess

pytestmark = pytest.mark.e2e


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    with serving(tmp_path) as proc:
        yield proc


async def test_reply_is_idempotent_and_makes_a_thread(server: ServerProcess) -> None:
    (alice, bob), sphere_id = await owned(server, "alice", "bob")
    async with sdk(server, alice) as a, sdk(server, bob) as b:
        await a.subscribe(sphere_id)
        root = await a.publish(sphere_id, "lunch?")
        first = await b.reply(sphere_id, root.offset, "yes", message_id="r1")
        again = await b.reply(sphere_id, root.offset, "yes", message_id="r1")
        assert (again.offset, again.duplicate) == (first.offset, True)
        event = await next_message(a, offset=first.offset)
        assert (event.kind, event.reply_to, event.body) == (EventKind.POST, root.offset, "yes")
        page = await a.thread(sphere_id, root.offset)
        assert page.root.offset == root.offset
        assert [m.offset for m in page.replies] == [first.offset]
        threads = await a.threads(sphere_id)
        (summary,) = threads.threads
        assert (summary.root.offset, summary.replies, summary.last_offset) == (
            root.offset,
            1,
            first.offset,
        )


async def test_reactions_aggregate_with_who_reacted(server: ServerProcess) -> None:
    (alice, bob), sphere_id = await owned(server, "alice", "bob")
    async with sdk(server, alice) as a, sdk(server, bob) as b:
        await a.subscribe(sphere_id)
        post = await a.publish(sphere_id, "ship it")
        ack = await b.react(sphere_id, post.offset, "👍", message_id="k1")
        assert (await b.react(sphere_id, post.offset, "👍", message_id="k1")).duplicate
        event = await next_message(a, offset=ack.offset)
        assert (event.kind, event.target, event.emoji, event.author_id) == (
            EventKind.REACT,
            post.offset,
            "👍",
            bob.user_id,
        )
        await a.react(sphere_id, post.offset, "👍")
        (shown,) = (await a.history_page(sphere_id, after=post.offset - 1, limit=1)).messages
        assert shown.reactions is not None
        (count,) = shown.reactions
        assert (count.emoji, count.count, set(count.user_ids)) == (
            "👍",
            2,
            {alice.user_id, bob.user_id},
        )
        withdrawn = await b.unreact(sphere_id, post.offset, "👍")
        assert (await next_message(a, offset=withdrawn.offset)).kind is EventKind.UNREACT


async def test_pins_need_a_publisher(server: ServerProcess) -> None:
    (alice, bob), sphere_id = await owned(server, "alice", "bob")
    async with sdk(server, alice) as a, sdk(server, bob) as b:
        await a.subscribe(sphere_id)
        post = await b.publish(sphere_id, "rules: be kind")
        with pytest.raises(ForbiddenError):
            await b.pin(sphere_id, post.offset)
        pinned = await a.pin(sphere_id, post.offset)
        assert (await next_message(a, offset=pinned.offset)).kind is EventKind.PIN
        (shown,) = await b.pins(sphere_id)
        assert (shown.offset, shown.pinned) == (post.offset, True)
        await a.unpin(sphere_id, post.offset)
        assert await b.pins(sphere_id) == []
        await a.set_role(sphere_id, bob.user_id, Role.PUBLISHER)
        await b.pin(sphere_id, post.offset)


async def test_mentions_list_posts_naming_the_user(server: ServerProcess) -> None:
    (alice, bob), sphere_id = await owned(server, "alice", "bob")
    async with sdk(server, alice) as a, sdk(server, bob) as b:
        ack = await a.publish(sphere_id, f"<@{bob.user_id}> can you look?")
        page = await b.mentions()
        assert [(m.sphere_id, m.offset) for m in page.messages] == [(sphere_id, ack.offset)]
        assert bob.user_id in (page.messages[0].mentions or [])


async def test_reports_reach_administrators(server: ServerProcess) -> None:
    (alice, bob, carol), sphere_id = await owned(server, "alice", "bob", "carol")
    async with sdk(server, alice) as a, sdk(server, bob) as b, sdk(server, carol) as c:
        post = await c.publish(sphere_id, "buy cheap watches")
        await b.report(sphere_id, post.offset, ReportReason.SPAM, "again")
        page = await a.reports(sphere_id)
        (report,) = page.reports
        assert (report.target, report.reporter_id, report.reason, report.comment) == (
            post.offset,
            bob.user_id,
            ReportReason.SPAM,
            "again",
        )
        with pytest.raises(ForbiddenError):
            await b.reports(sphere_id)
