"""The store's part of sphere settings, the history promise and charters, on every backend."""

from __future__ import annotations

import asyncio

import pytest

from protocol import (
    CloisonError,
    ErrorCode,
    EventKind,
    HistoryMode,
    JoinPolicy,
    MemberAction,
    Privacy,
    Role,
    SphereId,
)
from storage import (
    AuditAction,
    CharterNotCurrentError,
    MemberView,
    NotFoundError,
    SettingsChange,
    SettingsState,
    SphereRecord,
    SphereSettings,
    Store,
    UserRecord,
)

from .conftest import TIMEOUT_S
from .test_store import NOW_MS, add_member, delete, edit, new_sphere, new_user, post, setting

SINCE, FULL = HistoryMode.SINCE_JOINING, HistoryMode.FULL


def becoming(settings: SphereSettings) -> object:
    """A settings decision that makes ``settings``, audited as a type change."""

    def decide(state: SettingsState) -> SettingsChange:
        return SettingsChange(settings, ((AuditAction.TYPE_CHANGED, settings.privacy.value),))

    return decide


def allow_all(privacy: Privacy, role: Role | None) -> None:
    """A charter check that allows everything (the server's rules are not the store's)."""


@pytest.fixture
async def alice(store: Store) -> UserRecord:
    return await new_user(store, "alice")


async def test_create_sphere_with_settings_writes_its_audit_entry(
    store: Store, alice: UserRecord
) -> None:
    async with asyncio.timeout(TIMEOUT_S):
        chosen = SphereSettings("Town", Privacy.PUBLIC, False, JoinPolicy.APPROVAL, FULL)
        sphere = await store.create_sphere(
            "ignored", Privacy.OPEN, alice.user_id, now_ms=NOW_MS, settings=chosen
        )
        assert (sphere.name, sphere.privacy, sphere.listed) == ("Town", Privacy.PUBLIC, False)
        assert (sphere.join_policy, sphere.history, sphere.public_from) == (
            JoinPolicy.APPROVAL,
            FULL,
            0,
        )
        assert await store.get_sphere(sphere.sphere_id) == sphere
        [created] = await store.list_sphere_audit(sphere.sphere_id, before=None, limit=5)
        assert (created.action, created.actor_id) == (AuditAction.SPHERE_CREATED, alice.user_id)
        assert created.detail is not None and "name" not in created.detail
        default = await new_sphere(store, alice, "plain", Privacy.OPEN)
        assert (default.listed, default.join_policy, default.history) == (
            True,
            JoinPolicy.FREE,
            SINCE,
        )


async def test_only_listed_spheres_are_discoverable(store: Store, alice: UserRecord) -> None:
    async with asyncio.timeout(TIMEOUT_S):
        listed = await new_sphere(store, alice, "listed", Privacy.OPEN)
        hidden = await store.create_sphere(
            "hidden",
            Privacy.OPEN,
            alice.user_id,
            now_ms=NOW_MS,
            settings=SphereSettings("hidden", Privacy.OPEN, False, JoinPolicy.FREE, SINCE),
        )
        found = await store.discoverable_spheres(10)
        assert [s.sphere_id for s in found] == [listed.sphere_id]
        assert (found[0].listed, found[0].join_policy) == (True, JoinPolicy.FREE)
        assert await store.get_sphere(hidden.sphere_id) is not None  # reachable by id


async def test_sphere_events_carry_every_setting_and_set_public_from(
    store: Store, alice: UserRecord
) -> None:
    async with asyncio.timeout(TIMEOUT_S):
        lobby = await new_sphere(store, alice)
        public = SphereSettings("Town", Privacy.PUBLIC, True, JoinPolicy.FREE, SINCE)
        updated, event = await store.update_sphere(
            lobby.sphere_id,
            alice.user_id,
            becoming(public),  # type: ignore[arg-type]
            now_ms=NOW_MS,
        )
        assert event is not None
        assert (event.kind, event.offset, event.name, event.privacy) == (
            EventKind.SPHERE,
            2,
            "Town",
            Privacy.PUBLIC,
        )
        assert (event.listed, event.join_policy, event.history, event.charter_version) == (
            True,
            JoinPolicy.FREE,
            SINCE,
            0,
        )
        assert updated.public_from == 2  # outsiders read from the change on
        assert await store.events_after(lobby.sphere_id, 1, 10) == [event]
        [entry, _] = await store.list_sphere_audit(lobby.sphere_id, before=None, limit=5)
        assert (entry.action, entry.detail, entry.offset) == (AuditAction.TYPE_CHANGED, "public", 2)


