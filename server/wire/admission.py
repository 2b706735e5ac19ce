"""Who may open one more socket: caps per client address and on unauthenticated sockets.

Theory of operation. Every accepted socket asks ``Admission.admit`` for a ``Ticket`` before
the server reads a byte from it. A ticket counts the socket as open for its client address and
as *unauthenticated* (for its address and globally) until the gateway calls
``Ticket.authenticated`` after a valid ``auth`` frame; ``Ticket.release`` (when the socket
closes) uncounts whatever is still counted. Plain HTTP connections never authenticate at this
level, so they count as unauthenticated for as long as they are open (uvicorn closes idle
keep-alive connections after 5 s).

A socket over a cap gets a refusal ticket: the server answers ``503`` and closes it after a
short linger, so the answer is read rather than lost to a TCP reset. Refusals lingering for one
address are themselves capped; beyond that the socket is dropped at once, so refusing costs an
attacker's address a bounded number of descriptors too.

Pure bookkeeping: no I/O, no clock; the protocols in this package call it.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from enum import Enum

# Why: enough for a client that retries at once to read its 503; more only feeds an attacker.
MAX_LINGERING_REFUSALS_PER_ADDRESS = 16
IPV4_MAPPED = "::ffff:"


@dataclass(frozen=True, slots=True)
class AdmissionLimits:
    """The caps; 0 means "no cap" for each of them."""

    per_address: int
    unauthenticated_per_address: int
    unauthenticated: int
    uncapped: frozenset[str]


class Verdict(Enum):
    ADMITTED = "admitted"
    REFUSED = "refused"  # answer 503, then close
    DROPPED = "dropped"  # close at once: too many refusals are lingering for this address


class Ticket:
    """One socket's place in the counts; see the module docstring for its lifecycle."""

    __slots__ = ("_admission", "_pending", "_released", "address", "reason", "verdict")

    def __init__(
        self, admission: Admission, address: str | None, verdict: Verdict, reason: str
    ) -> None:
        self._admission = admission
        self.address = address
        self.verdict = verdict
        self.reason = reason
        self._pending = verdict is Verdict.ADMITTED
        self._released = verdict is Verdict.DROPPED

    @property
    def admitted(self) -> bool:
        return self.verdict is Verdict.ADMITTED

    def authenticated(self) -> None:
        """The socket's WebSocket passed ``auth``: it no longer counts as unauthenticated."""
        if self._pending and not self._released:
            self._pending = False
            self._admission._unpend(self.address)

    def release(self) -> None:
        """The socket closed. Idempotent."""
        if self._released:
            return
        self._released = True
        if self.verdict is Verdict.REFUSED:
            self._admission._unlinger(self.address)
            return
        if self._pending:
            self._pending = False
            self._admission._unpend(self.address)
        self._admission._unopen(self.address)


class Admission:
    """The counts behind every ``Ticket`` of one server process."""

    def __init__(self, limits: AdmissionLimits) -> None:
        self.limits = limits
        self._open: Counter[str] = Counter()
        self._pending: Counter[str] = Counter()
        self._lingering: Counter[str] = Counter()
        self.unauthenticated = 0
        self.refused = 0  # sockets refused since the process started (503 or dropped)

    def open_for(self, address: str) -> int:
        return self._open[address]

    def unauthenticated_for(self, address: str) -> int:
        return self._pending[address]

    def admit(self, address: str | None) -> Ticket:
        """A ticket for a new socket from ``address`` (None: not an IP peer, e.g. a Unix socket)."""
        if address is not None and address.startswith(IPV4_MAPPED):
            address = address[len(IPV4_MAPPED) :]  # a dual-stack socket's IPv4 peer
        reason = self._over_cap(address)
        if reason:
            self.refused += 1
            key = address or ""
            if self._lingering[key] >= MAX_LINGERING_REFUSALS_PER_ADDRESS:
                return Ticket(self, address, Verdict.DROPPED, reason)
            self._lingering[key] += 1
            return Ticket(self, address, Verdict.REFUSED, reason)
        self.unauthenticated += 1
        if address is not None:
            self._open[address] += 1
            self._pending[address] += 1
        return Ticket(self, address, Verdict.ADMITTED, "")

    def _over_cap(self, address: str | None) -> str:
        limits = self.limits
        if 0 < limits.unauthenticated <= self.unauthenticated:
            return "too many unauthenticated connections"
        if address is None or address in limits.uncapped:
            return ""
        if 0 < limits.per_address <= self._open[address]:
            return "too many connections from this address"
        if 0 < limits.unauthenticated_per_address <= self._pending[address]:
            return "too many unauthenticated connections from this address"
        return ""

    def _unpend(self, address: str | None) -> None:
        self.unauthenticated -= 1
        if address is not None:
            _decrement(self._pending, address)

    def _unopen(self, address: str | None) -> None:
        if address is not None:
            _decrement(self._open, address)

    def _unlinger(self, address: str | None) -> None:
        _decrement(self._lingering, address or "")


def _decrement(counts: Counter[str], key: str) -> None:
    """Count one fewer; drop the key at zero so the counters hold only live addresses."""
    left = counts[key] - 1
    if left > 0:
        counts[key] = left
    else:
        del counts[key]
