"""The storage contract of exports (``storage.export.Export``): a user's rows read in pages, on
every backend, through the ``Store`` interface only."""

from __future__ import annotations

from protocol import (
    EventKind,
    MemberAction,
    MessageId,
    Privacy,
    ReportReason,
    Role,
    SphereId,
    UserId,
)
from server.governance import decisions
from storage import (
    AuditAction,
    AuditEntry,
    Draft,
    MemberChange,
    SphereAuditEntry,
    SphereRecord,
    Store,
    UserRecord,
)
from tests.contract.test_entry import NOW_MS, WEEK_MS, allow, user


async def post(store: Store, sphere: SphereRecord, author: UserRecord, n: int) -> int:
    draft = Draft(EventKind.POST, MessageId(f"m{n}"), author.user_id, NOW_MS + n, body=f"b{n}")
    return (await store.append(sphere.sphere_id, draft)).event.offset


async def change(
    store: Store, sphere: SphereRecord, kind: EventKind, author: UserRecord, **kw: object
) -> int:
    draft = Draft(kind, MessageId(f"{kind}-{kw}"), author.user_id, NOW_MS, **kw)  # type: ignore[arg-type]
    return (await store.append(sphere.sphere_id, draft)).event.offset


async def member_of(store: Store, sphere: SphereRecord, owner: UserRecord, who: UserRecord) -> None:
    await store.change_member(
        sphere.sphere_id,
        owner.user_id,
        who.user_id,
        lambda _: MemberChange(Role.MEMBER, MemberAction.ADDED),
        now_ms=NOW_MS,
    )


async def test_authored_events_page_by_window_and_limit(store: Store) -> None:
    owner = await user(store, "owner")
    alice = await user(store, "alice")
    spheres = [
        await store.create_sphere(f"s{n}", Privacy.PRIVATE, owner.user_id, now_ms=NOW_MS)
        for n in range(3)
    ]
    for sphere in spheres[:2]:
        await member_of(store, sphere, owner, alice)
    first, second, _ = spheres
    mine = [await post(store, first, alice, n) for n in range(7)]
    await post(store, first, owner, 100)  # someone else's: never alice's
    edit = await change(store, first, EventKind.EDIT, alice, target=mine[0], body="edited")
    delete = await change(store, first, EventKind.DELETE, alice, target=mine[1])
    await change(store, first, EventKind.REACT, alice, target=mine[2], emoji="+1")
    await change(store, first, EventKind.REACT, alice, target=mine[3], emoji="ok")
    await change(store, first, EventKind.REACT, alice, target=mine[3], emoji="+1")
    await change(store, first, EventKind.UNREACT, alice, target=mine[3], emoji="ok")

    # Spheres in which she authored anything (the member events the owner made are his).
    found = await store.authored_spheres(alice.user_id, after=None, limit=1)
    found += await store.authored_spheres(alice.user_id, after=found[-1], limit=5)
    assert found == [first.sphere_id]
    assert sorted(await store.authored_spheres(owner.user_id, after=None, limit=9)) == sorted(
        s.sphere_id for s in spheres
    )

    span = await store.authored_span(first.sphere_id, alice.user_id)
    assert span is not None
    assert (span.first, span.writings, span.reactions) == (mine[0], 9, 2)
    assert await store.authored_span(second.sphere_id, alice.user_id) is None

    # Windows of three offsets, pages of two rows: every writing once, in offset order.
    seen = []
    after = span.first - 1
    while after < span.last:
        until = min(after + 3, span.last)
        page = await store.authored_events(
            first.sphere_id, alice.user_id, after=after, until=until, limit=2
        )
        seen += page
        after = page[-1].offset if len(page) == 2 else until
    assert [m.offset for m in seen] == [*mine, edit, delete]
    assert {m.author_id for m in seen} == {alice.user_id}
    by_offset = {m.offset: m for m in seen}
    assert (by_offset[mine[0]].body, by_offset[mine[0]].edited_ms) == ("edited", NOW_MS)
    assert by_offset[mine[1]].deleted and by_offset[mine[1]].body is None
    assert (by_offset[edit].kind, by_offset[edit].target) == (EventKind.EDIT, mine[0])
    assert (by_offset[delete].kind, by_offset[delete].target) == (EventKind.DELETE, mine[1])

    reactions = await store.user_reactions(first.sphere_id, alice.user_id, after=None, limit=1)
    key = (reactions[-1].target, reactions[-1].emoji)
    reactions += await store.user_reactions(first.sphere_id, alice.user_id, after=key, limit=5)
    assert [(r.target, r.emoji) for r in reactions] == [(mine[2], "+1"), (mine[3], "+1")]


