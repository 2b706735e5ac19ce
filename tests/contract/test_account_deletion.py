"""The storage contract of account deletion (``storage.deletion.AccountDeletions``), on every
backend, through the ``Store`` interface only."""

from __future__ import annotations

import pytest

from protocol import EventKind, MemberAction, Message, MessageId, Privacy, Role, SphereId, UserId
from server.auth import new_token
from storage import (
    ACCOUNT_DELETED,
    DELETION_REQUESTED,
    AuditEntry,
    ChangeKind,
    DeletionMode,
    DeletionState,
    Draft,
    MemberChange,
    SphereStep,
    Store,
)
from tests.contract.test_entry import NOW_MS, add, user

BATCH = 2


async def append(store: Store, sphere_id: SphereId, draft: Draft) -> Message:
    return (await store.append(sphere_id, draft)).event


def draft(author: UserId, key: str, kind: EventKind = EventKind.POST, **fields: object) -> Draft:
    body = fields.pop("body", "canary text" if kind in (EventKind.POST, EventKind.EDIT) else None)
    return Draft(kind, MessageId(key), author, NOW_MS, body=body, **fields)  # type: ignore[arg-type]


async def run_job(store: Store, user_id: UserId, mode: DeletionMode) -> list[Message]:
    """Drive every step as the gateway's job does; returns the events it made."""
    while not await store.scan_deletion_spheres(user_id, BATCH):
        pass
    events = []
    for sphere_id in await store.deletion_spheres(user_id, SphereStep.MEMBERSHIP, 100):
        events += await store.remove_deleted_member(
            user_id, sphere_id, actor=user_id, now_ms=NOW_MS
        )
    for sphere_id in await store.deletion_spheres(user_id, SphereStep.CONTENT, 100):
        while await store.erase_deleted_content(user_id, sphere_id, mode, BATCH, now_ms=NOW_MS):
            pass
    assert await store.remove_deleted_user(user_id)
    audit = AuditEntry(user_id, ACCOUNT_DELETED, user_id, NOW_MS)
    await store.finish_account_deletion(user_id, now_ms=NOW_MS, audit=audit)
    return events


async def test_a_request_disables_revokes_and_audits_in_one_go(store: Store) -> None:
    alice = await user(store, "alice")
    for _ in range(2):
        record, _ = new_token(alice.user_id, now_ms=NOW_MS, ttl_ms=None)
        await store.add_token(record)
    before = await store.latest_session_change()
    request = await store.request_account_deletion(
        alice.user_id, requested_by=alice.user_id, mode=DeletionMode.ERASE, now_ms=NOW_MS
    )
    assert request is not None and request.created and len(request.revoked) == 2
    assert request.job.state is DeletionState.PENDING and request.job.mode is DeletionMode.ERASE
    stored = await store.get_user(alice.user_id)
    assert stored is not None and stored.disabled
    page = await store.list_tokens(alice.user_id, now_ms=NOW_MS, before=None, limit=10)
    assert page.tokens == []
    changes = await store.session_changes_after(before, 10)
    assert sorted(c.kind for c in changes) == [
        ChangeKind.TOKEN_REVOKED,
        ChangeKind.TOKEN_REVOKED,
        ChangeKind.USER_DISABLED,
    ]
    [entry] = [e for e in await store.list_audit(before=None, limit=10) if e.user_id]
    assert (entry.action, entry.actor, entry.detail) == (DELETION_REQUESTED, alice.user_id, "erase")
    # Asked again (by anyone, with another policy): the same job, nothing written.
    again = await store.request_account_deletion(
        alice.user_id, requested_by="cli", mode=DeletionMode.ANONYMISE, now_ms=NOW_MS + 1
    )
    assert again is not None and not again.created and again.revoked == []
    assert again.job == request.job
    assert await store.latest_session_change() == changes[-1].seq
    unknown = UserId("u_nobody")
    assert (
        await store.request_account_deletion(
            unknown, requested_by="cli", mode=DeletionMode.ERASE, now_ms=NOW_MS
        )
        is None
    )
    assert await store.get_account_deletion(unknown) is None


