"""Cloison load generator: fan-out, saturation, idle, reconnect and history scenarios.

    cloison loadtest [fanout|saturate|idle|reconnect|history] (--spawn | --url URL) [options]

Scenarios (every option is checked against a hard cap):

- ``fanout`` (default): S spheres x M subscribing members, P publisher connections spread
  over the spheres, offering R messages/s in total for T seconds (``--rate`` may be given
  several times: one phase per rate, on the same connections).
- ``saturate``: the fan-out topology, stepping the offered rate x``--factor`` from
  ``--start-rate`` until a step fails, then bisecting ``--bisections`` times between the best
  pass and the lowest failure. A step passes when its p99 is at most ``--p99-ms``, every
  acknowledged message reached every subscriber after the drain, nothing was duplicated or
  reordered, no request failed, and the generator really offered 95 % of the rate. The result
  is the delivered rate of the best passing step and the server CPU per delivery there.
- ``idle``: N connections, each authenticated and subscribed to one of K spheres; reports the
  server's RSS growth per 1,000 connections.
- ``reconnect``: N subscribed clients; while publishers keep publishing, every connection drops
  at once and reconnects with ``since`` = its last applied position. Reports the time until all
  are subscribed again and what was lost, duplicated or reordered.
- ``history``: publishes M messages into one sphere, then readers page back through it;
  pages/s, page latency, and whether every message was read exactly once and in order.

Theory of operation. Subscribers count every delivered ``message`` against what publishers
had acknowledged: per subscriber, an offset seen twice is a duplicate, an offset below the
highest one seen is reordered, and an acknowledged offset never seen after the drain is lost.
Nothing is assumed from counts alone. The per-subscriber state is the highest offset up to
which everything arrived plus the few offsets seen above it, so memory stays flat for long
runs. Latency is publish-send to delivery on ``time.perf_counter_ns`` (CLOCK_MONOTONIC, one
clock for every process of the machine), kept in log-linear buckets (within 1.6 %), which
merge across processes. Connections are websockets' sans-I/O client on bare asyncio
transports: frames are handled inside ``data_received`` with no task switch or queue per
message, because on a small machine the generator costs about as much per delivery as the
server it measures; ``--processes`` spreads subscribers over more generator processes.

Targets: ``--spawn`` starts a fresh server (temporary data directory, write rate limits lifted,
``--server-arg`` passed through, ``--taskset-server`` to pin it) and stops it afterwards;
``--url`` with ``--admin-token`` uses a running one (``--server-pid`` for CPU and RSS). With
``--relay`` the target is the baseline relay of ``scripts/bench_relay.py``: there is no admin
API, so tokens and sphere ids are made up. Everything is bounded in count and time: each
option has a hard cap and the whole run has ``--max-run-s``.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import concurrent.futures
import contextlib
import dataclasses
import http.client
import itertools
import json
import multiprocessing
import multiprocessing.connection
import os
import queue
import random
import re
import resource
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from collections import Counter, deque
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Coroutine,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar, cast

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
    History,
    JsonCodec,
    MessageId,
    MsgpackCodec,
    Ping,
    Publish,
    SphereId,
    StreamPosition,
    Subscribe,
    Subscribed,
    Welcome,
)

SCENARIOS = ("fanout", "saturate", "idle", "reconnect", "history")

# Hard caps: an option above its cap is refused, so a typo cannot run away.
MAX_CONNECTIONS = 100_000  # the stretch goal for one machine
MAX_RATE_PER_S = 200_000.0  # messages/s offered in total
MAX_SECONDS = 600.0  # one publishing phase, one idle hold or one history pass
MAX_DRAIN_S = 120.0
MAX_PHASES = 16  # fixed rates in one fan-out run
MAX_STEPS = 40  # saturation steps, bisections included
MAX_PROCESSES = 64
MAX_HISTORY_MESSAGES = 1_000_000
MAX_USERS = 20_000  # distinct users made through the admin API (one HTTP call or two each)
MAX_RUN_S = 4 * 3600.0

# Why: one handshake, auth and subscribe on loopback takes milliseconds; 10 s means a storm.
CONNECT_TIMEOUT_S = 10.0
REQUEST_TIMEOUT_S = 30.0
# Why: acks after the last publish of a phase normally follow within a group commit.
ACK_TIMEOUT_S = 10.0
# Why: a failed connect is retried a few times (listen backlog overflow during storms).
CONNECT_ATTEMPTS = 3
# Why: a subscriber the server closed (slow consumer) resumes, but a loop of closes is a bug.
MAX_RESUMES = 3
# Why: uvloop timers tick in 1 ms, so a shorter sleep busy-spins the loop and steals the CPU
# the generator needs; the publisher sends what is due in bursts instead.
MIN_SLEEP_S = 0.001
# Why: below this share of the asked rate, a step measures the generator, not the server.
OFFER_RATIO_MIN = 0.95
# Why: a generator this busy adds its own queueing delay; a step failing then is flagged.
GENERATOR_BUSY = 0.9
GENERATOR_BOUND = "generator-bound"
# Why: a little under the 28k ephemeral ports Linux gives each source address by default.
PORTS_PER_SOURCE_IP = 25_000
# Why: the server's option has no "off" (0 means its automatic cap); this is more sockets than
# any descriptor limit allows.
UNCAPPED_UNAUTHENTICATED = 1 << 30
# Why: the server closes a connection that sends nothing for idle_timeout_ms; ping at a third
# of it, and at least this often whatever the server announces.
KEEPALIVE_FRACTION = 1 / 3
KEEPALIVE_MAX_S = 30.0
PROGRESS_INTERVAL_S = 1.0
# Why: a history page is up to 1 MiB (MAX_SERVER_FRAME_BYTES); accept a little more.
MAX_INBOUND_BYTES = 2 * 1024 * 1024
# Why: fd headroom for the event loop, pipes and the admin HTTP calls.
FD_MARGIN = 128
HTTP_THREADS = 16
T = TypeVar("T")


class LoadError(Exception):
    """The run cannot go on: the target refused, a worker failed, a bound was hit."""


# ---------------------------------------------------------------------------------------------
# Latency histogram and offset accounting


_SUB_BITS = 6  # 64 sub-buckets per power of two: at most 1/64 = 1.6 % relative error
_BUCKETS = (41 << _SUB_BITS) + (1 << _SUB_BITS)  # up to 2**41 ns, about 36 minutes


class Histogram:
    """Nanosecond samples in log-linear buckets: bounded memory, mergeable, picklable."""

    __slots__ = ("counts", "max_ns", "total")

    def __init__(self) -> None:
        self.counts = [0] * _BUCKETS
        self.total = 0
        self.max_ns = 0

    def record(self, ns: int) -> None:
        if ns < 128:
            index = max(ns, 0)
        else:
            shift = ns.bit_length() - 7
            index = min((shift << _SUB_BITS) + (ns >> shift), _BUCKETS - 1)
        self.counts[index] += 1
        self.total += 1
        if ns > self.max_ns:
            self.max_ns = ns

    def merge(self, other: Histogram) -> None:
        for i, n in enumerate(other.counts):
            if n:
                self.counts[i] += n
        self.total += other.total
        self.max_ns = max(self.max_ns, other.max_ns)

    def percentile_ns(self, q: float) -> int:
        if not self.total:
            return 0
        rank = min(self.total - 1, int(q * self.total))
        seen = 0
        for index, n in enumerate(self.counts):
            seen += n
            if seen > rank:
                return min(_bucket_value(index), self.max_ns)
        return self.max_ns

    def summary_ms(self) -> dict[str, float]:
        return {
            "p50": round(self.percentile_ns(0.50) / 1e6, 3),
            "p95": round(self.percentile_ns(0.95) / 1e6, 3),
            "p99": round(self.percentile_ns(0.99) / 1e6, 3),
            "max": round(self.max_ns / 1e6, 3),
        }


def _bucket_value(index: int) -> int:
    if index < 128:
        return index
    shift = (index >> _SUB_BITS) - 1
    mantissa = index - (shift << _SUB_BITS)
    return (mantissa << shift) + (1 << shift) // 2  # the bucket's middle


# Acknowledged offsets of a sphere: inclusive (first, last) ranges, ascending and disjoint.
Ranges = list[tuple[int, int]]


def to_ranges(offsets: Iterable[int]) -> Ranges:
    ranges: Ranges = []
    for offset in sorted(set(offsets)):
        if ranges and ranges[-1][1] == offset - 1:
            ranges[-1] = (ranges[-1][0], offset)
        else:
            ranges.append((offset, offset))
    return ranges


def count_ranges(ranges: Ranges) -> int:
    return sum(last - first + 1 for first, last in ranges)


def _in_ranges(offset: int, ranges: Ranges, starts: list[int]) -> bool:
    i = bisect.bisect_right(starts, offset) - 1
    return i >= 0 and ranges[i][0] <= offset <= ranges[i][1]


# ---------------------------------------------------------------------------------------------
# One connection: websockets' sans-I/O client protocol on an asyncio transport


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


# ---------------------------------------------------------------------------------------------
# Subscribers


@dataclass(frozen=True, slots=True)
class Seat:
    """One subscribing connection to open: which sphere, as whom."""

    sphere_id: str
    token: str
    index: int  # global, for the source address


@dataclass(slots=True)
class Window:
    """What subscribers saw between two collections (merged across processes)."""

    delivered: int = 0
    duplicated: int = 0
    reordered: int = 0
    lost: int = 0
    errors: int = 0
    disconnects: int = 0
    close_codes: Counter[int] = field(default_factory=Counter)
    latency: Histogram = field(default_factory=Histogram)
    cpu_s: float = 0.0  # worker processes' CPU; the main process measures its own

    def merge(self, other: Window) -> None:
        self.delivered += other.delivered
        self.duplicated += other.duplicated
        self.reordered += other.reordered
        self.lost += other.lost
        self.errors += other.errors
        self.disconnects += other.disconnects
        self.close_codes.update(other.close_codes)
        self.latency.merge(other.latency)
        self.cpu_s += other.cpu_s


@dataclass(slots=True)
class Opened:
    connections: int = 0
    failures: int = 0
    latency: Histogram = field(default_factory=Histogram)  # connect + auth + subscribe
    first_failure: str = ""

    def merge(self, other: Opened) -> None:
        self.connections += other.connections
        self.failures += other.failures
        self.latency.merge(other.latency)
        self.first_failure = self.first_failure or other.first_failure


@dataclass(slots=True)
class Storm:
    """A reconnect storm: everyone dropped at ``started_ns`` and was live again by
    ``last_live_ns`` (both on the machine-wide monotonic clock)."""

    started_ns: int = 0
    last_live_ns: int = 0
    resumed: int = 0
    failures: int = 0
    latency: Histogram = field(default_factory=Histogram)  # drop -> subscribed, per client

    def merge(self, other: Storm) -> None:
        self.started_ns = min(self.started_ns or other.started_ns, other.started_ns)
        self.last_live_ns = max(self.last_live_ns, other.last_live_ns)
        self.resumed += other.resumed
        self.failures += other.failures
        self.latency.merge(other.latency)


_NEVER = 1 << 62  # the goal of a subscriber nobody waits for


class Subscriber:
    """One subscribed connection and its accounting.

    ``floor``: every offset in (base, floor] was delivered; ``above``: offsets delivered beyond
    floor + 1 (only after a gap or a reordering); ``top``: the highest offset delivered.
    """

    __slots__ = (
        "above",
        "base",
        "conn",
        "dropping",
        "epoch",
        "floor",
        "goal",
        "group",
        "resumes",
        "seat",
        "sphere_id",
        "top",
    )

    def __init__(self, seat: Seat, group: SubscriberGroup) -> None:
        self.seat = seat
        self.sphere_id = seat.sphere_id
        self.group = group
        self.conn: WireConnection | None = None
        self.base = self.floor = self.top = -1  # set by the first ``subscribed``
        self.above: set[int] = set()
        self.epoch = ""
        self.goal = _NEVER
        self.resumes = 0
        self.dropping = False

    def on_frame(self, frame: dict[str, Any], now_ns: int) -> None:
        kind = frame.get("type")
        if kind != "message":
            if kind == "subscribed" and frame.get("sphere_id") == self.sphere_id:
                position = frame["position"]
                self.epoch = position["epoch"]
                if self.floor < 0:
                    self.base = self.floor = self.top = position["offset"]
            elif kind == "error" and frame.get("ref") is None:
                self.group.errors += 1
            elif kind == "unsubscribed" and frame.get("ref") is None:
                self.group.errors += 1  # the server ended the subscription
            return
        if frame.get("sphere_id") != self.sphere_id:
            return
        group = self.group
        offset = frame["offset"]
        floor = self.floor
        if floor < 0:
            group.errors += 1  # a message before ``subscribed``: the protocol forbids it
            return
        above = self.above
        if offset <= floor or offset in above:
            group.duplicated += 1
            return
        if offset < self.top:
            group.reordered += 1
        else:
            self.top = offset
        if offset == floor + 1:
            floor = offset
            while above and floor + 1 in above:
                floor += 1
                above.discard(floor)
            self.floor = floor
            if floor >= self.goal:
                group.reached(self)
        else:
            above.add(offset)
        group.delivered += 1
        body = frame.get("body")
        if body:
            stamp = body[: body.find("|")]
            if stamp.isdigit():
                group.latency.record(now_ns - int(stamp))

    def missing(self, ranges: Ranges, starts: list[int]) -> int:
        """How many acknowledged offsets in ``ranges`` this subscriber has not seen."""
        if self.floor < 0:
            return 0
        lost = 0
        for first, last in ranges:
            first = max(first, self.base + 1)
            if first <= last:
                lost += last - first + 1 - max(0, min(last, self.floor) - first + 1)
        lost -= sum(1 for o in self.above if o > self.base and _in_ranges(o, ranges, starts))
        return lost


class SubscriberGroup:
    """The subscribers of one generator process.

    ``open`` connects them, ``collect`` waits until each has every acknowledged offset (or the
    drain ends) and returns what they saw since the previous collection, ``storm`` drops and
    resumes them all at once, ``aclose`` ends them. A subscriber the server closes resumes by
    itself with ``since``, up to MAX_RESUMES times.
    """

    def __init__(
        self, endpoint: Endpoint, encoding: str, source_hosts: Sequence[str], concurrency: int
    ) -> None:
        self.endpoint = endpoint
        self.encoding = encoding
        self.source_hosts = list(source_hosts)
        self.concurrency = concurrency
        self.subscribers: list[Subscriber] = []
        self.delivered = self.duplicated = self.reordered = self.errors = 0
        self.delivered_total = 0
        self.disconnects = 0
        self.close_codes: Counter[int] = Counter()
        self.latency = Histogram()
        self._pending: set[Subscriber] = set()
        self._complete = asyncio.Event()
        self._tasks = Tasks()
        self._closing = False
        self._keepalive_s = KEEPALIVE_MAX_S

    def live(self) -> tuple[int, int]:
        open_conns = sum(1 for s in self.subscribers if s.conn is not None and s.conn.is_open)
        return self.delivered_total + self.delivered, open_conns

    def _source(self, seat: Seat) -> str | None:
        hosts = self.source_hosts
        return hosts[seat.index % len(hosts)] if hosts else None

    async def _connect(self, sub: Subscriber, since: StreamPosition | None) -> None:
        conn, welcome = await login(
            self.endpoint, self.encoding, sub.seat.token, sub.on_frame, self._source(sub.seat)
        )
        self._keepalive_s = min(
            self._keepalive_s, welcome.limits.idle_timeout_ms / 1000 * KEEPALIVE_FRACTION
        )
        sub.conn = conn
        try:
            reply = await conn.request(Subscribe(sphere_id=SphereId(sub.sphere_id), since=since))
        except BaseException:
            conn.abort()
            raise
        typed = reply.typed()
        if not isinstance(typed, Subscribed):
            conn.abort()
            raise LoadError(f"subscribe refused: {_describe(typed)}")
        conn.closed.add_done_callback(lambda _: self._on_closed(sub, conn))

    async def _connect_retrying(self, sub: Subscriber, since: StreamPosition | None) -> None:
        for attempt in range(CONNECT_ATTEMPTS):
            try:
                await self._connect(sub, since)
                return
            except (OSError, TimeoutError, LoadError):
                if attempt == CONNECT_ATTEMPTS - 1:
                    raise
                await asyncio.sleep(random.uniform(0.05, 0.25) * (attempt + 1))  # jittered backoff

    async def open(self, seats: Sequence[Seat]) -> Opened:
        opened = Opened()

        async def one(seat: Seat) -> None:
            sub = Subscriber(seat, self)
            started = time.perf_counter_ns()
            try:
                await self._connect_retrying(sub, None)
            except (OSError, TimeoutError, LoadError) as exc:
                opened.failures += 1
                opened.first_failure = opened.first_failure or f"{type(exc).__name__}: {exc}"
                return
            opened.latency.record(time.perf_counter_ns() - started)
            self.subscribers.append(sub)

        await bounded_pool(seats, one, self.concurrency)
        opened.connections = len(self.subscribers)
        self._tasks.spawn(
            keepalive(lambda: (s.conn for s in self.subscribers if s.conn), self._keepalive_s)
        )
        return opened

    def _on_closed(self, sub: Subscriber, conn: WireConnection) -> None:
        if sub.conn is not conn or sub.dropping or self._closing:
            return
        self.disconnects += 1
        self.close_codes[conn.closed.result() or 1006] += 1
        if sub.resumes >= MAX_RESUMES:
            return
        sub.resumes += 1
        self._tasks.spawn(self._resume(sub))

    async def _resume(self, sub: Subscriber) -> None:
        try:
            await self._connect_retrying(sub, StreamPosition(max(sub.floor, 0), sub.epoch))
        except (OSError, TimeoutError, LoadError):
            self.errors += 1

    def reached(self, sub: Subscriber) -> None:
        sub.goal = _NEVER
        self._pending.discard(sub)
        if not self._pending:
            self._complete.set()

    async def collect(self, acked: Mapping[str, Ranges], drain_s: float) -> Window:
        tops = {sphere_id: r[-1][1] for sphere_id, r in acked.items() if r}
        self._pending = set()
        for sub in self.subscribers:
            goal = tops.get(sub.sphere_id)
            if goal is not None and sub.floor < goal:
                sub.goal = goal
                self._pending.add(sub)
        self._complete.clear()
        if self._pending:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(drain_s):
                    await self._complete.wait()
        for sub in self._pending:
            sub.goal = _NEVER
        self._pending = set()
        starts = {sphere_id: [first for first, _ in r] for sphere_id, r in acked.items()}
        lost = sum(
            sub.missing(acked[sub.sphere_id], starts[sub.sphere_id])
            for sub in self.subscribers
            if sub.sphere_id in acked
        )
        undecodable = sum(s.conn.undecodable for s in self.subscribers if s.conn is not None)
        window = Window(
            delivered=self.delivered,
            duplicated=self.duplicated,
            reordered=self.reordered,
            lost=lost,
            errors=self.errors + undecodable + len(self._tasks.failures),
            disconnects=self.disconnects,
            close_codes=self.close_codes,
            latency=self.latency,
        )
        self.delivered_total += self.delivered
        self.delivered = self.duplicated = self.reordered = self.errors = self.disconnects = 0
        self.close_codes = Counter()
        self.latency = Histogram()
        self._tasks.failures.clear()
        for sub in self.subscribers:
            if sub.conn is not None:
                sub.conn.undecodable = 0
        return window

    async def storm(self) -> Storm:
        """Drop every connection at once (TCP reset) and resume each with ``since``."""
        storm = Storm(started_ns=time.perf_counter_ns())
        subs = [s for s in self.subscribers if s.conn is not None]
        for sub in subs:
            sub.dropping = True
            assert sub.conn is not None
            sub.conn.abort()

        async def resume(sub: Subscriber) -> None:
            try:
                await self._connect_retrying(sub, StreamPosition(max(sub.floor, 0), sub.epoch))
            except (OSError, TimeoutError, LoadError):
                storm.failures += 1  # stays dropped: nothing resumes it again
                return
            sub.dropping = False
            now = time.perf_counter_ns()
            storm.latency.record(now - storm.started_ns)
            storm.last_live_ns = max(storm.last_live_ns, now)
            storm.resumed += 1

        await bounded_pool(subs, resume, self.concurrency)
        return storm

    async def aclose(self) -> None:
        self._closing = True
        await self._tasks.aclose()
        await close_all(s.conn for s in self.subscribers if s.conn is not None)


# ---------------------------------------------------------------------------------------------
# Subscriber groups in other processes


class Group(Protocol):
    async def open(self, seats: Sequence[Seat]) -> Opened: ...

    async def collect(self, acked: Mapping[str, Ranges], drain_s: float) -> Window: ...

    async def storm(self) -> Storm: ...

    def live(self) -> tuple[int, int]: ...  # deliveries so far, open connections

    async def aclose(self) -> None: ...


@dataclass(frozen=True, slots=True)
class WorkerPlan:
    base_url: str
    encoding: str
    source_hosts: tuple[str, ...]
    concurrency: int
    cpu: int | None


@dataclass(frozen=True, slots=True)
class OpenCommand:
    seats: list[Seat]


@dataclass(frozen=True, slots=True)
class CollectCommand:
    acked: dict[str, Ranges]
    drain_s: float


@dataclass(frozen=True, slots=True)
class StormCommand:
    pass


@dataclass(frozen=True, slots=True)
class CloseCommand:
    pass


@dataclass(frozen=True, slots=True)
class WorkerFailure:
    message: str


Command = OpenCommand | CollectCommand | StormCommand | CloseCommand
# Why: a worker copies its live counters for the progress line this often.
COUNTER_INTERVAL_S = 0.5


async def pipe_recv(pipe: multiprocessing.connection.Connection) -> object:
    """Wait for the next object on a multiprocessing pipe without blocking the loop."""
    fd = pipe.fileno()
    if not pipe.poll():
        loop = asyncio.get_running_loop()
        ready: asyncio.Future[None] = loop.create_future()

        def on_readable() -> None:
            if not ready.done():
                ready.set_result(None)

        loop.add_reader(fd, on_readable)
        try:
            await ready
        finally:
            loop.remove_reader(fd)
    # The loop made the descriptor non-blocking; the rest of a large message must be waited for.
    os.set_blocking(fd, True)
    return pipe.recv()


def pipe_send(pipe: multiprocessing.connection.Connection, message: object) -> None:
    """Send a whole message; the peer is always reading (commands and replies alternate)."""
    os.set_blocking(pipe.fileno(), True)
    pipe.send(message)


async def gather_all(*aws: Awaitable[T]) -> list[T]:
    """Like gather, but let every awaitable finish before raising the first failure, so no
    sibling is left running against a pipe or connection that is about to close."""
    results = await asyncio.gather(*aws, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return cast(list[T], results)


def _worker_main(
    pipe: multiprocessing.connection.Connection, plan: WorkerPlan, counters: Any
) -> None:
    """Entry point of a generator worker process: serve commands until CloseCommand."""
    if plan.cpu is not None:
        os.sched_setaffinity(0, {plan.cpu})
    raise_fd_limit()
    run_loop(_worker(pipe, plan, counters))


async def _worker(
    pipe: multiprocessing.connection.Connection, plan: WorkerPlan, counters: Any
) -> None:
    group = SubscriberGroup(
        Endpoint.of(plan.base_url), plan.encoding, plan.source_hosts, plan.concurrency
    )

    async def publish_counters() -> None:
        while True:
            counters[0], counters[1] = group.live()
            await asyncio.sleep(COUNTER_INTERVAL_S)

    tasks = Tasks()
    tasks.spawn(publish_counters())
    cpu_mark = time.process_time()
    try:
        while True:
            try:
                command = await pipe_recv(pipe)
            except EOFError:  # the main process is gone
                break
            if isinstance(command, CloseCommand):
                break
            result: object
            try:
                if isinstance(command, OpenCommand):
                    result = await group.open(command.seats)
                elif isinstance(command, CollectCommand):
                    window = await group.collect(command.acked, command.drain_s)
                    now = time.process_time()
                    window.cpu_s, cpu_mark = now - cpu_mark, now
                    result = window
                elif isinstance(command, StormCommand):
                    result = await group.storm()
                else:
                    result = WorkerFailure(f"unknown command {command!r}")
            except (LoadError, OSError, TimeoutError) as exc:
                result = WorkerFailure(f"{type(exc).__name__}: {exc}")
            pipe_send(pipe, result)
    finally:
        await tasks.aclose()
        await group.aclose()
        with contextlib.suppress(OSError):
            pipe_send(pipe, None)


class RemoteGroup:
    """A SubscriberGroup in a worker process, driven over a pipe."""

    def __init__(self, plan: WorkerPlan, name: str) -> None:
        ctx = multiprocessing.get_context("spawn")  # fork would copy the running event loop
        self._pipe, child = ctx.Pipe()
        self._counters = ctx.RawArray("q", 2)
        self._process = ctx.Process(
            target=_worker_main, args=(child, plan, self._counters), name=name, daemon=True
        )
        self._process.start()
        child.close()

    async def _call(self, command: Command, timeout_s: float) -> object:
        pipe_send(self._pipe, command)
        async with asyncio.timeout(timeout_s):
            result = await pipe_recv(self._pipe)
        if isinstance(result, WorkerFailure):
            raise LoadError(f"{self._process.name}: {result.message}")
        if result is None:
            raise LoadError(f"{self._process.name} ended")
        return result

    async def open(self, seats: Sequence[Seat]) -> Opened:
        budget = CONNECT_TIMEOUT_S * CONNECT_ATTEMPTS * (1 + len(seats) / 50)
        result = await self._call(OpenCommand(list(seats)), min(budget, MAX_SECONDS))
        assert isinstance(result, Opened)
        return result

    async def collect(self, acked: Mapping[str, Ranges], drain_s: float) -> Window:
        result = await self._call(CollectCommand(dict(acked), drain_s), drain_s + 60)
        assert isinstance(result, Window)
        return result

    async def storm(self) -> Storm:
        result = await self._call(StormCommand(), MAX_SECONDS)
        assert isinstance(result, Storm)
        return result

    def live(self) -> tuple[int, int]:
        return int(self._counters[0]), int(self._counters[1])

    async def aclose(self) -> None:
        if self._process.is_alive():
            with contextlib.suppress(OSError, TimeoutError, LoadError):
                pipe_send(self._pipe, CloseCommand())
                async with asyncio.timeout(30):
                    await pipe_recv(self._pipe)
        await asyncio.to_thread(self._process.join, 10)
        if self._process.is_alive():
            self._process.kill()
            await asyncio.to_thread(self._process.join, 5)
        self._pipe.close()


class Fleet:
    """All subscriber groups of a run: this process's, or one per worker process."""

    def __init__(self, groups: Sequence[Group]) -> None:
        self.groups = list(groups)
        self.seats_per_sphere: Counter[str] = Counter()

    async def open(self, seats: Sequence[Seat]) -> Opened:
        n = len(self.groups)
        results = await gather_all(*(g.open(seats[i::n]) for i, g in enumerate(self.groups)))
        opened = Opened()
        for result in results:
            opened.merge(result)
        self.seats_per_sphere.update(seat.sphere_id for seat in seats)
        return opened

    async def collect(self, acked: Mapping[str, Ranges], drain_s: float) -> Window:
        results = await gather_all(*(g.collect(acked, drain_s) for g in self.groups))
        window = Window()
        for result in results:
            window.merge(result)
        return window

    async def storm(self) -> Storm:
        storm = Storm()
        for result in await gather_all(*(g.storm() for g in self.groups)):
            storm.merge(result)
        return storm

    def live(self) -> tuple[int, int]:
        counts = [g.live() for g in self.groups]
        return sum(d for d, _ in counts), sum(c for _, c in counts)

    async def aclose(self) -> None:
        await asyncio.gather(*(g.aclose() for g in self.groups))


