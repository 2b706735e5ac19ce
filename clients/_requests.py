"""Client's bottom layer: its state; requests, replies, the write outbox, safe resends."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, TypeVar
from urllib.parse import urlsplit, urlunsplit

from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from clients._reconnect import Backoff, Cursor
from clients.errors import (
    ClientClosedError,
    ClientError,
    ConnectionLostError,
    RequestError,
    _ConnectionLost,
    request_error,
)
from clients.events import _Inbox
from protocol import (
    Ack,
    ClientFrame,
    Codec,
    ErrorReply,
    Frame,
    JsonCodec,
    MsgpackCodec,
    ProtocolViolation,
    SphereId,
    Welcome,
)

Encoding = Literal["json", "msgpack"]
F = TypeVar("F", bound=Frame)

# Why: enough to absorb a burst of a few hundred messages while a handler runs, small enough
# that an application that stopped reading costs little memory (it catches up from its cursor).
DEFAULT_MAX_EVENTS = 1000


@dataclass(slots=True, eq=False)
class _Write:
    """A write in the outbox: how to build its frame, and its reply once one comes."""

    make: Callable[[str], ClientFrame]
    reply: asyncio.Future[Frame]
    sent_on: ClientConnection | None = None


def _discard(reply: asyncio.Future[Frame]) -> None:
    """Settle a reply nobody awaits any more, so asyncio does not report it as lost."""
    if not reply.done():
        reply.cancel()
    elif not reply.cancelled():
        reply.exception()


def _expect(reply: Frame, kind: type[F]) -> F:
    if not isinstance(reply, kind):
        raise ProtocolViolation(f"expected {kind.TYPE}, got {reply.TYPE}")
    return reply


def ws_url(url: str) -> str:
    """The WebSocket endpoint for ``url``: ``http(s)`` becomes ``ws(s)`` and a bare host
    gets the ``/ws`` path, so ``http://localhost:8000`` works as well as the full URL."""
    parts = urlsplit(url)
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme)
    path = parts.path if parts.path not in ("", "/") else "/ws"
    return urlunsplit((scheme, parts.netloc, path, parts.query, ""))


