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

from protocol import (
    CloisonError,
    ErrorCode,
    HistoryMode,
    JoinPolicy,
    MemberAction,
    Privacy,
    Role,
    SphereId,
    UserId,
)
from server.access.rights import STAFF, VISIBLE_TYPES, Right, allowed
from storage import (
    AuditAction,
    DecideMember,
    DecideSettings,
    MemberChange,
    MembershipState,
    MemberView,
    SettingsChange,
    SettingsState,
    SphereRecord,
    SphereSettings,
    Store,
    default_settings,
    read_floor,
)

SPHERE_NOT_FOUND = "sphere not found"
MEMBERS_ONLY = "only members may do this"
JOIN_TO_READ = "join this sphere to read it"
GLOBAL_STAYS = "a global sphere holds every member of its organisation: it cannot be left"


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
    if right is Right.LEAVE and privacy is Privacy.GLOBAL:
        message = GLOBAL_STAYS
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
    """Joining an open or public sphere free to join; a member who joins again changes
    nothing. A sphere that admits on request is entered with ``request_join``."""
    if state.actor_role is not None:
        return None
    require_right(Right.JOIN, state.sphere.privacy, None, banned=state.target_banned)
    if state.sphere.join_policy is JoinPolicy.APPROVAL:
        raise CloisonError(
            "this sphere admits members on request: use request_join", code=ErrorCode.FORBIDDEN
        )
    require(state.sphere.join_policy is JoinPolicy.FREE, "this sphere is entered by invitation")
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


# The join policies each type allows: sealed types are entered by invitation only.
JOIN_POLICIES = {
    Privacy.PRIVATE: frozenset({JoinPolicy.INVITATION}),
    Privacy.RESTRICTED: frozenset({JoinPolicy.INVITATION}),
    Privacy.OPEN: frozenset({JoinPolicy.FREE, JoinPolicy.APPROVAL}),
    Privacy.PUBLIC: frozenset({JoinPolicy.FREE, JoinPolicy.APPROVAL}),
    Privacy.DIRECT: frozenset({JoinPolicy.INVITATION}),  # entered only when opened
    Privacy.GLOBAL: frozenset({JoinPolicy.INVITATION}),  # its members are the organisation's
}
# Why: a direct conversation is made whole by ``open_direct`` (its participants, its context),
# never by creating a sphere or changing one's type; nor does it become another type.
OPENED_ONLY = "a direct conversation is opened with open_direct"


def unfit_setting(privacy: Privacy, listed: bool, join_policy: JoinPolicy) -> str | None:
    """Why ``listed`` and ``join_policy`` do not suit a sphere of ``privacy`` (None: they do)."""
    if listed and privacy not in VISIBLE_TYPES:
        return f"a {privacy.value} sphere is never listed"
    if join_policy not in JOIN_POLICIES[privacy]:
        allowed_policies = " or ".join(sorted(p.value for p in JOIN_POLICIES[privacy]))
        return f"a {privacy.value} sphere's join policy is {allowed_policies}"
    return None


def create_settings(
    name: str,
    privacy: Privacy,
    listed: bool | None,
    join_policy: JoinPolicy | None,
    history: HistoryMode | None,
) -> SphereSettings:
    """A new sphere's settings: the type's defaults for what the request leaves out.

    Raises:
        CloisonError: ``bad_frame`` when the request asks for a setting its type does not allow,
            or for a direct conversation (``open_direct`` opens those).
    """
    if privacy is Privacy.DIRECT:
        raise CloisonError(OPENED_ONLY, code=ErrorCode.BAD_FRAME)
    default = default_settings(name, privacy)
    settings = SphereSettings(
        name=name,
        privacy=privacy,
        listed=default.listed if listed is None else listed,
        join_policy=join_policy or default.join_policy,
        history=history or default.history,
    )
    unfit = unfit_setting(privacy, settings.listed, settings.join_policy)
    if unfit is not None:
        raise CloisonError(unfit, code=ErrorCode.BAD_FRAME)
    return settings


def _check_history(state: SettingsState, history: HistoryMode) -> None:
    """The history promise: any change while the actor is alone in the sphere; afterwards
    only narrowing (to ``since_joining``), never widening."""
    if history is state.sphere.history or history is HistoryMode.SINCE_JOINING:
        return
    if state.members > 1:
        raise CloisonError(
            "the history promise is kept once the sphere has other members: "
            "it can be narrowed, never widened",
            code=ErrorCode.CONFLICT,
        )


