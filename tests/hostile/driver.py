"""Load drivers for hostile runs: writers and readers over real WebSockets, recording a History.

``Wire`` is one connection with a reader task that routes replies to their request by ``ref``
and messages to a callback, so many writes can be in flight on one socket. ``Writer`` and
``Reader`` survive the connection: when it drops they reconnect (to the next gateway in their
list) and go on, a reader resuming from the last offset it saw, as a real client would.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import websockets
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from protocol import (
    Ack,
    Auth,
    Batch,
    ClientFrame,
    ErrorReply,
    EventKind,
    Frame,
    History,
    HistoryPage,
    JsonCodec,
    Message,
    Ping,
    Publish,
    StreamPosition,
    Subscribe,
    Subscribed,
    Welcome,
)
from tests.hostile.history import UNKNOWN_ERROR_CODES, Delivery, History as RunHistory, Outcome

CONNECT_TIMEOUT_S = 5.0  # a gateway that is up answers in milliseconds, even on a loaded box
REQUEST_TIMEOUT_S = 10.0  # past this an outcome is unknown (a hung store, a paused process)
RECONNECT_PAUSE_S = 0.2  # between attempts on a dead gateway: quick, yet not a busy loop
HISTORY_PAGE = 200  # the server's page cap


class WireLost(Exception):
    """The connection closed (or never opened) before the reply came."""


class Wire:
    """One authenticated WebSocket; ``request`` may be called by many tasks at once."""

    def __init__(
        self, ws: ClientConnection, welcome: Welcome, on_message: Callable[[Message], None]
    ) -> None:
        self._ws = ws
        self.welcome = welcome
        self._codec = JsonCodec()
        self._on_message = on_message
        self._pending: dict[str, asyncio.Future[Frame]] = {}
        self._refs = itertools.count(1)
        self._reading = asyncio.get_running_loop().create_task(self._read())
        self.closed = asyncio.Event()

    @classmethod
    async def open(
        cls, url: str, token: str, on_message: Callable[[Message], None] = lambda _: None
    ) -> Wire:
        codec = JsonCodec()
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT_S):
                ws = await websockets.connect(
                    url,
                    subprotocols=[codec.subprotocol],  # type: ignore[list-item]
                    max_size=2**22,
                    open_timeout=None,
                    ping_interval=None,
                )
                await ws.send(codec.encode(Auth(token=token, protocol=1)))
                welcome = codec.decode_server(await ws.recv())
        except (OSError, TimeoutError, ConnectionClosed, websockets.InvalidHandshake) as exc:
            raise WireLost(f"cannot open {url}: {exc!r}") from exc
        assert isinstance(welcome, Welcome), welcome
        return cls(ws, welcome, on_message)

    async def request(
        self, make: Callable[[str], ClientFrame], timeout_s: float = REQUEST_TIMEOUT_S
    ) -> Frame:
        """Send ``make(ref)`` and return its reply.

        Raises:
            WireLost: the connection closed first.
            TimeoutError: no reply within ``timeout_s``.
        """
        ref = f"r{next(self._refs)}"
        reply: asyncio.Future[Frame] = asyncio.get_running_loop().create_future()
        self._pending[ref] = reply
        try:
            if self.closed.is_set():
                raise WireLost("closed")
            try:
                await asyncio.wait_for(self._ws.send(self._codec.encode(make(ref))), timeout_s)
            except ConnectionClosed as exc:
                raise WireLost(repr(exc)) from exc
            return await asyncio.wait_for(reply, timeout_s)
        finally:
            self._pending.pop(ref, None)

    async def _read(self) -> None:
        try:
            async for data in self._ws:
                frame = self._codec.decode_server(data)
                for one in frame.frames if isinstance(frame, Batch) else [frame]:
                    if isinstance(one, Message):
                        self._on_message(one)
                    ref = getattr(one, "ref", None)
                    waiter = self._pending.get(ref) if isinstance(ref, str) else None
                    if waiter is not None and not waiter.done():
                        waiter.set_result(one)
        except ConnectionClosed:
            pass
        finally:
            self.closed.set()
            for waiter in self._pending.values():
                if not waiter.done():
                    waiter.set_exception(WireLost("connection closed before the reply"))

    async def aclose(self) -> None:
        with contextlib.suppress(Exception):  # a dead peer: closing is best effort
            await asyncio.wait_for(self._ws.close(), 2)
        self._reading.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reading


async def open_any(
    urls: Sequence[str],
    token: str,
    deadline: float,
    on_message: Callable[[Message], None] = lambda _: None,
    start: int = 0,
) -> tuple[Wire, int]:
    """The first gateway of ``urls`` (from ``start``, round robin) that accepts, and its index."""
    for attempt in itertools.count():
        index = (start + attempt) % len(urls)
        try:
            return await Wire.open(urls[index], token, on_message), index
        except WireLost:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(RECONNECT_PAUSE_S)
    raise AssertionError("unreachable")


@dataclass
class WriteLoad:
    count: int  # messages to write (each a fresh message_id)
    concurrency: int = 8  # writes in flight at once
    retries: int = 0  # how often a retryable or unknown outcome is retried with the same id
    pace_s: float = 0.0  # pause between writes of one worker
    body_bytes: int = 0  # pad each body to this size (0: the message_id alone)


class Writer:
    """Writes ``load.count`` posts into a sphere, recording each outcome in ``history``."""

    def __init__(
        self,
        history: RunHistory,
        token: str,
        urls: Sequence[str],
        sphere_id: str,
        *,
        prefix: str = "m",
    ) -> None:
        self.history = history
        self.token = token
        self.urls = list(urls)
        self.sphere_id = sphere_id
        self.prefix = prefix
        self.acked = 0
        self.acked_event = asyncio.Event()  # set at every ack; for ``wait_acked``
        self._wire: Wire | None = None
        self._index = 0
        self._reconnecting = asyncio.Lock()

    async def run(self, load: WriteLoad, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        numbers = iter(range(load.count))
        async with asyncio.TaskGroup() as group:
            for _ in range(load.concurrency):
                group.create_task(self._work(numbers, load, deadline))
        if self._wire is not None:
            await self._wire.aclose()

    async def wait_acked(self, count: int, timeout_s: float = 60) -> bool:
        """Wait until ``count`` writes were acked; False if that took longer than
        ``timeout_s`` (a fault then goes on: the verdict tells what the wait hid)."""
        try:
            async with asyncio.timeout(timeout_s):
                while self.acked < count:
                    self.acked_event.clear()
                    await self.acked_event.wait()
        except TimeoutError:
            return False
        return True

    async def _connected(self, deadline: float, broken: Wire | None) -> Wire:
        async with self._reconnecting:
            if self._wire is not None and self._wire is broken:
                await self._wire.aclose()
                self._wire = None
                self._index += 1  # fail over to the next gateway
            if self._wire is None:
                self._wire, self._index = await open_any(
                    self.urls, self.token, deadline, start=self._index
                )
            return self._wire

    async def _work(self, numbers: Iterator[int], load: WriteLoad, deadline: float) -> None:
        for number in numbers:  # shared by the workers: each number is written once
            if time.monotonic() > deadline:
                return
            message_id = f"{self.prefix}{number}"
            for _ in range(load.retries + 1):
                body = message_id.ljust(load.body_bytes, ".")
                settled = await self._write_once(message_id, deadline, body)
                if settled or time.monotonic() > deadline:
                    break
                await asyncio.sleep(RECONNECT_PAUSE_S)
            if load.pace_s:
                await asyncio.sleep(load.pace_s)

    async def _write_once(self, message_id: str, deadline: float, body: str) -> bool:
        """One attempt; True when its outcome is final (ok, or a non-retryable failure)."""
        wire: Wire | None = None
        try:
            wire = await self._connected(deadline, None)
            reply = await wire.request(
                lambda ref: Publish(
                    sphere_id=self.sphere_id, message_id=message_id, body=body, ref=ref
                )
            )
        except (WireLost, TimeoutError) as exc:
            self.history.attempt(message_id, Outcome.UNKNOWN, detail=type(exc).__name__)
            if wire is not None:
                with contextlib.suppress(WireLost):
                    await self._connected(deadline, wire)
            return False
        if isinstance(reply, Ack):
            self.history.attempt(
                message_id, Outcome.OK, offset=reply.offset, duplicate=reply.duplicate
            )
            self.acked += 1
            self.acked_event.set()
            return True
        assert isinstance(reply, ErrorReply), reply
        if reply.code in UNKNOWN_ERROR_CODES:
            self.history.attempt(message_id, Outcome.UNKNOWN, detail=reply.code)
            return False
        self.history.attempt(message_id, Outcome.FAILED, detail=reply.code)
        return not reply.retryable


class Reader:
    """Stays subscribed to one sphere through faults, resuming from its last offset."""

    def __init__(
        self,
        history: RunHistory,
        name: str,
        token: str,
        urls: Sequence[str],
        sphere_id: str,
        *,
        allowed: bool = True,
        home: int = 0,
    ) -> None:
        self.log = history.reader(name, allowed=allowed)
        self.token = token
        self.urls = list(urls)
        self.sphere_id = sphere_id
        self.last_offset = 0  # the highest offset seen (live or replayed)
        self.epoch: str | None = None  # from the first ``subscribed``
        self.reconnects = 0
        self._index = home
        self._progress = asyncio.Event()
        self._subscribed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.refusal: ErrorReply | None = None  # what a reader not allowed was answered

    async def start(self, timeout_s: float = 30) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(timeout_s))
        async with asyncio.timeout(timeout_s):
            await self._subscribed.wait()

    async def wait_for(self, offset: int, timeout_s: float) -> None:
        async with asyncio.timeout(timeout_s):
            while self.last_offset < offset:
                self._progress.clear()
                await self._progress.wait()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def _on_message(self, message: Message) -> None:
        if message.sphere_id != self.sphere_id:
            return
        if message.kind is EventKind.POST:
            self.log.deliveries.append(Delivery(message.offset, message.message_id))
        self.last_offset = max(self.last_offset, message.offset)
        self._progress.set()

    async def _run(self, timeout_s: float) -> None:
        while True:
            deadline = time.monotonic() + timeout_s
            wire, self._index = await open_any(
                self.urls, self.token, deadline, self._on_message, start=self._index
            )
            try:
                since = None if self.epoch is None else StreamPosition(self.last_offset, self.epoch)
                reply = await wire.request(
                    lambda ref, since=since: Subscribe(
                        sphere_id=self.sphere_id, since=since, ref=ref
                    )
                )
                if isinstance(reply, Subscribed):
                    if self.epoch is None:
                        self.log.start_offset = reply.position.offset
                        self.last_offset = max(self.last_offset, reply.position.offset)
                        self.epoch = reply.position.epoch
                else:
                    assert isinstance(reply, ErrorReply), reply
                    self.refusal = reply
                self._subscribed.set()
                await keep_alive(wire)
            except (WireLost, TimeoutError):
                pass
            finally:
                await wire.aclose()
            self.reconnects += 1
            self._index += 1
            await asyncio.sleep(RECONNECT_PAUSE_S)


async def keep_alive(wire: Wire, interval_s: float = 5.0) -> None:
    """Ping until the connection closes (the server drops an idle one)."""
    while not wire.closed.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(wire.closed.wait(), interval_s)
        if not wire.closed.is_set():
            with contextlib.suppress(TimeoutError):
                await wire.request(lambda ref: Ping(ref=ref))


async def read_stream(url: str, token: str, sphere_id: str, timeout_s: float = 60) -> list[Message]:
    """Every event of the sphere, read from the store through a gateway, in offset order."""
    deadline = time.monotonic() + timeout_s
    wire, _ = await open_any([url], token, deadline)
    events: list[Message] = []
    after = 0
    try:
        while True:
            page = await wire.request(
                lambda ref, after=after: History(
                    sphere_id=sphere_id, after=after, limit=HISTORY_PAGE, ref=ref
                )
            )
            assert isinstance(page, HistoryPage), page
            events += page.messages
            after = max([after, *(message.offset for message in page.messages)])
            if not page.has_more or not page.messages:
                return events
    finally:
        await wire.aclose()


async def final_history(url: str, token: str, sphere_id: str) -> list[Delivery]:
    """The sphere's posts as the checker wants them."""
    events = await read_stream(url, token, sphere_id)
    return [
        Delivery(event.offset, event.message_id) for event in events if event.kind is EventKind.POST
    ]
