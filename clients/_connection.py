"""Client's connection layer: connect, authenticate, read, keep alive, reconnect with backoff."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

import websockets
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI
from websockets.typing import Subprotocol

from clients._reconnect import MAX_UNLISTED_CLOSES, is_listed, should_reconnect
from clients._subscriptions import SubscriptionLayer
from clients.errors import ClientError, ConnectionTerminatedError, RequestError, _ConnectionLost
from clients.events import Connected, Disconnected
from protocol import (
    MAX_SERVER_FRAME_BYTES,
    PROTOCOL_VERSION,
    Auth,
    Batch,
    ErrorReply,
    Frame,
    Ping,
    ProtocolViolation,
    Welcome,
)

logger = logging.getLogger("clients.client")  # one logger name for the SDK client


# Why: the server drops idle connections after ``idle_timeout_ms``; pinging at a third of it
# leaves two chances before that (docs/protocol.md section 18).
PING_FRACTION = 3
# Why: a close handshake with a dead peer should not hold up a reconnect or a shutdown.
CLOSE_TIMEOUT_S = 2.0


@dataclass(frozen=True, slots=True)
class _Ending:
    """How one connection ended."""

    close_code: int | None
    reason: str
    uptime_s: float  # 0 when it never got past the handshake


class _SessionEnded(Exception):
    """Internal: the reader finished; ends the connection's task group."""


class ConnectionLayer(SubscriptionLayer):
    """The task that owns the WebSocket: one connection after another until closed or ended."""

    async def _read(self, ws: ClientConnection, first: list[Frame]) -> None:
        for frame in first:
            self._dispatch(frame)
        try:
            async for data in ws:
                try:
                    frame = self._codec.decode_server(data)
                except ProtocolViolation as exc:
                    logger.warning("ignored an undecodable frame from the server: %s", exc)
                    continue
                for inner in frame.frames if isinstance(frame, Batch) else (frame,):
                    self._dispatch(inner)
        except ConnectionClosed:
            pass

    async def _keepalive(self, idle_timeout_ms: int) -> None:
        interval_s = idle_timeout_ms / 1000 / PING_FRACTION
        loop = asyncio.get_running_loop()
        while True:
            idle_s = loop.time() - self._last_send
            if idle_s < interval_s:
                await asyncio.sleep(interval_s - idle_s)
                continue
            try:
                await self._send(Ping())
            except _ConnectionLost:
                return

    async def _run(self) -> None:
        """Connect, serve, and reconnect after a jittered backoff, until closed or ended."""
        attempt = 0
        unlisted = 0
        try:
            while True:
                ending = await self._connect_and_serve()
                if ending.uptime_s >= self._backoff.reset_after_s:
                    attempt = unlisted = 0
                unlisted = 0 if is_listed(ending.close_code) else unlisted + 1
                detail = f"close {ending.close_code}: {ending.reason or 'no reason'}"
                if not should_reconnect(ending.close_code):
                    raise ConnectionTerminatedError(detail, close_code=ending.close_code)
                if not self._reconnect or unlisted >= MAX_UNLISTED_CLOSES:
                    raise ConnectionTerminatedError(
                        f"gave up reconnecting after {detail}", close_code=ending.close_code
                    )
                delay_s = self._backoff.delay_s(attempt)
                attempt += 1
                logger.info("connection ended (%s); reconnecting in %.2f s", detail, delay_s)
                self._inbox.offer(Disconnected(ending.close_code, ending.reason, delay_s))
                await asyncio.sleep(delay_s)
        except ClientError as exc:
            self._end(exc)
        except Exception as exc:  # a bug: end the client loudly rather than hang its callers
            logger.exception("the client's connection task failed")
            self._end(ClientError(f"internal client error: {exc!r}"))

    def _end(self, failure: ClientError) -> None:
        logger.warning("connection to %s terminated: %s", self.url, failure)
        self._failure = failure
        self._gate.set()
        self._fail_pending(failure, writes=True)
        self._inbox.close(failure)

    async def _connect_and_serve(self) -> _Ending:
        try:
            async with asyncio.timeout(self._connect_timeout_s):
                ws = await websockets.connect(
                    self.url,
                    subprotocols=[Subprotocol(self._codec.subprotocol)],
                    compression=None,  # the server does not negotiate permessage-deflate
                    max_size=MAX_SERVER_FRAME_BYTES,
                    close_timeout=CLOSE_TIMEOUT_S,
                )
        except InvalidStatus as exc:
            status = exc.response.status_code
            if 400 <= status < 500:  # refused outright (origin, path): retrying cannot help
                raise ConnectionTerminatedError(f"handshake refused with HTTP {status}") from None
            return _Ending(None, f"handshake failed with HTTP {status}", 0.0)
        except InvalidURI as exc:
            raise ConnectionTerminatedError(f"invalid URL: {exc}") from None
        except (OSError, TimeoutError, InvalidHandshake, EOFError) as exc:
            return _Ending(None, f"cannot connect: {exc or type(exc).__name__}", 0.0)
        try:
            return await self._serve(ws)
        finally:
            self._went_down(ws)
            await ws.close()

    async def _handshake(self, ws: ClientConnection) -> tuple[Welcome, list[Frame]]:
        """Send ``auth`` and read the answer: ``welcome`` (plus any frames batched with it)."""
        async with asyncio.timeout(self._connect_timeout_s):
            await ws.send(
                self._codec.encode(Auth(token=self._token, protocol=PROTOCOL_VERSION, ref="auth"))
            )
            frame = self._codec.decode_server(await ws.recv())
        frames: list[Frame] = list(frame.frames) if isinstance(frame, Batch) else [frame]
        first = frames.pop(0) if frames else frame
        if isinstance(first, ErrorReply):
            with_code = RequestError(first)
            if first.retryable:  # the server could not check the token right now
                raise _ConnectionLost(str(with_code))
            async with asyncio.timeout(CLOSE_TIMEOUT_S):
                await ws.wait_closed()  # to report the close code the server chose
            raise ConnectionTerminatedError(
                f"authentication refused: {with_code}", close_code=ws.close_code
            )
        if not isinstance(first, Welcome):
            raise ProtocolViolation(f"expected welcome, got {first.TYPE}")
        return first, frames

    async def _serve(self, ws: ClientConnection) -> _Ending:
        loop = asyncio.get_running_loop()
        try:
            welcome, first = await self._handshake(ws)
        except (ConnectionClosed, _ConnectionLost, TimeoutError, ProtocolViolation) as exc:
            return _Ending(ws.close_code, f"handshake failed: {exc or type(exc).__name__}", 0.0)
        started = self._last_send = loop.time()
        self._ws, self._welcome = ws, welcome
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self._keepalive(welcome.limits.idle_timeout_ms))
                group.create_task(self._reopen(ws, welcome))
                group.create_task(self._resync_lagging())
                await self._read(ws, first)
                raise _SessionEnded
        except* _SessionEnded:
            pass
        return _Ending(ws.close_code, ws.close_reason or "", loop.time() - started)

    async def _reopen(self, ws: ClientConnection, welcome: Welcome) -> None:
        """Make a new connection usable: writes first (in order), then other requests,
        then every sphere's subscription."""
        await self._flush_outbox(ws)
        self._inbox.offer(Connected(welcome, reconnected=self._connected_once))
        self._connected_once = True
        await self._resume_all()
