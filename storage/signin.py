"""Sign-in as the store keeps it: login e-mails and passwords, sessions, single sign-on.

- ``credentials``: a user's login e-mail (unique, compared in lower case: ``email_key``) and
  the argon2id hash of their password, if they have one. ``credentials_by_email`` is one read
  of a unique index, whatever the number of users.
- ``auth_sessions``: one sign-in. Its access tokens are ``tokens`` rows of kind ``access``
  naming it; its refresh tokens are ``refresh_tokens`` rows, each exchanged at most once.
  Revoking a session revokes its live access tokens and writes one ``session_revoked`` change
  (``SessionChange.token_id`` holds the session id), in the same transaction, so every node
  closes the sockets that belong to it.
- ``sso_configs`` and ``sso_identities``: an organisation's OpenID Connect provider, and who
  each (organisation, subject) is.
- ``signin_grants``: short-lived single-use state (an OpenID Connect ``state``, a one-time
  sign-in code), keyed by the SHA-256 of the value, so the store never holds the value itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Protocol

from protocol import CloisonError, ErrorCode, OrgId, UserId, UserKind

if TYPE_CHECKING:  # storage.base imports this module for its Store protocol
    from storage.base import AuditEntry, TokenRecord, UserRecord


class SignInMethod(StrEnum):
    PASSWORD = "password"
    OIDC = "oidc"


class EndReason(StrEnum):
    """Why a session ended (``auth_sessions.revoked_why``)."""

    SIGNED_OUT = "signed_out"  # its user revoked it (sign out, or from the session list)
    REVOKED = "revoked"  # an administrator, or every session of the user
    REUSED = "reused"  # a refresh token was presented a second time
    PASSWORD_CHANGED = "password_changed"  # the other sessions, when the password changes


class GrantKind(StrEnum):
    OIDC_STATE = "oidc_state"
    SIGNIN_CODE = "signin_code"


@dataclass(frozen=True, slots=True)
class Credentials:
    user_id: UserId
    email: str
    password_hash: str | None
    password_ms: int | None
    created_ms: int


@dataclass(frozen=True, slots=True)
class AuthSession:
    session_id: str
    user_id: UserId
    method: SignInMethod
    device: str | None
    address: str | None
    created_ms: int
    last_used_ms: int
    expires_ms: int
    revoked_ms: int | None = None
    revoked_why: str | None = None

    def live(self, now_ms: int) -> bool:
        return self.revoked_ms is None and self.expires_ms > now_ms


@dataclass(frozen=True, slots=True)
class RefreshRecord:
    refresh_id: str
    session_id: str
    secret_hash: bytes
    created_ms: int
    used_ms: int | None = None


class RefreshOutcome(StrEnum):
    ROTATED = "rotated"  # the new pair is stored
    REUSED = "reused"  # the token had been exchanged already: the session is now revoked
    INVALID = "invalid"  # unknown, wrong secret, or a session that ended


@dataclass(frozen=True, slots=True)
class SsoConfig:
    org_id: OrgId
    issuer: str
    client_id: str
    client_secret: str
    email_domains: tuple[str, ...]  # empty: any e-mail the provider vouches for
    provision: bool  # create a member of the organisation on a first sign-in
    updated_ms: int


@dataclass(frozen=True, slots=True)
class SigninGrant:
    grant_id: str  # the SHA-256 (hex) of the value handed out
    kind: GrantKind
    expires_ms: int
    org_id: OrgId | None = None
    user_id: UserId | None = None
    nonce: str | None = None
    verifier: str | None = None


class EmailTakenError(CloisonError):
    code = ErrorCode.CONFLICT

    def __init__(self) -> None:
        super().__init__("this e-mail address is already in use")


class SignIns(Protocol):
    async def credentials_by_email(self, email_key: str) -> Credentials | None:
        """The credentials whose lowercase e-mail is ``email_key`` (one unique-index read)."""
        ...

    async def credentials_of(self, user_id: UserId) -> Credentials | None: ...

    async def set_email(
        self, user_id: UserId, email: str, email_key: str, *, now_ms: int, audit: AuditEntry
    ) -> None:
        """Give the user a login e-mail (or change it).

        Raises:
            EmailTakenError: another user has it.
            NotFoundError: no such user.
        """
        ...

    async def set_password(
        self,
        user_id: UserId,
        password_hash: str,
        *,
        now_ms: int,
        expected_hash: str | None,
        keep_session: str | None,
        audit: AuditEntry,
    ) -> list[str] | None:
        """Store a new password hash if the stored one is still ``expected_hash`` (compare and
        swap: two changes at once cannot both pass), and revoke every other live session of
        the user (``keep_session`` stays). Returns the revoked session ids; None when the
        hash changed meanwhile or the user has no credentials."""
        ...

    async def create_member(
        self,
        name: str,
        email: str,
        email_key: str,
        password_hash: str | None,
        *,
        org_id: OrgId,
        now_ms: int,
        actor_id: str,
        kind: UserKind = UserKind.HUMAN,
        identity: tuple[OrgId, str] | None = None,
    ) -> UserRecord:
        """A new user, member of ``org_id``, with its login e-mail and optional password (and,
        with ``identity``, its (organisation, subject) of single sign-on), audited: one
        transaction.

        Raises:
            EmailTakenError: the e-mail is in use.
            NotFoundError: no such organisation.
        """
        ...

    async def create_session(
        self, session: AuthSession, access: TokenRecord, refresh: RefreshRecord
    ) -> None:
        """Store a new session with its first access and refresh tokens, in one transaction."""
        ...

    async def get_session(self, session_id: str) -> AuthSession | None: ...

    async def refresh_session(
        self,
        refresh_id: str,
        secret_hash: bytes,
        *,
        now_ms: int,
        access: TokenRecord,
        refresh: RefreshRecord,
    ) -> tuple[RefreshOutcome, AuthSession | None]:
        """Exchange the refresh token ``refresh_id`` for ``access`` and ``refresh`` (whose
        user and session are filled in here), in one transaction: the token is marked used, so a
        second exchange of it, even at the same instant, finds it used, is ``REUSED`` and
        revokes the session (``EndReason.REUSED``). A wrong secret is ``INVALID`` and changes
        nothing, so a guess cannot end someone's session."""
        ...

    async def list_sessions(self, user_id: UserId, *, now_ms: int, limit: int) -> list[AuthSession]:
        """The user's live sessions, newest first."""
        ...

    async def revoke_session(
        self,
        session_id: str,
        *,
        now_ms: int,
        why: EndReason,
        owner: UserId | None = None,
        audit: AuditEntry | None = None,
    ) -> AuthSession | None:
        """End a live session (``owner``'s only, when given): its live access tokens are
        revoked and a ``session_revoked`` change written. None: no such live session."""
        ...

    async def org_for_email_domain(self, domain: str) -> OrgId | None:
        """The organisation whose ``email_domains`` policy lists ``domain`` (the first by id,
        should several), if any: who self-registration places a new user in."""
        ...

    async def get_sso(self, org_id: OrgId) -> SsoConfig | None: ...

    async def sso_orgs(self) -> list[tuple[OrgId, str]]:
        """(org_id, name) of the organisations, not suspended, that have single sign-on."""
        ...

    async def set_sso(self, config: SsoConfig, *, actor_id: str) -> None:
        """Store the organisation's single sign-on (``org_audit``: ``sso_configured``).

        Raises:
            NotFoundError: no such organisation.
        """
        ...

    async def delete_sso(self, org_id: OrgId, *, now_ms: int, actor_id: str) -> bool: ...

    async def sso_user(self, org_id: OrgId, subject: str) -> UserId | None: ...

    async def link_identity(
        self, org_id: OrgId, subject: str, user_id: UserId, *, now_ms: int
    ) -> bool:
        """Record that ``subject`` of the organisation's provider is ``user_id``; False when
        the subject is linked already."""
        ...

    async def put_grant(self, grant: SigninGrant, *, now_ms: int) -> None:
        """Store a grant; expired grants are dropped in the same transaction."""
        ...

    async def take_grant(
        self, grant_id: str, kind: GrantKind, *, now_ms: int
    ) -> SigninGrant | None:
        """Delete and return the live grant; None if unknown, taken or expired."""
        ...
