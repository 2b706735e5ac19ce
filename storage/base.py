"""The storage interface: what the server needs from any backend.

A backend implements two narrow protocols, ``MessageLog`` (each sphere's ordered event stream)
and ``Directory`` (users, tokens, spheres, memberships, read markers); ``Store`` is both plus
its lifecycle. Every backend passes the same contract suite (``tests/contract/test_store.py``).

The store is the sequencer: ``append`` assigns the next offset of the sphere in the same
transaction that stores the event, from a per-sphere counter, so offsets are gapless even when
a transaction rolls back, and returns only once the event is durable.

Membership is part of the stream. Every change of a sphere's members (``create_sphere``,
``change_member``) or of its settings (``update_sphere``, ``set_charter``) writes a ``member``
or ``sphere`` event with the sphere's next offset in the transaction that changes the rows,
and decides on rows read inside that transaction, under the lock that orders the sphere's
appends. And an append is authorised when its group commits: an author who is not a member of
the sphere at that moment fails with ``NotMemberError``. So no post is ever sequenced after
its author's removal, whatever a gateway believed when it accepted the write.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from protocol import (
    CloisonError,
    ErrorCode,
    EventKind,
    HistoryMode,
    JoinPolicy,
    MemberAction,
    MemberInfo,
    Message,
    MessageId,
    OrgId,
    Privacy,
    Role,
    SphereId,
    SphereSummary,
    StreamPosition,
    UserId,
    UserKind,
)
from storage.audit import AuditAction, SphereAudit
from storage.charter import Charters
from storage.conversations import Conversations
from storage.deletion import AccountDeletions
from storage.direct import DirectConversations
from storage.entry import Entry
from storage.erasure import Erasure
from storage.export import Export
from storage.org_governance import OrgGovernance
from storage.organisations import DEFAULT_ORG, Organisations
from storage.retention import Retention
from storage.settings import MemberView, SphereSettings
from storage.signin import SignIns

# What a client is told when a write's outcome is unknown (protocol code ``unknown``).
OUTCOME_UNKNOWN_MESSAGE = (
    "the write may or may not have been stored; retry with the same message_id"
)
# The same for a change of the directory (users, tokens, spheres, members, read markers).
CHANGE_UNKNOWN_MESSAGE = "the change may or may not have been made; check before repeating it"


@dataclass(frozen=True, slots=True)
class UserRecord:
    user_id: UserId
    name: str
    kind: UserKind
    is_admin: bool  # may use the server administration API
    created_ms: int
    disabled_ms: int | None = None  # set while an administrator has disabled the account

    @property
    def disabled(self) -> bool:
        return self.disabled_ms is not None


class TokenKind(StrEnum):
    SESSION = "session"  # an interactive sign-in (web client, terminal chat)
    API = "api"  # a bot or script
    # The short-lived token of a sign-in session (server.signin), renewed with its refresh token.
    ACCESS = "access"


# Who issued a token or did an audited act from the command line (no user behind it).
OPERATOR = "cli"


@dataclass(frozen=True, slots=True)
class TokenRecord:
    """A bearer token as stored: only a hash of its secret part is kept."""

    token_id: str
    user_id: UserId
    secret_hash: bytes
    created_ms: int
    expires_ms: int | None
    revoked: bool = False
    kind: TokenKind = TokenKind.SESSION
    # The user id of whoever issued it (the user themselves, an administrator), OPERATOR for
    # the command line, None for tokens issued before this was recorded.
    issued_by: str | None = None
    label: str | None = None
    last_used_ms: int | None = None  # updated at most once per TOUCH_INTERVAL_MS
    session_id: str | None = None  # the sign-in session of an ``access`` token

    def live(self, now_ms: int) -> bool:
        return not self.revoked and (self.expires_ms is None or self.expires_ms > now_ms)


# Why: a write per authentication would cost more than the "last used" column is worth.
TOUCH_INTERVAL_MS = 3_600_000


@dataclass(frozen=True, slots=True)
class TokenPage:
    tokens: list[TokenRecord]  # newest first
    issuer_names: dict[str, str]  # name of each user id in ``issued_by``
    next_cursor: tuple[int, str] | None  # (created_ms, token_id) of the last, if more follow


class ChangeKind(StrEnum):
    """What a ``session_changes`` row tells every node to close."""

    TOKEN_REVOKED = "token_revoked"  # connections opened with token_id
    USER_DISABLED = "user_disabled"  # every connection of user_id
    SESSION_REVOKED = "session_revoked"  # connections of the sign-in session in token_id


@dataclass(frozen=True, slots=True)
class SessionChange:
    """One row of the append-only log every node polls to close live sockets."""

    seq: int  # ascending in commit order
    kind: ChangeKind
    user_id: UserId
    token_id: str | None
    ts_ms: int


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """An administrative act, recorded in the same transaction as the act itself."""

    actor: str  # a user id, or OPERATOR
    action: str  # user_created, token_issued, token_revoked, tokens_revoked, user_disabled, ...
    user_id: UserId | None  # whom it concerned
    ts_ms: int
    token_id: str | None = None
    detail: str | None = None
    seq: int = 0  # assigned by the store


class HasSpheresError(CloisonError):
    """A token for a human who belongs to spheres may only be issued by that human."""

    code = ErrorCode.FORBIDDEN


@dataclass(frozen=True, slots=True)
class SphereRecord:
    sphere_id: SphereId
    name: str
    privacy: Privacy
    epoch: str
    offset: int  # offset of the latest event, 0 when the stream is empty
    created_ms: int
    listed: bool = False
    join_policy: JoinPolicy = JoinPolicy.INVITATION
    history: HistoryMode = HistoryMode.SINCE_JOINING
    charter_version: int = 0  # 0: no charter
    public_from: int = 0  # the first offset an outsider may read (public spheres)
    retention_days: int | None = None  # the sphere's own period; None: the server's default
    retained_from: int = 0  # the retention horizon: the first offset still held (0: all)
    hold: LegalHoldRecord | None = None
    org_id: OrgId = DEFAULT_ORG  # the organisation the sphere belongs to

    @property
    def position(self) -> StreamPosition:
        return StreamPosition(self.offset, self.epoch)

    def held(self, now_ms: int) -> bool:
        """Is the sphere under a legal hold at ``now_ms`` (no deletion, no retention)?"""
        return self.hold is not None and self.hold.live(now_ms)


@dataclass(frozen=True, slots=True)
class LegalHoldRecord:
    """A sphere's legal hold as stored: who set it, why, and until when."""

    since_ms: int
    until_ms: int | None  # None: until an administrator releases it
    reason: str
    set_by: str  # the administrator's user id, or OPERATOR

    def live(self, now_ms: int) -> bool:
        return self.until_ms is None or self.until_ms > now_ms