# ---------------------------------------------------------------------------------------------
# Publishers


@dataclass(slots=True)
class Offer:
    """What publishers did in one phase."""

    rate: float
    seconds: float
    published: int = 0
    elapsed_s: float = 0.0  # until the last send
    acked: dict[str, Ranges] = field(default_factory=dict)
    acked_count: int = 0
    errors: int = 0
    unacked: int = 0
    ack_latency: Histogram = field(default_factory=Histogram)
    error_codes: Counter[str] = field(default_factory=Counter)


class Publisher:
    """One publishing connection: paced sends, acks recorded by offset."""

    def __init__(self, sphere_id: str, name: str, body_bytes: int) -> None:
        self.sphere_id = SphereId(sphere_id)
        self.name = name
        self.body_bytes = body_bytes
        self.conn: WireConnection | None = None
        self.n = 0
        self.sent_ns: dict[int, int] = {}
        self.acked: list[int] = []
        self.errors = 0
        self.error_codes: Counter[str] = Counter()
        self.ack_latency = Histogram()
        self.settled = asyncio.Event()
        self.settled.set()

    def on_frame(self, frame: dict[str, Any], now_ns: int) -> None:
        kind = frame.get("type")
        if kind not in ("ack", "error"):
            return
        ref = frame.get("ref")
        if not isinstance(ref, str) or not ref.startswith("p"):
            if kind == "error":
                self.errors += 1
            return
        sent = self.sent_ns.pop(int(ref[1:]), None)
        if kind == "ack":
            self.acked.append(frame["offset"])
            if sent is not None:
                self.ack_latency.record(now_ns - sent)
        else:
            self.errors += 1
            self.error_codes[str(frame.get("code"))] += 1
        if not self.sent_ns:
            self.settled.set()

    def publish_one(self) -> None:
        assert self.conn is not None
        n = self.n
        self.n += 1
        now_ns = time.perf_counter_ns()
        head = f"{now_ns}|{self.name}|{n}|"
        body = head + "x" * max(1, self.body_bytes - len(head))
        self.sent_ns[n] = now_ns
        self.settled.clear()
        self.conn.send(
            Publish(
                sphere_id=self.sphere_id,
                message_id=MessageId(f"{self.name}-{n}"),
                body=body,
                ref=f"p{n}",
            )
        )

    async def run(self, rate: float, seconds: float, total: int | None = None) -> int:
        """Publish at ``rate`` msgs/s for ``seconds`` (or until ``total`` are sent, within
        ``seconds``); returns how many were sent."""
        conn = self.conn
        assert conn is not None
        total = round(rate * seconds) if total is None else total
        start = time.perf_counter()
        sent = 0
        while sent < total:
            elapsed = time.perf_counter() - start
            if elapsed >= seconds or conn.closed.done():
                break
            due = min(total, int(elapsed * rate) + 1)
            while sent < due:
                if not conn.writable:  # the server stopped reading: that is its limit
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(max(0.0, seconds - elapsed)):
                            await conn.wait_writable()
                    if not conn.writable:
                        return sent
                self.publish_one()
                sent += 1
            wait = start + sent / rate - time.perf_counter()
            await asyncio.sleep(max(wait, MIN_SLEEP_S))
        return sent


