"""Accounts: the one code path for tokens, disabling and profiles, for HTTP and the CLI alike.

The rules on credentials (docs/operations.md, "Users and tokens"):

- a user may issue, list and revoke their own tokens, and close all their sessions;
- someone else (a server administrator over HTTP, the operator with ``cloison``) may create a
  user with its first token, and issue tokens for bots and for humans who belong to no sphere
  yet (enrolment). Each such credential is written to the audit log with who issued it, for
  whom and when, and the user's own token list shows its issuer;
- a token for a human who belongs to a sphere is refused to everyone but that human: an
  administrator gets no silent way into a private sphere.

Every revocation and disabling goes through the store, which logs a session change in the same
transaction; every node's ``SessionWatcher`` then closes the sockets concerned. When a node
makes the change itself (an HTTP request), it also closes its own sockets at once.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from typing import Any

from protocol import CloisonError, ErrorCode, OrgId, ProtocolViolation, UserId, UserKind
from server.auth import IssuedToken, Principal, issue_audit, issue_token, new_token
from server.config import Config
from server.sessions.registry import DISABLED, REVOKED, SessionRegistry
from storage import (
    DEFAULT_ORG,
    OPERATOR,
    AuditEntry,
    Store,
    TokenKind,
    TokenPage,
    TokenRecord,
    UserRecord,
)

MAX_NAME_CHARS = 100
MAX_LABEL_CHARS = 100
MAX_TTL_DAYS = 3650
# Why: listing replies stay small and bounded whatever an account holds.
MAX_PAGE = 100
DEFAULT_PAGE = 50
DAY_MS = 86_400_000
# Characters that would let a name rewrite what surrounds it on screen (bidi overrides).
_BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


@dataclass(frozen=True, slots=True)
class Actor:
    """Who makes a change: a user (over HTTP) or the operator (the ``cloison`` command)."""

    actor_id: str  # a user id, or storage.OPERATOR
    is_admin: bool  # a server administrator, or the operator

    @classmethod
    def of(cls, user: UserRecord) -> Actor:
        return cls(user.user_id, user.is_admin)


# The ``cloison`` command: whoever can run it with the store's URL administers the server.
OPERATOR_ACTOR = Actor(OPERATOR, is_admin=True)


def valid_name(value: Any, field: str = "name", max_chars: int = MAX_NAME_CHARS) -> str:
    """A display name or label: trimmed, 1..max_chars characters, no control characters.

    Raises:
        ProtocolViolation: anything else.
    """
    if not isinstance(value, str):
        raise ProtocolViolation(f"{field}: expected a string")
    name = value.strip()
    if not 0 < len(name) <= max_chars:
        raise ProtocolViolation(f"{field}: 1 to {max_chars} characters (spaces trimmed)")
    for char in name:
        if unicodedata.category(char) in ("Cc", "Cs", "Zl", "Zp") or char in _BIDI_CONTROLS:
            raise ProtocolViolation(f"{field}: no control characters")
    return name


class Accounts:
    def __init__(
        self, store: Store, config: Config, registry: SessionRegistry | None = None
    ) -> None:
        """``registry``: this node's sessions, closed at once on a change (None for the CLI)."""
        self._store = store
        self._config = config
        self._registry = registry

    @property
    def store(self) -> Store:
        return self._store

    def ttl_ms(self, kind: TokenKind, ttl_days: int | None) -> int | None:
        """The lifetime of a new token: ``ttl_days`` (0: none) or the kind's default."""
        if ttl_days is None:
            ttl_days = (
                self._config.session_ttl_days
                if kind is TokenKind.SESSION
                else self._config.token_ttl_days
            )
        if isinstance(ttl_days, bool) or not isinstance(ttl_days, int):
            raise ProtocolViolation("ttl_days: an integer")
        if not 0 <= ttl_days <= MAX_TTL_DAYS:
            raise ProtocolViolation(f"ttl_days: from 0 (no expiry) to {MAX_TTL_DAYS}")
        return ttl_days * DAY_MS if ttl_days else None

    # -- issuing -----------------------------------------------------------------------------

    async def enrol(
        self,
        actor: Actor,
        name: Any,
        kind: UserKind,
        *,
        is_admin: bool,
        ttl_days: int | None,
        now_ms: int,
        org_id: OrgId | None = DEFAULT_ORG,
    ) -> tuple[UserRecord, IssuedToken]:
        """Create a user in ``org_id`` (None: in none) and its first token (audited: issued by
        ``actor``)."""
        _require_admin(actor)
        token_kind = TokenKind.API if kind is UserKind.BOT else TokenKind.SESSION
        ttl_ms = self.ttl_ms(token_kind, ttl_days)
        record, issued = new_token(
            UserId(""), now_ms=now_ms, ttl_ms=ttl_ms, kind=token_kind, issued_by=actor.actor_id
        )
        user = await self._store.create_user(
            valid_name(name),
            kind,
            is_admin=is_admin,
            now_ms=now_ms,
            audit=AuditEntry(actor.actor_id, "user_created", None, now_ms, detail=kind.value),
            first_token=record,
            token_audit=issue_audit(record),
            org_id=org_id,
        )
        return user, issued

    async def issue_for(
        self,
        actor: Actor,
        user_id: UserId,
        *,
        kind: TokenKind | None,
        ttl_days: int | None,
        label: str | None,
        now_ms: int,
    ) -> IssuedToken:
        """A token for another user: bots, and humans in no sphere yet; audited.

        Raises:
            CloisonError: not_found (no such user), forbidden (not an administrator, a
                disabled user, or a human who belongs to a sphere).
        """
        _require_admin(actor)
        user = await self._store.get_user(user_id)
        if user is None:
            raise CloisonError("user not found", code=ErrorCode.NOT_FOUND)
        if user.disabled:
            raise CloisonError("the user is disabled; enable it first", code=ErrorCode.FORBIDDEN)
        if kind is None:
            kind = TokenKind.API if user.kind is UserKind.BOT else TokenKind.SESSION
        return await issue_token(
            self._store,
            user_id,
            now_ms=now_ms,
            ttl_ms=self.ttl_ms(kind, ttl_days),
            kind=kind,
            issued_by=actor.actor_id,
            label=label,
            audited=True,
            refuse_members=True,
        )

    async def issue_own(
        self,
        principal: Principal,
        *,
        kind: TokenKind,
        ttl_days: int | None,
        label: str | None,
        revoke_current: bool,
        now_ms: int,
    ) -> IssuedToken:
        """A new token of the caller's own; with ``revoke_current``, a rotation."""
        user_id = principal.user.user_id
        issued = await issue_token(
            self._store,
            user_id,
            now_ms=now_ms,
            ttl_ms=self.ttl_ms(kind, ttl_days),
            kind=kind,
            issued_by=user_id,
            label=label,
        )
        if revoke_current:
            await self.revoke(
                Actor.of(principal.user), principal.token.token_id, owner=user_id, now_ms=now_ms
            )
        return issued

    # -- listing -----------------------------------------------------------------------------

    async def tokens(
        self, actor: Actor, user_id: UserId, *, cursor: str | None, limit: int, now_ms: int
    ) -> TokenPage:
        """A page of the user's live tokens: one's own, or anyone's for administrators."""
        if user_id != actor.actor_id:
            _require_admin(actor)
        before = None
        if cursor is not None:
            created, sep, token_id = cursor.partition(".")
            if not sep or not created.isdigit() or not token_id:
                raise ProtocolViolation("cursor: as returned in next_cursor")
            before = (int(created), token_id)
        return await self._store.list_tokens(
            user_id, now_ms=now_ms, before=before, limit=page_limit(limit)
        )

    async def users(self, actor: Actor, *, after: str | None, limit: int) -> list[UserRecord]:
        _require_admin(actor)
        return await self._store.list_users(
            after=UserId(after) if after else None, limit=page_limit(limit)
        )

    async def audit(self, actor: Actor, *, before: int | None, limit: int) -> list[AuditEntry]:
        _require_admin(actor)
        return await self._store.list_audit(before=before, limit=page_limit(limit))

    # -- revoking and disabling --------------------------------------------------------------

    async def revoke(
        self, actor: Actor, token_id: str, *, owner: UserId | None, now_ms: int
    ) -> TokenRecord:
        """Revoke a token: ``owner``'s own, or any (administrators, with ``owner`` None).

        Raises:
            CloisonError: not_found (no such live token, or not the owner's), forbidden.
        """
        if owner is None:
            _require_admin(actor)
        audit = None
        if owner is None or owner != actor.actor_id:
            audit = AuditEntry(actor.actor_id, "token_revoked", None, now_ms, token_id)
        token = await self._store.revoke_token(token_id, now_ms=now_ms, owner=owner, audit=audit)
        if token is None:
            raise CloisonError("token not found", code=ErrorCode.NOT_FOUND)
        if self._registry is not None:
            self._registry.end_token(token_id, REVOKED)
        return token

    async def revoke_all(
        self, actor: Actor, user_id: UserId, *, keep: str | None, now_ms: int
    ) -> list[str]:
        """Close all of a user's sessions: revoke every live token but ``keep``."""
        if user_id != actor.actor_id:
            _require_admin(actor)
            if await self._store.get_user(user_id) is None:
                raise CloisonError("user not found", code=ErrorCode.NOT_FOUND)
        audit = None
        if user_id != actor.actor_id:
            audit = AuditEntry(actor.actor_id, "tokens_revoked", None, now_ms)
        revoked = await self._store.revoke_user_tokens(
            user_id, now_ms=now_ms, keep=keep, audit=audit
        )
        if self._registry is not None:
            for token_id in revoked:
                self._registry.end_token(token_id, REVOKED)
        return revoked

    async def set_disabled(
        self, actor: Actor, user_id: UserId, disabled: bool, *, now_ms: int
    ) -> UserRecord:
        """Disable (its sockets close everywhere, its tokens stop working) or enable a user."""
        _require_admin(actor)
        if disabled and user_id == actor.actor_id:
            raise CloisonError("you cannot disable yourself", code=ErrorCode.CONFLICT)
        if not disabled and await self._store.get_account_deletion(user_id) is not None:
            raise CloisonError("this account is deleted, or being deleted", code=ErrorCode.CONFLICT)
        action = "user_disabled" if disabled else "user_enabled"
        user = await self._store.set_user_disabled(
            user_id, disabled, now_ms=now_ms, audit=AuditEntry(actor.actor_id, action, None, now_ms)
        )
        if user is None:
            raise CloisonError("user not found", code=ErrorCode.NOT_FOUND)
        if disabled and self._registry is not None:
            self._registry.end_user(user_id, DISABLED)
        return user

    async def rename(self, user_id: UserId, name: Any) -> UserRecord:
        user = await self._store.rename_user(user_id, valid_name(name))
        if user is None:
            raise CloisonError("user not found", code=ErrorCode.NOT_FOUND)
        return user


def page_limit(limit: Any) -> int:
    if isinstance(limit, bool) or not isinstance(limit, int) or not 0 < limit <= MAX_PAGE:
        raise ProtocolViolation(f"limit: an integer from 1 to {MAX_PAGE}")
    return limit


def _require_admin(actor: Actor) -> None:
    if not actor.is_admin:
        raise CloisonError("server administrators only", code=ErrorCode.FORBIDDEN)


def token_json(token: TokenRecord, page: TokenPage, current: str | None) -> dict[str, Any]:
    return {
        "token_id": token.token_id,
        "kind": token.kind.value,
        "label": token.label,
        "created_ms": token.created_ms,
        "expires_ms": token.expires_ms,
        "last_used_ms": token.last_used_ms,
        "issued_by": token.issued_by,
        "issued_by_name": page.issuer_names.get(token.issued_by or ""),
        "current": token.token_id == current,
    }


def user_json(user: UserRecord) -> dict[str, Any]:
    return {
        "user_id": user.user_id,
        "name": user.name,
        "kind": user.kind.value,
        "is_admin": user.is_admin,
        "disabled": user.disabled,
    }