@dataclass(frozen=True, slots=True)
class Draft:
    """An event to append; the store gives it its offset.

    ``message_id`` is the author's idempotency key: appending a draft whose
    (sphere, author, message_id) is already stored returns the stored event unchanged.
    """

    kind: EventKind
    message_id: MessageId
    author_id: UserId
    ts_ms: int
    body: str | None = None
    target: int | None = None  # offset of the post an edit, delete, reaction or pin names
    reply_to: int | None = None  # a reply: the offset of the post it answers
    emoji: str | None = None  # a reaction


@dataclass(frozen=True, slots=True)
class AppendResult:
    event: Message
    duplicate: bool  # True: the draft's key was already stored; nothing new was written


@dataclass(frozen=True, slots=True)
class MembershipState:
    """What a membership change is decided on, read inside the transaction that makes it."""

    sphere: SphereRecord
    actor_role: Role | None  # the role of who asks for the change
    target_role: Role | None  # the role of whom it changes (the actor for join and leave)
    owners: int  # members with the owner role
    target_banned: bool = False  # the target is banned from the sphere
    target_muted_until_ms: int | None = None  # the target's mute, if any (it may be over)


@dataclass(frozen=True, slots=True)
class MemberChange:
    """A decided change: the target's role afterwards (None: no longer a member), and why;
    ``audit``: the entry of the sphere's audit log written with it (``detail`` its detail)."""

    role: Role | None
    action: MemberAction
    audit: AuditAction | None = None
    detail: str | None = None
    until_ms: int | None = None  # a mute's end, carried by its ``member`` event


# Decides a change from the state read in its transaction: the change to make, None for
# "nothing to do", or raises a CloisonError to refuse (the transaction then writes nothing).
DecideMember = Callable[[MembershipState], MemberChange | None]


@dataclass(frozen=True, slots=True)
class SettingsState:
    """What a settings change is decided on, read inside the transaction that makes it."""

    sphere: SphereRecord
    actor_role: Role | None
    members: int  # how many members the sphere has