def _split(total: int, parts: int) -> list[int | None]:
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


class Publishers:
    """The publishing connections of a run, all in the main process."""

    def __init__(self, endpoint: Endpoint, encoding: str) -> None:
        self.endpoint = endpoint
        self.encoding = encoding
        self.publishers: list[Publisher] = []
        self._tasks = Tasks()

    async def open(self, writers: Sequence[tuple[str, str]], body_bytes: int) -> None:
        keepalive_s = KEEPALIVE_MAX_S
        for index, (sphere_id, token) in enumerate(writers):
            pub = Publisher(sphere_id, f"p{index}-{os.getpid()}", body_bytes)
            pub.conn, welcome = await login(self.endpoint, self.encoding, token, pub.on_frame)
            keepalive_s = min(
                keepalive_s, welcome.limits.idle_timeout_ms / 1000 * KEEPALIVE_FRACTION
            )
            self.publishers.append(pub)
        self._tasks.spawn(
            keepalive(lambda: (p.conn for p in self.publishers if p.conn), keepalive_s)
        )

    def published(self) -> int:
        return sum(p.n for p in self.publishers)

    async def phase(self, rate: float, seconds: float, total: int | None = None) -> Offer:
        """Publish at ``rate`` msgs/s in total for ``seconds`` (or ``total`` messages within
        ``seconds``), then wait for the outstanding acks."""
        pubs = self.publishers
        each = rate / len(pubs)
        shares = [None] * len(pubs) if total is None else _split(total, len(pubs))
        started = time.perf_counter()
        sent = await asyncio.gather(
            *(p.run(each, seconds, share) for p, share in zip(pubs, shares, strict=True))
        )
        elapsed = time.perf_counter() - started
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(ACK_TIMEOUT_S):
                await asyncio.gather(*(p.settled.wait() for p in pubs))
        offer = Offer(rate=rate, seconds=seconds, published=sum(sent), elapsed_s=elapsed)
        by_sphere: dict[str, list[int]] = {}
        for p in pubs:
            by_sphere.setdefault(p.sphere_id, []).extend(p.acked)
            offer.acked_count += len(p.acked)
            offer.errors += p.errors
            offer.unacked += len(p.sent_ns)
            offer.ack_latency.merge(p.ack_latency)
            offer.error_codes.update(p.error_codes)
            p.acked, p.errors, p.ack_latency, p.error_codes = [], 0, Histogram(), Counter()
            p.sent_ns.clear()  # an ack that never came is counted once, here
            p.settled.set()
        offer.acked = {sphere_id: to_ranges(o) for sphere_id, o in by_sphere.items()}
        return offer

    async def aclose(self) -> None:
        await self._tasks.aclose()
        await close_all(p.conn for p in self.publishers if p.conn)


