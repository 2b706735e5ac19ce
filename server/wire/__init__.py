"""The socket layer under the ASGI app: uvicorn's protocols, bounded against hostile peers.

One unauthenticated client must not be able to take the server down; these protocols hold the
bounds that uvicorn does not (docs/adr/0005-bounded-protocols-under-uvicorn.md):

- ``admission.py``: caps per client address on open and on unauthenticated sockets, and a
  global cap on unauthenticated ones (pure counting; ``Ticket`` per socket).
- ``gatekeeper.py``: the limits and counts one server's protocols share, built from Config.
- ``http.py``: httptools protocol with admission (503), a header budget counted before parsing
  (431) and a handshake deadline; ``linger`` (half-close, then close) for refusals.
- ``websocket.py``: websockets-sansio protocol that stops reading from a peer whose write
  buffer is full and aborts it after ``send_timeout_s``; fails connections with a lingering
  close so the close frame (1009) is read; ends a WebSocket the app leaves open with a close
  frame (1011 or 1000); answers a close inside a fragmented message normally (RFC 6455, where
  websockets 17 sends 1002); hands the ticket to the app as a scope extension.

``protocol_classes`` binds both protocols to one ``Gatekeeper`` for ``uvicorn.Config``.
The protocols rely on uvicorn internals (pinned in pyproject.toml); tests/unit/server/
test_wire_internals.py fails when the pieces they override change.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from server.wire.admission import Admission, AdmissionLimits, Ticket, Verdict
from server.wire.gatekeeper import Gatekeeper, WireLimits
from server.wire.http import GuardedHttpProtocol
from server.wire.websocket import ADMISSION_EXTENSION, GuardedWebSocketProtocol

__all__ = [
    "ADMISSION_EXTENSION",
    "Admission",
    "AdmissionLimits",
    "Gatekeeper",
    "GuardedHttpProtocol",
    "GuardedWebSocketProtocol",
    "Ticket",
    "Verdict",
    "WireLimits",
    "admission_ticket",
    "protocol_classes",
]


def protocol_classes(
    gatekeeper: Gatekeeper,
) -> tuple[type[GuardedHttpProtocol], type[GuardedWebSocketProtocol]]:
    """The HTTP and WebSocket protocol classes of one server, sharing ``gatekeeper``."""

    class HttpProtocol(GuardedHttpProtocol):
        pass

    class WebSocketProtocol(GuardedWebSocketProtocol):
        pass

    HttpProtocol.gatekeeper = gatekeeper
    WebSocketProtocol.gatekeeper = gatekeeper
    return HttpProtocol, WebSocketProtocol


def admission_ticket(scope: Mapping[str, Any]) -> Ticket | None:
    """The socket's ticket, when a ``GuardedWebSocketProtocol`` serves this ASGI scope."""
    extension = (scope.get("extensions") or {}).get(ADMISSION_EXTENSION)
    ticket = extension.get("ticket") if isinstance(extension, dict) else None
    return ticket if isinstance(ticket, Ticket) else None
