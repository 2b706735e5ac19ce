"""The storage contract: every backend must pass these, through the ``Store`` interface only.

The last section holds the SQLite backend's own settings and ``open_store`` URLs.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import logging
import sqlite3
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from protocol import (
    CloisonError,
    ErrorCode,
    EventKind,
    MemberAction,
    MemberInfo,
    Message,
    MessageId,
    Privacy,
    Role,
    SphereId,
    SphereSummary,
    StreamPosition,
    UserId,
    UserKind,
)
from storage import (
    MAX_QUEUED_APPENDS,
    OPERATOR,
    AppendResult,
    AuditEntry,
    ChangeKind,
    DecideSettings,
    Draft,
    HasSpheresError,
    MemberChange,
    MembershipState,
    NotFoundError,
    NotMemberError,
    SettingsChange,
    SettingsState,
    SphereRecord,
    SphereSettings,
    Store,
    StoreError,
    StoreOverloadedError,
    TargetGoneError,
    TokenKind,
    TokenRecord,
    UserRecord,
    member_key,
    open_store,
    sphere_key,
)
from storage.sqlite import SqliteStore

from .conftest import TIMEOUT_S, Backend

NOW_MS = 1_700_000_000_000
_message_ids = itertools.count(1)


def post(author: UserRecord, body: str = "hello", *, message_id: str | None = None) -> Draft:
    return Draft(EventKind.POST, _message_id(message_id), author.user_id, NOW_MS, body)


def edit(author: UserRecord, target: int, body: str, *, ts_ms: int = NOW_MS + 1) -> Draft:
    return Draft(EventKind.EDIT, _message_id(None), author.user_id, ts_ms, body, target)


def delete(author: UserRecord, target: int) -> Draft:
    return Draft(EventKind.DELETE, _message_id(None), author.user_id, NOW_MS + 2, None, target)


def _message_id(message_id: str | None) -> MessageId:
    return MessageId(message_id or f"m{next(_message_ids)}")


async def new_user(store: Store, name: str = "alice") -> UserRecord:
    return await store.create_user(name, UserKind.HUMAN, is_admin=False, now_ms=NOW_MS)


async def new_sphere(
    store: Store, owner: UserRecord, name: str = "lobby", privacy: Privacy = Privacy.PRIVATE
) -> SphereRecord:
    return await store.create_sphere(name, privacy, owner.user_id, now_ms=NOW_MS)


def setting(role: Role | None, action: MemberAction) -> Callable[[MembershipState], MemberChange]:
    """A decision that always makes the change (the server's rules are not the store's)."""
    return lambda state: MemberChange(role, action)


async def add_member(
    store: Store, sphere: SphereRecord, user: UserRecord, role: Role = Role.MEMBER
) -> Message:
    event = await store.change_member(
        sphere.sphere_id,
        user.user_id,
        user.user_id,
        setting(role, MemberAction.ADDED),
        now_ms=NOW_MS,
    )
    assert event is not None
    return event


async def offsets(store: Store, sphere: SphereRecord) -> list[int]:
    return [event.offset for event in await store.events_after(sphere.sphere_id, 0, 10_000)]


@pytest.fixture
async def alice(store: Store) -> UserRecord:
    return await new_user(store, "alice")


@pytest.fixture
async def lobby(store: Store, alice: UserRecord) -> SphereRecord:
    return await new_sphere(store, alice)


# ---------------------------------------------------------------------------------------------
# Appending: offsets, idempotency


async def test_append_assigns_gapless_offsets_per_sphere(store: Store, alice: UserRecord) -> None:
    async with asyncio.timeout(TIMEOUT_S):
        a = await new_sphere(store, alice, "a")
        b = await new_sphere(store, alice, "b")
        for sphere in (a, b, a, a, b):
            await store.append(sphere.sphere_id, post(alice))
        draft = post(alice, "exact")
        result = await store.append(a.sphere_id, draft)

        # Offset 1 of each sphere is its creator's member event.
        assert await offsets(store, a) == [1, 2, 3, 4, 5]
        assert await offsets(store, b) == [1, 2, 3]
        assert not result.duplicate
        assert result.event == Message(
            a.sphere_id, 5, EventKind.POST, draft.message_id, alice.user_id, NOW_MS, "exact"
        )
        assert await store.get_event(a.sphere_id, 5) == result.event
        stored_a = await store.get_sphere(a.sphere_id)
        assert stored_a is not None
        assert stored_a.position.offset == 5
        assert stored_a.position.epoch == a.epoch


async def test_concurrent_appends_stay_gapless(store: Store, alice: UserRecord) -> None:
    async with asyncio.timeout(TIMEOUT_S):
        spheres = [await new_sphere(store, alice, f"s{n}") for n in range(3)]
        results = await asyncio.gather(
            *(store.append(spheres[n % 3].sphere_id, post(alice, f"b{n}")) for n in range(500))
        )

        assert not any(result.duplicate for result in results)
        stored: dict[tuple[SphereId, int], Message] = {}
        for sphere in spheres:
            events = await store.events_after(sphere.sphere_id, 0, 1_000)
            assert [event.offset for event in events] == list(range(1, len(events) + 1))
            stored |= {(e.sphere_id, e.offset): e for e in events if e.kind is EventKind.POST}
        assert len(stored) == 500
        assert {(r.event.sphere_id, r.event.offset): r.event for r in results} == stored


async def test_retry_returns_the_original(
    store: Store, alice: UserRecord, lobby: SphereRecord
) -> None:
    async with asyncio.timeout(TIMEOUT_S):
        first = await store.append(lobby.sphere_id, post(alice, "original", message_id="k1"))
        retry = await store.append(lobby.sphere_id, post(alice, "changed", message_id="k1"))
        after = await store.append(lobby.sphere_id, post(alice))

    assert retry.duplicate
    assert retry.event == first.event
    assert retry.event.body == "original"
    assert after.event.offset == 3


async def test_duplicates_within_one_batch(
    store: Store, alice: UserRecord, lobby: SphereRecord
) -> None:
    async with asyncio.timeout(TIMEOUT_S):
        drafts = [post(alice, f"try {n}", message_id="same") for n in range(3)]
        results = await asyncio.gather(*(store.append(lobby.sphere_id, d) for d in drafts))

        assert [result.duplicate for result in results] == [False, True, True]
        assert {result.event for result in results} == {results[0].event}
        assert results[0].event.body == "try 0"
        assert await offsets(store, lobby) == [1, 2]


async def test_idempotency_key_is_per_author_and_sphere(
    store: Store, alice: UserRecord, lobby: SphereRecord
) -> None:
    async with asyncio.timeout(TIMEOUT_S):
        bob = await new_user(store, "bob")
        await add_member(store, lobby, bob)  # 2
        other = await new_sphere(store, alice, "other")
        results = [
            await store.append(lobby.sphere_id, post(alice, message_id="k")),
            await store.append(lobby.sphere_id, post(bob, message_id="k")),
            await store.append(other.sphere_id, post(alice, message_id="k")),
        ]

    assert not any(result.duplicate for result in results)
    assert [result.event.offset for result in results] == [3, 4, 2]


async def test_malformed_draft_is_a_caller_bug(
    store: Store, alice: UserRecord, lobby: SphereRecord
) -> None:
    malformed = [
        Draft(EventKind.POST, MessageId("a"), alice.user_id, NOW_MS, None),
        Draft(EventKind.POST, MessageId("b"), alice.user_id, NOW_MS, "x", target=1),
        Draft(EventKind.EDIT, MessageId("c"), alice.user_id, NOW_MS, "x"),
        Draft(EventKind.DELETE, MessageId("d"), alice.user_id, NOW_MS, "x", target=1),
    ]
    async with asyncio.timeout(TIMEOUT_S):
        for draft in malformed:
            with pytest.raises(ValueError, match="draft"):
                await store.append(lobby.sphere_id, draft)
        assert await offsets(store, lobby) == [1]


# ---------------------------------------------------------------------------------------------
# Edits, deletes, domain errors


async def test_edit_changes_the_post_and_is_an_event(
    store: Store, alice: UserRecord, lobby: SphereRecord
) -> None:
    async with asyncio.timeout(TIMEOUT_S):
        original = await store.append(lobby.sphere_id, post(alice, "tpyo"))
        edited = await store.append(lobby.sphere_id, edit(alice, 2, "typo", ts_ms=NOW_MS + 5))
        events = await store.events_after(lobby.sphere_id, 1, 10)

    assert edited.event.offset == 3
    assert edited.event.kind is EventKind.EDIT
    assert (edited.event.target, edited.event.body) == (2, "typo")
    current = Message(
        lobby.sphere_id,
        2,
        EventKind.POST,
        original.event.message_id,
        alice.user_id,
        NOW_MS,
        "typo",
        edited_ms=NOW_MS + 5,
    )
    assert events == [current, edited.event]


async def test_delete_leaves_a_tombstone_and_erases_edit_bodies(
    store: Store, alice: UserRecord, lobby: SphereRecord
) -> None:
    async with asyncio.timeout(TIMEOUT_S):
        await store.append(lobby.sphere_id, post(alice, "secret"))
        await store.append(lobby.sphere_id, edit(alice, 2, "still secret"))
        await store.append(lobby.sphere_id, post(alice, "kept"))
        await store.append(lobby.sphere_id, edit(alice, 4, "kept, edited"))
        deleted = await store.append(lobby.sphere_id, delete(alice, 2))
        events = await store.events_after(lobby.sphere_id, 1, 10)
        posts, _ = await store.history(lobby.sphere_id, before=None, after=1, limit=10)

    assert deleted.event.offset == 6
    assert (deleted.event.kind, deleted.event.target, deleted.event.body) == (
        EventKind.DELETE,
        2,
        None,
    )
    tombstone, erased_edit, kept, kept_edit, delete_event = events
    assert tombstone.deleted
    assert tombstone.body is None
    assert erased_edit.kind is EventKind.EDIT
    assert erased_edit.body is None
    assert (kept.body, kept.deleted, kept_edit.body) == ("kept, edited", False, "kept, edited")
    assert delete_event == deleted.event
    assert posts == [tombstone, kept]


@pytest.mark.parametrize("change", ["edit", "delete"])
async def test_edit_or_delete_needs_a_live_post(
    store: Store, alice: UserRecord, lobby: SphereRecord, change: str
) -> None:
    def draft(target: int) -> Draft:
        return edit(alice, target, "new") if change == "edit" else delete(alice, target)

    async with asyncio.timeout(TIMEOUT_S):
        await store.append(lobby.sphere_id, post(alice))  # 2
        await store.append(lobby.sphere_id, edit(alice, 2, "edited"))  # 3: not a post
        await store.append(lobby.sphere_id, post(alice))  # 4
        await store.append(lobby.sphere_id, delete(alice, 4))  # 5: 4 is now deleted
        for target in (1, 3, 4, 5, 99):  # 1: the creator's member event
            with pytest.raises(TargetGoneError):
                await store.append(lobby.sphere_id, draft(target))
        assert await offsets(store, lobby) == [1, 2, 3, 4, 5]


async def test_unknown_sphere_is_not_found(store: Store, alice: UserRecord) -> None:
    async with asyncio.timeout(TIMEOUT_S):
        with pytest.raises(NotFoundError):
            await store.append(SphereId("s_nope"), post(alice))


async def test_a_failing_draft_does_not_fail_its_batch(
    store: Store, alice: UserRecord, lobby: SphereRecord
) -> None:
    async with asyncio.timeout(TIMEOUT_S):
        results = await asyncio.gather(
            store.append(lobby.sphere_id, post(alice, "first")),
            store.append(lobby.sphere_id, edit(alice, 42, "nothing there")),
            store.append(SphereId("s_nope"), post(alice)),
            store.append(lobby.sphere_id, post(alice, "second")),
            return_exceptions=True,
        )
        first, gone, missing, second = results
        assert isinstance(gone, TargetGoneError)
        assert isinstance(missing, NotFoundError)
        assert not isinstance(first, BaseException)
        assert not isinstance(second, BaseException)
        assert (first.event.offset, second.event.offset) == (2, 3)
        assert await offsets(store, lobby) == [1, 2, 3]


async def test_edit_of_a_post_appended_just_before(
    store: Store, alice: UserRecord, lobby: SphereRecord
) -> None:
    async with asyncio.timeout(TIMEOUT_S):
        created, edited, deleted = await asyncio.gather(
            store.append(lobby.sphere_id, post(alice, "v1")),
            store.append(lobby.sphere_id, edit(alice, 2, "v2")),
            store.append(lobby.sphere_id, delete(alice, 2)),
        )
        events = await store.events_after(lobby.sphere_id, 1, 10)

    assert (created.event.offset, edited.event.offset, deleted.event.offset) == (2, 3, 4)
    assert events[0].deleted
    assert [event.body for event in events] == [None, None, None]


async def test_a_database_failure_rolls_back_the_whole_batch(
    backend: Backend, store: Store, alice: UserRecord, lobby: SphereRecord
) -> None:
    async with asyncio.timeout(TIMEOUT_S):
        await store.append(lobby.sphere_id, post(alice, "before"))
        await backend.fail_posts_with_body("poison")
        drafts = [post(alice, "fine"), post(alice, "poison"), post(alice, "also fine")]
        results = await asyncio.gather(
            *(store.append(lobby.sphere_id, draft) for draft in drafts), return_exceptions=True
        )
        assert all(isinstance(result, StoreError) for result in results)
        # The database answered: a certain rollback, reported as such (not "unknown").
        assert all(result.code is ErrorCode.UNAVAILABLE for result in results)  # type: ignore[union-attr]
        assert await offsets(store, lobby) == [1, 2]

        # The writer keeps going, and the retries land right after the last committed event.
        retried = [await store.append(lobby.sphere_id, drafts[n]) for n in (0, 2)]
        assert [result.event.offset for result in retried] == [3, 4]
        assert not any(result.duplicate for result in retried)


async def test_a_streak_of_failed_groups_is_logged_once(
    backend: Backend,
    store: Store,
    alice: UserRecord,
    lobby: SphereRecord,
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with asyncio.timeout(TIMEOUT_S):
        await backend.fail_posts_with_body("poison")
        with caplog.at_level(logging.INFO, logger="storage"):
            for _ in range(20):  # one group each: every append awaits the previous one
                with pytest.raises(StoreError):
                    await store.append(lobby.sphere_id, post(alice, "poison"))
            await store.append(lobby.sphere_id, post(alice, "fine"))
        storage_logs = [r for r in caplog.records if r.name.startswith("storage")]
        assert [r.levelno for r in storage_logs] == [logging.ERROR, logging.WARNING]
        assert "are failing" in storage_logs[0].getMessage()
        assert storage_logs[0].exc_info is None  # no traceback per failure streak, even once
        assert "after 20 failed groups" in storage_logs[1].getMessage()


async def test_a_working_store_is_writable(store: Store) -> None:
    async with asyncio.timeout(TIMEOUT_S):
        await store.check_writable()
        await store.check_writable()  # and it left nothing open behind it


# ---------------------------------------------------------------------------------------------
# Reading


async def test_history_pages_over_posts_and_member_events(
    store: Store, alice: UserRecord, lobby: SphereRecord
) -> None:
    async with asyncio.timeout(TIMEOUT_S):
        post_offsets = [1]  # the creator's member event, then the posts
        for n in range(12):
            result = await store.append(lobby.sphere_id, post(alice, f"p{n}"))
            post_offsets.append(result.event.offset)
            if n % 3 == 0:
                await store.append(lobby.sphere_id, edit(alice, result.event.offset, "edited"))
        await store.append(lobby.sphere_id, delete(alice, post_offsets[6]))

        newest, more = await store.history(lobby.sphere_id, before=None, after=None, limit=5)
        assert [m.offset for m in newest] == post_offsets[8:]
        assert more
        middle, more = await store.history(
            lobby.sphere_id, before=newest[0].offset, after=None, limit=5
        )
        assert [m.offset for m in middle] == post_offsets[3:8]
        assert more
        assert middle[3].deleted
        oldest, more = await store.history(
            lobby.sphere_id, before=middle[0].offset, after=None, limit=5
        )
        assert [m.offset for m in oldest] == post_offsets[:3]
        assert not more

        forward, more = await store.history(lobby.sphere_id, before=None, after=0, limit=7)
        assert [m.offset for m in forward] == post_offsets[:7]
        assert more
        rest, more = await store.history(
            lobby.sphere_id, before=None, after=forward[-1].offset, limit=7
        )
        assert [m.offset for m in rest] == post_offsets[7:]
        assert not more
        pages = newest + middle + oldest + forward + rest
        assert all(m.kind is EventKind.POST for m in pages if m.offset != 1)
        assert forward[0].kind is EventKind.MEMBER
        assert forward[1].body == "edited"


async def test_history_of_a_new_sphere_is_its_creation(
    store: Store, alice: UserRecord, lobby: SphereRecord
) -> None:
    async with asyncio.timeout(TIMEOUT_S):
        created = await store.events_after(lobby.sphere_id, 0, 10)
        assert await store.history(lobby.sphere_id, before=None, after=None, limit=10) == (
            created,
            False,
        )
        assert await store.history(lobby.sphere_id, before=None, after=1, limit=10) == ([], False)


async def test_events_after(store: Store, alice: UserRecord, lobby: SphereRecord) -> None:
    async with asyncio.timeout(TIMEOUT_S):
        for n in range(6):
            await store.append(lobby.sphere_id, post(alice, f"p{n}"))  # 2..7
        await store.append(lobby.sphere_id, edit(alice, 5, "changed"))

        page = await store.events_after(lobby.sphere_id, 4, 2)
        assert [(event.offset, event.body) for event in page] == [(5, "changed"), (6, "p4")]
        tail = await store.events_after(lobby.sphere_id, 6, 100)
        assert [(event.offset, event.kind) for event in tail] == [
            (7, EventKind.POST),
            (8, EventKind.EDIT),
        ]
        assert await store.events_after(lobby.sphere_id, 8, 100) == []
        assert await store.get_event(lobby.sphere_id, 9) is None


# ---------------------------------------------------------------------------------------------
# Lifecycle: durability, closing, migrations


async def test_data_and_counters_survive_reopening(backend: Backend) -> None:
    async with asyncio.timeout(TIMEOUT_S):
        store = await backend.open()
        try:
            alice = await new_user(store)
            lobby = await new_sphere(store, alice)
            written = [await store.append(lobby.sphere_id, post(alice)) for _ in range(3)]
        finally:
            await store.aclose()

        store = await backend.open()
        try:
            assert await store.get_user(alice.user_id) == alice
            reopened = await store.get_sphere(lobby.sphere_id)
            assert reopened is not None
            assert reopened.position.offset == 4
            assert reopened.epoch == lobby.epoch
            assert await store.events_after(lobby.sphere_id, 1, 10) == [r.event for r in written]
            retry = await store.append(lobby.sphere_id, post(alice, message_id="m-retry"))
            assert retry.event.offset == 5
        finally:
            await store.aclose()


async def test_closing_finishes_queued_appends(backend: Backend) -> None:
    async with asyncio.timeout(TIMEOUT_S):
        store = await backend.open()
        alice = await new_user(store)
        lobby = await new_sphere(store, alice)
        appends = [
            asyncio.create_task(store.append(lobby.sphere_id, post(alice))) for _ in range(50)
        ]
        await asyncio.sleep(0)  # let every append reach the queue
        await store.aclose()
        assert sorted([(await task).event.offset for task in appends]) == list(range(2, 52))
        with pytest.raises(StoreError):
            await store.append(lobby.sphere_id, post(alice))
        with pytest.raises(StoreError):
            await store.get_sphere(lobby.sphere_id)
        with pytest.raises(StoreError):
            await store.set_read_marker(lobby.sphere_id, alice.user_id, 1)

        store = await backend.open()
        try:
            assert await offsets(store, lobby) == list(range(1, 52))
        finally:
            await store.aclose()


async def test_two_stores_on_one_database_share_the_sequence(
    backend: Backend, store: Store, alice: UserRecord, lobby: SphereRecord
) -> None:
    # Another process (the admin CLI, a second node) writing beside the server.
    async with asyncio.timeout(TIMEOUT_S):
        other = await backend.open()
        try:
            results = await asyncio.gather(
                *(s.append(lobby.sphere_id, post(alice)) for s in [store, other] * 50)
            )
            bob = await new_user(other, "bob")
            assert await store.get_user(bob.user_id) == bob
        finally:
            await other.aclose()
        assert sorted(result.event.offset for result in results) == list(range(2, 102))
        assert await offsets(store, lobby) == list(range(1, 102))


async def test_reopening_applies_no_migration_twice(backend: Backend) -> None:
    async with asyncio.timeout(TIMEOUT_S):
        for _ in range(2):
            await (await backend.open()).aclose()
        versions = await backend.schema_versions()

    assert versions == list(range(1, len(versions) + 1))
    assert versions


async def test_a_newer_schema_is_refused(backend: Backend) -> None:
    async with asyncio.timeout(TIMEOUT_S):
        await (await backend.open()).aclose()
        await backend.record_schema_version(9_999)
        with pytest.raises(StoreError, match="9999"):
            await backend.open()


# ---------------------------------------------------------------------------------------------
# Directory: users, tokens


async def test_users(store: Store) -> None:
    async with asyncio.timeout(TIMEOUT_S):
        human = await store.create_user("Ada", UserKind.HUMAN, is_admin=True, now_ms=NOW_MS)
        bot = await store.create_user("ci-bot", UserKind.BOT, is_admin=False, now_ms=NOW_MS)

        assert human.user_id.startswith("u_")
        assert human.user_id != bot.user_id
        assert (human.name, human.kind, human.is_admin) == ("Ada", UserKind.HUMAN, True)
        assert await store.get_user(human.user_id) == human
        assert await store.get_user(bot.user_id) == bot
        assert await store.get_user(UserId("u_nobody")) is None


async def test_tokens(store: Store, alice: UserRecord) -> None:
    token = TokenRecord("t1", alice.user_id, b"\x00hash", NOW_MS, expires_ms=NOW_MS + 60_000)
    forever = TokenRecord("t2", alice.user_id, b"other", NOW_MS, expires_ms=None)
    async with asyncio.timeout(TIMEOUT_S):
        await store.add_token(token)
        await store.add_token(forever)
        assert await store.get_token("t1") == token
        assert await store.get_token("t2") == forever
        assert await store.get_token("t3") is None

        assert await store.revoke_token("t1", now_ms=NOW_MS) == replace(token, revoked=True)
        assert await store.get_token("t1") == replace(token, revoked=True)
        assert await store.revoke_token("t1", now_ms=NOW_MS) is None  # already revoked
        assert await store.revoke_token("t3", now_ms=NOW_MS) is None
        with pytest.raises(NotFoundError):
            await store.add_token(TokenRecord("t4", UserId("u_nobody"), b"", NOW_MS, None))


async def test_token_kinds_provenance_and_last_use(store: Store, alice: UserRecord) -> None:
    bot = await store.create_user("ci", UserKind.BOT, is_admin=False, now_ms=NOW_MS)
    issued = TokenRecord(
        "b1",
        bot.user_id,
        b"h",
        NOW_MS,
        None,
        kind=TokenKind.API,
        issued_by=alice.user_id,
        label="ci runner",
    )
    async with asyncio.timeout(TIMEOUT_S):
        await store.add_token(issued)
        assert await store.get_token("b1") == issued
        await store.touch_token("b1", NOW_MS + 5)
        assert (await store.get_token("b1")) == replace(issued, last_used_ms=NOW_MS + 5)
        page = await store.list_tokens(bot.user_id, now_ms=NOW_MS, before=None, limit=10)
        assert [t.token_id for t in page.tokens] == ["b1"]
        assert page.issuer_names == {alice.user_id: "alice"}
        assert page.next_cursor is None


async def test_list_tokens_pages_live_tokens_newest_first(store: Store, alice: UserRecord) -> None:
    async with asyncio.timeout(TIMEOUT_S):
        for n in range(5):
            await store.add_token(TokenRecord(f"t{n}", alice.user_id, b"h", NOW_MS + n, None))
        await store.add_token(TokenRecord("old", alice.user_id, b"h", NOW_MS, NOW_MS + 1))
        await store.revoke_token("t2", now_ms=NOW_MS)
        seen: list[str] = []
        cursor = None
        while True:
            page = await store.list_tokens(
                alice.user_id, now_ms=NOW_MS + 10, before=cursor, limit=2
            )
            seen += [t.token_id for t in page.tokens]
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
        assert seen == ["t4", "t3", "t1", "t0"]  # not the revoked one, nor the expired one


async def test_revocations_and_disabling_append_session_changes(
    store: Store, alice: UserRecord
) -> None:
    bob = await new_user(store, "bob")
    async with asyncio.timeout(TIMEOUT_S):
        start = await store.latest_session_change()
        for n in range(3):
            await store.add_token(TokenRecord(f"a{n}", alice.user_id, b"h", NOW_MS, None))
        await store.add_token(TokenRecord("b0", bob.user_id, b"h", NOW_MS, None))
        assert await store.revoke_token("a0", now_ms=NOW_MS, owner=bob.user_id) is None
        assert await store.revoke_token("a0", now_ms=NOW_MS, owner=alice.user_id) is not None
        assert await store.revoke_user_tokens(alice.user_id, now_ms=NOW_MS, keep="a2") == ["a1"]
        assert await store.revoke_user_tokens(alice.user_id, now_ms=NOW_MS, keep="a2") == []
        disabled = await store.set_user_disabled(bob.user_id, True, now_ms=NOW_MS + 1)
        assert disabled is not None and disabled.disabled_ms == NOW_MS + 1
        assert (await store.get_user(bob.user_id)) == disabled
        changes = await store.session_changes_after(start, 100)
        assert [(c.kind, c.user_id, c.token_id) for c in changes] == [
            (ChangeKind.TOKEN_REVOKED, alice.user_id, "a0"),
            (ChangeKind.TOKEN_REVOKED, alice.user_id, "a1"),
            (ChangeKind.USER_DISABLED, bob.user_id, None),
        ]
        seqs = [c.seq for c in changes]
        assert seqs == sorted(seqs) and seqs[0] > start
        assert await store.latest_session_change() == seqs[-1]
        assert await store.session_changes_after(seqs[0], 1) == changes[1:2]
        enabled = await store.set_user_disabled(bob.user_id, False, now_ms=NOW_MS + 2)
        assert enabled is not None and not enabled.disabled
        assert await store.session_changes_after(seqs[-1], 10) == []  # enabling closes nothing
        assert await store.set_user_disabled(UserId("u_nobody"), True, now_ms=NOW_MS) is None


async def test_users_are_listed_renamed_and_audited(store: Store) -> None:
    async with asyncio.timeout(TIMEOUT_S):
        audit = AuditEntry(OPERATOR, "user_created", None, NOW_MS)
        made = [
            await store.create_user(
                f"n{i}", UserKind.HUMAN, is_admin=False, now_ms=NOW_MS, audit=audit
            )
            for i in range(3)
        ]
        ids = sorted(u.user_id for u in made)
        listed = await store.list_users(after=None, limit=2)
        listed += await store.list_users(after=listed[-1].user_id, limit=2)
        assert [u.user_id for u in listed] == ids
        first = TokenRecord("first", UserId(""), b"h", NOW_MS, None, issued_by=OPERATOR)
        enrolled = await store.create_user(
            "n3",
            UserKind.HUMAN,
            is_admin=False,
            now_ms=NOW_MS,
            first_token=first,
            token_audit=AuditEntry(OPERATOR, "token_issued", None, NOW_MS, "first"),
        )
        assert await store.get_token("first") == replace(first, user_id=enrolled.user_id)
        issued, *_ = await store.list_audit(before=None, limit=1)
        assert (issued.action, issued.user_id, issued.token_id) == (
            "token_issued",
            enrolled.user_id,
            "first",
        )
        with pytest.raises(StoreError):  # the token id is taken: neither user nor token is kept
            await store.create_user(
                "n4", UserKind.HUMAN, is_admin=False, now_ms=NOW_MS, first_token=first
            )
        assert {u.name for u in await store.list_users(after=None, limit=100)} == {
            "n0",
            "n1",
            "n2",
            "n3",
        }
        renamed = await store.rename_user(made[0].user_id, "Ada L.")
        assert renamed == replace(made[0], name="Ada L.")
        assert await store.rename_user(UserId("u_nobody"), "x") is None
        entries = await store.list_audit(before=None, limit=3)
        assert [(e.actor, e.action, e.user_id) for e in entries] == [
            (OPERATOR, "token_issued", enrolled.user_id),
            (OPERATOR, "user_created", made[2].user_id),
            (OPERATOR, "user_created", made[1].user_id),
        ]
        older = await store.list_audit(before=entries[-1].seq, limit=10)
        assert [e.user_id for e in older] == [made[0].user_id]


async def test_tokens_for_humans_in_spheres_can_be_refused(
    store: Store, alice: UserRecord, lobby: SphereRecord
) -> None:
    newcomer = await new_user(store, "newcomer")
    bot = await store.create_user("bot", UserKind.BOT, is_admin=False, now_ms=NOW_MS)
    await add_member(store, lobby, bot)
    audit = AuditEntry(OPERATOR, "token_issued", None, NOW_MS, token_id="x")
    async with asyncio.timeout(TIMEOUT_S):
        before = await store.list_audit(before=None, limit=100)
        with pytest.raises(HasSpheresError):
            await store.add_token(
                TokenRecord("x1", alice.user_id, b"h", NOW_MS, None),
                audit=audit,
                refuse_members=True,
            )
        assert await store.get_token("x1") is None
        assert await store.list_audit(before=None, limit=100) == before  # nothing half-written
        for user in (newcomer, bot):  # no sphere yet; a bot
            token = TokenRecord(f"x-{user.name}", user.user_id, b"h", NOW_MS, None)
            await store.add_token(token, audit=audit, refuse_members=True)
            assert await store.get_token(token.token_id) == token
        assert len(await store.list_audit(before=None, limit=100)) == len(before) + 2


# ---------------------------------------------------------------------------------------------
# Directory: spheres, members, read markers


async def test_create_sphere_makes_the_owner(store: Store, alice: UserRecord) -> None:
    async with asyncio.timeout(TIMEOUT_S):
        sphere = await store.create_sphere("Lobby", Privacy.OPEN, alice.user_id, now_ms=NOW_MS)
        other = await new_sphere(store, alice, "other")

        assert sphere.sphere_id.startswith("s_")
        assert (sphere.name, sphere.privacy, sphere.offset) == ("Lobby", Privacy.OPEN, 1)
        assert sphere.epoch
        assert sphere.sphere_id != other.sphere_id
        assert await store.get_sphere(sphere.sphere_id) == sphere
        assert await store.get_role(sphere.sphere_id, alice.user_id) is Role.OWNER
        [created] = await store.events_after(sphere.sphere_id, 0, 10)
        assert (created.offset, created.kind, created.author_id) == (
            1,
            EventKind.MEMBER,
            alice.user_id,
        )
        assert (created.member_id, created.member_name, created.role, created.action) == (
            alice.user_id,
            "alice",
            Role.OWNER,
            MemberAction.JOINED,
        )
        assert len(created.message_id) > 64  # never a client's key
        assert await store.get_sphere(SphereId("s_nope")) is None
        with pytest.raises(NotFoundError):
            await store.create_sphere("x", Privacy.OPEN, UserId("u_nobody"), now_ms=NOW_MS)
        # Nothing of the failed creation is left behind.
        assert [s.sphere_id for s in await store.discoverable_spheres(10)] == [sphere.sphere_id]


def settings(name: str | None = None, privacy: Privacy | None = None) -> DecideSettings:
    """A settings decision that allows everything: ``name`` and ``privacy`` as given."""

    def decide(state: SettingsState) -> SettingsChange | None:
        sphere = state.sphere
        after = SphereSettings(
            name or sphere.name,
            privacy or sphere.privacy,
            False,
            sphere.join_policy,
            sphere.history,
        )
        if (after.name, after.privacy) == (sphere.name, sphere.privacy):
            return None
        return SettingsChange(after, ())

    return decide


async def test_update_sphere(store: Store, alice: UserRecord, lobby: SphereRecord) -> None:
    async with asyncio.timeout(TIMEOUT_S):
        renamed, rename = await store.update_sphere(
            lobby.sphere_id, alice.user_id, settings(name="Hall"), now_ms=NOW_MS
        )
        opened, event = await store.update_sphere(
            lobby.sphere_id, alice.user_id, settings(privacy=Privacy.PUBLIC), now_ms=NOW_MS + 1
        )
        unchanged, none = await store.update_sphere(
            lobby.sphere_id, alice.user_id, settings(privacy=Privacy.PUBLIC), now_ms=NOW_MS
        )

        assert none is None  # nothing changed: no event
        assert rename is not None and rename.name == "Hall"  # a rename is an event too
        assert (renamed.name, renamed.privacy, renamed.offset) == ("Hall", Privacy.PRIVATE, 2)
        assert (opened.name, opened.privacy, opened.epoch) == ("Hall", Privacy.PUBLIC, lobby.epoch)
        assert event is not None
        assert (event.offset, event.kind, event.privacy, event.author_id, event.ts_ms) == (
            3,
            EventKind.SPHERE,
            Privacy.PUBLIC,
            alice.user_id,
            NOW_MS + 1,
        )
        assert opened.offset == 3 and unchanged == opened
        assert await store.get_sphere(lobby.sphere_id) == opened
        assert await store.events_after(lobby.sphere_id, 1, 10) == [rename, event]
        with pytest.raises(NotFoundError):
            await store.update_sphere(
                SphereId("s_nope"), alice.user_id, settings(name="x"), now_ms=NOW_MS
            )


async def test_update_sphere_is_checked_in_its_transaction(
    store: Store, alice: UserRecord, lobby: SphereRecord
) -> None:
    seen: list[SettingsState] = []

    def refuse(state: SettingsState) -> SettingsChange | None:
        seen.append(state)
        raise CloisonError("no", code=ErrorCode.FORBIDDEN)

    async with asyncio.timeout(TIMEOUT_S):
        bob = await new_user(store, "bob")
        with pytest.raises(CloisonError, match="no"):
            await store.update_sphere(lobby.sphere_id, bob.user_id, refuse, now_ms=1)
        assert seen == [SettingsState(lobby, None, 1)]
        assert await store.get_sphere(lobby.sphere_id) == lobby
        assert await offsets(store, lobby) == [1]


async def test_change_member_writes_the_row_and_the_event_together(
    store: Store, alice: UserRecord, lobby: SphereRecord
) -> None:
    async with asyncio.timeout(TIMEOUT_S):
        bob = await new_user(store, "bob")
        seen: list[MembershipState] = []

        def promote(state: MembershipState) -> MemberChange:
            seen.append(state)
            return MemberChange(Role.ADMIN, MemberAction.ROLE_CHANGED)

        added = await store.change_member(
            lobby.sphere_id,
            alice.user_id,
            bob.user_id,
            setting(Role.MEMBER, MemberAction.ADDED),
            now_ms=NOW_MS + 1,
        )
        promoted = await store.change_member(
            lobby.sphere_id, alice.user_id, bob.user_id, promote, now_ms=NOW_MS + 2
        )
        assert await store.get_role(lobby.sphere_id, bob.user_id) is Role.ADMIN
        removed = await store.change_member(
            lobby.sphere_id,
            alice.user_id,
            bob.user_id,
            setting(None, MemberAction.REMOVED),
            now_ms=NOW_MS + 3,
        )

        assert added is not None and promoted is not None and removed is not None
        assert seen == [
            MembershipState(dataclasses.replace(lobby, offset=2), Role.OWNER, Role.MEMBER, owners=1)
        ]
        assert [(e.offset, e.role, e.action, e.ts_ms) for e in (added, promoted, removed)] == [
            (2, Role.MEMBER, MemberAction.ADDED, NOW_MS + 1),
            (3, Role.ADMIN, MemberAction.ROLE_CHANGED, NOW_MS + 2),
            (4, None, MemberAction.REMOVED, NOW_MS + 3),
        ]
        assert {(e.kind, e.author_id, e.member_id, e.member_name) for e in (added, removed)} == {
            (EventKind.MEMBER, alice.user_id, bob.user_id, "bob")
        }
        assert await store.events_after(lobby.sphere_id, 1, 10) == [added, promoted, removed]
        assert await store.get_role(lobby.sphere_id, bob.user_id) is None
        stored = await store.get_sphere(lobby.sphere_id)
        assert stored is not None and stored.offset == 4
        history, _ = await store.history(lobby.sphere_id, before=None, after=None, limit=10)
        assert [m.offset for m in history] == [1, 2, 3, 4]


async def test_change_member_refused_or_idle_writes_nothing(
    store: Store, alice: UserRecord, lobby: SphereRecord
) -> None:
    def refuse(state: MembershipState) -> MemberChange:
        raise CloisonError("a sphere keeps at least one owner", code=ErrorCode.CONFLICT)

    async with asyncio.timeout(TIMEOUT_S):
        bob = await new_user(store, "bob")
        with pytest.raises(CloisonError, match="owner") as refused:
            await store.change_member(
                lobby.sphere_id, alice.user_id, alice.user_id, refuse, now_ms=NOW_MS
            )
        assert refused.value.code is ErrorCode.CONFLICT
        idle = await store.change_member(
            lobby.sphere_id, alice.user_id, bob.user_id, lambda state: None, now_ms=NOW_MS
        )
        assert idle is None
        adding = setting(Role.MEMBER, MemberAction.ADDED)
        with pytest.raises(NotFoundError):
            await store.change_member(
                lobby.sphere_id, alice.user_id, UserId("u_no"), adding, now_ms=NOW_MS
            )
        with pytest.raises(NotFoundError):
            await store.change_member(
                SphereId("s_no"), alice.user_id, bob.user_id, adding, now_ms=NOW_MS
            )
        assert await offsets(store, lobby) == [1]
        assert await store.get_role(lobby.sphere_id, alice.user_id) is Role.OWNER
        assert await store.get_role(lobby.sphere_id, bob.user_id) is None


async def test_last_owner_rule_holds_under_concurrent_leaves(
    backend: Backend, store: Store, alice: UserRecord, lobby: SphereRecord
) -> None:
    """Two owners leave at once, through two stores: exactly one of them may."""

    def leave_unless_last(state: MembershipState) -> MemberChange:
        if state.target_role is Role.OWNER and state.owners <= 1:
            raise CloisonError("last owner", code=ErrorCode.CONFLICT)
        return MemberChange(None, MemberAction.LEFT)

    async with asyncio.timeout(TIMEOUT_S):
        other = await backend.open()
        try:
            for _ in range(5):
                sphere = await new_sphere(store, alice, "race")
                bob = await new_user(store, "bob")
                await add_member(store, sphere, bob, Role.OWNER)
                results = await asyncio.gather(
                    *(
                        s.change_member(
                            sphere.sphere_id, u.user_id, u.user_id, leave_unless_last, now_ms=1
                        )
                        for s, u in ((store, alice), (other, bob))
                    ),
                    return_exceptions=True,
                )
                left = [r for r in results if isinstance(r, Message)]
                refused = [r for r in results if isinstance(r, CloisonError)]
                assert (len(left), len(refused)) == (1, 1), results
                members = await store.list_members(sphere.sphere_id)
                assert [m.role for m in members] == [Role.OWNER]
                assert await offsets(store, sphere) == [1, 2, 3]
        finally:
            await other.aclose()


async def test_appends_are_authorised_when_they_commit(
    store: Store, alice: UserRecord, lobby: SphereRecord
) -> None:
    async with asyncio.timeout(TIMEOUT_S):
        bob = await new_user(store, "bob")
        with pytest.raises(NotMemberError) as refused:
            await store.append(lobby.sphere_id, post(bob, "not yet"))
        assert refused.value.code is ErrorCode.FORBIDDEN
        await add_member(store, lobby, bob)  # 2
        kept = await store.append(lobby.sphere_id, post(bob, "kept", message_id="k"))  # 3
        removal = store.change_member(
            lobby.sphere_id,
            alice.user_id,
            bob.user_id,
            setting(None, MemberAction.REMOVED),
            now_ms=NOW_MS,
        )
        # Appends queued around the removal: none by bob is sequenced after it.
        results = await asyncio.gather(
            *(store.append(lobby.sphere_id, post(bob, f"b{n}")) for n in range(20)),
            removal,
            *(store.append(lobby.sphere_id, post(bob, f"c{n}")) for n in range(20)),
            store.append(lobby.sphere_id, edit(bob, 3, "edited after")),
            store.append(lobby.sphere_id, post(alice, "alice still posts")),
            return_exceptions=True,
        )
        removed_event = results[20]
        assert isinstance(removed_event, Message)
        events = await store.events_after(lobby.sphere_id, 0, 100)
        by_bob = [e.offset for e in events if e.author_id == bob.user_id]
        assert by_bob and max(by_bob) < removed_event.offset
        assert all(isinstance(r, NotMemberError) for r in results[21:42])
        assert [e.body for e in events if e.author_id == alice.user_id][-1] == "alice still posts"
        # A retry of a write that committed before the removal still gets its original ack.
        retry = await store.append(lobby.sphere_id, post(bob, "kept", message_id="k"))
        assert retry.duplicate and retry.event == kept.event


async def test_sphere_members_and_position_in_one_read(
    store: Store, alice: UserRecord, lobby: SphereRecord
) -> None:
    async with asyncio.timeout(TIMEOUT_S):
        bob = await new_user(store, "bob")
        assert await store.sphere_members(lobby.sphere_id) == (
            lobby,
            {alice.user_id: (Role.OWNER, 0)},
        )
        await add_member(store, lobby, bob, Role.ADMIN)
        found = await store.sphere_members(lobby.sphere_id)
        assert found is not None
        sphere, members = found
        assert sphere.offset == 2
        # Bob reads from his member event on (history since joining).
        assert members == {alice.user_id: (Role.OWNER, 0), bob.user_id: (Role.ADMIN, 2)}
        assert await store.sphere_members(SphereId("s_nope")) is None


async def test_heads_read_every_position_at_once(store: Store, alice: UserRecord) -> None:
    async with asyncio.timeout(TIMEOUT_S):
        a = await new_sphere(store, alice, "a")
        b = await new_sphere(store, alice, "b")
        for _ in range(3):
            await store.append(a.sphere_id, post(alice))
        heads = await store.heads([a.sphere_id, b.sphere_id, SphereId("s_nope")])
        assert heads == {a.sphere_id: StreamPosition(4, a.epoch), b.sphere_id: b.position}
        assert await store.heads([]) == {}


async def test_sphere_access_reads_sphere_and_role_at_once(
    store: Store, alice: UserRecord, lobby: SphereRecord
) -> None:
    async with asyncio.timeout(TIMEOUT_S):
        bob = await new_user(store, "bob")
        assert await store.sphere_access(lobby.sphere_id, alice.user_id) == (lobby, Role.OWNER)
        assert await store.sphere_access(lobby.sphere_id, bob.user_id) == (lobby, None)
        await add_member(store, lobby, bob, Role.ADMIN)
        moved = dataclasses.replace(lobby, offset=2)
        assert await store.sphere_access(lobby.sphere_id, bob.user_id) == (moved, Role.ADMIN)
        assert await store.sphere_access(SphereId("s_nope"), bob.user_id) == (None, None)


async def test_list_members_by_role_then_name(
    store: Store, alice: UserRecord, lobby: SphereRecord
) -> None:
    async with asyncio.timeout(TIMEOUT_S):
        roles = {"dora": Role.MEMBER, "bob": Role.ADMIN, "carl": Role.MEMBER, "ann": Role.ADMIN}
        for name, role in roles.items():
            await add_member(store, lobby, await new_user(store, name), role)
        members = await store.list_members(lobby.sphere_id)

    assert [(m.name, m.role) for m in members] == [
        ("alice", Role.OWNER),
        ("ann", Role.ADMIN),
        ("bob", Role.ADMIN),
        ("carl", Role.MEMBER),
        ("dora", Role.MEMBER),
    ]
    assert members[0].user_id == alice.user_id
    assert members[0].kind is UserKind.HUMAN


async def test_members_and_spheres_page_by_their_sort_key(
    store: Store, alice: UserRecord, lobby: SphereRecord
) -> None:
    """Keyset pages: each starts after the previous one's last key, none repeats or skips."""
    async with asyncio.timeout(TIMEOUT_S):
        names = ["bo", "ann", "bo", "Zed", "émile", "ann", "carl"]
        for n, name in enumerate(names):
            user = await new_user(store, name)
            role = Role.ADMIN if n % 3 == 0 else Role.MEMBER
            await add_member(store, lobby, user, role)
            await new_sphere(store, alice, name)  # same names: the id breaks ties
        everyone = await store.list_members(lobby.sphere_id)
        spheres = await store.user_spheres(alice.user_id)
        for size in (1, 2, 3, 10):
            paged: list[MemberInfo] = []
            page = await store.list_members(lobby.sphere_id, limit=size)
            while page:
                assert len(page) <= size
                paged += page
                page = await store.list_members(
                    lobby.sphere_id, limit=size, after=member_key(page[-1])
                )
            assert paged == everyone
            paged_spheres: list[SphereSummary] = []
            got = await store.user_spheres(alice.user_id, limit=size)
            while got:
                paged_spheres += got
                got = await store.user_spheres(alice.user_id, limit=size, after=sphere_key(got[-1]))
            assert paged_spheres == spheres
    assert len(everyone) == len(names) + 1 and len(spheres) == len(names) + 1
    assert [m.role.rank for m in everyone] == sorted((m.role.rank for m in everyone), reverse=True)


