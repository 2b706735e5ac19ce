"""Users, tokens, the session change log and the audit log: the SQL both engines share.

``SqlAccounts`` implements these ``Directory`` methods once, in SQL that SQLite and PostgreSQL
both accept (``?`` placeholders, which the PostgreSQL engine's runner renumbers to ``$n``). It
also declares the hooks every shared class of ``storage.sql`` runs on, which an engine
supplies: ``_reading()`` and ``_writing()``, each yielding a ``SqlRunner`` (one read, or one
transaction), ``_query`` (one read), and the class attributes ``_dialect`` and ``_q`` (the
shared statements rendered for it, ``storage.sql.queries``).

Every revocation and every disabling writes its ``session_changes`` rows in the transaction
that makes the change, so a node that reads a change also reads the revoked state, and the admin
command line, which reaches no server, closes live sockets through the store alone. Rows are
numbered in commit order: SQLite has one writer at a time, and PostgreSQL writers first take
the advisory lock ``_CHANGES_LOCK`` (held until commit). A poller that saw seq N therefore saw
every change below N.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import replace
from typing import Any, Protocol

from protocol import OrgId, UserId, UserKind
from storage.base import (
    AuditEntry,
    ChangeKind,
    HasSpheresError,
    NotFoundError,
    SessionChange,
    TokenKind,
    TokenPage,
    TokenRecord,
    UserRecord,
)
from storage.organisations import DEFAULT_ORG, OrgRole
from storage.rows import check_limit
from storage.sql.dialect import Dialect
from storage.sql.queries import Queries

_USER_COLUMNS = "user_id, name, kind, is_admin, created_ms, disabled_ms"
_TOKEN_COLUMNS = (
    "token_id, user_id, secret_hash, created_ms, expires_ms, revoked, kind, issued_by, label, "
    "last_used_ms, session_id"
)
_AUDIT_COLUMNS = "actor, action, user_id, ts_ms, token_id, detail"
_LIVE = "revoked = FALSE AND (expires_ms IS NULL OR expires_ms > CAST(? AS BIGINT))"
_INSERT_AUDIT = f"INSERT INTO audit_log ({_AUDIT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)"
_INSERT_CHANGE = "INSERT INTO session_changes (kind, user_id, token_id, ts_ms) VALUES (?, ?, ?, ?)"
_REVOKE = f"""
    UPDATE tokens SET revoked = TRUE, revoked_ms = CAST(? AS BIGINT)
    WHERE token_id = ? AND {_LIVE}
    RETURNING {_TOKEN_COLUMNS}
"""
_TOKENS_PAGE = f"""
    SELECT {", ".join("t." + c for c in _TOKEN_COLUMNS.split(", "))}, u.name
    FROM tokens AS t LEFT JOIN users AS u ON u.user_id = t.issued_by
    WHERE t.user_id = ? AND t.revoked = FALSE AND t.kind <> 'access'
      AND (t.expires_ms IS NULL OR t.expires_ms > CAST(? AS BIGINT)) {{cursor}}
    ORDER BY t.created_ms DESC, t.token_id DESC LIMIT ?
