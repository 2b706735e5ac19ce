"""The storage contract of conversations, on every backend: replies and threads, reactions,
pins, mentions, reports, the audit of moderators' deletions, and the reader's floor."""

from __future__ import annotations

import asyncio
import itertools

import aiosqlite
import asyncpg
import pytest

from protocol import (
    EventKind,
    MemberAction,
    Message,
    MessageId,
    Privacy,
    ReactionCount,
    ReportReason,
    Role,
    SphereId,
    UserId,
    UserKind,
)
from storage import (
    AppendResult,
    AuditAction,
    Draft,
    MemberChange,
    SphereRecord,
    Store,
    TargetGoneError,
    UserRecord,
)

from .conftest import TIMEOUT_S, Backend, PostgresBackend, SqliteBackend

NOW_MS = 1_700_000_000_000
_ids = itertools.count(1)


def _draft(
    author: UserRecord,
    kind: EventKind,
    *,
    body: str | None = None,
    target: int | None = None,
    reply_to: int | None = None,
    emoji: str | None = None,
) -> Draft:
    message_id = MessageId(f"c{next(_ids)}")
    ts_ms = NOW_MS + next(_ids)
    return Draft(kind, message_id, author.user_id, ts_ms, body, target, reply_to, emoji)


async def append(store: Store, sphere: SphereRecord, draft: Draft) -> Message:
    result = await store.append(sphere.sphere_id, draft)
    assert not result.duplicate
    return result.event


async def say(
    store: Store, sphere: SphereRecord, author: UserRecord, body: str, reply_to: int | None = None
) -> Message:
    return await append(store, sphere, _draft(author, EventKind.POST, body=body, reply_to=reply_to))


async def react(
    store: Store, sphere: SphereRecord, author: UserRecord, target: int, emoji: str = "+1"
) -> Message:
    return await append(store, sphere, _draft(author, EventKind.REACT, target=target, emoji=emoji))


async def unreact(
    store: Store, sphere: SphereRecord, author: UserRecord, target: int, emoji: str = "+1"
) -> Message:
    draft = _draft(author, EventKind.UNREACT, target=target, emoji=emoji)
    return await append(store, sphere, draft)


async def new_user(store: Store, name: str) -> UserRecord:
    return await store.create_user(name, UserKind.HUMAN, is_admin=False, now_ms=NOW_MS)


async def add_member(store: Store, sphere: SphereRecord, user: UserRecord) -> None:
    await store.change_member(
        sphere.sphere_id,
        user.user_id,
        user.user_id,
        lambda state: MemberChange(Role.MEMBER, MemberAction.ADDED),
        now_ms=NOW_MS,
    )


async def remove_member(store: Store, sphere: SphereRecord, user: UserRecord) -> None:
    await store.change_member(
        sphere.sphere_id,
        user.user_id,
        user.user_id,
        lambda state: MemberChange(None, MemberAction.LEFT),
        now_ms=NOW_MS,
    )


async def set_floor(backend: Backend, sphere: SphereRecord, user: UserRecord, floor: int) -> None:
    """Give a member a floor, as joining a sphere that keeps its history from newcomers does."""
    if isinstance(backend, SqliteBackend):
        async with aiosqlite.connect(backend.path) as db:
            await db.execute(
                "UPDATE members SET history_from = ? WHERE sphere_id = ? AND user_id = ?",
                (floor, sphere.sphere_id, user.user_id),
            )
            await db.commit()
        return
    assert isinstance(backend, PostgresBackend)
    db = await asyncpg.connect(backend.dsn)
    try:
        await db.execute(
            f"UPDATE {backend.schema}.members SET history_from = $1"
            " WHERE sphere_id = $2 AND user_id = $3",
            floor,
            sphere.sphere_id,
            user.user_id,
        )
    finally:
        await db.close()


async def audit_actions(store: Store, sphere: SphereRecord) -> list[tuple[str, str | None, int]]:
    entries = await store.list_sphere_audit(sphere.sphere_id, before=None, limit=100)
    return [
        (e.action.value, e.target_id, e.offset or 0)
        for e in reversed(entries)
        if e.action is not AuditAction.SPHERE_CREATED
    ]


@pytest.fixture
async def alice(store: Store) -> UserRecord:
    return await new_user(store, "alice")


@pytest.fixture
async def bob(store: Store) -> UserRecord:
    return await new_user(store, "bob")