async def test_user_spheres_count_unread_posts(
    store: Store, alice: UserRecord, lobby: SphereRecord
) -> None:
    async with asyncio.timeout(TIMEOUT_S):
        bob = await new_user(store, "bob")
        await add_member(store, lobby, bob)  # 2
        quiet = await new_sphere(store, bob, "quiet")
        for _ in range(3):
            await store.append(lobby.sphere_id, post(alice))  # 3, 4, 5
        await store.append(lobby.sphere_id, post(bob))  # 6
        await store.append(lobby.sphere_id, edit(alice, 3, "edits are not posts"))  # 7
        await store.append(lobby.sphere_id, delete(alice, 4))  # 8

        bobs = await store.user_spheres(bob.user_id)
        assert [(s.sphere_id, s.role, s.read_offset, s.unread, s.offset) for s in bobs] == [
            (lobby.sphere_id, Role.MEMBER, 0, 2, 8),
            (quiet.sphere_id, Role.OWNER, 0, 0, 1),
        ]
        assert (bobs[0].name, bobs[0].privacy, bobs[0].epoch) == (
            "lobby",
            lobby.privacy,
            lobby.epoch,
        )
        [alices] = await store.user_spheres(alice.user_id)
        assert alices.unread == 1

        assert await store.set_read_marker(lobby.sphere_id, bob.user_id, 3) == 3
        [lobby_for_bob, _] = await store.user_spheres(bob.user_id)
        assert (lobby_for_bob.read_offset, lobby_for_bob.unread) == (3, 1)
        assert await store.user_spheres(UserId("u_nobody")) == []


