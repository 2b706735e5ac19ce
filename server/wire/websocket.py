"""uvicorn's websockets-sansio protocol with write backpressure, a stall deadline and lingering
failure closes.

Theory of operation. uvicorn writes a pong for every ping as it parses it, whether or not the
peer reads anything, so a client that sends pings and reads nothing grows the server's write
buffer without limit (1.2 GB in 44 s). Here, when the transport's write buffer passes its
high-water mark (``pause_writing``), the protocol also stops reading from the peer: no input,
no more output, so the buffer stays within the high-water mark plus one read's worth of pongs.
Reading resumes when the buffer drains (``resume_writing``) and the application is ready for
the next message. If it does not drain within ``send_timeout_s``, the transport is aborted:
whatever the kernel's TCP_USER_TIMEOUT does, a peer that accepts nothing is gone within that
time, and so are the writer tasks awaiting its socket.

A WebSocket whose upgrade has not completed by the handshake deadline the HTTP protocol handed
over is aborted too.

When websockets fails the connection (an oversized or invalid frame), the close frame it
queues is written, then the socket lingers (``server.wire.closing.linger``): the write side is
shut, input is discarded, and the socket closes on the peer's EOF or after ``LINGER_S``.
uvicorn closes at once instead, with the peer's frame still unread, and the kernel's reset
often destroys the close frame (the client sees 1006 instead of 1009).

A WebSocket the application leaves open, by raising or by returning without closing, gets a
close frame (1011 or 1000) and the same lingering close; uvicorn closes it without one. A
close frame between the fragments of a message closes the connection normally
(``ConformingServerProtocol``), where websockets 17 fails it with 1002.

The socket's admission ticket reaches the application as the ASGI scope extension
``cloison.admission``; the gateway marks it authenticated after a valid ``auth`` frame.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, ClassVar, cast

from uvicorn._types import ASGIReceiveEvent
from uvicorn.config import Config as UvicornConfig
from uvicorn.protocols.utils import ClientDisconnected
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from uvicorn.server import ServerState
from websockets.frames import CloseCode as WsCloseCode, Frame, Opcode
from websockets.http11 import Request
from websockets.server import ServerProtocol

from protocol import CloseCode
from server.wire.admission import Ticket
from server.wire.closing import LINGER_MAX_BYTES, linger, reset
from server.wire.gatekeeper import Gatekeeper

logger = logging.getLogger(__name__)

ADMISSION_EXTENSION = "cloison.admission"
# Why: websockets parses a whole read before the protocol sees one event, and a 256 KiB read
# of empty pings costs 200 ms of CPU; fed in slices, a peer over its ping budget is failed
# after at most one slice (about 3 ms).
FEED_SLICE_BYTES = 4 * 1024
# Why: a client needs a ping every few seconds at most (keepalive, latency probes); each one
# costs the server a parse and a write, so a flood of them is refused like other abuse.
PING_BURST = 32
PING_RATE_PER_S = 4.0


class ConformingServerProtocol(ServerProtocol):
    """websockets' server protocol, except that a close frame inside a fragmented message
    closes the connection normally.

    RFC 6455 allows control frames between the fragments of a message (section 5.4), and a
    close frame ends the connection: the endpoint answers it with a close frame, typically
    echoing its status (section 5.5.1), and discards any data after it (section 1.4). The
    unfinished message is not delivered. websockets 17 fails the connection with 1002
    instead ("incomplete fragmented message"; Autobahn case 7.1.5).
    """

    def recv_frame(self, frame: Frame) -> None:
        if frame.opcode is Opcode.CLOSE and self.current_size is not None:
            self.current_size = None  # the unfinished message is dropped, never delivered
        super().recv_frame(frame)


class GuardedWebSocketProtocol(WebSocketsSansIOProtocol):
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
        stock = self.conn  # built by uvicorn from config; same settings, conforming close
        self.conn = ConformingServerProtocol(
            extensions=stock.available_extensions,
            max_size=(stock.max_message_size, stock.max_fragment_size),
            logger=stock.logger,
        )
        self._limits = self.gatekeeper.limits
        handoff = self.gatekeeper.take_handoff()
        self._ticket: Ticket | None = handoff.ticket if handoff else None
        self._deadline_at: float | None = handoff.deadline_at if handoff else None
        self._deadline: asyncio.TimerHandle | None = None
        self._stall: asyncio.TimerHandle | None = None
        self._write_paused = False
        self._lingering = False
        self._discarded_bytes = 0
        self._ping_tokens = float(PING_BURST)
        self._ping_refilled_at = self.loop.time()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        at = self._deadline_at
        if at is None:
            at = self.loop.time() + self._limits.handshake_timeout_s
        self._deadline = self.loop.call_at(at, self._deadline_passed)

    def connection_lost(self, exc: Exception | None) -> None:
        for timer in (self._deadline, self._stall):
            if timer is not None:
                timer.cancel()
        self._deadline = self._stall = None
        if self._ticket is not None:
            self._ticket.release()
            self._ticket = None
        super().connection_lost(exc)

    def handle_connect(self, event: Request) -> None:
        super().handle_connect(event)
        scope = getattr(self, "scope", None)  # absent when the handshake was refused
        if scope is not None and self._ticket is not None:
            extensions = cast(dict[str, Any], scope["extensions"])
            extensions[ADMISSION_EXTENSION] = {"ticket": self._ticket}

    # Backpressure: a peer that does not read is not read from, and goes after send_timeout_s

    def pause_writing(self) -> None:
        super().pause_writing()
        self._write_paused = True
        self.transport.pause_reading()
        if self._stall is None:
            self._stall = self.loop.call_later(self._limits.send_timeout_s, self._stalled)

    def resume_writing(self) -> None:
        super().resume_writing()
        self._write_paused = False
        if self._stall is not None:
            self._stall.cancel()
            self._stall = None
        if not self.read_paused or self._lingering:
            self.transport.resume_reading()

    async def receive(self) -> ASGIReceiveEvent:
        """uvicorn's ``receive``, except that reading stays paused while writing is."""
        message = await self.queue.get()
        if self.read_paused and self.queue.empty():
            self.read_paused = False
            if not self._write_paused:
                self.transport.resume_reading()
        return message

    def _stalled(self) -> None:
        self._stall = None
        logger.info(
            "aborting a connection whose socket accepted nothing for %.1f s",
            self._limits.send_timeout_s,
        )
        reset(self.transport)

    def _deadline_passed(self) -> None:
        self._deadline = None
        if not self.handshake_complete:
            logger.debug("aborted a WebSocket whose upgrade did not complete in time")
            reset(self.transport)

    # Input in slices, and a ping budget

    def data_received(self, data: bytes) -> None:
        if self._lingering:  # the connection failed and waits for the peer's EOF
            self._discarded_bytes += len(data)
            if self._discarded_bytes > LINGER_MAX_BYTES:
                reset(self.transport)
            return
        if len(data) <= FEED_SLICE_BYTES:
            super().data_received(data)
            return
        view = memoryview(data)
        for start in range(0, len(data), FEED_SLICE_BYTES):
            super().data_received(bytes(view[start : start + FEED_SLICE_BYTES]))
            if self._lingering or self.transport.is_closing():
                return

    def send_receive_event_to_app(self) -> None:
        """uvicorn's, except for a text message that is not UTF-8: uvicorn logs a traceback at
        ERROR for each one, which a peer can repeat at will; here it is one line at INFO."""
        data = self.frames[0] if len(self.frames) == 1 else b"".join(self.frames)
        self.frames = []
        if self.close_sent:
            return  # past our close frame: discarded, reads stay active for the peer's
        if self.curr_msg_data_type == "text":
            try:
                text = data.decode()
            except UnicodeDecodeError:
                logger.info("closing a WebSocket that sent a text message that is not UTF-8")
                self.conn.fail(WsCloseCode.INVALID_DATA, "invalid UTF-8")
                self.handle_parser_exception()
                return
            self.queue.put_nowait({"type": "websocket.receive", "text": text})
        else:
            self.queue.put_nowait({"type": "websocket.receive", "bytes": data})
        if not self.read_paused:
            self.read_paused = True
            self.transport.pause_reading()

    def handle_ping(self) -> None:
        if self._lingering:
            return  # parsed in the same read as the frame that failed the connection
        now = self.loop.time()
        elapsed = now - self._ping_refilled_at
        self._ping_refilled_at = now
        self._ping_tokens = min(PING_BURST, self._ping_tokens + elapsed * PING_RATE_PER_S)
        if self._ping_tokens < 1:
            if not self.close_sent:
                logger.info("closing a WebSocket that sends too many pings")
                self.conn.fail(CloseCode.POLICY_VIOLATION, "too many pings")
                self.handle_parser_exception()
            return
        self._ping_tokens -= 1
        super().handle_ping()

    # Ending the connection: always with a close frame, then linger

    async def run_asgi(self) -> None:
        """uvicorn's, except that a WebSocket the application leaves open gets a close frame.

        uvicorn closes the TCP connection without one when the application raises or returns
        without ``websocket.close``; the peer then sees 1006 and cannot tell a server fault
        from a network cut. Here it gets 1011 (the server hit an unexpected condition, RFC
        6455 section 7.4.1) or 1000, with the lingering close of a failed connection.
        """
        try:
            result = await self.app(self.scope, self.receive, self.send)
        except ClientDisconnected:
            pass
        except BaseException:
            self.logger.exception("Exception in ASGI application\n")
            self.send_500_response()
            self._close_left_open(WsCloseCode.INTERNAL_ERROR)
        else:
            if not self.handshake_complete:
                self.logger.error("ASGI callable returned without completing handshake.")
                self.send_500_response()
            elif result is not None:
                self.logger.error("ASGI callable should return None, but returned '%s'.", result)
            self._close_left_open(WsCloseCode.NORMAL_CLOSURE)
        if self.close_timer is None:
            self.transport.close()

    def _close_left_open(self, code: WsCloseCode) -> None:
        open_websocket = self.handshake_complete and self.initial_response is None
        if not open_websocket or self.close_sent or self.transport.is_closing():
            return
        self.conn.fail(code)
        self.handle_parser_exception()

    def handle_parser_exception(self) -> None:
        """uvicorn's, except that the socket lingers instead of closing with input unread."""
        sent = self.conn.close_sent
        code, reason = (sent.code, sent.reason) if sent is not None else (1006, "")
        self.queue.put_nowait({"type": "websocket.disconnect", "code": code, "reason": reason})
        self.transport.write(b"".join(self.conn.data_to_send()))
        self.close_sent = True
        self._lingering = True
        if self.close_timer is not None:
            self.close_timer.cancel()
        # uvicorn leaves a socket with a close timer open when the application returns.
        self.close_timer = linger(self.transport, self.loop, self._limits.linger_s)
