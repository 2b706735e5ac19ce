"""The storage contract of sign-in, on every backend: credentials by e-mail, sessions whose
refresh tokens are exchanged once (a second exchange, even concurrent, revokes the session),
revocation in the session change log, single sign-on and single-use grants."""

from __future__ import annotations

import asyncio
import hashlib

import pytest

from protocol import OrgId, UserKind
from storage import (
    AuditEntry,
    AuthSession,
    ChangeKind,
    EmailTakenError,
    EndReason,
    GrantKind,
    RefreshOutcome,
    RefreshRecord,
    SigninGrant,
    SignInMethod,
    SsoConfig,
    Store,
    TokenKind,
    TokenRecord,
)

T0 = 1_700_000_000_000
DAY = 86_400_000


def _access(token_id: str, user_id: str = "", session_id: str = "") -> TokenRecord:
    return TokenRecord(
        token_id,
        user_id,  # type: ignore[arg-type]
        b"h" * 32,
        T0,
        T0 + 900_000,
        kind=TokenKind.ACCESS,
        session_id=session_id or None,
    )


def _refresh(refresh_id: str, secret: str, session_id: str = "") -> RefreshRecord:
    return RefreshRecord(refresh_id, session_id, hashlib.sha256(secret.encode()).digest(), T0)


async def _signed_in(store: Store) -> tuple[str, str]:
    user = await store.create_user("Ada", UserKind.HUMAN, is_admin=False, now_ms=T0)
    session = AuthSession(
        "s1", user.user_id, SignInMethod.PASSWORD, "ua", "192.0.2.0/24", T0, T0, T0 + 30 * DAY
    )
    await store.create_session(
        session, _access("a1", user.user_id, "s1"), _refresh("r1", "one", "s1")
    )
    return user.user_id, "s1"


async def test_credentials_are_found_by_their_lowercase_email(store: Store) -> None:
    ada = await store.create_user("Ada", UserKind.HUMAN, is_admin=False, now_ms=T0)
    bea = await store.create_user("Bea", UserKind.HUMAN, is_admin=False, now_ms=T0)
    audit = AuditEntry("cli", "email_set", None, T0)
    await store.set_email(ada.user_id, "Ada@Example.org", "ada@example.org", now_ms=T0, audit=audit)
    found = await store.credentials_by_email("ada@example.org")
    assert found is not None and found.user_id == ada.user_id and found.email == "Ada@Example.org"
    assert found.password_hash is None
    with pytest.raises(EmailTakenError):
        await store.set_email(
            bea.user_id, "ADA@example.org", "ada@example.org", now_ms=T0, audit=audit
        )
    # Compare and swap: the first password needs "none set", a change the current hash.
    assert (
        await store.set_password(
            ada.user_id, "$h1", now_ms=T0, expected_hash=None, keep_session=None, audit=audit
        )
        == []
    )
    assert (
        await store.set_password(
            ada.user_id, "$h2", now_ms=T0, expected_hash=None, keep_session=None, audit=audit
        )
        is None
    )
    assert (
        await store.set_password(
            ada.user_id, "$h2", now_ms=T0, expected_hash="$h1", keep_session=None, audit=audit
        )
        == []
    )
    stored = await store.credentials_of(ada.user_id)
    assert stored is not None and stored.password_hash == "$h2"


async def test_a_refresh_token_is_exchanged_once_then_reuse_revokes(store: Store) -> None:
    user_id, session_id = await _signed_in(store)
    after = await store.latest_session_change()
    wrong = hashlib.sha256(b"guess").digest()
    outcome, _ = await store.refresh_session(
        "r1", wrong, now_ms=T0 + 1, access=_access("a2"), refresh=_refresh("r2", "two")
    )
    assert outcome is RefreshOutcome.INVALID  # a guess ends nothing
    one = hashlib.sha256(b"one").digest()
    outcome, session = await store.refresh_session(
        "r1", one, now_ms=T0 + 2, access=_access("a2"), refresh=_refresh("r2", "two")
    )
    assert outcome is RefreshOutcome.ROTATED and session is not None
    assert session.last_used_ms == T0 + 2
    token = await store.get_token("a2")
    assert token is not None and token.session_id == session_id and token.user_id == user_id
    outcome, _ = await store.refresh_session(
        "r1", one, now_ms=T0 + 3, access=_access("a3"), refresh=_refresh("r3", "three")
    )
    assert outcome is RefreshOutcome.REUSED
    ended = await store.get_session(session_id)
    assert ended is not None and ended.revoked_why == EndReason.REUSED.value
    for token_id in ("a1", "a2"):
        stored = await store.get_token(token_id)
        assert stored is not None and stored.revoked
    assert await store.get_token("a3") is None
    [change] = await store.session_changes_after(after, 10)
    assert change.kind is ChangeKind.SESSION_REVOKED and change.token_id == session_id
    two = hashlib.sha256(b"two").digest()
    outcome, _ = await store.refresh_session(
        "r2", two, now_ms=T0 + 4, access=_access("a4"), refresh=_refresh("r4", "four")
    )
    assert outcome is RefreshOutcome.INVALID  # the session ended: its newest token too


