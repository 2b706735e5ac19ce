"""Publishers: paced offers of messages, spread over the spheres, and their acks."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from protocol import MessageId, Publish, SphereId
from scripts.loadtest.accounting import Histogram, Ranges, to_ranges
from scripts.loadtest.limits import ACK_TIMEOUT_S, KEEPALIVE_FRACTION, KEEPALIVE_MAX_S, MIN_SLEEP_S
from scripts.loadtest.wire import Endpoint, Tasks, WireConnection, close_all, keepalive, login


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
