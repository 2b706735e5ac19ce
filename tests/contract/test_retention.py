"""The storage contract of retention and legal hold, on every backend: expiry removes the old
prefix of a stream and what its posts left, in batches, under an injected clock; a hold stops
it; status, runs and audit entries say what happened."""

from __future__ import annotations

import itertools

from protocol import EventKind, MessageId, Privacy, ReportReason, Role, SphereId, UserKind
from server import access
from server.access import deciding_settings
from storage import (
    OPERATOR,
    AuditAction,
    Draft,
    RetentionRun,
    SphereRecord,
    Store,
    UserRecord,
)

DAY_MS = 86_400_000
T0 = 1_700_000_000_000
_ids = itertools.count(1)


async def _user(store: Store, name: str) -> UserRecord:
    return await store.create_user(name, UserKind.HUMAN, is_admin=False, now_ms=T0)


async def _post(
    store: Store,
    sphere: SphereRecord,
    author: UserRecord,
    ts_ms: int,
    kind: EventKind = EventKind.POST,
    **fields: object,
) -> int:
    draft = Draft(kind, MessageId(f"r{next(_ids)}"), author.user_id, ts_ms, **fields)  # type: ignore[arg-type]
    return (await store.append(sphere.sphere_id, draft)).event.offset


async def _sphere(store: Store, owner: UserRecord) -> SphereRecord:
    return await store.create_sphere("kept", Privacy.PRIVATE, owner.user_id, now_ms=T0)


async def _expire_all(store: Store, sphere_id: SphereId, before_ms: int, limit: int) -> int:
    deleted = 0
    while True:
        batch = await store.expire_events(
            sphere_id, before_ms=before_ms, now_ms=before_ms, limit=limit
        )
        deleted += batch.deleted
        if not batch.more:
            return deleted


async def test_expiry_removes_the_old_prefix_and_what_its_posts_left(store: Store) -> None:
    owner = await _user(store, "ann")
    other = await _user(store, "bob")
    sphere = await _sphere(store, owner)
    decide = access.deciding_add(Role.MEMBER)
    await store.change_member(sphere.sphere_id, owner.user_id, other.user_id, decide, now_ms=T0)
    old = await _post(store, sphere, owner, T0, body=f"old <@{other.user_id}>")
    await _post(store, sphere, owner, T0 + 1, EventKind.REACT, target=old, emoji="👍")
    await _post(store, sphere, owner, T0 + 2, EventKind.PIN, target=old)
    await store.add_report(sphere.sphere_id, old, owner.user_id, ReportReason.SPAM, None, now_ms=T0)
    # Ten days later, above the horizon to come: an edit of the old post, a reply, a new post.
    later = T0 + 10 * DAY_MS
    mention = f"edited <@{other.user_id}>"
    edit = await _post(store, sphere, owner, later, EventKind.EDIT, target=old, body=mention)
    reply = await _post(store, sphere, owner, later, body="reply", reply_to=old)
    young = await _post(store, sphere, owner, later, body="young")
    # The positive controls: what the old post left is there before the pass.
    assert await store.list_mentions(other.user_id, after=None, limit=10) != []
    assert await store.list_threads(sphere.sphere_id, owner.user_id, before=None, limit=10) != []
    assert (await store.list_pins(sphere.sphere_id, owner.user_id, limit=10))[0] != []
    assert await store.list_reports(sphere.sphere_id, before=None, limit=10) != []
    deleted = await _expire_all(store, sphere.sphere_id, T0 + 5 * DAY_MS, limit=2)
    assert deleted == 5  # two member events, the old post, its reaction and pin
    after = await store.get_sphere(sphere.sphere_id)
    assert after is not None and after.retained_from == edit
    assert await store.get_event(sphere.sphere_id, old) is None
    # The stream stays gapless from the horizon on; the edit keeps its place, not its body.
    events = await store.events_after(sphere.sphere_id, 0, 100)
    assert [e.offset for e in events] == [edit, reply, young]
    assert events[0].body is None and events[0].kind is EventKind.EDIT
    assert events[1].reply_to == old  # a reply keeps the offset it answered
    page, more = await store.history(sphere.sphere_id, before=None, after=None, limit=50)
    assert [m.offset for m in page] == [reply, young] and not more
    assert await store.list_threads(sphere.sphere_id, owner.user_id, before=None, limit=10) == []
    assert (await store.list_pins(sphere.sphere_id, owner.user_id, limit=10))[0] == []
    assert await store.list_mentions(other.user_id, after=None, limit=10) == []
    assert await store.list_reports(sphere.sphere_id, before=None, limit=10) == []
    members = await store.list_members(sphere.sphere_id)
    assert {m.user_id for m in members} == {owner.user_id, other.user_id}  # members stay
    # Idempotent: a second pass (another node's) finds nothing to do.
    assert await _expire_all(store, sphere.sphere_id, T0 + 5 * DAY_MS, limit=2) == 0


async def test_batches_are_bounded_and_report_more(store: Store) -> None:
    owner = await _user(store, "ann")
    sphere = await _sphere(store, owner)
    for i in range(7):
        await _post(store, sphere, owner, T0 + i, body=f"p{i}")
    first = await store.expire_events(
        sphere.sphere_id, before_ms=T0 + DAY_MS, now_ms=T0 + DAY_MS, limit=3
    )
    assert (first.deleted, first.retained_from, first.more) == (3, 4, True)
    rest = await _expire_all(store, sphere.sphere_id, T0 + DAY_MS, limit=3)
    assert rest == 5
    after = await store.get_sphere(sphere.sphere_id)
    assert after is not None and after.retained_from == after.offset + 1
    # Appends go on after the offsets retention removed.
    assert await _post(store, sphere, owner, T0 + DAY_MS, body="next") == after.offset + 1


