"""What the protocols of one server share: the bounds, the admission counts, the hand-off."""

from __future__ import annotations

import sys
from dataclasses import dataclass

from server.config import Config
from server.wire.admission import Admission, AdmissionLimits, Ticket

# Why: a refused or failed peer gets this long to read our answer before the socket is closed;
# closing with its bytes still unread would send a TCP reset that can destroy the answer.
LINGER_S = 2.0
# Why: without a descriptor limit to go by (not a Unix), a cap that a small server survives.
FALLBACK_UNAUTHENTICATED = 4096


@dataclass(frozen=True, slots=True)
class WireLimits:
    max_header_bytes: int
    max_headers: int
    handshake_timeout_s: float
    send_timeout_s: float
    linger_s: float = LINGER_S


@dataclass(frozen=True, slots=True)
class Handoff:
    """A socket's ticket and handshake deadline (loop time), moving to its WebSocket protocol."""

    ticket: Ticket | None
    deadline_at: float


class Gatekeeper:
    """The bounds and counts behind every protocol instance of one server.

    ``handoff`` carries a socket's ticket from its HTTP protocol to the WebSocket protocol
    uvicorn makes for it on upgrade: uvicorn constructs that protocol and calls its
    ``connection_made`` synchronously, inside the HTTP protocol's ``handle_websocket_upgrade``.
    """

    def __init__(self, limits: WireLimits, admission: Admission) -> None:
        self.limits = limits
        self.admission = admission
        self.handoff: Handoff | None = None

    @classmethod
    def from_config(cls, config: Config) -> Gatekeeper:
        limits = WireLimits(
            max_header_bytes=config.max_header_bytes,
            max_headers=config.max_headers,
            handshake_timeout_s=config.handshake_timeout_s,
            send_timeout_s=config.send_timeout_s,
        )
        caps = AdmissionLimits(
            per_address=config.max_connections_per_address,
            unauthenticated_per_address=config.max_unauthenticated_per_address,
            unauthenticated=config.max_unauthenticated or default_unauthenticated_cap(),
            uncapped=frozenset(config.uncapped_addresses),
        )
        return cls(limits, Admission(caps))

    def take_handoff(self) -> Handoff | None:
        handoff, self.handoff = self.handoff, None
        return handoff


def default_unauthenticated_cap() -> int:
    """Half the process's descriptor limit: the other half stays for authenticated users."""
    if sys.platform == "win32":
        return FALLBACK_UNAUTHENTICATED
    import resource

    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft <= 0:
        return FALLBACK_UNAUTHENTICATED
    return max(1, soft // 2)