@pytest.fixture
async def team(store: Store, alice: UserRecord, bob: UserRecord) -> SphereRecord:
    sphere = await store.create_sphere("team", Privacy.PRIVATE, alice.user_id, now_ms=NOW_MS)
    await add_member(store, sphere, bob)  # offset 2
    return sphere


# ---------------------------------------------------------------------------------------------
# Replies and threads


async def test_replies_make_flat_threads_listed_by_latest_reply(
    store: Store, alice: UserRecord, bob: UserRecord, team: SphereRecord
) -> None:
    async with asyncio.timeout(TIMEOUT_S):
        first = await say(store, team, alice, "first")  # 3
        second = await say(store, team, alice, "second")  # 4
        a = await say(store, team, bob, "re first", first.offset)  # 5
        b = await say(store, team, alice, "re second", second.offset)  # 6
        c = await say(store, team, bob, "re re first", a.offset)  # 7: joins first's thread

        assert (a.reply_to, c.reply_to) == (first.offset, a.offset)
        assert (await store.get_event(team.sphere_id, c.offset)) == c
        thread = await store.get_thread(
            team.sphere_id, first.offset, bob.user_id, after=0, limit=50
        )
        assert thread is not None
        root, replies, more = thread
        assert root == first
        assert [r.offset for r in replies] == [a.offset, c.offset] and not more
        # Any post of the thread names it; pages follow ``after``.
        same = await store.get_thread(
            team.sphere_id, c.offset, bob.user_id, after=a.offset, limit=1
        )
        assert same is not None and same[0] == first
        assert [r.offset for r in same[1]] == [c.offset] and not same[2]
        page = await store.get_thread(team.sphere_id, first.offset, bob.user_id, after=0, limit=1)
        assert page is not None and [r.offset for r in page[1]] == [a.offset] and page[2]

        threads = await store.list_threads(team.sphere_id, bob.user_id, before=None, limit=10)
        assert [(t.root.offset, t.replies, t.last_offset) for t in threads] == [
            (first.offset, 2, c.offset),
            (second.offset, 1, b.offset),
        ]
        assert threads[0].last_ts_ms == c.ts_ms
        older = await store.list_threads(team.sphere_id, bob.user_id, before=c.offset, limit=10)
        assert [t.root.offset for t in older] == [second.offset]


async def test_a_reply_needs_a_live_post_of_the_sphere(
    store: Store, alice: UserRecord, team: SphereRecord
) -> None:
    async with asyncio.timeout(TIMEOUT_S):
        post = await say(store, team, alice, "soon gone")
        await append(store, team, _draft(alice, EventKind.DELETE, target=post.offset))
        for target in (post.offset, 1, 999):  # deleted, a member event, not there
            with pytest.raises(TargetGoneError):
                await say(store, team, alice, "re", target)
        missing = await store.get_thread(team.sphere_id, 999, alice.user_id, after=0, limit=5)
        assert missing is None


async def test_a_group_may_reply_to_its_own_posts(
    store: Store, alice: UserRecord, team: SphereRecord
) -> None:
    async with asyncio.timeout(TIMEOUT_S):
        drafts = [
            _draft(alice, EventKind.POST, body="root"),
            _draft(alice, EventKind.POST, body="re", reply_to=3),
            _draft(alice, EventKind.POST, body="re re", reply_to=4),
        ]
        results = await asyncio.gather(*(store.append(team.sphere_id, d) for d in drafts))
        assert [r.event.offset for r in results] == [3, 4, 5]
        threads = await store.list_threads(team.sphere_id, alice.user_id, before=None, limit=5)
        assert [(t.root.offset, t.replies, t.last_offset) for t in threads] == [(3, 2, 5)]


# ---------------------------------------------------------------------------------------------
# Reactions


async def test_reactions_aggregate_per_emoji_with_who_reacted(
    store: Store, alice: UserRecord, bob: UserRecord, team: SphereRecord
) -> None:
    async with asyncio.timeout(TIMEOUT_S):
        post = await say(store, team, alice, "vote")
        await react(store, team, bob, post.offset, "+1")
        again = await react(store, team, bob, post.offset, "+1")  # an event; no second count
        await react(store, team, alice, post.offset, "+1")
        await react(store, team, alice, post.offset, "tada")
        absent = await unreact(store, team, bob, post.offset, "heart")  # accepted, no change

        assert (again.kind, again.target, again.emoji) == (EventKind.REACT, post.offset, "+1")
        assert absent.kind is EventKind.UNREACT
        messages, _ = await store.history(team.sphere_id, before=None, after=None, limit=50)
        assert [m.kind for m in messages] == [EventKind.MEMBER, EventKind.MEMBER, EventKind.POST]
        assert messages[-1].reactions == [
            ReactionCount("+1", 2, [bob.user_id, alice.user_id]),
            ReactionCount("tada", 1, [alice.user_id]),
        ]
        await unreact(store, team, bob, post.offset, "+1")
        messages, _ = await store.history(team.sphere_id, before=None, after=None, limit=50)
        assert messages[-1].reactions == [
            ReactionCount("+1", 1, [alice.user_id]),
            ReactionCount("tada", 1, [alice.user_id]),
        ]


