"""One connection: websockets' sans-I/O client protocol on a bare asyncio transport."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar, cast

import msgpack
import orjson
from websockets.client import ClientProtocol
from websockets.frames import Frame as WsFrame, Opcode
from websockets.protocol import State
from websockets.typing import Subprotocol
from websockets.uri import WebSocketURI, parse_uri

from protocol import (
    PROTOCOL_VERSION,
    Auth,
    Codec,
    ErrorReply,
    Frame,
    JsonCodec,
    MsgpackCodec,
    Ping,
    Welcome,
)
from scripts.loadtest.limits import (
    CONNECT_TIMEOUT_S,
    MAX_INBOUND_BYTES,
    REQUEST_TIMEOUT_S,
    LoadError,
)

T = TypeVar("T")


FrameHandler = Callable[[dict[str, Any], int], None]
Buffer = bytes | bytearray | memoryview
_OP_BINARY = Opcode.BINARY.value
_OP_CLOSE = Opcode.CLOSE.value
_OP_PING = Opcode.PING.value
_FIN_TEXT = 0x80 | Opcode.TEXT.value
_FIN_BINARY = 0x80 | Opcode.BINARY.value
_FIN_DATA = (_FIN_TEXT, _FIN_BINARY)


@dataclass(frozen=True, slots=True)
class Endpoint:
    base_url: str  # http://host:port
    uri: WebSocketURI

    @classmethod
    def of(cls, base_url: str) -> Endpoint:
        base = base_url.rstrip("/")
        return cls(base, parse_uri(base.replace("http", "ws", 1) + "/ws"))


@dataclass(frozen=True, slots=True)
class Reply:
    """A reply frame as received (unvalidated), and when it arrived."""

    frame: dict[str, Any]
    arrived_ns: int
    codec: Codec

    def typed(self) -> Frame:
        """The reply validated into its frame class (off the hot path only)."""
        if isinstance(self.codec, JsonCodec):
            return self.codec.decode_server(orjson.dumps(self.frame))
        return self.codec.decode_server(msgpack.packb(self.frame))


def _ignore(frame: dict[str, Any], now_ns: int) -> None:
    pass


class WireConnection(asyncio.Protocol):
    """A protocol connection of the generator.

    Every received frame (batches unpacked) goes to ``handler(frame, arrival_ns)`` inside
    ``data_received``; a frame whose ``ref`` answers a pending ``request`` also resolves it,
    before the frames behind it are handled. Use ``open`` to connect, then ``request``/``send``,
    and ``close``/``abort`` to end; ``closed`` resolves with the close code when it is over.
    """

    def __init__(self, endpoint: Endpoint, encoding: str, handler: FrameHandler) -> None:
        self.codec: Codec = JsonCodec() if encoding == "json" else MsgpackCodec()
        self._json = encoding == "json"
        self._proto = ClientProtocol(
            endpoint.uri,
            subprotocols=[Subprotocol(self.codec.subprotocol)],
            max_size=MAX_INBOUND_BYTES,
        )
        self.handler = handler
        self._transport: asyncio.Transport | None = None
        loop = asyncio.get_running_loop()
        self._opened: asyncio.Future[None] = loop.create_future()
        self.closed: asyncio.Future[int | None] = loop.create_future()
        self._pending: dict[str, asyncio.Future[Reply]] = {}
        self._refs = itertools.count(1)
        self._fragments: list[Buffer] = []  # of one fragmented message
        self._writable = asyncio.Event()
        self._writable.set()
        self._framing = False  # past the handshake: frames are cut by _read_frames
        self._buffer = bytearray()
        self._close_code: int | None = None
        self.undecodable = 0

    @classmethod
    async def open(
        cls,
        endpoint: Endpoint,
        encoding: str,
        handler: FrameHandler = _ignore,
        source_host: str | None = None,
    ) -> WireConnection:
        """Connect and complete the WebSocket handshake, within CONNECT_TIMEOUT_S."""
        loop = asyncio.get_running_loop()
        conn = cls(endpoint, encoding, handler)
        local = (source_host, 0) if source_host else None
        async with asyncio.timeout(CONNECT_TIMEOUT_S):
            await loop.create_connection(
                lambda: conn, endpoint.uri.host, endpoint.uri.port, local_addr=local
            )
            try:
                await conn._opened
            except BaseException:
                conn.abort()
                raise
        return conn

    @property
    def is_open(self) -> bool:
        return self._framing and not self.closed.done()

    @property
    def writable(self) -> bool:
        return self._writable.is_set()

    async def wait_writable(self) -> None:
        await self._writable.wait()

    def send(self, frame: Frame) -> None:
        if self._proto.state is not State.OPEN:
            return
        data = self.codec.encode(frame)
        if isinstance(data, str):
            self._proto.send_text(data.encode())
        else:
            self._proto.send_binary(data)
        self._flush()

    async def request(self, frame: Frame, timeout_s: float = REQUEST_TIMEOUT_S) -> Reply:
        """Send ``frame`` with a fresh ``ref`` and wait for the frame that echoes it."""
        ref = f"r{next(self._refs)}"
        waiter: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
        self._pending[ref] = waiter
        try:
            self.send(dataclasses.replace(frame, ref=ref))  # type: ignore[type-var]
            async with asyncio.timeout(timeout_s):
                return await waiter
        finally:
            self._pending.pop(ref, None)

    def close(self) -> None:
        """Start the closing handshake; ``closed`` resolves when the server has closed."""
        if self._proto.state is State.OPEN and self._transport is not None:
            self._proto.send_close(1000)
            self._flush()

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self._proto.send_request(self._proto.connect())
        self._flush()

    def data_received(self, data: bytes) -> None:
        now_ns = time.perf_counter_ns()
        if self._framing:
            self._read_frames(data, now_ns)
            return
        # The opening handshake, and frames that came in the same segment, go through
        # websockets; its parser then hands over to ``_read_frames`` for good.
        self._proto.receive_data(data)
        for event in self._proto.events_received():
            if isinstance(event, WsFrame):
                self._on_frame(event.opcode.value, event.fin, event.data, now_ns)
            elif not self._opened.done():
                failure = self._proto.handshake_exc
                if failure is None:
                    self._opened.set_result(None)
                    self._framing = True
                else:
                    self._opened.set_exception(LoadError(f"handshake failed: {failure}"))
        self._flush()
        if self._framing and self._proto.reader.buffer:
            rest = bytes(self._proto.reader.buffer)  # the start of a frame cut by the segment
            self._proto.reader.buffer.clear()
            self._read_frames(rest, now_ns)

    def _read_frames(self, data: bytes, now_ns: int) -> None:
        """Parse server frames (never masked, no extensions): the generator's hot path.

        websockets' generator-based parser costs about as much per frame as everything else
        the generator does per delivery, so frames are cut here in straight-line code.
        """
        buffered = self._buffer
        if buffered:
            buffered += data
            view: Buffer = buffered
        else:
            view = data
        size = len(view)
        pos = 0
        while size - pos >= 2:
            b0, b1 = view[pos], view[pos + 1]
            length = b1 & 0x7F
            head = 2
            if length == 126:
                if size - pos < 4:
                    break
                length = int.from_bytes(view[pos + 2 : pos + 4], "big")
                head = 4
            elif length == 127:
                if size - pos < 10:
                    break
                length = int.from_bytes(view[pos + 2 : pos + 10], "big")
                head = 10
            if b1 & 0x80 or b0 & 0x70 or length > MAX_INBOUND_BYTES:
                self.undecodable += 1  # masked, extension bits or too big: not our server
                self.abort()
                return
            end = pos + head + length
            if end > size:
                break
            if b0 in _FIN_DATA and not self._fragments:
                self._dispatch(view[pos + head : end], now_ns)  # the common case, inlined
            else:
                self._on_frame(b0 & 0x0F, bool(b0 & 0x80), view[pos + head : end], now_ns)
            pos = end
        if pos == size:
            buffered.clear()
        elif buffered:
            del buffered[:pos]
        else:
            buffered += view[pos:]

    def _on_frame(self, opcode: int, fin: bool, payload: Buffer, now_ns: int) -> None:
        if opcode <= _OP_BINARY:  # text, binary or continuation
            if not fin:
                self._fragments.append(payload)
                return
            if self._fragments:
                payload = b"".join([*self._fragments, payload])
                self._fragments.clear()
            self._dispatch(payload, now_ns)
        elif opcode == _OP_PING:
            if self._proto.state is State.OPEN:
                self._proto.send_pong(payload)
                self._flush()
        elif opcode == _OP_CLOSE and self._framing:
            self._close_code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
            if self._proto.state is State.OPEN:  # echo it; the server then closes TCP
                self._proto.send_close(self._close_code if self._close_code != 1005 else None)
                self._flush()

    def _dispatch(self, payload: Buffer, now_ns: int) -> None:
        try:
            frame = orjson.loads(payload) if self._json else msgpack.unpackb(payload)
            frames = frame["frames"] if frame.get("type") == "batch" else (frame,)
            pending = self._pending
            handler = self.handler
            for one in frames:
                if pending:
                    ref = one.get("ref")
                    waiter = pending.pop(ref, None) if ref is not None else None
                    if waiter is not None and not waiter.done():
                        waiter.set_result(Reply(one, now_ns, self.codec))
                handler(one, now_ns)
        except (ValueError, TypeError, KeyError, AttributeError, msgpack.UnpackException):
            self.undecodable += 1  # counted as an error by the owner; the stream goes on

    def _flush(self) -> None:
        transport = self._transport
        if transport is None or transport.is_closing():
            self._proto.data_to_send()
            return
        for chunk in self._proto.data_to_send():
            if chunk:
                transport.write(chunk)
            elif transport.can_write_eof():
                transport.write_eof()

    def eof_received(self) -> bool | None:
        if not self._framing:
            self._proto.receive_eof()
            self._flush()
        return None

    def pause_writing(self) -> None:
        self._writable.clear()

    def resume_writing(self) -> None:
        self._writable.set()

    def connection_lost(self, exc: Exception | None) -> None:
        self._writable.set()
        if not self._opened.done():
            self._opened.set_exception(LoadError(f"connection lost during handshake: {exc}"))
        for waiter in self._pending.values():
            if not waiter.done():
                waiter.set_exception(LoadError("connection closed"))
        if not self.closed.done():
            rcvd = self._proto.close_rcvd
            self.closed.set_result(self._close_code or (rcvd.code if rcvd is not None else None))


async def login(
    endpoint: Endpoint,
    encoding: str,
    token: str,
    handler: FrameHandler = _ignore,
    source_host: str | None = None,
) -> tuple[WireConnection, Welcome]:
    """Open a connection and authenticate; raises LoadError if refused."""
    conn = await WireConnection.open(endpoint, encoding, handler, source_host)
    try:
        reply = (await conn.request(Auth(token=token, protocol=PROTOCOL_VERSION))).typed()
    except BaseException:
        conn.abort()
        raise
    if not isinstance(reply, Welcome):
        conn.abort()
        raise LoadError(f"authentication refused: {_describe(reply)}")
    return conn, reply


def _describe(frame: Frame) -> str:
    if isinstance(frame, ErrorReply):
        return f"{frame.code}: {frame.message}"
    return frame.TYPE


async def close_all(conns: Iterable[WireConnection], timeout_s: float = 5.0) -> None:
    """Close connections cleanly, all at once; abort the ones still open after ``timeout_s``."""
    pending = []
    for conn in conns:
        if conn.is_open:
            conn.close()
            pending.append(conn)
    if pending:
        await asyncio.wait([c.closed for c in pending], timeout=timeout_s)
    for conn in pending:
        if not conn.closed.done():
            conn.abort()


async def bounded_pool(
    items: Sequence[T], work: Callable[[T], Awaitable[None]], concurrency: int
) -> None:
    """Run ``work`` over ``items`` with at most ``concurrency`` in flight."""
    it = iter(items)

    async def worker() -> None:
        for item in it:
            await work(item)

    async with asyncio.TaskGroup() as group:
        for _ in range(max(1, min(concurrency, len(items)))):
            group.create_task(worker())


class Tasks:
    """Background tasks with an owner: strong references, failures surfaced, cancelled on close."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[None]] = set()
        self.failures: list[BaseException] = []

    def spawn(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        failure = None if task.cancelled() else task.exception()
        if failure is not None:
            self.failures.append(failure)

    async def aclose(self) -> None:
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)


async def keepalive(conns: Callable[[], Iterable[WireConnection]], interval_s: float) -> None:
    """Send a ``ping`` on every open connection each ``interval_s`` until cancelled."""
    while True:
        await asyncio.sleep(interval_s)
        for conn in conns():
            if conn.is_open:
                conn.send(Ping())