async def test_invitations_requests_and_audit_of_a_user(store: Store) -> None:
    owner = await user(store, "owner")
    alice = await user(store, "alice")
    bob = await user(store, "bob")
    team = await store.create_sphere("team", Privacy.PRIVATE, owner.user_id, now_ms=NOW_MS)
    lobby = await store.create_sphere("lobby", Privacy.OPEN, owner.user_id, now_ms=NOW_MS)
    other = await store.create_sphere("other", Privacy.OPEN, owner.user_id, now_ms=NOW_MS)
    await member_of(store, team, owner, alice)
    received = await store.invite(
        lobby.sphere_id,
        owner.user_id,
        alice.user_id,
        Role.MEMBER,
        allow,
        expires_ms=NOW_MS + WEEK_MS,
        now_ms=NOW_MS,
    )
    sent = await store.invite(
        team.sphere_id,
        alice.user_id,
        bob.user_id,
        Role.MEMBER,
        decisions.deciding_invite(Role.MEMBER),
        expires_ms=NOW_MS + WEEK_MS,
        now_ms=NOW_MS,
    )
    await store.invite(  # between others: not hers
        lobby.sphere_id,
        owner.user_id,
        bob.user_id,
        Role.MEMBER,
        allow,
        expires_ms=NOW_MS + WEEK_MS,
        now_ms=NOW_MS,
    )
    await store.answer_invitation(received.invitation_id, alice.user_id, None, now_ms=NOW_MS)

    invitations = await store.user_invitations(alice.user_id, after=None, limit=1)
    invitations += await store.user_invitations(
        alice.user_id, after=invitations[-1].invitation_id, limit=5
    )
    assert sorted(i.invitation_id for i in invitations) == sorted(
        [received.invitation_id, sent.invitation_id]
    )
    states = {i.invitation_id: i.state for i in invitations}
    assert states == {received.invitation_id: "declined", sent.invitation_id: "pending"}

    await store.request_join(other.sphere_id, alice.user_id, "me", allow, now_ms=NOW_MS)
    await store.request_join(lobby.sphere_id, alice.user_id, None, allow, now_ms=NOW_MS)
    await store.withdraw_request(lobby.sphere_id, alice.user_id, now_ms=NOW_MS)
    requests = await store.user_join_requests(alice.user_id, after=None, limit=1)
    requests += await store.user_join_requests(alice.user_id, after=requests[-1].sphere_id, limit=5)
    assert sorted((r.sphere_id, r.state, r.comment) for r in requests) == sorted(
        [(other.sphere_id, "pending", "me"), (lobby.sphere_id, "withdrawn", None)]
    )

    await store.record_audit(AuditEntry("cli", "data_exported", alice.user_id, NOW_MS, detail="x"))
    await store.record_audit(AuditEntry(alice.user_id, "tokens_revoked", bob.user_id, NOW_MS))
    await store.record_audit(AuditEntry("cli", "user_created", bob.user_id, NOW_MS))
    server = await store.user_audit(alice.user_id, after=0, limit=1)
    server += await store.user_audit(alice.user_id, after=server[-1].seq, limit=5)
    assert [(e.actor, e.action) for e in server] == [
        ("cli", "data_exported"),
        (alice.user_id, "tokens_revoked"),
    ]

    export = SphereAuditEntry(team.sphere_id, NOW_MS, owner.user_id, AuditAction.SPHERE_EXPORTED)
    await store.record_sphere_audit(export)
    in_team = await store.sphere_audit_after(team.sphere_id, after=0, limit=100)
    assert in_team[-1].action is AuditAction.SPHERE_EXPORTED
    assert [e.seq for e in in_team] == sorted(e.seq for e in in_team)
    hers = await store.user_sphere_audit(alice.user_id, after=0, limit=100)
    assert {(e.sphere_id, e.action) for e in hers} == {
        (lobby.sphere_id, AuditAction.INVITED),
        (team.sphere_id, AuditAction.INVITED),
        (lobby.sphere_id, AuditAction.INVITATION_DECLINED),
        (other.sphere_id, AuditAction.JOIN_REQUESTED),
        (lobby.sphere_id, AuditAction.JOIN_REQUESTED),
        (lobby.sphere_id, AuditAction.REQUEST_WITHDRAWN),
    }
    assert all(alice.user_id in (e.actor_id, e.target_id) for e in hers)

    assert await store.count_user_rows(alice.user_id) == {
        "invitations": 2,
        "join_requests": 2,
        "server_audit": 2,
        "sphere_audit": len(hers),
    }
    assert await store.count_user_rows(UserId("u_nobody")) == dict.fromkeys(
        ("invitations", "join_requests", "server_audit", "sphere_audit"), 0
    )


async def test_count_history_counts_what_history_returns(store: Store) -> None:
    owner = await user(store, "owner")
    team = await store.create_sphere("team", Privacy.PRIVATE, owner.user_id, now_ms=NOW_MS)
    offsets = [await post(store, team, owner, n) for n in range(5)]
    await change(store, team, EventKind.EDIT, owner, target=offsets[0], body="e")
    await change(store, team, EventKind.REACT, owner, target=offsets[0], emoji="+1")
    head = (await store.get_sphere(team.sphere_id)).offset  # type: ignore[union-attr]
    page, _ = await store.history(team.sphere_id, before=None, after=0, limit=100, floor=offsets[2])
    assert await store.count_history(team.sphere_id, floor=offsets[2], until=head) == len(page)
    assert await store.count_history(team.sphere_id, floor=0, until=head) == 6  # member + posts
    assert await store.count_history(SphereId("s_nowhere"), floor=0, until=head) == 0


async def test_a_report_is_the_reporters_never_the_reported_authors(store: Store) -> None:
    owner = await user(store, "owner")
    alice = await user(store, "alice")
    team = await store.create_sphere("team", Privacy.PRIVATE, owner.user_id, now_ms=NOW_MS)
    await member_of(store, team, owner, alice)
    hers = await post(store, team, alice, 1)
    await store.add_report(
        team.sphere_id, hers, owner.user_id, ReportReason.SPAM, None, now_ms=NOW_MS
    )
    reported = [e for e in await store.sphere_audit_after(team.sphere_id, after=0, limit=50)]
    assert [
        (e.actor_id, e.target_id) for e in reported if e.action is AuditAction.POST_REPORTED
    ] == [(owner.user_id, alice.user_id)]
    of_alice = await store.user_sphere_audit(alice.user_id, after=0, limit=50)
    of_owner = await store.user_sphere_audit(owner.user_id, after=0, limit=50)
    assert AuditAction.POST_REPORTED not in {e.action for e in of_alice}
    assert AuditAction.POST_REPORTED in {e.action for e in of_owner}
    counts = await store.count_user_rows(alice.user_id)
    assert counts["sphere_audit"] == len(of_alice)
