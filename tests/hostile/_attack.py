"""Attack helpers for the transport tests: raw sockets from chosen loopback addresses, a
healthy client measured beside the attacker, and the server process's RSS and CPU.

Linux routes all of 127.0.0.0/8 to the loopback interface, so an attacker binds its sockets
to 127.0.0.2 (or further) while the healthy client connects from 127.0.0.1: the per-address
caps see two clients, as they would on a network.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import socket
import statistics
import struct
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from protocol import Frame, JsonCodec, Ping, Pong
from tests.support import TIMEOUT_S, Client, ServerProcess, User

LONG = os.environ.get("CLOISON_HOSTILE_LONG") == "1"
ATTACKER = "127.0.0.2"
# Generous: tests that are not about rate limits never hit them.
FAST = ["--publish-rate-per-s", "100000", "--publish-burst", "100000"]
# Why: the machine running the tests is shared and loaded; a healthy round trip this slow
# means the attack hurt others (unbounded, the ping flood gave 805 ms and a header bomb 5.5 s).
HEALTHY_P99_S = 0.5

OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING = 0x1, 0x2, 0x8, 0x9


def duration(bounded_s: float, long_s: float) -> float:
    """How long an attack runs: ``bounded_s`` in CI, ``long_s`` with CLOISON_HOSTILE_LONG=1."""
    return long_s if LONG else bounded_s


def start_server(tmp_path: Path, *extra: str) -> ServerProcess:
    server = ServerProcess(tmp_path / "data", extra_args=[*FAST, *extra])
    server.data_dir.mkdir(exist_ok=True)
    server.create_admin()
    server.start()
    return server


@contextlib.contextmanager
def running(tmp_path: Path, *extra: str) -> Iterator[ServerProcess]:
    server = start_server(tmp_path, *extra)
    try:
        yield server
    finally:
        server.stop()


def figure(line: str) -> None:
    """A measured figure, on stderr (shown with ``pytest -s`` and with a failure's output)."""
    sys.stderr.write(f"FIGURE {line}\n")


# The server process, seen from outside


def pid_of(server: ServerProcess) -> int:
    assert server.proc is not None
    return server.proc.pid


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def cpu_s(pid: int) -> float:
    """User plus system CPU seconds the process has used."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def set_descriptor_limit(pid: int, limit: int) -> None:
    import resource

    resource.prlimit(pid, resource.RLIMIT_NOFILE, (limit, limit))


@dataclass
class RssWatch:
    """Samples a process's RSS in the background; ``peak_mb - start_mb`` is the growth."""

    pid: int
    interval_s: float = 0.25
    start_mb: float = 0.0
    peak_mb: float = 0.0

    @contextlib.asynccontextmanager
    async def watching(self) -> AsyncIterator[RssWatch]:
        self.start_mb = self.peak_mb = rss_mb(self.pid)

        async def sample() -> None:
            while True:
                self.peak_mb = max(self.peak_mb, rss_mb(self.pid))
                await asyncio.sleep(self.interval_s)

        task = asyncio.create_task(sample())
        try:
            yield self
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            self.peak_mb = max(self.peak_mb, rss_mb(self.pid))

    @property
    def growth_mb(self) -> float:
        return self.peak_mb - self.start_mb


# The healthy client beside the attacker


@dataclass
class Probe:
    """An authenticated client that sends an application ``ping`` every ``interval_s`` and
    records each round trip; a failure to get an answer is recorded, not raised."""

    client: Client
    interval_s: float = 0.05
    rtts_s: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    @classmethod
    async def open(cls, user: User) -> Probe:
        return cls(await user.connect())

    async def run(self, seconds: float) -> None:
        loop = asyncio.get_running_loop()
        end = loop.time() + seconds
        while loop.time() < end:
            started = loop.time()
            try:
                reply = await self.client.request(Ping(ref=self.client.ref()), timeout_s=5)
                assert isinstance(reply, Pong), reply
                self.rtts_s.append(loop.time() - started)
            except (TimeoutError, OSError, AssertionError) as exc:
                self.failures.append(repr(exc))
                return
            await asyncio.sleep(self.interval_s)

    @property
    def p99_s(self) -> float:
        assert self.rtts_s, "the probe measured nothing"
        if len(self.rtts_s) < 2:
            return self.rtts_s[0]
        return statistics.quantiles(self.rtts_s, n=100, method="inclusive")[98]

    def summary(self) -> str:
        rtts = sorted(self.rtts_s)
        return (
            f"healthy ping: {len(rtts)} round trips, p50 {statistics.median(rtts) * 1000:.1f} ms,"
            f" p99 {self.p99_s * 1000:.1f} ms, max {rtts[-1] * 1000:.1f} ms,"
            f" failures {self.failures[:3]}"
        )

    def assert_healthy(self) -> None:
        assert not self.failures, self.failures
        assert self.p99_s < HEALTHY_P99_S, self.summary()


# Raw sockets and WebSocket frames


def attacker_socket(source: str = ATTACKER, rcvbuf_bytes: int | None = None) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf_bytes is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf_bytes)
    sock.bind((source, 0))
    return sock


