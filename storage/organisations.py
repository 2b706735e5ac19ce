"""Organisations: the tenant boundary, as the store keeps it.

An organisation owns its spheres (``SphereRecord.org_id``) and has members, each a manager or a
member (``org_members``); one user may belong to several. Its policies are one JSON object
(``OrgPolicies``), read whole and written whole, so that a policy added later needs no migration.
Every change to an organisation writes its ``org_audit`` entry in the same transaction.

An install starts with the organisation ``DEFAULT_ORG``, which holds every user and sphere
created without naming another: a single-organisation server needs nothing more.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from enum import StrEnum
from typing import Any, Protocol, TypeVar

import orjson

from protocol import (
    CloisonError,
    ErrorCode,
    HistoryMode,
    OrgId,
    OrgRole as OrgRole,  # the storage name of the wire's organisation roles
    Privacy,
    UserId,
)
from storage.deletion import DeletionMode

DEFAULT_ORG = OrgId("default")
_E = TypeVar("_E", bound=StrEnum)


@dataclass(frozen=True, slots=True)
class OrgQuotas:
    """Limits on what an organisation holds; None: no limit."""

    members: int | None = None
    spheres: int | None = None
    messages_per_day: int | None = None
    storage_bytes: int | None = None  # the bytes of its posts' bodies


@dataclass(frozen=True, slots=True)
class OrgPolicies:
    """What an organisation's managers decide for all of it. The defaults protect."""

    # Applied to spheres created in the organisation (None: the server's own defaults).
    retention_days: int | None = None
    history: HistoryMode = HistoryMode.SINCE_JOINING
    # The types a member (not a manager) may create.
    member_sphere_types: tuple[Privacy, ...] = (Privacy.OPEN, Privacy.PRIVATE)  # sorted
    # Whether sphere administrators may invite people from outside the organisation as visitors.
    visitors: bool = False
    # Whether members may export spheres they administer (None: the server's --member-exports).
    member_exports: bool | None = None
    # What deleting a member's account does to their posts (None: --account-deletion).
    erasure: DeletionMode | None = None
    # Whether members see the organisation's directory of members.
    directory: bool = True
    # E-mail domains whose owners may register themselves into the organisation (none: nobody).
    email_domains: tuple[str, ...] = ()
    # Whether the organisation's export includes its members' private messages.
    export_private_messages: bool = False
    quotas: OrgQuotas = field(default_factory=OrgQuotas)

    def to_json(self) -> str:
        return orjson.dumps(asdict(self)).decode()

    @classmethod
    def from_json(cls, text: str) -> OrgPolicies:
        """The stored policies; keys this version does not know are ignored."""
        return policies_from(orjson.loads(text))


def policies_from(raw: Any, base: OrgPolicies | None = None) -> OrgPolicies:
    """``base`` (None: the defaults) with the keys of ``raw`` changed, each validated.

    Raises:
        InvalidPolicyError: ``raw`` is not an object, or a value is of the wrong kind.
    """
    if not isinstance(raw, dict):
        raise InvalidPolicyError("policies: expected an object")
    current = base or OrgPolicies()
    known = {f.name for f in fields(OrgPolicies)}
    changes: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in known:
            continue
        changes[key] = _policy_value(key, value, current)
    return OrgPolicies(**{**{f.name: getattr(current, f.name) for f in fields(current)}, **changes})


def _policy_value(key: str, value: Any, current: OrgPolicies) -> Any:
    if key == "retention_days":
        return _optional_count(key, value, maximum=36_500)
    if key == "history":
        return _enum(key, value, HistoryMode)
    if key == "member_sphere_types":
        if not isinstance(value, list | tuple):
            raise InvalidPolicyError(f"{key}: expected a list of sphere types")
        return tuple(sorted({_enum(key, item, Privacy) for item in value}))
    if key in ("visitors", "directory", "export_private_messages"):
        if not isinstance(value, bool):
            raise InvalidPolicyError(f"{key}: expected true or false")
        return value
    if key == "member_exports":
        if value is not None and not isinstance(value, bool):
            raise InvalidPolicyError(f"{key}: expected true, false or null")
        return value
    if key == "erasure":
        return None if value is None else _enum(key, value, DeletionMode)
    if key == "email_domains":
        return _domains(value)
    assert key == "quotas"
    if not isinstance(value, dict):
        raise InvalidPolicyError("quotas: expected an object")
    base = asdict(current.quotas)
    for name, limit in value.items():
        if name in base:
            base[name] = _optional_count(f"quotas.{name}", limit, maximum=2**53)
    return OrgQuotas(**base)