"""
_AFTER_CURSOR = "AND (t.created_ms < ? OR (t.created_ms = ? AND t.token_id < ?))"


class SqlRunner(Protocol):
    """One open transaction (or one read) of an engine."""

    async def fetch(self, sql: str, *args: Any) -> Sequence[Sequence[Any]]: ...


class SqlAccounts:
    """The user and token part of ``storage.base.Directory``, over the engine's hooks."""

    # Taken before a session change is inserted; None where the engine has one writer.
    _CHANGES_LOCK: str | None = None
    _dialect: Dialect
    _q: Queries

    def _reading(self) -> AbstractAsyncContextManager[SqlRunner]:
        raise NotImplementedError

    def _writing(self) -> AbstractAsyncContextManager[SqlRunner]:
        """A transaction: committed when the block ends, rolled back if it raises."""
        raise NotImplementedError

    async def _query(self, sql: str, *args: Any) -> Sequence[Any]:
        """The rows of one read, ``sql`` rendered for the engine already."""
        raise NotImplementedError

    async def scrub(self) -> None:
        """After a transaction that erased content (``storage.erasure.Erasure.scrub``)."""
        raise NotImplementedError

    # -- users -------------------------------------------------------------------------------

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
        user = UserRecord(UserId("u_" + secrets.token_urlsafe(12)), name, kind, is_admin, now_ms)
        async with self._writing() as db:
            await db.fetch(
                f"INSERT INTO users ({_USER_COLUMNS}) VALUES (?, ?, ?, ?, ?, NULL)",
                user.user_id,
                user.name,
                user.kind.value,
                user.is_admin,
                user.created_ms,
            )
            if org_id is not None:
                # A server administrator manages the organisation they are created in.
                role = OrgRole.MANAGER if is_admin else OrgRole.MEMBER
                joined = await db.fetch(
                    "INSERT INTO org_members (org_id, user_id, role, joined_ms) "
                    "SELECT org_id, ?, ?, ? FROM organisations WHERE org_id = ? RETURNING org_id",
                    user.user_id,
                    role.value,
                    now_ms,
                    org_id,
                )
                if not joined:
                    raise NotFoundError(f"no organisation {org_id}")
            if audit is not None:
                await _audit(db, audit, user.user_id)
            if first_token is not None:
                await insert_token(db, replace(first_token, user_id=user.user_id))
                if token_audit is not None:
                    await _audit(db, token_audit, user.user_id)
        return user

    async def get_user(self, user_id: UserId) -> UserRecord | None:
        async with self._reading() as db:
            rows = await db.fetch(f"SELECT {_USER_COLUMNS} FROM users WHERE user_id = ?", user_id)
        return _user(rows[0]) if rows else None

    async def list_users(self, *, after: UserId | None, limit: int) -> list[UserRecord]:
        check_limit(limit)
        async with self._reading() as db:
            rows = await db.fetch(
                f"SELECT {_USER_COLUMNS} FROM users WHERE user_id > ? ORDER BY user_id LIMIT ?",
                after or "",
                limit,
            )
        return [_user(row) for row in rows]

    async def rename_user(self, user_id: UserId, name: str) -> UserRecord | None:
        async with self._writing() as db:
            rows = await db.fetch(
                f"UPDATE users SET name = ? WHERE user_id = ? RETURNING {_USER_COLUMNS}",
                name,
                user_id,
            )
        return _user(rows[0]) if rows else None

    async def set_user_disabled(
        self, user_id: UserId, disabled: bool, *, now_ms: int, audit: AuditEntry | None = None
    ) -> UserRecord | None:
        async with self._writing() as db:
            # Disabling twice keeps the first time; the change row is written again (harmless).
            rows = await db.fetch(
                f"""
                UPDATE users SET disabled_ms = {"coalesce(disabled_ms, ?)" if disabled else "?"}
                WHERE user_id = ? RETURNING {_USER_COLUMNS}
                """,
                now_ms if disabled else None,
                user_id,
            )
            if not rows:
                return None
            if disabled:
                await self._change(db, ChangeKind.USER_DISABLED, user_id, None, now_ms)
            if audit is not None:
                await _audit(db, audit, user_id)
        return _user(rows[0])

    # -- tokens ------------------------------------------------------------------------------

    async def add_token(
        self,
        token: TokenRecord,
        *,
        audit: AuditEntry | None = None,
        refuse_members: bool = False,
    ) -> None:
        async with self._writing() as db:
            users = await db.fetch("SELECT kind FROM users WHERE user_id = ?", token.user_id)
            if not users:
                raise NotFoundError(f"no user {token.user_id}")
            # Inside the transaction: on SQLite no join can commit in between. On PostgreSQL
            # a join committing at this very moment is not seen; the token is then still in
            # the audit log and in the user's own token list.
            if (
                refuse_members
                and users[0][0] == UserKind.HUMAN
                and await db.fetch("SELECT 1 FROM members WHERE user_id = ? LIMIT 1", token.user_id)
            ):
                raise HasSpheresError(
                    "this user belongs to spheres: only they can create tokens for their "
                    "account (POST /api/v1/me/tokens with one of their own tokens)"
                )
            await insert_token(db, token)
            if audit is not None:
                await _audit(db, audit, token.user_id)

    async def get_token(self, token_id: str) -> TokenRecord | None:
        async with self._reading() as db:
            rows = await db.fetch(
                f"SELECT {_TOKEN_COLUMNS} FROM tokens WHERE token_id = ?", token_id
            )
        return _token(rows[0]) if rows else None

    async def touch_token(self, token_id: str, now_ms: int) -> None:
        async with self._writing() as db:
            await db.fetch(
                "UPDATE tokens SET last_used_ms = ? WHERE token_id = ?", now_ms, token_id
            )

    async def list_tokens(
        self, user_id: UserId, *, now_ms: int, before: tuple[int, str] | None, limit: int
    ) -> TokenPage:
        check_limit(limit)
        args: list[Any] = [user_id, now_ms]
        if before is not None:
            args += [before[0], before[0], before[1]]
        async with self._reading() as db:
            sql = _TOKENS_PAGE.format(cursor=_AFTER_CURSOR if before else "")
            rows = await db.fetch(sql, *args, limit + 1)
        tokens = [_token(row[:11]) for row in rows[:limit]]
        names = {row[7]: row[11] for row in rows[:limit] if row[7] and row[11] is not None}
        last = tokens[-1] if len(rows) > limit else None
        cursor = (last.created_ms, last.token_id) if last is not None else None
        return TokenPage(tokens, names, cursor)

    async def revoke_token(
        self,
        token_id: str,
        *,
        now_ms: int,
        owner: UserId | None = None,
        audit: AuditEntry | None = None,
    ) -> TokenRecord | None:
        async with self._writing() as db:
            if owner is not None:
                mine = await db.fetch(
                    "SELECT 1 FROM tokens WHERE token_id = ? AND user_id = ?", token_id, owner
                )
                if not mine:
                    return None
            rows = await db.fetch(_REVOKE, now_ms, token_id, now_ms)
            if not rows:
                return None
            token = _token(rows[0])
            await self._change(db, ChangeKind.TOKEN_REVOKED, token.user_id, token_id, now_ms)
            if audit is not None:
                await _audit(db, audit, token.user_id)
        return token

    async def revoke_user_tokens(
        self,
        user_id: UserId,
        *,
        now_ms: int,
        keep: str | None = None,
        audit: AuditEntry | None = None,
    ) -> list[str]:
        async with self._writing() as db:
            rows = await db.fetch(
                f"""
                UPDATE tokens SET revoked = TRUE, revoked_ms = CAST(? AS BIGINT)
                WHERE user_id = ? AND token_id <> ? AND {_LIVE}
                RETURNING token_id
                """,
                now_ms,
                user_id,
                keep or "",
                now_ms,
            )
            revoked = sorted(str(row[0]) for row in rows)
            for token_id in revoked:
                await self._change(db, ChangeKind.TOKEN_REVOKED, user_id, token_id, now_ms)
            # Sign-in sessions too, or their refresh tokens would open new ones (but the
            # session of ``keep``, when it is an access token).
            ended = await db.fetch(
                """
                UPDATE auth_sessions SET revoked_ms = ?, revoked_why = 'revoked'
                WHERE user_id = ? AND revoked_ms IS NULL AND session_id NOT IN (
                    SELECT session_id FROM tokens WHERE token_id = ? AND session_id IS NOT NULL
                )
                RETURNING session_id
                """,
                now_ms,
                user_id,
                keep or "",
            )
            for session_id in sorted(str(row[0]) for row in ended):
                await self._change(db, ChangeKind.SESSION_REVOKED, user_id, session_id, now_ms)
            if audit is not None and revoked:
                await _audit(db, audit, user_id)
        return revoked

    # -- the session change log and the audit log --------------------------------------------

    async def latest_session_change(self) -> int:
        async with self._reading() as db:
            rows = await db.fetch("SELECT coalesce(max(seq), 0) FROM session_changes")
        return int(rows[0][0])

    async def session_changes_after(self, seq: int, limit: int) -> list[SessionChange]:
        check_limit(limit)
        async with self._reading() as db:
            rows = await db.fetch(
                "SELECT seq, kind, user_id, token_id, ts_ms, org_id FROM session_changes"
                " WHERE seq > ? ORDER BY seq LIMIT ?",
                seq,
                limit,
            )
        return [
            SessionChange(
                row[0],
                ChangeKind(row[1]),
                UserId(row[2]),
                row[3],
                row[4],
                None if row[5] is None else OrgId(row[5]),
            )
            for row in rows
        ]

    async def list_audit(self, *, before: int | None, limit: int) -> list[AuditEntry]:
        check_limit(limit)
        async with self._reading() as db:
            rows = await db.fetch(
                f"SELECT {_AUDIT_COLUMNS}, seq FROM audit_log WHERE seq < ?"
                " ORDER BY seq DESC LIMIT ?",
                before if before is not None else 2**63 - 1,
                limit,
            )
        return [
            AuditEntry(row[0], row[1], row[2], row[3], row[4], row[5], seq=row[6]) for row in rows
        ]

    async def _change(
        self, db: SqlRunner, kind: ChangeKind, user_id: str, token_id: str | None, now_ms: int
    ) -> None:
        if self._CHANGES_LOCK is not None:
            await db.fetch(self._CHANGES_LOCK)
        await db.fetch(_INSERT_CHANGE, kind.value, user_id, token_id, now_ms)


