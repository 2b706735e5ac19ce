"""The organisation rights table: which standing in an organisation holds which right.

This table is the only statement of who may do what to an organisation. The operation table
(``server.operations.table``) names the right each organisation request needs (``org_right``),
the dispatcher checks it with ``authorise_org`` before any handler runs, ``docs/governance.md``
prints it and the permission matrix is generated from it. Rules about a particular object (the
last manager stays; a quota; the sphere types a member may create) are checked beside it, on the
rows of the transaction that changes them, by the ``deciding_*`` functions below.

A *standing* is what a user is in one organisation: a manager, a member, or a stranger (not a
member). A stranger holds nothing: for any request about the organisation they get exactly the
answer an organisation that does not exist gets (``not_found``, the same message, after the
same single store read). A right may also hang on a policy the managers set: members list the
directory only while the ``directory`` policy is on; managers always do.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from protocol import CloisonError, ErrorCode, MemberAction, OrgId, OrgRole, Privacy, Role, UserId
from storage import (
    AuditAction,
    DecideOrgMember,
    MemberChange,
    MembershipState,
    OrgMemberState,
    OrgPolicies,
    OrgRecord,
    Store,
    join_global,
)


class OrgRight(StrEnum):
    SEE_ORG = "see_org"  # its name, one's role, the policies that concern one
    LIST_DIRECTORY = "list_directory"  # the members, by name
    CREATE_SPHERE = "create_sphere"  # of the types the policy lets members create
    LIST_ORG_SPHERES = "list_org_spheres"  # the portal (managers: every sphere, name and type)
    MANAGE_MEMBERS = "manage_members"  # add and remove members
    SET_ORG_ROLE = "set_org_role"
    EDIT_POLICIES = "edit_policies"  # the name and the policies
    READ_ORG_AUDIT = "read_org_audit"
    MANAGE_SPHERES = "manage_spheres"  # become an administrator of a sphere, visibly


class OrgStanding(StrEnum):
    """What a user is in one organisation, as the permission matrix enumerates it."""

    MANAGER = "manager"
    MEMBER = "member"
    STRANGER = "stranger"


EVERYONE = frozenset(OrgRole)
MANAGERS = frozenset({OrgRole.MANAGER})


@dataclass(frozen=True, slots=True)
class OrgGrant:
    """Who holds a right: the ``roles``, plus members while the boolean policy ``members_if``
    is on."""

    roles: frozenset[OrgRole]
    members_if: str | None = None


ORG_RIGHTS: Mapping[OrgRight, OrgGrant] = {
    OrgRight.SEE_ORG: OrgGrant(EVERYONE),
    OrgRight.LIST_DIRECTORY: OrgGrant(MANAGERS, members_if="directory"),
    OrgRight.CREATE_SPHERE: OrgGrant(EVERYONE),
    OrgRight.LIST_ORG_SPHERES: OrgGrant(EVERYONE),
    OrgRight.MANAGE_MEMBERS: OrgGrant(MANAGERS),
    OrgRight.SET_ORG_ROLE: OrgGrant(MANAGERS),
    OrgRight.EDIT_POLICIES: OrgGrant(MANAGERS),
    OrgRight.READ_ORG_AUDIT: OrgGrant(MANAGERS),
    OrgRight.MANAGE_SPHERES: OrgGrant(MANAGERS),
}

ORG_NOT_FOUND = "organisation not found"
SUSPENDED = "the organisation is suspended"
MANAGERS_ONLY = "only managers of the organisation may do this"
NOT_A_MEMBER = "not a member of this organisation"
LAST_MANAGER = "an organisation keeps at least one manager"
# Types no manager may enter by ``manage_sphere``, nor find in the portal: their content, and
# who talks in them, is never an administrator's.
UNMANAGED_TYPES = frozenset({Privacy.DIRECT})


def org_allowed(right: OrgRight, role: OrgRole | None, policies: OrgPolicies) -> bool:
    """Does a user with ``role`` (None: a stranger) hold ``right`` under ``policies``?"""
    grant = ORG_RIGHTS[right]
    if role is None:
        return False
    if role in grant.roles:
        return True
    return grant.members_if is not None and bool(getattr(policies, grant.members_if))


def org_standing_allows(
    right: OrgRight, standing: OrgStanding, policies: OrgPolicies | None = None
) -> bool:
    """``org_allowed`` for one row of the permission matrix (default policies unless given)."""
    role = None if standing is OrgStanding.STRANGER else OrgRole(standing.value)
    return org_allowed(right, role, policies or OrgPolicies())


@dataclass(frozen=True, slots=True)
class OrgGranted:
    """What the org check found: the organisation and the caller's role in it."""

    org: OrgRecord
    role: OrgRole

    @property
    def org_id(self) -> OrgId:
        return self.org.org_id

    @property
    def manager(self) -> bool:
        return self.role is OrgRole.MANAGER


