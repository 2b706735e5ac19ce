"""Sphere types, settings and the history promise: pure decisions of ``server.access`` and the
floor arithmetic of ``storage.rows``."""

from __future__ import annotations

import dataclasses

import pytest

from protocol import CloisonError, ErrorCode, HistoryMode, JoinPolicy, Privacy, Role, SphereId
from server import access
from storage import (
    AuditAction,
    MembershipState,
    MemberView,
    SettingsChange,
    SettingsState,
    SphereRecord,
    default_settings,
    joined_from,
    public_from_after,
    read_floor,
)

SINCE, FULL = HistoryMode.SINCE_JOINING, HistoryMode.FULL


def sphere(privacy: Privacy = Privacy.PRIVATE, **fields: object) -> SphereRecord:
    defaults = default_settings("lobby", privacy)
    record = SphereRecord(
        SphereId("s_1"),
        "lobby",
        privacy,
        "e1",
        5,
        0,
        listed=defaults.listed,
        join_policy=defaults.join_policy,
    )
    return dataclasses.replace(record, **fields)  # type: ignore[arg-type]


def update(
    record: SphereRecord, role: Role | None = Role.OWNER, members: int = 1, **fields: object
) -> SettingsChange | None:
    asked: dict[str, object] = dict.fromkeys(
        ("name", "privacy", "listed", "join_policy", "history")
    )
    asked.update(fields)
    decide = access.deciding_settings(**asked)  # type: ignore[arg-type]
    return decide(SettingsState(record, role, members))


def code_of(call: object, *args: object, **kwargs: object) -> ErrorCode:
    with pytest.raises(CloisonError) as refused:
        call(*args, **kwargs)  # type: ignore[operator]
    return refused.value.code


def test_defaults_by_type() -> None:
    for privacy, listed, policy in (
        (Privacy.PRIVATE, False, JoinPolicy.INVITATION),
        (Privacy.RESTRICTED, False, JoinPolicy.INVITATION),
        (Privacy.OPEN, True, JoinPolicy.FREE),
        (Privacy.PUBLIC, True, JoinPolicy.FREE),
    ):
        made = access.create_settings("x", privacy, None, None, None)
        assert (made.listed, made.join_policy, made.history) == (listed, policy, SINCE)


def test_sealed_types_are_never_listed_nor_free_to_join() -> None:
    create = access.create_settings
    for privacy in (Privacy.PRIVATE, Privacy.RESTRICTED):
        assert code_of(create, "x", privacy, True, None, None) is ErrorCode.BAD_FRAME
        assert code_of(create, "x", privacy, None, JoinPolicy.FREE, None) is ErrorCode.BAD_FRAME
        assert code_of(update, sphere(privacy), listed=True) is ErrorCode.CONFLICT
    for privacy in (Privacy.OPEN, Privacy.PUBLIC):
        made = create("x", privacy, False, JoinPolicy.APPROVAL, FULL)
        assert (made.listed, made.join_policy, made.history) == (False, JoinPolicy.APPROVAL, FULL)
        invitation = JoinPolicy.INVITATION
        assert code_of(create, "x", privacy, None, invitation, None) is ErrorCode.BAD_FRAME


def test_a_type_change_takes_the_new_types_defaults_unless_asked() -> None:
    change = update(sphere(Privacy.PRIVATE), privacy=Privacy.OPEN)
    assert change is not None
    assert (change.settings.listed, change.settings.join_policy) == (True, JoinPolicy.FREE)
    assert change.audits == (
        (AuditAction.SETTINGS_CHANGED, "listed=true,join_policy=free"),
        (AuditAction.TYPE_CHANGED, "open"),
    )
    unlisted = sphere(Privacy.OPEN, listed=False, join_policy=JoinPolicy.APPROVAL)
    kept = update(unlisted, privacy=Privacy.PUBLIC)
    assert kept is not None  # between two visible types, listing and policy stay
    assert (kept.settings.listed, kept.settings.join_policy) == (False, JoinPolicy.APPROVAL)
    sealed = update(unlisted, privacy=Privacy.RESTRICTED)
    assert sealed is not None
    assert (sealed.settings.listed, sealed.settings.join_policy) == (False, JoinPolicy.INVITATION)


