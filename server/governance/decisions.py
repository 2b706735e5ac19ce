"""The decisions of entering, leaving and moderation, made on the rows of their transaction.

Each function below is handed to a store method and rules on the ``MembershipState`` the
store read under the sphere's lock (see ``server.access.rules``): the actor's right first
(from the rights table), then the rules on the particular object the table cannot state:

- an invitation carries a role no higher than the inviter's: owners invite with any role,
  everyone else with a role no higher than their own and below administrator (only owners
  make administrators, as with ``set_role``);
- administrators ban, mute and unmute only members of a lower role; owners anyone; nobody
  bans the last owner;
- ownership passes to a member who is not a visitor, and the owner becomes an administrator.
"""

from __future__ import annotations

import time

from protocol import CloisonError, ErrorCode, JoinPolicy, MemberAction, Role, UserId
from server.access import Right, require, require_no_hold, require_right, visible
from server.access.rights import STAFF
from server.access.rules import VISITOR_ONLY, org_standing, require_entry_from_outside
from storage import (
    NO_SUCH_USER,
    ORG_SUSPENDED,
    AuditAction,
    CheckEntry,
    CheckRevoke,
    DecideMember,
    MemberChange,
    MembershipState,
    NotFoundError,
    SphereRecord,
)

BANNED = "this user is banned from this sphere"
NOT_A_MEMBER = "not a member of this sphere"
NO_SUCH_INVITATION = "no such invitation"


def may_invite(inviter: Role, role: Role) -> bool:
    """Can a member with the role ``inviter`` invite with ``role``?"""
    return inviter is Role.OWNER or (role.rank <= inviter.rank and role not in STAFF)


def deciding_invite(role: Role) -> CheckEntry:
    """Inviting the state's target with ``role``: not a member already, not banned."""

    def check(state: MembershipState) -> None:
        inviter = state.actor_role
        org = org_standing(state.actor_org_role)
        require_right(Right.INVITE, state.sphere.privacy, inviter, org=org)
        assert inviter is not None
        require(may_invite(inviter, role), f"you may not invite with the role {role.value}")
        require(not state.target_banned, BANNED)
        if state.target_role is not None:
            raise CloisonError("this user is a member already", code=ErrorCode.CONFLICT)
        require_entry_from_outside(state, role)

    return check


def checking_revoke(actor_id: UserId) -> CheckRevoke:
    """Revoking an invitation: its inviter, or whoever may list the sphere's invitations
    (anyone else is refused as the rights table says: ``forbidden`` if they can see the
    sphere, and if they cannot, ``not_found`` as for an invitation that does not exist)."""

    def check(state: MembershipState, inviter_id: UserId) -> None:
        if actor_id == inviter_id:
            return
        org = org_standing(state.actor_org_role)
        if not visible(state.sphere, state.actor_role, org):
            raise NotFoundError(NO_SUCH_INVITATION)  # as for an invitation that does not exist
        require_right(Right.LIST_INVITATIONS, state.sphere.privacy, state.actor_role, org=org)

    return check


def decide_accept(state: MembershipState, role: Role) -> MemberChange:
    """The invitee enters with the invitation's ``role`` (never one from the request)."""
    if state.target_banned:
        raise CloisonError("you are banned from this sphere", code=ErrorCode.FORBIDDEN)
    if state.target_role is not None:
        raise CloisonError("you are a member already", code=ErrorCode.CONFLICT)
    require(not state.org_suspended, ORG_SUSPENDED)
    require_entry_from_outside(state, role)  # the policy, or the invitee's place, changed
    return MemberChange(role, MemberAction.ACCEPTED, AuditAction.INVITATION_ACCEPTED, role.value)


def check_request(state: MembershipState) -> None:
    """Asking to join: an outsider of a visible sphere whose join policy is ``approval``."""
    sphere = state.sphere
    if state.actor_role is not None:
        raise CloisonError("you are a member already", code=ErrorCode.CONFLICT)
    require_right(
        Right.REQUEST_JOIN,
        sphere.privacy,
        None,
        banned=state.target_banned,
        org=org_standing(state.actor_org_role),
    )
    if sphere.join_policy is JoinPolicy.FREE:
        raise CloisonError("this sphere is free to join: send join", code=ErrorCode.CONFLICT)
    require(sphere.join_policy is JoinPolicy.APPROVAL, "this sphere is entered by invitation only")


