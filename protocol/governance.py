"""Frames of sphere governance: invitations, join requests, bans, mutes, ownership, deletion,
charters, reports and the sphere's audit log (``docs/governance.md``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from protocol.fields import (
    MAX_CURSOR_CHARS,
    MAX_ID_CHARS,
    MAX_LIST_LIMIT,
    MAX_OFFSET,
    Frame,
    _int,
    _opt_int,
    _opt_text,
    _ref,
    _text,
)
from protocol.types import (
    InvitationState,
    ReportReason,
    RequestState,
    Role,
    SphereId,
    UserId,
)

# Why: a charter is a page of rules, not a book; it travels in one frame.
MAX_CHARTER_CHARS = 20_000
# Why: a join request's note or a report's comment is a sentence or two.
MAX_COMMENT_CHARS = 500
# Why: an invitation lives a minute at least (a typo'd one should not linger) and a month at
# most (an old one is a door nobody remembers leaving open).
MIN_INVITATION_S = 60
MAX_INVITATION_S = 30 * 86_400
DEFAULT_INVITATION_S = 7 * 86_400
# Why: a mute shorter than a minute is a warning; a year is the longest "for a period".
MIN_MUTE_S = 60
MAX_MUTE_S = 365 * 86_400


# ---------------------------------------------------------------------------------------------
# Client -> server


@dataclass(frozen=True, slots=True)
class Invite(Frame):
    """Invite a user (single use, expiring, revocable) with a role no higher than the inviter's."""

    TYPE: ClassVar[str] = "invite"
    sphere_id: SphereId = _text(MAX_ID_CHARS)
    user_id: UserId = _text(MAX_ID_CHARS)
    role: Role = Role.MEMBER
    expires_in_s: int | None = _opt_int(MIN_INVITATION_S, MAX_INVITATION_S)
    ref: str | None = _ref()


@dataclass(frozen=True, slots=True)
class RevokeInvitation(Frame):
    TYPE: ClassVar[str] = "revoke_invitation"
    invitation_id: str = _text(MAX_ID_CHARS)
    ref: str | None = _ref()


@dataclass(frozen=True, slots=True)
class AcceptInvitation(Frame):
    """The invitee enters the sphere with the invitation's role (answered with ``sphere_info``)."""

    TYPE: ClassVar[str] = "accept_invitation"
    invitation_id: str = _text(MAX_ID_CHARS)
    ref: str | None = _ref()


@dataclass(frozen=True, slots=True)
class DeclineInvitation(Frame):
    TYPE: ClassVar[str] = "decline_invitation"
    invitation_id: str = _text(MAX_ID_CHARS)
    ref: str | None = _ref()


@dataclass(frozen=True, slots=True)
class ListInvitations(Frame):
    """Pending invitations: the caller's own (no ``sphere_id``), or a sphere's (administrators)."""

    TYPE: ClassVar[str] = "list_invitations"
    sphere_id: SphereId | None = _opt_text(MAX_ID_CHARS)
    limit: int | None = _opt_int(1, MAX_LIST_LIMIT)
    after: str | None = _opt_text(MAX_CURSOR_CHARS)
    ref: str | None = _ref()


@dataclass(frozen=True, slots=True)
class RequestJoin(Frame):
    """Ask to enter a sphere whose join policy is ``approval``."""

    TYPE: ClassVar[str] = "request_join"
    sphere_id: SphereId = _text(MAX_ID_CHARS)
    comment: str | None = _opt_text(MAX_COMMENT_CHARS)
    ref: str | None = _ref()


@dataclass(frozen=True, slots=True)
class WithdrawRequest(Frame):
    TYPE: ClassVar[str] = "withdraw_request"
    sphere_id: SphereId = _text(MAX_ID_CHARS)
    ref: str | None = _ref()


@dataclass(frozen=True, slots=True)
class AnswerRequest(Frame):
    """An administrator accepts (the user becomes a member) or refuses a join request."""

    TYPE: ClassVar[str] = "answer_request"
    sphere_id: SphereId = _text(MAX_ID_CHARS)
    user_id: UserId = _text(MAX_ID_CHARS)
    accept: bool = False
    ref: str | None = _ref()


