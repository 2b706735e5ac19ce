"""Frames of organisations: their members and roles, policies, audit log, the spheres they own
(the internal portal), and a manager's appointment in one of them (``docs/governance.md``).

Every request names its organisation (``org_id``), except ``list_orgs``. A user outside the
organisation gets, for any of them, the answer an organisation that does not exist gets.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from protocol.fields import (
    MAX_CURSOR_CHARS,
    MAX_ID_CHARS,
    MAX_LIST_LIMIT,
    MAX_NAME_CHARS,
    MAX_OFFSET,
    MAX_RETENTION_DAYS,
    Frame,
    _opt_int,
    _opt_text,
    _ref,
    _text,
)
from protocol.types import HistoryMode, JoinPolicy, OrgId, OrgRole, Privacy, Role, SphereId, UserId

# Why: a quota is a count or a size in bytes; 2**53 is the largest integer every JSON client
# reads exactly.
MAX_QUOTA = 2**53
# Why: an erasure mode is a word ("erase", "anonymise").
MAX_MODE_CHARS = 16


# ---------------------------------------------------------------------------------------------
# Value objects


@dataclass(frozen=True, slots=True)
class OrgQuotaSet:
    """Limits on what the organisation holds; 0: no limit. In ``update_org``, a limit left out
    is kept."""

    members: int | None = _opt_int(0, MAX_QUOTA)
    spheres: int | None = _opt_int(0, MAX_QUOTA)
    messages_per_day: int | None = _opt_int(0, MAX_QUOTA)
    storage_bytes: int | None = _opt_int(0, MAX_QUOTA)


@dataclass(frozen=True, slots=True)
class OrgPolicySet:
    """The organisation's policies. In ``update_org``: the ones to change (a key left out is
    kept); in ``org_info``: the ones the caller may see (managers: all of them)."""

    # Days a new sphere's messages are kept; 0: the server's default.
    retention_days: int | None = _opt_int(0, MAX_RETENTION_DAYS)
    history: HistoryMode | None = None  # a new sphere's history promise
    member_sphere_types: list[Privacy] | None = None  # the types members may create
    visitors: bool | None = None  # sphere administrators may invite visitors from outside
    member_exports: bool | None = None  # members may export spheres they administer
    erasure: str | None = _opt_text(MAX_MODE_CHARS)  # erase or anonymise a deleted account's posts
    directory: bool | None = None  # members see the directory of members
    email_domains: list[str] | None = None  # who may register themselves into it
    export_private_messages: bool | None = None  # its export holds private messages
    quotas: OrgQuotaSet | None = None


@dataclass(frozen=True, slots=True)
class OrgSummary:
    org_id: OrgId
    name: str
    role: OrgRole  # the caller's
    suspended: bool = False


@dataclass(frozen=True, slots=True)
class OrgMember:
    user_id: UserId
    name: str
    role: OrgRole


@dataclass(frozen=True, slots=True)
class OrgAuditRecord:
    """Who did what to whom, when; ``detail`` is a policy's key, a role, never free text."""

    seq: int
    ts_ms: int
    actor_id: str
    action: str
    target_id: str | None = None
    detail: str | None = None


@dataclass(frozen=True, slots=True)
class OrgSphere:
    """A sphere of the organisation as its portal shows it: name and type, never content."""

    sphere_id: SphereId
    name: str
    privacy: Privacy
    listed: bool = False
    join_policy: JoinPolicy = JoinPolicy.INVITATION  # how a member of the organisation enters
    role: Role | None = None  # the caller's role in it; None: not a member
    requested: bool = False  # the caller's join request is pending


# ---------------------------------------------------------------------------------------------
# Client -> server


@dataclass(frozen=True, slots=True)
class ListOrgs(Frame):
    """The caller's organisations and their role in each."""

    TYPE: ClassVar[str] = "list_orgs"
    ref: str | None = _ref()


@dataclass(frozen=True, slots=True)
class GetOrg(Frame):
    TYPE: ClassVar[str] = "get_org"
    org_id: OrgId = _text(MAX_ID_CHARS)
    ref: str | None = _ref()


@dataclass(frozen=True, slots=True)
class UpdateOrg(Frame):
    """Rename the organisation and/or change policies (managers); each change is audited."""

    TYPE: ClassVar[str] = "update_org"
    org_id: OrgId = _text(MAX_ID_CHARS)
    name: str | None = _opt_text(MAX_NAME_CHARS)
    policies: OrgPolicySet | None = None
    ref: str | None = _ref()


