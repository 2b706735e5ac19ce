"""Sign-in in shared SQL (``storage.signin.SignIns``): credentials, sessions, single sign-on.

Each change is one transaction of ``_writing()`` with its audit entry; a session's end writes
its ``session_changes`` row there too (``SqlAccounts._change``), so every node's watcher closes
its sockets.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import orjson

from protocol import OrgId, UserId, UserKind
from storage.base import AuditEntry, ChangeKind, NotFoundError, TokenRecord, UserRecord
from storage.organisations import OrgAction, OrgAuditEntry, OrgPolicies, OrgRole
from storage.rows import check_limit
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
    SsoConfig,
)
from storage.sql.accounts import SqlAccounts, SqlRunner, insert_token
from storage.sql.organisations import insert_org_audit

_CREDENTIAL_COLUMNS = "user_id, email, password_hash, password_ms, created_ms"
_SESSION_COLUMNS = (
    "session_id, user_id, method, device, address, created_ms, last_used_ms, expires_ms, "
    "revoked_ms, revoked_why"
)
_SSO_COLUMNS = "org_id, issuer, client_id, client_secret, email_domains, provision, updated_ms"
_GRANT_COLUMNS = "grant_id, kind, expires_ms, org_id, user_id, nonce, verifier"
_END_SESSION = f"""
    UPDATE auth_sessions SET revoked_ms = ?, revoked_why = ?
    WHERE session_id = ? AND revoked_ms IS NULL AND expires_ms > CAST(? AS BIGINT)
    RETURNING {_SESSION_COLUMNS}
"""
_REVOKE_ACCESS = """
    UPDATE tokens SET revoked = TRUE, revoked_ms = CAST(? AS BIGINT)
    WHERE session_id = ? AND revoked = FALSE