async def _written(store: Store) -> tuple[SphereId, SphereId, UserId, UserId, list[Message]]:
    """Two spheres where alice wrote, edited, reacted and was mentioned; bob stays."""
    owner = await user(store, "owner")
    one = await store.create_sphere("one", Privacy.PRIVATE, owner.user_id, now_ms=NOW_MS)
    two = await store.create_sphere("two", Privacy.PRIVATE, owner.user_id, now_ms=NOW_MS)
    alice = await add(store, one, owner, Role.MEMBER)
    bob = await add(store, one, owner, Role.MEMBER)
    await add_existing(store, two.sphere_id, owner.user_id, alice.user_id, Role.ADMIN)
    a, b = alice.user_id, bob.user_id
    mine = [await append(store, one.sphere_id, draft(a, f"a{i}")) for i in range(3)]
    theirs = await append(store, one.sphere_id, draft(b, "b0", body=f"hi <@{a}>"))
    await append(store, one.sphere_id, draft(a, "e0", EventKind.EDIT, target=mine[0].offset))
    await append(
        store, one.sphere_id, draft(a, "r0", EventKind.REACT, target=theirs.offset, emoji="x")
    )
    await append(
        store, one.sphere_id, draft(b, "r1", EventKind.REACT, target=mine[1].offset, emoji="y")
    )
    mine.append(await append(store, two.sphere_id, draft(a, "a9")))
    return one.sphere_id, two.sphere_id, a, b, [*mine, theirs]


@pytest.mark.parametrize("mode", list(DeletionMode))
async def test_the_job_leaves_nothing_of_the_account(store: Store, mode: DeletionMode) -> None:
    one, two, alice, bob, posts = await _written(store)
    await store.request_account_deletion(alice, requested_by=alice, mode=mode, now_ms=NOW_MS)
    events = await run_job(store, alice, mode)
    # One ``deleted`` member event per sphere: no author, no name; ``deleted`` tells the mode.
    assert sorted(e.sphere_id for e in events) == sorted([one, two])
    for event in events:
        assert (event.kind, event.action, event.member_id) == (
            EventKind.MEMBER,
            MemberAction.DELETED,
            alice,
        )
        assert event.author_id is None and event.member_name is None and event.role is None
        assert event.deleted is (mode is DeletionMode.ERASE)
        assert await store.get_event(event.sphere_id, event.offset) == event
    for sphere_id in (one, two):
        assert await store.get_role(sphere_id, alice) is None
        stream = await store.events_after(sphere_id, 0, 100)
        assert all(e.author_id != alice for e in stream)
        assert all(e.member_name is None for e in stream if e.member_id == alice)
    page, _ = await store.history(one, before=None, after=None, limit=100)
    by_offset = {e.offset: e for e in page}
    for mine in posts[:3]:
        shown = by_offset[mine.offset]
        assert shown.author_id is None and shown.message_id != mine.message_id
        if mode is DeletionMode.ERASE:
            assert shown.deleted and shown.body is None and shown.reactions is None
        else:
            assert not shown.deleted and shown.body == "canary text"
    theirs = by_offset[posts[-1].offset]
    assert theirs.author_id == bob and theirs.reactions is None  # alice's reaction went
    if mode is DeletionMode.ANONYMISE:
        assert [r.user_ids for r in by_offset[posts[1].offset].reactions or []] == [[bob]]
    edits = [e for e in await store.events_after(one, 0, 100) if e.kind is EventKind.EDIT]
    assert [e.body for e in edits] == [None if mode is DeletionMode.ERASE else "canary text"]
    assert await store.get_user(alice) is None
    job = await store.get_account_deletion(alice)
    assert job is not None and job.state is DeletionState.DONE and job.done_ms == NOW_MS
    assert job.rewritten == 6 and job.spheres_left == 0  # 4 posts, an edit, a reaction
    assert [e.action for e in await store.list_audit(before=None, limit=1)] == [ACCOUNT_DELETED]
    # Every step again: nothing left to do, nothing changes; the tombstone answers a request.
    assert await store.remove_deleted_member(alice, one, actor=alice, now_ms=NOW_MS) == []
    assert await store.erase_deleted_content(alice, one, mode, BATCH, now_ms=NOW_MS) == 0
    assert await store.events_after(one, 0, 100) == await store.events_after(one, 0, 100)
    again = await store.request_account_deletion(
        alice, requested_by="cli", mode=mode, now_ms=NOW_MS
    )
    assert again is not None and not again.created and again.job == job
    assert await store.claim_account_deletion(alice, owner="n", now_ms=NOW_MS, lease_ms=1) is None
    assert await store.open_account_deletions(10) == []


