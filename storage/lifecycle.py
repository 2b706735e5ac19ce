"""An organisation's lifecycle, as the store keeps it: listing, suspension, and deletion.

Suspension (``set_org_suspended``) is one transaction: the organisation's ``suspended_ms``,
its ``org_audit`` entry, the server's ``audit_log`` entry and ``org_suspended`` session
changes, which every node polls: one for the organisation (its spheres' subscriptions end) and
one per member who can no longer sign in (no organisation of theirs is left running, and they
are not a server administrator), whose sockets close.

Deletion is a job like an account's (``storage.deletion``), in steps that each commit on their
own and find their work in the rows, so a crash at any point resumes without doing anything
twice:

1. ``request_org_deletion``: the job's row, the organisation suspended (as above), audited;
2. ``delete_org_sphere``: one sphere of the organisation deleted with everything in it, as a
   sphere deletion does (its closing ``sphere`` event, its server audit entry); spheres under
   a legal hold wait for it, the job is then ``held``;
3. ``hand_over_org_members``: a page of members; each who belongs to no other organisation
   and is not a server administrator gets an account deletion job
   (``request_account_deletion``), which removes the account and what it left elsewhere;
4. ``remove_org``: the organisation's row, its memberships and its audit log, once it has no
   sphere left; then (the files scrubbed) ``finish_org_deletion`` marks the job done and
   writes the server's ``org_deleted`` entry. The done row stays: it says the organisation
   existed (id, when, by whom, counts; never its name) and its id is never reused.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Protocol

from protocol import Message, OrgId, UserId
from storage.deletion import DeletionMode
from storage.organisations import OrgAuditEntry, OrgRecord, OrgRole

if TYPE_CHECKING:  # storage.base composes the Store of this protocol
    from storage.base import AuditEntry


class OrgDeletionState(StrEnum):
    PENDING = "pending"
    HELD = "held"  # only spheres under a legal hold are left
    DONE = "done"


@dataclass(frozen=True, slots=True)
class OrgDeletionJob:
    org_id: OrgId
    requested_ms: int
    requested_by: str
    mode: DeletionMode  # what the accounts it hands over do to their posts
    state: OrgDeletionState
    done_ms: int | None
    spheres_deleted: int
    accounts_handed_over: int  # account deletion jobs it requested
    members_scanned: bool  # every member was looked at


@dataclass(frozen=True, slots=True)
class OrgMemberRow:
    """One member as the organisation's export and deletion read them."""

    user_id: UserId
    name: str
    kind: str
    role: OrgRole
    joined_ms: int


@dataclass(frozen=True, slots=True)
class SphereDeletionStep:
    """What one ``delete_org_sphere`` did."""

    event: Message | None  # the deleted sphere's closing event; None: nothing deleted
    held: bool  # spheres under a legal hold are left (nothing else)


class OrgLifecycle(Protocol):
    async def list_orgs(self, *, after: OrgId | None, limit: int) -> list[OrgRecord]:
        """Organisations by id, after ``after``."""
        ...

    async def count_org_members(self, org_id: OrgId) -> int: ...

    async def count_org_spheres(self, org_id: OrgId) -> int: ...

    async def set_org_suspended(
        self, org_id: OrgId, suspended: bool, *, now_ms: int, actor_id: str
    ) -> tuple[OrgRecord, bool] | None:
        """Suspend or resume the organisation (see the module's docstring), in one
        transaction; returns it and whether anything changed (False: it already was).
        None: no such organisation."""
        ...

    async def org_members_after(
        self, org_id: OrgId, *, after: UserId | None, limit: int
    ) -> list[OrgMemberRow]:
        """The organisation's members by user id, after ``after``."""
        ...

    async def org_sphere_ids(
        self, org_id: OrgId, *, after: str | None, limit: int, types: tuple[str, ...] = ()
    ) -> list[str]:
        """The organisation's spheres by id, after ``after``; ``types`` (privacy values)
        left out."""
        ...

    async def org_audit_after(
        self, org_id: OrgId, *, after: int, limit: int
    ) -> list[OrgAuditEntry]:
        """The organisation's audit entries with seq > ``after``, oldest first."""
        ...

    async def record_org_audit(self, entry: OrgAuditEntry, server: AuditEntry | None) -> None:
        """Write ``entry`` and, with it, the server's ``server`` entry."""
        ...

    async def request_org_deletion(
        self, org_id: OrgId, *, requested_by: str, mode: DeletionMode, now_ms: int
    ) -> tuple[OrgDeletionJob, bool] | None:
        """Record the job and suspend the organisation, audited, in one transaction; the job
        and whether it was created now (False: it existed, nothing was written). None: no
        such organisation and no job of that id."""
        ...

    async def get_org_deletion(self, org_id: OrgId) -> OrgDeletionJob | None: ...

    async def open_org_deletions(self, limit: int) -> list[OrgId]:
        """Organisations whose deletion is not done, oldest request first."""
        ...

    async def claim_org_deletion(
        self, org_id: OrgId, *, owner: str, now_ms: int, lease_ms: int
    ) -> OrgDeletionJob | None:
        """Take or renew the lease on an unfinished job (None: done, or another owner's lease
        runs past ``now_ms``)."""
        ...

    async def delete_org_sphere(self, org_id: OrgId, *, now_ms: int) -> SphereDeletionStep:
        """Delete the organisation's first sphere (by id) not under a legal hold, with every
        row of it, in one transaction."""
        ...

    async def hand_over_org_members(self, org_id: OrgId, limit: int, *, now_ms: int) -> bool:
        """Request the account deletion of the next ``limit`` members who belong to no other
        organisation and are not server administrators; True once every member was seen."""
        ...

    async def remove_org(self, org_id: OrgId) -> bool:
        """Delete the organisation's row, memberships and audit log, if no sphere of it is
        left (True)."""
        ...

    async def finish_org_deletion(self, org_id: OrgId, *, now_ms: int, audit: AuditEntry) -> None:
        """Mark the job done and write ``audit`` (once)."""
        ...

    async def set_org_deletion_state(self, org_id: OrgId, state: OrgDeletionState) -> None: ...