"""


class SqlSignIns(SqlAccounts):
    if TYPE_CHECKING:  # storage.sql.org_governance's, in the store this class is part of

        async def _enter_global_spheres(
            self, org_id: OrgId, user_id: UserId, actor_id: UserId, now_ms: int
        ) -> None: ...

    # -- credentials -------------------------------------------------------------------------

    async def credentials_by_email(self, email_key: str) -> Credentials | None:
        async with self._reading() as db:
            rows = await db.fetch(
                f"SELECT {_CREDENTIAL_COLUMNS} FROM credentials WHERE email_key = ?", email_key
            )
        return _credentials(rows[0]) if rows else None

    async def credentials_of(self, user_id: UserId) -> Credentials | None:
        async with self._reading() as db:
            rows = await db.fetch(
                f"SELECT {_CREDENTIAL_COLUMNS} FROM credentials WHERE user_id = ?", user_id
            )
        return _credentials(rows[0]) if rows else None

    async def set_email(
        self, user_id: UserId, email: str, email_key: str, *, now_ms: int, audit: AuditEntry
    ) -> None:
        async with self._writing() as db:
            if not await db.fetch("SELECT 1 FROM users WHERE user_id = ?", user_id):
                raise NotFoundError(f"no user {user_id}")
            await _claim_email(db, email_key, user_id)
            await db.fetch(
                "INSERT INTO credentials (user_id, email, email_key, created_ms) "
                "VALUES (?, ?, ?, ?) ON CONFLICT (user_id) "
                "DO UPDATE SET email = excluded.email, email_key = excluded.email_key",
                user_id,
                email,
                email_key,
                now_ms,
            )
            await _server_audit(db, audit, user_id)

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
        async with self._writing() as db:
            # Compare and swap: the hash the caller checked the current password against.
            same = "password_hash IS NULL" if expected_hash is None else "password_hash = ?"
            args: list[Any] = [password_hash, now_ms, user_id]
            if expected_hash is not None:
                args.append(expected_hash)
            updated = await db.fetch(
                f"UPDATE credentials SET password_hash = ?, password_ms = ? "
                f"WHERE user_id = ? AND {same} RETURNING user_id",
                *args,
            )
            if not updated:
                return None
            rows = await db.fetch(
                "SELECT session_id FROM auth_sessions WHERE user_id = ? AND revoked_ms IS NULL "
                "AND expires_ms > CAST(? AS BIGINT) AND session_id <> ?",
                user_id,
                now_ms,
                keep_session or "",
            )
            ended = sorted(str(row[0]) for row in rows)
            for session_id in ended:
                await self._end_session(db, session_id, now_ms, EndReason.PASSWORD_CHANGED)
            await _server_audit(db, audit, user_id)
        return ended

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
        user = UserRecord(UserId(_new_id("u_", 12)), name, kind, False, now_ms)
        async with self._writing() as db:
            if not await db.fetch("SELECT 1 FROM organisations WHERE org_id = ?", org_id):
                raise NotFoundError(f"no organisation {org_id}")
            await _claim_email(db, email_key, None)
            await db.fetch(
                "INSERT INTO users (user_id, name, kind, is_admin, created_ms, disabled_ms) "
                "VALUES (?, ?, ?, ?, ?, NULL)",
                user.user_id,
                user.name,
                user.kind.value,
                False,
                now_ms,
            )
            await db.fetch(
                "INSERT INTO credentials (user_id, email, email_key, password_hash, password_ms, "
                "created_ms) VALUES (?, ?, ?, ?, ?, ?)",
                user.user_id,
                email,
                email_key,
                password_hash,
                now_ms if password_hash is not None else None,
                now_ms,
            )
            await db.fetch(
                "INSERT INTO org_members (org_id, user_id, role, joined_ms) VALUES (?, ?, ?, ?)",
                org_id,
                user.user_id,
                OrgRole.MEMBER.value,
                now_ms,
            )
            if identity is not None:
                await db.fetch(
                    "INSERT INTO sso_identities (org_id, subject, user_id, created_ms) "
                    "VALUES (?, ?, ?, ?)",
                    identity[0],
                    identity[1],
                    user.user_id,
                    now_ms,
                )
            detail = "sso" if identity is not None else "registered"
            entry = OrgAuditEntry(
                org_id, now_ms, actor_id, OrgAction.MEMBER_ADDED, user.user_id, detail
            )
            await insert_org_audit(db, entry)
            await _server_audit(
                db, AuditEntry(actor_id, "user_created", None, now_ms, detail=detail), user.user_id
            )
        # As every new member of an organisation: into its global spheres.
        await self._enter_global_spheres(org_id, user.user_id, user.user_id, now_ms)
        return user

    # -- sessions ----------------------------------------------------------------------------

    async def create_session(
        self, session: AuthSession, access: TokenRecord, refresh: RefreshRecord
    ) -> None:
        async with self._writing() as db:
            await db.fetch(
                f"INSERT INTO auth_sessions ({_SESSION_COLUMNS}) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, NULL, NULL)",
                session.session_id,
                session.user_id,
                session.method.value,
                session.device,
                session.address,
                session.created_ms,
                session.last_used_ms,
                session.expires_ms,
            )
            await insert_token(db, access)
            await _insert_refresh(db, refresh)

    async def get_session(self, session_id: str) -> AuthSession | None:
        async with self._reading() as db:
            rows = await db.fetch(
                f"SELECT {_SESSION_COLUMNS} FROM auth_sessions WHERE session_id = ?", session_id
            )
        return _session(rows[0]) if rows else None

    async def refresh_session(
        self,
        refresh_id: str,
        secret_hash: bytes,
        *,
        now_ms: int,
        access: TokenRecord,
        refresh: RefreshRecord,
    ) -> tuple[RefreshOutcome, AuthSession | None]:
        async with self._writing() as db:
            rows = await db.fetch(
                "SELECT session_id, secret_hash, used_ms FROM refresh_tokens WHERE refresh_id = ?",
                refresh_id,
            )
            if not rows or not hmac.compare_digest(bytes(rows[0][1]), secret_hash):
                return RefreshOutcome.INVALID, None
            session_id, used_ms = str(rows[0][0]), rows[0][2]
            found = await db.fetch(
                f"SELECT {_SESSION_COLUMNS} FROM auth_sessions WHERE session_id = ?", session_id
            )
            session = _session(found[0])
            if not session.live(now_ms):
                return RefreshOutcome.INVALID, session
            if used_ms is not None:
                # Someone holds a refresh token that was exchanged already: one of the two
                # holders is not the user. End the session for both.
                await self._end_session(db, session_id, now_ms, EndReason.REUSED)
                await _server_audit(
                    db,
                    AuditEntry(session.user_id, "refresh_reused", None, now_ms, detail=session_id),
                    session.user_id,
                )
                return RefreshOutcome.REUSED, replace(
                    session, revoked_ms=now_ms, revoked_why=EndReason.REUSED.value
                )
            claimed = await db.fetch(
                "UPDATE refresh_tokens SET used_ms = ? WHERE refresh_id = ? AND used_ms IS NULL "
                "RETURNING refresh_id",
                now_ms,
                refresh_id,
            )
            if not claimed:  # PostgreSQL: another exchange of it committed first
                await self._end_session(db, session_id, now_ms, EndReason.REUSED)
                return RefreshOutcome.REUSED, session
            await db.fetch(
                "UPDATE auth_sessions SET last_used_ms = ? WHERE session_id = ?",
                now_ms,
                session_id,
            )
            user_id = session.user_id
            # An access token never outlives its session.
            expires_ms = min(access.expires_ms or session.expires_ms, session.expires_ms)
            await insert_token(
                db,
                replace(
                    access,
                    user_id=user_id,
                    issued_by=user_id,
                    session_id=session_id,
                    expires_ms=expires_ms,
                ),
            )
            await _insert_refresh(db, replace(refresh, session_id=session_id))
        return RefreshOutcome.ROTATED, replace(session, last_used_ms=now_ms)

    async def list_sessions(self, user_id: UserId, *, now_ms: int, limit: int) -> list[AuthSession]:
        check_limit(limit)
        async with self._reading() as db:
            rows = await db.fetch(
                f"SELECT {_SESSION_COLUMNS} FROM auth_sessions "
                "WHERE user_id = ? AND revoked_ms IS NULL AND expires_ms > CAST(? AS BIGINT) "
                "ORDER BY created_ms DESC, session_id DESC LIMIT ?",
                user_id,
                now_ms,
                limit,
            )
        return [_session(row) for row in rows]

    async def revoke_session(
        self,
        session_id: str,
        *,
        now_ms: int,
        why: EndReason,
        owner: UserId | None = None,
        audit: AuditEntry | None = None,
    ) -> AuthSession | None:
        async with self._writing() as db:
            if owner is not None:
                mine = await db.fetch(
                    "SELECT 1 FROM auth_sessions WHERE session_id = ? AND user_id = ?",
                    session_id,
                    owner,
                )
                if not mine:
                    return None
            session = await self._end_session(db, session_id, now_ms, why)
            if session is not None and audit is not None:
                await _server_audit(db, audit, session.user_id)
        return session

    async def _end_session(
        self, db: SqlRunner, session_id: str, now_ms: int, why: EndReason
    ) -> AuthSession | None:
        rows = await db.fetch(_END_SESSION, now_ms, why.value, session_id, now_ms)
        if not rows:
            return None
        session = _session(rows[0])
        await db.fetch(_REVOKE_ACCESS, now_ms, session_id)
        await self._change(db, ChangeKind.SESSION_REVOKED, session.user_id, session_id, now_ms)
        return session

    # -- single sign-on ----------------------------------------------------------------------

    async def org_for_email_domain(self, domain: str) -> OrgId | None:
        # A domain holds letters, digits, dots and hyphens only: no LIKE wildcard. The LIKE
        # narrows the read; the policies, parsed, decide.
        async with self._reading() as db:
            rows = await db.fetch(
                "SELECT org_id, policies FROM organisations "
                "WHERE suspended_ms IS NULL AND policies LIKE ? ORDER BY org_id",
                f'%"{domain}"%',
            )
        for org_id, policies in rows:
            if domain in OrgPolicies.from_json(policies).email_domains:
                return OrgId(org_id)
        return None

    async def get_sso(self, org_id: OrgId) -> SsoConfig | None:
        async with self._reading() as db:
            rows = await db.fetch(
                f"SELECT {_SSO_COLUMNS} FROM sso_configs WHERE org_id = ?", org_id
            )
        return _sso(rows[0]) if rows else None

    async def sso_orgs(self) -> list[tuple[OrgId, str]]:
        async with self._reading() as db:
            rows = await db.fetch(
                "SELECT o.org_id, o.name FROM sso_configs AS s "
                "JOIN organisations AS o ON o.org_id = s.org_id "
                "WHERE o.suspended_ms IS NULL ORDER BY o.name, o.org_id LIMIT 100"
            )
        return [(OrgId(row[0]), str(row[1])) for row in rows]

    async def set_sso(self, config: SsoConfig, *, actor_id: str) -> None:
        async with self._writing() as db:
            if not await db.fetch("SELECT 1 FROM organisations WHERE org_id = ?", config.org_id):
                raise NotFoundError(f"no organisation {config.org_id}")
            await db.fetch(
                f"INSERT INTO sso_configs ({_SSO_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (org_id) DO UPDATE SET issuer = excluded.issuer, "
                "client_id = excluded.client_id, client_secret = excluded.client_secret, "
                "email_domains = excluded.email_domains, provision = excluded.provision, "
                "updated_ms = excluded.updated_ms",
                config.org_id,
                config.issuer,
                config.client_id,
                config.client_secret,
                orjson.dumps(list(config.email_domains)).decode(),
                config.provision,
                config.updated_ms,
            )
            entry = OrgAuditEntry(
                config.org_id, config.updated_ms, actor_id, "sso_configured", None, config.issuer
            )
            await insert_org_audit(db, entry)

    async def delete_sso(self, org_id: OrgId, *, now_ms: int, actor_id: str) -> bool:
        async with self._writing() as db:
            rows = await db.fetch(
                "DELETE FROM sso_configs WHERE org_id = ? RETURNING org_id", org_id
            )
            if rows:
                await insert_org_audit(db, OrgAuditEntry(org_id, now_ms, actor_id, "sso_removed"))
        return bool(rows)

    async def sso_user(self, org_id: OrgId, subject: str) -> UserId | None:
        async with self._reading() as db:
            rows = await db.fetch(
                "SELECT user_id FROM sso_identities WHERE org_id = ? AND subject = ?",
                org_id,
                subject,
            )
        return UserId(rows[0][0]) if rows else None

    async def link_identity(
        self, org_id: OrgId, subject: str, user_id: UserId, *, now_ms: int
    ) -> bool:
        async with self._writing() as db:
            rows = await db.fetch(
                "INSERT INTO sso_identities (org_id, subject, user_id, created_ms) "
                "VALUES (?, ?, ?, ?) ON CONFLICT (org_id, subject) DO NOTHING RETURNING user_id",
                org_id,
                subject,
                user_id,
                now_ms,
            )
        return bool(rows)

    # -- grants ------------------------------------------------------------------------------

    async def put_grant(self, grant: SigninGrant, *, now_ms: int) -> None:
        async with self._writing() as db:
            await db.fetch("DELETE FROM signin_grants WHERE expires_ms <= ?", now_ms)
            await db.fetch(
                f"INSERT INTO signin_grants ({_GRANT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
                grant.grant_id,
                grant.kind.value,
                grant.expires_ms,
                grant.org_id,
                grant.user_id,
                grant.nonce,
                grant.verifier,
            )

    async def take_grant(
        self, grant_id: str, kind: GrantKind, *, now_ms: int
    ) -> SigninGrant | None:
        async with self._writing() as db:
            rows = await db.fetch(
                f"DELETE FROM signin_grants WHERE grant_id = ? AND kind = ? "
                f"RETURNING {_GRANT_COLUMNS}",
                grant_id,
                kind.value,
            )
        if not rows:
            return None
        grant = _grant(rows[0])
        return grant if grant.expires_ms > now_ms else None


async def _claim_email(db: SqlRunner, email_key: str, user_id: UserId | None) -> None:
    """Refuse an e-mail another user has (the unique index would too, less politely)."""
    rows = await db.fetch("SELECT user_id FROM credentials WHERE email_key = ?", email_key)
    if rows and rows[0][0] != user_id:
        raise EmailTakenError()


async def _insert_refresh(db: SqlRunner, refresh: RefreshRecord) -> None:
    await db.fetch(
        "INSERT INTO refresh_tokens (refresh_id, session_id, secret_hash, created_ms, used_ms) "
        "VALUES (?, ?, ?, ?, NULL)",
        refresh.refresh_id,
        refresh.session_id,
        refresh.secret_hash,
        refresh.created_ms,
    )


async def _server_audit(db: SqlRunner, entry: AuditEntry, user_id: str) -> None:
    await db.fetch(
        "INSERT INTO audit_log (actor, action, user_id, ts_ms, token_id, detail) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        entry.actor,
        entry.action,
        entry.user_id or user_id,
        entry.ts_ms,
        entry.token_id,
        entry.detail,
    )


def _new_id(prefix: str, size: int) -> str:
    return prefix + secrets.token_urlsafe(size)


def _credentials(row: Sequence[Any]) -> Credentials:
    user_id, email, password_hash, password_ms, created_ms = row
    return Credentials(UserId(user_id), email, password_hash, password_ms, created_ms)


def _session(row: Sequence[Any]) -> AuthSession:
    session_id, user_id, method, device, address, created_ms, last_used, expires = row[:8]
    return AuthSession(
        session_id,
        UserId(user_id),
        SignInMethod(method),
        device,
        address,
        created_ms,
        last_used,
        expires,
        row[8],
        row[9],
    )


def _sso(row: Sequence[Any]) -> SsoConfig:
    org_id, issuer, client_id, client_secret, domains, provision, updated_ms = row
    return SsoConfig(
        OrgId(org_id),
        issuer,
        client_id,
        client_secret,
        tuple(orjson.loads(domains)),
        bool(provision),
        updated_ms,
    )


def _grant(row: Sequence[Any]) -> SigninGrant:
    grant_id, kind, expires_ms, org_id, user_id, nonce, verifier = row
    return SigninGrant(
        grant_id,
        GrantKind(kind),
        expires_ms,
        OrgId(org_id) if org_id is not None else None,
        UserId(user_id) if user_id is not None else None,
        nonce,
        verifier,
    )