async def test_a_reaction_retried_with_its_key_is_a_duplicate(
    store: Store, alice: UserRecord, team: SphereRecord
) -> None:
    async with asyncio.timeout(TIMEOUT_S):
        post = await say(store, team, alice, "x")
        draft = _draft(alice, EventKind.REACT, target=post.offset, emoji="ok")
        first = await store.append(team.sphere_id, draft)
        retry = await store.append(team.sphere_id, draft)
        assert retry == AppendResult(first.event, duplicate=True)


async def test_reactions_in_one_group_end_as_the_last_says(
    store: Store, alice: UserRecord, bob: UserRecord, team: SphereRecord
) -> None:
    async with asyncio.timeout(TIMEOUT_S):
        post = await say(store, team, alice, "x")
        await react(store, team, bob, post.offset, "a")
        await react(store, team, alice, post.offset, "a")
        drafts = [
            _draft(bob, EventKind.UNREACT, target=post.offset, emoji="a"),
            _draft(bob, EventKind.REACT, target=post.offset, emoji="a"),
            _draft(alice, EventKind.REACT, target=post.offset, emoji="b"),
            _draft(alice, EventKind.UNREACT, target=post.offset, emoji="b"),
            _draft(alice, EventKind.REACT, target=post.offset, emoji="a"),  # no change
        ]
        await asyncio.gather(*(store.append(team.sphere_id, d) for d in drafts))
        thread = await store.get_thread(
            team.sphere_id, post.offset, alice.user_id, after=0, limit=1
        )
        assert thread is not None
        # bob withdrew and reacted again: he now comes after alice.
        assert thread[0].reactions == [ReactionCount("a", 2, [alice.user_id, bob.user_id])]


async def test_deleting_a_post_clears_its_reactions_and_pin(
    store: Store, alice: UserRecord, bob: UserRecord, team: SphereRecord
) -> None:
    async with asyncio.timeout(TIMEOUT_S):
        post = await say(store, team, alice, "x")
        await react(store, team, bob, post.offset)
        await append(store, team, _draft(alice, EventKind.PIN, target=post.offset))
        await append(store, team, _draft(alice, EventKind.DELETE, target=post.offset))

        tombstone = await store.get_event(team.sphere_id, post.offset)
        assert tombstone is not None and tombstone.deleted and not tombstone.pinned
        messages, _ = await store.history(team.sphere_id, before=None, after=None, limit=50)
        assert messages[-1].reactions is None
        assert (await store.list_pins(team.sphere_id, alice.user_id, limit=10)) == ([], False)
        for kind in (EventKind.REACT, EventKind.PIN):
            emoji = "+1" if kind is EventKind.REACT else None
            with pytest.raises(TargetGoneError):
                await append(store, team, _draft(bob, kind, target=post.offset, emoji=emoji))


# ---------------------------------------------------------------------------------------------
# Pins and the audit log


async def test_pins_are_listed_ascending_and_audited_once_per_change(
    store: Store, alice: UserRecord, bob: UserRecord, team: SphereRecord
) -> None:
    async with asyncio.timeout(TIMEOUT_S):
        one = await say(store, team, bob, "one")
        two = await say(store, team, alice, "two")
        for target in (two.offset, one.offset, one.offset):  # the second pin of one: no change
            await append(store, team, _draft(alice, EventKind.PIN, target=target))

        pins, more = await store.list_pins(team.sphere_id, bob.user_id, limit=10)
        assert [(p.offset, p.pinned) for p in pins] == [(one.offset, True), (two.offset, True)]
        assert not more
        newest, more = await store.list_pins(team.sphere_id, bob.user_id, limit=1)
        assert [p.offset for p in newest] == [two.offset] and more
        await append(store, team, _draft(alice, EventKind.UNPIN, target=two.offset))
        assert [
            p.offset for p in (await store.list_pins(team.sphere_id, bob.user_id, limit=9))[0]
        ] == [one.offset]
        assert await audit_actions(store, team) == [
            ("message_pinned", alice.user_id, two.offset),
            ("message_pinned", bob.user_id, one.offset),
            ("message_unpinned", alice.user_id, two.offset),
        ]