# ---------------------------------------------------------------------------------------------
# Targets: spawning, the admin API, provisioning


@dataclass(frozen=True, slots=True)
class Target:
    base_url: str
    pid: int | None
    relay: bool
    admin_token: str | None


class LogTail:
    """Reads a child's stderr in a thread: hands lines over until ``wait_for`` matched, keeps
    the last few for error reports, and never lets the pipe fill up and stall the child."""

    def __init__(self, stream: Iterable[str]) -> None:
        self.lines: deque[str] = deque(maxlen=40)
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._matched = threading.Event()
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream: Iterable[str]) -> None:
        for line in stream:
            self.lines.append(line.rstrip())
            if not self._matched.is_set():
                self._queue.put(line)
        self._queue.put(None)

    def wait_for(self, pattern: str, timeout_s: float) -> re.Match[str]:
        deadline = time.monotonic() + timeout_s
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise LoadError(f"no {pattern!r} within {timeout_s} s: {self.tail()}")
            try:
                line = self._queue.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                raise LoadError(f"the process exited: {self.tail()}")
            found = re.search(pattern, line)
            if found:
                self._matched.set()
                return found

    def tail(self) -> str:
        return " | ".join(list(self.lines)[-8:])

    def join(self, timeout_s: float) -> None:
        self._thread.join(timeout_s)


SERVER = (sys.executable, "-m", "server")


def _taskset(cpu: str | None) -> list[str]:
    return ["taskset", "-c", cpu] if cpu else []


@contextlib.contextmanager
def spawned(relay: bool, extra: Sequence[str], cpu: str | None) -> Iterator[Target]:
    """A fresh server (or relay) on a free port, stopped on exit."""
    with tempfile.TemporaryDirectory(prefix="cloison-load-") as data_dir:
        token: str | None = None
        if relay:
            command = [sys.executable, "-m", "scripts.bench_relay", "--port", "0"]
        else:
            out = subprocess.run(
                [*SERVER, "user", "create", "load-admin", "--admin", "--data-dir", data_dir],
                capture_output=True,
                text=True,
                check=True,
                timeout=60,
            )
            found = re.search(r"token:\s+(\S+)", out.stdout)
            if found is None:
                raise LoadError(f"no admin token in: {out.stdout!r}")
            token = found.group(1)
            command = [*SERVER, "serve", "--port", "0"]
            command += ["--data-dir", data_dir, "--log-level", "info"]
            # Lift the per-user write limits: the generator measures fan-out, not the limiter.
            command += ["--publish-rate-per-s", "1000000", "--publish-burst", "1000000"]
            # And the socket caps: it opens thousands of sockets at once from a few 127.0.0.x
            # addresses (a reconnect storm is all unauthenticated at once).
            command += ["--max-connections-per-address", "0", "--max-unauthenticated-per-address"]
            command += ["0", "--max-unauthenticated", str(UNCAPPED_UNAUTHENTICATED), *extra]
        proc = subprocess.Popen(
            _taskset(cpu) + command, stderr=subprocess.PIPE, text=True, start_new_session=True
        )
        assert proc.stderr is not None
        log = LogTail(proc.stderr)
        try:
            port = int(log.wait_for(r"listening on [\d.]+:(\d+)", 60).group(1))
            base = f"http://127.0.0.1:{port}"
            if not relay:
                # The socket listens before the app starts; this waits until it answers.
                urllib.request.urlopen(base + "/healthz", timeout=60).close()
            yield Target(base, proc.pid, relay, token)
        finally:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
            log.join(5)
            proc.stderr.close()


class Admin:
    """Users, spheres and members through the HTTP API, with an admin token.

    Thread-safe: each thread keeps one keep-alive HTTP connection, so thousands of users cost
    thousands of requests, not thousands of TCP handshakes. ``close`` ends them all.
    """

    def __init__(self, base_url: str, token: str) -> None:
        self.base_url = base_url
        self.token = token
        parts = urllib.parse.urlsplit(base_url)
        self._host, self._port = parts.hostname or "127.0.0.1", parts.port or 80
        self._local = threading.local()
        self._lock = threading.Lock()
        self._all: list[http.client.HTTPConnection] = []

    def _connection(self) -> http.client.HTTPConnection:
        conn: http.client.HTTPConnection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = http.client.HTTPConnection(self._host, self._port, timeout=30)
            self._local.conn = conn
            with self._lock:
                self._all.append(conn)
        return conn

    def call(self, method: str, path: str, body: dict[str, Any], token: str | None = None) -> Any:
        """One request; a 429 is retried after the server's Retry-After (a few times)."""
        headers = {
            "Authorization": f"Bearer {token or self.token}",
            "Content-Type": "application/json",
        }
        for attempt in range(5):
            conn = self._connection()
            try:
                conn.request(method, "/api/v1" + path, json.dumps(body).encode(), headers)
                reply = conn.getresponse()
                data = reply.read()
            except (http.client.HTTPException, OSError) as exc:
                conn.close()  # reconnects on the next request
                if attempt == 4:
                    raise LoadError(f"{method} {path}: {exc}") from None
                continue
            if reply.status == 429 and attempt < 4:
                time.sleep(float(reply.getheader("Retry-After") or 1))  # the server's pacing
                continue
            if reply.status >= 400:
                detail = data.decode(errors="replace")[:200]
                raise LoadError(f"{method} {path}: HTTP {reply.status} {detail}")
            return json.loads(data or b"null")
        raise LoadError(f"{method} {path}: still refused after 5 attempts")

    def close(self) -> None:
        with self._lock:
            for conn in self._all:
                conn.close()
            self._all.clear()

    def user(self, name: str) -> tuple[str, str]:
        data = self.call("POST", "/admin/users", {"name": name, "kind": "bot"})
        return data["user_id"], data["token"]

    def sphere(self, name: str, owner_token: str) -> str:
        data = self.call("POST", "/spheres", {"name": name}, owner_token)
        sphere_id: str = data["sphere"]["sphere_id"]
        return sphere_id

    def add_member(self, sphere_id: str, user_id: str, owner_token: str) -> None:
        self.call("POST", f"/spheres/{sphere_id}/members", {"user_id": user_id}, owner_token)