@dataclass(frozen=True, slots=True)
class SettingsChange:
    """A decided change: the settings afterwards, and the audit entries (action, detail) to
    write with it."""

    settings: SphereSettings
    audits: tuple[tuple[AuditAction, str], ...]


# Decides a settings change: the change, None for "nothing changes", or raises to refuse.
DecideSettings = Callable[[SettingsState], SettingsChange | None]


class StoreError(CloisonError):
    """The backend failed and the operation certainly had no effect; it may be retried."""

    code = ErrorCode.UNAVAILABLE


# Backpressure, the same in every backend: at most this many appends wait for their group
# commit. Why 10,000: ten full groups (a group takes at most 1,000), far more than pile up
# while one group commits, and a bound on the memory a stalled database can make us hold.
MAX_QUEUED_APPENDS = 10_000
OVERLOADED_MESSAGE = "the store is overloaded; retry later"


class StoreOverloadedError(StoreError):
    """``MAX_QUEUED_APPENDS`` appends already wait for their commit: this one was refused at
    once, before it was queued, so nothing was written (code ``unavailable``, retryable)."""

    def __init__(self, message: str = OVERLOADED_MESSAGE) -> None:
        super().__init__(message)


class OutcomeUnknownError(StoreError):
    """A write's commit was sent but its result never came back: it may be stored or not.

    Raised when the connection broke, timed out or was cancelled during or after COMMIT.
    Retrying with the same ``message_id`` is safe (appends are idempotent) and tells which.
    """

    code = ErrorCode.UNKNOWN

    def __init__(self, message: str = OUTCOME_UNKNOWN_MESSAGE) -> None:
        super().__init__(message)


class NotFoundError(CloisonError):
    """A referenced user, sphere or event does not exist."""

    code = ErrorCode.NOT_FOUND


class TargetGoneError(CloisonError):
    """An edit or delete names a post that does not exist, is not a post, or is deleted."""

    code = ErrorCode.NOT_FOUND


class NotMemberError(CloisonError):
    """An append's author was not a member of the sphere when its group committed.

    The server tells the author ``not_found`` or ``forbidden``, as ``server.access`` decides.
    """

    code = ErrorCode.FORBIDDEN


class MessageLog(Protocol):
    async def append(self, sphere_id: SphereId, draft: Draft) -> AppendResult:
        """Durably append ``draft`` to the sphere's stream.

        Appends are sequenced in the order their calls start: a caller that starts appends
        one after another (without awaiting each) gets offsets in that order. The server
        relies on this to keep each sender's pipelined writes in send order.

        Raises:
            NotFoundError: no such sphere.
            NotMemberError: the author is not a member of the sphere at commit time (a
                duplicate of a stored draft is returned nonetheless).
            TargetGoneError: an edit, delete, reaction or pin whose target (a reply: the post
                it answers) is not a live post, or, for replies, reactions and pins, lies below
                the author's floor (the first offset they may read).
            OutcomeUnknownError: the commit's result is unknown (the draft may be stored).
            StoreOverloadedError: ``MAX_QUEUED_APPENDS`` appends already wait for their
                commit (backpressure: the append fails at once rather than wait or queue
                without bound); nothing was written.
            StoreError: the backend failed; nothing was written.
        """
        ...

    async def events_after(self, sphere_id: SphereId, after: int, limit: int) -> list[Message]:
        """Events with offset > ``after``, ascending, at most ``limit``, in their current state."""
        ...

    async def history(
        self,
        sphere_id: SphereId,
        *,
        before: int | None,
        after: int | None,
        limit: int,
        floor: int = 0,
        own_member_events: UserId | None = None,
    ) -> tuple[list[Message], bool]:
        """Posts (current state, tombstones included, with their reactions) and member and
        sphere events, ascending by offset; edits, deletes, reactions and pins show only in the
        state of their post. Only events at or above ``floor`` (the reader's history promise);
        with ``own_member_events``, the only member events are those about that user (a reader
        who may not list the members).

        With ``after``: the oldest ``limit`` events above it. Otherwise the newest ``limit``
        events below ``before`` (or the newest of all). Returns (events, has_more), where
        has_more says whether more lie beyond the page in the paging direction.
        """
        ...

    async def get_event(self, sphere_id: SphereId, offset: int) -> Message | None: ...

    async def heads(self, sphere_ids: Sequence[SphereId]) -> dict[SphereId, StreamPosition]:
        """The current position of each sphere, in one read (unknown spheres are left out)."""
        ...


