"""The per-sphere audit log: what the store records of every governance act.

Entries are written in the transaction of the act they record (so an act is never without
its entry, nor an entry without its act) and read by the sphere's administrators. They say
who did what to whom and when, never what a message said.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from protocol import SphereId, UserId


class AuditAction(StrEnum):
    SPHERE_CREATED = "sphere_created"
    SETTINGS_CHANGED = "settings_changed"  # name, listed, join policy (detail: what changed)
    TYPE_CHANGED = "type_changed"  # detail: the new type
    HISTORY_CHANGED = "history_changed"  # detail: the new history mode
    CHARTER_CHANGED = "charter_changed"  # detail: the new version
    MEMBER_ADDED = "member_added"
    MEMBER_REMOVED = "member_removed"
    ROLE_CHANGED = "role_changed"  # detail: the new role
    OWNERSHIP_TRANSFERRED = "ownership_transferred"
    INVITED = "invited"  # detail: the invitation's role
    INVITATION_REVOKED = "invitation_revoked"
    INVITATION_ACCEPTED = "invitation_accepted"
    INVITATION_DECLINED = "invitation_declined"
    JOIN_REQUESTED = "join_requested"
    REQUEST_WITHDRAWN = "request_withdrawn"
    REQUEST_ACCEPTED = "request_accepted"
    REQUEST_REFUSED = "request_refused"
    BANNED = "banned"
    UNBANNED = "unbanned"
    MUTED = "muted"  # detail: until when (ms)
    UNMUTED = "unmuted"
    MESSAGE_DELETED = "message_deleted"  # by someone other than its author; offset: the post
    MESSAGE_PINNED = "message_pinned"
    MESSAGE_UNPINNED = "message_unpinned"
    POST_REPORTED = "post_reported"  # detail: the reason
    ACCOUNT_DELETED = "account_deleted"  # the target's account was deleted (their membership ends)
    SPHERE_EXPORTED = "sphere_exported"  # detail: the archive's counts, never its content
    RETENTION_CHANGED = "retention_changed"  # detail: the new period in days, or "default"
    RETENTION_APPLIED = "retention_applied"  # detail: events removed, the new horizon
    LEGAL_HOLD_SET = "legal_hold_set"  # by a server administrator; detail: until when (ms)
    LEGAL_HOLD_RELEASED = "legal_hold_released"
    # A manager of the sphere's organisation made themselves an administrator (manage_sphere).
    MANAGER_APPOINTED = "manager_appointed"


@dataclass(frozen=True, slots=True)
class SphereAuditEntry:
    sphere_id: SphereId
    ts_ms: int
    actor_id: UserId
    action: AuditAction
    target_id: UserId | None = None  # the user the act concerned
    offset: int | None = None  # the post it concerned
    detail: str | None = None  # a role, a reason, a setting; never a body
    seq: int = 0  # assigned by the store, ascending in commit order


class SphereAudit(Protocol):
    async def list_sphere_audit(
        self, sphere_id: SphereId, *, before: int | None, limit: int
    ) -> list[SphereAuditEntry]:
        """The sphere's entries with seq < ``before`` (None: the newest), newest first."""
        ...