async def test_a_moderators_deletion_is_audited_in_its_commit(
    store: Store, alice: UserRecord, bob: UserRecord, team: SphereRecord
) -> None:
    async with asyncio.timeout(TIMEOUT_S):
        mine = await say(store, team, alice, "mine")
        theirs = await say(store, team, bob, "theirs")
        await append(store, team, _draft(alice, EventKind.DELETE, target=mine.offset))
        # In one group with the post it deletes, too.
        drafts = [
            _draft(bob, EventKind.POST, body="spam"),
            _draft(alice, EventKind.DELETE, target=theirs.offset + 2),
        ]
        await asyncio.gather(*(store.append(team.sphere_id, d) for d in drafts))
        await append(store, team, _draft(alice, EventKind.DELETE, target=theirs.offset))

        assert await audit_actions(store, team) == [
            ("message_deleted", bob.user_id, theirs.offset + 2),
            ("message_deleted", bob.user_id, theirs.offset),
        ]


# ---------------------------------------------------------------------------------------------
# Mentions


async def test_mentions_are_resolved_from_the_body_among_members(
    store: Store, alice: UserRecord, bob: UserRecord, team: SphereRecord
) -> None:
    async with asyncio.timeout(TIMEOUT_S):
        carol = await new_user(store, "carol")  # not a member
        post = await say(
            store, team, alice, f"<@{bob.user_id}> <@{carol.user_id}> <@{bob.user_id}>"
        )
        assert post.mentions == [bob.user_id]
        stored = await store.get_event(team.sphere_id, post.offset)
        assert stored is not None and stored.mentions == [bob.user_id]
        plain = await say(store, team, alice, "nobody")
        assert plain.mentions is None

        other = await store.create_sphere("other", Privacy.PRIVATE, alice.user_id, now_ms=NOW_MS)
        await add_member(store, other, bob)
        later = await say(store, other, alice, f"hey <@{bob.user_id}>")
        found = await store.list_mentions(bob.user_id, after=None, limit=10)
        assert [(m.sphere_id, m.offset) for m in found] == [
            (other.sphere_id, later.offset),
            (team.sphere_id, post.offset),
        ]
        rest = await store.list_mentions(
            bob.user_id, after=(later.ts_ms, later.sphere_id, later.offset), limit=10
        )
        assert [m.offset for m in rest] == [post.offset]
        # Only where bob is a member now.
        await remove_member(store, other, bob)
        found = await store.list_mentions(bob.user_id, after=None, limit=10)
        assert [m.sphere_id for m in found] == [team.sphere_id]


async def test_an_edit_resolves_mentions_again_and_a_delete_drops_them(
    store: Store, alice: UserRecord, bob: UserRecord, team: SphereRecord
) -> None:
    async with asyncio.timeout(TIMEOUT_S):
        carol = await new_user(store, "carol")
        await add_member(store, team, carol)
        post = await say(store, team, alice, f"<@{bob.user_id}>")
        edit = await append(
            store,
            team,
            _draft(alice, EventKind.EDIT, target=post.offset, body=f"<@{carol.user_id}>"),
        )
        assert edit.mentions == [carol.user_id]
        stored = await store.get_event(team.sphere_id, post.offset)
        assert stored is not None and stored.mentions == [carol.user_id]
        assert await store.list_mentions(bob.user_id, after=None, limit=5) == []
        assert [
            m.offset for m in await store.list_mentions(carol.user_id, after=None, limit=5)
        ] == [post.offset]
        await append(store, team, _draft(alice, EventKind.DELETE, target=post.offset))
        assert await store.list_mentions(carol.user_id, after=None, limit=5) == []
        edits = [e for e in await store.events_after(team.sphere_id, 0, 50) if e.kind == "edit"]
        assert [(e.body, e.mentions) for e in edits] == [(None, None)]


# ---------------------------------------------------------------------------------------------
# The reader's floor