def deciding_answer(accept: bool) -> DecideMember:
    """An administrator's answer to a join request: an acceptance admits them as a member."""

    def decide(state: MembershipState) -> MemberChange | None:
        require_right(Right.ANSWER_REQUESTS, state.sphere.privacy, state.actor_role)
        if not accept or state.target_role is not None:
            return None
        require(not state.target_banned, BANNED)
        require(state.target_org_role is not None, VISITOR_ONLY)  # they left the organisation
        return MemberChange(Role.MEMBER, MemberAction.ADMITTED, AuditAction.REQUEST_ACCEPTED)

    return decide


def _require_above(state: MembershipState, act: str) -> None:
    """Owners act on anyone; administrators only on members of a lower role."""
    actor, target = state.actor_role, state.target_role
    assert actor is not None
    require(
        actor is Role.OWNER or target is None or target.rank < actor.rank,
        f"administrators may only {act} members of a lower role",
    )


def deciding_ban(reason: str | None) -> DecideMember:
    """Banning a member or an outsider; banning again changes nothing."""

    def decide(state: MembershipState) -> MemberChange | None:
        require_right(Right.BAN, state.sphere.privacy, state.actor_role)
        if state.target_banned:
            return None
        if state.target_role is None and state.target_org_role is None:
            # Nobody of the organisation, nor a visitor: as for an id that names no user.
            raise NotFoundError(NO_SUCH_USER)
        _require_above(state, "ban")
        if state.target_role is Role.OWNER and state.owners <= 1:
            raise CloisonError("a sphere keeps at least one owner", code=ErrorCode.CONFLICT)
        return MemberChange(None, MemberAction.BANNED, AuditAction.BANNED, reason)

    return decide


def decide_unban(state: MembershipState) -> MemberChange:
    require_right(Right.BAN, state.sphere.privacy, state.actor_role)
    if not state.target_banned:
        raise CloisonError("this user is not banned from this sphere", code=ErrorCode.NOT_FOUND)
    return MemberChange(None, MemberAction.UNBANNED, AuditAction.UNBANNED)


def deciding_mute(until_ms: int) -> DecideMember:
    """Muting a member until ``until_ms`` (a new mute replaces a running one)."""

    def decide(state: MembershipState) -> MemberChange:
        require_right(Right.MUTE, state.sphere.privacy, state.actor_role)
        target = state.target_role
        if target is None:
            raise CloisonError(NOT_A_MEMBER, code=ErrorCode.NOT_FOUND)
        _require_above(state, "mute")
        return MemberChange(
            target, MemberAction.MUTED, AuditAction.MUTED, str(until_ms), until_ms=until_ms
        )

    return decide


def deciding_unmute(now_ms: int) -> DecideMember:
    """Lifting a member's mute; a member who is not muted is left as they are."""

    def decide(state: MembershipState) -> MemberChange | None:
        require_right(Right.MUTE, state.sphere.privacy, state.actor_role)
        target = state.target_role
        if target is None:
            raise CloisonError(NOT_A_MEMBER, code=ErrorCode.NOT_FOUND)
        _require_above(state, "unmute")
        until_ms = state.target_muted_until_ms
        if until_ms is None or until_ms <= now_ms:
            return None
        return MemberChange(target, MemberAction.UNMUTED, AuditAction.UNMUTED)

    return decide


def decide_new_owner(state: MembershipState) -> MemberChange:
    """The first change of a transfer: the target becomes owner."""
    require_right(Right.TRANSFER, state.sphere.privacy, state.actor_role)
    target = state.target_role
    if target is None:
        raise CloisonError(NOT_A_MEMBER, code=ErrorCode.NOT_FOUND)
    require(target is not Role.VISITOR, "a visitor becomes a member before owning a sphere")
    if target is Role.OWNER:
        raise CloisonError("this member is an owner already", code=ErrorCode.CONFLICT)
    return MemberChange(Role.OWNER, MemberAction.ROLE_CHANGED, AuditAction.OWNERSHIP_TRANSFERRED)


def decide_former_owner(state: MembershipState) -> MemberChange:
    """The second change of a transfer: the owner (actor and target) becomes administrator."""
    require_right(Right.TRANSFER, state.sphere.privacy, state.actor_role)
    return MemberChange(Role.ADMIN, MemberAction.ROLE_CHANGED)


def check_delete(sphere: SphereRecord, role: Role | None) -> None:
    require_right(
        Right.DELETE_SPHERE, sphere.privacy, role, message="only owners may delete a sphere"
    )
    require_no_hold(sphere, time.time_ns() // 1_000_000)