async def test_two_exchanges_at_once_rotate_once(store: Store) -> None:
    _, session_id = await _signed_in(store)
    one = hashlib.sha256(b"one").digest()
    outcomes = await asyncio.gather(
        *(
            store.refresh_session(
                "r1", one, now_ms=T0 + 1, access=_access(f"x{n}"), refresh=_refresh(f"y{n}", "s")
            )
            for n in range(4)
        )
    )
    kinds = sorted(outcome for outcome, _ in outcomes)
    assert kinds.count(RefreshOutcome.ROTATED) == 1
    # The first loser is reuse and ends the session; those after it find the session ended.
    assert kinds.count(RefreshOutcome.REUSED) >= 1
    ended = await store.get_session(session_id)
    assert ended is not None and ended.revoked_ms is not None


async def test_sessions_are_listed_and_revoked_by_their_owner(store: Store) -> None:
    user_id, session_id = await _signed_in(store)
    other = await store.create_user("Bea", UserKind.HUMAN, is_admin=False, now_ms=T0)
    assert [s.session_id for s in await store.list_sessions(user_id, now_ms=T0, limit=10)] == [
        session_id
    ]
    assert (
        await store.revoke_session(
            session_id, now_ms=T0, why=EndReason.SIGNED_OUT, owner=other.user_id
        )
        is None
    )
    ended = await store.revoke_session(
        session_id, now_ms=T0 + 5, why=EndReason.SIGNED_OUT, owner=user_id
    )
    assert ended is not None and ended.revoked_ms == T0 + 5
    assert await store.list_sessions(user_id, now_ms=T0, limit=10) == []
    # Closing all of a user's tokens ends their sign-in sessions too.
    again = AuthSession("s2", user_id, SignInMethod.OIDC, None, None, T0, T0, T0 + DAY)
    await store.create_session(again, _access("b1", user_id, "s2"), _refresh("q1", "q", "s2"))
    await store.revoke_user_tokens(user_id, now_ms=T0 + 6)
    s2 = await store.get_session("s2")
    assert s2 is not None and s2.revoked_ms == T0 + 6


async def test_single_sign_on_identities_and_grants(store: Store) -> None:
    org = await store.create_org("Acme", now_ms=T0, actor_id="cli", org_id=OrgId("acme"))
    config = SsoConfig(org.org_id, "https://id.acme", "c", "secret", ("acme.test",), True, T0)
    await store.set_sso(config, actor_id="cli")
    assert await store.get_sso(org.org_id) == config
    assert await store.sso_orgs() == [(org.org_id, "Acme")]
    user = await store.create_member(
        "Zed",
        "zed@acme.test",
        "zed@acme.test",
        None,
        org_id=org.org_id,
        now_ms=T0,
        actor_id="sso",
        identity=(org.org_id, "sub-1"),
    )
    assert await store.sso_user(org.org_id, "sub-1") == user.user_id
    assert await store.org_role(org.org_id, user.user_id) is not None
    assert not await store.link_identity(org.org_id, "sub-1", user.user_id, now_ms=T0)
    grant = SigninGrant("g1", GrantKind.OIDC_STATE, T0 + 10, org_id=org.org_id, nonce="n")
    await store.put_grant(grant, now_ms=T0)
    assert await store.take_grant("g1", GrantKind.SIGNIN_CODE, now_ms=T0) is None  # other kind
    assert await store.take_grant("g1", GrantKind.OIDC_STATE, now_ms=T0) == grant
    assert await store.take_grant("g1", GrantKind.OIDC_STATE, now_ms=T0) is None  # once
    await store.put_grant(SigninGrant("g2", GrantKind.SIGNIN_CODE, T0 + 10), now_ms=T0)
    assert await store.take_grant("g2", GrantKind.SIGNIN_CODE, now_ms=T0 + 10) is None  # expired
    audit = await store.list_org_audit(org.org_id, before=None, limit=10)
    assert "sso_configured" in [e.action for e in audit]
    assert await store.delete_sso(org.org_id, now_ms=T0, actor_id="cli")
    assert await store.get_sso(org.org_id) is None