async def test_a_legal_hold_suspends_expiry_until_released(store: Store) -> None:
    owner = await _user(store, "ann")
    sphere = await _sphere(store, owner)
    await _post(store, sphere, owner, T0, body="evidence")
    held, event = await store.set_legal_hold(
        sphere.sphere_id, owner.user_id, until_ms=T0 + 30 * DAY_MS, reason="case 12", now_ms=T0
    )
    assert held.held(T0 + DAY_MS) and not held.held(T0 + 30 * DAY_MS)
    assert event.kind is EventKind.SPHERE and event.legal_hold is not None
    assert event.legal_hold.until_ms == T0 + 30 * DAY_MS
    stored = await store.get_event(sphere.sphere_id, event.offset)
    assert stored is not None and stored.legal_hold == event.legal_hold
    batch = await store.expire_events(
        sphere.sphere_id, before_ms=T0 + DAY_MS, now_ms=T0 + DAY_MS, limit=10
    )
    assert batch.held and batch.deleted == 0
    # Past its end the hold no longer stops anything.
    later = T0 + 31 * DAY_MS
    batch = await store.expire_events(sphere.sphere_id, before_ms=T0 + 1, now_ms=later, limit=10)
    assert not batch.held and batch.deleted == 3  # with the event that set the hold
    again, _ = await store.set_legal_hold(
        sphere.sphere_id, owner.user_id, until_ms=None, reason="case 13", now_ms=later
    )
    assert again.hold is not None and again.hold.until_ms is None and again.held(later * 2)
    released, lifted = await store.release_legal_hold(sphere.sphere_id, owner.user_id, now_ms=later)
    assert released.hold is None and lifted is not None and lifted.legal_hold is None
    assert await store.release_legal_hold(sphere.sphere_id, owner.user_id, now_ms=later) == (
        released,
        None,
    )
    audit = await store.list_sphere_audit(sphere.sphere_id, before=None, limit=10)
    actions = [e.action for e in audit]
    assert actions[:3] == [
        AuditAction.LEGAL_HOLD_RELEASED,
        AuditAction.LEGAL_HOLD_SET,
        AuditAction.LEGAL_HOLD_SET,
    ]
    server = await store.list_audit(before=None, limit=10)
    assert [e.action for e in server][:3] == [
        "legal_hold_released",
        "legal_hold_set",
        "legal_hold_set",
    ]
    assert server[1].detail == f"sphere={sphere.sphere_id},until=released,reason=case 13"


async def test_status_runs_and_the_audit_of_a_pass(store: Store) -> None:
    owner = await _user(store, "ann")
    sphere = await _sphere(store, owner)
    kept = await store.create_sphere("forever", Privacy.OPEN, owner.user_id, now_ms=T0)
    await _post(store, sphere, owner, T0, body="old")
    young = T0 + 3 * DAY_MS
    await _post(store, sphere, owner, young, body="young")
    await _expire_all(store, sphere.sphere_id, T0 + DAY_MS, limit=10)
    await store.finish_retention(sphere.sphere_id, now_ms=young, deleted=2, actor_id="retention")
    (status,) = await store.retention_status(sphere_id=sphere.sphere_id, limit=1)
    assert (status.retained_from, status.oldest_ms, status.run_ms) == (3, young, young)
    listed = await store.retention_status(limit=10)
    assert {s.sphere_id for s in listed} == {sphere.sphere_id, kept.sphere_id}
    assert next(s for s in listed if s.sphere_id == kept.sphere_id).run_ms is None
    (entry, *_) = await store.list_sphere_audit(sphere.sphere_id, before=None, limit=1)
    assert entry.action is AuditAction.RETENTION_APPLIED
    assert entry.detail == "removed=2,retained_from=3"
    run = RetentionRun("node-a", T0, T0 + 5, 1, 2)
    await store.record_retention_run(run)
    await store.record_retention_run(RetentionRun("node-a", T0 + 9, T0 + 10, 2, 0))
    await store.record_retention_run(RetentionRun(OPERATOR, T0, T0 + 1, 0, 0))
    assert await store.retention_runs() == [
        RetentionRun("node-a", T0 + 9, T0 + 10, 2, 0),
        RetentionRun(OPERATOR, T0, T0 + 1, 0, 0),
    ]


async def test_spheres_with_a_period_are_listed(store: Store) -> None:
    owner = await _user(store, "ann")
    a = await _sphere(store, owner)
    b = await _sphere(store, owner)
    assert await store.retention_spheres(everyone=False, after=None, limit=10) == []
    everyone = await store.retention_spheres(everyone=True, after=None, limit=10)
    assert sorted(s.sphere_id for s in everyone) == sorted([a.sphere_id, b.sphere_id])
    first = min(a.sphere_id, b.sphere_id)
    paged = await store.retention_spheres(everyone=True, after=first, limit=10)
    assert [s.sphere_id for s in paged] == [max(a.sphere_id, b.sphere_id)]
    decide = deciding_settings(
        name=None, privacy=None, listed=None, join_policy=None, history=None, retention_days=7
    )
    updated, event = await store.update_sphere(a.sphere_id, owner.user_id, decide, now_ms=T0)
    assert updated.retention_days == 7 and event is not None and event.retention_days == 7
    own = await store.retention_spheres(everyone=False, after=None, limit=10)
    assert [(s.sphere_id, s.retention_days) for s in own] == [(a.sphere_id, 7)]
    (entry, *_) = await store.list_sphere_audit(a.sphere_id, before=None, limit=1)
    assert (entry.action, entry.detail) == (AuditAction.RETENTION_CHANGED, "7")
