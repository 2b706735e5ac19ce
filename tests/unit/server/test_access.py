"""The membership rules of ``server.access``: pure decisions on the state a transaction read."""

from __future__ import annotations

import pytest

from protocol import CloisonError, ErrorCode, MemberAction, Privacy, Role, SphereId
from server import access
from storage import (
    AuditAction,
    MemberChange,
    MembershipState,
    SettingsState,
    SphereRecord,
    default_settings,
)


def state(
    actor: Role | None,
    target: Role | None,
    *,
    owners: int = 1,
    privacy: Privacy = Privacy.PRIVATE,
) -> MembershipState:
    defaults = default_settings("lobby", privacy)
    sphere = SphereRecord(
        SphereId("s_1"),
        "lobby",
        privacy,
        "e1",
        1,
        0,
        listed=defaults.listed,
        join_policy=defaults.join_policy,
    )
    return MembershipState(sphere, actor, target, owners)


def code_of(decide: access.DecideMember, given: MembershipState) -> ErrorCode:
    with pytest.raises(CloisonError) as refused:
        decide(given)
    return refused.value.code


def test_join() -> None:
    joined = MemberChange(Role.MEMBER, MemberAction.JOINED)
    assert access.decide_join(state(None, None, privacy=Privacy.OPEN)) == joined
    assert access.decide_join(state(None, None, privacy=Privacy.PUBLIC)) == joined
    assert access.decide_join(state(Role.MEMBER, Role.MEMBER)) is None  # already in
    assert code_of(access.decide_join, state(None, None)) is ErrorCode.NOT_FOUND


def test_leave_keeps_an_owner() -> None:
    left = MemberChange(None, MemberAction.LEFT)
    assert access.decide_leave(state(Role.MEMBER, Role.MEMBER)) == left
    assert access.decide_leave(state(Role.OWNER, Role.OWNER, owners=2)) == left
    assert code_of(access.decide_leave, state(Role.OWNER, Role.OWNER)) is ErrorCode.CONFLICT
    assert code_of(access.decide_leave, state(None, None)) is ErrorCode.NOT_FOUND
    public = state(None, None, privacy=Privacy.PUBLIC)
    assert code_of(access.decide_leave, public) is ErrorCode.FORBIDDEN


def test_add() -> None:
    add_member, add_admin = access.deciding_add(Role.MEMBER), access.deciding_add(Role.ADMIN)
    added = AuditAction.MEMBER_ADDED
    assert add_member(state(Role.ADMIN, None)) == MemberChange(
        Role.MEMBER, MemberAction.ADDED, added, "member"
    )
    assert add_admin(state(Role.OWNER, None)) == MemberChange(
        Role.ADMIN, MemberAction.ADDED, added, "admin"
    )
    assert add_member(state(Role.OWNER, Role.ADMIN)) is None  # a member already: no change
    assert code_of(add_admin, state(Role.ADMIN, None)) is ErrorCode.FORBIDDEN
    assert code_of(add_member, state(Role.MEMBER, None)) is ErrorCode.FORBIDDEN
    assert code_of(add_member, state(None, None)) is ErrorCode.NOT_FOUND


def test_remove() -> None:
    removed = MemberChange(None, MemberAction.REMOVED, AuditAction.MEMBER_REMOVED)
    assert access.decide_remove(state(Role.ADMIN, Role.MEMBER)) == removed
    assert access.decide_remove(state(Role.OWNER, Role.OWNER, owners=2)) == removed
    assert code_of(access.decide_remove, state(Role.ADMIN, Role.ADMIN)) is ErrorCode.FORBIDDEN
    assert code_of(access.decide_remove, state(Role.OWNER, Role.OWNER)) is ErrorCode.CONFLICT
    assert code_of(access.decide_remove, state(Role.OWNER, None)) is ErrorCode.NOT_FOUND
    assert code_of(access.decide_remove, state(Role.MEMBER, Role.MEMBER)) is ErrorCode.FORBIDDEN


def test_role_changes_keep_an_owner() -> None:
    demote, promote = access.deciding_role(Role.MEMBER), access.deciding_role(Role.ADMIN)
    changed = MemberChange(Role.ADMIN, MemberAction.ROLE_CHANGED, AuditAction.ROLE_CHANGED, "admin")
    assert promote(state(Role.OWNER, Role.MEMBER)) == changed
    assert promote(state(Role.OWNER, Role.ADMIN)) is None  # the same role: no event
    assert code_of(demote, state(Role.OWNER, Role.OWNER)) is ErrorCode.CONFLICT
    assert demote(state(Role.OWNER, Role.OWNER, owners=2)) is not None
    assert code_of(promote, state(Role.ADMIN, Role.MEMBER)) is ErrorCode.FORBIDDEN
    assert code_of(promote, state(Role.OWNER, None)) is ErrorCode.NOT_FOUND


def test_update_checks() -> None:
    sphere = state(None, None).sphere

    def decide(role: Role | None, **fields: object) -> object:
        asked = {"name": None, "privacy": None, "listed": None, "join_policy": None}
        asked.update(fields)
        return access.deciding_settings(history=None, **asked)(  # type: ignore[arg-type]
            SettingsState(sphere, role, 1)
        )

    assert decide(Role.ADMIN, name="Hall") is not None
    assert decide(Role.OWNER, privacy=Privacy.OPEN) is not None
    for role, privacy, code in (
        (Role.ADMIN, Privacy.OPEN, ErrorCode.FORBIDDEN),
        (Role.MEMBER, None, ErrorCode.FORBIDDEN),
        (None, None, ErrorCode.NOT_FOUND),
    ):
        with pytest.raises(CloisonError) as refused:
            decide(role, name="x", privacy=privacy)
        assert refused.value.code is code
