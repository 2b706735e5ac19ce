"""Sign-in sessions: a short-lived access token and a rotating refresh token.

A sign-in (password or single sign-on) opens a session: an access token (``clo_...``, kind
``access``, ``--access-ttl-s``, 15 minutes by default), accepted wherever a bearer token is,
and a refresh token (``clr_<refresh_id>_<secret>``), good until the session ends
(``--refresh-ttl-days`` after sign-in). ``POST /api/v1/auth/refresh`` exchanges the refresh
token for a new pair; the old refresh token is then used up, and presenting it again revokes
the whole session (reuse detection: one of its two holders is not the user).

A WebSocket opened with an access token belongs to the session, not to the token: it stays
open when that token expires, and closes (4500 ``session ended``) when the session is revoked
or reaches its end. Revocation goes through the store's ``session_changes``, so every node's
``SessionWatcher`` closes the session's sockets.
"""

from __future__ import annotations

import hashlib
import ipaddress
import secrets
from dataclasses import dataclass, replace
from typing import Any

from protocol import CloisonError, ErrorCode, UserId
from server.auth import active_user, new_token
from server.config import Config
from server.sessions.registry import SESSION_ENDED, SessionRegistry
from storage import (
    AuditEntry,
    AuthSession,
    EndReason,
    RefreshOutcome,
    RefreshRecord,
    SignInMethod,
    Store,
    TokenKind,
    TokenRecord,
    UserRecord,
)

REFRESH_PREFIX = "clr_"
DAY_MS = 86_400_000
# Why: enough to tell two browsers apart in the session list, not a fingerprint.
MAX_DEVICE_CHARS = 200
MAX_SESSIONS_LISTED = 100


@dataclass(frozen=True, slots=True)
class SessionTokens:
    """What a sign-in or a refresh answers, once."""

    session_id: str
    user_id: UserId
    access_token: str
    refresh_token: str
    access_expires_ms: int
    refresh_expires_ms: int

    def json(self) -> dict[str, Any]:
        return {
            "session_id": self.session_id,
            "user_id": self.user_id,
            "access_token": self.access_token,
            "refresh_token": self.refresh_token,
            "access_expires_ms": self.access_expires_ms,
            "refresh_expires_ms": self.refresh_expires_ms,
        }


def truncated_address(address: str | None) -> str | None:
    """The client address cut to its network (IPv4 /24, IPv6 /48): enough for a person to
    recognise "my office", too little to point at a household."""
    if not address:
        return None
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return None
    prefix = 24 if ip.version == 4 else 48
    return str(ipaddress.ip_network(f"{ip}/{prefix}", strict=False))


def device_label(user_agent: str | None) -> str | None:
    if not user_agent:
        return None
    label = "".join(c for c in user_agent if c.isprintable())[:MAX_DEVICE_CHARS].strip()
    return label or None


def _digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


def _split_refresh(token: Any) -> tuple[str, str] | None:
    if not isinstance(token, str) or not token.startswith(REFRESH_PREFIX):
        return None
    refresh_id, sep, secret = token[len(REFRESH_PREFIX) :].partition("_")
    if not sep or not refresh_id or not secret or len(token) > 200:
        return None
    return refresh_id, secret


def _new_refresh(session_id: str, now_ms: int) -> tuple[RefreshRecord, str]:
    refresh_id = secrets.token_hex(8)
    secret = secrets.token_urlsafe(32)
    record = RefreshRecord(refresh_id, session_id, _digest(secret), now_ms)
    return record, f"{REFRESH_PREFIX}{refresh_id}_{secret}"


INVALID_REFRESH = "invalid, used or expired refresh token: sign in again"


