"""Persistence: each sphere's event stream and the directory of users, tokens and spheres.

- ``base``: the ``Store`` protocol (``MessageLog`` + ``Directory``), its records and errors,
  and the one backpressure bound of every backend (``MAX_QUEUED_APPENDS``);
- ``sql/``: the query layer both SQL backends share: statements written once and rendered per
  dialect, the directory and the message log's reads, group-commit planning, the append queue
  (see ``storage.sql``);
- ``sqlite``: ``SqliteStore``, one SQLite file in WAL mode: its connections and threads,
  transactions, list parameters and errors;
- ``postgres``: ``PostgresStore``, a PostgreSQL database on an asyncpg pool, shared by several
  processes: the pool, transactions, locks, array parameters and errors;
- ``conversations``: the ``Conversations`` protocol (threads, pins, mentions, reports), its
  records and the mention syntax;
- ``export``: the ``Export`` protocol (a user's rows, read in pages) and its records;
- ``rows``: rows to records, draft and limit checks, writer counters;
- ``commit``: what a failed group commit means (rolled back, or outcome unknown);
- ``migrations``: numbered SQL files per engine and the ``schema_version`` bookkeeping;
- ``erasure``: the ``Erasure`` protocol (``scrub`` after erasing, ``compact``) and its
  reports; ``erasure_bench``: ``python -m storage.erasure_bench``, what erasure costs;
- ``bench``: ``python -m storage.bench``, the durable ingest benchmark of either backend.

``open_store(url)`` picks the backend from a URL. Other packages import from here only.
"""

from __future__ import annotations

from urllib.parse import parse_qs, parse_qsl, unquote, urlencode, urlsplit, urlunsplit

from storage.audit import AuditAction, SphereAudit, SphereAuditEntry
from storage.base import (
    MAX_QUEUED_APPENDS,
    NO_SUCH_USER,
    OPERATOR,
    TOUCH_INTERVAL_MS,
    AppendResult,
    AuditEntry,
    ChangeKind,
    DecideMember,
    DecideSettings,
    Directory,
    Draft,
    HasSpheresError,
    LegalHoldRecord,
    MemberChange,
    MemberKey,
    MembershipState,
    MessageLog,
    NotFoundError,
    NotMemberError,
    OutcomeUnknownError,
    SessionChange,
    SettingsChange,
    SettingsState,
    SphereKey,
    SphereRecord,
    Store,
    StoreError,
    StoreOverloadedError,
    TargetGoneError,
    TokenKind,
    TokenPage,
    TokenRecord,
    UserRecord,
    member_key,
    sphere_key,
)
from storage.charter import Charter, CharterNotCurrentError, Charters, CheckCharter
from storage.conversations import (
    MAX_MENTIONS,
    Conversations,
    MentionKey,
    ReportRecord,
    ThreadRecord,
)
from storage.deletion import (
    ACCOUNT_DELETED,
    DELETION_REQUESTED,
    AccountDeletions,
    DeletionJob,
    DeletionMode,
    DeletionRequest,
    DeletionState,
    SphereStep,
)
from storage.direct import ORG_NOT_FOUND, DirectConversations, DirectOpening
from storage.entry import (
    CheckDelete,
    CheckEntry,
    CheckRevoke,
    DecideAccept,
    Entry,
    EntryKey,
    MutedError,
    SphereStanding,
)
from storage.erasure import CompactedTable, CompactionReport, Erasure, ErasureStats
from storage.export import (
    AuthoredSpan,
    Export,
    InvitationRecord,
    JoinRequestRecord,
    ReactionKey,
    ReactionRecord,
)
from storage.lifecycle import (
    OrgDeletionJob,
    OrgDeletionState,
    OrgLifecycle,
    OrgMemberRow,
    SphereDeletionStep,
)
from storage.org_governance import (
    DecideOrgMember,
    DirectoryEntry,
    DirectoryKey,
    OrgAccess,
    OrgChange,
    OrgGovernance,
    OrgMemberState,
    PortalKey,
)
from storage.organisations import (
    DEFAULT_ORG,
    InvalidPolicyError,
    OrgAction,
    Organisations,
    OrgAuditEntry,
    OrgMembership,
    OrgPolicies,
    OrgQuotas,
    OrgRecord,
    OrgRole,
    policies_from,
)
from storage.retention import ExpiryBatch, Retention, RetentionRun, RetentionStatus
from storage.rows import joined_from, public_from_after, read_floor, summary_of
from storage.settings import MemberView, SphereSettings, default_settings
from storage.signin import (
    AuthSession,
    Credentials,
    EmailTakenError,
    EndReason,
    GrantKind,
    RefreshOutcome,
    RefreshRecord,
    SigninGrant,
    SignInMethod,
    SignIns,
    SsoConfig,
)
from storage.sql.erasure import CompactionRunningError
from storage.sql.org_governance import join_global
from storage.sql.organisations import OrgExistsError
from storage.usage import ORG_SUSPENDED, OrgSuspendedError, QuotaExceededError