async def test_members_read_from_their_joining(store: Store, alice: UserRecord) -> None:
    async with asyncio.timeout(TIMEOUT_S):
        lobby = await new_sphere(store, alice)
        bob = await new_user(store, "bob")
        await store.append(lobby.sphere_id, post(alice, "before bob"))  # 2
        joined = await add_member(store, lobby, bob)  # 3
        await store.append(lobby.sphere_id, post(alice, "after bob"))  # 4
        _, view = await store.sphere_view(lobby.sphere_id, bob.user_id)
        assert view == MemberView(Role.MEMBER, 3, 0, None)
        _, owner = await store.sphere_view(lobby.sphere_id, alice.user_id)
        assert owner is not None and owner.history_from == 0
        # A role change keeps the floor; leaving and joining again resets it.
        await store.change_member(
            lobby.sphere_id,
            alice.user_id,
            bob.user_id,
            setting(Role.ADMIN, MemberAction.ROLE_CHANGED),
            now_ms=NOW_MS,
        )
        _, promoted = await store.sphere_view(lobby.sphere_id, bob.user_id)
        assert promoted is not None and promoted.history_from == joined.offset
        await store.change_member(
            lobby.sphere_id, bob.user_id, bob.user_id, setting(None, MemberAction.LEFT), now_ms=1
        )
        again = await add_member(store, lobby, bob)
        _, rejoined = await store.sphere_view(lobby.sphere_id, bob.user_id)
        assert rejoined is not None and rejoined.history_from == again.offset == 7

        page, more = await store.history(
            lobby.sphere_id, before=None, after=None, limit=10, floor=3
        )
        assert [e.offset for e in page] == [3, 4, 5, 6, 7] and not more
        page, _ = await store.history(lobby.sphere_id, before=None, after=0, limit=10, floor=3)
        assert [e.offset for e in page] == [3, 4, 5, 6, 7]
        page, more = await store.history(lobby.sphere_id, before=4, after=None, limit=10, floor=3)
        assert [e.offset for e in page] == [3] and not more
        [summary] = await store.user_spheres(bob.user_id)
        assert (summary.history_from, summary.unread, summary.charter_accepted) == (7, 0, 0)


async def test_full_history_members_read_everything(store: Store, alice: UserRecord) -> None:
    async with asyncio.timeout(TIMEOUT_S):
        whole = SphereSettings("whole", Privacy.PRIVATE, False, JoinPolicy.INVITATION, FULL)
        lobby = await store.create_sphere(
            "whole", Privacy.PRIVATE, alice.user_id, now_ms=NOW_MS, settings=whole
        )
        await store.append(lobby.sphere_id, post(alice))
        bob = await new_user(store, "bob")
        await add_member(store, lobby, bob)
        _, view = await store.sphere_view(lobby.sphere_id, bob.user_id)
        assert view is not None and view.history_from == 0
        [summary] = await store.user_spheres(bob.user_id)
        assert summary.unread == 1


async def test_history_hides_other_members_events_on_request(
    store: Store, alice: UserRecord
) -> None:
    async with asyncio.timeout(TIMEOUT_S):
        lobby = await new_sphere(store, alice)
        bob, carol = await new_user(store, "bob"), await new_user(store, "carol")
        await add_member(store, lobby, bob)  # 2
        await add_member(store, lobby, carol)  # 3
        await store.append(lobby.sphere_id, post(alice))  # 4
        page, _ = await store.history(
            lobby.sphere_id,
            before=None,
            after=None,
            limit=10,
            own_member_events=carol.user_id,
        )
        assert [e.offset for e in page] == [3, 4]
        page, _ = await store.history(
            lobby.sphere_id, before=None, after=1, limit=10, own_member_events=bob.user_id
        )
        assert [e.offset for e in page] == [2, 4]