@dataclass(frozen=True, slots=True)
class ListRequests(Frame):
    TYPE: ClassVar[str] = "list_requests"
    sphere_id: SphereId = _text(MAX_ID_CHARS)
    limit: int | None = _opt_int(1, MAX_LIST_LIMIT)
    after: str | None = _opt_text(MAX_CURSOR_CHARS)
    ref: str | None = _ref()


@dataclass(frozen=True, slots=True)
class Ban(Frame):
    """Remove a user (member or not) and keep them out until ``unban``."""

    TYPE: ClassVar[str] = "ban"
    sphere_id: SphereId = _text(MAX_ID_CHARS)
    user_id: UserId = _text(MAX_ID_CHARS)
    reason: str | None = _opt_text(MAX_COMMENT_CHARS)
    ref: str | None = _ref()


@dataclass(frozen=True, slots=True)
class Unban(Frame):
    TYPE: ClassVar[str] = "unban"
    sphere_id: SphereId = _text(MAX_ID_CHARS)
    user_id: UserId = _text(MAX_ID_CHARS)
    ref: str | None = _ref()


@dataclass(frozen=True, slots=True)
class ListBans(Frame):
    TYPE: ClassVar[str] = "list_bans"
    sphere_id: SphereId = _text(MAX_ID_CHARS)
    limit: int | None = _opt_int(1, MAX_LIST_LIMIT)
    after: str | None = _opt_text(MAX_CURSOR_CHARS)
    ref: str | None = _ref()


@dataclass(frozen=True, slots=True)
class Mute(Frame):
    """The member reads but may not write (post, reply, react, edit) for ``duration_s``."""

    TYPE: ClassVar[str] = "mute"
    sphere_id: SphereId = _text(MAX_ID_CHARS)
    user_id: UserId = _text(MAX_ID_CHARS)
    duration_s: int = _int(MIN_MUTE_S, MAX_MUTE_S)
    ref: str | None = _ref()


@dataclass(frozen=True, slots=True)
class Unmute(Frame):
    TYPE: ClassVar[str] = "unmute"
    sphere_id: SphereId = _text(MAX_ID_CHARS)
    user_id: UserId = _text(MAX_ID_CHARS)
    ref: str | None = _ref()


@dataclass(frozen=True, slots=True)
class TransferOwnership(Frame):
    """The owner makes a member the owner and becomes an administrator, in one change."""

    TYPE: ClassVar[str] = "transfer_ownership"
    sphere_id: SphereId = _text(MAX_ID_CHARS)
    user_id: UserId = _text(MAX_ID_CHARS)
    ref: str | None = _ref()


@dataclass(frozen=True, slots=True)
class DeleteSphere(Frame):
    """Delete the sphere and all its data (the owner only); members are told, then cut off."""

    TYPE: ClassVar[str] = "delete_sphere"
    sphere_id: SphereId = _text(MAX_ID_CHARS)
    ref: str | None = _ref()


@dataclass(frozen=True, slots=True)
class SetCharter(Frame):
    """Set the charter members must accept before reading (empty text removes it)."""

    TYPE: ClassVar[str] = "set_charter"
    sphere_id: SphereId = _text(MAX_ID_CHARS)
    text: str = _text(MAX_CHARTER_CHARS, min_chars=0)
    ref: str | None = _ref()


@dataclass(frozen=True, slots=True)
class GetCharter(Frame):
    TYPE: ClassVar[str] = "get_charter"
    sphere_id: SphereId = _text(MAX_ID_CHARS)
    ref: str | None = _ref()


@dataclass(frozen=True, slots=True)
class AcceptCharter(Frame):
    """Accept the charter's ``version`` (the one read with ``get_charter``)."""

    TYPE: ClassVar[str] = "accept_charter"
    sphere_id: SphereId = _text(MAX_ID_CHARS)
    version: int = _int(1, MAX_OFFSET)
    ref: str | None = _ref()