# Where a page of members or spheres ends, in their sort order: (role rank, name, user_id)
# and (name, sphere_id).
MemberKey = tuple[int, str, str]
SphereKey = tuple[str, str]


def member_key(member: MemberInfo) -> MemberKey:
    return (member.role.rank, member.name, member.user_id)


def sphere_key(sphere: SphereSummary) -> SphereKey:
    return (sphere.name, sphere.sphere_id)


class Directory(Protocol):
    async def create_user(
        self,
        name: str,
        kind: UserKind,
        *,
        is_admin: bool,
        now_ms: int,
        audit: AuditEntry | None = None,
        first_token: TokenRecord | None = None,
        token_audit: AuditEntry | None = None,
        org_id: OrgId | None = DEFAULT_ORG,
    ) -> UserRecord:
        """Create a user, with its first token (its user_id set here) if given, in one
        transaction; ``audit`` and ``token_audit`` (their user_id filled in) are written with
        them. The user joins ``org_id`` (None: no organisation), as a manager if ``is_admin``.

        Raises:
            NotFoundError: no organisation ``org_id``.
        """
        ...

    async def get_user(self, user_id: UserId) -> UserRecord | None: ...

    async def list_users(self, *, after: UserId | None, limit: int) -> list[UserRecord]:
        """Users by ascending user_id, after ``after``."""
        ...

    async def rename_user(self, user_id: UserId, name: str) -> UserRecord | None: ...

    async def set_user_disabled(
        self, user_id: UserId, disabled: bool, *, now_ms: int, audit: AuditEntry | None = None
    ) -> UserRecord | None:
        """Disable or enable a user. Disabling also appends a USER_DISABLED session change,
        in the same transaction. None for an unknown user."""
        ...

    async def add_token(
        self,
        token: TokenRecord,
        *,
        audit: AuditEntry | None = None,
        refuse_members: bool = False,
    ) -> None:
        """Store ``token`` (and ``audit``) in one transaction.

        Raises:
            NotFoundError: unknown user.
            HasSpheresError: ``refuse_members`` and the user is a human member of a sphere.
        """
        ...

    async def get_token(self, token_id: str) -> TokenRecord | None: ...

    async def touch_token(self, token_id: str, now_ms: int) -> None:
        """Record that the token was used (callers limit this to one per TOUCH_INTERVAL_MS)."""
        ...

    async def list_tokens(
        self, user_id: UserId, *, now_ms: int, before: tuple[int, str] | None, limit: int
    ) -> TokenPage:
        """The user's live tokens (neither revoked nor expired), newest first."""
        ...

    async def revoke_token(
        self,
        token_id: str,
        *,
        now_ms: int,
        owner: UserId | None = None,
        audit: AuditEntry | None = None,
    ) -> TokenRecord | None:
        """Revoke a live token (of ``owner`` only, if given) and append a TOKEN_REVOKED session
        change, in one transaction. Returns the revoked token; None if there was no live one."""
        ...

    async def revoke_user_tokens(
        self,
        user_id: UserId,
        *,
        now_ms: int,
        keep: str | None = None,
        audit: AuditEntry | None = None,
    ) -> list[str]:
        """Revoke every live token of the user except ``keep``, with one TOKEN_REVOKED change
        each, in one transaction. Returns the revoked token ids."""
        ...

    async def latest_session_change(self) -> int:
        """The seq of the newest session change, 0 if none."""
        ...

    async def session_changes_after(self, seq: int, limit: int) -> list[SessionChange]:
        """Session changes with seq > ``seq``, ascending (seq order is commit order)."""
        ...

    async def list_audit(self, *, before: int | None, limit: int) -> list[AuditEntry]:
        """Audit entries, newest first, with seq < ``before``."""
        ...

    async def create_sphere(
        self,
        name: str,
        privacy: Privacy,
        owner_id: UserId,
        *,
        now_ms: int,
        settings: SphereSettings | None = None,
        org_id: OrgId = DEFAULT_ORG,
    ) -> SphereRecord:
        """Create a sphere of organisation ``org_id`` with a fresh epoch owned by ``owner_id``,
        in one transaction that also writes the owner's ``member`` event (``joined``, offset 1)
        and the ``sphere_created`` audit entry. ``settings`` (None: ``name`` and ``privacy``
        with the type's defaults, ``storage.rows.default_settings``) must suit the type.

        Raises:
            NotFoundError: no such user.
        """
        ...

    async def get_sphere(self, sphere_id: SphereId) -> SphereRecord | None: ...

    async def update_sphere(
        self, sphere_id: SphereId, actor_id: UserId, decide: DecideSettings, *, now_ms: int
    ) -> tuple[SphereRecord, Message | None]:
        """Change a sphere's settings as ``decide`` rules on the state read in the transaction.

        The settings, the ``sphere`` event carrying all of them (the sphere's next offset) and
        the audit entries are written in one transaction; ``public_from`` follows
        ``storage.rows.public_from_after``.

        Returns:
            The sphere as updated, and its ``sphere`` event (None when nothing changed).

        Raises:
            NotFoundError: no such sphere.
            CloisonError: whatever ``decide`` raised; nothing was written.
        """
        ...

    async def sphere_view(
        self, sphere_id: SphereId, user_id: UserId
    ) -> tuple[SphereRecord | None, MemberView | None]:
        """The sphere and the user's membership in it, in one read (either may be None)."""
        ...

    async def sphere_access(
        self, sphere_id: SphereId, user_id: UserId
    ) -> tuple[SphereRecord | None, Role | None]:
        """The sphere and the user's role in it, in one read (either may be None)."""
        ...

    async def sphere_members(
        self, sphere_id: SphereId
    ) -> tuple[SphereRecord, dict[UserId, tuple[Role, int]]] | None:
        """The sphere (with its position) and every member's role and ``history_from``, in one
        consistent read."""
        ...

    async def change_member(
        self,
        sphere_id: SphereId,
        actor_id: UserId,
        target_id: UserId,
        decide: DecideMember,
        *,
        now_ms: int,
    ) -> Message | None:
        """Add, remove or change the role of ``target_id``, as ``decide`` rules on the state
        read inside the transaction (so no rule is checked on stale rows).

        The member row and the ``member`` event (the sphere's next offset, authored by
        ``actor_id``, with the target's name at this time) are written in one transaction. A
        user who becomes a member (from not being one) reads from ``storage.rows.joined_from``:
        their ``member`` event under ``since_joining``, the whole history under ``full``.

        Returns:
            The event, or None when ``decide`` found nothing to do.

        Raises:
            NotFoundError: no such sphere or no such target user.
            CloisonError: whatever ``decide`` raised; nothing was written.
        """
        ...

    async def list_members(
        self, sphere_id: SphereId, *, limit: int | None = None, after: MemberKey | None = None
    ) -> list[MemberInfo]:
        """Members, most powerful role first, then by name and id: at most ``limit`` (None:
        all) of those after ``after`` (the ``member_key`` of the last one already seen)."""
        ...

    async def get_role(self, sphere_id: SphereId, user_id: UserId) -> Role | None: ...

    async def user_spheres(
        self, user_id: UserId, *, limit: int | None = None, after: SphereKey | None = None
    ) -> list[SphereSummary]:
        """The user's spheres with their settings, role, read marker, unread post count (from
        their floor on), floor, accepted charter and mute, by name and id: at most ``limit``
        (None: all) of those after ``after`` (a ``sphere_key``)."""
        ...

    async def discoverable_spheres(self, limit: int) -> list[SphereSummary]:
        """Listed open and public spheres, newest first (role and unread left empty)."""
        ...

    async def set_read_marker(self, sphere_id: SphereId, user_id: UserId, offset: int) -> int:
        """Move the read marker forward (never back); returns the marker now stored."""
        ...


class Store(
    MessageLog,
    Directory,
    SphereAudit,
    Conversations,
    Charters,
    Entry,
    AccountDeletions,
    Retention,
    Erasure,
    Export,
    Organisations,
    DirectConversations,
    OrgGovernance,
    SignIns,
    Protocol,
):
    async def check_writable(self) -> None:
        """Prove that a write could commit now (readiness), without writing anything.

        Raises:
            StoreError: the store cannot take writes (read-only file or directory, database
                in recovery or read-only, unreachable), with the reason as its message.
        """
        ...

    async def aclose(self) -> None:
        """Finish pending writes, then release every connection."""
        ...
