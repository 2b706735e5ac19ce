"""uvicorn's httptools protocol with admission, a header budget and a handshake deadline.

Theory of operation. Before the first byte is parsed, the socket asks the ``Admission`` for a
ticket (over a cap: ``503`` and a lingering close). Until a request's headers are complete,
the bytes fed to the parser are counted against ``max_header_bytes`` and the header lines
against ``max_headers``; the first byte past either budget is never parsed: the request is
answered ``431`` and the socket closed after a linger. The budget must be enforced here,
before parsing, because httptools joins a header that spans reads by concatenating bytes, so
parsing one header of N bytes received in pieces costs O(N^2) CPU (64 MiB: 4 s).

A deadline runs from the TCP connect (and, on a kept-alive connection, from the first byte of
each later request) to the end of the headers; for a WebSocket it runs on, through the
WebSocket protocol, until the upgrade completes. A peer that misses it is aborted: a
half-sent request holds a descriptor for at most ``handshake_timeout_s``.

On upgrade, the ticket and the deadline move to the WebSocket protocol through
``Gatekeeper.handoff``.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, ClassVar

import httptools
from uvicorn.config import Config as UvicornConfig
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
from uvicorn.server import ServerState

from server.wire.admission import Ticket, Verdict
from server.wire.closing import LINGER_MAX_BYTES, linger, reset
from server.wire.gatekeeper import Gatekeeper, Handoff

logger = logging.getLogger(__name__)


class _Refused(Exception):
    """Raised inside a parser callback to stop httptools once the request is refused."""


class GuardedHttpProtocol(HttpToolsProtocol):
    """See the module docstring. ``gatekeeper`` is bound by ``server.wire.protocol_classes``."""

    gatekeeper: ClassVar[Gatekeeper]

    def __init__(
        self,
        config: UvicornConfig,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self._limits = self.gatekeeper.limits
        self._ticket: Ticket | None = None
        self._head_bytes = 0
        self._head_done = False
        self._header_lines = 0
        self._deadline_at = 0.0
        self._deadline: asyncio.TimerHandle | None = None
        self._linger: asyncio.TimerHandle | None = None
        self._refused = False
        self._discarded_bytes = 0

    # Connection lifecycle

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        ticket = self.gatekeeper.admission.admit(self.client[0] if self.client else None)
        self._ticket = ticket
        if ticket.verdict is Verdict.DROPPED:
            reset(transport)
        elif ticket.verdict is Verdict.REFUSED:
            logger.debug("refused a connection: %s", ticket.reason)
            self._refuse(503, ticket.reason)
        else:
            self._arm_deadline(self.loop.time() + self._limits.handshake_timeout_s)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_deadline()
        if self._linger is not None:
            self._linger.cancel()
            self._linger = None
        if self._ticket is not None:
            self._ticket.release()
            self._ticket = None
        super().connection_lost(exc)

    # Input, counted before it is parsed

    def data_received(self, data: bytes) -> None:
        if self._refused:  # lingering: the answer is sent, the rest is discarded
            self._discarded_bytes += len(data)
            if self._discarded_bytes > LINGER_MAX_BYTES:
                reset(self.transport)
            return
        if self._head_done:
            self._feed(data)
            return
        room = self._limits.max_header_bytes - self._head_bytes
        if len(data) <= room:
            self._head_bytes += len(data)
            self._feed(data)
            return
        # The budget ends inside this read: parse up to it, and go on only if that completed
        # the headers (the rest is then body, or the next request).
        self._head_bytes += room
        self._feed(data[:room])
        if (
            self._refused
            or self.transport.is_closing()
            or self.transport.get_protocol() is not self
        ):
            return
        if not self._head_done:
            self._refuse(431, "request headers too large")
            return
        self.data_received(data[room:])

    def _feed(self, data: bytes) -> None:
        """uvicorn's ``data_received``, except for a parser stopped by a refusal."""
        self._unset_keepalive_if_required()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            if self._refused:
                return  # a callback refused the request: the answer is already written
            msg = "Invalid HTTP request received."
            self.logger.warning(msg)
            self.send_400_response(msg)
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()

    # Parser callbacks

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._deadline is None:  # a later request on a kept-alive connection
            self._arm_deadline(self.loop.time() + self._limits.handshake_timeout_s)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_lines += 1
        if self._header_lines > self._limits.max_headers:
            self._refuse(431, "too many request headers")
            raise _Refused
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._head_done = True
        if not (self.parser.should_upgrade() and self._should_upgrade()):
            self._disarm_deadline()  # a WebSocket's deadline runs on until the upgrade completes
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._head_done = False
        self._head_bytes = 0
        self._header_lines = 0

    def handle_websocket_upgrade(self) -> None:
        if self._refused:
            return
        deadline_at = self._deadline_at if self._deadline is not None else self.loop.time()
        self._disarm_deadline()
        self.gatekeeper.handoff = Handoff(self._ticket, deadline_at)
        self._ticket = None
        try:
            super().handle_websocket_upgrade()
        finally:
            self.gatekeeper.handoff = None

    # Refusals and deadlines

    def _refuse(self, status: int, reason: str) -> None:
        """Answer ``status``, stop parsing, and close after a linger (see ``linger``)."""
        if self._refused:
            return
        self._refused = True
        self._disarm_deadline()
        body = reason.encode("ascii") + b"\n"
        self.transport.write(
            b"".join(
                [
                    STATUS_LINE[status],
                    b"content-type: text/plain; charset=utf-8\r\n",
                    b"content-length: %d\r\n" % len(body),
                    b"connection: close\r\n\r\n",
                    body,
                ]
            )
        )
        self._linger = linger(self.transport, self.loop, self._limits.linger_s)

    def _arm_deadline(self, at: float) -> None:
        self._deadline_at = at
        self._deadline = self.loop.call_at(at, self._deadline_passed)

    def _disarm_deadline(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _deadline_passed(self) -> None:
        self._deadline = None
        logger.debug("aborted a request whose headers did not arrive in time")
        reset(self.transport)
