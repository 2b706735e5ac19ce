"""SessionRegistry: which sessions a change ends, the per-user cap, expiry order.

Sessions here have no connection yet (the state between authentication steps); ending one marks
it, and the gateway then refuses instead of attaching. Live sockets are in tests/e2e.
"""

from __future__ import annotations

from protocol import OrgId, UserId
from server.sessions.registry import DISABLED, EXPIRED, REVOKED, SUSPENDED, SessionRegistry
from storage import ChangeKind, SessionChange

ALICE, BOB = UserId("u_alice"), UserId("u_bob")


def test_a_revocation_ends_a_session_registered_before_its_user_is_known() -> None:
    registry = SessionRegistry(max_per_user=10)
    early = registry.enter("t1")  # token not read yet: no user
    other = registry.enter("t2")
    assert registry.apply(SessionChange(1, ChangeKind.TOKEN_REVOKED, ALICE, "t1", 0)) == 1
    assert early.ended == REVOKED and other.ended is None
    assert registry.apply(SessionChange(2, ChangeKind.TOKEN_REVOKED, ALICE, "t1", 0)) == 0


def test_disabling_ends_every_session_of_the_user_only() -> None:
    registry = SessionRegistry(max_per_user=10)
    sessions = [registry.enter(f"a{n}") for n in range(3)]
    for session in sessions:
        assert registry.bind(session, ALICE, None)
    bob = registry.enter("b")
    registry.bind(bob, BOB, None)
    assert registry.apply(SessionChange(1, ChangeKind.USER_DISABLED, ALICE, None, 0)) == 3
    assert all(s.ended == DISABLED for s in sessions) and bob.ended is None


def test_a_suspension_ends_the_sessions_of_the_member_it_names_only() -> None:
    registry = SessionRegistry(max_per_user=10)
    alice, bob = registry.enter("a"), registry.enter("b")
    registry.bind(alice, ALICE, None)
    registry.bind(bob, BOB, None)
    acme = OrgId("acme")
    # The organisation's own row names nobody: the hub ends its subscriptions instead.
    assert (
        registry.apply(SessionChange(1, ChangeKind.ORG_SUSPENDED, UserId(""), None, 0, acme)) == 0
    )
    assert registry.apply(SessionChange(2, ChangeKind.ORG_SUSPENDED, ALICE, None, 0, acme)) == 1
    assert alice.ended == SUSPENDED and bob.ended is None


def test_the_cap_counts_sessions_per_user_and_frees_on_leave() -> None:
    registry = SessionRegistry(max_per_user=2)
    first, second, third = (registry.enter(f"t{n}") for n in range(3))
    assert registry.bind(first, ALICE, None) and registry.bind(second, ALICE, None)
    assert not registry.bind(third, ALICE, None)
    registry.leave(third)
    assert registry.sessions_of(ALICE) == 2
    registry.leave(first)
    fourth = registry.enter("t4")
    assert registry.bind(fourth, ALICE, None)
    assert registry.end_token("t0", REVOKED) == 0  # left: nothing to end


def test_expiry_ends_sessions_in_time_order_and_skips_those_that_left() -> None:
    registry = SessionRegistry(max_per_user=10)
    soon, later, gone, never = (registry.enter(f"t{n}") for n in range(4))
    registry.bind(soon, ALICE, 1_000)
    registry.bind(later, ALICE, 5_000)
    registry.bind(gone, BOB, 2_000)
    registry.bind(never, BOB, None)
    registry.leave(gone)
    assert registry.expire(999) == 0
    assert registry.expire(2_000) == 1 and soon.ended == EXPIRED
    assert later.ended is None and gone.ended == "left"
    assert registry.expire(10_000) == 1 and later.ended == EXPIRED and never.ended is None
    # A session ended meanwhile cannot be attached.
    assert not registry.attach(soon, object())  # type: ignore[arg-type]