def deciding_settings(
    *,
    name: str | None,
    privacy: Privacy | None,
    listed: bool | None,
    join_policy: JoinPolicy | None,
    history: HistoryMode | None,
    retention_days: int | None = None,
    retention_ceiling_days: int = 0,
) -> DecideSettings:
    """Changing a sphere's settings; fields left None are kept.

    ``retention_days`` 0 returns the sphere to the server's default period; a period longer
    than ``retention_ceiling_days`` (the server's ``--retention-days``, 0: none) is refused.

    A change between a sealed type (private, restricted) and a visible one (open, public)
    takes the new type's listing and join policy unless the request names them. Each right
    is checked on the rows of the transaction: settings by administrators, the type and the
    history by the owner.
    """

    def decide(state: SettingsState) -> SettingsChange | None:
        sphere, role = state.sphere, state.actor_role
        wanted = {
            Right.EDIT_SETTINGS: name is not None
            or listed is not None
            or join_policy is not None
            or retention_days is not None,
            Right.CHANGE_TYPE: privacy is not None,
            Right.CHANGE_HISTORY: history is not None,
        }
        for right in [r for r, asked in wanted.items() if asked] or [Right.EDIT_SETTINGS]:
            require_right(right, sphere.privacy, role)
        kind = privacy or sphere.privacy
        if kind is Privacy.DIRECT and sphere.privacy is not Privacy.DIRECT:
            raise CloisonError(OPENED_ONLY, code=ErrorCode.BAD_FRAME)
        if (kind is Privacy.GLOBAL) != (sphere.privacy is Privacy.GLOBAL):
            raise CloisonError(
                "a sphere is global from its creation on, or never", code=ErrorCode.CONFLICT
            )
        if (kind in VISIBLE_TYPES) != (sphere.privacy in VISIBLE_TYPES):
            base = default_settings(sphere.name, kind)
        else:
            base = SphereSettings(
                sphere.name, kind, sphere.listed, sphere.join_policy, sphere.history
            )
        after = SphereSettings(
            name=name if name is not None else sphere.name,
            privacy=kind,
            listed=base.listed if listed is None else listed,
            join_policy=join_policy or base.join_policy,
            history=history or sphere.history,
            retention_days=sphere.retention_days
            if retention_days is None
            else check_retention(retention_days, retention_ceiling_days),
        )
        unfit = unfit_setting(after.privacy, after.listed, after.join_policy)
        if unfit is not None:
            raise CloisonError(unfit, code=ErrorCode.CONFLICT)
        _check_history(state, after.history)
        audits = _audits(sphere, after)
        return SettingsChange(after, audits) if audits else None

    return decide


def _audits(sphere: SphereRecord, after: SphereSettings) -> tuple[tuple[AuditAction, str], ...]:
    """The audit entries of a settings change: what changed (never the name itself)."""
    changed = []
    if after.name != sphere.name:
        changed.append("name")
    if after.listed != sphere.listed:
        changed.append(f"listed={str(after.listed).lower()}")
    if after.join_policy is not sphere.join_policy:
        changed.append(f"join_policy={after.join_policy.value}")
    audits = []
    if changed:
        audits.append((AuditAction.SETTINGS_CHANGED, ",".join(changed)))
    if after.privacy is not sphere.privacy:
        audits.append((AuditAction.TYPE_CHANGED, after.privacy.value))
    if after.history is not sphere.history:
        audits.append((AuditAction.HISTORY_CHANGED, after.history.value))
    if after.retention_days != sphere.retention_days:
        audits.append((AuditAction.RETENTION_CHANGED, str(after.retention_days or "default")))
    return tuple(audits)


LEGAL_HOLD = "this sphere is under a legal hold: nothing of it may be deleted until it ends"


def require_no_hold(sphere: SphereRecord, now_ms: int) -> None:
    """Deleting messages or the sphere: refused, for authors and moderators alike, while a
    server administrator's legal hold lasts.

    Raises:
        CloisonError: ``legal_hold``.
    """
    if sphere.held(now_ms):
        raise CloisonError(LEGAL_HOLD, code=ErrorCode.LEGAL_HOLD)


def check_retention(days: int, ceiling_days: int) -> int | None:
    """A sphere's retention period as asked (0: the server's default, stored as None).

    Raises:
        CloisonError: ``conflict`` for a period longer than the server's ceiling.
    """
    if days == 0:
        return None
    if ceiling_days and days > ceiling_days:
        raise CloisonError(
            f"this server keeps messages at most {ceiling_days} days; choose that or fewer",
            code=ErrorCode.CONFLICT,
        )
    return days


def check_charter(privacy: Privacy, role: Role | None) -> None:
    """Setting the charter, checked on the rows of its transaction."""
    require_right(Right.SET_CHARTER, privacy, role)


def history_floor(sphere: SphereRecord, member: MemberView | None) -> int:
    """The first offset the reader may read of ``sphere`` (the history promise)."""
    return read_floor(
        sphere.privacy, sphere.public_from, member.history_from if member is not None else None
    )


def sees_members(privacy: Privacy, role: Role | None) -> bool:
    """Does the reader learn who the other members are (their member events, presence,
    typing)? Those who may not list the members may not learn them any other way."""
    return allowed(Right.LIST_MEMBERS, privacy, role)