async def open_stream(
    port: int, source: str = ATTACKER, rcvbuf_bytes: int | None = None
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    sock = attacker_socket(source, rcvbuf_bytes)
    sock.setblocking(False)
    await asyncio.wait_for(asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port)), 5)
    return await asyncio.open_connection(sock=sock)


def upgrade_request(port: int, path: str = "/ws") -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    return (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    ).encode()


async def read_head(reader: asyncio.StreamReader) -> bytes:
    """The status line and headers of an HTTP response."""
    return await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), TIMEOUT_S)


async def raw_websocket(
    port: int, source: str = ATTACKER, rcvbuf_bytes: int | None = None
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A WebSocket opened by hand (no library that would read or answer anything)."""
    reader, writer = await open_stream(port, source, rcvbuf_bytes)
    writer.write(upgrade_request(port))
    head = await read_head(reader)
    assert head.startswith(b"HTTP/1.1 101"), head
    return reader, writer


def client_frame(opcode: int, payload: bytes = b"") -> bytes:
    """One masked, final client frame."""
    mask = os.urandom(4)
    size = len(payload)
    if size < 126:
        head = struct.pack("!BB", 0x80 | opcode, 0x80 | size)
    elif size < 1 << 16:
        head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, size)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, size)
    if not payload:
        return head + mask
    stretched = (mask * (size // 4 + 1))[:size]
    masked = (int.from_bytes(payload, "big") ^ int.from_bytes(stretched, "big")).to_bytes(
        size, "big"
    )
    return head + mask + masked


def text_frame(frame: Frame) -> bytes:
    wire = JsonCodec().encode(frame)
    return client_frame(OP_TEXT, wire.encode() if isinstance(wire, str) else wire)


async def read_server_frame(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """(opcode, payload) of the next unmasked server frame."""
    first, second = await asyncio.wait_for(reader.readexactly(2), TIMEOUT_S)
    size = second & 0x7F
    if size == 126:
        (size,) = struct.unpack("!H", await reader.readexactly(2))
    elif size == 127:
        (size,) = struct.unpack("!Q", await reader.readexactly(8))
    return first & 0x0F, await asyncio.wait_for(reader.readexactly(size), TIMEOUT_S)


async def read_frames(reader: asyncio.StreamReader, count: int) -> list[Frame]:
    """The next ``count`` protocol frames (batches unpacked) from a raw WebSocket."""
    codec = JsonCodec()
    frames: list[Frame] = []
    while len(frames) < count:
        opcode, payload = await read_server_frame(reader)
        if opcode == OP_TEXT:
            decoded = codec.decode_server(payload.decode())
            frames.extend(getattr(decoded, "frames", None) or [decoded])
    return frames


def tcp_state(sock: socket.socket) -> int:
    """The kernel's TCP state of ``sock`` (1 established, 7 closed): ``tcp_info.tcpi_state``."""
    return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)[0]


TCP_ESTABLISHED = 1


def closed_by_peer(sock: socket.socket) -> bool:
    """True once the server closed or reset ``sock`` (without reading its unread input)."""
    return tcp_state(sock) != TCP_ESTABLISHED


async def wait_closed(socks: list[socket.socket], timeout_s: float) -> float:
    """Seconds until every socket in ``socks`` is closed by the server; raises on timeout."""
    started = time.monotonic()
    async with asyncio.timeout(timeout_s):
        while not all(closed_by_peer(s) for s in socks):  # noqa: ASYNC110 - kernel state
            await asyncio.sleep(0.1)
    return time.monotonic() - started


# TCP states in /proc/net/tcp that still hold a socket (TIME_WAIT and CLOSE do not).
_HELD_STATES = {"01", "04", "05", "08", "09", "0B"}


def _hex_endpoint(host: str, port: int) -> str:
    return f"{socket.inet_aton(host)[::-1].hex().upper()}:{port:04X}"


def server_side_open(sock: socket.socket, server_port: int) -> bool:
    """True while the server's end of ``sock`` still exists in the kernel.

    A peer that reads nothing may never see the server's reset (it arrives outside a full
    receive window), so the test looks at the server's side of the connection instead.
    """
    host, port = sock.getsockname()[:2]
    local = _hex_endpoint("127.0.0.1", server_port)
    remote = _hex_endpoint(host, port)
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        parts = line.split()
        if parts[1] == local and parts[2] == remote and parts[3] in _HELD_STATES:
            return True
    return False


async def wait_released(socks: list[socket.socket], server_port: int, timeout_s: float) -> float:
    """Seconds until the server holds none of ``socks`` any more; raises on timeout."""
    started = time.monotonic()
    async with asyncio.timeout(timeout_s):
        while any(server_side_open(s, server_port) for s in socks):  # noqa: ASYNC110
            await asyncio.sleep(0.1)
    return time.monotonic() - started