async def test_nothing_below_the_readers_floor_is_shown_or_answered(
    backend: Backend, store: Store, alice: UserRecord, bob: UserRecord, team: SphereRecord
) -> None:
    async with asyncio.timeout(TIMEOUT_S):
        old = await say(store, team, alice, f"before bob <@{bob.user_id}>")  # 3
        await say(store, team, alice, "re old", old.offset)
        await append(store, team, _draft(alice, EventKind.PIN, target=old.offset))
        await set_floor(backend, team, bob, old.offset + 3)
        new = await say(store, team, alice, f"after bob <@{bob.user_id}>")

        assert (await store.list_pins(team.sphere_id, bob.user_id, limit=10)) == ([], False)
        assert len((await store.list_pins(team.sphere_id, alice.user_id, limit=10))[0]) == 1
        assert (
            await store.get_thread(team.sphere_id, old.offset, bob.user_id, after=0, limit=5)
            is None
        )
        assert await store.list_threads(team.sphere_id, bob.user_id, before=None, limit=5) == []
        assert [m.offset for m in await store.list_mentions(bob.user_id, after=None, limit=5)] == [
            new.offset
        ]
        for draft in (
            _draft(bob, EventKind.REACT, target=old.offset, emoji="+1"),
            _draft(bob, EventKind.UNREACT, target=old.offset, emoji="+1"),
            _draft(bob, EventKind.PIN, target=old.offset),
            _draft(bob, EventKind.POST, body="re", reply_to=old.offset),
        ):
            with pytest.raises(TargetGoneError):
                await store.append(team.sphere_id, draft)
        with pytest.raises(TargetGoneError):
            await store.add_report(
                team.sphere_id, old.offset, bob.user_id, ReportReason.SPAM, None, now_ms=NOW_MS
            )
        # An edit of the old post does not mention bob to him either.
        edit = _draft(alice, EventKind.EDIT, target=old.offset, body=f"<@{bob.user_id}>!")
        assert (await append(store, team, edit)).mentions is None
        assert (await react(store, team, bob, new.offset)).target == new.offset


# ---------------------------------------------------------------------------------------------
# Reports


async def test_reports_are_kept_once_per_reporter_and_audited(
    store: Store, alice: UserRecord, bob: UserRecord, team: SphereRecord
) -> None:
    async with asyncio.timeout(TIMEOUT_S):
        one = await say(store, team, alice, "rude")
        two = await say(store, team, alice, "ads")
        first, new = await store.add_report(
            team.sphere_id, one.offset, bob.user_id, ReportReason.ABUSIVE, "not nice", now_ms=NOW_MS
        )
        again, new_again = await store.add_report(
            team.sphere_id, one.offset, bob.user_id, ReportReason.SPAM, None, now_ms=NOW_MS + 1
        )
        second, _ = await store.add_report(
            team.sphere_id, two.offset, bob.user_id, ReportReason.SPAM, None, now_ms=NOW_MS + 2
        )
        assert new and not new_again and again == first
        assert (first.reason, first.comment, first.reporter_id) == (
            ReportReason.ABUSIVE,
            "not nice",
            bob.user_id,
        )
        reports = await store.list_reports(team.sphere_id, before=None, limit=10)
        assert reports == [second, first]
        assert await store.list_reports(team.sphere_id, before=second.report_id, limit=10) == [
            first
        ]
        entries = await store.list_sphere_audit(team.sphere_id, before=None, limit=10)
        reported = [e for e in entries if e.action is AuditAction.POST_REPORTED]
        assert [(e.actor_id, e.target_id, e.offset, e.detail) for e in reported] == [
            (bob.user_id, alice.user_id, two.offset, "spam"),
            (bob.user_id, alice.user_id, one.offset, "abusive"),
        ]
        await append(store, team, _draft(alice, EventKind.DELETE, target=one.offset))
        for target in (one.offset, 1, 999):
            with pytest.raises(TargetGoneError):
                await store.add_report(
                    team.sphere_id,
                    target,
                    UserId(alice.user_id),
                    ReportReason.OTHER,
                    None,
                    now_ms=NOW_MS,
                )
        assert await store.list_reports(SphereId("s_none"), before=None, limit=5) == []


async def test_a_draft_must_fit_its_kind(
    store: Store, alice: UserRecord, team: SphereRecord
) -> None:
    async with asyncio.timeout(TIMEOUT_S):
        post = await say(store, team, alice, "x")
        for draft in (
            _draft(alice, EventKind.REACT, target=post.offset),  # no emoji
            _draft(alice, EventKind.PIN, target=post.offset, emoji="+1"),
            _draft(alice, EventKind.EDIT, target=post.offset, body="y", reply_to=post.offset),
            _draft(alice, EventKind.UNREACT, emoji="+1"),  # no target
        ):
            with pytest.raises(ValueError, match="wrong body, target or emoji"):
                await store.append(team.sphere_id, draft)
