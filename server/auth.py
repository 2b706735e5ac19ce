"""Bearer tokens: issue and verify.

A token reads ``clo_<token_id>_<secret>``. The token id is a lookup key; the secret carries
256 random bits and is stored only as its SHA-256 digest, compared in constant time. A fast
hash is right here: the secret is random, not a password, so it cannot be guessed offline.

Who may issue which token, and revocation, live in ``server.sessions.accounts``.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from dataclasses import dataclass

from protocol import UserId
from storage import (
    TOUCH_INTERVAL_MS,
    AuditEntry,
    Store,
    StoreError,
    TokenKind,
    TokenRecord,
    UserRecord,
)

logger = logging.getLogger(__name__)

TOKEN_PREFIX = "clo_"
# Close reasons of a refused sign-in (as server.sessions.registry ends live sessions).
DISABLED = "user disabled"
SUSPENDED = "organisation suspended"


@dataclass(frozen=True, slots=True)
class IssuedToken:
    token_id: str
    token: str  # shown once; only its hash is stored
    kind: TokenKind
    expires_ms: int | None


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a request or connection acts as, and with which token."""

    user: UserRecord
    token: TokenRecord


def _digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


def new_token(
    user_id: UserId,
    *,
    now_ms: int,
    ttl_ms: int | None,
    kind: TokenKind = TokenKind.SESSION,
    issued_by: str | None = None,
    label: str | None = None,
) -> tuple[TokenRecord, IssuedToken]:
    """A fresh token: the record to store, and the token to show once."""
    token_id = secrets.token_hex(8)
    secret = secrets.token_urlsafe(32)
    expires_ms = None if ttl_ms is None else now_ms + ttl_ms
    record = TokenRecord(
        token_id=token_id,
        user_id=user_id,
        secret_hash=_digest(secret),
        created_ms=now_ms,
        expires_ms=expires_ms,
        kind=kind,
        issued_by=issued_by,
        label=label,
    )
    return record, IssuedToken(token_id, f"{TOKEN_PREFIX}{token_id}_{secret}", kind, expires_ms)


def issue_audit(record: TokenRecord) -> AuditEntry:
    """The audit entry of a token issued by someone other than its user."""
    assert record.issued_by is not None
    return AuditEntry(
        record.issued_by,
        "token_issued",
        None,
        record.created_ms,
        record.token_id,
        record.kind.value,
    )


async def issue_token(
    store: Store,
    user_id: UserId,
    *,
    now_ms: int,
    ttl_ms: int | None,
    kind: TokenKind = TokenKind.SESSION,
    issued_by: str | None = None,
    label: str | None = None,
    audited: bool = False,
    refuse_members: bool = False,
) -> IssuedToken:
    """Store a new token; ``audited`` records it (issued by ``issued_by``) in the audit log.

    Raises:
        NotFoundError: unknown user.
        HasSpheresError: ``refuse_members`` and the user is a human member of a sphere.
    """
    record, issued = new_token(
        user_id, now_ms=now_ms, ttl_ms=ttl_ms, kind=kind, issued_by=issued_by, label=label
    )
    audit = issue_audit(record) if audited else None
    await store.add_token(record, audit=audit, refuse_members=refuse_members)
    return issued


def split_token(token: str) -> tuple[str, str] | None:
    """(token_id, secret), or None when ``token`` is not shaped like one of ours."""
    if not token.startswith(TOKEN_PREFIX):
        return None
    token_id, sep, secret = token[len(TOKEN_PREFIX) :].partition("_")
    if not sep or not token_id or not secret:
        return None
    return token_id, secret


async def verify_token(
    store: Store, token_id: str, secret: str, *, now_ms: int
) -> TokenRecord | None:
    """The live token with this id and secret, or None (unknown, wrong, expired or revoked)."""
    record = await store.get_token(token_id)
    # Hash even when the id is unknown so both paths cost the same.
    presented = _digest(secret)
    expected = record.secret_hash if record is not None else bytes(32)
    if not hmac.compare_digest(presented, expected) or record is None:
        return None
    return record if record.live(now_ms) else None


async def active_user(store: Store, user_id: UserId) -> UserRecord | None:
    """The user, or None if there is none, it is disabled, or every organisation it belongs
    to is suspended (``refusal`` says which)."""
    user = await store.get_user(user_id)
    if user is None or user.disabled or await suspended_everywhere(store, user):
        return None
    return user


async def suspended_everywhere(store: Store, user: UserRecord) -> bool:
    """Whether every organisation of ``user`` is suspended: they cannot sign in. A server
    administrator still can (they resume organisations), and so can a user of no organisation
    (an account of the server itself, a bot created outside any)."""
    if user.is_admin:
        return False
    orgs = await store.user_orgs(user.user_id)
    return bool(orgs) and all(membership.org.suspended for membership in orgs)


async def refusal(store: Store, user_id: UserId) -> str:
    """Why ``active_user`` refused ``user_id`` (a close reason, docs/protocol.md section 16)."""
    user = await store.get_user(user_id)
    if user is not None and not user.disabled:
        return SUSPENDED
    return DISABLED


async def touch(store: Store, token: TokenRecord, *, now_ms: int) -> None:
    """Record the token's use, at most once per TOUCH_INTERVAL_MS; a failure only logs."""
    if token.last_used_ms is not None and now_ms - token.last_used_ms < TOUCH_INTERVAL_MS:
        return
    try:
        await store.touch_token(token.token_id, now_ms)
    except StoreError:
        logger.warning("could not record the use of a token")


async def authenticate(store: Store, token: str, *, now_ms: int) -> Principal | None:
    """Who a bearer token acts as, for one request.

    None if it is malformed, unknown, expired, revoked or belongs to a disabled user. A
    WebSocket checks the same in steps, registering itself in between (``server.gateway``).
    """
    parts = split_token(token)
    if parts is None:
        return None
    record = await verify_token(store, *parts, now_ms=now_ms)
    if record is None:
        return None
    user = await active_user(store, record.user_id)
    if user is None:
        return None
    await touch(store, record, now_ms=now_ms)
    return Principal(user, record)
