"""Governing an organisation, as the store keeps it: its members and their roles, its
policies, its directory, the spheres it owns, and a manager's appointment in one of them.

The rules are the server's (``server.access.org_rights``): each change takes the decision to
apply to the rows it read inside its own transaction (``DecideOrgMember``), as sphere
membership changes do, so no rule is decided on rows another request changes before the write.
Every change writes its ``org_audit`` entry in the same transaction; a change that ends or
begins sphere memberships does so through the sphere's own member-change path (its ``member``
event, its ``sphere_audit`` entry), and returns those events for the server to publish.

Work proportional to the size of an organisation (ending a member's memberships in its
spheres, filling a new global sphere with every member) is done in batches, one transaction
each, that the caller repeats until nothing is left: no transaction grows with the
organisation.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from protocol import Message, OrgId, OrgRole, OrgSphere, Privacy, SphereId, UserId

if TYPE_CHECKING:  # storage.base's Store inherits OrgGovernance: annotations only
    from storage.base import DecideMember, SphereRecord
    from storage.organisations import OrgRecord

# Where a page of the directory or of the portal ends: (name key, user_id) and
# (name, sphere_id).
DirectoryKey = tuple[str, str]
PortalKey = tuple[str, str]


@dataclass(frozen=True, slots=True)
class OrgAccess:
    """An organisation and the user's role in it, in one read (the dispatcher's org check)."""

    org: OrgRecord | None  # None: no such organisation
    role: OrgRole | None  # None: not a member


@dataclass(frozen=True, slots=True)
class OrgMemberState:
    """What a change of one membership of an organisation is decided on, read in the
    transaction that makes it."""

    org: OrgRecord
    target_role: OrgRole | None  # None: not a member
    managers: int
    members: int  # managers included, counted up to the ``members`` quota (0 without one)
    target_exists: bool  # the user exists


# Decides a change from its state: True to make it, False for "nothing to do", or raises a
# CloisonError to refuse (nothing is written).
DecideOrgMember = Callable[[OrgMemberState], bool]


@dataclass(frozen=True, slots=True)
class DirectoryEntry:
    user_id: UserId
    name: str
    role: OrgRole
    name_key: str  # the name as the directory sorts and searches it

    @property
    def key(self) -> DirectoryKey:
        return (self.name_key, self.user_id)


@dataclass(frozen=True, slots=True)
class OrgChange:
    """What a change of membership did: whether it changed anything, and the sphere events
    it wrote (to publish, in order)."""

    changed: bool
    events: list[Message]


class OrgGovernance(Protocol):
    async def org_access(self, org_id: OrgId, user_id: UserId) -> OrgAccess:
        """The organisation and the user's role in it, in one read."""
        ...

    async def org_member_state(self, org_id: OrgId, user_id: UserId) -> OrgMemberState | None:
        """What a change of the user's membership would be decided on (None: no such org)."""
        ...

    async def update_org(
        self,
        org_id: OrgId,
        actor_id: UserId,
        *,
        name: str | None,
        policies: Mapping[str, Any] | None,
        now_ms: int,
    ) -> OrgRecord:
        """Rename the organisation and/or change the policies named in ``policies`` (raw
        values, validated by ``storage.organisations.policies_from`` against the stored ones).
        Audited ``org_renamed`` and one ``policy_changed`` per policy whose value changed
        (detail: its key, never its value).

        Raises:
            NotFoundError: no such organisation.
            InvalidPolicyError: a policy's value is not one it takes.
        """
        ...

    async def enrol_org_member(
        self,
        org_id: OrgId,
        actor_id: UserId,
        user_id: UserId,
        role: OrgRole,
        decide: DecideOrgMember,
        join: DecideMember,
        *,
        now_ms: int,
    ) -> OrgChange:
        """Make the user a member with ``role`` if ``decide`` allows it, and a member of every
        global sphere of the organisation as ``join`` rules (``member`` events).
        Audited ``org_member_added`` (detail: the role).

        Raises:
            NotFoundError: no such organisation, or (after ``decide``) no such user.
            CloisonError: whatever ``decide`` raised.
        """
        ...

    async def set_org_role(
        self,
        org_id: OrgId,
        actor_id: UserId,
        user_id: UserId,
        role: OrgRole,
        decide: DecideOrgMember,
        *,
        now_ms: int,
    ) -> bool:
        """Give a member ``role`` if ``decide`` allows it. Audited ``org_role_changed``."""
        ...

    async def end_org_memberships(
        self,
        org_id: OrgId,
        actor_id: UserId,
        user_id: UserId,
        decide: DecideMember,
        *,
        now_ms: int,
        limit: int,
    ) -> list[Message]:
        """End up to ``limit`` of the user's memberships in the organisation's spheres, one
        transaction, each as ``decide`` rules (a ``member`` event ``removed``). A sole owner's
        sphere passes to its next member first (a ``role_changed`` event). Returns the events;
        none when no membership is left."""
        ...

    async def remove_org_membership(
        self,
        org_id: OrgId,
        actor_id: UserId,
        user_id: UserId,
        decide: DecideOrgMember,
        *,
        now_ms: int,
    ) -> bool | None:
        """Delete the user's membership of the organisation if ``decide`` allows it and no
        membership of theirs in its spheres is left (None: some are; end them first).
        Audited ``org_member_removed``. False: not a member, nothing changed."""
        ...

    async def list_org_members(
        self,
        org_id: OrgId,
        *,
        query: str | None,
        limit: int,
        after: DirectoryKey | None = None,
    ) -> list[DirectoryEntry]:
        """The directory by name, after ``after``; ``query``: names starting with it, case
        aside (one index range either way)."""
        ...

    async def list_org_spheres(
        self,
        org_id: OrgId,
        user_id: UserId,
        *,
        every: bool,
        limit: int,
        after: PortalKey | None = None,
        hidden: Sequence[Privacy] = (),
    ) -> list[OrgSphere]:
        """The organisation's spheres by name, with the user's role and pending request in
        each: ``every`` one (a manager's view), or only its listed open and public spheres and
        its global spheres (the portal); never one of the ``hidden`` types."""
        ...

    async def count_org_spheres(self, org_id: OrgId) -> int: ...

    async def fill_global_sphere(
        self,
        sphere_id: SphereId,
        actor_id: UserId,
        decide: DecideMember,
        *,
        after: str,
        now_ms: int,
        limit: int,
    ) -> tuple[list[Message], str | None]:
        """Add up to ``limit`` members of the sphere's organisation (by user_id, after
        ``after``) who are not members of it yet, as ``decide`` rules, in one transaction.
        Returns the events and where to go on from (None: every member was reached)."""
        ...

    async def appoint_manager(
        self,
        org_id: OrgId,
        sphere_id: SphereId,
        manager_id: UserId,
        decide: DecideMember,
        *,
        now_ms: int,
    ) -> tuple[SphereRecord, Message | None]:
        """Make a manager an administrator of a sphere of their organisation as ``decide``
        rules (a ``member`` event ``appointed``), audited in the sphere's log
        (``manager_appointed``) and the organisation's (``sphere_managed``, target: the
        sphere), in one transaction. The event is None when they administered it already.

        Raises:
            NotFoundError: no such sphere in the organisation.
        """
        ...
