"""Subscribers: each counts what it is delivered; a group opens, storms and collects them."""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from protocol import SphereId, StreamPosition, Subscribe, Subscribed
from scripts.loadtest.accounting import Histogram, Ranges, _in_ranges
from scripts.loadtest.limits import (
    CONNECT_ATTEMPTS,
    KEEPALIVE_FRACTION,
    KEEPALIVE_MAX_S,
    MAX_RESUMES,
    LoadError,
)
from scripts.loadtest.wire import (
    Endpoint,
    Tasks,
    WireConnection,
    _describe,
    bounded_pool,
    close_all,
    keepalive,
    login,
)


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