@dataclass(frozen=True, slots=True)
class ListAudit(Frame):
    """The sphere's audit log, newest first (administrators)."""

    TYPE: ClassVar[str] = "list_audit"
    sphere_id: SphereId = _text(MAX_ID_CHARS)
    before: int | None = _opt_int(1, MAX_OFFSET)  # ``seq`` of the oldest entry already seen
    limit: int | None = _opt_int(1, MAX_LIST_LIMIT)
    ref: str | None = _ref()


@dataclass(frozen=True, slots=True)
class Report(Frame):
    """Report the post at ``target`` to the sphere's administrators."""

    TYPE: ClassVar[str] = "report"
    sphere_id: SphereId = _text(MAX_ID_CHARS)
    target: int = _int(1, MAX_OFFSET)
    reason: ReportReason = ReportReason.OTHER
    comment: str | None = _opt_text(MAX_COMMENT_CHARS)
    ref: str | None = _ref()


@dataclass(frozen=True, slots=True)
class ListReports(Frame):
    TYPE: ClassVar[str] = "list_reports"
    sphere_id: SphereId = _text(MAX_ID_CHARS)
    before: int | None = _opt_int(1, MAX_OFFSET)  # ``report_id`` of the oldest already seen
    limit: int | None = _opt_int(1, MAX_LIST_LIMIT)
    ref: str | None = _ref()


# ---------------------------------------------------------------------------------------------
# Value objects and server -> client


@dataclass(frozen=True, slots=True)
class Invitation:
    invitation_id: str
    sphere_id: SphereId
    sphere_name: str
    inviter_id: UserId
    inviter_name: str
    invitee_id: UserId
    invitee_name: str
    role: Role
    created_ms: int
    expires_ms: int
    state: InvitationState


@dataclass(frozen=True, slots=True)
class InvitationInfo(Frame):
    TYPE: ClassVar[str] = "invitation_info"
    invitation: Invitation
    ref: str | None = None


@dataclass(frozen=True, slots=True)
class InvitationList(Frame):
    TYPE: ClassVar[str] = "invitation_list"
    invitations: list[Invitation]
    next: str | None = None
    ref: str | None = None


@dataclass(frozen=True, slots=True)
class JoinRequestInfo:
    sphere_id: SphereId
    user_id: UserId
    name: str
    created_ms: int
    state: RequestState
    comment: str | None = None


@dataclass(frozen=True, slots=True)
class JoinRequestList(Frame):
    TYPE: ClassVar[str] = "join_request_list"
    sphere_id: SphereId
    requests: list[JoinRequestInfo]
    next: str | None = None
    ref: str | None = None


@dataclass(frozen=True, slots=True)
class BanInfo:
    user_id: UserId
    name: str
    banned_by: UserId
    ts_ms: int
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class BanList(Frame):
    TYPE: ClassVar[str] = "ban_list"
    sphere_id: SphereId
    bans: list[BanInfo]
    next: str | None = None
    ref: str | None = None


@dataclass(frozen=True, slots=True)
class CharterInfo(Frame):
    """The charter's text and version (0 and empty: none); ``accepted``: the caller's version."""

    TYPE: ClassVar[str] = "charter_info"
    sphere_id: SphereId
    version: int
    text: str
    accepted: int | None = None
    ref: str | None = None


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """Who did what to whom, when; never a message body."""

    seq: int
    ts_ms: int
    actor_id: UserId
    action: str
    target_id: UserId | None = None
    offset: int | None = None  # the post a moderation act or report concerns
    detail: str | None = None


@dataclass(frozen=True, slots=True)
class AuditList(Frame):
    TYPE: ClassVar[str] = "audit_list"
    sphere_id: SphereId
    entries: list[AuditRecord]  # newest first
    has_more: bool
    ref: str | None = None


@dataclass(frozen=True, slots=True)
class ReportInfo:
    report_id: int
    target: int
    reporter_id: UserId
    reason: ReportReason
    ts_ms: int
    comment: str | None = None


@dataclass(frozen=True, slots=True)
class ReportList(Frame):
    TYPE: ClassVar[str] = "report_list"
    sphere_id: SphereId
    reports: list[ReportInfo]  # newest first
    has_more: bool
    ref: str | None = None