@dataclass(frozen=True, slots=True)
class ListOrgMembers(Frame):
    """The directory: members by name (``query``: a name prefix, case-insensitive)."""

    TYPE: ClassVar[str] = "list_org_members"
    org_id: OrgId = _text(MAX_ID_CHARS)
    query: str | None = _opt_text(MAX_NAME_CHARS)
    limit: int | None = _opt_int(1, MAX_LIST_LIMIT)
    after: str | None = _opt_text(MAX_CURSOR_CHARS)  # ``next`` of the previous page
    ref: str | None = _ref()


@dataclass(frozen=True, slots=True)
class AddOrgMember(Frame):
    """Make a user a member (managers); they join every global sphere of the organisation."""

    TYPE: ClassVar[str] = "add_org_member"
    org_id: OrgId = _text(MAX_ID_CHARS)
    user_id: UserId = _text(MAX_ID_CHARS)
    role: OrgRole = OrgRole.MEMBER
    ref: str | None = _ref()


@dataclass(frozen=True, slots=True)
class RemoveOrgMember(Frame):
    """Remove a member (managers): every membership of theirs in its spheres ends first."""

    TYPE: ClassVar[str] = "remove_org_member"
    org_id: OrgId = _text(MAX_ID_CHARS)
    user_id: UserId = _text(MAX_ID_CHARS)
    ref: str | None = _ref()


@dataclass(frozen=True, slots=True)
class SetOrgRole(Frame):
    TYPE: ClassVar[str] = "set_org_role"
    org_id: OrgId = _text(MAX_ID_CHARS)
    user_id: UserId = _text(MAX_ID_CHARS)
    role: OrgRole = OrgRole.MEMBER
    ref: str | None = _ref()


@dataclass(frozen=True, slots=True)
class ListOrgAudit(Frame):
    """The organisation's audit log, newest first (managers)."""

    TYPE: ClassVar[str] = "list_org_audit"
    org_id: OrgId = _text(MAX_ID_CHARS)
    before: int | None = _opt_int(1, MAX_OFFSET)  # ``seq`` of the oldest entry already seen
    limit: int | None = _opt_int(1, MAX_LIST_LIMIT)
    ref: str | None = _ref()


@dataclass(frozen=True, slots=True)
class ListOrgSpheres(Frame):
    """The portal: the organisation's listed open and public spheres and its global spheres
    (members); every sphere of it, by name and type (managers)."""

    TYPE: ClassVar[str] = "list_org_spheres"
    org_id: OrgId = _text(MAX_ID_CHARS)
    limit: int | None = _opt_int(1, MAX_LIST_LIMIT)
    after: str | None = _opt_text(MAX_CURSOR_CHARS)
    ref: str | None = _ref()


@dataclass(frozen=True, slots=True)
class ManageSphere(Frame):
    """A manager becomes an administrator of a sphere of the organisation, visibly: its
    members see a ``member`` event ``appointed`` (answered with ``sphere_info``)."""

    TYPE: ClassVar[str] = "manage_sphere"
    org_id: OrgId = _text(MAX_ID_CHARS)
    sphere_id: SphereId = _text(MAX_ID_CHARS)
    ref: str | None = _ref()


# ---------------------------------------------------------------------------------------------
# Server -> client


@dataclass(frozen=True, slots=True)
class OrgList(Frame):
    TYPE: ClassVar[str] = "org_list"
    orgs: list[OrgSummary]
    ref: str | None = None


@dataclass(frozen=True, slots=True)
class OrgInfo(Frame):
    TYPE: ClassVar[str] = "org_info"
    org: OrgSummary
    policies: OrgPolicySet
    ref: str | None = None


@dataclass(frozen=True, slots=True)
class OrgMemberList(Frame):
    TYPE: ClassVar[str] = "org_member_list"
    org_id: OrgId
    members: list[OrgMember]
    next: str | None = None  # more follow: pass as ``after``; absent on the last page
    ref: str | None = None


@dataclass(frozen=True, slots=True)
class OrgAuditList(Frame):
    TYPE: ClassVar[str] = "org_audit_list"
    org_id: OrgId
    entries: list[OrgAuditRecord]  # newest first
    has_more: bool
    ref: str | None = None


@dataclass(frozen=True, slots=True)
class OrgSphereList(Frame):
    TYPE: ClassVar[str] = "org_sphere_list"
    org_id: OrgId
    spheres: list[OrgSphere]
    next: str | None = None
    ref: str | None = None