async def test_a_sole_owner_hands_over_to_the_longest_standing_of_the_highest_role(
    store: Store,
) -> None:
    owner = await user(store, "owner")
    sphere = await store.create_sphere("team", Privacy.PRIVATE, owner.user_id, now_ms=NOW_MS)
    await add(store, sphere, owner, Role.MEMBER)
    admin = await add(store, sphere, owner, Role.ADMIN)
    later = await user(store, "later admin")
    await store.change_member(
        sphere.sphere_id,
        owner.user_id,
        later.user_id,
        lambda _: MemberChange(Role.ADMIN, MemberAction.ADDED),
        now_ms=NOW_MS + 1,  # joined after ``admin``
    )
    await store.request_account_deletion(
        owner.user_id, requested_by="cli", mode=DeletionMode.ERASE, now_ms=NOW_MS
    )
    assert await store.scan_deletion_spheres(owner.user_id, 10)
    promoted, deleted = await store.remove_deleted_member(
        owner.user_id, sphere.sphere_id, actor="cli", now_ms=NOW_MS
    )
    assert promoted.member_id == admin.user_id and promoted.author_id is None
    assert (promoted.action, promoted.role) == (MemberAction.ROLE_CHANGED, Role.OWNER)
    assert await store.get_role(sphere.sphere_id, admin.user_id) is Role.OWNER
    assert deleted.offset == promoted.offset + 1 and deleted.action is MemberAction.DELETED


async def test_a_sphere_left_empty_is_deleted(store: Store) -> None:
    owner = await user(store, "owner")
    sphere = await store.create_sphere("alone", Privacy.PRIVATE, owner.user_id, now_ms=NOW_MS)
    await append(store, sphere.sphere_id, draft(owner.user_id, "p"))
    await store.request_account_deletion(
        owner.user_id, requested_by="cli", mode=DeletionMode.ANONYMISE, now_ms=NOW_MS
    )
    events = await run_job(store, owner.user_id, DeletionMode.ANONYMISE)
    assert [(e.kind, e.deleted) for e in events] == [(EventKind.SPHERE, True)]
    assert await store.get_sphere(sphere.sphere_id) is None


async def test_one_lease_at_a_time(store: Store) -> None:
    alice = await user(store, "alice")
    await store.request_account_deletion(
        alice.user_id, requested_by="cli", mode=DeletionMode.ERASE, now_ms=NOW_MS
    )
    assert await store.open_account_deletions(10) == [alice.user_id]
    claim = store.claim_account_deletion
    assert await claim(alice.user_id, owner="a", now_ms=NOW_MS, lease_ms=1000) is not None
    assert await claim(alice.user_id, owner="b", now_ms=NOW_MS + 999, lease_ms=1000) is None
    assert await claim(alice.user_id, owner="a", now_ms=NOW_MS + 999, lease_ms=1000) is not None
    assert await claim(alice.user_id, owner="b", now_ms=NOW_MS + 1999, lease_ms=1000) is not None


async def test_a_membership_made_after_the_scan_sends_the_job_back(store: Store) -> None:
    owner = await user(store, "owner")
    sphere = await store.create_sphere("team", Privacy.PRIVATE, owner.user_id, now_ms=NOW_MS)
    alice = await user(store, "alice")
    await store.request_account_deletion(
        alice.user_id, requested_by="cli", mode=DeletionMode.ERASE, now_ms=NOW_MS
    )
    assert await store.scan_deletion_spheres(alice.user_id, 10)
    assert await store.deletion_spheres(alice.user_id, SphereStep.MEMBERSHIP, 10) == []
    await add_existing(store, sphere.sphere_id, owner.user_id, alice.user_id)
    assert not await store.remove_deleted_user(alice.user_id)
    assert await store.deletion_spheres(alice.user_id, SphereStep.MEMBERSHIP, 10) == [
        sphere.sphere_id
    ]
    await run_job(store, alice.user_id, DeletionMode.ERASE)
    assert await store.get_user(alice.user_id) is None


async def add_existing(
    store: Store, sphere_id: SphereId, actor: UserId, target: UserId, role: Role = Role.MEMBER
) -> None:
    decide = lambda _: MemberChange(role, MemberAction.ADDED)  # noqa: E731
    await store.change_member(sphere_id, actor, target, decide, now_ms=NOW_MS)