async def test_read_marker_moves_forward_only_and_stops_at_the_end(
    store: Store, alice: UserRecord, lobby: SphereRecord
) -> None:
    async with asyncio.timeout(TIMEOUT_S):
        for _ in range(5):
            await store.append(lobby.sphere_id, post(alice))

        assert await store.set_read_marker(lobby.sphere_id, alice.user_id, 3) == 3
        assert await store.set_read_marker(lobby.sphere_id, alice.user_id, 2) == 3
        assert await store.set_read_marker(lobby.sphere_id, alice.user_id, 1_000) == 6
        [summary] = await store.user_spheres(alice.user_id)
        assert (summary.read_offset, summary.unread) == (6, 0)

        outsider = await new_user(store, "eve")
        with pytest.raises(NotFoundError):
            await store.set_read_marker(lobby.sphere_id, outsider.user_id, 1)


async def test_discoverable_spheres(store: Store, alice: UserRecord) -> None:
    async with asyncio.timeout(TIMEOUT_S):
        created = [
            await new_sphere(store, alice, f"{privacy}-{n}", privacy)
            for n, privacy in enumerate(
                [Privacy.OPEN, Privacy.PRIVATE, Privacy.PUBLIC, Privacy.OPEN, Privacy.PRIVATE]
            )
        ]
        found = await store.discoverable_spheres(10)
        newest_two = await store.discoverable_spheres(2)

    assert [s.name for s in found] == ["open-3", "public-2", "open-0"]
    assert [s.name for s in newest_two] == ["open-3", "public-2"]
    assert found[0].sphere_id == created[3].sphere_id
    assert (found[0].role, found[0].read_offset, found[0].unread) == (None, None, None)
    assert (found[0].epoch, found[0].offset, found[0].privacy) == (
        created[3].epoch,
        1,
        Privacy.OPEN,
    )