async def test_edits_and_deletes_below_a_floor_stay_in_the_log(
    store: Store, alice: UserRecord
) -> None:
    async with asyncio.timeout(TIMEOUT_S):
        lobby = await new_sphere(store, alice)
        await store.append(lobby.sphere_id, post(alice, "old"))  # 2
        bob = await new_user(store, "bob")
        await add_member(store, lobby, bob)  # 3
        await store.append(lobby.sphere_id, edit(alice, 2, "older"))  # 4
        await store.append(lobby.sphere_id, delete(alice, 2))  # 5
        page, _ = await store.history(lobby.sphere_id, before=None, after=None, limit=10, floor=3)
        assert [e.offset for e in page] == [3]  # the post is not there for Bob


async def test_charters(store: Store, alice: UserRecord) -> None:
    async with asyncio.timeout(TIMEOUT_S):
        lobby = await new_sphere(store, alice)
        bob = await new_user(store, "bob")
        await add_member(store, lobby, bob)  # 2
        charter = await store.get_charter(lobby.sphere_id)
        assert charter is not None and (charter.version, charter.text) == (0, "")
        with pytest.raises(CharterNotCurrentError):
            await store.accept_charter(lobby.sphere_id, bob.user_id, 1)

        event = await store.set_charter(
            lobby.sphere_id, alice.user_id, "Be kind.", allow_all, now_ms=NOW_MS
        )
        assert (event.kind, event.offset, event.charter_version) == (EventKind.SPHERE, 3, 1)
        assert (await store.get_sphere(lobby.sphere_id)).charter_version == 1  # type: ignore[union-attr]
        _, setter = await store.sphere_view(lobby.sphere_id, alice.user_id)
        _, reader = await store.sphere_view(lobby.sphere_id, bob.user_id)
        assert setter is not None and setter.charter_accepted == 1  # the setter accepted it
        assert reader is not None and reader.charter_accepted == 0
        with pytest.raises(CharterNotCurrentError) as stale:
            await store.accept_charter(lobby.sphere_id, bob.user_id, 2)
        assert stale.value.code is ErrorCode.CONFLICT
        await store.accept_charter(lobby.sphere_id, bob.user_id, 1)
        _, reader = await store.sphere_view(lobby.sphere_id, bob.user_id)
        assert reader is not None and reader.charter_accepted == 1
        eve = await new_user(store, "eve")
        with pytest.raises(NotFoundError):
            await store.accept_charter(lobby.sphere_id, eve.user_id, 1)

        cleared = await store.set_charter(lobby.sphere_id, alice.user_id, "", allow_all, now_ms=1)
        assert cleared.charter_version == 0  # none; the version keeps counting underneath
        assert await store.get_charter(lobby.sphere_id) == type(charter)(0, "")
        again = await store.set_charter(lobby.sphere_id, alice.user_id, "v3", allow_all, now_ms=1)
        assert again.charter_version == 3
        [changed, *_] = await store.list_sphere_audit(lobby.sphere_id, before=None, limit=5)
        assert (changed.action, changed.detail) == (AuditAction.CHARTER_CHANGED, "3")
        assert await store.get_charter(SphereId("s_nope")) is None


async def test_set_charter_is_checked_in_its_transaction(store: Store, alice: UserRecord) -> None:
    def refuse(privacy: Privacy, role: Role | None) -> None:
        raise CloisonError("no", code=ErrorCode.FORBIDDEN)

    async with asyncio.timeout(TIMEOUT_S):
        lobby: SphereRecord = await new_sphere(store, alice)
        with pytest.raises(CloisonError, match="no"):
            await store.set_charter(lobby.sphere_id, alice.user_id, "x", refuse, now_ms=1)
        assert await store.get_sphere(lobby.sphere_id) == lobby
        with pytest.raises(NotFoundError):
            await store.set_charter(SphereId("s_nope"), alice.user_id, "x", allow_all, now_ms=1)
