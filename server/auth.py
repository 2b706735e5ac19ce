"""Bearer tokens: issue, verify, revoke.

A token reads ``clo_<token_id>_<secret>``. The token id is a lookup key; the secret carries
256 random bits and is stored only as its SHA-256 digest, compared in constant time. A fast
hash is right here: the secret is random, not a password, so it cannot be guessed offline.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from protocol import UserId
from storage import Store, TokenRecord, UserRecord

TOKEN_PREFIX = "clo_"


@dataclass(frozen=True, slots=True)
class IssuedToken:
    token_id: str
    token: str  # shown once; only its hash is stored
    expires_ms: int | None


def _digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


async def issue_token(
    store: Store, user_id: UserId, *, now_ms: int, ttl_ms: int | None
) -> IssuedToken:
    token_id = secrets.token_hex(8)
    secret = secrets.token_urlsafe(32)
    expires_ms = None if ttl_ms is None else now_ms + ttl_ms
    await store.add_token(
        TokenRecord(
            token_id=token_id,
            user_id=user_id,
            secret_hash=_digest(secret),
            created_ms=now_ms,
            expires_ms=expires_ms,
        )
    )
    return IssuedToken(token_id, f"{TOKEN_PREFIX}{token_id}_{secret}", expires_ms)


def split_token(token: str) -> tuple[str, str] | None:
    """(token_id, secret), or None when ``token`` is not shaped like one of ours."""
    if not token.startswith(TOKEN_PREFIX):
        return None
    token_id, sep, secret = token[len(TOKEN_PREFIX) :].partition("_")
    if not sep or not token_id or not secret:
        return None
    return token_id, secret


async def authenticate(store: Store, token: str, *, now_ms: int) -> UserRecord | None:
    """The user a token belongs to, or None if it is malformed, unknown, expired or revoked."""
    parts = split_token(token)
    if parts is None:
        return None
    token_id, secret = parts
    record = await store.get_token(token_id)
    # Hash even when the id is unknown so both paths cost the same.
    presented = _digest(secret)
    expected = record.secret_hash if record is not None else bytes(32)
    if not hmac.compare_digest(presented, expected) or record is None:
        return None
    if record.revoked or (record.expires_ms is not None and record.expires_ms <= now_ms):
        return None
    return await store.get_user(record.user_id)
