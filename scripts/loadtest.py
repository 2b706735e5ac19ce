"""Cloison load generator: fan-out scenario with loss, duplicate and reorder accounting.

Topology: S spheres x M subscribing members each, plus P publisher connections spread over
the spheres, offering R messages/s in total for T seconds. Every delivered message is checked
against what was acknowledged: per sphere, each subscriber must see every acknowledged offset
exactly once and in order. Latency is publish-send to delivery, measured on one clock
(``time.perf_counter_ns``, system-wide monotonic on Linux).

Run against a server it starts itself (``--spawn``, a fresh data directory, high rate limits)
or an existing one (``--url`` and ``--admin-token`` of an admin user). Bounded in count and
time: it stops after T seconds of publishing plus a drain of at most ``--drain-s``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import msgpack
import orjson
import websockets
from websockets.asyncio.client import ClientConnection

from protocol import (
    Ack,
    Auth,
    Batch,
    Codec,
    ErrorReply,
    Frame,
    JsonCodec,
    MessageId,
    MsgpackCodec,
    Publish,
    SphereId,
    Subscribe,
    Subscribed,
    Welcome,
)

CONNECT_TIMEOUT_S = 10.0


@dataclass
class Scenario:
    spheres: int
    members: int
    publishers: int
    rate: float
    seconds: float
    body_bytes: int
    encoding: str
    drain_s: float


@dataclass
class Tally:
    """What subscribers saw, per sphere and subscriber."""

    latencies_ns: list[int] = field(default_factory=list)
    delivered: int = 0
    duplicated: int = 0
    reordered: int = 0
    errors: int = 0
    seen: dict[tuple[int, int], set[int]] = field(default_factory=dict)  # (sphere, sub) -> offsets
    expected: int | None = None  # known once publishing ends
    complete: asyncio.Event = field(default_factory=asyncio.Event)

    def check_complete(self) -> None:
        if self.expected is not None and self.delivered + self.duplicated >= self.expected:
            self.complete.set()


@dataclass
class Report:
    scenario: Scenario
    published: int
    acked: int
    delivered: int
    expected: int
    lost: int
    duplicated: int
    reordered: int
    errors: int
    connections: int
    elapsed_s: float
    latency_ms: dict[str, float]
    server: dict[str, float] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario.__dict__,
            "published_per_s": round(self.acked / self.scenario.seconds, 1),
            "delivered_per_s": round(self.delivered / self.elapsed_s, 1),
            "published": self.published,
            "acked": self.acked,
            "delivered": self.delivered,
            "expected": self.expected,
            "lost": self.lost,
            "duplicated": self.duplicated,
            "reordered": self.reordered,
            "errors": self.errors,
            "connections": self.connections,
            "latency_ms": self.latency_ms,
            **self.server,
        }

    def table(self) -> str:
        data = self.as_json()
        lat = data["latency_ms"]
        lines = [
            f"connections       {data['connections']}",
            f"published/s       {data['published_per_s']:,.0f}  (acked {self.acked:,})",
            f"delivered/s       {data['delivered_per_s']:,.0f}  ({self.delivered:,} of "
            f"{self.expected:,})",
            f"latency ms        p50 {lat['p50']:.2f}  p95 {lat['p95']:.2f}  p99 {lat['p99']:.2f}"
            f"  max {lat['max']:.2f}",
            f"lost/dup/reorder  {self.lost} / {self.duplicated} / {self.reordered}",
            f"errors            {self.errors}",
        ]
        lines += [f"{k:<17} {v}" for k, v in self.server.items()]
        return "\n".join(lines)


def percentiles(samples_ns: list[int]) -> dict[str, float]:
    if not samples_ns:
        return {"p50": 0.0, "p95": 0.0, "p99": 0.0, "max": 0.0}
    ordered = sorted(samples_ns)

    def pick(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] / 1e6

    return {"p50": pick(0.50), "p95": pick(0.95), "p99": pick(0.99), "max": ordered[-1] / 1e6}


class Peer:
    """One protocol connection of the generator."""

    def __init__(self, ws: ClientConnection, codec: Codec) -> None:
        self.ws = ws
        self.codec = codec

    @classmethod
    async def open(cls, url: str, token: str, encoding: str) -> Peer:
        codec: Codec = JsonCodec() if encoding == "json" else MsgpackCodec()
        async with asyncio.timeout(CONNECT_TIMEOUT_S):
            ws = await websockets.connect(
                url,
                subprotocols=[codec.subprotocol],  # type: ignore[list-item]
                max_size=2**22,
                compression=None,
            )
            peer = cls(ws, codec)
            await peer.send(Auth(token=token, protocol=1))
            welcome = await peer.next_frames()
        if not isinstance(welcome[0], Welcome):
            raise RuntimeError(f"authentication failed: {welcome[0]}")
        return peer

    async def send(self, frame: Frame) -> None:
        await self.ws.send(self.codec.encode(frame))

    async def next_frames(self) -> list[Frame]:
        frame = self.codec.decode_server(await self.ws.recv())
        if isinstance(frame, Batch):
            return list(frame.frames)
        return [frame]

    async def next_raw(self) -> list[dict[str, Any]]:
        """The next frames as plain maps, without validation: the subscriber's hot path.

        Every delivery is still checked for loss, duplication and order by its offset; the
        generator must cost less per delivery than the server it measures.
        """
        data = await self.ws.recv()
        frame = orjson.loads(data) if isinstance(data, str) else msgpack.unpackb(data)
        if frame.get("type") == "batch":
            frames: list[dict[str, Any]] = frame["frames"]
            return frames
        return [frame]


class Admin:
    """Creates users and spheres through the HTTP API with an admin token."""

    def __init__(self, base_url: str, token: str) -> None:
        self.base_url = base_url
        self.token = token

    def call(self, method: str, path: str, body: dict[str, Any], token: str | None = None) -> Any:
        request = urllib.request.Request(
            self.base_url + "/api/v1" + path,
            data=json.dumps(body).encode(),
            method=method,
            headers={
                "Authorization": f"Bearer {token or self.token}",
                "Content-Type": "application/json",
            },
        )
        with urllib.request.urlopen(request, timeout=10) as reply:
            return json.loads(reply.read() or b"null")

    def user(self, name: str) -> tuple[str, str]:
        data = self.call("POST", "/admin/users", {"name": name, "kind": "bot"})
        return data["user_id"], data["token"]


@contextlib.contextmanager
def spawned_server(extra: list[str]) -> Iterator[tuple[str, str, int]]:
    """A fresh server in a temporary data directory: yields (base url, admin token, pid)."""
    with tempfile.TemporaryDirectory(prefix="cloison-load-") as data_dir:
        out = subprocess.run(
            [
                sys.executable,
                "-m",
                "server",
                "user",
                "create",
                "load-admin",
                "--admin",
                "--data-dir",
                data_dir,
            ],
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        )
        token = re.search(r"token:\s+(\S+)", out.stdout)
        assert token is not None
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "server",
                "serve",
                "--port",
                "0",
                "--data-dir",
                data_dir,
                "--publish-rate-per-s",
                "1000000",
                "--publish-burst",
                "1000000",
                "--log-level",
                "info",
                *extra,
            ],
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert proc.stderr is not None
            port = None
            for line in proc.stderr:
                found = re.search(r"listening on [\d.]+:(\d+)", line)
                if found:
                    port = int(found.group(1))
                    break
            if port is None:
                raise RuntimeError("the server did not start")
            # Keep reading its log so the pipe never fills and stalls the server.
            threading.Thread(target=proc.stderr.read, daemon=True).start()
            base = f"http://127.0.0.1:{port}"
            for _ in range(100):
                with contextlib.suppress(OSError):
                    urllib.request.urlopen(base + "/healthz", timeout=1).close()
                    break
                time.sleep(0.05)
            yield base, token.group(1), proc.pid
        finally:
            proc.terminate()
            proc.wait(30)
            if proc.stderr is not None:
                proc.stderr.close()


def process_cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def process_rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


async def subscriber(
    peer: Peer, sphere_index: int, sub_index: int, sphere_id: str, tally: Tally, stop: asyncio.Event
) -> None:
    key = (sphere_index, sub_index)
    seen = tally.seen.setdefault(key, set())
    last = 0
    while not stop.is_set():
        try:
            frames = await peer.next_raw()
        except websockets.ConnectionClosed:
            tally.errors += 1
            return
        now = time.perf_counter_ns()
        for frame in frames:
            kind = frame.get("type")
            if kind == "message" and frame.get("sphere_id") == sphere_id:
                offset = frame["offset"]
                if offset in seen:
                    tally.duplicated += 1
                    continue
                if offset < last:
                    tally.reordered += 1
                last = max(last, offset)
                seen.add(offset)
                tally.delivered += 1
                tally.check_complete()
                body = frame.get("body") or ""
                stamp = body.split("|", 1)[0]
                if stamp.isdigit():
                    tally.latencies_ns.append(now - int(stamp))
            elif kind == "error":
                tally.errors += 1


async def publisher(
    peer: Peer,
    sphere_id: SphereId,
    rate: float,
    seconds: float,
    body_bytes: int,
    name: str,
    acked: dict[str, set[int]],
    counts: dict[str, int],
) -> None:
    """Publish at ``rate`` msgs/s for ``seconds``, pipelined; record acked offsets."""
    offsets = acked.setdefault(sphere_id, set())
    pending = 0
    done = asyncio.Event()

    async def read_acks() -> None:
        nonlocal pending
        while True:
            for frame in await peer.next_frames():
                if isinstance(frame, Ack):
                    offsets.add(frame.offset)
                    pending -= 1
                elif isinstance(frame, ErrorReply):
                    counts["errors"] += 1
                    pending -= 1
            if done.is_set() and pending <= 0:
                return

    reader = asyncio.create_task(read_acks())
    interval = 1.0 / rate
    start = time.perf_counter()
    n = 0
    pad = "x" * max(0, body_bytes - 40)
    while True:
        due = start + n * interval
        now = time.perf_counter()
        if now - start >= seconds:
            break
        if due > now:
            await asyncio.sleep(due - now)
        body = f"{time.perf_counter_ns()}|{name}|{n}|{pad}"
        pending += 1
        message_id = MessageId(f"{name}-{n}")
        await peer.send(Publish(sphere_id=sphere_id, message_id=message_id, body=body))
        counts["published"] += 1
        n += 1
    done.set()
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(10):
            await reader
    reader.cancel()


async def run_fanout(url: str, admin: Admin, scenario: Scenario, pid: int | None) -> Report:
    ws_url = url.replace("http", "ws", 1) + "/ws"
    _, owner_token = admin.user("load-owner")
    sphere_ids: list[SphereId] = [
        admin.call("POST", "/spheres", {"name": f"load-{i}"}, owner_token)["sphere"]["sphere_id"]
        for i in range(scenario.spheres)
    ]
    tokens: dict[tuple[int, int], str] = {}
    for s, sphere_id in enumerate(sphere_ids):
        for m in range(scenario.members + max(1, scenario.publishers // scenario.spheres)):
            user_id, token = admin.user(f"load-{s}-{m}")
            admin.call("POST", f"/spheres/{sphere_id}/members", {"user_id": user_id}, owner_token)
            tokens[(s, m)] = token
    tally = Tally()
    stop = asyncio.Event()
    subs: list[Peer] = []
    tasks = []
    for s, sphere_id in enumerate(sphere_ids):
        for m in range(scenario.members):
            peer = await Peer.open(ws_url, tokens[(s, m)], scenario.encoding)
            await peer.send(Subscribe(sphere_id=sphere_id, ref="s"))
            while not any(isinstance(f, Subscribed) for f in await peer.next_frames()):
                pass
            subs.append(peer)
            tasks.append(asyncio.create_task(subscriber(peer, s, m, sphere_id, tally, stop)))
    pubs = []
    for p in range(scenario.publishers):
        s = p % scenario.spheres
        token = tokens[(s, scenario.members + p // scenario.spheres)]
        pubs.append((await Peer.open(ws_url, token, scenario.encoding), sphere_ids[s], f"p{p}"))
    acked: dict[str, set[int]] = {}
    counts = {"published": 0, "errors": 0}
    cpu0 = process_cpu_s(pid) if pid else 0.0
    started = time.perf_counter()
    await asyncio.gather(
        *(
            publisher(
                peer,
                sphere_id,
                scenario.rate / scenario.publishers,
                scenario.seconds,
                scenario.body_bytes,
                name,
                acked,
                counts,
            )
            for peer, sphere_id, name in pubs
        )
    )
    expected = sum(len(acked.get(sid, ())) for sid in sphere_ids) * scenario.members
    tally.expected = expected
    tally.check_complete()
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(scenario.drain_s):
            await tally.complete.wait()
    elapsed = time.perf_counter() - started
    server: dict[str, float] = {}
    if pid:
        cpu = process_cpu_s(pid) - cpu0
        server = {
            "server_cpu_pct": round(100 * cpu / elapsed, 1),
            "server_rss_mb": round(process_rss_mb(pid), 1),
            "server_us_per_delivery": round(1e6 * cpu / max(1, tally.delivered), 2),
        }
    stop.set()
    for task in tasks:
        task.cancel()
    for peer in subs + [p for p, _, _ in pubs]:
        await peer.ws.close()
    lost = 0
    for (s, _), seen in tally.seen.items():
        lost += len(acked.get(sphere_ids[s], set()) - seen)
    return Report(
        scenario=scenario,
        published=counts["published"],
        acked=sum(len(v) for v in acked.values()),
        delivered=tally.delivered,
        expected=expected,
        lost=lost,
        duplicated=tally.duplicated,
        reordered=tally.reordered,
        errors=tally.errors + counts["errors"],
        connections=len(subs) + len(pubs),
        elapsed_s=elapsed,
        latency_ms=percentiles(tally.latencies_ns),
        server=server,
    )


@contextlib.asynccontextmanager
async def target(args: argparse.Namespace) -> AsyncIterator[tuple[str, Admin, int | None]]:
    if args.spawn:
        with spawned_server(args.server_arg or []) as (base, token, pid):
            yield base, Admin(base, token), pid
    else:
        if not args.admin_token:
            raise SystemExit("--admin-token is required with --url")
        yield args.url.rstrip("/"), Admin(args.url.rstrip("/"), args.admin_token), args.server_pid


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="cloison loadtest", description=__doc__.split("\n")[0])
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--spawn", action="store_true", help="start a fresh server for the run")
    where.add_argument("--url", help="base URL of a running server, e.g. http://127.0.0.1:8000")
    parser.add_argument("--admin-token", help="token of an admin user (with --url)")
    parser.add_argument("--server-pid", type=int, help="server pid, for CPU and RSS figures")
    parser.add_argument("--server-arg", action="append", help="extra option for --spawn")
    parser.add_argument("--spheres", type=int, default=1)
    parser.add_argument("--members", type=int, default=100, help="subscribers per sphere")
    parser.add_argument("--publishers", type=int, default=1)
    parser.add_argument("--rate", type=float, default=100.0, help="messages/s offered in total")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--body-bytes", type=int, default=128)
    parser.add_argument("--encoding", choices=["json", "msgpack"], default="json")
    parser.add_argument("--drain-s", type=float, default=10.0)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    if args.seconds <= 0 or args.seconds > 3600 or args.rate <= 0:
        parser.error("--seconds must be in (0, 3600] and --rate positive")
    return args


async def main_async(args: argparse.Namespace) -> Report:
    scenario = Scenario(
        spheres=args.spheres,
        members=args.members,
        publishers=args.publishers,
        rate=args.rate,
        seconds=args.seconds,
        body_bytes=args.body_bytes,
        encoding=args.encoding,
        drain_s=args.drain_s,
    )
    async with target(args) as (url, admin, pid):
        return await run_fanout(url, admin, scenario, pid)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with contextlib.suppress(ImportError):
        import uvloop

        uvloop.install()
    report = asyncio.run(main_async(args))
    if args.json:
        print(json.dumps(report.as_json()))
    else:
        print(report.table())
    return 0 if report.lost == report.duplicated == report.reordered == 0 else 1


def loadtest_command(argv: list[str]) -> int:
    return main(argv)


if __name__ == "__main__":
    raise SystemExit(main())