class RequestLayer:
    """A client's state; requests and writes, resent safely across connections."""

    def __init__(
        self,
        url: str,
        token: str,
        *,
        encoding: Encoding = "json",
        reconnect: bool = True,
        backoff: Backoff | None = None,
        connect_timeout_s: float = 10.0,
        request_timeout_s: float = 10.0,
        write_timeout_s: float = 60.0,
        max_events: int = DEFAULT_MAX_EVENTS,
    ) -> None:
        if encoding not in ("json", "msgpack"):
            raise ValueError(f"unknown encoding {encoding!r}")
        self.url = ws_url(url)
        self._token = token
        self._codec: Codec = JsonCodec() if encoding == "json" else MsgpackCodec()
        self._reconnect = reconnect
        self._backoff = backoff or Backoff()
        self._connect_timeout_s = connect_timeout_s
        self._request_timeout_s = request_timeout_s
        self._write_timeout_s = write_timeout_s
        self._inbox = _Inbox(max_events)
        self._cursors: dict[SphereId, Cursor] = {}
        # Spheres whose charter must be accepted first: kept to resume from once it is.
        self._set_aside: dict[SphereId, Cursor] = {}
        self._pending: dict[str, asyncio.Future[Frame]] = {}  # by ref, for requests
        self._write_replies: dict[str, asyncio.Future[Frame]] = {}  # by ref, for writes
        self._outbox: dict[int, _Write] = {}  # unanswered writes, in first-sent order
        self._write_seq = 0
        self._refs = 0
        self._ws: ClientConnection | None = None
        self._welcome: Welcome | None = None
        self._last_send = 0.0
        # Set while requests may go out (connected), and for good once they must fail.
        self._gate = asyncio.Event()
        self._resync_due = asyncio.Event()
        self._runner: asyncio.Task[None] | None = None
        self._connected_once = False
        self._failure: ClientError | None = None
        self._closed = False

    # -- requests -------------------------------------------------------------------------

    async def _write(self, make: Callable[[str], ClientFrame]) -> Ack:
        """Send a write through the outbox and return its ack, resending it (same content,
        new ``ref``) after a retryable error."""
        attempt = 0
        async with asyncio.timeout(self._write_timeout_s):
            while True:
                self._raise_if_ended()
                reply = await self._outboxed(make)
                if isinstance(reply, ErrorReply):
                    await self._retry_after(request_error(reply), attempt)
                    attempt += 1
                    continue
                return _expect(reply, Ack)

    async def _outboxed(self, make: Callable[[str], ClientFrame]) -> Frame:
        """Send a write now if connected, else when a connection opens, and return the reply.

        The write stays in the outbox until answered: a new connection resends what the
        outbox holds in first-sent order, before any other request, so pipelined writes keep
        their order across a reconnect.
        """
        write = _Write(make, asyncio.get_running_loop().create_future())
        self._write_seq += 1
        seq = self._write_seq
        self._outbox[seq] = write
        try:
            if self._gate.is_set() and self._ws is not None:
                await self._send_write(write, self._ws)
            return await write.reply
        finally:
            del self._outbox[seq]
            _discard(write.reply)

    async def _send_write(self, write: _Write, ws: ClientConnection) -> None:
        write.sent_on = ws
        ref = self._next_ref()
        self._write_replies[ref] = write.reply
        with contextlib.suppress(_ConnectionLost):  # the next connection resends it
            await self._send(write.make(ref))

    async def _flush_outbox(self, ws: ClientConnection) -> None:
        """Resend, oldest first, the writes not yet sent on ``ws`` (including any queued
        meanwhile), then let other requests go out."""
        while self._ws is ws:
            unsent = [
                w for w in self._outbox.values() if w.sent_on is not ws and not w.reply.done()
            ]
            if not unsent:
                self._gate.set()
                return
            for write in unsent:
                if self._ws is ws and not write.reply.done():
                    await self._send_write(write, ws)

    async def _request(
        self,
        make: Callable[[str], ClientFrame],
        reply_type: type[F],
        *,
        retry: bool = True,
    ) -> F:
        """Send ``make(ref)`` and return its reply. With ``retry``, resend it (new ``ref``,
        same content) after a lost connection or a retryable error."""
        attempt = 0
        async with asyncio.timeout(self._request_timeout_s):
            while True:
                try:
                    reply = await self._attempt(make)
                except _ConnectionLost:
                    if not retry:
                        raise ConnectionLostError(
                            "the connection dropped before the reply"
                        ) from None
                    continue
                if isinstance(reply, ErrorReply):
                    error = request_error(reply)
                    if not retry:
                        raise error
                    await self._retry_after(error, attempt)
                    attempt += 1
                    continue
                return _expect(reply, reply_type)

    async def _retry_after(self, error: RequestError, attempt: int) -> None:
        """Wait before resending after ``error``; raise it if resending cannot help."""
        if not error.retryable:
            raise error
        if error.retry_after_ms is not None:
            await asyncio.sleep(error.retry_after_ms / 1000)
        else:
            await asyncio.sleep(self._backoff.delay_s(attempt))

    async def _attempt(self, make: Callable[[str], ClientFrame]) -> Frame:
        """One send and the reply to it; raises ``_ConnectionLost`` if the connection goes."""
        await self._gate.wait()
        self._raise_if_ended()
        ref = self._next_ref()
        reply: asyncio.Future[Frame] = asyncio.get_running_loop().create_future()
        self._pending[ref] = reply
        try:
            await self._send(make(ref))
            return await reply
        finally:
            self._pending.pop(ref, None)
            _discard(reply)

    def _next_ref(self) -> str:
        self._refs += 1
        return str(self._refs)

    async def _send(self, frame: ClientFrame) -> None:
        ws = self._ws
        if ws is None:
            raise _ConnectionLost
        try:
            await ws.send(self._codec.encode(frame))
        except ConnectionClosed:
            self._went_down(ws)
            raise _ConnectionLost from None
        self._last_send = asyncio.get_running_loop().time()

    def _raise_if_ended(self) -> None:
        if self._failure is not None:
            raise self._failure
        if self._closed:
            raise ClientClosedError("the client is closed")

    def _fail_pending(self, error: BaseException, *, writes: bool) -> None:
        """Fail the requests waiting for a reply, and with ``writes`` the outbox too."""
        replies = list(self._pending.values())
        self._pending.clear()
        self._write_replies.clear()  # a write's reply can only come on the connection it used
        if writes:
            replies += [write.reply for write in self._outbox.values()]
        for reply in replies:
            if not reply.done():
                reply.set_exception(error)

    def _went_down(self, ws: ClientConnection) -> None:
        """Forget ``ws`` as the current connection; its requests fail over to the next one."""
        if self._ws is not ws:
            return
        self._ws = None
        if not (self._closed or self._failure):
            self._gate.clear()
        self._fail_pending(_ConnectionLost(), writes=False)
