"""The WebSocket endpoint: handshake checks, authentication, then the frame loop.

This is a plain ASGI app, which ``CloisonApp`` calls before Starlette's middleware, so the hot
path costs no wrapper objects. It is also the one place where exceptions become wire codes:
``CloisonError`` carries its own code, anything else is logged with its traceback and
answered with ``internal``.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import secrets
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from starlette.types import Receive, Scope, Send

from protocol import (
    CODECS,
    MAX_HISTORY_LIMIT,
    PROTOCOL_VERSION,
    Auth,
    CloisonError,
    CloseCode,
    Codec,
    ConnId,
    ErrorCode,
    ErrorReply,
    Frame,
    JsonCodec,
    Limits,
    ProtocolViolation,
    RateLimitedError,
    ServerSession,
    Welcome,
    Wire,
    codec_for,
)
from server.auth import active_user, refusal, split_token, touch, verify_token
from server.config import Config
from server.connection import Connection, Flusher
from server.hub import Hub
from server.metrics import Metrics
from server.operations import WRITES, Caller, Operations, PreparedWrite, now_ms
from server.origins import OriginPolicy
from server.sessions.registry import SESSION_ENDED, LiveSession, SessionRegistry
from server.transport import AsgiTransport
from server.wire import admission_ticket
from storage import Store, StoreError, UserRecord

logger = logging.getLogger(__name__)
T = TypeVar("T")

# Why: a client that sends this many invalid frames is broken or hostile; stop answering it.
MAX_VIOLATIONS = 100
# Why: timeouts are enforced to within a second; finer costs CPU for nothing.
SWEEP_INTERVAL_S = 1.0


def error_reply(exc: CloisonError) -> ErrorReply:
    retry_after = exc.retry_after_ms if isinstance(exc, RateLimitedError) else None
    return ErrorReply(
        code=exc.code.value,
        message=exc.message,
        retryable=exc.code.retryable,
        ref=exc.ref,
        retry_after_ms=retry_after,
    )


def internal_error(ref: str | None) -> ErrorReply:
    return ErrorReply(
        code=ErrorCode.INTERNAL.value, message="internal error", retryable=True, ref=ref
    )


@dataclass(frozen=True, slots=True)
class Login:
    """Who a connection authenticated as, its registered session, which ``auth`` ref."""

    user: UserRecord
    session: LiveSession
    ref: str | None


class Gateway:
    def __init__(
        self,
        config: Config,
        store: Store,
        hub: Hub,
        operations: Operations,
        metrics: Metrics,
        sessions: SessionRegistry,
    ) -> None:
        self._config = config
        self._metrics = metrics
        self._store = store
        self._hub = hub
        self._ops = operations
        self._origins = OriginPolicy(config.allowed_origins, config.public_url)
        self._ids = itertools.count(1)
        self._node = secrets.token_hex(3)
        self._sessions = sessions
        self._live: set[Connection] = set()
        self._flusher = Flusher()
        self._sweeper: asyncio.Task[None] | None = None
        self.limits = Limits(
            max_frame_bytes=config.max_frame_bytes,
            max_message_bytes=config.max_message_bytes,
            publish_rate_per_s=config.publish_rate_per_s,
            publish_burst=config.publish_burst,
            history_limit_max=MAX_HISTORY_LIMIT,
            idle_timeout_ms=int(config.idle_timeout_s * 1000),
        )

    @property
    def connections(self) -> int:
        """Open, authenticated WebSocket connections on this node."""
        return len(self._live)

    async def drain(self, batch: int, interval_s: float) -> None:
        """Close every connection with 1012 (service restart), ``batch`` at a time."""
        live = list(self._live)
        if live:
            logger.info("draining %d connections, %d at a time", len(live), batch)
        for start in range(0, len(live), batch):
            if start:
                await asyncio.sleep(interval_s)
            for conn in live[start : start + batch]:
                conn.abort(CloseCode.SERVICE_RESTART, "server restart")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (await receive())["type"] != "websocket.connect":
            return
        if not self._origins.allows(scope):
            logger.info("refused a cross-origin WebSocket")
            await send({"type": "websocket.close"})  # before accept: HTTP 403
            return
        offered: list[str] = list(scope.get("subprotocols", []))
        chosen = next((p for p in offered if p in CODECS), None)
        await send({"type": "websocket.accept", "subprotocol": chosen})
        if chosen is None and offered:
            close = {"code": CloseCode.UNSUPPORTED_PROTOCOL, "reason": "unsupported subprotocol"}
            await send({"type": "websocket.close", **close})
            return
        codec = codec_for(chosen or JsonCodec.subprotocol, self._config.max_frame_bytes)
        transport = AsgiTransport(send, codec.binary)
        login = await self._authenticate(receive, transport, codec)
        if login is None:
            return
        ticket = admission_ticket(scope)
        if ticket is not None:
            ticket.authenticated()  # off the unauthenticated caps (server/wire/admission.py)
        try:
            await self._run_session(login, codec, transport, receive)
        finally:
            self._sessions.leave(login.session)

    async def _run_session(
        self, login: Login, codec: Codec, transport: AsgiTransport, receive: Receive
    ) -> None:
        conn_id = ConnId(f"c_{self._node}_{next(self._ids)}")
        conn = Connection(
            conn_id,
            login.user.user_id,
            codec,
            transport,
            queue_max_bytes=self._config.queue_max_bytes,
            send_timeout_s=self._config.send_timeout_s,
            flusher=self._flusher,
        )
        if not self._sessions.attach(login.session, conn):
            reason = login.session.ended or "token revoked"
            await self._refuse(
                transport, codec, CloseCode.UNAUTHORIZED, ErrorCode.UNAUTHORIZED, reason, login.ref
            )
            return
        self._live.add(conn)
        self._start_sweeper()
        try:
            conn.send(
                Welcome(
                    user_id=login.user.user_id,
                    name=login.user.name,
                    conn_id=conn_id,
                    protocol=PROTOCOL_VERSION,
                    server_time_ms=now_ms(),
                    limits=self.limits,
                    ref=login.ref,
                )
            )
            await self._serve(Caller(login.user, conn), receive)
        finally:
            self._live.discard(conn)
            self._hub.drop_connection(conn)
            if conn.close_code is not None:
                self._metrics.disconnects.labels(str(conn.close_code.value)).inc()
            await conn.aclose(self._config.send_timeout_s)

    async def _authenticate(
        self, receive: Receive, transport: AsgiTransport, codec: Codec
    ) -> Login | None:
        """Read and check the ``auth`` frame; on failure, say why and close."""
        try:
            async with asyncio.timeout(self._config.auth_timeout_s):
                message = await receive()
        except TimeoutError:
            await transport.close(CloseCode.AUTH_TIMEOUT, "no auth frame in time")
            return None
        if message["type"] != "websocket.receive":
            return None
        ref: str | None = None
        try:
            frame = codec.decode_client(_payload(message))
            ServerSession().accept(frame)
            assert isinstance(frame, Auth)
            ref = frame.ref
            if frame.protocol != PROTOCOL_VERSION:
                await self._refuse(
                    transport,
                    codec,
                    CloseCode.UNSUPPORTED_PROTOCOL,
                    ErrorCode.UNSUPPORTED_VERSION,
                    f"this server speaks protocol {PROTOCOL_VERSION}",
                    ref,
                )
                return None
            parts = split_token(frame.token)
            if parts is None:
                await self._refuse_token(transport, codec, ref)
                return None
            # Registered before the token is read: see server/sessions/registry.py.
            session = self._sessions.enter(parts[0])
            try:
                login = await self._check(session, parts[1], transport, codec, ref)
            except BaseException:
                self._sessions.leave(session)
                raise
            if login is None:
                self._sessions.leave(session)
            return login
        except StoreError:
            logger.exception("authentication could not reach the store")
            await self._refuse(
                transport,
                codec,
                CloseCode.TRY_AGAIN_LATER,
                ErrorCode.UNAVAILABLE,
                "the server cannot check tokens right now",
                ref,
                retryable=True,
            )
            return None
        except CloisonError as exc:
            await self._refuse(
                transport,
                codec,
                CloseCode.UNAUTHORIZED,
                ErrorCode.UNAUTHORIZED,
                f"authentication failed: {exc.message}",
                exc.ref,
            )
            return None

    async def _check(
        self,
        session: LiveSession,
        secret: str,
        transport: AsgiTransport,
        codec: Codec,
        ref: str | None,
    ) -> Login | None:
        """Read the token, then the user, each after registering what a change would name."""
        token = await verify_token(self._store, session.token_id, secret, now_ms=now_ms())
        if token is None:
            await self._refuse_token(transport, codec, ref)
            return None
        expires_ms = token.expires_ms
        if token.session_id is not None:
            # The socket belongs to the sign-in session: registered under it before it is read,
            # it lives until the session ends, not only until this access token expires.
            self._sessions.join_signin(session, token.session_id)
            signin = await self._store.get_session(token.session_id)
            if signin is None or not signin.live(now_ms()):
                await self._refuse_token(transport, codec, ref, SESSION_ENDED)
                return None
            expires_ms = signin.expires_ms
        if not self._sessions.bind(session, token.user_id, expires_ms):
            limit = self._config.max_connections_per_user
            await transport.close(
                CloseCode.TOO_MANY_CONNECTIONS,
                f"too many connections for this user on this node (at most {limit})",
            )
            return None
        user = await active_user(self._store, token.user_id)
        if user is None:
            await self._refuse_token(
                transport, codec, ref, await refusal(self._store, token.user_id)
            )
            return None
        if session.ended is not None:
            await self._refuse_token(transport, codec, ref, session.ended)
            return None
        await touch(self._store, token, now_ms=now_ms())
        return Login(user, session, ref)

    async def _refuse_token(
        self,
        transport: AsgiTransport,
        codec: Codec,
        ref: str | None,
        reason: str = "invalid, expired or revoked token",
    ) -> None:
        await self._refuse(
            transport, codec, CloseCode.UNAUTHORIZED, ErrorCode.UNAUTHORIZED, reason, ref
        )

    async def _refuse(
        self,
        transport: AsgiTransport,
        codec: Codec,
        close: CloseCode,
        code: ErrorCode,
        message: str,
        ref: str | None,
        *,
        retryable: bool = False,
    ) -> None:
        reply = ErrorReply(code=code.value, message=message, retryable=retryable, ref=ref)
        await transport.send(codec.encode(reply))
        await transport.close(close, message[:120])

    async def _serve(self, caller: Caller, receive: Receive) -> None:
        conn = caller.conn
        assert conn is not None
        codec = conn.codec
        session = ServerSession()
        session.authenticated()
        inflight = asyncio.Semaphore(self._config.max_inflight_writes)
        loop = asyncio.get_running_loop()
        writes: set[asyncio.Task[None]] = set()
        violations = 0
        try:
            while not conn.closing:
                message = await receive()
                if message["type"] != "websocket.receive":
                    break
                conn.last_seen = loop.time()
                try:
                    frame = codec.decode_client(_payload(message))
                    session.accept(frame)
                except ProtocolViolation as exc:
                    violations += 1
                    conn.send(error_reply(exc))
                    if violations >= MAX_VIOLATIONS:
                        conn.abort(CloseCode.POLICY_VIOLATION, "too many invalid frames")
                    continue
                if isinstance(frame, WRITES):
                    # Checks run in arrival order; commits then run concurrently so one client
                    # can pipeline writes into a group commit, still sequenced in send order.
                    # The semaphore bounds them, and pauses reading when full.
                    prepared = await self._guarded(
                        conn, getattr(frame, "ref", None), self._ops.prepare_write(caller, frame)
                    )
                    if prepared is None:
                        continue
                    await inflight.acquire()
                    task = asyncio.create_task(self._commit(conn, prepared))
                    writes.add(task)
                    task.add_done_callback(writes.discard)
                    task.add_done_callback(lambda _: inflight.release())
                else:
                    await self._run(caller, frame)
        finally:
            session.closed()
            if writes:
                # Finish in-flight writes: the client may have been acked or may retry.
                await asyncio.wait(writes, timeout=self._config.shutdown_timeout_s)

    async def _guarded(self, conn: Connection, ref: str | None, work: Awaitable[T]) -> T | None:
        """Await ``work``; on failure send the error reply and return None."""
        try:
            return await work
        except CloisonError as exc:
            exc.ref = ref
            if isinstance(exc, StoreError):
                self._metrics.store_errors.inc()
            conn.send(error_reply(exc))
        except Exception:
            logger.exception("request failed", extra={"conn_id": conn.conn_id})
            conn.send(internal_error(ref))
        return None

    async def _commit(self, conn: Connection, write: PreparedWrite) -> None:
        ack = await self._guarded(conn, write.ref, self._ops.commit_write(write))
        if ack is not None:
            self._metrics.writes.labels("duplicate" if ack.duplicate else "new").inc()
            conn.send(ack)

    async def _run(self, caller: Caller, frame: Frame) -> None:
        conn = caller.conn
        assert conn is not None
        ref: str | None = getattr(frame, "ref", None)
        reply = await self._guarded(conn, ref, self._ops.handle(caller, frame))
        if reply is not None:
            conn.send(reply)

    def _start_sweeper(self) -> None:
        if self._sweeper is None:
            self._sweeper = asyncio.create_task(self._sweep(), name="connection sweeper")

    async def _sweep(self) -> None:
        """Once a second: close idle connections and give up on stalled ones.

        One timer for every connection instead of a timeout around each receive and send,
        which would cost a timer handle per frame on the hot path. A connection stays
        open at most one sweep interval longer than its timeout.
        """
        loop = asyncio.get_running_loop()
        idle_s = self._config.idle_timeout_s
        while True:
            await asyncio.sleep(SWEEP_INTERVAL_S)
            self._sessions.expire(now_ms())  # tokens that expired: 4500 "token expired"
            now = loop.time()
            for conn in list(self._live):
                if conn.stalled(now):
                    conn.kill()
                elif now - conn.last_seen > idle_s:
                    conn.abort(CloseCode.IDLE_TIMEOUT, "idle")

    async def aclose(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            await asyncio.gather(self._sweeper, return_exceptions=True)
            self._sweeper = None


def _payload(message: Mapping[str, Any]) -> Wire:
    text = message.get("text")
    if text is not None:
        return str(text)
    data = message.get("bytes")
    return bytes(data) if data is not None else b""