class Sessions:
    def __init__(
        self, store: Store, config: Config, registry: SessionRegistry | None = None
    ) -> None:
        """``registry``: this node's sockets, closed at once on a revocation made here."""
        self._store = store
        self._access_ms = config.access_ttl_s * 1000
        self._refresh_ms = config.refresh_ttl_days * DAY_MS
        self._registry = registry

    async def open(
        self,
        user: UserRecord,
        method: SignInMethod,
        *,
        device: str | None,
        address: str | None,
        now_ms: int,
    ) -> SessionTokens:
        session_id = "s_" + secrets.token_urlsafe(12)
        session = AuthSession(
            session_id,
            user.user_id,
            method,
            device_label(device),
            truncated_address(address),
            now_ms,
            now_ms,
            now_ms + self._refresh_ms,
        )
        access, issued = self._access(user.user_id, session_id, now_ms)
        refresh, refresh_token = _new_refresh(session_id, now_ms)
        await self._store.create_session(session, access, refresh)
        return SessionTokens(
            session_id,
            user.user_id,
            issued,
            refresh_token,
            access.expires_ms or 0,
            session.expires_ms,
        )

    async def refresh(self, token: Any, *, now_ms: int) -> SessionTokens:
        """A new pair for a refresh token, which is used up.

        Raises:
            CloisonError: unauthorized (unknown, used, expired, its session or user ended);
                a used token also revokes its session.
        """
        parts = _split_refresh(token)
        # Hash whatever was presented, so a malformed token costs what a wrong one does.
        presented = _digest(parts[1] if parts else "")
        if parts is None:
            raise CloisonError(INVALID_REFRESH, code=ErrorCode.UNAUTHORIZED)
        session_id = "s_"  # filled in by the store, which knows the session of the token
        access, issued = self._access(UserId(""), session_id, now_ms)
        refresh, refresh_token = _new_refresh(session_id, now_ms)
        outcome, session = await self._store.refresh_session(
            parts[0], presented, now_ms=now_ms, access=access, refresh=refresh
        )
        if session is not None:
            session_id = session.session_id
        if outcome is RefreshOutcome.REUSED:
            self._end_local(session_id)
        if outcome is not RefreshOutcome.ROTATED or session is None:
            raise CloisonError(INVALID_REFRESH, code=ErrorCode.UNAUTHORIZED)
        if await active_user(self._store, session.user_id) is None:
            await self.revoke(session.user_id, session_id, why=EndReason.REVOKED, now_ms=now_ms)
            raise CloisonError(INVALID_REFRESH, code=ErrorCode.UNAUTHORIZED)
        return SessionTokens(
            session_id,
            session.user_id,
            issued,
            refresh_token,
            min(access.expires_ms or 0, session.expires_ms),
            session.expires_ms,
        )

    async def of_user(self, user_id: UserId, *, now_ms: int) -> list[AuthSession]:
        return await self._store.list_sessions(user_id, now_ms=now_ms, limit=MAX_SESSIONS_LISTED)

    async def revoke(
        self,
        owner: UserId | None,
        session_id: str,
        *,
        why: EndReason,
        now_ms: int,
        audit: AuditEntry | None = None,
    ) -> AuthSession:
        """End a session: ``owner``'s own, or any (``owner`` None: administrators).

        Raises:
            CloisonError: not_found (no such live session, or not the owner's).
        """
        session = await self._store.revoke_session(
            session_id, now_ms=now_ms, why=why, owner=owner, audit=audit
        )
        if session is None:
            raise CloisonError("session not found", code=ErrorCode.NOT_FOUND)
        self._end_local(session_id)
        return session

    def end_local(self, session_ids: list[str]) -> None:
        for session_id in session_ids:
            self._end_local(session_id)

    def _end_local(self, session_id: str) -> None:
        if self._registry is not None:
            self._registry.end_session(session_id, SESSION_ENDED)

    def _access(self, user_id: UserId, session_id: str, now_ms: int) -> tuple[TokenRecord, str]:
        record, issued = new_token(
            user_id,
            now_ms=now_ms,
            ttl_ms=self._access_ms,
            kind=TokenKind.ACCESS,
            issued_by=user_id,
        )
        return replace(record, session_id=session_id), issued.token