def _optional_count(key: str, value: Any, *, maximum: int) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= maximum:
        raise InvalidPolicyError(f"{key}: expected null or an integer from 1 to {maximum}")
    return value


def _enum(key: str, value: Any, enum: type[_E]) -> _E:
    try:
        return enum(value)
    except ValueError:
        allowed = ", ".join(member.value for member in enum)
        raise InvalidPolicyError(f"{key}: one of {allowed}") from None


# Why: a policy is a short list an administrator types, not a registry of the world's domains.
MAX_EMAIL_DOMAINS = 50


def _domains(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list | tuple) or len(value) > MAX_EMAIL_DOMAINS:
        raise InvalidPolicyError(f"email_domains: a list of at most {MAX_EMAIL_DOMAINS} domains")
    domains: set[str] = set()
    for item in value:
        if not isinstance(item, str):
            raise InvalidPolicyError("email_domains: expected domain names")
        domain = item.strip().lower()
        labels = domain.split(".")
        if len(domain) > 253 or len(labels) < 2 or not all(_label(label) for label in labels):
            raise InvalidPolicyError(f"email_domains: {item!r} is not a domain name")
        domains.add(domain)
    return tuple(sorted(domains))


def _label(label: str) -> bool:
    return (
        0 < len(label) <= 63
        and label.isascii()
        and all(c.isalnum() or c == "-" for c in label)
        and not label.startswith("-")
        and not label.endswith("-")
    )


class InvalidPolicyError(CloisonError):
    code = ErrorCode.BAD_FRAME


@dataclass(frozen=True, slots=True)
class OrgRecord:
    org_id: OrgId
    name: str
    created_ms: int
    suspended_ms: int | None = None  # set: its members cannot sign in to it
    policies: OrgPolicies = field(default_factory=OrgPolicies)

    @property
    def suspended(self) -> bool:
        return self.suspended_ms is not None


@dataclass(frozen=True, slots=True)
class OrgMembership:
    """One user's place in one organisation."""

    org: OrgRecord
    user_id: UserId
    role: OrgRole
    joined_ms: int


class OrgAction(StrEnum):
    """Every action of an organisation's audit log (lifecycle ones also go to the server's
    audit_log, ``detail``: the org_id)."""

    CREATED = "org_created"
    SUSPENDED = "org_suspended"
    RESUMED = "org_resumed"
    EXPORTED = "org_exported"
    DELETION_REQUESTED = "org_deletion_requested"
    DELETED = "org_deleted"
    RENAMED = "org_renamed"
    MEMBER_ADDED = "org_member_added"
    MEMBER_REMOVED = "org_member_removed"
    ROLE_CHANGED = "org_role_changed"
    POLICY_CHANGED = "policy_changed"
    SPHERE_MANAGED = "sphere_managed"


@dataclass(frozen=True, slots=True)
class OrgAuditEntry:
    """One act on an organisation: who, what, to whom, when; ``detail`` never holds content."""

    org_id: OrgId
    ts_ms: int
    actor_id: str  # a user id, or storage.OPERATOR
    action: str
    target_id: str | None = None
    detail: str | None = None
    seq: int = 0  # given by the store


class Organisations(Protocol):
    async def create_org(
        self,
        name: str,
        *,
        now_ms: int,
        actor_id: str,
        manager_id: UserId | None = None,
        org_id: OrgId | None = None,
    ) -> OrgRecord:
        """A new organisation (``org_id`` None: a fresh id), with ``manager_id`` as its first
        manager and its ``org_created`` audit entry, in one transaction.

        Raises:
            NotFoundError: ``manager_id`` names no user.
            ConflictError: ``org_id`` is taken.
        """
        ...

    async def get_org(self, org_id: OrgId) -> OrgRecord | None: ...

    async def org_role(self, org_id: OrgId, user_id: UserId) -> OrgRole | None:
        """The user's role in the organisation; None: not a member (or no such organisation)."""
        ...

    async def user_orgs(self, user_id: UserId) -> list[OrgMembership]:
        """The organisations the user belongs to, by org_id."""
        ...

    async def add_org_member(
        self,
        org_id: OrgId,
        user_id: UserId,
        role: OrgRole,
        *,
        now_ms: int,
        actor_id: str,
    ) -> bool:
        """Make the user a member of the organisation with ``role`` (``org_member_added``
        audited); False if they already were one (nothing changes).

        Raises:
            NotFoundError: no such organisation or user.
        """
        ...

    async def list_org_audit(
        self, org_id: OrgId, *, before: int | None, limit: int
    ) -> list[OrgAuditEntry]:
        """The organisation's audit entries, newest first, with seq < ``before``."""
        ...