def test_settings_changes_are_audited_and_idempotent() -> None:
    record = sphere(Privacy.OPEN)
    assert update(record, role=Role.ADMIN, name="lobby", listed=True) is None  # nothing changes
    change = update(record, role=Role.ADMIN, name="Hall", join_policy=JoinPolicy.APPROVAL)
    assert change is not None
    assert change.audits == ((AuditAction.SETTINGS_CHANGED, "name,join_policy=approval"),)
    assert code_of(update, record, role=Role.ADMIN, privacy=Privacy.PUBLIC) is ErrorCode.FORBIDDEN
    assert code_of(update, record, role=Role.ADMIN, history=FULL) is ErrorCode.FORBIDDEN
    assert code_of(update, record, role=Role.MEMBER, name="x") is ErrorCode.FORBIDDEN
    assert code_of(update, sphere(), role=None, name="x") is ErrorCode.NOT_FOUND


def test_the_history_promise_freezes_once_others_are_members() -> None:
    alone, shared = sphere(), sphere(history=FULL)
    widened = update(alone, history=FULL)
    assert widened is not None and widened.audits == ((AuditAction.HISTORY_CHANGED, "full"),)
    assert code_of(update, alone, members=2, history=FULL) is ErrorCode.CONFLICT
    narrowed = update(shared, members=30, history=SINCE)  # narrowing: always
    assert narrowed is not None and narrowed.settings.history is SINCE
    assert update(shared, members=30, history=FULL) is None  # as it is: nothing to refuse


def test_join_follows_the_join_policy() -> None:
    def state(record: SphereRecord, role: Role | None = None) -> MembershipState:
        return MembershipState(record, role, role, 1)

    assert access.decide_join(state(sphere(Privacy.OPEN))) is not None
    approval = sphere(Privacy.PUBLIC, join_policy=JoinPolicy.APPROVAL)
    with pytest.raises(CloisonError, match="request_join") as refused:
        access.decide_join(state(approval))
    assert refused.value.code is ErrorCode.FORBIDDEN
    for sealed in (Privacy.PRIVATE, Privacy.RESTRICTED):
        assert code_of(access.decide_join, state(sphere(sealed))) is ErrorCode.NOT_FOUND
    assert access.decide_join(state(approval, Role.MEMBER)) is None  # a member already


def test_floors() -> None:
    assert joined_from(SINCE, 7) == 7 and joined_from(FULL, 7) == 0
    private = (Privacy.PRIVATE, SINCE, 0)
    assert public_from_after(private, Privacy.PUBLIC, SINCE, 9) == 9  # made public: from now
    assert public_from_after(private, Privacy.PUBLIC, FULL, 9) == 0  # whole history: all
    public = (Privacy.PUBLIC, SINCE, 4)
    assert public_from_after(public, Privacy.PUBLIC, SINCE, 9) == 4  # a rename changes nothing
    assert public_from_after((Privacy.PUBLIC, FULL, 0), Privacy.PUBLIC, SINCE, 9) == 9  # narrowed
    assert read_floor(Privacy.PRIVATE, 4, 7) == 7
    assert read_floor(Privacy.PUBLIC, 4, 7) == 4  # a member reads what an outsider reads
    assert read_floor(Privacy.PUBLIC, 4, None) == 4
    member = MemberView(Role.MEMBER, history_from=7, charter_accepted=0)
    assert access.history_floor(sphere(public_from=4), member) == 7
    assert access.history_floor(sphere(Privacy.PUBLIC, public_from=4), None) == 4


def test_who_sees_the_member_list() -> None:
    assert access.sees_members(Privacy.PRIVATE, Role.MEMBER)
    assert not access.sees_members(Privacy.PRIVATE, Role.VISITOR)
    assert not access.sees_members(Privacy.RESTRICTED, Role.MEMBER)
    assert access.sees_members(Privacy.RESTRICTED, Role.PUBLISHER)
    assert not access.sees_members(Privacy.PUBLIC, None)


def test_charter_needs_a_publisher() -> None:
    access.check_charter(Privacy.RESTRICTED, Role.PUBLISHER)
    assert code_of(access.check_charter, Privacy.OPEN, Role.MEMBER) is ErrorCode.FORBIDDEN
    assert code_of(access.check_charter, Privacy.PRIVATE, None) is ErrorCode.NOT_FOUND