async def insert_token(db: SqlRunner, token: TokenRecord) -> None:
    await db.fetch(
        f"INSERT INTO tokens ({_TOKEN_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        token.token_id,
        token.user_id,
        token.secret_hash,
        token.created_ms,
        token.expires_ms,
        token.revoked,
        token.kind.value,
        token.issued_by,
        token.label,
        token.last_used_ms,
        token.session_id,
    )


async def _audit(db: SqlRunner, entry: AuditEntry, user_id: str) -> None:
    await db.fetch(
        _INSERT_AUDIT,
        entry.actor,
        entry.action,
        entry.user_id or user_id,
        entry.ts_ms,
        entry.token_id,
        entry.detail,
    )


def _user(row: Sequence[Any]) -> UserRecord:
    user_id, name, kind, is_admin, created_ms, disabled_ms = row
    return UserRecord(
        UserId(user_id), name, UserKind(kind), bool(is_admin), created_ms, disabled_ms
    )


def _token(row: Sequence[Any]) -> TokenRecord:
    token_id, user_id, secret_hash, created_ms, expires_ms, revoked = row[:6]
    kind, issued_by, label, last_used_ms, session_id = row[6:11]
    return TokenRecord(
        token_id,
        UserId(user_id),
        bytes(secret_hash),
        created_ms,
        expires_ms,
        bool(revoked),
        TokenKind(kind),
        issued_by,
        label,
        last_used_ms,
        session_id,
    )