__all__ = [
    "ACCOUNT_DELETED",
    "DEFAULT_ORG",
    "DELETION_REQUESTED",
    "MAX_MENTIONS",
    "MAX_QUEUED_APPENDS",
    "NO_SUCH_USER",
    "OPERATOR",
    "ORG_NOT_FOUND",
    "ORG_SUSPENDED",
    "TOUCH_INTERVAL_MS",
    "AccountDeletions",
    "AppendResult",
    "AuditAction",
    "AuditEntry",
    "AuthSession",
    "AuthoredSpan",
    "ChangeKind",
    "Charter",
    "CharterNotCurrentError",
    "Charters",
    "CheckCharter",
    "CheckDelete",
    "CheckEntry",
    "CheckRevoke",
    "CheckUpdate",
    "CompactedTable",
    "CompactionReport",
    "CompactionRunningError",
    "Conversations",
    "Credentials",
    "DecideAccept",
    "DecideMember",
    "DecideOrgMember",
    "DecideSettings",
    "DeletionJob",
    "DeletionMode",
    "DeletionRequest",
    "DeletionState",
    "DirectConversations",
    "DirectOpening",
    "Directory",
    "DirectoryEntry",
    "DirectoryKey",
    "Draft",
    "EmailTakenError",
    "EndReason",
    "Entry",
    "EntryKey",
    "Erasure",
    "ErasureStats",
    "ExpiryBatch",
    "Export",
    "GrantKind",
    "HasSpheresError",
    "InvalidPolicyError",
    "InvitationRecord",
    "JoinRequestRecord",
    "LegalHoldRecord",
    "MemberChange",
    "MemberKey",
    "MemberView",
    "MembershipState",
    "MentionKey",
    "MessageLog",
    "MutedError",
    "NotFoundError",
    "NotMemberError",
    "OrgAccess",
    "OrgAction",
    "OrgAuditEntry",
    "OrgChange",
    "OrgDeletionJob",
    "OrgDeletionState",
    "OrgExistsError",
    "OrgGovernance",
    "OrgLifecycle",
    "OrgMemberRow",
    "OrgMemberState",
    "OrgMembership",
    "OrgPolicies",
    "OrgQuotas",
    "OrgRecord",
    "OrgRole",
    "OrgSuspendedError",
    "Organisations",
    "OutcomeUnknownError",
    "PortalKey",
    "QuotaExceededError",
    "ReactionKey",
    "ReactionRecord",
    "RefreshOutcome",
    "RefreshRecord",
    "ReportRecord",
    "Retention",
    "RetentionRun",
    "RetentionStatus",
    "SessionChange",
    "SettingsChange",
    "SettingsState",
    "SignInMethod",
    "SignIns",
    "SigninGrant",
    "SphereAudit",
    "SphereAuditEntry",
    "SphereDeletionStep",
    "SphereKey",
    "SphereRecord",
    "SphereSettings",
    "SphereStanding",
    "SphereStep",
    "SsoConfig",
    "Store",
    "StoreError",
    "StoreOverloadedError",
    "TargetGoneError",
    "ThreadRecord",
    "TokenKind",
    "TokenPage",
    "TokenRecord",
    "UserRecord",
    "default_settings",
    "join_global",
    "joined_from",
    "member_key",
    "open_store",
    "policies_from",
    "public_from_after",
    "read_floor",
    "sphere_key",
    "summary_of",
]


async def open_store(url: str) -> Store:
    """Open the store named by ``url``; call its ``aclose()`` when done.

    ``sqlite:///data/cloison.sqlite3`` names a file relative to the working directory,
    ``sqlite:////var/lib/cloison.sqlite3`` an absolute one (the path is what follows
    ``sqlite:///``). The query may set ``synchronous=NORMAL`` (default ``FULL``, see
    ``SqliteStore.open``).

    ``postgresql://user@host:5432/cloison`` (or ``postgres://``) names a PostgreSQL database in
    libpq's URI syntax; the query may set ``schema=NAME`` to keep the tables in that schema
    (see ``PostgresStore.open``), and other libpq options (``sslmode=...``) pass through.

    Raises:
        ValueError: an unsupported scheme, a malformed URL or an unknown option.
        StoreError: the database cannot be opened or migrated.
    """
    parts = urlsplit(url)
    if parts.scheme == "sqlite":
        path = unquote(parts.path.removeprefix("/"))
        if parts.netloc or not path or path == ":memory:":
            raise ValueError(f"expected sqlite:///path/to/file.sqlite3, got {url!r}")
        options = parse_qs(parts.query, strict_parsing=bool(parts.query))
        if set(options) - {"synchronous"} or any(len(v) > 1 for v in options.values()):
            raise ValueError(f"unknown or repeated options in {url!r}; only synchronous=")
        # Imported here so that a backend's driver loads only when it is used.
        from storage.sqlite import SqliteStore

        return await SqliteStore.open(path, synchronous=options.get("synchronous", ["FULL"])[0])
    if parts.scheme in ("postgresql", "postgres"):
        pairs = parse_qsl(parts.query, keep_blank_values=True)
        schemas = [value for name, value in pairs if name == "schema"]
        if len(schemas) > 1:
            raise ValueError(f"repeated schema= option in {url!r}")
        # asyncpg would pass an unknown option on to the server as a setting.
        dsn = urlunsplit(parts._replace(query=urlencode([p for p in pairs if p[0] != "schema"])))
        from storage.postgres import PostgresStore

        return await PostgresStore.open(dsn, schema=schemas[0] if schemas else None)
    raise ValueError(
        f"unsupported store URL scheme {parts.scheme!r}; expected sqlite:// or postgresql://"
    )