# ---------------------------------------------------------------------------------------------
# The SQLite backend's own settings, and open_store URLs


@pytest.mark.parametrize("synchronous", ["FULL", "NORMAL", "normal"])
async def test_sqlite_synchronous_modes(tmp_path: Path, synchronous: str) -> None:
    async with asyncio.timeout(TIMEOUT_S):
        store = await SqliteStore.open(tmp_path / "db.sqlite3", synchronous=synchronous)
        await store.aclose()


@pytest.mark.parametrize("synchronous", ["OFF", "EXTRA", ""])
async def test_sqlite_rejects_other_synchronous_modes(tmp_path: Path, synchronous: str) -> None:
    with pytest.raises(ValueError, match="synchronous"):
        await SqliteStore.open(tmp_path / "db.sqlite3", synchronous=synchronous)
    assert not (tmp_path / "db.sqlite3").exists()


async def test_sqlite_missing_directory_is_a_store_error(tmp_path: Path) -> None:
    with pytest.raises(StoreError):
        await SqliteStore.open(tmp_path / "missing" / "db.sqlite3")


async def test_open_store_sqlite_urls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    async with asyncio.timeout(TIMEOUT_S):
        relative = await open_store("sqlite:///data/relative.sqlite3")
        await relative.aclose()
        absolute = await open_store(f"sqlite:///{tmp_path}/absolute.sqlite3?synchronous=NORMAL")
        await absolute.aclose()

    assert (tmp_path / "data" / "relative.sqlite3").exists()
    assert (tmp_path / "absolute.sqlite3").exists()


