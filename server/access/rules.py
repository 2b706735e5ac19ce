"""The checks built on the rights table: visibility, rights, and membership decisions.

A private sphere and a sphere that does not exist look the same to a non-member: both raise
``not_found`` with the same message after the same single store read, so sphere ids are no
existence oracle. ``forbidden`` is only ever said about a sphere the caller can see.

Membership changes are decided here and made by the store: each ``decide_*`` function below
rules on the rows the store read inside the transaction that changes them (the caller's role,
the target's role, the number of owners), so no rule is checked against rows that another
request changes before the write. Appends are authorised by the store when they commit (an
author who is no longer a member fails); ``refused_write`` turns that into the code this
module would have answered.
"""

from __future__ import annotations

from protocol import CloisonError, ErrorCode, MemberAction, Privacy, Role, SphereId, UserId
from server.access.rights import STAFF, Right, allowed
from storage import (
    AuditAction,
    CheckUpdate,
    DecideMember,
    MemberChange,
    MembershipState,
    SphereRecord,
    Store,
)

SPHERE_NOT_FOUND = "sphere not found"
MEMBERS_ONLY = "only members may do this"
JOIN_TO_READ = "join this sphere to read it"


def visible(sphere: SphereRecord, role: Role | None) -> bool:
    return allowed(Right.SEE, sphere.privacy, role)


def can_read(sphere: SphereRecord, role: Role | None) -> bool:
    return allowed(Right.READ, sphere.privacy, role)


def require_visible_privacy(privacy: Privacy, role: Role | None) -> None:
    """``not_found`` unless a sphere of this privacy is visible to a user with ``role``."""
    if not allowed(Right.SEE, privacy, role):
        raise CloisonError(SPHERE_NOT_FOUND, code=ErrorCode.NOT_FOUND)


def can_manage(role: Role | None) -> bool:
    """Is ``role`` one of the sphere's administrators (owner or admin)?"""
    return role in STAFF


def require_right(
    right: Right,
    privacy: Privacy,
    role: Role | None,
    *,
    muted: bool = False,
    banned: bool = False,
    message: str | None = None,
) -> None:
    """The one check of a right: ``not_found`` if the sphere is hidden from the caller,
    ``forbidden`` (with ``message``, or one naming the right) if they lack the right."""
    require_visible_privacy(privacy, role)
    if allowed(right, privacy, role, muted=muted, banned=banned):
        return
    if banned:
        raise CloisonError("you are banned from this sphere", code=ErrorCode.FORBIDDEN)
    if muted and allowed(right, privacy, role):
        raise CloisonError("you are muted in this sphere", code=ErrorCode.FORBIDDEN)
    if role is None and right is not Right.JOIN and allowed(right, privacy, Role.VISITOR):
        raise CloisonError(
            MEMBERS_ONLY if right is not Right.READ else JOIN_TO_READ, code=ErrorCode.FORBIDDEN
        )
    raise CloisonError(
        message or f"your role does not allow {right.value}", code=ErrorCode.FORBIDDEN
    )


async def resolve(
    store: Store, sphere_id: SphereId, user_id: UserId
) -> tuple[SphereRecord, Role | None]:
    """The sphere and the caller's role in it.

    Raises:
        CloisonError: ``not_found`` when the sphere does not exist or is hidden from the caller.
    """
    # One read whether or not the sphere exists: the same time for both answers.
    sphere, role = await store.sphere_access(sphere_id, user_id)
    if sphere is None:
        raise CloisonError(SPHERE_NOT_FOUND, code=ErrorCode.NOT_FOUND)
    require_visible(sphere, role)
    return sphere, role


def require_visible(sphere: SphereRecord, role: Role | None) -> None:
    require_visible_privacy(sphere.privacy, role)


def require(allowed: bool, message: str) -> None:
    """Raise ``forbidden`` unless ``allowed``; only for spheres the caller can see."""
    if not allowed:
        raise CloisonError(message, code=ErrorCode.FORBIDDEN)


def require_member(sphere: SphereRecord, role: Role | None) -> Role:
    """The caller's role, which must exist (``not_found`` if the sphere is hidden from them)."""
    require_visible(sphere, role)
    require(role is not None, MEMBERS_ONLY)
    assert role is not None
    return role


async def refused_write(store: Store, sphere_id: SphereId, user_id: UserId) -> CloisonError:
    """The error for a write the store refused because its author is not a member."""
    try:
        await resolve(store, sphere_id, user_id)
    except CloisonError as exc:
        return exc
    return CloisonError(MEMBERS_ONLY, code=ErrorCode.FORBIDDEN)