def org_not_found() -> CloisonError:
    return CloisonError(ORG_NOT_FOUND, code=ErrorCode.NOT_FOUND)


async def authorise_org(
    store: Store, user_id: UserId, org_id: OrgId, right: OrgRight
) -> OrgGranted:
    """Check that ``user_id`` holds ``right`` in the organisation, in one store read.

    Raises:
        CloisonError: ``not_found`` when the organisation does not exist or the caller is not
            a member (the same answer for both); ``forbidden`` when it is suspended, or the
            caller lacks the right (a message naming the policy when one withholds it).
    """
    access = await store.org_access(org_id, user_id)
    org, role = access.org, access.role
    if org is None or role is None:
        raise org_not_found()
    if org.suspended:
        raise CloisonError(SUSPENDED, code=ErrorCode.FORBIDDEN)
    if not org_allowed(right, role, org.policies):
        grant = ORG_RIGHTS[right]
        message = (
            f"the organisation's {grant.members_if} policy is off: {MANAGERS_ONLY}"
            if grant.members_if is not None
            else MANAGERS_ONLY
        )
        raise CloisonError(message, code=ErrorCode.FORBIDDEN)
    return OrgGranted(org, role)


# -- decisions made on the rows of the transaction that changes them ------------------------


def _quota_reached(name: str, limit: int) -> CloisonError:
    return CloisonError(
        f"the organisation's {name} quota ({limit}) is reached", code=ErrorCode.QUOTA_EXCEEDED
    )


def decide_org_add(state: OrgMemberState) -> bool:
    """Adding a member: at once, unless they are one already (nothing changes) or the
    ``members`` quota is reached."""
    if state.target_role is not None:
        return False
    limit = state.org.policies.quotas.members
    if limit is not None and state.members >= limit:
        raise _quota_reached("members", limit)
    return True


def _require_member(state: OrgMemberState) -> OrgRole:
    if state.target_role is None:
        raise CloisonError(NOT_A_MEMBER, code=ErrorCode.NOT_FOUND)
    return state.target_role


def decide_org_remove(state: OrgMemberState) -> bool:
    """Removing a member: never the last manager."""
    if _require_member(state) is OrgRole.MANAGER and state.managers <= 1:
        raise CloisonError(LAST_MANAGER, code=ErrorCode.CONFLICT)
    return True


def deciding_org_role(role: OrgRole) -> DecideOrgMember:
    """Giving a member ``role``: the same role again changes nothing; the last manager is
    never demoted."""

    def decide(state: OrgMemberState) -> bool:
        current = _require_member(state)
        if current is role:
            return False
        if current is OrgRole.MANAGER and state.managers <= 1:
            raise CloisonError(LAST_MANAGER, code=ErrorCode.CONFLICT)
        return True

    return decide


def check_sphere_type(granted: OrgGranted, privacy: Privacy) -> None:
    """A member creates only the types the ``member_sphere_types`` policy names.

    Raises:
        CloisonError: ``forbidden``, naming the policy.
    """
    allowed_types = granted.org.policies.member_sphere_types
    if not granted.manager and privacy not in allowed_types:
        listed = ", ".join(t.value for t in allowed_types) or "none"
        raise CloisonError(
            f"the organisation's member_sphere_types policy lets members create {listed} "
            f"spheres, not {privacy.value} ones",
            code=ErrorCode.FORBIDDEN,
        )


def check_sphere_quota(granted: OrgGranted, spheres: int) -> None:
    """The ``spheres`` quota, against the organisation's count of spheres.

    Raises:
        CloisonError: ``quota_exceeded``, naming the quota.
    """
    limit = granted.org.policies.quotas.spheres
    if limit is not None and spheres >= limit:
        raise _quota_reached("spheres", limit)


# -- the sphere membership changes an organisation makes -------------------------------------

APPOINTED_BANNED = "you are banned from this sphere; its administrators lift bans"


# A member of the organisation enters one of its global spheres (not where banned): the
# store's own rule, which it applies too when a user is created into an organisation.
decide_global_join = join_global


def decide_org_departure(state: MembershipState) -> MemberChange | None:
    """A member leaving the organisation leaves each of its spheres: removed, as an event."""
    if state.target_role is None:
        return None
    return MemberChange(None, MemberAction.REMOVED, AuditAction.MEMBER_REMOVED, "organisation")


def decide_appointment(state: MembershipState) -> MemberChange | None:
    """A manager becomes an administrator of the sphere (already one: nothing changes)."""
    if state.target_banned:
        raise CloisonError(APPOINTED_BANNED, code=ErrorCode.FORBIDDEN)
    if state.target_role in (Role.OWNER, Role.ADMIN):
        return None
    return MemberChange(Role.ADMIN, MemberAction.APPOINTED, AuditAction.MANAGER_APPOINTED)