@pytest.mark.parametrize(
    "url",
    [
        "mysql://localhost/cloison",
        "cloison.sqlite3",
        "sqlite:///:memory:",
        "sqlite://",
        "sqlite://host/db.sqlite3",
        "sqlite:///db.sqlite3?journal=off",
    ],
)
async def test_open_store_rejects(url: str) -> None:
    with pytest.raises(ValueError, match="sqlite"):
        await open_store(url)


async def test_sqlite_readiness_needs_the_write_lock(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite3"
    async with asyncio.timeout(TIMEOUT_S):
        store = await SqliteStore.open(path)
        try:
            other = sqlite3.connect(path, isolation_level=None)  # another process, as it were
            other.execute("BEGIN IMMEDIATE")
            started = time.monotonic()
            with pytest.raises(StoreError, match="readiness check failed"):
                await store.check_writable()
            assert time.monotonic() - started < 3.0  # the probe's own lock timeout, not 5 s
            other.execute("ROLLBACK")
            other.close()
            await store.check_writable()
            # Nothing was left open behind the failed probe: writes go on.
            await store.create_user("after", UserKind.HUMAN, is_admin=False, now_ms=NOW_MS)
        finally:
            await store.aclose()


# ---------------------------------------------------------------------------------------------
# Backpressure: one bound and one answer on every engine


async def test_appends_beyond_the_queue_bound_fail_at_once_as_overloaded(
    store: Store, alice: UserRecord, lobby: SphereRecord
) -> None:
    """MAX_QUEUED_APPENDS appends started at once are queued; each one more fails at once
    with ``unavailable`` (retryable, "overloaded"), nothing written; the queued ones commit,
    gapless, and a retry of a refused one succeeds."""
    extra = 25
    drafts = [post(alice) for _ in range(MAX_QUEUED_APPENDS + extra)]
    async with asyncio.timeout(TIMEOUT_S * 4):
        # Every task queues its draft before the writer takes the first group: they all run
        # to their first await in this loop iteration, before the writer wakes.
        results = await asyncio.gather(
            *(store.append(lobby.sphere_id, draft) for draft in drafts), return_exceptions=True
        )
        refused = [n for n, r in enumerate(results) if isinstance(r, BaseException)]
        assert refused == list(range(MAX_QUEUED_APPENDS, MAX_QUEUED_APPENDS + extra))
        for n in refused:
            error = results[n]
            assert isinstance(error, StoreOverloadedError)
            assert error.code is ErrorCode.UNAVAILABLE and error.code.retryable
            assert "overloaded" in error.message
        stored = [
            r.event.offset for r in results[:MAX_QUEUED_APPENDS] if isinstance(r, AppendResult)
        ]
        assert stored == list(range(2, MAX_QUEUED_APPENDS + 2))
        assert (await store.heads([lobby.sphere_id]))[lobby.sphere_id].offset == stored[-1]
        retried = await store.append(lobby.sphere_id, drafts[refused[0]])
        assert (retried.event.offset, retried.duplicate) == (stored[-1] + 1, False)
