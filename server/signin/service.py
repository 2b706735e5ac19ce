"""Password sign-in, self-registration and setting passwords: ``SignIn``.

Sign-in answers the same ``unauthorized`` for an unknown e-mail, a wrong password, an account
without a password and a disabled user, after the same work: one argon2id verification
(against a dummy hash when there is no account). Attempts are counted per client address, then
per e-mail tried (known or not), before any hashing, so a refused attempt costs the server
almost nothing.

Self-registration is open only to e-mail domains an organisation lists in its
``email_domains`` policy; the new user becomes a member of that organisation.
"""

from __future__ import annotations

from typing import Any

from protocol import CloisonError, ErrorCode, OrgId, UserId
from server.auth import Principal, active_user
from server.sessions.accounts import valid_name
from server.signin.emails import email_domain, email_key, valid_email
from server.signin.limits import SignInLimits
from server.signin.passwords import Passwords, presented, valid_password
from server.signin.sessions import Sessions, SessionTokens
from storage import (
    AuditEntry,
    EndReason,
    OrgRecord,
    SignInMethod,
    Store,
    UserRecord,
)

WRONG_CREDENTIALS = "wrong e-mail or password"
NO_REGISTRATION = "self-registration is not open to this e-mail domain"


class SignIn:
    def __init__(
        self,
        store: Store,
        sessions: Sessions,
        passwords: Passwords,
        limits: SignInLimits,
    ) -> None:
        self._store = store
        self._sessions = sessions
        self._passwords = passwords
        self._limits = limits

    @property
    def sessions(self) -> Sessions:
        return self._sessions

    async def password(
        self,
        email: Any,
        password: Any,
        *,
        device: str | None,
        address: str | None,
        now_ms: int,
    ) -> SessionTokens:
        """Sign in with an e-mail and a password.

        Raises:
            RateLimitedError: too many attempts from this address or for this account.
            CloisonError: unauthorized (the same answer whatever was wrong), bad_frame.
        """
        if not isinstance(email, str) or len(email) > 254:
            raise CloisonError(WRONG_CREDENTIALS, code=ErrorCode.UNAUTHORIZED)
        secret = presented(password)
        await self._limits.address(address or "")
        key = email_key(email.strip())
        await self._limits.account(key)
        credentials = await self._store.credentials_by_email(key)
        stored = credentials.password_hash if credentials is not None else None
        if not await self._passwords.verify(stored, secret) or credentials is None:
            raise CloisonError(WRONG_CREDENTIALS, code=ErrorCode.UNAUTHORIZED)
        user = await active_user(self._store, credentials.user_id)
        if user is None:
            raise CloisonError(WRONG_CREDENTIALS, code=ErrorCode.UNAUTHORIZED)
        if stored is not None and self._passwords.needs_rehash(stored):
            await self._store.set_password(
                user.user_id,
                await self._passwords.hash(secret),
                now_ms=now_ms,
                expected_hash=stored,
                keep_session=None,
                audit=AuditEntry(user.user_id, "password_rehashed", None, now_ms),
            )
        return await self._sessions.open(
            user, SignInMethod.PASSWORD, device=device, address=address, now_ms=now_ms
        )

    async def register(
        self,
        email: Any,
        name: Any,
        password: Any,
        *,
        device: str | None,
        address: str | None,
        now_ms: int,
    ) -> SessionTokens:
        """Create an account in the organisation whose policy allows the e-mail's domain.

        Raises:
            RateLimitedError: too many attempts from this address.
            CloisonError: forbidden (no organisation allows the domain), conflict (the e-mail
                is in use), bad_frame.
        """
        await self._limits.address(address or "")
        address_email = valid_email(email)
        display = valid_name(name)
        secret = valid_password(password)
        org = await self._org_for(email_domain(address_email))
        if org is None:
            raise CloisonError(NO_REGISTRATION, code=ErrorCode.FORBIDDEN)
        user = await self._store.create_member(
            display,
            address_email,
            email_key(address_email),
            await self._passwords.hash(secret),
            org_id=org.org_id,
            now_ms=now_ms,
            actor_id="self",
        )
        return await self._sessions.open(
            user, SignInMethod.PASSWORD, device=device, address=address, now_ms=now_ms
        )

    async def _org_for(self, domain: str) -> OrgRecord | None:
        """The organisation whose ``email_domains`` policy names ``domain``, if one does."""
        org_id = await self._store.org_for_email_domain(domain)
        if org_id is None:
            return None
        org = await self._store.get_org(org_id)
        return org if org is not None and not org.suspended else None

    async def set_own_password(
        self,
        principal: Principal,
        password: Any,
        current: Any,
        *,
        now_ms: int,
    ) -> list[str]:
        """Set the caller's password: with the current one, or a first one (an enrolment
        token suffices then). Every other session of the user is revoked.

        Raises:
            CloisonError: conflict (no login e-mail yet), unauthorized (wrong current
                password), rate_limited, bad_frame.
        """
        user_id = principal.user.user_id
        secret = valid_password(password)
        credentials = await self._store.credentials_of(user_id)
        if credentials is None:
            raise CloisonError(
                "this account has no login e-mail: an administrator sets it first",
                code=ErrorCode.CONFLICT,
            )
        stored = credentials.password_hash
        if stored is not None:
            await self._limits.account(email_key(credentials.email))
            if current is None or not await self._passwords.verify(stored, presented(current)):
                raise CloisonError("wrong current password", code=ErrorCode.UNAUTHORIZED)
        ended = await self._store.set_password(
            user_id,
            await self._passwords.hash(secret),
            now_ms=now_ms,
            expected_hash=stored,
            keep_session=principal.token.session_id,
            audit=AuditEntry(user_id, "password_set", None, now_ms),
        )
        if ended is None:
            raise CloisonError("the password changed meanwhile; try again", code=ErrorCode.CONFLICT)
        self._sessions.end_local(ended)
        return ended

    async def enrol(
        self,
        actor_id: str,
        user_id: UserId,
        email: Any,
        password: str | None,
        *,
        now_ms: int,
    ) -> None:
        """An administrator gives a user its login e-mail and, optionally, a password."""
        address_email = valid_email(email)
        await self._store.set_email(
            user_id,
            address_email,
            email_key(address_email),
            now_ms=now_ms,
            audit=AuditEntry(actor_id, "email_set", None, now_ms),
        )
        if password is not None:
            credentials = await self._store.credentials_of(user_id)
            assert credentials is not None
            await self._store.set_password(
                user_id,
                await self._passwords.hash(valid_password(password)),
                now_ms=now_ms,
                expected_hash=credentials.password_hash,
                keep_session=None,
                audit=AuditEntry(actor_id, "password_set", None, now_ms),
            )

    async def sign_out(self, principal: Principal, *, now_ms: int) -> None:
        """End the session of the request's access token.

        Raises:
            CloisonError: bad_frame (the token is not a sign-in session's).
        """
        session_id = principal.token.session_id
        if session_id is None:
            raise CloisonError(
                "this token belongs to no sign-in session; revoke it with DELETE /me/tokens/{id}",
                code=ErrorCode.BAD_FRAME,
            )
        await self._sessions.revoke(
            principal.user.user_id, session_id, why=EndReason.SIGNED_OUT, now_ms=now_ms
        )

    async def user_for(self, user_id: UserId) -> UserRecord | None:
        return await active_user(self._store, user_id)

    async def org(self, org_id: OrgId) -> OrgRecord | None:
        return await self._store.get_org(org_id)