def _last_owner(state: MembershipState, role_after: Role | None) -> bool:
    """Would the change leave the sphere without an owner?"""
    return state.target_role is Role.OWNER and role_after is not Role.OWNER and state.owners <= 1


def decide_join(state: MembershipState) -> MemberChange | None:
    """Joining an open or public sphere; a member who joins again changes nothing."""
    if state.actor_role is not None:
        return None
    require_right(Right.JOIN, state.sphere.privacy, None, banned=state.target_banned)
    return MemberChange(Role.MEMBER, MemberAction.JOINED)


def decide_leave(state: MembershipState) -> MemberChange:
    require_right(Right.LEAVE, state.sphere.privacy, state.actor_role, message=MEMBERS_ONLY)
    if _last_owner(state, None):
        raise CloisonError(
            "the last owner cannot leave; make another member owner first",
            code=ErrorCode.CONFLICT,
        )
    return MemberChange(None, MemberAction.LEFT)


def deciding_add(role: Role) -> DecideMember:
    """Adding a user with ``role`` (admins add members; only owners grant more)."""

    def decide(state: MembershipState) -> MemberChange | None:
        actor = state.actor_role
        require_right(
            Right.ADD_MEMBER,
            state.sphere.privacy,
            actor,
            message="only sphere admins may add members",
        )
        assert actor is not None
        require(_may_grant(actor, role), "only owners may grant that role")
        require(not state.target_banned, "this user is banned from this sphere")
        if state.target_role is not None:
            return None  # already a member: adding is idempotent, and changes no role
        return MemberChange(role, MemberAction.ADDED, AuditAction.MEMBER_ADDED, role.value)

    return decide


def decide_remove(state: MembershipState) -> MemberChange:
    """Removing a member: owners remove anyone, admins only members of a lower role."""
    actor = state.actor_role
    require_right(
        Right.REMOVE_MEMBER,
        state.sphere.privacy,
        actor,
        message="only sphere admins may remove members",
    )
    assert actor is not None
    target = state.target_role
    if target is None:
        raise CloisonError("not a member of this sphere", code=ErrorCode.NOT_FOUND)
    require(
        actor is Role.OWNER or target.rank < actor.rank,
        "admins may only remove members of a lower role",
    )
    if _last_owner(state, None):
        raise CloisonError("a sphere keeps at least one owner", code=ErrorCode.CONFLICT)
    return MemberChange(None, MemberAction.REMOVED, AuditAction.MEMBER_REMOVED)


def _may_grant(actor: Role, role: Role) -> bool:
    """Owners grant any role; administrators only roles below their own."""
    return actor is Role.OWNER or role.rank < actor.rank


def deciding_role(role: Role) -> DecideMember:
    """Giving a member ``role``; the same role again changes nothing.

    Owners change anyone's role; administrators change only the roles of members below them,
    to roles below their own. A visitor becomes a member before any higher role.
    """

    def decide(state: MembershipState) -> MemberChange | None:
        actor = state.actor_role
        require_right(
            Right.SET_ROLE, state.sphere.privacy, actor, message="only owners may change roles"
        )
        assert actor is not None
        target = state.target_role
        if target is None:
            raise CloisonError("not a member of this sphere", code=ErrorCode.NOT_FOUND)
        if target is role:
            return None
        require(
            actor is Role.OWNER or (target.rank < actor.rank and _may_grant(actor, role)),
            "only owners may change that role",
        )
        require(
            target is not Role.VISITOR or role is Role.MEMBER,
            "a visitor becomes a member before any other role",
        )
        if _last_owner(state, role):
            raise CloisonError("a sphere keeps at least one owner", code=ErrorCode.CONFLICT)
        return MemberChange(role, MemberAction.ROLE_CHANGED, AuditAction.ROLE_CHANGED, role.value)

    return decide


def check_update(privacy: Privacy | None) -> CheckUpdate:
    """Renaming takes an admin; changing who can see the sphere takes an owner."""

    def check(sphere: SphereRecord, role: Role | None) -> None:
        require_right(
            Right.EDIT_SETTINGS, sphere.privacy, role, message="only sphere admins may change it"
        )
        if privacy is not None:
            require_right(
                Right.CHANGE_TYPE,
                sphere.privacy,
                role,
                message="only owners may change who can see a sphere",
            )

    return check