@dataclass(frozen=True, slots=True)
class Cast:
    """Who connects where: sphere ids, subscriber seats, and one (sphere, token) per writer."""

    sphere_ids: list[str]
    seats: list[Seat]
    writers: list[tuple[str, str]]


async def provision(target: Target, spheres: int, seats: int, writers: int, users_cap: int) -> Cast:
    """Spheres, members and tokens for ``seats`` subscribers spread evenly over ``spheres``
    and ``writers`` publishers (sphere ``w % spheres``). At most ``users_cap`` distinct users
    subscribe; beyond that, connections share users (as one person's several devices do)."""
    per_sphere = [seats // spheres + (1 if s < seats % spheres else 0) for s in range(spheres)]
    if target.relay:
        run_id = os.urandom(3).hex()  # a fresh stream per run, on a relay that outlives it
        sphere_ids = [f"s_relay_{run_id}_{s}" for s in range(spheres)]
        cast_seats = [Seat(sphere_ids[i % spheres], f"relay-{i}", i) for i in range(seats)]
        return Cast(
            sphere_ids, cast_seats, [(sphere_ids[w % spheres], "relay") for w in range(writers)]
        )
    assert target.admin_token is not None
    admin = Admin(target.base_url, target.admin_token)
    loop = asyncio.get_running_loop()
    with (
        concurrent.futures.ThreadPoolExecutor(HTTP_THREADS) as pool,
        contextlib.closing(admin),
    ):

        def run(fn: Callable[..., T], *args: Any) -> asyncio.Future[T]:
            return loop.run_in_executor(pool, fn, *args)

        tag = os.urandom(3).hex()
        _, owner_token = await run(admin.user, f"load-owner-{tag}")
        sphere_ids = list(
            await asyncio.gather(
                *(run(admin.sphere, f"load-{tag}-{s}", owner_token) for s in range(spheres))
            )
        )
        users_per_sphere = [max(1, min(n, users_cap // spheres)) for n in per_sphere]
        writer_spheres = [w % spheres for w in range(writers)]
        wanted = [(s, m) for s in range(spheres) for m in range(users_per_sphere[s])]
        wanted += [(s, -1 - w) for w, s in enumerate(writer_spheres)]
        made = await asyncio.gather(*(run(admin.user, f"load-{tag}-{s}-{m}") for s, m in wanted))
        await asyncio.gather(
            *(
                run(admin.add_member, sphere_ids[s], user_id, owner_token)
                for (s, _), (user_id, _) in zip(wanted, made, strict=True)
            )
        )
    tokens = {key: token for key, (_, token) in zip(wanted, made, strict=True)}
    cast_seats = []
    for i in range(seats):
        s = i % spheres
        member = (i // spheres) % users_per_sphere[s]
        cast_seats.append(Seat(sphere_ids[s], tokens[(s, member)], i))
    cast_writers = [(sphere_ids[s], tokens[(s, -1 - w)]) for w, s in enumerate(writer_spheres)]
    return Cast(sphere_ids, cast_seats, cast_writers)


# ---------------------------------------------------------------------------------------------
# Measurement of the server and of the generator


class ServerProbe:
    """CPU time and RSS of the server process, from /proc (Linux)."""

    def __init__(self, pid: int | None) -> None:
        self.pid = pid

    def cpu_s(self) -> float:
        if not self.pid:
            return 0.0
        with open(f"/proc/{self.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def rss_mb(self) -> float:
        if not self.pid:
            return 0.0
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        return 0.0


class Progress:
    """A live status line on stderr: rates since the previous tick, from live counters."""

    def __init__(self, enabled: bool, fleet: Fleet | None, publishers: Publishers | None) -> None:
        self.enabled = enabled
        self.fleet = fleet
        self.publishers = publishers
        self.label = ""
        self._tty = sys.stderr.isatty()

    async def run(self) -> None:
        started = last_t = time.perf_counter()
        last_d = last_p = 0
        ticks = 0
        while True:
            await asyncio.sleep(PROGRESS_INTERVAL_S)
            ticks += 1
            now = time.perf_counter()
            delivered, conns = self.fleet.live() if self.fleet else (0, 0)
            published = self.publishers.published() if self.publishers else 0
            dt = max(now - last_t, 1e-9)
            line = (
                f"{self.label:<28} {now - started:6.1f}s  conns {conns:>7,}  "
                f"published {(published - last_p) / dt:>9,.0f}/s  "
                f"delivered {(delivered - last_d) / dt:>11,.0f}/s"
            )
            last_t, last_d, last_p = now, delivered, published
            if self._tty:
                sys.stderr.write("\r" + line)
            elif ticks % 5 == 0:
                sys.stderr.write(line + "\n")
            sys.stderr.flush()

    def say(self, text: str) -> None:
        if self.enabled:
            sys.stderr.write(("\r\x1b[K" if self._tty else "") + text + "\n")
            sys.stderr.flush()

    def finish(self) -> None:
        if self.enabled and self._tty:
            sys.stderr.write("\r\x1b[K")
            sys.stderr.flush()


# ---------------------------------------------------------------------------------------------
# Reports


@dataclass(slots=True)
class Phase:
    """One publishing phase (a fixed rate, or a saturation step) and what it produced."""

    offer: Offer
    window: Window
    expected: int
    elapsed_s: float
    server_cpu_s: float
    server_rss_mb: float
    generator_cpu_s: float
    has_server: bool
    verdict: str = ""  # saturation: "pass" or why it failed

    @property
    def offered_ratio(self) -> float:
        asked = self.offer.rate * self.offer.seconds
        return self.offer.published / asked if asked else 0.0

    def figures(self, fanout: float) -> dict[str, Any]:
        """The phase's figures; ``fanout``: subscribers per sphere (deliveries per message)."""
        w, o = self.window, self.offer
        out: dict[str, Any] = {
            "rate": round(o.rate, 1),
            "offered_deliveries_per_s": round(o.rate * fanout, 1),
            "published_per_s": round(o.acked_count / o.seconds, 1) if o.seconds else 0.0,
            "delivered_per_s": round(w.delivered / self.elapsed_s, 1) if self.elapsed_s else 0.0,
            "latency_ms": w.latency.summary_ms(),
            "ack_latency_ms": o.ack_latency.summary_ms(),
            "published": o.published,
            "acked": o.acked_count,
            "delivered": w.delivered,
            "expected": self.expected,
            "lost": w.lost,
            "duplicated": w.duplicated,
            "reordered": w.reordered,
            "errors": w.errors + o.errors + o.unacked,
            "disconnects": w.disconnects,
            "offered_ratio": round(self.offered_ratio, 3),
            "elapsed_s": round(self.elapsed_s, 2),
            "generator_cpu_pct": round(100 * self.generator_cpu_s / self.elapsed_s, 1)
            if self.elapsed_s
            else 0.0,
        }
        if o.error_codes:
            out["error_codes"] = dict(o.error_codes)
        if w.close_codes:
            out["close_codes"] = {str(k): v for k, v in w.close_codes.items()}
        if self.has_server:
            out.update(server_figures(self.server_cpu_s, self.elapsed_s, w.delivered))
            out["server_rss_mb"] = round(self.server_rss_mb, 1)
        if self.verdict:
            out["verdict"] = self.verdict
        return out


def server_figures(cpu_s: float, elapsed_s: float, delivered: int) -> dict[str, float]:
    return {
        "server_cpu_pct": round(100 * cpu_s / elapsed_s, 1) if elapsed_s else 0.0,
        "server_us_per_delivery": round(1e6 * cpu_s / delivered, 2) if delivered else 0.0,
    }


def merge_phases(phases: Sequence[Phase]) -> Phase:
    """The whole run as one phase: counts added, histograms merged, time summed."""
    total = Phase(
        offer=Offer(rate=0.0, seconds=0.0),
        window=Window(),
        expected=0,
        elapsed_s=0.0,
        server_cpu_s=0.0,
        server_rss_mb=phases[-1].server_rss_mb if phases else 0.0,
        generator_cpu_s=0.0,
        has_server=bool(phases and phases[0].has_server),
    )
    for p in phases:
        o = total.offer
        o.seconds += p.offer.seconds
        o.rate += p.offer.rate * p.offer.seconds
        o.published += p.offer.published
        o.acked_count += p.offer.acked_count
        o.errors += p.offer.errors
        o.unacked += p.offer.unacked
        o.ack_latency.merge(p.offer.ack_latency)
        o.error_codes.update(p.offer.error_codes)
        total.window.merge(p.window)
        total.expected += p.expected
        total.elapsed_s += p.elapsed_s
        total.server_cpu_s += p.server_cpu_s
        total.generator_cpu_s += p.generator_cpu_s
    if total.offer.seconds:
        total.offer.rate /= total.offer.seconds  # the time-weighted mean rate
    return total


@dataclass(slots=True)
class Report:
    scenario: str
    params: dict[str, Any]
    figures: dict[str, Any]
    rows: list[dict[str, Any]] = field(default_factory=list)  # phases or steps
    ok: bool = True

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"scenario": {"name": self.scenario, **self.params}, **self.figures}
        if self.rows:
            out["steps" if self.scenario == "saturate" else "phases"] = self.rows
        return out

    def table(self) -> str:
        f = self.figures
        lines = [f"scenario                 {self.scenario}"]
        if "max_sustained_deliveries_per_s" in f:
            lines.append(
                f"max sustained            {f['max_sustained_deliveries_per_s']:,.0f} deliveries/s"
            )
        lines += [
            f"connections              {f['connections']:,}",
            f"published/s              {f['published_per_s']:,.0f}",
            f"delivered/s              {f['delivered_per_s']:,.0f}",
        ]
        lat = f["latency_ms"]
        lines.append(
            f"{'latency ms':<24} p50 {lat['p50']:.2f}  p95 {lat['p95']:.2f}"
            f"  p99 {lat['p99']:.2f}  max {lat['max']:.2f}  ({f.get('latency_of', '')})"
        )
        lines.append(f"lost/dup/reorder         {f['lost']} / {f['duplicated']} / {f['reordered']}")
        lines.append(f"errors                   {f['errors']}")
        shown = {
            "scenario", "connections", "published_per_s", "delivered_per_s", "latency_ms",
            "lost", "duplicated", "reordered", "errors", "max_sustained_deliveries_per_s",
            "latency_of",
        }  # fmt: skip
        for key, value in f.items():
            if key not in shown:
                lines.append(f"{key:<24} {value}")
        if len(self.rows) > 1 or self.scenario == "saturate":
            lines.append("")
            lines.append(
                f"{'msgs/s':>9} {'offered/s':>11} {'delivered/s':>11} {'p50 ms':>8} {'p99 ms':>8}"
                f" {'lost':>6} {'dup':>4} {'reord':>5} {'srv cpu%':>8} {'µs/deliv':>8}  verdict"
            )
            for row in self.rows:
                lat = row["latency_ms"]
                lines.append(
                    f"{row['rate']:>9,.0f} {row['offered_deliveries_per_s']:>11,.0f}"
                    f" {row['delivered_per_s']:>11,.0f} {lat['p50']:>8.2f} {lat['p99']:>8.2f}"
                    f" {row['lost']:>6} {row['duplicated']:>4} {row['reordered']:>5}"
                    f" {row.get('server_cpu_pct', 0):>8} {row.get('server_us_per_delivery', 0):>8}"
                    f"  {row.get('verdict', '')}"
                )
        return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Scenarios


@dataclass
class Rig:
    """What every scenario drives."""

    args: argparse.Namespace
    target: Target
    endpoint: Endpoint
    probe: ServerProbe
    fleet: Fleet
    progress: Progress
    publish_endpoint: Endpoint  # where publishers connect: another gateway, or the same one

    @property
    def has_server(self) -> bool:
        return self.target.pid is not None


def source_hosts(args: argparse.Namespace, target: Target, connections: int) -> tuple[str, ...]:
    """127.0.0.x source addresses to spread connections over, past the ephemeral-port limit."""
    host = Endpoint.of(target.base_url).uri.host
    if not host.startswith("127."):
        return ()
    count = args.source_ips or -(-connections // PORTS_PER_SOURCE_IP)
    if count <= 1:
        return ()
    return tuple(f"127.0.0.{n}" for n in range(1, min(count, 254) + 1))


def make_fleet(args: argparse.Namespace, target: Target, connections: int) -> Fleet:
    hosts = source_hosts(args, target, connections)
    if args.processes <= 1:
        return Fleet(
            [SubscriberGroup(Endpoint.of(target.base_url), args.encoding, hosts, args.concurrency)]
        )
    cpus = args.taskset_generator or []
    groups: list[Group] = []
    for i in range(args.processes):
        plan = WorkerPlan(
            target.base_url,
            args.encoding,
            hosts,
            max(1, args.concurrency // args.processes),
            cpus[i % len(cpus)] if cpus else None,
        )
        groups.append(RemoteGroup(plan, f"loadtest-worker-{i}"))
    return Fleet(groups)


async def run_phase(rig: Rig, publishers: Publishers, rate: float, seconds: float) -> Phase:
    """Publish at ``rate`` for ``seconds``, then drain and account for every acked offset."""
    cpu0 = rig.probe.cpu_s()
    gen0 = time.process_time()
    started = time.perf_counter()
    offer = await publishers.phase(rate, seconds)
    window = await rig.fleet.collect(offer.acked, rig.args.drain_s)
    elapsed = time.perf_counter() - started
    expected = sum(
        count_ranges(r) * rig.fleet.seats_per_sphere[sphere_id]
        for sphere_id, r in offer.acked.items()
    )
    return Phase(
        offer=offer,
        window=window,
        expected=expected,
        elapsed_s=elapsed,
        server_cpu_s=rig.probe.cpu_s() - cpu0,
        server_rss_mb=rig.probe.rss_mb(),
        generator_cpu_s=time.process_time() - gen0 + window.cpu_s,
        has_server=rig.has_server,
    )


@contextlib.asynccontextmanager
async def fanout_topology(rig: Rig) -> AsyncIterator[tuple[Publishers, Opened]]:
    args = rig.args
    rig.progress.label = "provisioning"
    cast = await provision(
        rig.target, args.spheres, args.spheres * args.members, args.publishers, MAX_USERS
    )
    rig.progress.label = "connecting"
    opened = await rig.fleet.open(cast.seats)
    if opened.failures:
        raise LoadError(f"{opened.failures} subscribers failed to connect: {opened.first_failure}")
    publishers = Publishers(rig.publish_endpoint, args.encoding)
    rig.progress.publishers = publishers
    try:
        await publishers.open(cast.writers, args.body_bytes)
        yield publishers, opened
    finally:
        await publishers.aclose()


def _params(args: argparse.Namespace, *names: str) -> dict[str, Any]:
    return {name: getattr(args, name) for name in names}


async def scenario_fanout(rig: Rig) -> Report:
    args = rig.args
    async with fanout_topology(rig) as (publishers, opened):
        phases = []
        for rate in args.rate:
            rig.progress.label = f"fanout {rate:,.0f} msg/s"
            phases.append(await run_phase(rig, publishers, rate, args.seconds))
        connections = opened.connections + len(publishers.publishers)
    subscribers = args.members  # deliveries per message
    total = merge_phases(phases)
    figures = total.figures(subscribers)
    figures.pop("rate")
    figures = {"connections": connections, "latency_of": "publish to delivery", **figures}
    rows = [p.figures(subscribers) for p in phases]
    params = _params(args, "spheres", "members", "publishers", "seconds", "body_bytes")
    params |= {"rate": args.rate[0] if len(args.rate) == 1 else args.rate}
    params |= _params(args, "encoding", "drain_s", "processes")
    ok = total.window.lost == total.window.duplicated == total.window.reordered == 0
    return Report("fanout", params, figures, rows, ok)


def judge(phase: Phase, p99_ms: float, generator_cores: int) -> str:
    """Why a saturation step failed, or "pass". A failure while the generator's own CPU was
    nearly full is marked: that step measured the generator as much as the server."""
    w = phase.window
    if phase.offered_ratio < OFFER_RATIO_MIN:
        why = f"offered only {phase.offered_ratio:.0%} of the rate"
    elif w.lost:
        why = f"{w.lost} deliveries missing after the drain"
    elif w.duplicated or w.reordered:
        why = "duplicated or reordered deliveries"
    elif phase.offer.errors or phase.offer.unacked or w.errors:
        why = "request errors"
    elif (p99 := w.latency.percentile_ns(0.99) / 1e6) > p99_ms:
        why = f"p99 {p99:.1f} ms > {p99_ms:g} ms"
    else:
        return "pass"
    busy = phase.generator_cpu_s / phase.elapsed_s / generator_cores if phase.elapsed_s else 0.0
    if busy >= GENERATOR_BUSY:
        why += f" ({GENERATOR_BOUND}: {busy:.0%} of its CPU)"
    return why


def generator_cores(args: argparse.Namespace) -> int:
    """How many cores the generator's processes can use at most."""
    pinned: list[int] | None = args.taskset_generator
    available = len(set(pinned)) if pinned else os.cpu_count() or 1
    processes: int = args.processes
    return max(1, min(processes, available))


async def scenario_saturate(rig: Rig) -> Report:
    args = rig.args
    subscribers = args.members  # deliveries per message
    steps: list[Phase] = []

    async def step(rate: float) -> Phase:
        rig.progress.label = f"step {len(steps) + 1} {rate:,.0f} msg/s"
        phase = await run_phase(rig, publishers, rate, args.step_s)
        phase.verdict = judge(phase, args.p99_ms, generator_cores(args))
        steps.append(phase)
        rig.progress.say(
            f"step {len(steps):>2}: {rate:>9,.1f} msg/s  "
            f"{phase.window.delivered / phase.elapsed_s:>11,.0f} deliveries/s  {phase.verdict}"
        )
        return phase

    async with fanout_topology(rig) as (publishers, opened):
        best: Phase | None = None
        failed: Phase | None = None
        rate = args.start_rate
        while len(steps) < args.max_steps and rate <= MAX_RATE_PER_S:
            phase = await step(rate)
            if phase.verdict != "pass":
                failed = phase
                break
            best = phase
            rate *= args.factor
        for _ in range(args.bisections):
            if best is None or failed is None or len(steps) >= args.max_steps:
                break
            phase = await step((best.offer.rate + failed.offer.rate) / 2)
            if phase.verdict == "pass":
                best = phase
            else:
                failed = phase
        connections = opened.connections + len(publishers.publishers)
    chosen = best or steps[0]
    figures = chosen.figures(subscribers)
    figures = {
        "connections": connections,
        "max_sustained_deliveries_per_s": figures["delivered_per_s"] if best else 0.0,
        "max_sustained_rate": round(best.offer.rate, 1) if best else 0.0,
        "lowest_failing_rate": round(failed.offer.rate, 1) if failed else None,
        "ceiling_reached": failed is not None,
        "generator_bound": failed is not None and GENERATOR_BOUND in failed.verdict,
        "latency_of": "publish to delivery, at the best passing step",
        **figures,
    }
    params = _params(
        args, "spheres", "members", "publishers", "start_rate", "factor", "step_s",
        "bisections", "p99_ms", "body_bytes", "encoding", "drain_s", "processes",
    )  # fmt: skip
    bad = sum(p.window.duplicated + p.window.reordered for p in steps)
    return Report("saturate", params, figures, [p.figures(subscribers) for p in steps], bad == 0)


async def scenario_idle(rig: Rig) -> Report:
    args = rig.args
    rig.progress.label = "provisioning"
    cast = await provision(rig.target, args.spheres, args.connections, 0, args.users)
    rss_before = rig.probe.rss_mb()
    cpu0 = rig.probe.cpu_s()
    rig.progress.label = "connecting"
    started = time.perf_counter()
    opened = await rig.fleet.open(cast.seats)
    connect_s = time.perf_counter() - started
    rig.progress.label = "holding"
    await asyncio.sleep(args.seconds)  # a measurement pause: let the server settle
    rss_after = rig.probe.rss_mb()
    elapsed = time.perf_counter() - started
    window = await rig.fleet.collect({}, 0.0)
    figures: dict[str, Any] = {
        "connections": opened.connections,
        "published_per_s": 0.0,
        "delivered_per_s": 0.0,
        "latency_ms": opened.latency.summary_ms(),
        "latency_of": "connect, authenticate and subscribe, per connection",
        "lost": 0,
        "duplicated": window.duplicated,
        "reordered": window.reordered,
        "errors": opened.failures + window.errors,
        "disconnects": window.disconnects,
        "connect_s": round(connect_s, 2),
        "connections_per_s": round(opened.connections / connect_s, 1) if connect_s else 0.0,
    }
    if opened.first_failure:
        figures["first_failure"] = opened.first_failure
    if rig.has_server:
        delta = rss_after - rss_before
        figures |= {
            "server_rss_mb": round(rss_after, 1),
            "server_rss_before_mb": round(rss_before, 1),
            "server_rss_mb_per_1k": round(1000 * delta / opened.connections, 2)
            if opened.connections
            else 0.0,
            "server_cpu_pct": round(100 * (rig.probe.cpu_s() - cpu0) / elapsed, 1),
        }
    params = _params(args, "connections", "spheres", "users", "seconds", "encoding", "processes")
    ok = opened.failures == 0 and window.disconnects == 0
    return Report("idle", params, figures, ok=ok)


async def scenario_reconnect(rig: Rig) -> Report:
    args = rig.args
    rig.progress.label = "provisioning"
    cast = await provision(rig.target, args.spheres, args.connections, args.publishers, args.users)
    rig.progress.label = "connecting"
    opened = await rig.fleet.open(cast.seats)
    if opened.failures:
        raise LoadError(f"{opened.failures} subscribers failed to connect: {opened.first_failure}")
    publishers = Publishers(rig.endpoint, args.encoding)
    rig.progress.publishers = publishers
    try:
        await publishers.open(cast.writers, args.body_bytes)
        rate = args.rate[0]

        async def drop_later() -> Storm:
            await asyncio.sleep(args.drop_at_s)  # when, in the publishing phase, to drop
            rig.progress.label = "storm"
            storm = await rig.fleet.storm()
            rig.progress.label = "publishing"
            return storm

        cpu0 = rig.probe.cpu_s()
        started = time.perf_counter()
        rig.progress.label = "publishing"
        offer, storm = await asyncio.gather(publishers.phase(rate, args.seconds), drop_later())
        rig.progress.label = "draining"
        window = await rig.fleet.collect(offer.acked, args.drain_s)
        elapsed = time.perf_counter() - started
        connections = opened.connections + len(publishers.publishers)
    finally:
        await publishers.aclose()
    expected = sum(
        count_ranges(r) * rig.fleet.seats_per_sphere[sphere_id]
        for sphere_id, r in offer.acked.items()
    )
    all_live_s = (storm.last_live_ns - storm.started_ns) / 1e9 if storm.resumed else None
    figures: dict[str, Any] = {
        "connections": connections,
        "all_live_s": round(all_live_s, 3) if all_live_s is not None else None,
        "resumed": storm.resumed,
        "resume_failures": storm.failures,
        "resume_ms": storm.latency.summary_ms(),
        "published_per_s": round(offer.acked_count / offer.seconds, 1),
        "delivered_per_s": round(window.delivered / elapsed, 1),
        "latency_ms": window.latency.summary_ms(),
        "latency_of": "publish to delivery, replayed deliveries included",
        "acked": offer.acked_count,
        "delivered": window.delivered,
        "expected": expected,
        "lost": window.lost,
        "duplicated": window.duplicated,
        "reordered": window.reordered,
        "errors": window.errors + offer.errors + offer.unacked + storm.failures,
        "disconnects": window.disconnects,
    }
    if rig.has_server:
        figures |= server_figures(rig.probe.cpu_s() - cpu0, elapsed, window.delivered)
        figures["server_rss_mb"] = round(rig.probe.rss_mb(), 1)
    params = _params(
        args, "connections", "spheres", "publishers", "seconds", "drop_at_s", "encoding",
        "concurrency", "processes",
    )  # fmt: skip
    params["rate"] = rate
    ok = window.lost == window.duplicated == window.reordered == 0 and storm.failures == 0
    return Report("reconnect", params, figures, ok=ok)


async def scenario_history(rig: Rig) -> Report:
    args = rig.args
    rig.progress.label = "provisioning"
    cast = await provision(rig.target, 1, args.readers, 1, args.readers)
    sphere_id = SphereId(cast.sphere_ids[0])
    publishers = Publishers(rig.endpoint, args.encoding)
    rig.progress.publishers = publishers
    rig.progress.label = f"writing {args.messages:,} messages"
    try:
        await publishers.open(cast.writers, args.body_bytes)
        offer = await publishers.phase(args.write_rate, MAX_SECONDS, total=args.messages)
    finally:
        await publishers.aclose()
    acked = offer.acked.get(sphere_id, [])
    top = acked[-1][1] if acked else 0
    readers = [(await login(rig.endpoint, args.encoding, seat.token))[0] for seat in cast.seats]
    latency = Histogram()
    counts = Counter[str]()
    rig.progress.label = "paging"
    cpu0 = rig.probe.cpu_s()
    started = time.perf_counter()
    deadline = started + args.seconds

    async def read_all(conn: WireConnection) -> None:
        seen = bytearray(top + 1)
        before: int | None = None
        low = top + 1
        for _ in range(top // args.page_size + 2):  # bounded: one pass through the sphere
            if time.perf_counter() >= deadline:
                counts["timed_out"] += 1
                break
            sent = time.perf_counter_ns()
            reply = await conn.request(
                History(sphere_id=sphere_id, before=before, limit=args.page_size)
            )
            latency.record(reply.arrived_ns - sent)
            page = reply.frame
            if page.get("type") != "history_page":
                counts["errors"] += 1
                break
            counts["pages"] += 1
            offsets = [m["offset"] for m in page["messages"]]
            if offsets != sorted(offsets) or (offsets and offsets[-1] >= low):
                counts["reordered"] += 1
            for offset in offsets:
                if 0 < offset <= top and not seen[offset]:
                    seen[offset] = 1
                    counts["read"] += 1
                else:
                    counts["duplicated"] += 1
            if not offsets or not page["has_more"]:
                break
            low = min(low, offsets[0])
            before = offsets[0]
        counts["lost"] += sum(seen[first : last + 1].count(0) for first, last in acked)

    try:
        async with asyncio.TaskGroup() as group:
            for conn in readers:
                group.create_task(read_all(conn))
    finally:
        await close_all(readers)
    elapsed = time.perf_counter() - started
    figures: dict[str, Any] = {
        "connections": len(readers),
        "messages": offer.acked_count,
        "pages": counts["pages"],
        "pages_per_s": round(counts["pages"] / elapsed, 1),
        "published_per_s": round(offer.acked_count / offer.elapsed_s, 1),
        "delivered_per_s": round(counts["read"] / elapsed, 1),
        "latency_ms": latency.summary_ms(),
        "latency_of": "history request to page, per page",
        "lost": counts["lost"],
        "duplicated": counts["duplicated"],
        "reordered": counts["reordered"],
        "errors": counts["errors"] + counts["timed_out"] + offer.errors + offer.unacked,
    }
    if rig.has_server:
        figures |= {
            "server_cpu_pct": round(100 * (rig.probe.cpu_s() - cpu0) / elapsed, 1),
            "server_rss_mb": round(rig.probe.rss_mb(), 1),
        }
    params = _params(args, "messages", "page_size", "readers", "body_bytes", "encoding")
    ok = counts["lost"] == counts["duplicated"] == counts["reordered"] == counts["errors"] == 0
    return Report("history", params, figures, ok=ok)


SCENARIO_RUNNERS: dict[str, Callable[[Rig], Awaitable[Report]]] = {
    "fanout": scenario_fanout,
    "saturate": scenario_saturate,
    "idle": scenario_idle,
    "reconnect": scenario_reconnect,
    "history": scenario_history,
}


def connections_of(args: argparse.Namespace) -> int:
    if args.scenario in ("fanout", "saturate"):
        return int(args.spheres * args.members)
    if args.scenario == "history":
        return int(args.readers)
    return int(args.connections)


async def run_scenario(args: argparse.Namespace, target: Target) -> Report:
    fleet = make_fleet(args, target, connections_of(args))
    progress = Progress(not args.quiet, fleet, None)
    endpoint = Endpoint.of(target.base_url)
    publish_to = Endpoint.of(args.publish_url) if args.publish_url else endpoint
    rig = Rig(args, target, endpoint, ServerProbe(target.pid), fleet, progress, publish_to)
    tasks = Tasks()
    if progress.enabled:
        tasks.spawn(progress.run())
    try:
        async with asyncio.timeout(args.max_run_s):
            return await SCENARIO_RUNNERS[args.scenario](rig)
    finally:
        await tasks.aclose()
        progress.finish()
        await fleet.aclose()


# ---------------------------------------------------------------------------------------------
# Command line


def fd_hard_limit() -> int:
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    return MAX_CONNECTIONS * 2 if hard == resource.RLIM_INFINITY else hard


def raise_fd_limit() -> None:
    """Raise the soft open-files limit to the hard one (a spawned server inherits it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def run_loop(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` on uvloop when it is installed (as the server does), else asyncio."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


def _cpu_list(text: str) -> list[int]:
    try:
        cpus = [int(part) for part in text.split(",") if part]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected CPU numbers like 1 or 1,2: {text!r}") from None
    if not cpus:
        raise argparse.ArgumentTypeError("no CPU given")
    return cpus


def _bounded(kind: Callable[[str], Any], low: float, high: float) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        value = kind(text)
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be between {low:g} and {high:g}")
        return value

    return parse


def build_parser() -> argparse.ArgumentParser:
    usage_text = __doc__.split("Theory of operation.")[0].split("\n", 1)[1]
    parser = argparse.ArgumentParser(
        prog="cloison loadtest",
        description=usage_text,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("scenario", nargs="?", choices=SCENARIOS, default="fanout")
    add = parser.add_argument_group

    where = add("target")
    one = where.add_mutually_exclusive_group(required=True)
    one.add_argument("--spawn", action="store_true", help="start a fresh server for the run")
    one.add_argument("--url", help="base URL of a running target, e.g. http://127.0.0.1:8000")
    where.add_argument("--relay", action="store_true", help="the target is scripts/bench_relay")
    where.add_argument(
        "--publish-url",
        help="fanout, saturate: publishers connect to this gateway (another node of the same "
        "cluster) while subscribers stay on --url, so every delivery crosses the broker",
    )
    where.add_argument("--admin-token", help="token of an admin user (--url, except --relay)")
    where.add_argument("--server-pid", type=int, help="with --url: pid for CPU and RSS figures")
    where.add_argument(
        "--server-arg", action="append", default=[], help="option for the spawned server; repeat"
    )
    where.add_argument("--taskset-server", metavar="CPUS", help="pin the spawned server: 0")
    where.add_argument(
        "--taskset-generator", metavar="CPUS", type=_cpu_list, help="pin the generator: 1 or 1,2"
    )

    shape = add("topology")
    shape.add_argument(
        "--spheres",
        type=_bounded(int, 1, 10_000),
        help="spheres (fanout, saturate: 1; idle: 100; reconnect: 10)",
    )
    shape.add_argument(
        "--members",
        type=_bounded(int, 1, MAX_CONNECTIONS),
        default=100,
        help="subscribers per sphere, fanout and saturate (%(default)s)",
    )
    shape.add_argument(
        "--connections",
        type=_bounded(int, 1, MAX_CONNECTIONS),
        default=1000,
        help=f"subscribers in all, idle and reconnect (%(default)s; at most {MAX_CONNECTIONS:,})",
    )
    shape.add_argument(
        "--users",
        type=_bounded(int, 1, MAX_USERS),
        default=10_000,
        help="distinct users at most, idle and reconnect; beyond, connections share (%(default)s)",
    )
    shape.add_argument(
        "--publishers",
        type=_bounded(int, 1, 1000),
        help="publishing connections (1; reconnect: one per sphere, at most 10)",
    )
    shape.add_argument(
        "--body-bytes", type=_bounded(int, 40, 16_384), default=128, help="(%(default)s)"
    )
    shape.add_argument("--encoding", choices=["json", "msgpack"], default="json")

    load = add("load")
    load.add_argument(
        "--rate",
        type=_bounded(float, 0.1, MAX_RATE_PER_S),
        action="append",
        help=f"messages/s offered in all (100); repeat for phases, at most {MAX_PHASES}",
    )
    load.add_argument(
        "--seconds",
        type=_bounded(float, 0.1, MAX_SECONDS),
        help="publishing phase (10); idle: hold before measuring (5); history: time cap (60)",
    )
    load.add_argument(
        "--drain-s",
        type=_bounded(float, 0, MAX_DRAIN_S),
        default=10.0,
        help="after a phase, wait this long at most for missing deliveries (%(default)s)",
    )

    sat = add("saturate")
    sat.add_argument(
        "--start-rate",
        type=_bounded(float, 0.1, MAX_RATE_PER_S),
        default=20.0,
        help="messages/s of the first step (%(default)s)",
    )
    sat.add_argument("--factor", type=_bounded(float, 1.05, 4.0), default=1.5, help="(%(default)s)")
    sat.add_argument(
        "--step-s", type=_bounded(float, 0.5, MAX_SECONDS), default=5.0, help="(%(default)s)"
    )
    sat.add_argument("--bisections", type=_bounded(int, 0, 10), default=2, help="(%(default)s)")
    sat.add_argument(
        "--max-steps",
        type=_bounded(int, 1, MAX_STEPS),
        default=30,
        help="bisections included (%(default)s)",
    )
    sat.add_argument(
        "--p99-ms",
        type=_bounded(float, 0.1, 60_000),
        default=50.0,
        help="latency bound of a passing step (%(default)s)",
    )

    other = add("reconnect and history")
    other.add_argument(
        "--drop-at-s",
        type=_bounded(float, 0, MAX_SECONDS),
        default=2.0,
        help="reconnect: when, into the publishing phase, every connection drops (%(default)s)",
    )
    other.add_argument(
        "--messages",
        type=_bounded(int, 1, MAX_HISTORY_MESSAGES),
        default=10_000,
        help="history: messages in the sphere (%(default)s)",
    )
    other.add_argument(
        "--write-rate",
        type=_bounded(float, 1, MAX_RATE_PER_S),
        default=5000.0,
        help="history: messages/s while filling the sphere (%(default)s)",
    )
    other.add_argument(
        "--page-size", type=_bounded(int, 1, 200), default=50, help="history (%(default)s)"
    )
    other.add_argument(
        "--readers",
        type=_bounded(int, 1, 1000),
        default=1,
        help="history: connections paging at once (%(default)s)",
    )

    gen = add("generator")
    gen.add_argument(
        "--processes",
        type=_bounded(int, 1, MAX_PROCESSES),
        default=1,
        help="spread subscribers over this many processes (%(default)s)",
    )
    gen.add_argument(
        "--concurrency",
        type=_bounded(int, 1, 10_000),
        default=200,
        help="handshakes in flight at once, when opening and in a storm (%(default)s)",
    )
    gen.add_argument(
        "--source-ips",
        type=_bounded(int, 0, 254),
        default=0,
        help="spread connections over 127.0.0.1..N (0: one per 25,000 connections)",
    )
    gen.add_argument(
        "--max-run-s",
        type=_bounded(float, 1, MAX_RUN_S),
        default=3600.0,
        help="the whole run's time limit (%(default)s)",
    )
    gen.add_argument("--json", action="store_true", help="print one JSON object")
    gen.add_argument("--quiet", action="store_true", help="no progress line on stderr")
    return parser


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = build_parser()
    args = parser.parse_args(argv)
    fan = args.scenario in ("fanout", "saturate")
    if args.spheres is None:
        args.spheres = 1 if fan else 100 if args.scenario == "idle" else 10
    if args.publishers is None:
        args.publishers = min(args.spheres, 10) if args.scenario == "reconnect" else 1
    if args.seconds is None:
        args.seconds = {"idle": 5.0, "history": 60.0}.get(args.scenario, 10.0)
    args.rate = args.rate or [100.0]
    if len(args.rate) > MAX_PHASES:
        parser.error(f"at most {MAX_PHASES} rates")
    if args.relay and args.scenario == "history":
        parser.error("the relay keeps no history")
    if args.url and not args.relay and not args.admin_token:
        parser.error("--admin-token is required with --url (except with --relay)")
    if args.taskset_server and not args.spawn:
        parser.error("--taskset-server needs --spawn")
    connections = connections_of(args)
    if connections > MAX_CONNECTIONS:
        parser.error(f"at most {MAX_CONNECTIONS:,} subscribing connections")
    fds = fd_hard_limit() - FD_MARGIN
    if -(-connections // args.processes) > fds:
        parser.error(f"{connections:,} connections need more than {fds:,} fds per process: "
                     "use --processes")  # fmt: skip
    return args


@contextlib.contextmanager
def target_of(args: argparse.Namespace) -> Iterator[Target]:
    if args.spawn:
        with spawned(args.relay, args.server_arg, args.taskset_server) as target:
            yield target
    else:
        yield Target(args.url.rstrip("/"), args.server_pid, args.relay, args.admin_token)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    raise_fd_limit()
    try:
        with target_of(args) as target:
            # Pin only now, so the spawned server does not inherit the generator's CPU.
            if args.taskset_generator:
                os.sched_setaffinity(0, {args.taskset_generator[0]})
            report = run_loop(run_scenario(args, target))
    except (LoadError, OSError) as exc:
        print(f"cloison loadtest: {exc}", file=sys.stderr)
        return 2
    except TimeoutError:
        print(f"cloison loadtest: the run exceeded --max-run-s {args.max_run_s:g}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(report.as_json()))
    else:
        print(report.table())
    return 0 if report.ok else 1


def loadtest_command(argv: list[str]) -> int:
    return main(argv)


if __name__ == "__main__":
    raise SystemExit(main())
