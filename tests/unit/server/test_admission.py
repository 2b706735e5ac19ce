"""Admission counts: per-address and global caps, authentication, release, refusals."""

from __future__ import annotations

from server.wire import Admission, AdmissionLimits, Verdict
from server.wire.admission import MAX_LINGERING_REFUSALS_PER_ADDRESS


def admission(per: int = 0, unauth_per: int = 0, unauth: int = 0) -> Admission:
    return Admission(AdmissionLimits(per, unauth_per, unauth, frozenset({"127.0.0.1"})))


def test_unauthenticated_sockets_are_capped_per_address_until_they_authenticate() -> None:
    gate = admission(unauth_per=2)
    first, second = gate.admit("10.0.0.1"), gate.admit("10.0.0.1")
    assert first.admitted and second.admitted
    assert gate.admit("10.0.0.1").verdict is Verdict.REFUSED
    assert gate.admit("10.0.0.2").admitted  # another address
    first.authenticated()
    assert gate.unauthenticated_for("10.0.0.1") == 1
    assert gate.admit("10.0.0.1").admitted
    first.authenticated()  # idempotent
    assert gate.unauthenticated == 3


def test_open_sockets_are_capped_per_address_authenticated_or_not() -> None:
    gate = admission(per=2)
    tickets = [gate.admit("10.0.0.1") for _ in range(2)]
    for ticket in tickets:
        ticket.authenticated()
    assert gate.admit("10.0.0.1").verdict is Verdict.REFUSED
    tickets[0].release()
    tickets[0].release()  # idempotent
    assert gate.open_for("10.0.0.1") == 1
    assert gate.admit("10.0.0.1").admitted


def test_the_global_cap_counts_every_address_even_uncapped_ones() -> None:
    gate = admission(per=1, unauth_per=1, unauth=3)
    local = [gate.admit("127.0.0.1") for _ in range(3)]  # uncapped per address
    assert all(t.admitted for t in local)
    assert gate.admit("10.0.0.9").verdict is Verdict.REFUSED
    local[0].authenticated()
    assert gate.admit(None).admitted  # not an IP peer: global cap only
    for ticket in local:
        ticket.release()
    assert gate.unauthenticated == 1
    assert gate.open_for("127.0.0.1") == 0


def test_lingering_refusals_are_capped_then_dropped() -> None:
    gate = admission(unauth_per=1)
    gate.admit("10.0.0.1")
    refused = [gate.admit("10.0.0.1") for _ in range(MAX_LINGERING_REFUSALS_PER_ADDRESS)]
    assert all(t.verdict is Verdict.REFUSED for t in refused)
    dropped = gate.admit("10.0.0.1")
    assert dropped.verdict is Verdict.DROPPED
    dropped.release()  # already released: changes nothing
    refused[0].release()
    assert gate.admit("10.0.0.1").verdict is Verdict.REFUSED
    assert gate.unauthenticated == 1


def test_ipv4_peers_of_a_dual_stack_socket_count_as_their_ipv4_address() -> None:
    gate = admission(unauth_per=1)
    assert gate.admit("::ffff:127.0.0.1").admitted  # uncapped, as 127.0.0.1
    assert gate.admit("::ffff:127.0.0.1").admitted
    ticket = gate.admit("::ffff:10.0.0.1")
    assert gate.unauthenticated_for("10.0.0.1") == 1
    assert gate.admit("10.0.0.1").verdict is Verdict.REFUSED
    ticket.release()
    assert gate.unauthenticated_for("10.0.0.1") == 0
